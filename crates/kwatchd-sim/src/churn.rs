//! Random object churn for the demo and soak tests: creates, updates (sometimes relabelling, so selector
//! transitions happen) and deletes objects on a background thread, deterministically from a seed. And rollout
//! churn: Deployments whose status a controller keeps updating (status-only MODIFIED events, `generation`
//! unchanged) with a spec change now and then, the noise a Deployment hook has to see through.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;

use super::{pod_extra, Resource, SimHandle};
use kwatchd_rand::Rng;

/// What to churn.
#[derive(Debug, Clone)]
pub struct ChurnOptions {
    /// Resource type of the churned objects.
    pub resource: Resource,
    /// Namespaces to spread objects over (empty: `default`).
    pub namespaces: Vec<String>,
    /// Pause between two mutations.
    pub interval: Duration,
    /// Upper bound on live objects created by this churn (per churn, over all namespaces).
    pub max_objects: usize,
    /// PRNG seed: the same seed gives the same sequence of operations.
    pub seed: u64,
    /// Approximate JSON size of each object (pods get [`pod_extra`], other kinds a `data` map).
    pub object_size: usize,
}

impl Default for ChurnOptions {
    fn default() -> Self {
        ChurnOptions {
            resource: Resource::pods(),
            namespaces: vec!["default".into()],
            interval: Duration::from_millis(500),
            max_objects: 20,
            seed: 1,
            object_size: 1024,
        }
    }
}

/// What rollout churn does: Deployments `names` in `namespace`, one status update every `interval`, and a new
/// image tag instead every `spec_every`-th step.
#[derive(Debug, Clone)]
pub struct RolloutOptions {
    pub namespace: String,
    pub names: Vec<String>,
    pub interval: Duration,
    /// Every this many steps the step changes the spec (the image) instead of the status; 0: never.
    pub spec_every: u64,
    pub seed: u64,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        RolloutOptions {
            namespace: "default".into(),
            names: vec!["web".into()],
            interval: Duration::from_millis(500),
            spec_every: 10,
            seed: 1,
        }
    }
}

/// A Deployment as `kubectl create deployment NAME --image=nginx:1.27.0` makes it, fully available.
pub fn deployment(name: &str, replicas: u64) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": name, "image": "nginx:1.27.0"}]}},
        },
        "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas,
                   "availableReplicas": replicas, "updatedReplicas": replicas},
    })
}

/// Create the Deployments (existing ones are kept) and churn them as [`RolloutOptions`] says.
pub fn start_rollout_churn(sim: impl Into<SimHandle>, opts: RolloutOptions) -> ChurnHandle {
    let sim = sim.into();
    let res = Resource::deployments();
    for name in &opts.names {
        // An existing one is fine: the churn works on whatever is there.
        let _ = sim.create_object(&res, &opts.namespace, deployment(name, 3));
    }
    spawn("sim-rollout", move |stop, ops| {
        rollout(sim, opts, stop, ops)
    })
}

fn rollout(sim: SimHandle, opts: RolloutOptions, stop: &AtomicBool, ops: &AtomicU64) {
    let res = Resource::deployments();
    let mut rng = Rng::new(opts.seed);
    let mut tag = 0u64;
    while !stop.load(Ordering::SeqCst) && !opts.names.is_empty() {
        let step = ops.load(Ordering::SeqCst) + 1;
        let name = &opts.names[rng.index(opts.names.len())];
        let ns = &opts.namespace;
        if opts.spec_every > 0 && step % opts.spec_every == 0 {
            tag += 1;
            let image = format!("nginx:1.27.{tag}");
            let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}});
            let _ = sim.patch(&res, ns, name, patch);
        } else {
            // What the deployment controller reports while pods come and go: ready counts and a heartbeat.
            let ready = 1 + rng.below(3);
            let generation = sim
                .get(&res, ns, name)
                .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
                .and_then(|v| v["metadata"]["generation"].as_u64())
                .unwrap_or(1);
            let status = json!({"status": {"observedGeneration": generation, "readyReplicas": ready,
                                           "availableReplicas": ready, "heartbeat": step}});
            let _ = sim.patch_status(&res, ns, name, status);
        }
        ops.fetch_add(1, Ordering::SeqCst);
        sleep_unless_stopped(opts.interval, stop);
    }
}

/// Sleep in slices so that stopping does not wait for a long interval.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let mut left = d;
    while !left.is_zero() && !stop.load(Ordering::SeqCst) {
        let step = left.min(Duration::from_millis(50));
        std::thread::sleep(step);
        left -= step;
    }
}

fn spawn(name: &str, body: impl FnOnce(&AtomicBool, &AtomicU64) + Send + 'static) -> ChurnHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let (stop2, ops2) = (stop.clone(), ops.clone());
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || body(&stop2, &ops2))
        .ok();
    ChurnHandle { stop, ops, thread }
}

/// A running churn; stops (and joins its thread) on drop.
pub struct ChurnHandle {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl ChurnHandle {
    /// Mutations done so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }

    /// Stop and wait for the thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ChurnHandle {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Start churning objects of `opts.resource` in `sim` (a `&Sim` or a `SimHandle`).
pub fn start_churn(sim: impl Into<SimHandle>, opts: ChurnOptions) -> ChurnHandle {
    let sim = sim.into();
    spawn("sim-churn", move |stop, ops| run(sim, opts, stop, ops))
}

fn extra(opts: &ChurnOptions, generation: u64) -> serde_json::Value {
    if opts.resource.plural == "pods" {
        let mut v = pod_extra(opts.object_size);
        v["metadata"] = json!({"annotations": {"churn/generation": generation.to_string()}});
        v
    } else {
        let pad = "x".repeat(opts.object_size.saturating_sub(300));
        json!({"data": {"generation": generation.to_string(), "payload": pad}})
    }
}

fn run(sim: SimHandle, opts: ChurnOptions, stop: &AtomicBool, ops: &AtomicU64) {
    let namespaces = if opts.namespaces.is_empty() {
        vec!["default".to_string()]
    } else {
        opts.namespaces.clone()
    };
    let mut rng = Rng::new(opts.seed);
    let mut live: Vec<(String, String)> = Vec::new();
    let mut next_name = 0u64;
    const TIERS: [&str; 3] = ["web", "db", "cache"];
    while !stop.load(Ordering::SeqCst) {
        let roll = rng.index(10);
        let generation = ops.load(Ordering::SeqCst);
        if live.is_empty() || (roll < 4 && live.len() < opts.max_objects) {
            let ns = namespaces[rng.index(namespaces.len())].clone();
            next_name += 1;
            let name = format!("churn-{next_name}");
            let tier = TIERS[rng.index(TIERS.len())];
            sim.create(
                &opts.resource,
                &ns,
                &name,
                &[("app", "churn"), ("tier", tier)],
                extra(&opts, generation),
            );
            live.push((ns, name));
        } else if roll < 8 {
            let (ns, name) = &live[rng.index(live.len())];
            // One update in three moves the object to another tier: selector watches see ADDED/DELETED.
            let tier = TIERS[rng.index(TIERS.len())];
            let labels = [("app", "churn"), ("tier", tier)];
            let relabel = rng.index(3) == 0;
            sim.update(
                &opts.resource,
                ns,
                name,
                extra(&opts, generation),
                relabel.then_some(&labels[..]),
            );
        } else {
            let (ns, name) = live.swap_remove(rng.index(live.len()));
            sim.delete(&opts.resource, &ns, &name);
        }
        ops.fetch_add(1, Ordering::SeqCst);
        sleep_unless_stopped(opts.interval, stop);
    }
}

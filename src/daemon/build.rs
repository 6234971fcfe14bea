//! What the configuration becomes: clusters, sinks, and the watchers of
//! each `[[watch]]` with their routes and saved state.

use super::fanout::Route;
use super::filtering::{sink_transform, Filtering};
use super::schedule::Marks;
use super::watcher::Watcher;
use super::{io_err, ClusterRuntime, Daemon, DaemonError, Slot};
use crate::config::{ClusterConfig, Config, SinkConfig, SyncMode, WatchConfig, WatchTarget};
use crate::filter::RedactKey;
use crate::kube::{ResourcePath, Selectors};
use crate::rand::Rng;
use crate::sink::{
    ExecSink, FileSink, NatsSink, QueueBound, Sink, SinkKind, SyncPolicy, WebhookSink,
};
use crate::state::{Fingerprint, Persistence, Resume};
use crate::tokens::{TokenAllocator, MAX_WATCHES};
use crate::watch::{WatchMachine, WatchSpec};
use mio::Waker;
use std::sync::Arc;
use std::time::Instant;

/// Bytes a sink may hold besides its event bound.
const SINK_QUEUE_BYTES: usize = 64 << 20;
const LIST_PAGE_SIZE: u32 = 500;

impl Daemon {
    /// Starts the watchers of `w` in fresh slots (one per namespace of a
    /// namespace list), routed to the clusters and sinks of `self.config`,
    /// each resuming from its saved state.
    pub(super) fn start_watch(&mut self, w: &WatchConfig) -> Result<(), DaemonError> {
        let Some((cluster, cluster_config)) = self
            .config
            .clusters
            .iter()
            .enumerate()
            .find(|(_, (name, _))| **name == w.cluster)
            .map(|(i, (_, c))| (i, c.clone()))
        else {
            return Err(DaemonError::UnknownCluster {
                cluster: w.cluster.clone(),
                watch: w.name.clone(),
            });
        };
        let route = self.route(w, cluster);
        for spec in watch_specs(w, &cluster_config) {
            let slot = self.slots.len();
            if slot >= MAX_WATCHES {
                return Err(DaemonError::TooManyWatches { count: slot + 1 });
            }
            let fingerprint = fingerprint(w, &cluster_config, &spec);
            let mut machine = WatchMachine::new(spec, Rng::from_entropy(slot as u64));
            let state = match self.checkpoints.store_mut() {
                Some(store) => {
                    let (state, resume) = Persistence::resume(store, machine.name(), fingerprint);
                    match resume {
                        Some(Resume::At {
                            resource_version,
                            index,
                        }) => machine.resume_from(resource_version, index),
                        Some(Resume::Unpositioned { index }) => machine.resume_unpositioned(index),
                        None => {}
                    }
                    state
                }
                None => Persistence::in_memory(),
            };
            // A standby without saved state: the state its leader confirmed.
            if let Some(rv) = self
                .leader
                .as_ref()
                .and_then(|l| l.start_position(machine.name()))
            {
                machine.list_first_at(rv);
            }
            let store_dir = self.checkpoints.store_mut().map(|s| s.dir().to_owned());
            let filter = Filtering::new(w, || match &store_dir {
                Some(dir) => RedactKey::load_or_create(dir),
                None => RedactKey::ephemeral(),
            })
            .map_err(|error| DaemonError::Filter {
                watch: w.name.clone(),
                error,
            })?;
            let watcher = Watcher::new(
                slot,
                machine,
                &w.cluster,
                route.clone(),
                self.config.daemon.max_line_bytes,
                state,
                filter,
            );
            self.slots.push(Slot {
                name: w.name.clone(),
                watcher: Some(watcher),
                marks: Marks::default(),
            });
            self.schedule.make_runnable(&mut self.slots, slot);
        }
        Ok(())
    }

    /// Where `w`'s events go: cluster `cluster`, the positions in
    /// `self.sinks` of the sinks it feeds, and whether any of them wants
    /// each event's metadata.
    pub(super) fn route(&self, w: &WatchConfig, cluster: usize) -> Route {
        let sinks: Vec<usize> = w
            .sinks
            .iter()
            .filter_map(|s| self.config.sinks.keys().position(|k| k == s))
            .collect();
        let wants_meta = sinks
            .iter()
            .any(|&i| self.sinks.get(i).is_some_and(|s| s.wants_meta()));
        let transforms = w
            .sinks
            .iter()
            .filter(|s| self.config.sinks.contains_key(*s))
            .map(|s| sink_transform(s, self.config.sink_transforms.get(s)))
            .collect();
        Route {
            cluster,
            sinks,
            transforms,
            wants_meta,
        }
    }
}

/// `id` tags the tokens of its credential plugin runs; it is unique for the
/// daemon's life (a reload does not reuse one), so a token can never reach
/// a cluster that took an older one's place.
pub(super) fn build_cluster(
    name: &str,
    c: &ClusterConfig,
    id: usize,
) -> Result<ClusterRuntime, DaemonError> {
    ClusterRuntime::new(c, id).map_err(|error| DaemonError::Cluster {
        name: name.to_owned(),
        error,
    })
}

/// A sink as `[sinks.NAME]` defines it, its file opened and synced as
/// `[daemon] sync` says (its sync thread wakes the loop through `waker`).
/// `kwatchd replay` builds its webhook and NATS sinks with it too.
pub(crate) fn build_sink(
    config: &Config,
    name: &str,
    s: &SinkConfig,
    (tokens, waker): (&mut TokenAllocator, &Arc<Waker>),
) -> Result<Sink, DaemonError> {
    let queue_events = config.daemon.sink_queue_events.max(1);
    let bound = QueueBound {
        events: queue_events,
        bytes: SINK_QUEUE_BYTES,
    };
    let token = tokens.allocate();
    let rng = Rng::from_entropy(0x51_4b ^ token.0 as u64);
    let mut kind = match s {
        SinkConfig::File(f) => {
            let mut file = FileSink::new(name, &f.path, bound, token);
            file.open().map_err(|error| DaemonError::SinkOpen {
                name: name.to_owned(),
                path: f.path.clone(),
                error,
            })?;
            let policy = match config.daemon.sync {
                SyncMode::None => SyncPolicy::None,
                SyncMode::Interval => SyncPolicy::Interval(config.daemon.sync_interval),
                SyncMode::Always => SyncPolicy::Always,
            };
            let file = file
                .with_sync(policy, Arc::clone(waker))
                .map_err(io_err("cannot start a file sink's fsync thread"))?;
            SinkKind::File(Box::new(file))
        }
        SinkConfig::Stdout => SinkKind::File(Box::new(FileSink::stdout(name, bound, token))),
        SinkConfig::Exec(e) => SinkKind::Exec(Box::new(ExecSink::new(name, e, queue_events, rng))),
        SinkConfig::Webhook(w) => {
            let webhook = WebhookSink::new(name, w, queue_events, rng).map_err(|error| {
                DaemonError::Sink {
                    name: name.to_owned(),
                    error,
                }
            })?;
            SinkKind::Webhook(Box::new(webhook))
        }
        SinkConfig::Nats(n) => {
            let nats =
                NatsSink::new(name, n, queue_events, rng, Instant::now()).map_err(|reason| {
                    DaemonError::SinkSetup {
                        name: name.to_owned(),
                        reason,
                    }
                })?;
            SinkKind::Nats(Box::new(nats))
        }
    };
    // New objects reach the state store before the sink acts on them.
    kind.hold_for_store();
    Ok(Sink::from(kind))
}

/// The machines a `[[watch]]` runs: one, or one per namespace of a list.
/// Records keep the configured name; logs say which namespace.
fn watch_specs(w: &WatchConfig, cluster: &ClusterConfig) -> Vec<WatchSpec> {
    let namespaces: Vec<Option<&String>> = match w.namespaces.as_slice() {
        [] => vec![None],
        list => list.iter().map(Some).collect(),
    };
    namespaces
        .iter()
        .map(|ns| WatchSpec {
            name: match ns {
                Some(ns) if namespaces.len() > 1 => format!("{}[{ns}]", w.name),
                _ => w.name.clone(),
            },
            record_name: w.name.clone(),
            target: w.target.clone(),
            base_path: cluster.server.base_path.clone(),
            namespace: ns.cloned(),
            exclude_namespaces: w.exclude_namespaces.clone(),
            metadata_only: w.metadata_only,
            initial_list: w.initial_list,
            selectors: Selectors {
                label: w.label_selector.clone(),
                field: w.field_selector.clone(),
            },
            events: w.events.clone(),
            on_start: w.on_start,
            page_size: LIST_PAGE_SIZE,
            watch_timeout: w.watch_timeout,
        })
        .collect()
}

/// What a checkpoint must have been written for: the stream's source, not
/// the sinks or the event filter (changing those keeps the checkpoint).
fn fingerprint(w: &WatchConfig, cluster: &ClusterConfig, spec: &WatchSpec) -> Fingerprint {
    let (api_version, resource, path) = match &w.target {
        WatchTarget::Resource {
            api_version,
            resource,
        } => (
            api_version.clone(),
            resource.clone(),
            ResourcePath::new(
                &cluster.server.base_path,
                api_version,
                spec.namespace.as_deref(),
                resource,
            )
            .as_str()
            .to_owned(),
        ),
        // Resolved through discovery at run time; the name as configured
        // is what identifies it.
        WatchTarget::Kind { name, api_version } => (
            api_version.clone().unwrap_or_default(),
            format!("kind {name}"),
            String::new(),
        ),
    };
    Fingerprint {
        cluster: w.cluster.clone(),
        server: cluster.server.to_string(),
        api_version,
        resource,
        path,
        namespace: spec.namespace.clone(),
        label_selector: w.label_selector.clone(),
        field_selector: w.field_selector.clone(),
        filter: filter_digest(w),
    }
}

/// What the filter's memory in the state store was computed with: a digest
/// of `select`, `changes` and the redacted paths ("" without them).
fn filter_digest(w: &WatchConfig) -> String {
    if w.select.is_none() && w.changes.is_none() {
        return String::new();
    }
    let keys = serde_json::json!([w.select, w.changes, w.redact_paths()]).to_string();
    let digest = ring::digest::digest(&ring::digest::SHA256, keys.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

//! `kwatchd demo`: the emulator, a little churn, and the daemon on the
//! embedded `config/demo.toml`, with the events file tailed to the terminal;
//! and `kwatchd sim` (in `sim`), the emulator on its own.

pub mod sim;

use crate::config::{Config, ServerUrl, SinkConfig};
use crate::daemon::Daemon;
use crate::logging;
use kwatchd_sim::churn::{start_churn, start_rollout_churn, ChurnOptions, RolloutOptions};
use kwatchd_sim::{Resource, Sim, SimOptions};
use serde_json::Value;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");
const DEMO_HOOK: &str = include_str!("../../config/hooks/print-event");

pub fn run(dir: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    let sim = Sim::start(SimOptions {
        bookmark_interval: Some(Duration::from_secs(10)),
        ..SimOptions::default()
    })?;
    sim::seed_namespaces(&sim.handle());
    let pods = Resource::pods();
    for (ns, name, tier) in [
        ("default", "web-0", "web"),
        ("default", "web-1", "web"),
        ("kube-system", "dns-0", "dns"),
    ] {
        sim.create(
            &pods,
            ns,
            name,
            &[("tier", tier)],
            kwatchd_sim::pod_extra(600),
        );
    }
    let _churn = start_churn(
        &sim,
        ChurnOptions {
            resource: pods.clone(),
            namespaces: vec!["default".into(), "kube-system".into()],
            interval: Duration::from_millis(400),
            max_objects: 12,
            ..ChurnOptions::default()
        },
    );
    let _rollout = start_rollout_churn(
        &sim,
        RolloutOptions {
            namespace: "default".into(),
            names: vec!["web".into(), "api".into()],
            interval: Duration::from_millis(1500),
            spec_every: 8,
            seed: 7,
        },
    );

    let mut config = Config::parse(DEMO_CONFIG, Path::new("config/demo.toml"))?;
    let server = ServerUrl::parse(&sim.url()).map_err(|e| format!("emulator URL: {e}"))?;
    for cluster in config.clusters.values_mut() {
        cluster.server = server.clone();
    }
    let cwd = std::env::current_dir()?;
    let dir = cwd.join(dir.unwrap_or_else(|| PathBuf::from("kwatchd-demo")));
    std::fs::create_dir_all(&dir)?;
    // Checkpoints of an earlier demo belong to an emulator that is gone
    // (another port, other uids): start without them rather than warn.
    config.daemon.state_dir = dir.join("state");
    if let Ok(entries) = std::fs::read_dir(&config.daemon.state_dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().contains(".checkpoint") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    // A port known before the daemon starts, so the screen can show the status command.
    let metrics = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?.local_addr()?;
    config.daemon.metrics_listen = Some(metrics);
    let kubeconfig = dir.join("kubeconfig");
    sim::write_private(&kubeconfig, &sim::kubeconfig(&sim.url(), None, None))?;
    let hook = dir.join("print-event");
    std::fs::write(&hook, DEMO_HOOK)?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    let mut files = Vec::new();
    for sink in config.sinks.values_mut() {
        match sink {
            SinkConfig::File(f) => {
                if let Some(name) = f.path.file_name() {
                    f.path = dir.join(name);
                }
                files.push(f.path.clone());
            }
            SinkConfig::Exec(e) => {
                if let Some(program) = e.command.first_mut() {
                    *program = hook.display().to_string();
                }
            }
            SinkConfig::Webhook(_) | SinkConfig::Stdout | SinkConfig::Nats(_) => {}
        }
    }
    logging::init(config.daemon.log_level, config.daemon.log_format);
    println!("kwatchd demo: API server emulator at {}", sim.url());
    for f in &files {
        println!("kwatchd demo: events are appended to {}", f.display());
    }
    let me = std::env::args().next().unwrap_or_else(|| "kwatchd".into());
    let kc = kubeconfig.display();
    println!(
        "\nTry, in another terminal:\n  \
         {me} status --addr {metrics}\n  \
         kubectl --kubeconfig {kc} get pods,deployments -A\n  \
         kubectl --kubeconfig {kc} label pod web-0 tier=db --overwrite\n"
    );
    println!("{LEGEND}");
    println!("kwatchd demo: press Ctrl-C to stop\n");
    for f in files {
        thread::Builder::new()
            .name("demo-tail".into())
            .spawn(move || tail(&f))?;
    }
    Daemon::new(&config)?.without_reload().run()?;
    drop(_churn);
    drop(_rollout);
    sim.shutdown();
    Ok(())
}

/// What the tailed lines mean, for a newcomer.
const LEGEND: &str = "\
Reading the lines below (watch, event, origin, object, resourceVersion):
  pods         every pod; the emulator creates, changes, relabels and deletes some every 400 ms.
  web-pods     only pods labelled tier=web in default, only ADDED and DELETED. A pod relabelled out of
               the tier is DELETED for this watch (gone from its selection) while it still exists: such
               lines say \"relabelled\", and the pods watch shows the same change as MODIFIED.
  deployments  two Deployments whose status the \"controller\" updates every 1.5 s: lines marked
               \"status only\" changed nothing but .status (generation unchanged), the noise a Deployment
               hook would react to; \"spec changed\" ones moved the generation (a new image).
The hook (print-event) runs for web-pods; its output is logged. At the end, the daemon's last line counts
the events per watch as the sinks' lines above it do.";

/// Prints one short line per record appended to `path`.
fn tail(path: &Path) {
    let mut offset = 0;
    let mut notes = Notes::default();
    loop {
        if let Ok(n) = print_from(path, offset, &mut notes) {
            offset = n;
        }
        thread::sleep(Duration::from_millis(150));
    }
}

/// What earlier records tell about later ones.
#[derive(Default)]
struct Notes {
    /// The `pods` watch's event type at each resourceVersion: a `web-pods` DELETED whose change the
    /// `pods` watch saw as MODIFIED was a relabel.
    pods_by_rv: HashMap<String, String>,
    /// Each Deployment's last generation seen.
    generations: HashMap<String, u64>,
}

impl Notes {
    const KEEP: usize = 10_000;

    fn learn(&mut self, v: &Value) {
        if v["watch"] == "pods" {
            if self.pods_by_rv.len() > Self::KEEP {
                self.pods_by_rv.clear();
            }
            let rv = v["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("");
            let ty = v["type"].as_str().unwrap_or("");
            self.pods_by_rv.insert(rv.to_owned(), ty.to_owned());
        }
    }

    /// A remark on this record, or "".
    fn remark(&mut self, v: &Value) -> String {
        let meta = &v["object"]["metadata"];
        let rv = meta["resourceVersion"].as_str().unwrap_or("");
        match (v["watch"].as_str(), v["type"].as_str()) {
            (Some("web-pods"), Some("DELETED"))
                if self.pods_by_rv.get(rv).map(String::as_str) == Some("MODIFIED") =>
            {
                "  <- relabelled out of tier=web; the pod still exists".into()
            }
            (Some("deployments"), ty) => {
                let key = format!("{}/{}", meta["namespace"], meta["name"]);
                let generation = meta["generation"].as_u64().unwrap_or(0);
                let before = self.generations.insert(key, generation);
                match (ty, before) {
                    (Some("MODIFIED"), Some(g)) if g == generation => {
                        format!("  gen={generation} status only")
                    }
                    (Some("MODIFIED"), Some(_)) => format!("  gen={generation} spec changed"),
                    _ => format!("  gen={generation}"),
                }
            }
            _ => String::new(),
        }
    }
}

fn print_from(path: &Path, offset: u64, notes: &mut Notes) -> io::Result<u64> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut consumed = offset;
    let mut line = String::new();
    let mut batch = Vec::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        consumed += n as u64;
        batch.push(serde_json::from_str::<Value>(&line).map_err(|_| line.trim_end().to_owned()));
    }
    // Both watches' records of one change arrive together: learn from the whole batch first.
    for v in batch.iter().flatten() {
        notes.learn(v);
    }
    for item in batch {
        match item {
            Ok(v) => println!("{}{}", summarise(&v), notes.remark(&v)),
            Err(raw) => println!("{raw}"),
        }
    }
    Ok(consumed)
}

fn summarise(v: &Value) -> String {
    let meta = &v["object"]["metadata"];
    format!(
        "{:<11} {:<8} {:<7} {}/{} rv={}",
        v["watch"].as_str().unwrap_or("?"),
        v["type"].as_str().unwrap_or("?"),
        v["origin"].as_str().unwrap_or("?"),
        meta["namespace"].as_str().unwrap_or("-"),
        meta["name"].as_str().unwrap_or("?"),
        meta["resourceVersion"].as_str().unwrap_or("?"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(watch: &str, ty: &str, name: &str, rv: &str, generation: Option<u64>) -> Value {
        let mut meta = json!({"namespace": "default", "name": name, "resourceVersion": rv});
        if let Some(g) = generation {
            meta["generation"] = json!(g);
        }
        json!({"watch": watch, "type": ty, "origin": "watch", "object": {"metadata": meta}})
    }

    #[test]
    fn remarks_explain_relabels_and_status_only_updates() {
        let mut notes = Notes::default();
        let relabel = [
            record("web-pods", "DELETED", "web-0", "7", None),
            record("pods", "MODIFIED", "web-0", "7", None),
        ];
        let gone = [
            record("web-pods", "DELETED", "web-1", "8", None),
            record("pods", "DELETED", "web-1", "8", None),
        ];
        for v in relabel.iter().chain(&gone) {
            notes.learn(v);
        }
        assert!(notes.remark(&relabel[0]).contains("relabelled"));
        assert_eq!(notes.remark(&gone[0]), "");
        let d = |ty, rv, g| record("deployments", ty, "web", rv, Some(g));
        assert_eq!(notes.remark(&d("ADDED", "1", 1)), "  gen=1");
        assert_eq!(notes.remark(&d("MODIFIED", "2", 1)), "  gen=1 status only");
        assert_eq!(notes.remark(&d("MODIFIED", "3", 2)), "  gen=2 spec changed");
    }
}

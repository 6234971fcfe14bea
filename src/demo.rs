//! `kwatchd demo`: the emulator, a little churn, and the daemon on the
//! embedded `config/demo.toml`, with the events file tailed to the terminal.

use crate::config::{Config, ServerUrl, SinkConfig};
use crate::daemon::Daemon;
use crate::logging;
use kwatchd_sim::churn::{start_churn, ChurnOptions};
use kwatchd_sim::{Resource, Sim, SimOptions};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

const DEMO_CONFIG: &str = include_str!("../config/demo.toml");
const DEMO_HOOK: &str = include_str!("../config/hooks/print-event");

pub fn run(dir: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    let sim = Sim::start(SimOptions {
        bookmark_interval: Some(Duration::from_secs(10)),
        ..SimOptions::default()
    })?;
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
    println!("kwatchd demo: press Ctrl-C to stop\n");
    for f in files {
        thread::Builder::new()
            .name("demo-tail".into())
            .spawn(move || tail(&f))?;
    }
    Daemon::new(&config)?.without_reload().run()?;
    drop(_churn);
    sim.shutdown();
    Ok(())
}

/// Prints one short line per record appended to `path`.
fn tail(path: &Path) {
    let mut offset = 0;
    loop {
        if let Ok(n) = print_from(path, offset) {
            offset = n;
        }
        thread::sleep(Duration::from_millis(150));
    }
}

fn print_from(path: &Path, offset: u64) -> io::Result<u64> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut consumed = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            return Ok(consumed);
        }
        consumed += n as u64;
        println!("{}", summarise(&line));
    }
}

fn summarise(line: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.trim_end().to_owned();
    };
    let meta = &v["object"]["metadata"];
    format!(
        "{:<9} {:<8} {:<7} {}/{} rv={}",
        v["watch"].as_str().unwrap_or("?"),
        v["type"].as_str().unwrap_or("?"),
        v["origin"].as_str().unwrap_or("?"),
        meta["namespace"].as_str().unwrap_or("-"),
        meta["name"].as_str().unwrap_or("?"),
        meta["resourceVersion"].as_str().unwrap_or("?"),
    )
}

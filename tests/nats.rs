//! The NATS JetStream sink end to end: the real binary, the emulator and a
//! real nats-server (Debian's `nats-server`, started per test on a free
//! loopback port with JetStream on file storage). The stream must hold
//! every event exactly once whatever is killed in the middle.

mod common;

use common::*;
use kwatchd::nats::testing::{free_port, Admin, NatsServer, StoredMessage};
use kwatchd::nats::Auth;
use kwatchd_sim::{HistoryEvent, Resource, Sim, SimHandle, SimOptions};
use serde_json::json;
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn config_text(dir: &Path, sim: &str, nats: &str, queue_events: usize, metrics: u16) -> String {
    format!(
        r#"[daemon]
log_level = "debug"
state_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics}"

[clusters.test]
server = "{sim}"

[[watch]]
name = "pods"
cluster = "test"
api_version = "v1"
resource = "pods"
sinks = ["bus"]

[sinks.bus]
type = "nats"
servers = ["{nats}"]
stream = "KUBE"
max_in_flight = 32
ack_timeout = "2s"
queue_events = {queue_events}
"#,
        state = dir.join("state").display(),
    )
}

/// Creates and updates pods until stopped.
struct Mutator {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Mutator {
    fn start(sim: SimHandle, prefix: &'static str) -> Mutator {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let pods = Resource::pods();
            let mut n = 0usize;
            while !flag.load(Ordering::Relaxed) {
                n += 1;
                if n % 3 == 0 {
                    let name = format!("{prefix}-{}", n / 3);
                    sim.create(&pods, "default", &name, &[], json!({}));
                } else if n > 3 {
                    let name = format!("{prefix}-{}", 1 + n % (n / 3).max(1));
                    sim.update(&pods, "default", &name, json!({"spec": {"n": n}}), None);
                }
                thread::sleep(Duration::from_millis(2));
            }
        });
        Mutator {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pod_history(sim: &Sim) -> Vec<HistoryEvent> {
    sim.history()
        .into_iter()
        .filter(|e| e.resource == Resource::pods())
        .collect()
}

/// (uid, resourceVersion) of a stored record.
fn key(m: &StoredMessage) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
    let meta = &v["object"]["metadata"];
    (
        meta["uid"].as_str().unwrap_or_default().to_owned(),
        meta["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Waits until the stream holds every event of the history, then checks
/// each is there exactly once and each object's events are in order.
fn check_stream(admin: &mut Admin, sim: &Sim, log: &dyn Fn() -> String) {
    let history = pod_history(sim);
    assert!(
        wait_until(WAIT, || admin.stream_messages("KUBE").unwrap_or(0) as usize
            >= history.len()),
        "stream has {:?} of {} events; log:\n{}",
        admin.stream_messages("KUBE"),
        history.len(),
        log()
    );
    let msgs = admin.read_stream("KUBE").unwrap();
    let mut copies: HashMap<(String, String), usize> = HashMap::new();
    let mut last_rv: HashMap<String, u64> = HashMap::new();
    for m in &msgs {
        let (uid, rv) = key(m);
        let id = m.header("Nats-Msg-Id").unwrap_or_default();
        assert!(id.starts_with(&format!("test/{uid}/{rv}/")), "{id}");
        assert_eq!(m.header("Kwatchd-Watch"), Some("pods"));
        assert!(
            m.subject.starts_with("kube.test.pods.default.Pod."),
            "{}",
            m.subject
        );
        let n: u64 = rv.parse().unwrap();
        let prev = last_rv.insert(uid.clone(), n);
        assert!(
            prev.is_none_or(|p| p < n),
            "{uid}: rv {prev:?} stored before {n}"
        );
        *copies.entry((uid, rv)).or_default() += 1;
    }
    for e in &history {
        let k = (e.uid.clone(), e.resource_version.clone());
        assert_eq!(
            copies.get(&k),
            Some(&1),
            "{} {} rv {}: stored {:?} times",
            e.event_type.as_str(),
            e.name,
            e.resource_version,
            copies.get(&k)
        );
    }
    assert_eq!(
        msgs.len(),
        history.len(),
        "events stored that the history lacks"
    );
}

/// The daemon's /status document.
fn status(port: u16) -> Option<serde_json::Value> {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    sock.write_all(b"GET /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    sock.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()
}

/// The duplicates a stopped daemon's summary reports.
fn duplicates_in(log: &str) -> u64 {
    log.lines()
        .rev()
        .find_map(|l| {
            let (before, _) = l.split_once(" duplicates acknowledged")?;
            before.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// Changes before the first list are only seen as the list's state: the
/// mutator starts once the watch has listed.
fn wait_listed(d: &Running) {
    assert!(
        wait_until(WAIT, || d.log_text().contains("listed ")),
        "not listed; log:\n{}",
        d.log_text()
    );
}

fn setup(dir: &Path) -> (NatsServer, Admin, Sim) {
    let server = NatsServer::start(dir, &[]).unwrap();
    let mut admin = Admin::connect(server.port, &Auth::None).unwrap();
    admin.create_stream("KUBE", &["kube.>"], 1).unwrap();
    let sim = Sim::start(SimOptions::default()).unwrap();
    for i in 0..10 {
        sim.create(
            &Resource::pods(),
            "default",
            &format!("init-{i}"),
            &[],
            json!({}),
        );
    }
    (server, admin, sim)
}

#[test]
fn kwatchd_sigkill_mid_stream_then_restart_stores_every_event_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (server, mut admin, sim) = setup(dir);
    let text = config_text(dir, &sim.url(), &server.url(), 1000, free_port().unwrap());
    let mut first = Running::start_in(tempfile::tempdir().unwrap(), &text);
    wait_listed(&first);
    let mutator = Mutator::start(sim.handle(), "a");
    // Killed once the state store holds a position past the list and the
    // stream holds events after it, so the restart resumes from the store
    // and sends again what the stream already has.
    let saved = || {
        let positions = kwatchd::state::db::positions(&dir.join("state")).ok()?;
        positions.get("pods")?.as_deref()?.parse::<u64>().ok()
    };
    assert!(
        wait_until(WAIT, || saved().is_some()
            && admin.stream_messages("KUBE").unwrap_or(0) > 150),
        "log:\n{}",
        first.log_text()
    );
    first.signal(libc::SIGKILL);
    let _ = first.child.wait();
    thread::sleep(Duration::from_millis(200));
    let mut second = Running::start_in(tempfile::tempdir().unwrap(), &text);
    assert!(
        wait_until(WAIT, || second
            .log_text()
            .contains("resuming from the checkpoint")),
        "log:\n{}",
        second.log_text()
    );
    thread::sleep(Duration::from_millis(500));
    mutator.stop();
    check_stream(&mut admin, &sim, &|| second.log_text());
    assert!(second.stop().success());
    // The restart sent events again that the stream already held.
    let log = second.log_text();
    assert!(
        duplicates_in(&log) > 0,
        "no duplicates reported; log:\n{log}"
    );
    drop(first);
}

#[test]
fn nats_server_killed_and_restarted_mid_stream_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut server, mut admin, sim) = setup(dir);
    let metrics = free_port().unwrap();
    let text = config_text(dir, &sim.url(), &server.url(), 20, metrics);
    let mut d = Running::start_in(tempfile::tempdir().unwrap(), &text);
    wait_listed(&d);
    let mutator = Mutator::start(sim.handle(), "b");
    assert!(
        wait_until(WAIT, || admin.stream_messages("KUBE").unwrap_or(0) > 100),
        "log:\n{}",
        d.log_text()
    );
    server.kill();
    // Changes go on while the server is down; the sink holds its 20
    // records and the watch waits for room.
    let held = || {
        let s = status(metrics)?;
        let sink = &s["sinks"][0];
        Some(sink["queue_depth"] == 20 && sink["nats"]["connection"] != "connected")
    };
    assert!(
        wait_until(WAIT, || held() == Some(true)),
        "{:?}",
        status(metrics)
    );
    thread::sleep(Duration::from_millis(1000));
    assert_eq!(held(), Some(true), "{:?}", status(metrics));
    server.restart().unwrap();
    let mut admin = Admin::connect(server.port, &Auth::None).unwrap();
    thread::sleep(Duration::from_millis(300));
    mutator.stop();
    check_stream(&mut admin, &sim, &|| d.log_text());
    let log = d.log_text();
    assert!(log.contains("connection lost"), "log:\n{log}");
    assert!(log.contains("reconnected to"), "log:\n{log}");
    assert!(d.stop().success());
    drop(fs::remove_dir_all(dir.join("state")));
}

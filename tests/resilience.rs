//! Failures the watch engine must ride out: throttling, server errors, a
//! silent (dead) stream, names that need resolving.

mod common;

use common::*;
use kwatchd_sim::{Fault, FaultRule, Resource, Sim, SimOptions};
use serde_json::json;
use std::time::{Duration, SystemTime};

const WAIT: Duration = Duration::from_secs(20);

fn watch_times(sim: &Sim) -> Vec<(SystemTime, u16)> {
    sim.requests()
        .iter()
        .filter(|r| r.is_watch)
        .map(|r| (r.time, r.status))
        .collect()
}

#[test]
fn throttling_is_honoured_and_server_errors_back_off() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut w = WatchDef::pods("pods", "out");
    w.on_start = "skip";
    w.extra = "initial_list = \"list\"";
    let text = config(dir.path(), "", &sim.url(), &[w]);
    sim.add_fault(FaultRule {
        path_contains: "watch=".into(),
        times: 1,
        fault: Fault::Status {
            code: 429,
            retry_after: Some(2),
        },
    });
    sim.add_fault(FaultRule {
        path_contains: "watch=".into(),
        times: 2,
        fault: Fault::Status {
            code: 500,
            retry_after: None,
        },
    });
    let d = Running::start_in(dir, &text);
    assert!(
        wait_until(WAIT, || sim.open_watches() == 1),
        "log:\n{}",
        d.log_text()
    );
    let times = watch_times(&sim);
    assert!(times.len() >= 4, "{times:?}");
    assert_eq!(times[0].1, 429);
    let waited = times[1].0.duration_since(times[0].0).unwrap();
    assert!(
        waited >= Duration::from_millis(1900),
        "Retry-After: 2 was not honoured: retried after {waited:?}"
    );
    assert_eq!((times[1].1, times[2].1), (500, 500));
    assert!(d.log_text().contains("429"), "{}", d.log_text());
    sim.create(&Resource::pods(), "default", "after", &[], json!({}));
    assert!(wait_until(WAIT, || count_records(&d.path("out.jsonl")) == 1));
    // Throttling and errors needed one LIST only.
    assert_eq!(sim.requests().iter().filter(|r| !r.is_watch).count(), 1);
}

#[test]
fn a_silent_stream_is_presumed_dead_and_replaced() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut w = WatchDef::pods("pods", "out");
    w.on_start = "skip";
    // timeoutSeconds in [1, 2) s, idle deadline = that + 1 s.
    w.extra = "watch_timeout = \"1s\"";
    let text = config(dir.path(), "", &sim.url(), &[w]);
    let d = Running::start_in(dir, &text);
    assert!(wait_until(WAIT, || sim.open_watches() == 1));
    // The next watch gets a head and then nothing, for far longer than the
    // deadline: as behind a load balancer that dropped the flow.
    sim.add_fault(FaultRule {
        path_contains: "watch=".into(),
        times: 1,
        fault: Fault::Stall(Duration::from_secs(60)),
    });
    sim.end_watches();
    let pods = Resource::pods();
    sim.create(&pods, "default", "during-stall", &[], json!({}));
    assert!(
        wait_until(WAIT, || count_records(&d.path("out.jsonl")) == 1),
        "the stalled stream was not replaced; log:\n{}",
        d.log_text()
    );
    assert!(d.log_text().contains("presumed dead"), "{}", d.log_text());
}

#[test]
fn a_host_name_is_resolved_off_the_loop_and_every_address_is_tried() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    sim.create(&Resource::pods(), "default", "p", &[], json!({}));
    let dir = tempfile::tempdir().unwrap();
    // "localhost" may resolve to ::1 first, where nothing listens: the
    // daemon must go on to 127.0.0.1.
    let url = format!("http://localhost:{}", sim.addr().port());
    let text = config(dir.path(), "", &url, &[WatchDef::pods("pods", "out")]);
    let d = Running::start_in(dir, &text);
    assert!(
        wait_until(WAIT, || count_records(&d.path("out.jsonl")) == 1),
        "log:\n{}",
        d.log_text()
    );
}

#[test]
fn sigterm_flushes_and_exits_zero() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let pods = Resource::pods();
    for i in 0..50 {
        sim.create(&pods, "default", &format!("p{i}"), &[], json!({}));
    }
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), "", &sim.url(), &[WatchDef::pods("pods", "out")]);
    let mut d = Running::start_in(dir, &text);
    assert!(wait_until(WAIT, || count_records(&d.path("out.jsonl")) == 50));
    let status = d.stop();
    assert!(status.success(), "{status:?}; log:\n{}", d.log_text());
    assert!(d.log_text().contains("stopping"));
}

#[test]
fn sigusr1_reopens_files_after_rotation_and_sighup_does_not_kill() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut w = WatchDef::pods("pods", "out");
    w.on_start = "skip";
    let text = config(dir.path(), "", &sim.url(), &[w]);
    let mut d = Running::start_in(dir, &text);
    assert!(wait_until(WAIT, || sim.open_watches() == 1));
    let pods = Resource::pods();
    let out = d.path("out.jsonl");
    sim.create(&pods, "default", "before", &[], json!({}));
    assert!(wait_until(WAIT, || count_records(&out) == 1));
    let rotated = d.path("out.jsonl.1");
    std::fs::rename(&out, &rotated).unwrap();
    d.signal(libc::SIGUSR1);
    assert!(wait_until(WAIT, || d
        .log_text()
        .contains("reopening file sinks")));
    sim.create(&pods, "default", "after", &[], json!({}));
    assert!(
        wait_until(WAIT, || count_records(&out) == 1),
        "log:\n{}",
        d.log_text()
    );
    assert_eq!(records(&out)[0]["object"]["metadata"]["name"], "after");
    assert_eq!(records(&rotated).len(), 1);
    d.signal(libc::SIGHUP);
    assert!(wait_until(WAIT, || d.log_text().contains("SIGHUP")));
    sim.create(&pods, "default", "still-running", &[], json!({}));
    assert!(
        wait_until(WAIT, || count_records(&out) == 2),
        "log:\n{}",
        d.log_text()
    );
    assert!(d.stop().success());
}

/// A server whose accept queue is full drops SYNs, so a connect hangs the
/// way it does against a black-holed address; the connect timeout must
/// give up on it and retry, on loopback.
#[test]
fn a_connect_that_hangs_times_out_and_is_retried() {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue (never accepted): later SYNs are dropped.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        dir.path(),
        "connect_timeout = \"1s\"",
        &format!("http://{addr}"),
        &[WatchDef::pods("pods", "out")],
    );
    let mut d = Running::start_in(dir, &text);
    let timeouts = |d: &Running| d.log_text().matches("timed out after 1s").count();
    assert!(
        wait_until(Duration::from_secs(20), || timeouts(&d) >= 2),
        "log:\n{}",
        d.log_text()
    );
    assert!(d
        .log_text()
        .contains(&format!("connect to {addr} timed out")));
    assert!(d.stop().success());
    drop(fillers);
}

//! A sink that cannot take events slows the watch instead of growing memory,
//! and nothing is lost once it drains.

mod common;

use common::*;
use kwatchd_sim::{Resource, Sim, SimOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

const EVENTS: usize = 100_000;

#[test]
fn a_blocked_sink_bounds_memory_and_loses_nothing() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("out.jsonl");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Our end of the FIFO: open, never read until the end of the test.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut w = WatchDef::pods("pods", "out");
    w.on_start = "skip";
    let text = config(dir.path(), "", &sim.url(), &[w])
        .replace("[daemon]\n", "[daemon]\nsink_queue_events = 1000\n");
    let d = Running::start_in(dir, &text);
    assert!(
        wait_until(Duration::from_secs(15), || sim.open_watches() == 1),
        "log:\n{}",
        d.log_text()
    );

    let pods = Resource::pods();
    let pad = kwatchd_sim::pod_extra(2000);
    let started = Instant::now();
    for i in 0..EVENTS {
        sim.create(&pods, "default", &format!("p{i}"), &[], pad.clone());
    }
    eprintln!("created {EVENTS} objects in {:?}", started.elapsed());
    // ~200 MB of events are now queued in the emulator and TCP; the daemon
    // holds at most its queue bound. Give it time to (not) grow.
    std::thread::sleep(Duration::from_secs(2));
    let rss_blocked = d.rss_kib().expect("rss");
    assert!(
        rss_blocked < 64 * 1024,
        "daemon RSS {rss_blocked} KiB while its sink is blocked (created {EVENTS} in {:?})",
        started.elapsed()
    );

    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let mut last = Vec::new();
    let end = Instant::now() + Duration::from_secs(120);
    let mut max_rss = rss_blocked;
    while got < EVENTS && Instant::now() < end {
        match reader.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(5)),
            Ok(n) => {
                got += buf[..n].iter().filter(|b| **b == b'\n').count();
                last.clear();
                last.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("{e}"),
        }
        if got % 10_000 < 50 {
            max_rss = max_rss.max(d.rss_kib().unwrap_or(0));
        }
    }
    eprintln!(
        "drained in {:?}, peak RSS {max_rss} KiB (blocked: {rss_blocked} KiB)",
        started.elapsed()
    );
    assert_eq!(got, EVENTS, "events lost or stuck; log:\n{}", d.log_text());
    assert!(
        max_rss < 64 * 1024,
        "daemon RSS peaked at {max_rss} KiB while draining"
    );
    let tail = String::from_utf8_lossy(&last);
    assert!(
        tail.contains(&format!("\"name\":\"p{}\"", EVENTS - 1)),
        "the last event is the last one created"
    );
}

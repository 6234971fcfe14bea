//! Stream throughput: one watch streaming N pre-rendered ~4 KB pod events
//! (one chunk per line, as the API server writes them) into a file sink,
//! against a plain socket drain of the same bytes measured in the same run.
//!
//! `cargo bench --bench throughput` (N = 100000; `KWATCHD_BENCH_EVENTS` overrides,
//! `KWATCHD_BENCH_ROUNDS` sets the rounds, default 3).

mod common;

use common::{cpu_seconds, render, serve, WATCH_HEAD};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Reads the whole stream; with `sink`, also writes every byte read to it
/// (the cost of putting that many bytes into a file, without any decoding).
fn drain(addr: std::net::SocketAddr, expect: usize, mut sink: Option<std::fs::File>) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /api/v1/pods?watch=true HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0;
    while got < expect {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "server closed early");
        if let Some(f) = sink.as_mut() {
            f.write_all(&buf[..n]).expect("write");
        }
        got += n;
    }
    start.elapsed()
}

/// Wall time until the file holds every record (its exact size is known,
/// so completion is seen with a `stat`, not by reading 400 MB back), and the
/// daemon's CPU seconds.
fn daemon(addr: std::net::SocketAddr, events: usize, record_bytes: u64) -> (Duration, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("events.jsonl");
    let config = dir.path().join("kwatchd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nlog_level = \"warn\"\n[clusters.b]\nserver = \"http://{addr}\"\n[[watch]]\nname = \"pods\"\ncluster = \"b\"\napi_version = \"v1\"\nresource = \"pods\"\nsinks = [\"f\"]\n[sinks.f]\ntype = \"file\"\npath = \"{}\"\n",
            out.display()
        ),
    )
    .unwrap();
    let start = Instant::now();
    // KWATCHD_BENCH_WRAP="perf record -g -o /tmp/perf.data" profiles the daemon.
    let wrap = std::env::var("KWATCHD_BENCH_WRAP").unwrap_or_default();
    let mut argv: Vec<&str> = wrap.split_whitespace().collect();
    argv.push(env!("CARGO_BIN_EXE_kwatchd"));
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kwatchd");
    let deadline = start + Duration::from_secs(300);
    let size = || std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    while size() < record_bytes && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let took = start.elapsed();
    let cpu = cpu_seconds(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read(&out).expect("read records");
    assert_eq!(text.len() as u64, record_bytes, "unexpected output size");
    assert_eq!(
        text.iter().filter(|b| **b == b'\n').count(),
        events,
        "the daemon did not write every event"
    );
    (took, cpu)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let events: usize = std::env::var("KWATCHD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (body, payload, record_bytes) = render(events);
    let body = Arc::new(body);
    println!(
        "stream: {events} events, {:.1} MB of event lines ({} B per event), {:.1} MB on the wire",
        payload as f64 / 1e6,
        payload / events,
        body.len() as f64 / 1e6
    );
    let rounds: usize = std::env::var("KWATCHD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for round in 1..=rounds {
        let drain_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let drain_addr = drain_listener.local_addr().unwrap();
        let b = body.clone();
        thread::spawn(move || serve(drain_listener, common::Stream::Burst(b)));
        let d = drain(drain_addr, WATCH_HEAD.len() + body.len(), None);
        let tmp = tempfile::tempdir().expect("tempdir");
        let copy_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let copy_addr = copy_listener.local_addr().unwrap();
        let b = body.clone();
        thread::spawn(move || serve(copy_listener, common::Stream::Burst(b)));
        let file = std::fs::File::create(tmp.path().join("copy")).expect("create");
        let c = drain(copy_addr, WATCH_HEAD.len() + body.len(), Some(file));
        drop(tmp);

        let daemon_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let daemon_addr = daemon_listener.local_addr().unwrap();
        let b = body.clone();
        thread::spawn(move || serve(daemon_listener, common::Stream::Burst(b)));
        let (k, cpu) = daemon(daemon_addr, events, record_bytes);

        let rate = |t: Duration| {
            (
                events as f64 / t.as_secs_f64(),
                payload as f64 / 1e6 / t.as_secs_f64(),
            )
        };
        let (de, dm) = rate(d);
        let (ke, km) = rate(k);
        let (ce, cm) = rate(c);
        println!(
            "round {round}: socket drain {:.3} s ({de:.0} ev/s, {dm:.0} MB/s) | drain+copy to file {:.3} s ({ce:.0} ev/s, {cm:.0} MB/s) | kwatchd → file {:.3} s ({ke:.0} ev/s, {km:.0} MB/s, incl. start-up, {cpu:.2} CPU s) | kwatchd/drain = {:.0}%, kwatchd/copy = {:.0}%",
            d.as_secs_f64(),
            c.as_secs_f64(),
            k.as_secs_f64(),
            100.0 * d.as_secs_f64() / k.as_secs_f64(),
            100.0 * c.as_secs_f64() / k.as_secs_f64()
        );
    }
}

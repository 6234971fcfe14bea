//! Events/s from one watch into the NATS JetStream sink, next to a minimal
//! publisher of the same records with the same acknowledgement discipline,
//! measured in the same run against the same nats-server.
//!
//! `cargo bench --bench nats` (`KWATCHD_BENCH_NATS_EVENTS`, default 30000;
//! `KWATCHD_BENCH_NATS_ROUNDS`, default 3; `KWATCHD_BENCH_NATS_WINDOW`,
//! default 256; `KWATCHD_BENCH_BIN`, another build of the daemon;
//! `KWATCHD_BENCH_NATS_WRAP`, a command to run it under, e.g. `perf record
//! -g -o FILE --`; `KWATCHD_BENCH_NATS_TIMELINE=1`, what is read, queued and
//! delivered every 50 ms; `KWATCHD_BENCH_NATS_DAEMON`, more `[daemon]`
//! settings, e.g. `sync = "none"`). Needs `nats-server` on PATH.
//!
//! Both sides publish ~4.2 KB records (a pod with 62 env variables in
//! kwatchd's record envelope) with the same headers (Nats-Msg-Id,
//! Nats-Expected-Stream, Kwatchd-*), one subject per pod as kwatchd's
//! default subject template makes them, to a file-backed stream, at most 256
//! unacknowledged at once, and count a record only when its PubAck arrives.
//! The baseline is two threads on a blocking socket (one writes while the
//! window has room, one reads PubAcks), with no watch, no parsing and no
//! ledger: the ceiling the server and the loopback allow.

mod common;

use common::{pod, render, serve, Stream};
use kwatchd::nats::proto::{encode_hpub, HeaderBlock, Parser, ServerOp};
use kwatchd::nats::testing::{Admin, NatsServer};
use kwatchd::nats::Auth;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Unacknowledged publishes at once, both sides
/// (`KWATCHD_BENCH_NATS_WINDOW`, default 256 = the sink's default).
fn window() -> usize {
    env_or("KWATCHD_BENCH_NATS_WINDOW", 256)
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The record kwatchd writes for event `i`, and its headers.
fn record(i: usize) -> (Vec<u8>, Vec<u8>) {
    let object = pod(i, 2 + i);
    let line = format!(
        r#"{{"time":"2026-11-22T03:16:53.123Z","watch":"pods","cluster":"b","type":"ADDED","origin":"watch","object":{object}}}"#
    );
    let mut h = HeaderBlock::new();
    h.add(
        "Nats-Msg-Id",
        &format!("b/00000000-0000-4000-8000-{i:012}/{}/ADDED", 2 + i),
    );
    h.add("Nats-Expected-Stream", "BASE");
    h.add("Kwatchd-Watch", "pods");
    h.add("Kwatchd-Type", "ADDED");
    h.add("Kwatchd-Origin", "watch");
    (line.into_bytes(), h.finish())
}

/// The minimal publisher: `n` records, `window()` in flight; returns the time
/// from the first byte sent to the last PubAck.
fn baseline(port: u16, n: usize) -> Duration {
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..n).map(record).collect();
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_nodelay(true).expect("nodelay");
    let mut reader = sock.try_clone().expect("clone");
    let mut parser = Parser::new(1 << 20);
    let mut buf = vec![0u8; 64 * 1024];
    // INFO, then CONNECT + SUB + PING and wait for the PONG.
    sock.write_all(b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\nSUB _B.* 1\r\nPING\r\n")
        .expect("connect");
    'hello: loop {
        let k = reader.read(&mut buf).expect("read");
        parser.feed(&buf[..k]);
        while let Some(op) = parser.next_op().expect("protocol") {
            if op == ServerOp::Pong {
                break 'hello;
            }
        }
    }
    let (credit_tx, credit_rx) = mpsc::sync_channel::<()>(window());
    for _ in 0..window() {
        credit_tx.send(()).expect("credit");
    }
    let acks = thread::spawn(move || {
        let mut acked = 0;
        while acked < n {
            let k = reader.read(&mut buf).expect("read");
            parser.feed(&buf[..k]);
            while let Some(op) = parser.next_op().expect("protocol") {
                if let ServerOp::Msg(m) = op {
                    assert!(
                        m.payload.starts_with(b"{\"stream\":\"BASE\""),
                        "{}",
                        String::from_utf8_lossy(&m.payload)
                    );
                    acked += 1;
                    let _ = credit_tx.send(());
                }
            }
        }
    });
    let start = Instant::now();
    let mut out = Vec::with_capacity(1 << 20);
    let mut next = 0;
    while next < n {
        // Wait for room, then send everything the window allows in one
        // write, as kwatchd's loop does per turn.
        credit_rx.recv().expect("credit");
        let credits = 1 + credit_rx.try_iter().count();
        for _ in 0..credits {
            let Some((payload, headers)) = records.get(next) else {
                break;
            };
            // The subject kwatchd's default template gives this pod: one
            // subject per object, as the stream's per-subject index sees it.
            let subject = format!("base.b.pods.default.Pod.web-{next}");
            encode_hpub(&mut out, &subject, &format!("_B.{next}"), headers, payload);
            next += 1;
        }
        sock.write_all(&out).expect("write");
        out.clear();
    }
    acks.join().expect("ack reader");
    start.elapsed()
}

/// kwatchd with one watch streaming `n` pods into a nats sink; returns the
/// time from spawn until the stream holds all `n`.
fn kwatchd(sink_toml: &str, n: usize) -> (Duration, String) {
    let metrics = kwatchd::nats::testing::free_port().expect("port");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (body, _, _) = render(n);
    thread::spawn(move || serve(listener, Stream::Burst(Arc::new(body))));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kwatchd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nlog_level = \"info\"\nsink_queue_events = 100000\nmetrics_listen = \"127.0.0.1:{metrics}\"\nstate_dir = \"{}\"\n{}\n[clusters.b]\nserver = \"http://{addr}\"\n[[watch]]\nname = \"pods\"\ncluster = \"b\"\napi_version = \"v1\"\nresource = \"pods\"\ninitial_list = \"list\"\nsinks = [\"s\"]\n[sinks.s]\n{sink_toml}\n",
            dir.path().join("state").display(),
            // e.g. `sync = "none"`: what the state store's fsyncs cost.
            std::env::var("KWATCHD_BENCH_NATS_DAEMON").unwrap_or_default(),
        ),
    )
    .expect("config");
    let log = dir.path().join("log");
    let start = Instant::now();
    // KWATCHD_BENCH_NATS_WRAP="perf record -g -o FILE --" runs kwatchd
    // under that command (perf passes the SIGTERM on; `strace -o` does
    // not, and the run then hangs).
    let wrap = std::env::var("KWATCHD_BENCH_NATS_WRAP").unwrap_or_default();
    let mut argv: Vec<&str> = wrap.split_whitespace().collect();
    // KWATCHD_BENCH_BIN runs another build (e.g. an older commit's)
    // against the same server and baseline.
    let bin = std::env::var("KWATCHD_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_kwatchd").to_owned());
    argv.push(&bin);
    let mut child = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .args(["run", "--config"])
        .arg(&config)
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn kwatchd");
    // Done when kwatchd has every PubAck (what the baseline counts too).
    // Asking the stream instead would cost the server: STREAM.INFO walks
    // the per-subject state, 30,000 subjects here.
    // KWATCHD_BENCH_NATS_TIMELINE=1 prints what the watch has read, what
    // waits in the sink's queue and what is delivered, every 50 ms: whether
    // reading and publishing overlap.
    let timeline = std::env::var_os("KWATCHD_BENCH_NATS_TIMELINE").is_some();
    let mut next_line = Duration::ZERO;
    loop {
        let s = status(metrics);
        if timeline && start.elapsed() >= next_line {
            println!(
                "  {:>5} ms: read {:>6}, queued {:>6}, delivered {:>6}",
                start.elapsed().as_millis(),
                s.read,
                s.queued,
                s.delivered
            );
            next_line += Duration::from_millis(50);
        }
        if s.delivered >= n as u64 || start.elapsed() >= Duration::from_secs(300) {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed();
    let cpu = common::cpu_seconds(child.id());
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let summary = text
        .lines()
        .find(|l| l.contains("sink s:") && l.contains("delivered"))
        .map(|l| l.split("sink s: ").nth(1).unwrap_or(l).to_owned())
        .unwrap_or_default();
    (elapsed, format!("{cpu:.2} CPU s; {summary}"))
}

/// What /status says of the watch and its sink.
#[derive(Default)]
struct Status {
    /// Events the watch has read.
    read: u64,
    /// Records in the sink's queue.
    queued: u64,
    /// Records the sink has delivered.
    delivered: u64,
}

fn status(port: u16) -> Status {
    let Ok(mut sock) = TcpStream::connect(("127.0.0.1", port)) else {
        return Status::default();
    };
    let _ = sock.write_all(b"GET /status HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = sock.read_to_string(&mut text);
    let Some(v) = text
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|body| serde_json::from_str::<serde_json::Value>(body).ok())
    else {
        return Status::default();
    };
    let sink = &v["sinks"][0];
    Status {
        read: v["watches"][0]["events"].as_u64().unwrap_or(0),
        queued: sink["queue_depth"].as_u64().unwrap_or(0),
        delivered: sink["delivered"].as_u64().unwrap_or(0),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_or("KWATCHD_BENCH_NATS_EVENTS", 30_000);
    let rounds = env_or("KWATCHD_BENCH_NATS_ROUNDS", 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start(dir.path(), &[]).expect("nats-server");
    let mut admin = Admin::connect(server.port, &Auth::None).expect("admin");
    println!(
        "record size: {} bytes + {} header bytes",
        record(0).0.len(),
        record(0).1.len()
    );
    let (mut best_base, mut best_kw) = (0f64, 0f64);
    for round in 0..rounds {
        // Fresh streams each round: a new Nats-Msg-Id set, no duplicates.
        for s in ["BASE", "KUBE"] {
            let _ = admin.api(
                &format!("$JS.API.STREAM.DELETE.{s}"),
                &serde_json::json!({}),
            );
        }
        admin.create_stream("BASE", &["base.>"], 1).expect("stream");
        admin.create_stream("KUBE", &["kube.>"], 1).expect("stream");
        let server_cpu = || common::cpu_seconds(server.pid().unwrap_or(0));
        let (me0, srv0) = (common::cpu_seconds(std::process::id()), server_cpu());
        let b = baseline(server.port, n);
        let (me1, srv1) = (common::cpu_seconds(std::process::id()), server_cpu());
        let base = n as f64 / b.as_secs_f64();
        let nats_sink = format!(
            "type = \"nats\"\nservers = [\"nats://127.0.0.1:{}\"]\nstream = \"KUBE\"\nmax_in_flight = {}",
            server.port,
            window()
        );
        let (k, summary) = kwatchd(&nats_sink, n);
        let srv2 = server_cpu();
        println!(
            "round {round} CPU s: baseline publisher {:.2}, nats-server meanwhile {:.2} | nats-server during kwatchd {:.2} | load average {}",
            me1 - me0,
            srv1 - srv0,
            srv2 - srv1,
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
        );
        let kw = n as f64 / k.as_secs_f64();
        best_base = best_base.max(base);
        best_kw = best_kw.max(kw);
        println!(
            "round {round}: baseline publisher {n} in {:.2} s = {base:.0} events/s | kwatchd watch → nats sink {n} in {:.2} s = {kw:.0} events/s | kwatchd/baseline = {:.0}% ({summary})",
            b.as_secs_f64(),
            k.as_secs_f64(),
            100.0 * kw / base
        );
    }
    // Control: the same watch into a file sink, now, on this machine: how
    // fast the daemon reads and records the stream at all.
    let out = dir.path().join("control.jsonl");
    let (f, summary) = kwatchd(&format!("type = \"file\"\npath = \"{}\"", out.display()), n);
    let cpu = summary.split(';').next().unwrap_or_default();
    println!(
        "control: kwatchd watch → file sink {n} in {:.2} s = {:.0} events/s ({cpu})",
        f.as_secs_f64(),
        n as f64 / f.as_secs_f64()
    );
    println!(
        "best of {rounds}: baseline {best_base:.0} events/s, kwatchd {best_kw:.0} events/s, kwatchd/baseline = {:.0}%",
        100.0 * best_kw / best_base
    );
}

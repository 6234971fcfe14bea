//! Fan-out: W concurrent watches (one per namespace, plain or TLS) against
//! one server, idle for a while, then R events/s spread round-robin across
//! them. Reports the daemon's RSS, the CPU seconds it used while idle and
//! while streaming, and the latency from the server's write of an event's
//! last byte returning to the file sink's record arriving at a reader.
//!
//! `cargo bench --bench fanout` runs a quick version (10 s idle, 10 s of
//! events); the issue's figures are
//! `KWATCHD_BENCH_FANOUT_IDLE=60 KWATCHD_BENCH_FANOUT_SECS=60 cargo bench --bench fanout`.
//! Also `KWATCHD_BENCH_FANOUT_WATCHES` (1000), `KWATCHD_BENCH_FANOUT_RATE`
//! (1000 events/s), `KWATCHD_BENCH_FANOUT_MODES` ("baseline,plain,tls"; the
//! baseline is a plain mio relay copying the sockets to the FIFO, see `relay`),
//! `KWATCHD_BENCH_BIN` (another kwatchd binary to measure, e.g. an older
//! build for a before/after ratio on the same machine in the same hour).
//!
//! Each watch's LIST returns the one pod its events modify, so every event
//! is a MODIFIED of a known object at any number of watches (what issue 14's
//! "CPU per event with 10,000 watches within 2x of one watch" compares).
//! `KWATCHD_BENCH_FANOUT_NEW=1` lists nothing instead, the bench's earlier
//! behaviour: at 10,000 watches almost every event is then its watch's first
//! sight of its pod, a new object that passes the state store's gate (one
//! commit before its record is written), while the single watch's events
//! change a known object after the first; that figure measures the gate.
//!
//! How latency is measured: every event carries its sequence number in an
//! annotation; the connection thread that writes it stamps the time when
//! `write_all` (and, over TLS, the flush) returns. The file sink's path is a
//! FIFO whose reader thread stamps each record as `read` returns it. Both
//! stamps come from one `Instant` in this process, so no clock mapping is
//! involved; the figure includes the FIFO hop (a pipe write and a reader
//! wake-up, a few microseconds) on top of the daemon's write returning.
//!
//! The emulator is not used: it wakes every watch thread on every mutation
//! (one `Condvar`), i.e. a million wake-ups per second at 1,000 watches and
//! 1,000 events/s on two cores, which would measure the emulator. This
//! server has a thread per connection blocked on its own channel.

mod common;

use common::{cpu_seconds, percentiles, proc_status_kib};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::fd::FromRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A watch connection's queue: (event id, chunk bytes).
type EventTx = Sender<(usize, Vec<u8>)>;

/// Shared between the generator, the connection threads and the reader.
struct Shared {
    /// Watch i's connection, once its WATCH arrived.
    senders: Mutex<Vec<Option<EventTx>>>,
    watching: AtomicUsize,
    /// Per event: when the server's write returned / the record was read (ns since EPOCH, 0 = not yet).
    sent: Vec<AtomicU64>,
    read: Vec<AtomicU64>,
    received: AtomicUsize,
    /// Whether each watch's LIST returns the pod its events modify.
    list_pods: bool,
}

/// Watch `i`'s LIST answer: with `list_pods`, the one pod its events will
/// modify (so every event is a MODIFIED of a known object, whatever the
/// number of watches); without, nothing (so at many watches almost every
/// event is its watch's first sight of its pod, a new object that passes
/// the state store's gate).
fn list_body(i: usize, list_pods: bool) -> String {
    let items = if list_pods {
        format!(
            r#"{{"kind":"Pod","apiVersion":"v1","metadata":{{"name":"p{i}","namespace":"ns-{i}","uid":"uid-{i}","resourceVersion":"1"}},"spec":{{"nodeName":"node-1"}}}}"#
        )
    } else {
        String::new()
    };
    format!(
        r#"{{"kind":"PodList","apiVersion":"v1","metadata":{{"resourceVersion":"1"}},"items":[{items}]}}"#
    )
}

/// Reads one request head; returns its request line.
fn read_head(r: &mut impl BufRead) -> Option<String> {
    let mut first = String::new();
    if r.read_line(&mut first).ok()? == 0 {
        return None;
    }
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            return Some(first);
        }
    }
}

fn namespace_index(request_line: &str) -> Option<usize> {
    request_line
        .split("/namespaces/ns-")
        .nth(1)?
        .split('/')
        .next()?
        .parse()
        .ok()
}

fn serve_conn<S: Read + Write>(stream: S, shared: &Shared) {
    let mut r = BufReader::new(stream);
    while let Some(line) = read_head(&mut r) {
        let Some(i) = namespace_index(&line) else {
            return;
        };
        if line.contains("watch=") {
            let (tx, rx) = channel::<(usize, Vec<u8>)>();
            let w = r.get_mut();
            if w.write_all(common::WATCH_HEAD)
                .and_then(|_| w.flush())
                .is_err()
            {
                return;
            }
            if let Some(slot) = shared
                .senders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(i)
            {
                *slot = Some(tx);
            }
            shared.watching.fetch_add(1, Ordering::SeqCst);
            while let Ok((id, chunk)) = rx.recv() {
                if w.write_all(&chunk).and_then(|_| w.flush()).is_err() {
                    return;
                }
                shared.sent[id].store(now_ns(), Ordering::SeqCst);
            }
            return;
        }
        let body = list_body(i, shared.list_pods);
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let w = r.get_mut();
        if w.write_all(resp.as_bytes())
            .and_then(|_| w.flush())
            .is_err()
        {
            return;
        }
    }
}

fn serve(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        let Ok(tcp) = conn else { continue };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        let spawned = thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || match tls {
                Some(cfg) => {
                    let Ok(c) = rustls::ServerConnection::new(cfg) else {
                        return;
                    };
                    serve_conn(rustls::StreamOwned::new(c, tcp), &shared)
                }
                None => serve_conn(tcp, &shared),
            });
        if spawned.is_err() {
            eprintln!("cannot start a connection thread");
        }
    }
}

/// The FIFO reader: stamps each record as it is read.
fn read_fifo(path: &std::path::Path, shared: Arc<Shared>) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // O_RDWR: the open does not wait for a writer, and the FIFO never
    // reports end-of-file when the daemon closes it.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open fifo");
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    let key = b"\"bench/id\":\"";
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
            return;
        }
        let t = now_ns();
        let Some(at) = memfind(&line, key) else {
            continue;
        };
        let digits = &line[at + key.len()..];
        let end = digits.iter().position(|b| *b == b'"').unwrap_or(0);
        if let Some(id) = std::str::from_utf8(&digits[..end])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        {
            if let Some(slot) = shared.read.get(id) {
                slot.store(t, Ordering::SeqCst);
                shared.received.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn event_chunk(id: usize, watch: usize) -> Vec<u8> {
    let pad = "x".repeat(600);
    let line = format!(
        "{{\"type\":\"MODIFIED\",\"object\":{{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{{\"name\":\"p{watch}\",\"namespace\":\"ns-{watch}\",\"uid\":\"uid-{watch}\",\"resourceVersion\":\"{}\",\"annotations\":{{\"bench/id\":\"{id}\"}}}},\"spec\":{{\"nodeName\":\"node-1\",\"pad\":\"{pad}\"}}}}}}\n",
        id + 2
    );
    format!("{:x}\r\n{line}\r\n", line.len()).into_bytes()
}

/// The baseline: one thread, one mio poll over every watch socket, copying
/// what arrives to the FIFO as it is (no TLS, no decoding, no parsing):
/// the floor the machine's scheduler, loopback and pipe put under latency.
fn relay(addr: std::net::SocketAddr, watches: usize, fifo: &std::path::Path) {
    use mio::net::TcpStream;
    use mio::{Events, Interest, Poll, Token};
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open fifo for writing");
    let mut out = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut poll = Poll::new().expect("poll");
    let mut socks = Vec::with_capacity(watches);
    for i in 0..watches {
        let std = std::net::TcpStream::connect(addr).expect("connect");
        let _ = std.set_nodelay(true);
        let mut w = std.try_clone().expect("clone");
        w.write_all(
            format!("GET /api/v1/namespaces/ns-{i}/pods?watch=true HTTP/1.1\r\nHost: b\r\n\r\n")
                .as_bytes(),
        )
        .expect("send");
        std.set_nonblocking(true).expect("nonblocking");
        let mut s = TcpStream::from_std(std);
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)
            .expect("register");
        socks.push(s);
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        if poll.poll(&mut events, None).is_err() {
            continue;
        }
        for ev in events.iter() {
            let s = &mut socks[ev.token().0];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if out.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => return,
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Run {
    watches: usize,
    idle: Duration,
    secs: usize,
    rate: usize,
    list_pods: bool,
}

fn run_one(tls: bool, relay_only: bool, run: &Run) {
    let Run {
        watches,
        idle,
        secs,
        rate,
        list_pods,
    } = *run;
    let events = secs * rate;
    let shared = Arc::new(Shared {
        senders: Mutex::new(vec![None; watches]),
        watching: AtomicUsize::new(0),
        sent: (0..events).map(|_| AtomicU64::new(0)).collect(),
        read: (0..events).map(|_| AtomicU64::new(0)).collect(),
        received: AtomicUsize::new(0),
        list_pods,
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let (server_tls, ca) = if tls {
        let (cfg, pem) = kwatchd_sim::tls_server_config().expect("tls");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pem).expect("ca");
        (Some(cfg), Some(ca))
    } else {
        (None, None)
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    {
        let shared = shared.clone();
        thread::spawn(move || serve(listener, server_tls, shared));
    }
    let fifo = dir.path().join("events.fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    {
        let shared = shared.clone();
        let fifo = fifo.clone();
        thread::spawn(move || read_fifo(&fifo, shared));
    }
    // Give the reader its open before the daemon's (O_NONBLOCK) open.
    thread::sleep(Duration::from_millis(100));

    let mut config = format!(
        "[daemon]\nlog_level = \"warn\"\nstate_dir = \"{}\"\n[clusters.b]\nserver = \"{}://{addr}\"\n",
        dir.path().join("state").display(),
        if tls { "https" } else { "http" }
    );
    if let Some(ca) = &ca {
        config.push_str(&format!("certificate_authority = \"{}\"\n", ca.display()));
    }
    for i in 0..watches {
        config.push_str(&format!(
            "[[watch]]\nname = \"w{i}\"\ncluster = \"b\"\napi_version = \"v1\"\nresource = \"pods\"\nnamespace = \"ns-{i}\"\non_start = \"skip\"\nwatch_timeout = \"1h\"\ninitial_list = \"list\"\nsinks = [\"f\"]\n"
        ));
    }
    config.push_str(&format!(
        "[sinks.f]\ntype = \"file\"\npath = \"{}\"\n",
        fifo.display()
    ));
    let config_path = dir.path().join("kwatchd.toml");
    std::fs::write(&config_path, config).expect("config");
    let started = Instant::now();
    if relay_only {
        let fifo = fifo.clone();
        thread::spawn(move || relay(addr, watches, &fifo));
        while shared.watching.load(Ordering::SeqCst) < watches {
            assert!(started.elapsed() < Duration::from_secs(60), "relay watches");
            thread::sleep(Duration::from_millis(10));
        }
        let senders: Vec<EventTx> = shared
            .senders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| s.clone().expect("every watch registered"))
            .collect();
        let got = stream_events(&shared, &senders, events, rate, watches);
        let (p50, p99, max) = latencies(&shared, events);
        println!(
            "baseline: a mio relay copying the {watches} plain sockets to the FIFO: {got}/{events} read, latency p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            p50 as f64 / 1000.0, p99 as f64 / 1000.0, max as f64 / 1000.0
        );
        return;
    }
    // Another build of kwatchd (a before/after comparison in one run).
    let bin = std::env::var_os("KWATCHD_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_kwatchd").into());
    let mut child = Command::new(&bin)
        .args(["run", "--config"])
        .arg(&config_path)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kwatchd");
    let pid = child.id();
    while shared.watching.load(Ordering::SeqCst) < watches {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "only {} of {watches} watches opened",
            shared.watching.load(Ordering::SeqCst)
        );
        thread::sleep(Duration::from_millis(10));
    }
    let all_open = started.elapsed();
    let rss_open = proc_status_kib(pid, "VmRSS").unwrap_or(0);
    let cpu0 = cpu_seconds(pid);
    thread::sleep(idle);
    let cpu_idle = cpu_seconds(pid) - cpu0;
    let rss_idle = proc_status_kib(pid, "VmRSS").unwrap_or(0);

    let senders: Vec<EventTx> = shared
        .senders
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|s| s.clone().expect("every watch registered"))
        .collect();
    let cpu1 = cpu_seconds(pid);
    let t0 = Instant::now();
    stream_events(&shared, &senders, events, rate, watches);
    let streaming = t0.elapsed();
    let cpu_events = cpu_seconds(pid) - cpu1;
    let rss = proc_status_kib(pid, "VmRSS").unwrap_or(0);
    let hwm = proc_status_kib(pid, "VmHWM").unwrap_or(0);
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = child.wait();

    let got = shared.received.load(Ordering::SeqCst);
    let (p50, p99, max) = latencies(&shared, events);
    println!(
        "fan-out {} {watches} watches ({}): all open after {:.1} s, RSS {:.1} MB; idle {:.0} s: {:.3} CPU s, RSS {:.1} MB; {rate} events/s for {secs} s: {got}/{events} recorded, latency (server write returned → record read from the FIFO) p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {:.2} CPU s over {:.1} s ({:.0}% of a core); RSS {:.1} MB, peak {:.1} MB",
        if tls { "TLS" } else { "plain" },
        if list_pods {
            "events modify listed pods"
        } else {
            "nothing listed: events are new objects"
        },
        all_open.as_secs_f64(),
        rss_open as f64 / 1024.0,
        idle.as_secs_f64(),
        cpu_idle,
        rss_idle as f64 / 1024.0,
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        max as f64 / 1000.0,
        cpu_events,
        streaming.as_secs_f64(),
        100.0 * cpu_events / streaming.as_secs_f64(),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
    );
}

/// Sends `events` events at `rate`, round-robin, and waits (bounded) until
/// the reader has them all; returns how many it has.
fn stream_events(
    shared: &Shared,
    senders: &[EventTx],
    events: usize,
    rate: usize,
    watches: usize,
) -> usize {
    // Rendered before the clock starts.
    let chunks: Vec<Vec<u8>> = (0..events)
        .map(|id| event_chunk(id, id % watches))
        .collect();
    let t0 = Instant::now();
    for (id, chunk) in chunks.into_iter().enumerate() {
        let due = t0 + Duration::from_secs_f64(id as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let _ = senders[id % watches].send((id, chunk));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while shared.received.load(Ordering::SeqCst) < events && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    shared.received.load(Ordering::SeqCst)
}

/// (p50, p99, max) in microseconds over the events both stamped.
fn latencies(shared: &Shared, events: usize) -> (u64, u64, u64) {
    let mut lat: Vec<u64> = (0..events)
        .filter_map(|i| {
            let (s, r) = (
                shared.sent[i].load(Ordering::SeqCst),
                shared.read[i].load(Ordering::SeqCst),
            );
            (s > 0 && r > 0).then(|| r.saturating_sub(s) / 1000)
        })
        .collect();
    percentiles(&mut lat)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let _ = now_ns();
    let watches = env_or("KWATCHD_BENCH_FANOUT_WATCHES", 1000);
    let idle = Duration::from_secs(env_or("KWATCHD_BENCH_FANOUT_IDLE", 10) as u64);
    let secs = env_or("KWATCHD_BENCH_FANOUT_SECS", 10);
    let rate = env_or("KWATCHD_BENCH_FANOUT_RATE", 1000);
    let modes =
        std::env::var("KWATCHD_BENCH_FANOUT_MODES").unwrap_or_else(|_| "baseline,plain,tls".into());
    let run = Run {
        watches,
        idle,
        secs,
        rate,
        list_pods: std::env::var_os("KWATCHD_BENCH_FANOUT_NEW").is_none_or(|v| v != "1"),
    };
    for mode in modes.split(',').map(str::trim) {
        run_one(mode == "tls", mode == "baseline", &run);
    }
}

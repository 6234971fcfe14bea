//! Sinks that act: events/s through an exec sink running `/bin/true` per
//! event and through a webhook sink to a loopback receiver, and the hook
//! start latency (event read → child spawned) at a steady rate.
//!
//! `cargo bench --bench sinks` (`KWATCHD_BENCH_HOOK_EVENTS`, default 3000;
//! `KWATCHD_BENCH_POST_EVENTS`, default 20000; `KWATCHD_BENCH_HOOK_RATES`,
//! default "200,1000", and `KWATCHD_BENCH_HOOK_SECS`, default 3, for the
//! latency runs; `KWATCHD_BENCH_ONLY=exec` or `webhook`).
//! The baseline for the exec figures is the same machine spawning and
//! reaping `/bin/true` in a plain loop (std::process, 8 at a time), measured
//! in the same run.

mod common;

#[path = "../tests/common/receiver.rs"]
mod receiver;

use common::{chunks, serve, Stream};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn server(stream: Stream) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || serve(listener, stream));
    addr
}

struct Run {
    elapsed: Duration,
    log: String,
}

/// Runs the daemon with one watch feeding `sink_toml`, lets the stream play,
/// then SIGTERMs it once `done` says so (the drain delivers the rest) and
/// returns the time from start to exit, and its log.
fn run_daemon(
    addr: std::net::SocketAddr,
    sink_toml: &str,
    mut done: impl FnMut(&std::path::Path) -> bool,
) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kwatchd.toml");
    let state = dir.path().join("state").display().to_string();
    std::fs::write(
        &config,
        format!(
            "[daemon]\nlog_level = \"debug\"\nsink_queue_events = 100000\nstate_dir = \"{state}\"\n[clusters.b]\nserver = \"http://{addr}\"\n[[watch]]\nname = \"pods\"\ncluster = \"b\"\napi_version = \"v1\"\nresource = \"pods\"\ninitial_list = \"list\"\nsinks = [\"s\"]\n[sinks.s]\n{sink_toml}\n"
        ),
    )
    .expect("config");
    let log = dir.path().join("log");
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kwatchd"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn kwatchd");
    while !done(&log) && start.elapsed() < Duration::from_secs(300) {
        thread::sleep(Duration::from_millis(5));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    Run {
        elapsed: start.elapsed(),
        log: std::fs::read_to_string(&log).unwrap_or_default(),
    }
}

fn summary_line(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("sink s:"))
        .map(|l| l.split("sink s: ").nth(1).unwrap_or(l).to_owned())
        .unwrap_or_else(|| "(no summary in the log)".into())
}

fn delivered(log: &str) -> usize {
    summary_line(log)
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Spawning and reaping `/bin/true` n times, `parallel` at a time.
fn spawn_baseline(n: usize, parallel: usize) -> Duration {
    let start = Instant::now();
    let mut running = Vec::new();
    for _ in 0..n {
        if running.len() == parallel {
            let mut c: std::process::Child = running.remove(0);
            let _ = c.wait();
        }
        running.push(
            Command::new("/bin/true")
                .stdin(Stdio::piped())
                .spawn()
                .expect("spawn"),
        );
    }
    for mut c in running {
        let _ = c.wait();
    }
    start.elapsed()
}

/// The same machine spawning `/bin/true` on a schedule of `rate` per second
/// for `secs`, up to `parallel` alive (finished ones reaped without
/// waiting): latency from each spawn's due time to `spawn` returning, in
/// microseconds (p50, p99, max). What the daemon's hook start latency is
/// up against.
fn paced_spawn_baseline(rate: f64, secs: f64, parallel: usize) -> (u64, u64, u64) {
    let n = (rate * secs) as usize;
    let start = Instant::now();
    let mut running: Vec<std::process::Child> = Vec::new();
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        loop {
            running.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
            if running.len() < parallel {
                break;
            }
            thread::sleep(Duration::from_micros(50));
        }
        running.push(
            Command::new("/bin/true")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn"),
        );
        lat.push(Instant::now().saturating_duration_since(due).as_micros() as u64);
    }
    for mut c in running {
        let _ = c.wait();
    }
    common::percentiles(&mut lat)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let hooks = env_or("KWATCHD_BENCH_HOOK_EVENTS", 3000);
    let posts = env_or("KWATCHD_BENCH_POST_EVENTS", 20000);
    let exec_sink =
        |c: usize| format!("type = \"exec\"\ncommand = [\"/bin/true\"]\nmax_concurrent = {c}\n");

    let only = std::env::var("KWATCHD_BENCH_ONLY").unwrap_or_default();
    let only_webhook = only == "webhook";
    let only_exec = only == "exec";
    let hook_secs = env_or("KWATCHD_BENCH_HOOK_SECS", 3) as f64;
    let rates: Vec<f64> = std::env::var("KWATCHD_BENCH_HOOK_RATES")
        .unwrap_or_else(|_| "200,1000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    // Exec throughput: every event at once; the drain at SIGTERM runs them all.
    for parallel in [1, 8] {
        if only_webhook {
            break;
        }
        let base = spawn_baseline(hooks, parallel);
        let addr = server(Stream::Paced {
            chunks: Arc::new(chunks(hooks, 0)),
            per_second: 1e9,
        });
        // Done once every hook has been started (logged at debug level).
        let started = |log: &std::path::Path| {
            std::fs::read_to_string(log).map_or(0, |t| t.matches("hook started").count()) >= hooks
        };
        let r = run_daemon(addr, &exec_sink(parallel), started);
        let n = delivered(&r.log);
        println!(
            "exec /bin/true, max_concurrent {parallel}: {n} events in {:.2} s = {:.0} events/s | baseline spawn+reap loop: {:.0}/s | kwatchd/baseline = {:.0}%",
            r.elapsed.as_secs_f64(),
            n as f64 / r.elapsed.as_secs_f64(),
            hooks as f64 / base.as_secs_f64(),
            100.0 * (n as f64 / r.elapsed.as_secs_f64()) / (hooks as f64 / base.as_secs_f64())
        );
    }

    // Hook start latency at a steady rate.
    for rate in rates {
        if only_webhook {
            break;
        }
        let n = (rate * hook_secs) as usize;
        let addr = server(Stream::Paced {
            chunks: Arc::new(chunks(n, 0)),
            per_second: rate,
        });
        let t0 = Instant::now();
        let r = run_daemon(addr, &exec_sink(8), |_| {
            t0.elapsed() > Duration::from_secs_f64(hook_secs + 0.2)
        });
        let (p50, p99, max) = paced_spawn_baseline(rate, hook_secs, 8);
        println!(
            "exec /bin/true at {rate:.0} events/s for {hook_secs} s: {} | baseline paced spawn loop (8 alive at most): spawn latency p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            summary_line(&r.log),
            p50 as f64 / 1e3,
            p99 as f64 / 1e3,
            max as f64 / 1e3
        );
    }

    // Webhook throughput to a loopback receiver (a thread per connection).
    for parallel in [1, 8] {
        if only_exec {
            break;
        }
        let rx = receiver::Receiver::start(&[]);
        let url = rx.url("/hook");
        let addr = server(Stream::Paced {
            chunks: Arc::new(chunks(posts, 0)),
            per_second: 1e9,
        });
        let sink = format!("type = \"webhook\"\nurl = \"{url}\"\nmax_concurrent = {parallel}\n");
        let r = run_daemon(addr, &sink, |_| rx.received().len() >= posts);
        if std::env::var("KWATCHD_BENCH_SHOW_LOG").is_ok() {
            eprintln!("{}", r.log);
        }
        println!(
            "webhook, max_concurrent {parallel}: {} POSTs in {:.2} s = {:.0} events/s ({})",
            rx.received().len(),
            r.elapsed.as_secs_f64(),
            rx.received().len() as f64 / r.elapsed.as_secs_f64(),
            summary_line(&r.log)
        );
    }
}

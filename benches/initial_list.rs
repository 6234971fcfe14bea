//! Initial list: N objects served as a paginated LIST (limit=500, continue
//! tokens), then a watch. Wall time until the daemon is done with the list
//! (with `on_start = "added"`: every item written to the file sink; with
//! `on_start = "skip"`: the WATCH that follows the last page arrives), and
//! the daemon's peak RSS (VmHWM) — against a plain client draining the same
//! pages over one keep-alive connection, measured in the same run.
//!
//! `cargo bench --bench initial_list` (`KWATCHD_BENCH_LIST_OBJECTS`, default
//! 250000; `KWATCHD_BENCH_LIST_ENV`, padding variables per pod, default
//! "62,8" = ~4.1 KB and ~1.1 KB objects).
//!
//! `KWATCHD_BENCH_LIST_MODES` (default "added,skip,changes") picks the
//! runs; "changes" is `on_start = "added"` with `changes =
//! '[.spec.containers[].image]'` and a sink `transform = 'empty'` (nothing
//! written): its peak RSS against "skip" (nothing written, no filter) is
//! what the per-object memory of `changes` costs
//! (`KWATCHD_BENCH_LIST_CHANGES` sets its program).
//!
//! "restart" (issue 14, restart-to-resumed): a daemon with `on_start =
//! "skip"` lists the N objects into a fresh state store and is stopped
//! (SIGTERM, after the store file stopped growing); a second daemon is
//! started on that store, and the time from its exec to its WATCH from the
//! saved resourceVersion arriving at the server is reported, with its CPU
//! seconds and peak RSS, against the first daemon's list-to-watch time in
//! the same run. It must not LIST (counted).
//!
//! The pages are rendered once, in memory, before anything is timed: the
//! emulator would build 1 GB of objects and snapshot them, which measures
//! the emulator rather than the daemon.

mod common;

use common::{cpu_seconds, pod_with_env, proc_status_kib};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const PAGE: usize = 500;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Pages {
    /// Complete HTTP responses, page k answers `continue=pK` (page 0: none).
    responses: Vec<Vec<u8>>,
    list_rv: usize,
    item_bytes: u64,
    /// Bytes the file sink writes for every item with `origin` "list".
    record_bytes: u64,
}

fn render(objects: usize, env_vars: usize) -> Pages {
    let frame = r#"{"time":"2026-11-22T03:16:53.123Z","watch":"pods","cluster":"b","type":"ADDED","origin":"list","object":}"#.len() + 1;
    let list_rv = objects + 1;
    let pages = objects.div_ceil(PAGE);
    let mut responses = Vec::with_capacity(pages);
    let (mut item_bytes, mut record_bytes) = (0u64, 0u64);
    for k in 0..pages {
        let cont = if k + 1 < pages {
            format!("p{}", k + 1)
        } else {
            String::new()
        };
        let mut body = format!(
            r#"{{"kind":"PodList","apiVersion":"v1","metadata":{{"resourceVersion":"{list_rv}","continue":"{cont}"}},"items":["#
        )
        .into_bytes();
        for i in k * PAGE..((k + 1) * PAGE).min(objects) {
            if i > k * PAGE {
                body.push(b',');
            }
            let pod = pod_with_env(i, i + 1, env_vars);
            item_bytes += pod.len() as u64;
            record_bytes += (frame + pod.len()) as u64;
            body.extend_from_slice(pod.as_bytes());
        }
        body.extend_from_slice(b"]}");
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        responses.push(r);
    }
    Pages {
        responses,
        list_rv,
        item_bytes,
        record_bytes,
    }
}

/// Arrival of the first WATCH since it was last reset: the list is done.
static WATCH_AT: Mutex<Option<Instant>> = Mutex::new(None);
/// That WATCH's request line.
static WATCH_LINE: Mutex<String> = Mutex::new(String::new());
/// LIST pages served.
static LISTS: AtomicUsize = AtomicUsize::new(0);

/// Serves the pages by continue token, and holds watches open and silent.
fn serve(listener: TcpListener, pages: Arc<Pages>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { return };
        let _ = conn.set_nodelay(true);
        let pages = pages.clone();
        thread::spawn(move || {
            let Ok(mut writer) = conn.try_clone() else {
                return;
            };
            let mut reader = BufReader::new(conn);
            loop {
                let mut first = String::new();
                if reader.read_line(&mut first).unwrap_or(0) == 0 {
                    return;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                if first.contains("watch=") {
                    let mut at = WATCH_AT.lock().unwrap_or_else(|e| e.into_inner());
                    if at.is_none() {
                        *at = Some(Instant::now());
                        *WATCH_LINE.lock().unwrap_or_else(|e| e.into_inner()) = first.clone();
                    }
                    drop(at);
                    let _ = writer.write_all(common::WATCH_HEAD);
                    thread::sleep(Duration::from_secs(3600));
                    return;
                }
                let k = first
                    .split("continue=p")
                    .nth(1)
                    .and_then(|t| t.split([' ', '&']).next())
                    .and_then(|t| t.parse::<usize>().ok())
                    .unwrap_or(0);
                LISTS.fetch_add(1, Ordering::SeqCst);
                let Some(resp) = pages.responses.get(k) else {
                    return;
                };
                if writer.write_all(resp).is_err() {
                    return;
                }
            }
        });
    }
}

/// A plain client: every page over one keep-alive connection, bodies read
/// and discarded, the continue token found in the metadata.
fn drain(addr: SocketAddr, pages: &Pages) -> Duration {
    let start = Instant::now();
    let s = TcpStream::connect(addr).expect("connect");
    let _ = s.set_nodelay(true);
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::with_capacity(256 << 10, s);
    let mut cont = String::new();
    let mut body = Vec::new();
    let mut n = 0;
    loop {
        let target = if cont.is_empty() {
            "/api/v1/pods?limit=500".to_owned()
        } else {
            format!("/api/v1/pods?limit=500&continue={cont}")
        };
        w.write_all(format!("GET {target} HTTP/1.1\r\nHost: b\r\n\r\n").as_bytes())
            .expect("send");
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).expect("head");
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length: ") {
                len = v.trim().parse().expect("length");
            }
        }
        body.resize(len, 0);
        r.read_exact(&mut body).expect("body");
        n += 1;
        let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        cont = head
            .split("\"continue\":\"")
            .nth(1)
            .and_then(|t| t.split('"').next())
            .unwrap_or("")
            .to_owned();
        if cont.is_empty() {
            break;
        }
    }
    assert_eq!(n, pages.responses.len());
    start.elapsed()
}

struct DaemonRun {
    elapsed: Duration,
    hwm_kib: u64,
    cpu: f64,
}

fn daemon(addr: SocketAddr, pages: &Pages, mode: &str) -> DaemonRun {
    // KWATCHD_BENCH_LIST_CHANGES replaces the program, e.g. with one the
    // filter cannot cut (`. as $o | [$o.spec.containers[].image]`).
    let changes = std::env::var("KWATCHD_BENCH_LIST_CHANGES")
        .unwrap_or_else(|_| "[.spec.containers[].image]".into());
    let changes = format!("changes = '{changes}'\n");
    let (on_start, watch_extra, sink_extra) = match mode {
        "changes" => ("added", changes.as_str(), "transform = 'empty'\n"),
        other => (other, "", ""),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("events.jsonl");
    let config = write_config(dir.path(), addr, on_start, watch_extra, sink_extra);
    let start = Instant::now();
    let child = spawn(&config);
    let pid = child.id();
    let want = if mode == "added" {
        pages.record_bytes
    } else {
        0
    };
    let elapsed = loop {
        let written = std::fs::metadata(&out).map_or(0, |m| m.len());
        let listed = WATCH_AT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t > start);
        if written >= want && listed {
            break start.elapsed();
        }
        if start.elapsed() > Duration::from_secs(600) {
            panic!("the daemon did not finish the list in 600 s");
        }
        thread::sleep(Duration::from_millis(2));
    };
    let hwm_kib = proc_status_kib(pid, "VmHWM").unwrap_or(0);
    let cpu = cpu_seconds(pid);
    sigterm(child);
    assert_eq!(
        std::fs::metadata(&out).map_or(0, |m| m.len()),
        want,
        "records written"
    );
    DaemonRun {
        elapsed,
        hwm_kib,
        cpu,
    }
}

/// The one-watch configuration in `dir` (state there, records in
/// `dir/events.jsonl`).
fn write_config(
    dir: &std::path::Path,
    addr: SocketAddr,
    on_start: &str,
    watch_extra: &str,
    sink_extra: &str,
) -> std::path::PathBuf {
    let config = dir.join("kwatchd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nlog_level = \"warn\"\nstate_dir = \"{}\"\n[clusters.b]\nserver = \"http://{addr}\"\n[[watch]]\nname = \"pods\"\ncluster = \"b\"\napi_version = \"v1\"\nresource = \"pods\"\ninitial_list = \"list\"\non_start = \"{on_start}\"\nsinks = [\"f\"]\n{watch_extra}[sinks.f]\ntype = \"file\"\npath = \"{}\"\n{sink_extra}",
            dir.display(),
            dir.join("events.jsonl").display()
        ),
    )
    .expect("config");
    config
}

/// `kwatchd run --config CONFIG`. KWATCHD_BENCH_WRAP="heaptrack" runs the
/// daemon under a tool (the peak RSS is then the tool's); SIGTERM reaches
/// both through their process group.
fn spawn(config: &std::path::Path) -> std::process::Child {
    common::spawn_daemon(env!("CARGO_BIN_EXE_kwatchd"), config)
}

/// Waits (bounded) for the next WATCH request since `start`.
fn wait_for_watch(start: Instant) -> Duration {
    loop {
        if let Some(t) = *WATCH_AT.lock().unwrap_or_else(|e| e.into_inner()) {
            return t.duration_since(start);
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no WATCH within 600 s"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

fn sigterm(child: std::process::Child) {
    common::stop(child);
}

/// Restart-to-resumed on a store of every object (see the module header).
fn restart(addr: SocketAddr, objects: usize) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), addr, "skip", "", "");
    let store = dir.path().join("kwatchd.redb");
    *WATCH_AT.lock().unwrap_or_else(|e| e.into_inner()) = None;
    LISTS.store(0, Ordering::SeqCst);
    let start = Instant::now();
    let child = spawn(&config);
    let listed = wait_for_watch(start);
    let cpu_list = cpu_seconds(child.id());
    // Every object in the store before the stop: the file stops growing.
    let mut last = (0, Instant::now());
    while last.1.elapsed() < Duration::from_secs(3) {
        let len = std::fs::metadata(&store).map_or(0, |m| m.len());
        if len != last.0 {
            last = (len, Instant::now());
        }
        thread::sleep(Duration::from_millis(100));
    }
    sigterm(child);
    let size = std::fs::metadata(&store).map_or(0, |m| m.len());

    *WATCH_AT.lock().unwrap_or_else(|e| e.into_inner()) = None;
    LISTS.store(0, Ordering::SeqCst);
    let start = Instant::now();
    let child = spawn(&config);
    let pid = child.id();
    let resumed = wait_for_watch(start);
    let cpu = cpu_seconds(pid);
    let hwm = proc_status_kib(pid, "VmHWM").unwrap_or(0);
    let lists = LISTS.load(Ordering::SeqCst);
    let line = WATCH_LINE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .trim()
        .to_string();
    sigterm(child);
    assert_eq!(lists, 0, "the restarted daemon listed again: {line}");
    assert!(
        line.contains(&format!("resourceVersion={}", objects + 1)),
        "not resumed from the saved position: {line}"
    );
    format!(
        "restart: first daemon listed {objects} objects to its WATCH in {:.2} s ({cpu_list:.1} CPU s), store {:.1} MB; restarted daemon exec → WATCH from the saved resourceVersion in {:.2} s ({cpu:.2} CPU s, peak RSS {:.1} MB, {lists} LIST pages), restart/list time = {:.2}x",
        listed.as_secs_f64(),
        size as f64 / 1e6,
        resumed.as_secs_f64(),
        hwm as f64 / 1024.0,
        resumed.as_secs_f64() / listed.as_secs_f64()
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let objects = env_or("KWATCHD_BENCH_LIST_OBJECTS", 250_000);
    let envs: Vec<usize> = std::env::var("KWATCHD_BENCH_LIST_ENV")
        .unwrap_or_else(|_| "62,8".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    for env_vars in envs {
        let t = Instant::now();
        let pages = Arc::new(render(objects, env_vars));
        let avg = pages.item_bytes as f64 / objects as f64;
        eprintln!(
            "rendered {objects} pods of ~{avg:.0} B ({:.0} MB of items, {} pages) in {:.1} s",
            pages.item_bytes as f64 / 1e6,
            pages.responses.len(),
            t.elapsed().as_secs_f64()
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        {
            let pages = pages.clone();
            thread::spawn(move || serve(listener, pages));
        }
        let base = drain(addr, &pages);
        let mut line = format!(
            "list of {objects} x {avg:.0} B ({:.0} MB, rv {}): plain client draining the pages {:.2} s ({:.0} MB/s)",
            pages.item_bytes as f64 / 1e6,
            pages.list_rv,
            base.as_secs_f64(),
            pages.item_bytes as f64 / 1e6 / base.as_secs_f64()
        );
        let modes = std::env::var("KWATCHD_BENCH_LIST_MODES")
            .unwrap_or_else(|_| "added,skip,changes".into());
        for on_start in modes.split(',').map(str::trim) {
            if on_start == "restart" {
                line.push_str(" | ");
                line.push_str(&restart(addr, objects));
                continue;
            }
            *WATCH_AT.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let r = daemon(addr, &pages, on_start);
            line.push_str(&format!(
                " | kwatchd {on_start}: {:.2} s ({:.0} objects/s, {:.1} CPU s), peak RSS {:.1} MB, kwatchd/drain time = {:.1}x",
                r.elapsed.as_secs_f64(),
                objects as f64 / r.elapsed.as_secs_f64(),
                r.cpu,
                r.hwm_kib as f64 / 1024.0,
                r.elapsed.as_secs_f64() / base.as_secs_f64()
            ));
        }
        println!("{line}");
    }
}

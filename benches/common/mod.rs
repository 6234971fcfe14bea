//! A minimal API server for benchmarks: an empty LIST, then one watch
//! stream of pre-rendered pod events, all at once or paced.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub fn pod(i: usize, rv: usize) -> String {
    pod_with_env(i, rv, 62)
}

/// A pod with `env_vars` padding variables: 62 make ~4.1 KB, 8 ~1.1 KB.
pub fn pod_with_env(i: usize, rv: usize, env_vars: usize) -> String {
    let env: Vec<String> = (0..env_vars)
        .map(|k| format!(r#"{{"name":"VAR_{k}","value":"value-{k}-{i}-padding-padding"}}"#))
        .collect();
    format!(
        r#"{{"kind":"Pod","apiVersion":"v1","metadata":{{"name":"web-{i}","namespace":"default","uid":"00000000-0000-4000-8000-{i:012}","resourceVersion":"{rv}","creationTimestamp":"2026-11-22T00:00:00Z","labels":{{"app":"web","tier":"frontend"}}}},"spec":{{"containers":[{{"name":"app","image":"registry.example.com/web:1.2.3","env":[{}],"resources":{{"requests":{{"cpu":"100m","memory":"128Mi"}}}}}}],"nodeName":"node-{}"}},"status":{{"phase":"Running","podIP":"10.0.{}.{}"}}}}"#,
        env.join(","),
        i % 50,
        (i / 250) % 250,
        i % 250
    )
}

/// The whole chunked watch response body: one chunk per event line, then
/// the terminating chunk.
pub fn render(events: usize) -> (Vec<u8>, usize, u64) {
    render_with(events, |i| pod(i, 2 + i))
}

/// The chunked watch body for `events` objects, the event-line bytes, and
/// the exact size of the records the file sink will hold.
pub fn render_with(events: usize, object: impl Fn(usize) -> String) -> (Vec<u8>, usize, u64) {
    let mut body = Vec::new();
    let mut payload = 0;
    let mut record_bytes = 0u64;
    // Everything of a record but the object; the timestamp has a fixed width.
    let frame = r#"{"time":"2026-11-22T03:16:53.123Z","watch":"pods","cluster":"b","type":"ADDED","origin":"watch","object":}"#.len() + 1;
    for i in 0..events {
        let object = object(i);
        record_bytes += (frame + object.len()) as u64;
        let line = format!("{{\"type\":\"ADDED\",\"object\":{object}}}\n");
        payload += line.len();
        body.extend_from_slice(format!("{:x}\r\n", line.len()).as_bytes());
        body.extend_from_slice(line.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    (body, payload, record_bytes)
}

pub const WATCH_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
    }
    (!first.is_empty()).then_some(first)
}

/// What the first WATCH gets.
#[derive(Clone)]
pub enum Stream {
    /// The whole chunked body at once (it ends the stream).
    Burst(Arc<Vec<u8>>),
    /// One chunk (one event) at a time, at this rate, then silence.
    Paced {
        chunks: Arc<Vec<Vec<u8>>>,
        per_second: f64,
    },
}

/// `events` small pod events as separate chunks, for `Stream::Paced`.
pub fn chunks(events: usize, first: usize) -> Vec<Vec<u8>> {
    (first..first + events)
        .map(|i| {
            let line = format!(
                "{{\"type\":\"ADDED\",\"object\":{{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{{\"name\":\"p{i}\",\"namespace\":\"default\",\"uid\":\"uid-{i}\",\"resourceVersion\":\"{}\"}}}}}}\n",
                i + 2
            );
            format!("{:x}\r\n{line}\r\n", line.len()).into_bytes()
        })
        .collect()
}

/// Serves an empty LIST, the stream to the first WATCH, and holds later
/// watches open and silent.
pub fn serve(listener: TcpListener, stream: Stream) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { return };
        let stream = stream.clone();
        thread::spawn(move || {
            let mut writer = conn.try_clone().expect("clone");
            let mut reader = BufReader::new(conn);
            let mut streamed = false;
            while let Some(request) = read_request(&mut reader) {
                if request.contains("watch=") {
                    if streamed {
                        let _ = writer.write_all(WATCH_HEAD);
                        thread::sleep(Duration::from_secs(3600));
                        return;
                    }
                    streamed = true;
                    let _ = writer.write_all(WATCH_HEAD);
                    match &stream {
                        Stream::Burst(body) => {
                            let _ = writer.write_all(body);
                        }
                        Stream::Paced { chunks, per_second } => {
                            let start = Instant::now();
                            for (i, chunk) in chunks.iter().enumerate() {
                                let due = start + Duration::from_secs_f64(i as f64 / per_second);
                                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                    thread::sleep(wait);
                                }
                                if writer.write_all(chunk).is_err() {
                                    return;
                                }
                            }
                            // Hold the stream open: the end would make the
                            // daemon re-watch and get the events again.
                            thread::sleep(Duration::from_secs(3600));
                        }
                    }
                } else {
                    let list = br#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        list.len()
                    );
                    let _ = writer.write_all(head.as_bytes());
                    let _ = writer.write_all(list);
                }
            }
        });
    }
}

/// CPU seconds (user + system) a process has used, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name, which is in parentheses.
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

/// A `kB` field of /proc/PID/status (`VmHWM`, `VmRSS`), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Percentiles of latency samples in microseconds: (p50, p99, max).
pub fn percentiles(samples: &mut [u64]) -> (u64, u64, u64) {
    if samples.is_empty() {
        return (0, 0, 0);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99), samples[samples.len() - 1])
}

/// `kwatchd run --config CONFIG`, under the tool `KWATCHD_BENCH_WRAP`
/// names (e.g. "perf record -g -o /tmp/perf.data"), in a process group of
/// its own so [`stop`] reaches the daemon through any tool.
pub fn spawn_daemon(bin: &str, config: &std::path::Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let wrap = std::env::var("KWATCHD_BENCH_WRAP").unwrap_or_default();
    let mut argv: Vec<&str> = wrap.split_whitespace().collect();
    argv.push(bin);
    std::process::Command::new(argv[0])
        .args(&argv[1..])
        .args(["run", "--config"])
        .arg(config)
        .stderr(std::process::Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("spawn kwatchd")
}

/// SIGTERM to the daemon's process group (the daemon and any wrapping
/// tool, which then writes its data), SIGKILL after 30 s, and reaped.
pub fn stop(mut child: std::process::Child) {
    let group = -(child.id() as i32);
    unsafe {
        libc::kill(group, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    unsafe {
        libc::kill(group, libc::SIGKILL);
    }
    let _ = child.wait();
}

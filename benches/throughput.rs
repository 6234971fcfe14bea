//! Stream throughput: one watch streaming N pre-rendered ~4 KB pod events
//! (one chunk per line, as the API server writes them) into a file sink,
//! against a plain socket drain of the same bytes measured in the same run.
//!
//! `cargo bench --bench throughput` (N = 100000; `KWATCHD_BENCH_EVENTS` overrides).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn pod(i: usize, rv: usize) -> String {
    let env: Vec<String> = (0..40)
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
fn render(events: usize) -> (Vec<u8>, usize) {
    let mut body = Vec::new();
    let mut payload = 0;
    for i in 0..events {
        let line = format!("{{\"type\":\"ADDED\",\"object\":{}}}\n", pod(i, 2 + i));
        payload += line.len();
        body.extend_from_slice(format!("{:x}\r\n", line.len()).as_bytes());
        body.extend_from_slice(line.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    (body, payload)
}

const WATCH_HEAD: &[u8] =
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

/// Serves an empty LIST, the pre-rendered stream to the first WATCH, and
/// holds later watches open and silent.
fn serve(listener: TcpListener, stream_body: Arc<Vec<u8>>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { return };
        let body = stream_body.clone();
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
                    let _ = writer.write_all(&body);
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

fn drain(addr: std::net::SocketAddr, expect: usize) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /api/v1/pods?watch=true HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0;
    while got < expect {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "server closed early");
        got += n;
    }
    start.elapsed()
}

fn count_lines(path: &Path, offset: &mut u64, lines: &mut usize) {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return;
    };
    if f.seek(SeekFrom::Start(*offset)).is_err() {
        return;
    }
    let mut buf = vec![0u8; 4 << 20];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        *offset += n as u64;
        *lines += buf[..n].iter().filter(|b| **b == b'\n').count();
    }
}

fn daemon(addr: std::net::SocketAddr, events: usize) -> Duration {
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_kwatchd"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kwatchd");
    let (mut offset, mut lines) = (0, 0);
    let deadline = start + Duration::from_secs(300);
    while lines < events && Instant::now() < deadline {
        count_lines(&out, &mut offset, &mut lines);
        thread::sleep(Duration::from_millis(2));
    }
    let took = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines, events, "the daemon did not write every event");
    took
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let events: usize = std::env::var("KWATCHD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (body, payload) = render(events);
    let body = Arc::new(body);
    println!(
        "stream: {events} events, {:.1} MB of event lines ({} B per event), {:.1} MB on the wire",
        payload as f64 / 1e6,
        payload / events,
        body.len() as f64 / 1e6
    );
    for round in 1..=3 {
        let drain_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let drain_addr = drain_listener.local_addr().unwrap();
        let b = body.clone();
        thread::spawn(move || serve(drain_listener, b));
        let d = drain(drain_addr, WATCH_HEAD.len() + body.len());

        let daemon_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let daemon_addr = daemon_listener.local_addr().unwrap();
        let b = body.clone();
        thread::spawn(move || serve(daemon_listener, b));
        let k = daemon(daemon_addr, events);

        let rate = |t: Duration| {
            (
                events as f64 / t.as_secs_f64(),
                payload as f64 / 1e6 / t.as_secs_f64(),
            )
        };
        let (de, dm) = rate(d);
        let (ke, km) = rate(k);
        println!(
            "round {round}: socket drain {:>7.3} s ({de:>9.0} events/s, {dm:>6.0} MB/s) | kwatchd → file {:>7.3} s ({ke:>9.0} events/s, {km:>6.0} MB/s, incl. start-up) | kwatchd/drain = {:.0}%",
            d.as_secs_f64(),
            k.as_secs_f64(),
            100.0 * d.as_secs_f64() / k.as_secs_f64()
        );
    }
}

//! API servers that misbehave in ways the emulator does not, written here
//! as small loopback servers: a stream kept alive with blank lines but no
//! event, a response head trickled a byte at a time. The real binary must
//! notice, reconnect, and say so on `/healthz`.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
/// No server thread outlives its test by more than this.
const SERVE_AT_MOST: Duration = Duration::from_secs(120);

/// A loopback HTTP/1.1 server answering each connection on its own
/// thread; remembers the request lines.
struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// `answer` writes the response to a request head; it may stall or
    /// never finish (a write error ends it once the daemon hangs up).
    fn start(answer: impl Fn(&str, &mut TcpStream) + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let answer = Arc::new(answer);
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let (seen, answer) = (seen.clone(), answer.clone());
                thread::spawn(move || {
                    let Some(line) = read_request(&conn) else {
                        return;
                    };
                    seen.lock().unwrap().push(line.clone());
                    answer(&line, &mut conn);
                });
            }
        });
        Server { addr, requests }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn watches(&self) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.lines().next().is_some_and(|l| l.contains("watch=true")))
            .count()
    }

    fn heads(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// The request head on `conn` (request line first, CRLFs kept).
fn read_request(conn: &TcpStream) -> Option<String> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            return Some(head);
        }
        head.push_str(&line);
    }
}

/// A one-pod LIST answer at resourceVersion 10.
fn list_answer(conn: &mut TcpStream) {
    let body = r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"10"},"items":[{"metadata":{"name":"a","namespace":"default","uid":"u-a","resourceVersion":"10"}}]}"#;
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A response head and `body` as one chunk, and the last chunk.
fn chunked(conn: &mut TcpStream, head: &str, body: &[u8]) {
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\n{head}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        body.len()
    );
    let _ = conn.write_all(body);
    let _ = conn.write_all(b"\r\n0\r\n\r\n");
}

/// Writes `piece` every `every` until the daemon hangs up.
fn drip(conn: &mut TcpStream, piece: &[u8], every: Duration) {
    let end = Instant::now() + SERVE_AT_MOST;
    while Instant::now() < end && conn.write_all(piece).and_then(|_| conn.flush()).is_ok() {
        thread::sleep(every);
    }
}

/// A daemon with one pod watch (LISTs, `watch_timeout = "1s"`) against
/// `server`, with its metrics endpoint on a free port.
fn daemon(server: &Server) -> (Running, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let mut w = WatchDef::pods("pods", "out");
    w.extra = "initial_list = \"list\"\nwatch_timeout = \"1s\"";
    let text = config(dir.path(), "", &server.url(), &[w]).replacen(
        "[daemon]\n",
        "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n",
        1,
    );
    let d = Running::start_in(dir, &text);
    let mut addr = None;
    let found = wait_until(WAIT, || {
        addr = d.log_text().lines().find_map(|l| {
            let rest = l.split("metrics: listening on http://").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        });
        addr.is_some()
    });
    assert!(found, "no metrics address; log:\n{}", d.log_text());
    (d, addr.unwrap())
}

/// Status code and body of `GET /healthz`.
fn healthz(addr: SocketAddr) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// Waits until `/healthz` answers 503 naming `reason`.
fn becomes_unhealthy(d: &Running, addr: SocketAddr, reason: &str) {
    let mut last = (0, String::new());
    let unhealthy = wait_until(WAIT, || {
        last = healthz(addr);
        last.0 == 503 && last.1.contains(reason)
    });
    assert!(
        unhealthy,
        "/healthz still {} {}; log:\n{}",
        last.0,
        last.1,
        d.log_text()
    );
}

#[test]
fn a_stream_of_blank_lines_is_no_life_sign() {
    let server = Server::start(|line, conn| {
        if !line.contains("watch=true") {
            return list_answer(conn);
        }
        // Chunked keep-alive newlines every 100 ms, never an event.
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        if conn.write_all(head.as_bytes()).is_ok() {
            drip(conn, b"1\r\n\n\r\n", Duration::from_millis(100));
        }
    });
    let (d, addr) = daemon(&server);
    assert!(wait_until(WAIT, || count_records(&d.path("out.jsonl")) == 1));
    // timeoutSeconds is 1-2 s and the grace 1 s: the first stream is given
    // up within 3 s of opening, whatever the newlines.
    assert!(
        wait_until(Duration::from_secs(20), || server.watches() >= 2),
        "the eventless stream was kept; log:\n{}",
        d.log_text()
    );
    assert!(d
        .log_text()
        .contains("no event or bookmark from the server"));
    becomes_unhealthy(&d, addr, "no event or bookmark from the server");
}

#[test]
fn a_trickled_response_head_does_not_hold_a_watch() {
    let server = Server::start(|line, conn| {
        if !line.contains("watch=true") {
            return list_answer(conn);
        }
        // A head that never ends: a byte every 200 ms.
        if conn.write_all(b"HTTP/1.1 200 OK\r\nX-Pad: ").is_ok() {
            drip(conn, b"a", Duration::from_millis(200));
        }
    });
    let (d, addr) = daemon(&server);
    assert!(wait_until(WAIT, || count_records(&d.path("out.jsonl")) == 1));
    // The head gets 5 s (the floor; the grace is 1 s here).
    assert!(
        wait_until(Duration::from_secs(20), || server.watches() >= 2),
        "the trickling head held the watch; log:\n{}",
        d.log_text()
    );
    becomes_unhealthy(
        &d,
        addr,
        "no complete response head from the server within 5s",
    );
}

#[test]
fn a_gzip_list_is_asked_for_and_decoded() {
    let server = Server::start(|head, conn| {
        if head.contains("watch=true") {
            return drip(conn, b"", Duration::from_secs(1));
        }
        let items: Vec<String> = (0..300)
            .map(|i| format!(r#"{{"metadata":{{"name":"p{i}","namespace":"default","uid":"u{i}","resourceVersion":"{i}"}}}}"#))
            .collect();
        let body = format!(
            r#"{{"kind":"PodList","apiVersion":"v1","metadata":{{"resourceVersion":"500"}},"items":[{}]}}"#,
            items.join(",")
        );
        // Compressed whatever the request said, as a misconfigured proxy
        // would: only a client that asked can read it.
        chunked(
            conn,
            "Content-Type: application/json\r\nContent-Encoding: gzip\r\nConnection: close\r\n",
            &gzip(body.as_bytes()),
        );
    });
    let (d, _) = daemon(&server);
    assert!(
        wait_until(WAIT, || count_records(&d.path("out.jsonl")) == 300),
        "log:\n{}",
        d.log_text()
    );
    let list = server
        .heads()
        .into_iter()
        .find(|h| h.contains("limit="))
        .unwrap();
    assert!(
        list.to_ascii_lowercase()
            .contains("\r\naccept-encoding: gzip\r\n"),
        "{list}"
    );
    assert!(wait_until(WAIT, || server.watches() >= 1));
    let watch = server
        .heads()
        .into_iter()
        .find(|h| h.contains("watch=true"));
    assert!(
        watch.is_some_and(|w| !w.to_ascii_lowercase().contains("accept-encoding")),
        "watches do not ask for gzip"
    );
}

#[test]
fn a_watch_body_in_an_encoding_not_asked_for_is_refused_by_name() {
    let server = Server::start(|head, conn| {
        if !head.contains("watch=true") {
            return list_answer(conn);
        }
        let event = br#"{"type":"ADDED","object":{"metadata":{"name":"b","namespace":"default","uid":"u-b","resourceVersion":"11"}}}
"#;
        chunked(
            conn,
            "Content-Type: application/json\r\nContent-Encoding: gzip\r\n",
            &gzip(event),
        );
    });
    let (d, _) = daemon(&server);
    assert!(
        wait_until(WAIT, || d.log_text().contains(
            "the server sent a body with Content-Encoding gzip, which kwatchd did not ask for"
        )),
        "log:\n{}",
        d.log_text()
    );
    assert!(wait_until(WAIT, || server.watches() >= 2), "not retried");
    assert_eq!(
        count_records(&d.path("out.jsonl")),
        1,
        "only the listed pod"
    );
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size of `pid` in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(u64::MAX)
}

/// A server that ignores `limit` and answers each namespace's LIST with one
/// chunked page of `KWATCHD_TEST_LIST_MB` (default 64) MB of ~100 KB pods;
/// the daemon's peak RSS must stay under `KWATCHD_TEST_LIST_RSS_MB` (default
/// 40) MiB. `KWATCHD_TEST_LIST_NAMESPACES` (default 1) watches run at once.
/// The figure in BENCHMARKS.md comes from this test with 4 namespaces of
/// 250 MB (`--release`, see there).
#[test]
fn a_huge_single_page_list_is_read_in_bounded_memory() {
    let page_mb = env_usize("KWATCHD_TEST_LIST_MB", 64);
    let rss_mb = env_usize("KWATCHD_TEST_LIST_RSS_MB", 40);
    let namespaces = env_usize("KWATCHD_TEST_LIST_NAMESPACES", 1);
    const PAD: usize = 100_000;
    let items = page_mb * 1_000_000 / (PAD + 120);
    let server = Server::start(move |head, conn| {
        let pad = "x".repeat(PAD);
        if head.contains("watch=true") {
            // Hold the stream: the watch's LIST is done.
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            return drip(conn, b"", Duration::from_secs(1));
        }
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        );
        let start =
            br#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":["#;
        let mut send = |piece: &[u8]| {
            write!(conn, "{:x}\r\n", piece.len())
                .and_then(|_| conn.write_all(piece))
                .and_then(|_| conn.write_all(b"\r\n"))
                .is_ok()
        };
        send(start);
        for i in 0..items {
            let item = format!(
                r#"{}{{"metadata":{{"name":"p{i}","namespace":"ns","uid":"u{i}","resourceVersion":"{i}"}},"pad":"{pad}"}}"#,
                if i > 0 { "," } else { "" }
            );
            if !send(item.as_bytes()) {
                return;
            }
        }
        send(b"]}");
        let _ = conn.write_all(b"0\r\n\r\n");
    });
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..namespaces).map(|i| format!("ns{i}")).collect();
    let watches: Vec<WatchDef<'_>> = names
        .iter()
        .map(|ns| {
            let mut w = WatchDef::pods(ns, "out");
            w.namespace = Some(ns);
            w.on_start = "skip";
            w.extra = "initial_list = \"list\"";
            w
        })
        .collect();
    let text = config(dir.path(), "", &server.url(), &watches);
    let d = Running::start_in(dir, &text);
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(300), || server.watches() >= namespaces),
        "the lists did not finish; log:\n{}",
        d.log_text()
    );
    let listed = d
        .log_text()
        .matches(&format!("listed {items} objects"))
        .count();
    assert_eq!(listed, namespaces, "log:\n{}", d.log_text());
    let peak = peak_rss_kib(d.child.id());
    eprintln!(
        "{namespaces} namespace(s) x {page_mb} MB single-page LISTs ({items} pods of {} KB each): \
         daemon peak RSS (VmHWM) {:.1} MiB, listed in {:.1} s",
        PAD / 1000,
        peak as f64 / 1024.0,
        started.elapsed().as_secs_f64()
    );
    assert!(
        peak < (rss_mb as u64) << 10,
        "peak RSS {peak} KiB for {namespaces} x {page_mb} MB pages (bound {rss_mb} MiB)"
    );
}

//! End-to-end tests over loopback with a tiny blocking client (deliberately independent of kwatchd's own HTTP
//! code). Every socket has a read timeout, so a hung server fails a test instead of hanging it.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

const T: Duration = Duration::from_secs(5);

trait Rw: Read + Write {}
impl<X: Read + Write> Rw for X {}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Client {
    s: Box<dyn Rw>,
    buf: Vec<u8>,
    /// Bytes of a watch line not terminated yet.
    line: Vec<u8>,
    token: Option<String>,
    accept: &'static str,
}

impl Client {
    fn plain(sim: &Sim) -> Client {
        let s = TcpStream::connect(sim.addr()).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        Client {
            s: Box::new(s),
            buf: Vec::new(),
            line: Vec::new(),
            token: None,
            accept: "application/json",
        }
    }

    fn tls(sim: &Sim, server_name: &str) -> Client {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName};
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(sim.ca_pem().unwrap().as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(server_name.to_string()).unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let s = TcpStream::connect(sim.addr()).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        Client {
            s: Box::new(rustls::StreamOwned::new(conn, s)),
            buf: Vec::new(),
            line: Vec::new(),
            token: None,
            accept: "application/json",
        }
    }

    fn send(&mut self, target: &str) {
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: sim\r\nAccept: {}\r\n{auth}\r\n",
            self.accept
        );
        self.s.write_all(req.as_bytes()).unwrap();
        self.s.flush().unwrap();
    }

    /// Read more bytes; Ok(0) at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 16384];
        let n = self.s.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    fn read_until(&mut self, delim: &[u8]) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(delim.len()).position(|w| w == delim) {
                let out = self.buf[..i].to_vec();
                self.buf.drain(..i + delim.len());
                return Ok(out);
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn read_exact_buf(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn head(&mut self) -> Head {
        let raw = String::from_utf8(self.read_until(b"\r\n\r\n").unwrap()).unwrap();
        let mut lines = raw.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Head { status, headers }
    }

    /// Next chunk's data; None at the 0-chunk (trailers consumed).
    fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let size_line = String::from_utf8_lossy(&self.read_until(b"\r\n")?).into_owned();
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad chunk size {size_line:?}"),
            )
        })?;
        if size == 0 {
            self.read_until(b"\r\n")?;
            return Ok(None);
        }
        let data = self.read_exact_buf(size)?;
        if self.read_exact_buf(2)? != b"\r\n" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "missing CRLF after chunk",
            ));
        }
        Ok(Some(data))
    }

    fn body(&mut self, head: &Head) -> String {
        let bytes = if let Some(len) = head.header("content-length") {
            self.read_exact_buf(len.parse().unwrap()).unwrap()
        } else {
            let mut all = Vec::new();
            while let Some(c) = self.chunk().unwrap() {
                all.extend(c);
            }
            all
        };
        String::from_utf8(bytes).unwrap()
    }

    fn get(&mut self, target: &str) -> (u16, Value, Head) {
        self.send(target);
        let head = self.head();
        let body = self.body(&head);
        (
            head.status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
            head,
        )
    }

    /// Start a watch; returns the head.
    fn watch(&mut self, target: &str) -> Head {
        self.send(target);
        self.head()
    }

    /// Next event line; Ok(None) at the end of the stream.
    fn line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(i) = self.line.iter().position(|b| *b == b'\n') {
                let l: Vec<u8> = self.line.drain(..=i).collect();
                return Ok(Some(String::from_utf8_lossy(&l[..i]).into_owned()));
            }
            match self.chunk()? {
                Some(c) => self.line.extend(c),
                None => return Ok(None),
            }
        }
    }

    /// Next event as (type, name-or-rv).
    fn event(&mut self) -> (String, Value) {
        let l = self.line().unwrap().expect("stream ended");
        let v: Value = serde_json::from_str(&l).unwrap();
        (v["type"].as_str().unwrap().to_string(), v["object"].clone())
    }

    fn event_summary(&mut self) -> String {
        let (t, o) = self.event();
        format!("{t} {}", o["metadata"]["name"].as_str().unwrap_or(""))
    }

    /// Read until EOF, returning everything; errors (e.g. reset) end the read too.
    fn drain(&mut self) -> Vec<u8> {
        while let Ok(n) = self.fill() {
            if n == 0 {
                break;
            }
        }
        std::mem::take(&mut self.buf)
    }
}

fn sim() -> Sim {
    Sim::start(SimOptions::default()).unwrap()
}

fn pod(sim: &Sim, ns: &str, name: &str, labels: &[(&str, &str)]) -> ObjectRef {
    sim.create(
        &Resource::pods(),
        ns,
        name,
        labels,
        json!({"spec": {"nodeName": "n1"}}),
    )
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + T;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn list_paging_is_a_consistent_snapshot() {
    let sim = sim();
    for i in 0..5 {
        pod(&sim, "ns", &format!("p{i}"), &[]);
    }
    pod(&sim, "other", "x", &[]);
    let mut c = Client::plain(&sim);
    let (st, page1, _) = c.get("/api/v1/namespaces/ns/pods?limit=2");
    assert_eq!(st, 200);
    assert_eq!(page1["kind"], "PodList");
    assert_eq!(page1["metadata"]["resourceVersion"], "6");
    assert_eq!(names(&page1), ["p0", "p1"]);
    // Changes after the first page do not show in later pages.
    sim.delete(&Resource::pods(), "ns", "p3");
    pod(&sim, "ns", "p9", &[]);
    let mut all = names(&page1);
    let mut token = page1["metadata"]["continue"].as_str().unwrap().to_string();
    while !token.is_empty() {
        let (st, page, _) = c.get(&format!(
            "/api/v1/namespaces/ns/pods?limit=2&continue={token}"
        ));
        assert_eq!(st, 200);
        assert_eq!(page["metadata"]["resourceVersion"], "6");
        all.extend(names(&page));
        token = page["metadata"]["continue"]
            .as_str()
            .unwrap_or("")
            .to_string();
    }
    assert_eq!(all, ["p0", "p1", "p2", "p3", "p4"]);
    // A fresh list sees the current state; all namespaces without a namespace in the path.
    let (_, now, _) = c.get("/api/v1/pods");
    assert_eq!(names(&now), ["p0", "p1", "p2", "p4", "p9", "x"]);
    assert_eq!(now["metadata"]["resourceVersion"], "8");
    // Several requests went over one keep-alive connection.
    let conns: Vec<u64> = sim.requests().iter().map(|r| r.conn_id).collect();
    assert!(conns.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn continue_tokens_expire_on_compact_and_ttl() {
    let sim = Sim::start(SimOptions {
        continue_ttl: Duration::from_millis(200),
        ..Default::default()
    })
    .unwrap();
    for i in 0..3 {
        pod(&sim, "ns", &format!("p{i}"), &[]);
    }
    let mut c = Client::plain(&sim);
    let (_, p, _) = c.get("/api/v1/pods?limit=1");
    let token = p["metadata"]["continue"].as_str().unwrap().to_string();
    sim.compact();
    let (st, status, _) = c.get(&format!("/api/v1/pods?limit=1&continue={token}"));
    assert_eq!(st, 410);
    assert_eq!(status["reason"], "Expired");
    assert_eq!(status["kind"], "Status");
    let (_, p, _) = c.get("/api/v1/pods?limit=1");
    let token = p["metadata"]["continue"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(250));
    let (st, _, _) = c.get(&format!("/api/v1/pods?limit=1&continue={token}"));
    assert_eq!(st, 410);
    let (st, _, _) = c.get("/api/v1/pods?continue=garbage");
    assert_eq!(st, 400);
}

#[test]
fn watch_from_rv_gets_exactly_later_events() {
    let sim = sim();
    let pods = Resource::pods();
    pod(&sim, "ns", "a", &[]);
    pod(&sim, "ns", "b", &[]);
    let rv = sim.resource_version();
    pod(&sim, "ns", "c", &[]);
    sim.update(&pods, "ns", "a", json!({"spec": {"x": 2}}), None)
        .unwrap();
    pod(&sim, "other", "elsewhere", &[]);
    sim.delete(&pods, "ns", "b").unwrap();
    let mut c = Client::plain(&sim);
    let head = c.watch(&format!(
        "/api/v1/namespaces/ns/pods?watch=1&resourceVersion={rv}"
    ));
    assert_eq!(head.status, 200);
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(c.event_summary(), "ADDED c");
    let (t, o) = c.event();
    assert_eq!((t.as_str(), o["spec"]["x"].as_i64()), ("MODIFIED", Some(2)));
    let (t, o) = c.event();
    assert_eq!(
        (t.as_str(), o["metadata"]["resourceVersion"].as_str()),
        ("DELETED", Some("6"))
    );
    // Live events arrive as they happen.
    pod(&sim, "ns", "d", &[]);
    assert_eq!(c.event_summary(), "ADDED d");
    assert_eq!(sim.open_watches(), 1);
    drop(c);
    wait_for("the watch to notice its client left", || {
        sim.open_watches() == 0
    });
}

#[test]
fn watch_without_rv_starts_with_synthetic_added() {
    let sim = sim();
    pod(&sim, "ns", "a", &[]);
    pod(&sim, "ns", "b", &[]);
    for rv in ["", "&resourceVersion=0"] {
        let mut c = Client::plain(&sim);
        c.watch(&format!("/api/v1/pods?watch=true{rv}"));
        assert_eq!(c.event_summary(), "ADDED a");
        assert_eq!(c.event_summary(), "ADDED b");
    }
    // A grouped resource, created on the fly, with its kind from the table.
    sim.create(
        &Resource::deployments(),
        "ns",
        "web",
        &[],
        json!({"spec": {"replicas": 1}}),
    );
    let mut c = Client::plain(&sim);
    c.watch("/apis/apps/v1/namespaces/ns/deployments?watch=1");
    let (t, o) = c.event();
    assert_eq!(
        (t.as_str(), o["kind"].as_str(), o["apiVersion"].as_str()),
        ("ADDED", Some("Deployment"), Some("apps/v1"))
    );
}

#[test]
fn expired_rv_as_error_event() {
    let sim = sim();
    pod(&sim, "ns", "a", &[]);
    pod(&sim, "ns", "b", &[]);
    sim.compact();
    let mut c = Client::plain(&sim);
    let head = c.watch("/api/v1/pods?watch=1&resourceVersion=1");
    assert_eq!(head.status, 200);
    let (t, o) = c.event();
    assert_eq!(t, "ERROR");
    assert_eq!(
        (o["code"].as_u64(), o["reason"].as_str()),
        (Some(410), Some("Expired"))
    );
    assert_eq!(o["message"], "too old resource version: 1 (3)");
    assert!(c.line().unwrap().is_none(), "stream ends after the ERROR");
    // The current rv is still fine.
    c.watch("/api/v1/pods?watch=1&resourceVersion=2");
    pod(&sim, "ns", "c", &[]);
    assert_eq!(c.event_summary(), "ADDED c");
    // A watch that has caught up survives a compaction (only older starting points are lost).
    sim.compact();
    pod(&sim, "ns", "d", &[]);
    assert_eq!(c.event_summary(), "ADDED d");
}

#[test]
fn expired_rv_as_http_410_and_bounded_history() {
    let opts = SimOptions {
        expired: ExpiredMode::HttpStatus,
        history_limit: 2,
        ..Default::default()
    };
    let sim = Sim::start(opts).unwrap();
    for i in 0..4 {
        pod(&sim, "ns", &format!("p{i}"), &[]);
    }
    let mut c = Client::plain(&sim);
    let (st, status, _) = c.get("/api/v1/pods?watch=1&resourceVersion=1");
    assert_eq!(st, 410);
    assert_eq!(status["reason"], "Expired");
    c.watch("/api/v1/pods?watch=1&resourceVersion=2");
    assert_eq!(c.event_summary(), "ADDED p2");
    assert_eq!(c.event_summary(), "ADDED p3");
    // Too new: the client is ahead of this server.
    let mut c = Client::plain(&sim);
    let (st, status, head) = c.get("/api/v1/pods?watch=1&resourceVersion=99");
    assert_eq!(st, 504);
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
    assert_eq!(head.header("retry-after"), Some("1"));
}

#[test]
fn selectors_and_transitions() {
    let sim = sim();
    let pods = Resource::pods();
    pod(&sim, "ns", "web1", &[("app", "web")]);
    pod(&sim, "ns", "db1", &[("app", "db")]);
    let mut c = Client::plain(&sim);
    c.watch("/api/v1/namespaces/ns/pods?watch=1&labelSelector=app%3Dweb");
    assert_eq!(c.event_summary(), "ADDED web1");
    // db1 starts matching → ADDED; web1 stops matching → DELETED (with its old labels, the new rv).
    let r = sim
        .update(&pods, "ns", "db1", json!({}), Some(&[("app", "web")]))
        .unwrap();
    assert_eq!(c.event_summary(), "ADDED db1");
    let _ = r;
    let r = sim
        .update(&pods, "ns", "web1", json!({}), Some(&[("app", "other")]))
        .unwrap();
    let (t, o) = c.event();
    assert_eq!(t, "DELETED");
    assert_eq!(o["metadata"]["labels"]["app"], "web");
    assert_eq!(
        o["metadata"]["resourceVersion"].as_str(),
        Some(r.resource_version.as_str())
    );
    // Changes outside the selection are not seen; inside they are MODIFIED.
    sim.update(&pods, "ns", "web1", json!({"x": 1}), None);
    sim.update(&pods, "ns", "db1", json!({"x": 1}), None);
    assert_eq!(c.event_summary(), "MODIFIED db1");

    let mut f = Client::plain(&sim);
    f.watch(
        "/api/v1/pods?watch=1&fieldSelector=metadata.name%3Dweb1,metadata.namespace!%3Dkube-system",
    );
    assert_eq!(f.event_summary(), "ADDED web1");
    sim.delete(&pods, "ns", "db1");
    sim.delete(&pods, "ns", "web1");
    assert_eq!(f.event_summary(), "DELETED web1");

    let (_, list, _) = Client::plain(&sim).get("/api/v1/pods?labelSelector=app");
    assert_eq!(names(&list), Vec::<String>::new());
    let (st, status, _) = Client::plain(&sim).get("/api/v1/pods?fieldSelector=spec.nodeName%3Dn1");
    assert_eq!((st, status["reason"].as_str()), (400, Some("BadRequest")));
}

#[test]
fn bearer_token_is_checked_and_changeable() {
    let sim = Sim::start(SimOptions {
        token: Some("s3cret".into()),
        ..Default::default()
    })
    .unwrap();
    let mut c = Client::plain(&sim);
    let (st, status, _) = c.get("/api/v1/pods");
    assert_eq!((st, status["reason"].as_str()), (401, Some("Unauthorized")));
    c.token = Some("wrong".into());
    assert_eq!(c.get("/api/v1/pods").0, 401);
    c.token = Some("s3cret".into());
    assert_eq!(c.get("/api/v1/pods").0, 200);
    sim.set_token(Some("rotated".into()));
    assert_eq!(c.get("/api/v1/pods").0, 401);
    sim.set_token(None);
    c.token = None;
    assert_eq!(c.get("/api/v1/pods").0, 200);
    let had: Vec<bool> = sim.requests().iter().map(|r| r.had_auth).collect();
    assert_eq!(had, [false, true, true, true, false]);
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401, 200, 401, 200]);
}

#[test]
fn tls_with_generated_ca() {
    let sim = Sim::start(SimOptions {
        tls: true,
        ..Default::default()
    })
    .unwrap();
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    for name in ["127.0.0.1", "localhost"] {
        sim.compact();
        pod(&sim, "ns", name, &[]);
        let mut c = Client::tls(&sim, name);
        let (st, list, _) = c.get(&format!(
            "/api/v1/pods?fieldSelector=metadata.name%3D{name}"
        ));
        assert_eq!(st, 200);
        assert_eq!(names(&list), [name]);
        c.watch(&format!(
            "/api/v1/pods?watch=1&resourceVersion={}",
            list["metadata"]["resourceVersion"].as_str().unwrap()
        ));
        let next = format!("next-{name}");
        pod(&sim, "ns", &next, &[]);
        assert_eq!(c.event_summary(), format!("ADDED {next}"));
        // A TLS client that leaves is noticed while its watch is idle.
        c.s.flush().unwrap();
        drop(c);
        wait_for("TLS watch to notice its client left", || {
            sim.open_watches() == 0
        });
    }
    // A name the certificate does not carry fails verification.
    let mut c = Client::tls(&sim, "example.com");
    let res =
        c.s.write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
            .and_then(|_| c.s.flush())
            .and_then(|_| c.fill());
    let err = res.unwrap_err().to_string();
    assert!(err.contains("not valid for name"), "{err}");
}

#[test]
fn fault_expired_in_either_mode_whatever_the_history() {
    let sim = sim();
    pod(&sim, "ns", "a", &[]);
    sim.add_fault(FaultRule {
        path_contains: "watch=".into(),
        times: 1,
        fault: Fault::Expired(ExpiredMode::HttpStatus),
    });
    sim.add_fault(FaultRule {
        path_contains: "watch=".into(),
        times: 1,
        fault: Fault::Expired(ExpiredMode::ErrorEvent),
    });
    assert_eq!(sim.pending_faults().len(), 2);
    let mut c = Client::plain(&sim);
    let (st, status, _) = c.get("/api/v1/pods?watch=1&resourceVersion=1");
    assert_eq!((st, status["reason"].as_str()), (410, Some("Expired")));
    let mut c = Client::plain(&sim);
    assert_eq!(
        c.watch("/api/v1/pods?watch=1&resourceVersion=1").status,
        200
    );
    let (t, o) = c.event();
    assert_eq!((t.as_str(), o["code"].as_u64()), ("ERROR", Some(410)));
    assert!(c.line().unwrap().is_none(), "stream ends after the ERROR");
    assert!(sim.pending_faults().is_empty());
    // Used up: the same request is served again.
    let mut c = Client::plain(&sim);
    c.watch("/api/v1/pods?watch=1&resourceVersion=1");
    pod(&sim, "ns", "b", &[]);
    assert_eq!(c.event_summary(), "ADDED b");
}

#[test]
fn fault_invalid_resource_version_refuses_one_position() {
    let sim = sim();
    pod(&sim, "ns", "a", &[]);
    sim.add_fault(FaultRule {
        path_contains: "resourceVersion=1&".into(),
        times: 2,
        fault: Fault::InvalidResourceVersion,
    });
    let mut c = Client::plain(&sim);
    let (st, status, _) = c.get("/api/v1/pods?watch=1&resourceVersion=1&timeoutSeconds=5");
    assert_eq!((st, status["reason"].as_str()), (400, Some("BadRequest")));
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("resourceVersion: Invalid value: \"1\""),
        "{message}"
    );
    // Another position is served.
    let mut c = Client::plain(&sim);
    assert_eq!(
        c.watch("/api/v1/pods?watch=1&resourceVersion=0&timeoutSeconds=5")
            .status,
        200
    );
    assert_eq!(sim.pending_faults().len(), 1);
}

#[test]
fn fault_status_with_retry_after() {
    let sim = sim();
    sim.add_fault(FaultRule {
        path_contains: "/pods".into(),
        times: 2,
        fault: Fault::Status {
            code: 429,
            retry_after: Some(3),
        },
    });
    let mut c = Client::plain(&sim);
    for _ in 0..2 {
        let (st, status, head) = c.get("/api/v1/pods");
        assert_eq!(
            (st, status["reason"].as_str()),
            (429, Some("TooManyRequests"))
        );
        assert_eq!(head.header("retry-after"), Some("3"));
    }
    assert_eq!(c.get("/api/v1/pods").0, 200);
    sim.add_fault(FaultRule {
        path_contains: "".into(),
        times: 1,
        fault: Fault::Status {
            code: 503,
            retry_after: None,
        },
    });
    let (st, _, head) = c.get("/api/v1/pods");
    assert_eq!((st, head.header("retry-after")), (503, None));
}

#[test]
fn fault_cut_after_bytes_mid_chunk() {
    let sim = sim();
    pod(&sim, "ns", "a", &[]);
    sim.add_fault(FaultRule {
        path_contains: "watch=1".into(),
        times: 1,
        fault: Fault::CutAfterBytes(150),
    });
    let mut c = Client::plain(&sim);
    c.send("/api/v1/pods?watch=1");
    let got = c.drain();
    assert_eq!(got.len(), 150);
    assert!(got.starts_with(b"HTTP/1.1 200"));
    // Only the next matching request was affected.
    let mut c = Client::plain(&sim);
    c.watch("/api/v1/pods?watch=1");
    assert_eq!(c.event_summary(), "ADDED a");
}

#[test]
fn fault_cut_after_events_and_garbage_chunk_size() {
    let sim = sim();
    for i in 0..3 {
        pod(&sim, "ns", &format!("p{i}"), &[]);
    }
    sim.add_fault(FaultRule {
        path_contains: "watch".into(),
        times: 1,
        fault: Fault::CutAfterEvents(2),
    });
    let mut c = Client::plain(&sim);
    c.watch("/api/v1/pods?watch=1");
    assert_eq!(c.event_summary(), "ADDED p0");
    assert_eq!(c.event_summary(), "ADDED p1");
    assert_eq!(c.line().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);

    // Watch-only faults are not consumed by a list.
    sim.add_fault(FaultRule {
        path_contains: "pods".into(),
        times: 1,
        fault: Fault::GarbageChunkSize,
    });
    let mut c = Client::plain(&sim);
    assert_eq!(c.get("/api/v1/pods").0, 200);
    c.watch("/api/v1/pods?watch=1");
    assert_eq!(c.event_summary(), "ADDED p0");
    assert_eq!(c.line().unwrap_err().kind(), io::ErrorKind::InvalidData);
}

#[test]
fn fault_bad_lines_then_continue() {
    let cases = [
        (Fault::InvalidJsonLine, "{not json".to_string()),
        (Fault::UnknownEventType, "WEIRD".to_string()),
        (Fault::OversizedLine(100_000), "padding".to_string()),
    ];
    for (fault, marker) in cases {
        let sim = sim();
        pod(&sim, "ns", "a", &[]);
        sim.add_fault(FaultRule {
            path_contains: "watch".into(),
            times: 1,
            fault: fault.clone(),
        });
        let mut c = Client::plain(&sim);
        c.watch("/api/v1/pods?watch=1");
        assert_eq!(c.event_summary(), "ADDED a");
        let bad = c.line().unwrap().unwrap();
        assert!(bad.contains(&marker), "{fault:?}");
        if let Fault::OversizedLine(n) = fault {
            assert_eq!(bad.len() + 1, n);
            assert!(serde_json::from_str::<Value>(&bad).is_ok());
        }
        pod(&sim, "ns", "b", &[]);
        assert_eq!(c.event_summary(), "ADDED b");
    }
}

#[test]
fn fault_stall_sends_head_then_silence() {
    let sim = sim();
    sim.add_fault(FaultRule {
        path_contains: "watch".into(),
        times: 1,
        fault: Fault::Stall(Duration::from_millis(300)),
    });
    let mut c = Client::plain(&sim);
    let started = Instant::now();
    assert_eq!(c.watch("/api/v1/pods?watch=1").status, 200);
    pod(&sim, "ns", "a", &[]);
    assert!(c.drain().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(290));
}

#[test]
fn end_watches_and_timeout_end_with_zero_chunk() {
    let sim = sim();
    let mut c = Client::plain(&sim);
    c.watch("/api/v1/pods?watch=1");
    wait_for("watch open", || sim.open_watches() == 1);
    sim.end_watches();
    assert!(c.line().unwrap().is_none());
    // The connection is reusable afterwards, and a new watch is not ended by the old end_watches.
    c.watch("/api/v1/pods?watch=1&timeoutSeconds=1");
    pod(&sim, "ns", "a", &[]);
    assert_eq!(c.event_summary(), "ADDED a");
    let started = Instant::now();
    assert!(c.line().unwrap().is_none());
    assert!(started.elapsed() < Duration::from_secs(2));
    wait_for("watch closed", || sim.open_watches() == 0);
}

#[test]
fn shaped_stream_piece_size_one_grouping_and_extensions() {
    let sim = sim();
    for i in 0..5 {
        pod(&sim, "ns", &format!("p{i}"), &[]);
    }
    sim.set_stream_shape(StreamShape {
        piece_size: Some(1),
        events_per_chunk: 2,
        chunk_extensions: true,
    });
    let mut c = Client::plain(&sim);
    let head = c.watch("/api/v1/pods?watch=1");
    assert_eq!(head.status, 200);
    let first = c.chunk().unwrap().unwrap();
    assert_eq!(
        first.iter().filter(|b| **b == b'\n').count(),
        2,
        "two events in one chunk"
    );
    c.line = first;
    for i in 0..5 {
        assert_eq!(c.event_summary(), format!("ADDED p{i}"));
    }
    sim.end_watches();
    assert!(c.line().unwrap().is_none());
    // Lists are written one byte at a time too.
    let (st, list, _) = c.get("/api/v1/pods");
    assert_eq!((st, names(&list).len()), (200, 5));
}

#[test]
fn bookmarks_on_demand_on_interval_and_for_streaming_lists() {
    let opts = SimOptions {
        bookmark_interval: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let sim = Sim::start(opts).unwrap();
    pod(&sim, "ns", "a", &[]);
    let mut c = Client::plain(&sim);
    c.watch("/api/v1/pods?watch=1&resourceVersion=1&allowWatchBookmarks=true");
    let (t, o) = c.event();
    assert_eq!((t.as_str(), o["kind"].as_str()), ("BOOKMARK", Some("Pod")));
    assert_eq!(o["metadata"]["resourceVersion"], "1");
    pod(&sim, "ns", "b", &[]);
    loop {
        let (t, o) = c.event();
        if t == "ADDED" {
            assert_eq!(o["metadata"]["name"], "b");
            break;
        }
    }

    let sim = Sim::start(SimOptions::default()).unwrap();
    pod(&sim, "ns", "a", &[]);
    let mut c = Client::plain(&sim);
    c.watch("/api/v1/pods?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true");
    assert_eq!(c.event_summary(), "ADDED a");
    let (t, o) = c.event();
    assert_eq!(t, "BOOKMARK");
    assert_eq!(
        o["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(o["metadata"]["resourceVersion"], "1");
    sim.bookmark_now();
    assert_eq!(c.event().0, "BOOKMARK");
    // Without allowWatchBookmarks no bookmark is sent.
    let mut plain = Client::plain(&sim);
    plain.watch("/api/v1/pods?watch=1&resourceVersion=1");
    wait_for("both watches", || sim.open_watches() == 2);
    sim.bookmark_now();
    pod(&sim, "ns", "b", &[]);
    assert_eq!(plain.event_summary(), "ADDED b");

    let (st, _, _) = Client::plain(&sim).get("/api/v1/pods?watch=1&sendInitialEvents=true");
    assert_eq!(st, 422);
    let (st, _, _) =
        Client::plain(&sim).get("/api/v1/pods?watch=1&resourceVersionMatch=NotOlderThan");
    assert_eq!(st, 422);
}

#[test]
fn bad_requests_and_unknown_paths() {
    let sim = sim();
    let mut c = Client::plain(&sim);
    c.s.write_all(b"NONSENSE\r\n\r\n").unwrap();
    let head = c.head();
    assert_eq!(head.status, 400);
    let body = c.body(&head);
    assert!(body.contains("\"kind\":\"Status\""));
    assert_eq!(c.fill().unwrap(), 0, "closed after 400");

    let mut c = Client::plain(&sim);
    let (st, status, _) = c.get("/nope");
    assert_eq!((st, status["reason"].as_str()), (404, Some("NotFound")));
    c.s.write_all(b"DELETE /api/v1/pods HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    let head = c.head();
    assert_eq!(head.status, 404);
    c.body(&head);
    assert_eq!(c.get("/api/v1/pods?limit=x").0, 400);
    assert_eq!(c.get("/api/v1/pods?watch=1&resourceVersion=abc").0, 400);
    assert_eq!(c.get("/api/v1/pods?watch=1&timeoutSeconds=-1").0, 400);
    assert_eq!(c.get("/healthz").0, 200);
    // Hostile but well-formed input must not kill the connection thread.
    pod(&sim, "ns", "a", &[]);
    pod(&sim, "ns", "b", &[]);
    let (_, p, _) = c.get("/api/v1/pods?limit=1");
    let token = p["metadata"]["continue"].as_str().unwrap().to_string();
    let (prefix, _) = token.rsplit_once('.').unwrap();
    let (st, page, _) = c.get(&format!(
        "/api/v1/pods?limit=1&continue={prefix}.{:x}",
        usize::MAX
    ));
    assert_eq!((st, names(&page).len()), (200, 0));
    c.watch(&format!(
        "/api/v1/pods?watch=1&resourceVersion=2&timeoutSeconds={}",
        u64::MAX
    ));
    wait_for("watch open", || sim.open_watches() == 1);
    sim.end_watches();
    assert!(c.line().unwrap().is_none());
    let junk: [&[u8]; 3] = [
        b"GET /\xff HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: \xff\xfe\r\n\r\n",
        &[b'a'; 70_000],
    ];
    for j in junk {
        let mut jc = Client::plain(&sim);
        let _ = jc.s.write_all(j);
        let got = jc.drain();
        let shown = String::from_utf8_lossy(&got[..got.len().min(40)]).into_owned();
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 400"),
            "{shown}"
        );
    }
    assert_eq!(Client::plain(&sim).get("/api/v1/pods").0, 200);
}

#[test]
fn get_one_object_and_discovery() {
    let sim = sim();
    pod(&sim, "ns", "a", &[]);
    sim.create(
        &Resource::new("example.com/v1", "widgets"),
        "ns",
        "w",
        &[],
        json!({}),
    );
    let mut c = Client::plain(&sim);
    let (st, o, _) = c.get("/api/v1/namespaces/ns/pods/a");
    assert_eq!((st, o["metadata"]["name"].as_str()), (200, Some("a")));
    assert_eq!(c.get("/api/v1/namespaces/ns/pods/zz").0, 404);
    let (_, v1, _) = c.get("/api/v1");
    let pods = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods")
        .unwrap();
    assert_eq!(pods["kind"], "Pod");
    let (_, groups, _) = c.get("/apis");
    let gs: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(gs.contains(&"apps") && gs.contains(&"example.com"));
    let (_, w, _) = c.get("/apis/example.com/v1");
    let widgets = w["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "widgets");
    assert_eq!(widgets.unwrap()["kind"], "Widget");
    assert_eq!(c.get("/apis/nothing.io/v1").0, 404);
}

#[test]
fn shutdown_ends_watches_and_closes_the_listener() {
    let sim = sim();
    let addr = sim.addr();
    let mut w = Client::plain(&sim);
    w.watch("/api/v1/pods?watch=1");
    let mut idle = Client::plain(&sim);
    assert_eq!(idle.get("/api/v1/pods").0, 200);
    wait_for("watch open", || sim.open_watches() == 1);
    let started = Instant::now();
    sim.shutdown();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(w.line().is_err());
    assert!(matches!(idle.fill(), Ok(0) | Err(_)));
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn history_records_every_mutation() {
    let sim = sim();
    let pods = Resource::pods();
    let a = pod(&sim, "ns", "a", &[]);
    sim.update(&pods, "ns", "a", json!({}), None);
    sim.compact();
    sim.delete(&pods, "ns", "a");
    let h = sim.history();
    let types: Vec<_> = h
        .iter()
        .map(|e| (e.event_type, e.resource_version.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            (EventType::Added, "1"),
            (EventType::Modified, "2"),
            (EventType::Deleted, "3")
        ]
    );
    assert!(h.iter().all(|e| e.uid == a.uid && e.name == "a"));
    assert!(sim.get(&pods, "ns", "a").is_none());
}

#[test]
fn churn_mutates_and_stops() {
    let sim = sim();
    let opts = ChurnOptions {
        interval: Duration::from_millis(1),
        max_objects: 5,
        ..Default::default()
    };
    let churn = start_churn(&sim, opts);
    wait_for("churn ops", || churn.ops() >= 50);
    churn.stop();
    let rv = sim.resource_version();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(rv, sim.resource_version());
    let h = sim.history();
    assert!(h.iter().any(|e| e.event_type == EventType::Deleted));
    // A watch from the start replays the whole history consistently.
    let mut c = Client::plain(&sim);
    c.watch("/api/v1/pods?watch=1&resourceVersion=0&labelSelector=tier%3Dweb");
    sim.end_watches();
    while c.line().unwrap().is_some() {}
}

#[test]
fn rollout_churn_is_mostly_status_with_a_spec_change_now_and_then() {
    let sim = sim();
    let opts = RolloutOptions {
        names: vec!["web".into(), "api".into()],
        interval: Duration::from_millis(1),
        spec_every: 5,
        ..Default::default()
    };
    let churn = start_rollout_churn(&sim, opts);
    wait_for("rollout ops", || churn.ops() >= 20);
    churn.stop();
    let res = Resource::deployments();
    let generations: u64 = ["web", "api"]
        .iter()
        .map(|n| {
            let v: Value = serde_json::from_str(&sim.get(&res, "default", n).unwrap()).unwrap();
            v["metadata"]["generation"].as_u64().unwrap()
        })
        .sum();
    let modified = sim
        .history()
        .iter()
        .filter(|e| e.event_type == EventType::Modified)
        .count() as u64;
    // Every step changes something, so each is one MODIFIED event; every fifth bumps a generation (both
    // start at 1), the rest only move the status.
    assert!(modified >= 20, "{modified} MODIFIED events");
    assert_eq!(generations, 2 + modified / 5, "{modified} steps");
}

/// Not a correctness test: `cargo test perf_probe -- --ignored --nocapture` prints rough throughput.
#[test]
#[ignore]
fn perf_probe() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let extra = pod_extra(4096);
    let mut c = Client::plain(&sim);
    c.watch("/api/v1/pods?watch=1&resourceVersion=0");
    let n = 5000;
    let t0 = Instant::now();
    for i in 0..n {
        sim.create(
            &Resource::pods(),
            "ns",
            &format!("p{i}"),
            &[("app", "x")],
            extra.clone(),
        );
    }
    let created = t0.elapsed();
    for _ in 0..n {
        c.line().unwrap().unwrap();
    }
    eprintln!(
        "create {n} x 4KB: {created:?}; all streamed after {:?}",
        t0.elapsed()
    );
    let big = pod_extra(1 << 20);
    let t1 = Instant::now();
    for i in 0..20 {
        sim.create(&Resource::pods(), "big", &format!("b{i}"), &[], big.clone());
    }
    for _ in 0..20 {
        assert!(c.line().unwrap().unwrap().len() > 1 << 20);
    }
    eprintln!("20 x 1MiB: {:?}", t1.elapsed());
    let t2 = Instant::now();
    let (_, l, _) = Client::plain(&sim).get("/api/v1/pods?limit=500");
    eprintln!(
        "list page: {:?} {}",
        t2.elapsed(),
        l["items"].as_array().unwrap().len()
    );
}

const AGGREGATED: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

/// (group, version, plural, kind, scope, short names) of every resource in an aggregated document.
fn aggregated_resources(doc: &Value) -> Vec<(String, String, String, String, String, Vec<String>)> {
    let mut out = Vec::new();
    for g in doc["items"].as_array().unwrap() {
        let group = g["metadata"]["name"].as_str().unwrap_or("").to_string();
        for v in g["versions"].as_array().unwrap() {
            for r in v["resources"].as_array().unwrap() {
                let shorts = r["shortNames"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect();
                out.push((
                    group.clone(),
                    v["version"].as_str().unwrap().to_string(),
                    r["resource"].as_str().unwrap().to_string(),
                    r["responseKind"]["kind"].as_str().unwrap().to_string(),
                    r["scope"].as_str().unwrap().to_string(),
                    shorts,
                ));
            }
        }
    }
    out
}

#[test]
fn aggregated_discovery_and_installed_resources() {
    let sim = sim();
    let mut c = Client::plain(&sim);
    c.accept = AGGREGATED;
    let (st, core, _) = c.get("/api");
    assert_eq!(
        (st, core["kind"].as_str()),
        (200, Some("APIGroupDiscoveryList"))
    );
    let core = aggregated_resources(&core);
    let ns = core.iter().find(|r| r.2 == "namespaces").unwrap();
    assert_eq!(
        (ns.0.as_str(), ns.4.as_str(), ns.5.clone()),
        ("", "Cluster", vec!["ns".to_string()])
    );
    assert!(core.iter().all(|r| r.0.is_empty()));
    let (_, groups, _) = c.get("/apis");
    let groups = aggregated_resources(&groups);
    let gadgets: Vec<&str> = groups
        .iter()
        .filter(|r| r.2 == "gadgets")
        .map(|r| r.0.as_str())
        .collect();
    assert_eq!(gadgets, ["acme.io", "example.com"]);
    assert!(
        !groups.iter().any(|r| r.2 == "widgets"),
        "not installed yet"
    );
    sim.install_resource(ResourceDef::widgets());
    let (_, groups, _) = c.get("/apis");
    let w = aggregated_resources(&groups)
        .into_iter()
        .find(|r| r.2 == "widgets")
        .unwrap();
    assert_eq!(
        (w.0.as_str(), w.1.as_str(), w.3.as_str(), w.5.clone()),
        ("example.com", "v1", "Widget", vec!["wd".to_string()])
    );
    // Legacy clients get the legacy documents, which list it too.
    c.accept = "application/json";
    let (_, legacy, _) = c.get("/apis/example.com/v1");
    let names: Vec<&str> = legacy["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gadgets", "widgets"]);
    // Switched off, aggregated requests get the legacy answer.
    let old = Sim::start(SimOptions {
        aggregated_discovery: false,
        ..SimOptions::default()
    })
    .unwrap();
    let mut c = Client::plain(&old);
    c.accept = AGGREGATED;
    assert_eq!(c.get("/apis").1["kind"], "APIGroupList");
}

#[test]
fn partial_object_metadata_lists_and_watches_or_406() {
    let sim = sim();
    pod(&sim, "ns", "a", &[("app", "x")]);
    let mut c = Client::plain(&sim);
    c.accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    let (st, list, _) = c.get("/api/v1/pods");
    assert_eq!(st, 200);
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    let item = &list["items"][0];
    assert_eq!(
        (item["kind"].as_str(), item["apiVersion"].as_str()),
        (Some("PartialObjectMetadata"), Some("meta.k8s.io/v1"))
    );
    assert_eq!(item["metadata"]["labels"]["app"], "x");
    assert!(item.get("spec").is_none());
    let mut w = Client::plain(&sim);
    w.accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";
    assert_eq!(w.watch("/api/v1/pods?watch=1").status, 200);
    let (t, o) = w.event();
    assert_eq!(
        (t.as_str(), o["kind"].as_str()),
        ("ADDED", Some("PartialObjectMetadata"))
    );
    sim.update(
        &Resource::pods(),
        "ns",
        "a",
        json!({"spec": {"v": 2}}),
        None,
    );
    let (t, o) = w.event();
    assert_eq!(
        (t.as_str(), o["kind"].as_str(), o.get("spec")),
        ("MODIFIED", Some("PartialObjectMetadata"), None)
    );

    let old = Sim::start(SimOptions {
        partial_metadata: false,
        ..SimOptions::default()
    })
    .unwrap();
    pod(&old, "ns", "a", &[]);
    let mut c = Client::plain(&old);
    c.accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    assert_eq!(c.get("/api/v1/pods").0, 406);
    c.accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";
    let (st, list, _) = c.get("/api/v1/pods");
    assert_eq!((st, list["kind"].as_str()), (200, Some("PodList")));
}

#[test]
fn streaming_list_ends_its_initial_events_with_an_annotated_bookmark() {
    let sim = sim();
    pod(&sim, "ns", "a", &[]);
    pod(&sim, "ns", "b", &[]);
    let rv = sim.resource_version();
    let mut w = Client::plain(&sim);
    let head = w.watch("/api/v1/pods?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=&allowWatchBookmarks=true");
    assert_eq!(head.status, 200);
    assert_eq!(w.event_summary(), "ADDED a");
    assert_eq!(w.event_summary(), "ADDED b");
    let (t, o) = w.event();
    assert_eq!(t, "BOOKMARK");
    assert_eq!(
        o["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(o["metadata"]["resourceVersion"].as_str(), Some(rv.as_str()));
    assert_eq!(o["kind"], "Pod");
}

#[test]
fn a_list_at_an_exact_resource_version_shows_the_state_then_until_compacted() {
    let sim = sim();
    let pods = Resource::pods();
    sim.create(&pods, "ns", "a", &[], json!({"spec": {"v": 1}}));
    sim.create(&pods, "ns", "b", &[], json!({}));
    let then = sim.resource_version();
    sim.update(&pods, "ns", "a", json!({"spec": {"v": 2}}), None);
    sim.delete(&pods, "ns", "b");
    sim.create(&pods, "ns", "c", &[], json!({}));
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{}@{}",
                    i["metadata"]["name"].as_str().unwrap(),
                    i["metadata"]["resourceVersion"].as_str().unwrap()
                )
            })
            .collect()
    };
    let (st, body, _) = Client::plain(&sim).get(&format!(
        "/api/v1/pods?resourceVersion={then}&resourceVersionMatch=Exact"
    ));
    assert_eq!(st, 200);
    assert_eq!(body["metadata"]["resourceVersion"], json!(then));
    let first: u64 = then.parse::<u64>().unwrap() - 1;
    assert_eq!(
        names(&body),
        vec![format!("a@{first}"), format!("b@{then}")]
    );
    let (_, now, _) = Client::plain(&sim).get("/api/v1/pods");
    assert_eq!(names(&now).len(), 2, "a and c");
    sim.compact();
    let (st, _, _) = Client::plain(&sim).get(&format!(
        "/api/v1/pods?resourceVersion={then}&resourceVersionMatch=Exact"
    ));
    assert_eq!(st, 410, "compacted");
}

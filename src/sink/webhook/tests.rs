//! Real loopback tests: the client driven by a tiny mio loop against the
//! threaded test receiver. Every wait is bounded.

use super::testserver::{tls_material, Reply, TestServer};
use super::*;
use crate::http::USER_AGENT;
use crate::net::tls::{client_config, server_name, Trust};
use crate::net::Resolver;
use crate::tokens::TokenAllocator;
use mio::{Events, Poll, Token, Waker};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAKER: Token = Token(0);
/// No test needs more than this; hitting it is a failure, not a hang.
const LIMIT: Duration = Duration::from_secs(10);

struct Loop {
    poll: Poll,
    events: Events,
    resolver: Resolver,
    tokens: TokenAllocator,
    /// Most connections the client held at once, seen between steps.
    max_conns: usize,
}

impl Loop {
    fn new() -> Loop {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
        Loop {
            poll,
            events: Events::with_capacity(64),
            resolver: Resolver::new(waker),
            tokens: TokenAllocator::starting_at(10),
            max_conns: 0,
        }
    }

    fn ctx(&mut self) -> ClientCtx<'_> {
        ClientCtx {
            registry: self.poll.registry(),
            resolver: &mut self.resolver,
            tokens: &mut self.tokens,
            now: Instant::now(),
        }
    }

    fn start(&mut self, c: &mut WebhookClient, job: u64, body: &[u8]) {
        c.start(job, body.to_vec(), &mut self.ctx());
        self.max_conns = self.max_conns.max(c.connections());
    }

    /// Drives the client until `want` outcomes arrived (or panics at LIMIT).
    fn run(&mut self, c: &mut WebhookClient, want: usize) -> Vec<(u64, PostOutcome)> {
        let end = Instant::now() + LIMIT;
        let mut got = c.take_outcomes();
        while got.len() < want {
            let now = Instant::now();
            assert!(now < end, "no outcome after {LIMIT:?}: {c:?}, got {got:?}");
            let mut timeout = Duration::from_millis(50);
            if let Some(d) = c.deadline() {
                timeout = timeout.min(d.saturating_duration_since(now));
            }
            self.poll.poll(&mut self.events, Some(timeout)).unwrap();
            let tokens: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
            for t in tokens {
                if t == WAKER {
                    for a in self.resolver.answers() {
                        if c.owns_query(a.id) {
                            c.on_resolved(a.id, a.result, &mut self.ctx());
                        }
                    }
                } else if c.owns(t) {
                    c.on_ready(t, &mut self.ctx());
                }
                self.max_conns = self.max_conns.max(c.connections());
            }
            if c.deadline().is_some_and(|d| d <= Instant::now()) {
                c.on_timer(&mut self.ctx());
            }
            got.extend(c.take_outcomes());
        }
        got
    }
}

fn target(addr: SocketAddr) -> WebhookTarget {
    WebhookTarget {
        sink: "notify".into(),
        scheme_https: false,
        host: addr.ip().to_string(),
        port: addr.port(),
        path_and_query: "/hook".into(),
        headers: Vec::new(),
        tls: None,
        timeout: Duration::from_secs(5),
        max_connections: 4,
    }
}

fn status(code: u16) -> PostOutcome {
    PostOutcome::Status {
        code,
        retry_after: None,
    }
}

fn failed_reason(o: &PostOutcome) -> &str {
    match o {
        PostOutcome::Failed { reason } => reason,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn classify_follows_the_issue() {
    for code in [200, 201, 204, 299] {
        assert_eq!(classify(&status(code)), Verdict::Success, "{code}");
    }
    for code in [408, 429, 500, 502, 503, 599] {
        assert_eq!(
            classify(&status(code)),
            Verdict::Retry { retry_after: None },
            "{code}"
        );
    }
    for code in [100, 301, 304, 400, 401, 403, 404, 409, 413, 422] {
        assert_eq!(classify(&status(code)), Verdict::Fail, "{code}");
    }
    let ra = Some(Duration::from_secs(3));
    assert_eq!(
        classify(&PostOutcome::Status {
            code: 429,
            retry_after: ra
        }),
        Verdict::Retry { retry_after: ra }
    );
    assert_eq!(
        classify(&PostOutcome::Failed { reason: "x".into() }),
        Verdict::Retry { retry_after: None }
    );
}

#[test]
fn post_body_and_headers_arrive_exactly() {
    let server = TestServer::start(None);
    let mut t = target(server.addr());
    t.path_and_query = "/hooks/kwatchd?team=a%20b".into();
    t.headers = vec![
        ("Authorization".into(), "Bearer s3cret".into()),
        ("X-Cluster".into(), "prod".into()),
    ];
    let mut c = WebhookClient::new(t);
    let mut l = Loop::new();
    let body = br#"{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"web-1"}}}"#;
    l.start(&mut c, 7, body);
    assert_eq!(l.run(&mut c, 1), vec![(7, status(200))]);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/kwatchd?team=a%20b");
    assert_eq!(r.body, body);
    let port = server.addr().port();
    assert_eq!(r.header("Host"), Some(format!("127.0.0.1:{port}").as_str()));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(
        r.header("Content-Length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(r.header("User-Agent"), Some(USER_AGENT));
    assert_eq!(r.header("Authorization"), Some("Bearer s3cret"));
    assert_eq!(r.header("X-Cluster"), Some("prod"));
    assert_eq!(r.headers.len(), 6, "{:?}", r.headers);
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn a_header_the_client_writes_itself_fails_the_post_at_once() {
    let server = TestServer::start(None);
    let mut t = target(server.addr());
    t.headers = vec![("Content-Length".into(), "3".into())];
    let mut c = WebhookClient::new(t);
    let mut l = Loop::new();
    l.start(&mut c, 1, b"{}");
    let out = c.take_outcomes();
    assert_eq!(out.len(), 1);
    assert!(
        failed_reason(&out[0].1).contains("Content-Length"),
        "{out:?}"
    );
    assert_eq!(server.accepted(), 0);
}

#[test]
fn sequential_posts_reuse_one_kept_alive_connection() {
    let server = TestServer::start(None);
    let mut c = WebhookClient::new(target(server.addr()));
    let mut l = Loop::new();
    for job in 1..=3u64 {
        l.start(&mut c, job, format!("{{\"n\":{job}}}").as_bytes());
        assert_eq!(l.run(&mut c, 1), vec![(job, status(200))]);
    }
    let reqs = server.requests();
    assert_eq!(reqs.iter().map(|r| r.conn).collect::<Vec<_>>(), [1, 1, 1]);
    assert_eq!(server.accepted(), 1);
    assert_eq!(c.connections(), 1);
    assert_eq!(l.max_conns, 1);
}

#[test]
fn concurrent_posts_stay_within_max_connections() {
    let server = TestServer::start(None);
    server.script((0..6).map(|_| Reply::ok().delay(Duration::from_millis(100))));
    let mut t = target(server.addr());
    t.max_connections = 2;
    let mut c = WebhookClient::new(t);
    let mut l = Loop::new();
    for job in 1..=6u64 {
        l.start(&mut c, job, format!("{{\"n\":{job}}}").as_bytes());
    }
    assert_eq!(c.in_flight(), 6);
    let mut out = l.run(&mut c, 6);
    out.sort_by_key(|(j, _)| *j);
    assert_eq!(out, (1..=6).map(|j| (j, status(200))).collect::<Vec<_>>());
    assert!(l.max_conns <= 2, "client held {} connections", l.max_conns);
    assert!(server.max_open() <= 2, "server saw {}", server.max_open());
    assert_eq!(server.accepted(), 2, "both connections were kept alive");
    let mut bodies: Vec<_> = server.requests().into_iter().map(|r| r.body).collect();
    bodies.sort();
    let mut want: Vec<_> = (1..=6)
        .map(|j| format!("{{\"n\":{j}}}").into_bytes())
        .collect();
    want.sort();
    assert_eq!(bodies, want, "every POST arrived exactly once");
}

#[test]
fn status_503_with_retry_after_is_reported_and_retried() {
    let server = TestServer::start(None);
    server.script([Reply::status(503)
        .header("Retry-After", "7")
        .body(b"overloaded, come back later")]);
    let mut c = WebhookClient::new(target(server.addr()));
    let mut l = Loop::new();
    l.start(&mut c, 1, b"{}");
    let out = l.run(&mut c, 1);
    let want = PostOutcome::Status {
        code: 503,
        retry_after: Some(Duration::from_secs(7)),
    };
    assert_eq!(out, vec![(1, want.clone())]);
    assert_eq!(
        classify(&want),
        Verdict::Retry {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    // A non-2xx answer with keep-alive leaves the connection reusable.
    l.start(&mut c, 2, b"{}");
    assert_eq!(l.run(&mut c, 1), vec![(2, status(200))]);
    assert_eq!(server.accepted(), 1);
}

#[test]
fn status_400_fails_without_retry() {
    let server = TestServer::start(None);
    server.script([Reply::status(400).body(b"{\"error\":\"bad payload\"}")]);
    let mut c = WebhookClient::new(target(server.addr()));
    let mut l = Loop::new();
    l.start(&mut c, 1, b"{}");
    let out = l.run(&mut c, 1);
    assert_eq!(out, vec![(1, status(400))]);
    assert_eq!(classify(&out[0].1), Verdict::Fail);
}

#[test]
fn connection_refused_is_a_failure() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut c = WebhookClient::new(target(addr));
    let mut l = Loop::new();
    l.start(&mut c, 1, b"{}");
    let out = l.run(&mut c, 1);
    let reason = failed_reason(&out[0].1);
    assert!(reason.contains("cannot connect to"), "{reason}");
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    assert_eq!(c.connections(), 0);
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn a_receiver_that_never_answers_times_out() {
    let server = TestServer::start(None);
    server.script([Reply::hang()]);
    let mut t = target(server.addr());
    t.timeout = Duration::from_millis(300);
    let mut c = WebhookClient::new(t);
    let mut l = Loop::new();
    let started = Instant::now();
    l.start(&mut c, 1, b"{}");
    let out = l.run(&mut c, 1);
    let elapsed = started.elapsed();
    let reason = failed_reason(&out[0].1);
    assert!(
        reason.contains("timed out after 300ms (waiting for the response)"),
        "{reason}"
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(c.connections(), 0, "the timed-out connection is closed");
    // The next POST gets a fresh connection and succeeds.
    l.start(&mut c, 2, b"{}");
    assert_eq!(l.run(&mut c, 1), vec![(2, status(200))]);
}

#[test]
fn post_on_a_connection_the_server_closed_while_idle_is_resent_once() {
    let server = TestServer::start(None);
    server.script([Reply::ok().idle_close(Duration::from_millis(50))]);
    let mut c = WebhookClient::new(target(server.addr()));
    let mut l = Loop::new();
    l.start(&mut c, 1, b"{\"n\":1}");
    assert_eq!(l.run(&mut c, 1), vec![(1, status(200))]);
    assert_eq!(c.connections(), 1);
    // Do not poll: the client must not learn of the close before it reuses
    // the connection, which is the race the resend rule is for.
    let end = Instant::now() + LIMIT;
    while server.open() > 0 {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(10));
    }
    l.start(&mut c, 2, b"{\"n\":2}");
    assert_eq!(l.run(&mut c, 1), vec![(2, status(200))]);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].body, b"{\"n\":2}");
    assert_ne!(reqs[0].conn, reqs[1].conn);
    assert_eq!(server.accepted(), 2);
    assert_eq!(c.connections(), 1);
    assert_eq!(c.resends(), 1, "the resend path ran");
}

#[test]
fn a_fresh_connection_closed_without_an_answer_fails_without_resend() {
    let server = TestServer::start(None);
    server.script([Reply::drop_connection()]);
    let mut c = WebhookClient::new(target(server.addr()));
    let mut l = Loop::new();
    l.start(&mut c, 1, b"{}");
    let out = l.run(&mut c, 1);
    let reason = failed_reason(&out[0].1);
    assert!(reason.contains("before any response"), "{reason}");
    assert_eq!(c.resends(), 0);
    assert_eq!(server.requests().len(), 1, "sent exactly once");
}

#[test]
fn an_idle_close_seen_by_the_loop_just_drops_the_connection() {
    let server = TestServer::start(None);
    server.script([Reply::ok().idle_close(Duration::from_millis(30))]);
    let mut c = WebhookClient::new(target(server.addr()));
    let mut l = Loop::new();
    l.start(&mut c, 1, b"{}");
    assert_eq!(l.run(&mut c, 1), vec![(1, status(200))]);
    let end = Instant::now() + LIMIT;
    while c.connections() > 0 {
        assert!(Instant::now() < end, "idle close never noticed");
        l.poll
            .poll(&mut l.events, Some(Duration::from_millis(20)))
            .unwrap();
        let tokens: Vec<Token> = l.events.iter().map(|e| e.token()).collect();
        for t in tokens {
            c.on_ready(t, &mut l.ctx());
        }
    }
    l.start(&mut c, 2, b"{}");
    assert_eq!(l.run(&mut c, 1), vec![(2, status(200))]);
    assert_eq!(server.requests().len(), 2);
    assert_eq!(c.resends(), 0);
}

#[test]
fn connection_close_response_is_not_reused() {
    let server = TestServer::start(None);
    server.script([Reply::ok().close()]);
    let mut c = WebhookClient::new(target(server.addr()));
    let mut l = Loop::new();
    l.start(&mut c, 1, b"{}");
    assert_eq!(l.run(&mut c, 1), vec![(1, status(200))]);
    assert_eq!(c.connections(), 0);
    l.start(&mut c, 2, b"{}");
    assert_eq!(l.run(&mut c, 1), vec![(2, status(200))]);
    let conns: Vec<_> = server.requests().iter().map(|r| r.conn).collect();
    assert_eq!(conns, [1, 2]);
}

#[test]
fn an_oversized_response_body_keeps_its_status_but_not_the_connection() {
    let server = TestServer::start(None);
    server.script([Reply::ok().body(&vec![b'x'; RESPONSE_BODY_LIMIT + 1])]);
    let mut c = WebhookClient::new(target(server.addr()));
    let mut l = Loop::new();
    l.start(&mut c, 1, b"{}");
    assert_eq!(l.run(&mut c, 1), vec![(1, status(200))]);
    assert_eq!(c.connections(), 0);
}

#[test]
fn a_multi_megabyte_body_arrives_whole() {
    let server = TestServer::start(None);
    let mut c = WebhookClient::new(target(server.addr()));
    let mut l = Loop::new();
    let body: Vec<u8> = (0..8 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    l.start(&mut c, 1, &body);
    assert_eq!(l.run(&mut c, 1), vec![(1, status(200))]);
    assert!(server.requests()[0].body == body);
}

#[test]
fn a_host_name_is_resolved_off_the_loop() {
    let server = TestServer::start(None);
    let mut t = target(server.addr());
    // Resolves through the helper thread; if it yields ::1 first, the
    // refused connect falls through to 127.0.0.1.
    t.host = "localhost".into();
    let mut c = WebhookClient::new(t);
    let mut l = Loop::new();
    l.start(&mut c, 1, b"{}");
    assert_eq!(c.in_flight(), 1);
    assert_eq!(l.run(&mut c, 1), vec![(1, status(200))]);
    let port = server.addr().port();
    assert_eq!(
        server.requests()[0].header("Host"),
        Some(format!("localhost:{port}").as_str())
    );
}

#[test]
fn close_all_reports_what_was_in_flight() {
    let server = TestServer::start(None);
    server.script([Reply::hang(), Reply::hang()]);
    let mut t = target(server.addr());
    t.max_connections = 1;
    let mut c = WebhookClient::new(t);
    let mut l = Loop::new();
    l.start(&mut c, 1, b"{}");
    l.start(&mut c, 2, b"{}");
    assert_eq!(c.in_flight(), 2);
    c.close_all(l.poll.registry());
    let mut out = c.take_outcomes();
    out.sort_by_key(|(j, _)| *j);
    assert_eq!(out.len(), 2);
    assert!(failed_reason(&out[0].1).contains("shut down"));
    assert_eq!(c.in_flight(), 0);
    assert_eq!(c.connections(), 0);
}

fn tls_target(server: &TestServer, ca_pem: &str) -> (WebhookTarget, tempfile::NamedTempFile) {
    let mut ca = tempfile::NamedTempFile::new().unwrap();
    ca.write_all(ca_pem.as_bytes()).unwrap();
    let cfg = client_config(&Trust::CaFile(ca.path().to_owned())).unwrap();
    let mut t = target(server.addr());
    t.scheme_https = true;
    t.tls = Some((cfg, server_name("127.0.0.1").unwrap()));
    (t, ca)
}

#[test]
fn https_with_a_generated_ca_works_and_keeps_alive() {
    let (server_cfg, ca_pem) = tls_material();
    let server = TestServer::start(Some(server_cfg));
    let (t, _ca) = tls_target(&server, &ca_pem);
    let mut c = WebhookClient::new(t);
    let mut l = Loop::new();
    for job in 1..=2u64 {
        l.start(&mut c, job, format!("{{\"n\":{job}}}").as_bytes());
        assert_eq!(l.run(&mut c, 1), vec![(job, status(200))]);
    }
    let reqs = server.requests();
    assert_eq!(reqs[1].body, b"{\"n\":2}");
    assert_eq!(reqs.iter().map(|r| r.conn).collect::<Vec<_>>(), [1, 1]);
}

#[test]
fn https_with_the_wrong_ca_fails_naming_tls() {
    let (server_cfg, _) = tls_material();
    let (_, other_ca) = tls_material();
    let server = TestServer::start(Some(server_cfg));
    let (t, _ca) = tls_target(&server, &other_ca);
    let mut c = WebhookClient::new(t);
    let mut l = Loop::new();
    l.start(&mut c, 1, b"{}");
    let out = l.run(&mut c, 1);
    let reason = failed_reason(&out[0].1);
    assert!(reason.contains("TLS failure"), "{reason}");
    assert!(server.requests().is_empty());
}

/// rustls buffers at most 64 KiB of unsent data unless told otherwise, and
/// `Connection::send` hands over whole requests.
#[test]
fn https_body_over_64_kib() {
    let (server_cfg, ca_pem) = tls_material();
    let server = TestServer::start(Some(server_cfg));
    let (t, _ca) = tls_target(&server, &ca_pem);
    let mut c = WebhookClient::new(t);
    let mut l = Loop::new();
    let body = vec![b'x'; 200 * 1024];
    l.start(&mut c, 1, &body);
    assert_eq!(l.run(&mut c, 1), vec![(1, status(200))]);
    assert!(server.requests()[0].body == body);
}

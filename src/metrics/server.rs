//! The metrics listener and its connections on the daemon's mio loop.
//!
//! Non-blocking throughout: accept, read and write until `WouldBlock`;
//! WRITABLE interest only while a response is unsent. Bounded: at most
//! [`MAX_CONNECTIONS`] connections, one request head of at most 8 KiB
//! buffered per connection, a request head must arrive within
//! [`REQUEST_TIMEOUT`] of its first byte, a new connection must send its
//! first byte within [`FIRST_REQUEST_TIMEOUT`], and a kept-alive connection
//! idle for [`IDLE_TIMEOUT`] is closed. A client pipelining many requests is
//! served [`REQUESTS_PER_TURN`] at a time; the rest waits for the next loop
//! turn (its deadline is set to "now", so the loop comes back at once).
//!
//! The bound must not starve the probes: a liveness probe that is refused
//! because idle connections hold every slot restarts a healthy daemon. So a
//! new connection is always taken; at the bound, the connection that has
//! waited longest for its client goes instead (an idle one before one with
//! a partial request, before one whose answer is being written).

use super::auth::Auth;
use super::http::{self, Endpoint, Response, Session};
use crate::tokens::Source;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const MAX_CONNECTIONS: usize = 64;
/// Prometheus keeps a connection between scrapes (15 s to 1 min apart).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A client that connects and says nothing is not a scraper or a probe.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const REQUESTS_PER_TURN: usize = 8;
/// After a failed accept (out of descriptors): try again this much later.
const ACCEPT_RETRY: Duration = Duration::from_secs(1);
const LISTENER: Token = Source::Metrics(0).token();

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    session: Session,
    deadline: Instant,
    /// When the connection last made progress (accepted, read, written).
    active: Instant,
    /// Registered for WRITABLE too (a response is unsent).
    writable: bool,
    /// Stopped at its request budget with more to do.
    again: bool,
}

impl Conn {
    /// Eviction order: 0 waiting for a request, 1 a request half sent,
    /// 2 an answer being written or a pipeline being served.
    fn busyness(&self) -> u8 {
        if self.again || !self.session.output().is_empty() {
            2
        } else if !self.session.input_is_empty() {
            1
        } else {
            0
        }
    }
}

/// What the server needs answered: the daemon renders from its state.
pub type Handler<'a> = dyn FnMut(Endpoint) -> Response + 'a;

pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
    conns: BTreeMap<usize, Conn>,
    /// Ids only grow (0 is the listener's), so a token is never reused.
    next_id: usize,
    accept_retry: Option<Instant>,
    /// `[daemon] metrics_token_file`, when set.
    auth: Option<Auth>,
    /// The start-up lines were logged: later changes are logged too.
    announced: bool,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .field("connections", &self.conns.len())
            .field("auth", &self.auth)
            .finish()
    }
}

impl MetricsServer {
    /// Binds `addr` (port 0: any free port, see `local_addr`) and registers
    /// the listener.
    pub fn bind(addr: SocketAddr, registry: &Registry) -> io::Result<MetricsServer> {
        let mut listener = TcpListener::bind(addr)?;
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        let addr = listener.local_addr()?;
        Ok(MetricsServer {
            listener,
            addr,
            conns: BTreeMap::new(),
            next_id: 1,
            accept_retry: None,
            auth: None,
            announced: false,
        })
    }

    /// Requires the token in `path` for `/metrics` and `/status` (`None`:
    /// no token). Applies to the next request, kept-alive connections too.
    pub fn require_token(&mut self, path: Option<PathBuf>) {
        if self.auth.as_ref().map(Auth::path) == path.as_deref() {
            return;
        }
        if self.announced {
            match &path {
                Some(p) => log::info!(
                    "metrics: /metrics and /status now need the bearer token in {}",
                    p.display()
                ),
                None => log::warn!("metrics: /metrics and /status no longer need a token"),
            }
        }
        self.auth = path.map(Auth::new);
    }

    /// The start-up log: where it listens, and a warning when every
    /// interface can read the daemon's state without a token.
    pub fn announce(&mut self) {
        self.announced = true;
        log::info!("metrics: listening on http://{}", self.addr);
        match (&self.auth, exposure_warning(self.addr)) {
            (Some(auth), _) => log::info!(
                "metrics: /metrics and /status need the bearer token in {} (/healthz and /readyz stay open for probes)",
                auth.path().display()
            ),
            (None, Some(warning)) => log::warn!("{warning}"),
            (None, None) => {}
        }
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// A poll event for one of the server's tokens.
    pub fn on_ready(
        &mut self,
        token: Token,
        registry: &Registry,
        now: Instant,
        handler: &mut Handler<'_>,
    ) {
        if token == LISTENER {
            self.accept(registry, now, handler);
            return;
        }
        let Some(Source::Metrics(id)) = Source::of(token) else {
            return;
        };
        if let Some(conn) = self.conns.get_mut(&id) {
            if !drive(conn, token, registry, now, &mut self.auth, handler) {
                self.close(id, registry);
            }
        }
    }

    /// Earliest time `on_timer` has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        let conns = self.conns.values().map(|c| c.deadline);
        conns.chain(self.accept_retry).min()
    }

    /// Closes idle connections, resumes budgeted ones, retries accepting.
    pub fn on_timer(&mut self, registry: &Registry, now: Instant, handler: &mut Handler<'_>) {
        if self.accept_retry.is_some_and(|t| t <= now) {
            self.accept_retry = None;
            self.accept(registry, now, handler);
        }
        let due: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            if conn.again {
                conn.again = false;
                conn.deadline = now + IDLE_TIMEOUT;
                let token = Source::Metrics(id).token();
                if drive(conn, token, registry, now, &mut self.auth, handler) {
                    continue;
                }
            } else {
                log::debug!("metrics: closing idle connection from {}", conn.peer);
            }
            self.close(id, registry);
        }
    }

    /// Stops serving: the listener and every connection.
    pub fn shutdown(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.listener);
        let ids: Vec<usize> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id, registry);
        }
    }

    fn close(&mut self, id: usize, registry: &Registry) {
        if let Some(mut conn) = self.conns.remove(&id) {
            // Dropping the stream closes it; deregistering first keeps the
            // poller's view exact.
            let _ = registry.deregister(&mut conn.stream);
        }
    }

    /// Makes room for a new connection from `peer`: closes the one that has
    /// waited longest for its client, idle ones first.
    fn evict(&mut self, registry: &Registry, peer: SocketAddr) {
        let victim = self
            .conns
            .iter()
            .min_by_key(|(_, c)| (c.busyness(), c.active))
            .map(|(id, c)| (*id, c.peer));
        if let Some((id, old)) = victim {
            log::debug!(
                "metrics: {MAX_CONNECTIONS} connections open; closing the longest waiting one (from {old}) for one from {peer}"
            );
            self.close(id, registry);
        }
    }

    fn accept(&mut self, registry: &Registry, now: Instant, handler: &mut Handler<'_>) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    // Likely out of descriptors: the pending connection stays
                    // in the backlog, and no new edge may come; retry later.
                    let what = format_args!(
                        "metrics: cannot accept a connection: {e}; retrying in {}s",
                        ACCEPT_RETRY.as_secs()
                    );
                    if crate::fdlimit::is_exhaustion(&e) {
                        crate::fdlimit::warn_exhausted(&what);
                        log::debug!("{what}");
                    } else {
                        log::warn!("{what}");
                    }
                    self.accept_retry = Some(now + ACCEPT_RETRY);
                    return;
                }
            };
            if self.conns.len() >= MAX_CONNECTIONS {
                self.evict(registry, peer);
            }
            let id = self.next_id;
            self.next_id += 1;
            let token = Source::Metrics(id).token();
            if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
                log::warn!("metrics: cannot register a connection from {peer}: {e}");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let mut conn = Conn {
                stream,
                peer,
                session: Session::default(),
                deadline: now + FIRST_REQUEST_TIMEOUT,
                active: now,
                writable: false,
                again: false,
            };
            // The request may already be there.
            let keep = drive(&mut conn, token, registry, now, &mut self.auth, handler);
            self.conns.insert(id, conn);
            if !keep {
                self.close(id, registry);
            }
        }
    }
}

/// The warning for a listener every interface reaches without a token.
fn exposure_warning(addr: SocketAddr) -> Option<String> {
    addr.ip().is_unspecified().then(|| format!(
        "metrics: http://{addr} listens on every interface without authentication: whoever reaches the port reads /status and /metrics (watch and cluster names, errors); set [daemon] metrics_token_file, or listen on 127.0.0.1"
    ))
}

/// Moves one connection forward until it must wait. False: close it.
fn drive(
    conn: &mut Conn,
    token: Token,
    registry: &Registry,
    now: Instant,
    auth: &mut Option<Auth>,
    handler: &mut Handler<'_>,
) -> bool {
    let mut budget = REQUESTS_PER_TURN;
    let mut buf = [0u8; 4096];
    loop {
        while !conn.session.output().is_empty() {
            match conn.stream.write(conn.session.output()) {
                Ok(0) => return false,
                Ok(n) => {
                    conn.session.advance(n);
                    conn.deadline = now + IDLE_TIMEOUT;
                    conn.active = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !conn.writable {
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        if registry
                            .reregister(&mut conn.stream, token, interest)
                            .is_err()
                        {
                            return false;
                        }
                        conn.writable = true;
                    }
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if conn.writable {
            if registry
                .reregister(&mut conn.stream, token, Interest::READABLE)
                .is_err()
            {
                return false;
            }
            conn.writable = false;
        }
        if conn.session.is_finished() {
            return false;
        }
        if budget == 0 {
            conn.again = true;
            conn.deadline = now;
            return true;
        }
        if let Some(req) = conn.session.next_request() {
            budget -= 1;
            let mut allowed = |endpoint| match auth {
                Some(auth) => auth.check(endpoint, &req),
                None => Ok(()),
            };
            let resp = match http::route(&req).and_then(|e| allowed(e).map(|()| e)) {
                Ok(endpoint) => handler(endpoint),
                Err(resp) => {
                    if resp.status == 401 {
                        log::debug!(
                            "metrics: {} from {} refused: no valid token",
                            req.path,
                            conn.peer
                        );
                    }
                    resp
                }
            };
            conn.session.respond(&req, &resp);
            continue;
        }
        if conn.session.is_finished() || !conn.session.output().is_empty() {
            // A rejected request's answer is queued: send it, then close.
            continue;
        }
        let room = conn.session.read_room().min(buf.len());
        if room == 0 {
            return true;
        }
        match conn.stream.read(&mut buf[..room]) {
            Ok(0) => conn.session.on_peer_closed(),
            Ok(n) => {
                if conn.session.input_is_empty() {
                    conn.deadline = now + REQUEST_TIMEOUT;
                }
                conn.active = now;
                conn.session.feed(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;

    struct Rig {
        poll: Poll,
        events: Events,
        server: MetricsServer,
        answered: usize,
    }

    impl Rig {
        fn new() -> Rig {
            let poll = Poll::new().unwrap();
            let server =
                MetricsServer::bind("127.0.0.1:0".parse().unwrap(), poll.registry()).unwrap();
            Rig {
                poll,
                events: Events::with_capacity(64),
                server,
                answered: 0,
            }
        }

        fn connect(&self) -> StdStream {
            let s = StdStream::connect(self.server.local_addr()).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        }

        /// Polls briefly and routes events, `now` being the loop's clock.
        fn turn(&mut self, now: Instant) {
            self.poll
                .poll(&mut self.events, Some(Duration::from_millis(50)))
                .unwrap();
            let tokens: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
            let answered = &mut self.answered;
            let mut handler = |_e: Endpoint| {
                *answered += 1;
                Response::text(200, "ok\n")
            };
            for t in tokens {
                self.server
                    .on_ready(t, self.poll.registry(), now, &mut handler);
            }
            self.server
                .on_timer(self.poll.registry(), now, &mut handler);
        }

        fn turns(&mut self, n: usize) {
            for _ in 0..n {
                self.turn(Instant::now());
            }
        }
    }

    /// True when the peer closed `s` (EOF or reset).
    fn closed(s: &mut StdStream) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    #[test]
    fn silent_slow_and_idle_connections_are_closed_by_their_deadlines() {
        let mut rig = Rig::new();
        let mut silent = rig.connect();
        let mut slow = rig.connect();
        let mut kept = rig.connect();
        rig.turns(3);
        slow.write_all(b"GET /metr").unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        rig.turns(3);
        let mut answer = [0u8; 256];
        assert!(kept.read(&mut answer).unwrap() > 0);
        assert_eq!(rig.server.connections(), 3);
        // A connection must say something within FIRST_REQUEST_TIMEOUT.
        rig.turn(Instant::now() + FIRST_REQUEST_TIMEOUT + Duration::from_millis(100));
        assert_eq!(rig.server.connections(), 2);
        assert!(closed(&mut silent));
        // A head must complete within REQUEST_TIMEOUT of its first byte.
        rig.turn(Instant::now() + REQUEST_TIMEOUT + Duration::from_millis(100));
        assert_eq!(rig.server.connections(), 1);
        assert!(closed(&mut slow));
        // An answered connection is kept alive for IDLE_TIMEOUT.
        rig.turn(Instant::now() + IDLE_TIMEOUT + Duration::from_millis(100));
        assert_eq!(rig.server.connections(), 0);
        assert!(closed(&mut kept));
        assert_eq!(rig.answered, 1);
    }

    #[test]
    fn at_the_bound_a_new_connection_replaces_the_longest_idle_one() {
        let mut rig = Rig::new();
        let mut clients: Vec<StdStream> = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            clients.push(rig.connect());
            rig.turn(Instant::now());
        }
        assert_eq!(rig.server.connections(), MAX_CONNECTIONS);
        // The newest has half a request: busier than the idle ones.
        clients[MAX_CONNECTIONS - 1].write_all(b"GET /he").unwrap();
        rig.turns(2);
        // Probes get in and are answered (kept alive, so each one needs
        // a slot).
        let mut probes = Vec::new();
        for (round, oldest) in clients.iter_mut().enumerate().take(3) {
            let mut probe = rig.connect();
            probe.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
            rig.turns(3);
            let mut answer = [0u8; 512];
            let n = probe.read(&mut answer).unwrap();
            let answer = String::from_utf8_lossy(&answer[..n]);
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
            // The one that waited longest went for it.
            assert!(closed(oldest), "client {round}");
            probes.push(probe);
        }
        assert_eq!(rig.server.connections(), MAX_CONNECTIONS);
        // The half-sent request survived and can finish.
        clients[MAX_CONNECTIONS - 1]
            .write_all(b"althz HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        rig.turns(3);
        let mut answer = String::new();
        clients[MAX_CONNECTIONS - 1]
            .read_to_string(&mut answer)
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }

    #[test]
    fn many_pipelined_requests_are_served_a_budget_per_turn() {
        let mut rig = Rig::new();
        let mut c = rig.connect();
        let n = REQUESTS_PER_TURN * 3;
        let mut raw = "GET /healthz HTTP/1.1\r\n\r\n".repeat(n - 1);
        raw.push_str("GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
        c.write_all(raw.as_bytes()).unwrap();
        // Readiness alone serves one budget, then leaves a deadline of now.
        let mut ready_turns = 0;
        while rig.answered == 0 && ready_turns < 50 {
            rig.poll
                .poll(&mut rig.events, Some(Duration::from_millis(50)))
                .unwrap();
            let tokens: Vec<Token> = rig.events.iter().map(|e| e.token()).collect();
            let answered = &mut rig.answered;
            let mut handler = |_e: Endpoint| {
                *answered += 1;
                Response::text(200, "ok\n")
            };
            for t in tokens {
                rig.server
                    .on_ready(t, rig.poll.registry(), Instant::now(), &mut handler);
            }
            ready_turns += 1;
        }
        assert_eq!(rig.answered, REQUESTS_PER_TURN);
        let now = Instant::now();
        assert!(rig.server.deadline().is_some_and(|d| d <= now));
        // Each timer call serves one more budget.
        let mut timer_calls = 0;
        while rig.answered < n && timer_calls < 10 {
            let before = rig.answered;
            let answered = &mut rig.answered;
            let mut handler = |_e: Endpoint| {
                *answered += 1;
                Response::text(200, "ok\n")
            };
            rig.server
                .on_timer(rig.poll.registry(), Instant::now(), &mut handler);
            assert!(rig.answered - before <= REQUESTS_PER_TURN);
            timer_calls += 1;
        }
        assert_eq!(rig.answered, n);
        assert_eq!(timer_calls, 2);
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), n);
    }

    /// One request on a fresh connection; the whole answer.
    fn ask(rig: &mut Rig, request: &str) -> String {
        let mut c = rig.connect();
        c.write_all(request.as_bytes()).unwrap();
        rig.turns(3);
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn a_token_guards_metrics_and_status_but_not_the_probes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "t0ken\n").unwrap();
        let mut rig = Rig::new();
        rig.server.require_token(Some(path.clone()));
        let get =
            |p: &str, auth: &str| format!("GET {p} HTTP/1.1\r\n{auth}Connection: close\r\n\r\n");
        for p in ["/metrics", "/status"] {
            let refused = ask(&mut rig, &get(p, ""));
            assert!(
                refused.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
                "{refused}"
            );
            assert!(refused.contains("WWW-Authenticate: Bearer realm=\"kwatchd\"\r\n"));
            let wrong = ask(&mut rig, &get(p, "Authorization: Bearer nope\r\n"));
            assert!(wrong.starts_with("HTTP/1.1 401 "), "{wrong}");
            let ok = ask(&mut rig, &get(p, "Authorization: Bearer t0ken\r\n"));
            assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        }
        assert_eq!(rig.answered, 2, "refused requests never reach the handler");
        let probe = ask(&mut rig, &get("/healthz", ""));
        assert!(probe.starts_with("HTTP/1.1 200 OK\r\n"), "{probe}");
        // Unset again: open.
        rig.server.require_token(None);
        assert!(ask(&mut rig, &get("/metrics", "")).starts_with("HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn wildcard_listeners_are_warned_about() {
        for addr in ["0.0.0.0:9464", "[::]:9464"] {
            let w = exposure_warning(addr.parse().unwrap()).unwrap();
            assert!(
                w.contains("without authentication") && w.contains("metrics_token_file"),
                "{w}"
            );
        }
        for addr in ["127.0.0.1:9464", "[::1]:9464", "10.0.0.5:9464"] {
            assert_eq!(exposure_warning(addr.parse().unwrap()), None, "{addr}");
        }
    }
}

//! One NATS connection at a time, driven by the loop: resolve, connect,
//! INFO, TLS if asked for, CONNECT + SUB + PING, then PONG = accepted.
//! Reconnects rotate through the configured servers and those the servers
//! announce in INFO `connect_urls`, with a jittered exponential backoff
//! (50 ms … 5 s) that resets once a connection is accepted. PINGs every
//! `ping_interval`; two unanswered mean the connection is dead (TCP
//! keepalive alone takes minutes to notice a vanished peer).
//!
//! Requests get their replies on one wildcard subscription: the reply
//! subject is `<inbox>.<token>`, and a reply comes out as
//! [`ClientEvent::Reply`] with that token. The client knows nothing about
//! what a token means.

use super::proto::{self, Message, Parser, ServerInfo, ServerOp};
use super::{ClientSettings, ConnState, ServerUrl};
use crate::net::resolve::Resolution;
use crate::net::{tls, Connection, ReadOutcome};
use crate::rand::Rng;
use crate::sink::SinkCtx;
use mio::{Registry, Token};
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Replies are PubAcks and status messages: small. This bounds what a
/// broken server can make us hold.
const MAX_INBOUND: usize = 1 << 20;
const READ_BUF: usize = 64 * 1024;
const SID_INBOX: u64 = 1;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Discovered servers kept at most (a cluster announces its peers).
const MAX_SERVERS: usize = 64;

/// What happened on the connection, for the owner to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server accepted CONNECT: requests may go out.
    Connected { server: String },
    /// An accepted connection ended; requests on it will get no reply.
    Disconnected { reason: String },
    /// A message on the inbox, for the request with this token.
    Reply { token: u64, message: Message },
    /// `-ERR` on an accepted connection (the server may close it next).
    ServerError(String),
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// No connection; the next attempt at `retry_at`.
    Idle {
        retry_at: Instant,
    },
    Resolving {
        query: u64,
        deadline: Instant,
    },
    Connecting {
        deadline: Instant,
    },
    AwaitInfo {
        deadline: Instant,
    },
    /// CONNECT, SUB and PING sent.
    AwaitPong {
        deadline: Instant,
    },
    Ready {
        next_ping: Instant,
        unanswered: u32,
    },
}

pub struct NatsClient {
    settings: ClientSettings,
    servers: Vec<ServerUrl>,
    next_server: usize,
    current: usize,
    conn: Option<Connection>,
    step: Step,
    parser: Parser,
    info: ServerInfo,
    /// `_INBOX.<random>.`
    inbox: String,
    rng: Rng,
    /// Attempts failed since the last accepted connection.
    failures: u32,
    events: Vec<ClientEvent>,
    read_buf: Box<[u8]>,
    out: Vec<u8>,
    /// Reused for each publish's reply subject.
    reply: String,
    /// The system trust store's config, built when a server first asks for
    /// TLS that the settings did not configure.
    system_tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for NatsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsClient")
            .field("name", &self.settings.name)
            .field("state", &self.state())
            .finish()
    }
}

impl NatsClient {
    pub fn new(settings: ClientSettings, mut rng: Rng, now: Instant) -> Self {
        let id: String = (0..4).map(|_| format!("{:016x}", rng.next_u64())).collect();
        NatsClient {
            servers: settings.servers.clone(),
            settings,
            next_server: 0,
            current: 0,
            conn: None,
            step: Step::Idle { retry_at: now },
            parser: Parser::new(MAX_INBOUND),
            info: ServerInfo::default(),
            inbox: format!("_INBOX.{id}."),
            rng,
            failures: 0,
            events: Vec::new(),
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            out: Vec::new(),
            reply: String::new(),
            system_tls: None,
        }
    }

    pub fn state(&self) -> ConnState {
        match self.step {
            Step::Idle { .. } => ConnState::Disconnected,
            Step::Resolving { .. } => ConnState::Resolving,
            Step::Connecting { .. } => ConnState::Connecting,
            Step::AwaitInfo { .. } | Step::AwaitPong { .. } => ConnState::Handshaking,
            Step::Ready { .. } => ConnState::Connected,
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.step, Step::Ready { .. })
    }

    /// The server of the current (or last) attempt.
    pub fn server(&self) -> Option<&ServerUrl> {
        self.servers.get(self.current)
    }

    /// Every server the client rotates through, discovered ones included.
    pub fn servers(&self) -> &[ServerUrl] {
        &self.servers
    }

    /// The accepted connection's INFO (`max_payload` …).
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    pub fn owns(&self, token: Token) -> bool {
        self.conn.as_ref().is_some_and(|c| c.token() == token)
    }

    pub fn owns_query(&self, id: u64) -> bool {
        matches!(self.step, Step::Resolving { query, .. } if query == id)
    }

    pub fn take_events(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.events)
    }

    /// When `poll` has a timer to act on.
    pub fn deadline(&self) -> Option<Instant> {
        Some(match self.step {
            Step::Idle { retry_at } => retry_at,
            Step::Resolving { deadline, .. }
            | Step::Connecting { deadline }
            | Step::AwaitInfo { deadline }
            | Step::AwaitPong { deadline } => deadline,
            Step::Ready { next_ping, .. } => next_ping,
        })
    }

    /// Timers: the next attempt, handshake timeouts, PINGs.
    pub fn poll(&mut self, ctx: &mut SinkCtx<'_>) {
        let now = ctx.now;
        match self.step {
            Step::Idle { retry_at } if retry_at <= now => self.attempt(ctx),
            Step::Resolving { deadline, .. }
            | Step::Connecting { deadline }
            | Step::AwaitInfo { deadline }
            | Step::AwaitPong { deadline }
                if deadline <= now =>
            {
                let what = self.state().as_str();
                let t = humantime::format_duration(self.settings.connect_timeout);
                self.fail(format!("timed out after {t} ({what})"), ctx);
            }
            Step::Ready {
                next_ping,
                unanswered,
            } if next_ping <= now => {
                if unanswered >= 2 {
                    self.fail("no PONG to two PINGs: the connection is dead".into(), ctx);
                    return;
                }
                self.step = Step::Ready {
                    next_ping: now + self.settings.ping_interval,
                    unanswered: unanswered + 1,
                };
                self.out.extend_from_slice(b"PING\r\n");
                self.flush(ctx);
            }
            _ => {}
        }
    }

    /// Queues a request: `HPUB subject <inbox>.<token>` with `headers` (a
    /// complete block) and `payload`. Sent by the next [`flush`](Self::flush).
    /// Only while [`is_ready`](Self::is_ready).
    pub fn publish(&mut self, subject: &str, token: u64, headers: &[u8], payload: &[u8]) {
        let mut reply = std::mem::take(&mut self.reply);
        reply.clear();
        reply.push_str(&self.inbox);
        // Writing into a String cannot fail.
        let _ = write!(reply, "{token}");
        proto::encode_hpub(&mut self.out, subject, &reply, headers, payload);
        self.reply = reply;
    }

    /// Bytes queued and not handed to the socket yet.
    pub fn queued_bytes(&self) -> usize {
        self.out.len()
    }

    /// Hands queued bytes to the connection and writes what the socket takes.
    pub fn flush(&mut self, ctx: &mut SinkCtx<'_>) {
        let Some(conn) = self.conn.as_mut() else {
            self.out.clear();
            return;
        };
        let sent = if self.out.is_empty() {
            conn.flush(ctx.registry)
        } else {
            conn.send_from(ctx.registry, &mut self.out)
        };
        if let Err(e) = sent {
            self.fail(format!("write failed: {e}"), ctx);
        }
    }

    pub fn on_resolved(
        &mut self,
        id: u64,
        result: io::Result<Vec<SocketAddr>>,
        ctx: &mut SinkCtx<'_>,
    ) {
        let Step::Resolving { query, deadline } = self.step else {
            return;
        };
        if query != id {
            return;
        }
        match result {
            Ok(addrs) => self.connect(&addrs, deadline, ctx),
            Err(e) => self.fail(format!("cannot resolve: {e}"), ctx),
        }
    }

    /// Readiness on the connection's token.
    pub fn on_ready(&mut self, token: Token, ctx: &mut SinkCtx<'_>) {
        if !self.owns(token) {
            return;
        }
        if let Step::Connecting { deadline } = self.step {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            match conn.finish_connect() {
                Ok(false) => return,
                Ok(true) => self.step = Step::AwaitInfo { deadline },
                Err(e) => return self.fail(format!("cannot connect: {e}"), ctx),
            }
        }
        self.flush(ctx);
        self.read(ctx);
    }

    /// Closes the connection for good (shutdown).
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut c) = self.conn.take() {
            c.close(registry);
        }
        self.step = Step::Idle {
            retry_at: Instant::now() + Duration::from_secs(3600 * 24 * 365),
        };
    }

    // ----- internals -----

    fn read(&mut self, ctx: &mut SinkCtx<'_>) {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            match conn.read(ctx.registry, &mut self.read_buf) {
                Ok(ReadOutcome::Data(n)) => {
                    self.parser.feed(self.read_buf.get(..n).unwrap_or_default());
                    if !self.handle_ops(ctx) {
                        return;
                    }
                }
                Ok(ReadOutcome::WouldBlock) => return,
                Ok(ReadOutcome::Closed { .. }) => {
                    return self.fail("the server closed the connection".into(), ctx)
                }
                Err(e) => return self.fail(format!("read failed: {e}"), ctx),
            }
        }
    }

    /// False when the connection failed meanwhile.
    fn handle_ops(&mut self, ctx: &mut SinkCtx<'_>) -> bool {
        loop {
            let op = match self.parser.next_op() {
                Ok(Some(op)) => op,
                Ok(None) => break,
                Err(e) => {
                    self.fail(format!("protocol error: {e}"), ctx);
                    return false;
                }
            };
            if !self.handle(op, ctx) {
                return false;
            }
        }
        self.flush(ctx);
        self.conn.is_some()
    }

    fn handle(&mut self, op: ServerOp, ctx: &mut SinkCtx<'_>) -> bool {
        match (op, self.step) {
            (ServerOp::Ping, _) => self.out.extend_from_slice(b"PONG\r\n"),
            (ServerOp::Info(info), Step::AwaitInfo { deadline }) => {
                self.learn(&info);
                self.info = *info;
                if let Err(e) = self.handshake(ctx) {
                    self.fail(e, ctx);
                    return false;
                }
                self.step = Step::AwaitPong { deadline };
            }
            (ServerOp::Info(info), _) => {
                self.learn(&info);
            }
            (ServerOp::Pong, Step::AwaitPong { .. }) => {
                self.failures = 0;
                self.step = Step::Ready {
                    next_ping: ctx.now + self.settings.ping_interval,
                    unanswered: 0,
                };
                let server = self.server().map(|s| s.to_string()).unwrap_or_default();
                self.events.push(ClientEvent::Connected { server });
            }
            (ServerOp::Pong, Step::Ready { next_ping, .. }) => {
                self.step = Step::Ready {
                    next_ping,
                    unanswered: 0,
                };
            }
            (ServerOp::Err(text), Step::Ready { .. }) => {
                self.events.push(ClientEvent::ServerError(text));
            }
            (ServerOp::Err(text), _) => {
                self.fail(format!("the server refused the connection: {text}"), ctx);
                return false;
            }
            (ServerOp::Msg(message), _) if message.sid == SID_INBOX => {
                let token = message
                    .subject
                    .strip_prefix(self.inbox.as_str())
                    .and_then(|t| t.parse().ok());
                if let Some(token) = token {
                    self.events.push(ClientEvent::Reply { token, message });
                }
            }
            _ => {}
        }
        true
    }

    /// After INFO: TLS if wanted, then CONNECT, SUB and PING.
    fn handshake(&mut self, ctx: &mut SinkCtx<'_>) -> Result<(), String> {
        let server = self.server().cloned().ok_or("no server")?;
        let want_tls = server.tls || self.info.tls_required || self.settings.tls.is_some();
        if want_tls {
            let config = match (&self.settings.tls, &self.system_tls) {
                (Some(c), _) | (None, Some(c)) => c.clone(),
                (None, None) => {
                    let c = tls::client_config(&tls::Trust::System).map_err(|e| e.to_string())?;
                    self.system_tls = Some(c.clone());
                    c
                }
            };
            let name = tls::server_name(self.tls_host(&server))?;
            let conn = self.conn.as_mut().ok_or("no connection")?;
            conn.start_tls(ctx.registry, config, name)
                .map_err(|e| format!("cannot start TLS: {e}"))?;
        }
        let mut connect = self
            .settings
            .auth
            .connect_fields(self.info.nonce.as_deref())?;
        for (k, v) in [
            ("verbose", false.into()),
            ("pedantic", false.into()),
            ("tls_required", want_tls.into()),
            ("name", format!("kwatchd {}", self.settings.name).into()),
            ("lang", "rust-kwatchd".into()),
            ("version", env!("CARGO_PKG_VERSION").into()),
            ("protocol", 1.into()),
            ("headers", true.into()),
            ("no_responders", true.into()),
        ] {
            connect.insert(k.to_owned(), v);
        }
        proto::encode_connect(&mut self.out, &serde_json::Value::Object(connect));
        proto::encode_sub(&mut self.out, &format!("{}*", self.inbox), SID_INBOX);
        self.out.extend_from_slice(b"PING\r\n");
        Ok(())
    }

    /// The name a server's certificate must carry. A discovered server is
    /// usually announced by IP while certificates name hosts, so it is
    /// checked against the first configured host name (as the Go client
    /// does).
    fn tls_host<'a>(&'a self, server: &'a ServerUrl) -> &'a str {
        if server.discovered && server.host.parse::<IpAddr>().is_ok() {
            if let Some(s) = self
                .servers
                .iter()
                .find(|s| !s.discovered && s.host.parse::<IpAddr>().is_err())
            {
                return &s.host;
            }
        }
        &server.host
    }

    /// Adds the servers an INFO announces to the rotation.
    fn learn(&mut self, info: &ServerInfo) {
        let tls = self.server().is_some_and(|s| s.tls);
        for url in &info.connect_urls {
            let Ok(mut s) = ServerUrl::parse(url) else {
                continue;
            };
            let known = self
                .servers
                .iter()
                .any(|k| k.host == s.host && k.port == s.port);
            if !known && self.servers.len() < MAX_SERVERS {
                s.tls = tls;
                s.discovered = true;
                log::debug!("nats {}: server {s} discovered", self.settings.name);
                self.servers.push(s);
            }
        }
    }

    fn attempt(&mut self, ctx: &mut SinkCtx<'_>) {
        if self.servers.is_empty() {
            return self.fail("no server configured".into(), ctx);
        }
        self.current = self.next_server % self.servers.len();
        self.next_server = self.next_server.wrapping_add(1);
        let deadline = ctx.now + self.settings.connect_timeout;
        let Some(server) = self.servers.get(self.current) else {
            return;
        };
        match ctx.resolver.resolve(&server.host, server.port) {
            Ok(Resolution::Ready(addrs)) => self.connect(&addrs, deadline, ctx),
            Ok(Resolution::Pending(query)) => self.step = Step::Resolving { query, deadline },
            Err(e) => self.fail(format!("cannot resolve: {e}"), ctx),
        }
    }

    fn connect(&mut self, addrs: &[SocketAddr], deadline: Instant, ctx: &mut SinkCtx<'_>) {
        // Rotating through a name's addresses as attempts fail.
        let Some(addr) = addrs.get(self.failures as usize % addrs.len().max(1)) else {
            return self.fail("the name has no address".into(), ctx);
        };
        let token = ctx.tokens.allocate();
        match Connection::connect(ctx.registry, token, *addr, None) {
            Ok(conn) => {
                self.conn = Some(conn);
                self.parser = Parser::new(MAX_INBOUND);
                self.out.clear();
                self.step = Step::Connecting { deadline };
            }
            Err(e) => self.fail(format!("cannot connect to {addr}: {e}"), ctx),
        }
    }

    fn fail(&mut self, reason: String, ctx: &mut SinkCtx<'_>) {
        if let Some(mut c) = self.conn.take() {
            c.close(ctx.registry);
        }
        self.out.clear();
        let server = self.server().map(|s| s.to_string()).unwrap_or_default();
        let delay = if matches!(self.step, Step::Ready { .. }) {
            self.failures = 0;
            self.events.push(ClientEvent::Disconnected {
                reason: format!("{server}: {reason}"),
            });
            Duration::ZERO
        } else {
            self.failures = self.failures.saturating_add(1);
            // Loud at first, then about once a minute at the cap.
            let n = self.failures;
            let msg = format!(
                "nats {}: connection to {server} failed (attempt {n}): {reason}",
                self.settings.name
            );
            if n <= 2 || n % 12 == 0 {
                log::warn!("{msg}");
            } else {
                log::debug!("{msg}");
            }
            self.backoff()
        };
        self.step = Step::Idle {
            retry_at: ctx.now + delay,
        };
    }

    /// Full jitter in the upper half of `min(cap, first * 2^(failures-1))`.
    fn backoff(&mut self) -> Duration {
        let shift = self.failures.saturating_sub(1).min(16);
        let ceiling = BACKOFF_FIRST.saturating_mul(1 << shift).min(BACKOFF_CAP);
        self.rng.duration_between(ceiling / 2, ceiling)
    }
}

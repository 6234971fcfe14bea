//! The webhook client: a small pool of connections to one target, each
//! carrying at most one POST at a time. See the module docs for the policy.

use super::{ClientCtx, PostOutcome, WebhookTarget};
use crate::http::{BodyMode, HttpError, Request, ResponseReader};
use crate::net::resolve::Resolution;
use crate::net::{Connection, ReadOutcome};
use mio::{Registry, Token};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// An idle keep-alive connection is closed after this long. Servers close
/// idle connections on their own schedule anyway (the resend rule covers that
/// race); this only bounds the sockets we hold for a quiet sink.
pub const IDLE_CLOSE: Duration = Duration::from_secs(30);

/// Response bodies are read up to this size (a webhook's answer is an
/// acknowledgement; only a debug excerpt of it is ever used). A bigger body
/// still yields its status, and the connection is not reused.
pub const RESPONSE_BODY_LIMIT: usize = 64 * 1024;

/// Bytes of a non-2xx response body quoted in the debug log.
const LOG_EXCERPT: usize = 200;

const READ_BUF: usize = 16 * 1024;

/// rustls's default cap on buffered outgoing data, which `Connection` does
/// not lift yet: a bigger request over https fails at send. Only used to
/// explain that failure.
const TLS_SEND_LIMIT: usize = 64 * 1024;

/// One POST, from `start` to its outcome.
#[derive(Debug)]
struct Post {
    job: u64,
    /// The encoded request, kept whole so that it can be resent once.
    request: Vec<u8>,
    /// Set when the POST leaves the waiting queue.
    deadline: Option<Instant>,
    /// Already resent once after a reused connection died.
    resent: bool,
}

/// What a connection is doing.
#[derive(Debug)]
enum SlotState {
    /// TCP connect in progress; the request goes out once connected (for
    /// https, rustls holds it until the handshake is over). `rest`: the other
    /// addresses of the name, tried in order if this one fails.
    Connecting {
        post: Post,
        rest: VecDeque<SocketAddr>,
    },
    /// Request handed to the connection; reading the answer.
    Awaiting {
        post: Post,
        /// Boxed: the reader is large and most slots sit idle.
        reader: Box<ResponseReader>,
        /// Plaintext bytes of the answer received so far.
        received: usize,
        /// The connection had served a POST before this one.
        reused: bool,
    },
    /// Keep-alive connection with nothing in flight, since `since`.
    Idle { since: Instant },
}

#[derive(Debug)]
struct Slot {
    conn: Connection,
    state: SlotState,
}

/// What `on_timer` does with a slot.
enum Expiry {
    None,
    Idle,
    /// The POST's deadline passed while doing this.
    Post(&'static str),
}

/// What driving a slot came to.
enum Step {
    /// Wait for the next readiness event.
    Wait,
    /// The slot is gone (closed and removed).
    Removed,
    /// The slot changed state without reaching `WouldBlock`: drive it again.
    Again,
}

/// Delivers POSTs to one [`WebhookTarget`]. See the module docs.
pub struct WebhookClient {
    target: WebhookTarget,
    /// `Host` header value.
    host_header: String,
    /// `host:port` for messages (no path: it may hold a secret).
    peer_text: String,
    slots: Vec<Slot>,
    /// POSTs waiting for the resolver: (query id, post). Each will become a
    /// connection, so they count against `max_connections`.
    resolving: Vec<(u64, Post)>,
    /// POSTs waiting for a connection (the limit is reached, none idle).
    waiting: VecDeque<Post>,
    outcomes: Vec<(u64, PostOutcome)>,
    read_buf: Box<[u8]>,
    /// POSTs resent after a reused connection died (a metric, and proof in
    /// tests that the resend path ran).
    resends: u64,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("sink", &self.target.sink)
            .field("peer", &self.peer_text)
            .field("connections", &self.slots.len())
            .field("resolving", &self.resolving.len())
            .field("waiting", &self.waiting.len())
            .finish()
    }
}

impl WebhookClient {
    pub fn new(target: WebhookTarget) -> Self {
        let bracketed = if target.host.contains(':') {
            format!("[{}]", target.host)
        } else {
            target.host.clone()
        };
        let default_port = if target.scheme_https { 443 } else { 80 };
        // The default port is left out of Host, as browsers and curl do:
        // virtual-host matching on some servers expects the bare name.
        let host_header = if target.port == default_port {
            bracketed.clone()
        } else {
            format!("{bracketed}:{}", target.port)
        };
        let peer_text = format!("{bracketed}:{}", target.port);
        WebhookClient {
            target,
            host_header,
            peer_text,
            slots: Vec::new(),
            resolving: Vec::new(),
            waiting: VecDeque::new(),
            outcomes: Vec::new(),
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            resends: 0,
        }
    }

    pub fn target(&self) -> &WebhookTarget {
        &self.target
    }

    /// Starts a POST of `body` (`Content-Type: application/json`) for `job`.
    /// It reuses an idle keep-alive connection, opens a new one while under
    /// `max_connections`, or waits in the client until a connection frees.
    /// The outcome comes out of [`take_outcomes`](Self::take_outcomes),
    /// possibly right away (a request that cannot be encoded, an immediate
    /// connect error).
    pub fn start(&mut self, job: u64, body: Vec<u8>, ctx: &mut ClientCtx<'_>) {
        match self.encode(&body) {
            Ok(request) => {
                self.waiting.push_back(Post {
                    job,
                    request,
                    deadline: None,
                    resent: false,
                });
                self.dispatch_waiting(ctx);
            }
            Err(reason) => self.outcomes.push((job, PostOutcome::Failed { reason })),
        }
    }

    fn encode(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(self.target.headers.len() + 1);
        if !self
            .target
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("Content-Type", "application/json"));
        }
        headers.extend(
            self.target
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        let mut out = Vec::with_capacity(256 + self.target.path_and_query.len() + body.len());
        Request {
            method: "POST",
            host: &self.host_header,
            path_and_query: &self.target.path_and_query,
            headers: &headers,
            body,
        }
        .encode(&mut out)
        .map_err(|e| format!("cannot build the POST to {}: {e}", self.peer_text))?;
        Ok(out)
    }

    /// True for the token of one of this client's connections.
    pub fn owns(&self, token: Token) -> bool {
        self.slots.iter().any(|s| s.conn.token() == token)
    }

    /// True for a resolver query this client is waiting for.
    pub fn owns_query(&self, id: u64) -> bool {
        self.resolving.iter().any(|(q, _)| *q == id)
    }

    /// Readiness on one of this client's connections.
    pub fn on_ready(&mut self, token: Token, ctx: &mut ClientCtx<'_>) {
        if let Some(i) = self.slots.iter().position(|s| s.conn.token() == token) {
            self.drive(i, ctx);
            self.dispatch_waiting(ctx);
        }
    }

    /// The resolver's answer to one of this client's queries.
    pub fn on_resolved(
        &mut self,
        id: u64,
        result: io::Result<Vec<SocketAddr>>,
        ctx: &mut ClientCtx<'_>,
    ) {
        let Some(i) = self.resolving.iter().position(|(q, _)| *q == id) else {
            return; // timed out meanwhile; the answer has no one to go to
        };
        let (_, post) = self.resolving.swap_remove(i);
        match result {
            Ok(addrs) => self.connect(post, addrs.into(), None, ctx),
            Err(e) => {
                let reason = format!("cannot resolve {}: {e}", self.target.host);
                self.finish(post.job, PostOutcome::Failed { reason });
            }
        }
        self.dispatch_waiting(ctx);
    }

    /// Expires POSTs past their deadline and idle connections past
    /// [`IDLE_CLOSE`]. Harmless to call early.
    pub fn on_timer(&mut self, ctx: &mut ClientCtx<'_>) {
        let now = ctx.now;
        let timeout = humantime::format_duration(self.target.timeout);
        let expired = |p: &Post| p.deadline.is_some_and(|d| d <= now);

        let mut i = 0;
        while i < self.resolving.len() {
            if self.resolving.get(i).is_some_and(|(_, p)| expired(p)) {
                let (_, post) = self.resolving.swap_remove(i);
                let reason = format!(
                    "POST to {} timed out after {timeout} (resolving {})",
                    self.peer_text, self.target.host
                );
                self.finish(post.job, PostOutcome::Failed { reason });
            } else {
                i += 1;
            }
        }

        let mut i = 0;
        while let Some(slot) = self.slots.get(i) {
            let expiry = match &slot.state {
                SlotState::Connecting { post, .. } if expired(post) => Expiry::Post("connecting"),
                SlotState::Awaiting { post, reader, .. } if expired(post) => {
                    Expiry::Post(if !slot.conn.is_ready() {
                        "TLS handshake"
                    } else if reader.head().is_some() {
                        "reading the response body"
                    } else {
                        "waiting for the response"
                    })
                }
                SlotState::Idle { since } if *since + IDLE_CLOSE <= now => Expiry::Idle,
                _ => Expiry::None,
            };
            match expiry {
                Expiry::None => i += 1,
                Expiry::Idle => {
                    self.remove(i, ctx.registry);
                }
                Expiry::Post(what) => {
                    let reason = format!(
                        "POST to {} timed out after {timeout} ({what})",
                        self.peer_text
                    );
                    if let Some(post) = self.remove(i, ctx.registry) {
                        self.finish(post.job, PostOutcome::Failed { reason });
                    }
                }
            }
        }
        self.dispatch_waiting(ctx);
    }

    /// The earliest instant `on_timer` has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        let posts = self.resolving.iter().filter_map(|(_, p)| p.deadline);
        let slots = self.slots.iter().filter_map(|s| match &s.state {
            SlotState::Connecting { post, .. } | SlotState::Awaiting { post, .. } => post.deadline,
            SlotState::Idle { since } => Some(*since + IDLE_CLOSE),
        });
        posts.chain(slots).min()
    }

    /// Outcomes since the last call, as (job, outcome).
    pub fn take_outcomes(&mut self) -> Vec<(u64, PostOutcome)> {
        std::mem::take(&mut self.outcomes)
    }

    /// POSTs started and not yet answered (waiting, resolving, connecting or
    /// awaiting a response).
    pub fn in_flight(&self) -> usize {
        self.waiting.len()
            + self.resolving.len()
            + self
                .slots
                .iter()
                .filter(|s| !matches!(s.state, SlotState::Idle { .. }))
                .count()
    }

    /// POSTs resent once because a reused connection was closed before any
    /// byte of the answer (since the client was created).
    pub fn resends(&self) -> u64 {
        self.resends
    }

    /// Open connections, idle ones included (for metrics and tests).
    pub fn connections(&self) -> usize {
        self.slots.len()
    }

    /// Closes every connection. POSTs not yet answered are reported as
    /// `Failed` (collect them with `take_outcomes`), so that the scheduler
    /// never loses track of a job.
    pub fn close_all(&mut self, registry: &Registry) {
        let reason = || PostOutcome::Failed {
            reason: "the webhook client was shut down before the answer".into(),
        };
        for (_, post) in std::mem::take(&mut self.resolving) {
            self.outcomes.push((post.job, reason()));
        }
        for post in std::mem::take(&mut self.waiting) {
            self.outcomes.push((post.job, reason()));
        }
        while !self.slots.is_empty() {
            if let Some(post) = self.remove(0, registry) {
                self.outcomes.push((post.job, reason()));
            }
        }
    }

    // ----- internals -----

    fn finish(&mut self, job: u64, outcome: PostOutcome) {
        log::trace!("webhook {}: job {job}: {outcome:?}", self.target.sink);
        self.outcomes.push((job, outcome));
    }

    /// Closes and drops slot `i`, returning its POST if one was in flight.
    fn remove(&mut self, i: usize, registry: &Registry) -> Option<Post> {
        if i >= self.slots.len() {
            return None;
        }
        let mut slot = self.slots.swap_remove(i);
        slot.conn.close(registry);
        match slot.state {
            SlotState::Connecting { post, .. } | SlotState::Awaiting { post, .. } => Some(post),
            SlotState::Idle { .. } => None,
        }
    }

    /// Hands waiting POSTs to idle connections or new ones, within the limit.
    fn dispatch_waiting(&mut self, ctx: &mut ClientCtx<'_>) {
        while !self.waiting.is_empty() {
            // The most recently used idle connection is the least likely to
            // have been closed by the server's idle timeout.
            let idle = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| match s.state {
                    SlotState::Idle { since } => Some((i, since)),
                    _ => None,
                })
                .max_by_key(|&(_, since)| since)
                .map(|(i, _)| i);
            let room = self.slots.len() + self.resolving.len() < self.target.max_connections.max(1);
            if idle.is_none() && !room {
                return;
            }
            let Some(mut post) = self.waiting.pop_front() else {
                return;
            };
            post.deadline = Some(ctx.now + self.target.timeout);
            match idle {
                Some(i) => self.send_on_idle(i, post, ctx),
                None => self.open(post, ctx),
            }
        }
    }

    /// Sends `post` on idle slot `i`.
    fn send_on_idle(&mut self, i: usize, post: Post, ctx: &mut ClientCtx<'_>) {
        let Some(slot) = self.slots.get_mut(i) else {
            return self.open(post, ctx);
        };
        log::trace!(
            "webhook {}: job {} on kept-alive connection {:?}",
            self.target.sink,
            post.job,
            slot.conn.token()
        );
        let sent = slot.conn.send(ctx.registry, &post.request);
        slot.state = SlotState::Awaiting {
            post,
            reader: Box::new(ResponseReader::new(BodyMode::Whole {
                max_body: RESPONSE_BODY_LIMIT,
            })),
            received: 0,
            reused: true,
        };
        match sent {
            // The answer may already be there with no new edge to come.
            Ok(()) => {
                self.drive(i, ctx);
            }
            Err(e) => self.connection_lost(i, &e, ctx),
        }
    }

    /// Resolves the target (IP literals at once) and connects.
    fn open(&mut self, post: Post, ctx: &mut ClientCtx<'_>) {
        match ctx.resolver.resolve(&self.target.host, self.target.port) {
            Ok(Resolution::Ready(addrs)) => self.connect(post, addrs.into(), None, ctx),
            Ok(Resolution::Pending(id)) => self.resolving.push((id, post)),
            Err(e) => {
                let reason = format!("cannot resolve {}: {e}", self.target.host);
                self.finish(post.job, PostOutcome::Failed { reason });
            }
        }
    }

    /// Connects to the first address that accepts a socket; `last_error`
    /// carries the failure of a previous address into the final report.
    fn connect(
        &mut self,
        post: Post,
        mut addrs: VecDeque<SocketAddr>,
        mut last_error: Option<String>,
        ctx: &mut ClientCtx<'_>,
    ) {
        while let Some(addr) = addrs.pop_front() {
            let token = ctx.tokens.allocate();
            match Connection::connect(ctx.registry, token, addr, self.target.tls.clone()) {
                Ok(conn) => {
                    // No drive here: registration of a socket that is
                    // already connected still yields a WRITABLE event.
                    self.slots.push(Slot {
                        conn,
                        state: SlotState::Connecting { post, rest: addrs },
                    });
                    return;
                }
                Err(e) => last_error = Some(format!("cannot connect to {addr}: {e}")),
            }
        }
        let reason = last_error
            .unwrap_or_else(|| format!("cannot connect to {}: no address", self.target.host));
        self.finish(post.job, PostOutcome::Failed { reason });
    }

    /// Runs slot `i` until it must wait for the socket, or is gone.
    fn drive(&mut self, i: usize, ctx: &mut ClientCtx<'_>) -> Step {
        loop {
            let Some(slot) = self.slots.get_mut(i) else {
                return Step::Removed;
            };
            match &mut slot.state {
                SlotState::Connecting { .. } => match slot.conn.finish_connect() {
                    Ok(false) => return Step::Wait,
                    Ok(true) => {
                        let idle = SlotState::Idle { since: ctx.now };
                        let SlotState::Connecting { post, .. } =
                            std::mem::replace(&mut slot.state, idle)
                        else {
                            return Step::Wait;
                        };
                        let sent = slot.conn.send(ctx.registry, &post.request);
                        slot.state = SlotState::Awaiting {
                            post,
                            reader: Box::new(ResponseReader::new(BodyMode::Whole {
                                max_body: RESPONSE_BODY_LIMIT,
                            })),
                            received: 0,
                            reused: false,
                        };
                        if let Err(e) = sent {
                            self.connection_lost(i, &e, ctx);
                            return Step::Removed;
                        }
                    }
                    Err(e) => {
                        self.connect_failed(i, &e, ctx);
                        return Step::Removed;
                    }
                },
                SlotState::Awaiting { .. } => match self.pump(i, ctx) {
                    Step::Again => {}
                    other => return other,
                },
                SlotState::Idle { .. } => {
                    // An idle connection only ever hears a close (or a stray
                    // 408 before one): either way it is done.
                    match slot.conn.read(ctx.registry, &mut self.read_buf) {
                        Ok(ReadOutcome::WouldBlock) => return Step::Wait,
                        other => {
                            log::trace!(
                                "webhook {}: idle connection {:?} closed ({other:?})",
                                self.target.sink,
                                slot.conn.token()
                            );
                            self.remove(i, ctx.registry);
                            return Step::Removed;
                        }
                    }
                }
            }
        }
    }

    /// The TCP connect of slot `i` failed: the next address, or report.
    fn connect_failed(&mut self, i: usize, error: &io::Error, ctx: &mut ClientCtx<'_>) {
        let peer = self.slots.get(i).map(|s| s.conn.peer());
        let rest = match self.slots.get_mut(i).map(|s| &mut s.state) {
            Some(SlotState::Connecting { rest, .. }) => std::mem::take(rest),
            _ => VecDeque::new(),
        };
        let Some(post) = self.remove(i, ctx.registry) else {
            return;
        };
        let msg = match peer {
            Some(peer) => format!("cannot connect to {peer}: {error}"),
            None => format!("cannot connect to {}: {error}", self.peer_text),
        };
        if !rest.is_empty() {
            log::debug!(
                "webhook {}: {msg}; trying the next address",
                self.target.sink
            );
        }
        self.connect(post, rest, Some(msg), ctx);
    }

    /// Slot `i` failed while a POST was on it (send or read error, or EOF).
    /// A reused connection that produced no byte of an answer gets the POST
    /// resent once on a fresh connection (see the module docs); anything
    /// else is reported.
    fn connection_lost(
        &mut self,
        i: usize,
        error: &dyn std::fmt::Display,
        ctx: &mut ClientCtx<'_>,
    ) {
        let resend = matches!(
            self.slots.get(i).map(|s| &s.state),
            Some(SlotState::Awaiting { received: 0, reused: true, post, .. }) if !post.resent
        );
        let peer = self.slots.get(i).map(|s| s.conn.peer());
        let Some(mut post) = self.remove(i, ctx.registry) else {
            return;
        };
        let peer = peer.map_or_else(|| self.peer_text.clone(), |p| p.to_string());
        if resend {
            log::debug!(
                "webhook {}: kept-alive connection to {peer} closed before answering job {} \
                 ({error}); resending on a new connection",
                self.target.sink,
                post.job
            );
            post.resent = true;
            self.resends += 1;
            // The slot just freed leaves room for the new connection, and
            // the POST keeps its deadline: the timeout covers the resend.
            self.open(post, ctx);
        } else {
            let mut reason = format!("POST to {peer} failed: {error}");
            if self.target.tls.is_some() && post.request.len() > TLS_SEND_LIMIT {
                reason.push_str(&format!(
                    " (the request is {} bytes; the TLS connection accepts at most 64 KiB at once)",
                    post.request.len()
                ));
            }
            self.finish(post.job, PostOutcome::Failed { reason });
        }
    }

    /// Moves the answer on slot `i` forward.
    fn pump(&mut self, i: usize, ctx: &mut ClientCtx<'_>) -> Step {
        let Some(Slot {
            conn,
            state: SlotState::Awaiting {
                reader, received, ..
            },
        }) = self.slots.get_mut(i)
        else {
            return Step::Wait;
        };
        // Plain TCP keeps unsent request bytes in the connection and only a
        // flush writes them; with TLS the read below flushes too.
        if let Err(e) = conn.flush(ctx.registry) {
            self.connection_lost(i, &e, ctx);
            return Step::Removed;
        }
        loop {
            match conn.read(ctx.registry, &mut self.read_buf) {
                Ok(ReadOutcome::Data(n)) => {
                    *received += n;
                    let fed = reader.feed(self.read_buf.get(..n).unwrap_or_default());
                    if let Err(e) = fed {
                        return self.bad_response(i, e, ctx);
                    }
                    if reader.is_complete() {
                        return self.complete(i, false, ctx);
                    }
                }
                Ok(ReadOutcome::WouldBlock) => return Step::Wait,
                Ok(ReadOutcome::Closed { .. }) => {
                    return match reader.on_eof() {
                        // A read-until-close body ended.
                        Ok(()) => self.complete(i, true, ctx),
                        Err(HttpError::ClosedBeforeResponse) => {
                            let e = HttpError::ClosedBeforeResponse;
                            self.connection_lost(i, &e, ctx);
                            Step::Removed
                        }
                        Err(e) => self.bad_response(i, e, ctx),
                    };
                }
                Err(e) => {
                    self.connection_lost(i, &e, ctx);
                    return Step::Removed;
                }
            }
        }
    }

    /// The response on slot `i` cannot be read to its end.
    fn bad_response(&mut self, i: usize, error: HttpError, ctx: &mut ClientCtx<'_>) -> Step {
        let head = match self.slots.get(i).map(|s| &s.state) {
            Some(SlotState::Awaiting { reader, .. }) => reader.head().cloned(),
            _ => None,
        };
        let peer = self.slots.get(i).map(|s| s.conn.peer());
        let Some(post) = self.remove(i, ctx.registry) else {
            return Step::Removed;
        };
        let outcome = match (head, &error) {
            // A well-formed answer with a body we do not want to hold: the
            // status is what matters. The connection is dropped (the rest of
            // the body was not read).
            (Some(head), HttpError::BodyTooLarge { .. }) => PostOutcome::Status {
                code: head.status,
                retry_after: head.retry_after(),
            },
            _ => PostOutcome::Failed {
                reason: match peer {
                    Some(p) => format!("unusable answer from {p}: {error}"),
                    None => format!("unusable answer from {}: {error}", self.peer_text),
                },
            },
        };
        self.finish(post.job, outcome);
        Step::Removed
    }

    /// The response on slot `i` is complete: report it, keep the connection
    /// for reuse if the response allows it.
    fn complete(&mut self, i: usize, eof: bool, ctx: &mut ClientCtx<'_>) -> Step {
        let Some(slot) = self.slots.get_mut(i) else {
            return Step::Removed;
        };
        let idle = SlotState::Idle { since: ctx.now };
        let SlotState::Awaiting {
            post, mut reader, ..
        } = std::mem::replace(&mut slot.state, idle)
        else {
            return Step::Wait;
        };
        let Some(head) = reader.head().cloned() else {
            // Unreachable: a complete response has a head. Fail safe.
            self.remove(i, ctx.registry);
            let reason = "response without a head".to_string();
            self.finish(post.job, PostOutcome::Failed { reason });
            return Step::Removed;
        };
        let body = reader.take_body().unwrap_or_default();
        if !head.is_success() {
            log::debug!(
                "webhook {}: job {}: {} {} from {}: {}",
                self.target.sink,
                post.job,
                head.status,
                head.reason,
                self.peer_text,
                body_excerpt(&body)
            );
        }
        self.finish(
            post.job,
            PostOutcome::Status {
                code: head.status,
                retry_after: head.retry_after(),
            },
        );
        // Bytes after the response would be an unasked-for answer: the
        // connection is out of step, do not reuse it.
        let leftover = !reader.take_leftover().is_empty();
        if eof || !head.keep_alive || leftover {
            self.remove(i, ctx.registry);
            return Step::Removed;
        }
        // Now idle. Reading stopped at the end of the response, not at
        // `WouldBlock`: a FIN that came with it would get no new edge, so the
        // idle state reads once more.
        Step::Again
    }
}

/// The start of a response body for a log line, control bytes escaped.
fn body_excerpt(body: &[u8]) -> String {
    let cut = body.get(..LOG_EXCERPT).unwrap_or(body);
    let mut s: String = cut.escape_ascii().to_string();
    if cut.len() < body.len() {
        s.push('…');
    }
    s
}

//! Drives one watch: owns its connection and the response being read, feeds
//! the watch state machine, and turns its events into sink records.

use super::cluster::ClusterRuntime;
use super::credential::Readiness;
use crate::http::{BodyMode, Request, ResponseReader};
use crate::net::resolve::Resolution;
use crate::net::{Connection, ReadOutcome, Resolver};
use crate::sink::{EventMeta, RecordWriter, Sink};
use crate::state::{AckRef, CheckpointTarget, Journal, Ledger, WatchKey};
pub use crate::tokens::TokenAllocator;
use crate::watch::{
    Emit, Emitted, LineOutcome, Progress, RequestKind, RequestPlan, TimerOutcome, WatchMachine,
};
use mio::{Registry, Token};
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Instant, SystemTime};

/// Bytes read for one watch per loop turn before others get their turn.
/// The file sinks write once per turn: batches of about this size are
/// still in the CPU cache when the kernel copies them into the page cache
/// (4 MiB batches measured 10–30% more daemon CPU time in bench 1).
const TURN_BUDGET: usize = 512 << 10;
/// Error bodies (Status JSON) are small; anything bigger is cut off.
const ERROR_BODY_LIMIT: usize = 1 << 20;

/// Shared things a watch needs while it is being driven.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub resolver: &'a mut Resolver,
    pub clusters: &'a mut [ClusterRuntime],
    pub sinks: &'a mut [Sink],
    pub tokens: &'a mut TokenAllocator,
    pub read_buf: &'a mut [u8],
    pub record_buf: &'a mut Vec<u8>,
    pub now: Instant,
}

/// What stopped the watch's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Waiting for the socket, a timer or a resolver answer.
    Idle,
    /// A sink it feeds is full.
    Blocked,
    /// Used its budget with more to do: run again next turn.
    Again,
}

struct Response {
    plan: RequestPlan,
    reader: ResponseReader,
    /// Status, once the head arrived.
    status: Option<u16>,
    retry_after: Option<std::time::Duration>,
    keep_alive: bool,
    /// Set when the peer closed: what the reader made of the end.
    eof: Option<Option<String>>,
    /// Bytes received for this response.
    received: usize,
    /// Sent on a connection that had served a request before.
    reused: bool,
}

enum Exchange {
    /// Connecting or handshaking; the request goes out once ready.
    Unsent(RequestPlan),
    Awaiting(Box<Response>),
    /// Keep-alive connection with nothing in flight.
    Idle,
}

enum Link {
    None,
    Resolving {
        query: u64,
        plan: RequestPlan,
    },
    Connected {
        conn: Connection,
        exchange: Exchange,
    },
}

pub struct Watcher {
    /// Position in the daemon's list; part of its connection tokens.
    index: usize,
    /// Connections opened so far; part of their tokens.
    connections: usize,
    pub machine: WatchMachine,
    cluster: usize,
    cluster_name: String,
    sinks: Vec<usize>,
    records: RecordWriter,
    /// Set when a sink of this watch wants each event's `EventMeta`.
    meta_base: Option<MetaBase>,
    max_line: usize,
    list_body_limit: usize,
    link: Link,
    /// Addresses still to try for the current connect.
    addrs: VecDeque<SocketAddr>,
    /// Until when the current connect and TLS handshake may take.
    connect_deadline: Option<Instant>,
    /// What the sinks have fully handled; the checkpoint's content.
    pub ledger: Ledger,
    /// Where the checkpoint goes; `None` keeps no checkpoint.
    pub checkpoint: Option<CheckpointTarget>,
    /// New objects since the last checkpoint, written before the sinks act
    /// (see `state::journal`); with a checkpoint target only.
    pub journal: Option<Journal>,
}

struct DisplayError<'a>(&'a str, &'a dyn fmt::Display);

impl fmt::Display for DisplayError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0, self.1)
    }
}

/// Watch connection tokens carry their watch: this bit, a per-watch
/// connection count, and the watch's index in the low `WATCH_INDEX_BITS`.
/// The loop finds a socket's watch without a lookup table, and a token is
/// never reused (the count only grows), so an event for a closed socket
/// cannot reach its successor.
pub const WATCH_TOKEN_BIT: usize = 1 << 62;
const WATCH_INDEX_BITS: u32 = 20;
/// More watches than this cannot be told apart by their tokens.
pub const MAX_WATCHES: usize = 1 << WATCH_INDEX_BITS;

/// The index of the watch a connection token belongs to, if it is one.
pub fn watch_of(token: Token) -> Option<usize> {
    (token.0 & WATCH_TOKEN_BIT != 0).then_some(token.0 & (MAX_WATCHES - 1))
}

impl Watcher {
    pub fn new(
        index: usize,
        machine: WatchMachine,
        cluster: usize,
        cluster_name: &str,
        sinks: Vec<usize>,
        wants_meta: bool,
        max_line: usize,
    ) -> Self {
        let records = RecordWriter::new(&machine.spec().record_name, cluster_name);
        let meta_base = wants_meta.then(|| MetaBase {
            watch: machine.spec().record_name.clone(),
            cluster: cluster_name.to_owned(),
            // Known at once, or after discovery (set in `complete`).
            api_version: machine.api_version().unwrap_or_default().to_owned(),
        });
        Watcher {
            index,
            connections: 0,
            machine,
            cluster,
            cluster_name: cluster_name.to_owned(),
            sinks,
            records,
            meta_base,
            max_line,
            list_body_limit: max_line.max(256 << 20),
            link: Link::None,
            addrs: VecDeque::new(),
            connect_deadline: None,
            ledger: Ledger::new(),
            checkpoint: None,
            journal: None,
        }
    }

    /// The key records of this watch carry in their acks.
    pub fn key(&self) -> WatchKey {
        self.index
    }

    pub fn sinks(&self) -> &[usize] {
        &self.sinks
    }

    /// After a reload: the sinks this watch feeds now (their positions in
    /// the daemon's new sink list), and the cluster's new position.
    pub fn reroute(&mut self, cluster: usize, sinks: Vec<usize>, wants_meta: bool) {
        self.cluster = cluster;
        self.sinks = sinks;
        self.meta_base = wants_meta.then(|| MetaBase {
            watch: self.machine.spec().record_name.clone(),
            cluster: self.cluster_name.clone(),
            api_version: self.machine.api_version().unwrap_or_default().to_owned(),
        });
    }

    /// Index of its cluster in the daemon's list.
    pub fn cluster_index(&self) -> usize {
        self.cluster
    }

    pub fn token(&self) -> Option<Token> {
        match &self.link {
            Link::Connected { conn, .. } => Some(conn.token()),
            _ => None,
        }
    }

    pub fn resolver_query(&self) -> Option<u64> {
        match &self.link {
            Link::Resolving { query, .. } => Some(*query),
            _ => None,
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        match (self.machine.deadline(), self.connect_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn sinks_have_room(sink_ids: &[usize], sinks: &[Sink]) -> bool {
        sink_ids
            .iter()
            .all(|&i| sinks.get(i).is_some_and(Sink::has_room))
    }

    pub fn has_room(&self, sinks: &[Sink]) -> bool {
        Self::sinks_have_room(&self.sinks, sinks)
    }

    /// Timers: connect timeout and the machine's deadlines. Returns true when
    /// the watch should be driven now.
    pub fn on_timers(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if self.connect_deadline.is_some_and(|d| d <= ctx.now) {
            self.connect_deadline = None;
            let timeout = ctx
                .clusters
                .get(self.cluster)
                .map(|c| c.connect_timeout)
                .unwrap_or_default();
            let what = match &self.link {
                Link::Connected { conn, .. } if conn.is_connecting() => "connect",
                _ => "TLS handshake",
            };
            let peer = self.peer_text();
            self.connect_failed(
                ctx,
                &format_args!("{what} to {peer} timed out after {}s", timeout.as_secs()),
            );
            return true;
        }
        if self.machine.on_timer(ctx.now) == TimerOutcome::CloseConnection {
            self.close(ctx.registry);
            return true;
        }
        self.machine.wants_request(ctx.now)
            && matches!(
                self.link,
                Link::None
                    | Link::Connected {
                        exchange: Exchange::Idle,
                        ..
                    }
            )
    }

    fn peer_text(&self) -> String {
        match &self.link {
            Link::Connected { conn, .. } => conn.peer().to_string(),
            _ => "the server".into(),
        }
    }

    pub fn close(&mut self, registry: &Registry) {
        if let Link::Connected { conn, .. } = &mut self.link {
            conn.close(registry);
        }
        self.link = Link::None;
        self.connect_deadline = None;
        self.addrs.clear();
    }

    /// A resolver answer for this watch's query.
    pub fn on_resolved(&mut self, ctx: &mut Ctx<'_>, result: std::io::Result<Vec<SocketAddr>>) {
        let Link::Resolving { plan, .. } = std::mem::replace(&mut self.link, Link::None) else {
            return;
        };
        match result {
            Ok(addrs) => {
                self.addrs = addrs.into();
                self.connect_next(ctx, plan);
            }
            Err(e) => {
                let host = ctx
                    .clusters
                    .get(self.cluster)
                    .map(|c| c.host.clone())
                    .unwrap_or_default();
                self.machine
                    .on_transport_error(ctx.now, &format_args!("cannot resolve {host}: {e}"));
            }
        }
    }

    /// Starts the request the machine asked for.
    fn start(&mut self, ctx: &mut Ctx<'_>, plan: RequestPlan) {
        let Some(cluster) = ctx.clusters.get(self.cluster) else {
            return;
        };
        let (host, port) = (cluster.host.clone(), cluster.port);
        match ctx.resolver.resolve(&host, port) {
            Ok(Resolution::Ready(addrs)) => {
                self.addrs = addrs.into();
                self.connect_next(ctx, plan);
            }
            Ok(Resolution::Pending(query)) => self.link = Link::Resolving { query, plan },
            Err(e) => self
                .machine
                .on_transport_error(ctx.now, &format_args!("cannot resolve {host}: {e}")),
        }
    }

    fn connect_next(&mut self, ctx: &mut Ctx<'_>, plan: RequestPlan) {
        let Some(cluster) = ctx.clusters.get_mut(self.cluster) else {
            return;
        };
        let tls = match cluster.tls_for_connect() {
            Ok(tls) => tls,
            Err(e) => {
                self.addrs.clear();
                self.link = Link::None;
                self.machine.on_transport_error(ctx.now, &e);
                return;
            }
        };
        let mut last_error = None;
        let mut exhausted = false;
        while let Some(addr) = self.addrs.pop_front() {
            self.connections += 1;
            let token = Token(
                WATCH_TOKEN_BIT
                    | ((self.connections << WATCH_INDEX_BITS) & !WATCH_TOKEN_BIT)
                    | (self.index & (MAX_WATCHES - 1)),
            );
            match Connection::connect(ctx.registry, token, addr, tls.clone()) {
                Ok(conn) => {
                    self.connect_deadline = Some(ctx.now + cluster.connect_timeout);
                    self.link = Link::Connected {
                        conn,
                        exchange: Exchange::Unsent(plan),
                    };
                    return;
                }
                Err(e) => {
                    exhausted = crate::fdlimit::is_exhaustion(&e);
                    last_error = Some(format!("cannot connect to {addr}: {e}"));
                }
            }
        }
        self.link = Link::None;
        let error = last_error.unwrap_or_else(|| "no address to connect to".into());
        if exhausted {
            // Every watch fails alike: one warning a minute, not one each.
            crate::fdlimit::warn_exhausted(&format_args!("watch {}: {error}", self.machine.name()));
            self.machine.on_transport_error_quietly(ctx.now, &error);
        } else {
            self.machine.on_transport_error(ctx.now, &error);
        }
    }

    /// The current connect attempt failed: next address, or report.
    fn connect_failed(&mut self, ctx: &mut Ctx<'_>, error: &dyn fmt::Display) {
        let plan = match std::mem::replace(&mut self.link, Link::None) {
            Link::Connected {
                mut conn,
                exchange: Exchange::Unsent(plan),
            } => {
                conn.close(ctx.registry);
                Some(plan)
            }
            Link::Connected { mut conn, .. } => {
                conn.close(ctx.registry);
                None
            }
            _ => None,
        };
        self.connect_deadline = None;
        match plan {
            Some(plan) if !self.addrs.is_empty() => {
                log::debug!(
                    "watch {}: {error}; trying the next address",
                    self.machine.name()
                );
                self.connect_next(ctx, plan);
            }
            _ => {
                self.addrs.clear();
                self.machine.on_transport_error(ctx.now, error);
            }
        }
    }

    /// Fails the in-flight exchange: close the connection, tell the machine.
    fn fail(&mut self, ctx: &mut Ctx<'_>, error: &dyn fmt::Display) {
        self.close(ctx.registry);
        self.machine.on_transport_error(ctx.now, error);
    }

    /// Runs the watch until it must wait. Called on readiness, timers, and
    /// when its sinks have room again.
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) -> Flow {
        let mut budget = TURN_BUDGET;
        if ctx
            .clusters
            .get(self.cluster)
            .is_some_and(|c| c.streaming_rejected)
        {
            self.machine.disable_streaming();
        }
        loop {
            match &mut self.link {
                Link::None => {
                    if !self.machine.wants_request(ctx.now) {
                        return Flow::Idle;
                    }

                    if !self.has_room(ctx.sinks) {
                        return Flow::Blocked;
                    }
                    let credentials = Self::credentials(self.cluster, ctx);
                    if credentials == Readiness::Pending {
                        return Flow::Idle;
                    }
                    let Some(plan) = self.machine.poll_request(ctx.now) else {
                        return Flow::Idle;
                    };
                    if let Readiness::Failed(e) = credentials {
                        self.machine.on_transport_error(ctx.now, &e);
                        continue;
                    }
                    self.start(ctx, plan);
                }
                Link::Resolving { .. } => return Flow::Idle,
                Link::Connected { conn, exchange } => {
                    if conn.is_connecting() {
                        match conn.finish_connect() {
                            Ok(true) => {}
                            Ok(false) => return Flow::Idle,
                            Err(e) => {
                                let msg = format!("cannot connect to {}: {e}", conn.peer());
                                self.connect_failed(ctx, &msg);
                                continue;
                            }
                        }
                    }
                    match exchange {
                        Exchange::Unsent(plan) => {
                            let plan = plan.clone();
                            match self.send(ctx, plan, false) {
                                Ok(()) => {}
                                Err(e) => {
                                    self.fail(ctx, &DisplayError("cannot send the request", &e));
                                    return Flow::Idle;
                                }
                            }
                        }
                        Exchange::Idle => {
                            if self.machine.wants_request(ctx.now) {
                                if !Self::sinks_have_room(&self.sinks, ctx.sinks) {
                                    return Flow::Blocked;
                                }
                                match Self::credentials(self.cluster, ctx) {
                                    Readiness::Ready => {}
                                    Readiness::Pending => {
                                        // Woken when the plugin is done.
                                        self.close(ctx.registry);
                                        return Flow::Idle;
                                    }
                                    Readiness::Failed(e) => {
                                        self.close(ctx.registry);
                                        if self.machine.poll_request(ctx.now).is_some() {
                                            self.machine.on_transport_error(ctx.now, &e);
                                        }
                                        continue;
                                    }
                                }
                                if let Some(plan) = self.machine.poll_request(ctx.now) {
                                    if let Err(e) = self.send(ctx, plan, true) {
                                        self.fail(
                                            ctx,
                                            &DisplayError("cannot send the request", &e),
                                        );
                                        return Flow::Idle;
                                    }
                                    continue;
                                }
                            }
                            // An idle keep-alive connection only hears a close.
                            match conn.read(ctx.registry, ctx.read_buf) {
                                Ok(ReadOutcome::WouldBlock) => return Flow::Idle,
                                _ => {
                                    self.close(ctx.registry);
                                    continue;
                                }
                            }
                        }
                        Exchange::Awaiting(_) => match self.pump(ctx, &mut budget) {
                            Some(flow) => return flow,
                            None => continue,
                        },
                    }
                }
            }
        }
    }

    /// Whether the cluster's credentials are there (this may start its
    /// exec plugin).
    fn credentials(cluster: usize, ctx: &mut Ctx<'_>) -> Readiness {
        match ctx.clusters.get_mut(cluster) {
            Some(c) => c.readiness(ctx.registry, ctx.now),
            None => Readiness::Ready,
        }
    }

    /// Writes the request for `plan` on the current connection.
    fn send(&mut self, ctx: &mut Ctx<'_>, plan: RequestPlan, reused: bool) -> std::io::Result<()> {
        let Link::Connected { conn, exchange } = &mut self.link else {
            return Ok(());
        };
        let Some(cluster) = ctx.clusters.get_mut(self.cluster) else {
            return Ok(());
        };
        let auth = cluster.authorization();
        let mut headers: Vec<(&str, &str)> = vec![("Accept", plan.accept)];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        let mut bytes = Vec::with_capacity(256 + plan.path_and_query.len());
        Request {
            method: "GET",
            host: &cluster.host_header,
            path_and_query: &plan.path_and_query,
            headers: &headers,
            body: &[],
        }
        .encode(&mut bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        conn.send(ctx.registry, &bytes)?;
        log::trace!("watch {}: GET {}", self.machine.name(), plan.path_and_query);
        let mode = match plan.kind {
            RequestKind::Watch => BodyMode::Lines {
                max_line: self.max_line,
            },
            RequestKind::List | RequestKind::Discovery => BodyMode::Whole {
                max_body: self.list_body_limit,
            },
        };
        *exchange = Exchange::Awaiting(Box::new(Response {
            plan,
            reader: ResponseReader::new(mode),
            status: None,
            retry_after: None,
            keep_alive: false,
            eof: None,
            received: 0,
            reused,
        }));
        Ok(())
    }

    /// Moves the awaited response forward. `None`: the exchange changed
    /// state, drive again; `Some(flow)`: stop here.
    fn pump(&mut self, ctx: &mut Ctx<'_>, budget: &mut usize) -> Option<Flow> {
        let Watcher {
            index,
            machine,
            sinks: sink_ids,
            records,
            meta_base,
            link,
            connect_deadline,
            ledger,
            journal,
            ..
        } = self;
        let Link::Connected {
            conn,
            exchange: Exchange::Awaiting(resp),
        } = link
        else {
            return None;
        };
        if conn.is_ready() {
            *connect_deadline = None;
        }
        loop {
            // 1. Lines already decoded go first, as long as the sinks have room.
            if resp.status.is_some_and(is_success) && resp.plan.kind == RequestKind::Watch {
                loop {
                    if !Self::sinks_have_room(sink_ids, ctx.sinks) {
                        return Some(Flow::Blocked);
                    }
                    let line = match resp.reader.next_line() {
                        None => break,
                        Some(Ok(line)) => line,
                        Some(Err(e)) => {
                            let msg = format!("watch stream unusable: {e}");
                            self.fail(ctx, &msg);
                            return None;
                        }
                    };
                    let now = ctx.now;
                    let mut fanout = Fanout::new(
                        records,
                        meta_base.as_ref(),
                        sink_ids,
                        ctx,
                        ledger,
                        journal.as_mut(),
                        *index,
                    );
                    if machine.on_watch_line(now, line, &mut fanout) == LineOutcome::Close {
                        self.close(ctx.registry);
                        return None;
                    }
                }
            }
            // 2. A finished response hands over to the next request.
            if resp.reader.is_complete() {
                return self.complete(ctx);
            }
            // 3. The peer closed: finish what the bytes allow.
            if let Some(eof) = &resp.eof {
                let error = eof.clone();
                return self.after_eof(ctx, error);
            }
            if *budget == 0 {
                return Some(Flow::Again);
            }
            // 4. Read more.
            match conn.read(ctx.registry, ctx.read_buf) {
                Ok(ReadOutcome::Data(n)) => {
                    *budget = budget.saturating_sub(n);
                    resp.received += n;
                    machine.note_activity(ctx.now);
                    machine.note_bytes(n);
                    if let Err(e) = resp.reader.feed(&ctx.read_buf[..n]) {
                        let msg = format!("unusable answer from {}: {e}", conn.peer());
                        self.fail(ctx, &msg);
                        return None;
                    }
                    if resp.status.is_none() {
                        if let Some(head) = resp.reader.head() {
                            resp.status = Some(head.status);
                            resp.retry_after = head.retry_after();
                            resp.keep_alive = head.keep_alive;
                            *connect_deadline = None;
                            if !is_success(head.status) {
                                // Only fails once a line was pulled, and no
                                // line is pulled before a 2xx head.
                                let _ = resp.reader.set_mode(BodyMode::Whole {
                                    max_body: ERROR_BODY_LIMIT,
                                });
                            } else if resp.plan.kind == RequestKind::Watch {
                                machine.on_watch_opened(ctx.now);
                            }
                        }
                    }
                }
                Ok(ReadOutcome::WouldBlock) => return Some(Flow::Idle),
                Ok(ReadOutcome::Closed { .. }) => {
                    // A final unterminated line may become available: loop.
                    resp.eof = Some(resp.reader.on_eof().err().map(|e| e.to_string()));
                }
                Err(e) => {
                    let msg = format!("connection to {} failed: {e}", conn.peer());
                    self.fail(ctx, &msg);
                    return None;
                }
            }
        }
    }

    /// The peer closed while a response was awaited; `error` is what the
    /// reader made of the unfinished body, if anything.
    fn after_eof(&mut self, ctx: &mut Ctx<'_>, error: Option<String>) -> Option<Flow> {
        let Link::Connected {
            exchange: Exchange::Awaiting(resp),
            ..
        } = &mut self.link
        else {
            return None;
        };
        if resp.reader.is_complete() {
            return self.complete(ctx);
        }
        match (resp.status, resp.plan.kind) {
            (Some(s), RequestKind::Watch) if is_success(s) => {
                if let Some(e) = &error {
                    log::debug!("watch {}: stream cut: {e}", self.machine.name());
                }
                self.close(ctx.registry);
                self.machine.on_watch_end(ctx.now, false);
                None
            }
            (None, _) if resp.received == 0 && resp.reused => {
                // The server closed an idle keep-alive connection just as we
                // reused it: not a failure, resend on a fresh connection.
                let plan = resp.plan.clone();
                self.close(ctx.registry);
                self.start(ctx, plan);
                None
            }
            _ => {
                let msg = match error {
                    Some(e) => format!("the server closed the connection early: {e}"),
                    None => "the server closed the connection before answering".to_owned(),
                };
                self.fail(ctx, &msg);
                None
            }
        }
    }

    /// The response is complete: hand it to the machine, keep or close the
    /// connection.
    fn complete(&mut self, ctx: &mut Ctx<'_>) -> Option<Flow> {
        let Watcher {
            index,
            machine,
            sinks: sink_ids,
            records,
            meta_base,
            link,
            ledger,
            journal,
            cluster,
            ..
        } = self;
        let Link::Connected { exchange, .. } = link else {
            return None;
        };
        let Exchange::Awaiting(resp) = std::mem::replace(exchange, Exchange::Idle) else {
            return None;
        };
        let mut resp = *resp;
        let status = resp.status.unwrap_or(0);
        match resp.plan.kind {
            _ if !is_success(status) => {
                if status == 401 {
                    if let Some(c) = ctx.clusters.get_mut(*cluster) {
                        c.on_unauthorized();
                    }
                }
                let body = resp.reader.take_body().unwrap_or_default();
                machine.on_http_error(ctx.now, status, resp.retry_after, &body);
            }
            RequestKind::List => {
                let body = resp.reader.take_body().unwrap_or_default();
                let now = ctx.now;
                let mut fanout = Fanout::new(
                    records,
                    meta_base.as_ref(),
                    sink_ids,
                    ctx,
                    ledger,
                    journal.as_mut(),
                    *index,
                );
                machine.on_list_body(now, &body, &mut fanout);
            }
            RequestKind::Watch => machine.on_watch_end(ctx.now, true),
            RequestKind::Discovery => {
                let body = resp.reader.take_body().unwrap_or_default();
                machine.on_discovery_body(ctx.now, &body);
                if let (Some(base), Some(v)) = (meta_base.as_mut(), machine.api_version()) {
                    if base.api_version != v {
                        base.api_version = v.to_owned();
                    }
                }
            }
        }
        // Streaming lists refused once are refused for every watch of the
        // cluster: the others skip the attempt.
        if machine.streaming_rejected() {
            if let Some(c) = ctx.clusters.get_mut(self.cluster) {
                c.streaming_rejected = true;
            }
        }
        if !resp.keep_alive || resp.eof.is_some() {
            self.close(ctx.registry);
        }
        None
    }
}

/// The per-watch part of every event's `EventMeta`.
#[derive(Debug)]
struct MetaBase {
    watch: String,
    cluster: String,
    api_version: String,
}

impl MetaBase {
    fn meta(&self, event: &Emitted<'_>) -> EventMeta {
        let id = &event.identity;
        EventMeta {
            watch: self.watch.clone(),
            cluster: self.cluster.clone(),
            event_type: event.event_type.as_str(),
            origin: event.origin.as_str(),
            api_version: self.api_version.clone(),
            kind: id.kind.to_owned(),
            namespace: id.namespace.to_owned(),
            name: id.name.to_owned(),
            uid: id.uid.to_owned(),
            resource_version: id.resource_version.to_owned(),
        }
    }
}

/// Renders each event once and queues it on every sink of the watch, and
/// records each step in the watch's ledger with the number of sinks that
/// must finish its record before it counts as handled.
struct Fanout<'a> {
    records: &'a RecordWriter,
    meta_base: Option<&'a MetaBase>,
    now: Instant,
    sink_ids: &'a [usize],
    sinks: &'a mut [Sink],
    buf: &'a mut Vec<u8>,
    ledger: &'a mut Ledger,
    journal: Option<&'a mut Journal>,
    watch: WatchKey,
    /// Sinks the current step's record went to.
    fanned: u32,
}

impl<'a> Fanout<'a> {
    fn new(
        records: &'a RecordWriter,
        meta_base: Option<&'a MetaBase>,
        sink_ids: &'a [usize],
        ctx: &'a mut Ctx<'_>,
        ledger: &'a mut Ledger,
        journal: Option<&'a mut Journal>,
        watch: WatchKey,
    ) -> Self {
        Fanout {
            records,
            meta_base,
            now: ctx.now,
            sink_ids,
            sinks: ctx.sinks,
            buf: ctx.record_buf,
            ledger,
            journal,
            watch,
            fanned: 0,
        }
    }
}

impl Emit for Fanout<'_> {
    fn emit(&mut self, event: Emitted<'_>) {
        if let Some(j) = self.journal.as_deref_mut() {
            j.stage(
                event.identity.namespace,
                event.identity.name,
                event.identity.resource_version,
            );
        }
        // The step is recorded right after (`progress`) under this number.
        let ack = AckRef {
            watch: self.watch,
            seq: self.ledger.next_seq(),
        };
        if let [only] = self.sink_ids {
            if let Some(file) = self.sinks.get_mut(*only).and_then(Sink::as_file_mut) {
                let records = self.records;
                file.push_rendered(
                    self.now,
                    |buf| records.write(buf, SystemTime::now(), &event),
                    ack,
                );
                self.fanned += 1;
                return;
            }
        }
        self.buf.clear();
        self.records.write(self.buf, SystemTime::now(), &event);
        let meta = self.meta_base.map(|b| Rc::new(b.meta(&event)));
        for &i in self.sink_ids {
            if let Some(s) = self.sinks.get_mut(i) {
                s.push(self.now, self.buf, meta.as_ref(), ack);
                self.fanned += 1;
            }
        }
    }

    fn progress(&mut self, progress: Progress<'_>) {
        let sinks = std::mem::take(&mut self.fanned);
        if let (Some(j), Some(change)) = (self.journal.as_deref_mut(), &progress.change) {
            // A sink got the first event of an object the checkpoint does
            // not know yet.
            if sinks > 0 && change.previous.is_none() {
                j.record(change.key);
            }
        }
        self.ledger.record(progress, sinks);
    }
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_tokens_name_their_watch_and_never_collide_with_others() {
        let t = |conn: usize, index: usize| {
            Token(WATCH_TOKEN_BIT | ((conn << WATCH_INDEX_BITS) & !WATCH_TOKEN_BIT) | index)
        };
        assert_eq!(watch_of(t(1, 7)), Some(7));
        assert_eq!(watch_of(t(99, MAX_WATCHES - 1)), Some(MAX_WATCHES - 1));
        assert_ne!(t(1, 7), t(2, 7));
        assert_eq!(
            watch_of(Token(5)),
            None,
            "sink and hook tokens are not watches'"
        );
    }
}

//! Drives one watch: owns its connection and the response being read, feeds
//! the watch state machine, and hands its events to its [`Outlet`].

use super::cluster::ClusterRuntime;
use super::credential::Readiness;
use super::ctx::Ctx;
use super::fanout::{meta_base, Outlet, Route};
use super::filtering::Filtering;
use super::link::{is_success, Exchange, Link, Response};
use crate::filter::{FilterStats, LogLimit};
use crate::http::{BodyMode, Request, ResponseReader};
use crate::kube::list_scan::ListScanner;
use crate::metrics::WatchView;
use crate::net::resolve::Resolution;
use crate::net::{Connection, ReadOutcome};
use crate::sink::{RecordWriter, Sink};
use crate::state::db::Op;
use crate::state::{Persistence, StateStore, WatchKey};
use crate::tokens::Source;
use crate::watch::{LineOutcome, RequestKind, RequestPlan, TimerOutcome, WatchMachine, WatchState};
use mio::{Registry, Token};
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

/// Bytes read for one watch per loop turn before others get their turn.
/// The file sinks write once per turn: batches of about this size are
/// still in the CPU cache when the kernel copies them into the page cache
/// (4 MiB batches measured 10–30% more daemon CPU time in bench 1).
const TURN_BUDGET: usize = 512 << 10;
/// Error bodies (Status JSON) are small; anything bigger is cut off.
const ERROR_BODY_LIMIT: usize = 1 << 20;

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

/// What moving a response forward led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pumped {
    /// The exchange changed state (finished, failed, closed): drive the
    /// watch again to see what it wants next.
    Changed,
    /// Stop here for this turn.
    Stop(Flow),
}

pub struct Watcher {
    machine: WatchMachine,
    out: Outlet,
    /// Connections opened so far; part of their tokens.
    connections: usize,
    cluster: usize,
    cluster_name: String,
    max_line: usize,
    list_body_limit: usize,
    link: Link,
}

impl Watcher {
    /// The watch in daemon slot `slot` (part of its connection tokens and
    /// the key its records are acknowledged under).
    pub fn new(
        slot: WatchKey,
        machine: WatchMachine,
        cluster_name: &str,
        route: Route,
        max_line: usize,
        state: Persistence,
        filter: Option<Filtering>,
    ) -> Self {
        let out = Outlet {
            key: slot,
            records: RecordWriter::new(&machine.spec().record_name, cluster_name),
            meta_base: meta_base(&machine, cluster_name, route.wants_meta),
            sinks: route.sinks,
            transforms: route.transforms,
            state,
            watch: machine.spec().record_name.clone(),
            filter,
            filter_stats: FilterStats::default(),
            filter_log: LogLimit::default(),
        };
        Watcher {
            machine,
            out,
            connections: 0,
            cluster: route.cluster,
            cluster_name: cluster_name.to_owned(),
            max_line,
            list_body_limit: max_line.max(256 << 20),
            link: Link::None,
        }
    }

    /// The machine, for what the daemon reports about the watch.
    pub fn machine(&self) -> &WatchMachine {
        &self.machine
    }

    /// The watch as status and metrics show it.
    pub fn view<'a>(&'a self, clusters: &'a [ClusterRuntime]) -> WatchView<'a> {
        WatchView {
            name: self.machine.name(),
            cluster: clusters.get(self.cluster).map_or("", |c| c.name.as_str()),
            state: self.machine.state(),
            objects: self.machine.known_objects(),
            stats: self.machine.stats(),
            filter: self.out.filter_stats,
            last_error: self.machine.last_error(),
            ready: self.is_ready(),
        }
    }

    /// Listed once, or retrying after a failure: READY=1 and `/readyz` wait
    /// for every watch to be so.
    pub fn is_ready(&self) -> bool {
        let m = &self.machine;
        m.has_listed() || m.has_failed() || m.state() == WatchState::BackingOff
    }

    /// After a reload: the cluster and sinks it feeds now.
    pub fn reroute(&mut self, route: Route) {
        self.cluster = route.cluster;
        self.out.sinks = route.sinks;
        self.out.transforms = route.transforms;
        self.out.meta_base = meta_base(&self.machine, &self.cluster_name, route.wants_meta);
    }

    /// Where every sink has handled the stream up to.
    pub fn committed_version(&self) -> Option<&str> {
        self.out.state.committed_version()
    }

    /// A sink finished with the record of step `seq`.
    pub fn ack(&mut self, seq: u64) {
        if let Err(e) = self.out.state.ack(seq) {
            // A sink reporting a record twice, or one the ledger never
            // recorded: a bug, but the ledger stays consistent.
            log::debug!(
                "watch {}: ack for step {seq} ignored ({e:?})",
                self.machine.name()
            );
        }
    }

    /// The new objects the sinks got since the last call, for the store
    /// first; if any, the sinks whose records wait for them.
    pub fn take_new_objects(&mut self, out: &mut Vec<Op>) -> Option<&[usize]> {
        let any = self.out.state.take_new_objects(out);
        any.then_some(&self.out.sinks)
    }

    /// The handled state changed since the last save.
    pub fn has_unsaved_state(&self) -> bool {
        self.out.state.is_dirty()
    }

    /// The watch stops for good (a reload): its handled state to the store.
    pub fn retire(mut self, registry: &Registry, store: Option<&mut StateStore>) {
        self.close(registry);
        if let Some(store) = store {
            self.out.state.retire(store, self.machine.index());
        }
    }

    /// Hands what the sinks handled since the last save to the store.
    pub fn save_state(&mut self, store: &mut StateStore) {
        self.out.state.save(store, self.machine.index());
    }

    /// At most `limit` entries of the handled state (see
    /// `Persistence::save_at_most`); `has_unsaved_state` says if more are left.
    pub fn save_state_part(&mut self, store: &mut StateStore, limit: usize) {
        self.out
            .state
            .save_at_most(store, self.machine.index(), limit);
    }

    pub fn token(&self) -> Option<Token> {
        match &self.link {
            Link::Connecting { conn, .. } | Link::Connected { conn, .. } => Some(conn.token()),
            _ => None,
        }
    }

    pub fn resolver_query(&self) -> Option<u64> {
        match &self.link {
            Link::Resolving { query, .. } => Some(*query),
            _ => None,
        }
    }

    fn connect_deadline(&self) -> Option<Instant> {
        match &self.link {
            Link::Connecting { deadline, .. } => Some(*deadline),
            Link::Connected {
                handshake_deadline, ..
            } => *handshake_deadline,
            _ => None,
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        match (self.machine.deadline(), self.connect_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn has_room(&self, sinks: &[Sink]) -> bool {
        self.out.has_room(sinks)
    }

    /// Timers: connect timeout and the machine's deadlines. Returns true when
    /// the watch should be driven now.
    pub fn on_timers(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if self.connect_deadline().is_some_and(|d| d <= ctx.now) {
            let timeout = ctx
                .clusters
                .get(self.cluster)
                .map(|c| c.connect_timeout)
                .unwrap_or_default();
            let (what, peer) = match &self.link {
                Link::Connecting { conn, .. } => ("connect", conn.peer().to_string()),
                Link::Connected { conn, .. } => ("TLS handshake", conn.peer().to_string()),
                _ => ("TLS handshake", "the server".into()),
            };
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

    pub fn close(&mut self, registry: &Registry) {
        if let Link::Connecting { conn, .. } | Link::Connected { conn, .. } = &mut self.link {
            conn.close(registry);
        }
        self.link = Link::None;
    }

    /// A resolver answer for this watch's query.
    pub fn on_resolved(&mut self, ctx: &mut Ctx<'_>, result: std::io::Result<Vec<SocketAddr>>) {
        let Link::Resolving { plan, .. } = std::mem::replace(&mut self.link, Link::None) else {
            return;
        };
        match result {
            Ok(addrs) => self.connect_next(ctx, plan, addrs.into()),
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
            Ok(Resolution::Ready(addrs)) => self.connect_next(ctx, plan, addrs.into()),
            Ok(Resolution::Pending(query)) => self.link = Link::Resolving { query, plan },
            Err(e) => self
                .machine
                .on_transport_error(ctx.now, &format_args!("cannot resolve {host}: {e}")),
        }
    }

    fn connect_next(
        &mut self,
        ctx: &mut Ctx<'_>,
        plan: RequestPlan,
        mut addrs: VecDeque<SocketAddr>,
    ) {
        self.link = Link::None;
        let Some(cluster) = ctx.clusters.get_mut(self.cluster) else {
            return;
        };
        let tls = match cluster.tls_for_connect() {
            Ok(tls) => tls,
            Err(e) => {
                self.machine.on_transport_error(ctx.now, &e);
                return;
            }
        };
        let mut last_error = None;
        let mut exhausted = false;
        while let Some(addr) = addrs.pop_front() {
            self.connections += 1;
            let token = Source::Watch {
                slot: self.out.key,
                conn: self.connections,
            }
            .token();
            match Connection::connect(ctx.registry, token, addr, tls.clone()) {
                Ok(conn) => {
                    self.link = Link::Connecting {
                        conn,
                        plan,
                        addrs,
                        deadline: ctx.now + cluster.connect_timeout,
                    };
                    return;
                }
                Err(e) => {
                    exhausted = crate::fdlimit::is_exhaustion(&e);
                    last_error = Some(format!("cannot connect to {addr}: {e}"));
                }
            }
        }
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
        match std::mem::replace(&mut self.link, Link::None) {
            Link::Connecting {
                mut conn,
                plan,
                addrs,
                ..
            } => {
                conn.close(ctx.registry);
                if !addrs.is_empty() {
                    log::debug!(
                        "watch {}: {error}; trying the next address",
                        self.machine.name()
                    );
                    self.connect_next(ctx, plan, addrs);
                    return;
                }
            }
            Link::Connected { mut conn, .. } => conn.close(ctx.registry),
            Link::None | Link::Resolving { .. } => {}
        }
        self.machine.on_transport_error(ctx.now, error);
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
                    let credentials = ctx.credentials(self.cluster);
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
                Link::Connecting { conn, .. } => {
                    match conn.finish_connect() {
                        Ok(true) => {}
                        Ok(false) => return Flow::Idle,
                        Err(e) => {
                            let msg = format!("cannot connect to {}: {e}", conn.peer());
                            self.connect_failed(ctx, &msg);
                            continue;
                        }
                    }
                    let Link::Connecting {
                        conn,
                        plan,
                        deadline,
                        ..
                    } = std::mem::replace(&mut self.link, Link::None)
                    else {
                        continue;
                    };
                    self.link = Link::Connected {
                        conn,
                        exchange: Exchange::Idle,
                        handshake_deadline: Some(deadline),
                    };
                    if let Err(e) = self.send(ctx, plan, false) {
                        self.fail(ctx, &format_args!("cannot send the request: {e}"));
                        return Flow::Idle;
                    }
                }
                Link::Connected {
                    exchange: Exchange::Idle,
                    ..
                } => {
                    if self.machine.wants_request(ctx.now) {
                        if !self.out.has_room(ctx.sinks) {
                            return Flow::Blocked;
                        }
                        match ctx.credentials(self.cluster) {
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
                                self.fail(ctx, &format_args!("cannot send the request: {e}"));
                                return Flow::Idle;
                            }
                            continue;
                        }
                    }
                    // An idle keep-alive connection only hears a close.
                    let Link::Connected { conn, .. } = &mut self.link else {
                        continue;
                    };
                    match conn.read(ctx.registry, ctx.read_buf) {
                        Ok(ReadOutcome::WouldBlock) => return Flow::Idle,
                        _ => {
                            self.close(ctx.registry);
                            continue;
                        }
                    }
                }
                Link::Connected {
                    exchange: Exchange::Awaiting(_),
                    ..
                } => match self.pump(ctx, &mut budget) {
                    Pumped::Stop(flow) => return flow,
                    Pumped::Changed => continue,
                },
            }
        }
    }

    /// Writes the request for `plan` on the current connection.
    fn send(&mut self, ctx: &mut Ctx<'_>, plan: RequestPlan, reused: bool) -> std::io::Result<()> {
        let Link::Connected { conn, exchange, .. } = &mut self.link else {
            return Ok(());
        };
        let Some(cluster) = ctx.clusters.get_mut(self.cluster) else {
            return Ok(());
        };
        let auth = cluster.authorization();
        let mut headers: Vec<(&str, &str)> = vec![("Accept", plan.accept)];
        // Big LIST answers compress well; watch streams are not compressed
        // (every line must be readable the moment it arrives).
        let gzip = plan.kind == RequestKind::List;
        if gzip {
            headers.push(("Accept-Encoding", "gzip"));
        }
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
            // Memory per LIST is one item (max_line), not the page.
            RequestKind::List => BodyMode::Stream,
            RequestKind::Discovery => BodyMode::Whole {
                max_body: self.list_body_limit,
            },
        };
        let list = (plan.kind == RequestKind::List).then(|| ListScanner::new(self.max_line));
        *exchange = Exchange::Awaiting(Box::new(Response {
            plan,
            reader: match gzip {
                true => ResponseReader::new(mode).accepting_gzip(),
                false => ResponseReader::new(mode),
            },
            eof: None,
            received: 0,
            reused,
            list,
        }));
        Ok(())
    }

    /// Moves the awaited response forward.
    fn pump(&mut self, ctx: &mut Ctx<'_>, budget: &mut usize) -> Pumped {
        let Watcher {
            machine, out, link, ..
        } = self;
        let Link::Connected {
            conn,
            exchange: Exchange::Awaiting(resp),
            handshake_deadline,
        } = link
        else {
            return Pumped::Changed;
        };
        if conn.is_ready() {
            *handshake_deadline = None;
        }
        loop {
            // 1. Lines already decoded go first, as long as the sinks have room.
            if resp.status().is_some_and(is_success) && resp.plan.kind == RequestKind::Watch {
                loop {
                    if !out.has_room(ctx.sinks) {
                        return Pumped::Stop(Flow::Blocked);
                    }
                    let line = match resp.reader.next_line() {
                        None => break,
                        Some(Ok(line)) => line,
                        Some(Err(e)) => {
                            let msg = format!("watch stream unusable: {e}");
                            self.fail(ctx, &msg);
                            return Pumped::Changed;
                        }
                    };
                    let now = ctx.now;
                    if machine.on_watch_line(now, line, &mut out.fanout(ctx)) == LineOutcome::Close
                    {
                        self.close(ctx.registry);
                        return Pumped::Changed;
                    }
                }
            }
            // 1b. LIST items likewise, as their bytes arrive.
            if let (Some(true), Some(scanner)) = (resp.status().map(is_success), resp.list.as_mut())
            {
                if let Some(bytes) = resp.reader.body_bytes() {
                    scanner.feed(bytes);
                    bytes.clear();
                }
                loop {
                    if !out.has_room(ctx.sinks) {
                        return Pumped::Stop(Flow::Blocked);
                    }
                    let now = ctx.now;
                    let outcome = match scanner.next_item() {
                        Ok(None) => break,
                        Ok(Some((item, info))) => {
                            machine.on_list_item(now, info, item, &mut out.fanout(ctx))
                        }
                        Err(e) => {
                            machine.unusable_list(now, &e);
                            LineOutcome::Close
                        }
                    };
                    if outcome == LineOutcome::Close {
                        self.close(ctx.registry);
                        return Pumped::Changed;
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
                return Pumped::Stop(Flow::Again);
            }
            // 4. Read more.
            match conn.read(ctx.registry, ctx.read_buf) {
                Ok(ReadOutcome::Data(n)) => {
                    *budget = budget.saturating_sub(n);
                    resp.received += n;
                    machine.note_activity(ctx.now);
                    machine.note_bytes(n);
                    let had_head = resp.reader.head().is_some();
                    if let Err(e) = resp.reader.feed(&ctx.read_buf[..n]) {
                        let msg = format!("unusable answer from {}: {e}", conn.peer());
                        self.fail(ctx, &msg);
                        return Pumped::Changed;
                    }
                    if let (false, Some(status)) = (had_head, resp.status()) {
                        *handshake_deadline = None;
                        machine.on_response_head(ctx.now);
                        if !is_success(status) {
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
                Ok(ReadOutcome::WouldBlock) => return Pumped::Stop(Flow::Idle),
                Ok(ReadOutcome::Closed { .. }) => {
                    // A final unterminated line may become available: loop.
                    resp.eof = Some(resp.reader.on_eof().err().map(|e| e.to_string()));
                }
                Err(e) => {
                    let msg = format!("connection to {} failed: {e}", conn.peer());
                    self.fail(ctx, &msg);
                    return Pumped::Changed;
                }
            }
        }
    }

    /// The peer closed while a response was awaited; `error` is what the
    /// reader made of the unfinished body, if anything.
    fn after_eof(&mut self, ctx: &mut Ctx<'_>, error: Option<String>) -> Pumped {
        let Link::Connected {
            exchange: Exchange::Awaiting(resp),
            ..
        } = &mut self.link
        else {
            return Pumped::Changed;
        };
        if resp.reader.is_complete() {
            return self.complete(ctx);
        }
        match (resp.status(), resp.plan.kind) {
            (Some(s), RequestKind::Watch) if is_success(s) => {
                if let Some(e) = &error {
                    log::debug!("watch {}: stream cut: {e}", self.machine.name());
                }
                self.close(ctx.registry);
                self.machine.on_watch_end(ctx.now, false);
            }
            (None, _) if resp.received == 0 && resp.reused => {
                // The server closed an idle keep-alive connection just as we
                // reused it: not a failure, resend on a fresh connection.
                let plan = resp.plan.clone();
                self.close(ctx.registry);
                self.start(ctx, plan);
            }
            _ => {
                let msg = match error {
                    Some(e) => format!("the server closed the connection early: {e}"),
                    None => "the server closed the connection before answering".to_owned(),
                };
                self.fail(ctx, &msg);
            }
        }
        Pumped::Changed
    }

    /// The response is complete: hand it to the machine, keep or close the
    /// connection.
    fn complete(&mut self, ctx: &mut Ctx<'_>) -> Pumped {
        let Watcher {
            machine,
            out,
            link,
            cluster,
            ..
        } = self;
        let Link::Connected { exchange, .. } = link else {
            return Pumped::Changed;
        };
        let Exchange::Awaiting(resp) = std::mem::replace(exchange, Exchange::Idle) else {
            return Pumped::Changed;
        };
        let mut resp = *resp;
        let (status, retry_after, keep_alive) = resp.reader.head().map_or((0, None, false), |h| {
            (h.status, h.retry_after(), h.keep_alive)
        });
        match resp.plan.kind {
            _ if !is_success(status) => {
                if status == 401 {
                    if let Some(c) = ctx.clusters.get_mut(*cluster) {
                        c.on_unauthorized();
                    }
                }
                let body = resp.reader.take_body().unwrap_or_default();
                machine.on_http_error(ctx.now, status, retry_after, &body);
            }
            RequestKind::List => {
                let now = ctx.now;
                match resp.list.as_mut().map(ListScanner::finish) {
                    Some(Err(e)) => {
                        machine.unusable_list(now, &e);
                        self.close(ctx.registry);
                        return Pumped::Changed;
                    }
                    _ => {
                        let info = resp
                            .list
                            .as_ref()
                            .map(|s| s.info().clone())
                            .unwrap_or_default();
                        machine.on_list_end(now, &info, &mut out.fanout(ctx));
                    }
                }
            }
            RequestKind::Watch => machine.on_watch_end(ctx.now, true),
            RequestKind::Discovery => {
                let body = resp.reader.take_body().unwrap_or_default();
                machine.on_discovery_body(ctx.now, &body);
                if let (Some(base), Some(v)) = (out.meta_base.as_mut(), machine.api_version()) {
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
        if !keep_alive || resp.eof.is_some() {
            self.close(ctx.registry);
        }
        Pumped::Changed
    }
}

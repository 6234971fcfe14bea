//! The daemon: one thread, one `mio::Poll`, every watch socket, timer and
//! signal multiplexed on it.

mod apply;
pub mod cluster;
pub mod credential;
pub mod notify;
mod observe;
pub mod reload;
pub mod watcher;

use crate::config::{ClusterConfig, Config, SinkConfig, WatchConfig, WatchTarget};
use crate::kube::{ResourcePath, Selectors};
use crate::metrics::MetricsServer;
use crate::net::Resolver;
use crate::rand::Rng;
use crate::sink::{ExecSink, FileSink, QueueBound, Sink, SinkCtx, WebhookSink};
use crate::state::{AckRef, Fingerprint, Journal, Ledger, StateDirError, StateStore};
use crate::watch::index::{unconfirmed_version, IndexEntry, ObjectIndex};
use crate::watch::{WatchMachine, WatchSpec};
use cluster::ClusterRuntime;
use mio::{Events, Poll, Token, Waker};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use watcher::{Ctx, Flow, TokenAllocator, Watcher};

const SIGNAL_TOKEN: Token = Token(0);
const WAKER_TOKEN: Token = Token(1);
/// Sinks, hook pipes and webhook connections take tokens from here up.
const FIRST_DYNAMIC_TOKEN: usize = 2;
const READ_BUF: usize = 256 << 10;
/// Bytes a sink may hold besides its event bound.
const SINK_QUEUE_BYTES: usize = 64 << 20;
const LIST_PAGE_SIZE: u32 = 500;
/// Checkpoints are written at most this often (and at shutdown).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Rendering checkpoints runs in the loop: with huge indexes the interval
/// grows so that it takes at most 1/this of the loop's time.
const CHECKPOINT_DUTY: u32 = 20;
/// Watches whose checkpoint one loop turn renders at most.
const CHECKPOINTS_PER_TURN: usize = 16;
/// How long shutdown waits for the checkpoint writer.
const CHECKPOINT_FINISH: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum DaemonError {
    Io {
        what: &'static str,
        error: io::Error,
    },
    Cluster {
        name: String,
        error: String,
    },
    Sink {
        name: String,
        error: String,
    },
    TooManyWatches {
        count: usize,
    },
    Metrics {
        addr: std::net::SocketAddr,
        error: io::Error,
    },
    StateDir(StateDirError),
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { what, error } => write!(f, "{what}: {error}"),
            Self::Cluster { name, error } => write!(f, "cluster {name}: {error}"),
            Self::Sink { name, error } => write!(f, "sink {name}: {error}"),
            Self::TooManyWatches { count } => write!(
                f,
                "{count} watches configured; at most {} are supported by one daemon",
                watcher::MAX_WATCHES
            ),
            Self::Metrics { addr, error } => write!(
                f,
                "cannot serve metrics on {addr} ([daemon] metrics_listen): {error}"
            ),
            Self::StateDir(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DaemonError {}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> DaemonError {
    move |error| DaemonError::Io { what, error }
}

pub struct Daemon {
    /// The configuration running now; SIGHUP re-reads `config.source`.
    config: Config,
    /// False for a configuration built in memory (the demo).
    reloadable: bool,
    poll: Poll,
    signals: Signals,
    resolver: Resolver,
    /// In `config.clusters` order; watchers hold positions in it.
    clusters: Vec<ClusterRuntime>,
    /// In `config.sinks` order; watchers hold positions in it.
    sinks: Vec<Sink>,
    /// Sinks a reload removed or replaced: they get no new events and are
    /// closed once they delivered what they hold.
    retiring: Vec<Sink>,
    /// Slots, never reused: a watch's slot is part of its connection
    /// tokens. A watch a reload stopped leaves `None`.
    watchers: Vec<Option<Watcher>>,
    /// The `[[watch]]` name behind each slot.
    slot_names: Vec<String>,
    /// Clusters built so far (the next one's id).
    clusters_built: usize,
    tokens: TokenAllocator,
    /// Watches to drive this turn (readiness, timers, room in sinks).
    runnable: Vec<bool>,
    blocked: Vec<bool>,
    read_buf: Vec<u8>,
    record_buf: Vec<u8>,
    phase: Phase,
    notifier: Option<notify::Notifier>,
    /// READY=1 was sent.
    ready: bool,
    metrics: Option<MetricsServer>,
    /// How long shutdown lets the sinks deliver what they hold (running
    /// hooks, a full disk, a stuck FIFO) before giving up and saying how
    /// much is left.
    shutdown_timeout: Duration,
    /// `None` only after shutdown handed it its last checkpoints.
    state: Option<StateStore>,
    /// No checkpoint write before this.
    next_checkpoint: Instant,
    /// The slot a checkpoint round spread over turns goes on from.
    checkpoint_cursor: usize,
    /// Acks collected from the sinks, routed to the ledgers each turn.
    acks: Vec<AckRef>,
}

impl Daemon {
    pub fn new(config: &Config) -> Result<Daemon, DaemonError> {
        let nofile = crate::fdlimit::raise_soft_limit();
        let poll = Poll::new().map_err(io_err("cannot create the poller"))?;
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGCHLD, SIGHUP, SIGUSR1])
            .map_err(io_err("cannot install signal handlers"))?;
        poll.registry()
            .register(&mut signals, SIGNAL_TOKEN, mio::Interest::READABLE)
            .map_err(io_err("cannot register signals"))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER_TOKEN).map_err(io_err("cannot create the waker"))?,
        );
        let state = StateStore::open(&config.daemon.state_dir).map_err(DaemonError::StateDir)?;
        if config.watches.len() > watcher::MAX_WATCHES {
            return Err(DaemonError::TooManyWatches {
                count: config.watches.len(),
            });
        }
        let mut tokens = TokenAllocator::starting_at(FIRST_DYNAMIC_TOKEN);
        let clusters = config
            .clusters
            .iter()
            .enumerate()
            .map(|(id, (name, c))| build_cluster(name, c, id))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sinks = Vec::new();
        for (name, s) in &config.sinks {
            sinks.push(build_sink(config, name, s, &mut tokens)?);
        }
        let metrics = match config.daemon.metrics_listen {
            Some(addr) => {
                let server = MetricsServer::bind(addr, poll.registry())
                    .map_err(|error| DaemonError::Metrics { addr, error })?;
                server.announce();
                Some(server)
            }
            None => None,
        };
        let mut daemon = Daemon {
            config: config.clone(),
            reloadable: true,
            poll,
            signals,
            resolver: Resolver::new(waker),
            clusters,
            sinks,
            retiring: Vec::new(),
            watchers: Vec::new(),
            slot_names: Vec::new(),
            clusters_built: config.clusters.len(),
            tokens,
            runnable: Vec::new(),
            blocked: Vec::new(),
            read_buf: vec![0; READ_BUF],
            record_buf: Vec::with_capacity(64 << 10),
            phase: Phase::Running,
            notifier: notify::Notifier::from_env(Instant::now()),
            ready: false,
            metrics,
            shutdown_timeout: config.daemon.shutdown_timeout,
            state: Some(state),
            next_checkpoint: Instant::now() + CHECKPOINT_INTERVAL,
            checkpoint_cursor: 0,
            acks: Vec::new(),
        };
        for w in &config.watches {
            daemon.start_watch(w)?;
        }
        crate::fdlimit::report(
            nofile,
            daemon.watchers.len(),
            crate::fdlimit::reserve(config),
        );
        Ok(daemon)
    }

    /// For a configuration that is not its file as is (the demo rewrites
    /// addresses): SIGHUP then keeps it rather than re-reading the file.
    pub fn without_reload(mut self) -> Daemon {
        self.reloadable = false;
        self
    }

    /// Starts the watchers of `w` in fresh slots (one per namespace of a
    /// namespace list), routed to the clusters and sinks of `self.config`.
    fn start_watch(&mut self, w: &WatchConfig) -> Result<(), DaemonError> {
        let Some((cluster, cluster_config)) = self
            .config
            .clusters
            .iter()
            .enumerate()
            .find(|(_, (name, _))| **name == w.cluster)
            .map(|(i, (_, c))| (i, c.clone()))
        else {
            return Err(DaemonError::Cluster {
                name: w.cluster.clone(),
                error: format!("not defined (watch {})", w.name),
            });
        };
        let (sinks, wants_meta) = self.route(w);
        for spec in watch_specs(w, &cluster_config) {
            let slot = self.watchers.len();
            if slot >= watcher::MAX_WATCHES {
                return Err(DaemonError::TooManyWatches { count: slot + 1 });
            }
            let target = self
                .state
                .as_ref()
                .map(|state| state.target(&spec.name, fingerprint(w, &cluster_config, &spec)));
            let checkpoint = match (&self.state, &target) {
                (Some(state), Some(target)) => state.load(target),
                _ => None,
            };
            let mut machine = WatchMachine::new(spec, Rng::from_entropy(slot as u64));
            let mut ledger = Ledger::new();
            let journal = target.as_ref().map(|t| {
                match checkpoint {
                    Some(mut c) => {
                        // Objects first reported after the checkpoint was
                        // written: unconfirmed, so a relist reports them
                        // again, or their DELETED.
                        let mut added = 0;
                        for (key, namespace, name, rv) in Journal::load(&t.path) {
                            c.objects.entry(key).or_insert_with(|| {
                                added += 1;
                                IndexEntry::new(
                                    namespace.as_deref(),
                                    &name,
                                    &unconfirmed_version(&rv),
                                )
                            });
                        }
                        if added > 0 {
                            log::info!(
                                "watch {}: {added} objects reported after the checkpoint was written are taken as unconfirmed",
                                machine.name()
                            );
                        }
                        ledger = Ledger::resumed(c.resource_version.clone());
                        machine.resume_from(c.resource_version, ObjectIndex::from_map(c.objects));
                    }
                    None => Journal::discard(&t.path),
                }
                Journal::new(&t.path)
            });
            let mut watcher = Watcher::new(
                slot,
                machine,
                cluster,
                &w.cluster,
                sinks.clone(),
                wants_meta,
                self.config.daemon.max_line_bytes,
            );
            watcher.ledger = ledger;
            watcher.checkpoint = target;
            watcher.journal = journal;
            self.watchers.push(Some(watcher));
            self.slot_names.push(w.name.clone());
            self.runnable.push(true);
            self.blocked.push(false);
        }
        Ok(())
    }

    /// Positions in `self.sinks` of the sinks `w` feeds, and whether any
    /// of them wants each event's metadata.
    fn route(&self, w: &WatchConfig) -> (Vec<usize>, bool) {
        let ids: Vec<usize> = w
            .sinks
            .iter()
            .filter_map(|s| self.config.sinks.keys().position(|k| k == s))
            .collect();
        let wants_meta = ids
            .iter()
            .any(|&i| self.sinks.get(i).is_some_and(Sink::wants_meta));
        (ids, wants_meta)
    }

    fn live_watchers(&self) -> impl Iterator<Item = &Watcher> {
        self.watchers.iter().flatten()
    }

    /// Runs until SIGINT or SIGTERM, then drains the sinks.
    pub fn run(mut self) -> Result<(), DaemonError> {
        log::info!(
            "kwatchd {} running: {} watches, {} sinks",
            env!("CARGO_PKG_VERSION"),
            self.live_watchers().count(),
            self.sinks.len()
        );
        let mut events = Events::with_capacity(1024);
        while self.phase == Phase::Running {
            self.wait(&mut events)?;
            self.dispatch(&events);
            self.turn();
            self.notify_systemd();
        }
        if let Some(n) = &self.notifier {
            n.send(&format!(
                "STOPPING=1\nSTATUS=stopping; {}",
                self.status_line()
            ));
        }
        self.drain(&mut events)
    }

    /// One `poll`, with the timeout to the earliest deadline (zero while a
    /// watch has work left over from the last turn).
    fn wait(&mut self, events: &mut Events) -> Result<(), DaemonError> {
        let now = Instant::now();
        let timeout = if self.runnable.iter().any(|r| *r) {
            Some(Duration::ZERO)
        } else {
            self.next_deadline()
                .map(|d| d.saturating_duration_since(now))
        };
        loop {
            match self.poll.poll(events, timeout) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    return Err(DaemonError::Io {
                        what: "poll failed",
                        error,
                    })
                }
            }
        }
    }

    /// Routes poll events to their owners.
    fn dispatch(&mut self, events: &Events) {
        for event in events.iter() {
            match event.token() {
                SIGNAL_TOKEN => self.on_signals(),
                WAKER_TOKEN => self.on_resolver_answers(),
                t if credential::cluster_of(t).is_some() => {
                    let done = cluster::on_token(&mut self.clusters, self.poll.registry(), t);
                    self.wake_watchers(done);
                }
                t => match watcher::watch_of(t) {
                    Some(i) => {
                        // A stale event for a closed connection is dropped.
                        let owner = self.watchers.get(i).and_then(Option::as_ref);
                        if owner.and_then(Watcher::token) == Some(t) {
                            self.runnable[i] = true;
                        }
                    }
                    None if crate::metrics::owns(t) => self.on_metrics_ready(t),
                    None => {
                        let (mut ctx, sinks) = self.sink_ctx();
                        for sink in sinks {
                            if sink.on_ready(t, &mut ctx) {
                                break;
                            }
                        }
                    }
                },
            }
        }
    }

    fn ctx(&mut self) -> (Ctx<'_>, &mut Vec<Option<Watcher>>) {
        (
            Ctx {
                registry: self.poll.registry(),
                resolver: &mut self.resolver,
                clusters: &mut self.clusters,
                sinks: &mut self.sinks,
                tokens: &mut self.tokens,
                read_buf: &mut self.read_buf,
                record_buf: &mut self.record_buf,
                now: Instant::now(),
            },
            &mut self.watchers,
        )
    }

    /// Every sink, the retiring ones included, with what they need.
    fn sink_ctx(&mut self) -> (SinkCtx<'_>, impl Iterator<Item = &mut Sink>) {
        (
            SinkCtx {
                registry: self.poll.registry(),
                tokens: &mut self.tokens,
                resolver: &mut self.resolver,
                now: Instant::now(),
            },
            self.sinks.iter_mut().chain(self.retiring.iter_mut()),
        )
    }

    /// One loop turn after poll: timers, driving the watches, the sinks.
    fn turn(&mut self) {
        let mut runnable = std::mem::take(&mut self.runnable);
        let mut blocked = std::mem::take(&mut self.blocked);
        let fetched = cluster::on_timers(&mut self.clusters, self.poll.registry(), Instant::now());
        runnable.iter_mut().for_each(|r| *r |= fetched);
        {
            let (mut ctx, watchers) = self.ctx();
            for (i, slot) in watchers.iter_mut().enumerate() {
                if slot.as_mut().is_some_and(|w| w.on_timers(&mut ctx)) {
                    runnable[i] = true;
                }
            }
            for (i, slot) in watchers.iter_mut().enumerate() {
                let Some(w) = slot else {
                    runnable[i] = false;
                    continue;
                };
                if !runnable[i] {
                    continue;
                }
                ctx.now = Instant::now();
                let flow = w.drive(&mut ctx);
                runnable[i] = flow == Flow::Again;
                blocked[i] = flow == Flow::Blocked;
            }
        }
        // New objects are on disk before any sink acts on them.
        for w in self.watchers.iter_mut().flatten() {
            if let Some(j) = &mut w.journal {
                j.flush();
            }
        }
        self.poll_sinks();
        self.metrics_timers();
        self.collect_acks();
        self.checkpoint_if_due();
        for (i, slot) in self.watchers.iter().enumerate() {
            if blocked[i] && slot.as_ref().is_some_and(|w| w.has_room(&self.sinks)) {
                blocked[i] = false;
                runnable[i] = true;
            }
        }
        self.runnable = runnable;
        self.blocked = blocked;
    }

    fn poll_sinks(&mut self) {
        let (mut ctx, sinks) = self.sink_ctx();
        for s in sinks {
            s.poll(&mut ctx);
        }
        self.retiring.retain(|s| {
            let done = s.pending() == 0;
            if done {
                log::info!(
                    "sink {} (before the reload): {}; closed",
                    s.name(),
                    s.summary()
                );
            }
            !done
        });
    }

    /// Hands what the sinks finished to the watches' ledgers.
    fn collect_acks(&mut self) {
        let mut acks = std::mem::take(&mut self.acks);
        for s in self.sinks.iter_mut().chain(&mut self.retiring) {
            s.take_acks(&mut acks);
        }
        for ack in acks.drain(..) {
            // A watch a reload stopped no longer keeps a ledger.
            let Some(w) = self.watchers.get_mut(ack.watch).and_then(Option::as_mut) else {
                continue;
            };
            if let Err(e) = w.ledger.ack(ack.seq) {
                // A sink reporting a record twice, or one the ledger never
                // recorded: a bug, but the ledger stays consistent.
                log::debug!(
                    "watch {}: ack for step {} ignored ({e:?})",
                    w.machine.name(),
                    ack.seq
                );
            }
        }
        self.acks = acks;
    }

    /// Queues the checkpoints of the watches whose handled state changed,
    /// at most once per `CHECKPOINT_INTERVAL`.
    fn checkpoint_if_due(&mut self) {
        let now = Instant::now();
        if now < self.next_checkpoint {
            return;
        }
        if !self.live_watchers().any(|w| w.ledger.is_dirty()) {
            return;
        }
        let round_done = self.write_checkpoints(false);
        let spent = now.elapsed();
        // A round over many watches is spread over loop turns, the loop
        // keeping most of its time for the sockets in between.
        self.next_checkpoint = if round_done {
            now + CHECKPOINT_INTERVAL.max(spent * CHECKPOINT_DUTY)
        } else {
            now + spent * CHECKPOINT_DUTY
        };
    }

    /// `finally`: the last checkpoints, at shutdown (all of them). Else at
    /// most `CHECKPOINTS_PER_TURN` dirty watches, from where the last call
    /// stopped; true when the round reached the last watch.
    fn write_checkpoints(&mut self, finally: bool) -> bool {
        let Some(state) = &mut self.state else {
            return true;
        };
        let slots = self.watchers.len();
        let start = if finally { 0 } else { self.checkpoint_cursor };
        let mut written = 0;
        for i in start..slots {
            let Some(w) = self.watchers.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            let Some(target) = &w.checkpoint else {
                continue;
            };
            if !finally && written == CHECKPOINTS_PER_TURN {
                self.checkpoint_cursor = i;
                return false;
            }
            if w.ledger.is_dirty() {
                written += 1;
            }
            state.save(
                target,
                &mut w.ledger,
                w.machine.index(),
                w.journal.as_mut(),
                finally,
            );
        }
        self.checkpoint_cursor = 0;
        true
    }

    fn next_deadline(&self) -> Option<Instant> {
        let watches = self.live_watchers().filter_map(Watcher::deadline);
        let sinks = self
            .sinks
            .iter()
            .chain(&self.retiring)
            .filter_map(Sink::deadline);
        let watchdog = self.notifier.as_ref().and_then(notify::Notifier::deadline);
        let clusters = self.clusters.iter().filter_map(ClusterRuntime::deadline);
        let metrics = self.metrics.as_ref().and_then(MetricsServer::deadline);
        let checkpoint = self
            .live_watchers()
            .any(|w| w.ledger.is_dirty())
            .then_some(self.next_checkpoint);
        watches
            .chain(sinks)
            .chain(watchdog)
            .chain(metrics)
            .chain(checkpoint)
            .chain(clusters)
            .min()
    }

    /// "3 watches, 2 streaming, 1 backing off (pods-prod); 5321 events":
    /// the watches backing off are named (the first few), since READY=1 may
    /// come while they still retry.
    fn status_line(&self) -> String {
        const NAMED: usize = 3;
        let streaming = self
            .live_watchers()
            .filter(|w| w.machine.state_name() == "streaming")
            .count();
        let backing_off: Vec<&str> = self
            .live_watchers()
            .filter(|w| w.machine.state_name() == "backing off")
            .map(|w| w.machine.name())
            .collect();
        let mut names = backing_off
            .iter()
            .take(NAMED)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if backing_off.len() > NAMED {
            names.push_str(", ...");
        }
        let names = if names.is_empty() {
            names
        } else {
            format!(" ({names})")
        };
        let failed = self
            .live_watchers()
            .filter(|w| w.machine.has_failed())
            .count();
        let failed = if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        };
        let events: u64 = self.live_watchers().map(|w| w.machine.stats().events).sum();
        format!(
            "{} watches, {streaming} streaming, {} backing off{names}{failed}; {events} events",
            self.live_watchers().count(),
            backing_off.len(),
        )
    }

    /// READY=1 once every watch has listed (or is backing off after a
    /// failure, said in STATUS), then the watchdog from this loop.
    fn notify_systemd(&mut self) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let now = Instant::now();
        let watchdog_due = notifier.deadline().is_some_and(|d| d <= now);
        if self.ready && !watchdog_due {
            return;
        }
        let status = self.status_line();
        if !self.ready && self.live_watchers().all(|w| observe::is_ready(&w.machine)) {
            notifier.send(&format!("READY=1\nSTATUS={status}"));
            self.ready = true;
        }
        if let Some(n) = &mut self.notifier {
            n.on_timer(now, &status);
        }
    }

    fn on_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGCHLD => {
                    let (mut ctx, sinks) = self.sink_ctx();
                    for s in sinks {
                        s.on_sigchld(&mut ctx);
                    }
                    let done = cluster::on_sigchld(&mut self.clusters, self.poll.registry());
                    self.wake_watchers(done);
                }
                SIGUSR1 => {
                    // logrotate's postrotate convention: the next write
                    // creates the file anew.
                    log::info!("received SIGUSR1; reopening file sinks");
                    for s in self.sinks.iter_mut().chain(&mut self.retiring) {
                        s.reopen();
                    }
                }
                SIGHUP if self.phase == Phase::Running => self.reload(),
                SIGHUP => log::warn!("received SIGHUP while stopping; not reloading"),
                SIGINT | SIGTERM => {
                    let name = if signal == SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    match self.phase {
                        Phase::Running => {
                            log::info!("received {name}; stopping: no more reading, delivering what is queued (up to {}; send it again to stop at once)", humantime::format_duration(self.shutdown_timeout));
                            self.phase = Phase::Draining;
                        }
                        Phase::Draining | Phase::Aborting => {
                            log::warn!("received {name} again; stopping now");
                            self.phase = Phase::Aborting;
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// A credential plugin finished: the watches waiting for it go on.
    fn wake_watchers(&mut self, wake: bool) {
        if wake {
            self.runnable.iter_mut().for_each(|r| *r = true);
        }
    }

    fn on_resolver_answers(&mut self) {
        let answers = self.resolver.answers();
        for answer in answers {
            let (mut ctx, watchers) = self.ctx();
            if let Some(w) = watchers
                .iter_mut()
                .flatten()
                .find(|w| w.resolver_query() == Some(answer.id))
            {
                w.on_resolved(&mut ctx, answer.result);
                continue;
            }
            let (mut ctx, mut sinks) = self.sink_ctx();
            if let Some(s) = sinks.find(|s| s.owns_query(answer.id)) {
                s.on_resolved(answer.id, answer.result, &mut ctx);
            }
        }
        self.runnable.iter_mut().for_each(|r| *r = true);
    }

    /// Stop reading, let the sinks deliver what they hold (running hooks
    /// finish, queues drain) until done, the drain time is up, or a second
    /// signal; then stop what still runs and say what was not delivered.
    fn drain(&mut self, events: &mut Events) -> Result<(), DaemonError> {
        let registry = self.poll.registry();
        for w in self.watchers.iter_mut().flatten() {
            w.close(registry);
        }
        if let Some(m) = &mut self.metrics {
            m.shutdown(registry);
        }
        self.metrics = None;
        self.runnable.iter_mut().for_each(|r| *r = false);
        let give_up = Instant::now() + self.shutdown_timeout;
        loop {
            self.poll_sinks();
            self.collect_acks();
            self.checkpoint_if_due();
            let pending: usize = self
                .sinks
                .iter()
                .chain(&self.retiring)
                .map(Sink::pending)
                .sum();
            if pending == 0 {
                break;
            }
            if self.phase == Phase::Aborting || Instant::now() >= give_up {
                let (mut ctx, sinks) = self.sink_ctx();
                for s in sinks {
                    if s.pending() > 0 {
                        log::error!(
                            "sink {}: {} events were not delivered before shutdown",
                            s.name(),
                            s.pending()
                        );
                    }
                    s.abort(&mut ctx);
                }
                break;
            }
            // Short waits: a blocked file is retried on a timer of its own.
            let until = self.next_deadline().unwrap_or(give_up).min(give_up);
            let timeout = until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50));
            if let Err(e) = self.poll.poll(events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(DaemonError::Io {
                        what: "poll failed",
                        error: e,
                    });
                }
            }
            self.dispatch(events);
        }
        for s in self.sinks.iter().chain(&self.retiring) {
            log::info!("sink {}: {}", s.name(), s.summary());
        }
        // Only what the sinks finished: records aborted or still queued are
        // ahead of the checkpoint and are delivered again after a restart.
        self.collect_acks();
        self.write_checkpoints(true);
        if let Some(state) = self.state.take() {
            state.finish(CHECKPOINT_FINISH);
        }
        let events: u64 = self.live_watchers().map(|w| w.machine.stats().events).sum();
        log::info!("stopped after {events} events");
        Ok(())
    }
}

/// Where the daemon is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// SIGTERM/SIGINT: no more reading; sinks deliver what they hold.
    Draining,
    /// A second signal, or the drain time is up.
    Aborting,
}

/// `id` tags the tokens of its credential plugin runs; it is unique for the
/// daemon's life (a reload does not reuse one), so a token can never reach
/// a cluster that took an older one's place.
fn build_cluster(name: &str, c: &ClusterConfig, id: usize) -> Result<ClusterRuntime, DaemonError> {
    ClusterRuntime::new(c, id).map_err(|e| DaemonError::Cluster {
        name: name.to_owned(),
        error: e.to_string(),
    })
}

/// A sink as `[sinks.NAME]` defines it, its file opened.
fn build_sink(
    config: &Config,
    name: &str,
    s: &SinkConfig,
    tokens: &mut TokenAllocator,
) -> Result<Sink, DaemonError> {
    let queue_events = config.daemon.sink_queue_events.max(1);
    let bound = QueueBound {
        events: queue_events,
        bytes: SINK_QUEUE_BYTES,
    };
    let token = tokens.allocate();
    let rng = Rng::from_entropy(0x51_4b ^ token.0 as u64);
    Ok(match s {
        SinkConfig::File(f) => {
            let mut file = FileSink::new(name, &f.path, bound, token);
            file.open().map_err(|e| DaemonError::Sink {
                name: name.to_owned(),
                error: format!("cannot open {}: {e}", f.path.display()),
            })?;
            Sink::File(Box::new(file))
        }
        SinkConfig::Stdout => Sink::File(Box::new(FileSink::stdout(name, bound, token))),
        SinkConfig::Exec(e) => Sink::Exec(Box::new(ExecSink::new(name, e, queue_events, rng))),
        SinkConfig::Webhook(w) => {
            let webhook =
                WebhookSink::new(name, w, queue_events, rng).map_err(|e| DaemonError::Sink {
                    name: name.to_owned(),
                    error: e.to_string(),
                })?;
            Sink::Webhook(Box::new(webhook))
        }
    })
}

/// The machines a `[[watch]]` runs: one, or one per namespace of a list.
/// Records keep the configured name; logs say which namespace.
fn watch_specs(w: &WatchConfig, cluster: &ClusterConfig) -> Vec<WatchSpec> {
    let namespaces: Vec<Option<&String>> = match w.namespaces.as_slice() {
        [] => vec![None],
        list => list.iter().map(Some).collect(),
    };
    namespaces
        .iter()
        .map(|ns| WatchSpec {
            name: match ns {
                Some(ns) if namespaces.len() > 1 => format!("{}[{ns}]", w.name),
                _ => w.name.clone(),
            },
            record_name: w.name.clone(),
            target: w.target.clone(),
            base_path: cluster.server.base_path.clone(),
            namespace: ns.cloned(),
            exclude_namespaces: w.exclude_namespaces.clone(),
            metadata_only: w.metadata_only,
            initial_list: w.initial_list,
            selectors: Selectors {
                label: w.label_selector.clone(),
                field: w.field_selector.clone(),
            },
            events: w.events.clone(),
            on_start: w.on_start,
            page_size: LIST_PAGE_SIZE,
            watch_timeout: w.watch_timeout,
        })
        .collect()
}

/// What a checkpoint must have been written for: the stream's source, not
/// the sinks or the event filter (changing those keeps the checkpoint).
fn fingerprint(w: &WatchConfig, cluster: &ClusterConfig, spec: &WatchSpec) -> Fingerprint {
    let (api_version, resource, path) = match &w.target {
        WatchTarget::Resource {
            api_version,
            resource,
        } => (
            api_version.clone(),
            resource.clone(),
            ResourcePath::new(
                &cluster.server.base_path,
                api_version,
                spec.namespace.as_deref(),
                resource,
            )
            .as_str()
            .to_owned(),
        ),
        // Resolved through discovery at run time; the name as configured
        // is what identifies it.
        WatchTarget::Kind { name, api_version } => (
            api_version.clone().unwrap_or_default(),
            format!("kind {name}"),
            String::new(),
        ),
    };
    Fingerprint {
        cluster: w.cluster.clone(),
        server: cluster.server.to_string(),
        api_version,
        resource,
        path,
        namespace: spec.namespace.clone(),
        label_selector: w.label_selector.clone(),
        field_selector: w.field_selector.clone(),
    }
}

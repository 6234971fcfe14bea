//! The daemon: one thread, one `mio::Poll`, every watch socket, timer and
//! signal multiplexed on it.
//!
//! - [`build`]: what the configuration becomes (clusters, sinks, watches);
//! - [`watcher`]: one watch's connection and machine, [`fanout`] where its
//!   events go;
//! - [`checkpoints`]: when the watches' handled state is saved;
//! - [`apply`]: SIGHUP, [`observe`]: what metrics, status and systemd see.

mod apply;
mod build;
mod checkpoints;
mod closing;
pub mod cluster;
pub mod credential;
mod ctx;
mod fanout;
pub mod filtering;
mod leader;
mod link;
pub mod notify;
mod observe;
pub mod reload;
mod schedule;
pub mod watcher;

use crate::config::Config;
use crate::metrics::MetricsServer;
use crate::net::tls::TlsSetupError;
use crate::net::Resolver;
use crate::sink::{Sink, SinkCtx};
use crate::state::{AckRef, StateDirError, StateStore};
use crate::tokens::{Source, TokenAllocator, MAX_WATCHES};
use build::build_cluster;
pub(crate) use build::build_sink;
use checkpoints::Checkpoints;
use cluster::ClusterRuntime;
use ctx::Ctx;
use mio::{Events, Poll, Waker};
use schedule::{Marks, Schedule};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use watcher::{Flow, Watcher};

const READ_BUF: usize = 256 << 10;

#[derive(Debug)]
pub enum DaemonError {
    Io {
        what: &'static str,
        error: io::Error,
    },
    /// A watch names a cluster the configuration does not define.
    UnknownCluster {
        cluster: String,
        watch: String,
    },
    Cluster {
        name: String,
        error: TlsSetupError,
    },
    SinkOpen {
        name: String,
        path: PathBuf,
        error: io::Error,
    },
    Sink {
        name: String,
        error: TlsSetupError,
    },
    /// A sink that cannot start for a reason other than TLS (unreadable
    /// NATS credentials).
    SinkSetup {
        name: String,
        reason: String,
    },
    TooManyWatches {
        count: usize,
    },
    Metrics {
        addr: std::net::SocketAddr,
        error: io::Error,
    },
    StateDir(StateDirError),
    /// A watch's `select`/`changes`/`redact` could not be set up.
    Filter {
        watch: String,
        error: String,
    },
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { what, error } => write!(f, "{what}: {error}"),
            Self::UnknownCluster { cluster, watch } => {
                write!(f, "cluster {cluster}: not defined (watch {watch})")
            }
            Self::Cluster { name, error } => write!(f, "cluster {name}: {error}"),
            Self::Filter { watch, error } => write!(f, "watch {watch}: {error}"),
            Self::SinkOpen { name, path, error } => {
                write!(f, "sink {name}: cannot open {}: {error}", path.display())
            }
            Self::Sink { name, error } => write!(f, "sink {name}: {error}"),
            Self::SinkSetup { name, reason } => write!(f, "sink {name}: {reason}"),
            Self::TooManyWatches { count } => write!(
                f,
                "{count} watches configured; at most {MAX_WATCHES} are supported by one daemon",
            ),
            Self::Metrics { addr, error } => write!(
                f,
                "cannot serve metrics on {addr} ([daemon] metrics_listen): {error}"
            ),
            Self::StateDir(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DaemonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { error, .. } | Self::SinkOpen { error, .. } | Self::Metrics { error, .. } => {
                Some(error)
            }
            Self::Cluster { error, .. } | Self::Sink { error, .. } => Some(error),
            Self::StateDir(e) => Some(e),
            Self::UnknownCluster { .. }
            | Self::TooManyWatches { .. }
            | Self::SinkSetup { .. }
            | Self::Filter { .. } => None,
        }
    }
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> DaemonError {
    move |error| DaemonError::Io { what, error }
}

/// One watch's place in the daemon. Slots are never reused: a watch's
/// slot is part of its connection tokens and its acks.
struct Slot {
    /// The `[[watch]]` it runs.
    name: String,
    /// `None` once a reload stopped it.
    watcher: Option<Watcher>,
    /// Where it is in the schedule.
    marks: Marks,
}

pub struct Daemon {
    /// The configuration running now; SIGHUP re-reads `config.source`.
    config: Config,
    /// False for a configuration built in memory (the demo).
    reloadable: bool,
    poll: Poll,
    signals: Signals,
    resolver: Resolver,
    /// Wakes the loop for the helper threads (resolver, state writer,
    /// file sinks' fsyncs).
    waker: Arc<Waker>,
    /// In `config.clusters` order; watchers hold positions in it.
    clusters: Vec<ClusterRuntime>,
    /// In `config.sinks` order; watchers hold positions in it.
    sinks: Vec<Sink>,
    /// Sinks a reload removed or replaced: they get no new events and are
    /// closed once they delivered what they hold.
    retiring: Vec<Sink>,
    slots: Vec<Slot>,
    schedule: Schedule,
    /// Clusters built so far (the next one's id).
    clusters_built: usize,
    /// Sink tokens.
    tokens: TokenAllocator,
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
    checkpoints: Checkpoints,
    /// Acks collected from the sinks, routed to the watches each turn.
    acks: Vec<AckRef>,
    /// `[daemon.leader_election]`: only the Lease's holder delivers.
    leader: Option<leader::Leadership>,
}

impl Daemon {
    pub fn new(config: &Config) -> Result<Daemon, DaemonError> {
        let nofile = crate::fdlimit::raise_soft_limit();
        let poll = Poll::new().map_err(io_err("cannot create the poller"))?;
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGCHLD, SIGHUP, SIGUSR1])
            .map_err(io_err("cannot install signal handlers"))?;
        poll.registry()
            .register(
                &mut signals,
                Source::Signal.token(),
                mio::Interest::READABLE,
            )
            .map_err(io_err("cannot register signals"))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), Source::Waker.token())
                .map_err(io_err("cannot create the waker"))?,
        );
        if config.watches.len() > MAX_WATCHES {
            return Err(DaemonError::TooManyWatches {
                count: config.watches.len(),
            });
        }
        let mut tokens = TokenAllocator::for_sinks();
        let clusters = config
            .clusters
            .iter()
            .enumerate()
            .map(|(id, (name, c))| build_cluster(name, c, id))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sinks = Vec::new();
        let standby = config.daemon.leader_election.as_ref();
        let standby = standby.map(|le| le.standby_buffer);
        for (name, s) in &config.sinks {
            let sink = build_sink(config, name, s, (&mut tokens, &waker))?;
            sinks.push(leader::held(sink, standby, config.daemon.sink_queue_events));
        }
        let metrics = match config.daemon.metrics_listen {
            Some(addr) => {
                let mut server = MetricsServer::bind(addr, poll.registry())
                    .map_err(|error| DaemonError::Metrics { addr, error })?;
                server.require_token(config.daemon.metrics_token_file.clone());
                server.announce();
                Some(server)
            }
            None => None,
        };
        // After the listener: a second daemon on the same configuration is
        // told about the address first.
        let state = StateStore::open(
            &config.daemon.state_dir,
            (config.daemon.sync, config.daemon.sync_interval),
            Arc::clone(&waker),
        )
        .map_err(DaemonError::StateDir)?;
        let mut daemon = Daemon {
            config: config.clone(),
            reloadable: true,
            poll,
            signals,
            resolver: Resolver::new(Arc::clone(&waker)),
            waker,
            clusters,
            sinks,
            retiring: Vec::new(),
            slots: Vec::new(),
            schedule: Schedule::default(),
            clusters_built: config.clusters.len(),
            tokens,
            read_buf: vec![0; READ_BUF],
            record_buf: Vec::with_capacity(64 << 10),
            phase: Phase::Running,
            notifier: notify::Notifier::from_env(Instant::now()),
            ready: false,
            metrics,
            shutdown_timeout: config.daemon.shutdown_timeout,
            checkpoints: Checkpoints::new(state),
            acks: Vec::new(),
            leader: config
                .daemon
                .leader_election
                .as_ref()
                .map(|le| leader::Leadership::new(le, Instant::now())),
        };
        daemon
            .learn_leader_position()
            .map_err(io_err("poll failed"))?;
        for w in &config.watches {
            daemon.start_watch(w)?;
        }
        crate::fdlimit::report(
            nofile,
            daemon.live_watchers().count(),
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

    fn live_watchers(&self) -> impl Iterator<Item = &Watcher> {
        self.slots.iter().filter_map(|s| s.watcher.as_ref())
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
        let timeout = if self.schedule.has_runnable() {
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
        // A leader past its renew deadline stops before any sink acts.
        self.gate_sinks();
        for event in events.iter() {
            let token = event.token();
            match Source::of(token) {
                Some(Source::Signal) => self.on_signals(),
                // The turn that follows checks the store's gate too.
                Some(Source::Waker) => self.on_resolver_answers(),
                Some(Source::Watch { slot, .. }) => {
                    // A stale event for a closed connection is dropped.
                    let owner = self.slots.get(slot).and_then(|s| s.watcher.as_ref());
                    if owner.and_then(Watcher::token) == Some(token) {
                        self.schedule.make_runnable(&mut self.slots, slot);
                    }
                }
                Some(Source::Credential { .. }) => {
                    let done = cluster::on_token(&mut self.clusters, self.poll.registry(), token);
                    self.wake_watchers(done);
                }
                Some(Source::Metrics(_)) => self.on_metrics_ready(token),
                Some(Source::Lease(_)) => self.on_lease_ready(token),
                Some(Source::Sink(_)) => {
                    let (mut ctx, sinks) = self.sink_ctx();
                    for sink in sinks {
                        if sink.on_ready(token, &mut ctx) {
                            break;
                        }
                    }
                }
                // No source hands such a token out.
                None => log::debug!("poll event for unknown token {token:?} ignored"),
            }
        }
    }

    fn ctx(&mut self) -> (Ctx<'_>, &mut [Slot]) {
        (
            Ctx {
                registry: self.poll.registry(),
                resolver: &mut self.resolver,
                clusters: &mut self.clusters,
                sinks: &mut self.sinks,
                read_buf: &mut self.read_buf,
                record_buf: &mut self.record_buf,
                now: Instant::now(),
            },
            &mut self.slots,
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

    /// One loop turn after poll: due timers, driving the watches with
    /// work, the sinks. Watches with nothing due are not looked at.
    fn turn(&mut self) {
        let now = Instant::now();
        if cluster::on_timers(&mut self.clusters, self.poll.registry(), now) {
            self.schedule.wake_all(&mut self.slots);
        }
        let mut schedule = std::mem::take(&mut self.schedule);
        let due = schedule.take_due(&mut self.slots, now);
        {
            let (mut ctx, slots) = self.ctx();
            for i in due {
                let w = slots.get_mut(i).and_then(|s| s.watcher.as_mut());
                if w.is_some_and(|w| w.on_timers(&mut ctx)) {
                    schedule.make_runnable(slots, i);
                }
            }
            for i in schedule.take_runnable(slots) {
                let Some(w) = slots.get_mut(i).and_then(|s| s.watcher.as_mut()) else {
                    continue;
                };
                ctx.now = Instant::now();
                match w.drive(&mut ctx) {
                    Flow::Again => schedule.make_runnable(slots, i),
                    Flow::Blocked => schedule.block(slots, i),
                    Flow::Idle => {}
                }
            }
        }
        let touched = schedule.take_touched(&mut self.slots);
        self.schedule = schedule;
        // The store knows new objects before any sink acts on them: the
        // sinks that got their records hold them back until it commits
        // (a store that cannot write fills those sinks, which stops the
        // watches feeding them; said in the log and /status).
        self.checkpoints
            .hand_over_new_objects(&mut self.slots, &touched);
        self.lead();
        self.poll_sinks();
        self.metrics_timers();
        self.collect_acks();
        self.checkpoints
            .save_if_due(&mut self.slots, &mut self.schedule);
        self.checkpoints.flush();
        let sinks = &self.sinks;
        self.schedule.unblock(&mut self.slots, |s| {
            s.watcher.as_ref().is_some_and(|w| w.has_room(sinks))
        });
    }

    /// Lets the sinks act on what they hold, as far as the store has the
    /// new objects among it (the store's writer wakes the loop when it
    /// has more).
    fn poll_sinks(&mut self) {
        self.checkpoints.pass(&mut self.sinks, &mut self.retiring);
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

    /// Hands what the sinks finished to the watches.
    fn collect_acks(&mut self) {
        let mut acks = std::mem::take(&mut self.acks);
        for s in self.sinks.iter_mut().chain(&mut self.retiring) {
            s.take_acks(&mut acks);
        }
        for ack in acks.drain(..) {
            // A watch a reload stopped no longer keeps a ledger.
            if let Some(w) = self
                .slots
                .get_mut(ack.watch)
                .and_then(|s| s.watcher.as_mut())
            {
                w.ack(ack.seq);
                self.schedule.touch(&mut self.slots, ack.watch);
            }
        }
        self.acks = acks;
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        let watches = self.schedule.next_timer(&self.slots).into_iter();
        let sinks = self
            .sinks
            .iter()
            .chain(&self.retiring)
            .filter_map(Sink::deadline);
        let watchdog = self.notifier.as_ref().and_then(notify::Notifier::deadline);
        let clusters = self.clusters.iter().filter_map(ClusterRuntime::deadline);
        let metrics = self.metrics.as_ref().and_then(MetricsServer::deadline);
        let checkpoint = self.checkpoints.deadline(&self.schedule);
        let lease = self.leader.as_ref().and_then(leader::Leadership::deadline);
        watches
            .chain(lease)
            .chain(sinks)
            .chain(watchdog)
            .chain(metrics)
            .chain(checkpoint)
            .chain(clusters)
            .min()
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
            self.schedule.wake_all(&mut self.slots);
        }
    }

    fn on_resolver_answers(&mut self) {
        let answers = self.resolver.answers();
        if answers.is_empty() {
            return;
        }
        // One pass over the slots per wake-up, not one per answer (10,000
        // watches starting resolve at once).
        let mut asking: std::collections::HashMap<u64, usize> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((s.watcher.as_ref()?.resolver_query()?, i)))
            .collect();
        for answer in answers {
            if self
                .leader
                .as_ref()
                .is_some_and(|l| l.owns_query(answer.id))
            {
                self.on_lease_resolved(answer.result);
                continue;
            }
            if let Some(i) = asking.remove(&answer.id) {
                let (mut ctx, slots) = self.ctx();
                if let Some(w) = slots.get_mut(i).and_then(|s| s.watcher.as_mut()) {
                    w.on_resolved(&mut ctx, answer.result);
                }
                self.schedule.make_runnable(&mut self.slots, i);
                continue;
            }
            let (mut ctx, mut sinks) = self.sink_ctx();
            if let Some(s) = sinks.find(|s| s.owns_query(answer.id)) {
                s.on_resolved(answer.id, answer.result, &mut ctx);
            }
        }
    }

    /// Stop reading, let the sinks deliver what they hold (running hooks
    /// finish, queues drain) until done, the drain time is up, or a second
    /// signal; then stop what still runs and say what was not delivered.
    fn drain(&mut self, events: &mut Events) -> Result<(), DaemonError> {
        let registry = self.poll.registry();
        for slot in &mut self.slots {
            if let Some(w) = &mut slot.watcher {
                w.close(registry);
            }
        }
        if let Some(m) = &mut self.metrics {
            m.shutdown(registry);
        }
        self.metrics = None;
        let give_up = Instant::now() + self.shutdown_timeout;
        loop {
            // A leader keeps its Lease while it drains (and stops if it
            // cannot).
            self.lead();
            self.poll_sinks();
            self.collect_acks();
            self.checkpoints
                .save_if_due(&mut self.slots, &mut self.schedule);
            self.checkpoints.flush();
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
        self.release_lease(events);
        self.checkpoints.finish(&mut self.slots);
        let watches = self.live_watchers().map(|w| {
            let m = w.machine();
            (m.name(), m.stats(), m.spec().events.as_slice())
        });
        log::info!("{}", closing::stopped_line(watches));
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

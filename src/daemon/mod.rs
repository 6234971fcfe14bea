//! The daemon: one thread, one `mio::Poll`, every watch socket, timer and
//! signal multiplexed on it.

pub mod cluster;
pub mod credential;
pub mod notify;
pub mod watcher;

use crate::config::{Config, SinkConfig};
use crate::kube::{ResourcePath, Selectors};
use crate::net::Resolver;
use crate::rand::Rng;
use crate::sink::{ExecSink, FileSink, QueueBound, Sink, SinkCtx, WebhookSink};
use crate::watch::{WatchMachine, WatchSpec};
use cluster::ClusterRuntime;
use mio::{Events, Poll, Token, Waker};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use watcher::{Ctx, Flow, TokenAllocator, Watcher};

const SIGNAL_TOKEN: Token = Token(0);
const WAKER_TOKEN: Token = Token(1);
/// Sinks get `FIRST_SINK_TOKEN + index`; connections the tokens after.
const FIRST_SINK_TOKEN: usize = 2;
const READ_BUF: usize = 256 << 10;
/// Bytes a sink may hold besides its event bound.
const SINK_QUEUE_BYTES: usize = 64 << 20;
/// How long shutdown lets the sinks deliver what they hold (running hooks,
/// a full disk, a stuck FIFO) before giving up and saying how much is left.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(30);
const LIST_PAGE_SIZE: u32 = 500;

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
        }
    }
}

impl std::error::Error for DaemonError {}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> DaemonError {
    move |error| DaemonError::Io { what, error }
}

pub struct Daemon {
    poll: Poll,
    signals: Signals,
    resolver: Resolver,
    clusters: Vec<ClusterRuntime>,
    sinks: Vec<Sink>,
    watchers: Vec<Watcher>,
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
}

impl Daemon {
    pub fn new(config: &Config) -> Result<Daemon, DaemonError> {
        let poll = Poll::new().map_err(io_err("cannot create the poller"))?;
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGCHLD, SIGHUP, SIGUSR1])
            .map_err(io_err("cannot install signal handlers"))?;
        poll.registry()
            .register(&mut signals, SIGNAL_TOKEN, mio::Interest::READABLE)
            .map_err(io_err("cannot register signals"))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER_TOKEN).map_err(io_err("cannot create the waker"))?,
        );

        let mut clusters = Vec::new();
        let mut cluster_index = HashMap::new();
        for (name, c) in &config.clusters {
            let runtime =
                ClusterRuntime::new(c, clusters.len()).map_err(|e| DaemonError::Cluster {
                    name: name.clone(),
                    error: e.to_string(),
                })?;
            cluster_index.insert(name.clone(), clusters.len());
            clusters.push(runtime);
        }

        let bound = QueueBound {
            events: config.daemon.sink_queue_events.max(1),
            bytes: SINK_QUEUE_BYTES,
        };
        let mut sinks = Vec::new();
        let mut sink_index = HashMap::new();
        for (name, s) in &config.sinks {
            let token = Token(FIRST_SINK_TOKEN + sinks.len());
            let rng = Rng::from_entropy(0x51_4b + sinks.len() as u64);
            let queue_events = config.daemon.sink_queue_events.max(1);
            let sink = match s {
                SinkConfig::File(f) => {
                    let mut file = FileSink::new(name, &f.path, bound, token);
                    file.open().map_err(|e| DaemonError::Sink {
                        name: name.clone(),
                        error: format!("cannot open {}: {e}", f.path.display()),
                    })?;
                    Sink::File(file)
                }
                SinkConfig::Stdout => Sink::File(FileSink::stdout(name, bound, token)),
                SinkConfig::Exec(e) => {
                    Sink::Exec(Box::new(ExecSink::new(name, e, queue_events, rng)))
                }
                SinkConfig::Webhook(w) => {
                    let webhook = WebhookSink::new(name, w, queue_events, rng).map_err(|e| {
                        DaemonError::Sink {
                            name: name.clone(),
                            error: e.to_string(),
                        }
                    })?;
                    Sink::Webhook(Box::new(webhook))
                }
            };
            sink_index.insert(name.clone(), sinks.len());
            sinks.push(sink);
        }

        let mut watchers = Vec::new();
        if config.watches.len() > watcher::MAX_WATCHES {
            return Err(DaemonError::TooManyWatches {
                count: config.watches.len(),
            });
        }
        for (i, w) in config.watches.iter().enumerate() {
            let Some(&cluster) = cluster_index.get(&w.cluster) else {
                return Err(DaemonError::Cluster {
                    name: w.cluster.clone(),
                    error: format!("not defined (watch {})", w.name),
                });
            };
            let server = &config.clusters[&w.cluster].server;
            let spec = WatchSpec {
                name: w.name.clone(),
                api_version: w.api_version.clone(),
                resource: w.resource.clone(),
                path: ResourcePath::new(
                    &server.base_path,
                    &w.api_version,
                    w.namespace.as_deref(),
                    &w.resource,
                ),
                selectors: Selectors {
                    label: w.label_selector.clone(),
                    field: w.field_selector.clone(),
                },
                events: w.events.clone(),
                on_start: w.on_start,
                page_size: LIST_PAGE_SIZE,
                watch_timeout: w.watch_timeout,
            };
            let sink_ids: Vec<usize> = w
                .sinks
                .iter()
                .filter_map(|s| sink_index.get(s).copied())
                .collect();
            let wants_meta = sink_ids
                .iter()
                .any(|&i| sinks.get(i).is_some_and(Sink::wants_meta));
            let machine = WatchMachine::new(spec, Rng::from_entropy(i as u64));
            watchers.push(Watcher::new(
                watchers.len(),
                machine,
                cluster,
                &w.cluster,
                sink_ids,
                wants_meta,
                config.daemon.max_line_bytes,
            ));
        }
        let n = watchers.len();
        let sink_count = sinks.len();
        Ok(Daemon {
            poll,
            signals,
            resolver: Resolver::new(waker),
            clusters,
            sinks,
            watchers,
            tokens: TokenAllocator::starting_at(FIRST_SINK_TOKEN + sink_count),
            runnable: vec![true; n],
            blocked: vec![false; n],
            read_buf: vec![0; READ_BUF],
            record_buf: Vec::with_capacity(64 << 10),
            phase: Phase::Running,
            notifier: notify::Notifier::from_env(Instant::now()),
            ready: false,
        })
    }

    /// Runs until SIGINT or SIGTERM, then drains the sinks.
    pub fn run(mut self) -> Result<(), DaemonError> {
        log::info!(
            "kwatchd {} running: {} watches, {} sinks",
            env!("CARGO_PKG_VERSION"),
            self.watchers.len(),
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
                        if self.watchers.get(i).and_then(Watcher::token) == Some(t) {
                            self.runnable[i] = true;
                        }
                    }
                    None => {
                        let (mut ctx, sinks) = self.sink_ctx();
                        for sink in sinks.iter_mut() {
                            if sink.on_ready(t, &mut ctx) {
                                break;
                            }
                        }
                    }
                },
            }
        }
    }

    fn ctx(&mut self) -> (Ctx<'_>, &mut Vec<Watcher>) {
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

    fn sink_ctx(&mut self) -> (SinkCtx<'_>, &mut Vec<Sink>) {
        (
            SinkCtx {
                registry: self.poll.registry(),
                tokens: &mut self.tokens,
                resolver: &mut self.resolver,
                now: Instant::now(),
            },
            &mut self.sinks,
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
            for (i, w) in watchers.iter_mut().enumerate() {
                if w.on_timers(&mut ctx) {
                    runnable[i] = true;
                }
            }
            for (i, w) in watchers.iter_mut().enumerate() {
                if !runnable[i] {
                    continue;
                }
                ctx.now = Instant::now();
                let flow = w.drive(&mut ctx);
                runnable[i] = flow == Flow::Again;
                blocked[i] = flow == Flow::Blocked;
            }
        }
        self.poll_sinks();
        for (i, w) in self.watchers.iter().enumerate() {
            if blocked[i] && w.has_room(&self.sinks) {
                blocked[i] = false;
                runnable[i] = true;
            }
        }
        self.runnable = runnable;
        self.blocked = blocked;
    }

    fn poll_sinks(&mut self) {
        let (mut ctx, sinks) = self.sink_ctx();
        for s in sinks.iter_mut() {
            s.poll(&mut ctx);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let watches = self.watchers.iter().filter_map(Watcher::deadline);
        let sinks = self.sinks.iter().filter_map(Sink::deadline);
        let watchdog = self.notifier.as_ref().and_then(notify::Notifier::deadline);
        let clusters = self.clusters.iter().filter_map(ClusterRuntime::deadline);
        watches.chain(sinks).chain(watchdog).chain(clusters).min()
    }

    /// "3 watches, 2 streaming, 1 backing off; 5321 events".
    fn status_line(&self) -> String {
        let count = |state: &str| {
            self.watchers
                .iter()
                .filter(|w| w.machine.state_name() == state)
                .count()
        };
        let events: u64 = self.watchers.iter().map(|w| w.machine.stats().events).sum();
        format!(
            "{} watches, {} streaming, {} backing off; {events} events",
            self.watchers.len(),
            count("streaming"),
            count("backing off")
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
        if !self.ready
            && self
                .watchers
                .iter()
                .all(|w| w.machine.has_listed() || w.machine.state_name() == "backing off")
        {
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
                    for s in sinks.iter_mut() {
                        s.on_sigchld(&mut ctx);
                    }
                    let done = cluster::on_sigchld(&mut self.clusters, self.poll.registry());
                    self.wake_watchers(done);
                }
                SIGUSR1 => {
                    // logrotate's postrotate convention: the next write
                    // creates the file anew.
                    log::info!("received SIGUSR1; reopening file sinks");
                    for s in &mut self.sinks {
                        s.reopen();
                    }
                }
                SIGHUP => log::warn!(
                    "received SIGHUP; configuration reload is not implemented yet, the running configuration stays (restart to apply changes)"
                ),
                SIGINT | SIGTERM => {
                    let name = if signal == SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    match self.phase {
                        Phase::Running => {
                            log::info!("received {name}; stopping: no more reading, delivering what is queued (up to {}s; send it again to stop at once)", SHUTDOWN_DRAIN.as_secs());
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
                .find(|w| w.resolver_query() == Some(answer.id))
            {
                w.on_resolved(&mut ctx, answer.result);
                continue;
            }
            let (mut ctx, sinks) = self.sink_ctx();
            if let Some(s) = sinks.iter_mut().find(|s| s.owns_query(answer.id)) {
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
        for w in &mut self.watchers {
            w.close(registry);
        }
        self.runnable.iter_mut().for_each(|r| *r = false);
        let give_up = Instant::now() + SHUTDOWN_DRAIN;
        loop {
            self.poll_sinks();
            let pending: usize = self.sinks.iter().map(Sink::pending).sum();
            if pending == 0 {
                break;
            }
            if self.phase == Phase::Aborting || Instant::now() >= give_up {
                let (mut ctx, sinks) = self.sink_ctx();
                for s in sinks.iter_mut() {
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
        for s in &self.sinks {
            log::info!("sink {}: {}", s.name(), s.summary());
        }
        let events: u64 = self.watchers.iter().map(|w| w.machine.stats().events).sum();
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

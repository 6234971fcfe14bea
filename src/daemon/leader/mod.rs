//! Leader election on the loop: the Lease elector (`crate::lease`, sans-I/O)
//! driven by the daemon's clock and its own connection, and what it decides
//! applied to the sinks.
//!
//! Every replica runs its watches; only the leader's sinks deliver. A
//! standby's records wait in each sink's hold (`sink::hold`). The leader
//! writes, with every renew, the resourceVersion each watch is handled up
//! to (its committed position, keyed by the watch's store key, the same on
//! every replica) into the Lease's `kwatchd.io/committed` annotation; a
//! standby drops (and acknowledges as handled) the held records at or
//! before that point, so its own saved position follows the leader's, and
//! when it takes over it delivers exactly what the old leader had not
//! confirmed. Records whose resourceVersion is not an integer are never
//! dropped that way: a takeover may deliver them again.
//!
//! Fencing: the elector's `may_deliver` turns false `renew_deadline` after
//! the last successful write was *sent*; the loop has a timer at that
//! instant and checks it before it lets any sink act, and then every record
//! a sink has not started goes back into the hold. Two replicas never
//! deliver at once while their clocks' rates agree within
//! `lease_duration - renew_deadline` (no synchronised wall clocks needed).

mod advert;
mod client;

use super::Daemon;
use crate::config::LeaderElectionConfig;
use crate::lease::{default_identity, Elector, Event, Now, Params, Role};
use crate::metrics::LeaderView;
use crate::rand::Rng;
use crate::sink::Sink;
use advert::{advert, handled, limits, positions};
use client::LeaseClient;
use mio::Token;
use serde_json::{Map, Value};
use std::time::{Duration, Instant, SystemTime};

/// How long a shutting-down leader waits for the answer to its release.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// This replica's side of the election, on the loop.
pub struct Leadership {
    elector: Elector,
    client: LeaseClient,
    /// The `[clusters.NAME]` holding the Lease (found by name: a reload
    /// may move clusters).
    cluster: String,
    /// The sinks deliver (the holds are open).
    delivering: bool,
    /// When `delivering` last changed (or the process started).
    since: SystemTime,
    /// Times this replica started or stopped delivering.
    transitions: u64,
    /// An answer came since the elector was last polled.
    answered: bool,
    /// The leader's advert applied last, and each slot's limit from it.
    advert: Option<String>,
    limits: Vec<Option<u64>>,
    /// Answers to Lease requests so far.
    replies: u64,
    /// The log said the Lease cannot carry every watch's position.
    advert_warned: bool,
    /// `standby_buffer`, for the sinks a reload builds.
    standby_buffer: usize,
    /// What the leader had confirmed when this replica started, by watch
    /// store key: fresh watches list there (`start_position`).
    start: Map<String, Value>,
}

impl Leadership {
    pub fn new(config: &LeaderElectionConfig, now: Instant) -> Leadership {
        let mut rng = Rng::from_entropy(0x1ea5e);
        let identity = config
            .identity
            .clone()
            .unwrap_or_else(|| default_identity(&mut rng));
        log::info!(
            "leader election: identity {identity}, Lease {}/{} on cluster {}; delivering nothing until this replica leads",
            config.namespace,
            config.name,
            config.cluster
        );
        let params = Params {
            namespace: config.namespace.clone(),
            name: config.name.clone(),
            identity,
            lease_duration: config.lease_duration,
            renew_deadline: config.renew_deadline,
            retry_period: config.retry_period,
        };
        Leadership {
            elector: Elector::new(params, now, rng),
            client: LeaseClient::default(),
            cluster: config.cluster.clone(),
            delivering: false,
            since: SystemTime::now(),
            transitions: 0,
            answered: false,
            advert: None,
            limits: Vec::new(),
            replies: 0,
            advert_warned: false,
            standby_buffer: config.standby_buffer,
            start: Map::new(),
        }
    }

    pub fn standby_buffer(&self) -> usize {
        self.standby_buffer
    }

    /// Where the leader had confirmed watch `name` when this replica
    /// started, if it had: its fresh first list reads that state exactly.
    pub fn start_position(&self, name: &str) -> Option<String> {
        let rv = self.start.get(name)?.as_str()?;
        crate::state::integer_rv(rv).map(|_| rv.to_owned())
    }

    fn on_reply(&mut self, id: u64, reply: crate::lease::Reply) {
        self.elector.on_reply(Now::read(), id, reply);
        self.answered = true;
        self.replies += 1;
    }

    pub fn view(&self) -> LeaderView {
        LeaderView {
            identity: self.elector.params().identity.clone(),
            role: self.elector.role(),
            holder: self.elector.holder().map(str::to_owned),
            delivering: self.delivering,
            since: self.since,
            transitions: self.transitions,
        }
    }

    /// For systemd's STATUS=: "; leader a" or "; standby b (leader a)".
    pub fn status_phrase(&self) -> String {
        let id = &self.elector.params().identity;
        match (self.delivering, self.elector.holder()) {
            (true, _) => format!("; leader {id}"),
            (false, Some(h)) if !h.is_empty() && h != id => format!("; standby {id} (leader {h})"),
            (false, _) => format!("; standby {id} (no leader)"),
        }
    }

    /// The next instant the elector must look at the time: a retry, a
    /// request's timeout, or the fence.
    pub fn deadline(&self) -> Option<Instant> {
        self.elector.poll_timeout().map(|(at, _)| at)
    }

    /// Whether resolver answer `id` is for the Lease's connection.
    pub fn owns_query(&self, id: u64) -> bool {
        self.client.owns_query(id)
    }

    fn log_events(&mut self) {
        for event in self.elector.take_events() {
            match event {
                Event::Role { from, to, why } => log::info!(
                    "leader election: {} {} -> {}: {why}",
                    self.elector.params().identity,
                    from.as_str(),
                    to.as_str()
                ),
                Event::Failed { verb, why } => {
                    log::warn!("leader election: Lease {}: {why}", verb.as_str())
                }
            }
        }
    }
}

/// `sink` with a standby hold when leader election runs (`standby_buffer`
/// is the running election's: a reload does not change it), closed: a
/// replica delivers nothing before it leads.
pub(super) fn held(sink: Sink, standby_buffer: Option<usize>, queue_events: usize) -> Sink {
    match standby_buffer {
        Some(bytes) => sink.with_hold(queue_events, bytes),
        None => sink,
    }
}

impl Daemon {
    /// Drives the election one step and applies it: sends what is due,
    /// drops what the leader handled, opens or closes the sinks. Runs
    /// every turn before the sinks act.
    pub(super) fn lead(&mut self) {
        let Some(l) = &mut self.leader else {
            return;
        };
        let now = Instant::now();
        let due = l.answered || l.deadline().is_some_and(|at| at <= now);
        if due {
            l.answered = false;
            l.elector
                .set_advert(advert(&self.slots, &mut l.advert_warned));
            self.send_lease_requests();
        }
        self.apply_advert();
        self.gate_sinks();
    }

    /// Polls the elector and sends its requests (one at a time; an answer
    /// known at once is fed back and the elector polled again).
    fn send_lease_requests(&mut self) {
        let Some(l) = &mut self.leader else {
            return;
        };
        let registry = self.poll.registry();
        loop {
            // What the last answer named is applied before a follow-up
            // request can change it (a released Lease's advert, read by
            // the GET before this replica's UPDATE takes it over).
            if let Some(text) = l.elector.leader_advert() {
                if l.advert.as_deref() != Some(text) {
                    l.advert = Some(text.to_owned());
                    l.limits = limits(text, &self.slots);
                    prune(&mut self.sinks, &mut self.retiring, &l.limits, true);
                }
            }
            let now = Now::read();
            let Some(req) = l.elector.poll(now) else {
                break;
            };
            let Some(cluster) = self.clusters.iter_mut().find(|c| c.name == l.cluster) else {
                log::error!(
                    "leader election: cluster {} is not configured; no Lease request sent",
                    l.cluster
                );
                break;
            };
            let answer = l
                .client
                .start(req, cluster, &mut self.resolver, registry, now.mono);
            match answer {
                Some((id, reply)) => l.on_reply(id, reply),
                None => break,
            }
        }
        l.log_events();
    }

    /// Drops the held records the leader's last advert covers.
    fn apply_advert(&mut self) {
        let Some(l) = &mut self.leader else {
            return;
        };
        let Some(text) = l.advert.as_deref().filter(|_| !l.delivering) else {
            return;
        };
        // A reload started watches in new slots: their limits too.
        let all = l.limits.len() != self.slots.len();
        if all {
            l.limits = limits(text, &self.slots);
        }
        prune(&mut self.sinks, &mut self.retiring, &l.limits, all);
    }

    /// Opens the sinks when this replica may deliver, closes them (taking
    /// back what they had not started) the moment it may not.
    pub(super) fn gate_sinks(&mut self) {
        let Some(l) = &mut self.leader else {
            return;
        };
        let now = Instant::now();
        let deliver = l.elector.may_deliver(now);
        for s in self.sinks.iter_mut().chain(&mut self.retiring) {
            s.set_delivering(now, deliver);
        }
        if deliver == l.delivering {
            return;
        }
        if deliver {
            // What the holds handed the sinks passes the store's gate anew.
            self.checkpoints.regate();
        }
        l.delivering = deliver;
        l.since = SystemTime::now();
        l.transitions += 1;
        if let Some(n) = &self.notifier {
            n.send(&format!("STATUS={}", self.status_line()));
        }
        let Some(l) = &self.leader else {
            return;
        };
        let id = &l.elector.params().identity;
        if deliver {
            let pruned: u64 = self
                .sinks
                .iter()
                .filter_map(|s| s.hold().map(|h| h.pruned()))
                .sum();
            log::info!(
                "leader election: {id} leads; delivering what the previous leader had not confirmed ({pruned} records it had were dropped as handled by a leader so far), then live"
            );
        } else {
            let back: usize = self
                .sinks
                .iter()
                .filter_map(|s| s.hold().map(|h| h.len()))
                .sum();
            log::warn!(
                "leader election: {id} stops delivering ({}); {back} records not started wait in the standby buffer",
                match l.elector.role() {
                    Role::Leader => "no successful renew within renew_deadline".to_string(),
                    role => format!("now {}", role.as_str()),
                }
            );
        }
    }

    /// A poll event for a Lease connection.
    pub(super) fn on_lease_ready(&mut self, token: Token) {
        let Some(l) = &mut self.leader else {
            return;
        };
        let Some(cluster) = self.clusters.iter_mut().find(|c| c.name == l.cluster) else {
            return;
        };
        if let Some((id, reply)) = l.client.on_ready(token, cluster, self.poll.registry()) {
            l.on_reply(id, reply);
        }
    }

    /// The resolver answered the Lease connection's query.
    pub(super) fn on_lease_resolved(&mut self, result: std::io::Result<Vec<std::net::SocketAddr>>) {
        let Some(l) = &mut self.leader else {
            return;
        };
        let Some(cluster) = self.clusters.iter_mut().find(|c| c.name == l.cluster) else {
            return;
        };
        if let Some((id, reply)) = l.client.on_resolved(result, cluster, self.poll.registry()) {
            l.on_reply(id, reply);
        }
    }

    /// Before the watches start: reads the Lease once (waiting at most two
    /// `retry_period`s, on the loop's poll, signals included) to learn
    /// what the leader had confirmed, so that a standby starting while a
    /// leader runs lists the state the leader confirmed rather than only
    /// the current one (see `WatchMachine::list_first_at`).
    pub(super) fn learn_leader_position(&mut self) -> Result<(), std::io::Error> {
        let Some(l) = &self.leader else {
            return Ok(());
        };
        let until = Instant::now() + l.elector.params().retry_period * 2;
        let mut events = mio::Events::with_capacity(64);
        loop {
            self.lead();
            let Some(l) = &self.leader else {
                return Ok(());
            };
            let now = Instant::now();
            if l.replies > 0 || now >= until || self.phase != super::Phase::Running {
                break;
            }
            let wait = l.deadline().unwrap_or(until).min(until);
            match self
                .poll
                .poll(&mut events, Some(wait.saturating_duration_since(now)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.dispatch(&events);
        }
        let Some(l) = &mut self.leader else {
            return Ok(());
        };
        let holder = l.elector.holder().unwrap_or("").to_owned();
        match l.elector.leader_advert() {
            Some(text) => {
                l.start = positions(text);
                log::info!(
                    "leader election: the Lease (held by {}) confirms positions of {} watches; a watch without saved state lists there first",
                    if holder.is_empty() { "nobody" } else { &holder },
                    l.start.len()
                );
            }
            None => log::info!(
                "leader election: no position confirmed by another replica{}; watches without saved state list the current state",
                if l.replies == 0 { " (no answer from the Lease in time)" } else { "" }
            ),
        }
        Ok(())
    }

    /// At shutdown, after the drain: a leader frees the Lease (client-go's
    /// `ReleaseOnCancel`) with its final advert, so a standby takes over at
    /// its next try and delivers exactly what this one did not. Waits for
    /// the answer at most `RELEASE_WAIT`.
    pub(super) fn release_lease(&mut self, events: &mut mio::Events) {
        let Some(l) = &mut self.leader else {
            return;
        };
        l.elector
            .set_advert(advert(&self.slots, &mut l.advert_warned));
        let now = Now::read();
        let Some(req) = l.elector.release(now) else {
            l.client.abort(self.poll.registry());
            l.log_events();
            return;
        };
        l.log_events();
        for s in self.sinks.iter_mut().chain(&mut self.retiring) {
            s.set_delivering(now.mono, false);
        }
        let Some(cluster) = self.clusters.iter_mut().find(|c| c.name == l.cluster) else {
            return;
        };
        let registry = self.poll.registry();
        let mut answer = l
            .client
            .start(req, cluster, &mut self.resolver, registry, now.mono);
        let give_up = now.mono + RELEASE_WAIT;
        while answer.is_none() && Instant::now() < give_up {
            let left = give_up.saturating_duration_since(Instant::now());
            if self.poll.poll(events, Some(left)).is_err() {
                break;
            }
            let Some(l) = &mut self.leader else {
                return;
            };
            for event in events.iter() {
                let token = event.token();
                if matches!(
                    crate::tokens::Source::of(token),
                    Some(crate::tokens::Source::Lease(_))
                ) {
                    if let Some(cluster) = self.clusters.iter_mut().find(|c| c.name == l.cluster) {
                        answer = answer.or(l.client.on_ready(token, cluster, self.poll.registry()));
                    }
                }
            }
            for a in self.resolver.answers() {
                if l.client.owns_query(a.id) {
                    if let Some(cluster) = self.clusters.iter_mut().find(|c| c.name == l.cluster) {
                        answer = answer.or(l.client.on_resolved(
                            a.result,
                            cluster,
                            self.poll.registry(),
                        ));
                    }
                }
            }
        }
        let Some(l) = &mut self.leader else {
            return;
        };
        match answer {
            Some((id, reply)) => {
                l.elector.on_reply(Now::read(), id, reply);
                log::info!("leader election: released the Lease");
            }
            None => log::warn!(
                "leader election: no answer to the Lease release within {}; a standby takes over once the Lease expires",
                humantime::format_duration(RELEASE_WAIT)
            ),
        }
        l.log_events();
    }
}

/// Drops held records the leader handled from every sink's hold.
fn prune(sinks: &mut [Sink], retiring: &mut [Sink], limits: &[Option<u64>], all: bool) {
    for s in sinks.iter_mut().chain(retiring.iter_mut()) {
        s.prune(|ack| handled(limits, ack), all);
    }
}

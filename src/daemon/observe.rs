//! What the outside sees of the daemon: the metrics endpoint's snapshot of
//! the watches and sinks (built when a request arrives), and the status
//! line and readiness systemd is told.

use super::cluster::ClusterRuntime;
use super::leader::Leadership;
use super::watcher::Watcher;
use super::{Daemon, Slot};
use crate::metrics::{self, SinkView, Snapshot};
use crate::sink::Sink;
use crate::watch::WatchState;
use mio::Token;
use std::time::{Instant, SystemTime};

fn snapshot<'a>(
    slots: &'a [Slot],
    sinks: &'a [Sink],
    clusters: &'a [ClusterRuntime],
    state_store_error: Option<&'a str>,
    leader: Option<&Leadership>,
) -> Snapshot<'a> {
    Snapshot {
        state_store_error,
        leader: leader.map(Leadership::view),
        watches: slots
            .iter()
            .filter_map(|s| s.watcher.as_ref())
            .map(|w| w.view(clusters))
            .collect(),
        // Sinks retiring after a reload are left out: their names are taken
        // by their successors, and series must be unique.
        sinks: sinks
            .iter()
            .map(|s| SinkView {
                name: s.name(),
                stats: s.stats(),
            })
            .collect(),
        now: Instant::now(),
        wall: SystemTime::now(),
    }
}

impl Daemon {
    /// Readiness of the metrics listener or one of its connections.
    pub(super) fn on_metrics_ready(&mut self, token: Token) {
        let Some(server) = &mut self.metrics else {
            return;
        };
        let (slots, sinks, clusters) = (&self.slots, &self.sinks, &self.clusters);
        let store = self.checkpoints.failing();
        let leader = self.leader.as_ref();
        let mut handler = |e| metrics::answer(e, &snapshot(slots, sinks, clusters, store, leader));
        server.on_ready(token, self.poll.registry(), Instant::now(), &mut handler);
    }

    /// Idle connections, and pipelined requests left over from a turn.
    pub(super) fn metrics_timers(&mut self) {
        let Some(server) = &mut self.metrics else {
            return;
        };
        let now = Instant::now();
        if server.deadline().is_none_or(|d| d > now) {
            return;
        }
        let (slots, sinks, clusters) = (&self.slots, &self.sinks, &self.clusters);
        let store = self.checkpoints.failing();
        let leader = self.leader.as_ref();
        let mut handler = |e| metrics::answer(e, &snapshot(slots, sinks, clusters, store, leader));
        server.on_timer(self.poll.registry(), now, &mut handler);
    }

    /// "3 watches, 2 streaming, 1 backing off (pods-prod); 5321 events":
    /// the watches backing off are named (the first few), since READY=1 may
    /// come while they still retry.
    pub(super) fn status_line(&self) -> String {
        const NAMED: usize = 3;
        let streaming = self
            .live_watchers()
            .filter(|w| w.machine().state() == WatchState::Streaming)
            .count();
        let backing_off: Vec<&str> = self
            .live_watchers()
            .filter(|w| w.machine().state() == WatchState::BackingOff)
            .map(|w| w.machine().name())
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
            .filter(|w| w.machine().has_failed())
            .count();
        let failed = if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        };
        let events: u64 = self
            .live_watchers()
            .map(|w| w.machine().stats().events)
            .sum();
        let store = match self.checkpoints.failing() {
            Some(why) => format!("; state store cannot commit ({why}), sinks held back"),
            None => String::new(),
        };
        let leader = self
            .leader
            .as_ref()
            .map(Leadership::status_phrase)
            .unwrap_or_default();
        format!(
            "{} watches, {streaming} streaming, {} backing off{names}{failed}; {events} events{store}{leader}",
            self.live_watchers().count(),
            backing_off.len(),
        )
    }

    /// READY=1 once every watch has listed (or is backing off after a
    /// failure, said in STATUS), then the watchdog from this loop.
    pub(super) fn notify_systemd(&mut self) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let now = Instant::now();
        let watchdog_due = notifier.deadline().is_some_and(|d| d <= now);
        if self.ready && !watchdog_due {
            return;
        }
        let status = self.status_line();
        if !self.ready && self.live_watchers().all(Watcher::is_ready) {
            notifier.send(&format!("READY=1\nSTATUS={status}"));
            self.ready = true;
        }
        if let Some(n) = &mut self.notifier {
            n.on_timer(now, &status);
        }
    }
}

//! What the metrics endpoint sees of the daemon: a snapshot of the watches
//! and sinks, built when a request arrives.

use super::cluster::ClusterRuntime;
use super::watcher::Watcher;
use super::Daemon;
use crate::metrics::{self, SinkView, Snapshot, WatchView};
use crate::sink::Sink;
use crate::watch::WatchMachine;
use mio::Token;
use std::time::{Instant, SystemTime};

/// Listed once, or retrying after a failure: READY=1 and `/readyz` wait
/// for every watch to be so.
pub(super) fn is_ready(w: &WatchMachine) -> bool {
    w.has_listed() || w.has_failed() || w.state_name() == "backing off"
}

fn snapshot<'a>(
    watchers: &'a [Option<Watcher>],
    sinks: &'a [Sink],
    clusters: &'a [ClusterRuntime],
) -> Snapshot<'a> {
    Snapshot {
        watches: watchers
            .iter()
            .flatten()
            .map(|w| WatchView {
                name: w.machine.name(),
                cluster: clusters
                    .get(w.cluster_index())
                    .map_or("", |c| c.name.as_str()),
                state: w.machine.state_name(),
                objects: w.machine.known_objects(),
                stats: w.machine.stats(),
                last_error: w.machine.last_error(),
                ready: is_ready(&w.machine),
            })
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
        let (watchers, sinks, clusters) = (&self.watchers, &self.sinks, &self.clusters);
        let mut handler = |e| metrics::answer(e, &snapshot(watchers, sinks, clusters));
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
        let (watchers, sinks, clusters) = (&self.watchers, &self.sinks, &self.clusters);
        let mut handler = |e| metrics::answer(e, &snapshot(watchers, sinks, clusters));
        server.on_timer(self.poll.registry(), now, &mut handler);
    }
}

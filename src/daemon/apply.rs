//! SIGHUP: re-read the configuration and apply the difference, keeping what
//! did not change running (connections, queues, running hooks).

use super::reload::{Change, ReloadPlan};
use super::{build_cluster, build_sink, notify, Daemon, DaemonError};
use crate::config::Config;
use crate::daemon::cluster::ClusterRuntime;
use crate::sink::Sink;
use crate::tokens::MAX_WATCHES;

/// The parts of a reload that can fail, built before anything running is
/// touched: a file that cannot be opened or a CA that cannot be read rejects
/// the whole reload and the running configuration stays.
struct Prepared {
    plan: ReloadPlan,
    /// In `new.clusters` order: a cluster built anew, or the position of
    /// the running one to keep.
    clusters: Vec<Part<ClusterRuntime>>,
    /// In `new.sinks` order.
    sinks: Vec<Part<Sink>>,
}

enum Part<T> {
    Kept(usize),
    Built(T),
}

impl Daemon {
    pub(super) fn reload(&mut self) {
        if !self.reloadable {
            log::warn!(
                "received SIGHUP; this configuration is built in (demo), there is no file to reload"
            );
            return;
        }
        let source = self.config.source.clone();
        log::info!("received SIGHUP; reloading {}", source.display());
        if self.ready {
            if let Some(n) = &self.notifier {
                n.send(&format!(
                    "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading {}",
                    notify::monotonic_usec(),
                    source.display()
                ));
            }
        }
        let outcome = match Config::load(&source) {
            Err(errors) => {
                for e in &errors.0 {
                    log::error!("{e}");
                }
                Err(format!(
                    "{} problem(s) in {}",
                    errors.0.len(),
                    source.display()
                ))
            }
            Ok(new) => self.apply(new).map_err(|e| e.to_string()),
        };
        let status = match outcome {
            Ok(summary) => {
                log::info!("reload applied: {summary}");
                format!("reloaded; {}", self.status_line())
            }
            Err(why) => {
                log::error!("reload rejected, the running configuration stays: {why}");
                format!("reload rejected ({why}); {}", self.status_line())
            }
        };
        if self.ready {
            if let Some(n) = &self.notifier {
                n.send(&format!("READY=1\nSTATUS={status}"));
            }
        }
    }

    /// Applies `new`; on error nothing changed.
    fn apply(&mut self, new: Config) -> Result<String, DaemonError> {
        let prepared = self.prepare(&new)?;
        let plan = prepared.plan;
        if new.daemon.log_level != self.config.daemon.log_level
            && std::env::var_os("KWATCHD_LOG_LEVEL").is_none()
        {
            log::set_max_level(new.daemon.log_level);
        }
        self.shutdown_timeout = new.daemon.shutdown_timeout;
        if let Some(server) = &mut self.metrics {
            server.require_token(new.daemon.metrics_token_file.clone());
        }
        for key in &plan.restart_needed {
            let when = match *key {
                "metrics_listen" | "log_format" | "sync" | "sync_interval" | "leader_election" => {
                    "it applies after a restart"
                }
                _ => "it applies to the watches and sinks started from now on; restart kwatchd to apply it to all",
            };
            log::warn!("[daemon] {key} changed: {when}");
        }

        // Clusters and sinks: keep, or swap in what was built.
        let mut old_clusters: Vec<Option<ClusterRuntime>> = std::mem::take(&mut self.clusters)
            .into_iter()
            .map(Some)
            .collect();
        for part in prepared.clusters {
            let runtime = match part {
                Part::Built(c) => Some(c),
                Part::Kept(i) => old_clusters.get_mut(i).and_then(Option::take),
            };
            self.clusters.extend(runtime);
        }
        let old_names: Vec<String> = self.config.sinks.keys().cloned().collect();
        let mut old_sinks: Vec<Option<Sink>> = std::mem::take(&mut self.sinks)
            .into_iter()
            .map(Some)
            .collect();
        for part in prepared.sinks {
            match part {
                Part::Built(s) => self.sinks.push(s),
                Part::Kept(i) => {
                    if let Some(mut s) = old_sinks.get_mut(i).and_then(Option::take) {
                        // The logrotate convention holds for reloads too.
                        s.reopen();
                        self.sinks.push(s);
                    }
                }
            }
        }
        for (name, sink) in old_names.iter().zip(old_sinks) {
            let Some(sink) = sink else { continue };
            if sink.pending() > 0 {
                log::info!(
                    "sink {name}: {} events queued before the reload are delivered by its old definition, then it closes",
                    sink.pending()
                );
                self.retiring.push(sink);
            } else {
                log::info!(
                    "sink {name} (before the reload): {}; closed",
                    sink.summary()
                );
            }
        }

        // Watches: stop what changed or went away, re-route what stays,
        // start what is new.
        let registry = self.poll.registry();
        for slot in &mut self.slots {
            if slot.watcher.is_none() || plan.watch(&slot.name) == Some(Change::Keep) {
                continue;
            }
            if let Some(w) = slot.watcher.take() {
                // What its sinks handled so far: a watch coming back with the
                // same definition resumes from there (its records still
                // queued are acknowledged into nothing).
                w.retire(registry, self.checkpoints.store_mut());
            }
        }
        self.config = new;
        let watches = self.config.watches.clone();
        for i in 0..self.slots.len() {
            let Some(w) = watches.iter().find(|w| w.name == self.slots[i].name) else {
                continue;
            };
            let Some(cluster) = self.config.clusters.keys().position(|c| *c == w.cluster) else {
                continue;
            };
            let route = self.route(w, cluster);
            if let Some(watcher) = &mut self.slots[i].watcher {
                watcher.reroute(route);
                // It may have been waiting for room in a sink it no longer feeds.
                self.schedule.make_runnable(&mut self.slots, i);
            }
        }
        for w in &watches {
            if matches!(plan.watch(&w.name), Some(Change::Add | Change::Replace)) {
                self.start_watch(w)?;
            }
        }
        Ok(plan.to_string())
    }

    /// Builds the new clusters and sinks; the running ones are untouched.
    fn prepare(&mut self, new: &Config) -> Result<Prepared, DaemonError> {
        let plan = ReloadPlan::new(&self.config, new);
        let starts = plan
            .watches
            .iter()
            .filter(|(_, c)| matches!(c, Change::Add | Change::Replace))
            .count();
        if self.slots.len() + starts > MAX_WATCHES {
            return Err(DaemonError::TooManyWatches {
                count: self.slots.len() + starts,
            });
        }
        let mut clusters = Vec::new();
        for (name, c) in &new.clusters {
            let kept = (plan.cluster(name) == Some(Change::Keep))
                .then(|| self.config.clusters.keys().position(|k| k == name))
                .flatten()
                .filter(|&i| i < self.clusters.len());
            clusters.push(match kept {
                Some(i) => Part::Kept(i),
                None => {
                    self.clusters_built += 1;
                    Part::Built(build_cluster(name, c, self.clusters_built - 1)?)
                }
            });
        }
        let mut sinks = Vec::new();
        for (name, s) in &new.sinks {
            let kept = (plan.sink(name) == Some(Change::Keep))
                .then(|| self.config.sinks.keys().position(|k| k == name))
                .flatten()
                .filter(|&i| i < self.sinks.len());
            sinks.push(match kept {
                Some(i) => Part::Kept(i),
                None => {
                    let sink = build_sink(new, name, s, (&mut self.tokens, &self.waker))?;
                    let standby = self.leader.as_ref().map(|l| l.standby_buffer());
                    Part::Built(super::leader::held(
                        sink,
                        standby,
                        new.daemon.sink_queue_events,
                    ))
                }
            });
        }
        Ok(Prepared {
            plan,
            clusters,
            sinks,
        })
    }
}

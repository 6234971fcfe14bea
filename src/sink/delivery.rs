//! What the exec and webhook sinks share around their runners: the
//! scheduler, the give-up policy, and the counts and latency they report.

use super::dispatch::{DispatchPolicy, Dispatcher, Job, JobOutcome};
use super::failure::FailurePolicy;
use super::latency::LatencySample;
use super::{EventMeta, QueuedRecord};
use crate::config::DeliveryConfig;
use crate::rand::Rng;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Delivery {
    sink: String,
    dispatcher: Dispatcher,
    failure: FailurePolicy,
    latency: LatencySample,
    delivered: u64,
    given_up: u64,
    /// Records in attempts that failed (each retry counts again).
    failed: u64,
}

/// Records by delivery result, for status and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub delivered: u64,
    /// Records in failed attempts; retried ones count once per attempt.
    pub failed: u64,
    /// Records handed to `on_failure` (logged or dead-lettered).
    pub given_up: u64,
}

impl Delivery {
    pub fn new(sink: &str, config: &DeliveryConfig, daemon_queue_events: usize, rng: Rng) -> Self {
        Delivery {
            sink: sink.to_owned(),
            dispatcher: Dispatcher::new(
                DispatchPolicy::from_config(config, daemon_queue_events),
                rng,
            ),
            failure: FailurePolicy::new(&config.on_failure),
            latency: LatencySample::default(),
            delivered: 0,
            given_up: 0,
            failed: 0,
        }
    }

    pub fn sink(&self) -> &str {
        &self.sink
    }

    pub fn has_room(&self) -> bool {
        self.dispatcher.has_room()
    }

    pub fn push(&mut self, now: Instant, line: &[u8], meta: Option<&Rc<EventMeta>>) {
        self.dispatcher.push(
            now,
            QueuedRecord {
                line: line.to_vec(),
                meta: meta.cloned().unwrap_or_default(),
                received: now,
            },
        );
    }

    pub fn next_job(&mut self, now: Instant) -> Option<Job> {
        self.dispatcher.next_job(now)
    }

    /// A job of `records` records ended; give-ups go to the failure policy.
    pub fn complete(&mut self, now: Instant, job: u64, outcome: JobOutcome, records: usize) {
        if outcome == JobOutcome::Success {
            self.delivered += records as u64;
        } else {
            self.failed += records as u64;
        }
        if let Some(gave_up) = self.dispatcher.complete(now, job, outcome) {
            self.given_up += gave_up.records.len() as u64;
            self.failure.gave_up(&self.sink, &gave_up);
        }
    }

    pub fn counts(&self) -> DeliveryCounts {
        DeliveryCounts {
            delivered: self.delivered,
            failed: self.failed,
            given_up: self.given_up,
        }
    }

    pub fn latency(&self) -> &LatencySample {
        &self.latency
    }

    pub fn record_latency(&mut self, latency: Duration) {
        self.latency.record(latency);
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.dispatcher.deadline()
    }

    /// Accepted and not yet delivered or given up.
    pub fn pending(&self) -> usize {
        self.dispatcher.queued() + self.dispatcher.in_flight()
    }

    /// "N events delivered, M given up; LATENCY_NAME p50 …".
    pub fn summary(&self, latency_name: &str) -> String {
        let latency = self
            .latency
            .summary()
            .map(|s| format!("; {latency_name} {s}"))
            .unwrap_or_default();
        format!(
            "{} events delivered, {} given up{latency}",
            self.delivered, self.given_up
        )
    }
}

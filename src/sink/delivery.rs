//! What the exec and webhook sinks share around their runners: the
//! scheduler, the give-up policy, and the counts and latency they report.

use super::dispatch::{DispatchPolicy, Dispatcher, Job, JobOutcome};
use super::failure::FailurePolicy;
use super::gate::Gate;
use super::latency::LatencySample;
use super::{EventMeta, QueuedRecord};
use crate::config::DeliveryConfig;
use crate::rand::Rng;
use crate::state::{AckRef, Acks};
use std::collections::{HashMap, VecDeque};
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
    /// Records of failed attempts that go back for another one.
    retries: u64,
    /// Records a newer one of their object replaced (`coalesce`).
    coalesced: u64,
    /// Records of the jobs handed out and not completed, by job id.
    running: HashMap<u64, Rc<[QueuedRecord]>>,
    /// Records that are final: delivered, or given up on and dead-lettered
    /// or logged. Not records still queued, retrying, or aborted.
    acks: Acks,
    /// Records pushed that the gate does not let through yet, in push
    /// order: the dispatcher gets them once it does.
    staged: VecDeque<QueuedRecord>,
    gate: Gate,
}

/// Records by delivery result, for status and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub delivered: u64,
    /// Records sent back for another attempt after a failed one, once per
    /// attempt (a record that failed three times and then succeeded counts
    /// three). Nothing is lost by a retry: a sink that only ever retried
    /// lost nothing.
    pub retries: u64,
    /// Records handed to `on_failure` (logged or dead-lettered): the only
    /// ones that did not reach the sink.
    pub given_up: u64,
    /// Records replaced, while waiting, by a newer one of their object
    /// (`coalesce = true`); acknowledged, never delivered.
    pub coalesced: u64,
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
            retries: 0,
            coalesced: 0,
            running: HashMap::new(),
            acks: Acks::default(),
            staged: VecDeque::new(),
            gate: Gate::default(),
        }
    }

    /// Starts a record only once the gate lets it through (see [`Gate`]).
    pub fn hold_for_store(&mut self) {
        self.gate = Gate::held();
    }

    /// See [`Gate::pass`]; what it lets through goes to the dispatcher.
    pub fn pass(&mut self, now: Instant, wait: Option<u64>, committed: u64) {
        self.gate.pass(wait, committed);
        let first = self.gate.pushed().saturating_sub(self.staged.len() as u64);
        for _ in first..self.gate.open() {
            let Some(record) = self.staged.pop_front() else {
                break;
            };
            self.dispatch(now, record);
        }
    }

    pub fn sink(&self) -> &str {
        &self.sink
    }

    pub fn has_room(&self) -> bool {
        // The dispatcher's bound, counting what the gate holds back too.
        self.pending() < self.dispatcher.policy().queue_events
    }

    pub fn push(&mut self, now: Instant, line: &[u8], meta: Option<&Rc<EventMeta>>, ack: AckRef) {
        self.push_record(
            now,
            QueuedRecord {
                line: line.to_vec(),
                meta: meta.cloned().unwrap_or_default(),
                received: now,
                ack,
                coalesced: 0,
            },
        );
    }

    /// Queues a record as it is (one a standby held, see `sink::hold`):
    /// behind the store's gate like every push.
    pub fn push_record(&mut self, now: Instant, record: QueuedRecord) {
        self.gate.push();
        if self.gate.open() < self.gate.pushed() {
            self.staged.push_back(record);
        } else {
            self.dispatch(now, record);
        }
    }

    fn dispatch(&mut self, now: Instant, record: QueuedRecord) {
        self.dispatcher.push(now, record);
        for r in self.dispatcher.take_replaced() {
            self.coalesced += 1;
            self.acks.push(r.ack);
        }
    }

    pub fn next_job(&mut self, now: Instant) -> Option<Job> {
        let job = self.dispatcher.next_job(now)?;
        self.running.insert(job.id, Rc::clone(&job.records));
        Some(job)
    }

    /// A job of `records` records ended; give-ups go to the failure policy.
    pub fn complete(&mut self, now: Instant, job: u64, outcome: JobOutcome, records: usize) {
        let success = outcome == JobOutcome::Success;
        if success {
            self.delivered += records as u64;
        }
        let handed_out = self.running.remove(&job);
        if let Some(gave_up) = self.dispatcher.complete(now, job, outcome) {
            self.given_up += gave_up.records.len() as u64;
            self.failure.gave_up(&self.sink, &gave_up);
            for r in gave_up.records.iter() {
                self.acks.push(r.ack);
            }
        } else if success {
            for r in handed_out.iter().flat_map(|r| r.iter()) {
                self.acks.push(r.ack);
            }
        } else if handed_out.is_some() {
            // Failed, not given up: the dispatcher queued the retry.
            self.retries += records as u64;
        }
    }

    /// Job `job` was handed out but never started: it waits again, as if
    /// never handed out (see `Dispatcher::unstart`).
    pub fn unstart(&mut self, job: u64) -> bool {
        self.running.remove(&job);
        self.dispatcher.unstart(job)
    }

    /// Every record not running, taken back (see `Dispatcher::withdraw`).
    pub fn withdraw(&mut self) -> Vec<QueuedRecord> {
        let mut back = self.dispatcher.withdraw();
        // Those the store's gate held back come after them (pushed later).
        back.extend(self.staged.drain(..));
        self.gate.withdraw(back.len() as u64);
        back
    }

    pub fn counts(&self) -> DeliveryCounts {
        DeliveryCounts {
            delivered: self.delivered,
            retries: self.retries,
            given_up: self.given_up,
            coalesced: self.coalesced,
        }
    }

    pub fn latency(&self) -> &LatencySample {
        &self.latency
    }

    /// Moves the refs of final records to `out`.
    pub fn take_acks(&mut self, out: &mut Vec<AckRef>) {
        self.acks.drain_into(out);
    }

    pub fn record_latency(&mut self, latency: Duration) {
        self.latency.record(latency);
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.dispatcher.deadline()
    }

    /// Accepted and not yet delivered or given up.
    pub fn pending(&self) -> usize {
        self.staged.len() + self.dispatcher.queued() + self.dispatcher.in_flight()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OnFailure;

    fn ack(seq: u64) -> AckRef {
        AckRef {
            watch: 1,
            seq,
            rv: None,
        }
    }

    fn failed(retryable: bool) -> JobOutcome {
        JobOutcome::Failed {
            retryable,
            retry_after: None,
            reason: "boom".into(),
        }
    }

    fn delivery(queue_events: usize) -> Delivery {
        let config = DeliveryConfig {
            coalesce: false,
            max_concurrent: 4,
            retries: 1,
            batch_window: Duration::ZERO,
            batch_max: 1,
            on_failure: OnFailure::Log,
            queue_events: None,
        };
        Delivery::new("s", &config, queue_events, Rng::new(7))
    }

    fn meta(uid: &str) -> Rc<EventMeta> {
        Rc::new(EventMeta {
            uid: uid.into(),
            ..EventMeta::default()
        })
    }

    #[test]
    fn records_are_acked_when_delivered_or_given_up_never_while_retrying() {
        let mut d = delivery(100);
        let now = Instant::now();
        d.push(now, b"1\n", Some(&meta("a")), ack(1));
        d.push(now, b"2\n", Some(&meta("b")), ack(2));
        d.push(now, b"3\n", Some(&meta("c")), ack(3));
        let jobs: Vec<Job> = std::iter::from_fn(|| d.next_job(now)).collect();
        assert_eq!(jobs.len(), 3);
        let mut acks = Vec::new();
        // Out of order: the third succeeds first.
        d.complete(now, jobs[2].id, JobOutcome::Success, 1);
        // The first fails and will be retried: not final.
        d.complete(now, jobs[0].id, failed(true), 1);
        // The second fails for good: given up (logged), so final.
        d.complete(now, jobs[1].id, failed(false), 1);
        d.take_acks(&mut acks);
        assert_eq!(acks, vec![ack(3), ack(2)]);
        // The retry gives up too: final now.
        let later = now + Duration::from_secs(600);
        let retry = d.next_job(later).unwrap();
        d.complete(later, retry.id, failed(true), 1);
        acks.clear();
        d.take_acks(&mut acks);
        assert_eq!(acks, vec![ack(1)]);
        assert_eq!(d.pending(), 0);
        // Named for what they count: one retry, two records given up.
        assert_eq!(
            d.counts(),
            DeliveryCounts {
                delivered: 1,
                retries: 1,
                given_up: 2,
                coalesced: 0,
            }
        );
    }

    #[test]
    fn a_held_delivery_starts_only_what_the_gate_lets_through() {
        let mut d = delivery(3);
        d.hold_for_store();
        let now = Instant::now();
        d.push(now, b"1\n", Some(&meta("a")), ack(1));
        assert!(d.next_job(now).is_none(), "started before the turn's pass");
        // Records of new objects: they wait for store batch 4.
        d.push(now, b"2\n", Some(&meta("b")), ack(2));
        d.pass(now, Some(4), 3);
        assert!(d.next_job(now).is_none());
        // Held records count against the bound.
        d.push(now, b"3\n", Some(&meta("c")), ack(3));
        assert!(!d.has_room());
        assert_eq!(d.pending(), 3);
        d.pass(now, None, 3);
        assert!(d.next_job(now).is_none());
        d.pass(now, None, 4);
        let jobs: Vec<Job> = std::iter::from_fn(|| d.next_job(now)).collect();
        let lines: Vec<&[u8]> = jobs.iter().map(|j| &j.records[0].line[..]).collect();
        assert_eq!(lines, [b"1\n", b"2\n", b"3\n"]);
    }
}

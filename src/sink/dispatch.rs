//! Delivery scheduling for the sinks that act (exec hooks, webhooks):
//! per-object ordering, bounded concurrency, retries with backoff, batching
//! and the queue bound. Sans-I/O: it never touches a process or a socket;
//! the sink runner asks it which job may start, runs it, and reports the
//! outcome. Time is passed in, so every rule is unit-tested without clocks.
//!
//! # Rules
//!
//! *Object.* Records are keyed by cluster and [`EventMeta::object_key`]
//! (the uid, or namespace/name): uids restored from a backup into a second
//! cluster may repeat, and serialising two objects that merely share a key
//! would only cost concurrency, never order.
//!
//! *Jobs.* A job carries one record (`batch_window` zero) or a batch. Every
//! object is part of at most one unfinished job at a time (collecting,
//! waiting for a slot, running, or waiting to retry): that job *holds* the
//! object. A record whose object is held by a job that is no longer
//! collecting waits in the object's own queue. So records of one object
//! reach the sink in push order and never overlap, and different objects
//! are independent.
//!
//! *Batches* (`batch_window` > 0). There is at most one collecting batch.
//! It opens when a record enters it and closes when `batch_window` has
//! passed since then, or when it holds `batch_max` records; it then waits
//! for a slot like any job. A record enters the collecting batch when it is
//! pushed, unless its object is held by another job; in that case it enters
//! a collecting batch as soon as that job finishes (succeeds or gives up),
//! together with the object's other waiting records, up to `batch_max` (the
//! rest then wait for the batch they filled). The window is measured from
//! the first record *entering* the batch, so a record released after a long
//! retry does not close the batch at once. A job carries its records in
//! push order. A batch is retried as a whole, and while it waits to retry
//! it holds every object in it: a failing batch delays later events of its
//! own objects only.
//!
//! *Concurrency.* At most `max_concurrent` jobs run; jobs waiting to retry
//! do not count. Jobs start oldest first; a retry that falls due goes
//! before jobs that never ran (its records are older).
//!
//! *Retries.* A failed attempt `n` (1 = the first run) that is retryable and
//! `n <= retries` is run again after a delay drawn uniformly from
//! `[0, min(cap, base * 2^(n-1)))` (full jitter: synchronised failures do
//! not retry in lockstep), but no earlier than `retry_after` (the
//! receiver's `Retry-After`, honoured up to [`MAX_RETRY_AFTER`]). Otherwise
//! [`Dispatcher::complete`] returns [`GaveUp`] and the objects are released.
//! *Coalescing* (`coalesce = true`; off by default, when every record
//! runs). A record pushed while a record of its object waits and has never
//! been started (behind the object's job, in the collecting batch, or in a
//! closed job that never ran) takes that record's place: the replaced one
//! is final at once ([`Dispatcher::take_replaced`]) and the new one says
//! `"coalesced": N`. A record of a job that ran (running or waiting to
//! retry) is never replaced, so per-object order holds and nothing a
//! receiver saw is taken back.
//!
//! *Bound.* Every record pushed and not yet finished counts against
//! `queue_events`, wherever it is; [`Dispatcher::has_room`] turns false at
//! the bound and the daemon stops reading the watches feeding this sink.
//!
//! # Driving it
//!
//! After every `push` and `complete`, and when [`Dispatcher::deadline`]
//! has passed, call [`Dispatcher::next_job`] until it returns `None`. Then
//! either every slot is busy or nothing can start before the deadline.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{EventMeta, QueuedRecord};
use crate::config::DeliveryConfig;
use crate::rand::Rng;

/// First retry ceiling.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Largest retry ceiling.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Longest `Retry-After` honoured: a receiver (or a bug in one) must not
/// park a sink for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// Upper bound on the policy's durations (see [`Dispatcher::new`]).
const MAX_POLICY_DELAY: Duration = Duration::from_secs(24 * 3600);

/// How one sink delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchPolicy {
    /// Jobs running at once; 0 is taken as 1.
    pub max_concurrent: usize,
    /// Retries after the first run.
    pub retries: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Zero: one record per job.
    pub batch_window: Duration,
    /// Most records per job when batching; 0 is taken as 1.
    pub batch_max: usize,
    /// Records held (queued, running, waiting to retry) before `has_room`
    /// turns false; 0 is taken as 1.
    pub queue_events: usize,
    /// A newer record of an object replaces its record not yet started.
    pub coalesce: bool,
}

impl DispatchPolicy {
    /// From a sink's configuration; `daemon_queue_events` is
    /// `[daemon] sink_queue_events`, used unless the sink sets its own.
    pub fn from_config(delivery: &DeliveryConfig, daemon_queue_events: usize) -> Self {
        DispatchPolicy {
            max_concurrent: delivery.max_concurrent,
            retries: delivery.retries,
            backoff_base: BACKOFF_BASE,
            backoff_cap: BACKOFF_CAP,
            batch_window: delivery.batch_window,
            batch_max: delivery.batch_max,
            queue_events: delivery.queue_events_or(daemon_queue_events),
            coalesce: delivery.coalesce,
        }
    }

    /// Records per job.
    fn job_max(&self) -> usize {
        if self.batch_window.is_zero() {
            1
        } else {
            self.batch_max.max(1)
        }
    }
}

/// A job that may start now.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: u64,
    /// In push order; shared with the dispatcher, which keeps them for a
    /// retry, so handing a job out never copies a (possibly large) record.
    pub records: Rc<[QueuedRecord]>,
    /// 1 for the first run.
    pub attempt: u32,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Success,
    Failed {
        /// Timeouts, non-zero exits, 408/429/5xx, connection errors.
        retryable: bool,
        /// The receiver's `Retry-After`: the next attempt waits at least
        /// this long.
        retry_after: Option<Duration>,
        /// For the log and the dead-letter file.
        reason: String,
    },
}

/// The records of a job that will not be retried.
#[derive(Debug, Clone)]
pub struct GaveUp {
    pub records: Rc<[QueuedRecord]>,
    /// Runs made, the first included.
    pub attempts: u32,
    /// The last failure.
    pub reason: String,
}

type ObjectKey = Rc<str>;

/// A record with its push order.
#[derive(Debug)]
struct Waiting {
    seq: u64,
    record: QueuedRecord,
}

/// An object with an unfinished job. Objects without one have no entry.
#[derive(Debug)]
struct ObjectState {
    /// The job (or collecting batch) that holds the object.
    holder: u64,
    /// Later records, waiting for `holder` to finish, in push order.
    waiting: VecDeque<Waiting>,
}

/// The batch being collected.
#[derive(Debug)]
struct Batch {
    id: u64,
    closes_at: Instant,
    records: Vec<Waiting>,
    /// Distinct objects this batch holds.
    objects: Vec<ObjectKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobState {
    /// In `startable`, waiting for a slot.
    Startable,
    Running,
    /// In `backoff`, until the given time.
    RetryWait(Instant),
}

#[derive(Debug)]
struct JobEntry {
    records: Rc<[QueuedRecord]>,
    objects: Vec<ObjectKey>,
    /// The attempt that runs (or ran) next.
    attempt: u32,
    state: JobState,
}

/// The scheduler of one sink. See the module documentation for the rules.
#[derive(Debug)]
pub struct Dispatcher {
    policy: DispatchPolicy,
    rng: Rng,
    next_id: u64,
    next_seq: u64,
    objects: HashMap<ObjectKey, ObjectState>,
    batch: Option<Batch>,
    jobs: HashMap<u64, JobEntry>,
    /// Closed jobs waiting for a slot, oldest first.
    startable: VecDeque<u64>,
    /// Jobs waiting to retry, by due time.
    backoff: BTreeSet<(Instant, u64)>,
    /// Records pushed and not finished.
    held: usize,
    running_jobs: usize,
    running_records: usize,
    /// Records a newer one replaced, until `take_replaced`.
    replaced: Vec<QueuedRecord>,
}

impl Dispatcher {
    pub fn new(mut policy: DispatchPolicy, rng: Rng) -> Self {
        // The config guarantees these; clamping keeps a zero from stalling
        // the sink forever if a caller builds a policy by hand.
        policy.max_concurrent = policy.max_concurrent.max(1);
        policy.batch_max = policy.batch_max.max(1);
        policy.queue_events = policy.queue_events.max(1);
        // Likewise bounded so `Instant + delay` can never overflow (the
        // config allows at most an hour for any of them).
        policy.batch_window = policy.batch_window.min(MAX_POLICY_DELAY);
        policy.backoff_base = policy.backoff_base.min(MAX_POLICY_DELAY);
        policy.backoff_cap = policy.backoff_cap.min(MAX_POLICY_DELAY);
        Dispatcher {
            policy,
            rng,
            next_id: 1,
            next_seq: 0,
            objects: HashMap::new(),
            batch: None,
            jobs: HashMap::new(),
            startable: VecDeque::new(),
            backoff: BTreeSet::new(),
            held: 0,
            running_jobs: 0,
            running_records: 0,
            replaced: Vec::new(),
        }
    }

    pub fn policy(&self) -> &DispatchPolicy {
        &self.policy
    }

    /// Whether the sink takes more records: every record pushed and not
    /// finished (queued, collecting, running, waiting to retry) counts.
    pub fn has_room(&self) -> bool {
        self.held < self.policy.queue_events
    }

    /// Queues a record. Never refuses one: the bound is enforced by the
    /// caller through [`Dispatcher::has_room`], and a record already read
    /// must not be lost.
    pub fn push(&mut self, now: Instant, record: QueuedRecord) {
        let key = object_key(&record.meta);
        let record = match self.policy.coalesce {
            true => match self.coalesce(&key, record) {
                None => return,
                Some(record) => record,
            },
            false => record,
        };
        let waiting = Waiting {
            seq: self.next_seq,
            record,
        };
        self.next_seq += 1;
        self.held += 1;
        let collecting = self.batch.as_ref().map(|b| b.id);
        match self.objects.get_mut(&key) {
            None => {
                let holder = self.ensure_batch(now);
                if let Some(batch) = self.batch.as_mut() {
                    batch.objects.push(key.clone());
                    batch.records.push(waiting);
                }
                self.objects.insert(
                    key,
                    ObjectState {
                        holder,
                        waiting: VecDeque::new(),
                    },
                );
                self.close_batch_if_full();
            }
            Some(object) if Some(object.holder) == collecting => {
                // Already in the collecting batch: join it (its records
                // stay in push order within the job).
                if let Some(batch) = self.batch.as_mut() {
                    batch.records.push(waiting);
                }
                self.close_batch_if_full();
            }
            Some(object) => object.waiting.push_back(waiting),
        }
    }

    /// Records replaced by newer ones of their object since the last call:
    /// final (acknowledged, counted), never delivered.
    pub fn take_replaced(&mut self) -> Vec<QueuedRecord> {
        std::mem::take(&mut self.replaced)
    }

    /// Puts `record` in the place of its object's newest record that was
    /// never started, if there is one (`None`: done); else hands it back.
    fn coalesce(&mut self, key: &ObjectKey, mut record: QueuedRecord) -> Option<QueuedRecord> {
        let Some(object) = self.objects.get_mut(key) else {
            return Some(record);
        };
        let slot = if let Some(w) = object.waiting.back_mut() {
            Some(&mut w.record)
        } else if let Some(batch) = self.batch.as_mut().filter(|b| b.id == object.holder) {
            batch
                .records
                .iter_mut()
                .rev()
                .map(|w| &mut w.record)
                .find(|r| object_key(&r.meta) == *key)
        } else {
            match self.jobs.get_mut(&object.holder) {
                Some(job) if job.state == JobState::Startable && job.attempt == 1 => {
                    Rc::get_mut(&mut job.records).and_then(|records| {
                        records
                            .iter_mut()
                            .rev()
                            .find(|r| object_key(&r.meta) == *key)
                    })
                }
                _ => None,
            }
        };
        let Some(slot) = slot else {
            return Some(record);
        };
        record.replace(slot);
        self.replaced.push(std::mem::replace(slot, record));
        None
    }

    /// A job that may start now, if a slot is free. The caller runs it and
    /// reports with [`Dispatcher::complete`]. Call until `None`.
    pub fn next_job(&mut self, now: Instant) -> Option<Job> {
        if self.batch.as_ref().is_some_and(|b| b.closes_at <= now) {
            self.close_batch();
        }
        self.promote_due_retries(now);
        if self.running_jobs >= self.policy.max_concurrent {
            return None;
        }
        let id = self.startable.pop_front()?;
        let Some(entry) = self.jobs.get_mut(&id) else {
            // Unreachable: `startable` only names live jobs.
            log::error!("dispatch: startable job {id} has no entry; skipped");
            return None;
        };
        entry.state = JobState::Running;
        self.running_jobs += 1;
        self.running_records += entry.records.len();
        Some(Job {
            id,
            records: Rc::clone(&entry.records),
            attempt: entry.attempt,
        })
    }

    /// Reports how a running job ended. Returns the records when the job
    /// will not be retried (retries exhausted or a non-retryable failure);
    /// its objects' later records then proceed. A completion for a job that
    /// is not running (a caller bug) is logged and ignored.
    pub fn complete(&mut self, now: Instant, job_id: u64, outcome: JobOutcome) -> Option<GaveUp> {
        let Some(entry) = self.jobs.get_mut(&job_id) else {
            log::warn!("dispatch: completion of unknown job {job_id} ignored");
            return None;
        };
        if entry.state != JobState::Running {
            log::warn!(
                "dispatch: completion of job {job_id} that is not running ({:?}) ignored",
                entry.state
            );
            return None;
        }
        self.running_jobs -= 1;
        self.running_records -= entry.records.len();
        match outcome {
            JobOutcome::Success => {
                self.finish(now, job_id);
                None
            }
            JobOutcome::Failed {
                retryable,
                retry_after,
                reason,
            } => {
                let attempt = entry.attempt;
                if retryable && attempt <= self.policy.retries {
                    let delay = self.retry_delay(attempt, retry_after);
                    let due = now + delay;
                    if let Some(entry) = self.jobs.get_mut(&job_id) {
                        entry.attempt = attempt + 1;
                        entry.state = JobState::RetryWait(due);
                    }
                    self.backoff.insert((due, job_id));
                    None
                } else {
                    let records = Rc::clone(&entry.records);
                    self.finish(now, job_id);
                    Some(GaveUp {
                        records,
                        attempts: attempt,
                        reason,
                    })
                }
            }
        }
    }

    /// A job handed out by `next_job` that the runner never started (a
    /// NATS publish not written yet when its replica was fenced) waits for
    /// a slot again, first, with the same attempt. False when it is not
    /// running.
    pub fn unstart(&mut self, job_id: u64) -> bool {
        let Some(entry) = self.jobs.get_mut(&job_id) else {
            return false;
        };
        if entry.state != JobState::Running {
            return false;
        }
        entry.state = JobState::Startable;
        self.running_jobs -= 1;
        self.running_records -= entry.records.len();
        self.startable.push_front(job_id);
        true
    }

    /// Takes back every record that is not running: waiting behind its
    /// object, collecting, waiting for a slot or to retry (a retry was
    /// delivered at most partly, and is not handled), for a replica that
    /// stops delivering (`sink::hold`). Jobs that wait come first, by age,
    /// then the rest in push order, so each object's records keep their
    /// order; objects held by a running job stay held.
    pub fn withdraw(&mut self) -> Vec<QueuedRecord> {
        let mut ids: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state != JobState::Running)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        let mut out = Vec::new();
        for id in ids {
            if let Some(job) = self.jobs.remove(&id) {
                out.extend(job.records.iter().cloned());
            }
        }
        self.startable.clear();
        self.backoff.clear();
        let mut rest = self.batch.take().map(|b| b.records).unwrap_or_default();
        for object in self.objects.values_mut() {
            rest.extend(object.waiting.drain(..));
        }
        rest.sort_by_key(|w| w.seq);
        out.extend(rest.into_iter().map(|w| w.record));
        let jobs = &self.jobs;
        self.objects.retain(|_, o| jobs.contains_key(&o.holder));
        self.held = self.running_records;
        out
    }

    /// Closes the collecting batch now instead of at the end of its window
    /// (at shutdown, so collected records need not wait it out).
    pub fn flush_batch(&mut self) {
        self.close_batch();
    }

    /// The earliest time [`Dispatcher::next_job`] may have something new:
    /// the end of the collecting batch's window or a retry falling due.
    pub fn deadline(&self) -> Option<Instant> {
        let window = self.batch.as_ref().map(|b| b.closes_at);
        let retry = self.backoff.first().map(|(at, _)| *at);
        match (window, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records not running: waiting behind their object, collecting,
    /// waiting for a slot or to retry.
    pub fn queued(&self) -> usize {
        self.held - self.running_records
    }

    /// Records in running jobs.
    pub fn in_flight(&self) -> usize {
        self.running_records
    }

    /// Jobs running.
    pub fn running_jobs(&self) -> usize {
        self.running_jobs
    }

    /// Nothing queued, running or waiting.
    pub fn is_idle(&self) -> bool {
        self.held == 0
    }

    // ------------------------------------------------------------ internals

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The id of the collecting batch, opened at `now` if there is none.
    fn ensure_batch(&mut self, now: Instant) -> u64 {
        if let Some(batch) = &self.batch {
            return batch.id;
        }
        let id = self.alloc_id();
        self.batch = Some(Batch {
            id,
            closes_at: now + self.policy.batch_window,
            records: Vec::new(),
            objects: Vec::new(),
        });
        id
    }

    fn close_batch_if_full(&mut self) {
        let max = self.policy.job_max();
        if self.batch.as_ref().is_some_and(|b| b.records.len() >= max) {
            self.close_batch();
        }
    }

    /// Turns the collecting batch into a job waiting for a slot.
    fn close_batch(&mut self) {
        let Some(mut batch) = self.batch.take() else {
            return;
        };
        // Records released by a finished job join after newer records of
        // other objects; the job still carries them in push order. Nearly
        // sorted input: the stable sort is close to linear.
        batch.records.sort_by_key(|w| w.seq);
        let records: Rc<[QueuedRecord]> = batch.records.into_iter().map(|w| w.record).collect();
        self.jobs.insert(
            batch.id,
            JobEntry {
                records,
                objects: batch.objects,
                attempt: 1,
                state: JobState::Startable,
            },
        );
        self.startable.push_back(batch.id);
    }

    /// Retries that fell due go first: their records are the oldest.
    fn promote_due_retries(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.backoff.first() {
            if at > now {
                break;
            }
            self.backoff.pop_first();
            due.push(id);
        }
        for &id in due.iter().rev() {
            if let Some(entry) = self.jobs.get_mut(&id) {
                entry.state = JobState::Startable;
                self.startable.push_front(id);
            }
        }
    }

    /// Full jitter below the exponential ceiling, floored by `retry_after`.
    fn retry_delay(&mut self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let factor = 2u32.checked_pow(attempt.saturating_sub(1));
        let ceiling = factor
            .and_then(|f| self.policy.backoff_base.checked_mul(f))
            .map_or(self.policy.backoff_cap, |d| d.min(self.policy.backoff_cap));
        let jitter = self.rng.duration_between(Duration::ZERO, ceiling);
        let floor = retry_after.map_or(Duration::ZERO, |r| r.min(MAX_RETRY_AFTER));
        jitter.max(floor)
    }

    /// The job is done (delivered or given up): forget it and let its
    /// objects' waiting records into the collecting batch.
    fn finish(&mut self, now: Instant, job_id: u64) {
        let Some(entry) = self.jobs.remove(&job_id) else {
            return;
        };
        self.held -= entry.records.len();
        for key in entry.objects {
            match self.objects.get(&key) {
                None => continue,
                Some(object) if object.holder != job_id => {
                    // Unreachable by construction; never steal another job's object.
                    log::error!(
                        "dispatch: object held by job {} released by job {job_id}; left alone",
                        object.holder
                    );
                    continue;
                }
                Some(object) if object.waiting.is_empty() => {
                    self.objects.remove(&key);
                    continue;
                }
                Some(_) => {}
            }
            let id = self.ensure_batch(now);
            let max = self.policy.job_max();
            let (Some(object), Some(batch)) = (self.objects.get_mut(&key), self.batch.as_mut())
            else {
                continue;
            };
            object.holder = id;
            batch.objects.push(key);
            while batch.records.len() < max {
                match object.waiting.pop_front() {
                    Some(w) => batch.records.push(w),
                    None => break,
                }
            }
            // Records left over wait for the batch they filled.
            self.close_batch_if_full();
        }
    }
}

/// The ordering identity of a record's object (see the module docs).
fn object_key(meta: &EventMeta) -> ObjectKey {
    // Cluster names cannot contain a newline, so the key is unambiguous.
    format!("{}\n{}", meta.cluster, meta.object_key_display()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const MS: Duration = Duration::from_millis(1);

    fn policy(max_concurrent: usize, retries: u32) -> DispatchPolicy {
        DispatchPolicy {
            max_concurrent,
            retries,
            backoff_base: BACKOFF_BASE,
            backoff_cap: BACKOFF_CAP,
            batch_window: Duration::ZERO,
            batch_max: 100,
            queue_events: 100_000,
            coalesce: false,
        }
    }

    fn batching(window: Duration, batch_max: usize) -> DispatchPolicy {
        DispatchPolicy {
            batch_window: window,
            batch_max,
            ..policy(4, 3)
        }
    }

    fn dispatcher(policy: DispatchPolicy) -> Dispatcher {
        Dispatcher::new(policy, Rng::new(42))
    }

    /// Record number `n` of object `obj`.
    fn record(obj: usize, n: usize) -> QueuedRecord {
        QueuedRecord {
            line: format!("{{\"obj\":{obj},\"n\":{n}}}\n").into_bytes(),
            meta: Rc::new(EventMeta {
                cluster: "c".to_string(),
                uid: format!("uid-{obj}"),
                ..EventMeta::default()
            }),
            received: Instant::now(),
            ack: crate::state::AckRef {
                watch: 0,
                seq: n as u64,
                rv: None,
            },
            coalesced: 0,
        }
    }

    /// (object, n) of every record of a job.
    fn ids(records: &[QueuedRecord]) -> Vec<(usize, usize)> {
        records
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.line).unwrap();
                (
                    v["obj"].as_u64().unwrap() as usize,
                    v["n"].as_u64().unwrap() as usize,
                )
            })
            .collect()
    }

    fn drain(d: &mut Dispatcher, now: Instant) -> Vec<Job> {
        std::iter::from_fn(|| d.next_job(now)).collect()
    }

    fn fail(retryable: bool) -> JobOutcome {
        JobOutcome::Failed {
            retryable,
            retry_after: None,
            reason: "exit status 1".to_string(),
        }
    }

    #[test]
    fn withdraw_takes_back_everything_not_running_and_keeps_object_order() {
        let t = Instant::now();
        let mut d = dispatcher(policy(1, 3));
        d.push(t, record(1, 1));
        d.push(t, record(1, 2));
        d.push(t, record(2, 3));
        d.push(t, record(3, 4));
        let running = drain(&mut d, t);
        assert_eq!(ids(&running[0].records), vec![(1, 1)]);
        let back = d.withdraw();
        assert_eq!(ids(&back), vec![(2, 3), (3, 4), (1, 2)]);
        assert_eq!((d.queued(), d.in_flight()), (0, 1));
        assert!(drain(&mut d, t).is_empty(), "nothing left to start");
        // Pushed back, object 1's record still waits for the running one.
        for r in back {
            d.push(t, r);
        }
        assert!(drain(&mut d, t).is_empty(), "one slot, and it is taken");
        assert!(d.complete(t, running[0].id, JobOutcome::Success).is_none());
        let next: Vec<_> = drain(&mut d, t)
            .iter()
            .flat_map(|j| ids(&j.records))
            .collect();
        assert_eq!(next, vec![(2, 3)]);
        // A job handed out but never started waits again, first.
        let mut d = dispatcher(policy(1, 3));
        d.push(t, record(1, 1));
        d.push(t, record(2, 2));
        let job = drain(&mut d, t).remove(0);
        assert!(d.unstart(job.id));
        assert!(!d.unstart(job.id), "not running any more");
        assert_eq!((d.queued(), d.in_flight()), (2, 0));
        let again = drain(&mut d, t);
        assert_eq!((again[0].id, again[0].attempt), (job.id, 1));
        // A job waiting to retry comes back too.
        let mut d = dispatcher(policy(1, 3));
        d.push(t, record(1, 1));
        let job = drain(&mut d, t).remove(0);
        d.complete(t, job.id, fail(true));
        assert_eq!(ids(&d.withdraw()), vec![(1, 1)]);
        assert!(d.is_idle());
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn one_object_runs_one_at_a_time_in_push_order() {
        let t = Instant::now();
        let mut d = dispatcher(policy(8, 0));
        for n in 0..3 {
            d.push(t, record(1, n));
        }
        let jobs = drain(&mut d, t);
        assert_eq!(jobs.len(), 1);
        assert_eq!(ids(&jobs[0].records), vec![(1, 0)]);
        assert_eq!(jobs[0].attempt, 1);
        assert_eq!((d.queued(), d.in_flight(), d.running_jobs()), (2, 1, 1));
        assert!(d.complete(t, jobs[0].id, JobOutcome::Success).is_none());
        let jobs = drain(&mut d, t);
        assert_eq!(ids(&jobs[0].records), vec![(1, 1)]);
        d.complete(t, jobs[0].id, JobOutcome::Success);
        let jobs = drain(&mut d, t);
        assert_eq!(ids(&jobs[0].records), vec![(1, 2)]);
        d.complete(t, jobs[0].id, JobOutcome::Success);
        assert!(d.is_idle());
        assert!(drain(&mut d, t).is_empty());
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn different_objects_run_concurrently_up_to_max() {
        let t = Instant::now();
        let mut d = dispatcher(policy(3, 0));
        for obj in 0..5 {
            d.push(t, record(obj, 0));
        }
        let jobs = drain(&mut d, t);
        let started: Vec<_> = jobs.iter().flat_map(|j| ids(&j.records)).collect();
        assert_eq!(started, vec![(0, 0), (1, 0), (2, 0)], "oldest first");
        assert_eq!(d.running_jobs(), 3);
        d.complete(t, jobs[1].id, JobOutcome::Success);
        let next = drain(&mut d, t);
        assert_eq!(next.len(), 1);
        assert_eq!(ids(&next[0].records), vec![(3, 0)]);
    }

    #[test]
    fn objects_are_told_apart_by_cluster_and_fall_back_to_namespace_name() {
        let t = Instant::now();
        let mut d = dispatcher(policy(8, 0));
        let mk = |cluster: &str, uid: &str, ns: &str, name: &str| QueuedRecord {
            line: b"{}\n".to_vec(),
            meta: Rc::new(EventMeta {
                cluster: cluster.into(),
                uid: uid.into(),
                namespace: ns.into(),
                name: name.into(),
                ..EventMeta::default()
            }),
            received: t,
            ack: crate::state::AckRef {
                watch: 0,
                seq: 0,
                rv: None,
            },
            coalesced: 0,
        };
        d.push(t, mk("a", "u1", "", ""));
        d.push(t, mk("b", "u1", "", "")); // same uid, other cluster
        d.push(t, mk("a", "", "ns", "x"));
        d.push(t, mk("a", "", "ns", "x")); // same object: waits
        d.push(t, mk("a", "", "ns", "y"));
        assert_eq!(drain(&mut d, t).len(), 4);
    }

    /// 1,000 events over 50 objects, `max_concurrent = 8`, completions in
    /// random order, some failures and give-ups, fed under the queue bound.
    #[test]
    fn order_holds_under_concurrency_with_random_completions() {
        for seed in 0..5u64 {
            let mut rng = Rng::new(seed);
            let mut d = Dispatcher::new(
                DispatchPolicy {
                    queue_events: 64,
                    ..policy(8, 2)
                },
                Rng::new(seed + 100),
            );
            let mut now = Instant::now();
            let total = 1000;
            let objects = 50;
            let mut to_push: VecDeque<(usize, usize)> = VecDeque::new();
            let mut per_object = vec![0usize; objects];
            for _ in 0..total {
                let obj = rng.index(objects);
                to_push.push_back((obj, per_object[obj]));
                per_object[obj] += 1;
            }
            let mut running: Vec<Job> = Vec::new();
            // Per object: the next record expected to *start* for the first
            // time, and whether one of its jobs is running.
            let mut next_new = vec![0usize; objects];
            let mut busy = vec![false; objects];
            let mut done = vec![0usize; objects];
            let mut finished = 0;
            let mut max_running = 0;
            let mut gave_up = 0;
            while finished < total {
                while d.has_room() && rng.below(3) > 0 {
                    let Some((obj, n)) = to_push.pop_front() else {
                        break;
                    };
                    d.push(now, record(obj, n));
                }
                for job in drain(&mut d, now) {
                    let rec = ids(&job.records);
                    assert_eq!(rec.len(), 1);
                    let (obj, n) = rec[0];
                    assert!(!busy[obj], "object {obj} overlaps");
                    busy[obj] = true;
                    if job.attempt == 1 {
                        assert_eq!(n, next_new[obj], "object {obj} out of order");
                        next_new[obj] += 1;
                    } else {
                        assert_eq!(n + 1, next_new[obj], "retry of a later record");
                    }
                    running.push(job);
                }
                assert!(d.running_jobs() <= 8);
                assert!(d.queued() + d.in_flight() <= 64);
                max_running = max_running.max(running.len());
                if running.is_empty() {
                    // Nothing running: time passes until a retry is due.
                    if let Some(at) = d.deadline() {
                        now = now.max(at);
                    } else {
                        assert!(!to_push.is_empty() || finished == total);
                    }
                    continue;
                }
                let job = running.swap_remove(rng.index(running.len()));
                let (obj, _) = ids(&job.records)[0];
                busy[obj] = false;
                let outcome = match rng.below(10) {
                    0 => fail(true),
                    1 if rng.below(4) == 0 => fail(false),
                    _ => JobOutcome::Success,
                };
                let succeeded = outcome == JobOutcome::Success;
                now += Duration::from_millis(rng.below(50));
                match d.complete(now, job.id, outcome) {
                    Some(g) => {
                        gave_up += 1;
                        assert_eq!(ids(&g.records), ids(&job.records));
                        done[obj] += 1;
                        finished += 1;
                    }
                    None if succeeded => {
                        done[obj] += 1;
                        finished += 1;
                    }
                    None => {}
                }
            }
            assert!(d.is_idle());
            assert_eq!(done, per_object);
            assert_eq!(next_new, per_object);
            assert_eq!(max_running, 8, "seed {seed}: concurrency never reached 8");
            assert!(gave_up > 0);
        }
    }

    #[test]
    fn fail_twice_then_succeed_is_three_runs() {
        let mut now = Instant::now();
        let mut d = dispatcher(policy(1, 3));
        d.push(now, record(1, 0));
        let mut attempts = Vec::new();
        for outcome in [fail(true), fail(true), JobOutcome::Success] {
            let job = loop {
                if let Some(job) = d.next_job(now) {
                    break job;
                }
                now = d.deadline().expect("a retry is scheduled");
            };
            attempts.push(job.attempt);
            assert!(d.complete(now, job.id, outcome).is_none());
        }
        assert_eq!(attempts, vec![1, 2, 3]);
        assert!(d.is_idle());
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn exhausted_retries_give_up_and_later_events_flow() {
        let mut now = Instant::now();
        let mut d = dispatcher(policy(4, 2));
        d.push(now, record(1, 0));
        d.push(now, record(1, 1));
        let mut runs = 0;
        let gave = loop {
            let Some(job) = d.next_job(now) else {
                // While object 1 waits to retry, its next event is held back,
                // and another object still runs.
                assert_eq!(d.running_jobs(), 0);
                d.push(now, record(2, runs));
                let other = drain(&mut d, now);
                assert_eq!(ids(&other[0].records), vec![(2, runs)]);
                d.complete(now, other[0].id, JobOutcome::Success);
                now = d.deadline().unwrap();
                continue;
            };
            assert_eq!(ids(&job.records), vec![(1, 0)]);
            runs += 1;
            if let Some(g) = d.complete(now, job.id, fail(true)) {
                break g;
            }
        };
        assert_eq!(runs, 3);
        assert_eq!(gave.attempts, 3);
        assert_eq!(gave.reason, "exit status 1");
        assert_eq!(ids(&gave.records), vec![(1, 0)]);
        let next = drain(&mut d, now);
        assert_eq!(ids(&next[0].records), vec![(1, 1)]);
        assert_eq!(next[0].attempt, 1);
    }

    #[test]
    fn non_retryable_failure_gives_up_at_once() {
        let t = Instant::now();
        let mut d = dispatcher(policy(1, 5));
        d.push(t, record(1, 0));
        d.push(t, record(1, 1));
        let job = d.next_job(t).unwrap();
        let g = d.complete(t, job.id, fail(false)).unwrap();
        assert_eq!(g.attempts, 1);
        assert_eq!(ids(&d.next_job(t).unwrap().records), vec![(1, 1)]);
        // retries = 0: a retryable failure also gives up at once.
        let mut d = dispatcher(policy(1, 0));
        d.push(t, record(1, 0));
        let job = d.next_job(t).unwrap();
        assert_eq!(d.complete(t, job.id, fail(true)).unwrap().attempts, 1);
        assert!(d.is_idle());
    }

    #[test]
    fn backoff_is_full_jitter_below_an_exponential_capped_ceiling() {
        let t = Instant::now();
        let mut d = Dispatcher::new(policy(1, 20), Rng::new(7));
        for attempt in 1..=12u32 {
            let ceiling = (BACKOFF_BASE * 2u32.pow(attempt - 1)).min(BACKOFF_CAP);
            let mut max = Duration::ZERO;
            let mut min = Duration::MAX;
            for _ in 0..300 {
                let delay = d.retry_delay(attempt, None);
                assert!(delay < ceiling, "attempt {attempt}: {delay:?}");
                max = max.max(delay);
                min = min.min(delay);
            }
            assert!(max > ceiling.mul_f64(0.9), "attempt {attempt}: max {max:?}");
            assert!(min < ceiling.mul_f64(0.1), "attempt {attempt}: min {min:?}");
        }
        // Huge attempt numbers neither overflow nor exceed the cap.
        assert!(d.retry_delay(u32::MAX, None) < BACKOFF_CAP);
        // Through the public API: each scheduled retry is within its ceiling.
        d.push(t, record(1, 0));
        let mut now = t;
        for attempt in 1..=8u32 {
            let job = d.next_job(now).unwrap();
            assert_eq!(job.attempt, attempt);
            d.complete(now, job.id, fail(true));
            let due = d.deadline().unwrap();
            let ceiling = (BACKOFF_BASE * 2u32.pow(attempt - 1)).min(BACKOFF_CAP);
            assert!(due - now < ceiling);
            if due - now >= MS {
                assert!(d.next_job(due - MS).is_none(), "started before it was due");
            }
            now = due;
        }
    }

    #[test]
    fn retry_after_is_a_floor_and_is_bounded() {
        let t = Instant::now();
        let mut d = dispatcher(policy(1, 10));
        for _ in 0..100 {
            let delay = d.retry_delay(1, Some(Duration::from_secs(30)));
            assert_eq!(delay, Duration::from_secs(30), "jitter below 1s < floor");
            let delay = d.retry_delay(9, Some(Duration::from_secs(2)));
            assert!(delay >= Duration::from_secs(2));
        }
        assert_eq!(
            d.retry_delay(1, Some(Duration::from_secs(86_400))),
            MAX_RETRY_AFTER
        );
        d.push(t, record(1, 0));
        let job = d.next_job(t).unwrap();
        let outcome = JobOutcome::Failed {
            retryable: true,
            retry_after: Some(Duration::from_secs(120)),
            reason: "HTTP 503".into(),
        };
        assert!(d.complete(t, job.id, outcome).is_none());
        assert_eq!(d.deadline(), Some(t + Duration::from_secs(120)));
        assert!(d.next_job(t + Duration::from_secs(119)).is_none());
        assert_eq!(d.next_job(t + Duration::from_secs(120)).unwrap().attempt, 2);
    }

    #[test]
    fn due_retries_start_before_new_jobs() {
        let t = Instant::now();
        let mut d = dispatcher(policy(1, 1));
        d.push(t, record(1, 0));
        let job = d.next_job(t).unwrap();
        d.complete(t, job.id, fail(true));
        d.push(t, record(2, 0));
        d.push(t, record(3, 0));
        let due = d.deadline().unwrap();
        let first = d.next_job(due).unwrap();
        if first.attempt == 2 {
            assert_eq!(ids(&first.records), vec![(1, 0)]);
        } else {
            // The jitter was ~0: object 2 started before the retry was due.
            assert_eq!(due, t);
        }
    }

    #[test]
    fn has_room_counts_every_unfinished_record() {
        let t = Instant::now();
        let mut d = dispatcher(DispatchPolicy {
            queue_events: 3,
            ..policy(2, 1)
        });
        d.push(t, record(1, 0));
        d.push(t, record(1, 1));
        assert!(d.has_room());
        d.push(t, record(2, 0));
        assert!(!d.has_room());
        let jobs = drain(&mut d, t);
        assert_eq!(jobs.len(), 2);
        assert!(!d.has_room(), "running records still count");
        assert_eq!((d.queued(), d.in_flight()), (1, 2));
        d.complete(t, jobs[1].id, fail(true));
        assert!(!d.has_room(), "records waiting to retry still count");
        d.complete(t, jobs[0].id, JobOutcome::Success);
        assert!(d.has_room());
        assert_eq!((d.queued(), d.in_flight()), (2, 0));
    }

    #[test]
    fn stray_completions_are_ignored() {
        let t = Instant::now();
        let mut d = dispatcher(policy(1, 1));
        d.push(t, record(1, 0));
        assert!(d.complete(t, 999, JobOutcome::Success).is_none());
        let job = d.next_job(t).unwrap();
        d.complete(t, job.id, fail(true));
        // Twice, and while it waits to retry: ignored.
        assert!(d.complete(t, job.id, fail(false)).is_none());
        assert!(!d.is_idle());
        assert_eq!(d.running_jobs(), 0);
    }

    #[test]
    fn zero_limits_are_clamped() {
        let t = Instant::now();
        let mut d = dispatcher(DispatchPolicy {
            max_concurrent: 0,
            batch_max: 0,
            queue_events: 0,
            batch_window: Duration::from_secs(1),
            ..policy(1, 0)
        });
        assert!(d.has_room());
        d.push(t, record(1, 0));
        assert!(!d.has_room());
        assert_eq!(d.next_job(t).unwrap().records.len(), 1);
    }

    #[test]
    fn absurd_durations_are_bounded() {
        let t = Instant::now();
        let mut d = dispatcher(DispatchPolicy {
            batch_window: Duration::MAX,
            backoff_base: Duration::MAX,
            backoff_cap: Duration::MAX,
            ..policy(1, 1)
        });
        d.push(t, record(1, 0));
        assert_eq!(d.deadline(), Some(t + MAX_POLICY_DELAY));
        d.flush_batch();
        let job = d.next_job(t).unwrap();
        d.complete(t, job.id, fail(true));
        assert!(d.deadline().unwrap() <= t + MAX_POLICY_DELAY);
    }

    #[test]
    fn window_zero_means_one_record_per_job_whatever_batch_max() {
        let t = Instant::now();
        let mut d = dispatcher(DispatchPolicy {
            batch_max: 50,
            ..policy(8, 0)
        });
        for obj in 0..5 {
            d.push(t, record(obj, 0));
        }
        let jobs = drain(&mut d, t);
        assert_eq!(jobs.len(), 5);
        assert!(jobs.iter().all(|j| j.records.len() == 1));
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn batch_window_is_measured_from_its_first_record() {
        let t = Instant::now();
        let window = Duration::from_millis(100);
        let mut d = dispatcher(batching(window, 10));
        d.push(t, record(1, 0));
        assert_eq!(d.deadline(), Some(t + window));
        d.push(t + 50 * MS, record(2, 0));
        d.push(t + 60 * MS, record(1, 1));
        assert_eq!(
            d.deadline(),
            Some(t + window),
            "later records do not extend it"
        );
        assert!(d.next_job(t + 99 * MS).is_none());
        let job = d.next_job(t + window).unwrap();
        assert_eq!(ids(&job.records), vec![(1, 0), (2, 0), (1, 1)]);
        assert_eq!(d.deadline(), None);
        // The next record opens a new window.
        d.push(t + 500 * MS, record(3, 0));
        assert_eq!(d.deadline(), Some(t + 600 * MS));
    }

    #[test]
    fn batch_max_closes_a_batch_early() {
        let t = Instant::now();
        let mut d = dispatcher(batching(Duration::from_secs(1), 10));
        for i in 0..25 {
            d.push(t, record(i % 7, i));
        }
        let jobs = drain(&mut d, t);
        assert_eq!(
            jobs.iter().map(|j| j.records.len()).collect::<Vec<_>>(),
            vec![10],
            "objects of the first batch hold their later records back"
        );
        assert_eq!(
            ids(&jobs[0].records),
            (0..10).map(|i| (i % 7, i)).collect::<Vec<_>>()
        );
        // Records 10..25 all belong to objects held by the first job: they
        // wait (no batch is collecting, so no deadline), and enter a batch
        // when it completes.
        assert_eq!(d.deadline(), None);
        assert_eq!(d.queued(), 15);
        // Released in the first batch's object order (0..7): objects 0-3
        // bring 9 records, object 4 its first and fills the batch (10); its
        // record 18 waits for that batch. Objects 5 and 6 open a third one.
        let t1 = t + 10 * MS;
        d.complete(t1, jobs[0].id, JobOutcome::Success);
        let jobs = drain(&mut d, t1);
        assert_eq!(jobs.len(), 1);
        let second: Vec<usize> = ids(&jobs[0].records).iter().map(|r| r.1).collect();
        assert_eq!(second, vec![10, 11, 14, 15, 16, 17, 21, 22, 23, 24]);
        assert_eq!(d.deadline(), Some(t1 + Duration::from_secs(1)));
        d.complete(t + 20 * MS, jobs[0].id, JobOutcome::Success);
        // Record 18 joins the collecting batch; its window still runs from t1.
        assert!(drain(&mut d, t + 20 * MS).is_empty());
        let jobs = drain(&mut d, t1 + Duration::from_secs(1));
        let third: Vec<usize> = ids(&jobs[0].records).iter().map(|r| r.1).collect();
        assert_eq!(third, vec![12, 13, 18, 19, 20], "push order");
        d.complete(t + Duration::from_secs(2), jobs[0].id, JobOutcome::Success);
        assert!(d.is_idle());
    }

    #[test]
    fn batches_respect_objects_held_by_running_or_retrying_jobs() {
        let t = Instant::now();
        let window = Duration::from_millis(100);
        let mut d = dispatcher(batching(window, 100));
        d.push(t, record(1, 0));
        let first = d.next_job(t + window).unwrap();
        // Object 1 is running; its next record waits, object 2 batches.
        d.push(t + window, record(1, 1));
        d.push(t + window, record(2, 0));
        let second = d.next_job(t + 2 * window).unwrap();
        assert_eq!(ids(&second.records), vec![(2, 0)]);
        // The first job fails: while it waits to retry, object 1 stays held.
        d.complete(t + 2 * window, first.id, fail(true));
        d.push(t + 2 * window, record(3, 0));
        let later = t + 3 * window;
        let jobs = drain(&mut d, later);
        let started: Vec<_> = jobs.iter().flat_map(|j| ids(&j.records)).collect();
        assert!(!started.contains(&(1, 1)), "{started:?}");
        assert!(started.contains(&(3, 0)), "{started:?}");
        // Retry, succeed; then (1, 1) enters a new batch with its own window.
        let mut now = later;
        let retry = loop {
            if let Some(job) = d.next_job(now) {
                break job;
            }
            now = d.deadline().unwrap();
        };
        assert_eq!((ids(&retry.records), retry.attempt), (vec![(1, 0)], 2));
        d.complete(now, retry.id, JobOutcome::Success);
        assert_eq!(d.deadline(), Some(now + window));
        assert!(d.next_job(now).is_none());
        let job = d.next_job(now + window).unwrap();
        assert_eq!(ids(&job.records), vec![(1, 1)]);
    }

    #[test]
    fn released_records_join_the_open_batch_in_push_order() {
        let t = Instant::now();
        let window = Duration::from_millis(100);
        let mut d = dispatcher(batching(window, 100));
        d.push(t, record(1, 0));
        let first = d.next_job(t + window).unwrap();
        d.push(t + window, record(1, 1)); // waits for `first`
        d.push(t + window, record(2, 0)); // opens a batch
        d.complete(t + window + MS, first.id, JobOutcome::Success);
        let job = d.next_job(t + 2 * window).unwrap();
        assert_eq!(ids(&job.records), vec![(1, 1), (2, 0)]);
    }

    #[test]
    fn a_given_up_batch_returns_all_its_records() {
        let t = Instant::now();
        let mut d = dispatcher(DispatchPolicy {
            retries: 0,
            ..batching(Duration::from_millis(10), 100)
        });
        d.push(t, record(1, 0));
        d.push(t, record(2, 0));
        d.push(t, record(1, 1));
        let job = d.next_job(t + 10 * MS).unwrap();
        let g = d.complete(t + 10 * MS, job.id, fail(true)).unwrap();
        assert_eq!(ids(&g.records), vec![(1, 0), (2, 0), (1, 1)]);
        assert!(d.is_idle());
    }

    #[test]
    fn flush_batch_closes_the_window_early() {
        let t = Instant::now();
        let mut d = dispatcher(batching(Duration::from_secs(60), 100));
        d.push(t, record(1, 0));
        assert!(d.next_job(t).is_none());
        d.flush_batch();
        assert_eq!(d.next_job(t).unwrap().records.len(), 1);
        d.flush_batch(); // nothing collecting: no-op
        assert!(d.next_job(t).is_none());
    }

    /// Every event delivered exactly once, in per-object order, across
    /// batches, failures and retries.
    #[test]
    fn batching_delivers_every_event_exactly_once() {
        for seed in 0..5u64 {
            let mut rng = Rng::new(seed);
            let mut d = Dispatcher::new(
                DispatchPolicy {
                    queue_events: 200,
                    ..batching(Duration::from_millis(50), 16)
                },
                Rng::new(seed),
            );
            let mut now = Instant::now();
            let total = 1000;
            let mut counts = [0usize; 20];
            let mut delivered: BTreeMap<(usize, usize), usize> = BTreeMap::new();
            let mut last = vec![None::<usize>; 20];
            let mut running: Vec<Job> = Vec::new();
            let mut pushed = 0;
            let mut max_batch = 0;
            while pushed < total || !d.is_idle() {
                while pushed < total && d.has_room() && rng.below(4) > 0 {
                    let obj = rng.index(20);
                    d.push(now, record(obj, counts[obj]));
                    counts[obj] += 1;
                    pushed += 1;
                }
                for job in drain(&mut d, now) {
                    assert!(job.records.len() <= 16);
                    max_batch = max_batch.max(job.records.len());
                    running.push(job);
                }
                // Objects never overlap between running jobs.
                let mut seen = std::collections::HashSet::new();
                for job in &running {
                    let objs: std::collections::HashSet<usize> =
                        ids(&job.records).iter().map(|r| r.0).collect();
                    for o in objs {
                        assert!(seen.insert(o), "object {o} in two running jobs");
                    }
                }
                if running.is_empty() || rng.below(3) == 0 {
                    now += Duration::from_millis(1 + rng.below(30));
                    if running.is_empty() {
                        if let Some(at) = d.deadline() {
                            now = now.max(at);
                        }
                    }
                    continue;
                }
                let job = running.swap_remove(rng.index(running.len()));
                let outcome = if rng.below(5) == 0 {
                    fail(true)
                } else {
                    JobOutcome::Success
                };
                let ok = outcome == JobOutcome::Success;
                let gave = d.complete(now, job.id, outcome);
                if ok || gave.is_some() {
                    for (obj, n) in ids(&job.records) {
                        *delivered.entry((obj, n)).or_default() += 1;
                        assert_eq!(last[obj].map_or(0, |l| l + 1), n, "object {obj} order");
                        last[obj] = Some(n);
                    }
                }
            }
            assert_eq!(delivered.len(), total);
            assert!(delivered.values().all(|&c| c == 1));
            assert!(max_batch > 1, "seed {seed}: never batched");
        }
    }

    #[test]
    fn policy_from_config() {
        let delivery = DeliveryConfig {
            coalesce: false,
            max_concurrent: 4,
            retries: 3,
            batch_window: Duration::from_secs(2),
            batch_max: 50,
            on_failure: crate::config::OnFailure::Log,
            queue_events: None,
        };
        let p = DispatchPolicy::from_config(&delivery, 4096);
        assert_eq!(p.queue_events, 4096);
        assert_eq!((p.backoff_base, p.backoff_cap), (BACKOFF_BASE, BACKOFF_CAP));
        assert_eq!((p.max_concurrent, p.retries, p.batch_max), (4, 3, 50));
        let p = DispatchPolicy::from_config(
            &DeliveryConfig {
                coalesce: false,
                queue_events: Some(10),
                ..delivery
            },
            4096,
        );
        assert_eq!(p.queue_events, 10);
    }

    fn coalescing(window: Duration) -> DispatchPolicy {
        DispatchPolicy {
            coalesce: true,
            batch_window: window,
            ..policy(1, 3)
        }
    }

    #[test]
    fn coalesce_replaces_what_waits_behind_a_running_job_and_keeps_order() {
        let now = Instant::now();
        let mut d = dispatcher(DispatchPolicy {
            max_concurrent: 4,
            ..coalescing(Duration::ZERO)
        });
        d.push(now, record(1, 0));
        let first = drain(&mut d, now);
        assert_eq!(ids(&first[0].records), [(1, 0)]);
        // Three more of object 1 while its first job runs: the last wins.
        for n in 1..=3 {
            d.push(now, record(1, n));
        }
        d.push(now, record(2, 9));
        let replaced = d.take_replaced();
        assert_eq!(ids(&replaced), [(1, 1), (1, 2)]);
        assert_eq!(d.queued(), 2, "the newest of object 1 and object 2's");
        assert!(d.complete(now, first[0].id, JobOutcome::Success).is_none());
        let next = drain(&mut d, now);
        let got: Vec<_> = next.iter().flat_map(|j| ids(&j.records)).collect();
        assert!(got.contains(&(1, 3)) && got.contains(&(2, 9)), "{got:?}");
        let line = next
            .iter()
            .flat_map(|j| j.records.iter())
            .find(|r| r.meta.uid == "uid-1")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&line.line).unwrap();
        assert_eq!(v["coalesced"], 2, "{v}");
        assert_eq!(line.coalesced, 2);
    }

    #[test]
    fn coalesce_replaces_in_a_job_that_never_ran_never_in_one_that_did() {
        let now = Instant::now();
        let mut d = dispatcher(coalescing(Duration::ZERO));
        d.push(now, record(1, 0));
        d.push(now, record(2, 0));
        // Object 2's job waits for the only slot: replaced in place.
        let running = drain(&mut d, now);
        assert_eq!(running.len(), 1);
        d.push(now, record(2, 1));
        assert_eq!(ids(&d.take_replaced()), [(2, 0)]);
        // Object 1's job runs: the new record waits instead.
        d.push(now, record(1, 1));
        assert!(d.take_replaced().is_empty());
        // A failed job waiting to retry has run: nothing replaces its record.
        assert!(d.complete(now, running[0].id, fail(true)).is_none());
        d.push(now, record(1, 2));
        assert_eq!(ids(&d.take_replaced()), [(1, 1)], "only the waiting one");
    }

    #[test]
    fn coalesce_in_the_collecting_batch_and_off_by_default() {
        let now = Instant::now();
        let mut d = dispatcher(coalescing(Duration::from_secs(1)));
        d.push(now, record(1, 0));
        d.push(now, record(2, 0));
        d.push(now, record(1, 1));
        assert_eq!(ids(&d.take_replaced()), [(1, 0)]);
        let jobs = drain(&mut d, now + Duration::from_secs(1));
        assert_eq!(ids(&jobs[0].records), [(1, 1), (2, 0)]);
        let mut plain = dispatcher(policy(1, 3));
        plain.push(now, record(1, 0));
        plain.push(now, record(1, 1));
        assert!(plain.take_replaced().is_empty());
        assert_eq!(plain.queued(), 2);
    }
}

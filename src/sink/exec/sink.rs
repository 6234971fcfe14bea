//! The exec sink: the scheduler decides which records run when; each job is
//! one `HookRun` with the records on stdin.

use super::{hook_env, HookOutcome, HookRun, HookSpec, Leftovers, SpawnOptions};
use crate::config::ExecSinkConfig;
use crate::rand::Rng;
use crate::sink::delivery::Delivery;
use crate::sink::dispatch::{Job, JobOutcome};
use crate::sink::{EventMeta, LatencySample, SinkCtx};
use crate::state::AckRef;
use mio::Token;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Output a run may log per stream.
const OUTPUT_CAP: usize = 64 << 10;

struct Active {
    job: Job,
    run: HookRun,
}

pub struct ExecSink {
    name: String,
    spec: HookSpec,
    delivery: Delivery,
    active: Vec<Active>,
    /// Jobs whose hook could not even be spawned (id, reason, records),
    /// completed on the next poll (so every completion goes through one
    /// place).
    spawn_failed: Vec<(u64, String, usize)>,
    runs: HookRunCounts,
    /// Spawn → exit of every hook that ran.
    run_durations: LatencySample,
}

/// How hook runs ended, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookResult {
    Success,
    /// Exited with a non-zero code.
    Failed,
    /// Killed by a signal kwatchd did not send for a timeout.
    Signalled,
    TimedOut,
    SpawnFailed,
    StatusLost,
}

impl HookResult {
    pub const ALL: [HookResult; 6] = [
        HookResult::Success,
        HookResult::Failed,
        HookResult::Signalled,
        HookResult::TimedOut,
        HookResult::SpawnFailed,
        HookResult::StatusLost,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HookResult::Success => "success",
            HookResult::Failed => "failed",
            HookResult::Signalled => "signalled",
            HookResult::TimedOut => "timed_out",
            HookResult::SpawnFailed => "spawn_failed",
            HookResult::StatusLost => "status_lost",
        }
    }

    fn of(outcome: &HookOutcome) -> HookResult {
        match outcome {
            HookOutcome::Exited { code: 0 } => HookResult::Success,
            HookOutcome::Exited { .. } => HookResult::Failed,
            HookOutcome::Signalled { .. } => HookResult::Signalled,
            HookOutcome::TimedOut { .. } => HookResult::TimedOut,
            HookOutcome::SpawnFailed { .. } => HookResult::SpawnFailed,
            HookOutcome::StatusLost { .. } => HookResult::StatusLost,
        }
    }
}

/// Hook runs by result, indexed by `HookResult as usize`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HookRunCounts(pub [u64; HookResult::ALL.len()]);

impl HookRunCounts {
    pub fn get(&self, result: HookResult) -> u64 {
        self.0[result as usize]
    }
}

impl std::fmt::Debug for ExecSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSink")
            .field("name", &self.name)
            .field("running", &self.active.len())
            .finish()
    }
}

impl ExecSink {
    pub fn new(name: &str, config: &ExecSinkConfig, daemon_queue_events: usize, rng: Rng) -> Self {
        ExecSink {
            name: name.to_owned(),
            spec: HookSpec {
                sink: name.to_owned(),
                command: config.command.clone(),
                working_dir: config.working_dir.clone(),
                env: config
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                timeout: config.timeout,
                kill_grace: config.kill_grace,
                output_cap: OUTPUT_CAP,
                leftovers: if config.kill_process_group {
                    Leftovers::Kill
                } else {
                    Leftovers::Keep
                },
            },
            delivery: Delivery::new(name, &config.delivery, daemon_queue_events, rng),
            active: Vec::new(),
            spawn_failed: Vec::new(),
            runs: HookRunCounts::default(),
            run_durations: LatencySample::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn has_room(&self) -> bool {
        self.delivery.has_room()
    }

    pub fn push(&mut self, now: Instant, line: &[u8], meta: Option<&Rc<EventMeta>>, ack: AckRef) {
        self.delivery.push(now, line, meta, ack);
    }

    /// Moves the refs of finished records to `out`.
    pub fn take_acks(&mut self, out: &mut Vec<AckRef>) {
        self.delivery.take_acks(out);
    }

    pub fn poll(&mut self, ctx: &mut SinkCtx<'_>) {
        let now = ctx.now;
        for a in &mut self.active {
            if a.run.deadline().is_some_and(|d| d <= now) {
                a.run.on_timer(now, ctx.registry);
            }
        }
        self.complete_finished(now);
        while let Some(job) = self.delivery.next_job(now) {
            self.start(job, ctx);
        }
        // A spawn failure completes at once; its retry waits for backoff.
        self.complete_finished(now);
    }

    fn complete_finished(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.active.len() {
            let Some(outcome) = self.active[i].run.outcome() else {
                i += 1;
                continue;
            };
            let outcome = outcome.clone();
            self.runs.0[HookResult::of(&outcome) as usize] += 1;
            let a = self.active.swap_remove(i);
            self.run_durations
                .record(now.saturating_duration_since(a.run.started()));
            let result = if outcome.success() {
                JobOutcome::Success
            } else {
                log::warn!(
                    "{}: hook failed (attempt {}): {outcome}",
                    a.run.label(),
                    a.job.attempt
                );
                JobOutcome::Failed {
                    retryable: !matches!(outcome, HookOutcome::SpawnFailed { .. }),
                    retry_after: None,
                    reason: outcome.to_string(),
                }
            };
            self.finish(now, a.job.id, result, a.job.records.len());
        }
        for (id, reason, records) in std::mem::take(&mut self.spawn_failed) {
            self.runs.0[HookResult::SpawnFailed as usize] += 1;
            let failed = JobOutcome::Failed {
                // A missing or unrunnable command may be fixed on disk while
                // we back off; fd exhaustion passes.
                retryable: true,
                retry_after: None,
                reason,
            };
            self.finish(now, id, failed, records);
        }
    }

    fn finish(&mut self, now: Instant, job: u64, outcome: JobOutcome, records: usize) {
        self.delivery.complete(now, job, outcome, records);
    }

    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    pub fn delivery_mut(&mut self) -> &mut Delivery {
        &mut self.delivery
    }

    pub fn hook_runs(&self) -> HookRunCounts {
        self.runs
    }

    /// How long hooks ran (spawn → exit).
    pub fn run_durations(&self) -> &LatencySample {
        &self.run_durations
    }

    /// Counts and hook start latency, for the log at shutdown.
    pub fn summary(&self) -> String {
        self.delivery
            .summary("hook start latency (event read → child spawned)")
    }

    fn start(&mut self, job: Job, ctx: &mut SinkCtx<'_>) {
        let Some(first) = job.records.first() else {
            self.spawn_failed.push((job.id, "empty job".into(), 0));
            return;
        };
        let meta = first.meta.clone();
        let first = first.clone();
        let mut stdin = Vec::with_capacity(job.records.iter().map(|r| r.line.len()).sum());
        for r in job.records.iter() {
            stdin.extend_from_slice(&r.line);
        }
        let env = hook_env(&meta, job.records.len(), &self.spec);
        let mut label = format!(
            "sink {}, watch {}, {}",
            self.name,
            meta.watch,
            object_name(&meta)
        );
        if job.records.len() > 1 {
            label.push_str(&format!(" and {} more", job.records.len() - 1));
        }
        let options = SpawnOptions::new(&self.spec, &env, label).stdin(stdin);
        match HookRun::spawn(options, ctx.registry, ctx.tokens, ctx.now) {
            Ok(run) => {
                let latency = Instant::now().saturating_duration_since(first.received);
                self.delivery.record_latency(latency);
                log::debug!(
                    "{}: hook started (pid {}), {:.3} ms after the event was read",
                    run.label(),
                    run.pid(),
                    latency.as_secs_f64() * 1e3
                );
                self.active.push(Active { job, run });
            }
            Err(e) => {
                log::error!("sink {}: {e}", self.name);
                self.spawn_failed
                    .push((job.id, e.to_string(), job.records.len()));
            }
        }
    }

    pub fn on_ready(&mut self, token: Token, ctx: &mut SinkCtx<'_>) -> bool {
        match self.active.iter_mut().find(|a| a.run.owns(token)) {
            Some(a) => {
                a.run.on_ready(ctx.registry, token);
                true
            }
            None => false,
        }
    }

    pub fn on_sigchld(&mut self, ctx: &mut SinkCtx<'_>) {
        for a in &mut self.active {
            a.run.on_sigchld(ctx.registry);
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        let runs = self.active.iter().filter_map(|a| a.run.deadline());
        runs.chain(self.delivery.deadline()).min()
    }

    pub fn pending(&self) -> usize {
        self.delivery.pending()
    }

    pub fn abort(&mut self, ctx: &mut SinkCtx<'_>) {
        for a in &mut self.active {
            a.run.abort(ctx.registry);
        }
        // Give the killed groups a moment to be reaped, without blocking long.
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until && self.active.iter().any(|a| a.run.outcome().is_none()) {
            for a in &mut self.active {
                a.run.on_sigchld(ctx.registry);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn object_name(meta: &EventMeta) -> String {
    if meta.namespace.is_empty() {
        meta.name.clone()
    } else {
        format!("{}/{}", meta.namespace, meta.name)
    }
}

//! Where events go. Each sink owns a bounded queue; the daemon stops reading
//! the watches that feed a full sink until it has room again.

pub mod dead_letter;
pub mod delivery;
pub mod dispatch;
pub mod exec;
pub mod failure;
pub mod file;
pub mod gate;
pub mod hold;
pub mod latency;
pub mod nats;
pub mod record;
pub mod webhook;

pub use dead_letter::DeadLetter;
pub use delivery::DeliveryCounts;
pub use dispatch::{DispatchPolicy, Dispatcher, GaveUp, Job, JobOutcome};
pub use exec::ExecSink;
pub use exec::{HookResult, HookRunCounts};
pub use file::{FileSink, SyncPolicy};
pub use gate::Gate;
pub use hold::{Hold, Sink};
pub use latency::LatencySample;
pub use nats::NatsSink;
pub use record::{EventMeta, FilteredFields, QueuedRecord, RecordWriter};
pub use webhook::WebhookSink;

use crate::net::Resolver;
use crate::state::AckRef;
use crate::tokens::TokenAllocator;
use mio::{Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

/// How much a sink may hold before the watches feeding it pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBound {
    pub events: usize,
    pub bytes: usize,
}

/// What a sink may use while the loop drives it.
pub struct SinkCtx<'a> {
    pub registry: &'a Registry,
    pub tokens: &'a mut TokenAllocator,
    pub resolver: &'a mut Resolver,
    pub now: Instant,
}

/// What status and metrics show of a sink.
#[derive(Debug, Clone, Copy)]
pub struct SinkStats<'a> {
    /// `file`, `stdout`, `exec`, `webhook` or `nats`.
    pub kind: &'static str,
    /// Events accepted and not yet delivered (queued or in flight).
    pub queue_depth: usize,
    pub counts: DeliveryCounts,
    /// Event read → written (file, stdout), → hook spawned (exec) or → 2xx
    /// (webhook).
    pub latency: Option<&'a LatencySample>,
    /// Exec sinks only.
    pub hook_runs: Option<HookRunCounts>,
    /// Exec sinks only: spawn → exit of each hook run.
    pub hook_run_durations: Option<&'a LatencySample>,
    /// NATS sinks only: the connection and the duplicates acknowledged.
    pub nats: Option<nats::NatsStats<'a>>,
}

/// What a configured sink is. An enum, not a trait object: the set of sink
/// types is closed and the loop drives each variant the same way.
#[derive(Debug)]
pub enum SinkKind {
    /// A file or standard output.
    File(Box<FileSink>),
    Exec(Box<ExecSink>),
    Webhook(Box<WebhookSink>),
    /// A NATS JetStream stream.
    Nats(Box<NatsSink>),
}

impl SinkKind {
    pub fn name(&self) -> &str {
        match self {
            SinkKind::File(s) => s.name(),
            SinkKind::Exec(s) => s.name(),
            SinkKind::Webhook(s) => s.name(),
            SinkKind::Nats(s) => s.delivery().sink(),
        }
    }

    /// True while the queue is under its bound.
    pub fn has_room(&self) -> bool {
        match self {
            SinkKind::File(s) => s.has_room(),
            SinkKind::Exec(s) => s.has_room(),
            SinkKind::Webhook(s) => s.has_room(),
            SinkKind::Nats(s) => s.delivery().has_room(),
        }
    }

    /// True when it needs each event's `EventMeta` (building one costs a
    /// few allocations, so watches feeding only files skip it).
    pub fn wants_meta(&self) -> bool {
        match self {
            SinkKind::File(_) => false,
            SinkKind::Exec(_) | SinkKind::Webhook(_) | SinkKind::Nats(_) => true,
        }
    }

    /// Queues one complete record (a JSON line with its newline); `meta` is
    /// set when `wants_meta` said so.
    pub fn push(&mut self, now: Instant, line: &[u8], meta: Option<&Rc<EventMeta>>, ack: AckRef) {
        match self {
            SinkKind::File(s) => s.push(now, line, ack),
            SinkKind::Exec(s) => s.push(now, line, meta, ack),
            SinkKind::Webhook(s) => s.push(now, line, meta, ack),
            SinkKind::Nats(s) => s.delivery_mut().push(now, line, meta, ack),
        }
    }

    /// Moves the refs of records that are final (written, delivered, or
    /// given up on for good) to `out`, for the watches' ledgers.
    pub fn take_acks(&mut self, out: &mut Vec<AckRef>) {
        match self {
            SinkKind::File(s) => s.take_acks(out),
            SinkKind::Exec(s) => s.take_acks(out),
            SinkKind::Webhook(s) => s.take_acks(out),
            SinkKind::Nats(s) => s.delivery_mut().take_acks(out),
        }
    }

    /// The file sink behind this sink, if it is one: a watch whose only sink
    /// is a file renders records straight into its queue.
    pub fn as_file_mut(&mut self) -> Option<&mut FileSink> {
        match self {
            SinkKind::File(s) => Some(s),
            SinkKind::Exec(_) | SinkKind::Webhook(_) | SinkKind::Nats(_) => None,
        }
    }

    /// From now on acts on a record only once the state store's gate lets
    /// it through ([`SinkKind::pass`]): the daemon's sinks, not tests' or tools'.
    pub fn hold_for_store(&mut self) {
        match self {
            SinkKind::File(s) => s.hold_for_store(),
            SinkKind::Exec(s) => s.delivery_mut().hold_for_store(),
            SinkKind::Webhook(s) => s.delivery_mut().hold_for_store(),
            SinkKind::Nats(s) => s.delivery_mut().hold_for_store(),
        }
    }

    /// After a turn's pushes: they wait for store batch `wait` (if they
    /// carry new objects), and what waited for batches up to `committed`
    /// may be acted on (see [`Gate::pass`]).
    pub fn pass(&mut self, now: Instant, wait: Option<u64>, committed: u64) {
        match self {
            SinkKind::File(s) => s.gate_mut().pass(wait, committed),
            SinkKind::Exec(s) => s.delivery_mut().pass(now, wait, committed),
            SinkKind::Webhook(s) => s.delivery_mut().pass(now, wait, committed),
            SinkKind::Nats(s) => s.delivery_mut().pass(now, wait, committed),
        }
    }

    /// Does what can be done now without blocking: writes, starts and
    /// finishes deliveries, handles its timers.
    pub fn poll(&mut self, ctx: &mut SinkCtx<'_>) {
        match self {
            SinkKind::File(s) => s.flush(ctx.now, ctx.registry),
            SinkKind::Exec(s) => s.poll(ctx),
            SinkKind::Webhook(s) => s.poll(ctx),
            SinkKind::Nats(s) => s.poll(ctx),
        }
    }

    /// A poll event for `token`; false when the token is not this sink's.
    pub fn on_ready(&mut self, token: Token, ctx: &mut SinkCtx<'_>) -> bool {
        match self {
            // Room in a full pipe: the next `poll` writes.
            SinkKind::File(s) => s.token() == token,
            SinkKind::Exec(s) => s.on_ready(token, ctx),
            SinkKind::Webhook(s) => s.on_ready(token, ctx),
            SinkKind::Nats(s) => s.on_ready(token, ctx),
        }
    }

    /// True when resolver query `id` is this sink's.
    pub fn owns_query(&self, id: u64) -> bool {
        match self {
            SinkKind::Webhook(s) => s.owns_query(id),
            SinkKind::Nats(s) => s.client().owns_query(id),
            SinkKind::File(_) | SinkKind::Exec(_) => false,
        }
    }

    /// The answer to a query `owns_query` claimed.
    pub fn on_resolved(
        &mut self,
        id: u64,
        result: io::Result<Vec<SocketAddr>>,
        ctx: &mut SinkCtx<'_>,
    ) {
        match self {
            SinkKind::Webhook(s) => s.on_resolved(id, result, ctx),
            SinkKind::Nats(s) => s.on_resolved(id, result, ctx),
            SinkKind::File(_) | SinkKind::Exec(_) => {}
        }
    }

    /// SIGCHLD arrived: some child of the daemon may have exited.
    pub fn on_sigchld(&mut self, ctx: &mut SinkCtx<'_>) {
        if let SinkKind::Exec(s) = self {
            s.on_sigchld(ctx);
        }
    }

    /// When `poll` should run again even if nothing happens.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            SinkKind::File(s) => s.retry_at(),
            SinkKind::Exec(s) => s.deadline(),
            SinkKind::Webhook(s) => s.deadline(),
            SinkKind::Nats(s) => s.deadline(),
        }
    }

    /// Events accepted and not yet delivered (queued or in flight).
    pub fn pending(&self) -> usize {
        match self {
            SinkKind::File(s) => s.queued(),
            SinkKind::Exec(s) => s.pending(),
            SinkKind::Webhook(s) => s.pending(),
            SinkKind::Nats(s) => s.pending(),
        }
    }

    pub fn stats(&self) -> SinkStats<'_> {
        match self {
            SinkKind::File(s) => SinkStats {
                kind: if s.is_stdout() { "stdout" } else { "file" },
                queue_depth: s.queued(),
                counts: DeliveryCounts {
                    delivered: s.delivered(),
                    retries: s.retries(),
                    given_up: 0,
                    coalesced: 0,
                },
                latency: Some(s.latency()),
                hook_runs: None,
                hook_run_durations: None,
                nats: None,
            },
            SinkKind::Exec(s) => SinkStats {
                kind: "exec",
                queue_depth: s.pending(),
                counts: s.delivery().counts(),
                latency: Some(s.delivery().latency()),
                hook_runs: Some(s.hook_runs()),
                hook_run_durations: Some(s.run_durations()),
                nats: None,
            },
            SinkKind::Webhook(s) => SinkStats {
                kind: "webhook",
                queue_depth: s.pending(),
                counts: s.delivery().counts(),
                latency: Some(s.delivery().latency()),
                hook_runs: None,
                hook_run_durations: None,
                nats: None,
            },
            SinkKind::Nats(s) => SinkStats {
                kind: "nats",
                queue_depth: s.pending(),
                counts: s.counts(),
                latency: Some(s.delivery().latency()),
                hook_runs: None,
                nats: Some(s.nats_stats()),
                hook_run_durations: None,
            },
        }
    }

    /// Closes and reopens output files (after log rotation).
    pub fn reopen(&mut self) {
        if let SinkKind::File(s) = self {
            s.reopen();
        }
    }

    /// One line for the log at shutdown: what was delivered, and how fast.
    pub fn summary(&self) -> String {
        match self {
            SinkKind::File(s) => format!("{} events written to {}", s.delivered(), s.describe()),
            SinkKind::Exec(s) => s.summary(),
            SinkKind::Webhook(s) => s.summary(),
            SinkKind::Nats(s) => s.summary(),
        }
    }

    /// Shutdown ran out of time: stop what is running (kill hooks, close
    /// connections). What was not delivered is reported by the caller.
    pub fn abort(&mut self, ctx: &mut SinkCtx<'_>) {
        match self {
            SinkKind::File(_) => {}
            SinkKind::Exec(s) => s.abort(ctx),
            SinkKind::Webhook(s) => s.abort(ctx),
            SinkKind::Nats(s) => s.abort(ctx),
        }
    }
}

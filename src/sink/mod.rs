//! Where events go. Each sink owns a bounded queue; the daemon stops reading
//! the watches that feed a full sink until it has room again.

pub mod dead_letter;
pub mod dispatch;
pub mod file;
pub mod record;

pub use dead_letter::DeadLetter;
pub use dispatch::{DispatchPolicy, Dispatcher, GaveUp, Job, JobOutcome};
pub use file::FileSink;
pub use record::{EventMeta, QueuedRecord, RecordWriter};

use mio::Registry;
use std::time::Instant;

/// How much a sink may hold before the watches feeding it pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBound {
    pub events: usize,
    pub bytes: usize,
}

/// A configured sink. An enum, not a trait object: the set of sink types is
/// closed and each variant's flush is driven by the loop.
#[derive(Debug)]
pub enum Sink {
    File(FileSink),
}

impl Sink {
    pub fn name(&self) -> &str {
        match self {
            Sink::File(s) => s.name(),
        }
    }

    /// True while the queue is under its bound.
    pub fn has_room(&self) -> bool {
        match self {
            Sink::File(s) => s.has_room(),
        }
    }

    /// Queues one complete record (a JSON line with its newline).
    pub fn push(&mut self, record: &[u8]) {
        match self {
            Sink::File(s) => s.push(record),
        }
    }

    /// Delivers what it can without blocking.
    pub fn flush(&mut self, now: Instant, registry: &Registry) {
        match self {
            Sink::File(s) => s.flush(now, registry),
        }
    }

    /// When the sink wants `flush` again although nothing new arrived.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Sink::File(s) => s.retry_at(),
        }
    }

    pub fn queued(&self) -> usize {
        match self {
            Sink::File(s) => s.queued(),
        }
    }
}

//! A sink as the loop sees it: its [`SinkKind`] and, with leader election,
//! the hold in front of it where a standby keeps what it must not deliver.
//!
//! Only the leader delivers (`daemon::leader`). A standby runs its watches
//! like the leader, so their records arrive here too: they wait in the hold,
//! in order, until either the leader advertises that it handled them (then
//! they are dropped and acknowledged as handled, so the standby's own saved
//! position follows the leader's) or this replica becomes the leader (then
//! they go to the sink, which delivers exactly what the old leader had not
//! confirmed). The hold is bounded like the sink's queue (events) and by
//! `[daemon.leader_election] standby_buffer` (bytes); a full hold stops the
//! watches feeding it from reading, so TCP pushes back on the API server.
//!
//! When a leader stops delivering (fenced, or it lost the Lease), every
//! record its sink has not started yet (see `FileSink::withdraw` and
//! `Dispatcher::withdraw`) comes back into the hold: nothing new starts,
//! running hooks and requests finish. Records keep their order: what comes
//! back goes before what the hold already has.

use super::{EventMeta, QueuedRecord, SinkKind};
use crate::state::{AckRef, Acks};
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::time::Instant;

/// A configured sink: its kind and, with leader election, its hold. The
/// methods that the hold changes are here; the rest are the kind's
/// (through `Deref`).
#[derive(Debug)]
pub struct Sink {
    kind: SinkKind,
    hold: Option<Hold>,
}

impl From<SinkKind> for Sink {
    fn from(kind: SinkKind) -> Sink {
        Sink { kind, hold: None }
    }
}

impl Deref for Sink {
    type Target = SinkKind;
    fn deref(&self) -> &SinkKind {
        &self.kind
    }
}

impl DerefMut for Sink {
    fn deref_mut(&mut self) -> &mut SinkKind {
        &mut self.kind
    }
}

impl Sink {
    /// With leader election: a hold of at most `events` records and
    /// `bytes` bytes, closed (a replica delivers once it leads).
    pub fn with_hold(mut self, events: usize, bytes: usize) -> Sink {
        self.hold = Some(Hold::new(events, bytes));
        self
    }

    /// The hold, if leader election is on.
    pub fn hold(&self) -> Option<&Hold> {
        self.hold.as_ref()
    }

    fn holding(&self) -> bool {
        self.hold.as_ref().is_some_and(|h| h.closed)
    }

    /// True while the queue (or, on a standby, the hold) is under its bound.
    pub fn has_room(&self) -> bool {
        match &self.hold {
            Some(h) if h.closed => h.has_room() && self.kind.has_room(),
            _ => self.kind.has_room(),
        }
    }

    /// Queues one complete record; on a standby it waits in the hold.
    pub fn push(&mut self, now: Instant, line: &[u8], meta: Option<&Rc<EventMeta>>, ack: AckRef) {
        match &mut self.hold {
            Some(h) if h.closed => h.push(QueuedRecord {
                line: line.to_vec(),
                meta: meta.cloned().unwrap_or_default(),
                received: now,
                ack,
                coalesced: 0,
            }),
            _ => self.kind.push(now, line, meta, ack),
        }
    }

    /// The file sink behind this sink, if it is one and delivers now (a
    /// standby's records go through `push`, into the hold).
    pub fn as_file_mut(&mut self) -> Option<&mut super::FileSink> {
        if self.holding() {
            return None;
        }
        self.kind.as_file_mut()
    }

    /// Final records: the sink's, and those the leader handled.
    pub fn take_acks(&mut self, out: &mut Vec<AckRef>) {
        self.kind.take_acks(out);
        if let Some(h) = &mut self.hold {
            h.acks.drain_into(out);
        }
    }

    /// When `poll` should run again even if nothing happens.
    pub fn deadline(&self) -> Option<Instant> {
        self.kind.deadline()
    }

    /// Records the sink accepted and has not delivered; a standby's held
    /// records are not counted (shutdown does not wait for them: they are
    /// the leader's to deliver).
    pub fn pending(&self) -> usize {
        self.kind.pending()
    }

    /// What status and metrics show: held records count as queued.
    pub fn stats(&self) -> super::SinkStats<'_> {
        let mut stats = self.kind.stats();
        stats.queue_depth += self.hold.as_ref().map_or(0, |h| h.records.len());
        stats
    }

    /// Start delivering (this replica leads): what the hold kept goes to
    /// the sink, oldest first. Or stop: every record the sink has not
    /// started comes back into the hold. No-op without a hold.
    pub fn set_delivering(&mut self, now: Instant, on: bool) {
        let Some(hold) = &mut self.hold else {
            return;
        };
        if hold.closed != on {
            return;
        }
        hold.closed = !on;
        if let SinkKind::Nats(s) = &mut self.kind {
            s.fence(!on);
        }
        if on {
            let records = std::mem::take(&mut hold.records);
            hold.bytes = 0;
            for r in records {
                match &mut self.kind {
                    SinkKind::File(f) => f.push(r.received, &r.line, r.ack),
                    SinkKind::Exec(s) => s.delivery_mut().push_record(now, r),
                    SinkKind::Webhook(s) => s.delivery_mut().push_record(now, r),
                    SinkKind::Nats(s) => s.delivery_mut().push_record(now, r),
                }
            }
            return;
        }
        let back: Vec<QueuedRecord> = match &mut self.kind {
            SinkKind::File(f) => f
                .withdraw()
                .into_iter()
                .map(|(line, ack, received)| QueuedRecord {
                    line,
                    meta: Rc::default(),
                    received,
                    ack,
                    coalesced: 0,
                })
                .collect(),
            SinkKind::Exec(s) => s.delivery_mut().withdraw(),
            SinkKind::Webhook(s) => s.delivery_mut().withdraw(),
            SinkKind::Nats(s) => s.delivery_mut().withdraw(),
        };
        hold.put_back(back);
    }

    /// Drops the held records `handled` says the leader handled, each
    /// acknowledged as final; returns how many. Unless `all`, only when
    /// records came in since the last call (the leader's advert is the
    /// same, so the records looked at then stay).
    pub fn prune(&mut self, handled: impl Fn(&AckRef) -> bool, all: bool) -> usize {
        match &mut self.hold {
            Some(h) if all || h.fresh => h.prune(handled),
            _ => 0,
        }
    }
}

/// A standby's records for one sink; see the module header.
#[derive(Debug)]
pub struct Hold {
    /// Records wait here (standby); open: the sink delivers.
    closed: bool,
    records: VecDeque<QueuedRecord>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
    /// Records dropped because the leader handled them.
    pruned: u64,
    /// Records came in since the last prune.
    fresh: bool,
    acks: Acks,
}

impl Hold {
    fn new(max_events: usize, max_bytes: usize) -> Hold {
        Hold {
            closed: true,
            records: VecDeque::new(),
            bytes: 0,
            max_events: max_events.max(1),
            max_bytes: max_bytes.max(1),
            pruned: 0,
            fresh: false,
            acks: Acks::default(),
        }
    }

    /// Records held now.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes of the records held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records dropped so far because the leader handled them.
    pub fn pruned(&self) -> u64 {
        self.pruned
    }

    fn has_room(&self) -> bool {
        self.records.len() < self.max_events && self.bytes < self.max_bytes
    }

    fn push(&mut self, record: QueuedRecord) {
        self.fresh = true;
        self.bytes += record.line.len();
        self.records.push_back(record);
    }

    /// Records a sink gave back go before those held already (they are older).
    fn put_back(&mut self, back: Vec<QueuedRecord>) {
        self.fresh |= !back.is_empty();
        for r in back.into_iter().rev() {
            self.bytes += r.line.len();
            self.records.push_front(r);
        }
    }

    fn prune(&mut self, handled: impl Fn(&AckRef) -> bool) -> usize {
        self.fresh = false;
        let before = self.records.len();
        let (acks, bytes) = (&mut self.acks, &mut self.bytes);
        self.records.retain(|r| {
            let drop = handled(&r.ack);
            if drop {
                acks.push(r.ack);
                *bytes -= r.line.len();
            }
            !drop
        });
        let n = before - self.records.len();
        self.pruned += n as u64;
        n
    }
}

#[cfg(test)]
mod tests;

//! How a sink says it is done with a record: every record carries an
//! [`AckRef`] naming its watch and the ledger entry it belongs to; the sink
//! puts the ref in its [`Acks`] outbox once the record is *final* (written,
//! delivered, or given up on and dead-lettered or logged), and the daemon
//! drains the outboxes into the watches' ledgers every loop turn.

/// The daemon's handle on a watch: its slot. Acks are routed by it.
pub type WatchKey = usize;

/// Which ledger entry a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckRef {
    pub watch: WatchKey,
    pub seq: u64,
}

/// A sink's finished records, waiting for the daemon to collect them.
#[derive(Debug, Default)]
pub struct Acks {
    done: Vec<AckRef>,
}

impl Acks {
    pub fn push(&mut self, ack: AckRef) {
        self.done.push(ack);
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Moves every finished ref to `out`, oldest first.
    pub fn drain_into(&mut self, out: &mut Vec<AckRef>) {
        out.append(&mut self.done);
    }
}

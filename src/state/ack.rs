//! How a sink says it is done with a record: every record carries an
//! [`AckRef`] naming its watch and the ledger entry it belongs to; the sink
//! puts the ref in its [`Acks`] outbox once the record is *final* (written,
//! delivered, or given up on and dead-lettered or logged), and the daemon
//! drains the outboxes into the watches' ledgers every loop turn.

use std::num::NonZeroU64;

/// The daemon's handle on a watch: its slot. Acks are routed by it.
pub type WatchKey = usize;

/// Which ledger entry a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckRef {
    pub watch: WatchKey,
    pub seq: u64,
    /// The event's resourceVersion when it is an integer (every API server
    /// since KEP-5504): a standby drops its held copy of the record once
    /// the leader advertises a handled position at or past it
    /// (`sink::hold`). `None`: never dropped that way.
    pub rv: Option<NonZeroU64>,
}

/// A resourceVersion as the integer it is on current API servers; `None`
/// for anything else (opaque versions are never compared).
pub fn integer_rv(rv: &str) -> Option<NonZeroU64> {
    if rv.is_empty()
        || rv.len() > 20
        || !rv.bytes().all(|b| b.is_ascii_digit())
        || rv.starts_with('0')
    {
        return None;
    }
    rv.parse::<u64>().ok().and_then(NonZeroU64::new)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_versions_are_integers_or_nothing() {
        assert_eq!(integer_rv("42").map(NonZeroU64::get), Some(42));
        for opaque in ["", "0", "042", "12a", "-3", "99999999999999999999999"] {
            assert_eq!(integer_rv(opaque), None, "{opaque:?}");
        }
    }
}

//! The one scheme of the loop's poll tokens: every token says which source
//! it belongs to, so `Daemon::dispatch` routes an event with one `match`
//! and no lookup table, and two kinds of source can never mistake each
//! other's events.
//!
//! ```text
//!  63      58 57                                                  0
//! ┌──────────┬─────────────────────────────────────────────────────┐
//! │   kind   │ payload, laid out by the kind                       │
//! └──────────┴─────────────────────────────────────────────────────┘
//!   Fixed       0 = signals, 1 = the waker of the helper threads
//!   Sink        a counter (sinks, hook pipes, webhook and NATS connections)
//!   Watch       connection count (38 bits) │ slot (20 bits)
//!   Metrics     0 = the listener, else a connection id
//!   Credential  cluster id (16 bits) │ plugin run counter (42 bits)
//!   Lease       a connection counter (leader election's Lease requests)
//! ```
//!
//! Counters only grow, so a token is never reused: an event fetched for a
//! closed source in the same poll batch cannot reach its successor.
//!
//! NATS sink connections are sink tokens, as webhook connections are: the
//! sink that owns one answers `on_ready`. A new source of another family
//! is a new [`Kind`] and a new [`Source`] variant with its arms in `token`
//! and `of`; the tests below check every kind against every other.

use mio::Token;

// The layout needs 64-bit tokens.
const _: () = assert!(usize::BITS == 64);

const KIND_SHIFT: u32 = 58;
const PAYLOAD_MASK: usize = (1 << KIND_SHIFT) - 1;

/// Bits of a watch token naming its slot.
const WATCH_SLOT_BITS: u32 = 20;
/// More watches than this cannot be told apart by their tokens.
pub const MAX_WATCHES: usize = 1 << WATCH_SLOT_BITS;
/// Bits of a credential token naming its cluster.
const CREDENTIAL_RUN_BITS: u32 = 42;
const CLUSTER_IDS: usize = 1 << (KIND_SHIFT - CREDENTIAL_RUN_BITS);

/// The top bits of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fixed = 0,
    Sink = 1,
    Watch = 2,
    Metrics = 3,
    Credential = 4,
    Lease = 5,
}

impl Kind {
    #[cfg(test)]
    const ALL: [Kind; 6] = [
        Kind::Fixed,
        Kind::Sink,
        Kind::Watch,
        Kind::Metrics,
        Kind::Credential,
        Kind::Lease,
    ];

    fn of(token: Token) -> Option<Kind> {
        Some(match token.0 >> KIND_SHIFT {
            0 => Kind::Fixed,
            1 => Kind::Sink,
            2 => Kind::Watch,
            3 => Kind::Metrics,
            4 => Kind::Credential,
            5 => Kind::Lease,
            _ => return None,
        })
    }

    const fn token(self, payload: usize) -> Token {
        Token(((self as usize) << KIND_SHIFT) | (payload & PAYLOAD_MASK))
    }
}

/// Who a poll event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Signal,
    /// A helper thread has news: resolver answers, or the state store's
    /// writer committed what the loop waits for (mio allows one waker per
    /// poll).
    Waker,
    /// A sink's file, hook pipe, webhook or NATS connection: the sinks are asked
    /// in turn (see [`TokenAllocator::for_sinks`]).
    Sink(usize),
    /// A connection of the watch in daemon slot `slot`; `conn` counts the
    /// watch's connections.
    Watch {
        slot: usize,
        conn: usize,
    },
    /// The metrics listener (`Metrics(0)`) or one of its connections.
    Metrics(usize),
    /// A credential plugin run's pipe or exit of cluster `cluster` (its id
    /// for the daemon's life, see `ClusterRuntime::new`).
    Credential {
        cluster: usize,
        run: usize,
    },
    /// A connection of leader election's Lease requests (a counter: a
    /// stale event of a closed one never reaches the next).
    Lease(usize),
}

impl Source {
    /// Payloads beyond their field's width wrap (counters) or are cut to
    /// it (slots and cluster ids are bounded by `MAX_WATCHES` and the
    /// daemon's own count).
    pub const fn token(self) -> Token {
        match self {
            Source::Signal => Kind::Fixed.token(0),
            Source::Waker => Kind::Fixed.token(1),
            Source::Sink(n) => Kind::Sink.token(n),
            Source::Watch { slot, conn } => {
                Kind::Watch.token((conn << WATCH_SLOT_BITS) | (slot & (MAX_WATCHES - 1)))
            }
            Source::Metrics(id) => Kind::Metrics.token(id),
            Source::Credential { cluster, run } => Kind::Credential.token(
                ((cluster & (CLUSTER_IDS - 1)) << CREDENTIAL_RUN_BITS)
                    | (run & ((1 << CREDENTIAL_RUN_BITS) - 1)),
            ),
            Source::Lease(n) => Kind::Lease.token(n),
        }
    }

    /// The source of `token`; `None` for a token no source hands out.
    pub fn of(token: Token) -> Option<Source> {
        let payload = token.0 & PAYLOAD_MASK;
        Some(match Kind::of(token)? {
            Kind::Fixed => match payload {
                0 => Source::Signal,
                1 => Source::Waker,
                _ => return None,
            },
            Kind::Sink => Source::Sink(payload),
            Kind::Watch => Source::Watch {
                slot: payload & (MAX_WATCHES - 1),
                conn: payload >> WATCH_SLOT_BITS,
            },
            Kind::Metrics => Source::Metrics(payload),
            Kind::Credential => Source::Credential {
                cluster: payload >> CREDENTIAL_RUN_BITS,
                run: payload & ((1 << CREDENTIAL_RUN_BITS) - 1),
            },
            Kind::Lease => Source::Lease(payload),
        })
    }
}

/// Hands out the tokens of one source family whose members come and go
/// (hook pipes, connections). Tokens only grow, so an event fetched for a
/// closed source can never be mistaken for a new one in the same poll
/// batch.
#[derive(Debug)]
pub struct TokenAllocator {
    kind: Kind,
    /// The next token's payload.
    next: usize,
}

impl TokenAllocator {
    /// Sink tokens: files, hook pipes, webhook connections.
    pub fn for_sinks() -> Self {
        TokenAllocator {
            kind: Kind::Sink,
            next: 0,
        }
    }

    /// The plugin runs of the cluster with id `cluster`: the id in the high
    /// bits of the payload, as `Source::Credential` lays it out.
    pub fn for_credential(cluster: usize) -> Self {
        TokenAllocator {
            kind: Kind::Credential,
            next: (cluster & (CLUSTER_IDS - 1)) << CREDENTIAL_RUN_BITS,
        }
    }

    /// Raw tokens from `first` up, for tests that own their poll.
    #[cfg(test)]
    pub fn starting_at(first: usize) -> Self {
        TokenAllocator {
            kind: Kind::Fixed,
            next: first,
        }
    }

    pub fn allocate(&mut self) -> Token {
        let t = self.kind.token(self.next);
        self.next += 1;
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One source of every kind, at the edges of its payload.
    fn samples() -> Vec<Source> {
        vec![
            Source::Signal,
            Source::Waker,
            Source::Sink(0),
            Source::Sink(PAYLOAD_MASK),
            Source::Watch { slot: 0, conn: 0 },
            Source::Watch {
                slot: MAX_WATCHES - 1,
                conn: (1 << (KIND_SHIFT - WATCH_SLOT_BITS)) - 1,
            },
            Source::Metrics(0),
            Source::Metrics(PAYLOAD_MASK),
            Source::Credential { cluster: 0, run: 0 },
            Source::Credential {
                cluster: CLUSTER_IDS - 1,
                run: (1 << CREDENTIAL_RUN_BITS) - 1,
            },
            Source::Lease(0),
            Source::Lease(PAYLOAD_MASK),
        ]
    }

    #[test]
    fn every_source_decodes_to_itself() {
        for s in samples() {
            assert_eq!(Source::of(s.token()), Some(s), "{s:?}");
        }
    }

    #[test]
    fn kinds_occupy_disjoint_ranges() {
        for s in samples() {
            let kind = Kind::of(s.token());
            assert!(kind.is_some(), "{s:?}");
            for other in Kind::ALL {
                let (lo, hi) = (other.token(0).0, other.token(PAYLOAD_MASK).0);
                let inside = (lo..=hi).contains(&s.token().0);
                assert_eq!(inside, kind == Some(other), "{s:?} vs {other:?}");
            }
        }
        // Every range is its own: no two kinds share a bit pattern.
        for (i, a) in Kind::ALL.iter().enumerate() {
            for b in &Kind::ALL[i + 1..] {
                assert!(
                    a.token(PAYLOAD_MASK).0 < b.token(0).0,
                    "{a:?} overlaps {b:?}"
                );
            }
        }
    }

    #[test]
    fn counters_only_grow_and_carry_their_owner() {
        let mut sinks = TokenAllocator::for_sinks();
        let (a, b) = (sinks.allocate(), sinks.allocate());
        assert_ne!(a, b);
        assert_eq!(Source::of(b), Some(Source::Sink(1)));
        let mut plugin = TokenAllocator::for_credential(3);
        let t = plugin.allocate();
        assert_eq!(
            Source::of(t),
            Some(Source::Credential { cluster: 3, run: 0 })
        );
        assert_eq!(
            Source::of(plugin.allocate()),
            Some(Source::Credential { cluster: 3, run: 1 })
        );
        assert_eq!(Source::of(Token(usize::MAX)), None);
        assert_eq!(Source::of(Token(2)), None, "fixed tokens are 0 and 1");
    }
}

//! The commit ledger of one watch (sans-I/O).
//!
//! Every step the watch machine reports (see `watch::Progress`) becomes an
//! entry with a sequence number, in order. An entry whose event went to `k`
//! sinks waits for `k` acks; an entry with no sink work (a bookmark, the end
//! of a list, a filtered event, a silent initial list) waits for nothing.
//! Sinks finish out of order (concurrent hooks, per-object queues), but the
//! committed point only moves over a contiguous prefix of finished entries:
//! everything up to it has been handled by every sink.
//!
//! The ledger applies the committed entries' index changes and versions to
//! its *committed* state, which is what a checkpoint holds. So the
//! checkpoint's index always matches its resourceVersion: an object whose
//! ADDED is still queued is not in it, and a relist diff after a crash
//! reports it again.

use crate::watch::index::IndexEntry;
use crate::watch::{IndexChange, Progress};
use std::collections::{HashMap, VecDeque};

/// What every sink of the watch has handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Where a restarted watch resumes; `None` until a first list has been
    /// handled completely.
    pub resource_version: Option<String>,
    /// Objects known at that version: key (uid, or namespace/name) → entry.
    pub objects: HashMap<String, IndexEntry>,
}

#[derive(Debug)]
enum Op {
    None,
    Put(String, IndexEntry),
    Remove(String),
}

#[derive(Debug)]
struct Entry {
    /// Sinks that have not finished with the entry's record.
    outstanding: u32,
    resource_version: Option<String>,
    op: Op,
}

/// Why an ack was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// No uncommitted entry has this sequence number.
    Unknown,
    /// The entry was already acked by as many sinks as it went to.
    Excess,
}

#[derive(Debug, Default)]
pub struct Ledger {
    /// The sequence number the next recorded step gets.
    next_seq: u64,
    /// Uncommitted entries; the first one has sequence `front_seq`, the
    /// others follow without gaps. Empty: `front_seq == next_seq`.
    pending: VecDeque<Entry>,
    front_seq: u64,
    committed: Committed,
    /// The committed state changed since the last `take_dirty`.
    dirty: bool,
}

impl Ledger {
    pub fn new() -> Self {
        Ledger::default()
    }

    /// A ledger starting from a checkpoint's state.
    pub fn resumed(resource_version: String, objects: HashMap<String, IndexEntry>) -> Self {
        Ledger {
            committed: Committed {
                resource_version: Some(resource_version),
                objects,
            },
            ..Ledger::default()
        }
    }

    /// The sequence number of the step being emitted: records fanned out
    /// before the step's `record` carry it.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records the step whose event went to `sinks` sinks (0: no sink
    /// work). Returns its sequence number (the one `next_seq` said).
    pub fn record(&mut self, progress: &Progress<'_>, sinks: u32) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry {
            outstanding: sinks,
            resource_version: progress.resource_version.map(str::to_owned),
            op: match progress.change {
                IndexChange::None => Op::None,
                IndexChange::Put {
                    key,
                    namespace,
                    name,
                    resource_version,
                } => Op::Put(
                    key.to_owned(),
                    IndexEntry {
                        namespace: namespace.map(str::to_owned),
                        name: name.to_owned(),
                        resource_version: resource_version.to_owned(),
                    },
                ),
                IndexChange::Remove { key } => Op::Remove(key.to_owned()),
            },
        };
        if self.pending.is_empty() && sinks == 0 {
            // Nothing ahead of it and nothing to wait for: commit at once
            // (a silent initial list of many objects never queues).
            self.apply(entry);
            self.front_seq = self.next_seq;
        } else {
            self.pending.push_back(entry);
        }
        seq
    }

    /// One sink finished with the record of entry `seq`.
    pub fn ack(&mut self, seq: u64) -> Result<(), AckError> {
        let offset = seq.checked_sub(self.front_seq).ok_or(AckError::Unknown)?;
        let entry = usize::try_from(offset)
            .ok()
            .and_then(|i| self.pending.get_mut(i))
            .ok_or(AckError::Unknown)?;
        entry.outstanding = entry.outstanding.checked_sub(1).ok_or(AckError::Excess)?;
        while self.pending.front().is_some_and(|e| e.outstanding == 0) {
            if let Some(entry) = self.pending.pop_front() {
                self.apply(entry);
                self.front_seq += 1;
            }
        }
        Ok(())
    }

    fn apply(&mut self, entry: Entry) {
        match entry.op {
            Op::None => {}
            Op::Put(key, value) => {
                self.committed.objects.insert(key, value);
                self.dirty = true;
            }
            Op::Remove(key) => {
                if self.committed.objects.remove(&key).is_some() {
                    self.dirty = true;
                }
            }
        }
        if let Some(rv) = entry.resource_version {
            if self.committed.resource_version.as_deref() != Some(rv.as_str()) {
                self.committed.resource_version = Some(rv);
                self.dirty = true;
            }
        }
    }

    pub fn committed(&self) -> &Committed {
        &self.committed
    }

    /// Steps recorded and not yet committed.
    pub fn uncommitted(&self) -> usize {
        self.pending.len()
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// True (once) when the committed state changed since the last call.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// After a failed checkpoint write: the state still needs writing.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put<'a>(key: &'a str, rv: &'a str) -> Progress<'a> {
        Progress {
            resource_version: Some(rv),
            change: IndexChange::Put {
                key,
                namespace: Some("ns"),
                name: key,
                resource_version: rv,
            },
        }
    }

    fn remove<'a>(key: &'a str, rv: &'a str) -> Progress<'a> {
        Progress {
            resource_version: Some(rv),
            change: IndexChange::Remove { key },
        }
    }

    fn rv(l: &Ledger) -> Option<&str> {
        l.committed().resource_version.as_deref()
    }

    #[test]
    fn commits_only_a_contiguous_prefix_of_fully_acked_entries() {
        let mut l = Ledger::new();
        assert_eq!(l.next_seq(), 0);
        let a = l.record(&put("a", "1"), 2);
        let b = l.record(&put("b", "2"), 1);
        let c = l.record(&put("c", "3"), 1);
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(rv(&l), None);
        // Later entries finish first: nothing moves.
        l.ack(c).unwrap();
        l.ack(b).unwrap();
        assert_eq!(rv(&l), None);
        assert!(l.committed().objects.is_empty(), "uncommitted ADDED leaked");
        // One of two sinks: still not committed.
        l.ack(a).unwrap();
        assert_eq!(rv(&l), None);
        l.ack(a).unwrap();
        assert_eq!(rv(&l), Some("3"));
        assert_eq!(l.committed().objects.len(), 3);
        assert_eq!(l.uncommitted(), 0);
        assert!(l.take_dirty());
        assert!(!l.take_dirty());
    }

    #[test]
    fn entries_without_sink_work_commit_when_everything_before_them_has() {
        let mut l = Ledger::new();
        // A silent initial list commits at once.
        l.record(
            &Progress {
                resource_version: None,
                change: IndexChange::Put {
                    key: "a",
                    namespace: None,
                    name: "a",
                    resource_version: "1",
                },
            },
            0,
        );
        l.record(&Progress::version("5"), 0);
        assert_eq!(rv(&l), Some("5"));
        assert_eq!(l.committed().objects["a"].namespace, None);
        // A delivered event, then a bookmark and a filtered event behind it.
        let ev = l.record(&remove("a", "6"), 1);
        l.record(&Progress::version("7"), 0);
        l.record(&put("b", "8"), 0);
        assert_eq!(rv(&l), Some("5"));
        assert!(l.committed().objects.contains_key("a"));
        l.ack(ev).unwrap();
        assert_eq!(rv(&l), Some("8"));
        assert!(!l.committed().objects.contains_key("a"));
        assert!(l.committed().objects.contains_key("b"));
    }

    #[test]
    fn unknown_and_excess_acks_are_refused_without_effect() {
        let mut l = Ledger::resumed("9".into(), HashMap::new());
        assert_eq!(rv(&l), Some("9"));
        assert!(!l.is_dirty(), "a resumed state is already on disk");
        assert_eq!(l.ack(0), Err(AckError::Unknown));
        let s = l.record(&put("a", "10"), 1);
        assert_eq!(l.ack(s + 1), Err(AckError::Unknown));
        l.ack(s).unwrap();
        assert_eq!(l.ack(s), Err(AckError::Unknown), "already committed");
        let t = l.record(&put("b", "11"), 1);
        l.record(&put("c", "12"), 1);
        l.ack(t).unwrap();
        let u = l.record(&put("d", "13"), 1);
        l.ack(u).unwrap();
        assert_eq!(l.ack(u), Err(AckError::Excess));
        assert_eq!(rv(&l), Some("11"));
    }

    #[test]
    fn random_ack_orders_always_commit_a_prefix() {
        use proptest::prelude::*;
        proptest!(|(sinks in proptest::collection::vec(0u32..3, 1..40), order in proptest::collection::vec(any::<u32>(), 0..200))| {
            let mut l = Ledger::new();
            let mut owed: Vec<(u64, u32)> = Vec::new();
            let rvs: Vec<String> = (0..sinks.len()).map(|i| (i + 1).to_string()).collect();
            for (i, k) in sinks.iter().enumerate() {
                let seq = l.record(&Progress::version(&rvs[i]), *k);
                owed.push((seq, *k));
            }
            for pick in order {
                let open: Vec<usize> = (0..owed.len()).filter(|i| owed[*i].1 > 0).collect();
                if open.is_empty() { break; }
                let i = open[pick as usize % open.len()];
                prop_assert!(l.ack(owed[i].0).is_ok());
                owed[i].1 -= 1;
                // The committed point is the last entry of the fully acked prefix.
                let prefix = owed.iter().take_while(|(_, k)| *k == 0).count();
                let expected = prefix.checked_sub(1).map(|p| rvs[p].as_str());
                prop_assert_eq!(rv(&l), expected);
            }
        });
    }
}

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
//! The *committed* state is what a checkpoint holds: the resourceVersion of
//! the last committed step, and the index as it was after that step. The
//! ledger keeps no second copy of the index: each uncommitted entry keeps
//! the entry its step replaced, so the committed index is the watch's index
//! with, for every key an uncommitted step touched, the value the oldest
//! such step replaced ([`Ledger::committed_view`]). Memory stays bounded by
//! the sink queues, and the checkpoint's index always matches its version:
//! an object whose ADDED is still queued is not in it, and a relist diff
//! after a crash reports it again.

use crate::watch::index::{
    format_uuid, parse_uuid, shown_version, unconfirmed_version, EntryRef, IndexEntry, ObjectIndex,
};
use crate::watch::Progress;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

/// Every ledger numbers its steps from its own base, so an ack still in a
/// sink's queue for a watch that was replaced (a reload reusing its slot)
/// can never match a step of the new watch's ledger.
static NEXT_BASE: AtomicU64 = AtomicU64::new(0);
/// Steps one ledger numbers before running into the next ledger's range
/// (2^44: five years at 100 000 events a second); 2^20 ledgers (watches
/// created by reloads) fit before the bases wrap. Running over only makes
/// a stale ack from a replaced watch conceivable, nothing else.
const SEQ_SPACE: u64 = 1 << 44;

#[derive(Debug)]
struct Entry {
    /// Sinks that have not finished with the entry's record.
    outstanding: u32,
    resource_version: Option<String>,
    /// The key the step changed, and what the index held before.
    change: Option<(String, Option<IndexEntry>)>,
}

/// Why an ack was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// No uncommitted entry has this sequence number.
    Unknown,
    /// The entry was already acked by as many sinks as it went to.
    Excess,
}

#[derive(Debug)]
pub struct Ledger {
    /// The sequence number the next recorded step gets.
    next_seq: u64,
    /// Uncommitted entries; the first one has sequence `front_seq`, the
    /// others follow without gaps. Empty: `front_seq == next_seq`.
    pending: VecDeque<Entry>,
    front_seq: u64,
    /// Where a restarted watch resumes; `None` until a first list has been
    /// handled completely.
    committed_rv: Option<String>,
    /// The committed state changed since the last `take_dirty`.
    dirty: bool,
    /// Keys whose committed entry changed since the last `take_changed`.
    changed: ChangedKeys,
}

/// Keys whose committed entry changed. A first list makes every object's
/// key one of them at once, so uids (the usual keys) are kept as their 128
/// bits rather than as strings: about a third of the memory at 250,000.
/// In order (a uid's number orders as its text does): a big save is
/// written in parts of neighbouring keys, so each transaction rewrites
/// only its own range of the store's B-tree, not pages all over it.
#[derive(Debug, Default)]
pub struct ChangedKeys {
    uids: BTreeSet<u128>,
    /// Keys that are not canonical UUIDs (objects without a uid).
    other: BTreeSet<Box<str>>,
}

impl ChangedKeys {
    fn insert(&mut self, key: &str) {
        match parse_uuid(key) {
            Some(uid) => {
                self.uids.insert(uid);
            }
            None if !self.other.contains(key) => {
                self.other.insert(key.into());
            }
            None => {}
        }
    }

    pub fn len(&self) -> usize {
        self.uids.len() + self.other.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` of the keys, taken out; the rest stay.
    fn take(&mut self, n: usize) -> ChangedKeys {
        if self.len() <= n {
            return std::mem::take(self);
        }
        let mut out = ChangedKeys::default();
        match self.uids.iter().nth(n).copied() {
            Some(first_left) => {
                let rest = self.uids.split_off(&first_left);
                out.uids = std::mem::replace(&mut self.uids, rest);
            }
            None => {
                out.uids = std::mem::take(&mut self.uids);
                let room = n - out.uids.len();
                if let Some(first_left) = self.other.iter().nth(room).cloned() {
                    let rest = self.other.split_off(&first_left);
                    out.other = std::mem::replace(&mut self.other, rest);
                }
            }
        }
        out
    }

    /// Calls `f` with each key's text, uids first, each kind in order.
    pub fn for_each(self, mut f: impl FnMut(&str)) {
        for uid in self.uids {
            let text = format_uuid(uid);
            // The text of a UUID is ASCII.
            if let Ok(key) = std::str::from_utf8(&text) {
                f(key);
            }
        }
        for key in self.other {
            f(&key);
        }
    }
}

impl Default for Ledger {
    fn default() -> Self {
        let base = NEXT_BASE.fetch_add(SEQ_SPACE, Ordering::Relaxed);
        // Sequence numbers wrap around (all arithmetic on them wraps).
        Ledger {
            next_seq: base,
            pending: VecDeque::new(),
            front_seq: base,
            committed_rv: None,
            dirty: false,
            changed: ChangedKeys::default(),
        }
    }
}

impl Ledger {
    pub fn new() -> Self {
        Ledger::default()
    }

    /// A ledger starting from a checkpoint's version (the watch's index
    /// starts from the checkpoint's objects).
    pub fn resumed(resource_version: String) -> Self {
        Ledger {
            committed_rv: Some(resource_version),
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
    pub fn record(&mut self, progress: Progress<'_>, sinks: u32) -> u64 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        if self.pending.is_empty() && sinks == 0 {
            // Nothing ahead of it and nothing to wait for: committed at
            // once, and the watch's index already shows it (a silent
            // initial list of many objects never queues).
            self.commit(progress.resource_version, progress.change.map(|c| c.key));
            self.front_seq = self.next_seq;
        } else {
            self.pending.push_back(Entry {
                outstanding: sinks,
                resource_version: progress.resource_version.map(str::to_owned),
                change: progress.change.map(|c| (c.key.to_owned(), c.previous)),
            });
        }
        seq
    }

    /// One sink finished with the record of entry `seq`.
    pub fn ack(&mut self, seq: u64) -> Result<(), AckError> {
        let offset = seq.wrapping_sub(self.front_seq);
        let entry = usize::try_from(offset)
            .ok()
            .and_then(|i| self.pending.get_mut(i))
            .ok_or(AckError::Unknown)?;
        entry.outstanding = entry.outstanding.checked_sub(1).ok_or(AckError::Excess)?;
        while self.pending.front().is_some_and(|e| e.outstanding == 0) {
            if let Some(entry) = self.pending.pop_front() {
                self.front_seq = self.front_seq.wrapping_add(1);
                let rv = entry.resource_version.as_deref();
                let key = entry.change.as_ref().map(|(k, _)| k.as_str());
                self.commit(rv, key);
            }
        }
        Ok(())
    }

    fn commit(&mut self, resource_version: Option<&str>, changed: Option<&str>) {
        if let Some(key) = changed {
            self.dirty = true;
            self.changed.insert(key);
        }
        if let Some(rv) = resource_version {
            if self.committed_rv.as_deref() != Some(rv) {
                self.committed_rv = Some(rv.to_owned());
                self.dirty = true;
            }
        }
    }

    /// The committed resourceVersion.
    pub fn committed_version(&self) -> Option<&str> {
        self.committed_rv.as_deref()
    }

    /// The committed index, given the watch's current index (which must be
    /// the one the recorded steps changed), plus the objects whose first
    /// event is not committed yet, as *unconfirmed* (see
    /// `index::unconfirmed_version`): their event may have reached a sink
    /// already, so a relist after a crash must report them (DELETED if they
    /// are gone, their state again otherwise).
    pub fn committed_view<'a>(&'a self, index: &'a ObjectIndex) -> CommittedView<'a> {
        let mut before: HashMap<&'a str, Option<&'a IndexEntry>> = HashMap::new();
        // For new objects an uncommitted step removed again: who they were.
        let mut last_known: HashMap<&'a str, &'a IndexEntry> = HashMap::new();
        for entry in &self.pending {
            if let Some((key, previous)) = &entry.change {
                // The oldest uncommitted change of a key holds its
                // committed value.
                before.entry(key.as_str()).or_insert(previous.as_ref());
                if let Some(p) = previous {
                    last_known.insert(key.as_str(), p);
                }
            }
        }
        let mut unconfirmed = HashMap::new();
        for (key, committed) in &before {
            if committed.is_none() {
                let known = index
                    .get(key)
                    .or_else(|| last_known.get(key).map(|e| e.view()));
                if let Some(e) = known {
                    unconfirmed.insert(
                        *key,
                        IndexEntry::new(
                            e.namespace(),
                            e.name(),
                            &unconfirmed_version(shown_version(&e.resource_version())),
                        ),
                    );
                }
            }
        }
        CommittedView {
            index,
            before,
            unconfirmed,
        }
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

    /// Up to `n` of the keys whose committed entry changed since they were
    /// last taken; the state stays dirty while some are left.
    pub fn take_changed(&mut self, n: usize) -> ChangedKeys {
        let part = self.changed.take(n);
        if !self.changed.is_empty() {
            self.dirty = true;
        }
        part
    }
}

/// The index as the sinks have handled it: see [`Ledger::committed_view`].
#[derive(Debug)]
pub struct CommittedView<'a> {
    index: &'a ObjectIndex,
    /// Keys with uncommitted changes → their committed entry, if any.
    before: HashMap<&'a str, Option<&'a IndexEntry>>,
    /// Keys with no committed entry whose first event is uncommitted.
    unconfirmed: HashMap<&'a str, IndexEntry>,
}

impl<'a> CommittedView<'a> {
    /// The committed entry of `key` (an unconfirmed one for a new object
    /// whose first event is not committed yet).
    pub fn get(&self, key: &str) -> Option<EntryRef<'_>> {
        match self.before.get(key) {
            None => self.index.get(key),
            Some(Some(committed)) => Some(committed.view()),
            Some(None) => self.unconfirmed.get(key).map(IndexEntry::view),
        }
    }

    pub fn len(&self) -> usize {
        let mut n = self.index.len();
        for (key, committed) in &self.before {
            match (self.index.get(key).is_some(), committed.is_some()) {
                (false, true) => n += 1,
                (false, false) if self.unconfirmed.contains_key(key) => n += 1,
                _ => {}
            }
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every committed object (and every unconfirmed one, with an empty
    /// resourceVersion), in no particular order.
    pub fn for_each(&self, mut f: impl FnMut(&str, EntryRef<'_>)) {
        for (key, entry) in self.index.iter() {
            let key = &*key;
            match self.before.get(key) {
                None => f(key, entry),
                Some(Some(committed)) => f(key, committed.view()),
                Some(None) => {
                    if let Some(u) = self.unconfirmed.get(key) {
                        f(key, u.view());
                    }
                }
            }
        }
        for (key, committed) in &self.before {
            if self.index.get(key).is_some() {
                continue;
            }
            match committed {
                Some(committed) => f(key, committed.view()),
                None => {
                    if let Some(u) = self.unconfirmed.get(key) {
                        f(key, u.view());
                    }
                }
            }
        }
    }

    /// The committed objects as a map (tests, small indexes).
    pub fn to_map(&self) -> HashMap<String, IndexEntry> {
        let mut out = HashMap::with_capacity(self.len());
        self.for_each(|k, e| {
            out.insert(k.to_owned(), e.to_entry());
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::ObjectMeta;
    use std::borrow::Cow;

    #[test]
    fn changed_keys_give_back_the_text_they_were_given() {
        let mut keys = ChangedKeys::default();
        let uid = "0f8b2c4e-1a2b-4c3d-9e8f-0123456789ab";
        // Not canonical UUIDs: kept as text, so their bytes come back.
        let upper = "0F8B2C4E-1A2B-4C3D-9E8F-0123456789AB";
        for key in [uid, upper, "ns/name", uid, "ns/name"] {
            keys.insert(key);
        }
        assert_eq!(keys.len(), 3);
        let mut seen = Vec::new();
        let part = keys.take(2);
        assert_eq!((part.len(), keys.len()), (2, 1));
        for keys in [part, keys.take(2)] {
            keys.for_each(|k| seen.push(k.to_owned()));
        }
        seen.sort();
        assert_eq!(seen, [upper, uid, "ns/name"]);
    }

    /// A watch's index and its ledger, changed the way the machine does.
    #[derive(Default)]
    struct Watch {
        index: ObjectIndex,
        ledger: Ledger,
    }

    impl Watch {
        fn put(&mut self, key: &str, rv: &str, sinks: u32) -> u64 {
            let meta = ObjectMeta {
                name: Some(Cow::Borrowed(key)),
                namespace: Some(Cow::Borrowed("ns")),
                uid: Some(Cow::Borrowed(key)),
                resource_version: Some(Cow::Borrowed(rv)),
            };
            let (_, previous) = self.index.replace(key, &meta);
            self.ledger
                .record(Progress::changed(key, previous, Some(rv)), sinks)
        }

        fn remove(&mut self, key: &str, rv: &str, sinks: u32) -> u64 {
            let previous = self.index.remove(key);
            self.ledger
                .record(Progress::changed(key, previous, Some(rv)), sinks)
        }

        fn rv(&self) -> Option<&str> {
            self.ledger.committed_version()
        }

        /// key → rv of the committed index (unconfirmed objects left out).
        fn committed(&self) -> Vec<(String, String)> {
            let view = self.ledger.committed_view(&self.index);
            let map = view.to_map();
            assert_eq!(view.len(), map.len());
            let mut v: Vec<_> = map
                .into_iter()
                .filter(|(_, e)| !e.resource_version().starts_with('\0'))
                .map(|(k, e)| (k, e.resource_version().to_owned()))
                .collect();
            v.sort();
            v
        }

        /// Keys in the view as unconfirmed (first event not committed).
        fn unconfirmed(&self) -> Vec<String> {
            let mut v: Vec<_> = self
                .ledger
                .committed_view(&self.index)
                .to_map()
                .into_iter()
                .filter(|(_, e)| e.resource_version().starts_with('\0'))
                .map(|(k, _)| k)
                .collect();
            v.sort();
            v
        }
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn commits_only_a_contiguous_prefix_of_fully_acked_entries() {
        let mut w = Watch::default();
        let first = w.ledger.next_seq();
        let a = w.put("a", "1", 2);
        let b = w.put("b", "2", 1);
        let c = w.put("c", "3", 1);
        assert_eq!((a, b, c), (first, first + 1, first + 2));
        assert_eq!(w.rv(), None);
        // Later entries finish first: nothing moves.
        w.ledger.ack(c).unwrap();
        w.ledger.ack(b).unwrap();
        assert_eq!(w.rv(), None);
        assert_eq!(w.committed(), kv(&[]), "uncommitted ADDED leaked");
        // Their first events may have reached a sink: a checkpoint names
        // them, unconfirmed, so a relist after a crash reports them.
        assert_eq!(w.unconfirmed(), vec!["a", "b", "c"]);
        // One of two sinks: still not committed.
        w.ledger.ack(a).unwrap();
        assert_eq!(w.rv(), None);
        w.ledger.ack(a).unwrap();
        assert_eq!(w.rv(), Some("3"));
        assert_eq!(w.committed(), kv(&[("a", "1"), ("b", "2"), ("c", "3")]));
        assert!(w.unconfirmed().is_empty());
        assert_eq!(w.ledger.uncommitted(), 0);
        assert!(w.ledger.take_dirty());
        assert!(!w.ledger.take_dirty());
    }

    #[test]
    fn the_committed_index_is_the_state_after_the_last_committed_step() {
        let mut w = Watch::default();
        w.put("a", "1", 0);
        w.put("b", "2", 0);
        assert_eq!(w.committed(), kv(&[("a", "1"), ("b", "2")]));
        // Three pending changes of "a", a delete of "b", a new "c".
        let s1 = w.put("a", "3", 1);
        let s2 = w.remove("b", "4", 1);
        let s3 = w.put("a", "5", 1);
        let s4 = w.put("c", "6", 1);
        let s5 = w.remove("a", "7", 1);
        assert_eq!(w.committed(), kv(&[("a", "1"), ("b", "2")]));
        w.ledger.ack(s1).unwrap();
        assert_eq!(w.committed(), kv(&[("a", "3"), ("b", "2")]));
        assert_eq!(w.rv(), Some("3"));
        w.ledger.ack(s3).unwrap();
        assert_eq!(w.committed(), kv(&[("a", "3"), ("b", "2")]));
        w.ledger.ack(s2).unwrap();
        assert_eq!(w.committed(), kv(&[("a", "5")]));
        assert_eq!(w.rv(), Some("5"));
        w.ledger.ack(s5).unwrap();
        assert_eq!(w.committed(), kv(&[("a", "5")]));
        w.ledger.ack(s4).unwrap();
        assert_eq!(w.committed(), kv(&[("c", "6")]));
        assert_eq!(w.rv(), Some("7"));
    }

    #[test]
    fn entries_without_sink_work_commit_when_everything_before_them_has() {
        let mut w = Watch::default();
        // A silent initial list commits at once.
        let meta = ObjectMeta {
            name: Some(Cow::Borrowed("a")),
            namespace: None,
            uid: Some(Cow::Borrowed("a")),
            resource_version: Some(Cow::Borrowed("1")),
        };
        let (_, previous) = w.index.replace("a", &meta);
        w.ledger.record(Progress::changed("a", previous, None), 0);
        w.ledger.record(Progress::version("5"), 0);
        assert_eq!(w.rv(), Some("5"));
        assert_eq!(w.committed(), kv(&[("a", "1")]));
        // A delivered event, then a bookmark and a filtered event behind it.
        let ev = w.remove("a", "6", 1);
        w.ledger.record(Progress::version("7"), 0);
        w.put("b", "8", 0);
        assert_eq!(w.rv(), Some("5"));
        assert_eq!(w.committed(), kv(&[("a", "1")]));
        w.ledger.ack(ev).unwrap();
        assert_eq!(w.rv(), Some("8"));
        assert_eq!(w.committed(), kv(&[("b", "8")]));
    }

    #[test]
    fn unknown_and_excess_acks_are_refused_without_effect() {
        let mut w = Watch {
            ledger: Ledger::resumed("9".into()),
            ..Watch::default()
        };
        assert_eq!(w.rv(), Some("9"));
        assert!(!w.ledger.is_dirty(), "a resumed state is already on disk");
        assert_eq!(w.ledger.ack(w.ledger.next_seq()), Err(AckError::Unknown));
        // A step of another ledger (a watch this one replaced).
        let mut old = Ledger::new();
        let stale = old.record(Progress::version("1"), 1);
        assert_eq!(w.ledger.ack(stale), Err(AckError::Unknown));
        let s = w.put("a", "10", 1);
        assert_eq!(w.ledger.ack(s + 1), Err(AckError::Unknown));
        w.ledger.ack(s).unwrap();
        assert_eq!(w.ledger.ack(s), Err(AckError::Unknown), "already committed");
        let t = w.put("b", "11", 1);
        w.put("c", "12", 1);
        w.ledger.ack(t).unwrap();
        let u = w.put("d", "13", 1);
        w.ledger.ack(u).unwrap();
        assert_eq!(w.ledger.ack(u), Err(AckError::Excess));
        assert_eq!(w.rv(), Some("11"));
    }

    #[test]
    fn random_ack_orders_always_commit_a_prefix() {
        use proptest::prelude::*;
        proptest!(|(steps in proptest::collection::vec((0u32..3, 0usize..4, any::<bool>()), 1..40),
                    order in proptest::collection::vec(any::<u32>(), 0..200))| {
            let mut w = Watch::default();
            let mut owed: Vec<(u64, u32)> = Vec::new();
            // The expected committed index after each step.
            let mut states: Vec<Vec<(String, String)>> = Vec::new();
            let mut model: std::collections::BTreeMap<String, String> = Default::default();
            for (i, (sinks, obj, delete)) in steps.iter().enumerate() {
                let key = format!("o{obj}");
                let rv = (i + 1).to_string();
                let seq = if *delete {
                    model.remove(&key);
                    w.remove(&key, &rv, *sinks)
                } else {
                    model.insert(key.clone(), rv.clone());
                    w.put(&key, &rv, *sinks)
                };
                owed.push((seq, *sinks));
                states.push(model.clone().into_iter().collect());
            }
            for pick in order {
                let open: Vec<usize> = (0..owed.len()).filter(|i| owed[*i].1 > 0).collect();
                if open.is_empty() { break; }
                let i = open[pick as usize % open.len()];
                prop_assert!(w.ledger.ack(owed[i].0).is_ok());
                owed[i].1 -= 1;
                // The committed point is the last entry of the fully acked prefix.
                let prefix = owed.iter().take_while(|(_, k)| *k == 0).count();
                let expected_rv = prefix.checked_sub(1).map(|p| (p + 1).to_string());
                prop_assert_eq!(w.rv().map(str::to_owned), expected_rv);
                let expected = prefix.checked_sub(1).map(|p| states[p].clone()).unwrap_or_default();
                prop_assert_eq!(w.committed(), expected.clone());
                // Unconfirmed: objects an uncommitted step created, and only those.
                let created_later: std::collections::BTreeSet<String> = steps[prefix..]
                    .iter()
                    .filter(|(_, _, delete)| !delete)
                    .map(|(_, obj, _)| format!("o{obj}"))
                    .collect();
                for key in w.unconfirmed() {
                    prop_assert!(created_later.contains(&key), "{} unconfirmed", key);
                    prop_assert!(!expected.iter().any(|(k, _)| *k == key));
                }
            }
        });
    }
}

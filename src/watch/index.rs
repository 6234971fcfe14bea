//! The index of objects a watch knows: enough to diff a relist and to
//! synthesise DELETED for objects that vanished while the watch was away.
//! No object bodies, so memory does not grow with object size.
//!
//! It holds every object of every watch (250,000 and more for a big list),
//! so entries are compact: the key and one string per entry, boxed without
//! spare capacity, and which list round last saw an entry is a stamp in its
//! slot rather than a second set of keys.

use crate::filter::Memory;
use crate::kube::ObjectMeta;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// `ns_len` of an entry without a namespace (cluster-scoped objects).
const NO_NAMESPACE: u32 = u32::MAX;

/// What the index knows of one object: namespace, name, resourceVersion.
/// Stored back to back in one boxed string (16 B + the text on the heap,
/// instead of three `String`s with their spare capacity).
#[derive(Clone, PartialEq, Eq)]
pub struct IndexEntry {
    text: Box<str>,
    /// Length of the namespace at the start of `text`; `NO_NAMESPACE`: none.
    ns_len: u32,
    name_len: u32,
    /// What the watch's `select`/`changes` filter last reported of the
    /// object (see `filter::object`); always `None` for watches without
    /// one (a null pointer: they pay 8 bytes and no allocation). Kept in
    /// the entry so the ledger's committed view, hence the state store, carry
    /// it exactly as far as the sinks have handled the object.
    memory: Option<Box<Memory>>,
}

impl IndexEntry {
    pub fn new(namespace: Option<&str>, name: &str, resource_version: &str) -> Self {
        let ns = namespace.unwrap_or("");
        let mut text = String::with_capacity(ns.len() + name.len() + resource_version.len());
        text.push_str(ns);
        text.push_str(name);
        text.push_str(resource_version);
        // Fields come from one HTTP body or checkpoint line, far below
        // 4 GiB. Were one longer, its length would be clamped and the
        // fields split at the wrong place; the accessors never panic
        // (`str::get`).
        let len = |s: &str| u32::try_from(s.len()).unwrap_or(NO_NAMESPACE - 1);
        IndexEntry {
            text: text.into_boxed_str(),
            ns_len: namespace.map_or(NO_NAMESPACE, len),
            name_len: len(name),
            memory: None,
        }
    }

    /// The entry with the filter's memory of the object.
    pub fn with_memory(mut self, memory: Option<Memory>) -> Self {
        self.memory = memory.map(Box::new);
        self
    }

    pub fn clear_memory(&mut self) {
        self.memory = None;
    }

    /// What the watch's filter remembers of the object.
    pub fn memory(&self) -> Option<&Memory> {
        self.memory.as_deref()
    }

    fn name_start(&self) -> usize {
        if self.ns_len == NO_NAMESPACE {
            0
        } else {
            self.ns_len as usize
        }
    }

    /// `None` for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&str> {
        if self.ns_len == NO_NAMESPACE {
            None
        } else {
            Some(self.text.get(..self.ns_len as usize).unwrap_or(""))
        }
    }

    pub fn name(&self) -> &str {
        let start = self.name_start();
        self.text
            .get(start..start + self.name_len as usize)
            .unwrap_or("")
    }

    pub fn resource_version(&self) -> &str {
        let start = self.name_start() + self.name_len as usize;
        self.text.get(start..).unwrap_or("")
    }
}

impl fmt::Debug for IndexEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("IndexEntry");
        d.field("namespace", &self.namespace())
            .field("name", &self.name())
            .field("resource_version", &self.resource_version());
        if let Some(m) = &self.memory {
            d.field("memory", m);
        }
        d.finish()
    }
}

/// A list round, as the index stamps the entries it sees: see
/// [`ObjectIndex::begin_round`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round(u32);

/// The stamp of entries no round has seen (added by watch events or
/// restored from a checkpoint); no round gets it.
const NO_ROUND: u32 = 0;

#[derive(Debug)]
struct Slot {
    entry: IndexEntry,
    /// The last list round that saw the entry.
    round: u32,
}

/// The resourceVersion an index entry holds for an object whose first event
/// may or may not have reached the sinks before a crash (see
/// `state::persistence`): the version last reported, behind a NUL, so it equals
/// no version a server sends (a relist reports the object again) while the
/// version can still be said in a synthesised DELETED.
pub fn unconfirmed_version(reported: &str) -> String {
    format!("\0{reported}")
}

/// The version to show for an index entry: an unconfirmed one without its
/// mark.
pub fn shown_version(rv: &str) -> &str {
    rv.strip_prefix('\0').unwrap_or(rv)
}

#[derive(Debug, Default)]
pub struct ObjectIndex {
    by_key: HashMap<Box<str>, Slot>,
    /// The round `begin_round` handed out last.
    last_round: u32,
}

/// What a listed object is, compared with the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    New,
    Changed,
    Unchanged,
}

/// The key of an object: its uid, or namespace/name for servers that omit it.
pub fn object_key(meta: &ObjectMeta<'_>) -> Option<String> {
    object_key_ref(meta).map(Cow::into_owned)
}

/// [`object_key`] borrowing the uid: no allocation per watch event.
pub fn object_key_ref<'a>(meta: &'a ObjectMeta<'_>) -> Option<Cow<'a, str>> {
    if let Some(uid) = meta.uid.as_deref().filter(|u| !u.is_empty()) {
        return Some(Cow::Borrowed(uid));
    }
    let name = meta.name.as_deref()?;
    Some(Cow::Owned(format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        name
    )))
}

impl ObjectIndex {
    /// An index restored from a checkpoint.
    pub fn from_map(by_key: HashMap<String, IndexEntry>) -> Self {
        let mut index = HashMap::with_capacity(by_key.len());
        for (key, entry) in by_key {
            index.insert(
                key.into_boxed_str(),
                Slot {
                    entry,
                    round: NO_ROUND,
                },
            );
        }
        ObjectIndex {
            by_key: index,
            last_round: NO_ROUND,
        }
    }

    pub fn get(&self, key: &str) -> Option<&IndexEntry> {
        self.by_key.get(key).map(|slot| &slot.entry)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Records the object and says how it compares with what was known.
    pub fn upsert(&mut self, key: &str, meta: &ObjectMeta<'_>) -> Change {
        self.replace(key, meta).0
    }

    /// As `upsert`, also returning the entry it replaced (for `Changed`).
    /// Does not change which round saw the entry: a new one is seen by none.
    pub fn replace(&mut self, key: &str, meta: &ObjectMeta<'_>) -> (Change, Option<IndexEntry>) {
        self.put(key, meta, None)
    }

    /// As `replace`, for an object listed in `round`: the entry counts as
    /// seen by it (see [`drain_unseen`](Self::drain_unseen)).
    pub fn replace_listed(
        &mut self,
        key: &str,
        meta: &ObjectMeta<'_>,
        round: Round,
    ) -> (Change, Option<IndexEntry>) {
        self.put(key, meta, Some(round))
    }

    fn put(
        &mut self,
        key: &str,
        meta: &ObjectMeta<'_>,
        round: Option<Round>,
    ) -> (Change, Option<IndexEntry>) {
        let rv = meta.resource_version.as_deref().unwrap_or("");
        match self.by_key.get_mut(key) {
            Some(slot) => {
                if let Some(Round(r)) = round {
                    slot.round = r;
                }
                if slot.entry.resource_version() == rv {
                    return (Change::Unchanged, None);
                }
                // The stored namespace and name stay: the key (uid) names
                // the same object.
                // The filter's memory goes on with the object; the
                // previous entry keeps its own for the ledger.
                let entry = IndexEntry::new(slot.entry.namespace(), slot.entry.name(), rv)
                    .with_memory(slot.entry.memory().cloned());
                let previous = std::mem::replace(&mut slot.entry, entry);
                (Change::Changed, Some(previous))
            }
            None => {
                let entry = IndexEntry::new(
                    meta.namespace.as_deref(),
                    meta.name.as_deref().unwrap_or(""),
                    rv,
                );
                let round = round.map_or(NO_ROUND, |Round(r)| r);
                self.by_key.insert(key.into(), Slot { entry, round });
                (Change::New, None)
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &IndexEntry)> {
        self.by_key.iter().map(|(k, slot)| (&**k, &slot.entry))
    }

    /// Sets what the filter remembers of `key` (after its event was
    /// decided); nothing when the object is not indexed.
    pub fn set_memory(&mut self, key: &str, memory: Option<Memory>) {
        if let Some(slot) = self.by_key.get_mut(key) {
            slot.entry.memory = memory.map(Box::new);
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<IndexEntry> {
        self.by_key.remove(key).map(|slot| slot.entry)
    }

    /// A new list round: no entry counts as seen by it until
    /// `replace_listed` stamps it. A round that starts over (an expired
    /// continue token) takes a new one.
    pub fn begin_round(&mut self) -> Round {
        self.last_round = self.last_round.wrapping_add(1);
        if self.last_round == NO_ROUND {
            // Wrapped after 2^32 rounds: old stamps could now match a new
            // round, so none is kept.
            for slot in self.by_key.values_mut() {
                slot.round = NO_ROUND;
            }
            self.last_round = NO_ROUND + 1;
        }
        Round(self.last_round)
    }

    /// The end of a list round: removes and returns every entry `round`
    /// did not see (every entry for `None`: a round that listed nothing
    /// never began), ordered by namespace and name.
    pub fn drain_unseen(&mut self, round: Option<Round>) -> Vec<(String, IndexEntry)> {
        let seen = round.map(|Round(r)| r);
        // Usually few: copying their keys costs less than rebuilding the map
        // (`HashMap::extract_if` is newer than the crate's MSRV).
        let gone: Vec<Box<str>> = self
            .by_key
            .iter()
            .filter(|(_, slot)| Some(slot.round) != seen)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<(String, IndexEntry)> = gone
            .into_iter()
            .filter_map(|k| {
                self.by_key
                    .remove(&k)
                    .map(|slot| (k.into_string(), slot.entry))
            })
            .collect();
        // Deterministic order for records and tests.
        out.sort_by(|a, b| (a.1.namespace(), a.1.name()).cmp(&(b.1.namespace(), b.1.name())));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn meta<'a>(uid: &'a str, name: &'a str, rv: &'a str) -> ObjectMeta<'a> {
        ObjectMeta {
            name: Some(Cow::Borrowed(name)),
            namespace: Some(Cow::Borrowed("ns")),
            uid: Some(Cow::Borrowed(uid)),
            resource_version: Some(Cow::Borrowed(rv)),
        }
    }

    fn listed(idx: &mut ObjectIndex, round: Round, uid: &str, name: &str, rv: &str) -> Change {
        idx.replace_listed(uid, &meta(uid, name, rv), round).0
    }

    fn names(gone: &[(String, IndexEntry)]) -> Vec<(&str, &str)> {
        gone.iter().map(|(k, e)| (k.as_str(), e.name())).collect()
    }

    #[test]
    fn upsert_classifies_and_drain_removes_unseen() {
        let mut idx = ObjectIndex::default();
        let round = idx.begin_round();
        assert_eq!(listed(&mut idx, round, "u1", "a", "1"), Change::New);
        assert_eq!(listed(&mut idx, round, "u1", "a", "1"), Change::Unchanged);
        assert_eq!(listed(&mut idx, round, "u1", "a", "2"), Change::Changed);
        idx.upsert("u2", &meta("u2", "b", "3"));
        let gone = idx.drain_unseen(Some(round));
        assert_eq!(names(&gone), [("u2", "b")]);
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.get("u1").map(IndexEntry::resource_version), Some("2"));
    }

    #[test]
    fn filter_memory_goes_on_with_the_object_and_the_previous_entry_keeps_its_own() {
        use crate::filter::Memory;
        let mut idx = ObjectIndex::default();
        idx.upsert("u1", &meta("u1", "a", "1"));
        let m1 = Memory {
            reported: true,
            projection: Some(b"1".to_vec().into_boxed_slice()),
        };
        idx.set_memory("u1", Some(m1.clone()));
        let (_, previous) = idx.replace("u1", &meta("u1", "a", "2"));
        assert_eq!(previous.unwrap().memory(), Some(&m1));
        assert_eq!(idx.get("u1").unwrap().memory(), Some(&m1));
        idx.set_memory("u1", None);
        assert_eq!(idx.get("u1").unwrap().memory(), None);
        idx.set_memory("nobody", Some(m1));
        assert!(idx.get("nobody").is_none());
    }

    #[test]
    fn entry_keeps_its_fields_apart() {
        let e = IndexEntry::new(Some("ns-é"), "pod/ä", "42");
        assert_eq!(
            (e.namespace(), e.name(), e.resource_version()),
            (Some("ns-é"), "pod/ä", "42")
        );
        let cluster = IndexEntry::new(None, "node-1", "");
        assert_eq!(
            (
                cluster.namespace(),
                cluster.name(),
                cluster.resource_version()
            ),
            (None, "node-1", "")
        );
        // Same text, different split: not the same entry.
        assert_ne!(
            IndexEntry::new(None, "ab", "1"),
            IndexEntry::new(Some(""), "ab", "1")
        );
        assert_ne!(
            IndexEntry::new(Some("a"), "b", "1"),
            IndexEntry::new(Some("ab"), "", "1")
        );
        assert_eq!(e.clone(), e);
        assert_eq!(
            format!("{cluster:?}"),
            r#"IndexEntry { namespace: None, name: "node-1", resource_version: "" }"#
        );
    }

    #[test]
    fn replace_returns_the_previous_entry_and_keeps_the_identity() {
        let mut idx = ObjectIndex::default();
        assert_eq!(
            idx.replace("u1", &meta("u1", "a", "1")),
            (Change::New, None)
        );
        assert_eq!(
            idx.replace("u1", &meta("u1", "a", "1")),
            (Change::Unchanged, None)
        );
        let (change, previous) = idx.replace("u1", &meta("u1", "a", "2"));
        assert_eq!(change, Change::Changed);
        assert_eq!(previous, Some(IndexEntry::new(Some("ns"), "a", "1")));
        assert_eq!(idx.get("u1"), Some(&IndexEntry::new(Some("ns"), "a", "2")));
        assert_eq!(
            idx.remove("u1"),
            Some(IndexEntry::new(Some("ns"), "a", "2"))
        );
        assert!(idx.is_empty());
    }

    #[test]
    fn only_entries_the_round_listed_survive_it() {
        let mut idx = ObjectIndex::from_map(
            [("u1", "a"), ("u2", "b"), ("u3", "c")]
                .into_iter()
                .map(|(k, n)| (k.to_owned(), IndexEntry::new(Some("ns"), n, "1")))
                .collect(),
        );
        let round = idx.begin_round();
        assert_eq!(listed(&mut idx, round, "u2", "b", "1"), Change::Unchanged);
        assert_eq!(listed(&mut idx, round, "u4", "d", "1"), Change::New);
        // Watch events while a round runs do not count as listed: a new
        // entry is unseen, a changed one keeps its stamp.
        idx.upsert("u5", &meta("u5", "e", "1"));
        assert_eq!(idx.upsert("u2", &meta("u2", "b", "2")), Change::Changed);
        let gone = idx.drain_unseen(Some(round));
        assert_eq!(names(&gone), [("u1", "a"), ("u3", "c"), ("u5", "e")]);
        let mut left: Vec<_> = idx.iter().map(|(k, e)| (k, e.resource_version())).collect();
        left.sort();
        assert_eq!(left, [("u2", "2"), ("u4", "1")]);
        // The next round starts with nothing seen.
        let next = idx.begin_round();
        assert_ne!(next, round);
        listed(&mut idx, next, "u4", "d", "1");
        assert_eq!(names(&idx.drain_unseen(Some(next))), [("u2", "b")]);
    }

    #[test]
    fn a_restarted_round_forgets_what_the_first_attempt_saw() {
        let mut idx = ObjectIndex::default();
        let first = idx.begin_round();
        listed(&mut idx, first, "u1", "a", "1");
        listed(&mut idx, first, "u2", "b", "1");
        let second = idx.begin_round();
        listed(&mut idx, second, "u2", "b", "1");
        assert_eq!(names(&idx.drain_unseen(Some(second))), [("u1", "a")]);
        // A round that never listed anything drains everything.
        assert_eq!(names(&idx.drain_unseen(None)), [("u2", "b")]);
        assert!(idx.is_empty());
    }

    #[test]
    fn drained_entries_come_sorted_by_namespace_and_name() {
        let mut idx = ObjectIndex::default();
        for (uid, ns, name) in [
            ("u1", Some("b"), "x"),
            ("u2", None, "z"),
            ("u3", Some("a"), "y"),
        ] {
            let m = ObjectMeta {
                namespace: ns.map(Cow::Borrowed),
                ..meta(uid, name, "1")
            };
            idx.upsert(uid, &m);
        }
        let round = idx.begin_round();
        assert_eq!(
            names(&idx.drain_unseen(Some(round))),
            [("u2", "z"), ("u3", "y"), ("u1", "x")]
        );
    }

    #[test]
    fn round_numbers_wrapping_around_clear_old_stamps() {
        let mut idx = ObjectIndex::default();
        let one = idx.begin_round();
        assert_eq!(one, Round(1));
        listed(&mut idx, one, "u1", "a", "1");
        idx.last_round = u32::MAX;
        let wrapped = idx.begin_round();
        assert_eq!(wrapped, one);
        // Seen by the round 2^32 rounds ago, not by this one.
        assert_eq!(names(&idx.drain_unseen(Some(wrapped))), [("u1", "a")]);
    }

    #[test]
    fn key_falls_back_to_namespace_and_name() {
        let m = ObjectMeta {
            name: Some(Cow::Borrowed("x")),
            namespace: None,
            uid: None,
            resource_version: None,
        };
        assert_eq!(object_key(&m).as_deref(), Some("/x"));
        assert_eq!(object_key(&ObjectMeta::default()), None);
    }
}

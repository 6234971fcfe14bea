//! The object index as it was at 4a577ad (one boxed string of namespace,
//! name and version per entry, a `HashMap<Box<str>, Slot>` by key), kept
//! for the memory benchmark's baseline only.

#![allow(dead_code)]

use kwatchd::filter::Memory;
use kwatchd::kube::ObjectMeta;
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
fn unconfirmed_version(reported: &str) -> String {
    format!("\0{reported}")
}

/// The version to show for an index entry: an unconfirmed one without its
/// mark.
fn shown_version(rv: &str) -> &str {
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

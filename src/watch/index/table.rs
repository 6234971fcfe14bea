//! [`ObjectIndex`]: entries in fixed slots, found through a table of slot
//! numbers (see the module header of `index`).

use super::parts::{format_uuid, parse_uuid, Names, Namespaces, Texts, Version};
use super::{Change, EntryRef, IndexEntry, MemoryRef};
use crate::filter::Memory;
use crate::kube::ObjectMeta;
use hashbrown::HashTable;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;

/// Bits of `Slot::ns_flags` that hold the namespace id; the rest are flags.
const NS_BITS: u32 = 26;
const NS_MASK: u32 = (1 << NS_BITS) - 1;
/// The namespace id of a cluster-scoped object.
const NS_NONE: u32 = NS_MASK;
/// The key is not a UUID: `uid[0]` is its handle in `texts`.
const KEY_TEXT: u32 = 1 << 26;
/// The version is not an integer: `rv` is its handle in `texts`.
const RV_TEXT: u32 = 1 << 27;
/// The integer version carries the unconfirmed mark.
const RV_UNCONFIRMED: u32 = 1 << 28;
const HAS_MEMORY: u32 = 1 << 29;
/// The memory's `reported` bit.
const REPORTED: u32 = 1 << 30;
/// Past the namespace limit: the namespace is the second part of the name
/// record instead of an id.
const NS_IN_NAME: u32 = 1 << 31;
/// `ns_flags` of a free slot (`RV_TEXT` with `RV_UNCONFIRMED` is no entry).
const FREE: u32 = u32::MAX;

/// One entry: 32 bytes, no allocation of its own (`[u64; 2]` rather than
/// `u128` keeps the alignment, hence the size, at 8).
#[derive(Debug, Clone, Copy)]
struct Slot {
    uid: [u64; 2],
    rv: u64,
    /// The name record's handle in `names`.
    name: u32,
    ns_flags: u32,
}

// The index's memory budget is built on this.
const _: () = assert!(std::mem::size_of::<Slot>() == 32);

/// A key as the table compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key<'a> {
    Uuid(u128),
    Text(&'a str),
}

impl<'a> Key<'a> {
    fn of(s: &'a str) -> Self {
        parse_uuid(s).map_or(Key::Text(s), Key::Uuid)
    }
}

/// A key as text: a UUID key is formatted into the value itself.
#[derive(Debug, Clone, Copy)]
pub enum KeyText<'a> {
    Uuid([u8; 36]),
    Text(&'a str),
}

impl std::ops::Deref for KeyText<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            // Hex digits and hyphens only.
            KeyText::Uuid(b) => std::str::from_utf8(b).unwrap_or(""),
            KeyText::Text(s) => s,
        }
    }
}

/// What a new entry is made of.
#[derive(Clone, Copy)]
struct NewEntry<'a> {
    key: Key<'a>,
    namespace: Option<&'a str>,
    name: &'a str,
    version: Version<'a>,
}

/// A list round, as the index marks the entries it sees: see
/// [`ObjectIndex::begin_round`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round(u32);

/// Everything but the table, so the table's hasher can borrow it while the
/// table changes.
#[derive(Default)]
struct Store {
    hasher: std::collections::hash_map::RandomState,
    slots: Vec<Slot>,
    /// Free slots, reused first.
    free: Vec<u32>,
    /// One bit per slot: the current round saw it.
    seen: Vec<u64>,
    /// The round `begin_round` handed out last (0: none yet).
    round: u32,
    texts: Texts,
    namespaces: Namespaces,
    names: Names,
    /// The filter's projections by slot; empty until a watch with
    /// `changes` stores one.
    projections: Vec<Option<Box<[u8]>>>,
    /// How many namespace ids may be handed out (tests lower it).
    ns_limit: u32,
}

impl Store {
    fn live(&self, i: usize) -> bool {
        self.slots.get(i).is_some_and(|s| s.ns_flags != FREE)
    }

    fn hash(&self, key: Key<'_>) -> u64 {
        self.hasher.hash_one(key)
    }

    fn key(&self, i: u32) -> Key<'_> {
        match self.slots.get(i as usize) {
            Some(s) if s.ns_flags & KEY_TEXT != 0 => Key::Text(self.texts.get(s.uid[0] as u32)),
            Some(s) => Key::Uuid((u128::from(s.uid[0]) << 64) | u128::from(s.uid[1])),
            None => Key::Text(""),
        }
    }

    fn key_text(&self, i: u32) -> KeyText<'_> {
        match self.key(i) {
            Key::Uuid(v) => KeyText::Uuid(format_uuid(v)),
            Key::Text(s) => KeyText::Text(s),
        }
    }

    fn slot_hash(&self, i: u32) -> u64 {
        self.hash(self.key(i))
    }

    fn version(&self, s: &Slot) -> Version<'_> {
        if s.ns_flags & RV_TEXT != 0 {
            Version::Text(self.texts.get(s.rv as u32))
        } else {
            Version::Int {
                value: s.rv,
                unconfirmed: s.ns_flags & RV_UNCONFIRMED != 0,
            }
        }
    }

    fn view(&self, i: u32) -> Option<EntryRef<'_>> {
        let s = self.slots.get(i as usize)?;
        let namespace = if s.ns_flags & NS_IN_NAME != 0 {
            Some(self.names.get(s.name, 1))
        } else {
            match s.ns_flags & NS_MASK {
                NS_NONE => None,
                id => Some(self.namespaces.get(id)),
            }
        };
        let memory = (s.ns_flags & HAS_MEMORY != 0).then(|| MemoryRef {
            reported: s.ns_flags & REPORTED != 0,
            projection: self.projections.get(i as usize).and_then(|p| p.as_deref()),
        });
        Some(EntryRef {
            namespace,
            name: self.names.get(s.name, 0),
            version: self.version(s),
            memory,
        })
    }

    /// Stores `version` in slot `i` (whose version, if `replacing`, is
    /// dropped first).
    fn set_version(&mut self, i: usize, version: Version<'_>, replacing: bool) -> Option<()> {
        let s = self.slots.get(i)?;
        let (flags, old) = (s.ns_flags, s.rv);
        let old_text = replacing && flags & RV_TEXT != 0;
        let (rv, bits) = match version {
            Version::Int { value, unconfirmed } => {
                if old_text {
                    self.texts.remove(old as u32);
                }
                (value, if unconfirmed { RV_UNCONFIRMED } else { 0 })
            }
            Version::Text(t) if old_text => {
                self.texts.set(old as u32, t);
                (old, RV_TEXT)
            }
            Version::Text(t) => (u64::from(self.texts.add(t)?), RV_TEXT),
        };
        let s = self.slots.get_mut(i)?;
        s.rv = rv;
        s.ns_flags = (flags & !(RV_TEXT | RV_UNCONFIRMED)) | bits;
        Some(())
    }

    /// A new slot for an entry; `None` when a side table is full (2^32
    /// strings, 4 GiB of names).
    fn insert(&mut self, new: &NewEntry<'_>) -> Option<u32> {
        let NewEntry {
            key,
            namespace,
            name,
            version,
        } = *new;
        let mut flags = 0;
        let ns_id = match namespace {
            None => Some(NS_NONE),
            Some(ns) => self.namespaces.intern(ns, self.ns_limit),
        };
        let name_handle = match (ns_id, namespace) {
            (Some(_), _) => self.names.add(&[name]),
            (None, ns) => {
                flags |= NS_IN_NAME;
                self.names.add(&[name, ns.unwrap_or("")])
            }
        };
        let undo_ns = |this: &mut Self| {
            if let Some(id) = ns_id.filter(|&id| id != NS_NONE) {
                this.namespaces.release(id);
            }
        };
        let Some(name_handle) = name_handle else {
            undo_ns(self);
            return None;
        };
        let uid = match key {
            Key::Uuid(v) => [(v >> 64) as u64, v as u64],
            Key::Text(t) => match self.texts.add(t) {
                Some(h) => {
                    flags |= KEY_TEXT;
                    [u64::from(h), 0]
                }
                None => {
                    undo_ns(self);
                    let parts = if flags & NS_IN_NAME != 0 { 2 } else { 1 };
                    self.names.remove(name_handle, parts);
                    return None;
                }
            },
        };
        let slot = Slot {
            uid,
            rv: 0,
            name: name_handle,
            ns_flags: flags | ns_id.unwrap_or(NS_NONE),
        };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = slot;
                }
                i
            }
            None => {
                let i = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|&i| i != u32::MAX);
                let Some(i) = i else {
                    self.release(&slot, u32::MAX);
                    return None;
                };
                self.slots.push(slot);
                if self.seen.len() * 64 < self.slots.len() {
                    self.seen.push(0);
                }
                i
            }
        };
        self.mark_seen(i as usize, false);
        if self.set_version(i as usize, version, false).is_none() {
            self.free_slot(i);
            return None;
        }
        Some(i)
    }

    /// Drops what slot `s` holds in the side tables (not its projection).
    fn release(&mut self, s: &Slot, i: u32) {
        let f = s.ns_flags;
        if f & KEY_TEXT != 0 {
            self.texts.remove(s.uid[0] as u32);
        }
        if f & RV_TEXT != 0 {
            self.texts.remove(s.rv as u32);
        }
        if f & NS_IN_NAME != 0 {
            self.names.remove(s.name, 2);
        } else {
            self.names.remove(s.name, 1);
            if f & NS_MASK != NS_NONE {
                self.namespaces.release(f & NS_MASK);
            }
        }
        if let Some(p) = self.projections.get_mut(i as usize) {
            *p = None;
        }
    }

    fn free_slot(&mut self, i: u32) {
        let Some(&s) = self.slots.get(i as usize) else {
            return;
        };
        if s.ns_flags == FREE {
            return;
        }
        self.release(&s, i);
        if let Some(slot) = self.slots.get_mut(i as usize) {
            slot.ns_flags = FREE;
        }
        self.mark_seen(i as usize, false);
        self.free.push(i);
    }

    fn mark_seen(&mut self, i: usize, seen: bool) {
        if let Some(word) = self.seen.get_mut(i / 64) {
            let bit = 1u64 << (i % 64);
            if seen {
                *word |= bit;
            } else {
                *word &= !bit;
            }
        }
    }

    fn is_seen(&self, i: usize) -> bool {
        self.seen
            .get(i / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    fn set_memory(&mut self, i: usize, memory: Option<Memory>) {
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        s.ns_flags &= !(HAS_MEMORY | REPORTED);
        let projection = match memory {
            Some(m) => {
                s.ns_flags |= HAS_MEMORY | if m.reported { REPORTED } else { 0 };
                m.projection
            }
            None => None,
        };
        if projection.is_some() && self.projections.len() <= i {
            self.projections.resize_with(self.slots.len(), || None);
        }
        if let Some(p) = self.projections.get_mut(i) {
            *p = projection;
        }
    }

    /// Rewrites the live name records into a fresh arena (holes gone).
    fn compact_names(&mut self) {
        let mut fresh = Names::default();
        let mut handles = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            if s.ns_flags == FREE {
                handles.push(s.name);
                continue;
            }
            let n = if s.ns_flags & NS_IN_NAME != 0 { 2 } else { 1 };
            let parts: Vec<&str> = self.names.parts(s.name).take(n).collect();
            match fresh.add(&parts) {
                Some(h) => handles.push(h),
                // Cannot happen (the live records fit before); keep the
                // old arena rather than lose names.
                None => return,
            }
        }
        for (s, h) in self.slots.iter_mut().zip(handles) {
            s.name = h;
        }
        self.names = fresh;
    }
}

/// The objects of one watch by key (see the module header).
pub struct ObjectIndex {
    table: HashTable<u32>,
    store: Store,
}

impl Default for ObjectIndex {
    fn default() -> Self {
        ObjectIndex {
            table: HashTable::new(),
            store: Store {
                ns_limit: NS_NONE,
                ..Store::default()
            },
        }
    }
}

impl fmt::Debug for ObjectIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectIndex")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl ObjectIndex {
    /// An index restored from a checkpoint.
    pub fn from_map(by_key: HashMap<String, IndexEntry>) -> Self {
        let mut index = ObjectIndex::default();
        index.store.slots.reserve_exact(by_key.len());
        let store = &index.store;
        index.table.reserve(by_key.len(), |&i| store.slot_hash(i));
        for (key, entry) in by_key {
            index.insert_entry(&key, &entry);
        }
        index
    }

    /// Adds (or replaces) `key` with everything `entry` says (an
    /// [`IndexEntry`] or another index's [`EntryRef`]); false when a side
    /// table is full (see [`Self::replace`]).
    pub fn insert_entry<'a>(&mut self, key: &str, entry: impl Into<EntryRef<'a>>) -> bool {
        self.remove(key);
        let view = entry.into();
        let new = NewEntry {
            key: Key::of(key),
            namespace: view.namespace(),
            name: view.name(),
            version: view.version(),
        };
        let Some(i) = self.add(&new) else {
            return false;
        };
        self.store
            .set_memory(i as usize, view.memory().map(MemoryRef::to_memory));
        true
    }

    fn find(&self, key: Key<'_>) -> Option<u32> {
        let store = &self.store;
        self.table
            .find(store.hash(key), |&i| store.key(i) == key)
            .copied()
    }

    fn add(&mut self, new: &NewEntry<'_>) -> Option<u32> {
        let i = self.store.insert(new)?;
        let store = &self.store;
        self.table
            .insert_unique(store.hash(new.key), i, |&j| store.slot_hash(j));
        Some(i)
    }

    pub fn get(&self, key: &str) -> Option<EntryRef<'_>> {
        self.store.view(self.find(Key::of(key))?)
    }

    /// A copy of the entry of `key`.
    pub fn entry(&self, key: &str) -> Option<IndexEntry> {
        self.get(key).map(|e| e.to_entry())
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Records the object and says how it compares with what was known.
    pub fn upsert(&mut self, key: &str, meta: &ObjectMeta<'_>) -> Change {
        self.replace(key, meta).0
    }

    /// As `upsert`, also returning the entry it replaced (for `Changed`).
    /// Does not change which round saw the entry: a new one is seen by none.
    ///
    /// An object that no longer fits (2^32 odd uids or versions, 4 GiB of
    /// names in one watch) is reported `New` and not kept.
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
        let version = Version::of(meta.resource_version.as_deref().unwrap_or(""));
        let key = Key::of(key);
        let seen = round.is_some_and(|Round(r)| r == self.store.round);
        match self.find(key) {
            Some(i) => {
                let store = &mut self.store;
                if seen {
                    store.mark_seen(i as usize, true);
                }
                let Some(slot) = store.slots.get(i as usize) else {
                    return (Change::New, None);
                };
                if store.version(slot) == version {
                    return (Change::Unchanged, None);
                }
                // The stored namespace and name stay: the key (uid) names
                // the same object. The filter's memory goes on with the
                // object; the previous entry keeps a copy for the ledger.
                let previous = store.view(i).map(|e| e.to_entry());
                if store.set_version(i as usize, version, true).is_none() {
                    // The side table is full: forget the object rather
                    // than keep a wrong version.
                    self.remove_slot(i);
                    return (Change::Changed, previous);
                }
                (Change::Changed, previous)
            }
            None => {
                let new = NewEntry {
                    key,
                    namespace: meta.namespace.as_deref(),
                    name: meta.name.as_deref().unwrap_or(""),
                    version,
                };
                if let Some(i) = self.add(&new) {
                    self.store.mark_seen(i as usize, seen);
                }
                (Change::New, None)
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (KeyText<'_>, EntryRef<'_>)> {
        let store = &self.store;
        (0..store.slots.len()).filter_map(move |i| {
            if !store.live(i) {
                return None;
            }
            let i = i as u32;
            Some((store.key_text(i), store.view(i)?))
        })
    }

    /// Sets what the filter remembers of `key` (after its event was
    /// decided); nothing when the object is not indexed.
    pub fn set_memory(&mut self, key: &str, memory: Option<Memory>) {
        if let Some(i) = self.find(Key::of(key)) {
            self.store.set_memory(i as usize, memory);
        }
    }

    /// Takes what the filter remembers of `key` out of the index (no copy
    /// of its projection); [`set_memory`](Self::set_memory) puts the next
    /// one (or this one) back.
    pub fn take_memory(&mut self, key: &str) -> Option<Memory> {
        let i = self.find(Key::of(key))? as usize;
        let memory = self.store.view(i as u32)?.memory()?;
        let reported = memory.reported;
        let projection = self.store.projections.get_mut(i).and_then(Option::take);
        self.store.set_memory(i, None);
        Some(Memory {
            reported,
            projection,
        })
    }

    pub fn remove(&mut self, key: &str) -> Option<IndexEntry> {
        let i = self.find(Key::of(key))?;
        let entry = self.store.view(i).map(|e| e.to_entry());
        self.remove_slot(i);
        entry
    }

    fn remove_slot(&mut self, i: u32) {
        let store = &self.store;
        if let Ok(found) = self.table.find_entry(store.slot_hash(i), |&j| j == i) {
            found.remove();
        }
        self.store.free_slot(i);
        if self.store.names.wants_compaction() {
            self.store.compact_names();
        }
    }

    /// A new list round: no entry counts as seen by it until
    /// `replace_listed` marks it. A round that starts over (an expired
    /// continue token) takes a new one; only the latest round marks.
    pub fn begin_round(&mut self) -> Round {
        let store = &mut self.store;
        store.round = store.round.wrapping_add(1).max(1);
        store.seen.fill(0);
        Round(store.round)
    }

    /// The end of a list round: removes and returns every entry `round`
    /// did not see (every entry for `None`, a round that listed nothing
    /// and never began, or for a round that is not the latest), ordered by
    /// namespace and name.
    pub fn drain_unseen(&mut self, round: Option<Round>) -> Vec<(String, IndexEntry)> {
        let current = round.is_some_and(|Round(r)| r == self.store.round);
        let store = &self.store;
        let gone: Vec<u32> = (0..store.slots.len())
            .filter(|&i| store.live(i) && !(current && store.is_seen(i)))
            .map(|i| i as u32)
            .collect();
        let mut out = Vec::with_capacity(gone.len());
        for i in gone {
            let key = self.store.key_text(i).to_string();
            if let Some(entry) = self.store.view(i).map(|e| e.to_entry()) {
                out.push((key, entry));
            }
            self.remove_slot(i);
        }
        // Deterministic order for records and tests.
        out.sort_by(|a, b| (a.1.namespace(), a.1.name()).cmp(&(b.1.namespace(), b.1.name())));
        out
    }

    #[cfg(test)]
    pub(super) fn limit_namespaces(&mut self, limit: u32) {
        self.store.ns_limit = limit;
    }

    #[cfg(test)]
    pub(super) fn store_names_want_compaction(&self) -> bool {
        self.store.names.wants_compaction()
    }
}

//! The index of objects a watch knows: enough to diff a relist and to
//! synthesise DELETED for objects that vanished while the watch was away.
//! No object bodies, so memory does not grow with object size.
//!
//! It holds every object of every watch (250,000 and more for a big list),
//! so an entry is a fixed 32-byte slot in one vector (`Slot`): the uid as
//! 16 bytes, the resourceVersion as a `u64`, the namespace as an interned
//! id, the name as a handle into one arena (see `parts`), plus flag bits.
//! A `hashbrown::HashTable` of `u32` slot numbers, hashed by the uid they
//! point at, finds a slot by key (5 bytes a bucket instead of a key copy).
//! Which list round last saw a slot is a bit beside it. Servers that send
//! uids or versions in another form cost a side-table string, as before.
//!
//! Entries leave the index as [`IndexEntry`] values (self-contained, for
//! the ledger and the store) and are read in place as [`EntryRef`] views.
//!
//! Every entry keeps its name and namespace: any object may vanish while
//! the watch is away (an expired position, a restart), its DELETED is then
//! synthesised from the entry, and without `state_dir` the index is the
//! only place they are kept. Interning and the arena make them cost the
//! name's bytes plus one.

mod parts;
mod table;

pub use parts::{format_uuid, parse_uuid, Version};
pub use table::{KeyText, ObjectIndex, Round};

use crate::filter::Memory;
use crate::kube::ObjectMeta;
use std::borrow::Cow;
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

impl IndexEntry {
    /// The entry read as a view, as the index's own entries are.
    pub fn view(&self) -> EntryRef<'_> {
        EntryRef {
            namespace: self.namespace(),
            name: self.name(),
            version: Version::of(self.resource_version()),
            memory: self.memory().map(MemoryRef::of),
        }
    }
}

impl<'a> From<&'a IndexEntry> for EntryRef<'a> {
    fn from(e: &'a IndexEntry) -> Self {
        e.view()
    }
}

/// An entry read in place: from the index (see [`ObjectIndex::get`]) or
/// from an [`IndexEntry`] (see [`IndexEntry::view`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    namespace: Option<&'a str>,
    name: &'a str,
    version: Version<'a>,
    memory: Option<MemoryRef<'a>>,
}

impl<'a> EntryRef<'a> {
    /// `None` for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&'a str> {
        self.namespace
    }

    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The resourceVersion as the server sent it (an unconfirmed one with
    /// its mark, see [`unconfirmed_version`]).
    pub fn resource_version(&self) -> Cow<'a, str> {
        match self.version {
            Version::Text(s) => Cow::Borrowed(s),
            v => {
                let mut s = String::with_capacity(21);
                v.write_to(&mut s);
                Cow::Owned(s)
            }
        }
    }

    /// The resourceVersion as the index holds it (no allocation).
    pub fn version(&self) -> Version<'a> {
        self.version
    }

    /// What the watch's filter remembers of the object.
    pub fn memory(&self) -> Option<MemoryRef<'a>> {
        self.memory
    }

    pub fn to_entry(&self) -> IndexEntry {
        IndexEntry::new(self.namespace, self.name, &self.resource_version())
            .with_memory(self.memory.map(MemoryRef::to_memory))
    }
}

/// A filter [`Memory`] read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRef<'a> {
    pub reported: bool,
    pub projection: Option<&'a [u8]>,
}

impl<'a> MemoryRef<'a> {
    pub fn of(m: &'a Memory) -> Self {
        MemoryRef {
            reported: m.reported,
            projection: m.projection.as_deref(),
        }
    }

    pub fn to_memory(self) -> Memory {
        Memory {
            reported: self.reported,
            projection: self.projection.map(Box::from),
        }
    }
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

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

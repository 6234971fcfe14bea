//! The index of objects a watch knows: enough to diff a relist and to
//! synthesise DELETED for objects that vanished while the watch was away.
//! No object bodies, so memory does not grow with object size.

use crate::kube::ObjectMeta;
use std::borrow::Cow;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub namespace: Option<String>,
    pub name: String,
    pub resource_version: String,
}

/// The resourceVersion an index entry holds for an object whose first event
/// may or may not have reached the sinks before a crash (see
/// `state::journal`): the version last reported, behind a NUL, so it equals
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
    by_key: HashMap<String, IndexEntry>,
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
        ObjectIndex { by_key }
    }

    pub fn get(&self, key: &str) -> Option<&IndexEntry> {
        self.by_key.get(key)
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
    pub fn replace(&mut self, key: &str, meta: &ObjectMeta<'_>) -> (Change, Option<IndexEntry>) {
        let rv = meta.resource_version.as_deref().unwrap_or("");
        match self.by_key.get_mut(key) {
            Some(entry) if entry.resource_version == rv => (Change::Unchanged, None),
            Some(entry) => {
                let old = std::mem::replace(&mut entry.resource_version, rv.to_owned());
                let previous = IndexEntry {
                    namespace: entry.namespace.clone(),
                    name: entry.name.clone(),
                    resource_version: old,
                };
                (Change::Changed, Some(previous))
            }
            None => {
                self.by_key.insert(
                    key.to_owned(),
                    IndexEntry {
                        namespace: meta.namespace.as_deref().map(str::to_owned),
                        name: meta.name.as_deref().unwrap_or("").to_owned(),
                        resource_version: rv.to_owned(),
                    },
                );
                (Change::New, None)
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &IndexEntry)> {
        self.by_key.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn remove(&mut self, key: &str) -> Option<IndexEntry> {
        self.by_key.remove(key)
    }

    /// Removes and returns every entry whose key `keep` rejects.
    pub fn drain_unseen(
        &mut self,
        mut keep: impl FnMut(&str) -> bool,
    ) -> Vec<(String, IndexEntry)> {
        let gone: Vec<String> = self.by_key.keys().filter(|k| !keep(k)).cloned().collect();
        let mut out: Vec<(String, IndexEntry)> = gone
            .into_iter()
            .filter_map(|k| self.by_key.remove(&k).map(|e| (k, e)))
            .collect();
        // Deterministic order for records and tests.
        out.sort_by(|a, b| (&a.1.namespace, &a.1.name).cmp(&(&b.1.namespace, &b.1.name)));
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

    #[test]
    fn upsert_classifies_and_drain_removes_unseen() {
        let mut idx = ObjectIndex::default();
        assert_eq!(idx.upsert("u1", &meta("u1", "a", "1")), Change::New);
        assert_eq!(idx.upsert("u1", &meta("u1", "a", "1")), Change::Unchanged);
        assert_eq!(idx.upsert("u1", &meta("u1", "a", "2")), Change::Changed);
        idx.upsert("u2", &meta("u2", "b", "3"));
        let gone = idx.drain_unseen(|k| k == "u1");
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1.name, "b");
        assert_eq!(idx.len(), 1);
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

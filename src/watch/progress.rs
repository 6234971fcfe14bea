//! What the machine tells its owner besides events: how each step moved
//! the watch's position (resourceVersion and object index). The daemon's
//! commit ledger (`state::Ledger`) uses these to know, at any time, which
//! resourceVersion and which index the sinks have fully handled, without a
//! second copy of the index: a step's `previous` entry is what the index
//! held before it, so until the step is handled the ledger reports that.

use super::index::IndexEntry;

/// One step of the watch: an event from the stream, a listed object that
/// changed the index, a synthesised DELETED, a bookmark, or the end of a
/// list. Reported once per step, after the step's event (if the watch
/// forwards it at all) was emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress<'a> {
    /// Where the watch resumes once this step is handled; `None` for steps
    /// that do not move it (listed objects: the list's version only counts
    /// once the whole list is handled).
    pub resource_version: Option<&'a str>,
    /// The index entry the step changed, if any.
    pub change: Option<IndexChange<'a>>,
}

/// One index entry changed (added, updated or removed) by a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexChange<'a> {
    pub key: &'a str,
    /// What the index held for `key` before the step; `None`: nothing.
    pub previous: Option<IndexEntry>,
}

impl<'a> Progress<'a> {
    /// A step that only moves the resume point (bookmark, end of a list).
    pub fn version(resource_version: &'a str) -> Self {
        Progress {
            resource_version: Some(resource_version),
            change: None,
        }
    }

    /// A step that changed `key` and moves the resume point to `rv`.
    pub fn changed(key: &'a str, previous: Option<IndexEntry>, rv: Option<&'a str>) -> Self {
        Progress {
            resource_version: rv,
            change: Some(IndexChange { key, previous }),
        }
    }
}

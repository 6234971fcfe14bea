//! What the machine tells its owner besides events: how each step moved
//! the watch's position (resourceVersion and object index). The daemon's
//! commit ledger (`state::Ledger`) replays these steps in order once the
//! sinks have handled the step's event, so a checkpoint only ever holds
//! progress that was delivered.

/// One step of the watch: an event from the stream, a listed object that
/// changed the index, a synthesised DELETED, a bookmark, or the end of a
/// list. Reported once per step, after the step's event (if the watch
/// forwards it at all) was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    /// Where the watch resumes once this step is handled; `None` for steps
    /// that do not move it (listed objects: the list's version only counts
    /// once the whole list is handled).
    pub resource_version: Option<&'a str>,
    pub change: IndexChange<'a>,
}

/// How a step changed the index of known objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexChange<'a> {
    None,
    /// The object is known with this version (added or changed).
    Put {
        key: &'a str,
        namespace: Option<&'a str>,
        name: &'a str,
        resource_version: &'a str,
    },
    /// The object is gone.
    Remove {
        key: &'a str,
    },
}

impl<'a> Progress<'a> {
    /// A step that only moves the resume point (bookmark, end of a list).
    pub fn version(resource_version: &'a str) -> Self {
        Progress {
            resource_version: Some(resource_version),
            change: IndexChange::None,
        }
    }
}

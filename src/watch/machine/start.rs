//! Where a watch starts: from its own checkpoint, from what a crashed run
//! had reported without a position, or (a standby) from the state its
//! leader confirmed. Each is only meaningful before the first request.

use super::phase::{Attempt, Phase, Step};
use super::WatchMachine;
use crate::watch::index::ObjectIndex;

impl WatchMachine {
    /// Starts from a checkpoint instead of a first list: watch from
    /// `resource_version`, knowing `index`. If that version has expired the
    /// watch relists and reports the difference (origin "relist"); the
    /// watch's `on_start` does not apply. Only meaningful before the first
    /// request.
    pub fn resume_from(&mut self, resource_version: String, index: ObjectIndex) {
        log::info!(
            "watch {}: resuming from the checkpoint at resourceVersion {resource_version} ({} objects known)",
            self.spec.name,
            index.len()
        );
        self.known.resume_rv = Some(resource_version);
        self.known.index = index;
        // A watch by kind still discovers its path first (`first_step`
        // then watches from the checkpoint).
        if let Phase::Running { attempt, .. } = &mut self.phase {
            *attempt = Attempt::Ready(Step::Watch);
        }
    }

    /// Starts knowing `index` but from no position: objects a run that
    /// crashed before its first position was handled had reported (all
    /// unconfirmed). The first list then reports the difference against
    /// them (their DELETED if gone) as `on_start` says.
    pub fn resume_unpositioned(&mut self, index: ObjectIndex) {
        self.known.index = index;
    }

    /// A standby whose leader confirmed `resource_version`: the first list
    /// reads the state at exactly that position (then the watch goes on
    /// from it), so a takeover can report everything after it. A watch
    /// resumed from its own checkpoint keeps that. Only meaningful before
    /// the first request.
    pub fn list_first_at(&mut self, resource_version: String) {
        if self.known.resume_rv.is_some() {
            return;
        }
        log::info!(
            "watch {}: listing at the leader's confirmed resourceVersion {resource_version} first",
            self.spec.name
        );
        self.list_at = Some(resource_version);
        let first = self.first_step();
        if let Phase::Running { attempt, .. } = &mut self.phase {
            *attempt = Attempt::Ready(first);
        }
    }
}

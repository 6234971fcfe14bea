//! List rounds: one list of the whole collection (paginated LISTs, or a
//! streaming list's initial events), as a sub-machine of its own.
//!
//! ```text
//! new ──page (continue)──▶ more pages ──last page / end bookmark──▶ conclude
//!  ▲                           │
//!  └── restart (410 on the continue token, a cut streaming list) ──┘
//! ```
//!
//! Each listed object is stamped in the index as the round goes; at the
//! end, what the round did not see is gone (reported as DELETED after a
//! relist, with a synthesised object), and the watch resumes from the
//! list's resourceVersion.

use super::super::event::{Emit, Emitted, Identity, Origin};
use super::super::index::{object_key, shown_version, Change, IndexEntry, Round};
use super::super::progress::Progress;
use super::super::spec::WatchSpec;
use super::known::{deliver, Known};
use super::resolve::Resolved;
use crate::config::EventType;
use crate::kube::event::{excerpt, object_meta_str, ObjectMeta};
use crate::kube::list_scan::ListInfo;
use crate::kube::scan::validate;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListPurpose {
    /// First list of this daemon run with nothing known.
    Initial { deliver: bool },
    /// Diff against the index and emit what changed.
    Relist,
}

#[derive(Debug, Clone)]
pub(super) struct ListRound {
    pub purpose: ListPurpose,
    pub continue_token: Option<String>,
    snapshot_rv: Option<String>,
    /// Read the first page at exactly `snapshot_rv` (a standby starting
    /// from its leader's confirmed position).
    exact: bool,
    /// The index's stamp for the objects this round listed; begun with its
    /// first object (`None`: none listed yet, so every entry is unseen).
    stamp: Option<Round>,
}

/// What follows a LIST page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PageEnd {
    /// A continue token: the next page is due.
    More,
    /// The last page: conclude the round.
    Last,
}

impl ListRound {
    pub fn new(purpose: ListPurpose) -> Self {
        ListRound {
            purpose,
            continue_token: None,
            snapshot_rv: None,
            exact: false,
            stamp: None,
        }
    }

    /// A first list of the state at `rv` exactly (a LIST, never a
    /// streaming list: those only read the current state).
    pub fn exact(purpose: ListPurpose, rv: String) -> Self {
        ListRound {
            exact: true,
            snapshot_rv: Some(rv),
            ..ListRound::new(purpose)
        }
    }

    /// The resourceVersion the next page is read at exactly: the first
    /// page's (the continue token carries it after).
    pub fn exact_rv(&self) -> Option<&str> {
        self.snapshot_rv
            .as_deref()
            .filter(|_| self.exact && self.continue_token.is_none())
    }

    /// An expired continue token or a cut streaming list: the snapshot is
    /// gone, start over. A list at an exact position that is gone
    /// (compacted) becomes a list of the current state that reports
    /// nothing (a baseline, not a replay of every object); returns that
    /// position.
    pub fn restart(&mut self) -> Option<String> {
        self.continue_token = None;
        let rv = self.snapshot_rv.take();
        // Objects stamped with the old round count as unseen again.
        self.stamp = None;
        if !std::mem::take(&mut self.exact) {
            return None;
        }
        self.purpose = ListPurpose::Initial { deliver: false };
        rv
    }

    /// A streaming list's initial-events-end bookmark says where it stands.
    pub fn set_snapshot(&mut self, rv: Option<&str>) {
        self.snapshot_rv = rv.map(str::to_owned);
    }

    /// What the LIST answer says of itself (read as it arrives): the
    /// items' kind, the snapshot's resourceVersion.
    pub fn note_info(&mut self, known: &mut Known, info: &ListInfo) {
        known.learn_kind(info.item_kind.as_deref());
        if self.snapshot_rv.is_none() {
            self.snapshot_rv.clone_from(&info.resource_version);
        }
    }

    /// The end of a LIST answer: whether more pages follow.
    pub fn end_page(&mut self, known: &mut Known, info: &ListInfo) -> PageEnd {
        self.note_info(known, info);
        match &info.continue_token {
            Some(token) => {
                self.continue_token = Some(token.clone());
                PageEnd::More
            }
            None => PageEnd::Last,
        }
    }

    /// One item of a LIST answer as the scanner cut it out: validated
    /// (an error makes the answer unusable), skipped with a warning when
    /// its metadata is unusable.
    pub fn list_item(
        &mut self,
        spec: &WatchSpec,
        known: &mut Known,
        now: Instant,
        item: &[u8],
        out: &mut dyn Emit,
    ) -> Result<(), String> {
        let object =
            std::str::from_utf8(item).map_err(|e| format!("a list item is not UTF-8 ({e})"))?;
        validate(item).map_err(|e| format!("a list item is not JSON: {e}"))?;
        match object_meta_str(object) {
            Ok(meta) => self.item(spec, known, now, object, &meta, out),
            Err(e) => {
                known.stats.skipped_lines += 1;
                log::warn!("watch {}: skipping a list item: {e}", spec.name);
            }
        }
        Ok(())
    }

    /// One object of the list (a LIST item or a streaming list's initial
    /// event): indexed, and delivered as the round's purpose says.
    pub fn item(
        &mut self,
        spec: &WatchSpec,
        known: &mut Known,
        now: Instant,
        object: &str,
        meta: &ObjectMeta<'_>,
        out: &mut dyn Emit,
    ) {
        if spec.excludes(meta) {
            return;
        }
        let Some(key) = object_key(meta) else {
            known.stats.skipped_lines += 1;
            log::warn!(
                "watch {}: skipping a list item without uid or name: {}",
                spec.name,
                excerpt(object.as_bytes())
            );
            return;
        };
        let stamp = *self.stamp.get_or_insert_with(|| known.index.begin_round());
        let (change, previous) = known.index.replace_listed(&key, meta, stamp);
        let progress = Progress::changed(&key, previous, None);
        let (event_type, origin) = match (self.purpose, change) {
            (_, Change::Unchanged) => return,
            (ListPurpose::Initial { deliver: false }, _) if !out.filtering() => {
                out.progress(progress);
                return;
            }
            (ListPurpose::Initial { deliver: false }, _) => {
                let silent = Emitted {
                    event_type: EventType::Added,
                    origin: Origin::List,
                    object,
                    final_state_unknown: false,
                    identity: Identity::of(known.item_kind.as_deref().unwrap_or(""), meta),
                    cut: None,
                };
                if let Some(memory) = out.remember(&silent) {
                    known.index.set_memory(&key, Some(memory));
                }
                out.progress(progress);
                return;
            }
            (ListPurpose::Initial { deliver: true }, Change::New) => {
                (EventType::Added, Origin::List)
            }
            (ListPurpose::Initial { deliver: true }, Change::Changed) => {
                (EventType::Modified, Origin::List)
            }
            (ListPurpose::Relist, Change::New) => (EventType::Added, Origin::Relist),
            (ListPurpose::Relist, Change::Changed) => (EventType::Modified, Origin::Relist),
        };
        let event = Emitted {
            event_type,
            origin,
            object,
            final_state_unknown: false,
            identity: Identity::of(known.item_kind.as_deref().unwrap_or(""), meta),
            cut: None,
        };
        deliver(
            &mut known.stats,
            &mut known.index,
            now,
            &spec.events,
            out,
            event,
            progress,
        );
    }

    /// The end of the list: objects not seen are gone (reported after a
    /// relist), and the watch resumes from the list's resourceVersion.
    pub fn conclude(
        self,
        spec: &WatchSpec,
        resolved: &Resolved,
        known: &mut Known,
        now: Instant,
        out: &mut dyn Emit,
    ) {
        let gone = known.index.drain_unseen(self.stamp);
        let report = !matches!(self.purpose, ListPurpose::Initial { deliver: false });
        for (key, entry) in &gone {
            let progress = Progress::changed(key, Some(entry.clone()), None);
            if !report {
                out.progress(progress);
                continue;
            }
            let kind = known.kind_or_guess(&resolved.resource);
            let object = synthesise_object(resolved, &kind, key, entry);
            let event = Emitted {
                event_type: EventType::Deleted,
                origin: Origin::Relist,
                object: &object,
                final_state_unknown: true,
                identity: Identity {
                    kind: &kind,
                    namespace: entry.namespace().unwrap_or(""),
                    name: entry.name(),
                    uid: if key.contains('/') { "" } else { key },
                    resource_version: shown_version(entry.resource_version()),
                },
                cut: None,
            };
            deliver(
                &mut known.stats,
                &mut known.index,
                now,
                &spec.events,
                out,
                event,
                progress,
            );
        }
        if let Some(rv) = &self.snapshot_rv {
            out.progress(Progress::version(rv));
        }
        log::info!(
            "watch {}: listed {} objects at resourceVersion {}{}",
            spec.name,
            known.index.len(),
            self.snapshot_rv.as_deref().unwrap_or("(none)"),
            if gone.is_empty() {
                String::new()
            } else {
                format!(", {} vanished", gone.len())
            }
        );
        known.resume_rv = self.snapshot_rv;
    }
}

/// A minimal object for a DELETED whose final state was not seen.
fn synthesise_object(resolved: &Resolved, kind: &str, key: &str, entry: &IndexEntry) -> String {
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), entry.name().into());
    if let Some(ns) = entry.namespace() {
        metadata.insert("namespace".into(), ns.into());
    }
    if !key.contains('/') {
        metadata.insert("uid".into(), key.into());
    }
    metadata.insert(
        "resourceVersion".into(),
        shown_version(entry.resource_version()).into(),
    );
    serde_json::json!({
        "apiVersion": resolved.api_version,
        "kind": kind,
        "metadata": metadata,
    })
    .to_string()
}

//! The per-watch decision "does this change matter?": `redact`, then
//! `select`, then `changes`, against what was last reported of the object.
//!
//! ```text
//!   event ─▶ redact ─▶ select? ──no──▶ was reported? ──no──▶ skip (unselected)
//!                        │                 │yes
//!                        │                 └──▶ report once, "selected": false
//!                        │yes                   (a hook can undo), forget it
//!                        ▼
//!               MODIFIED of a reported object
//!               with the same projection? ──yes──▶ skip (unchanged)
//!                        │no (ADDED, list item, DELETED, changed, first)
//!                        ▼
//!               report with projection + previous_projection
//! ```
//!
//! Sans-I/O and stateless: the caller keeps one [`Memory`] per object (in
//! the watch's index, so the state store carries it across restarts) and passes
//! it in; [`WatchFilter::decide`] returns the verdict and the new memory.
//! Runtime errors fail open (the event is treated as selected and changed
//! and the record says why), except redaction, which fails closed.

use super::jq::{Program, RunError};
use super::json;
use super::partial::Cut;
use super::reads::Reads;
use super::redact::{RedactKey, Redacted, Redactor};
use jaq_json::Val;

/// The error a failed `redact` path reports, instead of jaq's message.
pub const REDACT_FAILED: &str =
    "a redact path failed at run time; the object is cut to its kind, apiVersion and identity";

/// The kind of change, as far as the filter cares: a list item (initial
/// list or relist) is an ADDED; a MODIFIED derived by a relist is a
/// MODIFIED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

/// Why an event was skipped; the `reason` label of
/// `kwatchd_watch_events_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    Unselected,
    Unchanged,
}

impl SkipReason {
    pub const ALL: [SkipReason; 2] = [SkipReason::Unselected, SkipReason::Unchanged];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Unselected => "unselected",
            SkipReason::Unchanged => "unchanged",
        }
    }
}

/// Which key an error came from; the `key` label of
/// `kwatchd_filter_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterKey {
    Select,
    Changes,
    Redact,
    Transform,
}

impl FilterKey {
    pub const ALL: [FilterKey; 4] = [
        FilterKey::Select,
        FilterKey::Changes,
        FilterKey::Redact,
        FilterKey::Transform,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FilterKey::Select => "select",
            FilterKey::Changes => "changes",
            FilterKey::Redact => "redact",
            FilterKey::Transform => "transform",
        }
    }
}

/// A runtime error of one of the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub key: FilterKey,
    pub message: String,
}

/// What the filter remembers of one object between events: whether its
/// last record said it was selected, and the projection that record
/// carried (canonical JSON; `None` without `changes`, or after an error).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Memory {
    pub reported: bool,
    pub projection: Option<Box<[u8]>>,
}

/// What to do with one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Acknowledge without delivering; the position still moves.
    Skip(SkipReason),
    Report(Report),
}

/// The fields a reported record gains.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct Report {
    /// False for the one record of an object that stopped being selected.
    pub selected: bool,
    /// Canonical JSON of the projection (watches with `changes`).
    pub projection: Option<Vec<u8>>,
    /// What the object's previous record carried (`null` when none).
    pub previous_projection: Option<Box<[u8]>>,
    /// The object re-rendered after redaction, when a value was replaced:
    /// the record must carry this instead of the server's bytes.
    pub object: Option<Vec<u8>>,
    /// The first runtime error, for the record's `filter_error`.
    pub error: Option<FilterError>,
}

/// `select`, `changes` and `redact` of one watch, compiled.
#[derive(Debug)]
pub struct WatchFilter {
    select: Option<Program>,
    changes: Option<Program>,
    redact: Option<Redactor>,
    key: RedactKey,
    /// What the three read together, when bounded: one value cut to these
    /// paths serves all of them (`filter::partial`).
    reads: Option<Reads>,
}

impl WatchFilter {
    pub fn new(
        select: Option<Program>,
        changes: Option<Program>,
        redact: Option<Redactor>,
        key: RedactKey,
    ) -> WatchFilter {
        let each = [
            select.as_ref().map(Program::reads),
            changes.as_ref().map(Program::reads),
            redact.as_ref().map(Redactor::reads),
        ];
        let reads = Reads::union(each.into_iter().flatten());
        WatchFilter {
            select,
            changes,
            redact,
            key,
            reads,
        }
    }

    /// The same filter parsing every object whole: the reference the cut
    /// values are tested against.
    #[cfg(test)]
    pub(crate) fn without_cut(mut self) -> WatchFilter {
        self.reads = None;
        self
    }

    /// What the programs read together, when bounded: the paths a
    /// [`Cut`] made in an event's scan must hold.
    pub fn reads(&self) -> Option<&Reads> {
        self.reads.as_ref()
    }

    /// Records carry `projection` and `previous_projection`.
    pub fn has_changes(&self) -> bool {
        self.changes.is_some()
    }

    /// True when the watch keeps per-object memory (needs `select` or
    /// `changes`); a redact-only watch reports everything.
    pub fn remembers(&self) -> bool {
        self.select.is_some() || self.changes.is_some()
    }

    /// What to remember of an object that exists but is not reported
    /// (`on_start = "skip"`): as if its ADDED had been, so a later change
    /// is compared with this state. `None` when the watch remembers
    /// nothing or the object is not selected.
    pub fn baseline(&self, object: &[u8]) -> Option<Memory> {
        if !self.remembers() {
            return None;
        }
        self.decide(Change::Added, object, None).1
    }

    /// Decides one event. `memory` is what the object's index entry holds
    /// (`None`: never seen by this filter, e.g. after a definition change).
    /// Returns the verdict and the memory to keep (`None`: forget, for a
    /// DELETED).
    pub fn decide(
        &self,
        change: Change,
        object: &[u8],
        memory: Option<&Memory>,
    ) -> (Verdict, Option<Memory>) {
        self.decide_with(change, object, None, memory)
    }

    /// [`WatchFilter::decide`] with `object` already cut to [`Self::reads`]
    /// (`cut`, made while its event was scanned), if it was.
    pub fn decide_with(
        &self,
        change: Change,
        object: &[u8],
        cut: Option<&Cut>,
        memory: Option<&Memory>,
    ) -> (Verdict, Option<Memory>) {
        // A DELETED of an object this filter knows and never reported: its
        // ADDED was skipped, so its end is nobody's business either,
        // whatever it looks like; nothing to parse or evaluate.
        if change == Change::Deleted && self.select.is_some() && memory.is_some_and(|m| !m.reported)
        {
            return (Verdict::Skip(SkipReason::Unselected), None);
        }
        let mut errors = Vec::new();
        let (value, rewritten) = self.prepare(object, cut, &mut errors);

        let selected = match (&self.select, &value) {
            (None, _) | (_, None) => true,
            (Some(p), Some(v)) => match p.first(v.clone()) {
                Ok(out) => matches!(out, Some(Val::Bool(true))),
                Err(RunError(message)) => {
                    errors.push(FilterError {
                        key: FilterKey::Select,
                        message,
                    });
                    true
                }
            },
        };
        let was_reported = memory.is_some_and(|m| m.reported);
        // Borrowed: copied only into a record (an unchanged object's event
        // copies nothing).
        let previous = memory.and_then(|m| m.projection.as_deref());

        if !selected {
            let forget = change == Change::Deleted;
            if !was_reported {
                let keep = (!forget).then(|| Memory {
                    reported: false,
                    projection: previous.map(Box::from),
                });
                return (Verdict::Skip(SkipReason::Unselected), keep);
            }
            let projection = self.project(value.as_ref(), &mut errors);
            let keep = (!forget).then(|| Memory {
                reported: false,
                projection: projection
                    .clone()
                    .map(Vec::into_boxed_slice)
                    .or(previous.map(Box::from)),
            });
            let report = Report {
                selected: false,
                projection,
                previous_projection: previous.map(Box::from),
                object: rewritten,
                error: errors.into_iter().next(),
            };
            return (Verdict::Report(report), keep);
        }

        let projection = self.project(value.as_ref(), &mut errors);
        let unchanged = change == Change::Modified
            && was_reported
            && errors.is_empty()
            && self.changes.is_some()
            && projection.as_deref() == previous;
        if unchanged {
            return (Verdict::Skip(SkipReason::Unchanged), memory.cloned());
        }
        let keep = (change != Change::Deleted).then(|| Memory {
            reported: true,
            // After an error the next event compares against nothing, so
            // it is reported (fail open).
            projection: if errors.is_empty() {
                projection.clone().map(Vec::into_boxed_slice)
            } else {
                None
            },
        });
        let report = Report {
            selected: true,
            projection,
            previous_projection: previous.map(Box::from),
            object: rewritten,
            error: errors.into_iter().next(),
        };
        (Verdict::Report(report), keep)
    }

    /// The object as the programs see it (cut to what they read when that
    /// is safe, redacted) and, when redaction replaced a value, the whole
    /// object re-rendered for the record.
    fn prepare(
        &self,
        object: &[u8],
        cut: Option<&Cut>,
        errors: &mut Vec<FilterError>,
    ) -> (Option<Val>, Option<Vec<u8>>) {
        let cut = match cut.filter(|_| self.reads.is_some()) {
            Some(c) => Some(c.value().clone()),
            None => self
                .reads
                .as_ref()
                .and_then(|r| super::partial::extract(object, r)),
        };
        if let Some(cut) = cut {
            // The cut holds everything the redact paths read, so they find
            // the same values in it as in the whole object: when they find
            // none, the cut is what the programs see.
            let untouched = match &self.redact {
                None => true,
                Some(redactor) => {
                    let mut probe = cut.clone();
                    redactor.apply(&self.key, &mut probe) == Redacted::Untouched
                }
            };
            if untouched {
                return (Some(cut), None);
            }
        }
        let mut rewritten = None;
        let mut value = match json::parse(object) {
            Ok(v) => Some(v),
            Err(message) => {
                errors.push(FilterError {
                    key: FilterKey::Select,
                    message,
                });
                None
            }
        };
        if let (Some(redactor), Some(v)) = (&self.redact, value.as_mut()) {
            match redactor.apply(&self.key, v) {
                Redacted::Untouched => {}
                Redacted::Replaced => rewritten = Some(v.clone()),
                // jaq's message may quote the value it failed on: it goes
                // nowhere, like the value.
                Redacted::CutToIdentity(RunError(_)) => {
                    rewritten = Some(v.clone());
                    errors.push(FilterError {
                        key: FilterKey::Redact,
                        message: REDACT_FAILED.to_owned(),
                    });
                }
            }
        }
        let rewritten = match rewritten.map(|v| json::to_json(&v)) {
            Some(Ok(bytes)) => Some(bytes),
            // Unreachable for values parsed from JSON; never let the
            // unredacted bytes through if it happens.
            Some(Err(message)) => {
                errors.push(FilterError {
                    key: FilterKey::Redact,
                    message,
                });
                Some(b"{}".to_vec())
            }
            None => None,
        };
        (value, rewritten)
    }

    fn project(&self, value: Option<&Val>, errors: &mut Vec<FilterError>) -> Option<Vec<u8>> {
        let (program, v) = (self.changes.as_ref()?, value?);
        let out = program
            .first(v.clone())
            .map_err(|RunError(m)| m)
            .and_then(|out| json::to_canonical_json(&out.unwrap_or(Val::Null)));
        match out {
            Ok(bytes) => Some(bytes),
            Err(message) => {
                errors.push(FilterError {
                    key: FilterKey::Changes,
                    message,
                });
                None
            }
        }
    }
}

#[cfg(test)]
#[path = "object_tests.rs"]
mod tests;

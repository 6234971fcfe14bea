//! What a watch knows and has counted, whatever phase it is in: the object
//! index, the kind of its objects, where it resumes, its counters and its
//! last error. The list rounds and the stream update it; the machine only
//! decides which of them runs.

use super::super::event::{Decided, Emit, Emitted};
use super::super::index::{IndexEntry, ObjectIndex};
use super::super::progress::Progress;
use super::super::stats::{ReconnectReason, WatchStats};
use crate::config::EventType;
use std::time::Instant;

#[derive(Debug, Default)]
pub(super) struct Known {
    pub index: ObjectIndex,
    /// The kind of the watch's objects, once discovery, a list or an event
    /// said it (or guessed from the resource for metadata-only watches,
    /// whose objects do not say).
    pub item_kind: Option<String>,
    /// Where the next WATCH starts; `None` until a list completed (or a
    /// checkpoint said).
    pub resume_rv: Option<String>,
    pub stats: WatchStats,
    /// What went wrong last, for status and health (kept after recovery).
    pub last_error: Option<String>,
    /// The last failure was a stream that stayed open without a line until
    /// its deadline (a server keeping it alive with blank lines): until a
    /// success, opening a stream does not reset `consecutive_failures`.
    pub silent_streams: bool,
}

impl Known {
    /// Learns the objects' kind from the server unless already known.
    pub fn learn_kind(&mut self, kind: Option<&str>) {
        if self.item_kind.is_none() {
            self.item_kind = kind.map(str::to_owned);
        }
    }

    /// Moves the resume point, reusing its buffer (once per event).
    pub fn resume_at(&mut self, rv: &str) {
        match &mut self.resume_rv {
            Some(r) => {
                r.clear();
                r.push_str(rv);
            }
            None => self.resume_rv = Some(rv.to_owned()),
        }
    }

    pub fn count_reconnect(&mut self, reason: ReconnectReason) {
        self.stats.reconnects += 1;
        self.stats.reconnects_by_reason[reason as usize] += 1;
    }

    /// A list page, a line on a stream, a stream that ended normally.
    pub fn succeeded(&mut self) {
        self.stats.consecutive_failures = 0;
        self.silent_streams = false;
    }

    pub fn count_failure(&mut self, error: String) {
        self.stats.consecutive_failures = self.stats.consecutive_failures.saturating_add(1);
        self.last_error = Some(error);
    }

    /// The kind to write on a synthesised object.
    pub fn kind_or_guess(&self, resource: &str) -> String {
        self.item_kind
            .clone()
            .unwrap_or_else(|| guess_kind(resource))
    }
}

/// Counts the event, hands it on if the watch wants its type (and the
/// owner's filter, if any, lets it through), then reports the step's
/// progress (always, so the ledger sees every index change and version in
/// order, whether the event was forwarded, filtered out or skipped).
/// Takes the counters and the index alone so that `event` may borrow the
/// rest of [`Known`].
pub(super) fn deliver(
    stats: &mut WatchStats,
    index: &mut ObjectIndex,
    now: Instant,
    wanted: &[EventType],
    out: &mut dyn Emit,
    event: Emitted<'_>,
    progress: Progress<'_>,
) {
    stats.events += 1;
    stats.events_by_type[event.event_type as usize] += 1;
    stats.last_event = Some(now);
    if !wanted.contains(&event.event_type) {
        // Not forwarded, so not decided either.
    } else if !out.filtering() {
        // No filter: no index lookup, nothing to remember.
        out.emit(event);
    } else {
        // A DELETED's object is out of the index already: what the filter
        // remembered is in the entry the step removed.
        // Otherwise the memory is taken out of the index (no copy of its
        // projection) and put back, or replaced by the filter's new one.
        let change = progress.change.as_ref();
        let live = change.filter(|_| event.event_type != EventType::Deleted);
        let taken = live.and_then(|c| index.take_memory(c.key));
        let memory = match (change, event.event_type) {
            (Some(c), EventType::Deleted) => c.previous.as_ref().and_then(IndexEntry::memory),
            _ => taken.as_ref(),
        };
        let decided = out.decide(&event, memory);
        match decided {
            None => {
                if let Some(c) = live {
                    index.set_memory(c.key, taken);
                }
                out.emit(event);
            }
            Some(Decided { emit, memory }) => {
                if let Some(c) = live {
                    index.set_memory(c.key, memory);
                }
                if emit {
                    out.emit(event);
                }
            }
        }
    }
    out.progress(progress);
}

/// "pods" → "Pod", for synthesised objects when the server never said.
pub(super) fn guess_kind(plural: &str) -> String {
    let singular = plural
        .strip_suffix("ies")
        .map(|s| format!("{s}y"))
        .or_else(|| plural.strip_suffix("ses").map(|s| format!("{s}s")))
        .or_else(|| plural.strip_suffix('s').map(str::to_owned))
        .unwrap_or_else(|| plural.to_owned());
    let mut chars = singular.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => singular,
    }
}

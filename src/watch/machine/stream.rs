//! An open watch stream: its events after the initial list (index,
//! resume point, delivery), a streaming list's initial events up to its
//! initial-events-end bookmark, and what an ending stream says about the
//! server. ERROR events are not handled here: they are answers the policy
//! decides on (`policy.rs`).

use super::super::event::{Emit, Emitted, Identity, Origin};
use super::super::index::{object_key, object_key_ref, Change};
use super::super::progress::Progress;
use super::super::spec::WatchSpec;
use super::known::{deliver, Known};
use super::list::ListRound;
use crate::config::EventType;
use crate::filter::partial::{Cut, OnePass};
use crate::kube::{ParseError, WatchEvent, WatchEventType};
use std::time::{Duration, Instant};

/// A watch that ends this soon without any event is treated as a failure,
/// so a server that closes at once does not get hammered.
const MIN_HEALTHY_STREAM: Duration = Duration::from_secs(1);
/// Marks the bookmark that ends a streaming list's initial events.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// A stream the server answered 200.
#[derive(Debug, Clone)]
pub(super) struct Stream {
    opened: Instant,
    /// Lines received on it (unusable ones too).
    pub events: u64,
    /// `consecutive_failures` when it opened: restored if the stream turns
    /// out to be a failure (ends at once without an event).
    pub failures_before: u32,
}

impl Stream {
    pub fn opened(now: Instant, failures_before: u32) -> Self {
        Stream {
            opened: now,
            events: 0,
            failures_before,
        }
    }

    /// No line yet: `failures_before`, the failures its opening hid.
    pub fn eventless(&self) -> Option<u32> {
        (self.events == 0).then_some(self.failures_before)
    }

    /// Ended at once without any event: the opening was no success.
    pub fn ended_at_once(&self, now: Instant) -> bool {
        self.events == 0 && now.saturating_duration_since(self.opened) < MIN_HEALTHY_STREAM
    }
}

/// Parses one line of a stream; a streamed event's object (`streamed`: not
/// a streaming list's item, which is decided as a list item) is cut for the
/// owner's filter in the same pass, when it wants a cut.
pub(super) fn parse<'a>(
    line: &'a [u8],
    streamed: bool,
    out: &dyn Emit,
) -> (Result<WatchEvent<'a>, ParseError>, Option<Cut>) {
    let Some(reads) = out.cut().filter(|_| streamed) else {
        return (WatchEvent::parse(line), None);
    };
    let mut one_pass = OnePass::new(line, reads);
    let parsed = WatchEvent::parse_with(line, &mut one_pass);
    let cut = parsed.is_ok().then(|| one_pass.finish()).flatten();
    (parsed, cut)
}

/// One event (not ERROR) on a stream past its initial list: moves the
/// resume point, updates the index, delivers (with `cut`, the object cut
/// for the owner's filter while the line was scanned, if it was).
pub(super) fn on_event(
    spec: &WatchSpec,
    known: &mut Known,
    now: Instant,
    event: &WatchEvent<'_>,
    cut: Option<&Cut>,
    out: &mut dyn Emit,
) {
    if event.event_type == WatchEventType::Error {
        // The policy's; the caller decides on it (see the module header).
        return;
    }
    let event_rv = event.meta.resource_version.as_deref();
    if let Some(rv) = event_rv {
        known.resume_at(rv);
    }
    known.learn_kind(event.kind.as_deref());
    if spec.excludes(&event.meta) {
        // Not delivered, but the stream moved on: the checkpoint may too.
        if let Some(rv) = event_rv {
            out.progress(Progress::version(rv));
        }
        return;
    }
    let key = object_key_ref(&event.meta);
    let event_type = match event.event_type {
        WatchEventType::Bookmark | WatchEventType::Error => {
            if let Some(rv) = event_rv {
                out.progress(Progress::version(rv));
            }
            return;
        }
        WatchEventType::Added => EventType::Added,
        WatchEventType::Modified => EventType::Modified,
        WatchEventType::Deleted => EventType::Deleted,
    };
    let unchanged = Progress {
        resource_version: event_rv,
        change: None,
    };
    let progress = match (&key, event_type) {
        (Some(key), EventType::Deleted) => match known.index.remove(key) {
            Some(previous) => Progress::changed(key, Some(previous), event_rv),
            None => unchanged,
        },
        (Some(key), _) => match known.index.replace(key, &event.meta) {
            (Change::Unchanged, _) => unchanged,
            (_, previous) => Progress::changed(key, previous, event_rv),
        },
        (None, _) => {
            log::warn!(
                "watch {}: {} event for an object without uid or name; delivered, not indexed",
                spec.name,
                event_type.as_str()
            );
            unchanged
        }
    };
    // PartialObjectMetadata objects say that, not what they are.
    let kind = if spec.metadata_only {
        known.item_kind.as_deref().or(event.kind.as_deref())
    } else {
        event.kind.as_deref().or(known.item_kind.as_deref())
    }
    .unwrap_or("");
    let emitted = Emitted {
        event_type,
        origin: Origin::Watch,
        object: event.object.get(),
        final_state_unknown: false,
        identity: Identity::of(kind, &event.meta),
        cut,
    };
    deliver(
        &mut known.stats,
        &mut known.index,
        now,
        &spec.events,
        out,
        emitted,
        progress,
    );
}

/// Where a streaming list stands after one of its initial events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Initial {
    More,
    /// The initial-events-end bookmark: the round has its snapshot version
    /// and is to be concluded.
    End,
}

/// An event (not ERROR) of a streaming list before its initial-events-end
/// bookmark: a list item, or the end of the list.
pub(super) fn on_initial_event(
    round: &mut ListRound,
    spec: &WatchSpec,
    known: &mut Known,
    now: Instant,
    event: &WatchEvent<'_>,
    out: &mut dyn Emit,
) -> Initial {
    match event.event_type {
        WatchEventType::Bookmark | WatchEventType::Error => {
            if is_initial_events_end(event.object.get()) {
                round.set_snapshot(event.meta.resource_version.as_deref());
                return Initial::End;
            }
        }
        WatchEventType::Deleted => {
            known.learn_kind(event.kind.as_deref());
            // Not expected before the end of the initial events; a server
            // that sends one anyway is obeyed.
            if let (false, Some(key)) = (spec.excludes(&event.meta), object_key(&event.meta)) {
                // Gone from the index, so not among the round's objects
                // either.
                let previous = known.index.remove(&key);
                let emitted = Emitted {
                    event_type: EventType::Deleted,
                    origin: Origin::Watch,
                    object: event.object.get(),
                    final_state_unknown: false,
                    identity: Identity::of(known.item_kind.as_deref().unwrap_or(""), &event.meta),
                    cut: None,
                };
                let progress = Progress::changed(&key, previous, None);
                deliver(
                    &mut known.stats,
                    &mut known.index,
                    now,
                    &spec.events,
                    out,
                    emitted,
                    progress,
                );
            }
        }
        WatchEventType::Added | WatchEventType::Modified => {
            known.learn_kind(event.kind.as_deref());
            round.item(spec, known, now, event.object.get(), &event.meta, out);
        }
    }
    Initial::More
}

/// Whether a BOOKMARK's object carries `k8s.io/initial-events-end: "true"`.
fn is_initial_events_end(object: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Bookmark {
        #[serde(default)]
        metadata: Meta,
    }
    #[derive(serde::Deserialize, Default)]
    struct Meta {
        #[serde(default)]
        annotations: std::collections::HashMap<String, String>,
    }
    serde_json::from_str::<Bookmark>(object).is_ok_and(|b| {
        b.metadata
            .annotations
            .get(INITIAL_EVENTS_END)
            .is_some_and(|v| v == "true")
    })
}

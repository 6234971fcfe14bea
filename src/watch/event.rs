//! What a watch hands to its owner: events for the sinks (with where they
//! came from and whose object they are) and, through [`Emit::progress`],
//! how each step moved the watch. The sinks and the ledger only ever see
//! these types, never the machine.

use super::progress::Progress;
use crate::config::EventType;
use crate::filter::reads::Reads;
use crate::filter::{Cut, Memory};
use crate::kube::event::ObjectMeta;

/// Where an emitted event came from; written to every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    List,
    Watch,
    Relist,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::List => "list",
            Origin::Watch => "watch",
            Origin::Relist => "relist",
        }
    }
}

/// An event for the sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emitted<'a> {
    pub event_type: EventType,
    pub origin: Origin,
    /// The object's JSON: the server's bytes, or a minimal object for a
    /// synthesised DELETED.
    pub object: &'a str,
    /// Set on DELETED events derived from a relist: the object's last state
    /// was not seen.
    pub final_state_unknown: bool,
    pub identity: Identity<'a>,
    /// The object cut to what the owner's filter reads, made while the
    /// event's line was scanned (streamed events, see [`Emit::cut`]);
    /// `None`: the filter cuts or parses `object` itself.
    pub cut: Option<&'a Cut>,
}

/// Who the object is, for hooks' environment and per-object ordering.
/// Empty strings where the server did not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Identity<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub resource_version: &'a str,
}

impl<'a> Identity<'a> {
    pub(crate) fn of(kind: &'a str, meta: &'a ObjectMeta<'a>) -> Self {
        Identity {
            kind,
            namespace: meta.namespace.as_deref().unwrap_or(""),
            name: meta.name.as_deref().unwrap_or(""),
            uid: meta.uid.as_deref().unwrap_or(""),
            resource_version: meta.resource_version.as_deref().unwrap_or(""),
        }
    }
}

pub trait Emit {
    fn emit(&mut self, event: Emitted<'_>);

    /// How the step whose event (if any) was just emitted moved the watch.
    /// Every emitted event is followed by exactly one call; steps that emit
    /// nothing (filtered events, bookmarks, silent lists) report too.
    fn progress(&mut self, _progress: Progress<'_>) {}

    /// For an owner with a `select`/`changes`/`redact` filter: decides the
    /// event before it is emitted, given what the filter remembered of the
    /// object (kept in the watch's index, so checkpoints carry it). `None`
    /// (the default): no filter, every wanted event is emitted and the
    /// index keeps no memory.
    /// Whether the owner decides events ([`Emit::decide`]); false (the
    /// default) spares every event the index lookup of its memory.
    fn filtering(&self) -> bool {
        false
    }

    fn decide(&mut self, _event: &Emitted<'_>, _memory: Option<&Memory>) -> Option<Decided> {
        None
    }

    /// For an owner with a filter whose programs' reads are bounded: what
    /// they read, so a streamed event's object is cut while its line is
    /// scanned (one pass over its bytes) and handed over in
    /// [`Emitted::cut`]. `None` (the default): nothing to cut.
    fn cut(&self) -> Option<&Reads> {
        None
    }

    /// For an owner with a filter: what to remember of an object that is
    /// not reported (a listed object with `on_start = "skip"`), so its
    /// later changes are compared with the state it started in. `None`:
    /// nothing to remember.
    fn remember(&mut self, _event: &Emitted<'_>) -> Option<Memory> {
        None
    }
}

/// What an owner's filter decided about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// Emit it; otherwise it is skipped (its step still counts).
    pub emit: bool,
    /// What to remember of the object from now on.
    pub memory: Option<Memory>,
}

impl<F: FnMut(Emitted<'_>)> Emit for F {
    fn emit(&mut self, event: Emitted<'_>) {
        self(event)
    }
}

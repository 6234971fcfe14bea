//! The per-watch state machine.

use super::backoff::Backoff;
use super::index::{
    object_key, object_key_ref, shown_version, Change, IndexEntry, ObjectIndex, Round,
};
use super::progress::Progress;
use crate::config::{EventType, InitialList, OnStart, WatchTarget};
use crate::filter::Memory;
use crate::kube::discovery::{Discovery, Query, DISCOVERY_ACCEPT};
use crate::kube::event::{excerpt, object_meta, ObjectMeta};
use crate::kube::{
    ListPage, ResourcePath, Selectors, Status, WatchEvent, WatchEventType, WatchQuery, JSON_ACCEPT,
    METADATA_LIST_ACCEPT, METADATA_WATCH_ACCEPT,
};
use crate::rand::Rng;
use std::time::{Duration, Instant};

const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A LIST page that sends no byte for this long is abandoned.
const LIST_IDLE_LIMIT: Duration = Duration::from_secs(60);
/// A watch that ends this soon without any event is treated as a failure,
/// so a server that closes at once does not get hammered.
const MIN_HEALTHY_STREAM: Duration = Duration::from_secs(1);
/// Retries of a name discovery does not know (yet): a CRD being installed.
const DISCOVERY_BACKOFF_BASE: Duration = Duration::from_secs(1);
const DISCOVERY_BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Marks the bookmark that ends a streaming list's initial events.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

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
    fn of(kind: &'a str, meta: &'a ObjectMeta<'a>) -> Self {
        Identity {
            kind,
            namespace: meta.namespace.as_deref().unwrap_or(""),
            name: meta.name.as_deref().unwrap_or(""),
            uid: meta.uid.as_deref().unwrap_or(""),
            resource_version: meta.resource_version.as_deref().unwrap_or(""),
        }
    }
}

/// Counts the event, hands it on if the watch wants its type (and the
/// owner's filter, if any, lets it through), then reports the step's
/// progress (always, so the ledger sees every index change and version in
/// order, whether the event was forwarded, filtered out or skipped).
fn deliver(
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
    if wanted.contains(&event.event_type) {
        // A DELETED's object is out of the index already: what the filter
        // remembered is in the entry the step removed.
        let change = progress.change.as_ref();
        let memory = match (change, event.event_type) {
            (Some(c), EventType::Deleted) => c.previous.as_ref().and_then(IndexEntry::memory),
            (Some(c), _) => index.get(c.key).and_then(IndexEntry::memory),
            (None, _) => None,
        };
        match out.decide(&event, memory) {
            None => out.emit(event),
            Some(Decided { emit, memory }) => {
                if let Some(c) = change.filter(|_| event.event_type != EventType::Deleted) {
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
    fn decide(&mut self, _event: &Emitted<'_>, _memory: Option<&Memory>) -> Option<Decided> {
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

/// What the watch is configured to do, in the terms the machine needs.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchSpec {
    /// For logs and status: the configured name, with `[NAMESPACE]` when
    /// one configured watch runs one machine per namespace.
    pub name: String,
    /// The configured name, written to records.
    pub record_name: String,
    pub target: WatchTarget,
    /// The server URL's path prefix ("" for most servers).
    pub base_path: String,
    /// `None`: every namespace.
    pub namespace: Option<String>,
    /// Objects in these namespaces are neither delivered nor indexed.
    pub exclude_namespaces: Vec<String>,
    pub metadata_only: bool,
    pub initial_list: InitialList,
    pub selectors: Selectors,
    pub events: Vec<EventType>,
    pub on_start: OnStart,
    pub page_size: u32,
    pub watch_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A discovery document (whole body, like a LIST).
    Discovery,
    List,
    /// A WATCH, or a streaming list (a WATCH that starts with the state).
    Watch,
}

/// A request the daemon should send for this watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPlan {
    pub kind: RequestKind,
    pub path_and_query: String,
    /// The `Accept` header.
    pub accept: &'static str,
}

/// Where the watch's resource lives, known from the configuration or once
/// discovery resolved its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `v1` or `GROUP/VERSION`.
    pub api_version: String,
    /// The plural.
    pub resource: String,
    /// From discovery; `None` for a watch naming its resource directly.
    pub kind: Option<String>,
    pub path: ResourcePath,
}

/// What the daemon does with the stream after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOutcome {
    Continue,
    /// The stream is finished for us (e.g. an ERROR event): close it.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerOutcome {
    Nothing,
    /// The in-flight request went silent: close its connection.
    CloseConnection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListPurpose {
    /// First list of this daemon run with nothing known.
    Initial { deliver: bool },
    /// Diff against the index and emit what changed.
    Relist,
}

#[derive(Debug, Clone)]
struct ListRound {
    purpose: ListPurpose,
    continue_token: Option<String>,
    snapshot_rv: Option<String>,
    /// The index's stamp for the objects this round listed; begun with its
    /// first object (`None`: none listed yet, so every entry is unseen).
    stamp: Option<Round>,
}

impl ListRound {
    fn new(purpose: ListPurpose) -> Self {
        ListRound {
            purpose,
            continue_token: None,
            snapshot_rv: None,
            stamp: None,
        }
    }

    /// An expired continue token: the snapshot is gone, start over.
    fn restart(&mut self) {
        self.continue_token = None;
        self.snapshot_rv = None;
        // Objects stamped with the old round count as unseen again.
        self.stamp = None;
    }
}

#[derive(Debug, Clone)]
enum Step {
    Discover(Box<Discovery>),
    List(ListRound),
    /// A streaming list: the round collects the initial events.
    Stream(ListRound),
    Watch,
}

#[derive(Debug, Clone)]
struct Stream {
    opened: Instant,
    events: u64,
    /// `consecutive_failures` when it opened: restored if the stream turns
    /// out to be a failure (ends at once without an event).
    failures_before: u32,
}

#[derive(Debug, Clone)]
enum InFlight {
    Discover(Box<Discovery>),
    List(ListRound),
    /// `stream` is `None` until the server answered 200. `initial` is set
    /// for a streaming list until its initial-events-end bookmark.
    Watch {
        timeout: Duration,
        stream: Option<Stream>,
        initial: Option<ListRound>,
    },
}

#[derive(Debug, Clone)]
enum Phase {
    Ready(Step),
    InFlight {
        request: InFlight,
        last_activity: Instant,
    },
    BackingOff {
        until: Instant,
        then: Step,
    },
    /// A permanent error (an ambiguous name, a namespace on a
    /// cluster-scoped kind): logged, the watch does not run.
    Failed,
}

/// Counters for logs, status and metrics. Plain integers bumped where the
/// thing happens: no allocation, no clock read of their own.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WatchStats {
    /// Events received (list, watch and relist; filtered types included).
    pub events: u64,
    pub relists: u64,
    /// New requests after the previous one ended or failed; the sum of
    /// `reconnects_by_reason`.
    pub reconnects: u64,
    pub skipped_lines: u64,
    /// `events` by type, indexed by `EventType as usize`.
    pub events_by_type: [u64; 3],
    /// `reconnects` by reason, indexed by `ReconnectReason as usize`.
    pub reconnects_by_reason: [u64; ReconnectReason::ALL.len()],
    /// Bytes received from the server for this watch (lists included).
    pub bytes: u64,
    /// When the last event was received (the loop's clock of that turn).
    pub last_event: Option<Instant>,
    /// Failed attempts since the last success (a list page, a watch stream
    /// opened — unless it ends at once without an event —, a line on an
    /// open stream). Health looks at this.
    pub consecutive_failures: u32,
}

/// Why a watch had to send a new request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectReason {
    /// The server ended the stream (its timeout): resumed, not a failure.
    StreamEnded,
    /// Nothing arrived for the idle limit: presumed dead.
    IdleTimeout,
    /// Connect, TLS, reset, malformed HTTP, a line over the limit.
    TransportError,
    /// A non-2xx answer other than 410.
    HttpError,
    /// 410 Gone (status or ERROR event): relisting.
    Expired,
    /// An ERROR event that was not an expiry.
    ErrorEvent,
}

impl ReconnectReason {
    pub const ALL: [ReconnectReason; 6] = [
        ReconnectReason::StreamEnded,
        ReconnectReason::IdleTimeout,
        ReconnectReason::TransportError,
        ReconnectReason::HttpError,
        ReconnectReason::Expired,
        ReconnectReason::ErrorEvent,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconnectReason::StreamEnded => "stream_ended",
            ReconnectReason::IdleTimeout => "idle_timeout",
            ReconnectReason::TransportError => "transport_error",
            ReconnectReason::HttpError => "http_error",
            ReconnectReason::Expired => "expired",
            ReconnectReason::ErrorEvent => "error_event",
        }
    }
}

#[derive(Debug)]
pub struct WatchMachine {
    spec: WatchSpec,
    /// `None` until discovery resolved a `kind`.
    resolved: Option<Resolved>,
    /// Not-found retries of discovery (slower than request failures).
    discovery_backoff: Backoff,
    /// `initial_list = "auto"` and the server refused a streaming list.
    stream_rejected: bool,
    /// The server refused `PartialObjectMetadata` (406): full objects.
    metadata_fallback: bool,
    phase: Phase,
    index: ObjectIndex,
    resume_rv: Option<String>,
    item_kind: Option<String>,
    backoff: Backoff,
    rng: Rng,
    /// Auth failures in a row; the first is logged loudly.
    auth_failures: u32,
    stats: WatchStats,
    /// What went wrong last, for status and health (kept after recovery).
    last_error: Option<String>,
}

impl WatchMachine {
    pub fn new(spec: WatchSpec, rng: Rng) -> Self {
        let (resolved, discovery) = match &spec.target {
            WatchTarget::Resource {
                api_version,
                resource,
            } => (
                Some(Resolved {
                    api_version: api_version.clone(),
                    resource: resource.clone(),
                    kind: None,
                    path: ResourcePath::new(
                        &spec.base_path,
                        api_version,
                        spec.namespace.as_deref(),
                        resource,
                    ),
                }),
                None,
            ),
            WatchTarget::Kind { name, api_version } => (
                None,
                Some(Discovery::new(
                    &spec.base_path,
                    Query {
                        name: name.clone(),
                        api_version: api_version.clone(),
                    },
                )),
            ),
        };
        let mut m = WatchMachine {
            spec,
            resolved: None,
            discovery_backoff: Backoff::new(DISCOVERY_BACKOFF_BASE, DISCOVERY_BACKOFF_CAP),
            stream_rejected: false,
            metadata_fallback: false,
            phase: Phase::Failed,
            index: ObjectIndex::default(),
            resume_rv: None,
            item_kind: None,
            backoff: Backoff::new(BACKOFF_BASE, BACKOFF_CAP),
            rng,
            auth_failures: 0,
            stats: WatchStats::default(),
            last_error: None,
        };
        m.phase = Phase::Ready(match discovery {
            Some(d) => Step::Discover(Box::new(d)),
            None => {
                m.set_resolved(resolved);
                m.first_step()
            }
        });
        m
    }

    fn set_resolved(&mut self, resolved: Option<Resolved>) {
        if self.spec.metadata_only {
            // PartialObjectMetadata objects do not say what they are.
            self.item_kind = resolved
                .as_ref()
                .map(|r| r.kind.clone().unwrap_or_else(|| guess_kind(&r.resource)));
        }
        self.resolved = resolved;
    }

    /// The first list of this run.
    fn first_step(&self) -> Step {
        if self.resume_rv.is_some() {
            // Resumed from a checkpoint: no initial list.
            return Step::Watch;
        }
        let deliver = self.spec.on_start == OnStart::Added;
        self.list_step(ListPurpose::Initial { deliver })
    }

    /// A LIST or a streaming list, as configured and as the server allows.
    fn list_step(&self, purpose: ListPurpose) -> Step {
        if self.uses_streaming_lists() {
            Step::Stream(ListRound::new(purpose))
        } else {
            Step::List(ListRound::new(purpose))
        }
    }

    fn uses_streaming_lists(&self) -> bool {
        match self.spec.initial_list {
            InitialList::List => false,
            InitialList::Stream => true,
            InitialList::Auto => !self.stream_rejected,
        }
    }

    /// The resource, once known.
    pub fn resolved(&self) -> Option<&Resolved> {
        self.resolved.as_ref()
    }

    /// `v1` or `GROUP/VERSION`, once known.
    pub fn api_version(&self) -> Option<&str> {
        self.resolved.as_ref().map(|r| r.api_version.as_str())
    }

    /// True once this watch fell back from streaming lists to LISTs
    /// because the server refused them (`initial_list = "auto"`).
    pub fn streaming_rejected(&self) -> bool {
        self.stream_rejected
    }

    /// Another watch on the same cluster learnt that it refuses streaming
    /// lists: with `initial_list = "auto"`, use LISTs from now on.
    pub fn disable_streaming(&mut self) {
        if self.spec.initial_list != InitialList::Auto || self.stream_rejected {
            return;
        }
        self.stream_rejected = true;
        let step = match &mut self.phase {
            Phase::Ready(step) | Phase::BackingOff { then: step, .. } => step,
            _ => return,
        };
        if let Step::Stream(round) = step {
            *step = Step::List(ListRound::new(round.purpose));
        }
    }

    fn path_str(&self) -> &str {
        self.resolved.as_ref().map_or("", |r| r.path.as_str())
    }

    fn excluded(&self, meta: &ObjectMeta<'_>) -> bool {
        !self.spec.exclude_namespaces.is_empty()
            && meta
                .namespace
                .as_deref()
                .is_some_and(|ns| self.spec.exclude_namespaces.iter().any(|e| e == ns))
    }

    fn metadata_accept(&self, list: bool) -> &'static str {
        match (self.spec.metadata_only && !self.metadata_fallback, list) {
            (true, true) => METADATA_LIST_ACCEPT,
            (true, false) => METADATA_WATCH_ACCEPT,
            (false, _) => JSON_ACCEPT,
        }
    }

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
        self.resume_rv = Some(resource_version);
        self.index = index;
        // A watch by kind still discovers its path first (`first_step`
        // then watches from the checkpoint).
        if !matches!(self.phase, Phase::Ready(Step::Discover(_))) {
            self.phase = Phase::Ready(Step::Watch);
        }
    }

    pub fn spec(&self) -> &WatchSpec {
        &self.spec
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn stats(&self) -> WatchStats {
        self.stats
    }

    /// The last failure, if any happened (it stays after recovery; see
    /// `stats().consecutive_failures` for whether it still applies).
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Bytes arrived for this watch.
    pub fn note_bytes(&mut self, n: usize) {
        self.stats.bytes += n as u64;
    }

    fn count_reconnect(&mut self, reason: ReconnectReason) {
        self.stats.reconnects += 1;
        self.stats.reconnects_by_reason[reason as usize] += 1;
    }

    fn count_failure(&mut self, error: String) {
        self.stats.consecutive_failures = self.stats.consecutive_failures.saturating_add(1);
        self.last_error = Some(error);
    }

    /// The objects the watch knows now (read or not yet handled by the
    /// sinks; the ledger tells which).
    pub fn index(&self) -> &ObjectIndex {
        &self.index
    }

    pub fn known_objects(&self) -> usize {
        self.index.len()
    }

    pub fn resume_version(&self) -> Option<&str> {
        self.resume_rv.as_deref()
    }

    /// A short word for logs and status.
    pub fn state_name(&self) -> &'static str {
        match &self.phase {
            Phase::Ready(Step::Discover(_))
            | Phase::InFlight {
                request: InFlight::Discover(_),
                ..
            } => "resolving",
            Phase::Failed => "failed",
            Phase::Ready(Step::Stream(_))
            | Phase::InFlight {
                request:
                    InFlight::Watch {
                        initial: Some(_), ..
                    },
                ..
            } => "listing",
            Phase::Ready(Step::List(_))
            | Phase::InFlight {
                request: InFlight::List(_),
                ..
            } => "listing",
            Phase::Ready(Step::Watch)
            | Phase::InFlight {
                request: InFlight::Watch { stream: None, .. },
                ..
            } => "connecting",
            Phase::InFlight {
                request: InFlight::Watch {
                    stream: Some(_), ..
                },
                ..
            } => "streaming",
            Phase::BackingOff { .. } => "backing off",
        }
    }

    /// True once a list has completed (the watch knows where it stands).
    pub fn has_listed(&self) -> bool {
        self.resume_rv.is_some()
    }

    /// True once the initial list is done and a stream is open.
    pub fn is_streaming(&self) -> bool {
        matches!(
            self.phase,
            Phase::InFlight {
                request: InFlight::Watch {
                    stream: Some(_),
                    initial: None,
                    ..
                },
                ..
            }
        )
    }

    /// True when the watch stopped for good (see the error log).
    pub fn has_failed(&self) -> bool {
        matches!(self.phase, Phase::Failed)
    }

    /// The next request to send, if one is due. Moves the machine to "in
    /// flight"; the daemon must report its outcome.
    pub fn poll_request(&mut self, now: Instant) -> Option<RequestPlan> {
        if let Phase::BackingOff { until, then } = &self.phase {
            if *until > now {
                return None;
            }
            self.phase = Phase::Ready(then.clone());
        }
        if !matches!(self.phase, Phase::Ready(_)) {
            return None;
        }
        let timeout = self.draw_timeout();
        let Phase::Ready(step) = &self.phase else {
            return None;
        };
        let plan = match (step, &self.resolved) {
            (Step::Discover(d), _) => RequestPlan {
                kind: RequestKind::Discovery,
                path_and_query: d.next_path()?.to_owned(),
                accept: DISCOVERY_ACCEPT,
            },
            (_, None) => return None,
            (Step::List(round), Some(res)) => RequestPlan {
                kind: RequestKind::List,
                path_and_query: WatchQuery::List {
                    limit: self.spec.page_size,
                    continue_token: round.continue_token.as_deref(),
                }
                .to_path(&res.path, &self.spec.selectors),
                accept: self.metadata_accept(true),
            },
            (Step::Stream(_), Some(res)) => RequestPlan {
                kind: RequestKind::Watch,
                path_and_query: WatchQuery::StreamingList {
                    timeout_seconds: timeout.as_secs(),
                }
                .to_path(&res.path, &self.spec.selectors),
                accept: self.metadata_accept(false),
            },
            (Step::Watch, Some(res)) => RequestPlan {
                kind: RequestKind::Watch,
                path_and_query: WatchQuery::Watch {
                    resource_version: self.resume_rv.as_deref(),
                    timeout_seconds: timeout.as_secs(),
                }
                .to_path(&res.path, &self.spec.selectors),
                accept: self.metadata_accept(false),
            },
        };
        let request = match std::mem::replace(&mut self.phase, Phase::Ready(Step::Watch)) {
            Phase::Ready(Step::List(round)) => InFlight::List(round),
            Phase::Ready(Step::Discover(d)) => InFlight::Discover(d),
            Phase::Ready(Step::Stream(round)) => InFlight::Watch {
                timeout,
                stream: None,
                initial: Some(round),
            },
            _ => InFlight::Watch {
                timeout,
                stream: None,
                initial: None,
            },
        };
        self.phase = Phase::InFlight {
            request,
            last_activity: now,
        };
        Some(plan)
    }

    /// Server-side timeout for the next watch, spread so that many watches
    /// do not reconnect in lockstep.
    fn draw_timeout(&mut self) -> Duration {
        let base = self.spec.watch_timeout.max(Duration::from_secs(1));
        let t = self.rng.duration_between(base, base * 2);
        Duration::from_secs(t.as_secs().max(1))
    }

    fn idle_limit(&self, request: &InFlight) -> Duration {
        match request {
            InFlight::List(_) | InFlight::Discover(_) => LIST_IDLE_LIMIT,
            // Covers the wait for the response head too.
            InFlight::Watch { timeout, .. } => {
                *timeout + self.spec.watch_timeout.min(Duration::from_secs(30))
            }
        }
    }

    /// Bytes arrived for the in-flight request.
    pub fn note_activity(&mut self, now: Instant) {
        if let Phase::InFlight { last_activity, .. } = &mut self.phase {
            *last_activity = now;
        }
    }

    /// When `on_timer` next has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Ready(_) | Phase::Failed => None,
            Phase::BackingOff { until, .. } => Some(*until),
            Phase::InFlight {
                request,
                last_activity,
            } => Some(*last_activity + self.idle_limit(request)),
        }
    }

    /// True when a request is due now (the daemon should call
    /// `poll_request` once it has room in the sinks).
    pub fn wants_request(&self, now: Instant) -> bool {
        match &self.phase {
            Phase::Ready(_) => true,
            Phase::BackingOff { until, .. } => *until <= now,
            Phase::InFlight { .. } | Phase::Failed => false,
        }
    }

    pub fn on_timer(&mut self, now: Instant) -> TimerOutcome {
        let Phase::InFlight {
            request,
            last_activity,
        } = &self.phase
        else {
            return TimerOutcome::Nothing;
        };
        let limit = self.idle_limit(request);
        if now.saturating_duration_since(*last_activity) < limit {
            return TimerOutcome::Nothing;
        }
        log::warn!(
            "watch {}: no data from the server for {}s; the connection is presumed dead, reconnecting",
            self.spec.name,
            limit.as_secs()
        );
        self.count_reconnect(ReconnectReason::IdleTimeout);
        self.count_failure(format!("no data from the server for {}s", limit.as_secs()));
        self.phase = Phase::Ready(self.retry_step());
        TimerOutcome::CloseConnection
    }

    /// The step to retry after the in-flight request failed.
    fn retry_step(&self) -> Step {
        match &self.phase {
            Phase::InFlight {
                request: InFlight::List(round),
                ..
            } => Step::List(round.clone()),
            Phase::InFlight {
                request:
                    InFlight::Watch {
                        initial: Some(round),
                        ..
                    },
                ..
            } => {
                // A streaming list cannot resume: start it over.
                let mut round = round.clone();
                round.restart();
                Step::Stream(round)
            }
            Phase::InFlight {
                request: InFlight::Discover(d),
                ..
            } => Step::Discover(Box::new(Discovery::new(
                &self.spec.base_path,
                d.query().clone(),
            ))),
            Phase::Ready(step) | Phase::BackingOff { then: step, .. } => step.clone(),
            Phase::InFlight { .. } | Phase::Failed => Step::Watch,
        }
    }

    fn back_off(&mut self, now: Instant, then: Step, retry_after: Option<Duration>) -> Duration {
        let delay = self.backoff.next_delay(now, &mut self.rng, retry_after);
        self.phase = Phase::BackingOff {
            until: now + delay,
            then,
        };
        delay
    }

    /// The connection failed or the response could not be read (connect
    /// error, reset, TLS failure, malformed HTTP, a line over the limit).
    pub fn on_transport_error(&mut self, now: Instant, error: &dyn std::fmt::Display) {
        let step = self.retry_step();
        self.count_reconnect(ReconnectReason::TransportError);
        self.count_failure(error.to_string());
        let delay = self.back_off(now, step, None);
        log::warn!(
            "watch {}: {error}; retrying in {} ms (attempt {})",
            self.spec.name,
            delay.as_millis(),
            self.backoff.attempt()
        );
    }

    /// A non-2xx answer; `body` is what the server sent (a Status, usually).
    pub fn on_http_error(
        &mut self,
        now: Instant,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) {
        let parsed = Status::parse_lenient(body);
        let summary = if parsed.code.is_some() || parsed.message.is_some() {
            parsed.summary()
        } else {
            format!("{status} ({})", excerpt(body))
        };
        if let Phase::InFlight {
            request: InFlight::Discover(_),
            ..
        } = &self.phase
        {
            self.on_discovery_http_error(now, status, retry_after, &summary);
            return;
        }
        let step = self.retry_step();
        if status == 406 && self.spec.metadata_only && !self.metadata_fallback {
            log::warn!(
                "watch {}: the server cannot send PartialObjectMetadata ({summary}); metadata_only falls back to full objects for this watch",
                self.spec.name
            );
            self.metadata_fallback = true;
            self.phase = Phase::Ready(step);
            return;
        }
        if let Step::Stream(round) = &step {
            if self.spec.initial_list == InitialList::Auto && matches!(status, 400 | 403 | 422) {
                log::warn!(
                    "watch {}: the server refused a streaming list ({summary}); using paginated LISTs on this cluster from now on",
                    self.spec.name
                );
                self.stream_rejected = true;
                self.phase = Phase::Ready(Step::List(ListRound::new(round.purpose)));
                return;
            }
        }
        let what = match step {
            Step::List(_) => "LIST",
            Step::Stream(_) => "streaming list",
            _ => "WATCH",
        };
        if status == 410 || (status == 504 && parsed.is_resource_version_too_large()) {
            self.count_reconnect(ReconnectReason::Expired);
            let step = match step {
                Step::List(mut round) => {
                    log::info!(
                        "watch {}: list snapshot expired ({summary}); listing again from the start",
                        self.spec.name
                    );
                    round.restart();
                    Step::List(round)
                }
                Step::Watch => {
                    log::info!(
                        "watch {}: resourceVersion {} is no longer available ({summary}); relisting",
                        self.spec.name,
                        self.resume_rv.as_deref().unwrap_or("(none)")
                    );
                    self.stats.relists += 1;
                    self.list_step(ListPurpose::Relist)
                }
                other => other,
            };
            let retry_after = parsed
                .details
                .as_ref()
                .and_then(|d| d.retry_after_seconds)
                .map(Duration::from_secs)
                .or(retry_after);
            self.phase = match retry_after {
                Some(ra) => Phase::BackingOff {
                    until: now + ra,
                    then: step,
                },
                None => Phase::Ready(step),
            };
            return;
        }
        self.count_reconnect(ReconnectReason::HttpError);
        self.count_failure(format!("{what} answered {summary}"));
        let delay = self.back_off(now, step, retry_after);
        let retry = format!("retrying in {} ms", delay.as_millis());
        match status {
            401 | 403 => {
                self.auth_failures += 1;
                let hint = if status == 401 {
                    "the server refused the credentials; check the cluster's token_file (it is re-read before every request)"
                } else {
                    "the credentials lack permission; grant list and watch on this resource (RBAC)"
                };
                if self.auth_failures == 1 {
                    log::error!(
                        "watch {}: {what} {} answered {summary}: {hint}; {retry}",
                        self.spec.name,
                        self.path_str()
                    );
                } else {
                    log::debug!("watch {}: still {status}; {retry}", self.spec.name);
                }
            }
            404 => log::error!(
                "watch {}: {what} {} answered 404 ({summary}): the server does not serve this resource; check api_version and resource; {retry}",
                self.spec.name,
                self.path_str()
            ),
            _ => log::warn!(
                "watch {}: {what} answered {summary}; {retry}",
                self.spec.name
            ),
        }
    }

    /// A discovery GET failed with a non-2xx status.
    fn on_discovery_http_error(
        &mut self,
        now: Instant,
        status: u16,
        retry_after: Option<Duration>,
        summary: &str,
    ) {
        let Phase::InFlight {
            request: InFlight::Discover(mut d),
            ..
        } = std::mem::replace(&mut self.phase, Phase::Failed)
        else {
            return;
        };
        if status == 404 {
            // A group version that went away, or one asked by api_version
            // that is not served: nothing there.
            d.on_not_found();
            self.after_discovery_step(now, d);
            return;
        }
        let then = Step::Discover(Box::new(Discovery::new(
            &self.spec.base_path,
            d.query().clone(),
        )));
        let delay = self.back_off(now, then, retry_after);
        log::warn!(
            "watch {}: discovery GET {} answered {summary}; retrying in {} ms",
            self.spec.name,
            d.next_path().unwrap_or(""),
            delay.as_millis()
        );
    }

    /// A 200 discovery document.
    pub fn on_discovery_body(&mut self, now: Instant, body: &[u8]) {
        let Phase::InFlight {
            request: InFlight::Discover(mut d),
            ..
        } = std::mem::replace(&mut self.phase, Phase::Failed)
        else {
            return;
        };
        if let Err(e) = d.on_body(body) {
            self.phase = Phase::InFlight {
                request: InFlight::Discover(d),
                last_activity: now,
            };
            self.on_transport_error(now, &e);
            return;
        }
        self.auth_failures = 0;
        self.after_discovery_step(now, d);
    }

    /// Next discovery GET, or resolve the name once everything is in.
    fn after_discovery_step(&mut self, now: Instant, d: Box<Discovery>) {
        if !d.is_done() {
            self.phase = Phase::Ready(Step::Discover(d));
            return;
        }
        let query = d.query();
        let resolved = match d.resolve() {
            Ok(r) => r,
            Err(e) if e.is_permanent() => {
                log::error!(
                    "watch {}: kind {e}; this watch does not run (the others do); fix the configuration and reload (SIGHUP)",
                    self.spec.name
                );
                self.last_error = Some(format!("kind {e}"));
                self.phase = Phase::Failed;
                return;
            }
            Err(e) => {
                let delay = self.discovery_backoff.next_delay(now, &mut self.rng, None);
                log::warn!(
                    "watch {}: {e}; if it is a CustomResourceDefinition not installed yet, it will be picked up: discovering again in {} s",
                    self.spec.name,
                    delay.as_secs_f32().ceil()
                );
                self.phase = Phase::BackingOff {
                    until: now + delay,
                    then: Step::Discover(Box::new(Discovery::new(
                        &self.spec.base_path,
                        query.clone(),
                    ))),
                };
                return;
            }
        };
        if let (Some(ns), false) = (&self.spec.namespace, resolved.namespaced) {
            let error = format!(
                "{:?} is {} ({}), which is cluster-scoped: namespace {ns:?} cannot apply",
                query.name,
                resolved.qualified(),
                resolved.api_version()
            );
            log::error!(
                "watch {}: {error}; remove namespace from the watch and reload (SIGHUP). This watch does not run (the others do)",
                self.spec.name,
            );
            self.last_error = Some(error);
            self.phase = Phase::Failed;
            return;
        }
        log::info!(
            "watch {}: {:?} is {} ({}, {}; {} discovery)",
            self.spec.name,
            query.name,
            resolved.qualified(),
            resolved.api_version(),
            if resolved.namespaced {
                "namespaced"
            } else {
                "cluster-scoped"
            },
            if d.was_aggregated() {
                "aggregated"
            } else {
                "legacy"
            }
        );
        let api_version = resolved.api_version();
        let path = ResourcePath::new(
            &self.spec.base_path,
            &api_version,
            self.spec.namespace.as_deref(),
            &resolved.plural,
        );
        self.set_resolved(Some(Resolved {
            api_version,
            resource: resolved.plural,
            kind: Some(resolved.kind),
            path,
        }));
        self.phase = Phase::Ready(self.first_step());
    }

    /// A 200 LIST body.
    pub fn on_list_body(&mut self, now: Instant, body: &[u8], out: &mut dyn Emit) {
        let Phase::InFlight {
            request: InFlight::List(_),
            ..
        } = &self.phase
        else {
            return;
        };
        let page = match ListPage::parse(body) {
            Ok(page) => page,
            Err(e) => {
                self.on_transport_error(now, &format_args!("unusable LIST answer: {e}"));
                return;
            }
        };
        let Phase::InFlight {
            request: InFlight::List(mut round),
            ..
        } = std::mem::replace(&mut self.phase, Phase::Ready(Step::Watch))
        else {
            return;
        };
        self.auth_failures = 0;
        self.stats.consecutive_failures = 0;
        self.backoff.note_healthy(now);
        if self.item_kind.is_none() {
            self.item_kind = page.item_kind.clone();
        }
        if round.snapshot_rv.is_none() {
            round.snapshot_rv = page.resource_version.as_deref().map(str::to_owned);
        }
        for item in &page.items {
            let meta = match object_meta(item) {
                Ok(meta) => meta,
                Err(e) => {
                    self.stats.skipped_lines += 1;
                    log::warn!("watch {}: skipping a list item: {e}", self.spec.name);
                    continue;
                }
            };
            self.list_item(now, &mut round, item.get(), &meta, out);
        }
        match page.continue_token {
            Some(token) => {
                round.continue_token = Some(token.into_owned());
                self.phase = Phase::Ready(Step::List(round));
            }
            None => self.finish_list(now, round, out),
        }
    }

    /// One object of a list (a LIST item or a streaming list's initial
    /// event): indexed, and delivered as the round's purpose says.
    fn list_item(
        &mut self,
        now: Instant,
        round: &mut ListRound,
        object: &str,
        meta: &ObjectMeta<'_>,
        out: &mut dyn Emit,
    ) {
        if self.excluded(meta) {
            return;
        }
        let Some(key) = object_key(meta) else {
            self.stats.skipped_lines += 1;
            log::warn!(
                "watch {}: skipping a list item without uid or name: {}",
                self.spec.name,
                excerpt(object.as_bytes())
            );
            return;
        };
        let stamp = *round.stamp.get_or_insert_with(|| self.index.begin_round());
        let (change, previous) = self.index.replace_listed(&key, meta, stamp);
        let progress = Progress::changed(&key, previous, None);
        let (event_type, origin) = match (round.purpose, change) {
            (_, Change::Unchanged) => return,
            (ListPurpose::Initial { deliver: false }, _) => {
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
        let kind = self.item_kind.as_deref().unwrap_or("");
        let event = Emitted {
            event_type,
            origin,
            object,
            final_state_unknown: false,
            identity: Identity::of(kind, meta),
        };
        deliver(
            &mut self.stats,
            &mut self.index,
            now,
            &self.spec.events,
            out,
            event,
            progress,
        );
    }

    fn finish_list(&mut self, now: Instant, round: ListRound, out: &mut dyn Emit) {
        self.conclude_round(now, round, out);
        self.phase = Phase::Ready(Step::Watch);
    }

    /// The end of a list: objects not seen are gone (reported after a
    /// relist), and the watch resumes from the list's resourceVersion.
    fn conclude_round(&mut self, now: Instant, round: ListRound, out: &mut dyn Emit) {
        let gone = self.index.drain_unseen(round.stamp);
        let report = !matches!(round.purpose, ListPurpose::Initial { deliver: false });
        for (key, entry) in &gone {
            let progress = Progress::changed(key, Some(entry.clone()), None);
            if !report {
                out.progress(progress);
            } else {
                let (object, kind) = self.synthesise_object(key, entry);
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
                };
                deliver(
                    &mut self.stats,
                    &mut self.index,
                    now,
                    &self.spec.events,
                    out,
                    event,
                    progress,
                );
            }
        }
        if let Some(rv) = &round.snapshot_rv {
            out.progress(Progress::version(rv));
        }
        log::info!(
            "watch {}: listed {} objects at resourceVersion {}{}",
            self.spec.name,
            self.index.len(),
            round.snapshot_rv.as_deref().unwrap_or("(none)"),
            if gone.is_empty() {
                String::new()
            } else {
                format!(", {} vanished", gone.len())
            }
        );
        self.resume_rv = round.snapshot_rv;
    }

    /// A minimal object (and its kind) for a DELETED whose final state was
    /// not seen.
    fn synthesise_object(&self, key: &str, entry: &IndexEntry) -> (String, String) {
        let (api_version, resource) = self
            .resolved
            .as_ref()
            .map_or(("", ""), |r| (r.api_version.as_str(), r.resource.as_str()));
        let kind = self
            .item_kind
            .clone()
            .unwrap_or_else(|| guess_kind(resource));
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
        let object = serde_json::json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": metadata,
        })
        .to_string();
        (object, kind)
    }

    /// The server answered the WATCH with 200: the stream is open.
    pub fn on_watch_opened(&mut self, now: Instant) {
        if let Phase::InFlight {
            request:
                InFlight::Watch {
                    stream: stream @ None,
                    initial,
                    ..
                },
            last_activity,
        } = &mut self.phase
        {
            let streaming_list = initial.is_some();
            *stream = Some(Stream {
                opened: now,
                events: 0,
                failures_before: self.stats.consecutive_failures,
            });
            self.stats.consecutive_failures = 0;
            *last_activity = now;
            self.auth_failures = 0;
            self.backoff.note_healthy(now);
            if streaming_list {
                log::debug!("watch {}: streaming list opened", self.spec.name);
            } else {
                log::debug!(
                    "watch {}: streaming from resourceVersion {}",
                    self.spec.name,
                    self.resume_rv.as_deref().unwrap_or("(latest)")
                );
            }
        }
    }

    /// One line of an open watch stream.
    pub fn on_watch_line(&mut self, now: Instant, line: &[u8], out: &mut dyn Emit) -> LineOutcome {
        let Phase::InFlight {
            request:
                InFlight::Watch {
                    stream: Some(stream),
                    initial,
                    ..
                },
            last_activity,
        } = &mut self.phase
        else {
            return LineOutcome::Close;
        };
        *last_activity = now;
        stream.events += 1;
        self.stats.consecutive_failures = 0;
        let in_initial = initial.is_some();
        let event = match WatchEvent::parse(line) {
            Ok(event) => event,
            Err(e) => {
                self.stats.skipped_lines += 1;
                log::warn!("watch {}: skipping a line: {e}", self.spec.name);
                return LineOutcome::Continue;
            }
        };
        if in_initial {
            return self.on_initial_event(now, &event, out);
        }
        if let Some(rv) = event.meta.resource_version.as_deref() {
            if event.event_type != WatchEventType::Error {
                match &mut self.resume_rv {
                    Some(r) => {
                        r.clear();
                        r.push_str(rv);
                    }
                    None => self.resume_rv = Some(rv.to_owned()),
                }
            }
        }
        if self.item_kind.is_none() && event.event_type != WatchEventType::Error {
            self.item_kind = event.kind.as_deref().map(str::to_owned);
        }
        let event_rv = event.meta.resource_version.as_deref();
        if self.excluded(&event.meta) {
            // Not delivered, but the stream moved on: the checkpoint may too.
            if let Some(rv) = event_rv {
                out.progress(Progress::version(rv));
            }
            return LineOutcome::Continue;
        }
        let key = object_key_ref(&event.meta);
        let event_type = match event.event_type {
            WatchEventType::Bookmark => {
                if let Some(rv) = event_rv {
                    out.progress(Progress::version(rv));
                }
                return LineOutcome::Continue;
            }
            WatchEventType::Error => return self.on_error_event(now, event.object.get()),
            WatchEventType::Added => EventType::Added,
            WatchEventType::Modified => EventType::Modified,
            WatchEventType::Deleted => EventType::Deleted,
        };
        let progress = match (&key, event_type) {
            (Some(key), EventType::Deleted) => match self.index.remove(key) {
                Some(previous) => Progress::changed(key, Some(previous), event_rv),
                None => Progress {
                    resource_version: event_rv,
                    change: None,
                },
            },
            (Some(key), _) => match self.index.replace(key, &event.meta) {
                (Change::Unchanged, _) => Progress {
                    resource_version: event_rv,
                    change: None,
                },
                (_, previous) => Progress::changed(key, previous, event_rv),
            },
            (None, _) => {
                log::warn!(
                    "watch {}: {} event for an object without uid or name; delivered, not indexed",
                    self.spec.name,
                    event_type.as_str()
                );
                Progress {
                    resource_version: event_rv,
                    change: None,
                }
            }
        };
        let kind = if self.spec.metadata_only {
            self.item_kind.as_deref().or(event.kind.as_deref())
        } else {
            event.kind.as_deref().or(self.item_kind.as_deref())
        }
        .unwrap_or("");
        let emitted = Emitted {
            event_type,
            origin: Origin::Watch,
            object: event.object.get(),
            final_state_unknown: false,
            identity: Identity::of(kind, &event.meta),
        };
        deliver(
            &mut self.stats,
            &mut self.index,
            now,
            &self.spec.events,
            out,
            emitted,
            progress,
        );
        LineOutcome::Continue
    }

    /// An event of a streaming list before its initial-events-end
    /// bookmark: a list item, or the end of the list.
    fn on_initial_event(
        &mut self,
        now: Instant,
        event: &WatchEvent<'_>,
        out: &mut dyn Emit,
    ) -> LineOutcome {
        let Phase::InFlight {
            request: InFlight::Watch { initial, .. },
            ..
        } = &mut self.phase
        else {
            return LineOutcome::Close;
        };
        let Some(mut round) = initial.take() else {
            return LineOutcome::Close;
        };
        match event.event_type {
            WatchEventType::Bookmark => {
                if is_initial_events_end(event.object.get()) {
                    round.snapshot_rv = event.meta.resource_version.as_deref().map(str::to_owned);
                    self.backoff.note_healthy(now);
                    self.conclude_round(now, round, out);
                    return LineOutcome::Continue;
                }
            }
            WatchEventType::Error => {
                let status = Status::parse_lenient(event.object.get().as_bytes());
                self.put_initial(round);
                let step = self.retry_step();
                let delay = self.back_off(now, step, None);
                log::warn!(
                    "watch {}: the server sent an ERROR event during a streaming list ({}); listing again in {} ms",
                    self.spec.name,
                    status.summary(),
                    delay.as_millis()
                );
                return LineOutcome::Close;
            }
            WatchEventType::Added | WatchEventType::Modified | WatchEventType::Deleted => {
                if self.item_kind.is_none() {
                    self.item_kind = event.kind.as_deref().map(str::to_owned);
                }
                if event.event_type == WatchEventType::Deleted {
                    // Not expected before the end of the initial events; a
                    // server that sends one anyway is obeyed.
                    if let (false, Some(key)) =
                        (self.excluded(&event.meta), object_key(&event.meta))
                    {
                        // Gone from the index, so not among the round's
                        // objects either.
                        let previous = self.index.remove(&key);
                        let kind = self.item_kind.as_deref().unwrap_or("");
                        let emitted = Emitted {
                            event_type: EventType::Deleted,
                            origin: Origin::Watch,
                            object: event.object.get(),
                            final_state_unknown: false,
                            identity: Identity::of(kind, &event.meta),
                        };
                        let progress = Progress::changed(&key, previous, None);
                        deliver(
                            &mut self.stats,
                            &mut self.index,
                            now,
                            &self.spec.events,
                            out,
                            emitted,
                            progress,
                        );
                    }
                } else {
                    self.list_item(now, &mut round, event.object.get(), &event.meta, out);
                }
            }
        }
        self.put_initial(round);
        LineOutcome::Continue
    }

    fn put_initial(&mut self, round: ListRound) {
        if let Phase::InFlight {
            request: InFlight::Watch { initial, .. },
            ..
        } = &mut self.phase
        {
            *initial = Some(round);
        }
    }

    fn on_error_event(&mut self, now: Instant, object: &str) -> LineOutcome {
        let status = Status::parse_lenient(object.as_bytes());
        if status.is_expired() {
            log::info!(
                "watch {}: resourceVersion {} expired ({}); relisting",
                self.spec.name,
                self.resume_rv.as_deref().unwrap_or("(none)"),
                status.summary()
            );
            self.stats.relists += 1;
            self.count_reconnect(ReconnectReason::Expired);
            let then = self.list_step(ListPurpose::Relist);
            self.phase = match status.details.as_ref().and_then(|d| d.retry_after_seconds) {
                Some(s) => Phase::BackingOff {
                    until: now + Duration::from_secs(s),
                    then,
                },
                None => Phase::Ready(then),
            };
        } else {
            self.count_reconnect(ReconnectReason::ErrorEvent);
            self.count_failure(format!("ERROR event: {}", status.summary()));
            let delay = self.back_off(now, Step::Watch, None);
            log::warn!(
                "watch {}: the server sent an ERROR event ({}); re-watching in {} ms",
                self.spec.name,
                status.summary(),
                delay.as_millis()
            );
        }
        LineOutcome::Close
    }

    /// The response ended. `clean` is false when the connection closed
    /// without the end of the chunked body (still resumable: every complete
    /// line was handled).
    pub fn on_watch_end(&mut self, now: Instant, clean: bool) {
        let Phase::InFlight {
            request: InFlight::Watch {
                stream, initial, ..
            },
            ..
        } = &self.phase
        else {
            return;
        };
        if let Some(round) = initial {
            if clean && self.spec.initial_list == InitialList::Auto {
                // A server that ends the stream normally without the bookmark
                // does not implement streaming lists (it may have ignored
                // sendInitialEvents): LIST instead.
                log::warn!(
                    "watch {}: the server ended a streaming list without its initial-events-end bookmark; using paginated LISTs on this cluster from now on",
                    self.spec.name
                );
                self.stream_rejected = true;
                self.phase = Phase::Ready(Step::List(ListRound::new(round.purpose)));
                self.count_reconnect(ReconnectReason::StreamEnded);
                return;
            }
            self.on_transport_error(
                now,
                &"the streaming list ended before its initial-events-end bookmark",
            );
            return;
        }
        let failures_before = stream
            .as_ref()
            .map_or(self.stats.consecutive_failures, |s| s.failures_before);
        let quick_and_empty = match stream {
            Some(s) => {
                s.events == 0 && now.saturating_duration_since(s.opened) < MIN_HEALTHY_STREAM
            }
            None => true,
        };
        if quick_and_empty {
            // Counted once, as the failure it is: the opening was no success.
            self.stats.consecutive_failures = failures_before;
            self.on_transport_error(now, &"the watch ended at once without any event");
            return;
        }
        self.count_reconnect(ReconnectReason::StreamEnded);
        self.stats.consecutive_failures = 0;
        log::debug!(
            "watch {}: stream ended{}; resuming from resourceVersion {}",
            self.spec.name,
            if clean { "" } else { " (connection closed)" },
            self.resume_rv.as_deref().unwrap_or("(latest)")
        );
        self.phase = Phase::Ready(Step::Watch);
    }
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

/// "pods" → "Pod", for synthesised objects when the server never said.
fn guess_kind(plural: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(on_start: OnStart) -> WatchSpec {
        WatchSpec {
            name: "pods".into(),
            record_name: "pods".into(),
            target: WatchTarget::Resource {
                api_version: "v1".into(),
                resource: "pods".into(),
            },
            base_path: String::new(),
            namespace: None,
            exclude_namespaces: Vec::new(),
            metadata_only: false,
            initial_list: InitialList::List,
            selectors: Selectors::default(),
            events: vec![EventType::Added, EventType::Modified, EventType::Deleted],
            on_start,
            page_size: 2,
            watch_timeout: Duration::from_secs(300),
        }
    }

    type Seen = Vec<(EventType, Origin, String, bool)>;

    fn collect(seen: &mut Seen) -> impl FnMut(Emitted<'_>) + '_ {
        |e: Emitted<'_>| {
            seen.push((
                e.event_type,
                e.origin,
                e.object.to_owned(),
                e.final_state_unknown,
            ))
        }
    }

    fn pod(uid: &str, rv: &str) -> String {
        format!(
            r#"{{"metadata":{{"name":"p-{uid}","namespace":"ns","uid":"{uid}","resourceVersion":"{rv}"}}}}"#
        )
    }

    fn list_body(rv: &str, cont: &str, items: &[String]) -> Vec<u8> {
        format!(
            r#"{{"kind":"PodList","metadata":{{"resourceVersion":"{rv}","continue":"{cont}"}},"items":[{}]}}"#,
            items.join(",")
        )
        .into_bytes()
    }

    fn line(ty: &str, obj: &str) -> Vec<u8> {
        format!(r#"{{"type":"{ty}","object":{obj}}}"#).into_bytes()
    }

    /// Lists two pages and opens the watch.
    fn listed(m: &mut WatchMachine, now: Instant, seen: &mut Seen) {
        let r = m.poll_request(now).unwrap();
        assert_eq!(r.kind, RequestKind::List);
        assert_eq!(r.path_and_query, "/api/v1/pods?limit=2");
        m.on_list_body(
            now,
            &list_body("10", "c1", &[pod("a", "1"), pod("b", "2")]),
            &mut collect(seen),
        );
        let r = m.poll_request(now).unwrap();
        assert_eq!(r.path_and_query, "/api/v1/pods?limit=2&continue=c1");
        m.on_list_body(
            now,
            &list_body("10", "", &[pod("c", "3")]),
            &mut collect(seen),
        );
        let r = m.poll_request(now).unwrap();
        assert_eq!(r.kind, RequestKind::Watch);
        assert!(r.path_and_query.starts_with(
            "/api/v1/pods?watch=true&resourceVersion=10&allowWatchBookmarks=true&timeoutSeconds="
        ));
        m.on_watch_opened(now);
        assert!(m.is_streaming());
    }

    #[test]
    fn initial_list_delivers_added_then_streams_and_tracks_resume_point() {
        let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
        let now = Instant::now();
        let mut seen = Seen::new();
        listed(&mut m, now, &mut seen);
        assert_eq!(seen.len(), 3);
        assert!(seen
            .iter()
            .all(|s| s.0 == EventType::Added && s.1 == Origin::List));
        seen.clear();
        let out = m.on_watch_line(
            now,
            &line("MODIFIED", &pod("a", "11")),
            &mut collect(&mut seen),
        );
        assert_eq!(out, LineOutcome::Continue);
        assert_eq!(m.resume_version(), Some("11"));
        m.on_watch_line(
            now,
            br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"15"}}}"#,
            &mut collect(&mut seen),
        );
        assert_eq!(m.resume_version(), Some("15"));
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1, Origin::Watch);
        // A normal end after a healthy stream re-watches at once from the bookmark.
        m.on_watch_end(now + Duration::from_secs(5), true);
        let r = m.poll_request(now + Duration::from_secs(5)).unwrap();
        assert!(
            r.path_and_query.contains("resourceVersion=15"),
            "{}",
            r.path_and_query
        );
    }

    #[test]
    fn skip_on_start_delivers_only_changes() {
        let mut m = WatchMachine::new(spec(OnStart::Skip), Rng::new(1));
        let now = Instant::now();
        let mut seen = Seen::new();
        listed(&mut m, now, &mut seen);
        assert!(seen.is_empty());
        assert_eq!(m.known_objects(), 3);
        m.on_watch_line(
            now,
            &line("DELETED", &pod("b", "12")),
            &mut collect(&mut seen),
        );
        assert_eq!(seen.len(), 1);
        assert_eq!(m.known_objects(), 2);
    }

    #[test]
    fn expired_error_event_relists_and_diffs() {
        let mut m = WatchMachine::new(spec(OnStart::Skip), Rng::new(1));
        let now = Instant::now();
        let mut seen = Seen::new();
        listed(&mut m, now, &mut seen);
        let err = r#"{"kind":"Status","status":"Failure","reason":"Expired","code":410,"message":"too old"}"#;
        assert_eq!(
            m.on_watch_line(now, &line("ERROR", err), &mut collect(&mut seen)),
            LineOutcome::Close
        );
        assert_eq!(
            m.resume_version(),
            Some("10"),
            "ERROR must not move the resume point"
        );
        let r = m.poll_request(now).unwrap();
        assert_eq!(r.kind, RequestKind::List);
        // a unchanged, b modified, c gone, d new.
        m.on_list_body(
            now,
            &list_body("20", "", &[pod("a", "1"), pod("b", "19"), pod("d", "18")]),
            &mut collect(&mut seen),
        );
        let got: Vec<_> = seen.iter().map(|s| (s.0, s.1, s.3)).collect();
        assert_eq!(
            got,
            vec![
                (EventType::Modified, Origin::Relist, false),
                (EventType::Added, Origin::Relist, false),
                (EventType::Deleted, Origin::Relist, true),
            ]
        );
        let deleted: serde_json::Value = serde_json::from_str(&seen[2].2).unwrap();
        assert_eq!(deleted["kind"], "Pod");
        assert_eq!(deleted["metadata"]["uid"], "c");
        assert_eq!(deleted["metadata"]["name"], "p-c");
        assert_eq!(deleted["metadata"]["namespace"], "ns");
        let r = m.poll_request(now).unwrap();
        assert!(r.path_and_query.contains("resourceVersion=20"));
        assert_eq!(m.stats().relists, 1);
    }

    /// Records emitted events and reported steps, in order.
    #[derive(Default)]
    struct Steps(Vec<String>);

    impl Emit for Steps {
        fn emit(&mut self, e: Emitted<'_>) {
            self.0.push(format!(
                "emit {} {} {}",
                e.event_type.as_str(),
                e.origin.as_str(),
                e.identity.uid
            ));
        }

        fn progress(&mut self, p: Progress<'_>) {
            let change = match p.change {
                None => "-".to_owned(),
                Some(c) => match c.previous {
                    None => format!("{} (new)", c.key),
                    Some(e) => format!("{} (was {})", c.key, e.resource_version()),
                },
            };
            self.0.push(format!(
                "step {} {change}",
                p.resource_version.unwrap_or("-")
            ));
        }
    }

    fn checkpoint_index() -> ObjectIndex {
        let entry = |name: &str, rv: &str| IndexEntry::new(Some("ns"), name, rv);
        ObjectIndex::from_map(
            [
                ("a".to_owned(), entry("p-a", "1")),
                ("b".to_owned(), entry("p-b", "2")),
                ("c".to_owned(), entry("p-c", "3")),
            ]
            .into(),
        )
    }

    #[test]
    fn every_step_is_reported_after_its_event_filtered_or_not() {
        let mut s = spec(OnStart::Skip);
        s.events = vec![EventType::Added, EventType::Deleted];
        let mut m = WatchMachine::new(s, Rng::new(1));
        let now = Instant::now();
        let mut steps = Steps::default();
        m.poll_request(now).unwrap();
        m.on_list_body(now, &list_body("10", "", &[pod("a", "1")]), &mut steps);
        m.poll_request(now).unwrap();
        m.on_watch_opened(now);
        for l in [
            line("ADDED", &pod("b", "11")),
            line("MODIFIED", &pod("b", "12")),
            line("BOOKMARK", r#"{"metadata":{"resourceVersion":"13"}}"#),
            line("DELETED", &pod("a", "14")),
        ] {
            m.on_watch_line(now, &l, &mut steps);
        }
        assert_eq!(
            steps.0,
            vec![
                "step - a (new)",
                "step 10 -",
                "emit ADDED watch b",
                "step 11 b (new)",
                "step 12 b (was 11)",
                "step 13 -",
                "emit DELETED watch a",
                "step 14 a (was 1)",
            ]
        );
    }

    #[test]
    fn resuming_from_a_checkpoint_watches_from_its_version_without_listing() {
        // on_start = "added" only applies to a first start.
        let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
        m.resume_from("10".into(), checkpoint_index());
        assert!(m.has_listed());
        assert_eq!(m.known_objects(), 3);
        let now = Instant::now();
        let r = m.poll_request(now).unwrap();
        assert_eq!(r.kind, RequestKind::Watch);
        assert!(
            r.path_and_query.contains("resourceVersion=10&"),
            "{}",
            r.path_and_query
        );
        m.on_watch_opened(now);
        let mut steps = Steps::default();
        m.on_watch_line(now, &line("DELETED", &pod("c", "11")), &mut steps);
        assert_eq!(steps.0, vec!["emit DELETED watch c", "step 11 c (was 3)"]);
        assert_eq!(m.known_objects(), 2);
    }

    #[test]
    fn an_expired_checkpoint_relists_and_reports_what_changed_while_down() {
        let err = r#"{"kind":"Status","status":"Failure","reason":"Expired","code":410,"message":"too old"}"#;
        for by_event in [true, false] {
            let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
            m.resume_from("10".into(), checkpoint_index());
            let now = Instant::now();
            m.poll_request(now).unwrap();
            if by_event {
                m.on_watch_opened(now);
                let out = m.on_watch_line(now, &line("ERROR", err), &mut Steps::default());
                assert_eq!(out, LineOutcome::Close);
            } else {
                m.on_http_error(now, 410, None, err.as_bytes());
            }
            let r = m.poll_request(now).unwrap();
            assert_eq!(r.kind, RequestKind::List);
            let mut steps = Steps::default();
            // a unchanged, b modified, c gone, d new.
            m.on_list_body(
                now,
                &list_body("20", "", &[pod("a", "1"), pod("b", "19"), pod("d", "18")]),
                &mut steps,
            );
            assert_eq!(
                steps.0,
                vec![
                    "emit MODIFIED relist b",
                    "step - b (was 2)",
                    "emit ADDED relist d",
                    "step - d (new)",
                    "emit DELETED relist c",
                    "step - c (was 3)",
                    "step 20 -",
                ],
                "by ERROR event: {by_event}"
            );
            let mut seen = Seen::new();
            let mut m2 = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
            m2.resume_from("10".into(), checkpoint_index());
            m2.poll_request(now).unwrap();
            m2.on_http_error(now, 410, None, b"");
            m2.poll_request(now).unwrap();
            m2.on_list_body(
                now,
                &list_body("20", "", &[pod("a", "1")]),
                &mut collect(&mut seen),
            );
            let deleted: Vec<_> = seen.iter().filter(|s| s.3).collect();
            assert_eq!(deleted.len(), 2, "b and c vanished: final state unknown");
            let obj: serde_json::Value = serde_json::from_str(&deleted[0].2).unwrap();
            assert_eq!(obj["metadata"]["name"], "p-b");
            assert_eq!(obj["metadata"]["namespace"], "ns");
            let r = m.poll_request(now).unwrap();
            assert!(r.path_and_query.contains("resourceVersion=20"));
        }
    }

    #[test]
    fn http_410_on_watch_relists_and_on_continue_restarts_the_list() {
        let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
        let now = Instant::now();
        let mut seen = Seen::new();
        m.poll_request(now).unwrap();
        m.on_list_body(
            now,
            &list_body("10", "c1", &[pod("a", "1"), pod("b", "2")]),
            &mut collect(&mut seen),
        );
        let r = m.poll_request(now).unwrap();
        assert!(r.path_and_query.contains("continue=c1"));
        m.on_http_error(now, 410, None, br#"{"code":410,"reason":"Expired"}"#);
        let r = m.poll_request(now).unwrap();
        assert_eq!(
            r.path_and_query, "/api/v1/pods?limit=2",
            "restarted without the stale token"
        );
        m.on_list_body(
            now,
            &list_body("12", "", &[pod("a", "1"), pod("b", "2")]),
            &mut collect(&mut seen),
        );
        assert_eq!(
            seen.len(),
            2,
            "the restarted list does not deliver objects twice"
        );
        m.poll_request(now).unwrap();
        m.on_http_error(now, 410, None, b"");
        assert_eq!(m.poll_request(now).unwrap().kind, RequestKind::List);
    }

    #[test]
    fn failures_back_off_and_honour_retry_after() {
        let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
        let now = Instant::now();
        m.poll_request(now).unwrap();
        m.on_http_error(now, 429, Some(Duration::from_secs(2)), b"");
        assert!(!m.wants_request(now + Duration::from_millis(1999)));
        assert!(m.poll_request(now + Duration::from_millis(1999)).is_none());
        let r = m.poll_request(now + Duration::from_secs(2)).unwrap();
        assert_eq!(r.kind, RequestKind::List, "the list is retried");
        m.on_transport_error(now, &"connection refused");
        assert_eq!(m.state_name(), "backing off");
        assert!(m.deadline().unwrap() <= now + Duration::from_millis(400));
    }

    #[test]
    fn silent_stream_is_closed_after_timeout_plus_grace() {
        let mut s = spec(OnStart::Added);
        s.watch_timeout = Duration::from_secs(2);
        let mut m = WatchMachine::new(s, Rng::new(1));
        let now = Instant::now();
        let mut seen = Seen::new();
        listed(&mut m, now, &mut seen);
        let deadline = m.deadline().unwrap();
        // timeoutSeconds is drawn from [2 s, 4 s); the grace is min(30 s, watch_timeout).
        assert!(
            deadline >= now + Duration::from_secs(4) && deadline < now + Duration::from_secs(6)
        );
        assert_eq!(
            m.on_timer(deadline - Duration::from_millis(1)),
            TimerOutcome::Nothing
        );
        assert_eq!(m.on_timer(deadline), TimerOutcome::CloseConnection);
        let r = m.poll_request(deadline).unwrap();
        assert!(r.path_and_query.contains("resourceVersion=10"));
    }

    #[test]
    fn bad_lines_are_skipped_and_an_immediate_empty_end_backs_off() {
        let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
        let now = Instant::now();
        let mut seen = Seen::new();
        listed(&mut m, now, &mut seen);
        seen.clear();
        for bad in [&b"{not json"[..], br#"{"type":"WHAT","object":{}}"#] {
            assert_eq!(
                m.on_watch_line(now, bad, &mut collect(&mut seen)),
                LineOutcome::Continue
            );
        }
        assert_eq!(m.stats().skipped_lines, 2);
        m.on_watch_end(now, true);
        assert_eq!(m.state_name(), "connecting");
        m.poll_request(now).unwrap();
        m.on_watch_opened(now);
        m.on_watch_end(now + Duration::from_millis(10), true);
        assert_eq!(m.state_name(), "backing off");
    }

    #[test]
    fn event_filter_still_tracks_the_index() {
        let mut s = spec(OnStart::Added);
        s.events = vec![EventType::Deleted];
        let mut m = WatchMachine::new(s, Rng::new(1));
        let now = Instant::now();
        let mut seen = Seen::new();
        listed(&mut m, now, &mut seen);
        assert!(seen.is_empty());
        m.on_watch_line(
            now,
            &line("ADDED", &pod("z", "30")),
            &mut collect(&mut seen),
        );
        assert_eq!(m.known_objects(), 4);
        m.on_watch_line(
            now,
            &line("DELETED", &pod("z", "31")),
            &mut collect(&mut seen),
        );
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn emitted_events_carry_the_object_identity() {
        let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
        let now = Instant::now();
        let mut ids: Vec<(String, String, String, String, String)> = Vec::new();
        let mut grab = |e: Emitted<'_>| {
            let i = e.identity;
            ids.push((
                i.kind.into(),
                i.namespace.into(),
                i.name.into(),
                i.uid.into(),
                i.resource_version.into(),
            ));
        };
        m.poll_request(now).unwrap();
        m.on_list_body(now, &list_body("10", "", &[pod("a", "1")]), &mut grab);
        m.poll_request(now).unwrap();
        m.on_watch_opened(now);
        m.on_watch_line(now, &line("MODIFIED", &pod("a", "11")), &mut grab);
        let err = r#"{"kind":"Status","code":410}"#;
        m.on_watch_line(now, &line("ERROR", err), &mut grab);
        m.poll_request(now).unwrap();
        m.on_list_body(now, &list_body("12", "", &[]), &mut grab);
        let want = |rv: &str| {
            (
                "Pod".to_string(),
                "ns".to_string(),
                "p-a".to_string(),
                "a".to_string(),
                rv.to_string(),
            )
        };
        assert_eq!(ids, vec![want("1"), want("11"), want("11")]);
    }

    fn bookmark(rv: &str, end: bool) -> Vec<u8> {
        let ann = if end {
            r#","annotations":{"k8s.io/initial-events-end":"true"}"#
        } else {
            ""
        };
        format!(r#"{{"type":"BOOKMARK","object":{{"kind":"Pod","apiVersion":"v1","metadata":{{"resourceVersion":"{rv}"{ann}}}}}}}"#)
            .into_bytes()
    }

    fn streaming_spec(initial_list: InitialList, on_start: OnStart) -> WatchSpec {
        let mut s = spec(on_start);
        s.initial_list = initial_list;
        s
    }

    /// Opens a streaming list and feeds it `items` and the end bookmark.
    fn stream_listed(
        m: &mut WatchMachine,
        now: Instant,
        rv: &str,
        items: &[String],
        seen: &mut Seen,
    ) {
        let r = m.poll_request(now).unwrap();
        assert_eq!(r.kind, RequestKind::Watch);
        assert!(
            r.path_and_query.starts_with("/api/v1/pods?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=&allowWatchBookmarks=true&timeoutSeconds="),
            "{}",
            r.path_and_query
        );
        m.on_watch_opened(now);
        assert_eq!(m.state_name(), "listing");
        for item in items {
            m.on_watch_line(now, &line("ADDED", item), &mut collect(seen));
        }
        m.on_watch_line(now, &bookmark(rv, true), &mut collect(seen));
    }

    #[test]
    fn streaming_list_delivers_initial_events_as_list_then_watches() {
        let mut m = WatchMachine::new(
            streaming_spec(InitialList::Stream, OnStart::Added),
            Rng::new(1),
        );
        let now = Instant::now();
        let mut seen = Seen::new();
        let r = m.poll_request(now).unwrap();
        m.on_watch_opened(now);
        assert!(r.path_and_query.contains("sendInitialEvents=true"));
        m.on_watch_line(now, &line("ADDED", &pod("a", "3")), &mut collect(&mut seen));
        m.on_watch_line(now, &bookmark("4", false), &mut collect(&mut seen));
        assert!(
            !m.has_listed(),
            "a plain bookmark does not end the initial events"
        );
        assert!(!m.is_streaming());
        m.on_watch_line(now, &line("ADDED", &pod("b", "5")), &mut collect(&mut seen));
        m.on_watch_line(now, &bookmark("9", true), &mut collect(&mut seen));
        assert!(m.has_listed() && m.is_streaming());
        assert_eq!(m.resume_version(), Some("9"));
        assert_eq!(m.known_objects(), 2);
        m.on_watch_line(
            now,
            &line("MODIFIED", &pod("a", "10")),
            &mut collect(&mut seen),
        );
        let got: Vec<_> = seen.iter().map(|s| (s.0, s.1)).collect();
        assert_eq!(
            got,
            vec![
                (EventType::Added, Origin::List),
                (EventType::Added, Origin::List),
                (EventType::Modified, Origin::Watch)
            ]
        );
        // The stream's normal end re-watches from the last resourceVersion.
        m.on_watch_end(now + Duration::from_secs(5), true);
        let r = m.poll_request(now + Duration::from_secs(5)).unwrap();
        assert!(
            r.path_and_query.contains("resourceVersion=10&"),
            "{}",
            r.path_and_query
        );
        assert!(!r.path_and_query.contains("sendInitialEvents"));
    }

    #[test]
    fn streaming_list_obeys_on_start_skip() {
        let mut m = WatchMachine::new(
            streaming_spec(InitialList::Auto, OnStart::Skip),
            Rng::new(1),
        );
        let now = Instant::now();
        let mut seen = Seen::new();
        stream_listed(&mut m, now, "7", &[pod("a", "1"), pod("b", "2")], &mut seen);
        assert!(seen.is_empty());
        assert_eq!(m.known_objects(), 2);
        m.on_watch_line(
            now,
            &line("DELETED", &pod("a", "8")),
            &mut collect(&mut seen),
        );
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1, Origin::Watch);
    }

    #[test]
    fn auto_falls_back_to_list_when_streaming_is_refused_and_stream_does_not() {
        let now = Instant::now();
        let mut m = WatchMachine::new(
            streaming_spec(InitialList::Auto, OnStart::Added),
            Rng::new(1),
        );
        m.poll_request(now).unwrap();
        m.on_http_error(
            now,
            422,
            None,
            br#"{"kind":"Status","code":422,"reason":"Invalid"}"#,
        );
        assert!(m.streaming_rejected());
        let r = m.poll_request(now).expect("the LIST follows at once");
        assert_eq!(r.kind, RequestKind::List);
        // Relists use LISTs from now on too.
        let mut seen = Seen::new();
        m.on_list_body(
            now,
            &list_body("5", "", &[pod("a", "1")]),
            &mut collect(&mut seen),
        );
        m.poll_request(now).unwrap();
        m.on_http_error(now, 410, None, b"");
        assert_eq!(m.poll_request(now).unwrap().kind, RequestKind::List);

        let mut m = WatchMachine::new(
            streaming_spec(InitialList::Stream, OnStart::Added),
            Rng::new(1),
        );
        m.poll_request(now).unwrap();
        m.on_http_error(now, 422, None, b"");
        assert!(!m.streaming_rejected());
        assert_eq!(m.state_name(), "backing off");
        let r = m.poll_request(now + Duration::from_secs(1)).unwrap();
        assert!(r.path_and_query.contains("sendInitialEvents=true"));
    }

    #[test]
    fn another_watch_learning_the_refusal_switches_a_pending_stream_to_list() {
        let now = Instant::now();
        let mut m = WatchMachine::new(
            streaming_spec(InitialList::Auto, OnStart::Added),
            Rng::new(1),
        );
        m.disable_streaming();
        assert_eq!(m.poll_request(now).unwrap().kind, RequestKind::List);
        let mut m = WatchMachine::new(
            streaming_spec(InitialList::Stream, OnStart::Added),
            Rng::new(1),
        );
        m.disable_streaming();
        assert_eq!(m.poll_request(now).unwrap().kind, RequestKind::Watch);
    }

    #[test]
    fn relist_by_streaming_list_diffs_against_the_index() {
        let mut m = WatchMachine::new(
            streaming_spec(InitialList::Stream, OnStart::Added),
            Rng::new(1),
        );
        let now = Instant::now();
        let mut seen = Seen::new();
        stream_listed(
            &mut m,
            now,
            "10",
            &[pod("a", "1"), pod("b", "2"), pod("c", "3")],
            &mut seen,
        );
        seen.clear();
        let err = r#"{"kind":"Status","status":"Failure","reason":"Expired","code":410}"#;
        assert_eq!(
            m.on_watch_line(now, &line("ERROR", err), &mut collect(&mut seen)),
            LineOutcome::Close
        );
        // a unchanged, b modified, c gone, d new.
        stream_listed(
            &mut m,
            now,
            "20",
            &[pod("a", "1"), pod("b", "19"), pod("d", "18")],
            &mut seen,
        );
        let got: Vec<_> = seen.iter().map(|s| (s.0, s.1, s.3)).collect();
        assert_eq!(
            got,
            vec![
                (EventType::Modified, Origin::Relist, false),
                (EventType::Added, Origin::Relist, false),
                (EventType::Deleted, Origin::Relist, true),
            ]
        );
        assert_eq!(m.resume_version(), Some("20"));
        assert_eq!(m.stats().relists, 1);
        assert!(m.is_streaming());
    }

    #[test]
    fn a_streaming_list_cut_before_its_end_starts_over() {
        let mut m = WatchMachine::new(
            streaming_spec(InitialList::Stream, OnStart::Added),
            Rng::new(1),
        );
        let now = Instant::now();
        let mut seen = Seen::new();
        m.poll_request(now).unwrap();
        m.on_watch_opened(now);
        m.on_watch_line(now, &line("ADDED", &pod("a", "1")), &mut collect(&mut seen));
        m.on_watch_end(now + Duration::from_secs(2), false);
        assert!(!m.has_listed());
        assert_eq!(m.state_name(), "backing off");
        let later = now + Duration::from_secs(3);
        stream_listed(
            &mut m,
            later,
            "5",
            &[pod("a", "1"), pod("b", "2")],
            &mut seen,
        );
        assert_eq!(seen.len(), 2, "a is not delivered twice");
        assert_eq!(m.resume_version(), Some("5"));
    }

    #[test]
    fn a_streaming_list_that_ends_cleanly_without_its_bookmark_falls_back_to_list() {
        let now = Instant::now();
        let mut seen = Seen::new();
        let mut m = WatchMachine::new(
            streaming_spec(InitialList::Auto, OnStart::Added),
            Rng::new(1),
        );
        m.poll_request(now).unwrap();
        m.on_watch_opened(now);
        m.on_watch_line(now, &line("ADDED", &pod("a", "1")), &mut collect(&mut seen));
        m.on_watch_line(
            now,
            &line("DELETED", &pod("a", "2")),
            &mut collect(&mut seen),
        );
        assert_eq!(m.known_objects(), 0, "a DELETED is obeyed even here");
        m.on_watch_end(now + Duration::from_secs(300), true);
        assert!(m.streaming_rejected());
        assert_eq!(m.poll_request(now).unwrap().kind, RequestKind::List);
        let got: Vec<_> = seen.iter().map(|s| (s.0, s.1)).collect();
        assert_eq!(
            got,
            vec![
                (EventType::Added, Origin::List),
                (EventType::Deleted, Origin::Watch)
            ]
        );
    }

    #[test]
    fn excluded_namespaces_are_neither_delivered_nor_indexed() {
        let mut s = streaming_spec(InitialList::List, OnStart::Added);
        s.exclude_namespaces = vec!["ns".into()];
        let mut m = WatchMachine::new(s, Rng::new(1));
        let now = Instant::now();
        let mut seen = Seen::new();
        let other =
            r#"{"metadata":{"name":"q","namespace":"other","uid":"q","resourceVersion":"4"}}"#;
        m.poll_request(now).unwrap();
        m.on_list_body(
            now,
            &list_body("5", "", &[pod("a", "1"), other.into()]),
            &mut collect(&mut seen),
        );
        m.poll_request(now).unwrap();
        m.on_watch_opened(now);
        m.on_watch_line(
            now,
            &line("MODIFIED", &pod("a", "6")),
            &mut collect(&mut seen),
        );
        assert_eq!(m.known_objects(), 1);
        assert_eq!(seen.len(), 1);
        assert!(seen[0].2.contains("\"other\""));
        assert_eq!(
            m.resume_version(),
            Some("6"),
            "excluded events still move the resume point"
        );
    }

    #[test]
    fn metadata_only_asks_for_partial_objects_and_falls_back_on_406() {
        let mut s = streaming_spec(InitialList::List, OnStart::Added);
        s.metadata_only = true;
        let mut m = WatchMachine::new(s, Rng::new(1));
        let now = Instant::now();
        let r = m.poll_request(now).unwrap();
        assert_eq!(r.accept, METADATA_LIST_ACCEPT);
        m.on_http_error(now, 406, None, b"");
        let r = m.poll_request(now).expect("retried at once");
        assert_eq!((r.kind, r.accept), (RequestKind::List, JSON_ACCEPT));
        let mut s = streaming_spec(InitialList::List, OnStart::Added);
        s.metadata_only = true;
        let mut m = WatchMachine::new(s, Rng::new(1));
        let mut kinds = Vec::new();
        m.poll_request(now).unwrap();
        let partial = r#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"p","namespace":"ns","uid":"u","resourceVersion":"1"}}"#;
        let body = format!(
            r#"{{"kind":"PartialObjectMetadataList","metadata":{{"resourceVersion":"2"}},"items":[{partial}]}}"#
        );
        m.on_list_body(now, body.as_bytes(), &mut |e: Emitted<'_>| {
            kinds.push(e.identity.kind.to_owned())
        });
        let r = m.poll_request(now).unwrap();
        assert_eq!(r.accept, METADATA_WATCH_ACCEPT);
        m.on_watch_opened(now);
        m.on_watch_line(now, &line("MODIFIED", partial), &mut |e: Emitted<'_>| {
            kinds.push(e.identity.kind.to_owned())
        });
        assert_eq!(
            kinds,
            ["Pod", "Pod"],
            "the resource's kind, not PartialObjectMetadata"
        );
    }

    fn kind_spec(name: &str, namespace: Option<&str>) -> WatchSpec {
        let mut s = streaming_spec(InitialList::List, OnStart::Added);
        s.target = WatchTarget::Kind {
            name: name.into(),
            api_version: None,
        };
        s.namespace = namespace.map(Into::into);
        s
    }

    const AGG_CORE: &str = r#"{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","items":[{"metadata":{},"versions":[{"version":"v1","resources":[
        {"resource":"nodes","responseKind":{"kind":"Node"},"scope":"Cluster","singularResource":"node","verbs":["list","watch"],"shortNames":["no"]},
        {"resource":"events","responseKind":{"kind":"Event"},"scope":"Namespaced","singularResource":"event","verbs":["list","watch"]}]}]}]}"#;
    const AGG_GROUPS: &str = r#"{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","items":[{"metadata":{"name":"apps"},"versions":[{"version":"v1","resources":[
        {"resource":"deployments","responseKind":{"kind":"Deployment"},"scope":"Namespaced","singularResource":"deployment","verbs":["list","watch"],"shortNames":["deploy"]}]}]},
        {"metadata":{"name":"events.k8s.io"},"versions":[{"version":"v1","resources":[
        {"resource":"events","responseKind":{"kind":"Event"},"scope":"Namespaced","singularResource":"event","verbs":["list","watch"]}]}]}]}"#;

    /// Answers the two aggregated discovery GETs.
    fn discover(m: &mut WatchMachine, now: Instant, groups: &str) {
        for (path, body) in [("/api", AGG_CORE), ("/apis", groups)] {
            assert!(matches!(m.state_name(), "resolving" | "backing off"));
            let r = m.poll_request(now).unwrap();
            assert_eq!(
                (r.kind, r.path_and_query.as_str(), r.accept),
                (RequestKind::Discovery, path, DISCOVERY_ACCEPT)
            );
            m.on_discovery_body(now, body.as_bytes());
        }
    }

    #[test]
    fn a_kind_is_resolved_through_discovery_before_listing() {
        let mut m = WatchMachine::new(kind_spec("deploy", Some("web")), Rng::new(1));
        let now = Instant::now();
        assert_eq!(m.api_version(), None);
        discover(&mut m, now, AGG_GROUPS);
        assert_eq!(m.api_version(), Some("apps/v1"));
        let r = m.poll_request(now).unwrap();
        assert_eq!(
            r.path_and_query,
            "/apis/apps/v1/namespaces/web/deployments?limit=2"
        );
    }

    #[test]
    fn a_missing_kind_is_discovered_again_with_backoff() {
        let mut m = WatchMachine::new(kind_spec("Widget", None), Rng::new(1));
        let now = Instant::now();
        discover(&mut m, now, AGG_GROUPS);
        assert_eq!(m.state_name(), "backing off");
        let due = m.deadline().unwrap();
        assert!(
            due > now && due <= now + Duration::from_secs(2),
            "{:?}",
            due - now
        );
        assert!(m.poll_request(now).is_none());
        let widgets = AGG_GROUPS
            .replace("\"deployments\"", "\"widgets\"")
            .replace("Deployment", "Widget");
        discover(&mut m, due, &widgets);
        assert_eq!(m.api_version(), Some("apps/v1"));
        assert_eq!(m.poll_request(due).unwrap().kind, RequestKind::List);
    }

    #[test]
    fn ambiguous_names_and_namespaced_cluster_kinds_fail_for_good() {
        let now = Instant::now();
        let mut m = WatchMachine::new(kind_spec("Event", None), Rng::new(1));
        discover(&mut m, now, AGG_GROUPS);
        assert!(m.has_failed());
        assert_eq!(m.state_name(), "failed");
        assert!(!m.wants_request(now + Duration::from_secs(3600)));
        assert_eq!(m.deadline(), None);
        let mut m = WatchMachine::new(kind_spec("nodes", Some("web")), Rng::new(1));
        discover(&mut m, now, AGG_GROUPS);
        assert!(m.has_failed());
        let mut m = WatchMachine::new(kind_spec("nodes", None), Rng::new(1));
        discover(&mut m, now, AGG_GROUPS);
        assert_eq!(
            m.poll_request(now).unwrap().path_and_query,
            "/api/v1/nodes?limit=2"
        );
    }

    #[test]
    fn discovery_failures_restart_discovery_and_404s_skip_a_group_version() {
        let now = Instant::now();
        let mut m = WatchMachine::new(kind_spec("deploy", None), Rng::new(1));
        m.poll_request(now).unwrap();
        m.on_http_error(now, 503, Some(Duration::from_secs(1)), b"");
        assert_eq!(m.state_name(), "backing off");
        let later = now + Duration::from_secs(1);
        assert_eq!(m.poll_request(later).unwrap().path_and_query, "/api");
        m.on_discovery_body(later, br#"{"kind":"APIVersions","versions":["v1"]}"#);
        assert_eq!(m.poll_request(later).unwrap().path_and_query, "/apis");
        m.on_discovery_body(later, br#"{"kind":"APIGroupList","groups":[{"name":"apps","versions":[{"groupVersion":"apps/v1","version":"v1"}]}]}"#);
        assert_eq!(m.poll_request(later).unwrap().path_and_query, "/api/v1");
        m.on_http_error(later, 404, None, b"");
        assert_eq!(
            m.poll_request(later).unwrap().path_and_query,
            "/apis/apps/v1"
        );
        m.on_discovery_body(later, br#"{"kind":"APIResourceList","groupVersion":"apps/v1","resources":[{"name":"deployments","singularName":"deployment","namespaced":true,"kind":"Deployment","verbs":["list","watch"],"shortNames":["deploy"]}]}"#);
        assert_eq!(
            m.poll_request(later).unwrap().path_and_query,
            "/apis/apps/v1/deployments?limit=2"
        );
        // Garbage is a transport error: discovery starts over after a backoff.
        let mut m = WatchMachine::new(kind_spec("deploy", None), Rng::new(1));
        m.poll_request(now).unwrap();
        m.on_discovery_body(now, b"<html>");
        assert_eq!(m.state_name(), "backing off");
        assert_eq!(
            m.poll_request(now + Duration::from_secs(1))
                .unwrap()
                .path_and_query,
            "/api"
        );
    }

    #[test]
    fn stats_count_types_reasons_and_consecutive_failures() {
        let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
        let t0 = Instant::now();
        let mut seen = Seen::new();
        listed(&mut m, t0, &mut seen);
        let st = m.stats();
        assert_eq!(st.events_by_type, [3, 0, 0]);
        assert_eq!(st.last_event, Some(t0));
        let t1 = t0 + Duration::from_secs(3);
        m.on_watch_line(
            t1,
            &line("MODIFIED", &pod("a", "11")),
            &mut collect(&mut seen),
        );
        m.on_watch_line(
            t1,
            &line("DELETED", &pod("b", "12")),
            &mut collect(&mut seen),
        );
        m.note_bytes(100);
        let st = m.stats();
        assert_eq!((st.events, st.events_by_type), (5, [3, 1, 1]));
        assert_eq!((st.last_event, st.bytes), (Some(t1), 100));
        // A normal end is a reconnect, not a failure.
        m.on_watch_end(t1 + Duration::from_secs(5), true);
        let reason =
            |m: &WatchMachine, r: ReconnectReason| m.stats().reconnects_by_reason[r as usize];
        assert_eq!(reason(&m, ReconnectReason::StreamEnded), 1);
        assert_eq!(m.stats().consecutive_failures, 0);
        // Failures in a row count up, across kinds, until a success.
        let mut now = t1 + Duration::from_secs(6);
        for i in 1..=3 {
            now += Duration::from_secs(60);
            m.poll_request(now).unwrap();
            if i == 2 {
                m.on_http_error(now, 500, None, b"");
            } else {
                m.on_transport_error(now, &"connection refused");
            }
            assert_eq!(m.stats().consecutive_failures, i);
        }
        assert_eq!(m.last_error(), Some("connection refused"));
        assert_eq!(reason(&m, ReconnectReason::TransportError), 2);
        assert_eq!(reason(&m, ReconnectReason::HttpError), 1);
        // A stream that ends at once counts once, as a transport failure.
        now += Duration::from_secs(60);
        m.poll_request(now).unwrap();
        m.on_watch_opened(now);
        m.on_watch_end(now, true);
        assert_eq!(reason(&m, ReconnectReason::TransportError), 3);
        assert_eq!(reason(&m, ReconnectReason::StreamEnded), 1);
        assert_eq!(m.stats().consecutive_failures, 4);
        assert_eq!(
            m.stats().reconnects,
            m.stats().reconnects_by_reason.iter().sum::<u64>()
        );
        // A line on an open stream is a success.
        now += Duration::from_secs(60);
        m.poll_request(now).unwrap();
        m.on_watch_opened(now);
        m.on_watch_line(
            now,
            br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"15"}}}"#,
            &mut collect(&mut seen),
        );
        assert_eq!(m.stats().consecutive_failures, 0);
        assert_eq!(
            m.last_error(),
            Some("the watch ended at once without any event")
        );
        // 410 relists without counting a failure.
        let err = r#"{"kind":"Status","code":410,"reason":"Expired"}"#;
        m.on_watch_line(now, &line("ERROR", err), &mut collect(&mut seen));
        assert_eq!(reason(&m, ReconnectReason::Expired), 1);
        assert_eq!(m.stats().consecutive_failures, 0);
    }

    #[test]
    fn kind_guessing() {
        assert_eq!(guess_kind("pods"), "Pod");
        assert_eq!(guess_kind("ingresses"), "Ingress");
        assert_eq!(guess_kind("networkpolicies"), "Networkpolicy");
    }
}

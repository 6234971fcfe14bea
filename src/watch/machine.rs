//! The per-watch state machine.

use super::backoff::Backoff;
use super::index::{object_key, object_key_ref, Change, IndexEntry, ObjectIndex};
use crate::config::{EventType, OnStart};
use crate::kube::event::{excerpt, object_meta, ObjectMeta};
use crate::kube::{
    ListPage, ResourcePath, Selectors, Status, WatchEvent, WatchEventType, WatchQuery,
};
use crate::rand::Rng;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A LIST page that sends no byte for this long is abandoned.
const LIST_IDLE_LIMIT: Duration = Duration::from_secs(60);
/// A watch that ends this soon without any event is treated as a failure,
/// so a server that closes at once does not get hammered.
const MIN_HEALTHY_STREAM: Duration = Duration::from_secs(1);

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

/// Counts the event and hands it on if the watch wants its type.
fn deliver(stats: &mut WatchStats, wanted: &[EventType], out: &mut dyn Emit, event: Emitted<'_>) {
    stats.events += 1;
    if wanted.contains(&event.event_type) {
        out.emit(event);
    }
}

pub trait Emit {
    fn emit(&mut self, event: Emitted<'_>);
}

impl<F: FnMut(Emitted<'_>)> Emit for F {
    fn emit(&mut self, event: Emitted<'_>) {
        self(event)
    }
}

/// What the watch is configured to do, in the terms the machine needs.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchSpec {
    pub name: String,
    pub api_version: String,
    pub resource: String,
    pub path: ResourcePath,
    pub selectors: Selectors,
    pub events: Vec<EventType>,
    pub on_start: OnStart,
    pub page_size: u32,
    pub watch_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    List,
    Watch,
}

/// A request the daemon should send for this watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPlan {
    pub kind: RequestKind,
    pub path_and_query: String,
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
    seen: HashSet<String>,
}

impl ListRound {
    fn new(purpose: ListPurpose) -> Self {
        ListRound {
            purpose,
            continue_token: None,
            snapshot_rv: None,
            seen: HashSet::new(),
        }
    }

    /// An expired continue token: the snapshot is gone, start over.
    fn restart(&mut self) {
        self.continue_token = None;
        self.snapshot_rv = None;
        self.seen.clear();
    }
}

#[derive(Debug, Clone)]
enum Step {
    List(ListRound),
    Watch,
}

#[derive(Debug, Clone)]
struct Stream {
    opened: Instant,
    events: u64,
}

#[derive(Debug, Clone)]
enum InFlight {
    List(ListRound),
    /// `stream` is `None` until the server answered 200.
    Watch {
        timeout: Duration,
        stream: Option<Stream>,
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
}

/// Counters for logs, status and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WatchStats {
    pub events: u64,
    pub relists: u64,
    pub reconnects: u64,
    pub skipped_lines: u64,
}

#[derive(Debug)]
pub struct WatchMachine {
    spec: WatchSpec,
    phase: Phase,
    index: ObjectIndex,
    resume_rv: Option<String>,
    item_kind: Option<String>,
    backoff: Backoff,
    rng: Rng,
    /// Auth failures in a row; the first is logged loudly.
    auth_failures: u32,
    stats: WatchStats,
}

impl WatchMachine {
    pub fn new(spec: WatchSpec, rng: Rng) -> Self {
        let deliver = spec.on_start == OnStart::Added;
        WatchMachine {
            spec,
            phase: Phase::Ready(Step::List(ListRound::new(ListPurpose::Initial { deliver }))),
            index: ObjectIndex::default(),
            resume_rv: None,
            item_kind: None,
            backoff: Backoff::new(BACKOFF_BASE, BACKOFF_CAP),
            rng,
            auth_failures: 0,
            stats: WatchStats::default(),
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

    pub fn known_objects(&self) -> usize {
        self.index.len()
    }

    pub fn resume_version(&self) -> Option<&str> {
        self.resume_rv.as_deref()
    }

    /// A short word for logs and status.
    pub fn state_name(&self) -> &'static str {
        match &self.phase {
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
                    ..
                },
                ..
            }
        )
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
        let plan = match step {
            Step::List(round) => RequestPlan {
                kind: RequestKind::List,
                path_and_query: WatchQuery::List {
                    limit: self.spec.page_size,
                    continue_token: round.continue_token.as_deref(),
                }
                .to_path(&self.spec.path, &self.spec.selectors),
            },
            Step::Watch => RequestPlan {
                kind: RequestKind::Watch,
                path_and_query: WatchQuery::Watch {
                    resource_version: self.resume_rv.as_deref(),
                    timeout_seconds: timeout.as_secs(),
                }
                .to_path(&self.spec.path, &self.spec.selectors),
            },
        };
        let request = match std::mem::replace(&mut self.phase, Phase::Ready(Step::Watch)) {
            Phase::Ready(Step::List(round)) => InFlight::List(round),
            _ => InFlight::Watch {
                timeout,
                stream: None,
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
            InFlight::List(_) => LIST_IDLE_LIMIT,
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
            Phase::Ready(_) => None,
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
            Phase::InFlight { .. } => false,
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
        self.stats.reconnects += 1;
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
            Phase::Ready(step) | Phase::BackingOff { then: step, .. } => step.clone(),
            Phase::InFlight { .. } => Step::Watch,
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
        self.stats.reconnects += 1;
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
        let step = self.retry_step();
        let in_list = matches!(step, Step::List(_));
        if status == 410 || (status == 504 && parsed.is_resource_version_too_large()) {
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
                    Step::List(ListRound::new(ListPurpose::Relist))
                }
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
        let what = if in_list { "LIST" } else { "WATCH" };
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
                        self.spec.path.as_str()
                    );
                } else {
                    log::debug!("watch {}: still {status}; {retry}", self.spec.name);
                }
            }
            404 => log::error!(
                "watch {}: {what} {} answered 404 ({summary}): the server does not serve this resource; check api_version and resource; {retry}",
                self.spec.name,
                self.spec.path.as_str()
            ),
            _ => log::warn!(
                "watch {}: {what} answered {summary}; {retry}",
                self.spec.name
            ),
        }
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
            let Some(key) = object_key(&meta) else {
                self.stats.skipped_lines += 1;
                log::warn!(
                    "watch {}: skipping a list item without uid or name: {}",
                    self.spec.name,
                    excerpt(item.get().as_bytes())
                );
                continue;
            };
            let change = self.index.upsert(&key, &meta);
            round.seen.insert(key);
            let (event_type, origin) = match (round.purpose, change) {
                (_, Change::Unchanged) => continue,
                (ListPurpose::Initial { deliver: false }, _) => continue,
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
                object: item.get(),
                final_state_unknown: false,
                identity: Identity::of(kind, &meta),
            };
            deliver(&mut self.stats, &self.spec.events, out, event);
        }
        match page.continue_token {
            Some(token) => {
                round.continue_token = Some(token.into_owned());
                self.phase = Phase::Ready(Step::List(round));
            }
            None => self.finish_list(round, out),
        }
    }

    fn finish_list(&mut self, round: ListRound, out: &mut dyn Emit) {
        let seen = &round.seen;
        let gone = self.index.drain_unseen(|k| seen.contains(k));
        let report = !matches!(round.purpose, ListPurpose::Initial { deliver: false });
        for (key, entry) in &gone {
            if report {
                let (object, kind) = self.synthesise_object(key, entry);
                let event = Emitted {
                    event_type: EventType::Deleted,
                    origin: Origin::Relist,
                    object: &object,
                    final_state_unknown: true,
                    identity: Identity {
                        kind: &kind,
                        namespace: entry.namespace.as_deref().unwrap_or(""),
                        name: &entry.name,
                        uid: if key.contains('/') { "" } else { key },
                        resource_version: &entry.resource_version,
                    },
                };
                deliver(&mut self.stats, &self.spec.events, out, event);
            }
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
        self.phase = Phase::Ready(Step::Watch);
    }

    /// A minimal object (and its kind) for a DELETED whose final state was
    /// not seen.
    fn synthesise_object(&self, key: &str, entry: &IndexEntry) -> (String, String) {
        let kind = self
            .item_kind
            .clone()
            .unwrap_or_else(|| guess_kind(&self.spec.resource));
        let mut metadata = serde_json::Map::new();
        metadata.insert("name".into(), entry.name.clone().into());
        if let Some(ns) = &entry.namespace {
            metadata.insert("namespace".into(), ns.clone().into());
        }
        if !key.contains('/') {
            metadata.insert("uid".into(), key.into());
        }
        metadata.insert(
            "resourceVersion".into(),
            entry.resource_version.clone().into(),
        );
        let object = serde_json::json!({
            "apiVersion": self.spec.api_version,
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
                    ..
                },
            last_activity,
        } = &mut self.phase
        {
            *stream = Some(Stream {
                opened: now,
                events: 0,
            });
            *last_activity = now;
            self.auth_failures = 0;
            self.backoff.note_healthy(now);
            log::debug!(
                "watch {}: streaming from resourceVersion {}",
                self.spec.name,
                self.resume_rv.as_deref().unwrap_or("(latest)")
            );
        }
    }

    /// One line of an open watch stream.
    pub fn on_watch_line(&mut self, now: Instant, line: &[u8], out: &mut dyn Emit) -> LineOutcome {
        let Phase::InFlight {
            request:
                InFlight::Watch {
                    stream: Some(stream),
                    ..
                },
            last_activity,
        } = &mut self.phase
        else {
            return LineOutcome::Close;
        };
        *last_activity = now;
        stream.events += 1;
        let event = match WatchEvent::parse(line) {
            Ok(event) => event,
            Err(e) => {
                self.stats.skipped_lines += 1;
                log::warn!("watch {}: skipping a line: {e}", self.spec.name);
                return LineOutcome::Continue;
            }
        };
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
        let key = object_key_ref(&event.meta);
        let event_type = match event.event_type {
            WatchEventType::Bookmark => return LineOutcome::Continue,
            WatchEventType::Error => return self.on_error_event(now, event.object.get()),
            WatchEventType::Added => EventType::Added,
            WatchEventType::Modified => EventType::Modified,
            WatchEventType::Deleted => EventType::Deleted,
        };
        match (&key, event_type) {
            (Some(key), EventType::Deleted) => {
                self.index.remove(key);
            }
            (Some(key), _) => {
                self.index.upsert(key, &event.meta);
            }
            (None, _) => log::warn!(
                "watch {}: {} event for an object without uid or name; delivered, not indexed",
                self.spec.name,
                event_type.as_str()
            ),
        }
        let kind = event
            .kind
            .as_deref()
            .or(self.item_kind.as_deref())
            .unwrap_or("");
        let emitted = Emitted {
            event_type,
            origin: Origin::Watch,
            object: event.object.get(),
            final_state_unknown: false,
            identity: Identity::of(kind, &event.meta),
        };
        deliver(&mut self.stats, &self.spec.events, out, emitted);
        LineOutcome::Continue
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
            let then = Step::List(ListRound::new(ListPurpose::Relist));
            self.phase = match status.details.as_ref().and_then(|d| d.retry_after_seconds) {
                Some(s) => Phase::BackingOff {
                    until: now + Duration::from_secs(s),
                    then,
                },
                None => Phase::Ready(then),
            };
        } else {
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
            request: InFlight::Watch { stream, .. },
            ..
        } = &self.phase
        else {
            return;
        };
        let quick_and_empty = match stream {
            Some(s) => {
                s.events == 0 && now.saturating_duration_since(s.opened) < MIN_HEALTHY_STREAM
            }
            None => true,
        };
        self.stats.reconnects += 1;
        if quick_and_empty {
            self.on_transport_error(now, &"the watch ended at once without any event");
            return;
        }
        log::debug!(
            "watch {}: stream ended{}; resuming from resourceVersion {}",
            self.spec.name,
            if clean { "" } else { " (connection closed)" },
            self.resume_rv.as_deref().unwrap_or("(latest)")
        );
        self.phase = Phase::Ready(Step::Watch);
    }
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
            api_version: "v1".into(),
            resource: "pods".into(),
            path: ResourcePath::new("", "v1", None, "pods"),
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

    #[test]
    fn kind_guessing() {
        assert_eq!(guess_kind("pods"), "Pod");
        assert_eq!(guess_kind("ingresses"), "Ingress");
        assert_eq!(guess_kind("networkpolicies"), "Networkpolicy");
    }
}

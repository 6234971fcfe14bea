//! The per-watch state machine: which request a watch needs next, and what
//! each answer means for it. Sans-I/O: the daemon sends the requests the
//! machine plans and feeds it the answers; time is passed in.
//!
//! Life of a watch (`Phase`, and the `Step`s of `Running`):
//!
//! ```text
//!  Resolving ──discovery resolved──▶ Running   (a watch by kind starts in
//!    │   ▲                              │       Resolving, one by resource
//!    │   └─ not served yet: back off    │       in Running; a resumed one
//!    ▼                                  │       goes straight to Watch)
//!  Failed (ambiguous kind,              ▼
//!  namespace on a cluster kind)   List ─pages─┐  or  Stream ─initial events─┐
//!                                             ▼                            ▼
//!                                  conclude the round: diff the index, resume there
//!                                             │
//!                        ┌──────────────────▶ Watch ◀── stream ended ──┐
//!                        │                    │  └──────────────────────┘
//!                        │                    │ 410: the position is gone
//!                        └── Relist ◀─────────┘ (a List or Stream that diffs)
//! ```
//!
//! Every request goes `Ready ─poll_request─▶ InFlight`; a failure goes to
//! `BackingOff`, then the same step again (a cut streaming list and a
//! failed discovery start over). What counts as a failure and what as
//! "the position is gone" is `policy`'s decision.
//!
//! Each phase holds what it has: `Running` holds the resolved resource, a
//! request in flight holds its list round or open stream. The pieces are
//! split by what they decide, not by `impl` blocks:
//!
//! - `policy`: what an unwanted answer (non-2xx, ERROR event) means — one
//!   pure function to one [`Verdict`](policy::Verdict); the machine only
//!   carries verdicts out (`failure`, with transport errors).
//! - `list`: a list round (pages or initial events, then the diff).
//! - `stream`: events on an open stream, a streaming list's initial events.
//! - `resolve`: discovery steps for a watch by kind.
//! - `known`: the index, resume point and counters every phase updates.

mod failure;
mod known;
mod list;
mod phase;
mod policy;
mod resolve;
mod start;
mod stream;

#[cfg(test)]
mod tests;

pub use resolve::Resolved;

use super::backoff::Backoff;
use super::event::Emit;
use super::index::ObjectIndex;
use super::spec::{RequestPlan, WatchSpec};
use super::stats::{ReconnectReason, WatchState, WatchStats};
use crate::config::{InitialList, OnStart, WatchTarget};
use crate::kube::discovery::{Discovery, Query};
use crate::kube::list_scan::ListInfo;
use crate::kube::WatchEventType;
use crate::rand::Rng;
use known::Known;
use list::{ListPurpose, ListRound, PageEnd};
use phase::{waiting, Attempt, InFlight, Phase, Request, Step};
use policy::Flags;
use resolve::Resolution;
use std::time::{Duration, Instant};
use stream::{Initial, Stream};

const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Retries of a name discovery does not know (yet): a CRD being installed.
const DISCOVERY_BACKOFF_BASE: Duration = Duration::from_secs(1);
const DISCOVERY_BACKOFF_CAP: Duration = Duration::from_secs(60);

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

#[derive(Debug)]
pub struct WatchMachine {
    spec: WatchSpec,
    phase: Phase,
    known: Known,
    /// Not-found retries of discovery (slower than request failures).
    discovery_backoff: Backoff,
    /// `initial_list = "auto"` and the server refused a streaming list.
    stream_rejected: bool,
    /// The server refused `PartialObjectMetadata` (406): full objects.
    metadata_fallback: bool,
    backoff: Backoff,
    rng: Rng,
    /// Auth failures in a row; the first is logged loudly.
    auth_failures: u32,
    /// The first list reads this position exactly (`list_first_at`).
    list_at: Option<String>,
}

impl WatchMachine {
    pub fn new(spec: WatchSpec, rng: Rng) -> Self {
        let mut m = WatchMachine {
            phase: Phase::Failed,
            known: Known::default(),
            discovery_backoff: Backoff::new(DISCOVERY_BACKOFF_BASE, DISCOVERY_BACKOFF_CAP),
            stream_rejected: false,
            metadata_fallback: false,
            backoff: Backoff::new(BACKOFF_BASE, BACKOFF_CAP),
            rng,
            auth_failures: 0,
            list_at: None,
            spec,
        };
        m.phase = match m.spec.target.clone() {
            WatchTarget::Resource {
                api_version,
                resource,
            } => {
                let resolved = Resolved::configured(&m.spec, &api_version, &resource);
                m.running(resolved)
            }
            WatchTarget::Kind { name, api_version } => Phase::Resolving(Attempt::Ready(Box::new(
                Discovery::new(&m.spec.base_path, Query { name, api_version }),
            ))),
        };
        m
    }

    /// The resource is known: the first list (or watch) is due.
    fn running(&mut self, resolved: Resolved) -> Phase {
        if self.spec.metadata_only {
            // PartialObjectMetadata objects do not say what they are.
            self.known.item_kind = Some(
                resolved
                    .kind
                    .clone()
                    .unwrap_or_else(|| known::guess_kind(&resolved.resource)),
            );
        }
        Phase::Running {
            resolved,
            attempt: Attempt::Ready(self.first_step()),
        }
    }

    /// The first list of this run (none when resumed from a checkpoint).
    fn first_step(&self) -> Step {
        if self.known.resume_rv.is_some() {
            return Step::Watch;
        }
        let deliver = self.spec.on_start == OnStart::Added;
        match &self.list_at {
            Some(rv) => Step::List(ListRound::exact(
                ListPurpose::Initial { deliver },
                rv.clone(),
            )),
            None => self.list_step(ListPurpose::Initial { deliver }),
        }
    }

    fn list_step(&self, purpose: ListPurpose) -> Step {
        Step::list(&self.spec, self.stream_rejected, purpose)
    }

    /// The resource, once known.
    pub fn resolved(&self) -> Option<&Resolved> {
        self.phase.resolved()
    }

    /// `v1` or `GROUP/VERSION`, once known.
    pub fn api_version(&self) -> Option<&str> {
        self.resolved().map(|r| r.api_version.as_str())
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
        self.phase.stream_to_list();
    }

    fn path_str(&self) -> &str {
        self.resolved().map_or("", |r| r.path.as_str())
    }

    fn flags(&self) -> Flags {
        Flags {
            partial_objects: self.spec.metadata_only && !self.metadata_fallback,
            stream_fallback: self.spec.initial_list == InitialList::Auto,
        }
    }

    pub fn spec(&self) -> &WatchSpec {
        &self.spec
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn stats(&self) -> WatchStats {
        self.known.stats
    }

    /// The last failure, if any happened (it stays after recovery; see
    /// `stats().consecutive_failures` for whether it still applies).
    pub fn last_error(&self) -> Option<&str> {
        self.known.last_error.as_deref()
    }

    /// Bytes arrived for this watch.
    pub fn note_bytes(&mut self, n: usize) {
        self.known.stats.bytes += n as u64;
    }

    /// The objects the watch knows now (read or not yet handled by the
    /// sinks; the ledger tells which).
    pub fn index(&self) -> &ObjectIndex {
        &self.known.index
    }

    pub fn known_objects(&self) -> usize {
        self.known.index.len()
    }

    pub fn resume_version(&self) -> Option<&str> {
        self.known.resume_rv.as_deref()
    }

    /// Where the watch stands, for logs, status and metrics.
    pub fn state(&self) -> WatchState {
        self.phase.state()
    }

    /// True once a list has completed (the watch knows where it stands).
    pub fn has_listed(&self) -> bool {
        self.known.resume_rv.is_some()
    }

    /// True once the initial list is done and a stream is open.
    pub fn is_streaming(&self) -> bool {
        self.state() == WatchState::Streaming
    }

    /// True when the watch stopped for good (see the error log).
    pub fn has_failed(&self) -> bool {
        matches!(self.phase, Phase::Failed)
    }

    /// The next request to send, if one is due. Moves the machine to "in
    /// flight"; the daemon must report its outcome.
    pub fn poll_request(&mut self, now: Instant) -> Option<RequestPlan> {
        if !self.wants_request(now) {
            return None;
        }
        let timeout = self.draw_timeout();
        match std::mem::replace(&mut self.phase, Phase::Failed) {
            Phase::Failed => None,
            Phase::Resolving(attempt) => {
                let (phase, plan) = phase::poll_discovery(attempt, now);
                self.phase = phase;
                plan
            }
            Phase::Running { resolved, attempt } => {
                let step = match attempt.into_due(now) {
                    Ok(step) => step,
                    Err(attempt) => {
                        self.phase = Phase::Running { resolved, attempt };
                        return None;
                    }
                };
                let (plan, request) = step.plan(Request {
                    resolved: &resolved,
                    selectors: &self.spec.selectors,
                    page_size: self.spec.page_size,
                    resume_rv: self.known.resume_rv.as_deref(),
                    timeout,
                    partial_objects: self.flags().partial_objects,
                });
                self.phase = Phase::Running {
                    resolved,
                    attempt: Attempt::sent(request, now),
                };
                Some(plan)
            }
        }
    }

    /// Server-side timeout for the next watch, spread so that many watches
    /// do not reconnect in lockstep.
    fn draw_timeout(&mut self) -> Duration {
        let base = self.spec.watch_timeout.max(Duration::from_secs(1));
        let t = self.rng.duration_between(base, base * 2);
        Duration::from_secs(t.as_secs().max(1))
    }

    /// Bytes arrived for the in-flight request (progress for a list, not
    /// for a response head or a watch stream: see `on_timer`).
    pub fn note_activity(&mut self, now: Instant) {
        self.phase.note_activity(now);
    }

    /// The response head of the request in flight is complete (any
    /// status): from now on its body's deadline applies.
    pub fn on_response_head(&mut self, now: Instant) {
        self.phase.note_head(now);
    }

    /// When `on_timer` next has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        self.phase.deadline(self.spec.watch_timeout)
    }

    /// True when a request is due now (the daemon should call
    /// `poll_request` once it has room in the sinks).
    pub fn wants_request(&self, now: Instant) -> bool {
        self.phase.due(now)
    }

    /// Closes a request that stayed silent too long: no complete response
    /// head in time (bytes trickling in do not count), no byte of a list,
    /// or no event or bookmark on a watch stream (keep-alive blank lines
    /// do not count). An open stream that never delivered an event does
    /// not count as the success its opening seemed, so a server that
    /// keeps streams open without events turns the watch unhealthy.
    pub fn on_timer(&mut self, now: Instant) -> TimerOutcome {
        let Some((awaited, limit)) = self.phase.silent(now, self.spec.watch_timeout) else {
            return TimerOutcome::Nothing;
        };
        let error = awaited.missed(limit);
        log::warn!(
            "watch {}: {error}; the connection is presumed dead, reconnecting",
            self.spec.name,
        );
        if let Some(failures_before) = self.phase.open_stream().and_then(Stream::eventless) {
            self.known.stats.consecutive_failures = failures_before;
            self.known.silent_streams = true;
        }
        self.known.count_reconnect(ReconnectReason::IdleTimeout);
        self.known.count_failure(error);
        self.retry(None);
        TimerOutcome::CloseConnection
    }

    /// Moves the failed (or abandoned) request back to its retry step: due
    /// at once (`until` = `None`) or at `until`.
    fn retry(&mut self, until: Option<Instant>) {
        let phase = std::mem::replace(&mut self.phase, Phase::Failed);
        self.phase = phase.into_retry(&self.spec, until);
    }

    /// Retries after the next backoff delay (at least `retry_after`).
    fn back_off(&mut self, now: Instant, retry_after: Option<Duration>) -> Duration {
        let delay = self.backoff.next_delay(now, &mut self.rng, retry_after);
        self.retry(Some(now + delay));
        delay
    }

    /// Sets the step due next (the resource is known).
    fn next(&mut self, attempt: Attempt<Step, InFlight>) {
        if let Phase::Running { attempt: a, .. } = &mut self.phase {
            *a = attempt;
        }
    }

    /// A 200 discovery document.
    pub fn on_discovery_body(&mut self, now: Instant, body: &[u8]) {
        let Phase::Resolving(Attempt::InFlight { request: d, .. }) = &mut self.phase else {
            return;
        };
        if let Err(e) = d.on_body(body) {
            self.on_transport_error(now, &e);
            return;
        }
        let Phase::Resolving(Attempt::InFlight { request: d, .. }) =
            std::mem::replace(&mut self.phase, Phase::Failed)
        else {
            return;
        };
        self.auth_failures = 0;
        self.after_discovery(now, d);
    }

    /// Next discovery GET, or the resource once everything is in.
    fn after_discovery(&mut self, now: Instant, d: Box<Discovery>) {
        self.phase = match resolve::after_step(&self.spec, d) {
            Resolution::Next(d) => Phase::Resolving(Attempt::Ready(d)),
            Resolution::Resolved(resolved) => self.running(resolved),
            Resolution::NotYet { again, why } => {
                let delay = self.discovery_backoff.next_delay(now, &mut self.rng, None);
                resolve::log_not_yet(&self.spec, &why, delay);
                Phase::Resolving(waiting(again, Some(now + delay)))
            }
            Resolution::Failed(error) => {
                self.known.last_error = Some(error);
                Phase::Failed
            }
        };
    }

    /// The LIST answer cannot be read on: a transport error (the daemon
    /// closes the connection).
    pub fn unusable_list(&mut self, now: Instant, error: &dyn std::fmt::Display) {
        self.on_transport_error(now, &format_args!("unusable LIST answer: {error}"));
    }

    /// One item of a 200 LIST answer as it arrives, with what the list
    /// said of itself so far. `Close` when the answer is unusable (the
    /// retry is scheduled; the daemon closes the connection).
    pub fn on_list_item(
        &mut self,
        now: Instant,
        info: &ListInfo,
        item: &[u8],
        out: &mut dyn Emit,
    ) -> LineOutcome {
        let Phase::Running {
            attempt:
                Attempt::InFlight {
                    request: InFlight::List(round),
                    ..
                },
            ..
        } = &mut self.phase
        else {
            return LineOutcome::Close;
        };
        round.note_info(&mut self.known, info);
        match round.list_item(&self.spec, &mut self.known, now, item, out) {
            Ok(()) => LineOutcome::Continue,
            Err(e) => {
                self.unusable_list(now, &e);
                LineOutcome::Close
            }
        }
    }

    /// The 200 LIST answer is complete: the next page, or the end of the
    /// list.
    pub fn on_list_end(&mut self, now: Instant, info: &ListInfo, out: &mut dyn Emit) {
        let listing = matches!(
            self.phase,
            Phase::Running {
                attempt: Attempt::InFlight {
                    request: InFlight::List(_),
                    ..
                },
                ..
            }
        );
        if !listing {
            return;
        }
        let Phase::Running {
            resolved,
            attempt:
                Attempt::InFlight {
                    request: InFlight::List(mut round),
                    ..
                },
        } = std::mem::replace(&mut self.phase, Phase::Failed)
        else {
            return;
        };
        self.auth_failures = 0;
        self.known.succeeded();
        self.backoff.note_healthy(now);
        let next = match round.end_page(&mut self.known, info) {
            PageEnd::More => Step::List(round),
            PageEnd::Last => {
                round.conclude(&self.spec, &resolved, &mut self.known, now, out);
                Step::Watch
            }
        };
        self.phase = Phase::Running {
            resolved,
            attempt: Attempt::Ready(next),
        };
    }

    /// The server answered the WATCH with 200: the stream is open.
    pub fn on_watch_opened(&mut self, now: Instant) {
        let Phase::Running {
            attempt:
                Attempt::InFlight {
                    request:
                        InFlight::Watch {
                            stream: stream @ None,
                            initial,
                            ..
                        },
                    last_activity,
                    answered,
                },
            ..
        } = &mut self.phase
        else {
            return;
        };
        *stream = Some(Stream::opened(now, self.known.stats.consecutive_failures));
        // After streams that stayed open without a line, an opening alone is
        // no success: the stream must deliver one (or end normally).
        if !self.known.silent_streams {
            self.known.stats.consecutive_failures = 0;
        }
        *last_activity = now;
        *answered = true;
        self.auth_failures = 0;
        self.backoff.note_healthy(now);
        if initial.is_some() {
            log::debug!("watch {}: streaming list opened", self.spec.name);
        } else {
            log::debug!(
                "watch {}: streaming from resourceVersion {}",
                self.spec.name,
                self.known.resume_rv.as_deref().unwrap_or("(latest)")
            );
        }
    }

    /// One line of an open watch stream.
    pub fn on_watch_line(&mut self, now: Instant, line: &[u8], out: &mut dyn Emit) -> LineOutcome {
        let Phase::Running {
            resolved,
            attempt:
                Attempt::InFlight {
                    request:
                        InFlight::Watch {
                            stream: Some(stream),
                            initial,
                            ..
                        },
                    last_activity,
                    ..
                },
        } = &mut self.phase
        else {
            return LineOutcome::Close;
        };
        stream.events += 1;
        self.known.succeeded();
        let (parsed, cut) = stream::parse(line, initial.is_none(), out);
        let event = match parsed {
            Ok(event) => event,
            Err(e) => {
                self.known.stats.skipped_lines += 1;
                log::warn!("watch {}: skipping a line: {e}", self.spec.name);
                return LineOutcome::Continue;
            }
        };
        // Only events (bookmarks included) keep the stream's deadline away.
        *last_activity = now;
        if event.event_type == WatchEventType::Error {
            return self.on_error_event(now, event.object.get());
        }
        let Some(round) = initial else {
            stream::on_event(&self.spec, &mut self.known, now, &event, cut.as_ref(), out);
            return LineOutcome::Continue;
        };
        if stream::on_initial_event(round, &self.spec, &mut self.known, now, &event, out)
            == Initial::End
        {
            if let Some(round) = initial.take() {
                self.backoff.note_healthy(now);
                round.conclude(&self.spec, resolved, &mut self.known, now, out);
            }
        }
        LineOutcome::Continue
    }

    /// The response ended. `clean` is false when the connection closed
    /// without the end of the chunked body (still resumable: every complete
    /// line was handled).
    pub fn on_watch_end(&mut self, now: Instant, clean: bool) {
        let Phase::Running {
            attempt:
                Attempt::InFlight {
                    request:
                        InFlight::Watch {
                            stream, initial, ..
                        },
                    ..
                },
            ..
        } = &self.phase
        else {
            return;
        };
        if initial.is_some() {
            if clean && self.spec.initial_list == InitialList::Auto {
                // A server that ends the stream normally without the bookmark
                // does not implement streaming lists (it may have ignored
                // sendInitialEvents): LIST instead.
                log::warn!(
                    "watch {}: the server ended a streaming list without its initial-events-end bookmark; using paginated LISTs on this cluster from now on",
                    self.spec.name
                );
                self.stream_rejected = true;
                self.retry(None);
                self.phase.stream_to_list();
                self.known.count_reconnect(ReconnectReason::StreamEnded);
                return;
            }
            self.on_transport_error(
                now,
                &"the streaming list ended before its initial-events-end bookmark",
            );
            return;
        }
        let at_once = match stream {
            Some(s) => s.ended_at_once(now).then_some(s.failures_before),
            None => Some(self.known.stats.consecutive_failures),
        };
        if let Some(failures_before) = at_once {
            // Counted once, as the failure it is: the opening was no success.
            self.known.stats.consecutive_failures = failures_before;
            self.on_transport_error(now, &"the watch ended at once without any event");
            return;
        }
        self.known.count_reconnect(ReconnectReason::StreamEnded);
        self.known.succeeded();
        log::debug!(
            "watch {}: stream ended{}; resuming from resourceVersion {}",
            self.spec.name,
            if clean { "" } else { " (connection closed)" },
            self.known.resume_rv.as_deref().unwrap_or("(latest)")
        );
        self.next(Attempt::Ready(Step::Watch));
    }
}

//! Where a watch stands, as data: resolving its resource, or running
//! (a request due, in flight, or waiting to retry), or failed for good.
//! Each phase holds what it has — the resolved resource, the list round, the
//! open stream — so nothing asks "is it known yet?" of a field beside it.

use super::list::{ListPurpose, ListRound};
use super::policy::Attempted;
use super::resolve::{self, Resolved};
use super::stream::Stream;
use crate::config::InitialList;
use crate::kube::discovery::{Discovery, DISCOVERY_ACCEPT};
use crate::kube::{
    Selectors, WatchQuery, JSON_ACCEPT, METADATA_LIST_ACCEPT, METADATA_WATCH_ACCEPT,
};
use crate::watch::spec::{RequestKind, RequestPlan, WatchSpec};
use crate::watch::stats::WatchState;
use std::time::{Duration, Instant};

/// A LIST page (or discovery document) that sends no byte for this long is
/// abandoned; its response head gets as long (an API server may compute a
/// big list before it answers; its own request timeout is 60 s).
pub(super) const LIST_IDLE_LIMIT: Duration = Duration::from_secs(60);
/// The least a WATCH's response head gets (a server under load may queue
/// the request for a while; test configs use second-long timeouts).
const WATCH_HEAD_FLOOR: Duration = Duration::from_secs(5);

/// One request-driven activity (discovery, or the resource's lists and
/// watches): due, in flight, or waiting to retry. `S` is what is due,
/// `F` what is in flight.
#[derive(Debug)]
pub(super) enum Attempt<S, F> {
    Ready(S),
    /// `last_activity`: when the request was sent until `answered` (its
    /// response head arrived), then the last sign of progress (see
    /// [`Phase::note_activity`]).
    InFlight {
        request: F,
        last_activity: Instant,
        answered: bool,
    },
    BackingOff {
        until: Instant,
        then: S,
    },
}

impl<S, F> Attempt<S, F> {
    fn due(&self, now: Instant) -> bool {
        match self {
            Attempt::Ready(_) => true,
            Attempt::BackingOff { until, .. } => *until <= now,
            Attempt::InFlight { .. } => false,
        }
    }

    /// A request sent now, its head awaited.
    pub fn sent(request: F, now: Instant) -> Self {
        Attempt::InFlight {
            request,
            last_activity: now,
            answered: false,
        }
    }

    /// What the request in flight must send next, the silence it is
    /// allowed for that, and since when it is silent.
    fn silence(&self, limits: impl Fn(&F) -> Limits) -> Option<(Awaited, Duration, Instant)> {
        let Attempt::InFlight {
            request,
            last_activity,
            answered,
        } = self
        else {
            return None;
        };
        let limits = limits(request);
        Some(match answered {
            false => (Awaited::Head, limits.head, *last_activity),
            true => (limits.awaited, limits.idle, *last_activity),
        })
    }

    fn deadline(&self, limits: impl Fn(&F) -> Limits) -> Option<Instant> {
        match self {
            Attempt::Ready(_) => None,
            Attempt::BackingOff { until, .. } => Some(*until),
            Attempt::InFlight { .. } => self.silence(limits).map(|(_, limit, since)| since + limit),
        }
    }

    /// What is due now, if anything (`Err` gives the attempt back).
    pub fn into_due(self, now: Instant) -> Result<S, Self> {
        match self {
            Attempt::Ready(step) => Ok(step),
            Attempt::BackingOff { until, then } if until <= now => Ok(then),
            other => Err(other),
        }
    }
}

/// `step` due at `until`, or at once.
pub(super) fn waiting<S, F>(step: S, until: Option<Instant>) -> Attempt<S, F> {
    match until {
        Some(until) => Attempt::BackingOff { until, then: step },
        None => Attempt::Ready(step),
    }
}

/// The next discovery GET, if one is due: the phase it leaves, and the
/// request.
pub(super) fn poll_discovery(
    attempt: Attempt<Box<Discovery>, Box<Discovery>>,
    now: Instant,
) -> (Phase, Option<RequestPlan>) {
    let d = match attempt.into_due(now) {
        Ok(d) => d,
        Err(attempt) => return (Phase::Resolving(attempt), None),
    };
    let Some(path) = d.next_path().map(str::to_owned) else {
        return (Phase::Resolving(Attempt::Ready(d)), None);
    };
    let plan = RequestPlan {
        kind: RequestKind::Discovery,
        path_and_query: path,
        accept: DISCOVERY_ACCEPT,
    };
    (Phase::Resolving(Attempt::sent(d, now)), Some(plan))
}

/// The next request for the resource.
#[derive(Debug, Clone)]
pub(super) enum Step {
    List(ListRound),
    /// A streaming list: the round collects the initial events.
    Stream(ListRound),
    Watch,
}

/// The resource's request in flight.
#[derive(Debug, Clone)]
pub(super) enum InFlight {
    List(ListRound),
    /// `stream` is `None` until the server answered 200. `initial` is set
    /// for a streaming list until its initial-events-end bookmark.
    Watch {
        timeout: Duration,
        stream: Option<Stream>,
        initial: Option<ListRound>,
    },
}

/// What a request in flight waits for (and failed to get in time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Awaited {
    /// A complete response head (bytes trickling in do not count).
    Head,
    /// Any byte of a LIST or discovery body.
    Data,
    /// An event or a bookmark on a watch stream (keep-alive blank lines and
    /// partial lines do not count).
    Event,
}

impl Awaited {
    /// The failure of a request that did not get it within `limit`.
    pub fn missed(self, limit: Duration) -> String {
        let secs = limit.as_secs();
        match self {
            Awaited::Head => format!("no complete response head from the server within {secs}s"),
            Awaited::Data => format!("no data from the server for {secs}s"),
            Awaited::Event => format!("no event or bookmark from the server for {secs}s"),
        }
    }
}

/// How long a request may stay silent.
#[derive(Debug, Clone, Copy)]
struct Limits {
    head: Duration,
    idle: Duration,
    awaited: Awaited,
}

/// A list or a discovery document: bytes are progress.
const DOCUMENT_LIMITS: Limits = Limits {
    head: LIST_IDLE_LIMIT,
    idle: LIST_IDLE_LIMIT,
    awaited: Awaited::Data,
};

impl InFlight {
    fn limits(&self, watch_timeout: Duration) -> Limits {
        match self {
            InFlight::List(_) => DOCUMENT_LIMITS,
            InFlight::Watch { timeout, .. } => {
                let grace = watch_timeout.min(Duration::from_secs(30));
                Limits {
                    head: grace.max(WATCH_HEAD_FLOOR),
                    // The server ends the stream at `timeout`: a healthy
                    // stream, however quiet, never reaches this.
                    idle: *timeout + grace,
                    awaited: Awaited::Event,
                }
            }
        }
    }

    /// Whether bytes alone show progress (not on a watch stream, where
    /// only events and bookmarks do).
    fn bytes_count(&self) -> bool {
        matches!(self, InFlight::List(_))
    }
}

/// What a request for the resource needs besides its step.
pub(super) struct Request<'a> {
    pub resolved: &'a Resolved,
    pub selectors: &'a Selectors,
    pub page_size: u32,
    pub resume_rv: Option<&'a str>,
    /// Server-side timeout of a WATCH.
    pub timeout: Duration,
    /// Ask for PartialObjectMetadata (`metadata_only`, not refused).
    pub partial_objects: bool,
}

impl Step {
    /// A LIST or a streaming list, as configured and as the server allows.
    pub fn list(spec: &WatchSpec, stream_rejected: bool, purpose: ListPurpose) -> Step {
        let streaming = match spec.initial_list {
            InitialList::List => false,
            InitialList::Stream => true,
            InitialList::Auto => !stream_rejected,
        };
        match streaming {
            true => Step::Stream(ListRound::new(purpose)),
            false => Step::List(ListRound::new(purpose)),
        }
    }

    /// The request for this step, and what the step becomes in flight.
    pub fn plan(self, r: Request<'_>) -> (RequestPlan, InFlight) {
        let path = &r.resolved.path;
        let (list_accept, watch_accept) = match r.partial_objects {
            true => (METADATA_LIST_ACCEPT, METADATA_WATCH_ACCEPT),
            false => (JSON_ACCEPT, JSON_ACCEPT),
        };
        let (kind, query, accept) = match &self {
            Step::List(round) => (
                RequestKind::List,
                WatchQuery::List {
                    limit: r.page_size,
                    continue_token: round.continue_token.as_deref(),
                    exact: round.exact_rv(),
                },
                list_accept,
            ),
            Step::Stream(_) => (
                RequestKind::Watch,
                WatchQuery::StreamingList {
                    timeout_seconds: r.timeout.as_secs(),
                },
                watch_accept,
            ),
            Step::Watch => (
                RequestKind::Watch,
                WatchQuery::Watch {
                    resource_version: r.resume_rv,
                    timeout_seconds: r.timeout.as_secs(),
                },
                watch_accept,
            ),
        };
        let plan = RequestPlan {
            kind,
            path_and_query: query.to_path(path, r.selectors),
            accept,
        };
        let in_flight = match self {
            Step::List(round) => InFlight::List(round),
            Step::Stream(round) => InFlight::Watch {
                timeout: r.timeout,
                stream: None,
                initial: Some(round),
            },
            Step::Watch => InFlight::Watch {
                timeout: r.timeout,
                stream: None,
                initial: None,
            },
        };
        (plan, in_flight)
    }
}

impl Attempt<Step, InFlight> {
    /// The step to retry after the in-flight request failed.
    pub fn into_retry(self) -> Step {
        match self {
            Attempt::InFlight {
                request: InFlight::List(round),
                ..
            } => Step::List(round),
            Attempt::InFlight {
                request:
                    InFlight::Watch {
                        initial: Some(mut round),
                        ..
                    },
                ..
            } => {
                // A streaming list cannot resume: start it over.
                round.restart();
                Step::Stream(round)
            }
            Attempt::InFlight { .. } => Step::Watch,
            Attempt::Ready(step) | Attempt::BackingOff { then: step, .. } => step,
        }
    }

    /// The step this attempt is about (in flight, due, or to retry).
    fn step_kind(&self) -> Attempted {
        match self {
            Attempt::InFlight {
                request: InFlight::List(_),
                ..
            }
            | Attempt::Ready(Step::List(_))
            | Attempt::BackingOff {
                then: Step::List(_),
                ..
            } => Attempted::List,
            Attempt::InFlight {
                request:
                    InFlight::Watch {
                        initial: Some(_), ..
                    },
                ..
            }
            | Attempt::Ready(Step::Stream(_))
            | Attempt::BackingOff {
                then: Step::Stream(_),
                ..
            } => Attempted::StreamingList,
            _ => Attempted::Watch,
        }
    }
}

#[derive(Debug)]
pub(super) enum Phase {
    /// A watch by kind asks discovery for its resource.
    Resolving(Attempt<Box<Discovery>, Box<Discovery>>),
    /// The resource is known: list, watch, relist.
    Running {
        resolved: Resolved,
        attempt: Attempt<Step, InFlight>,
    },
    /// A permanent error (an ambiguous name, a namespace on a
    /// cluster-scoped kind): logged, the watch does not run.
    Failed,
}

impl Phase {
    pub fn state(&self) -> WatchState {
        match self {
            Phase::Failed => WatchState::Failed,
            Phase::Resolving(Attempt::BackingOff { .. })
            | Phase::Running {
                attempt: Attempt::BackingOff { .. },
                ..
            } => WatchState::BackingOff,
            Phase::Resolving(_) => WatchState::Resolving,
            Phase::Running {
                attempt: Attempt::Ready(Step::Watch),
                ..
            } => WatchState::Connecting,
            Phase::Running {
                attempt: Attempt::Ready(Step::List(_) | Step::Stream(_)),
                ..
            } => WatchState::Listing,
            Phase::Running {
                attempt: Attempt::InFlight { request, .. },
                ..
            } => match request {
                InFlight::List(_)
                | InFlight::Watch {
                    initial: Some(_), ..
                } => WatchState::Listing,
                InFlight::Watch { stream: None, .. } => WatchState::Connecting,
                InFlight::Watch {
                    stream: Some(_), ..
                } => WatchState::Streaming,
            },
        }
    }

    pub fn resolved(&self) -> Option<&Resolved> {
        match self {
            Phase::Running { resolved, .. } => Some(resolved),
            Phase::Resolving(_) | Phase::Failed => None,
        }
    }

    /// The request the phase is about, for the policy.
    pub fn attempted(&self) -> Option<Attempted> {
        match self {
            Phase::Failed => None,
            Phase::Resolving(_) => Some(Attempted::Discovery),
            Phase::Running { attempt, .. } => Some(attempt.step_kind()),
        }
    }

    /// True when a request is due now.
    pub fn due(&self, now: Instant) -> bool {
        match self {
            Phase::Failed => false,
            Phase::Resolving(attempt) => attempt.due(now),
            Phase::Running { attempt, .. } => attempt.due(now),
        }
    }

    /// Bytes arrived for the in-flight request: progress for a list or a
    /// discovery document once its head is in; nothing for a response head
    /// (it has its own deadline) or a watch stream (events count there).
    pub fn note_activity(&mut self, now: Instant) {
        match self {
            Phase::Resolving(Attempt::InFlight {
                last_activity,
                answered: true,
                ..
            }) => *last_activity = now,
            Phase::Running {
                attempt:
                    Attempt::InFlight {
                        request,
                        last_activity,
                        answered: true,
                    },
                ..
            } if request.bytes_count() => *last_activity = now,
            _ => {}
        }
    }

    /// The response head of the request in flight arrived (any status).
    pub fn note_head(&mut self, now: Instant) {
        if let Phase::Resolving(Attempt::InFlight {
            last_activity,
            answered,
            ..
        })
        | Phase::Running {
            attempt:
                Attempt::InFlight {
                    last_activity,
                    answered,
                    ..
                },
            ..
        } = self
        {
            if !*answered {
                *answered = true;
                *last_activity = now;
            }
        }
    }

    /// When a retry is due or the request in flight is presumed dead.
    pub fn deadline(&self, watch_timeout: Duration) -> Option<Instant> {
        match self {
            Phase::Failed => None,
            Phase::Resolving(attempt) => attempt.deadline(|_| DOCUMENT_LIMITS),
            Phase::Running { attempt, .. } => attempt.deadline(|r| r.limits(watch_timeout)),
        }
    }

    /// What the request in flight failed to send, and the limit it had,
    /// when it has been silent that long at `now`.
    pub fn silent(&self, now: Instant, watch_timeout: Duration) -> Option<(Awaited, Duration)> {
        let (silence, limit, since) = match self {
            Phase::Failed => None,
            Phase::Resolving(attempt) => attempt.silence(|_| DOCUMENT_LIMITS),
            Phase::Running { attempt, .. } => attempt.silence(|r| r.limits(watch_timeout)),
        }?;
        (now.saturating_duration_since(since) >= limit).then_some((silence, limit))
    }

    /// The failed (or abandoned) request's retry step: due at once
    /// (`until` = `None`) or at `until`. Discovery starts over.
    pub fn into_retry(self, spec: &WatchSpec, until: Option<Instant>) -> Phase {
        match self {
            Phase::Failed => Phase::Failed,
            Phase::Resolving(attempt) => {
                let d = match attempt {
                    Attempt::InFlight { request, .. } => resolve::again(spec, &request),
                    Attempt::Ready(d) | Attempt::BackingOff { then: d, .. } => d,
                };
                Phase::Resolving(waiting(d, until))
            }
            Phase::Running { resolved, attempt } => Phase::Running {
                resolved,
                attempt: waiting(attempt.into_retry(), until),
            },
        }
    }

    /// A list due next starts over (its snapshot expired). Returns the
    /// resourceVersion it was to be read at exactly, if it was (that
    /// position is gone: it becomes a silent baseline of the current state).
    pub fn restart_list(&mut self) -> Option<String> {
        if let Phase::Running {
            attempt:
                Attempt::Ready(Step::List(round) | Step::Stream(round))
                | Attempt::BackingOff {
                    then: Step::List(round) | Step::Stream(round),
                    ..
                },
            ..
        } = self
        {
            return round.restart();
        }
        None
    }

    /// The stream of the WATCH in flight, once the server answered 200.
    pub fn open_stream(&self) -> Option<&Stream> {
        match self {
            Phase::Running {
                attempt:
                    Attempt::InFlight {
                        request: InFlight::Watch { stream, .. },
                        ..
                    },
                ..
            } => stream.as_ref(),
            _ => None,
        }
    }

    /// A pending streaming list becomes a paginated LIST (same purpose).
    pub fn stream_to_list(&mut self) {
        if let Phase::Running {
            attempt: Attempt::Ready(step) | Attempt::BackingOff { then: step, .. },
            ..
        } = self
        {
            if let Step::Stream(round) = step {
                *step = Step::List(ListRound::new(round.purpose));
            }
        }
    }
}

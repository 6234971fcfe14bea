//! What a watch does about an answer it did not want: a non-2xx status or
//! an ERROR event. One pure function from the answer, the server's Status,
//! the request it answered and the watch's flags to one [`Verdict`]; the
//! machine carries the verdict out (logs, counters, next step). Every
//! decision of this kind is written here once and tested as a table.

use crate::kube::Status;
use crate::watch::stats::ReconnectReason;
use std::time::Duration;

/// The request the answer is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempted {
    /// A discovery GET (a watch by kind finding its resource).
    Discovery,
    /// A page of a paginated LIST.
    List,
    /// A streaming list before its initial-events-end bookmark.
    StreamingList,
    /// A WATCH from a known resourceVersion.
    Watch,
}

impl Attempted {
    /// How logs name the request.
    pub fn what(self) -> &'static str {
        match self {
            Attempted::Discovery => "discovery GET",
            Attempted::List => "LIST",
            Attempted::StreamingList => "streaming list",
            Attempted::Watch => "WATCH",
        }
    }
}

/// How the unwanted answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// A non-2xx response; `retry_after` from its header.
    Http {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// An ERROR event on an open stream (its Status is the event's object).
    ErrorEvent,
}

/// What the watch knows about the server that changes a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Flags {
    /// `metadata_only` asks for PartialObjectMetadata and the server has
    /// not refused it yet.
    pub partial_objects: bool,
    /// `initial_list = "auto"`: a refused streaming list falls back to LISTs.
    pub stream_fallback: bool,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The watch's position is gone (410, or the server is behind it):
    /// list again and report the difference. `after`: the server asked
    /// to wait that long first.
    Relist { after: Option<Duration> },
    /// The server refuses the watch's resourceVersion as invalid (a
    /// checkpoint from a server that numbers differently, a mangled
    /// position): no retry of it can succeed. List again and report the
    /// difference, as for an expired one, after a backoff (a server that
    /// refuses the positions of its own lists must not be hammered).
    RelistRefused,
    /// A list's snapshot is gone (410 on a continue token): start the
    /// list over. `after` as for `Relist`.
    RestartList { after: Option<Duration> },
    /// The server refuses streaming lists: use paginated LISTs from now on.
    FallbackToList,
    /// The server cannot send PartialObjectMetadata (406): full objects
    /// from now on, at once.
    FullObjects,
    /// A discovery GET found nothing there (404): go on with the next one.
    SkipGroupVersion,
    /// A failure: retry the same request after a backoff, at least
    /// `retry_after`.
    Backoff { retry_after: Option<Duration> },
}

/// The one place that decides what an unwanted answer means.
pub(super) fn verdict(
    answer: Answer,
    status: &Status,
    attempted: Attempted,
    flags: Flags,
) -> Verdict {
    let server_wait = status
        .details
        .as_ref()
        .and_then(|d| d.retry_after_seconds)
        .map(Duration::from_secs);
    let (code, header_wait) = match answer {
        // An ERROR event during a streaming list: the list starts over
        // after a backoff, whatever the error.
        Answer::ErrorEvent if attempted == Attempted::StreamingList => {
            return Verdict::Backoff { retry_after: None }
        }
        Answer::ErrorEvent if status.is_expired() => {
            return expired(attempted, server_wait);
        }
        Answer::ErrorEvent => return Verdict::Backoff { retry_after: None },
        Answer::Http {
            status,
            retry_after,
        } => (status, retry_after),
    };
    match (attempted, code) {
        (Attempted::Discovery, 404) => Verdict::SkipGroupVersion,
        (Attempted::Discovery, _) => Verdict::Backoff {
            retry_after: header_wait,
        },
        (_, 406) if flags.partial_objects => Verdict::FullObjects,
        (Attempted::StreamingList, 400 | 403 | 422) if flags.stream_fallback => {
            Verdict::FallbackToList
        }
        (_, 410) => expired(attempted, server_wait.or(header_wait)),
        (Attempted::Watch, 400 | 422) if refuses_position(status) => Verdict::RelistRefused,
        (_, 504) if status.is_resource_version_too_large() => {
            expired(attempted, server_wait.or(header_wait))
        }
        _ => Verdict::Backoff {
            retry_after: header_wait,
        },
    }
}

/// The history asked for is gone: a watch relists, a list starts over.
fn expired(attempted: Attempted, after: Option<Duration>) -> Verdict {
    match attempted {
        Attempted::Watch => Verdict::Relist { after },
        Attempted::List | Attempted::StreamingList | Attempted::Discovery => {
            Verdict::RestartList { after }
        }
    }
}

/// The Status says the request's resourceVersion is invalid: the API
/// server's `resourceVersion: Invalid value: …` (field validation) or
/// `invalid resource version` wordings.
fn refuses_position(status: &Status) -> bool {
    let message = status
        .message
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    (message.contains("resourceversion:") || message.contains("resource version"))
        && message.contains("invalid")
}

/// How a failure (a `Backoff` verdict) counts: the reconnect reason and
/// the error kept for status and health. `None` for discovery, whose
/// failures restart discovery without counting.
pub(super) fn failure(
    answer: Answer,
    attempted: Attempted,
    summary: &str,
) -> Option<(ReconnectReason, String)> {
    match (answer, attempted) {
        (_, Attempted::Discovery) => None,
        (Answer::ErrorEvent, _) => Some((
            ReconnectReason::ErrorEvent,
            format!("ERROR event: {summary}"),
        )),
        (Answer::Http { .. }, _) => Some((
            ReconnectReason::HttpError,
            format!("{} answered {summary}", attempted.what()),
        )),
    }
}

/// The log line (after "watch NAME: ") for a failure retried in `delay`,
/// with its level: an error when the operator must act (`hint`).
pub(super) fn retry_line(
    answer: Answer,
    attempted: Attempted,
    summary: &str,
    path: &str,
    delay: Duration,
) -> (log::Level, String) {
    let retry = format!("retrying in {} ms", delay.as_millis());
    let what = attempted.what();
    match (answer, attempted) {
        (_, Attempted::Discovery) => (
            log::Level::Warn,
            format!("{what} {path} answered {summary}; {retry}"),
        ),
        (Answer::ErrorEvent, Attempted::StreamingList) => (
            log::Level::Warn,
            format!(
                "the server sent an ERROR event during a streaming list ({summary}); listing again in {} ms",
                delay.as_millis()
            ),
        ),
        (Answer::ErrorEvent, _) => (
            log::Level::Warn,
            format!(
                "the server sent an ERROR event ({summary}); re-watching in {} ms",
                delay.as_millis()
            ),
        ),
        (Answer::Http { status, .. }, _) => match hint(status) {
            Some(hint) => (
                log::Level::Error,
                format!("{what} {path} answered {summary}: {hint}; {retry}"),
            ),
            None => (log::Level::Warn, format!("{what} answered {summary}; {retry}")),
        },
    }
}

/// What an operator should do about a status that will not fix itself.
pub(super) fn hint(status: u16) -> Option<&'static str> {
    match status {
        401 => Some("the server refused the credentials; check the cluster's token_file (it is re-read before every request)"),
        403 => Some("the credentials lack permission; grant list and watch on this resource (RBAC)"),
        404 => Some("the server does not serve this resource; check api_version and resource"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Attempted::{Discovery, List, StreamingList, Watch};

    fn http(status: u16) -> Answer {
        Answer::Http {
            status,
            retry_after: None,
        }
    }

    const NONE: Flags = Flags {
        partial_objects: false,
        stream_fallback: false,
    };
    const PARTIAL: Flags = Flags {
        partial_objects: true,
        stream_fallback: false,
    };
    const AUTO: Flags = Flags {
        partial_objects: false,
        stream_fallback: true,
    };
    const EXPIRED: &str = r#"{"kind":"Status","code":410,"reason":"Expired"}"#;
    const TOO_LARGE: &str =
        r#"{"code":504,"details":{"causes":[{"reason":"ResourceVersionTooLarge"}]}}"#;
    const WAIT_3: &str = r#"{"code":410,"details":{"retryAfterSeconds":3}}"#;
    const GONE_REASON: &str = r#"{"reason":"Gone"}"#;
    const INVALID_RV: &str = r#"{"kind":"Status","code":400,"reason":"BadRequest","message":"resourceVersion: Invalid value: \"abc\": strconv.ParseUint: parsing \"abc\": invalid syntax"}"#;
    const INVALID_RV_422: &str = r#"{"code":422,"reason":"Invalid","message":"pods \"\" is invalid: resourceVersion: Invalid value: \"x\""}"#;
    const INVALID_RV_OLD: &str = r#"{"code":400,"message":"invalid resource version: x"}"#;
    const RV_MATCH: &str = r#"{"code":400,"message":"resourceVersionMatch is forbidden unless resourceVersion is provided"}"#;

    #[test]
    fn verdicts() {
        let s3 = Some(Duration::from_secs(3));
        let s7 = Some(Duration::from_secs(7));
        let none = None;
        #[rustfmt::skip]
        let table: &[(Answer, &str, Attempted, Flags, Verdict)] = &[
            // 410 on a watch relists; on a list (continue token) or a
            // streaming list it starts the list over.
            (http(410), EXPIRED, Watch, NONE, Verdict::Relist { after: none }),
            (http(410), "", Watch, NONE, Verdict::Relist { after: none }),
            (http(410), EXPIRED, List, NONE, Verdict::RestartList { after: none }),
            (http(410), EXPIRED, StreamingList, AUTO, Verdict::RestartList { after: none }),
            // The server behind the client (504 with the cause) is an expiry;
            // a plain 504 is a failure.
            (http(504), TOO_LARGE, Watch, NONE, Verdict::Relist { after: none }),
            (http(504), "", Watch, NONE, Verdict::Backoff { retry_after: none }),
            // Retry-After: the Status's own, else the header's.
            (http(410), WAIT_3, Watch, NONE, Verdict::Relist { after: s3 }),
            (Answer::Http { status: 410, retry_after: s7 }, "", List, NONE, Verdict::RestartList { after: s7 }),
            (Answer::Http { status: 410, retry_after: s7 }, WAIT_3, Watch, NONE, Verdict::Relist { after: s3 }),
            (Answer::Http { status: 429, retry_after: s7 }, WAIT_3, List, NONE, Verdict::Backoff { retry_after: s7 }),
            // A position the server refuses as invalid relists (after a
            // backoff); other 400s and refusals of a list do not.
            (http(400), INVALID_RV, Watch, NONE, Verdict::RelistRefused),
            (http(422), INVALID_RV_422, Watch, AUTO, Verdict::RelistRefused),
            (http(400), INVALID_RV_OLD, Watch, NONE, Verdict::RelistRefused),
            (http(400), RV_MATCH, Watch, NONE, Verdict::Backoff { retry_after: none }),
            (http(400), "", Watch, NONE, Verdict::Backoff { retry_after: none }),
            (http(500), INVALID_RV, Watch, NONE, Verdict::Backoff { retry_after: none }),
            (http(400), INVALID_RV, List, NONE, Verdict::Backoff { retry_after: none }),
            (http(400), INVALID_RV, StreamingList, AUTO, Verdict::FallbackToList),
            (Answer::ErrorEvent, INVALID_RV, Watch, NONE, Verdict::Backoff { retry_after: none }),
            // ERROR events: an expiry (by code, reason or cause) relists,
            // anything else re-watches after a backoff.
            (Answer::ErrorEvent, EXPIRED, Watch, NONE, Verdict::Relist { after: none }),
            (Answer::ErrorEvent, GONE_REASON, Watch, NONE, Verdict::Relist { after: none }),
            (Answer::ErrorEvent, TOO_LARGE, Watch, NONE, Verdict::Relist { after: none }),
            (Answer::ErrorEvent, WAIT_3, Watch, NONE, Verdict::Relist { after: s3 }),
            (Answer::ErrorEvent, r#"{"code":500}"#, Watch, NONE, Verdict::Backoff { retry_after: none }),
            (Answer::ErrorEvent, EXPIRED, StreamingList, AUTO, Verdict::Backoff { retry_after: none }),
            // 406 falls back to full objects only when partial ones were asked.
            (http(406), "", List, PARTIAL, Verdict::FullObjects),
            (http(406), "", Watch, PARTIAL, Verdict::FullObjects),
            (http(406), "", List, NONE, Verdict::Backoff { retry_after: none }),
            // A refused streaming list falls back with "auto" only.
            (http(422), "", StreamingList, AUTO, Verdict::FallbackToList),
            (http(400), "", StreamingList, AUTO, Verdict::FallbackToList),
            (http(403), "", StreamingList, AUTO, Verdict::FallbackToList),
            (http(422), "", StreamingList, NONE, Verdict::Backoff { retry_after: none }),
            (http(422), "", Watch, AUTO, Verdict::Backoff { retry_after: none }),
            (http(500), "", StreamingList, AUTO, Verdict::Backoff { retry_after: none }),
            // Discovery: a 404 skips a group version, anything else starts
            // discovery over after a backoff.
            (http(404), "", Discovery, NONE, Verdict::SkipGroupVersion),
            (http(410), EXPIRED, Discovery, NONE, Verdict::Backoff { retry_after: none }),
            (Answer::Http { status: 503, retry_after: s7 }, "", Discovery, PARTIAL, Verdict::Backoff { retry_after: s7 }),
            // Everything else is a failure to retry.
            (http(401), "", Watch, NONE, Verdict::Backoff { retry_after: none }),
            (http(403), "", List, AUTO, Verdict::Backoff { retry_after: none }),
            (http(404), "", List, NONE, Verdict::Backoff { retry_after: none }),
            (http(500), EXPIRED, Watch, NONE, Verdict::Backoff { retry_after: none }),
        ];
        for (i, (answer, body, attempted, flags, want)) in table.iter().enumerate() {
            let status = Status::parse_lenient(body.as_bytes());
            assert_eq!(
                verdict(*answer, &status, *attempted, *flags),
                *want,
                "row {i}: {answer:?} {body} on {attempted:?} with {flags:?}"
            );
        }
    }

    #[test]
    fn hints_name_what_to_fix() {
        assert!(hint(401).is_some_and(|h| h.contains("token_file")));
        assert!(hint(403).is_some_and(|h| h.contains("RBAC")));
        assert!(hint(404).is_some_and(|h| h.contains("api_version")));
        assert_eq!(hint(500), None);
    }
}

//! What a failed request does to a watch: a transport error backs off; a
//! non-2xx answer or an ERROR event goes to `policy` for a verdict, which
//! is carried out here (retry, relist, resolve again, fail for good).

use super::super::stats::ReconnectReason;
use super::list::ListPurpose;
use super::phase::{waiting, Attempt, Phase};
use super::policy::{self, Answer, Attempted, Verdict};
use super::{LineOutcome, WatchMachine};
use crate::kube::event::excerpt;
use crate::kube::Status;
use std::time::{Duration, Instant};

impl WatchMachine {
    /// The connection failed or the response could not be read (connect
    /// error, reset, TLS failure, malformed HTTP, a line over the limit).
    pub fn on_transport_error(&mut self, now: Instant, error: &dyn std::fmt::Display) {
        self.transport_error(now, error, log::Level::Warn);
    }

    /// A transport error the daemon reports in one summary line rather than
    /// once per watch (out of file descriptors): the same, logged at debug.
    pub fn on_transport_error_quietly(&mut self, now: Instant, error: &dyn std::fmt::Display) {
        self.transport_error(now, error, log::Level::Debug);
    }

    fn transport_error(&mut self, now: Instant, error: &dyn std::fmt::Display, level: log::Level) {
        self.known.count_reconnect(ReconnectReason::TransportError);
        self.known.count_failure(error.to_string());
        let delay = self.back_off(now, None);
        log::log!(
            level,
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
        let Some(attempted) = self.phase.attempted() else {
            return;
        };
        let parsed = Status::parse_lenient(body);
        let summary = if parsed.code.is_some() || parsed.message.is_some() {
            parsed.summary()
        } else {
            format!("{status} ({})", excerpt(body))
        };
        let answer = Answer::Http {
            status,
            retry_after,
        };
        let verdict = policy::verdict(answer, &parsed, attempted, self.flags());
        self.carry_out(now, verdict, answer, attempted, &summary);
    }

    /// An ERROR event on an open stream (always closes it).
    pub(super) fn on_error_event(&mut self, now: Instant, object: &str) -> LineOutcome {
        let Some(attempted) = self.phase.attempted() else {
            return LineOutcome::Close;
        };
        let status = Status::parse_lenient(object.as_bytes());
        let verdict = policy::verdict(Answer::ErrorEvent, &status, attempted, self.flags());
        self.carry_out(
            now,
            verdict,
            Answer::ErrorEvent,
            attempted,
            &status.summary(),
        );
        LineOutcome::Close
    }

    /// Does what the policy decided about an unwanted answer.
    fn carry_out(
        &mut self,
        now: Instant,
        verdict: Verdict,
        answer: Answer,
        attempted: Attempted,
        summary: &str,
    ) {
        let name = self.spec.name.clone();
        let what = attempted.what();
        let at = |after: Option<Duration>| after.map(|a| now + a);
        match verdict {
            Verdict::SkipGroupVersion => {
                if let Phase::Resolving(Attempt::InFlight { mut request, .. }) =
                    std::mem::replace(&mut self.phase, Phase::Failed)
                {
                    // A group version that went away, or one asked by
                    // api_version that is not served: nothing there.
                    request.on_not_found();
                    self.after_discovery(now, request);
                }
            }
            Verdict::FullObjects => {
                log::warn!(
                    "watch {name}: the server cannot send PartialObjectMetadata ({summary}); metadata_only falls back to full objects for this watch",
                );
                self.metadata_fallback = true;
                self.retry(None);
            }
            Verdict::FallbackToList => {
                log::warn!(
                    "watch {name}: the server refused a streaming list ({summary}); using paginated LISTs on this cluster from now on",
                );
                self.stream_rejected = true;
                self.retry(None);
                self.phase.stream_to_list();
            }
            Verdict::Relist { after } => {
                log::info!(
                    "watch {name}: resourceVersion {} is no longer available ({summary}); relisting",
                    self.known.resume_rv.as_deref().unwrap_or("(none)"),
                );
                self.known.stats.relists += 1;
                self.known.count_reconnect(ReconnectReason::Expired);
                let then = self.list_step(ListPurpose::Relist);
                self.next(waiting(then, at(after)));
            }
            Verdict::RelistRefused => {
                self.known.stats.relists += 1;
                self.known.count_reconnect(ReconnectReason::HttpError);
                self.known
                    .count_failure(format!("{what} answered {summary}"));
                let delay = self.backoff.next_delay(now, &mut self.rng, None);
                log::warn!(
                    "watch {}: the server refused resourceVersion {} ({summary}); relisting in {} ms and reporting what changed since, as for an expired position",
                    self.spec.name,
                    self.known.resume_rv.as_deref().unwrap_or("(none)"),
                    delay.as_millis()
                );
                let then = self.list_step(ListPurpose::Relist);
                self.next(waiting(then, Some(now + delay)));
            }
            Verdict::RestartList { after } => {
                self.known.count_reconnect(ReconnectReason::Expired);
                self.retry(at(after));
                match self.phase.restart_list() {
                    Some(rv) => log::warn!(
                        "watch {name}: the leader's confirmed position {rv} can no longer be listed ({summary}); listing the current state as this standby's baseline WITHOUT reporting it: should it take over, it reports only changes after this list, so changes between {rv} and now that the leader had not delivered are not reported",
                    ),
                    None => log::info!(
                        "watch {name}: list snapshot expired ({summary}); listing again from the start",
                    ),
                }
            }
            Verdict::Backoff { retry_after } => {
                let path = match &self.phase {
                    Phase::Resolving(Attempt::InFlight { request, .. }) => {
                        request.next_path().unwrap_or("").to_owned()
                    }
                    _ => self.path_str().to_owned(),
                };
                let counted = policy::failure(answer, attempted, summary);
                if let Some((reason, error)) = counted {
                    self.known.count_reconnect(reason);
                    self.known.count_failure(error);
                }
                let delay = self.back_off(now, retry_after);
                let auth = matches!(
                    answer,
                    Answer::Http {
                        status: 401 | 403,
                        ..
                    }
                );
                self.auth_failures = if auth {
                    self.auth_failures + 1
                } else {
                    self.auth_failures
                };
                let line = policy::retry_line(answer, attempted, summary, &path, delay);
                match (line, auth && self.auth_failures > 1) {
                    (_, true) => log::debug!(
                        "watch {name}: still failing; retrying in {} ms",
                        delay.as_millis()
                    ),
                    ((log::Level::Error, text), _) => log::error!("watch {name}: {text}"),
                    ((_, text), _) => log::warn!("watch {name}: {text}"),
                }
            }
        }
    }
}

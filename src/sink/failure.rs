//! What happens to events a sink gave up on: a log line, and with
//! `on_failure = "dead_letter"` a line per record in the dead-letter file.

use super::dead_letter::DeadLetter;
use super::dispatch::GaveUp;
use crate::config::OnFailure;

#[derive(Debug)]
pub enum FailurePolicy {
    Log,
    DeadLetter(DeadLetter),
}

impl FailurePolicy {
    pub fn new(on_failure: &OnFailure) -> Self {
        match on_failure {
            OnFailure::Log => FailurePolicy::Log,
            OnFailure::DeadLetter(path) => FailurePolicy::DeadLetter(DeadLetter::new(path.clone())),
        }
    }

    /// Records that will not be retried. They are never dropped silently:
    /// if even the dead-letter file cannot take them, the records themselves
    /// go to the log.
    pub fn gave_up(&mut self, sink: &str, gave_up: &GaveUp) {
        let first = gave_up.records.first().map(|r| &r.meta);
        let object = first
            .map(|m| format!("{} {}/{}", m.event_type, m.namespace, m.name))
            .unwrap_or_default();
        let more = match gave_up.records.len() {
            0 | 1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        match self {
            FailurePolicy::Log => log::error!(
                "sink {sink}: giving up on {object}{more} after {} attempts: {}",
                gave_up.attempts,
                gave_up.reason
            ),
            FailurePolicy::DeadLetter(dl) => match dl.append(sink, gave_up) {
                Ok(()) => log::error!(
                    "sink {sink}: giving up on {object}{more} after {} attempts: {}; written to {}",
                    gave_up.attempts,
                    gave_up.reason,
                    dl.path().display()
                ),
                Err(e) => {
                    log::error!(
                        "sink {sink}: giving up on {object}{more} after {} attempts: {}; the dead-letter file {} cannot be written ({e}), so the records follow here",
                        gave_up.attempts,
                        gave_up.reason,
                        dl.path().display()
                    );
                    for r in gave_up.records.iter() {
                        log::error!(
                            "sink {sink}: undelivered: {}",
                            String::from_utf8_lossy(r.line.trim_ascii_end())
                        );
                    }
                }
            },
        }
    }
}

//! What a watch shows to logs, status, health and metrics: its counters,
//! why it reconnected, and where it stands. Closed enums with `ALL` and
//! `as_str()`, so a metric's label set and a status field come from one
//! list and nobody compares strings.

use std::time::Instant;

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
    /// opened — unless it ends at once or stays silent until its deadline
    /// without a line, and not at all after such silent streams —, a line
    /// on an open stream, a stream that ends normally). Health looks at
    /// this.
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

/// Where a watch stands, as logs, status, health and metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchState {
    /// A watch by kind asks discovery for its resource.
    Resolving,
    /// A LIST or a streaming list's initial events.
    Listing,
    /// A WATCH is due or sent, its stream not open yet.
    Connecting,
    /// The stream is open (initial list done).
    Streaming,
    /// Waiting before a retry.
    BackingOff,
    /// Stopped for good (a permanent error, see the log).
    Failed,
}

impl WatchState {
    pub const ALL: [WatchState; 6] = [
        WatchState::Resolving,
        WatchState::Listing,
        WatchState::Connecting,
        WatchState::Streaming,
        WatchState::BackingOff,
        WatchState::Failed,
    ];

    /// The word for logs and `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchState::Resolving => "resolving",
            WatchState::Listing => "listing",
            WatchState::Connecting => "connecting",
            WatchState::Streaming => "streaming",
            WatchState::BackingOff => "backing off",
            WatchState::Failed => "failed",
        }
    }

    /// The metric label value (no spaces).
    pub fn label(self) -> &'static str {
        match self {
            WatchState::BackingOff => "backing_off",
            other => other.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_distinct_words_and_labels_without_spaces() {
        let words: std::collections::HashSet<_> =
            WatchState::ALL.iter().map(|s| s.as_str()).collect();
        let labels: std::collections::HashSet<_> =
            WatchState::ALL.iter().map(|s| s.label()).collect();
        assert_eq!((words.len(), labels.len()), (6, 6));
        assert!(labels.iter().all(|l| !l.contains(' ')), "{labels:?}");
        assert_eq!(WatchState::BackingOff.as_str(), "backing off");
        assert_eq!(WatchState::BackingOff.label(), "backing_off");
    }
}

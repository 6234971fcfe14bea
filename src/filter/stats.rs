//! What a watch's filters did, for `/metrics`, and how often their errors
//! are logged.

use super::object::{FilterKey, SkipReason};
use std::time::{Duration, Instant};

/// Counters of one watch: `kwatchd_watch_events_skipped_total{reason}` and
/// `kwatchd_filter_errors_total{key}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// By `SkipReason as usize`.
    pub skipped: [u64; SkipReason::ALL.len()],
    /// By `FilterKey as usize`.
    pub errors: [u64; FilterKey::ALL.len()],
}

/// Error lines one watch logs per window at most; the rest are counted and
/// the count said with the next line logged. A broken `transform` on a
/// busy watch must not flood the journal with one line per event.
const LOG_BURST: u32 = 5;
const LOG_WINDOW: Duration = Duration::from_secs(60);

/// Rate limit for one watch's filter error lines.
#[derive(Debug, Default)]
pub struct LogLimit {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    /// Whether to log a line now; `Some(n)`: yes, and `n` were suppressed
    /// since the last one logged.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= LOG_WINDOW);
        if fresh {
            self.window_start = Some(now);
            self.logged = 0;
        }
        if self.logged >= LOG_BURST {
            self.suppressed += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_counts_then_says_how_many() {
        let t0 = Instant::now();
        let mut l = LogLimit::default();
        for _ in 0..LOG_BURST {
            assert_eq!(l.admit(t0), Some(0));
        }
        assert_eq!(l.admit(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.admit(t0 + Duration::from_secs(2)), None);
        assert_eq!(l.admit(t0 + LOG_WINDOW), Some(2));
        assert_eq!(l.admit(t0 + LOG_WINDOW), Some(0));
    }
}

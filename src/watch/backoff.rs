//! Exponential backoff with full jitter, one per watch.

use crate::rand::Rng;
use std::time::{Duration, Instant};

/// A connection that stayed healthy this long resets the backoff.
const HEALTHY_RESET: Duration = Duration::from_secs(60);
/// A server asking for more than this is not taken literally.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    healthy_since: Option<Instant>,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            attempt: 0,
            healthy_since: None,
        }
    }

    /// The watch is making progress (a list page or a stream opened).
    pub fn note_healthy(&mut self, now: Instant) {
        self.healthy_since.get_or_insert(now);
    }

    /// The delay before the next attempt after a failure. A `Retry-After`
    /// from the server is a floor.
    pub fn next_delay(
        &mut self,
        now: Instant,
        rng: &mut Rng,
        retry_after: Option<Duration>,
    ) -> Duration {
        if let Some(since) = self.healthy_since.take() {
            if now.saturating_duration_since(since) >= HEALTHY_RESET {
                self.attempt = 0;
            }
        }
        let ceiling = self
            .base
            .checked_mul(1u32 << self.attempt.min(20))
            .map_or(self.cap, |d| d.min(self.cap));
        self.attempt = self.attempt.saturating_add(1);
        let jittered = Duration::from_millis(rng.below(ceiling.as_millis() as u64 + 1));
        match retry_after {
            Some(ra) => jittered.max(ra.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets_after_a_healthy_minute() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut rng = Rng::new(1);
        let t0 = Instant::now();
        let mut max_seen = Duration::ZERO;
        for i in 0..12 {
            let d = b.next_delay(t0, &mut rng, None);
            let ceiling = Duration::from_millis(200 * (1 << i)).min(Duration::from_secs(30));
            assert!(d <= ceiling, "attempt {i}: {d:?} > {ceiling:?}");
            max_seen = max_seen.max(d);
        }
        assert!(max_seen > Duration::from_secs(5));
        b.note_healthy(t0);
        let d = b.next_delay(t0 + Duration::from_secs(61), &mut rng, None);
        assert!(d <= Duration::from_millis(200));
        // A short healthy spell does not reset.
        b.note_healthy(t0);
        b.next_delay(t0 + Duration::from_secs(1), &mut rng, None);
        assert_eq!(b.attempt(), 2);
    }

    #[test]
    fn retry_after_is_a_floor_with_a_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut rng = Rng::new(2);
        let now = Instant::now();
        assert!(
            b.next_delay(now, &mut rng, Some(Duration::from_secs(3))) >= Duration::from_secs(3)
        );
        assert_eq!(
            b.next_delay(now, &mut rng, Some(Duration::from_secs(86400))),
            MAX_RETRY_AFTER
        );
    }
}

//! Delivery latency of a sink (event read → hook spawned, or → POST
//! answered), kept as a bounded sample for a summary line at shutdown.

use std::time::Duration;

/// The newest `CAPACITY` samples are kept; enough for stable percentiles,
/// small enough not to matter.
const CAPACITY: usize = 8192;

#[derive(Debug, Default)]
pub struct LatencySample {
    micros: Vec<u64>,
    next: usize,
    count: u64,
}

impl LatencySample {
    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        if self.micros.len() < CAPACITY {
            self.micros.push(us);
        } else {
            self.micros[self.next] = us;
            self.next = (self.next + 1) % CAPACITY;
        }
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q`-quantile (0.0..=1.0) of the kept samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.micros.is_empty() {
            return None;
        }
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let rank = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        sorted.get(rank).map(|us| Duration::from_micros(*us))
    }

    /// "p50 1.2 ms, p99 3.4 ms, max 5.6 ms over 1000", or `None` when empty.
    pub fn summary(&self) -> Option<String> {
        let ms = |q| self.quantile(q).map_or(0.0, |d| d.as_secs_f64() * 1e3);
        (!self.micros.is_empty()).then(|| {
            format!(
                "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms over the last {} of {}",
                ms(0.5),
                ms(0.99),
                ms(1.0),
                self.micros.len(),
                self.count
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_over_a_bounded_sample() {
        let mut s = LatencySample::default();
        assert_eq!(s.summary(), None);
        for i in 1..=100 {
            s.record(Duration::from_millis(i));
        }
        assert_eq!(s.quantile(0.5), Some(Duration::from_millis(51)));
        assert_eq!(s.quantile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(s.quantile(1.0), Some(Duration::from_millis(100)));
        for _ in 0..CAPACITY {
            s.record(Duration::from_millis(1));
        }
        assert_eq!(
            s.quantile(1.0),
            Some(Duration::from_millis(1)),
            "old samples are replaced"
        );
        assert_eq!(s.count(), 100 + CAPACITY as u64);
    }
}

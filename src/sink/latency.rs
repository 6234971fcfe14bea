//! Delivery latency of a sink (event read → hook spawned, or → POST
//! answered), kept as a bounded sample for a summary line at shutdown and
//! as histogram buckets for the metrics.

use std::time::Duration;

/// The newest `CAPACITY` samples are kept; enough for stable percentiles,
/// small enough not to matter.
const CAPACITY: usize = 8192;

/// Upper bounds of the histogram buckets, in seconds (`+Inf` is implied):
/// from sub-millisecond hook starts to webhook timeouts.
pub const BUCKETS_SECONDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
const BUCKETS_MICROS: [u64; 16] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

#[derive(Debug, Default)]
pub struct LatencySample {
    micros: Vec<u64>,
    next: usize,
    count: u64,
    /// Samples per bucket (not cumulative); above the last bound: none.
    buckets: [u64; BUCKETS_MICROS.len()],
    sum_micros: u64,
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
        self.sum_micros = self.sum_micros.saturating_add(us);
        let bucket = BUCKETS_MICROS.partition_point(|b| *b < us);
        if let Some(n) = self.buckets.get_mut(bucket) {
            *n += 1;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Cumulative counts per bound of `BUCKETS_SECONDS` (Prometheus `le`).
    pub fn cumulative_buckets(&self) -> [u64; BUCKETS_SECONDS.len()] {
        let mut out = self.buckets;
        for i in 1..out.len() {
            out[i] += out[i - 1];
        }
        out
    }

    /// Sum of every sample, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_micros as f64 / 1e6
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

    #[test]
    fn histogram_buckets_are_cumulative_with_le_bounds() {
        let mut s = LatencySample::default();
        s.record(Duration::from_micros(500)); // exactly on the first bound
        s.record(Duration::from_micros(501));
        s.record(Duration::from_millis(3));
        s.record(Duration::from_secs(120)); // only +Inf
        let b = s.cumulative_buckets();
        assert_eq!(&b[..4], &[1, 2, 2, 3]);
        assert_eq!(b[BUCKETS_SECONDS.len() - 1], 3);
        assert_eq!(s.count(), 4);
        assert!((s.sum_seconds() - 120.004001).abs() < 1e-9);
        for (secs, micros) in BUCKETS_SECONDS.iter().zip(BUCKETS_MICROS) {
            assert_eq!((secs * 1e6).round() as u64, micros);
        }
    }
}

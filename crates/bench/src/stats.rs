//! Latency summaries: nearest-rank percentiles over whole samples (no histogram buckets, so the
//! numbers are exact for the runs we measured).

use std::time::Duration;

use serde::Serialize;

/// The `p`-th percentile (0 < p ≤ 100) of `sorted` by the nearest-rank method: the smallest value
/// such that at least `p` % of the samples are at or below it.
///
/// # Returns
/// `None` for an empty slice.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// A latency distribution, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Summary {
    /// How many samples it summarises.
    pub(crate) count: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) mean_ms: f64,
}

impl Summary {
    /// Summarises `samples` (in any order).
    ///
    /// # Returns
    /// `None` when there are no samples.
    pub(crate) fn of(mut samples: Vec<Duration>) -> Option<Self> {
        samples.sort_unstable();
        let ms = |p: f64| percentile(&samples, p).map_or(0.0, |d| d.as_secs_f64() * 1e3);
        let total: Duration = samples.iter().sum();
        let count = samples.len();
        (count > 0).then(|| Self {
            count,
            p50_ms: ms(50.0),
            p90_ms: ms(90.0),
            p95_ms: ms(95.0),
            p99_ms: ms(99.0),
            max_ms: ms(100.0),
            mean_ms: total.as_secs_f64() * 1e3 / count as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn percentile_uses_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(ms(50)));
        assert_eq!(percentile(&sorted, 95.0), Some(ms(95)));
        assert_eq!(percentile(&sorted, 99.0), Some(ms(99)));
        assert_eq!(percentile(&sorted, 99.9), Some(ms(100)));
        assert_eq!(percentile(&sorted, 100.0), Some(ms(100)));
        assert_eq!(percentile(&sorted, 0.0), Some(ms(1)));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[ms(7)], 99.0), Some(ms(7)));
        // Few samples: p99 of 10 values is the largest one, not an interpolation.
        let ten: Vec<Duration> = (1..=10).map(ms).collect();
        assert_eq!(percentile(&ten, 99.0), Some(ms(10)));
        assert_eq!(percentile(&ten, 50.0), Some(ms(5)));
    }

    #[test]
    fn summary_sorts_its_input_and_reports_milliseconds() {
        let s = Summary::of(vec![ms(30), ms(10), ms(20)]).expect("three samples");
        assert_eq!(s.count, 3);
        assert_eq!(s.p50_ms, 20.0);
        assert_eq!(s.p90_ms, 30.0);
        assert_eq!(s.max_ms, 30.0);
        assert!((s.mean_ms - 20.0).abs() < 1e-9);
        assert!(Summary::of(Vec::new()).is_none());
    }
}

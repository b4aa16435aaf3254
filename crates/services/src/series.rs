//! The monitor's series: what each one measures, the latency histogram they share, and merging
//! stored buckets into the points of a window (percentiles included).

use std::collections::BTreeMap;

use agentyard_store::series::BucketRow;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Upper bounds, in milliseconds, of the latency histogram's buckets (one more counts what is
/// above the last).
pub const LATENCY_BOUNDS_MS: [f64; 15] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 30_000.0,
    60_000.0, 120_000.0, 300_000.0,
];

/// The series the monitor keeps, and what `GET /v1/system/performance-trends` accepts.
/// Per organization (from events): `run.latency_ms` (post to end; key `agent=,status=`),
/// `run.queue_wait_ms`, `run.ttft_ms` (post to the first streamed token; key `agent=`),
/// `run.tokens_input`, `run.tokens_output`, `run.cost_usd` (key `agent=,model=`),
/// `tool.latency_ms` (key `tool=,server=,outcome=ok|error`). Platform-wide (probes):
/// `host.cpu_pct`, `host.mem_pct`, `host.disk_pct`, `host.net_rx_bytes_per_s`,
/// `host.net_tx_bytes_per_s` (key `host=`), `queue.pending`, `queue.oldest_pending_seconds`
/// (key `consumer=`), `dead_letters`, `probe.latency_ms` (key `probe=`).
pub const SERIES: [(&str, Scope); 17] = [
    ("run.latency_ms", Scope::Org),
    ("run.queue_wait_ms", Scope::Org),
    ("run.ttft_ms", Scope::Org),
    ("run.tokens_input", Scope::Org),
    ("run.tokens_output", Scope::Org),
    ("run.cost_usd", Scope::Org),
    ("tool.latency_ms", Scope::Org),
    ("host.cpu_pct", Scope::Platform),
    ("host.mem_pct", Scope::Platform),
    ("host.disk_pct", Scope::Platform),
    ("host.net_rx_bytes_per_s", Scope::Platform),
    ("host.net_tx_bytes_per_s", Scope::Platform),
    ("queue.pending", Scope::Platform),
    ("queue.oldest_pending_seconds", Scope::Platform),
    ("dead_letters", Scope::Platform),
    ("probe.latency_ms", Scope::Platform),
    ("instances.up", Scope::Platform),
];

/// Who may read a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Each organization its own (operators all).
    Org,
    /// Operators only.
    Platform,
}

/// Whether a series measures latency (and keeps a histogram).
pub fn is_latency(metric: &str) -> bool {
    metric.ends_with("_ms") && metric != "probe.latency_ms"
}

/// The histogram bucket of `ms`.
pub fn bucket_of(ms: f64) -> usize {
    LATENCY_BOUNDS_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_BOUNDS_MS.len())
}

/// The `q` quantile (0..=1) of a histogram, interpolated inside its bucket and kept within
/// the observed `[min, max]`.
pub fn quantile(hist: &[i64], q: f64, min: f64, max: f64) -> Option<f64> {
    let total: i64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).max(1.0);
    let mut seen = 0.0;
    for (i, n) in hist.iter().enumerate() {
        let n = *n as f64;
        if n > 0.0 && seen + n >= rank {
            let lo = if i == 0 { 0.0 } else { LATENCY_BOUNDS_MS[i - 1] };
            let hi = LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(max);
            let (lo, hi) = (lo.max(min), hi.min(max));
            let v = lo + (hi - lo) * ((rank - seen) / n);
            return Some((v.clamp(min, max) * 100.0).round() / 100.0);
        }
        seen += n;
    }
    Some(max)
}

/// One point of a series: the buckets of a step merged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Point {
    pub at: DateTime<Utc>,
    /// Observations (runs, calls, samples).
    pub count: i64,
    pub sum: f64,
    pub avg: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Latency series only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p95: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
}

/// Buckets summed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Merged {
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub hist: Option<Vec<i64>>,
}

impl Merged {
    /// Adds a bucket.
    pub fn add(&mut self, b: &BucketRow) {
        if self.count == 0 {
            self.min = b.min;
            self.max = b.max;
        } else {
            self.min = self.min.min(b.min);
            self.max = self.max.max(b.max);
        }
        self.count += b.count;
        self.sum += b.sum;
        if let Some(h) = &b.hist {
            let mine = self.hist.get_or_insert_with(|| vec![0; h.len()]);
            if mine.len() < h.len() {
                mine.resize(h.len(), 0);
            }
            for (m, n) in mine.iter_mut().zip(h) {
                *m += n;
            }
        }
    }

    /// The `q` quantile, for latency series.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.hist.as_ref().and_then(|h| quantile(h, q, self.min, self.max))
    }

    /// As a point at `at`.
    pub fn point(&self, at: DateTime<Utc>) -> Point {
        let some = |v: f64| (self.count > 0).then_some((v * 1e4).round() / 1e4);
        Point {
            at,
            count: self.count,
            sum: (self.sum * 1e6).round() / 1e6,
            avg: some(self.sum / self.count.max(1) as f64),
            min: some(self.min),
            max: some(self.max),
            p50: self.quantile(0.50),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
        }
    }
}

/// The value of `name` in a series key (`agent=a,status=completed`).
pub fn key_value<'a>(key: &'a str, name: &str) -> Option<&'a str> {
    key.split(',').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

/// Merges `rows` into one point per `step_secs` from `since` (empty steps have count 0), of the
/// rows whose key passes `keep`.
pub fn points(
    rows: &[BucketRow],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    step_secs: i64,
    keep: impl Fn(&str) -> bool,
) -> Vec<Point> {
    let start = floor(since, step_secs);
    let mut steps: BTreeMap<i64, Merged> = BTreeMap::new();
    let mut t = start.timestamp();
    while t < until.timestamp() {
        steps.insert(t, Merged::default());
        t += step_secs;
    }
    for r in rows.iter().filter(|r| keep(&r.key)) {
        let at = floor(r.bucket, step_secs).timestamp();
        steps.entry(at).or_default().add(r);
    }
    steps
        .into_iter()
        .map(|(t, m)| m.point(DateTime::from_timestamp(t, 0).unwrap_or(since)))
        .collect()
}

/// `at` rounded down to a multiple of `step_secs`.
pub fn floor(at: DateTime<Utc>, step_secs: i64) -> DateTime<Utc> {
    let t = at.timestamp();
    DateTime::from_timestamp(t - t.rem_euclid(step_secs), 0).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at: i64, key: &str, values: &[f64]) -> BucketRow {
        let mut hist = vec![0; LATENCY_BOUNDS_MS.len() + 1];
        for v in values {
            hist[bucket_of(*v)] += 1;
        }
        BucketRow {
            bucket: DateTime::from_timestamp(1_800_000_000 + at, 0).unwrap(),
            org_id: uuid::Uuid::nil(),
            key: key.into(),
            count: values.len() as i64,
            sum: values.iter().sum(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(0.0, f64::max),
            hist: Some(hist),
        }
    }

    #[test]
    fn quantiles_come_from_the_histogram_within_what_was_seen() {
        assert_eq!(bucket_of(5.0), 0);
        assert_eq!(bucket_of(5.1), 1);
        assert_eq!(bucket_of(1e9), LATENCY_BOUNDS_MS.len());
        let values: Vec<f64> = (1..=100).map(|i| f64::from(i) * 10.0).collect(); // 10..1000 ms
        let mut m = Merged::default();
        m.add(&row(0, "", &values));
        let p50 = m.quantile(0.5).unwrap();
        let p95 = m.quantile(0.95).unwrap();
        assert!((250.0..=500.0).contains(&p50), "{p50}");
        assert!((500.0..=1000.0).contains(&p95), "{p95}");
        assert_eq!(m.quantile(1.0), Some(1000.0));
        // One value: every quantile is it.
        let mut one = Merged::default();
        one.add(&row(0, "", &[42.0]));
        assert_eq!(one.quantile(0.5), Some(42.0));
        assert_eq!(one.quantile(0.99), Some(42.0));
    }

    #[test]
    fn points_merge_buckets_per_step_and_filter_keys() {
        let rows = [
            row(0, "agent=a,status=completed", &[10.0, 20.0]),
            row(60, "agent=a,status=failed", &[30.0]),
            row(60, "agent=b,status=completed", &[40.0]),
            row(180, "agent=a,status=completed", &[50.0]),
        ];
        let since = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let until = since + chrono::Duration::seconds(240);
        let p = points(&rows, since, until, 120, |k| key_value(k, "agent") == Some("a"));
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].count, p[0].sum, p[0].max), (3, 60.0, Some(30.0)));
        assert_eq!((p[1].count, p[1].avg), (1, Some(50.0)));
        let all = points(&rows, since, until, 60, |_| true);
        assert_eq!(all.iter().map(|p| p.count).collect::<Vec<_>>(), [2, 2, 0, 1]);
        assert_eq!(all[2].avg, None);
        assert_eq!(key_value("tool=x,server=y,outcome=error", "outcome"), Some("error"));
    }
}

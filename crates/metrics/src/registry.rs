//! The building blocks: counters, gauges and histograms made of atomics, families of them keyed
//! by label values, and the Prometheus text exposition format (version 0.0.4).
//!
//! Recording is a read lock (uncontended: two atomic operations) and a hash lookup to find the
//! series, then one or two atomic additions. A series is created once, under the write lock, the
//! first time its label values are seen.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// At most this many series per family; label values past it are recorded as `other`, so a
/// label that turns out to be unbounded cannot eat the process's memory.
pub const MAX_SERIES: usize = 2000;

/// The value label values take once a family is full.
pub const OVERFLOW: &str = "other";

/// A monotonic count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (stored as the bits of an `f64`).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Observations counted in buckets with fixed upper bounds, with their sum.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    /// The sum's `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self { bounds, counts, sum: AtomicU64::new(0f64.to_bits()) }
    }

    /// Counts `v` in the first bucket whose bound is at least `v` (Prometheus's `le`).
    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let mut old = self.sum.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(old) + v).to_bits();
            match self.sum.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(x) => old = x,
            }
        }
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Their sum.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Ordering::Relaxed))
    }
}

/// What a family holds; how it is created and written out.
pub trait Metric: Send + Sync + 'static {
    /// `counter`, `gauge` or `histogram`.
    const TYPE: &'static str;
    /// A new series (`bounds` is the family's, for histograms).
    fn create(bounds: &'static [f64]) -> Self;
    /// Its sample lines; `labels` is `a="x",b="y"` (maybe empty).
    fn encode(&self, name: &str, labels: &str, out: &mut String);
}

impl Metric for Counter {
    const TYPE: &'static str = "counter";
    fn create(_: &'static [f64]) -> Self {
        Self::default()
    }
    fn encode(&self, name: &str, labels: &str, out: &mut String) {
        sample(out, name, "", labels, None, self.get() as f64);
    }
}

impl Metric for Gauge {
    const TYPE: &'static str = "gauge";
    fn create(_: &'static [f64]) -> Self {
        Self::default()
    }
    fn encode(&self, name: &str, labels: &str, out: &mut String) {
        sample(out, name, "", labels, None, self.get());
    }
}

impl Metric for Histogram {
    const TYPE: &'static str = "histogram";
    fn create(bounds: &'static [f64]) -> Self {
        Self::new(bounds)
    }
    fn encode(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            sample(out, name, "_bucket", labels, Some(le), cumulative as f64);
        }
        sample(out, name, "_sum", labels, None, self.sum());
        sample(out, name, "_count", labels, None, cumulative as f64);
    }
}

/// A label set's values and its series.
type Series<M> = (Box<[Box<str>]>, M);

/// Series of one metric, one per combination of label values.
#[derive(Debug)]
pub struct Family<M> {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
    bounds: &'static [f64],
    /// By the hash of the label values; collisions share a bucket.
    series: RwLock<HashMap<u64, Vec<Series<M>>>>,
}

impl<M: Metric> Family<M> {
    /// A family of counters or gauges.
    pub fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self::with_buckets(name, help, labels, &[])
    }

    /// A family of histograms with these bucket bounds.
    pub fn with_buckets(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Self {
        Self { name, help, labels, bounds, series: RwLock::new(HashMap::new()) }
    }

    /// Runs `f` on the series of `values` (one per label, in order), creating it when new.
    pub fn with<R>(&self, values: &[&str], f: impl FnOnce(&M) -> R) -> R {
        debug_assert_eq!(values.len(), self.labels.len(), "{}: wrong number of labels", self.name);
        let hash = hash(values);
        {
            let map = self.series.read().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = find(&map, hash, values) {
                return f(m);
            }
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        let full = map.values().map(Vec::len).sum::<usize>() >= MAX_SERIES;
        let overflow: Vec<&str>;
        let (hash, values) = if full {
            overflow = vec![OVERFLOW; values.len()];
            (self::hash(&overflow), overflow.as_slice())
        } else {
            (hash, values)
        };
        if find(&map, hash, values).is_none() {
            let key = values.iter().map(|v| Box::<str>::from(*v)).collect();
            map.entry(hash).or_default().push((key, M::create(self.bounds)));
        }
        f(find(&map, hash, values).expect("just inserted"))
    }

    /// Writes `# HELP`, `# TYPE` and every series, sorted by label values.
    pub fn encode(&self, out: &mut String) {
        header(out, self.name, self.help, M::TYPE);
        self.each_sorted(|labels, m| m.encode(self.name, labels, out));
    }

    /// Calls `f` with each series' rendered labels, sorted by label values.
    pub fn each_sorted(&self, mut f: impl FnMut(&str, &M)) {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<&Series<M>> = map.values().flatten().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for (values, m) in all {
            f(&render_labels(self.labels, values), m);
        }
    }
}

impl Family<Histogram> {
    /// Writes a counter named `name` with each series' observation count (a request counter
    /// derived from the duration histogram: one lookup per request records both).
    pub fn encode_counts(&self, name: &str, help: &str, out: &mut String) {
        header(out, name, help, "counter");
        self.each_sorted(|labels, h| sample(out, name, "", labels, None, h.count() as f64));
    }
}

fn find<'a, M>(map: &'a HashMap<u64, Vec<Series<M>>>, hash: u64, values: &[&str]) -> Option<&'a M> {
    map.get(&hash)?
        .iter()
        .find(|(k, _)| k.len() == values.len() && k.iter().zip(values).all(|(a, b)| &**a == *b))
        .map(|(_, m)| m)
}

/// FNV-1a over the values, each followed by a 0xff byte (which UTF-8 never holds): label
/// values are short and come from bounded sets we choose, so a keyed hash buys nothing here
/// and SipHash costs several times more.
fn hash(values: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// `a="x",b="y"`; labels with an empty value are left out (Prometheus treats an empty label
/// as absent: e.g. `error_type` on a call that succeeded).
pub fn render_labels(names: &[&str], values: &[Box<str>]) -> String {
    let mut s = String::new();
    for (n, v) in names.iter().zip(values) {
        if v.is_empty() {
            continue;
        }
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(n);
        s.push_str("=\"");
        escape_label(&mut s, v);
        s.push('"');
    }
    s
}

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `# HELP` (backslash and line feed escaped) and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line: `name{labels,le="b"} value`.
pub fn sample(out: &mut String, name: &str, suffix: &str, labels: &str, le: Option<f64>, v: f64) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        out.push_str(labels);
        if let Some(le) = le {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str("le=\"");
            push_float(out, le);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    push_float(out, v);
    out.push('\n');
}

/// A float as Prometheus writes it: `+Inf`, `-Inf`, `NaN`, else the shortest form that reads
/// back the same (`1`, `0.25`, `1e-7`).
pub fn push_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_family_is_written_sorted_with_help_and_type() {
        let f: Family<Counter> = Family::new("x_total", "Things.", &["status"]);
        f.with(&["failed"], Counter::inc);
        f.with(&["completed"], |c| c.add(2));
        f.with(&["completed"], Counter::inc);
        let mut out = String::new();
        f.encode(&mut out);
        assert_eq!(
            out,
            "# HELP x_total Things.\n# TYPE x_total counter\n\
             x_total{status=\"completed\"} 3\nx_total{status=\"failed\"} 1\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        static B: [f64; 3] = [0.1, 1.0, 10.0];
        let f: Family<Histogram> = Family::with_buckets("d_seconds", "D.", &["r"], &B);
        for v in [0.05, 0.1, 0.5, 20.0] {
            f.with(&["/a"], |h| h.observe(v));
        }
        let mut out = String::new();
        f.encode(&mut out);
        let expected = "# HELP d_seconds D.\n# TYPE d_seconds histogram\n\
            d_seconds_bucket{r=\"/a\",le=\"0.1\"} 2\n\
            d_seconds_bucket{r=\"/a\",le=\"1\"} 3\n\
            d_seconds_bucket{r=\"/a\",le=\"10\"} 3\n\
            d_seconds_bucket{r=\"/a\",le=\"+Inf\"} 4\n\
            d_seconds_sum{r=\"/a\"} 20.65\n\
            d_seconds_count{r=\"/a\"} 4\n";
        assert_eq!(out, expected);
        let mut counts = String::new();
        f.encode_counts("r_total", "R.", &mut counts);
        assert!(counts.ends_with("r_total{r=\"/a\"} 4\n"), "{counts}");
    }

    #[test]
    fn label_values_are_escaped_and_empty_ones_left_out() {
        let f: Family<Gauge> = Family::new("g", "G \\ with\nnewline.", &["a", "b"]);
        f.with(&["say \"hi\"\\\n", ""], |g| g.set(-1.5));
        let mut out = String::new();
        f.encode(&mut out);
        assert_eq!(
            out,
            "# HELP g G \\\\ with\\nnewline.\n# TYPE g gauge\ng{a=\"say \\\"hi\\\"\\\\\\n\"} -1.5\n"
        );
    }

    #[test]
    fn a_full_family_records_new_label_values_as_other() {
        let f: Family<Counter> = Family::new("c_total", "C.", &["tool"]);
        for i in 0..MAX_SERIES + 5 {
            f.with(&[&format!("t{i}")], Counter::inc);
        }
        f.with(&["t0"], Counter::inc);
        assert_eq!(f.with(&["t0"], Counter::get), 2);
        assert_eq!(f.with(&[OVERFLOW], Counter::get), 5);
    }

    #[test]
    fn floats_are_written_as_prometheus_reads_them() {
        let mut s = String::new();
        for v in [1.0, 0.25, 1e-7, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 81.92] {
            push_float(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "1 0.25 0.0000001 +Inf -Inf NaN 81.92 ");
    }
}

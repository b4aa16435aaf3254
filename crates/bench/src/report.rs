//! What a scenario prints: one [`Report`], as Markdown tables for people or JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::procfs::ProcessUsage;
use crate::scenarios::{Concurrent, Load};
use crate::stats::Summary;
use crate::streams::StreamsReport;

/// Everything one scenario measured.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: &'static str,
    /// The options it ran with.
    pub(crate) params: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) load: Option<LoadReport>,
    /// `poll`: the long-poll half (`load` is the streaming half).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) poll: Option<LoadReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) concurrent: Option<ConcurrentReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) streams: Option<StreamsReport>,
    /// For `streams`: of the load phase only (POSTs until the last delivery).
    pub(crate) processes: Vec<ProcessUsage>,
    /// Busy share of all cores during the scenario.
    pub(crate) machine_cpu_pct: Option<f64>,
    /// Cores of this machine.
    pub(crate) cores: usize,
    /// Things that went wrong besides failed runs (a child exited, a target was missed).
    pub(crate) notes: Vec<String>,
}

/// Results of `throughput` and `rate`.
#[derive(Debug, Serialize)]
pub(crate) struct LoadReport {
    pub(crate) elapsed_s: f64,
    pub(crate) runs: usize,
    pub(crate) completed: usize,
    pub(crate) failed: usize,
    /// Completed runs per second over the whole scenario.
    pub(crate) completed_per_s: f64,
    /// Runs posted per second while posting (open loop: the achieved arrival rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) offered_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_tick_lag_ms: Option<f64>,
    pub(crate) first_event: Option<Summary>,
    pub(crate) first_delta: Option<Summary>,
    pub(crate) run_completed: Option<Summary>,
    /// Failed runs by reason.
    pub(crate) failures: BTreeMap<String, usize>,
}

impl LoadReport {
    /// Summarises a load scenario.
    pub(crate) fn from_load(load: &Load) -> Self {
        let mut failures = BTreeMap::new();
        for e in load.samples.iter().filter_map(|s| s.error.clone()) {
            *failures.entry(e).or_default() += 1;
        }
        let done: Vec<_> = load.samples.iter().filter_map(|s| s.completed).collect();
        let first: Vec<_> = load.samples.iter().filter_map(|s| s.first_delta).collect();
        let queued: Vec<_> = load.samples.iter().filter_map(|s| s.first_event).collect();
        let elapsed = load.elapsed.as_secs_f64();
        Self {
            elapsed_s: elapsed,
            runs: load.samples.len(),
            completed: done.len(),
            failed: load.samples.len() - done.len(),
            completed_per_s: done.len() as f64 / elapsed.max(1e-9),
            // n posts span n - 1 arrival intervals.
            offered_per_s: load
                .posting
                .map(|p| load.samples.len().saturating_sub(1) as f64 / p.as_secs_f64().max(1e-9)),
            max_tick_lag_ms: load.max_tick_lag.map(|d| d.as_secs_f64() * 1e3),
            first_event: Summary::of(queued),
            first_delta: Summary::of(first),
            run_completed: Summary::of(done),
            failures,
        }
    }
}

/// Results of `concurrent`.
#[derive(Debug, Serialize)]
pub(crate) struct ConcurrentReport {
    pub(crate) runs: usize,
    pub(crate) posted: usize,
    pub(crate) post_failures: BTreeMap<String, usize>,
    pub(crate) post_phase_s: f64,
    pub(crate) peak_in_progress_sampled: i64,
    pub(crate) peak_in_progress_at_s: f64,
    pub(crate) peak_in_progress_exact: usize,
    pub(crate) total_s: f64,
    pub(crate) first_created_to_last_completed_s: Option<f64>,
    pub(crate) all_terminal: bool,
    pub(crate) completed: i64,
    pub(crate) failed: i64,
    pub(crate) samples: usize,
    pub(crate) worker_peak_rss_mib: Option<f64>,
}

impl ConcurrentReport {
    /// Summarises the `concurrent` scenario.
    pub(crate) fn new(runs: usize, c: Concurrent, worker_peak_rss_mib: Option<f64>) -> Self {
        Self {
            runs,
            posted: c.posted,
            post_failures: c.post_failures,
            post_phase_s: c.post_phase.as_secs_f64(),
            peak_in_progress_sampled: c.peak_sampled,
            peak_in_progress_at_s: c.peak_sampled_at.as_secs_f64(),
            peak_in_progress_exact: c.peak_overlap,
            total_s: c.total.as_secs_f64(),
            first_created_to_last_completed_s: c.db_span,
            all_terminal: c.all_terminal,
            completed: c.completed,
            failed: c.failed,
            samples: c.samples,
            worker_peak_rss_mib,
        }
    }
}

impl Report {
    /// The report as Markdown.
    pub(crate) fn markdown(&self) -> String {
        let mut md = format!("## agentyard-bench: {}\n\n", self.scenario);
        if let Some(params) = self.params.as_object() {
            let list: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(md, "Parameters: {}\n", list.join(", "));
        }
        if let Some(p) = &self.poll {
            if let Some(l) = &self.load {
                md.push_str("### Streaming (`stream: true`, read over SSE)\n\n");
                load_markdown(&mut md, l, false);
            }
            md.push_str("### Long-polling (202, then `GET /v1/runs/{id}?wait=`)\n\n");
            load_markdown(&mut md, p, true);
        } else if let Some(l) = &self.load {
            load_markdown(&mut md, l, false);
        }
        if let Some(c) = &self.concurrent {
            concurrent_markdown(&mut md, c);
        }
        if let Some(s) = &self.streams {
            streams_markdown(&mut md, s);
            md.push_str("CPU of the load phase (first POST → last delivery):\n\n");
        }
        md.push_str("| process | peak RSS (MiB) | CPU % (100 = 1 core) |\n|---|---:|---:|\n");
        for p in &self.processes {
            let _ = writeln!(md, "| {} | {} | {} |", p.name, opt(p.peak_rss_mib), opt(p.cpu_pct));
        }
        let busy = opt(self.machine_cpu_pct);
        let _ = writeln!(md, "\nMachine CPU busy: {busy} % of {} cores", self.cores);
        for note in &self.notes {
            let _ = writeln!(md, "\n**Note:** {note}");
        }
        md
    }
}

fn load_markdown(md: &mut String, l: &LoadReport, polled: bool) {
    md.push_str("| metric | value |\n|---|---:|\n");
    let _ = writeln!(md, "| runs | {} |", l.runs);
    let _ = writeln!(md, "| completed | {} |", l.completed);
    let _ = writeln!(md, "| failed | {} |", l.failed);
    let _ = writeln!(md, "| elapsed (s) | {:.1} |", l.elapsed_s);
    let _ = writeln!(md, "| completed runs/s | {:.1} |", l.completed_per_s);
    if let Some(r) = l.offered_per_s {
        let _ = writeln!(md, "| achieved arrival rate (runs/s) | {r:.1} |");
    }
    if let Some(lag) = l.max_tick_lag_ms {
        let _ = writeln!(md, "| worst arrival lag (ms) | {lag:.1} |");
    }
    md.push_str("\n| latency (ms) | n | p50 | p95 | p99 | max | mean |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    let rows = if polled {
        [
            ("post → 202 Accepted", &l.first_event),
            ("post → first message.delta", &None),
            ("post → the poll that saw it completed", &l.run_completed),
        ]
    } else {
        [
            ("post → first SSE event (run.queued)", &l.first_event),
            ("post → first message.delta", &l.first_delta),
            ("post → run.completed", &l.run_completed),
        ]
    };
    for (name, s) in rows {
        latency_row(md, name, s.as_ref(), |s| s.p95_ms);
    }
    failures_markdown(md, "failure", &l.failures);
    md.push('\n');
}

/// One row of a latency table: count, p50, `middle` (the table's p90 or p95), p99, max, mean.
fn latency_row(md: &mut String, name: &str, s: Option<&Summary>, middle: fn(&Summary) -> f64) {
    let _ = match s {
        Some(s) => writeln!(
            md,
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            s.count,
            s.p50_ms,
            middle(s),
            s.p99_ms,
            s.max_ms,
            s.mean_ms
        ),
        None => writeln!(md, "| {name} | 0 | – | – | – | – | – |"),
    };
}

fn concurrent_markdown(md: &mut String, c: &ConcurrentReport) {
    md.push_str("| metric | value |\n|---|---:|\n");
    let rows = [
        ("runs requested", c.runs.to_string()),
        ("posted (202)", c.posted.to_string()),
        ("POST failures", c.post_failures.values().sum::<usize>().to_string()),
        ("post phase (s)", format!("{:.2}", c.post_phase_s)),
        ("peak in_progress (sampled every 100 ms)", c.peak_in_progress_sampled.to_string()),
        ("… reached at (s)", format!("{:.1}", c.peak_in_progress_at_s)),
        ("peak in_progress (exact, from started/completed_at)", {
            c.peak_in_progress_exact.to_string()
        }),
        ("first POST → all terminal (s, sampled)", format!("{:.1}", c.total_s)),
        ("first created → last completed (s, database)", opt(c.first_created_to_last_completed_s)),
        ("all terminal", c.all_terminal.to_string()),
        ("completed", c.completed.to_string()),
        ("failed / cancelled / expired", c.failed.to_string()),
        ("worker peak RSS (MiB)", opt(c.worker_peak_rss_mib)),
    ];
    for (k, v) in rows {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    failures_markdown(md, "POST failure", &c.post_failures);
    md.push('\n');
}

fn streams_markdown(md: &mut String, s: &StreamsReport) {
    md.push_str("| metric | value |\n|---|---:|\n");
    let rows = [
        ("users (a token each, not admin)", s.users.to_string()),
        ("streams requested", s.streams_requested.to_string()),
        ("streams opened", s.streams_opened.to_string()),
        ("streams that failed to open", s.open_failures.values().sum::<usize>().to_string()),
        ("opening them all (s)", format!("{:.1}", s.open_s)),
        ("streams still open at the end", s.streams_open_at_end.to_string()),
        ("API RSS before the streams (MiB)", opt(s.api_rss_before_mib)),
        ("API RSS, every stream open, idle (MiB)", opt(s.api_rss_idle_mib)),
        ("… per stream (KiB)", opt(s.api_kib_per_stream)),
        ("API CPU, every stream open, idle (%)", opt(s.api_cpu_idle_pct)),
        ("API RSS at the end of the load (MiB)", opt(s.api_rss_end_mib)),
        ("API peak RSS, whole scenario (MiB)", opt(s.api_peak_rss_mib)),
        ("runs posted (202)", s.runs_posted.to_string()),
        ("POST failures", s.post_failures.values().sum::<usize>().to_string()),
        ("achieved arrival rate (runs/s)", format!("{:.1}", s.offered_per_s)),
        ("runs completed (seen on a stream)", s.runs_completed.to_string()),
        ("completed runs/s", format!("{:.1}", s.completed_per_s)),
        ("events received by the streams per s (every kind)", format!("{:.0}", s.events_per_s)),
        ("run.completed deliveries expected", s.deliveries_expected.to_string()),
        ("delivered", s.delivered.to_string()),
        ("missed (must be 0)", s.missed.to_string()),
        ("to a stream of another user (must be 0)", s.foreign.to_string()),
        ("duplicates", s.duplicates.to_string()),
    ];
    for (k, v) in rows {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    md.push_str("\n| latency (ms) | n | p50 | p90 | p99 | max | mean |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    let name = "post → run.completed on each stream of the run's user";
    latency_row(md, name, s.delivery_latency.as_ref(), |l| l.p90_ms);
    failures_markdown(md, "failed to open", &s.open_failures);
    failures_markdown(md, "stream ended early", &s.streams_ended);
    failures_markdown(md, "POST failure", &s.post_failures);
    md.push('\n');
}

fn failures_markdown(md: &mut String, what: &str, failures: &BTreeMap<String, usize>) {
    if failures.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n| {what} | count |\n|---|---:|");
    let mut by_count: Vec<_> = failures.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1));
    for (reason, n) in by_count {
        let _ = writeln!(md, "| {} | {n} |", reason.replace('|', "\\|"));
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
}

//! `history`: one thread grown run by run (each run adds its user message and its answer), and
//! at each size the cost of a run on it: latency post → `run.completed` and CPU per run, by
//! process, over `runs` runs one after another. A run reads the thread's newest messages only
//! (`HISTORY_MESSAGES` in the agent worker, then the token budget), so every column should stay
//! flat from 10 to 10,000 messages. With `tools`, each run makes one tool call and adds four
//! messages (the user's, the model's call, the tool's result, the answer).

use std::time::Duration;

use anyhow::{Context, bail};

use crate::client::Api;
use crate::procfs::{self, Watched};
use crate::stats::Summary;

/// What to measure.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Thread sizes (messages before the measured runs), ascending.
    pub(crate) sizes: Vec<usize>,
    /// Measured runs at each size.
    pub(crate) runs: usize,
    /// Each run makes one tool call (`get_ticket_stats`).
    pub(crate) tools: bool,
}

/// One size's row.
struct Row {
    messages: usize,
    latency: Summary,
    /// CPU milliseconds per run: all watched processes, then Postgres alone.
    cpu_ms: f64,
    postgres_ms: Option<f64>,
}

/// Grows one thread to each size and measures `runs` runs there.
///
/// # Returns
/// The report's lines: a Markdown table by size, then how long the growth took.
///
/// # Errors
/// When a run fails: every run of this scenario must complete.
pub(crate) async fn run(
    api: &Api,
    watched: &[Watched],
    opts: &Options,
) -> anyhow::Result<Vec<String>> {
    let mut thread: Option<String> = None;
    let mut messages = 0usize;
    let mut rows = Vec::new();
    let mut grown = Duration::ZERO;
    let per_run = if opts.tools { 4 } else { 2 };
    for &size in &opts.sizes {
        let started = std::time::Instant::now();
        while messages < size {
            one_run(api, &mut thread, messages, opts.tools).await?;
            messages += per_run;
        }
        grown += started.elapsed();
        eprintln!("history: {messages} messages; measuring {} runs", opts.runs);
        let before = procfs::snapshot(watched);
        let wall = std::time::Instant::now();
        let mut latencies = Vec::with_capacity(opts.runs);
        let at = messages;
        for _ in 0..opts.runs {
            latencies.push(one_run(api, &mut thread, messages, opts.tools).await?);
            messages += per_run;
        }
        let wall = wall.elapsed().as_secs_f64();
        let after = procfs::snapshot(watched);
        let (usage, _) = procfs::usage(watched, &before, &after);
        // cpu_pct is 100 per core over `wall`: its milliseconds per run.
        let per_run = |pct: f64| pct / 100.0 * wall * 1e3 / opts.runs as f64;
        let cpu_ms = usage
            .iter()
            .filter(|u| !u.name.starts_with("everything else"))
            .filter_map(|u| u.cpu_pct)
            .map(per_run)
            .sum();
        let postgres_ms = usage
            .iter()
            .find(|u| u.name.starts_with("postgres"))
            .and_then(|u| u.cpu_pct)
            .map(per_run);
        let latency = Summary::of(latencies).context("no runs measured")?;
        rows.push(Row { messages: at, latency, cpu_ms, postgres_ms });
    }
    let mut lines = vec![
        "| messages in the thread | runs | p50 (ms) | p99 (ms) | CPU per run, all processes (ms) | Postgres per run (ms) |".to_owned(),
        "|---:|---:|---:|---:|---:|---:|".to_owned(),
    ];
    for r in &rows {
        lines.push(format!(
            "| {} | {} | {:.1} | {:.1} | {:.2} | {} |",
            r.messages,
            r.latency.count,
            r.latency.p50_ms,
            r.latency.p99_ms,
            r.cpu_ms,
            r.postgres_ms.map_or("–".to_owned(), |m| format!("{m:.2}")),
        ));
    }
    lines.push(String::new());
    lines.push(format!(
        "Grown to {messages} messages by runs on the same thread, one after another, in {:.1} s \
         (not measured).",
        grown.as_secs_f64()
    ));
    Ok(lines)
}

/// One streamed run on the thread (creating it on the first run), with a tool call when
/// `tools`; its post → completed.
async fn one_run(
    api: &Api,
    thread: &mut Option<String>,
    n: usize,
    tools: bool,
) -> anyhow::Result<Duration> {
    let input =
        if tools { format!("show ticket stats {n}") } else { format!("history message {n}") };
    let (sample, t) = api.streamed_run_on(input, thread.as_deref()).await;
    if let Some(e) = sample.error {
        bail!("a run on the thread failed: {e}");
    }
    if thread.is_none() {
        *thread = Some(t.context("the first run's events named no thread")?);
    }
    sample.completed.context("the run did not complete")
}

//! The load shapes: a closed loop (`throughput`), an open loop at a fixed arrival rate (`rate`),
//! and a burst of non-streamed runs whose concurrency is sampled in Postgres (`concurrent`).
//!
//! Measured runs post `benchmark message <n>`; warm-up runs post `warm-up message <n>`, so the
//! database queries can tell them apart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::client::{Api, RunSample};

/// What a load scenario measured.
#[derive(Debug)]
pub(crate) struct Load {
    pub(crate) samples: Vec<RunSample>,
    /// Start → the last run ended.
    pub(crate) elapsed: Duration,
    /// Start → the last run was posted (open loop only).
    pub(crate) posting: Option<Duration>,
    /// How far behind its schedule the open loop's ticker fell at worst.
    pub(crate) max_tick_lag: Option<Duration>,
}

/// Runs a short closed loop and checks that runs complete at all.
///
/// # Errors
/// When no warm-up run completed: the stack does not work, the scenario would be meaningless.
pub(crate) async fn warm_up(api: &Api, clients: usize, duration: Duration) -> anyhow::Result<()> {
    let load = closed_loop(api, clients, duration, "warm-up").await?;
    let ok = load.samples.iter().filter(|s| s.completed.is_some()).count();
    let failed = load.samples.len() - ok;
    if ok == 0 {
        let first = load.samples.iter().find_map(|s| s.error.clone()).unwrap_or_default();
        bail!("warm-up: no run completed ({failed} failed; first error: {first})");
    }
    eprintln!("warm-up: {ok} runs completed, {failed} failed");
    Ok(())
}

/// `clients` tasks, each posting a streamed run and reading it to its end, again and again until
/// `duration` has passed (runs in flight then are finished and counted).
///
/// # Errors
/// When a client task panicked.
pub(crate) async fn closed_loop(
    api: &Api,
    clients: usize,
    duration: Duration,
    label: &'static str,
) -> anyhow::Result<Load> {
    let (load, _) = drive(api, clients, duration, move |api, n| async move {
        (api.streamed_run(format!("{label} message {n}")).await, 0_usize)
    })
    .await?;
    Ok(load)
}

/// Like [`closed_loop`], but each run is posted (202) and long-polled (`?wait=<wait>`) to its
/// end. Also returns how many polls came back before the run ended (the wait ran out).
///
/// # Errors
/// When a client task panicked.
pub(crate) async fn poll_loop(
    api: &Api,
    clients: usize,
    duration: Duration,
    wait: u64,
    label: &'static str,
) -> anyhow::Result<(Load, usize)> {
    drive(api, clients, duration, move |api, n| async move {
        api.polled_run(format!("{label} message {n}"), wait).await
    })
    .await
}

/// `clients` tasks running `one` (a run, numbered) again and again until `duration` has passed;
/// the samples, and the sum of what `one` counted besides.
async fn drive<F, Fut, X>(
    api: &Api,
    clients: usize,
    duration: Duration,
    one: F,
) -> anyhow::Result<(Load, X)>
where
    F: Fn(Api, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = (RunSample, X)> + Send,
    X: std::iter::Sum + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + duration;
    let counter = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..clients {
        let (api, counter, one) = (api.clone(), Arc::clone(&counter), one.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                out.push(one(api.clone(), n).await);
            }
            out
        });
    }
    let (mut samples, mut extra) = (Vec::new(), Vec::new());
    while let Some(done) = set.join_next().await {
        for (sample, x) in done.context("a client task failed")? {
            samples.push(sample);
            extra.push(x);
        }
    }
    let load = Load { samples, elapsed: start.elapsed(), posting: None, max_tick_lag: None };
    Ok((load, extra.into_iter().sum()))
}

/// Posts streamed runs at `rate` per second for `duration`, one task per run, whatever the
/// responses do: a late tick is caught up with a burst, so slow runs never lower the rate.
///
/// # Errors
/// When a run task panicked.
pub(crate) async fn open_loop(api: &Api, rate: f64, duration: Duration) -> anyhow::Result<Load> {
    let total = (rate * duration.as_secs_f64()).round() as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut set = JoinSet::new();
    let mut samples = Vec::with_capacity(total);
    let mut max_lag = Duration::ZERO;
    for n in 0..total {
        let scheduled = ticker.tick().await;
        max_lag = max_lag.max(scheduled.elapsed());
        let api = api.clone();
        set.spawn(async move { api.streamed_run(format!("benchmark message {n}")).await });
        while let Some(done) = set.try_join_next() {
            samples.push(done.context("a run task failed")?);
        }
    }
    let posting = start.elapsed();
    while let Some(done) = set.join_next().await {
        samples.push(done.context("a run task failed")?);
    }
    Ok(Load {
        samples,
        elapsed: start.elapsed(),
        posting: Some(posting),
        max_tick_lag: Some(max_lag),
    })
}

/// What the `concurrent` scenario measured.
#[derive(Debug)]
pub(crate) struct Concurrent {
    pub(crate) posted: usize,
    pub(crate) post_failures: BTreeMap<String, usize>,
    /// First POST → last 202.
    pub(crate) post_phase: Duration,
    /// Highest `in_progress` count seen by the 100 ms sampler, and when.
    pub(crate) peak_sampled: i64,
    pub(crate) peak_sampled_at: Duration,
    /// Highest overlap of the runs' `[started_at, completed_at]` intervals (exact).
    pub(crate) peak_overlap: usize,
    /// First POST → every posted run terminal (as the sampler saw it), or the timeout.
    pub(crate) total: Duration,
    /// Earliest `created_at` → latest `completed_at`, from the database.
    pub(crate) db_span: Option<f64>,
    pub(crate) all_terminal: bool,
    pub(crate) completed: i64,
    pub(crate) failed: i64,
    pub(crate) samples: usize,
}

/// Counts of measured runs by state: (in_progress, not terminal, completed, failed).
const COUNTS_SQL: &str = "SELECT count(*) FILTER (WHERE status = 'in_progress'), \
     count(*) FILTER (WHERE status IN ('queued', 'in_progress', 'requires_input')), \
     count(*) FILTER (WHERE status = 'completed'), \
     count(*) FILTER (WHERE status IN ('failed', 'cancelled', 'expired')), \
     EXTRACT(EPOCH FROM max(completed_at) - min(created_at))::float8 \
     FROM runs WHERE input LIKE 'benchmark message %'";

/// Start and end of each measured run that started, in epoch seconds.
const INTERVALS_SQL: &str = "SELECT EXTRACT(EPOCH FROM started_at)::float8, \
     EXTRACT(EPOCH FROM completed_at)::float8 \
     FROM runs WHERE input LIKE 'benchmark message %' AND started_at IS NOT NULL";

type Counts = (i64, i64, i64, i64, Option<f64>);

/// Posts `runs` non-streamed runs with at most `in_flight` POSTs at once, while sampling every
/// 100 ms how many are `in_progress`, until all posted runs are terminal or `timeout` passes.
///
/// # Errors
/// When Postgres cannot be queried or the posting task panicked.
pub(crate) async fn concurrent(
    api: &Api,
    db: &PgPool,
    runs: usize,
    in_flight: usize,
    timeout: Duration,
    paused: &[u32],
) -> anyhow::Result<Concurrent> {
    signal(paused, "STOP")?;
    let start = Instant::now();
    let poster = api.clone();
    let mut posting = tokio::spawn(async move {
        let results: Vec<Result<(), String>> = futures::stream::iter(0..runs)
            .map(|n| poster.post_run(format!("benchmark message {n}")))
            .buffer_unordered(in_flight)
            .collect()
            .await;
        (results, start.elapsed())
    });
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut out = Concurrent {
        posted: 0,
        post_failures: BTreeMap::new(),
        post_phase: Duration::ZERO,
        peak_sampled: 0,
        peak_sampled_at: Duration::ZERO,
        peak_overlap: 0,
        total: Duration::ZERO,
        db_span: None,
        all_terminal: false,
        completed: 0,
        failed: 0,
        samples: 0,
    };
    let mut posted = false;
    loop {
        ticker.tick().await;
        let (in_progress, active, completed, failed, span): Counts =
            sqlx::query_as(COUNTS_SQL).fetch_one(db).await.context("cannot sample runs")?;
        out.samples += 1;
        (out.completed, out.failed, out.db_span) = (completed, failed, span);
        if in_progress > out.peak_sampled {
            (out.peak_sampled, out.peak_sampled_at) = (in_progress, start.elapsed());
        }
        if !posted && posting.is_finished() {
            let (results, phase) = (&mut posting).await.context("the posting task failed")?;
            out.post_phase = phase;
            for r in results {
                match r {
                    Ok(()) => out.posted += 1,
                    Err(e) => *out.post_failures.entry(e).or_default() += 1,
                }
            }
            posted = true;
            signal(paused, "CONT")?;
        }
        let done = usize::try_from(completed + failed).unwrap_or(0);
        if posted && active == 0 && done >= out.posted {
            out.all_terminal = true;
            break;
        }
        if start.elapsed() > timeout {
            posting.abort();
            signal(paused, "CONT")?;
            break;
        }
    }
    out.total = start.elapsed();
    let intervals: Vec<(Option<f64>, Option<f64>)> =
        sqlx::query_as(INTERVALS_SQL).fetch_all(db).await.context("cannot read run times")?;
    out.peak_overlap = peak_overlap(&intervals);
    Ok(out)
}

/// Sends `SIG<name>` to each of `pids` (`kill -<name>`).
fn signal(pids: &[u32], name: &str) -> anyhow::Result<()> {
    for pid in pids {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(status.success(), "kill -{name} {pid} failed ({status})");
    }
    Ok(())
}

/// The largest number of `[start, end]` intervals open at one instant; an interval without an
/// end is open until the last instant. An end at the same instant as a start closes first.
fn peak_overlap(intervals: &[(Option<f64>, Option<f64>)]) -> usize {
    let mut edges: Vec<(f64, i32)> = Vec::with_capacity(intervals.len() * 2);
    for (start, end) in intervals {
        if let Some(s) = start {
            edges.push((*s, 1));
            edges.push((end.unwrap_or(f64::INFINITY), -1));
        }
    }
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut open, mut peak) = (0i32, 0i32);
    for (_, delta) in edges {
        open += delta;
        peak = peak.max(open);
    }
    usize::try_from(peak).unwrap_or(0)
}

/// Posts `runs` low-priority runs, then `runs` high-priority ones, and waits for all of them;
/// returns report lines: per priority, the wait for a worker (created → started) and the time
/// to the answer (created → completed), and how many earlier low runs the high ones overtook.
///
/// # Errors
/// When a POST fails or Postgres cannot be queried.
pub(crate) async fn priority(api: &Api, db: &PgPool, runs: usize) -> anyhow::Result<Vec<String>> {
    for p in ["low", "high"] {
        let results: Vec<Result<(), String>> = futures::stream::iter(0..runs)
            .map(|n| api.post_run_at(format!("benchmark {p} {n}"), p))
            .buffered(16)
            .collect()
            .await;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            anyhow::bail!("a POST failed: {e}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM runs WHERE status NOT IN ('completed', 'failed', 'cancelled')",
        )
        .fetch_one(db)
        .await?;
        if left == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{left} runs still open after 600 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows: Vec<(String, i64, f64, f64, f64, f64)> = sqlx::query_as(
        "SELECT priority, count(*), \
            percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at) * 1000), \
            percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at) * 1000), \
            percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at) * 1000), \
            percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at) * 1000) \
         FROM runs WHERE input LIKE 'benchmark %' AND priority IN ('low', 'high') \
         GROUP BY priority ORDER BY priority",
    )
    .fetch_all(db)
    .await?;
    let mut lines: Vec<String> = rows
        .iter()
        .map(|(p, n, w50, w99, c50, c99)| {
            format!(
                "{p}: {n} runs; wait for a worker p50 {w50:.0} ms, p99 {w99:.0} ms; \
                 post → completed p50 {c50:.0} ms, p99 {c99:.0} ms"
            )
        })
        .collect();
    let overtaken: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM runs l WHERE l.priority = 'low' AND l.input LIKE 'benchmark %' \
         AND l.started_at > (SELECT max(started_at) FROM runs WHERE priority = 'high')",
    )
    .fetch_one(db)
    .await?;
    lines.push(format!(
        "every high run started before {overtaken} of the {runs} low runs posted ahead of them"
    ));
    Ok(lines)
}

/// Count, then p50/p99 of: round trip, dispatch → started, started → stored; error results.
type RoundTrips =
    (i64, Option<f64>, Option<f64>, Option<f64>, Option<f64>, Option<f64>, Option<f64>, i64);

/// Report lines on the tool calls of the measured runs: the round trip from dispatch (the
/// model's tool call stored with its job) to the result stored, the part of it before the
/// call started (for a built-in call, which its agent worker runs, the start that worker saw),
/// and the rest (checks, `tools/call` with the tool's own time, storing).
///
/// # Errors
/// When Postgres cannot be queried.
pub(crate) async fn tool_round_trips(db: &PgPool) -> anyhow::Result<Vec<String>> {
    let row: RoundTrips =
        sqlx::query_as(
            "SELECT count(*), \
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at) * 1000), \
               percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at) * 1000), \
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at) * 1000 - duration_ms), \
               percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at) * 1000 - duration_ms), \
               percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), \
               percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms), \
               count(*) FILTER (WHERE is_error) \
             FROM tool_invocations WHERE status = 'completed'",
        )
        .fetch_one(db)
        .await?;
    let (n, rt50, rt99, oh50, oh99, own50, own99, errors) = row;
    let f = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"));
    Ok(vec![
        format!("tool calls: {n} ({errors} error results)"),
        format!(
            "tool round trip, dispatch → result stored: p50 {} ms, p99 {} ms",
            f(rt50),
            f(rt99)
        ),
        format!(
            "  dispatch → call started (the turn's commit, pickup; a tool worker's call: queue, claim): p50 {} ms, p99 {} ms",
            f(oh50),
            f(oh99)
        ),
        format!(
            "  call started → result stored (checks, token, tools/call, store): p50 {} ms, p99 {} ms",
            f(own50),
            f(own99)
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_overlap_counts_intervals_open_at_once() {
        let iv = |s: f64, e: Option<f64>| (Some(s), e);
        assert_eq!(peak_overlap(&[]), 0);
        // [0,2] [1,3] [2,4]: at 1.5 two are open; at 2 one closes as one opens.
        assert_eq!(peak_overlap(&[iv(0.0, Some(2.0)), iv(1.0, Some(3.0)), iv(2.0, Some(4.0))]), 2);
        // A run still in progress stays open; a run that never started is ignored.
        assert_eq!(peak_overlap(&[iv(0.0, None), iv(5.0, Some(6.0)), (None, None)]), 2);
    }
}

//! The `workflow` scenario: executions of a 5-step DAG with two parallel branches
//!
//! ```text
//!   fetch ─┬─ draft ─┬─ review ── store
//!          └─ stats ─┘
//! ```
//!
//! every step an agent step (the scripted model at 0 ms), or with `--tool-steps` fetch, stats
//! and store calls of built-in tools (one MCP round trip each),
//!
//! started at a fixed rate (open loop) and, after that, by a closed loop of clients; each
//! client follows its execution over SSE to its end. The step transition overhead is read
//! back from Postgres: for each step with dependencies, from the moment the last of its
//! dependencies' results was stored (that run's `completed_at`) to the moment its own run was
//! created (dispatched).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentyard_core::sse::SseParser;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::stats::Summary;

/// The definition's steps and their dependencies.
const DEPS: &[(&str, &[&str])] = &[
    ("fetch", &[]),
    ("draft", &["fetch"]),
    ("stats", &["fetch"]),
    ("review", &["draft", "stats"]),
    ("store", &["review"]),
];

/// Longest an execution may take before it counts as failed.
const EXECUTION_TIMEOUT: Duration = Duration::from_secs(60);

fn definition(tool_steps: bool) -> Value {
    let agent = |input: &str| json!({"type": "customer_support", "input": input});
    if !tool_steps {
        return json!({
            "id": "bench-dag",
            "inputs": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
            "steps": [
                {"id": "fetch", "agent": agent("benchmark fetch {{ inputs.n }}")},
                {"id": "draft", "depends_on": ["fetch"], "agent": agent("benchmark draft {{ inputs.n }}")},
                {"id": "stats", "depends_on": ["fetch"], "agent": agent("benchmark stats {{ inputs.n }}")},
                {"id": "review", "depends_on": ["draft", "stats"], "agent": agent("benchmark review {{ inputs.n }}")},
                {"id": "store", "depends_on": ["review"], "agent": agent("benchmark store {{ inputs.n }}")}
            ]
        });
    }
    json!({
        "id": "bench-dag",
        "inputs": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
        "steps": [
            {"id": "fetch", "tool": {"name": "list_tasks"}},
            {"id": "draft", "depends_on": ["fetch"],
             "agent": agent("benchmark draft {{ inputs.n }}")},
            {"id": "stats", "depends_on": ["fetch"], "tool": {"name": "get_ticket_stats"}},
            {"id": "review", "depends_on": ["draft", "stats"],
             "agent": agent("benchmark review {{ steps.draft.output }}")},
            {"id": "store", "depends_on": ["review"],
             "tool": {"name": "add_task", "arguments": {"title": "bench {{ inputs.n }}"}}}
        ]
    })
}

/// One execution as the client saw it.
#[derive(Debug, Default)]
struct Sample {
    /// Start → `workflow.execution.completed`.
    completed: Option<Duration>,
    error: Option<String>,
}

/// The workflow API as the bench calls it.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: Arc<str>,
    token: Arc<str>,
}

impl Client {
    pub(crate) fn new(http: reqwest::Client, base: &str, token: &str) -> Self {
        Self { http, base: base.into(), token: token.into() }
    }

    /// Creates the benchmark's definition.
    pub(crate) async fn define(&self, tool_steps: bool) -> anyhow::Result<()> {
        let r = self
            .http
            .post(format!("{}/v1/workflows", self.base))
            .bearer_auth(&self.token)
            .json(&definition(tool_steps))
            .send()
            .await?;
        if r.status().as_u16() != 201 {
            bail!("cannot define the workflow: {} {}", r.status(), r.text().await?);
        }
        Ok(())
    }

    /// Starts one execution and follows its events to its end.
    async fn execute(&self, n: usize) -> Sample {
        let start = Instant::now();
        let mut sample = Sample::default();
        match tokio::time::timeout(EXECUTION_TIMEOUT, self.follow(n, start, &mut sample)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => sample.error = Some(e),
            Err(_) => sample.error = Some("timed out".to_owned()),
        }
        sample
    }

    async fn follow(&self, n: usize, start: Instant, sample: &mut Sample) -> Result<(), String> {
        let r = self
            .http
            .post(format!("{}/v1/workflows/bench-dag/executions", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"inputs": {"n": n}}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().as_u16() != 202 {
            return Err(format!("start: {}", r.status()));
        }
        let e: Value = r.json().await.map_err(|e| e.to_string())?;
        let id = e["id"].as_str().ok_or("no execution id")?.to_owned();
        let resp = self
            .http
            .get(format!("{}/v1/workflows/executions/{id}/events", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let mut parser = SseParser::default();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            for ev in parser.feed(&chunk.map_err(|e| e.to_string())?) {
                match ev.event.as_str() {
                    "workflow.execution.completed" => {
                        sample.completed = Some(start.elapsed());
                        return Ok(());
                    }
                    "workflow.execution.failed" | "workflow.execution.cancelled" => {
                        return Err(ev.event);
                    }
                    _ => {}
                }
            }
        }
        Err("the event stream ended early".to_owned())
    }
}

/// What one phase measured.
struct Phase {
    samples: Vec<Sample>,
    elapsed: Duration,
}

impl Phase {
    fn lines(&self, name: &str) -> Vec<String> {
        let ok: Vec<Duration> = self.samples.iter().filter_map(|s| s.completed).collect();
        let failed = self.samples.len() - ok.len();
        let first_error = self.samples.iter().find_map(|s| s.error.clone());
        let rate = ok.len() as f64 / self.elapsed.as_secs_f64().max(1e-9);
        let mut out = vec![format!(
            "{name}: {} executions completed, {failed} failed{}, {rate:.1} executions/s",
            ok.len(),
            first_error.map(|e| format!(" (first error: {e})")).unwrap_or_default()
        )];
        if let Some(s) = Summary::of(ok) {
            out.push(format!(
                "  start → workflow.execution.completed: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
            ));
        }
        out
    }
}

/// Executions started at `rate` per second for `duration`.
async fn open_loop(client: &Client, rate: f64, duration: Duration, first: usize) -> Phase {
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut tasks = JoinSet::new();
    let mut n = first;
    while start.elapsed() < duration {
        ticker.tick().await;
        let c = client.clone();
        tasks.spawn(async move { c.execute(n).await });
        n += 1;
    }
    let mut samples = Vec::new();
    while let Some(s) = tasks.join_next().await {
        samples
            .push(s.unwrap_or_else(|e| Sample { error: Some(e.to_string()), ..Sample::default() }));
    }
    Phase { samples, elapsed: start.elapsed() }
}

/// `clients` executing one execution after another for `duration`.
async fn closed_loop(client: &Client, clients: usize, duration: Duration, first: usize) -> Phase {
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(first));
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (c, next) = (client.clone(), next.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            while start.elapsed() < duration {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                out.push(c.execute(n).await);
            }
            out
        });
    }
    let mut samples = Vec::new();
    while let Some(s) = tasks.join_next().await {
        samples.extend(s.unwrap_or_default());
    }
    Phase { samples, elapsed: start.elapsed() }
}

/// A step run's creation and end.
type StepTimes = (DateTime<Utc>, Option<DateTime<Utc>>);

/// Per step with dependencies: its run's creation minus the last dependency run's end, over
/// the executions created in `[from, to)`.
async fn transitions(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<Duration>> {
    type Row = (uuid::Uuid, String, DateTime<Utc>, Option<DateTime<Utc>>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT w.execution_id, w.step_id, r.created_at, r.completed_at \
         FROM workflow_step_runs w JOIN runs r ON r.id = w.run_id \
         JOIN workflow_executions e ON e.id = w.execution_id \
         WHERE w.attempt = 1 AND e.created_at >= $1 AND e.created_at < $2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await
    .context("cannot read the step runs")?;
    let mut by_exec: HashMap<uuid::Uuid, HashMap<String, StepTimes>> = HashMap::new();
    for (e, step, created, completed) in rows {
        by_exec.entry(e).or_default().insert(step, (created, completed));
    }
    let mut out = Vec::new();
    for steps in by_exec.values() {
        for (step, deps) in DEPS.iter().filter(|(_, d)| !d.is_empty()) {
            let Some((dispatched, _)) = steps.get(*step) else { continue };
            let ready = deps
                .iter()
                .map(|d| steps.get(*d).and_then(|(_, c)| *c))
                .collect::<Option<Vec<_>>>();
            let Some(ready) = ready.and_then(|r| r.into_iter().max()) else { continue };
            out.push((*dispatched - ready).to_std().unwrap_or_default());
        }
    }
    Ok(out)
}

/// The whole scenario; returns the report's lines.
pub(crate) async fn run(
    client: &Client,
    db: &PgPool,
    rate: f64,
    clients: usize,
    duration: Duration,
    tool_steps: bool,
) -> anyhow::Result<Vec<String>> {
    client.define(tool_steps).await?;
    // Warm up (agents provisioned, connections open).
    let warm = closed_loop(client, 4, Duration::from_secs(2), 1_000_000).await;
    if warm.samples.iter().all(|s| s.completed.is_none()) {
        let e = warm.samples.iter().find_map(|s| s.error.clone()).unwrap_or_default();
        bail!("warm-up: no execution completed ({e})");
    }
    let mut lines = Vec::new();
    eprintln!("workflow: {rate} executions/s for {}s (open loop)", duration.as_secs());
    let t0 = Utc::now();
    let open = open_loop(client, rate, duration, 0).await;
    let t1 = Utc::now();
    lines.extend(open.lines(&format!("open loop at {rate} executions/s")));
    if let Some(s) = Summary::of(transitions(db, t0, t1).await?) {
        lines.push(format!(
            "  step transition overhead (dependency's result stored → dependent dispatched), {} transitions: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            s.count, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
        ));
        lines.push(format!(
            "  p99 ≤ 20 ms (the target, set at 50 executions/s) at {rate} executions/s: {}",
            if s.p99_ms <= 20.0 { "MET" } else { "NOT MET" }
        ));
    }
    eprintln!("workflow: {clients} clients for {}s (closed loop)", duration.as_secs());
    let t2 = Utc::now();
    let closed = closed_loop(client, clients, duration, 100_000).await;
    let t3 = Utc::now();
    lines.extend(closed.lines(&format!("closed loop, {clients} clients")));
    if let Some(s) = Summary::of(transitions(db, t2, t3).await?) {
        lines.push(format!(
            "  step transition overhead at saturation: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
            s.p50_ms, s.p95_ms, s.p99_ms
        ));
    }
    Ok(lines)
}

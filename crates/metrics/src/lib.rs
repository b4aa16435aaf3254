//! Prometheus metrics for every process: one registry per process (so `agentyard dev`, every
//! role in one process, shows them all on one `/metrics`), the recording calls the roles make,
//! and the endpoint ([`http`]).
//!
//! Names follow Prometheus: the `agentyard_` prefix, base units (seconds, bytes), `_total` on
//! counters, and label values from bounded sets only (statuses, consumers, route templates,
//! tool names, model names; never a run, thread, org or user id). Model calls follow the
//! OpenTelemetry GenAI semantic conventions as the OpenTelemetry→Prometheus mapping writes them
//! (`gen_ai.client.operation.duration` → `gen_ai_client_operation_duration_seconds`).
//!
//! `AY_METRICS=off` ([`set_enabled`]) makes every recording call return at once and removes
//! the endpoint, so a benchmark can compare with and without.

mod process;
pub mod registry;

pub mod http;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

pub use registry::{Counter, Family, Gauge, Histogram};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns recording and the endpoint on or off for the whole process (`AY_METRICS`).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether metrics are recorded and served.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Run durations: from a tenth of a second to an hour.
pub const RUN_BUCKETS: [f64; 14] =
    [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
/// OpenTelemetry's `http.server.request.duration` advice.
pub const HTTP_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
/// Tool calls: milliseconds (built-in tools) to the 30 s default timeout and beyond.
pub const TOOL_BUCKETS: [f64; 12] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// The GenAI semantic conventions' advice for `gen_ai.client.operation.duration` (also used
/// for the time to the first chunk).
pub const GEN_AI_DURATION_BUCKETS: [f64; 14] =
    [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
/// The GenAI semantic conventions' advice for `gen_ai.client.token.usage`.
pub const GEN_AI_TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

const GEN_AI_LABELS: &[&str] = &[
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "error_type",
];
const GEN_AI_TOKEN_LABELS: &[&str] = &[
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "gen_ai_token_type",
];

/// Every metric of the process.
pub struct Metrics {
    pub runs: Family<Counter>,
    pub run_duration: Family<Histogram>,
    pub tool_calls: Family<Counter>,
    pub tool_duration: Family<Histogram>,
    pub http: Family<Histogram>,
    pub queue_pending: Family<Gauge>,
    pub queue_ack_pending: Family<Gauge>,
    pub queue_redelivered: Family<Gauge>,
    pub queue_oldest_age: Family<Gauge>,
    pub dead_letters: Family<Gauge>,
    pub gen_ai_duration: Family<Histogram>,
    pub gen_ai_first_chunk: Family<Histogram>,
    pub gen_ai_tokens: Family<Histogram>,
    /// Jobs being handled now, per job kind: read at scrape time from the runners' counters.
    in_flight: Mutex<Vec<(&'static str, Arc<AtomicU64>)>>,
    /// Work done before each scrape (reading JetStream's consumer states).
    hooks: Mutex<Vec<Hook>>,
}

type Hook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    runs: Family::new(
        "agentyard_runs_total",
        "Runs that reached a terminal status, counted by the process that published the terminal event.",
        &["status"],
    ),
    run_duration: Family::with_buckets(
        "agentyard_run_duration_seconds",
        "Time from a run's creation to its terminal status.",
        &["status"],
        &RUN_BUCKETS,
    ),
    tool_calls: Family::new(
        "agentyard_tool_calls_total",
        "Tool calls made on MCP servers, by tool and outcome (ok, error: the tool answered an error, unreachable: the server could not be reached or timed out, input_required: the server asked a human).",
        &["tool", "outcome"],
    ),
    tool_duration: Family::with_buckets(
        "agentyard_tool_call_duration_seconds",
        "Duration of tool calls on MCP servers.",
        &["tool", "outcome"],
        &TOOL_BUCKETS,
    ),
    http: Family::with_buckets(
        "agentyard_http_request_duration_seconds",
        "Time to answer HTTP requests (until the response head; a stream's body is not counted), by route template, method and status.",
        &["route", "method", "status"],
        &HTTP_BUCKETS,
    ),
    queue_pending: Family::new(
        "agentyard_queue_pending_jobs",
        "Jobs of a consumer not yet delivered to any worker (JetStream consumer info, read at most every 5 s).",
        &["consumer"],
    ),
    queue_ack_pending: Family::new(
        "agentyard_queue_ack_pending_jobs",
        "Jobs of a consumer delivered and not yet acknowledged (in progress, or lost with a worker).",
        &["consumer"],
    ),
    queue_redelivered: Family::new(
        "agentyard_queue_redelivered_jobs",
        "Jobs of a consumer delivered more than once and not yet acknowledged.",
        &["consumer"],
    ),
    queue_oldest_age: Family::new(
        "agentyard_queue_oldest_job_age_seconds",
        "Age of the oldest job of a consumer not yet done (0 when none waits).",
        &["consumer"],
    ),
    dead_letters: Family::new(
        "agentyard_dead_letter_jobs",
        "Jobs kept in the dead-letter stream.",
        &[],
    ),
    gen_ai_duration: Family::with_buckets(
        "gen_ai_client_operation_duration_seconds",
        "GenAI operation duration (OpenTelemetry gen_ai.client.operation.duration).",
        GEN_AI_LABELS,
        &GEN_AI_DURATION_BUCKETS,
    ),
    gen_ai_first_chunk: Family::with_buckets(
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "Time from the request to the first chunk of a streamed response (OpenTelemetry gen_ai.client.operation.time_to_first_chunk).",
        GEN_AI_LABELS,
        &GEN_AI_DURATION_BUCKETS,
    ),
    gen_ai_tokens: Family::with_buckets(
        "gen_ai_client_token_usage",
        "Number of input and output tokens used, in tokens (OpenTelemetry gen_ai.client.token.usage).",
        GEN_AI_TOKEN_LABELS,
        &GEN_AI_TOKEN_BUCKETS,
    ),
    in_flight: Mutex::new(Vec::new()),
    hooks: Mutex::new(Vec::new()),
});

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// The terminal statuses, shown at 0 before the first run ends (so `rate()` sees the start).
const TERMINAL: [&str; 4] = ["completed", "failed", "cancelled", "expired"];

/// A run reached the terminal `status`, `seconds` after it was created.
pub fn run_ended(status: &str, seconds: Option<f64>) {
    if !enabled() {
        return;
    }
    let m = metrics();
    m.runs.with(&[status], Counter::inc);
    if let Some(s) = seconds {
        m.run_duration.with(&[status], |h| h.observe(s.max(0.0)));
    }
}

/// A tool call ended with `outcome` after `seconds`.
pub fn tool_call(tool: &str, outcome: &str, seconds: f64) {
    if !enabled() {
        return;
    }
    let m = metrics();
    m.tool_calls.with(&[tool, outcome], Counter::inc);
    m.tool_duration.with(&[tool, outcome], |h| h.observe(seconds));
}

/// What identifies a model call in the GenAI metrics.
#[derive(Clone, Copy, Debug)]
pub struct GenAiCall<'a> {
    /// `gen_ai.provider.name`.
    pub provider: &'a str,
    /// `gen_ai.request.model`.
    pub request_model: &'a str,
    /// `gen_ai.response.model` (empty: unknown).
    pub response_model: &'a str,
}

impl GenAiCall<'_> {
    fn labels<'b>(&'b self, last: &'b str) -> [&'b str; 5] {
        ["chat", self.provider, self.request_model, self.response_model, last]
    }

    /// The call ended (`error_type` set when it failed) after `seconds`.
    pub fn ended(&self, error_type: Option<&str>, seconds: f64) {
        if !enabled() {
            return;
        }
        let labels = self.labels(error_type.unwrap_or(""));
        metrics().gen_ai_duration.with(&labels, |h| h.observe(seconds));
    }

    /// The first chunk came `seconds` after the request.
    pub fn first_chunk(&self, seconds: f64) {
        if enabled() {
            metrics().gen_ai_first_chunk.with(&self.labels(""), |h| h.observe(seconds));
        }
    }

    /// The tokens the call used.
    pub fn tokens(&self, input: u64, output: u64) {
        if !enabled() {
            return;
        }
        let f = &metrics().gen_ai_tokens;
        f.with(&self.labels("input"), |h| h.observe(input as f64));
        f.with(&self.labels("output"), |h| h.observe(output as f64));
    }
}

/// Shows `count` (a job runner's in-flight counter) as `agentyard_jobs_in_flight{kind}`.
pub fn watch_in_flight(kind: &'static str, count: Arc<AtomicU64>) {
    let mut all = metrics().in_flight.lock().unwrap_or_else(|e| e.into_inner());
    all.push((kind, count));
}

/// Runs `hook` before each scrape (at most [`HOOK_TIMEOUT`] long); the hook bounds its own
/// cost (e.g. reads JetStream at most every few seconds).
pub fn on_scrape<F, Fut>(hook: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let hook: Hook = Arc::new(move || Box::pin(hook()));
    metrics().hooks.lock().unwrap_or_else(|e| e.into_inner()).push(hook);
}

/// The longest a scrape waits for a hook.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the scrape hooks, then writes every metric in the text exposition format.
pub async fn render() -> String {
    let hooks: Vec<Hook> = metrics().hooks.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for hook in hooks {
        if tokio::time::timeout(HOOK_TIMEOUT, hook()).await.is_err() {
            tracing::debug!("a metrics hook took too long; its values are older");
        }
    }
    encode()
}

/// Every metric in the text exposition format (version 0.0.4).
pub fn encode() -> String {
    let m = metrics();
    for s in TERMINAL {
        m.runs.with(&[s], |_| ());
    }
    let mut out = String::with_capacity(16 * 1024);
    m.runs.encode(&mut out);
    m.run_duration.encode(&mut out);
    m.tool_calls.encode(&mut out);
    m.tool_duration.encode(&mut out);
    m.http.encode_counts(
        "agentyard_http_requests_total",
        "HTTP requests answered, by route template, method and status.",
        &mut out,
    );
    m.http.encode(&mut out);
    encode_in_flight(m, &mut out);
    m.queue_pending.encode(&mut out);
    m.queue_ack_pending.encode(&mut out);
    m.queue_redelivered.encode(&mut out);
    m.queue_oldest_age.encode(&mut out);
    m.dead_letters.encode(&mut out);
    m.gen_ai_duration.encode(&mut out);
    m.gen_ai_first_chunk.encode(&mut out);
    m.gen_ai_tokens.encode(&mut out);
    process::encode(&mut out);
    out
}

fn encode_in_flight(m: &Metrics, out: &mut String) {
    let name = "agentyard_jobs_in_flight";
    registry::header(out, name, "Jobs being handled now, by job kind.", "gauge");
    let all = m.in_flight.lock().unwrap_or_else(|e| e.into_inner());
    let mut by_kind: Vec<(&str, u64)> = Vec::new();
    for (kind, n) in all.iter() {
        let n = n.load(Ordering::Relaxed);
        match by_kind.iter_mut().find(|(k, _)| k == kind) {
            Some((_, sum)) => *sum += n,
            None => by_kind.push((kind, n)),
        }
    }
    by_kind.sort();
    for (kind, n) in by_kind {
        let labels = registry::render_labels(&["kind"], &[kind.into()]);
        registry::sample(out, name, "", &labels, None, n as f64);
    }
}

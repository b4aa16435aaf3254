//! The HTTP side of the benchmark: one shared `reqwest` client that posts runs and reads their
//! SSE streams, turning each run into a [`RunSample`]. Errors become short, stable strings so
//! they can be counted by kind in the report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentyard_core::sse::SseParser;
use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};

/// How long one run may take before it counts as failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a non-streamed POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long we keep reading after the terminal event so the connection returns to the pool.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What one run looked like from the client.
#[derive(Clone, Debug, Default)]
pub(crate) struct RunSample {
    /// Post → the first SSE event (`run.queued`): the API has created the run.
    pub(crate) first_event: Option<Duration>,
    /// Post → first `message.delta`.
    pub(crate) first_delta: Option<Duration>,
    /// Post → `run.completed` (absent when the run did not complete).
    pub(crate) completed: Option<Duration>,
    /// Why the run did not complete.
    pub(crate) error: Option<String>,
}

/// The one HTTP client of the benchmark: a pool large enough that no run waits for a connection;
/// with `fresh_connections`, no pool at all (one TCP connection per request).
///
/// # Errors
/// When the HTTP client cannot be built.
pub(crate) fn http_client(fresh_connections: bool) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(if fresh_connections { 0 } else { 8192 })
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("cannot build the HTTP client")
}

/// The API under test, as a client sees it. Cheap to clone: tasks share one connection pool.
#[derive(Clone, Debug)]
pub(crate) struct Api {
    http: reqwest::Client,
    runs_url: Arc<str>,
    token: Arc<str>,
}

impl Api {
    /// The API at `base_url` (e.g. `http://127.0.0.1:8080`), called with `token` over `http`.
    pub(crate) fn new(http: reqwest::Client, base_url: &str, token: &str) -> Self {
        Self { http, runs_url: format!("{base_url}/v1/runs").into(), token: token.into() }
    }

    /// Posts `input` with `"stream": true` and reads the SSE stream to its terminal event.
    pub(crate) async fn streamed_run(&self, input: String) -> RunSample {
        self.streamed_run_on(input, None).await.0
    }

    /// [`Api::streamed_run`] on `thread` (None: a new thread); also returns the run's thread.
    pub(crate) async fn streamed_run_on(
        &self,
        input: String,
        thread: Option<&str>,
    ) -> (RunSample, Option<String>) {
        let start = Instant::now();
        let mut sample = RunSample::default();
        let mut thread_id = thread.map(str::to_owned);
        let streamed = self.stream(&input, start, &mut sample, &mut thread_id);
        match tokio::time::timeout(RUN_TIMEOUT, streamed).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => sample.error = Some(e),
            Err(_) => sample.error = Some(format!("timed out after {}s", RUN_TIMEOUT.as_secs())),
        }
        (sample, thread_id)
    }

    async fn stream(
        &self,
        input: &str,
        start: Instant,
        sample: &mut RunSample,
        thread: &mut Option<String>,
    ) -> Result<(), String> {
        let body = match thread.as_deref() {
            Some(t) => json!({"input": input, "stream": true, "thread_id": t}),
            None => json!({"input": input, "stream": true}),
        };
        let resp = self
            .http
            .post(&*self.runs_url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        if !resp.status().is_success() {
            return Err(http_error(resp).await);
        }
        let mut parser = SseParser::default();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| transport_error(&e))?;
            for ev in parser.feed(&chunk) {
                if sample.first_event.is_none() {
                    sample.first_event = Some(start.elapsed());
                    if thread.is_none() {
                        *thread = serde_json::from_str::<Value>(&ev.data)
                            .ok()
                            .and_then(|d| d["run"]["thread_id"].as_str().map(str::to_owned));
                    }
                }
                match ev.event.as_str() {
                    "message.delta" if sample.first_delta.is_none() => {
                        sample.first_delta = Some(start.elapsed());
                    }
                    "run.completed" => {
                        sample.completed = Some(start.elapsed());
                        // The server closes the stream right after; reading its end lets the
                        // connection be reused instead of leaving one TIME_WAIT socket per run.
                        let drain = async { while body.next().await.is_some() {} };
                        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
                        return Ok(());
                    }
                    "run.failed" | "run.cancelled" => {
                        return Err(format!("{}: {}", ev.event, run_error_code(&ev.data)));
                    }
                    _ => {}
                }
            }
        }
        Err("stream ended before a terminal event".to_owned())
    }

    /// Posts `input` (202) and long-polls `GET /v1/runs/{id}?wait=<wait>` until the run is
    /// terminal, as most API clients use the system. `first_event` is the 202, `completed` the
    /// answer that showed the run completed; `long_waits` counts polls that came back with the
    /// run still running (the wait ran out).
    pub(crate) async fn polled_run(&self, input: String, wait: u64) -> (RunSample, usize) {
        let start = Instant::now();
        let mut sample = RunSample::default();
        let mut long_waits = 0;
        let polled = self.poll(&input, wait, start, &mut sample, &mut long_waits);
        match tokio::time::timeout(RUN_TIMEOUT + Duration::from_secs(wait), polled).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => sample.error = Some(e),
            Err(_) => sample.error = Some(format!("timed out after {}s", RUN_TIMEOUT.as_secs())),
        }
        (sample, long_waits)
    }

    async fn poll(
        &self,
        input: &str,
        wait: u64,
        start: Instant,
        sample: &mut RunSample,
        long_waits: &mut usize,
    ) -> Result<(), String> {
        let run = self.post_queued(input, None).await?;
        sample.first_event = Some(start.elapsed());
        let id = run["id"].as_str().ok_or("no run id in the 202")?.to_owned();
        let url = format!("{}/{id}?wait={wait}", self.runs_url);
        loop {
            let resp = self
                .http
                .get(&url)
                .bearer_auth(&self.token)
                .send()
                .await
                .map_err(|e| transport_error(&e))?;
            if !resp.status().is_success() {
                return Err(http_error(resp).await);
            }
            let run: Value = resp.json().await.map_err(|e| transport_error(&e))?;
            match run["status"].as_str() {
                Some("completed") => {
                    sample.completed = Some(start.elapsed());
                    return Ok(());
                }
                Some(s @ ("failed" | "cancelled" | "expired")) => {
                    let code = run["error"]["code"].as_str().unwrap_or("?");
                    return Err(format!("run.{s}: {code}"));
                }
                _ => *long_waits += 1,
            }
        }
    }

    /// Posts `input` without streaming and expects `202 Accepted`.
    ///
    /// # Errors
    /// A short description of what went wrong (transport error or HTTP status and code).
    pub(crate) async fn post_run(&self, input: String) -> Result<(), String> {
        self.post_run_at(input, "normal").await
    }

    /// Posts `input` without streaming; the run's id once accepted (202).
    ///
    /// # Errors
    /// A short description of what went wrong (transport error or HTTP status and code).
    pub(crate) async fn create_run(&self, input: String) -> Result<uuid::Uuid, String> {
        let run = self.post_queued(&input, Some(POST_TIMEOUT)).await?;
        run["id"]
            .as_str()
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .ok_or_else(|| "no run id in the 202".to_owned())
    }

    /// Posts `input` without streaming (within `timeout` when given); the run (202).
    async fn post_queued(&self, input: &str, timeout: Option<Duration>) -> Result<Value, String> {
        let mut req =
            self.http.post(&*self.runs_url).bearer_auth(&self.token).json(&json!({"input": input}));
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|e| transport_error(&e))?;
        if resp.status() != reqwest::StatusCode::ACCEPTED {
            return Err(http_error(resp).await);
        }
        resp.json().await.map_err(|e| transport_error(&e))
    }

    /// Posts a run of `priority`; Ok once accepted.
    pub(crate) async fn post_run_at(&self, input: String, priority: &str) -> Result<(), String> {
        let resp = self
            .http
            .post(&*self.runs_url)
            .bearer_auth(&self.token)
            .json(&json!({"input": input, "priority": priority}))
            .timeout(POST_TIMEOUT)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        if resp.status() != reqwest::StatusCode::ACCEPTED {
            return Err(http_error(resp).await);
        }
        // Read the body so the connection goes back to the pool.
        resp.bytes().await.map_err(|e| transport_error(&e))?;
        Ok(())
    }
}

/// `connect error: Connection refused (os error 111)` and the like: the kind plus the innermost
/// cause, which is stable across requests (the URL is not).
pub(crate) fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "connect"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{kind} error: {cause}")
}

/// `HTTP 503 service_unavailable`, using the API's `{"error": {"code"}}` body when present.
pub(crate) async fn http_error(resp: reqwest::Response) -> String {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or_default();
    match body["error"]["code"].as_str() {
        Some(code) => format!("HTTP {} {code}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// The error code of a `run.failed` / `run.cancelled` event's run, or `?`.
fn run_error_code(data: &str) -> String {
    let data: Value = serde_json::from_str(data).unwrap_or_default();
    data["run"]["error"]["code"].as_str().unwrap_or("?").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_error_code_reads_the_runs_error_or_falls_back() {
        let data = r#"{"run": {"status": "failed", "error": {"code": "llm_unavailable"}}}"#;
        assert_eq!(run_error_code(data), "llm_unavailable");
        assert_eq!(run_error_code("not json"), "?");
    }
}

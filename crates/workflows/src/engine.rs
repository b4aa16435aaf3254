//! The execution state machine, with no I/O: given a workflow, its inputs, the state of every
//! step and the time, [`advance`] decides what is ready, what is skipped, what times out, what
//! is retried and when the execution ends, and returns the effects (runs to start, runs to
//! cancel) for the orchestrator to carry out. The orchestrator stores the state it returns.
//!
//! Rules:
//! - A step is ready when each of its `depends_on` is settled: completed, skipped, or failed
//!   with `on_failure: continue`. Its `when` then decides: false skips it. A skipped step's
//!   dependents are not skipped with it: they follow their own `when` (its output is null).
//! - A failed attempt is retried (after `backoff`, doubling up to `max_backoff`) until
//!   `max_attempts`, unless its code is in `non_retryable` or is one that never is
//!   ([`NEVER_RETRIED`]).
//! - A step that failed for good: `continue` lets the execution go on; `fail` ends it (steps
//!   running are cancelled, steps not started are skipped with reason `not_run`);
//!   `{compensate: c}` does the same and runs `c` first, then the execution fails.
//! - The execution completes when every step is completed, skipped or failed-and-continued;
//!   its output is the outputs of the steps nothing depends on.

use std::collections::{BTreeMap, BTreeSet};

use agentyard_core::RunId;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::def::{OnFailure, OutputFormat, StepKind, TimeoutMeans, Workflow};
use crate::expr::{Expr, Scope, Template, render_value};

/// Step error codes of the engine (runs and tools add their own).
pub mod codes {
    pub const STEP_TIMEOUT: &str = "step_timeout";
    pub const APPROVAL_DENIED: &str = "approval_denied";
    pub const APPROVAL_TIMED_OUT: &str = "approval_timed_out";
    pub const CONDITION_ERROR: &str = "condition_error";
    pub const TEMPLATE_ERROR: &str = "template_error";
    pub const INVALID_OUTPUT: &str = "invalid_output";
    pub const AGENT_NOT_FOUND: &str = "agent_not_found";
    pub const TOOL_ERROR: &str = "tool_error";
    pub const CANCELLED: &str = "cancelled";
    pub const WAIT_TIMED_OUT: &str = "wait_timed_out";
}

/// Codes no `retry` retries: the same attempt would fail the same way, or a human said no.
pub const NEVER_RETRIED: &[&str] = &[
    codes::CONDITION_ERROR,
    codes::TEMPLATE_ERROR,
    codes::APPROVAL_DENIED,
    codes::APPROVAL_TIMED_OUT,
    codes::AGENT_NOT_FOUND,
    codes::CANCELLED,
];

/// An execution's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// Waiting for its concurrency key.
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl ExecStatus {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Completed, failed or cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// A step's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    /// An attempt runs (an agent run, a tool call) or a wait waits.
    Running,
    /// An approval waits for a human.
    Waiting,
    /// An attempt failed; the next starts at `wake_at`.
    Retrying,
    Completed,
    Failed,
    Skipped,
    Cancelled,
}

impl StepStatus {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Retrying => "retrying",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }

    /// Completed, failed, skipped or cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Skipped | Self::Cancelled)
    }

    fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Waiting | Self::Retrying)
    }
}

/// Why a step was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Its `when` was false.
    Condition,
    /// The execution failed before it started.
    NotRun,
    /// A compensation step nothing needed.
    NotNeeded,
}

/// Why an attempt or a step failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepError {
    pub code: String,
    pub message: String,
}

impl StepError {
    /// An error of `code`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }
}

/// One step's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub status: StepStatus,
    /// Attempts started.
    pub attempt: u32,
    pub output: Option<Value>,
    /// The last attempt's error.
    pub error: Option<StepError>,
    pub skip_reason: Option<SkipReason>,
    /// When the step needs attention without an outside event: a wait's end, an attempt's
    /// timeout, an approval's deadline, a retry.
    pub wake_at: Option<DateTime<Utc>>,
    /// The run of the current (or last) attempt of an agent or tool step.
    pub run_id: Option<RunId>,
    /// What an approval asks.
    pub request: Option<Value>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Default for StepState {
    fn default() -> Self {
        Self {
            status: StepStatus::Pending,
            attempt: 0,
            output: None,
            error: None,
            skip_reason: None,
            wake_at: None,
            run_id: None,
            request: None,
            started_at: None,
            completed_at: None,
        }
    }
}

/// An execution's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecState {
    pub status: ExecStatus,
    pub steps: BTreeMap<String, StepState>,
    /// The failure that ends the execution (set while compensation runs).
    pub failure: Option<(String, StepError)>,
    /// Compensation steps asked for.
    pub compensate: BTreeSet<String>,
    pub output: Option<Value>,
}

/// Which agent answers an agent step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentRef {
    Type(String),
    Capability(String),
}

/// What starting an attempt needs from the outside.
#[derive(Clone, Debug, PartialEq)]
pub enum Launch {
    Agent { agent: AgentRef, input: String },
    Tool { name: String, arguments: Value },
}

/// What the orchestrator must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Start attempt `attempt` of `step`, then record its run in `run_id` (or end the attempt
    /// with an error when it cannot start).
    Start { step: String, attempt: u32, launch: Launch },
    /// Cancel the run of a step that no longer needs it.
    Cancel { step: String, run_id: RunId },
}

impl ExecState {
    /// A new execution: every step pending.
    pub fn new(wf: &Workflow, status: ExecStatus) -> Self {
        let steps = wf.def.steps.iter().map(|s| (s.id.clone(), StepState::default())).collect();
        Self { status, steps, failure: None, compensate: BTreeSet::new(), output: None }
    }

    /// The earliest time a step needs attention.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        if self.status != ExecStatus::Running {
            return None;
        }
        self.steps.values().filter(|s| !s.status.is_terminal()).filter_map(|s| s.wake_at).min()
    }

    /// What expressions see of the steps.
    pub fn scope(&self, inputs: &Value) -> Scope {
        let steps = self
            .steps
            .iter()
            .map(|(id, s)| {
                (id.clone(), json!({"status": s.status.as_str(), "output": s.output.clone()}))
            })
            .collect::<serde_json::Map<_, _>>();
        Scope { inputs: inputs.clone(), steps: Value::Object(steps), event: None }
    }

    fn step(&mut self, id: &str) -> &mut StepState {
        self.steps.entry(id.to_owned()).or_default()
    }
}

fn is_settled(wf: &Workflow, state: &ExecState, id: &str) -> bool {
    let Some(s) = state.steps.get(id) else { return true };
    match s.status {
        StepStatus::Completed | StepStatus::Skipped => true,
        StepStatus::Failed => wf.step(id).is_some_and(|d| d.on_failure == OnFailure::Continue),
        _ => false,
    }
}

/// Advances the execution as far as it goes at `now`; returns what to do outside.
pub fn advance(
    wf: &Workflow,
    inputs: &Value,
    state: &mut ExecState,
    now: DateTime<Utc>,
) -> Vec<Effect> {
    let mut effects = Vec::new();
    if state.status != ExecStatus::Running {
        return effects;
    }
    wake(wf, inputs, state, now, &mut effects);
    loop {
        let before = state.clone();
        if state.failure.is_some() {
            wind_down(wf, inputs, state, now, &mut effects);
            return effects;
        }
        for s in &wf.def.steps {
            if wf.compensation.contains(&s.id)
                || state.steps.get(&s.id).is_none_or(|x| x.status != StepStatus::Pending)
                || !s.depends_on.iter().all(|d| is_settled(wf, state, d))
            {
                continue;
            }
            let run = match &s.when {
                None => Ok(true),
                Some(w) => Expr::compile(w).and_then(|e| e.eval_bool(&state.scope(inputs))),
            };
            match run {
                Ok(true) => start(wf, inputs, state, &s.id, now, &mut effects),
                Ok(false) => {
                    let st = state.step(&s.id);
                    st.status = StepStatus::Skipped;
                    st.skip_reason = Some(SkipReason::Condition);
                    st.completed_at = Some(now);
                }
                Err(m) => {
                    state.step(&s.id).attempt = 1;
                    fail_attempt(wf, state, &s.id, StepError::new(codes::CONDITION_ERROR, m), now);
                }
            }
            if state.failure.is_some() {
                break;
            }
        }
        if state.failure.is_none() {
            let open = wf
                .def
                .steps
                .iter()
                .filter(|s| !wf.compensation.contains(&s.id))
                .any(|s| state.steps.get(&s.id).is_some_and(|x| !x.status.is_terminal()));
            if !open {
                finish(wf, state, ExecStatus::Completed, now);
                return effects;
            }
        }
        if *state == before {
            return effects;
        }
    }
}

/// Steps whose `wake_at` has come.
fn wake(
    wf: &Workflow,
    inputs: &Value,
    state: &mut ExecState,
    now: DateTime<Utc>,
    effects: &mut Vec<Effect>,
) {
    let due: Vec<String> = state
        .steps
        .iter()
        .filter(|(_, s)| s.status.is_active() && s.wake_at.is_some_and(|w| w <= now))
        .map(|(id, _)| id.clone())
        .collect();
    for id in due {
        let Some(def) = wf.step(&id) else { continue };
        let st = state.step(&id);
        st.wake_at = None;
        let (status, run) = (st.status, st.run_id);
        match (status, def.kind()) {
            (StepStatus::Retrying, _) => start(wf, inputs, state, &id, now, effects),
            (StepStatus::Running, StepKind::Wait) => {
                let waited = def.wait.as_ref().and_then(|w| w.duration).map(|d| d.to_string());
                complete(state, &id, json!({ "waited": waited }), now);
            }
            (StepStatus::Waiting, StepKind::Wait) => {
                let e = StepError::new(codes::WAIT_TIMED_OUT, "no matching event arrived in time");
                fail_attempt(wf, state, &id, e, now);
            }
            (StepStatus::Running, _) => {
                if let Some(run_id) = run {
                    effects.push(Effect::Cancel { step: id.clone(), run_id });
                }
                let limit = def.timeout.map(|t| t.to_string()).unwrap_or_default();
                let e = StepError::new(
                    codes::STEP_TIMEOUT,
                    format!("the attempt took longer than {limit}"),
                );
                fail_attempt(wf, state, &id, e, now);
            }
            (StepStatus::Waiting, _) => {
                let means = def.approval.as_ref().map(|a| a.on_timeout).unwrap_or_default();
                match means {
                    TimeoutMeans::Approve => complete(
                        state,
                        &id,
                        json!({"approved": true, "timed_out": true, "by": null, "comment": null}),
                        now,
                    ),
                    TimeoutMeans::Deny => {
                        let e = StepError::new(
                            codes::APPROVAL_TIMED_OUT,
                            "nobody answered the approval in time",
                        );
                        fail_attempt(wf, state, &id, e, now);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Starts the next attempt of `id`.
fn start(
    wf: &Workflow,
    inputs: &Value,
    state: &mut ExecState,
    id: &str,
    now: DateTime<Utc>,
    effects: &mut Vec<Effect>,
) {
    let Some(def) = wf.step(id) else { return };
    let scope = state.scope(inputs);
    let st = state.step(id);
    st.attempt += 1;
    st.started_at.get_or_insert(now);
    st.run_id = None;
    st.wake_at = def.timeout.map(|t| now + to_chrono(t.get()));
    let attempt = st.attempt;
    let launched = match def.kind() {
        StepKind::Agent => {
            let a = def.agent.as_ref().expect("an agent step");
            Template::compile(&a.input).and_then(|t| t.render_text(&scope)).map(|input| {
                let agent = match (&a.agent_type, &a.capability) {
                    (Some(t), _) => AgentRef::Type(t.clone()),
                    (None, c) => AgentRef::Capability(c.clone().unwrap_or_default()),
                };
                Some(Launch::Agent { agent, input })
            })
        }
        StepKind::Tool => {
            let t = def.tool.as_ref().expect("a tool step");
            render_value(&t.arguments, &scope).and_then(|arguments| {
                if arguments.is_object() {
                    Ok(Some(Launch::Tool { name: t.name.clone(), arguments }))
                } else {
                    Err("the arguments must render to an object".to_owned())
                }
            })
        }
        StepKind::Approval => {
            let a = def.approval.as_ref().expect("an approval step");
            Template::compile(&a.message).and_then(|t| t.render_text(&scope)).map(|message| {
                let st = state.step(id);
                st.status = StepStatus::Waiting;
                st.request = Some(json!({ "message": message, "actions": ["approve", "deny"] }));
                st.wake_at = a.timeout.map(|t| now + to_chrono(t.get()));
                None
            })
        }
        StepKind::Wait => {
            let w = def.wait.as_ref().expect("a wait step");
            let st = state.step(id);
            match (&w.duration, &w.event) {
                (Some(d), _) => {
                    st.status = StepStatus::Running;
                    st.wake_at = Some(now + to_chrono(d.get()));
                }
                (None, event) => {
                    st.status = StepStatus::Waiting;
                    st.request = Some(json!({ "event": event, "where": w.condition }));
                    st.wake_at = w.timeout.map(|t| now + to_chrono(t.get()));
                }
            }
            Ok(None)
        }
    };
    match launched {
        Ok(Some(launch)) => {
            state.step(id).status = StepStatus::Running;
            effects.push(Effect::Start { step: id.to_owned(), attempt, launch });
        }
        Ok(None) => {}
        Err(m) => fail_attempt(wf, state, id, StepError::new(codes::TEMPLATE_ERROR, m), now),
    }
}

fn to_chrono(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

fn complete(state: &mut ExecState, id: &str, output: Value, now: DateTime<Utc>) {
    let st = state.step(id);
    st.status = StepStatus::Completed;
    st.output = Some(output);
    st.error = None;
    st.wake_at = None;
    st.completed_at = Some(now);
}

/// The wait before attempt `attempt + 1`.
fn backoff(wf: &Workflow, id: &str, attempt: u32) -> Duration {
    let retry = wf.step(id).and_then(|s| s.retry.as_ref());
    let base = retry.and_then(|r| r.backoff).map_or(1000, |b| b.get().as_millis() as i64);
    let max = retry.and_then(|r| r.max_backoff).map_or(300_000, |b| b.get().as_millis() as i64);
    let factor = 1i64 << attempt.saturating_sub(1).min(20);
    Duration::milliseconds(base.saturating_mul(factor).min(max))
}

/// An attempt of `id` failed: retry it, or fail the step and apply its `on_failure`.
fn fail_attempt(
    wf: &Workflow,
    state: &mut ExecState,
    id: &str,
    error: StepError,
    now: DateTime<Utc>,
) {
    let Some(def) = wf.step(id) else { return };
    let max = def.retry.as_ref().map_or(1, |r| r.max_attempts);
    let never = NEVER_RETRIED.contains(&error.code.as_str())
        || def.retry.as_ref().is_some_and(|r| r.non_retryable.contains(&error.code));
    let failing = state.failure.is_some();
    let st = state.step(id);
    st.request = None;
    if st.attempt < max && !never && !failing {
        let attempt = st.attempt;
        st.status = StepStatus::Retrying;
        st.error = Some(error);
        st.wake_at = Some(now + backoff(wf, id, attempt));
        return;
    }
    st.status = StepStatus::Failed;
    st.error = Some(error.clone());
    st.wake_at = None;
    st.completed_at = Some(now);
    if wf.compensation.contains(id) {
        return;
    }
    match &def.on_failure {
        OnFailure::Continue => {}
        OnFailure::Fail => {
            state.failure.get_or_insert((id.to_owned(), error));
        }
        OnFailure::Compensate(c) => {
            state.failure.get_or_insert((id.to_owned(), error));
            state.compensate.insert(c.clone());
        }
    }
}

/// The execution is failing: stop what runs, skip what has not started, run the compensation
/// asked for, and fail once nothing runs.
fn wind_down(
    wf: &Workflow,
    inputs: &Value,
    state: &mut ExecState,
    now: DateTime<Utc>,
    effects: &mut Vec<Effect>,
) {
    let ids: Vec<String> = state.steps.keys().cloned().collect();
    for id in &ids {
        let compensating = state.compensate.contains(id);
        let status = state.step(id).status;
        if status == StepStatus::Pending && compensating {
            start(wf, inputs, state, id, now, effects);
            continue;
        }
        let st = state.step(id);
        match status {
            StepStatus::Pending if !wf.compensation.contains(id) => {
                st.status = StepStatus::Skipped;
                st.skip_reason = Some(SkipReason::NotRun);
                st.completed_at = Some(now);
            }
            s if s.is_active() && !compensating => {
                if let Some(run_id) = st.run_id.filter(|_| s == StepStatus::Running) {
                    effects.push(Effect::Cancel { step: id.clone(), run_id });
                }
                st.status = StepStatus::Cancelled;
                st.wake_at = None;
                st.completed_at = Some(now);
            }
            _ => {}
        }
    }
    let running = state.steps.values().any(|s| s.status.is_active());
    if !running {
        finish(wf, state, ExecStatus::Failed, now);
    }
}

fn finish(wf: &Workflow, state: &mut ExecState, status: ExecStatus, now: DateTime<Utc>) {
    for id in &wf.compensation {
        let st = state.step(id);
        if st.status == StepStatus::Pending {
            st.status = StepStatus::Skipped;
            st.skip_reason = Some(SkipReason::NotNeeded);
            st.completed_at = Some(now);
        }
    }
    state.status = status;
    if status == ExecStatus::Completed {
        let needed: BTreeSet<&str> =
            wf.def.steps.iter().flat_map(|s| s.depends_on.iter().map(String::as_str)).collect();
        let leaves = wf
            .def
            .steps
            .iter()
            .filter(|s| !needed.contains(s.id.as_str()) && !wf.compensation.contains(&s.id))
            .map(|s| {
                (
                    s.id.clone(),
                    state.steps.get(&s.id).and_then(|x| x.output.clone()).unwrap_or(Value::Null),
                )
            })
            .collect::<serde_json::Map<_, _>>();
        state.output = Some(Value::Object(leaves));
    }
}

/// The run of attempt `run_id` of `id` ended: `Ok(output)` or why it failed. Returns false
/// when the step is not waiting for that run any more (a late or duplicate result).
pub fn attempt_ended(
    wf: &Workflow,
    state: &mut ExecState,
    id: &str,
    run_id: RunId,
    result: Result<Value, StepError>,
    now: DateTime<Utc>,
) -> bool {
    let Some(st) = state.steps.get(id) else { return false };
    if st.status != StepStatus::Running || st.run_id != Some(run_id) {
        return false;
    }
    match result {
        Ok(output) => complete(state, id, output, now),
        Err(e) => fail_attempt(wf, state, id, e, now),
    }
    true
}

/// An attempt that could not start (its agent is missing, ...).
pub fn start_failed(
    wf: &Workflow,
    state: &mut ExecState,
    id: &str,
    error: StepError,
    now: DateTime<Utc>,
) {
    if state.steps.get(id).is_some_and(|s| s.status == StepStatus::Running) {
        fail_attempt(wf, state, id, error, now);
    }
}

/// The event types the steps of `state` wait for now, by step.
pub fn event_waits(wf: &Workflow, state: &ExecState) -> Vec<(String, String)> {
    if state.status != ExecStatus::Running {
        return Vec::new();
    }
    wf.def
        .steps
        .iter()
        .filter(|s| state.steps.get(&s.id).is_some_and(|x| x.status == StepStatus::Waiting))
        .filter_map(|s| Some((s.id.clone(), s.wait.as_ref()?.event.clone()?)))
        .collect()
}

/// An event a waiting step waits for arrived and its `where` held: the step completes with the
/// event as its output. False when the step no longer waits.
pub fn event_arrived(state: &mut ExecState, id: &str, event: Value, now: DateTime<Utc>) -> bool {
    if state.status != ExecStatus::Running
        || state.steps.get(id).is_none_or(|s| s.status != StepStatus::Waiting)
    {
        return false;
    }
    complete(state, id, event, now);
    true
}

/// An agent step's answer as its output: the text, or (`output: json`) the JSON it holds (a
/// fenced ```json block is accepted).
///
/// # Errors
/// `invalid_output` when JSON was asked for and the answer holds none.
pub fn agent_output(format: OutputFormat, content: &str) -> Result<Value, StepError> {
    match format {
        OutputFormat::Text => Ok(Value::String(content.to_owned())),
        OutputFormat::Json => {
            let t = content.trim();
            let inner = t
                .strip_prefix("```json")
                .or_else(|| t.strip_prefix("```"))
                .and_then(|r| r.trim_end().strip_suffix("```"))
                .unwrap_or(t);
            serde_json::from_str(inner.trim()).map_err(|e| {
                let head: String = t.chars().take(120).collect();
                StepError::new(
                    codes::INVALID_OUTPUT,
                    format!("the agent's answer is not the JSON the step asks for ({e}): {head:?}"),
                )
            })
        }
    }
}

/// A tool's text result as output: its JSON when the text is JSON, or the JSON after its first
/// paragraph (the built-in tools answer with a sentence, a blank line, then their data as
/// JSON), else the text.
pub fn tool_output(text: &str) -> Value {
    if let Ok(v) = serde_json::from_str(text) {
        return v;
    }
    text.split_once("\n\n")
        .and_then(|(_, data)| serde_json::from_str(data).ok())
        .unwrap_or_else(|| Value::String(text.to_owned()))
}

/// Why an approval answer is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the workflow has no step {0:?}")]
    UnknownStep(String),
    #[error("step {0:?} is not waiting for an approval")]
    NotWaiting(String),
    #[error("no step of this execution waits for an approval")]
    NothingWaits,
}

/// A human answered approval `step` (the only waiting one when None).
///
/// # Errors
/// See [`AnswerError`].
pub fn answer(
    wf: &Workflow,
    state: &mut ExecState,
    step: Option<&str>,
    approve: bool,
    by: Option<String>,
    comment: Option<String>,
    now: DateTime<Utc>,
) -> Result<String, AnswerError> {
    let id = match step {
        Some(s) => {
            let st = state.steps.get(s).ok_or_else(|| AnswerError::UnknownStep(s.to_owned()))?;
            if st.status != StepStatus::Waiting
                || state.status != ExecStatus::Running
                || wf.step(s).is_none_or(|d| d.approval.is_none())
            {
                return Err(AnswerError::NotWaiting(s.to_owned()));
            }
            s.to_owned()
        }
        None => state
            .steps
            .iter()
            .find(|(id, s)| {
                s.status == StepStatus::Waiting && wf.step(id).is_some_and(|d| d.approval.is_some())
            })
            .map(|(id, _)| id.clone())
            .filter(|_| state.status == ExecStatus::Running)
            .ok_or(AnswerError::NothingWaits)?,
    };
    if approve {
        complete(
            state,
            &id,
            json!({"approved": true, "timed_out": false, "by": by, "comment": comment}),
            now,
        );
    } else {
        let who = by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default();
        let why = comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default();
        let e = StepError::new(codes::APPROVAL_DENIED, format!("denied{who}{why}"));
        fail_attempt(wf, state, &id, e, now);
    }
    Ok(id)
}

/// Cancels the execution: every step not ended is cancelled; returns the runs to cancel.
pub fn cancel(state: &mut ExecState, now: DateTime<Utc>) -> Vec<Effect> {
    let mut effects = Vec::new();
    if state.status.is_terminal() {
        return effects;
    }
    for (id, st) in &mut state.steps {
        if st.status.is_terminal() {
            continue;
        }
        if let Some(run_id) = st.run_id.filter(|_| st.status == StepStatus::Running) {
            effects.push(Effect::Cancel { step: id.clone(), run_id });
        }
        st.status = StepStatus::Cancelled;
        st.wake_at = None;
        st.completed_at = Some(now);
    }
    state.status = ExecStatus::Cancelled;
    effects
}

/// Makes a failed execution run again: its failed steps, and those it did not run or cancelled
/// because of the failure, start over; completed outputs are kept.
///
/// # Errors
/// When the execution has not failed.
pub fn retry(wf: &Workflow, state: &mut ExecState) -> Result<(), ExecStatus> {
    if state.status != ExecStatus::Failed {
        return Err(state.status);
    }
    for (id, st) in &mut state.steps {
        let again = match st.status {
            StepStatus::Failed | StepStatus::Cancelled => true,
            StepStatus::Skipped => st.skip_reason != Some(SkipReason::Condition),
            StepStatus::Completed => wf.compensation.contains(id),
            _ => false,
        };
        if again {
            *st = StepState::default();
        }
    }
    state.failure = None;
    state.compensate.clear();
    state.output = None;
    state.status = ExecStatus::Running;
    Ok(())
}

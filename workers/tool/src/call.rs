//! One `ToolCall` job: checks, the human's approval when the agent requires it, the call on its
//! MCP server, and the result stored in one transaction (which, for a step's last call, also
//! enqueues the next model turn). The runner ([`agentyard_bus::runner`]) owns decoding, the
//! span, progress acks, dead letters and settling.
//!
//! A call that needs a human (an approval before it runs, or an elicitation while it runs) does
//! not wait in a worker slot: the request is stored on the invocation, the run goes to
//! `requires_input`, and the job is acked. The answer (or its deadline, via the sweeper)
//! enqueues the call again, a round later, and it finds the answer stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentyard_bus::runner::{GiveUpFailed, Handler, Verdict};
use agentyard_core::InvocationId;
use agentyard_core::jobs::ToolCall;
use agentyard_core::run::{InputAction, RequiredInput, RunStatus, error_codes};
use agentyard_core::tools::{BUILTIN_SERVER, NAMESPACE_SEPARATOR, required_scope};
use agentyard_mcp::{Client, McpError, ServerConfig};
use agentyard_store::StoreError;
use agentyard_store::tool_tokens::{self, ToolClaims};
use agentyard_store::tools::PendingCall;
use tracing::Instrument;

use crate::Ctx;
use crate::input::Broker;

/// Results longer than this are cut, with a marker saying how much was cut.
const MAX_RESULT_BYTES: usize = 16 * 1024;

/// The answer key of a tool approval on the invocation.
pub(crate) const APPROVAL_KEY: &str = "tool_approval";

/// The tool worker's handler.
pub(crate) struct ToolCalls(pub(crate) Ctx);

impl Handler for ToolCalls {
    type Job = ToolCall;
    const KIND: &'static str = "tool_call";

    fn span(&self, job: &ToolCall, delivered: i64) -> tracing::Span {
        tracing::info_span!("tool_call", run_id = %job.run_id, invocation_id = %job.invocation_id,
            round = job.round, delivered)
    }

    async fn handle(&self, job: &ToolCall, _delivered: i64) -> Verdict {
        match try_call(&self.0, job).await {
            Ok(v) => v,
            Err(e) => store_failure(&self.0, &e),
        }
    }

    /// The call ends as an error result the model sees: the run goes on.
    async fn give_up(
        &self,
        job: &ToolCall,
        code: &'static str,
        reason: &str,
    ) -> Result<(), GiveUpFailed> {
        let text = format!("this tool call could not be completed ({code}: {reason})");
        record_id(&self.0, job.invocation_id, &text, true, 0, None)
            .await
            .map(|_| ())
            .map_err(|e| GiveUpFailed(agentyard_services::error::cause_chain(&e)))
    }

    async fn keep_alive(&self, job: &ToolCall) {
        if let Err(e) = self.0.store.touch_run(job.run_id, None).await {
            tracing::debug!(error = %e, "cannot mark the run as alive");
        }
    }
}

/// A database failure: retried while transient (Postgres down: the job waits for it), given up
/// otherwise (the call then ends with an error result).
fn store_failure(ctx: &Ctx, e: &StoreError) -> Verdict {
    let cause = agentyard_services::error::cause_chain(e);
    if e.is_transient() {
        let delay = backoff(ctx, 2);
        tracing::warn!(error = %cause, ?delay, "database unavailable; retrying");
        Verdict::Retry(delay)
    } else {
        Verdict::GiveUp { code: error_codes::INTERNAL, reason: cause }
    }
}

async fn try_call(ctx: &Ctx, job: &ToolCall) -> Result<Verdict, StoreError> {
    // Claiming counts the attempt before the checks, in the statement that reads the call: a
    // call that does not run then gives it back.
    let Ok(round) = i32::try_from(job.round) else { return Ok(Verdict::Ack) };
    let Some(call) = ctx.store.claim_call(job.invocation_id, round).await? else {
        // Done, waiting for a human, or owned by another round: this delivery is stale.
        tracing::debug!("stale tool job: skipping");
        return Ok(Verdict::Ack);
    };
    run_claimed(ctx, call).await
}

/// Runs a claimed call: checks, approval, the call on its server, its result stored.
pub(crate) async fn run_claimed(ctx: &Ctx, call: PendingCall) -> Result<Verdict, StoreError> {
    if !matches!(
        call.run_status,
        RunStatus::Queued | RunStatus::InProgress | RunStatus::RequiresInput
    ) || call.run_step != call.step
    {
        return refuse(ctx, &call, "the run ended before this call ran; it was not run").await;
    }
    let agent = ctx.catalog.effective(
        call.agent_type.as_deref().unwrap_or_default(),
        call.agent_name.as_deref().unwrap_or_default(),
        call.agent_config.as_ref().unwrap_or(&serde_json::Value::Null),
    );
    if !call.workflow_step && !agentyard_agents::tool_enabled(&agent.tools_enabled, &call.tool) {
        let m = format!("the tool `{}` is not enabled for this agent; it was not run", call.tool);
        return refuse(ctx, &call, &m).await;
    }
    let scope = required_scope(&call.tool);
    if !call.scopes.contains(&scope) {
        let m = format!(
            "the user's token lacks the scope {scope} that `{}` needs; it was not run",
            call.tool
        );
        return refuse(ctx, &call, &m).await;
    }
    let serde_json::Value::Object(arguments) = call.arguments.clone() else {
        return refuse(ctx, &call, "the arguments must be a JSON object; the call was not run")
            .await;
    };
    if arguments.contains_key("_raw") {
        return refuse(ctx, &call, "the arguments were not valid JSON; the call was not run").await;
    }
    if !call.workflow_step && agent.tools_require_approval.iter().any(|t| t == &call.tool) {
        match call.answer(APPROVAL_KEY) {
            Some(a) if a.action == InputAction::Approve => {}
            Some(a) => {
                let why = if a.timed_out { "no answer in time" } else { "denied" };
                let m = format!("the user did not approve this call ({why}); it was not run");
                return refuse(ctx, &call, &m).await;
            }
            None => {
                let request = RequiredInput::ToolApproval {
                    invocation_id: call.id,
                    tool: call.tool.clone(),
                    arguments: call.arguments.clone(),
                    message: format!("The agent wants to call `{}`. Approve or deny.", call.tool),
                };
                ctx.store.release_attempt(call.id).await?;
                wait_for_human(ctx, &call, &request, APPROVAL_KEY).await?;
                return Ok(Verdict::Ack);
            }
        }
    }
    let attempt = call.attempt;
    if let Some(open) = ctx.breakers.open_for(&call.server) {
        ctx.store.release_attempt(call.id).await?;
        return give_up_or_retry(ctx, &call, attempt, "its circuit breaker is open", open).await;
    }
    if i64::from(attempt) > ctx.settings.max_attempts + 1 {
        // Earlier attempts started and never ended (the worker died during the call).
        return Ok(Verdict::GiveUp {
            code: error_codes::MAX_DELIVERIES,
            reason: format!("the call was started {} times without ending", attempt - 1),
        });
    }
    let Some(target) = resolve(ctx, &call).await? else {
        let m = format!("no MCP server named `{}`; the call was not run", call.server);
        record(ctx, &call, &m, true, attempt).await?;
        return Ok(Verdict::Ack);
    };
    let tool = tool_name(&call);
    let started = Instant::now();
    tracing::info!(server = %call.server, tool, attempt, "tool request");
    let broker = Broker::new(call.clone());
    // The call's trace span (GenAI semantic conventions); the MCP request carries it on.
    let span = tracing::trace_span!("execute_tool",
        otel.name = %format_args!("execute_tool {}", call.tool),
        otel.kind = "internal",
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = %call.tool,
        gen_ai.tool.call.id = %call.call_id,
        gen_ai.tool.type = "function",
        agentyard.mcp.server = %call.server,
        agentyard.tool.attempt = attempt,
        error.type = tracing::field::Empty,
    );
    let result = execute(ctx, &call, &target, tool, arguments, broker.clone())
        .instrument(span.clone())
        .await;
    match &result {
        Ok(out) if out.is_error => span.record("error.type", "tool_error"),
        Ok(_) => &span,
        Err(McpError::Refused(_)) => span.record("error.type", "refused"),
        Err(McpError::Unreachable(_)) => span.record("error.type", "unreachable"),
        Err(McpError::Unavailable(_)) => span.record("error.type", "unavailable"),
    };
    drop(span);
    let ms = started.elapsed().as_millis();
    let outcome = match &result {
        _ if broker.suspended().is_some() => "input_required",
        Ok(out) if !out.is_error => "ok",
        Ok(_) | Err(McpError::Refused(_)) => "error",
        Err(McpError::Unreachable(_) | McpError::Unavailable(_)) => "unreachable",
    };
    agentyard_metrics::tool_call(&call.tool, outcome, started.elapsed().as_secs_f64());
    if let Some((request, key)) = broker.suspended() {
        // The server asked the user something we have no answer to yet: the call is run again
        // once it is answered, and gets the answer then.
        tracing::info!(server = %call.server, tool, duration_ms = ms, "the server asked for input");
        wait_for_human(ctx, &call, &request, &key).await?;
        return Ok(Verdict::Ack);
    }
    match result {
        Ok(out) => {
            tracing::info!(server = %call.server, tool, duration_ms = ms, is_error = out.is_error, "tool response");
            ctx.breakers.record(&call.server, true);
            record(ctx, &call, &out.text, out.is_error, attempt).await?;
            Ok(Verdict::Ack)
        }
        Err(McpError::Refused(m)) => {
            tracing::info!(server = %call.server, tool, duration_ms = ms, error = %m, "tool response");
            ctx.breakers.record(&call.server, true);
            record(ctx, &call, &format!("the tool failed: {m}"), true, attempt).await?;
            Ok(Verdict::Ack)
        }
        Err(McpError::Unreachable(m) | McpError::Unavailable(m))
            if call.server == BUILTIN_SERVER =>
        {
            // The built-in server is the platform's own, like Postgres and NATS: while it (or
            // its database) is down the call waits for it, spending no attempt and opening no
            // breaker; running it again is safe (its writes are idempotent per invocation).
            tracing::warn!(tool, duration_ms = ms, error = %m,
                "the built-in tool server cannot serve the call; retrying");
            ctx.store.release_attempt(call.id).await?;
            Ok(Verdict::Retry(backoff(ctx, 2)))
        }
        Err(McpError::Unreachable(m) | McpError::Unavailable(m)) => {
            tracing::warn!(server = %call.server, tool, duration_ms = ms, error = %m,
                "the tool server could not be reached");
            ctx.breakers.record(&call.server, false);
            give_up_or_retry(ctx, &call, attempt, &m, Duration::ZERO).await
        }
    }
}

/// A call a check refused: it gives back its attempt and ends with `message` as an error
/// result the model sees, at no attempt.
async fn refuse(ctx: &Ctx, call: &PendingCall, message: &str) -> Result<Verdict, StoreError> {
    ctx.store.release_attempt(call.id).await?;
    record(ctx, call, message, true, 0).await?;
    Ok(Verdict::Ack)
}

/// Puts the call in `requires_input` until a human (or the deadline) answers.
async fn wait_for_human(
    ctx: &Ctx,
    call: &PendingCall,
    request: &RequiredInput,
    key: &str,
) -> Result<(), StoreError> {
    let deadline = chrono::Utc::now()
        + chrono::Duration::from_std(ctx.settings.input_timeout)
            .unwrap_or(chrono::Duration::minutes(10));
    let t = ctx.store.tool_input(call.id, call.round, request, key, deadline).await?;
    if t.applied {
        tracing::info!(kind = request.kind(), "waiting for a human's input");
    }
    let _ = ctx.outbox.dispatch(&t.outbox).await;
    Ok(())
}

/// Retries with backoff while attempts remain; then the model gets an error result.
async fn give_up_or_retry(
    ctx: &Ctx,
    call: &PendingCall,
    attempt: i32,
    why: &str,
    at_least: Duration,
) -> Result<Verdict, StoreError> {
    if i64::from(attempt) < ctx.settings.max_attempts {
        let delay = backoff(ctx, attempt.into()).max(at_least);
        tracing::warn!(server = %call.server, attempt, ?delay, "tool call failed ({why}); retrying");
        return Ok(Verdict::Retry(delay));
    }
    let m = format!(
        "the tool server `{}` could not be reached after {attempt} attempts ({why}); the call did not run",
        call.server
    );
    record(ctx, call, &m, true, attempt).await?;
    Ok(Verdict::Ack)
}

/// Where a call runs.
enum Target {
    /// The built-in tools, in this process, as the holder of this tool token.
    Builtin { token: String },
    /// An MCP server: one of the organization's or of the operator's.
    Server(ServerConfig),
}

/// Calls `tool` within `AY_TOOL_TIMEOUT`: on the session to the built-in tools this process
/// shares; on a pooled process of a stdio server (one per server and organization, one call at
/// a time); or on a session of its own to another server (which may not tell calls apart).
async fn execute(
    ctx: &Ctx,
    call: &PendingCall,
    target: &Target,
    tool: &str,
    arguments: serde_json::Map<String, serde_json::Value>,
    broker: Broker,
) -> Result<agentyard_mcp::Output, McpError> {
    let timeout = ctx.settings.tool_timeout;
    let as_broker: Arc<dyn agentyard_mcp::InputBroker> = Arc::new(broker);
    let server = match target {
        Target::Builtin { token } => {
            let invocation = call.id.to_string();
            return ctx.builtin.call(token, &invocation, as_broker, tool, arguments, timeout).await;
        }
        Target::Server(server) => server,
    };
    if matches!(server, ServerConfig::Stdio { .. }) {
        // A process per server and organization, kept for the next call.
        let key = format!("{}/{}", call.server, call.org_id);
        let sampler = ctx.sampler.clone();
        return ctx.stdio.call(&key, server, as_broker, sampler, tool, arguments, timeout).await;
    }
    let client = Client::connect(server, Some(as_broker), ctx.sampler.clone(), timeout).await?;
    let out = match tokio::time::timeout(timeout, client.call(tool, arguments)).await {
        Ok(r) => r,
        Err(_) => Err(McpError::Unreachable(format!("no answer within {timeout:?}"))),
    };
    client.close().await;
    out
}

/// Where the call runs: the built-in tools (with a token for the run's principal), one of the
/// org's servers, or one of the operator's.
async fn resolve(ctx: &Ctx, call: &PendingCall) -> Result<Option<Target>, StoreError> {
    if call.server == BUILTIN_SERVER {
        let exp = chrono::Utc::now().timestamp()
            + i64::try_from(ctx.settings.tool_timeout.as_secs()).unwrap_or(3600)
            + 120;
        let claims = ToolClaims {
            org_id: call.org_id,
            user_id: call.user_id,
            agent_id: call.agent_id,
            run_id: call.run_id,
            invocation_id: call.id,
            scopes: call.scopes.clone(),
            exp,
        };
        return Ok(Some(Target::Builtin { token: tool_tokens::mint(&ctx.key, &claims) }));
    }
    if let Some((url, bearer_token)) =
        ctx.store.mcp_server_endpoint(call.org_id, &call.server).await?
    {
        let allow_private = ctx.settings.mcp_allow_private;
        let server = ServerConfig::Registered { url, bearer_token, allow_private };
        return Ok(Some(Target::Server(server)));
    }
    Ok(ctx.servers.0.get(&call.server).cloned().map(Target::Server))
}

/// The tool's name on its server.
fn tool_name(call: &PendingCall) -> &str {
    if call.server == BUILTIN_SERVER {
        return &call.tool;
    }
    call.tool
        .strip_prefix(call.server.as_str())
        .and_then(|t| t.strip_prefix(NAMESPACE_SEPARATOR))
        .unwrap_or(&call.tool)
}

/// Stores the call's end and publishes what it enqueued (the next step, when this was the
/// step's last call).
pub(crate) async fn record(
    ctx: &Ctx,
    call: &PendingCall,
    text: &str,
    is_error: bool,
    attempt: i32,
) -> Result<(), StoreError> {
    // A call that did not run (at no attempt) has no start; the claim's, when it ran, is on
    // its row; a call its turn claimed brings its own.
    let started = if attempt > 0 { call.started } else { None };
    record_id(ctx, call.id, text, is_error, attempt, started).await.map(|next| {
        if next {
            tracing::info!(run_id = %call.run_id, "last call of the step: next step enqueued");
        }
    })
}

/// Stores a call's end (the text cut to [`MAX_RESULT_BYTES`], NUL characters replaced so
/// Postgres can store it); true when it enqueued the next step.
async fn record_id(
    ctx: &Ctx,
    invocation: InvocationId,
    text: &str,
    is_error: bool,
    attempt: i32,
    started: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<bool, StoreError> {
    let result = truncate(&text.replace('\0', "\u{FFFD}"));
    let error = is_error.then_some(result.as_str());
    let t = ctx.store.tool_result(invocation, &result, is_error, error, attempt, started).await?;
    let _ = ctx.outbox.dispatch(&t.outbox).await;
    Ok(t.next_step)
}

fn truncate(text: &str) -> String {
    if text.len() <= MAX_RESULT_BYTES {
        return text.to_owned();
    }
    let mut cut = MAX_RESULT_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\n…[truncated: {} more bytes]", &text[..cut], text.len() - cut)
}

fn backoff(ctx: &Ctx, attempt: i64) -> Duration {
    agentyard_bus::runner::backoff(ctx.settings.retry_base, ctx.settings.retry_max, attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_results_are_cut_with_a_marker() {
        let long = "é".repeat(MAX_RESULT_BYTES);
        let cut = truncate(&long);
        assert!(cut.len() < long.len());
        assert!(cut.contains("[truncated: "), "{}", &cut[cut.len() - 40..]);
        assert_eq!(truncate("short"), "short");
    }
}

//! One `ToolCall` job, from decode to settle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentyard_core::{AgentId, OrgId, RunId, UserId};
use agentyard_mcp::{Client, McpError, ServerConfig};
use agentyard_store::tool_tokens::{self, ToolClaims};
use agentyard_store::tools::{BUILTIN_SERVER, NAMESPACE_SEPARATOR, PendingCall};
use async_nats::jetstream::{AckKind, Message};
use serde::Deserialize;
use tracing::Instrument;

use crate::Ctx;
use crate::input::{self, Broker};

/// Results longer than this are cut, with a marker saying how much was cut.
const MAX_RESULT_BYTES: usize = 16 * 1024;

/// Built-in tools that only read: they need `runs:read`; every other tool needs `runs:write`.
const READ_ONLY: &[&str] = &[
    "list_tasks",
    "get_ticket",
    "search_tickets",
    "list_tickets",
    "get_ticket_stats",
    "list_integrations",
    "get_active_integrations",
    "get_system_health",
];

/// The job (`ay_tool_job` writes it).
#[derive(Debug, Deserialize)]
struct ToolJob {
    #[allow(dead_code)] // the version of the envelope; 1 is the only one
    v: u32,
    invocation_id: uuid::Uuid,
    run_id: uuid::Uuid,
}

enum Outcome {
    Done,
    Retry(Duration),
}

/// Handles one message and settles it.
pub(crate) async fn handle(ctx: Ctx, msg: Message) {
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    let job: ToolJob = match serde_json::from_slice(&msg.payload) {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(error = %e, "undecodable tool job: dead-lettering it");
            let _ = ctx
                .bus
                .dead_letter("tool", msg.payload.clone(), &format!("undecodable: {e}"))
                .await;
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    let span = tracing::info_span!("tool_call", run_id = %job.run_id, invocation_id = %job.invocation_id, delivered);
    async {
        let outcome = agentyard_bus::consume::with_progress(
            &msg,
            ctx.settings.ack_wait,
            run_call(&ctx, job.invocation_id, delivered),
        )
        .await;
        let kind = match outcome {
            Outcome::Done => AckKind::Ack,
            Outcome::Retry(delay) => {
                tracing::warn!(?delay, "tool call failed; retrying");
                AckKind::Nak(Some(delay))
            }
        };
        if let Err(e) = msg.ack_with(kind).await {
            tracing::warn!(error = %e, "cannot settle a tool job; it will be redelivered");
        }
    }
    .instrument(span)
    .await;
}

async fn run_call(ctx: &Ctx, invocation: uuid::Uuid, delivered: i64) -> Outcome {
    match try_call(ctx, invocation, delivered).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "database failure");
            Outcome::Retry(backoff(ctx, delivered))
        }
    }
}

async fn try_call(
    ctx: &Ctx,
    invocation: uuid::Uuid,
    delivered: i64,
) -> Result<Outcome, agentyard_store::StoreError> {
    let Some(call) = ctx.store.pending_call(invocation).await? else {
        return Ok(Outcome::Done);
    };
    if call.status == "completed" {
        return Ok(Outcome::Done);
    }
    if !matches!(call.run_status.as_str(), "queued" | "in_progress" | "requires_input")
        || call.run_step != call.step
    {
        record(ctx, &call, "the run ended before this call ran; it was not run", true, 0).await?;
        return Ok(Outcome::Done);
    }
    let agent = ctx.catalog.effective(
        call.agent_type.as_deref().unwrap_or_default(),
        call.agent_name.as_deref().unwrap_or_default(),
        call.agent_config.as_ref().unwrap_or(&serde_json::Value::Null),
    );
    if !agentyard_agents::tool_enabled(&agent.tools_enabled, &call.tool) {
        let m = format!("the tool `{}` is not enabled for this agent; it was not run", call.tool);
        record(ctx, &call, &m, true, 0).await?;
        return Ok(Outcome::Done);
    }
    let scope = required_scope(&call.server, &call.tool);
    if !call.scopes.iter().any(|s| s == scope) {
        let m = format!(
            "the user's token lacks the scope {scope} that `{}` needs; it was not run",
            call.tool
        );
        record(ctx, &call, &m, true, 0).await?;
        return Ok(Outcome::Done);
    }
    let serde_json::Value::Object(arguments) = call.arguments.clone() else {
        record(ctx, &call, "the arguments must be a JSON object; the call was not run", true, 0)
            .await?;
        return Ok(Outcome::Done);
    };
    if arguments.contains_key("_raw") {
        record(ctx, &call, "the arguments were not valid JSON; the call was not run", true, 0)
            .await?;
        return Ok(Outcome::Done);
    }
    if agent.tools_require_approval.iter().any(|t| t == &call.tool) {
        match input::approval(ctx, &call).await? {
            input::Approval::Approved => {}
            input::Approval::Denied(why) => {
                let m = format!("the user did not approve this call ({why}); it was not run");
                record(ctx, &call, &m, true, 0).await?;
                return Ok(Outcome::Done);
            }
            input::Approval::RunEnded => return Ok(Outcome::Done),
        }
    }
    if let Some(open) = ctx.breakers.open_for(&call.server) {
        return give_up_or_retry(ctx, &call, delivered, "circuit breaker open", open).await;
    }
    let attempt = ctx.store.start_attempt(call.id).await?;
    let Some(server) = resolve(ctx, &call).await? else {
        let m = format!("no MCP server named `{}`; the call was not run", call.server);
        record(ctx, &call, &m, true, attempt).await?;
        return Ok(Outcome::Done);
    };
    let tool = tool_name(&call);
    let started = Instant::now();
    tracing::info!(server = %call.server, tool, attempt, "tool request");
    let broker = Broker::new(ctx.clone(), call.clone());
    let result = execute(ctx, &server, tool, arguments, broker).await;
    let ms = started.elapsed().as_millis();
    match result {
        Ok(out) => {
            tracing::info!(server = %call.server, tool, duration_ms = ms, is_error = out.is_error, "tool response");
            ctx.breakers.record(&call.server, true);
            record(ctx, &call, &out.text, out.is_error, attempt).await?;
            Ok(Outcome::Done)
        }
        Err(McpError::Refused(m)) => {
            tracing::info!(server = %call.server, tool, duration_ms = ms, error = %m, "tool response");
            ctx.breakers.record(&call.server, true);
            record(ctx, &call, &format!("the tool failed: {m}"), true, attempt).await?;
            Ok(Outcome::Done)
        }
        Err(McpError::Unreachable(m)) => {
            tracing::warn!(server = %call.server, tool, duration_ms = ms, error = %m, "tool server unreachable");
            ctx.breakers.record(&call.server, false);
            give_up_or_retry(ctx, &call, delivered, &m, Duration::ZERO).await
        }
    }
}

/// Retries with backoff while attempts remain; then the model gets an error result.
async fn give_up_or_retry(
    ctx: &Ctx,
    call: &PendingCall,
    delivered: i64,
    why: &str,
    at_least: Duration,
) -> Result<Outcome, agentyard_store::StoreError> {
    if delivered < ctx.settings.max_attempts {
        return Ok(Outcome::Retry(backoff(ctx, delivered).max(at_least)));
    }
    let m = format!(
        "the tool server `{}` could not be reached after {delivered} attempts ({why}); the call did not run",
        call.server
    );
    record(ctx, call, &m, true, i32::try_from(delivered).unwrap_or(i32::MAX)).await?;
    Ok(Outcome::Done)
}

/// Calls `tool` within `AY_TOOL_TIMEOUT`, not counting time spent waiting for a human.
async fn execute(
    ctx: &Ctx,
    server: &ServerConfig,
    tool: &str,
    arguments: serde_json::Map<String, serde_json::Value>,
    broker: Broker,
) -> Result<agentyard_mcp::Output, McpError> {
    let timeout = ctx.settings.tool_timeout;
    let as_broker: Arc<dyn agentyard_mcp::InputBroker> = Arc::new(broker.clone());
    let client = Client::connect(server, Some(as_broker), ctx.sampler.clone(), timeout).await?;
    let out = {
        let call = client.call(tool, arguments);
        tokio::pin!(call);
        let mut deadline = tokio::time::Instant::now() + timeout;
        loop {
            tokio::select! {
                r = &mut call => break r,
                _ = tokio::time::sleep_until(deadline) => {
                    match broker.paused_until(timeout) {
                        Some(later) => deadline = later,
                        None => break Err(McpError::Unreachable(format!("no answer within {timeout:?}"))),
                    }
                }
            }
        }
    };
    client.close().await;
    out
}

/// How to reach the call's server: the built-in one (with a token for the run's principal),
/// one of the org's, or one of the operator's.
async fn resolve(
    ctx: &Ctx,
    call: &PendingCall,
) -> Result<Option<ServerConfig>, agentyard_store::StoreError> {
    if call.server == BUILTIN_SERVER {
        let exp = chrono::Utc::now().timestamp()
            + i64::try_from((ctx.settings.tool_timeout + ctx.settings.input_timeout).as_secs())
                .unwrap_or(3600)
            + 60;
        let claims = ToolClaims {
            org_id: OrgId(call.org_id),
            user_id: call.user_id.map(UserId),
            agent_id: AgentId(call.agent_id),
            run_id: RunId(call.run_id),
            invocation_id: call.id,
            scopes: call.scopes.clone(),
            exp,
        };
        let token = tool_tokens::mint(&ctx.key, &claims);
        return Ok(Some(ServerConfig::Http {
            url: ctx.settings.mcp_url.clone(),
            bearer_token: Some(token),
        }));
    }
    if let Some((url, bearer_token)) =
        ctx.store.mcp_server_endpoint(OrgId(call.org_id), &call.server).await?
    {
        return Ok(Some(ServerConfig::Http { url, bearer_token }));
    }
    Ok(ctx.servers.0.get(&call.server).cloned())
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

fn required_scope(server: &str, tool: &str) -> &'static str {
    if server == BUILTIN_SERVER && READ_ONLY.contains(&tool) { "runs:read" } else { "runs:write" }
}

/// Stores the call's end (the result cut to [`MAX_RESULT_BYTES`]) and publishes what it
/// enqueued (the next step, when this was the step's last call).
pub(crate) async fn record(
    ctx: &Ctx,
    call: &PendingCall,
    text: &str,
    is_error: bool,
    attempt: i32,
) -> Result<(), agentyard_store::StoreError> {
    let result = truncate(text);
    let error = is_error.then_some(result.as_str());
    let t = ctx.store.tool_result(call.id, &result, is_error, error, attempt, None).await?;
    if t.next_step {
        tracing::info!(run_id = %call.run_id, "last call of the step: next step enqueued");
    }
    let _ = ctx.outbox.dispatch(&t.outbox).await;
    Ok(())
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

fn backoff(ctx: &Ctx, delivered: i64) -> Duration {
    agentyard_bus::consume::backoff(ctx.settings.retry_base, ctx.settings.retry_max, delivered)
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

    #[test]
    fn read_only_built_in_tools_need_read_and_the_rest_write() {
        assert_eq!(required_scope("builtin", "list_tasks"), "runs:read");
        assert_eq!(required_scope("builtin", "add_task"), "runs:write");
        assert_eq!(required_scope("everything", "everything__echo"), "runs:write");
    }
}

//! Waiting for a human: a tool approval before a call, an elicitation during one. The run goes
//! to `requires_input` with what is asked; `POST /v1/runs/{id}/input` stores the answer on the
//! invocation, which this worker polls. An answer is kept by kind on the invocation, so a call
//! redelivered after a crash reuses it instead of asking again. No answer within
//! `AY_INPUT_TIMEOUT` counts as decline (elicitation) or deny (approval).

use std::sync::Mutex;
use std::time::Duration;

use agentyard_core::{OrgId, RunId};
use agentyard_mcp::{Answer, InputBroker};
use agentyard_store::StoreError;
use agentyard_store::tools::PendingCall;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::Ctx;

const POLL: Duration = Duration::from_millis(200);

/// What the human decided about a call.
pub(crate) enum Approval {
    Approved,
    Denied(String),
    /// The run ended (cancelled) while waiting.
    RunEnded,
}

/// Asks for approval of `call` (or reuses an earlier answer).
pub(crate) async fn approval(ctx: &Ctx, call: &PendingCall) -> Result<Approval, StoreError> {
    let request = json!({
        "kind": "tool_approval",
        "invocation_id": call.id,
        "tool": call.tool,
        "arguments": call.arguments,
        "message": format!("The agent wants to call `{}`. Approve or deny.", call.tool),
    });
    let answer = wait(ctx, call, "tool_approval", &request).await?;
    Ok(match answer {
        None => Approval::RunEnded,
        Some(a) if a["action"] == "approve" => Approval::Approved,
        Some(a) if a["timed_out"] == true => Approval::Denied("no answer in time".into()),
        Some(_) => Approval::Denied("denied".into()),
    })
}

/// Puts the request on the run (unless an answer of that kind is stored already) and waits for
/// the answer. None when the run ended first.
async fn wait(
    ctx: &Ctx,
    call: &PendingCall,
    kind: &str,
    request: &Value,
) -> Result<Option<Value>, StoreError> {
    let (stored, _) = ctx.store.input_response(call.id).await?;
    if let Some(a) = stored.as_ref().and_then(|s| s.get(kind)) {
        return Ok(Some(a.clone()));
    }
    let t = ctx.store.tool_input(call.id, request).await?;
    let _ = ctx.outbox.dispatch(&t.outbox).await;
    if !t.applied {
        return Ok(None);
    }
    tracing::info!(kind, "waiting for a human's input");
    let deadline = Instant::now() + ctx.settings.input_timeout;
    loop {
        tokio::time::sleep(POLL).await;
        let (stored, status) = ctx.store.input_response(call.id).await?;
        if let Some(a) = stored.as_ref().and_then(|s| s.get(kind)) {
            return Ok(Some(a.clone()));
        }
        if matches!(status.as_str(), "completed" | "failed" | "cancelled" | "expired") {
            return Ok(None);
        }
        if Instant::now() >= deadline {
            let action = if kind == "tool_approval" { "deny" } else { "decline" };
            let answer = json!({"action": action, "timed_out": true});
            if let Some((_, outbox)) =
                ctx.store.answer_input(OrgId(call.org_id), RunId(call.run_id), &answer).await?
            {
                let _ = ctx.outbox.dispatch(&outbox).await;
            }
            tracing::info!(kind, "no answer in time: {action}");
            // Whatever is stored now (a human may have answered at the last moment) wins.
            let (stored, _) = ctx.store.input_response(call.id).await?;
            return Ok(stored.and_then(|s| s.get(kind).cloned()).or(Some(answer)));
        }
    }
}

/// Answers a server's elicitations during one call; tells the call's timeout to pause while a
/// human is being asked.
#[derive(Clone)]
pub(crate) struct Broker(std::sync::Arc<Inner>);

struct Inner {
    ctx: Ctx,
    call: PendingCall,
    /// Whether a human is being asked now, and when the last wait ended.
    state: Mutex<(bool, Option<Instant>)>,
}

impl Broker {
    pub(crate) fn new(ctx: Ctx, call: PendingCall) -> Self {
        Self(std::sync::Arc::new(Inner { ctx, call, state: Mutex::new((false, None)) }))
    }

    /// When the call's deadline passes: a later deadline if a human is (or was just) being
    /// asked, None if the call really took too long.
    pub(crate) fn paused_until(&self, timeout: Duration) -> Option<Instant> {
        let (waiting, ended) = *self.0.state.lock().expect("broker poisoned");
        let now = Instant::now();
        if waiting {
            return Some(now + Duration::from_secs(1));
        }
        ended.map(|e| e + timeout).filter(|d| *d > now)
    }

    fn set_waiting(&self, waiting: bool) {
        let mut s = self.0.state.lock().expect("broker poisoned");
        *s = (waiting, if waiting { s.1 } else { Some(Instant::now()) });
    }
}

impl InputBroker for Broker {
    fn elicit(&self, message: String, schema: Value) -> BoxFuture<'static, Answer> {
        let this = self.clone();
        Box::pin(async move {
            this.set_waiting(true);
            let request = json!({
                "kind": "elicitation",
                "invocation_id": this.0.call.id,
                "tool": this.0.call.tool,
                "message": message,
                "requested_schema": schema,
            });
            let answer = wait(&this.0.ctx, &this.0.call, "elicitation", &request).await;
            this.set_waiting(false);
            match answer {
                Ok(Some(a)) => match a["action"].as_str() {
                    Some("accept") => Answer::Accept(a["content"].clone()),
                    Some("cancel") => Answer::Cancel,
                    _ => Answer::Decline,
                },
                Ok(None) => Answer::Cancel,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot wait for input; declining");
                    Answer::Decline
                }
            }
        })
    }
}

//! Calls an MCP client makes with a user's API token (Claude Desktop, the MCP Inspector, an
//! SDK): no run and no tool worker stand behind them, so the server keeps the audit log
//! itself. Each call is a `tool_invocations` row with the token's org, user and token and no
//! run ([`agentyard_store::direct_calls`]), written `pending` before the tool runs (a call that
//! cannot be recorded does not run) and completed with the result after. Its id is the
//! request's invocation id, so every call's writes are idempotent on their own.
//!
//! `tools/list` shows such a session only the tools its token may call (read-only tools need
//! `runs:read`, the others `runs:write`); a call of another one runs into the tool's own scope
//! check and is answered with an error result naming the missing scope.

use agentyard_core::tools::required_scope;
use agentyard_store::direct_calls::{DirectCall, DirectOutcome};
use agentyard_store::tool_tokens::ToolClaims;
use rmcp::ErrorData;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Tool};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::Value;

use crate::ToolServer;
use crate::auth::Direct;

/// The most of a result the audit log keeps, like the tool worker's.
const MAX_RESULT_BYTES: usize = 16 * 1024;

impl ToolServer {
    /// Runs a direct call and records it in the audit log.
    ///
    /// # Errors
    /// A protocol error when the call cannot be recorded (then it did not run), or the tool's.
    pub(crate) async fn call_direct(
        &self,
        (claims, direct): (ToolClaims, Direct),
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        // jsonb cannot hold a NUL character: such a call is refused, and logged without them.
        let storable = agentyard_core::storable::check_json("arguments", &arguments);
        let call_id = context.id.to_string();
        let call = DirectCall {
            id: claims.invocation_id,
            org: claims.org_id,
            user: claims.user_id,
            token: direct.token_id,
            tool: &request.name,
            arguments: if storable.is_ok() { &arguments } else { &Value::Null },
            call_id: &call_id,
        };
        if let Err(e) = self.store.start_direct_call(&call).await {
            tracing::warn!(error = %e, tool = %request.name, "cannot record a direct tool call");
            return Err(ErrorData::internal_error("database unavailable; retry the call", None));
        }
        let id = call.id;
        let response = match storable {
            Err(e) => Ok(error_result(format!("invalid arguments: {e}")).into()),
            Ok(()) => self.tools.call(ToolCallContext::new(self, request, context)).await,
        };
        let (text, is_error, error) = outcome(&response);
        let done = DirectOutcome {
            result: text.as_deref(),
            is_error,
            error: error.as_deref().or(if is_error { text.as_deref() } else { None }),
        };
        if let Err(e) = self.store.finish_direct_call(id, &done).await {
            // The call ran: its answer goes back; the row stays `pending`.
            tracing::warn!(error = %e, invocation_id = %id, "cannot record a direct call's end");
        }
        response
    }
}

/// The tools the claims' scopes allow calling.
pub(crate) fn allowed(claims: &ToolClaims, mut tools: Vec<Tool>) -> Vec<Tool> {
    tools.retain(|t| claims.has_scope(required_scope(&t.name)));
    tools
}

fn error_result(text: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

/// What the audit log keeps of an answer: (result text, is_error, error).
fn outcome(
    response: &Result<CallToolResponse, ErrorData>,
) -> (Option<String>, bool, Option<String>) {
    match response {
        Ok(CallToolResponse::Complete(r)) => {
            let text: Vec<&str> =
                r.content.iter().filter_map(|c| c.as_text()).map(|t| t.text.as_str()).collect();
            (Some(storable(&text.join("\n"))), r.is_error == Some(true), None)
        }
        Ok(CallToolResponse::InputRequired(_)) => (
            None,
            false,
            Some("the client was asked for input; its retry is a call of its own".into()),
        ),
        // A task (the server makes none) or a kind of answer added later.
        Ok(_) => (None, false, None),
        Err(e) => (None, true, Some(storable(&e.message))),
    }
}

/// `text` without NUL characters (Postgres cannot store them), cut to [`MAX_RESULT_BYTES`].
fn storable(text: &str) -> String {
    let text = text.replace('\0', "\u{FFFD}");
    if text.len() <= MAX_RESULT_BYTES {
        return text;
    }
    let mut cut = MAX_RESULT_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\n…[truncated: {} more bytes]", &text[..cut], text.len() - cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_is_kept_without_nul_and_cut_at_16_kib_on_a_char_boundary() {
        assert_eq!(storable("a\0b"), "a\u{FFFD}b");
        let long = "é".repeat(MAX_RESULT_BYTES);
        let kept = storable(&long);
        assert!(kept.starts_with(&"é".repeat(MAX_RESULT_BYTES / 2)));
        assert!(kept.ends_with(&format!("[truncated: {} more bytes]", MAX_RESULT_BYTES)));
    }

    #[test]
    fn a_protocol_error_is_kept_as_the_call_s_error() {
        let (text, is_error, error) =
            outcome(&Err(ErrorData::invalid_params("tool not found", None)));
        assert_eq!((text, is_error, error.as_deref()), (None, true, Some("tool not found")));
    }
}

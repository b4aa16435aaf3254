//! Calls of the built-in tools that no run made: an MCP client (Claude Desktop, the MCP
//! Inspector, an SDK) calling the built-in server with a user's API token. Each call is a row
//! of the tool audit log (`tool_invocations`) with the token's organization, user and token and
//! no run, thread or agent: written `pending` before the tool runs and `completed` with its
//! result after, so a call cut short by a crash still shows that it started.

use agentyard_core::{InvocationId, OrgId, TokenId, UserId};

use crate::{Result, Store, StoreError};

/// A direct call about to run.
#[derive(Clone, Debug)]
pub struct DirectCall<'a> {
    /// Also the invocation id the call's writes are idempotent under.
    pub id: InvocationId,
    pub org: OrgId,
    pub user: Option<UserId>,
    pub token: TokenId,
    pub tool: &'a str,
    pub arguments: &'a serde_json::Value,
    /// The JSON-RPC id of the client's `tools/call` request.
    pub call_id: &'a str,
}

/// How a direct call ended.
#[derive(Clone, Debug)]
pub struct DirectOutcome<'a> {
    /// The tool's result as text (absent when the call failed before the tool answered).
    pub result: Option<&'a str>,
    pub is_error: bool,
    /// Why the call failed, when the server answered with a protocol error.
    pub error: Option<&'a str>,
}

impl Store {
    /// Records that `call` starts (status `pending`, attempt 1).
    ///
    /// # Errors
    /// Database failures (then the call must not run: it would go unrecorded).
    pub async fn start_direct_call(&self, call: &DirectCall<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO tool_invocations(id, org_id, user_id, token_id, step, call_index, \
                call_id, server, tool, arguments, attempt, started_at) \
             VALUES ($1, $2, $3, $4, 0, 0, $5, 'builtin', $6, $7, 1, clock_timestamp())",
        )
        .bind(call.id)
        .bind(call.org)
        .bind(call.user)
        .bind(call.token)
        .bind(call.call_id)
        .bind(call.tool)
        .bind(call.arguments)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("start_direct_call", e))?;
        Ok(())
    }

    /// Records how the direct call `id` ended.
    ///
    /// # Errors
    /// Database failures.
    pub async fn finish_direct_call(
        &self,
        id: InvocationId,
        outcome: &DirectOutcome<'_>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE tool_invocations SET status = 'completed', result = $2, is_error = $3, \
                error = $4, completed_at = clock_timestamp(), \
                duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::integer \
             WHERE id = $1 AND run_id IS NULL AND status = 'pending'",
        )
        .bind(id)
        .bind(outcome.result)
        .bind(outcome.is_error)
        .bind(outcome.error)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("finish_direct_call", e))?;
        Ok(())
    }
}

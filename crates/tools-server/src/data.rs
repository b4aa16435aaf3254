//! The demo business data of the customer, message, revenue and report tools
//! (`migrations/0005_demo_data.sql`): rows, validated inputs ("parse, don't validate"), reads
//! and writes. It keeps the store's rules (`agentyard_store::domain`): every function takes the
//! organization it is scoped to and never reads or writes another's rows, and every write runs
//! in a [`Write`], the transaction that also stores the tool's result in `tool_writes`.
//!
//! Layout:
//! - [`customers`], [`messages`], [`revenue`], [`reports`]: one kind of row each.
//! - [`Write`]: one write tool call's transaction. It claims the call's invocation id in
//!   `tool_writes` with the very statements of `Store::begin_tool_write` (whose `ToolWrite`
//!   keeps its transaction to itself), so an invocation id claimed through either is claimed
//!   for both: a redelivered call gets the stored result back and writes nothing, a concurrent
//!   duplicate waits on the row lock and then does the same.

pub(crate) mod customers;
pub(crate) mod messages;
pub(crate) mod reports;
pub(crate) mod revenue;

use agentyard_core::{InvocationId, OrgId, UserId};
use agentyard_store::tool_tokens::ToolClaims;
use agentyard_store::{Result, StoreError};
use sqlx::{PgPool, Postgres, Transaction};

/// Most rows a list returns.
pub(crate) const MAX_LIMIT: i64 = 100;
/// Rows a list returns by default.
pub(crate) const DEFAULT_LIMIT: i64 = 20;

/// The error of the database operation `op`.
pub(crate) fn failed(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { op, source }
}

/// How starting a tool call's write turned out.
pub(crate) enum Start {
    /// The first attempt: write, then [`Write::commit`] with the result.
    Fresh(Write),
    /// An earlier attempt of this invocation committed this result.
    Done(serde_json::Value),
    /// The invocation id was used by another tool (or organization): nothing may be written.
    Conflict,
}

/// One write tool call's transaction. Dropping it without [`Write::commit`] rolls the write
/// back, and with it the claim on the invocation id.
pub(crate) struct Write {
    tx: Transaction<'static, Postgres>,
    org: OrgId,
    user: Option<UserId>,
    invocation: InvocationId,
}

#[derive(sqlx::FromRow)]
struct WriteRecord {
    org_id: OrgId,
    tool: String,
    result: serde_json::Value,
}

impl Write {
    /// Claims the invocation of `claims` for `tool` and opens the transaction its write goes
    /// in, or returns the result an earlier attempt committed.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn begin(pool: &PgPool, claims: &ToolClaims, tool: &str) -> Result<Start> {
        let (org, invocation) = (claims.org_id, claims.invocation_id);
        let mut tx = pool.begin().await.map_err(failed("data_write"))?;
        // A duplicate running at the same time blocks here until this transaction ends.
        let claimed = sqlx::query(
            "INSERT INTO tool_writes(invocation_id, org_id, tool, result) \
             VALUES ($1, $2, $3, 'null') ON CONFLICT (invocation_id) DO NOTHING",
        )
        .bind(invocation)
        .bind(org)
        .bind(tool)
        .execute(&mut *tx)
        .await
        .map_err(failed("data_write.claim"))?
        .rows_affected()
            == 1;
        if claimed {
            return Ok(Start::Fresh(Self { tx, org, user: claims.user_id, invocation }));
        }
        let record: WriteRecord =
            sqlx::query_as("SELECT org_id, tool, result FROM tool_writes WHERE invocation_id = $1")
                .bind(invocation)
                .fetch_one(&mut *tx)
                .await
                .map_err(failed("data_write.replay"))?;
        Ok(if record.org_id == org && record.tool == tool {
            Start::Done(record.result)
        } else {
            Start::Conflict
        })
    }

    /// Stores `result` as the invocation's result and commits it with the write.
    ///
    /// # Errors
    /// Database failures (then nothing was written).
    pub(crate) async fn commit(mut self, result: &serde_json::Value) -> Result<()> {
        sqlx::query("UPDATE tool_writes SET result = $2 WHERE invocation_id = $1")
            .bind(self.invocation)
            .bind(result)
            .execute(&mut *self.tx)
            .await
            .map_err(failed("data_write.result"))?;
        self.tx.commit().await.map_err(failed("data_write.commit"))
    }
}

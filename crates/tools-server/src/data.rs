//! The demo business data of the customer, message, revenue and report tools
//! (`migrations/0005_demo_data.sql`): rows, validated inputs ("parse, don't validate"), reads
//! and writes. It keeps the store's rules (`agentyard_store::domain`): every function takes the
//! organization it is scoped to and never reads or writes another's rows, and every write runs
//! in a [`Write`], the transaction that also stores the tool's result in `tool_writes`.
//!
//! Layout:
//! - [`customers`], [`messages`], [`revenue`], [`reports`]: one kind of row each.
//! - [`Write`]: one write tool call's transaction, the store's `ToolWrite` (claimed through
//!   `Store::begin_tool_write` like every built-in write): a redelivered call gets the stored
//!   result back and writes nothing, a concurrent duplicate waits on the row lock and then does
//!   the same.

pub(crate) mod customers;
pub(crate) mod messages;
pub(crate) mod reports;
pub(crate) mod revenue;

use agentyard_store::StoreError;
use agentyard_store::domain::ToolWrite;

/// Most rows a list returns.
pub(crate) const MAX_LIMIT: i64 = 100;
/// Rows a list returns by default.
pub(crate) const DEFAULT_LIMIT: i64 = 20;

/// The error of the database operation `op`.
pub(crate) fn failed(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { op, source }
}

/// One write tool call's transaction: the store's, which claims the call's invocation id in
/// `tool_writes` and commits the tool's result with the write. Dropping it without committing
/// rolls the write back, and with it the claim.
pub(crate) struct Write(pub(crate) ToolWrite);

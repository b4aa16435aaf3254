//! What a tool answers. A result is one text block: a short sentence for the model, a blank
//! line, then the data as compact JSON (`<sentence>\n\n<json>`). Compact JSON holds no line
//! break, so a program reads the data as the text's last line. A problem the caller can act on
//! (a missing scope, a bad argument, nothing found) is a tool error result the model reads; a
//! failing database is a protocol error (with `data: {"retry": true}` while the failure is
//! transient), so the caller retries the call, which is safe since writes are idempotent per
//! invocation.

use std::error::Error as _;

use agentyard_store::StoreError;
use agentyard_store::domain::{Invalid, ToolWrite, WriteStart};
use rmcp::ErrorData;
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};
use serde::Serialize;

use crate::auth::Caller;
use crate::{ToolServer, data};

/// Why a tool did not do its job.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ToolError {
    #[error("this token lacks the scope {0}; nothing was read or written")]
    MissingScope(agentyard_core::Scope),
    /// `field` is empty when the message names it (a missing field).
    #[error("invalid arguments: {}", field_message(field, message))]
    Invalid { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error("database operation failed")]
    Store(#[source] StoreError),
    #[error("{0}")]
    Internal(String),
}

fn field_message(field: &str, message: &str) -> String {
    if field.is_empty() { message.to_owned() } else { format!("{field}: {message}") }
}

impl From<Invalid> for ToolError {
    fn from(e: Invalid) -> Self {
        Self::Invalid { field: e.field.to_owned(), message: e.message }
    }
}

impl From<StoreError> for ToolError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        match self {
            Self::Store(e) => {
                let cause = e.source().map(ToString::to_string).unwrap_or_default();
                tracing::warn!(error = %e, %cause, "tool call failed");
                // `retry: true`: the caller waits for the database instead of telling the
                // model the tool failed (the tool worker spends no attempt on it).
                let retry = e.is_transient().then(|| serde_json::json!({"retry": true}));
                Err(ErrorData::internal_error("database unavailable; retry the call", retry))
            }
            Self::Internal(message) => {
                tracing::error!(%message, "tool call failed");
                Err(ErrorData::internal_error("internal error", None))
            }
            other => Ok(CallToolResult::error(vec![ContentBlock::text(other.to_string())]).into()),
        }
    }
}

/// A successful result: `sentence`, then `data` as JSON.
pub(crate) fn reply(sentence: impl Into<String>, data: &impl Serialize) -> CallToolResult {
    let mut text = sentence.into();
    match serde_json::to_string(data) {
        Ok(json) => {
            text.push_str("\n\n");
            text.push_str(&json);
        }
        Err(e) => tracing::error!(error = %e, "tool result does not serialize"),
    }
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// How a write tool starts: `W` is the store's [`ToolWrite`], or a [`data::Write`] for the
/// demo business data.
pub(crate) enum Started<W = ToolWrite> {
    /// Write, then [`finish`].
    Fresh(W),
    /// An earlier attempt of this invocation wrote; this was its result.
    Replayed(CallToolResult),
}

fn replayed(stored: serde_json::Value) -> Result<CallToolResult, ToolError> {
    serde_json::from_value(stored)
        .map_err(|e| ToolError::Internal(format!("a stored tool result does not parse: {e}")))
}

fn conflict(caller: &Caller) -> ToolError {
    ToolError::Refused(format!(
        "invocation {} already wrote through another tool; nothing was written",
        caller.0.invocation_id
    ))
}

impl ToolServer {
    /// Opens the write of `tool` for the caller's invocation, or returns the result an earlier
    /// attempt of it committed. The caller checked the scope.
    pub(crate) async fn begin_write(
        &self,
        caller: &Caller,
        tool: &'static str,
    ) -> Result<Started, ToolError> {
        let c = &caller.0;
        match self
            .store
            .begin_tool_write(c.org_id, c.user_id, c.owner(), c.invocation_id, tool)
            .await?
        {
            WriteStart::Fresh(w) => Ok(Started::Fresh(w)),
            WriteStart::Done(stored) => replayed(stored).map(Started::Replayed),
            WriteStart::Conflict => Err(conflict(caller)),
        }
    }

    /// [`Self::begin_write`] for a write of the demo business data.
    pub(crate) async fn begin_data_write(
        &self,
        caller: &Caller,
        tool: &'static str,
    ) -> Result<Started<data::Write>, ToolError> {
        Ok(match self.begin_write(caller, tool).await? {
            Started::Fresh(w) => Started::Fresh(data::Write(w)),
            Started::Replayed(r) => Started::Replayed(r),
        })
    }

    /// The result an earlier attempt of the caller's invocation of `tool` committed, if any.
    pub(crate) async fn replay(
        &self,
        caller: &Caller,
        tool: &'static str,
    ) -> Result<Option<CallToolResult>, ToolError> {
        let c = &caller.0;
        match self.store.tool_write_result(c.org_id, c.invocation_id, tool).await? {
            Some(stored) => replayed(stored).map(Some),
            None => Ok(None),
        }
    }
}

/// A write tool call's transaction, committed with the call's result.
pub(crate) trait Commit {
    /// Stores `result` as the invocation's result and commits it with the write.
    async fn commit(self, result: &serde_json::Value) -> Result<(), StoreError>;
}

impl Commit for ToolWrite {
    async fn commit(self, result: &serde_json::Value) -> Result<(), StoreError> {
        ToolWrite::commit(self, result).await
    }
}

impl Commit for data::Write {
    async fn commit(self, result: &serde_json::Value) -> Result<(), StoreError> {
        self.0.commit(result).await
    }
}

/// Commits `w` with `result` stored as the invocation's result.
pub(crate) async fn finish(
    w: impl Commit,
    result: CallToolResult,
) -> Result<CallToolResult, ToolError> {
    let stored = serde_json::to_value(&result)
        .map_err(|e| ToolError::Internal(format!("a tool result does not serialize: {e}")))?;
    w.commit(&stored).await?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_a_sentence_then_json() {
        let r = reply("Found 1 task.", &serde_json::json!([{"title": "x"}]));
        let text = &r.content[0].as_text().unwrap().text;
        assert_eq!(text, "Found 1 task.\n\n[{\"title\":\"x\"}]");
        assert_eq!(r.is_error, Some(false));
    }

    #[test]
    fn a_bad_argument_is_an_error_result_naming_the_field() {
        let e = ToolError::Invalid { field: "status".into(), message: "unknown variant".into() };
        let Ok(CallToolResponse::Complete(r)) = e.into_call_tool_result() else { panic!() };
        assert_eq!(r.is_error, Some(true));
        assert_eq!(
            r.content[0].as_text().unwrap().text,
            "invalid arguments: status: unknown variant"
        );
    }
}

//! Integration tools: the external systems the organization connected. Their configuration
//! stays out of the results: the model needs to know what is connected, not how.

use agentyard_store::domain::IntegrationRow;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use serde::Serialize;

use crate::ToolServer;
use crate::args::{Args, NoArgs, input};
use crate::auth::{Caller, READ};
use crate::reply::{ToolError, reply};

/// An integration as a tool shows it.
#[derive(Serialize)]
struct Integration {
    id: agentyard_core::IntegrationId,
    name: String,
    kind: String,
    is_active: bool,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<IntegrationRow> for Integration {
    fn from(r: IntegrationRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            kind: r.kind,
            is_active: r.is_active,
            updated_at: r.updated_at,
        }
    }
}

fn names(rows: &[Integration]) -> String {
    rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
}

#[tool_router(router = integration_tools, vis = "pub(crate)")]
impl ToolServer {
    /// Lists the organization's integrations (Slack, CRM, help desk, ...), active or not.
    #[tool(input_schema = input::<NoArgs>(), annotations(read_only_hint = true))]
    async fn list_integrations(
        &self,
        caller: Caller,
        args: Args<NoArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let c = caller.require(READ)?;
        args.parse()?;
        let rows: Vec<Integration> = self
            .store
            .list_integrations(c.org_id, false)
            .await?
            .into_iter()
            .map(Into::into)
            .collect();
        let active = rows.iter().filter(|r| r.is_active).count();
        let sentence = format!("{} integration(s), {active} active: {}.", rows.len(), names(&rows));
        Ok(reply(sentence, &rows))
    }

    /// Lists only the organization's active integrations.
    #[tool(input_schema = input::<NoArgs>(), annotations(read_only_hint = true))]
    async fn get_active_integrations(
        &self,
        caller: Caller,
        args: Args<NoArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let c = caller.require(READ)?;
        args.parse()?;
        let rows: Vec<Integration> = self
            .store
            .list_integrations(c.org_id, true)
            .await?
            .into_iter()
            .map(Into::into)
            .collect();
        Ok(reply(format!("{} active integration(s): {}.", rows.len(), names(&rows)), &rows))
    }
}

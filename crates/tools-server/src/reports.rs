//! Report tools: the organization's saved reports (markdown plus the data behind them), so a
//! workflow can store its analysis and a later run can read it again.

use agentyard_core::ids::ReportId;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::ToolServer;
use crate::args::{Args, input, limit};
use crate::auth::{Caller, READ, WRITE};
use crate::data::reports::{self, NewReport};
use crate::reply::{Started, ToolError, finish, reply};

/// Arguments of `save_report`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SaveReport {
    /// The report's title (1 to 200 characters).
    title: String,
    /// The report itself, as markdown text.
    body: String,
    /// What kind of report, to find it by (letters, digits, _ or -; e.g. revenue_analysis;
    /// default general).
    #[serde(default)]
    kind: Option<String>,
    /// The figures behind the report: any JSON object.
    #[serde(default)]
    data: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A report, by id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetReport {
    /// The report's id (as `save_report` and `list_reports` show it).
    report_id: uuid::Uuid,
}

/// Arguments of `list_reports`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListReports {
    /// Only reports of this kind (e.g. revenue_analysis).
    #[serde(default)]
    kind: Option<String>,
    /// How many reports at most, newest first (1 to 100; default 20).
    #[serde(default)]
    limit: Option<i64>,
}

#[tool_router(router = report_tools, vis = "pub(crate)")]
impl ToolServer {
    /// Saves a report of the organization: a title, a markdown body, a kind (e.g.
    /// revenue_analysis) and optionally the data behind it as a JSON object. Returns the
    /// report with its id.
    #[tool(input_schema = input::<SaveReport>())]
    async fn save_report(
        &self,
        caller: Caller,
        args: Args<SaveReport>,
    ) -> Result<CallToolResult, ToolError> {
        caller.require(WRITE)?;
        let a = args.parse()?;
        let report = NewReport::parse(&a.title, &a.body, a.kind.as_deref(), a.data)?;
        let mut w = match self.begin_data_write(&caller, "save_report").await? {
            Started::Fresh(w) => w,
            Started::Replayed(result) => return Ok(result),
        };
        let row = w.save_report(&report).await?;
        let sentence = format!("Saved the report {:?} (kind {}).", row.title, row.kind);
        finish(w, reply(sentence, &row)).await
    }

    /// Reads one report of the organization by its id: title, kind, markdown body and data.
    #[tool(input_schema = input::<GetReport>(), annotations(read_only_hint = true))]
    async fn get_report(
        &self,
        caller: Caller,
        args: Args<GetReport>,
    ) -> Result<CallToolResult, ToolError> {
        let c = caller.require(READ)?;
        let id = args.parse()?.report_id;
        let row = reports::get(self.store.pool(), c.org_id, ReportId(id))
            .await?
            .ok_or_else(|| ToolError::NotFound(format!("this organization has no report {id}")))?;
        let sentence = format!(
            "The report {:?} (kind {}), saved {}.",
            row.title,
            row.kind,
            row.created_at.format("%Y-%m-%d %H:%M UTC")
        );
        Ok(reply(sentence, &row))
    }

    /// Lists the organization's reports, newest first, optionally only those of one kind:
    /// id, title, kind and when each was saved (get_report reads one in full).
    #[tool(input_schema = input::<ListReports>(), annotations(read_only_hint = true))]
    async fn list_reports(
        &self,
        caller: Caller,
        args: Args<ListReports>,
    ) -> Result<CallToolResult, ToolError> {
        let c = caller.require(READ)?;
        let a = args.parse()?;
        let limit = limit(a.limit)?;
        let kind = a.kind.as_deref().map(reports::kind).transpose()?;
        let rows = reports::list(self.store.pool(), c.org_id, kind.as_deref(), limit).await?;
        let of = kind.map(|k| format!(" of kind {k}")).unwrap_or_default();
        Ok(reply(format!("{} report(s){of}, newest first.", rows.len()), &rows))
    }
}

//! Reports agents and workflows save: a title, a markdown body, a kind to find them by
//! (`revenue_analysis`, ...) and the figures behind them as a JSON object.

use agentyard_core::OrgId;
use agentyard_core::ids::ReportId;
use agentyard_store::Result;
use agentyard_store::domain::{Invalid, required_text};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor};

use super::{Write, failed};

/// Longest title, in characters.
pub(crate) const MAX_TITLE: usize = 200;
/// Longest body, in characters.
pub(crate) const MAX_BODY: usize = 100_000;
/// Longest kind, in characters.
pub(crate) const MAX_KIND: usize = 50;
/// Largest `data`, in bytes of JSON.
pub(crate) const MAX_DATA: usize = 256 * 1024;
/// The kind of a report that names none.
pub(crate) const DEFAULT_KIND: &str = "general";

/// A report as stored.
#[derive(Clone, Debug, PartialEq, Serialize, FromRow)]
pub(crate) struct ReportRow {
    pub(crate) id: ReportId,
    pub(crate) title: String,
    pub(crate) kind: String,
    /// Markdown.
    pub(crate) body: String,
    /// A JSON object (`{}` when none was given).
    pub(crate) data: serde_json::Value,
    pub(crate) created_at: DateTime<Utc>,
}

/// A report in a list: without its body and data.
#[derive(Clone, Debug, PartialEq, Serialize, FromRow)]
pub(crate) struct ReportSummary {
    pub(crate) id: ReportId,
    pub(crate) title: String,
    pub(crate) kind: String,
    pub(crate) created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, title, kind, body, data, created_at";

/// A report kind: trimmed, lowercase letters, digits, `_` and `-`, 1 to 50 characters.
///
/// # Errors
/// Anything else.
pub(crate) fn kind(value: &str) -> Result<String, Invalid> {
    let k = required_text("kind", value, MAX_KIND)?.to_lowercase();
    if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        Ok(k)
    } else {
        let message = format!("must be letters, digits, _ or - (like revenue_analysis), not {k:?}");
        Err(Invalid { field: "kind", message })
    }
}

/// A valid new report.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NewReport {
    title: String,
    body: String,
    kind: String,
    data: serde_json::Value,
}

impl NewReport {
    /// # Errors
    /// An empty or too long `title` or `body`, a bad `kind`, `data` that Postgres cannot give
    /// back unchanged or over 256 KiB.
    pub(crate) fn parse(
        title: &str,
        body: &str,
        kind_name: Option<&str>,
        data: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<Self, Invalid> {
        let data = serde_json::Value::Object(data.unwrap_or_default());
        if let Err(e) = agentyard_core::storable::check_json("data", &data) {
            return Err(Invalid { field: "data", message: e.to_string() });
        }
        if data.to_string().len() > MAX_DATA {
            return Err(Invalid {
                field: "data",
                message: "must be at most 256 KiB of JSON".into(),
            });
        }
        Ok(Self {
            title: required_text("title", title, MAX_TITLE)?,
            body: required_text("body", body, MAX_BODY)?,
            kind: kind_name.map_or(Ok(DEFAULT_KIND.to_owned()), kind)?,
            data,
        })
    }
}

/// The org's report `id`.
pub(crate) async fn get(
    db: impl PgExecutor<'_>,
    org: OrgId,
    id: ReportId,
) -> Result<Option<ReportRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM reports WHERE id = $1 AND org_id = $2"
    )))
    .bind(id)
    .bind(org)
    .fetch_optional(db)
    .await
    .map_err(failed("get_report"))
}

/// The org's reports, newest first, of one kind when given; at most `limit`.
pub(crate) async fn list(
    db: impl PgExecutor<'_>,
    org: OrgId,
    kind: Option<&str>,
    limit: i64,
) -> Result<Vec<ReportSummary>> {
    sqlx::query_as(
        "SELECT id, title, kind, created_at FROM reports WHERE org_id = $1 \
         AND ($2::text IS NULL OR kind = $2) ORDER BY created_at DESC, id DESC LIMIT $3",
    )
    .bind(org)
    .bind(kind)
    .bind(limit.clamp(1, super::MAX_LIMIT))
    .fetch_all(db)
    .await
    .map_err(failed("list_reports"))
}

impl Write {
    /// Saves a report.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn save_report(&mut self, r: &NewReport) -> Result<ReportRow> {
        let (conn, org, user) = self.0.parts();
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO reports(id, org_id, title, body, kind, data, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
        )))
        .bind(ReportId::new())
        .bind(org)
        .bind(&r.title)
        .bind(&r.body)
        .bind(&r.kind)
        .bind(&r.data)
        .bind(user)
        .fetch_one(&mut *conn)
        .await
        .map_err(failed("save_report"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_has_a_title_a_body_a_kind_and_an_object_of_data() {
        let r = NewReport::parse("Q3", "# Revenue", None, None).unwrap();
        assert_eq!((r.kind.as_str(), &r.data), ("general", &serde_json::json!({})));
        let r = NewReport::parse("Q3", "b", Some(" Revenue_Analysis "), None).unwrap();
        assert_eq!(r.kind, "revenue_analysis");
        assert_eq!(NewReport::parse("Q3", "b", Some("a b"), None).unwrap_err().field, "kind");
        assert_eq!(NewReport::parse("", "b", None, None).unwrap_err().field, "title");
        assert_eq!(NewReport::parse("t", " ", None, None).unwrap_err().field, "body");
        let nul = serde_json::json!({"a": "x\u{0}y"}).as_object().cloned();
        assert_eq!(NewReport::parse("t", "b", None, nul).unwrap_err().field, "data");
    }
}

//! An organization's support tickets.

use std::collections::BTreeMap;

use agentyard_core::{OrgId, TicketId, UserId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor};

use super::{Invalid, ToolWrite, optional_text, required_text, text_enum};
use crate::{Result, Store, StoreError};

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 10_000;
/// Longest assignee, in characters.
pub const MAX_ASSIGNEE: usize = 200;
/// Most tickets one list or search returns.
pub const MAX_LIMIT: i64 = 200;

text_enum!(
    /// Where a ticket stands.
    TicketStatus {
        Open = "open",
        InProgress = "in_progress",
        Resolved = "resolved",
        Closed = "closed",
    }
);

text_enum!(
    /// How urgent a ticket is.
    Priority as TicketPriority {
        Low = "low",
        Medium = "medium",
        High = "high",
    }
);

text_enum!(
    /// What a ticket is about.
    Category {
        Billing = "billing",
        Technical = "technical",
        Account = "account",
        General = "general",
    }
);

/// A ticket as stored.
#[derive(Clone, Debug, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct TicketRow {
    pub id: TicketId,
    pub title: String,
    pub description: String,
    pub category: Category,
    pub priority: Priority,
    pub status: TicketStatus,
    pub assignee: Option<String>,
    /// The user the creating run acted for.
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, title, description, category, priority, status, assignee, created_by, \
                       created_at, updated_at";

/// Tickets counted by status, priority and category (every value, zeros included).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TicketStats {
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
    pub by_priority: BTreeMap<String, i64>,
    pub by_category: BTreeMap<String, i64>,
}

#[derive(FromRow)]
struct StatRow {
    status: Option<String>,
    priority: Option<String>,
    category: Option<String>,
    n: i64,
}

/// A valid new ticket.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTicket {
    title: String,
    description: String,
    category: Category,
    priority: Priority,
}

impl NewTicket {
    /// Without a category or priority: `general`, `medium`.
    ///
    /// # Errors
    /// An empty or too long `title` or `description`.
    pub fn parse(
        title: &str,
        description: &str,
        category: Option<Category>,
        priority: Option<Priority>,
    ) -> Result<Self, Invalid> {
        Ok(Self {
            title: required_text("title", title, MAX_TITLE)?,
            description: required_text("description", description, MAX_DESCRIPTION)?,
            category: category.unwrap_or(Category::General),
            priority: priority.unwrap_or(Priority::Medium),
        })
    }
}

/// A valid change of a ticket: at least one field.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TicketChange {
    pub(crate) title: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) category: Option<Category>,
    pub(crate) priority: Option<Priority>,
    pub(crate) status: Option<TicketStatus>,
    pub(crate) assignee: Option<String>,
}

impl TicketChange {
    /// A change of the ticket's text and classification.
    ///
    /// # Errors
    /// No change at all, an empty or too long `title` or `description`.
    pub fn parse(
        title: Option<&str>,
        description: Option<&str>,
        category: Option<Category>,
        priority: Option<Priority>,
    ) -> Result<Self, Invalid> {
        let change = Self {
            title: title.map(|t| required_text("title", t, MAX_TITLE)).transpose()?,
            description: description
                .map(|d| required_text("description", d, MAX_DESCRIPTION))
                .transpose()?,
            category,
            priority,
            ..Self::default()
        };
        if change == Self::default() {
            return Err(Invalid::new(
                "title",
                "nothing to change: give title, description, category or priority",
            ));
        }
        Ok(change)
    }

    /// A change of status.
    pub fn status(status: TicketStatus) -> Self {
        Self { status: Some(status), ..Self::default() }
    }

    /// A new assignee.
    ///
    /// # Errors
    /// An empty or too long `assignee`.
    pub fn assign(assignee: &str) -> Result<Self, Invalid> {
        let assignee = optional_text("assignee", Some(assignee), MAX_ASSIGNEE)?
            .ok_or_else(|| Invalid::new("assignee", "must not be empty"))?;
        Ok(Self { assignee: Some(assignee), ..Self::default() })
    }
}

pub(crate) async fn insert(
    db: impl PgExecutor<'_>,
    org: OrgId,
    user: Option<UserId>,
    t: &NewTicket,
) -> Result<TicketRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tickets(id, org_id, title, description, category, priority, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    )))
    .bind(TicketId::new())
    .bind(org)
    .bind(&t.title)
    .bind(&t.description)
    .bind(t.category)
    .bind(t.priority)
    .bind(user)
    .fetch_one(db)
    .await
    .map_err(|e| StoreError::db("insert_ticket", e))
}

/// The demo tickets [`Store::seed_demo`] adds.
pub(crate) fn demo() -> Vec<NewTicket> {
    use Category::*;
    use Priority::*;
    [
        (
            "Cannot log in after a password reset",
            "The reset link works, but the new password is refused at login.",
            Account,
            High,
        ),
        (
            "Invoice shows the wrong amount",
            "The October invoice charges 12 seats; we have 10.",
            Billing,
            Medium,
        ),
        (
            "API returns 500 on /orders",
            "Since this morning every POST /orders fails with a 500.",
            Technical,
            High,
        ),
        (
            "How do I export my data?",
            "We would like a CSV export of all our projects.",
            General,
            Low,
        ),
        (
            "Add a second admin",
            "Please make jane@example.com an admin of our account.",
            Account,
            Low,
        ),
    ]
    .into_iter()
    .filter_map(|(title, body, c, p)| NewTicket::parse(title, body, Some(c), Some(p)).ok())
    .collect()
}

/// `%` and `_` in a search match themselves.
fn like_pattern(query: &str) -> String {
    let escaped = query.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

impl Store {
    /// The org's tickets, newest first; `status` filters; at most `limit` (1..=200).
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_tickets(
        &self,
        org: OrgId,
        status: Option<TicketStatus>,
        limit: i64,
    ) -> Result<Vec<TicketRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tickets WHERE org_id = $1 \
             AND ($2::text IS NULL OR status = $2) ORDER BY created_at DESC, id DESC LIMIT $3"
        )))
        .bind(org)
        .bind(status)
        .bind(limit.clamp(1, MAX_LIMIT))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list_tickets", e))
    }

    /// A ticket of the org.
    ///
    /// # Errors
    /// Database failures.
    pub async fn get_ticket(&self, org: OrgId, id: TicketId) -> Result<Option<TicketRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tickets WHERE id = $1 AND org_id = $2"
        )))
        .bind(id)
        .bind(org)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("get_ticket", e))
    }

    /// The org's tickets whose title, description or assignee contains `query`
    /// (case-insensitive), newest first, at most `limit`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn search_tickets(
        &self,
        org: OrgId,
        query: &str,
        limit: i64,
    ) -> Result<Vec<TicketRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tickets WHERE org_id = $1 \
             AND (title ILIKE $2 OR description ILIKE $2 OR assignee ILIKE $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        )))
        .bind(org)
        .bind(like_pattern(query))
        .bind(limit.clamp(1, MAX_LIMIT))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("search_tickets", e))
    }

    /// The org's tickets counted by status, priority and category.
    ///
    /// # Errors
    /// Database failures.
    pub async fn ticket_stats(&self, org: OrgId) -> Result<TicketStats> {
        // One row per group: the grouped column is set, the other two are null.
        let rows: Vec<StatRow> = sqlx::query_as(
            "SELECT status, priority, category, count(*) AS n FROM tickets WHERE org_id = $1 \
             GROUP BY GROUPING SETS ((status), (priority), (category))",
        )
        .bind(org)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("ticket_stats", e))?;
        let zeros = |names: &[&str]| names.iter().map(|n| ((*n).to_owned(), 0)).collect();
        let mut stats = TicketStats {
            total: 0,
            by_status: zeros(TicketStatus::NAMES),
            by_priority: zeros(Priority::NAMES),
            by_category: zeros(Category::NAMES),
        };
        for StatRow { status, priority, category, n } in rows {
            match (status, priority, category) {
                (Some(s), _, _) => {
                    stats.total += n;
                    stats.by_status.insert(s, n);
                }
                (_, Some(p), _) => {
                    stats.by_priority.insert(p, n);
                }
                (_, _, Some(c)) => {
                    stats.by_category.insert(c, n);
                }
                _ => {}
            }
        }
        Ok(stats)
    }
}

impl ToolWrite {
    /// Creates a ticket.
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_ticket(&mut self, ticket: &NewTicket) -> Result<TicketRow> {
        insert(&mut *self.tx, self.org, self.user, ticket).await
    }

    /// Applies `change` to a ticket of the org; None when it has none of that id.
    ///
    /// # Errors
    /// Database failures.
    pub async fn update_ticket(
        &mut self,
        id: TicketId,
        change: &TicketChange,
    ) -> Result<Option<TicketRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE tickets SET title = coalesce($3, title), \
             description = coalesce($4, description), category = coalesce($5, category), \
             priority = coalesce($6, priority), status = coalesce($7, status), \
             assignee = coalesce($8, assignee), updated_at = now() \
             WHERE id = $1 AND org_id = $2 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(self.org)
        .bind(&change.title)
        .bind(&change.description)
        .bind(change.category)
        .bind(change.priority)
        .bind(change.status)
        .bind(&change.assignee)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(|e| StoreError::db("update_ticket", e))
    }

    /// Deletes a ticket of the org; returns it as it was.
    ///
    /// # Errors
    /// Database failures.
    pub async fn delete_ticket(&mut self, id: TicketId) -> Result<Option<TicketRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "DELETE FROM tickets WHERE id = $1 AND org_id = $2 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(self.org)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(|e| StoreError::db("delete_ticket", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_wildcards_match_themselves() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn every_demo_ticket_is_valid() {
        assert_eq!(demo().len(), 5);
    }

    #[test]
    fn a_change_must_change_something() {
        assert!(TicketChange::parse(None, None, None, None).is_err());
        assert_eq!(TicketChange::parse(Some(" "), None, None, None).unwrap_err().field, "title");
        assert_eq!(TicketChange::assign("  ").unwrap_err().field, "assignee");
        assert!(TicketChange::parse(None, None, None, Some(Priority::High)).is_ok());
    }
}

//! An organization's to-do tasks. A tool finds a task by id or by its exact, case-insensitive
//! title; a title several tasks share is ambiguous.

use agentyard_core::{OrgId, TaskId, UserId};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor};

use super::{Invalid, Lookup, ToolWrite, optional_text, required_text, text_enum};
use crate::{Result, Store, StoreError};

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 10_000;
/// Most tasks one list returns.
const LIST_LIMIT: i64 = 500;

text_enum!(
    /// Where a task stands.
    TaskStatus {
        Pending = "pending",
        Completed = "completed",
    }
);

/// A task as stored.
#[derive(Clone, Debug, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct TaskRow {
    pub id: TaskId,
    pub title: String,
    pub description: Option<String>,
    pub due_date: Option<NaiveDate>,
    pub status: TaskStatus,
    /// The user the creating run acted for.
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, title, description, due_date, status, created_by, created_at, updated_at, completed_at";

/// A valid new task.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTask {
    title: String,
    description: Option<String>,
    due_date: Option<NaiveDate>,
}

impl NewTask {
    /// # Errors
    /// An empty or too long `title`, a too long `description`.
    pub fn parse(
        title: &str,
        description: Option<&str>,
        due_date: Option<NaiveDate>,
    ) -> Result<Self, Invalid> {
        Ok(Self {
            title: required_text("title", title, MAX_TITLE)?,
            description: optional_text("description", description, MAX_DESCRIPTION)?,
            due_date,
        })
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }
}

/// A valid change of a task: at least one field.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskChange {
    title: Option<String>,
    description: Option<String>,
    due_date: Option<NaiveDate>,
}

impl TaskChange {
    /// # Errors
    /// No change at all, an empty or too long `new_title`, a too long `description`.
    pub fn parse(
        new_title: Option<&str>,
        description: Option<&str>,
        due_date: Option<NaiveDate>,
    ) -> Result<Self, Invalid> {
        let change = Self {
            title: new_title.map(|t| required_text("new_title", t, MAX_TITLE)).transpose()?,
            description: optional_text("description", description, MAX_DESCRIPTION)?,
            due_date,
        };
        if change.title.is_none() && change.description.is_none() && change.due_date.is_none() {
            return Err(Invalid::new(
                "new_title",
                "nothing to change: give new_title, description or due_date",
            ));
        }
        Ok(change)
    }
}

/// Which task: by id, or by exact (case-insensitive) title.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskRef {
    Id(TaskId),
    Title(String),
}

impl TaskRef {
    /// The id when given, else the title.
    ///
    /// # Errors
    /// Neither given (or an empty title).
    pub fn parse(task_id: Option<TaskId>, title: Option<&str>) -> Result<Self, Invalid> {
        match (task_id, title.map(str::trim).filter(|t| !t.is_empty())) {
            (Some(id), _) => Ok(Self::Id(id)),
            (None, Some(t)) => Ok(Self::Title(t.to_owned())),
            (None, None) => Err(Invalid::new("task_id", "give task_id or title")),
        }
    }
}

impl std::fmt::Display for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "id {id}"),
            Self::Title(t) => write!(f, "title {t:?}"),
        }
    }
}

pub(crate) async fn insert(
    db: impl PgExecutor<'_>,
    org: OrgId,
    user: Option<UserId>,
    task: &NewTask,
) -> Result<TaskRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tasks(id, org_id, title, description, due_date, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    )))
    .bind(TaskId::new())
    .bind(org)
    .bind(&task.title)
    .bind(&task.description)
    .bind(task.due_date)
    .bind(user)
    .fetch_one(db)
    .await
    .map_err(|e| StoreError::db("insert_task", e))
}

impl Store {
    /// The org's tasks (only those `owner` created, when given), oldest first (at most 500);
    /// `status` filters.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_tasks(
        &self,
        org: OrgId,
        owner: Option<UserId>,
        status: Option<TaskStatus>,
    ) -> Result<Vec<TaskRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tasks WHERE org_id = $1 AND ($2::text IS NULL OR status = $2) \
             AND ($4::uuid IS NULL OR created_by = $4) ORDER BY created_at, id LIMIT $3"
        )))
        .bind(org)
        .bind(status)
        .bind(LIST_LIMIT)
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list_tasks", e))
    }

    /// Creates a task of `org`, made by `user`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_task(
        &self,
        org: OrgId,
        user: Option<UserId>,
        task: &NewTask,
    ) -> Result<TaskRow> {
        insert(&self.pool, org, user, task).await
    }
}

impl ToolWrite {
    /// Adds a task.
    ///
    /// # Errors
    /// Database failures.
    pub async fn add_task(&mut self, task: &NewTask) -> Result<TaskRow> {
        insert(&mut *self.tx, self.org, self.user, task).await
    }

    /// Marks a task completed (again, if it was).
    ///
    /// # Errors
    /// Database failures.
    pub async fn complete_task(&mut self, which: &TaskRef) -> Result<Lookup<TaskRow>> {
        let sql = format!(
            "UPDATE tasks SET status = 'completed', completed_at = coalesce(completed_at, now()), \
             updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
        );
        self.change_task(which, "complete_task", &sql, None).await
    }

    /// Changes a task's title, description or due date (the fields `change` holds).
    ///
    /// # Errors
    /// Database failures.
    pub async fn update_task(
        &mut self,
        which: &TaskRef,
        change: &TaskChange,
    ) -> Result<Lookup<TaskRow>> {
        let sql = format!(
            "UPDATE tasks SET title = coalesce($2, title), \
             description = coalesce($3, description), due_date = coalesce($4, due_date), \
             updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
        );
        self.change_task(which, "update_task", &sql, Some(change)).await
    }

    /// Deletes a task; returns it as it was.
    ///
    /// # Errors
    /// Database failures.
    pub async fn delete_task(&mut self, which: &TaskRef) -> Result<Lookup<TaskRow>> {
        let sql = format!("DELETE FROM tasks WHERE id = $1 RETURNING {COLUMNS}");
        self.change_task(which, "delete_task", &sql, None).await
    }

    /// Locks the one task `which` names (among the owner's, when the write is limited to its
    /// user), then runs `sql` on it (`$1` its id; `$2..$4` the
    /// change's title, description and due date when given).
    async fn change_task(
        &mut self,
        which: &TaskRef,
        op: &'static str,
        sql: &str,
        change: Option<&TaskChange>,
    ) -> Result<Lookup<TaskRow>> {
        let (id, title) = match which {
            TaskRef::Id(id) => (Some(*id), None),
            TaskRef::Title(t) => (None, Some(t.as_str())),
        };
        let ids: Vec<TaskId> = sqlx::query_scalar(
            "SELECT id FROM tasks WHERE org_id = $1 AND (id = $2 OR lower(title) = lower($3)) \
             AND ($4::uuid IS NULL OR created_by = $4) ORDER BY created_at, id LIMIT 2 FOR UPDATE",
        )
        .bind(self.org)
        .bind(id)
        .bind(title)
        .bind(self.owner)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(|e| StoreError::db(op, e))?;
        let id = match ids.as_slice() {
            [] => return Ok(Lookup::NotFound),
            [id] => *id,
            _ => return Ok(Lookup::Ambiguous),
        };
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned())).bind(id);
        if let Some(c) = change {
            query = query.bind(&c.title).bind(&c.description).bind(c.due_date);
        }
        let row = query.fetch_one(&mut *self.tx).await.map_err(|e| StoreError::db(op, e))?;
        Ok(Lookup::Found(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_named_by_id_before_title() {
        let id = TaskId::new();
        assert_eq!(TaskRef::parse(Some(id), Some("x")).unwrap(), TaskRef::Id(id));
        assert_eq!(TaskRef::parse(None, Some(" Pay ")).unwrap(), TaskRef::Title("Pay".into()));
        assert_eq!(TaskRef::parse(None, Some(" ")).unwrap_err().field, "task_id");
    }

    #[test]
    fn a_change_must_change_something() {
        assert_eq!(TaskChange::parse(None, None, None).unwrap_err().field, "new_title");
        assert_eq!(TaskChange::parse(Some(""), None, None).unwrap_err().field, "new_title");
        assert!(TaskChange::parse(None, Some("more"), None).is_ok());
    }
}

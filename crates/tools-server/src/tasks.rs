//! Task tools: the organization's to-do list. A task is named by `task_id` or by its exact,
//! case-insensitive `title`.

use agentyard_store::domain::{Lookup, NewTask, TaskChange, TaskRef, TaskRow, TaskStatus};
use chrono::NaiveDate;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::ToolServer;
use crate::args::{Args, date, input};
use crate::auth::{Caller, READ, WRITE};
use crate::reply::{Started, ToolError, finish, reply};

/// Arguments of `add_task`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddTask {
    /// What is to be done (1 to 200 characters).
    title: String,
    /// More detail about the task.
    #[serde(default)]
    description: Option<String>,
    /// When the task is due, as YYYY-MM-DD.
    #[serde(default, deserialize_with = "date")]
    due_date: Option<NaiveDate>,
}

/// Which tasks to list.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TaskFilter {
    #[default]
    All,
    Pending,
    Completed,
}

/// Arguments of `list_tasks`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListTasks {
    /// Which tasks: `all` (the default), `pending` or `completed`.
    #[serde(default)]
    status: TaskFilter,
}

/// A task, by id or by title.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FindTask {
    /// The task's id (as `list_tasks` shows it).
    #[serde(default)]
    task_id: Option<uuid::Uuid>,
    /// The task's exact title, case-insensitive; used when `task_id` is absent.
    #[serde(default)]
    title: Option<String>,
}

/// Arguments of `update_task`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateTask {
    /// The task's id (as `list_tasks` shows it).
    #[serde(default)]
    task_id: Option<uuid::Uuid>,
    /// The task's exact current title, case-insensitive; used when `task_id` is absent.
    #[serde(default)]
    title: Option<String>,
    /// The new title.
    #[serde(default)]
    new_title: Option<String>,
    /// The new description.
    #[serde(default)]
    description: Option<String>,
    /// The new due date, as YYYY-MM-DD.
    #[serde(default, deserialize_with = "date")]
    due_date: Option<NaiveDate>,
}

fn task_ref(task_id: Option<uuid::Uuid>, title: Option<&str>) -> Result<TaskRef, ToolError> {
    Ok(TaskRef::parse(task_id.map(agentyard_core::TaskId), title)?)
}

fn found(which: &TaskRef, lookup: Lookup<TaskRow>) -> Result<TaskRow, ToolError> {
    match lookup {
        Lookup::Found(task) => Ok(task),
        Lookup::NotFound => Err(ToolError::NotFound(format!(
            "no task you can see has the {which}; list_tasks shows them"
        ))),
        Lookup::Ambiguous => Err(ToolError::Refused(format!(
            "several tasks have the {which}; name one by task_id (list_tasks shows them)"
        ))),
    }
}

#[tool_router(router = task_tools, vis = "pub(crate)")]
impl ToolServer {
    /// Adds a task to the organization's to-do list. Returns the new task.
    #[tool(input_schema = input::<AddTask>())]
    async fn add_task(
        &self,
        caller: Caller,
        args: Args<AddTask>,
    ) -> Result<CallToolResult, ToolError> {
        caller.require(WRITE)?;
        let a = args.parse()?;
        let task = NewTask::parse(&a.title, a.description.as_deref(), a.due_date)?;
        let mut w = match self.begin_write(&caller, "add_task").await? {
            Started::Fresh(w) => w,
            Started::Replayed(result) => return Ok(result),
        };
        let row = w.add_task(&task).await?;
        finish(w, reply(format!("Added the task {:?}.", row.title), &row)).await
    }

    /// Lists the tasks of the user the run acts for (an admin's run: the whole organization's),
    /// oldest first: all of them, or only the pending or the completed ones.
    #[tool(input_schema = input::<ListTasks>(), annotations(read_only_hint = true))]
    async fn list_tasks(
        &self,
        caller: Caller,
        args: Args<ListTasks>,
    ) -> Result<CallToolResult, ToolError> {
        let c = caller.require(READ)?;
        let status = match args.parse()?.status {
            TaskFilter::All => None,
            TaskFilter::Pending => Some(TaskStatus::Pending),
            TaskFilter::Completed => Some(TaskStatus::Completed),
        };
        let tasks = self.store.list_tasks(c.org_id, c.owner(), status).await?;
        let pending = tasks.iter().filter(|t| t.status == TaskStatus::Pending).count();
        let sentence = format!(
            "{} task(s): {pending} pending, {} completed.",
            tasks.len(),
            tasks.len() - pending
        );
        Ok(reply(sentence, &tasks))
    }

    /// Marks a task completed. Name it by task_id or by its exact title.
    #[tool(input_schema = input::<FindTask>())]
    async fn complete_task(
        &self,
        caller: Caller,
        args: Args<FindTask>,
    ) -> Result<CallToolResult, ToolError> {
        caller.require(WRITE)?;
        let a = args.parse()?;
        let which = task_ref(a.task_id, a.title.as_deref())?;
        let mut w = match self.begin_write(&caller, "complete_task").await? {
            Started::Fresh(w) => w,
            Started::Replayed(result) => return Ok(result),
        };
        let row = found(&which, w.complete_task(&which).await?)?;
        finish(w, reply(format!("Completed the task {:?}.", row.title), &row)).await
    }

    /// Changes a task's title, description or due date. Name the task by task_id or by its
    /// exact current title; give at least one of new_title, description, due_date.
    #[tool(input_schema = input::<UpdateTask>())]
    async fn update_task(
        &self,
        caller: Caller,
        args: Args<UpdateTask>,
    ) -> Result<CallToolResult, ToolError> {
        caller.require(WRITE)?;
        let a = args.parse()?;
        let which = task_ref(a.task_id, a.title.as_deref())?;
        let change =
            TaskChange::parse(a.new_title.as_deref(), a.description.as_deref(), a.due_date)?;
        let mut w = match self.begin_write(&caller, "update_task").await? {
            Started::Fresh(w) => w,
            Started::Replayed(result) => return Ok(result),
        };
        let row = found(&which, w.update_task(&which, &change).await?)?;
        finish(w, reply(format!("Updated the task {:?}.", row.title), &row)).await
    }

    /// Deletes a task for good. Name it by task_id or by its exact title.
    #[tool(input_schema = input::<FindTask>(), annotations(destructive_hint = true))]
    async fn delete_task(
        &self,
        caller: Caller,
        args: Args<FindTask>,
    ) -> Result<CallToolResult, ToolError> {
        caller.require(WRITE)?;
        let a = args.parse()?;
        let which = task_ref(a.task_id, a.title.as_deref())?;
        let mut w = match self.begin_write(&caller, "delete_task").await? {
            Started::Fresh(w) => w,
            Started::Replayed(result) => return Ok(result),
        };
        let row = found(&which, w.delete_task(&which).await?)?;
        finish(w, reply(format!("Deleted the task {:?}.", row.title), &row)).await
    }
}

//! Workflow definitions (versioned), executions, and the transaction an execution advances in:
//! [`ExecTx`] holds the execution's row lock while the engine decides and the runs it starts or
//! cancels are written, so two orchestrators never advance one execution at once and a crash
//! leaves either all of a step transition or none of it (migrations/0004_workflows.sql).

use agentyard_core::outbox::Fact;
use agentyard_core::{ExecutionId, InvocationId, MessageId, OrgId, RunId, Scope, ThreadId, UserId};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, Postgres, Transaction};

use crate::outbox::decode_rows;
use crate::{OutboxRow, Result, Store, StoreError, field};

/// One version of an organization's definition.
#[derive(Clone, Debug, FromRow)]
pub struct WorkflowVersion {
    pub id: String,
    pub version: i32,
    pub definition: Value,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
}

/// The newest version of a definition that has a trigger (`schedule` or `on`).
#[derive(Clone, Debug, FromRow)]
pub struct TriggerRow {
    pub org_id: OrgId,
    pub id: String,
    pub version: i32,
    pub definition: Value,
    pub created_by: Option<UserId>,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
}

/// An inbound webhook of a workflow.
#[derive(Clone, Debug, FromRow)]
pub struct HookRow {
    pub id: uuid::Uuid,
    pub org_id: OrgId,
    pub workflow_id: String,
    pub created_by: Option<UserId>,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An execution as stored.
#[derive(Clone, Debug, FromRow)]
pub struct ExecutionRow {
    pub id: ExecutionId,
    pub org_id: OrgId,
    pub workflow_id: String,
    pub version: i32,
    pub definition: Value,
    pub inputs: Value,
    pub status: String,
    pub state: Value,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub trigger: Value,
    pub user_id: Option<UserId>,
    pub scopes: Vec<Scope>,
    pub concurrency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

const EXECUTION_COLUMNS: &str = "id, org_id, workflow_id, version, definition, inputs, status, \
    state, output, error, trigger, user_id, scopes, concurrency_key, created_at, started_at, \
    completed_at, updated_at";

/// A new execution.
#[derive(Clone, Debug)]
pub struct NewExecution {
    pub id: ExecutionId,
    pub org: OrgId,
    pub workflow_id: String,
    pub version: i32,
    pub definition: Value,
    pub inputs: Value,
    pub status: &'static str,
    pub state: Value,
    pub trigger: Value,
    pub user: Option<UserId>,
    pub scopes: Vec<Scope>,
    pub concurrency_key: Option<String>,
    /// The key and the SHA-256 of the request.
    pub idempotency: Option<(String, Vec<u8>)>,
}

/// What inserting an execution did.
#[derive(Debug)]
pub enum InsertOutcome {
    Created,
    /// The idempotency key was used before, for this execution with the same request.
    Idempotent(ExecutionId),
    /// The idempotency key was used before with another request.
    Mismatch,
}

/// How a step's run ended (or that it has not).
#[derive(Clone, Debug, FromRow)]
pub struct StepRun {
    pub id: RunId,
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<Value>,
}

/// Which executions a list returns.
#[derive(Clone, Debug, Default)]
pub struct ExecutionFilter {
    pub status: Option<String>,
    pub workflow_id: Option<String>,
    /// Only executions this user started.
    pub user: Option<UserId>,
}

/// The run of an agent step.
#[derive(Clone, Debug)]
pub struct NewAgentRun<'a> {
    pub run: RunId,
    pub org: OrgId,
    pub agent: agentyard_core::AgentId,
    pub user: Option<UserId>,
    pub input: &'a str,
    pub metadata: Value,
    pub scopes: &'a [Scope],
    pub execution: ExecutionId,
    pub step: &'a str,
    pub attempt: u32,
}

/// The run of a tool step.
#[derive(Clone, Debug)]
pub struct NewToolRun<'a> {
    pub run: RunId,
    pub org: OrgId,
    pub user: Option<UserId>,
    pub scopes: &'a [Scope],
    pub server: &'a str,
    pub tool: &'a str,
    pub arguments: &'a Value,
    pub metadata: Value,
    pub execution: ExecutionId,
    pub step: &'a str,
    pub attempt: u32,
}

impl Store {
    /// Adds a version of `org`'s definition `id` (1 for a new id).
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_workflow_version(
        &self,
        org: OrgId,
        id: &str,
        definition: &Value,
        user: Option<UserId>,
        scopes: &[Scope],
    ) -> Result<WorkflowVersion> {
        let mut tx = self.pool.begin().await.map_err(|e| StoreError::db("create_workflow", e))?;
        // Creates of one id serialize, so versions are 1, 2, 3, ... without gaps or clashes.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('ay_workflow:' || $1 || ':' || $2, 0))",
        )
        .bind(org)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::db("create_workflow", e))?;
        let row = sqlx::query_as(
            "INSERT INTO workflows(org_id, id, version, definition, created_by, scopes) \
             SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5 FROM workflows \
                WHERE org_id = $1 AND id = $2 \
             RETURNING id, version, definition, created_by, created_at",
        )
        .bind(org)
        .bind(id)
        .bind(definition)
        .bind(user)
        .bind(scopes)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::db("create_workflow", e))?;
        tx.commit().await.map_err(|e| StoreError::db("create_workflow", e))?;
        Ok(row)
    }

    /// Every version of `org`'s definition `id`, newest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn workflow_versions(&self, org: OrgId, id: &str) -> Result<Vec<WorkflowVersion>> {
        sqlx::query_as(
            "SELECT id, version, definition, created_by, created_at FROM workflows \
             WHERE org_id = $1 AND id = $2 ORDER BY version DESC",
        )
        .bind(org)
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("workflow_versions", e))
    }

    /// The newest version of each of `org`'s definitions, by id.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_workflows(&self, org: OrgId) -> Result<Vec<WorkflowVersion>> {
        sqlx::query_as(
            "SELECT DISTINCT ON (id) id, version, definition, created_by, created_at \
             FROM workflows WHERE org_id = $1 ORDER BY id, version DESC",
        )
        .bind(org)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list_workflows", e))
    }

    /// An execution of `org`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn get_execution(&self, org: OrgId, id: ExecutionId) -> Result<Option<ExecutionRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EXECUTION_COLUMNS} FROM workflow_executions WHERE id = $1 AND org_id = $2"
        )))
        .bind(id)
        .bind(org)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("get_execution", e))
    }

    /// `org`'s executions matching `filter`, newest first, before the cursor `before`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_executions(
        &self,
        org: OrgId,
        filter: &ExecutionFilter,
        before: Option<ExecutionId>,
        limit: i64,
    ) -> Result<Vec<ExecutionRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EXECUTION_COLUMNS} FROM workflow_executions \
             WHERE org_id = $1 AND ($2::text IS NULL OR status = $2) \
               AND ($3::text IS NULL OR workflow_id = $3) AND ($4::uuid IS NULL OR id < $4) \
               AND ($6::uuid IS NULL OR user_id = $6) \
             ORDER BY id DESC LIMIT $5"
        )))
        .bind(org)
        .bind(&filter.status)
        .bind(&filter.workflow_id)
        .bind(before)
        .bind(limit)
        .bind(filter.user)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list_executions", e))
    }

    /// Running executions whose earliest timer is due, oldest timer first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn due_executions(&self, limit: i64) -> Result<Vec<ExecutionId>> {
        sqlx::query_scalar(
            "SELECT id FROM workflow_executions \
             WHERE wake_at IS NOT NULL AND wake_at <= clock_timestamp() AND status = 'running' \
             ORDER BY wake_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("due_executions", e))
    }

    /// The execution an idempotency key of `org` started, with the SHA-256 of its request.
    ///
    /// # Errors
    /// Database failures.
    pub async fn idempotent_execution(
        &self,
        org: OrgId,
        key: &str,
    ) -> Result<Option<(ExecutionId, Vec<u8>)>> {
        sqlx::query_as(
            "SELECT id, request_sha256 FROM workflow_executions \
             WHERE org_id = $1 AND idempotency_key = $2",
        )
        .bind(org)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("idempotent_execution", e))
    }

    /// Every definition whose newest version has a trigger, of every organization.
    ///
    /// # Errors
    /// Database failures.
    pub async fn triggered_workflows(&self) -> Result<Vec<TriggerRow>> {
        sqlx::query_as(
            "SELECT * FROM (SELECT DISTINCT ON (org_id, id) org_id, id, version, definition, \
                created_by, scopes, created_at FROM workflows ORDER BY org_id, id, version DESC) w \
             WHERE definition ? 'schedule' OR definition ? 'on'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("triggered_workflows", e))
    }

    /// The newest cron tick fired for a workflow (UTC RFC 3339 with milliseconds).
    ///
    /// # Errors
    /// Database failures.
    pub async fn last_cron_tick(&self, org: OrgId, workflow: &str) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT max(trigger->>'scheduled_at') FROM workflow_executions \
             WHERE org_id = $1 AND workflow_id = $2 AND trigger->>'kind' = 'cron'",
        )
        .bind(org)
        .bind(workflow)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::db("last_cron_tick", e))
    }

    /// The steps of `org` waiting for `event_type` since before `at`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn event_waits(
        &self,
        org: OrgId,
        event_type: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<(ExecutionId, String)>> {
        sqlx::query_as(
            "SELECT execution_id, step_id FROM workflow_event_waits \
             WHERE org_id = $1 AND event_type = $2 AND created_at <= $3",
        )
        .bind(org)
        .bind(event_type)
        .bind(at)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("event_waits", e))
    }

    /// When the oldest event wait began (None: nothing waits for an event).
    ///
    /// # Errors
    /// Database failures.
    pub async fn oldest_event_wait(&self) -> Result<Option<DateTime<Utc>>> {
        sqlx::query_scalar("SELECT min(created_at) FROM workflow_event_waits")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("oldest_event_wait", e))
    }

    /// True when a workflow step started `run`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn is_workflow_run(&self, run: RunId) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM workflow_step_runs WHERE run_id = $1)")
            .bind(run)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("is_workflow_run", e))
    }

    /// Adds a webhook of `org`'s workflow.
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_hook(
        &self,
        org: OrgId,
        workflow: &str,
        user: Option<UserId>,
        scopes: &[Scope],
    ) -> Result<HookRow> {
        sqlx::query_as(
            "INSERT INTO workflow_hooks(id, org_id, workflow_id, created_by, scopes) \
             VALUES ($1, $2, $3, $4, $5) RETURNING *",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(org)
        .bind(workflow)
        .bind(user)
        .bind(scopes)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::db("create_hook", e))
    }

    /// A webhook (revoked ones too).
    ///
    /// # Errors
    /// Database failures.
    pub async fn get_hook(&self, id: uuid::Uuid) -> Result<Option<HookRow>> {
        sqlx::query_as("SELECT * FROM workflow_hooks WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::db("get_hook", e))
    }

    /// `org`'s live webhooks of a workflow, oldest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_hooks(&self, org: OrgId, workflow: &str) -> Result<Vec<HookRow>> {
        sqlx::query_as(
            "SELECT * FROM workflow_hooks WHERE org_id = $1 AND workflow_id = $2 \
               AND revoked_at IS NULL ORDER BY id",
        )
        .bind(org)
        .bind(workflow)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list_hooks", e))
    }

    /// Revokes a webhook of `org`; false when there is no such live hook.
    ///
    /// # Errors
    /// Database failures.
    pub async fn revoke_hook(&self, org: OrgId, id: uuid::Uuid) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE workflow_hooks SET revoked_at = clock_timestamp() \
             WHERE id = $1 AND org_id = $2 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(org)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("revoke_hook", e))?;
        Ok(n.rows_affected() == 1)
    }

    /// Starts a transaction for workflow transitions.
    ///
    /// # Errors
    /// Database failures.
    pub async fn begin_workflow(&self) -> Result<ExecTx> {
        let tx = self.pool.begin().await.map_err(|e| StoreError::db("begin_workflow", e))?;
        Ok(ExecTx { tx, rows: Vec::new() })
    }
}

/// A workflow transition's transaction; its outbox rows are returned by [`ExecTx::commit`] for
/// the caller to publish.
pub struct ExecTx {
    tx: Transaction<'static, Postgres>,
    rows: Vec<OutboxRow>,
}

impl std::fmt::Debug for ExecTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecTx").field("rows", &self.rows.len()).finish()
    }
}

impl ExecTx {
    fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    async fn exec(&mut self, sql: &'static str) -> Result<()> {
        sqlx::query(sql).execute(self.conn()).await.map_err(|e| StoreError::db("savepoint", e))?;
        Ok(())
    }

    /// Commits; returns the outbox rows written.
    ///
    /// # Errors
    /// Database failures.
    pub async fn commit(self) -> Result<Vec<OutboxRow>> {
        self.tx.commit().await.map_err(|e| StoreError::db("commit_workflow", e))?;
        Ok(self.rows)
    }

    /// Serializes the starts of one concurrency key until commit.
    ///
    /// # Errors
    /// Database failures.
    pub async fn lock_key(&mut self, org: OrgId, workflow: &str, key: &str) -> Result<()> {
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('ay_wf_key:' || $1 || ':' || $2 || ':' || $3, 0))",
        )
        .bind(org)
        .bind(workflow)
        .bind(key)
        .execute(self.conn())
        .await
        .map_err(|e| StoreError::db("lock_key", e))?;
        Ok(())
    }

    /// The live (queued or running) executions of a key, oldest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn live_of_key(
        &mut self,
        org: OrgId,
        workflow: &str,
        key: &str,
    ) -> Result<Vec<(ExecutionId, String)>> {
        sqlx::query_as(
            "SELECT id, status FROM workflow_executions \
             WHERE org_id = $1 AND workflow_id = $2 AND concurrency_key = $3 \
               AND status IN ('queued', 'running') ORDER BY created_at, id",
        )
        .bind(org)
        .bind(workflow)
        .bind(key)
        .fetch_all(self.conn())
        .await
        .map_err(|e| StoreError::db("live_of_key", e))
    }

    /// Inserts an execution (once per idempotency key).
    ///
    /// # Errors
    /// Database failures.
    pub async fn insert_execution(&mut self, new: &NewExecution) -> Result<InsertOutcome> {
        let (key, hash) = match &new.idempotency {
            Some((k, h)) => (Some(k.as_str()), Some(h.as_slice())),
            None => (None, None),
        };
        let inserted: Option<ExecutionId> = sqlx::query_scalar(
            "INSERT INTO workflow_executions(id, org_id, workflow_id, version, definition, inputs, \
                status, state, trigger, user_id, scopes, concurrency_key, idempotency_key, \
                request_sha256, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                CASE WHEN $7 = 'running' THEN clock_timestamp() END) \
             ON CONFLICT (org_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
             RETURNING id",
        )
        .bind(new.id)
        .bind(new.org)
        .bind(&new.workflow_id)
        .bind(new.version)
        .bind(&new.definition)
        .bind(&new.inputs)
        .bind(new.status)
        .bind(&new.state)
        .bind(&new.trigger)
        .bind(new.user)
        .bind(&new.scopes)
        .bind(&new.concurrency_key)
        .bind(key)
        .bind(hash)
        .fetch_optional(self.conn())
        .await
        .map_err(|e| StoreError::db("insert_execution", e))?;
        if inserted.is_some() {
            return Ok(InsertOutcome::Created);
        }
        let (id, seen): (ExecutionId, Option<Vec<u8>>) = sqlx::query_as(
            "SELECT id, request_sha256 FROM workflow_executions \
             WHERE org_id = $1 AND idempotency_key = $2",
        )
        .bind(new.org)
        .bind(key)
        .fetch_one(self.conn())
        .await
        .map_err(|e| StoreError::db("insert_execution", e))?;
        Ok(if seen.as_deref() == hash {
            InsertOutcome::Idempotent(id)
        } else {
            InsertOutcome::Mismatch
        })
    }

    /// Locks an execution (of `org` when given) until commit and reads it.
    ///
    /// # Errors
    /// Database failures.
    pub async fn lock_execution(
        &mut self,
        id: ExecutionId,
        org: Option<OrgId>,
    ) -> Result<Option<ExecutionRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EXECUTION_COLUMNS} FROM workflow_executions \
             WHERE id = $1 AND ($2::uuid IS NULL OR org_id = $2) FOR UPDATE"
        )))
        .bind(id)
        .bind(org)
        .fetch_optional(self.conn())
        .await
        .map_err(|e| StoreError::db("lock_execution", e))
    }

    /// Stores an execution's state.
    ///
    /// # Errors
    /// Database failures.
    pub async fn save_execution(
        &mut self,
        id: ExecutionId,
        status: &str,
        state: &Value,
        output: Option<&Value>,
        error: Option<&Value>,
        wake_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE workflow_executions SET status = $2, state = $3, output = $4, error = $5, \
                wake_at = $6, updated_at = clock_timestamp(), \
                started_at = CASE WHEN $2 <> 'queued' THEN coalesce(started_at, clock_timestamp()) END, \
                completed_at = CASE WHEN $2 IN ('completed', 'failed', 'cancelled') \
                    THEN coalesce(completed_at, clock_timestamp()) END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(state)
        .bind(output)
        .bind(error)
        .bind(wake_at)
        .execute(self.conn())
        .await
        .map_err(|e| StoreError::db("save_execution", e))?;
        Ok(())
    }

    /// How the runs `ids` stand.
    ///
    /// # Errors
    /// Database failures.
    pub async fn step_runs(&mut self, ids: &[RunId]) -> Result<Vec<StepRun>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_as("SELECT id, status, output, error FROM runs WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(self.conn())
            .await
            .map_err(|e| StoreError::db("step_runs", e))
    }

    /// Starts an agent step's run on a new thread. `Ok(None)` when the agent is gone or
    /// deactivated (the step fails with that).
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_agent_run(&mut self, new: &NewAgentRun<'_>) -> Result<Option<()>> {
        // A savepoint: ay_create_run raises on a missing or inactive agent, which must not
        // abort the whole transition.
        self.exec("SAVEPOINT ay_agent_run").await?;
        let res: std::result::Result<Value, sqlx::Error> = sqlx::query_scalar(
            "SELECT ay_create_run($1, NULL, $2, $3, $4, $5, 'enqueue', $6, NULL, NULL, $7, $8, \
                'normal', NULL, $9)",
        )
        .bind(new.org)
        .bind(new.run)
        .bind(new.agent)
        .bind(new.user)
        .bind(new.input)
        .bind(&new.metadata)
        .bind(ThreadId::new())
        .bind(MessageId::new())
        .bind(new.scopes)
        .fetch_one(self.conn())
        .await;
        let v = match res {
            Ok(v) => v,
            Err(sqlx::Error::Database(db)) if db.code().is_some_and(|c| c.starts_with("AY")) => {
                self.exec("ROLLBACK TO SAVEPOINT ay_agent_run").await?;
                return Ok(None);
            }
            Err(e) => return Err(StoreError::db("create_agent_run", e)),
        };
        sqlx::query(
            "INSERT INTO workflow_step_runs(run_id, execution_id, step_id, attempt, kind) \
             VALUES ($1, $2, $3, $4, 'agent')",
        )
        .bind(new.run)
        .bind(new.execution)
        .bind(new.step)
        .bind(i32::try_from(new.attempt).unwrap_or(i32::MAX))
        .execute(self.conn())
        .await
        .map_err(|e| StoreError::db("create_agent_run", e))?;
        self.exec("RELEASE SAVEPOINT ay_agent_run").await?;
        self.rows.extend(decode_rows("create_agent_run", &field(&v, "outbox"))?);
        Ok(Some(()))
    }

    /// Starts a tool step's run (one call).
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_tool_run(&mut self, new: &NewToolRun<'_>) -> Result<()> {
        let v: Value = sqlx::query_scalar(
            "SELECT ay_create_tool_run($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(new.org)
        .bind(new.run)
        .bind(ThreadId::new())
        .bind(new.user)
        .bind(new.scopes)
        .bind(InvocationId::new())
        .bind(new.server)
        .bind(new.tool)
        .bind(new.arguments)
        .bind(&new.metadata)
        .bind(new.execution)
        .bind(new.step)
        .bind(i32::try_from(new.attempt).unwrap_or(i32::MAX))
        .fetch_one(self.conn())
        .await
        .map_err(|e| StoreError::db("create_tool_run", e))?;
        self.rows.extend(decode_rows("create_tool_run", &v)?);
        Ok(())
    }

    /// Cancels a step's run (nothing when it already ended).
    ///
    /// # Errors
    /// Database failures.
    pub async fn cancel_run(&mut self, org: OrgId, run: RunId) -> Result<()> {
        let v: Value = sqlx::query_scalar("SELECT ay_cancel_run($1, $2)")
            .bind(org)
            .bind(run)
            .fetch_one(self.conn())
            .await
            .map_err(|e| StoreError::db("cancel_step_run", e))?;
        self.rows.extend(decode_rows("cancel_step_run", &field(&v, "outbox"))?);
        Ok(())
    }

    /// The organization's live agents (read in this transaction: a transition never waits for
    /// a second connection of the pool).
    ///
    /// # Errors
    /// Database failures.
    pub async fn org_agents(&mut self, org: OrgId) -> Result<Vec<crate::agents::AgentRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM agents WHERE org_id = $1 AND deleted_at IS NULL ORDER BY created_at, id",
            crate::agents::COLUMNS
        )))
        .bind(org)
        .fetch_all(self.conn())
        .await
        .map_err(|e| StoreError::db("org_agents", e))
    }

    /// The organization's agent of `agent_type`, provisioned (named `name`) when it has none
    /// (or brought back when deleted): (id, active).
    ///
    /// # Errors
    /// Database failures.
    pub async fn agent_of_type(
        &mut self,
        org: OrgId,
        agent_type: &str,
        name: &str,
    ) -> Result<(agentyard_core::AgentId, bool)> {
        let live = "SELECT id, is_active FROM agents \
                    WHERE org_id = $1 AND agent_type = $2 AND deleted_at IS NULL";
        let found: Option<(agentyard_core::AgentId, bool)> = sqlx::query_as(live)
            .bind(org)
            .bind(agent_type)
            .fetch_optional(self.conn())
            .await
            .map_err(|e| StoreError::db("agent_of_type", e))?;
        if let Some(f) = found {
            return Ok(f);
        }
        let made: Option<(agentyard_core::AgentId, bool)> = sqlx::query_as(
            "INSERT INTO agents(id, org_id, agent_type, name, config) VALUES ($1, $2, $3, $4, '{}') \
             ON CONFLICT (org_id, agent_type) DO UPDATE \
                SET name = EXCLUDED.name, config = '{}', is_active = true, deleted_at = NULL, \
                    created_at = now(), updated_at = now() \
                WHERE agents.deleted_at IS NOT NULL \
             RETURNING id, is_active",
        )
        .bind(agentyard_core::AgentId::new())
        .bind(org)
        .bind(agent_type)
        .bind(name)
        .fetch_optional(self.conn())
        .await
        .map_err(|e| StoreError::db("agent_of_type", e))?;
        match made {
            Some(m) => Ok(m),
            // Made live by another transaction meanwhile.
            None => sqlx::query_as(live)
                .bind(org)
                .bind(agent_type)
                .fetch_one(self.conn())
                .await
                .map_err(|e| StoreError::db("agent_of_type", e)),
        }
    }

    /// Makes the event waits of an execution exactly `waits` ((step, event type)).
    ///
    /// # Errors
    /// Database failures.
    pub async fn sync_event_waits(
        &mut self,
        execution: ExecutionId,
        org: OrgId,
        waits: &[(String, String)],
    ) -> Result<()> {
        let steps: Vec<&str> = waits.iter().map(|(s, _)| s.as_str()).collect();
        let types: Vec<&str> = waits.iter().map(|(_, t)| t.as_str()).collect();
        sqlx::query(
            "WITH gone AS (DELETE FROM workflow_event_waits \
                WHERE execution_id = $1 AND NOT (step_id = ANY($3))) \
             INSERT INTO workflow_event_waits(execution_id, step_id, org_id, event_type) \
             SELECT $1, s, $2, t FROM unnest($3::text[], $4::text[]) AS w(s, t) \
             ON CONFLICT DO NOTHING",
        )
        .bind(execution)
        .bind(org)
        .bind(&steps)
        .bind(&types)
        .execute(self.conn())
        .await
        .map_err(|e| StoreError::db("sync_event_waits", e))?;
        Ok(())
    }

    /// Writes facts to publish after commit.
    ///
    /// # Errors
    /// Database failures.
    pub async fn publish(&mut self, facts: Vec<Fact>) -> Result<()> {
        if facts.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_value(&facts)
            .map_err(|e| StoreError::Decode { op: "publish", detail: e.to_string() })?;
        let id: i64 = sqlx::query_scalar("INSERT INTO outbox(facts) VALUES ($1) RETURNING id")
            .bind(&json)
            .fetch_one(self.conn())
            .await
            .map_err(|e| StoreError::db("publish", e))?;
        self.rows.push(OutboxRow { id, facts });
        Ok(())
    }
}

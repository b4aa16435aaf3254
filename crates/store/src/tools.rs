//! Tool calls: the step machine's transitions (Postgres functions of
//! `migrations/0003_tools.sql`), the audit log, the tool definitions offered to models, and
//! the MCP servers organizations register.

use agentyard_core::run::{InputAnswer, RequiredInput, Run};
use agentyard_core::{
    AgentId, InvocationId, McpServerId, MessageId, OrgId, RunId, Scope, TokenId, UserId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::group::{self, answered};
use crate::outbox::decode_rows;
use crate::{OutboxRow, Result, Store, StoreError, decode, field};

/// A call the model made, about to be stored.
#[derive(Clone, Debug, Serialize)]
pub struct NewCall {
    pub invocation_id: InvocationId,
    pub call_id: String,
    /// The name the model called.
    pub name: String,
    pub server: String,
    /// Parsed arguments (`{"_raw": text}` when the model wrote invalid JSON).
    pub arguments: serde_json::Value,
    pub raw_arguments: String,
    /// The turn's transaction claims the call (counts its first attempt): the agent worker
    /// runs it right after, with no claim of its own ([`PendingCall::claimed_by_turn`]).
    pub claimed: bool,
}

/// A transition's result.
#[derive(Debug)]
pub struct Transition {
    pub applied: bool,
    /// True when this result was the step's last: the next AgentStep is in `outbox`.
    pub next_step: bool,
    pub outbox: Vec<OutboxRow>,
}

/// An invocation with what a tool worker needs to run it.
#[derive(Clone, Debug, FromRow)]
pub struct PendingCall {
    pub id: InvocationId,
    pub org_id: OrgId,
    pub run_id: RunId,
    pub user_id: Option<UserId>,
    pub agent_id: AgentId,
    pub step: i32,
    /// The model's id of the call.
    pub call_id: String,
    pub server: String,
    pub tool: String,
    pub arguments: serde_json::Value,
    /// `pending`, `requires_input` or `completed`.
    pub status: String,
    /// Attempts counted so far: a claimed call's includes its own.
    pub attempt: i32,
    /// How many times the call was dispatched (a job of another round is stale).
    pub round: i32,
    /// Answers given so far, by request key.
    pub input_response: Option<serde_json::Value>,
    pub run_status: agentyard_core::run::RunStatus,
    pub run_step: i32,
    pub scopes: Vec<Scope>,
    pub agent_type: Option<String>,
    pub agent_name: Option<String>,
    pub agent_config: Option<serde_json::Value>,
    /// The call is a workflow's tool step: the definition named the tool, so the agent's tool
    /// settings (enabled tools, approvals) do not apply; scopes still do.
    pub workflow_step: bool,
    /// When the worker started a call its turn claimed (whose row has no `started_at` until
    /// its result); None for a call a claim started (the claim set `started_at`).
    #[sqlx(skip)]
    pub started: Option<DateTime<Utc>>,
}

impl PendingCall {
    /// A call `run`'s turn at `step` stored and claimed ([`NewCall::claimed`]), as the claim
    /// would have read it, started now: the run is in progress at that step, and a model's
    /// call is never a workflow's tool step.
    pub fn claimed_by_turn(run: &crate::runs::StartedRun, step: i32, call: &NewCall) -> Self {
        Self {
            id: call.invocation_id,
            org_id: run.org_id,
            run_id: run.run.id,
            user_id: run.run.user_id,
            agent_id: run.run.agent_id,
            step,
            call_id: call.call_id.clone(),
            server: call.server.clone(),
            tool: call.name.clone(),
            arguments: call.arguments.clone(),
            status: "pending".to_owned(),
            attempt: 1,
            round: 0,
            input_response: None,
            run_status: agentyard_core::run::RunStatus::InProgress,
            run_step: step,
            scopes: run.scopes.clone(),
            agent_type: Some(run.agent_type.clone()),
            agent_name: Some(run.agent_name.clone()),
            agent_config: Some(run.agent_config.clone()),
            workflow_step: false,
            started: Some(Utc::now()),
        }
    }

    /// The answer stored under `key`, if a human (or the input timeout) gave one.
    pub fn answer(&self, key: &str) -> Option<InputAnswer> {
        let v = self.input_response.as_ref()?.get(key)?;
        serde_json::from_value(v.clone()).ok()
    }
}

/// How an answer to a run's input request ended.
#[derive(Debug)]
pub enum AnswerOutcome {
    NotFound,
    /// The run waits for nothing (or not for that call).
    NotWaiting,
    /// Stored; the call is enqueued again (in `outbox`).
    Answered {
        invocation: InvocationId,
        run: Box<Run>,
        outbox: Vec<OutboxRow>,
    },
}

/// A call whose wait for a human is over (its deadline passed).
#[derive(Clone, Debug, FromRow)]
pub struct DueInput {
    pub id: InvocationId,
    pub org_id: OrgId,
    pub run_id: RunId,
    #[sqlx(json)]
    pub input_request: RequiredInput,
}

/// One row of the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Invocation {
    pub id: InvocationId,
    /// Null for a call an MCP client made with an API token (then `token_id` names the token).
    pub run_id: Option<RunId>,
    pub org_id: OrgId,
    pub user_id: Option<UserId>,
    /// Null for a call an MCP client made with an API token.
    pub agent_id: Option<AgentId>,
    /// The API token of a call an MCP client made directly; null for a run's call.
    pub token_id: Option<TokenId>,
    pub step: i32,
    pub server: String,
    pub tool: String,
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
    /// `pending`, `requires_input` or `completed`.
    pub status: String,
    pub result: Option<String>,
    pub is_error: Option<bool>,
    pub error: Option<String>,
    pub attempt: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i32>,
}

const INVOCATION_COLUMNS: &str = "id, run_id, org_id, user_id, agent_id, token_id, step, \
    server, tool, arguments, status, result, is_error, error, attempt, created_at, started_at, \
    completed_at, duration_ms";

/// How a call of the audit log ended, as a filter: read from a row's `status` and `is_error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvocationOutcome {
    /// Completed, and neither `is_error` nor an `error`.
    Ok,
    /// Completed with `is_error` true or an `error` (the server's, or the platform's).
    Error,
    /// Not completed yet: `status` is `pending` or `requires_input`.
    Pending,
}

impl InvocationOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Pending => "pending",
        }
    }
}

/// Which calls of the audit log to read.
#[derive(Clone, Copy, Debug, Default)]
pub struct InvocationFilter<'a> {
    /// Calls of this tool (the name the model called).
    pub tool: Option<&'a str>,
    /// Calls to this server (`builtin`, or a server's name).
    pub server: Option<&'a str>,
    /// Calls that ended (or not yet) so.
    pub outcome: Option<InvocationOutcome>,
    /// Calls made at or after.
    pub since: Option<DateTime<Utc>>,
    /// Calls made before.
    pub until: Option<DateTime<Utc>>,
    /// Calls this user made: of runs they started, or with their API token.
    pub user: Option<UserId>,
}

/// A tool a model may be offered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, FromRow)]
pub struct ToolSpec {
    pub server: String,
    /// The name the model sees (`server__tool` for servers other than the built-in one).
    pub name: String,
    pub description: Option<String>,
    pub input_schema: serde_json::Value,
}

/// An MCP server an organization registered (never with its token).
#[derive(Clone, Debug, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct McpServer {
    pub id: McpServerId,
    pub name: String,
    pub url: String,
    /// True when a bearer token is stored (it is never shown).
    pub has_token: bool,
    /// The cached `tools/list`: `[{name, description, input_schema}]`.
    #[schema(value_type = Vec<Object>)]
    pub tools: serde_json::Value,
    pub tools_refreshed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A server of the platform (declared by the operator, or the built-in one).
#[derive(Clone, Debug, PartialEq, Serialize, FromRow)]
pub struct PlatformServer {
    pub name: String,
    /// `http` or `stdio`.
    pub transport: String,
    pub tools_refreshed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Listings that failed in a row (each waits twice as long as the one before).
    pub failures: i32,
    /// `[{name, description, input_schema}]`.
    pub tools: serde_json::Value,
}

const SERVER_COLUMNS: &str = "id, name, url, bearer_token IS NOT NULL AS has_token, tools, \
    tools_refreshed_at, last_error, created_at";

/// One [`Store::claim_call`] call, queued for its group.
#[derive(Debug)]
pub(crate) struct ClaimCall {
    invocation: InvocationId,
    round: i32,
}

/// A claimed call and the position of its claim in the batch (from 1).
#[derive(FromRow)]
struct Claimed {
    n: i64,
    #[sqlx(flatten)]
    call: PendingCall,
}

/// One [`Store::tool_step`] call, queued for its group.
#[derive(Debug)]
pub(crate) struct StepCall {
    run: RunId,
    step: i32,
    message: MessageId,
    content: String,
    calls: serde_json::Value,
    usage: serde_json::Value,
}

/// One [`Store::tool_result`] call, queued for its group.
#[derive(Debug)]
pub(crate) struct ResultCall {
    invocation: InvocationId,
    result: String,
    is_error: bool,
    error: Option<String>,
    attempt: i32,
    started_at: Option<DateTime<Utc>>,
}

fn transition(op: &'static str, v: &serde_json::Value) -> Result<Transition> {
    Ok(Transition {
        applied: v["applied"].as_bool().unwrap_or(false),
        next_step: v["next_step"].as_bool().unwrap_or(false),
        outbox: decode_rows(op, &v["outbox"])?,
    })
}

impl Store {
    /// Stores a step that ended in tool calls (see `ay_tool_step`). Concurrent steps commit
    /// together ([`crate::group`]).
    ///
    /// # Errors
    /// Database failures.
    pub async fn tool_step(
        &self,
        run: RunId,
        step: i32,
        message: MessageId,
        content: &str,
        calls: &[NewCall],
        usage: &serde_json::Value,
    ) -> Result<Transition> {
        let calls = serde_json::to_value(calls)
            .map_err(|e| StoreError::Decode { op: "tool_step", detail: e.to_string() })?;
        let call = StepCall {
            run,
            step,
            message,
            content: content.to_owned(),
            calls,
            usage: usage.clone(),
        };
        static STEP: group::Transition<StepCall, Transition> = group::Transition {
            op: "tool_step",
            together: |store, batch| Box::pin(store.tool_steps_together(batch)),
            alone: |store, call| Box::pin(store.tool_step_alone(call)),
            gather: true,
        };
        self.commit(&self.groups.tool_step, &STEP, call).await
    }

    /// Stores `batch` in one statement and transaction (`ay_tool_steps`: a few statements for
    /// the whole batch, its threads locked in id order).
    async fn tool_steps_together(&self, batch: &[StepCall]) -> Result<Vec<Result<Transition>>> {
        let rows = sqlx::query_as::<_, (i64, serde_json::Value)>(
            "SELECT turn, outcome FROM ay_tool_steps($1, $2, $3, $4, $5, $6)",
        )
        .bind(batch.iter().map(|c| c.run).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| c.step).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| c.message).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| c.content.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| &c.calls).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| &c.usage).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("tool_step", e))?;
        Ok(answered(rows, batch.len(), "tool_step", |v| transition("tool_step", &v)))
    }

    async fn tool_step_alone(&self, c: &StepCall) -> Result<Transition> {
        let v: serde_json::Value =
            sqlx::query_scalar("SELECT ay_tool_step($1, $2, $3, $4, $5, $6)")
                .bind(c.run)
                .bind(c.step)
                .bind(c.message)
                .bind(&c.content)
                .bind(&c.calls)
                .bind(&c.usage)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| StoreError::db("tool_step", e))?;
        transition("tool_step", &v)
    }

    /// Records the end of a call (see `ay_tool_result`). Concurrent results commit together
    /// ([`crate::group`]).
    ///
    /// # Errors
    /// Database failures.
    pub async fn tool_result(
        &self,
        invocation: InvocationId,
        result: &str,
        is_error: bool,
        error: Option<&str>,
        attempt: i32,
        started_at: Option<DateTime<Utc>>,
    ) -> Result<Transition> {
        let call = ResultCall {
            invocation,
            result: result.to_owned(),
            is_error,
            error: error.map(str::to_owned),
            attempt,
            started_at,
        };
        static RESULT: group::Transition<ResultCall, Transition> = group::Transition {
            op: "tool_result",
            together: |store, batch| Box::pin(store.tool_results_together(batch)),
            alone: |store, call| Box::pin(store.tool_result_alone(call)),
            gather: true,
        };
        self.commit(&self.groups.tool_result, &RESULT, call).await
    }

    /// Records `batch` in one statement and transaction (`ay_tool_results`: a few statements
    /// for the whole batch, its threads locked in id order). Two calls of one step in a batch:
    /// the later one ends the step, and enqueues the next one.
    async fn tool_results_together(&self, batch: &[ResultCall]) -> Result<Vec<Result<Transition>>> {
        let rows = sqlx::query_as::<_, (i64, serde_json::Value)>(
            "SELECT result, outcome FROM ay_tool_results($1, $2, $3, $4, $5, $6)",
        )
        .bind(batch.iter().map(|c| c.invocation).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| c.result.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| c.is_error).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| c.error.as_deref()).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| c.attempt).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| c.started_at).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("tool_result", e))?;
        Ok(answered(rows, batch.len(), "tool_result", |v| transition("tool_result", &v)))
    }

    async fn tool_result_alone(&self, c: &ResultCall) -> Result<Transition> {
        let v: serde_json::Value =
            sqlx::query_scalar("SELECT ay_tool_result($1, $2, $3, $4, $5, $6)")
                .bind(c.invocation)
                .bind(&c.result)
                .bind(c.is_error)
                .bind(c.error.as_deref())
                .bind(c.attempt)
                .bind(c.started_at)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| StoreError::db("tool_result", e))?;
        transition("tool_result", &v)
    }

    /// The call (of dispatch `round`) waits for a human until `deadline`: the run goes to
    /// `requires_input` (see `ay_tool_input`). The answer will be stored under `key`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn tool_input(
        &self,
        invocation: InvocationId,
        round: i32,
        request: &RequiredInput,
        key: &str,
        deadline: DateTime<Utc>,
    ) -> Result<Transition> {
        let request = serde_json::to_value(request)
            .map_err(|e| StoreError::Decode { op: "tool_input", detail: e.to_string() })?;
        let v: serde_json::Value = sqlx::query_scalar("SELECT ay_tool_input($1, $2, $3, $4, $5)")
            .bind(invocation)
            .bind(round)
            .bind(request)
            .bind(key)
            .bind(deadline)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("tool_input", e))?;
        transition("tool_input", &v)
    }

    /// Answers a call of a run of `org` that waits for a human: `invocation`, or the one the
    /// run shows (see `ay_answer_input`).
    ///
    /// # Errors
    /// Database failures.
    pub async fn answer_input(
        &self,
        org: OrgId,
        run: RunId,
        invocation: Option<InvocationId>,
        answer: &InputAnswer,
    ) -> Result<AnswerOutcome> {
        let answer = serde_json::to_value(answer)
            .map_err(|e| StoreError::Decode { op: "answer_input", detail: e.to_string() })?;
        let v: serde_json::Value = sqlx::query_scalar("SELECT ay_answer_input($1, $2, $3, $4)")
            .bind(org)
            .bind(run)
            .bind(invocation)
            .bind(answer)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("answer_input", e))?;
        match v["outcome"].as_str() {
            Some("not_found") => Ok(AnswerOutcome::NotFound),
            Some("not_waiting") => Ok(AnswerOutcome::NotWaiting),
            Some("answered") => Ok(AnswerOutcome::Answered {
                invocation: decode("answer_input", field(&v, "invocation_id"))?,
                run: decode("answer_input", field(&v, "run"))?,
                outbox: decode_rows("answer_input", &v["outbox"])?,
            }),
            other => {
                Err(StoreError::Decode { op: "answer_input", detail: format!("outcome {other:?}") })
            }
        }
    }

    /// Calls whose wait for a human is past its deadline, oldest deadline first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn due_inputs(&self, limit: i64) -> Result<Vec<DueInput>> {
        // On the generic pool, which looks rows up by index: planned on a table never
        // analyzed, this read every call ever made, every 2 s in every worker.
        sqlx::query_as(
            "SELECT id, org_id, run_id, input_request FROM tool_invocations \
             WHERE input_deadline < now() AND status = 'requires_input' \
             ORDER BY input_deadline LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.generic)
        .await
        .map_err(|e| StoreError::db("due_inputs", e))
    }

    /// Takes call `invocation` for dispatch `round`: counts an attempt (and marks it started)
    /// when it is still `pending` in that round, and returns it with its run's state, principal
    /// and agent, the attempt included. `None`: the call is done, waits for a human, or belongs
    /// to another round (a stale job). A call the worker then does not run gives the attempt
    /// back ([`Store::release_attempt`]). Concurrent claims commit together ([`crate::group`]),
    /// without gathering: a claim is the last step before a call starts, and measured with
    /// `tools --clients 32` (BENCHMARKS.md, "Built-in calls in the agent worker") the lane's
    /// yields to a busy agent worker cost its p99 about 3 ms for no more runs/s.
    ///
    /// # Errors
    /// Database failures.
    pub async fn claim_call(
        &self,
        invocation: InvocationId,
        round: i32,
    ) -> Result<Option<PendingCall>> {
        static CLAIM: group::Transition<ClaimCall, Option<PendingCall>> = group::Transition {
            op: "claim_call",
            together: |store, batch| Box::pin(store.claim_calls_together(batch)),
            alone: |store, call| Box::pin(store.claim_call_alone(call)),
            gather: false,
        };
        self.commit(&self.groups.claim, &CLAIM, ClaimCall { invocation, round }).await
    }

    /// Claims `batch` in one statement and transaction (a call named twice is claimed once).
    /// Only a call still `pending` in its round is claimed: one that ended, or waits for a
    /// human, is not run again by a duplicate or late delivery.
    ///
    /// The commit does not wait for the WAL flush. A claim lost in a crash of Postgres only
    /// undercounts one attempt of a call that is then run again; the call's status stays
    /// `pending` until its result, and any later commit that waits (the result's) flushes the
    /// claim's WAL before its own.
    async fn claim_calls_together(
        &self,
        batch: &[ClaimCall],
    ) -> Result<Vec<Result<Option<PendingCall>>>> {
        let rows: Vec<Claimed> = sqlx::query_as(
            "WITH x AS (SELECT * FROM unnest($1::uuid[], $2::int4[]) \
                        WITH ORDINALITY AS x(id, round, n)), \
             i AS (UPDATE tool_invocations t SET attempt = t.attempt + 1, \
                          started_at = coalesce(t.started_at, clock_timestamp()) \
                   FROM x WHERE t.id = x.id AND t.round = x.round AND t.status = 'pending' \
                   RETURNING x.n, t.*) \
             SELECT i.n, set_config('synchronous_commit', 'off', true) AS _async_commit, \
                    i.id, i.org_id, i.run_id, i.user_id, i.agent_id, i.step, i.call_id, \
                    i.server, i.tool, i.arguments, i.status, i.attempt, i.round, \
                    i.input_response, r.status AS run_status, r.step AS run_step, r.scopes, \
                    a.agent_type, a.name AS agent_name, a.config AS agent_config, \
                    EXISTS (SELECT 1 FROM workflow_step_runs w \
                            WHERE w.run_id = i.run_id AND w.kind = 'tool') AS workflow_step \
             FROM i JOIN runs r ON r.id = i.run_id LEFT JOIN agents a ON a.id = i.agent_id",
        )
        .bind(batch.iter().map(|c| c.invocation).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| c.round).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("claim_call", e))?;
        let rows = rows.into_iter().map(|c| (c.n, c.call));
        Ok(group::by_call(rows, batch.len()).into_iter().map(Ok).collect())
    }

    async fn claim_call_alone(&self, c: &ClaimCall) -> Result<Option<PendingCall>> {
        let mut one = self.claim_calls_together(std::slice::from_ref(c)).await?;
        one.pop().unwrap_or(Ok(None))
    }

    /// The built-in calls of `run`'s step `step` still pending in their first round, in call
    /// order: an agent worker that runs its built-in calls itself (and sends them to no tool
    /// worker) died before they ended, when its job comes back and finds the step stored.
    ///
    /// # Errors
    /// Database failures.
    pub async fn unfinished_builtin_calls(
        &self,
        run: RunId,
        step: i32,
    ) -> Result<Vec<InvocationId>> {
        sqlx::query_scalar(
            "SELECT id FROM tool_invocations WHERE run_id = $1 AND step = $2 AND server = $3 \
             AND round = 0 AND status = 'pending' ORDER BY call_index",
        )
        .bind(run)
        .bind(step)
        .bind(agentyard_core::tools::BUILTIN_SERVER)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("unfinished_builtin_calls", e))
    }

    /// Takes back the attempt [`Store::claim_call`] counted, for a call that did not run: a
    /// check refused it, it waits for a human's approval, its server's breaker is open, or the
    /// platform's own tool server could not serve it (an outage, which spends no attempt). A
    /// call back at no attempt is not started either.
    ///
    /// # Errors
    /// Database failures.
    pub async fn release_attempt(&self, invocation: InvocationId) -> Result<()> {
        sqlx::query(
            "UPDATE tool_invocations SET attempt = attempt - 1, \
                started_at = CASE WHEN attempt = 1 THEN NULL ELSE started_at END \
             WHERE id = $1 AND attempt > 0",
        )
        .bind(invocation)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("release_attempt", e))?;
        Ok(())
    }

    /// The audit log of one run of `org`, oldest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn run_invocations(&self, org: OrgId, run: RunId) -> Result<Vec<Invocation>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INVOCATION_COLUMNS} FROM tool_invocations WHERE org_id = $1 AND run_id = $2 \
             ORDER BY step, call_index"
        )))
        .bind(org)
        .bind(run)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("run_invocations", e))
    }

    /// The org's audit log matching `filter`, newest first (by `created_at`, then `id`): at most
    /// `limit` calls, those after the call `before` when given (a keyset cursor).
    ///
    /// # Errors
    /// Database failures.
    pub async fn org_invocations(
        &self,
        org: OrgId,
        filter: &InvocationFilter<'_>,
        before: Option<InvocationId>,
        limit: i64,
    ) -> Result<Vec<Invocation>> {
        // The outcomes as `InvocationOutcome` documents them (`is_error` is null until the
        // call completes).
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INVOCATION_COLUMNS} FROM tool_invocations WHERE org_id = $1 \
             AND ($2::text IS NULL OR tool = $2) AND ($3::timestamptz IS NULL OR created_at >= $3) \
             AND ($5::uuid IS NULL OR user_id = $5) \
             AND ($6::text IS NULL OR server = $6) \
             AND ($7::timestamptz IS NULL OR created_at < $7) \
             AND ($8::text IS NULL OR CASE $8 \
                 WHEN 'pending' THEN status <> 'completed' \
                 WHEN 'error' THEN status = 'completed' \
                     AND (coalesce(is_error, false) OR error IS NOT NULL) \
                 ELSE status = 'completed' AND NOT coalesce(is_error, false) AND error IS NULL \
                 END) \
             AND ($9::uuid IS NULL OR (created_at, id) < \
                  (SELECT created_at, id FROM tool_invocations WHERE id = $9 AND org_id = $1)) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        )))
        .bind(org)
        .bind(filter.tool)
        .bind(filter.since)
        .bind(limit)
        .bind(filter.user)
        .bind(filter.server)
        .bind(filter.until)
        .bind(filter.outcome.map(InvocationOutcome::as_str))
        .bind(before)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("org_invocations", e))
    }

    /// Every tool `org` can offer a model: the platform servers' tools and its own servers'
    /// (namespaced `server__tool`).
    ///
    /// # Errors
    /// Database failures.
    pub async fn tool_specs(&self, org: OrgId) -> Result<Vec<ToolSpec>> {
        sqlx::query_as(
            "SELECT server, CASE WHEN server = 'builtin' THEN name ELSE server || '__' || name END \
                    AS name, description, input_schema FROM platform_tools \
             UNION ALL \
             SELECT s.name, s.name || '__' || (t->>'name'), t->>'description', \
                    coalesce(t->'input_schema', '{\"type\": \"object\"}') \
             FROM mcp_servers s, jsonb_array_elements(s.tools) t WHERE s.org_id = $1",
        )
        .bind(org)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("tool_specs", e))
    }

    /// Replaces the cached tools of a platform server.
    ///
    /// # Errors
    /// Database failures.
    pub async fn set_platform_tools(&self, server: &str, tools: &[ToolSpec]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(|e| StoreError::db("platform_tools", e))?;
        sqlx::query("DELETE FROM platform_tools WHERE server = $1")
            .bind(server)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::db("platform_tools.delete", e))?;
        for t in tools {
            sqlx::query(
                "INSERT INTO platform_tools(server, name, description, input_schema) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(server)
            .bind(&t.name)
            .bind(&t.description)
            .bind(&t.input_schema)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::db("platform_tools.insert", e))?;
        }
        tx.commit().await.map_err(|e| StoreError::db("platform_tools.commit", e))
    }

    /// Claims the next listing of a platform server when it is due (at most one tool worker
    /// lists a server at a time; a broken server is tried again later and later).
    ///
    /// # Errors
    /// Database failures.
    pub async fn claim_platform_refresh(&self, server: &str, transport: &str) -> Result<bool> {
        sqlx::query(
            "INSERT INTO platform_servers(name, transport) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET transport = EXCLUDED.transport",
        )
        .bind(server)
        .bind(transport)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("claim_platform_refresh.upsert", e))?;
        let claimed: Option<String> = sqlx::query_scalar(
            "UPDATE platform_servers SET next_try_at = now() + interval '60 seconds' \
             WHERE name = $1 AND next_try_at <= now() RETURNING name",
        )
        .bind(server)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("claim_platform_refresh", e))?;
        Ok(claimed.is_some())
    }

    /// Records how listing a platform server went: its tools and the next listing in
    /// `every`; or the error, its count, and the next try after a backoff that doubles per
    /// failure from `retry` up to `max_backoff`. Returns the consecutive failures.
    ///
    /// # Errors
    /// Database failures.
    pub async fn platform_refresh_done(
        &self,
        server: &str,
        listed: std::result::Result<&[ToolSpec], &str>,
        every: std::time::Duration,
        retry: std::time::Duration,
        max_backoff: std::time::Duration,
    ) -> Result<i32> {
        let secs = |d: std::time::Duration| d.as_secs_f64();
        match listed {
            Ok(tools) => {
                self.set_platform_tools(server, tools).await?;
                sqlx::query(
                    "UPDATE platform_servers SET tools_refreshed_at = now(), last_error = NULL, \
                     failures = 0, next_try_at = now() + make_interval(secs => $2) WHERE name = $1",
                )
                .bind(server)
                .bind(secs(every))
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::db("platform_refresh_done", e))?;
                Ok(0)
            }
            Err(error) => sqlx::query_scalar(
                "UPDATE platform_servers SET last_error = $2, failures = failures + 1, \
                    next_try_at = now() + make_interval(secs => \
                        least($4, $3 * power(2, least(failures, 20)))) \
                 WHERE name = $1 RETURNING failures",
            )
            .bind(server)
            .bind(error)
            .bind(secs(retry))
            .bind(secs(max_backoff))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("platform_refresh_done", e)),
        }
    }

    /// The platform's servers (the built-in one and the operator's) and how their last listing
    /// went, by name.
    ///
    /// # Errors
    /// Database failures.
    pub async fn platform_servers(&self) -> Result<Vec<PlatformServer>> {
        sqlx::query_as(
            "SELECT s.name, s.transport, s.tools_refreshed_at, s.last_error, s.failures, \
                coalesce((SELECT jsonb_agg(jsonb_build_object('name', t.name, \
                    'description', t.description, 'input_schema', t.input_schema) ORDER BY t.name) \
                  FROM platform_tools t WHERE t.server = s.name), '[]') AS tools \
             FROM platform_servers s ORDER BY s.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("platform_servers", e))
    }

    /// Registers an MCP server for `org`. None when the org has one of that name.
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_mcp_server(
        &self,
        org: OrgId,
        name: &str,
        url: &str,
        bearer_token: Option<&str>,
    ) -> Result<Option<McpServer>> {
        let id = McpServerId::new();
        let sealed = match bearer_token {
            Some(t) => Some(self.keys()?.seal(&server_token_context(id), t.as_bytes())),
            None => None,
        };
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO mcp_servers(id, org_id, name, url, bearer_token) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, name) DO NOTHING \
             RETURNING {SERVER_COLUMNS}"
        )))
        .bind(id)
        .bind(org)
        .bind(name)
        .bind(url)
        .bind(sealed)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("create_mcp_server", e))
    }

    /// The org's MCP servers, by name.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_mcp_servers(&self, org: OrgId) -> Result<Vec<McpServer>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SERVER_COLUMNS} FROM mcp_servers WHERE org_id = $1 ORDER BY name"
        )))
        .bind(org)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list_mcp_servers", e))
    }

    /// One of the org's MCP servers.
    ///
    /// # Errors
    /// Database failures.
    pub async fn get_mcp_server(&self, org: OrgId, id: McpServerId) -> Result<Option<McpServer>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SERVER_COLUMNS} FROM mcp_servers WHERE org_id = $1 AND id = $2"
        )))
        .bind(org)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("get_mcp_server", e))
    }

    /// How to reach an org's server by name: (url, bearer token, opened).
    ///
    /// # Errors
    /// Database failures; a token that does not open (no key, a wrong key, altered).
    pub async fn mcp_server_endpoint(
        &self,
        org: OrgId,
        name: &str,
    ) -> Result<Option<(String, Option<String>)>> {
        let row: Option<(McpServerId, String, Option<String>)> = sqlx::query_as(
            "SELECT id, url, bearer_token FROM mcp_servers WHERE org_id = $1 AND name = $2",
        )
        .bind(org)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("mcp_server_endpoint", e))?;
        row.map(|(id, url, token)| Ok((url, self.open_server_token(id, token)?))).transpose()
    }

    /// The token of an org's server, opened, for the API's own tools/list.
    ///
    /// # Errors
    /// Database failures; a token that does not open.
    pub async fn mcp_server_token(&self, org: OrgId, id: McpServerId) -> Result<Option<String>> {
        let token: Option<String> = sqlx::query_scalar(
            "SELECT bearer_token FROM mcp_servers WHERE org_id = $1 AND id = $2",
        )
        .bind(org)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map(Option::flatten)
        .map_err(|e| StoreError::db("mcp_server_token", e))?;
        self.open_server_token(id, token)
    }

    /// Every organization's servers with their tokens (opened), for the monitor's probes:
    /// (id, org, name, url, bearer token). A token that does not open is logged and the server
    /// listed without one (its probe then reports the server's refusal).
    ///
    /// # Errors
    /// Database failures.
    pub async fn every_mcp_server(
        &self,
    ) -> Result<Vec<(McpServerId, OrgId, String, String, Option<String>)>> {
        let rows: Vec<(McpServerId, OrgId, String, String, Option<String>)> = sqlx::query_as(
            "SELECT id, org_id, name, url, bearer_token FROM mcp_servers ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("every_mcp_server", e))?;
        Ok(rows
            .into_iter()
            .map(|(id, org, name, url, token)| {
                let token = self.open_server_token(id, token).unwrap_or_else(|e| {
                    tracing::warn!(server = %id, error = %e, "cannot open the server's token");
                    None
                });
                (id, org, name, url, token)
            })
            .collect())
    }

    fn open_server_token(&self, id: McpServerId, token: Option<String>) -> Result<Option<String>> {
        match token {
            Some(t) => Ok(Some(self.keys()?.open_text(&server_token_context(id), &t)?)),
            None => Ok(None),
        }
    }

    /// Stores a server's tools/list (or the error of trying).
    ///
    /// # Errors
    /// Database failures.
    pub async fn set_mcp_server_tools(
        &self,
        org: OrgId,
        id: McpServerId,
        tools: std::result::Result<&serde_json::Value, &str>,
    ) -> Result<Option<McpServer>> {
        let (tools, error) = match tools {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(e)),
        };
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE mcp_servers SET tools = coalesce($3, tools), last_error = $4, \
                tools_refreshed_at = CASE WHEN $3 IS NULL THEN tools_refreshed_at ELSE now() END \
             WHERE org_id = $1 AND id = $2 RETURNING {SERVER_COLUMNS}"
        )))
        .bind(org)
        .bind(id)
        .bind(tools)
        .bind(error)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("set_mcp_server_tools", e))
    }

    /// Removes one of the org's servers.
    ///
    /// # Errors
    /// Database failures.
    pub async fn delete_mcp_server(&self, org: OrgId, id: McpServerId) -> Result<bool> {
        sqlx::query("DELETE FROM mcp_servers WHERE org_id = $1 AND id = $2")
            .bind(org)
            .bind(id)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(|e| StoreError::db("delete_mcp_server", e))
    }
}

/// Where a server's sealed bearer token lives (its associated data).
pub(crate) fn server_token_context(id: McpServerId) -> String {
    format!("mcp_servers.bearer_token:{id}")
}

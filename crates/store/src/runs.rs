//! The run state machine. Transitions that touch several rows (create, finish, cancel) call a
//! Postgres function of `migrations/0002_runs.sql`, so each is one round trip and one
//! transaction that also writes the outbox facts (jobs, durable events) the caller publishes
//! after commit.

use std::time::Duration;

use chrono::{DateTime, Utc};

use agentyard_core::run::{
    MultitaskStrategy, Priority, Run, RunError, RunOutput, RunStatus, Usage,
};
use agentyard_core::{AgentId, MessageId, OrgId, RunId, Scope, ThreadId, UserId};
use serde::Deserialize;
use sqlx::FromRow;

use crate::group::{Transition, answered, by_call};
use crate::outbox::decode_rows;
use crate::{OutboxRow, Result, Store, StoreError, decode, field};

/// A run to create.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// The new run's id (chosen by the caller so it can listen for its events first).
    pub id: RunId,
    pub org: OrgId,
    /// None: a new thread.
    pub thread: Option<ThreadId>,
    /// None: the org's default agent (provisioned when missing).
    pub agent: Option<AgentId>,
    pub user: Option<UserId>,
    pub input: String,
    pub strategy: MultitaskStrategy,
    pub metadata: serde_json::Value,
    /// `Idempotency-Key` and the SHA-256 of the request it came with.
    pub idempotency: Option<(String, Vec<u8>)>,
    pub priority: Priority,
    /// The org's quota of live runs (None: no limit).
    pub quota: Option<u32>,
    /// The scopes of the caller's token (the run's tool calls act with them).
    pub scopes: Vec<Scope>,
    /// When set, `thread` must belong to this user (else the thread is not found).
    pub owner: Option<UserId>,
}

/// How a create ended.
#[derive(Debug)]
pub enum CreateOutcome {
    /// A new run; publish `outbox` after this returns. `interrupted` was cancelled for it.
    Created { run: Run, outbox: Vec<OutboxRow>, interrupted: Option<RunId> },
    /// The idempotency key was seen before with the same request: the earlier run.
    Idempotent(Run),
    /// The idempotency key was seen before with a different request.
    IdempotencyMismatch,
    /// No such thread in this org.
    ThreadNotFound,
    /// The thread has an active run and the strategy is `reject`.
    ThreadBusy { active: RunId },
    /// No such (live) agent in this org.
    AgentNotFound,
    /// The agent is deactivated.
    AgentInactive,
    /// The org has as many live runs as its quota allows.
    QuotaExceeded { live: u64 },
}

/// How a replay of a dead-lettered step ended.
#[derive(Debug)]
pub enum ReplayOutcome {
    NotFound,
    /// Another run holds the thread.
    ThreadBusy,
    /// The run is not failed at that step (it finished or moved on): nothing runs again.
    /// `stranded` holds its replay count when it is `queued` at that step after a replay (the
    /// replayer may have died before publishing its job).
    NotFailed {
        run: Option<Run>,
        stranded: Option<i32>,
    },
    /// Queued again, for the `replays`-th time; `outbox` holds its `run.queued` event.
    Replayed {
        run: Run,
        replays: i32,
        outbox: Vec<OutboxRow>,
    },
}

/// How a cancel ended.
#[derive(Debug)]
pub enum CancelOutcome {
    NotFound,
    AlreadyTerminal(RunStatus),
    /// Cancelled; `previous` tells whether a worker may be generating (`in_progress`).
    Cancelled {
        previous: RunStatus,
        outbox: Vec<OutboxRow>,
    },
}

/// A message of the history sent to the model.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct HistoryMessage {
    pub role: String,
    pub content: String,
    /// The calls of an assistant message.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub tool_calls: Vec<StoredToolCall>,
    /// The call a tool message answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

/// A tool call as stored on its assistant message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct StoredToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them (JSON text).
    pub arguments: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<StoredToolCall>, D::Error> {
    Ok(Option::<Vec<StoredToolCall>>::deserialize(d)?.unwrap_or_default())
}

/// A run a worker just took: everything it needs for the model call, in one round trip.
#[derive(Clone, Debug)]
pub struct StartedRun {
    pub run: Run,
    pub org_id: OrgId,
    pub agent_type: String,
    pub agent_name: String,
    /// The agent's overrides of its type's defaults.
    pub agent_config: serde_json::Value,
    /// The scopes of the token that started the run (its tool calls act with them).
    pub scopes: Vec<Scope>,
    /// True the first time the run starts (false on a redelivery).
    pub first_start: bool,
    /// The model call this is for the current step, from 1 (a retry after a model failure or
    /// a crash counts; a delivery that failed before it got here does not).
    pub attempt: u32,
    /// The newest messages of the thread, oldest first.
    pub history: Vec<HistoryMessage>,
}

/// How a worker ends a run.
#[derive(Clone, Debug)]
pub struct Finish {
    pub run: RunId,
    /// Apply only while the run is at this step (None: any step, for dead letters and expiry).
    pub step: Option<i32>,
    /// Apply only from these statuses.
    pub from: &'static [RunStatus],
    pub status: RunStatus,
    pub output: Option<RunOutput>,
    pub usage: Option<Usage>,
    pub error: Option<RunError>,
    /// The assistant message to store (completed runs).
    pub message: Option<(MessageId, String)>,
}

/// What a finish did.
#[derive(Debug)]
pub struct FinishOutcome {
    /// False when the run had moved on (cancelled, or a stale duplicate): nothing was written.
    pub applied: bool,
    pub run: Option<Run>,
    pub outbox: Vec<OutboxRow>,
}

/// Which runs a list returns.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub thread: Option<ThreadId>,
    pub agent: Option<AgentId>,
    /// Only runs of this user.
    pub user: Option<UserId>,
    /// Only runs created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Only runs created before.
    pub until: Option<DateTime<Utc>>,
}

/// A live run that made no progress for longer than its agent allows.
#[derive(Clone, Debug, FromRow)]
pub struct OverdueRun {
    pub run_id: RunId,
    pub org_id: OrgId,
    /// Seconds since its last transition.
    pub silent_secs: f64,
    /// Seconds its agent allows.
    pub allowed_secs: f64,
}

/// One call of [`Store::start_run`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct StartCall {
    id: RunId,
    step: i32,
    history_limit: i64,
}

#[derive(FromRow)]
struct StartRow {
    n: i64,
    run: serde_json::Value,
    org_id: OrgId,
    agent_type: String,
    agent_name: String,
    agent_config: serde_json::Value,
    scopes: Vec<Scope>,
    first_start: bool,
    attempt: i32,
    history: serde_json::Value,
}

impl Store {
    /// Creates a run following its multitask strategy (see [`CreateOutcome`]). Concurrent
    /// creates commit together ([`crate::group`]).
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_run(&self, new: &NewRun) -> Result<CreateOutcome> {
        static CREATE: Transition<NewRun, CreateOutcome> = Transition {
            op: "create_run",
            together: |store, batch| Box::pin(store.create_together(batch)),
            alone: |store, new| Box::pin(store.create_run_alone(new)),
            gather: true,
        };
        self.commit(&self.groups.create, &CREATE, new.clone()).await
    }

    /// Creates `batch` in one statement and transaction, in order.
    async fn create_together(&self, batch: &[NewRun]) -> Result<Vec<Result<CreateOutcome>>> {
        let mut cols = CreateColumns::default();
        for new in batch {
            cols.push(new);
        }
        // Existing threads in id order, so batches lock threads in one order (no deadlock
        // between them); the function calls run after the sort.
        let rows = sqlx::query_as::<_, (i64, serde_json::Value)>(
            "SELECT x.n, ay_create_run(x.o, x.t, x.r, x.a, x.u, x.i, x.s, x.m, x.k, x.h, x.nt, \
                    x.nm, x.p, x.q, ARRAY(SELECT jsonb_array_elements_text(x.sc)), x.ow) \
             FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], \
                         $7::text[], $8::jsonb[], $9::text[], $10::bytea[], $11::uuid[], \
                         $12::uuid[], $13::text[], $14::int4[], $15::jsonb[], $16::uuid[]) \
                  WITH ORDINALITY AS x(o, t, r, a, u, i, s, m, k, h, nt, nm, p, q, sc, ow, n) \
             ORDER BY x.t NULLS FIRST, x.n",
        )
        .bind(cols.org)
        .bind(cols.thread)
        .bind(cols.run)
        .bind(cols.agent)
        .bind(cols.user)
        .bind(cols.input)
        .bind(cols.strategy)
        .bind(cols.metadata)
        .bind(cols.key)
        .bind(cols.hash)
        .bind(cols.new_thread)
        .bind(cols.message)
        .bind(cols.priority)
        .bind(cols.quota)
        .bind(cols.scopes)
        .bind(cols.owner)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("create_run", e))?;
        Ok(answered(rows, batch.len(), "create_run", create_outcome))
    }

    async fn create_run_alone(&self, new: &NewRun) -> Result<CreateOutcome> {
        let (key, hash) = match &new.idempotency {
            Some((k, h)) => (Some(k.as_str()), Some(h.as_slice())),
            None => (None, None),
        };
        let res: std::result::Result<serde_json::Value, sqlx::Error> = sqlx::query_scalar(
            "SELECT ay_create_run($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             $16)",
        )
        .bind(new.org)
        .bind(new.thread)
        .bind(new.id)
        .bind(new.agent)
        .bind(new.user)
        .bind(&new.input)
        .bind(new.strategy)
        .bind(&new.metadata)
        .bind(key)
        .bind(hash)
        .bind(ThreadId::new())
        .bind(MessageId::new())
        .bind(new.priority)
        .bind(new.quota.map(|q| i32::try_from(q).unwrap_or(i32::MAX)))
        .bind(&new.scopes)
        .bind(new.owner)
        .fetch_one(&self.pool)
        .await;
        match res {
            Ok(v) => create_outcome(v),
            Err(sqlx::Error::Database(db)) => {
                let detail = || {
                    db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                        .and_then(|e| e.detail())
                        .map(str::to_owned)
                };
                match (db.code().as_deref(), db.message()) {
                    (Some("AY404"), "agent_not_found") => Ok(CreateOutcome::AgentNotFound),
                    (Some("AY404"), _) => Ok(CreateOutcome::ThreadNotFound),
                    (Some("AY409"), "agent_inactive") => Ok(CreateOutcome::AgentInactive),
                    (Some("AY409"), _) => Ok(CreateOutcome::ThreadBusy {
                        active: detail().and_then(|d| d.parse().ok()).unwrap_or(RunId::nil()),
                    }),
                    (Some("AY429"), _) => Ok(CreateOutcome::QuotaExceeded {
                        live: detail().and_then(|d| d.parse().ok()).unwrap_or(0),
                    }),
                    _ => Err(StoreError::db("create_run", sqlx::Error::Database(db))),
                }
            }
            Err(e) => Err(StoreError::db("create_run", e)),
        }
    }

    /// The run an idempotency key of `org` created, with the SHA-256 of its request.
    ///
    /// # Errors
    /// Database failures.
    pub async fn idempotent_run(&self, org: OrgId, key: &str) -> Result<Option<(Vec<u8>, Run)>> {
        let hash: Option<(Vec<u8>, RunId)> = sqlx::query_as(
            "SELECT request_sha256, run_id FROM idempotency_keys WHERE org_id = $1 AND key = $2",
        )
        .bind(org)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("idempotent_run", e))?;
        let Some((hash, run)) = hash else { return Ok(None) };
        Ok(self.get_run(org, run).await?.map(|r| (hash, r)))
    }

    /// A run of `org`, or None (also for another org's run).
    ///
    /// # Errors
    /// Database failures.
    pub async fn get_run(&self, org: OrgId, id: RunId) -> Result<Option<Run>> {
        sqlx::query_as("SELECT * FROM runs WHERE id = $1 AND org_id = $2")
            .bind(id)
            .bind(org)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::db("get_run", e))
    }

    /// The user of a run of `org` (None also for a run not found).
    ///
    /// # Errors
    /// Database failures.
    pub async fn run_user(&self, org: OrgId, id: RunId) -> Result<Option<UserId>> {
        let user: Option<Option<UserId>> =
            sqlx::query_scalar("SELECT user_id FROM runs WHERE id = $1 AND org_id = $2")
                .bind(id)
                .bind(org)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| StoreError::db("run_user", e))?;
        Ok(user.flatten())
    }

    /// Up to `limit` runs of `org` matching `filter`, newest first, created before the run
    /// `before` (the previous page's last run) when given.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_runs(
        &self,
        org: OrgId,
        filter: &RunFilter,
        before: Option<RunId>,
        limit: i64,
    ) -> Result<Vec<Run>> {
        sqlx::query_as(
            "SELECT * FROM runs WHERE org_id = $1 \
               AND ($2::text IS NULL OR status = $2) \
               AND ($3::uuid IS NULL OR thread_id = $3) \
               AND ($4::uuid IS NULL OR agent_id = $4) \
               AND ($5::uuid IS NULL OR (created_at, id) < \
                    (SELECT created_at, id FROM runs WHERE id = $5 AND org_id = $1)) \
               AND ($7::uuid IS NULL OR user_id = $7) \
               AND ($8::timestamptz IS NULL OR created_at >= $8) \
               AND ($9::timestamptz IS NULL OR created_at < $9) \
             ORDER BY created_at DESC, id DESC LIMIT $6",
        )
        .bind(org)
        .bind(filter.status)
        .bind(filter.thread)
        .bind(filter.agent)
        .bind(before)
        .bind(limit)
        .bind(filter.user)
        .bind(filter.since)
        .bind(filter.until)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list_runs", e))
    }

    /// Cancels a run of `org`: at once when queued; when in progress the status changes now and
    /// the caller signals the worker, whose final commit then changes nothing.
    ///
    /// # Errors
    /// Database failures.
    pub async fn cancel_run(&self, org: OrgId, id: RunId) -> Result<CancelOutcome> {
        let v: serde_json::Value = sqlx::query_scalar("SELECT ay_cancel_run($1, $2)")
            .bind(org)
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("cancel_run", e))?;
        let status = |v: &serde_json::Value| decode::<RunStatus>("cancel_run", field(v, "status"));
        match v.get("outcome").and_then(|o| o.as_str()) {
            Some("not_found") => Ok(CancelOutcome::NotFound),
            Some("already_terminal") => Ok(CancelOutcome::AlreadyTerminal(status(&v)?)),
            Some("cancelled") => Ok(CancelOutcome::Cancelled {
                previous: status(&v)?,
                outbox: decode_rows("cancel_run", &field(&v, "outbox"))?,
            }),
            other => {
                Err(StoreError::Decode { op: "cancel_run", detail: format!("outcome {other:?}") })
            }
        }
    }

    /// Replays failed run `id` at step `step` (its dead-lettered job): back to `queued`, its
    /// attempts counted from zero, the thread's active run again (migrations/0009_replay.sql).
    /// The caller publishes the step's job.
    ///
    /// # Errors
    /// Database failures.
    pub async fn replay_run(&self, id: RunId, step: i32) -> Result<ReplayOutcome> {
        let v: serde_json::Value = sqlx::query_scalar("SELECT ay_replay_run($1, $2)")
            .bind(id)
            .bind(step)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("replay_run", e))?;
        let run = |v: &serde_json::Value| decode::<Option<Run>>("replay_run", field(v, "run"));
        match v.get("outcome").and_then(|o| o.as_str()) {
            Some("not_found") => Ok(ReplayOutcome::NotFound),
            Some("thread_busy") => Ok(ReplayOutcome::ThreadBusy),
            Some("not_failed") => {
                let stranded: Option<bool> = decode("replay_run", field(&v, "stranded"))?;
                Ok(ReplayOutcome::NotFailed {
                    run: run(&v)?,
                    stranded: match stranded {
                        Some(true) => Some(decode("replay_run", field(&v, "replays"))?),
                        _ => None,
                    },
                })
            }
            Some("replayed") => Ok(ReplayOutcome::Replayed {
                run: run(&v)?.ok_or_else(|| StoreError::Decode {
                    op: "replay_run",
                    detail: "no run".into(),
                })?,
                replays: decode("replay_run", field(&v, "replays"))?,
                outbox: decode_rows("replay_run", &field(&v, "outbox"))?,
            }),
            other => {
                Err(StoreError::Decode { op: "replay_run", detail: format!("outcome {other:?}") })
            }
        }
    }

    /// Takes a run for step `step`: marks it in progress, counts the model attempt and loads
    /// its agent and the newest `history_limit` messages, in one round trip. None when the job
    /// is stale (the run is terminal, waiting for input, at another step, or this step's model
    /// turn already ended in tool calls).
    ///
    /// The write commits asynchronously (no WAL flush wait): were it lost in a Postgres crash,
    /// the run would read `queued` again and its redelivered job would start it again, and the
    /// worker's final write accepts a run still `queued` for that reason.
    ///
    /// # Errors
    /// Database failures.
    pub async fn start_run(
        &self,
        id: RunId,
        step: i32,
        history_limit: i64,
    ) -> Result<Option<StartedRun>> {
        static START: Transition<StartCall, Option<StartedRun>> = Transition {
            op: "start_run",
            together: |store, batch| {
                Box::pin(async move {
                    Ok(store.start_runs_now(batch).await?.into_iter().map(Ok).collect())
                })
            },
            alone: |store, call| Box::pin(store.start_run_alone(call)),
            gather: true,
        };
        self.commit(&self.groups.start, &START, StartCall { id, step, history_limit }).await
    }

    async fn start_run_alone(&self, call: &StartCall) -> Result<Option<StartedRun>> {
        self.start_runs_now(std::slice::from_ref(call)).await.map(|mut v| v.pop().flatten())
    }

    /// One statement for `calls`: their runs in call order (None: a stale job).
    async fn start_runs_now(&self, calls: &[StartCall]) -> Result<Vec<Option<StartedRun>>> {
        let ids: Vec<RunId> = calls.iter().map(|c| c.id).collect();
        let steps: Vec<i32> = calls.iter().map(|c| c.step).collect();
        let limits: Vec<i64> = calls.iter().map(|c| c.history_limit).collect();
        // A run twice in one batch (a duplicate delivery) is updated once: the other call
        // reads as stale, as it would have after the first one's commit. `id = ANY` keeps the
        // runs' index in the plan: joined to `j` alone, the plan cached while the table was
        // small scanned the whole table on every batch later (measured: 5.7 M rows read in
        // 20 s). `OFFSET 0` keeps the tool call check a lookup per run, not a join that may
        // scan every call ever made.
        let rows: Vec<StartRow> = sqlx::query_as(
            "WITH j AS (SELECT * FROM unnest($1::uuid[], $2::int4[], $3::int8[]) \
                        WITH ORDINALITY AS j(id, step, lim, n)), \
             r AS ( \
                UPDATE runs SET status = 'in_progress', started_at = coalesce(started_at, now()), \
                    attempt = attempt + 1, progress_at = now() \
                FROM j \
                WHERE runs.id = ANY($1) AND runs.id = j.id AND runs.step = j.step \
                  AND runs.status IN ('queued', 'in_progress') \
                  AND NOT EXISTS (SELECT 1 FROM tool_invocations t \
                                  WHERE t.run_id = j.id AND t.step = j.step OFFSET 0) \
                RETURNING runs AS row, j.n, j.lim \
             ) \
             SELECT r.n, set_config('synchronous_commit', 'off', true) AS _async_commit, \
                    to_jsonb(r.row) AS run, (r.row).org_id, a.agent_type, (r.row).attempt, \
                    a.name AS agent_name, a.config AS agent_config, (r.row).scopes, \
                    (r.row).started_at = now() AS first_start, \
                    (SELECT coalesce(jsonb_agg(jsonb_build_object('role', m.role, 'content', m.content, \
                                               'tool_calls', m.tool_calls, 'tool_call_id', m.tool_call_id) \
                                               ORDER BY m.seq), '[]') \
                     FROM (SELECT role, content, seq, tool_calls, tool_call_id FROM messages \
                           WHERE thread_id = (r.row).thread_id ORDER BY seq DESC LIMIT r.lim) m) AS history \
             FROM r JOIN agents a ON a.id = (r.row).agent_id",
        )
        .bind(ids)
        .bind(steps)
        .bind(limits)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("start_run", e))?;
        let mut started = Vec::with_capacity(rows.len());
        for r in rows {
            started.push((
                r.n,
                StartedRun {
                    run: decode("start_run", r.run)?,
                    org_id: r.org_id,
                    agent_type: r.agent_type,
                    agent_name: r.agent_name,
                    agent_config: r.agent_config,
                    scopes: r.scopes,
                    first_start: r.first_start,
                    attempt: u32::try_from(r.attempt).unwrap_or(1),
                    history: decode("start_run", r.history)?,
                },
            ));
        }
        // A call no row answered is a stale job.
        Ok(by_call(started, calls.len()))
    }

    /// Says that a live run (at `step`, when given) is still making progress (a long model
    /// answer, a slow tool), so the sweeper does not expire it.
    ///
    /// # Errors
    /// Database failures.
    pub async fn touch_run(&self, id: RunId, step: Option<i32>) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET progress_at = now() WHERE id = $1 AND ($2::integer IS NULL OR step = $2) \
             AND status IN ('queued', 'in_progress')",
        )
        .bind(id)
        .bind(step)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(|e| StoreError::db("touch_run", e))
    }

    /// Ends a run (see [`Finish`]): stores the assistant message, frees the thread and
    /// activates the thread's next waiting run, in one transaction. Concurrent finishes commit
    /// together ([`crate::group`]).
    ///
    /// # Errors
    /// Database failures.
    pub async fn finish_run(&self, f: &Finish) -> Result<FinishOutcome> {
        static FINISH: Transition<Finish, FinishOutcome> = Transition {
            op: "finish_run",
            together: |store, batch| Box::pin(store.finish_together(batch)),
            alone: |store, f| Box::pin(store.finish_run_alone(f)),
            gather: true,
        };
        self.commit(&self.groups.finish, &FINISH, f.clone()).await
    }

    /// Finishes `batch` in one statement and transaction, the runs' threads in id order (so
    /// batches lock threads in one order).
    async fn finish_together(&self, batch: &[Finish]) -> Result<Vec<Result<FinishOutcome>>> {
        let mut cols = FinishColumns::default();
        for f in batch {
            cols.push(f)?;
        }
        let rows = sqlx::query_as::<_, (i64, serde_json::Value)>(
            "SELECT x.n, ay_finish_run(x.r, x.st, ARRAY(SELECT jsonb_array_elements_text(x.fr)), \
                        x.s, x.o, x.u, x.e, x.mi, x.c) \
                 FROM unnest($1::uuid[], $2::int4[], $3::jsonb[], $4::text[], $5::jsonb[], \
                             $6::jsonb[], $7::jsonb[], $8::uuid[], $9::text[]) \
                      WITH ORDINALITY AS x(r, st, fr, s, o, u, e, mi, c, n) \
                 ORDER BY (SELECT thread_id FROM runs WHERE id = x.r), x.n",
        )
        .bind(cols.run)
        .bind(cols.step)
        .bind(cols.from)
        .bind(cols.status)
        .bind(cols.output)
        .bind(cols.usage)
        .bind(cols.error)
        .bind(cols.message)
        .bind(cols.content)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("finish_run", e))?;
        Ok(answered(rows, batch.len(), "finish_run", finish_outcome))
    }

    async fn finish_run_alone(&self, f: &Finish) -> Result<FinishOutcome> {
        let [output, usage, error] = finish_documents(f)?;
        let v: serde_json::Value =
            sqlx::query_scalar("SELECT ay_finish_run($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .bind(f.run)
                .bind(f.step)
                .bind(f.from)
                .bind(f.status)
                .bind(output)
                .bind(usage)
                .bind(error)
                .bind(f.message.as_ref().map(|(id, _)| *id))
                .bind(f.message.as_ref().map(|(_, c)| c.as_str()))
                .fetch_one(&self.pool)
                .await
                .map_err(|e| StoreError::db("finish_run", e))?;
        finish_outcome(v)
    }

    /// Live runs that made no progress for longer than their agent allows: its
    /// `timeout_seconds` (its own, else `type_timeouts[its type]`) times `attempts`, plus
    /// `slack`. Oldest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn overdue_runs(
        &self,
        type_timeouts: &serde_json::Value,
        attempts: u32,
        slack: Duration,
        limit: i64,
    ) -> Result<Vec<OverdueRun>> {
        let slack = sqlx::postgres::types::PgInterval::try_from(slack)
            .map_err(|e| StoreError::Decode { op: "overdue_runs", detail: e.to_string() })?;
        sqlx::query_as("SELECT * FROM ay_overdue_runs($1, $2, $3, $4)")
            .bind(type_timeouts)
            .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
            .bind(slack)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::db("overdue_runs", e))
    }

    /// After a Postgres crash, refills the (unlogged) table of live runs; drops rows of runs
    /// that ended. Returns how many rows were added.
    ///
    /// # Errors
    /// Database failures.
    pub async fn refill_live_runs(&self) -> Result<i32> {
        sqlx::query_scalar("SELECT ay_refill_live_runs()")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("refill_live_runs", e))
    }
}

/// The parameters of a create batch, a column each.
#[derive(Default)]
struct CreateColumns {
    org: Vec<OrgId>,
    thread: Vec<Option<ThreadId>>,
    run: Vec<RunId>,
    agent: Vec<Option<AgentId>>,
    user: Vec<Option<UserId>>,
    input: Vec<String>,
    strategy: Vec<&'static str>,
    metadata: Vec<serde_json::Value>,
    key: Vec<Option<String>>,
    hash: Vec<Option<Vec<u8>>>,
    new_thread: Vec<ThreadId>,
    message: Vec<MessageId>,
    priority: Vec<&'static str>,
    quota: Vec<Option<i32>>,
    scopes: Vec<serde_json::Value>,
    owner: Vec<Option<UserId>>,
}

impl CreateColumns {
    fn push(&mut self, new: &NewRun) {
        self.org.push(new.org);
        self.thread.push(new.thread);
        self.run.push(new.id);
        self.agent.push(new.agent);
        self.user.push(new.user);
        self.input.push(new.input.clone());
        self.strategy.push(new.strategy.as_str());
        self.metadata.push(new.metadata.clone());
        self.key.push(new.idempotency.as_ref().map(|(k, _)| k.clone()));
        self.hash.push(new.idempotency.as_ref().map(|(_, h)| h.clone()));
        self.new_thread.push(ThreadId::new());
        self.message.push(MessageId::new());
        self.priority.push(new.priority.as_str());
        self.quota.push(new.quota.map(|q| i32::try_from(q).unwrap_or(i32::MAX)));
        self.scopes.push(serde_json::Value::Array(
            new.scopes.iter().map(|s| serde_json::Value::from(s.as_str())).collect(),
        ));
        self.owner.push(new.owner);
    }
}

fn create_outcome(v: serde_json::Value) -> Result<CreateOutcome> {
    match v.get("outcome").and_then(|o| o.as_str()) {
        Some("created") => Ok(CreateOutcome::Created {
            run: decode("create_run", field(&v, "run"))?,
            outbox: decode_rows("create_run", &field(&v, "outbox"))?,
            interrupted: decode("create_run", field(&v, "interrupted"))?,
        }),
        Some("idempotent") => {
            Ok(CreateOutcome::Idempotent(decode("create_run", field(&v, "run"))?))
        }
        Some("idempotency_mismatch") => Ok(CreateOutcome::IdempotencyMismatch),
        other => Err(StoreError::Decode { op: "create_run", detail: format!("outcome {other:?}") }),
    }
}

/// A finish's output, usage and error as the JSON its function takes.
fn finish_documents(f: &Finish) -> Result<[Option<serde_json::Value>; 3]> {
    let json = |v: Option<std::result::Result<serde_json::Value, serde_json::Error>>| {
        v.transpose().map_err(|e| StoreError::Decode { op: "finish_run", detail: e.to_string() })
    };
    Ok([
        json(f.output.as_ref().map(serde_json::to_value))?,
        json(f.usage.as_ref().map(serde_json::to_value))?,
        json(f.error.as_ref().map(serde_json::to_value))?,
    ])
}

/// The parameters of a finish batch, a column each.
#[derive(Default)]
struct FinishColumns {
    run: Vec<RunId>,
    step: Vec<Option<i32>>,
    from: Vec<serde_json::Value>,
    status: Vec<&'static str>,
    output: Vec<Option<serde_json::Value>>,
    usage: Vec<Option<serde_json::Value>>,
    error: Vec<Option<serde_json::Value>>,
    message: Vec<Option<MessageId>>,
    content: Vec<Option<String>>,
}

impl FinishColumns {
    fn push(&mut self, f: &Finish) -> Result<()> {
        self.run.push(f.run);
        self.step.push(f.step);
        self.from.push(serde_json::Value::Array(
            f.from.iter().map(|s| serde_json::Value::from(s.as_str())).collect(),
        ));
        self.status.push(f.status.as_str());
        let [output, usage, error] = finish_documents(f)?;
        self.output.push(output);
        self.usage.push(usage);
        self.error.push(error);
        self.message.push(f.message.as_ref().map(|(id, _)| *id));
        self.content.push(f.message.as_ref().map(|(_, c)| c.clone()));
        Ok(())
    }
}

fn finish_outcome(v: serde_json::Value) -> Result<FinishOutcome> {
    let run = match field(&v, "run") {
        serde_json::Value::Null => None,
        r => Some(decode("finish_run", r)?),
    };
    Ok(FinishOutcome {
        applied: v.get("applied").and_then(|a| a.as_bool()).unwrap_or(false),
        run,
        outbox: decode_rows("finish_run", &field(&v, "outbox"))?,
    })
}

//! Every transition of the run and tool state machines against a real Postgres (a fresh
//! database per test, at DATABASE_URL or 127.0.0.1:5432): what each writes, and that stale,
//! duplicate and racing transitions change nothing they should not.

use std::time::Duration;

use agentyard_core::jobs::Job;
use agentyard_core::outbox::Fact;
use agentyard_core::run::{
    InputAction, InputAnswer, MultitaskStrategy, Priority, RequiredInput, RunError, RunOutput,
    RunStatus,
};
use agentyard_core::{InvocationId, MessageId, OrgId, RunId, Scope, ThreadId};
use agentyard_store::runs::{CancelOutcome, CreateOutcome, Finish, NewRun};
use agentyard_store::tools::{AnswerOutcome, NewCall, PendingCall};
use agentyard_store::{OutboxRow, Store};
use serde_json::json;

/// A fresh, migrated database; dropped when the value is.
struct Db {
    store: Store,
    name: String,
    admin: String,
}

impl Db {
    async fn new() -> Self {
        let admin = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("ay_store_{}", uuid::Uuid::now_v7().simple());
        let pool = sqlx::PgPool::connect(&admin).await.expect("Postgres");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&pool)
            .await
            .unwrap();
        let (base, _) = admin.rsplit_once('/').unwrap();
        let store = Store::connect(&format!("{base}/{name}"), 8).await.unwrap();
        store.migrate().await.unwrap();
        Self { store, name, admin }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                }
            });
        })
        .join();
    }
}

fn new_run(org: OrgId, thread: Option<ThreadId>) -> NewRun {
    NewRun {
        id: RunId::new(),
        org,
        thread,
        agent: None,
        user: None,
        input: "hello".into(),
        strategy: MultitaskStrategy::Enqueue,
        metadata: json!({"k": 1}),
        idempotency: None,
        priority: Priority::High,
        quota: None,
        scopes: vec![Scope::RunsRead, Scope::RunsWrite],
        owner: None,
    }
}

async fn create(store: &Store, new: &NewRun) -> (agentyard_core::run::Run, Vec<OutboxRow>) {
    match store.create_run(new).await.unwrap() {
        CreateOutcome::Created { run, outbox, .. } => (run, outbox),
        other => panic!("not created: {other:?}"),
    }
}

fn facts(rows: &[OutboxRow]) -> Vec<&Fact> {
    rows.iter().flat_map(|r| &r.facts).collect()
}

fn kinds(rows: &[OutboxRow]) -> Vec<String> {
    facts(rows)
        .into_iter()
        .map(|f| match f {
            Fact::Job { job } => job.kind().to_owned(),
            Fact::Event { event, .. } => event.kind().as_str().to_owned(),
            Fact::WorkflowEvent { event, .. } => event.kind.clone(),
        })
        .collect()
}

fn agent_steps(rows: &[OutboxRow]) -> Vec<(RunId, u32)> {
    facts(rows)
        .into_iter()
        .filter_map(|f| match f {
            Fact::Job { job: Job::AgentStep(s) } => Some((s.run_id, s.step)),
            _ => None,
        })
        .collect()
}

fn finish(run: RunId, step: i32, status: RunStatus) -> Finish {
    Finish {
        run,
        step: Some(step),
        from: &[RunStatus::Queued, RunStatus::InProgress],
        status,
        output: (status == RunStatus::Completed).then(|| RunOutput { content: "done".into() }),
        usage: None,
        error: (status == RunStatus::Failed)
            .then(|| RunError { code: "x".into(), message: "y".into() }),
        message: (status == RunStatus::Completed).then(|| (MessageId::new(), "done".into())),
    }
}

#[tokio::test]
async fn a_create_writes_the_run_its_message_and_its_facts_without_any_subject() {
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    let new = new_run(org, None);
    let (run, outbox) = create(&db.store, &new).await;
    assert_eq!((run.id, run.status, run.priority), (new.id, RunStatus::Queued, Priority::High));
    assert_eq!(kinds(&outbox), ["run.queued", "agent_step"]);
    let all = facts(&outbox);
    let Fact::Event { org: o, run: r, key, event } = all[0] else { panic!("{:?}", all[0]) };
    assert_eq!((*o, *r, key.as_str()), (org, run.id, "queued"));
    assert_eq!(event.run().unwrap().metadata, json!({"k": 1}));
    assert_eq!(all[0].msg_id(), format!("run:{}:queued", run.id));
    let Fact::Job { job: Job::AgentStep(step) } = all[1] else { panic!() };
    assert_eq!((step.step, step.priority), (0, Priority::High));
    assert_eq!(all[1].msg_id(), format!("run:{}:step:0", run.id));
    // Facts name no subject: that is bus's to derive.
    let stored: String = sqlx::query_scalar("SELECT facts::text FROM outbox")
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    assert!(!stored.contains("jobs.") && !stored.contains("events."), "{stored}");
    assert!(!stored.contains("\"subject\"") && !stored.contains("msg_id"), "{stored}");
    let msgs = db.store.list_messages(org, run.thread_id, 0, 10).await.unwrap();
    assert_eq!((msgs.len(), msgs[0].content.as_str()), (1, "hello"));
}

#[tokio::test]
async fn the_quota_counts_live_runs_and_frees_a_place_when_one_ends() {
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    let mut first = None;
    for _ in 0..2 {
        let new = NewRun { quota: Some(2), ..new_run(org, None) };
        first.get_or_insert(create(&db.store, &new).await.0);
    }
    let over = db.store.create_run(&NewRun { quota: Some(2), ..new_run(org, None) }).await.unwrap();
    assert!(matches!(over, CreateOutcome::QuotaExceeded { live: 2 }), "{over:?}");
    let first = first.unwrap();
    let done = db.store.finish_run(&finish(first.id, 0, RunStatus::Completed)).await.unwrap();
    assert!(done.applied);
    let again =
        db.store.create_run(&NewRun { quota: Some(2), ..new_run(org, None) }).await.unwrap();
    assert!(matches!(again, CreateOutcome::Created { .. }), "{again:?}");
}

#[tokio::test]
async fn a_busy_thread_enqueues_rejects_or_interrupts_and_hands_over_in_order() {
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    let (active, _) = create(&db.store, &new_run(org, None)).await;
    let thread = Some(active.thread_id);
    // Enqueue: no job yet.
    let (waiting, out) = create(&db.store, &new_run(org, thread)).await;
    assert_eq!(kinds(&out), ["run.queued"]);
    // Reject: 409 naming the active run; nothing written.
    let rejected = NewRun { strategy: MultitaskStrategy::Reject, ..new_run(org, thread) };
    match db.store.create_run(&rejected).await.unwrap() {
        CreateOutcome::ThreadBusy { active: a } => assert_eq!(a, active.id),
        other => panic!("{other:?}"),
    }
    assert!(db.store.get_run(org, rejected.id).await.unwrap().is_none());
    // The active run ends: the waiting one gets the thread, its message and its job.
    let done = db.store.finish_run(&finish(active.id, 0, RunStatus::Completed)).await.unwrap();
    assert_eq!(kinds(&done.outbox), ["message.completed", "run.completed", "agent_step"]);
    assert_eq!(agent_steps(&done.outbox), [(waiting.id, 0)]);
    let msgs = db.store.list_messages(org, active.thread_id, 0, 10).await.unwrap();
    let seqs: Vec<(i64, &str)> = msgs.iter().map(|m| (m.seq, m.content.as_str())).collect();
    assert_eq!(seqs, [(1, "hello"), (2, "done"), (3, "hello")]);
    // Interrupt: the active run is cancelled and the new one starts at once.
    let interrupting = NewRun { strategy: MultitaskStrategy::Interrupt, ..new_run(org, thread) };
    match db.store.create_run(&interrupting).await.unwrap() {
        CreateOutcome::Created { interrupted, outbox, .. } => {
            assert_eq!(interrupted, Some(waiting.id));
            assert_eq!(kinds(&outbox), ["run.cancelled", "run.queued", "agent_step"]);
        }
        other => panic!("{other:?}"),
    }
    let cancelled = db.store.get_run(org, waiting.id).await.unwrap().unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
}

#[tokio::test]
async fn stale_and_duplicate_steps_change_nothing() {
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    let (run, _) = create(&db.store, &new_run(org, None)).await;
    assert!(db.store.start_run(run.id, 1, 10).await.unwrap().is_none(), "a job of another step");
    let started = db.store.start_run(run.id, 0, 10).await.unwrap().unwrap();
    assert_eq!((started.attempt, started.first_start), (1, true));
    let again = db.store.start_run(run.id, 0, 10).await.unwrap().unwrap();
    assert_eq!((again.attempt, again.first_start), (2, false), "a redelivery counts an attempt");
    assert!(!db.store.finish_run(&finish(run.id, 1, RunStatus::Completed)).await.unwrap().applied);
    assert!(db.store.finish_run(&finish(run.id, 0, RunStatus::Completed)).await.unwrap().applied);
    let dup = db.store.finish_run(&finish(run.id, 0, RunStatus::Completed)).await.unwrap();
    assert!(!dup.applied && dup.outbox.is_empty());
    assert!(db.store.start_run(run.id, 0, 10).await.unwrap().is_none(), "a finished run");
    let assistants: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE role = 'assistant'")
            .fetch_one(db.store.pool())
            .await
            .unwrap();
    assert_eq!(assistants, 1);
}

fn call(name: &str) -> NewCall {
    NewCall {
        invocation_id: InvocationId::new(),
        call_id: format!("c-{name}"),
        name: name.into(),
        server: "builtin".into(),
        arguments: json!({}),
        raw_arguments: "{}".into(),
        claimed: false,
    }
}

#[tokio::test]
async fn the_last_tool_result_enqueues_the_next_step_once_and_duplicates_are_ignored() {
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    let (run, _) = create(&db.store, &new_run(org, None)).await;
    db.store.start_run(run.id, 0, 10).await.unwrap().unwrap();
    let calls = [call("list_tasks"), call("get_ticket_stats")];
    let step =
        db.store.tool_step(run.id, 0, MessageId::new(), "", &calls, &json!({})).await.unwrap();
    assert!(step.applied);
    assert_eq!(
        kinds(&step.outbox),
        ["tool_call.created", "tool_call", "tool_call.created", "tool_call"]
    );
    let stale = db
        .store
        .tool_step(run.id, 0, MessageId::new(), "", &[call("x")], &json!({}))
        .await
        .unwrap();
    assert!(
        !stale.applied,
        "a second tool step for the same step (the run moved to in_progress at that step)"
    );
    let first =
        db.store.tool_result(calls[0].invocation_id, "a", false, None, 1, None).await.unwrap();
    assert!(first.applied && !first.next_step);
    let dup =
        db.store.tool_result(calls[0].invocation_id, "a", false, None, 1, None).await.unwrap();
    assert!(!dup.applied && dup.outbox.is_empty());
    let last =
        db.store.tool_result(calls[1].invocation_id, "b", true, Some("b"), 1, None).await.unwrap();
    assert!(last.applied && last.next_step);
    assert_eq!(agent_steps(&last.outbox), [(run.id, 1)]);
    let dup =
        db.store.tool_result(calls[1].invocation_id, "b", true, Some("b"), 1, None).await.unwrap();
    assert!(!dup.applied && !dup.next_step);
    let after = db.store.get_run(org, run.id).await.unwrap().unwrap();
    assert_eq!(after.tools_used, ["list_tasks", "get_ticket_stats"]);
    let tool_messages: Vec<String> =
        sqlx::query_scalar("SELECT content FROM messages WHERE role = 'tool' ORDER BY seq")
            .fetch_all(db.store.pool())
            .await
            .unwrap();
    assert_eq!(tool_messages, ["a", "b"]);
}

/// The agent worker runs its built-in calls with no claim of its own: the turn's transaction
/// counts their first attempt, the worker reads them as a claim would have, and their result
/// takes the start the worker saw.
#[tokio::test]
async fn a_turn_claims_the_calls_its_worker_runs_as_a_claim_would() {
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    let (run, _) = create(&db.store, &new_run(org, None)).await;
    let started = db.store.start_run(run.id, 0, 10).await.unwrap().unwrap();
    assert_eq!(started.scopes, [Scope::RunsRead, Scope::RunsWrite]);
    let mut claimed = call("list_tasks");
    claimed.claimed = true;
    let other = call("get_ticket_stats");
    let step = db
        .store
        .tool_step(run.id, 0, MessageId::new(), "", &[claimed.clone(), other.clone()], &json!({}))
        .await
        .unwrap();
    assert!(step.applied);
    let rows: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT attempt, started_at IS NULL FROM tool_invocations WHERE run_id = $1 \
         ORDER BY call_index",
    )
    .bind(run.id)
    .fetch_all(db.store.pool())
    .await
    .unwrap();
    assert_eq!(rows, [(1, true), (0, true)], "only the claimed call counts an attempt");

    // What the worker builds in memory is what a claim reads from the rows.
    let by_claim = db.store.claim_call(other.invocation_id, 0).await.unwrap().unwrap();
    let mut by_turn = PendingCall::claimed_by_turn(&started, 0, &other);
    assert!(by_turn.started.is_some());
    by_turn.started = None;
    assert_eq!(format!("{by_turn:?}"), format!("{by_claim:?}"));

    // Its result takes the worker's start; the attempt stays the turn's.
    let worker_start = PendingCall::claimed_by_turn(&started, 0, &claimed).started.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let t = db
        .store
        .tool_result(claimed.invocation_id, "a", false, None, 1, Some(worker_start))
        .await
        .unwrap();
    assert!(t.applied);
    let (attempt, started_at, duration_ms): (i32, chrono::DateTime<chrono::Utc>, i32) =
        sqlx::query_as(
            "SELECT attempt, started_at, duration_ms FROM tool_invocations WHERE id = $1",
        )
        .bind(claimed.invocation_id)
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    assert_eq!(attempt, 1);
    assert!((started_at - worker_start).num_microseconds().unwrap().abs() <= 1);
    assert!(duration_ms >= 30, "from the worker's start to the result: {duration_ms} ms");
}

#[tokio::test]
async fn a_cancel_racing_a_finish_ends_the_run_once() {
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    for _ in 0..20 {
        let (run, _) = create(&db.store, &new_run(org, None)).await;
        db.store.start_run(run.id, 0, 10).await.unwrap().unwrap();
        let f = finish(run.id, 0, RunStatus::Completed);
        let (finished, cancelled) =
            tokio::join!(db.store.finish_run(&f), db.store.cancel_run(org, run.id));
        let finished = finished.unwrap();
        let cancelled = matches!(cancelled.unwrap(), CancelOutcome::Cancelled { .. });
        assert!(finished.applied ^ cancelled, "exactly one of them ends the run");
        let end = db.store.get_run(org, run.id).await.unwrap().unwrap();
        let expected = if cancelled { RunStatus::Cancelled } else { RunStatus::Completed };
        assert_eq!(end.status, expected);
        let terminal: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox, jsonb_array_elements(facts) f \
             WHERE f->>'run' = $1 AND f->'event'->>'type' IN ('run.completed', 'run.cancelled')",
        )
        .bind(run.id.to_string())
        .fetch_one(db.store.pool())
        .await
        .unwrap();
        assert_eq!(terminal, 1, "one terminal event");
    }
}

#[tokio::test]
async fn input_waits_are_states_answered_one_call_at_a_time() {
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    let (run, _) = create(&db.store, &new_run(org, None)).await;
    db.store.start_run(run.id, 0, 10).await.unwrap().unwrap();
    let calls = [call("delete_task"), call("delete_ticket")];
    db.store.tool_step(run.id, 0, MessageId::new(), "", &calls, &json!({})).await.unwrap();
    let request = |i: usize| RequiredInput::ToolApproval {
        invocation_id: calls[i].invocation_id,
        tool: calls[i].name.clone(),
        arguments: json!({}),
        message: "approve?".into(),
    };
    let deadline = chrono::Utc::now() + chrono::Duration::minutes(5);
    let first = db
        .store
        .tool_input(calls[0].invocation_id, 0, &request(0), "tool_approval", deadline)
        .await
        .unwrap();
    assert!(first.applied);
    assert_eq!(kinds(&first.outbox), ["run.requires_input"]);
    let stale = db
        .store
        .tool_input(calls[1].invocation_id, 3, &request(1), "tool_approval", deadline)
        .await
        .unwrap();
    assert!(!stale.applied, "a job of another round");
    let second = db
        .store
        .tool_input(calls[1].invocation_id, 0, &request(1), "tool_approval", deadline)
        .await
        .unwrap();
    assert!(second.applied && second.outbox.is_empty(), "the run still shows the first request");
    assert!(
        db.store.claim_call(calls[1].invocation_id, 0).await.unwrap().is_none(),
        "a call waiting for a human is not claimed"
    );
    let shown = db.store.get_run(org, run.id).await.unwrap().unwrap();
    assert_eq!(shown.status, RunStatus::RequiresInput);
    assert_eq!(shown.required_input, Some(request(0)));
    let approve = InputAnswer { action: InputAction::Approve, content: None, timed_out: false };
    let AnswerOutcome::Answered { invocation, run: after, outbox } =
        db.store.answer_input(org, run.id, None, &approve).await.unwrap()
    else {
        panic!("not answered");
    };
    assert_eq!(invocation, calls[0].invocation_id);
    assert_eq!(after.required_input, Some(request(1)), "the next waiting call is shown");
    assert_eq!(kinds(&outbox), ["tool_call", "run.input_received", "run.requires_input"]);
    let Fact::Job { job: Job::ToolCall(job) } = facts(&outbox)[0] else { panic!() };
    assert_eq!((job.invocation_id, job.round), (calls[0].invocation_id, 1));
    let pending = db.store.claim_call(calls[0].invocation_id, 1).await.unwrap().unwrap();
    assert_eq!(pending.answer("tool_approval"), Some(approve.clone()));
    // Past its deadline, the second is due for the sweeper's timeout answer.
    sqlx::query(
        "UPDATE tool_invocations SET input_deadline = now() - interval '1 second' WHERE id = $1",
    )
    .bind(calls[1].invocation_id)
    .execute(db.store.pool())
    .await
    .unwrap();
    let due = db.store.due_inputs(10).await.unwrap();
    assert_eq!(due.len(), 1);
    let answer = due[0].input_request.timeout_answer();
    assert_eq!((answer.action, answer.timed_out), (InputAction::Deny, true));
    let answered = db.store.answer_input(org, run.id, Some(due[0].id), &answer).await.unwrap();
    let AnswerOutcome::Answered { run: after, .. } = answered else { panic!() };
    assert_eq!((after.status, after.required_input), (RunStatus::InProgress, None));
    assert!(db.store.due_inputs(10).await.unwrap().is_empty());
    let again = db.store.answer_input(org, run.id, None, &approve).await.unwrap();
    assert!(matches!(again, AnswerOutcome::NotWaiting));
}

#[tokio::test]
async fn runs_without_progress_are_overdue_and_live_runs_are_refilled_after_a_crash() {
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    let (run, _) = create(&db.store, &new_run(org, None)).await;
    let (waiting, _) = create(&db.store, &new_run(org, Some(run.thread_id))).await;
    let timeouts = json!({"customer_support": 1});
    assert!(db.store.overdue_runs(&timeouts, 1, Duration::ZERO, 10).await.unwrap().is_empty());
    sqlx::query("UPDATE runs SET progress_at = now() - interval '5 seconds'")
        .execute(db.store.pool())
        .await
        .unwrap();
    let due = db.store.overdue_runs(&timeouts, 2, Duration::from_secs(1), 10).await.unwrap();
    let ids: Vec<RunId> = due.iter().map(|d| d.run_id).collect();
    assert_eq!(ids, [run.id], "the run waiting for its thread is not due");
    assert!((due[0].allowed_secs - 3.0).abs() < 0.01, "{}", due[0].allowed_secs);
    assert!(due[0].silent_secs >= 5.0);
    // An agent's own timeout counts.
    sqlx::query("UPDATE agents SET config = '{\"timeout_seconds\": 60}'")
        .execute(db.store.pool())
        .await
        .unwrap();
    assert!(db.store.overdue_runs(&timeouts, 2, Duration::ZERO, 10).await.unwrap().is_empty());
    // A crash empties the unlogged tables: the refill finds both live runs again.
    sqlx::raw_sql("TRUNCATE live_runs, live_runs_filled").execute(db.store.pool()).await.unwrap();
    assert_eq!(db.store.refill_live_runs().await.unwrap(), 2);
    assert_eq!(db.store.refill_live_runs().await.unwrap(), 0, "once");
    let still = db.store.get_run(org, waiting.id).await.unwrap().unwrap();
    assert_eq!(still.status, RunStatus::Queued);
}

/// How many transactions wrote `table`'s rows of these runs (rows one transaction wrote share
/// its `xmin`).
async fn transactions(store: &Store, table: &str, runs: &[RunId]) -> i64 {
    let sql = format!("SELECT count(DISTINCT xmin::text) FROM {table} WHERE run_id = ANY($1)");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(runs).fetch_one(store.pool()).await.unwrap()
}

/// How many transactions wrote these runs' messages of `role`.
async fn message_transactions(store: &Store, role: &str, runs: &[RunId]) -> i64 {
    sqlx::query_scalar(
        "SELECT count(DISTINCT xmin::text) FROM messages WHERE role = $1 AND run_id = ANY($2)",
    )
    .bind(role)
    .bind(runs)
    .fetch_one(store.pool())
    .await
    .unwrap()
}

/// For every connection the generic pool holds: its `plan_cache_mode` and `jit` and, per
/// prepared statement containing `like`, (generic plans, custom plans).
async fn plans(store: &Store, like: &str) -> Vec<(String, Vec<(i64, i64)>)> {
    let pool = store.generic();
    // Wait for the lanes to return their connections, then hold every one at once.
    for _ in 0..100 {
        if pool.num_idle() == pool.size() as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut held = Vec::new();
    for _ in 0..pool.size() {
        held.push(pool.acquire().await.unwrap());
    }
    let mut out = Vec::new();
    for conn in &mut held {
        let mode: String = sqlx::query_scalar(
            "SELECT current_setting('plan_cache_mode') || ' jit=' || current_setting('jit')",
        )
        .fetch_one(&mut **conn)
        .await
        .unwrap();
        let counts: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
             WHERE statement LIKE '%' || $1 || '%' AND statement NOT LIKE '%pg_prepared%'",
        )
        .bind(like)
        .fetch_all(&mut **conn)
        .await
        .unwrap();
        out.push((mode, counts));
    }
    out
}

#[tokio::test]
async fn grouped_transitions_and_outbox_deletes_are_planned_once_and_states_are_checked() {
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;

    // Batches of creates of many sizes: with Postgres's default plan cache each batch would be
    // planned again (a custom plan per array length).
    let mut ids = Vec::new();
    for size in [2, 5, 9, 3, 12, 7, 4] {
        let news: Vec<NewRun> = (0..size).map(|_| new_run(org, None)).collect();
        for (_, outbox) in
            futures::future::join_all(news.iter().map(|n| create(&db.store, n))).await
        {
            ids.extend(outbox.iter().map(|r| r.id));
        }
    }
    let creates = plans(&db.store, "ay_create_run").await;
    assert!(!creates.is_empty(), "the create lane used the generic pool");
    let counts: Vec<(i64, i64)> = creates.iter().flat_map(|(_, c)| c.clone()).collect();
    assert!(counts.iter().any(|(generic, _)| *generic > 0), "{creates:?}");
    for (mode, c) in &creates {
        assert_eq!(mode, "force_generic_plan jit=off");
        assert!(c.iter().all(|(_, custom)| *custom == 0), "{creates:?}");
    }

    // The outbox's deletes, of arrays of every length, on the same pool.
    for chunk in ids.chunks(3).chain(ids.chunks(5)).chain(ids.chunks(1)) {
        db.store.outbox_delete(chunk).await.unwrap();
    }
    assert_eq!(db.store.outbox_len().await.unwrap(), 0);
    let deletes = plans(&db.store, "DELETE FROM outbox").await;
    let counts: Vec<(i64, i64)> = deletes.iter().flat_map(|(_, c)| c.clone()).collect();
    assert!(counts.iter().map(|(g, _)| g).sum::<i64>() >= 6, "{deletes:?}");
    assert!(counts.iter().all(|(_, custom)| *custom == 0), "{deletes:?}");

    // The state columns refuse values outside their domains, as their CHECKs did.
    for sql in [
        "UPDATE runs SET status = 'done' WHERE org_id = $1",
        "UPDATE runs SET priority = 'urgent' WHERE org_id = $1",
        "UPDATE messages SET role = 'robot' WHERE org_id = $1",
        "INSERT INTO tool_invocations(id, org_id, token_id, step, call_index, call_id, server, \
         tool, arguments, status) VALUES (gen_random_uuid(), $1, gen_random_uuid(), 0, 0, 'c', \
         's', 't', '{}', 'running')",
    ] {
        let err = sqlx::query(sql).bind(org).execute(db.store.pool()).await.unwrap_err();
        let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("23514"), "{sql}: {err}");
    }
}

#[tokio::test]
async fn on_a_new_database_the_transitions_look_rows_up_by_index_not_by_scanning_tables() {
    // Generic plans are made once per connection, with the tables as they are then. Made on a
    // new database's empty tables, a plan may scan the whole table, and would keep doing so on
    // every call as the table grows: the lanes' connections must look rows up by index.
    let mut db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    // The migrations' own scans must not count: their connections are closed (which reports
    // their statistics) before the counters are reset.
    db.store.pool().close().await;
    let (base, _) = db.admin.rsplit_once('/').unwrap();
    db.store = Store::connect(&format!("{base}/{}", db.name), 8).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::query("SELECT pg_stat_reset()").execute(db.store.pool()).await.unwrap();

    // Whole tool runs, a few at a time and then more once the tables hold rows: create, start,
    // tool step, claim, result, second start, finish; and a sweep after each round.
    let mut runs = 0;
    for size in [1, 3, 8, 16] {
        let news: Vec<NewRun> = (0..size).map(|_| new_run(org, None)).collect();
        let ids: Vec<RunId> = news.iter().map(|n| n.id).collect();
        futures::future::join_all(news.iter().map(|n| create(&db.store, n))).await;
        let starts = futures::future::join_all(ids.iter().map(|id| db.store.start_run(*id, 0, 10)));
        assert!(starts.await.into_iter().all(|s| s.unwrap().is_some()));
        let calls: Vec<NewCall> = ids.iter().map(|_| call("get_ticket_stats")).collect();
        let usage = json!({});
        let steps = futures::future::join_all(ids.iter().zip(&calls).map(|(id, c)| {
            db.store.tool_step(*id, 0, MessageId::new(), "", std::slice::from_ref(c), &usage)
        }));
        assert!(steps.await.into_iter().all(|s| s.unwrap().applied));
        let claims = futures::future::join_all(
            calls.iter().map(|c| db.store.claim_call(c.invocation_id, 0)),
        );
        assert!(claims.await.into_iter().all(|c| c.unwrap().is_some()));
        let results = futures::future::join_all(
            calls.iter().map(|c| db.store.tool_result(c.invocation_id, "r", false, None, 1, None)),
        );
        assert!(results.await.into_iter().all(|t| t.unwrap().next_step));
        let starts = futures::future::join_all(ids.iter().map(|id| db.store.start_run(*id, 1, 10)));
        assert!(starts.await.into_iter().all(|s| s.unwrap().is_some()));
        let ends: Vec<Finish> = ids.iter().map(|id| finish(*id, 1, RunStatus::Completed)).collect();
        let finishes = futures::future::join_all(ends.iter().map(|f| db.store.finish_run(f)));
        assert!(finishes.await.into_iter().all(|f| f.unwrap().applied));
        // The sweeper's statements, which join the live runs to every run.
        let no_timeouts = json!({});
        let overdue = db.store.overdue_runs(&no_timeouts, 3, Duration::from_secs(60), 100).await;
        assert!(overdue.unwrap().is_empty());
        assert_eq!(db.store.refill_live_runs().await.unwrap(), 0);
        assert!(db.store.due_inputs(100).await.unwrap().is_empty());
        runs += size;
    }

    // Each connection reports its statistics within a second or two of going idle: wait until
    // every lane's writes are counted (4 messages, 5 run updates and 2 call updates a run).
    let counted = |table: &'static str| {
        let pool = db.store.pool().clone();
        async move {
            sqlx::query_as::<_, (i64, i64, i64, i64)>(
                "SELECT seq_scan, n_tup_ins, n_tup_upd, coalesce(idx_scan, 0) \
                 FROM pg_stat_user_tables WHERE relname = $1",
            )
            .bind(table)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, messages, _, _) = counted("messages").await;
        let (_, _, run_updates, _) = counted("runs").await;
        let (_, _, call_updates, _) = counted("tool_invocations").await;
        if messages >= 4 * runs && run_updates >= 5 * runs && call_updates >= 2 * runs {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "statistics not reported in time");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for table in ["runs", "threads", "messages", "tool_invocations", "live_runs", "outbox"] {
        let (seq_scans, _, _, index_scans) = counted(table).await;
        // Each sweep walks the live runs whole, by design (the next test): once a round.
        let allowed = if table == "live_runs" { 4 } else { 0 };
        assert_eq!(
            seq_scans, allowed,
            "{table}: {seq_scans} sequential scans, {index_scans} by index"
        );
    }
}

#[tokio::test]
async fn the_sweeper_reads_the_live_runs_not_every_run() {
    // Every worker sweeps every 2 s: what a sweep reads must grow with the live runs, not
    // with every run ever made. A thousand ended runs, then three live ones.
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    for _ in 0..10 {
        let news: Vec<NewRun> = (0..100).map(|_| new_run(org, None)).collect();
        futures::future::join_all(news.iter().map(|n| create(&db.store, n))).await;
        let ends: Vec<Finish> =
            news.iter().map(|n| finish(n.id, 0, RunStatus::Completed)).collect();
        let done = futures::future::join_all(ends.iter().map(|f| db.store.finish_run(f))).await;
        assert!(done.into_iter().all(|f| f.unwrap().applied));
    }
    for _ in 0..3 {
        create(&db.store, &new_run(org, None)).await;
    }
    // A row left behind for a run that ended (a race of the refill): the sweep drops it.
    let ended: RunId = sqlx::query_scalar("SELECT id FROM runs WHERE status = 'completed' LIMIT 1")
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO live_runs(org_id, run_id) VALUES ($1, $2)")
        .bind(org)
        .bind(ended)
        .execute(db.store.pool())
        .await
        .unwrap();

    // On a connection of its own, so that the counters hold only this transaction's reads.
    use sqlx::Connection;
    let (base, _) = db.admin.rsplit_once('/').unwrap();
    let mut conn = sqlx::PgConnection::connect(&format!("{base}/{}", db.name)).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let overdue: Vec<(uuid::Uuid,)> =
        sqlx::query_as("SELECT run_id FROM ay_overdue_runs('{}', 1, '0 seconds', 100)")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    assert_eq!(overdue.len(), 0, "every live run is new");
    let added: i32 =
        sqlx::query_scalar("SELECT ay_refill_live_runs()").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(added, 0);
    let (seq, fetched): (i64, i64) = sqlx::query_as(
        "SELECT seq_tup_read, coalesce(idx_tup_fetch, 0) \
         FROM pg_stat_xact_user_tables WHERE relname = 'runs'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let live: i64 =
        sqlx::query_scalar("SELECT count(*) FROM live_runs").fetch_one(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(live, 3, "the ended run's row is gone, the live ones stay");
    assert!(seq + fetched <= 20, "runs read: {seq} by scan, {fetched} by index, for 4 live rows");
}

#[tokio::test]
async fn concurrent_creates_starts_and_finishes_commit_together_each_with_its_own_outcome() {
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    let (active, _) = create(&db.store, &new_run(org, None)).await;
    let busy = Some(active.thread_id);

    // 30 creates at once: fewer transactions than runs, each run with its own facts.
    let news: Vec<NewRun> = (0..30).map(|_| new_run(org, None)).collect();
    let made = futures::future::join_all(news.iter().map(|n| create(&db.store, n))).await;
    let ids: Vec<RunId> = news.iter().map(|n| n.id).collect();
    for ((run, outbox), new) in made.iter().zip(&news) {
        assert_eq!(run.id, new.id);
        assert_eq!(agent_steps(outbox), [(new.id, 0)]);
    }
    let created_in = transactions(&db.store, "messages", &ids).await;
    assert!(created_in < 30, "30 creates in {created_in} transactions");

    // A batch where some calls are refused: each still gets its own outcome, and the refused
    // ones write nothing.
    let mixed: Vec<NewRun> = (0..8)
        .map(|i| match i % 3 {
            0 => NewRun { strategy: MultitaskStrategy::Reject, ..new_run(org, busy) },
            1 => new_run(org, busy),
            _ => new_run(org, None),
        })
        .collect();
    let outcomes = futures::future::join_all(mixed.iter().map(|n| db.store.create_run(n))).await;
    let mut waiting = Vec::new();
    for (new, outcome) in mixed.iter().zip(outcomes) {
        match (new.strategy, new.thread, outcome.unwrap()) {
            (MultitaskStrategy::Reject, _, CreateOutcome::ThreadBusy { active: a }) => {
                assert_eq!(a, active.id);
                assert!(db.store.get_run(org, new.id).await.unwrap().is_none());
            }
            (MultitaskStrategy::Enqueue, Some(_), CreateOutcome::Created { outbox, .. }) => {
                assert_eq!(kinds(&outbox), ["run.queued"], "waits for the thread");
                waiting.push(new.id);
            }
            (MultitaskStrategy::Enqueue, None, CreateOutcome::Created { outbox, .. }) => {
                assert_eq!(agent_steps(&outbox), [(new.id, 0)]);
            }
            (s, t, other) => panic!("{s:?} on {t:?}: {other:?}"),
        }
    }

    // Starts at once, one run twice (a duplicate delivery): it starts once.
    let mut starts: Vec<RunId> = ids.clone();
    starts.push(ids[0]);
    let started =
        futures::future::join_all(starts.iter().map(|id| db.store.start_run(*id, 0, 10))).await;
    let started: Vec<_> = started.into_iter().map(Result::unwrap).collect();
    for (id, s) in starts.iter().zip(&started).take(30) {
        if *id != ids[0] {
            let s = s.as_ref().expect("started");
            assert_eq!((s.run.id, s.attempt, s.history.len()), (*id, 1, 1));
        }
    }
    let firsts = started.iter().filter(|s| s.as_ref().is_some_and(|s| s.run.id == ids[0])).count();
    assert_eq!(firsts, 1, "a run twice in one batch starts once");

    // Finishes at once, with the busy thread's active run: its first waiting run takes over.
    let mut finishes: Vec<Finish> =
        ids.iter().map(|id| finish(*id, 0, RunStatus::Completed)).collect();
    finishes.push(finish(active.id, 0, RunStatus::Completed));
    let done = futures::future::join_all(finishes.iter().map(|f| db.store.finish_run(f))).await;
    for (f, d) in finishes.iter().zip(done) {
        let d = d.unwrap();
        assert!(d.applied, "{:?}", f.run);
        assert_eq!(d.run.as_ref().map(|r| (r.id, r.status)), Some((f.run, RunStatus::Completed)));
        let steps = agent_steps(&d.outbox);
        if f.run == active.id {
            assert_eq!(steps, [(waiting[0], 0)], "the first waiting run takes the thread");
        } else {
            assert!(steps.is_empty());
        }
    }
    let finished_in = message_transactions(&db.store, "assistant", &ids).await;
    assert!(finished_in < 30, "30 finishes in {finished_in} transactions");
    let answers: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE role = 'assistant'")
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    assert_eq!(answers, 31);
}

/// What a test's transitions wrote in `org`, as JSON, with what differs from one run of
/// them to the next left out: timestamps, durations, generated message and outbox ids.
async fn rows_of(tx: &mut sqlx::PgConnection, org: OrgId) -> serde_json::Value {
    let mut rows = json!({});
    for (name, sql) in [
        (
            "calls",
            "SELECT jsonb_agg(to_jsonb(t) ORDER BY id) FROM tool_invocations t WHERE org_id = $1",
        ),
        (
            "messages",
            "SELECT jsonb_agg(to_jsonb(m) ORDER BY thread_id, seq) FROM messages m WHERE org_id = $1",
        ),
        (
            "threads",
            "SELECT jsonb_agg(jsonb_build_array(id, last_seq, active_run_id) ORDER BY id) FROM threads WHERE org_id = $1",
        ),
        ("runs", "SELECT jsonb_agg(to_jsonb(r) ORDER BY id) FROM runs r WHERE org_id = $1"),
        (
            "outbox",
            "SELECT jsonb_agg(facts ORDER BY id) FROM outbox WHERE facts::text LIKE '%' || $1::text || '%'",
        ),
    ] {
        let v: Option<serde_json::Value> =
            sqlx::query_scalar(sql).bind(org).fetch_one(&mut *tx).await.unwrap();
        rows[name] = v.unwrap_or_default();
    }
    if let Some(messages) = rows["messages"].as_array_mut() {
        for m in messages {
            m.as_object_mut().unwrap().remove("id");
        }
    }
    let mut rows = stable(rows);
    if let Some(outbox) = rows["outbox"].as_array_mut() {
        outbox.sort_by_key(ToString::to_string);
    }
    rows
}

/// `v` without the keys whose values differ from one run of the same transitions to the next.
fn stable(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| !(k.ends_with("_at") || k == "duration_ms"))
                .map(|(k, v)| (k, stable(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(stable).collect()),
        other => other,
    }
}

/// Outcomes of transitions, their outbox rows' ids left out.
fn without_outbox_ids(outcomes: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    outcomes
        .into_iter()
        .map(|mut v| {
            for row in v["outbox"].as_array_mut().unwrap() {
                row.as_object_mut().unwrap().remove("id");
            }
            stable(v)
        })
        .collect()
}

/// The outcomes of a test's transitions and what they wrote in `org` (see [`rows_of`]), as
/// JSON; then `tx`, in which they ran, is rolled back.
async fn written(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    org: OrgId,
    outcomes: Vec<serde_json::Value>,
) -> serde_json::Value {
    let rows =
        json!({ "outcomes": without_outbox_ids(outcomes), "rows": rows_of(&mut tx, org).await });
    tx.rollback().await.unwrap();
    rows
}

/// One turn as the store passes it to Postgres.
struct Turn {
    run: RunId,
    step: i32,
    message: MessageId,
    calls: Vec<NewCall>,
    usage: serde_json::Value,
}

/// What `turns` wrote, stored in a transaction that is rolled back: the outcomes (outbox ids
/// left out) and every row they touched (timestamps left out), as JSON.
async fn stored_turns(
    store: &Store,
    org: OrgId,
    turns: &[Turn],
    together: bool,
) -> serde_json::Value {
    let mut tx = store.pool().begin().await.unwrap();
    let outcomes: Vec<serde_json::Value> = if together {
        let mut rows: Vec<(i64, serde_json::Value)> =
            sqlx::query_as("SELECT turn, outcome FROM ay_tool_steps($1, $2, $3, $4, $5, $6)")
                .bind(turns.iter().map(|t| t.run).collect::<Vec<_>>())
                .bind(turns.iter().map(|t| t.step).collect::<Vec<_>>())
                .bind(turns.iter().map(|t| t.message).collect::<Vec<_>>())
                .bind(turns.iter().map(|_| "thinking").collect::<Vec<_>>())
                .bind(turns.iter().map(|t| json!(t.calls)).collect::<Vec<_>>())
                .bind(turns.iter().map(|t| t.usage.clone()).collect::<Vec<_>>())
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        rows.sort_by_key(|(n, _)| *n);
        let turns = i64::try_from(turns.len()).unwrap();
        assert_eq!(
            rows.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            (1..=turns).collect::<Vec<_>>()
        );
        rows.into_iter().map(|(_, v)| v).collect()
    } else {
        let mut out = Vec::new();
        for t in turns {
            let v: serde_json::Value =
                sqlx::query_scalar("SELECT ay_tool_step($1, $2, $3, $4, $5, $6)")
                    .bind(t.run)
                    .bind(t.step)
                    .bind(t.message)
                    .bind("thinking")
                    .bind(json!(t.calls))
                    .bind(&t.usage)
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
            out.push(v);
        }
        out
    };
    written(tx, org, outcomes).await
}

#[tokio::test]
async fn a_batch_of_turns_stores_what_the_turns_one_by_one_would() {
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    let mut news: Vec<NewRun> = (0..6).map(|_| new_run(org, None)).collect();
    let (a, b, d, e, f) = (news[0].id, news[1].id, news[2].id, news[3].id, news[4].id);
    let (first, _) = create(&db.store, &news[0]).await;
    // `c` waits behind `a` on its thread, queued at step 0.
    news[5].thread = Some(first.thread_id);
    let c = news[5].id;
    for n in &news[1..] {
        create(&db.store, n).await;
    }
    for id in [a, b, d, e, f] {
        db.store.start_run(id, 0, 10).await.unwrap().unwrap();
    }
    // `e` has stored its step 0 already.
    db.store.tool_step(e, 0, MessageId::new(), "", &[call("x")], &json!({})).await.unwrap();

    let usage = json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10});
    let turn = |run, step, calls: Vec<NewCall>| Turn {
        run,
        step,
        message: MessageId::new(),
        calls,
        usage: usage.clone(),
    };
    let claimed = NewCall { claimed: true, ..call("get_ticket_stats") };
    let turns = [
        turn(b, 0, vec![claimed, call("list_tasks")]),
        turn(a, 0, vec![call("list_tasks")]),
        turn(c, 0, vec![call("add_task")]),
        turn(a, 0, vec![call("again")]),
        turn(d, 0, vec![]),
        turn(e, 0, vec![call("stale")]),
        turn(f, 3, vec![call("wrong_step")]),
    ];
    let alone = stored_turns(&db.store, org, &turns, false).await;
    let together = stored_turns(&db.store, org, &turns, true).await;
    assert_eq!(together, alone);

    // What they store: the second turn of `a`, the stored step of `e` and `f`'s wrong step
    // change nothing; `c` follows `a` on their thread.
    let applied: Vec<bool> =
        alone["outcomes"].as_array().unwrap().iter().map(|o| o["applied"] == true).collect();
    assert_eq!(applied, [true, true, true, false, true, false, false]);
    assert_eq!(alone["rows"]["calls"].as_array().unwrap().len(), 5, "{alone}");
    let seqs: Vec<(String, i64)> = alone["rows"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .map(|m| (m["run_id"].as_str().unwrap().to_owned(), m["seq"].as_i64().unwrap()))
        .collect();
    assert!(seqs.contains(&(a.to_string(), 2)) && seqs.contains(&(c.to_string(), 3)), "{seqs:?}");
    let attempts: Vec<i64> = alone["rows"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["run_id"] == json!(b))
        .map(|c| c["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts.iter().sum::<i64>(), 1, "only the claimed call counts an attempt");
}

/// One result as the store passes it to Postgres: the call, its result, whether it is an error.
type Ended = (InvocationId, &'static str, bool);

/// What `results` wrote, stored in a transaction that is rolled back: one statement of
/// `ay_tool_result` per result (in thread order, then in the order given: the batch statement
/// before `ay_tool_results`), or `ay_tool_results`.
async fn stored_results(
    store: &Store,
    org: OrgId,
    results: &[Ended],
    together: bool,
) -> serde_json::Value {
    let sql = if together {
        "SELECT result, outcome FROM ay_tool_results($1, $2, $3, $4, $5, $6)"
    } else {
        "SELECT x.n, ay_tool_result(x.i, x.r, x.e, x.m, x.a, x.s) \
         FROM unnest($1::uuid[], $2::text[], $3::bool[], $4::text[], $5::int4[], \
                     $6::timestamptz[]) WITH ORDINALITY AS x(i, r, e, m, a, s, n) \
         ORDER BY (SELECT thread_id FROM tool_invocations WHERE id = x.i), x.n"
    };
    let mut tx = store.pool().begin().await.unwrap();
    let mut rows: Vec<(i64, serde_json::Value)> = sqlx::query_as(sql)
        .bind(results.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(results.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(results.iter().map(|r| r.2).collect::<Vec<_>>())
        .bind(results.iter().map(|r| r.2.then_some("boom")).collect::<Vec<_>>())
        .bind(results.iter().map(|_| 1).collect::<Vec<i32>>())
        .bind(results.iter().map(|_| None).collect::<Vec<Option<chrono::DateTime<chrono::Utc>>>>())
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    rows.sort_by_key(|(n, _)| *n);
    let outcomes: Vec<serde_json::Value> = rows.into_iter().map(|(_, v)| v).collect();
    written(tx, org, outcomes).await
}

#[tokio::test]
async fn a_batch_of_results_stores_what_the_results_one_by_one_would() {
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    // Runs with their step 0's calls: a and b two each, the others one; e is a workflow's
    // tool step; f's call has its result already.
    let news: Vec<NewRun> = (0..6).map(|_| new_run(org, None)).collect();
    let mut calls: Vec<Vec<NewCall>> = Vec::new();
    for (i, n) in news.iter().enumerate() {
        create(&db.store, n).await;
        db.store.start_run(n.id, 0, 10).await.unwrap().unwrap();
        let made: Vec<NewCall> =
            (0..if i < 2 { 2 } else { 1 }).map(|k| call(&format!("tool_{i}_{k}"))).collect();
        db.store.tool_step(n.id, 0, MessageId::new(), "", &made, &json!({})).await.unwrap();
        calls.push(made);
    }
    for c in &calls[0] {
        db.store.claim_call(c.invocation_id, 0).await.unwrap().unwrap();
    }
    sqlx::query(
        "INSERT INTO workflow_step_runs(run_id, execution_id, step_id, attempt, kind) \
         VALUES ($1, gen_random_uuid(), 'lookup', 1, 'tool')",
    )
    .bind(news[4].id)
    .execute(db.store.pool())
    .await
    .unwrap();
    let f = calls[5][0].invocation_id;
    assert!(db.store.tool_result(f, "early", false, None, 1, None).await.unwrap().next_step);

    let id = |run: usize, k: usize| calls[run][k].invocation_id;
    let results: [Ended; 8] = [
        (id(0, 0), "a0", false),
        (id(1, 0), "b0", false),
        (id(2, 0), "c0", false),
        (id(0, 1), "a1", false),
        (id(2, 0), "c0 again", false),
        (id(3, 0), "d0 failed", true),
        (id(4, 0), "e0", false),
        (f, "late", false),
    ];
    let alone = stored_results(&db.store, org, &results, false).await;
    let together = stored_results(&db.store, org, &results, true).await;
    assert_eq!(together, alone);

    // What they store: a's second result, c's first, d's and e's end their steps (e ends its
    // run); b still waits for a call; c's second result and f's late one change nothing.
    let outcome = |k: &str| -> Vec<serde_json::Value> {
        alone["outcomes"].as_array().unwrap().iter().map(|o| o[k].clone()).collect()
    };
    assert_eq!(outcome("applied"), [true, true, true, true, false, true, true, false]);
    assert_eq!(outcome("next_step"), [false, false, true, true, false, true, false, false]);
    let runs = alone["rows"]["runs"].as_array().unwrap();
    let run = |i: usize| runs.iter().find(|r| r["id"] == json!(news[i].id)).unwrap();
    let states: Vec<(serde_json::Value, serde_json::Value)> =
        (0..6).map(|i| (run(i)["status"].clone(), run(i)["step"].clone())).collect();
    assert_eq!(
        states,
        [
            (json!("in_progress"), json!(1)),
            (json!("in_progress"), json!(0)),
            (json!("in_progress"), json!(1)),
            (json!("in_progress"), json!(1)),
            (json!("completed"), json!(0)),
            (json!("in_progress"), json!(1)),
        ]
    );
    assert_eq!(run(0)["tools_used"], json!(["tool_0_0", "tool_0_1"]));
}

#[tokio::test]
async fn concurrent_tool_steps_claims_and_results_commit_together_each_with_its_own_outcome() {
    let db = Db::new().await;
    let org = db.store.create_org("o").await.unwrap().org_id;
    let news: Vec<NewRun> = (0..20).map(|_| new_run(org, None)).collect();
    futures::future::join_all(news.iter().map(|n| create(&db.store, n))).await;
    let ids: Vec<RunId> = news.iter().map(|n| n.id).collect();
    for id in &ids {
        db.store.start_run(*id, 0, 10).await.unwrap().unwrap();
    }

    // 20 tool steps at once, two calls each, and one stale step (the run already has calls
    // at that step) in the same batch: it changes nothing.
    let calls: Vec<[NewCall; 2]> =
        ids.iter().map(|_| [call("list_tasks"), call("get_ticket_stats")]).collect();
    let usage = json!({});
    let steps = futures::future::join_all(
        ids.iter()
            .zip(&calls)
            .map(|(id, c)| db.store.tool_step(*id, 0, MessageId::new(), "", c, &usage)),
    );
    let stale = async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        db.store.tool_step(ids[0], 0, MessageId::new(), "", &[call("x")], &json!({})).await
    };
    let (steps, stale) = tokio::join!(steps, stale);
    for s in steps {
        let s = s.unwrap();
        assert!(s.applied);
        assert_eq!(
            kinds(&s.outbox),
            ["tool_call.created", "tool_call", "tool_call.created", "tool_call"]
        );
    }
    assert!(!stale.unwrap().applied);
    let stepped_in = transactions(&db.store, "tool_invocations", &ids).await;
    assert!(stepped_in < 20, "20 tool steps in {stepped_in} transactions");

    // Every call claimed at once, with a job of another round and one claim twice: each call
    // gets its attempt and its run's state; the stale job claims nothing.
    let invocations: Vec<InvocationId> = calls.iter().flatten().map(|c| c.invocation_id).collect();
    let claims = futures::future::join_all(invocations.iter().map(|i| db.store.claim_call(*i, 0)));
    let others = async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        tokio::join!(db.store.claim_call(invocations[1], 7), db.store.claim_call(invocations[0], 0))
    };
    let (claims, (stale_round, twice)) = tokio::join!(claims, others);
    for (claim, inv) in claims.into_iter().zip(&invocations) {
        let claimed = claim.unwrap().expect("claimed");
        assert_eq!(
            (claimed.id, claimed.status.as_str(), claimed.run_status, claimed.run_step),
            (*inv, "pending", RunStatus::InProgress, 0)
        );
        assert!(claimed.attempt == 1 || claimed.id == invocations[0], "{}", claimed.attempt);
        assert!(!claimed.workflow_step);
    }
    assert!(stale_round.unwrap().is_none(), "a job of another round claims nothing");
    // Claimed twice in one batch it is claimed once; in two, the second counts attempt 2.
    if let Some(again) = twice.unwrap() {
        assert_eq!(again.attempt, 2);
    }
    let claimed_in = transactions(&db.store, "tool_invocations", &ids).await;
    assert!(claimed_in < 40, "40 claims in {claimed_in} transactions");
    // A call that does not run gives its attempt back, and is not started at no attempt.
    db.store.release_attempt(invocations[2]).await.unwrap();
    let (attempt, started): (i32, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT attempt, started_at FROM tool_invocations WHERE id = $1")
            .bind(invocations[2])
            .fetch_one(db.store.pool())
            .await
            .unwrap();
    assert_eq!((attempt, started), (0, None));

    // Every call's result at once, both calls of a run in one batch, one result twice: each
    // run's next step is enqueued exactly once, by its last result; the duplicate applies once.
    let mut results: Vec<InvocationId> = calls.iter().flatten().map(|c| c.invocation_id).collect();
    results.push(calls[0][0].invocation_id);
    let ended = futures::future::join_all(
        results.iter().map(|inv| db.store.tool_result(*inv, "r", false, None, 1, None)),
    )
    .await;
    let ended: Vec<_> = ended.into_iter().map(Result::unwrap).collect();
    assert_eq!(ended.iter().filter(|t| t.applied).count(), 40, "the duplicate applies once");
    let mut next: Vec<(RunId, u32)> = ended.iter().flat_map(|t| agent_steps(&t.outbox)).collect();
    next.sort();
    let mut expected: Vec<(RunId, u32)> = ids.iter().map(|id| (*id, 1)).collect();
    expected.sort();
    assert_eq!(next, expected, "each run's next step once");
    assert_eq!(ended.iter().filter(|t| t.next_step).count(), 20);
    let ended_in = message_transactions(&db.store, "tool", &ids).await;
    assert!(ended_in < 20, "40 results in {ended_in} transactions");
    let tool_messages: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE role = 'tool'")
            .fetch_one(db.store.pool())
            .await
            .unwrap();
    assert_eq!(tool_messages, 40);

    // A late or duplicate job of a call that ended claims nothing, alone or in a batch: the
    // call does not run again.
    let late =
        futures::future::join_all(invocations.iter().map(|i| db.store.claim_call(*i, 0))).await;
    assert!(late.into_iter().all(|c| c.unwrap().is_none()), "an ended call is not claimed");
    assert!(db.store.claim_call(invocations[0], 0).await.unwrap().is_none());
}

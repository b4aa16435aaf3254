//! Workflows: an organization's definitions (versioned) and the built-in templates, and every
//! transition of an execution. Each transition holds the execution's row lock: the engine
//! ([`agentyard_workflows::engine`], pure) decides, and the runs it starts or cancels, the new
//! state and the jobs to publish commit together.
//!
//! Who does what: the API starts (the execution is stored and an advance job published),
//! answers approvals, retries (each publishes an advance job) and cancels (at once, its runs
//! with it); the orchestrator advances on those jobs, on the end of every run a step started
//! (the run's end writes the job, migrations/0004_workflows.sql) and on timers.

use std::collections::HashMap;
use std::sync::Arc;

use agentyard_core::events::WorkflowEvent;
use agentyard_core::jobs::{Job, WorkflowAdvance};
use agentyard_core::outbox::Fact;
use agentyard_core::storable::check_json;
use agentyard_core::tools::server_of;
use agentyard_core::{AgentId, ExecutionId, OrgId, RunId, UserId};
use agentyard_store::workflows::{
    ExecTx, ExecutionFilter, ExecutionRow, InsertOutcome, NewAgentRun, NewExecution, NewToolRun,
    StepRun, WorkflowVersion,
};
use agentyard_workflows::Workflow;
use agentyard_workflows::def::{Known, OnLimit, OutputFormat, StepKind};
use agentyard_workflows::engine::{
    self, AgentRef, AnswerError, Effect, ExecState, ExecStatus, Launch, SkipReason, StepError,
    StepStatus,
};
use agentyard_workflows::expr::{Scope as ExprScope, Template};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::runs::{cursor, page};
use crate::{Entity, Error, Page, Principal, Result, Services, page_limit};

/// The largest inputs (as JSON) an execution takes.
const MAX_INPUTS_BYTES: usize = 64 * 1024;
/// How many times one advance may go back to the engine after a step could not start.
const MAX_ROUNDS: usize = 64;

/// What the platform's configuration lets definitions name.
pub fn known(catalog: &agentyard_agents::Catalog) -> Known {
    Known {
        agent_types: catalog.agent_types().keys().cloned().collect(),
        capabilities: catalog
            .agent_types()
            .values()
            .flat_map(|t| t.capabilities.iter().cloned())
            .collect(),
        event_types: agentyard_core::events::EventKind::ALL
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect(),
    }
}

/// Where a definition comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = WorkflowSource)]
pub enum Source {
    /// The organization's own (`POST /v1/workflows`).
    Org,
    /// A built-in template (`config/workflows/`).
    Template,
}

/// One version of a definition.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct VersionInfo {
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<UserId>,
}

/// A definition as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowView {
    pub id: String,
    pub source: Source,
    /// The organization's version (0 for a template).
    pub version: i32,
    pub name: Option<String>,
    pub description: Option<String>,
    /// The definition itself (`schemas/workflow.v1.json`).
    #[schema(value_type = Object)]
    pub definition: Value,
    pub created_at: Option<DateTime<Utc>>,
    /// Every version, newest first (`GET /v1/workflows/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<VersionInfo>>,
}

/// A step of an execution.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct StepView {
    pub id: String,
    pub name: Option<String>,
    /// `agent`, `tool`, `approval` or `wait`.
    pub kind: String,
    pub depends_on: Vec<String>,
    pub status: StepStatus,
    /// Attempts started.
    pub attempt: u32,
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// The last attempt's error.
    pub error: Option<StepError>,
    pub skip_reason: Option<SkipReason>,
    /// The run of the current or last attempt (an agent step's run, or a tool step's run of
    /// one call: `GET /v1/runs/{id}` and its tool invocations).
    pub run_id: Option<RunId>,
    /// What an approval step asks; answer with `POST /v1/workflows/executions/{id}/input`.
    #[schema(value_type = Option<Object>)]
    pub request: Option<Value>,
    /// When the step next acts by itself (a wait's end, a timeout, a retry).
    pub wake_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// An execution as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionView {
    pub id: ExecutionId,
    pub workflow_id: String,
    /// The definition version it runs (0: a template); editing the definition never changes it.
    pub version: i32,
    pub status: ExecStatus,
    #[schema(value_type = Object)]
    pub inputs: Value,
    /// The outputs of the steps nothing depends on, by step id (completed executions).
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// Why it failed: `{step, code, message}`.
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// What started it: `{kind: api | template | cron | event | webhook, ...}`.
    #[schema(value_type = Object)]
    pub trigger: Value,
    pub concurrency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub steps: Vec<StepView>,
}

/// Body of `POST /v1/workflows/{id}/executions`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Checked against the definition's `inputs` schema.
    #[schema(value_type = Option<Object>)]
    pub inputs: Option<Value>,
    /// A version of the organization's definition (the newest when absent).
    pub version: Option<i32>,
}

/// What an approval's answer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalAction {
    Approve,
    Deny,
}

/// Body of `POST /v1/workflows/executions/{id}/input`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// The approval step; optional when only one waits.
    pub step_id: Option<String>,
    pub action: ApprovalAction,
    pub comment: Option<String>,
}

/// Which executions to list.
#[derive(Clone, Debug, Default)]
pub struct ExecutionQuery {
    pub status: Option<String>,
    pub workflow_id: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// Which definition a start names.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// The organization's definition of that id, else the template.
    Any(&'a str),
    /// The template only.
    Template(&'a str),
}

fn internal(m: impl Into<String>) -> Error {
    Error::Internal(m.into().into())
}

fn view_of_template(wf: &Workflow) -> WorkflowView {
    WorkflowView {
        id: wf.def.id.clone(),
        source: Source::Template,
        version: 0,
        name: wf.def.name.clone(),
        description: wf.def.description.clone(),
        definition: serde_json::to_value(&wf.def).unwrap_or(Value::Null),
        created_at: None,
        versions: None,
    }
}

fn view_of_version(v: &WorkflowVersion) -> WorkflowView {
    let text = |k: &str| v.definition.get(k).and_then(Value::as_str).map(str::to_owned);
    WorkflowView {
        id: v.id.clone(),
        source: Source::Org,
        version: v.version,
        name: text("name"),
        description: text("description"),
        definition: v.definition.clone(),
        created_at: Some(v.created_at),
        versions: None,
    }
}

/// Parsed definitions by their JSON text: every advance of an execution reads its pinned
/// definition, and parsing it (CEL included) costs more than the rest of the decision.
/// Definitions are immutable, so the text is the whole key; bounded by clearing when full.
static PARSED: std::sync::LazyLock<std::sync::Mutex<HashMap<String, Arc<Workflow>>>> =
    std::sync::LazyLock::new(Default::default);
const PARSED_MAX: usize = 512;

/// A stored definition, checked again (what the platform knows may have changed, but a stored
/// definition runs as it was accepted).
pub(crate) fn workflow_of(definition: &Value) -> Result<Arc<Workflow>> {
    let key = definition.to_string();
    if let Some(wf) = PARSED.lock().expect("cache poisoned").get(&key) {
        return Ok(wf.clone());
    }
    let wf = agentyard_workflows::def::from_value(definition.clone(), &Known::default())
        .map_err(|e| internal(format!("a stored definition no longer parses: {}", e[0])))?;
    let wf = Arc::new(wf);
    let mut cache = PARSED.lock().expect("cache poisoned");
    if cache.len() >= PARSED_MAX {
        cache.clear();
    }
    cache.insert(key, wf.clone());
    Ok(wf)
}

fn state_of(row: &ExecutionRow) -> Result<ExecState> {
    serde_json::from_value(row.state.clone())
        .map_err(|e| internal(format!("execution {} has an unreadable state: {e}", row.id)))
}

fn status_of(s: &str) -> ExecStatus {
    match s {
        "queued" => ExecStatus::Queued,
        "running" => ExecStatus::Running,
        "completed" => ExecStatus::Completed,
        "failed" => ExecStatus::Failed,
        _ => ExecStatus::Cancelled,
    }
}

/// The execution as the API shows it.
///
/// # Errors
/// A stored definition or state that cannot be read (a bug).
pub fn view(row: &ExecutionRow) -> Result<ExecutionView> {
    let wf = workflow_of(&row.definition)?;
    let state = state_of(row)?;
    let steps = wf
        .def
        .steps
        .iter()
        .map(|s| step_view(s, state.steps.get(&s.id).cloned().unwrap_or_default()))
        .collect();
    Ok(ExecutionView {
        id: row.id,
        workflow_id: row.workflow_id.clone(),
        version: row.version,
        status: status_of(&row.status),
        inputs: row.inputs.clone(),
        output: row.output.clone(),
        error: row.error.clone(),
        trigger: row.trigger.clone(),
        concurrency_key: row.concurrency_key.clone(),
        created_at: row.created_at,
        started_at: row.started_at,
        completed_at: row.completed_at,
        steps,
    })
}

fn step_view(s: &agentyard_workflows::def::Step, st: engine::StepState) -> StepView {
    StepView {
        id: s.id.clone(),
        name: s.name.clone(),
        kind: s.kind().as_str().to_owned(),
        depends_on: s.depends_on.clone(),
        status: st.status,
        attempt: st.attempt,
        output: st.output,
        error: st.error,
        skip_reason: st.skip_reason,
        run_id: st.run_id,
        request: st.request,
        wake_at: st.wake_at,
        started_at: st.started_at,
        completed_at: st.completed_at,
    }
}

/// The events of a transition from `before` to `after`: one per step whose status or attempt
/// changed, then one when the execution's status changed.
fn events(row: &ExecutionRow, wf: &Workflow, before: &ExecState, after: &ExecState) -> Vec<Fact> {
    let fact = |kind: String, data: Value| Fact::WorkflowEvent {
        org: row.org_id,
        execution: row.id,
        key: uuid::Uuid::now_v7().to_string(),
        event: WorkflowEvent { kind, data },
    };
    let mut out = Vec::new();
    for s in &wf.def.steps {
        let (Some(a), b) = (after.steps.get(&s.id), before.steps.get(&s.id)) else { continue };
        if b.is_some_and(|b| b.status == a.status && b.attempt == a.attempt) {
            continue;
        }
        let view = step_view(s, a.clone());
        out.push(fact(
            format!("workflow.step.{}", a.status.as_str()),
            json!({"execution_id": row.id, "step": view}),
        ));
    }
    if before.status != after.status {
        let data = execution_data(row.id, &row.workflow_id, row.version, after);
        out.push(fact(format!("workflow.execution.{}", after.status.as_str()), data));
    }
    out
}

/// What `workflow.execution.*` events carry.
fn execution_data(id: ExecutionId, workflow: &str, version: i32, state: &ExecState) -> Value {
    let error = state
        .failure
        .as_ref()
        .map(|(step, e)| json!({"step": step, "code": e.code, "message": e.message}));
    json!({"execution_id": id, "workflow_id": workflow, "version": version,
           "status": state.status, "output": state.output, "error": error})
}

fn advance_fact(id: ExecutionId, cause: impl Into<String>) -> Fact {
    Fact::Job { job: Job::WorkflowAdvance(WorkflowAdvance::new(id, cause)) }
}

impl Services {
    /// The built-in templates.
    pub fn list_templates(&self) -> Vec<WorkflowView> {
        self.templates.all().map(view_of_template).collect()
    }

    /// Adds a definition (a new version when the id exists).
    ///
    /// # Errors
    /// `invalid_workflow` naming every problem's path.
    pub async fn create_workflow(&self, who: &Principal, body: Value) -> Result<WorkflowView> {
        let wf = agentyard_workflows::def::from_value(body, &known(&self.catalog))
            .map_err(|fields| Error::fields("invalid_workflow", fields))?;
        let definition = serde_json::to_value(&wf.def).map_err(|e| internal(e.to_string()))?;
        check_json("definition", &definition)
            .map_err(|e| Error::invalid("invalid_workflow", e.to_string()))?;
        let v = self
            .store
            .create_workflow_version(who.org_id, &wf.def.id, &definition, who.user_id, &who.scopes)
            .await?;
        Ok(view_of_version(&v))
    }

    /// The organization's definitions (newest version of each).
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_workflows(&self, who: &Principal) -> Result<Vec<WorkflowView>> {
        Ok(self.store.list_workflows(who.org_id).await?.iter().map(view_of_version).collect())
    }

    /// A definition with its versions: the organization's, else the template.
    ///
    /// # Errors
    /// `workflow_not_found`.
    pub async fn get_workflow(&self, who: &Principal, id: &str) -> Result<WorkflowView> {
        let versions = self.store.workflow_versions(who.org_id, id).await?;
        if let Some(newest) = versions.first() {
            let mut v = view_of_version(newest);
            v.versions = Some(
                versions
                    .iter()
                    .map(|x| VersionInfo {
                        version: x.version,
                        created_at: x.created_at,
                        created_by: x.created_by,
                    })
                    .collect(),
            );
            return Ok(v);
        }
        let t = self.templates.get(id).ok_or(Error::NotFound(Entity::Workflow))?;
        let mut v = view_of_template(t);
        v.versions = Some(Vec::new());
        Ok(v)
    }

    /// Starts an execution. `idempotency` is the key and the SHA-256 of the request.
    ///
    /// # Errors
    /// `workflow_not_found`, `invalid_inputs`, `concurrency_limit`, `idempotency_key_reused`.
    pub async fn start_execution(
        &self,
        who: &Principal,
        target: Target<'_>,
        req: StartRequest,
        idempotency: Option<(String, Vec<u8>)>,
        trigger: Value,
    ) -> Result<ExecutionView> {
        let (workflow_id, version, definition) = match target {
            Target::Any(id) => {
                let versions = self.store.workflow_versions(who.org_id, id).await?;
                match (req.version, versions.is_empty()) {
                    (Some(v), _) => {
                        let found = versions.iter().find(|x| x.version == v).ok_or_else(|| {
                            Error::invalid(
                                "version_not_found",
                                format!("workflow {id:?} has no version {v}"),
                            )
                        })?;
                        (id.to_owned(), found.version, found.definition.clone())
                    }
                    (None, false) => {
                        (id.to_owned(), versions[0].version, versions[0].definition.clone())
                    }
                    (None, true) => {
                        let t = self.templates.get(id).ok_or(Error::NotFound(Entity::Workflow))?;
                        (id.to_owned(), 0, serde_json::to_value(&t.def).unwrap_or(Value::Null))
                    }
                }
            }
            Target::Template(id) => {
                let t = self.templates.get(id).ok_or(Error::NotFound(Entity::Workflow))?;
                (id.to_owned(), 0, serde_json::to_value(&t.def).unwrap_or(Value::Null))
            }
        };
        let wf = workflow_of(&definition)?;
        let inputs = req.inputs.unwrap_or_else(|| json!({}));
        check_inputs(&wf, &inputs)?;
        self.start_checked(
            who.org_id,
            who.user_id,
            who.scopes.clone(),
            &wf,
            WorkflowRef { id: workflow_id, version, definition },
            inputs,
            idempotency,
            trigger,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start_checked(
        &self,
        org: OrgId,
        user: Option<UserId>,
        scopes: Vec<agentyard_core::Scope>,
        wf: &Workflow,
        wref: WorkflowRef,
        inputs: Value,
        idempotency: Option<(String, Vec<u8>)>,
        trigger: Value,
    ) -> Result<ExecutionView> {
        if let Some((key, hash)) = &idempotency {
            crate::runs::check_idempotency_key(key)?;
            if let Some((id, seen)) = self.store.idempotent_execution(org, key).await? {
                if &seen != hash {
                    return Err(crate::runs::key_reused());
                }
                let row =
                    self.store.get_execution(org, id).await?.ok_or_else(|| internal("gone"))?;
                return view(&row);
            }
        }
        let key = match &wf.def.concurrency {
            None => None,
            Some(c) => Some(match &c.key {
                None => String::new(),
                Some(k) => {
                    let scope = ExprScope { inputs: inputs.clone(), ..Default::default() };
                    Template::compile(k).and_then(|t| t.render_text(&scope)).map_err(|m| {
                        Error::invalid("invalid_inputs", format!("concurrency.key: {m}"))
                    })?
                }
            }),
        };
        let id = ExecutionId::new();
        let mut tx = self.store.begin_workflow().await?;
        let mut status = ExecStatus::Running;
        let mut cancelled = Vec::new();
        if let (Some(c), Some(k)) = (&wf.def.concurrency, &key) {
            tx.lock_key(org, &wref.id, k).await?;
            let live = tx.live_of_key(org, &wref.id, k).await?;
            let limit = usize::try_from(c.limit).unwrap_or(usize::MAX);
            if live.len() >= limit {
                match c.on_limit {
                    OnLimit::Reject => {
                        return Err(Error::conflict(
                            "concurrency_limit",
                            format!(
                                "{} executions of {:?} with key {k:?} are live; the limit is {}",
                                live.len(),
                                wref.id,
                                c.limit
                            ),
                        ));
                    }
                    OnLimit::Queue => status = ExecStatus::Queued,
                    OnLimit::CancelInProgress => {
                        for (old, _) in live.iter().take(live.len() + 1 - limit) {
                            cancelled.extend(cancel_locked(&mut tx, *old).await?);
                        }
                    }
                }
            }
        }
        let state = ExecState::new(wf, status);
        let new = NewExecution {
            id,
            org,
            workflow_id: wref.id,
            version: wref.version,
            definition: wref.definition,
            inputs,
            status: status.as_str(),
            state: serde_json::to_value(&state).map_err(|e| internal(e.to_string()))?,
            trigger,
            user,
            scopes,
            concurrency_key: key,
            idempotency,
        };
        match tx.insert_execution(&new).await? {
            InsertOutcome::Created => {}
            InsertOutcome::Idempotent(prev) => {
                drop(tx);
                let row =
                    self.store.get_execution(org, prev).await?.ok_or_else(|| internal("gone"))?;
                return view(&row);
            }
            InsertOutcome::Mismatch => return Err(crate::runs::key_reused()),
        }
        let data = execution_data(id, &new.workflow_id, new.version, &state);
        let mut facts = vec![Fact::WorkflowEvent {
            org,
            execution: id,
            key: "created".to_owned(),
            event: WorkflowEvent { kind: format!("workflow.execution.{}", status.as_str()), data },
        }];
        if status == ExecStatus::Running {
            facts.push(advance_fact(id, "start"));
        }
        tx.publish(facts).await?;
        let rows = tx.commit().await?;
        self.dispatch(&rows).await;
        for run in cancelled {
            self.signal_cancel(run).await;
        }
        let row = self.store.get_execution(org, id).await?.ok_or_else(|| internal("gone"))?;
        view(&row)
    }

    /// An execution of the caller's organization.
    ///
    /// # Errors
    /// `execution_not_found`.
    pub async fn get_execution(&self, who: &Principal, id: ExecutionId) -> Result<ExecutionView> {
        let row = self
            .store
            .get_execution(who.org_id, id)
            .await?
            .filter(|r| who.sees(r.user_id))
            .ok_or(Error::NotFound(Entity::Execution))?;
        view(&row)
    }

    /// The organization's executions, newest first.
    ///
    /// # Errors
    /// `invalid_query`, `invalid_cursor`.
    pub async fn list_executions(
        &self,
        who: &Principal,
        q: ExecutionQuery,
    ) -> Result<Page<ExecutionView>> {
        let limit = page_limit(q.limit, 20, 100)?;
        if let Some(s) = &q.status
            && !["queued", "running", "completed", "failed", "cancelled"].contains(&s.as_str())
        {
            return Err(Error::invalid(
                "invalid_query",
                "status must be queued, running, completed, failed or cancelled",
            ));
        }
        let before = cursor::<ExecutionId>(q.cursor.as_deref())?;
        let filter =
            ExecutionFilter { status: q.status, workflow_id: q.workflow_id, user: who.owner() };
        let rows = self.store.list_executions(who.org_id, &filter, before, limit + 1).await?;
        let mut data = rows.iter().map(view).collect::<Result<Vec<_>>>()?;
        Ok(page(&mut data, limit, |e| e.id.to_string()))
    }

    /// Cancels an execution: its running steps' runs are cancelled with it, and nothing turns
    /// completed afterwards.
    ///
    /// # Errors
    /// `execution_not_found`, `execution_already_terminal`.
    pub async fn cancel_execution(
        &self,
        who: &Principal,
        id: ExecutionId,
    ) -> Result<ExecutionView> {
        let mut tx = self.store.begin_workflow().await?;
        let row = tx
            .lock_execution(id, Some(who.org_id))
            .await?
            .filter(|r| who.sees(r.user_id))
            .ok_or(Error::NotFound(Entity::Execution))?;
        if status_of(&row.status).is_terminal() {
            return Err(Error::conflict(
                "execution_already_terminal",
                format!("the execution is already {}", row.status),
            ));
        }
        let runs = cancel_locked(&mut tx, id).await?;
        let rows = tx.commit().await?;
        self.dispatch(&rows).await;
        for run in runs {
            self.signal_cancel(run).await;
        }
        self.get_execution(who, id).await
    }

    /// Runs a failed execution's failed steps again (and those not run because of the
    /// failure), keeping completed outputs.
    ///
    /// # Errors
    /// `execution_not_found`, `execution_not_failed`.
    pub async fn retry_execution(&self, who: &Principal, id: ExecutionId) -> Result<ExecutionView> {
        let mut tx = self.store.begin_workflow().await?;
        let row = tx
            .lock_execution(id, Some(who.org_id))
            .await?
            .filter(|r| who.sees(r.user_id))
            .ok_or(Error::NotFound(Entity::Execution))?;
        let wf = workflow_of(&row.definition)?;
        let mut state = state_of(&row)?;
        engine::retry(&wf, &mut state).map_err(|s| {
            Error::conflict(
                "execution_not_failed",
                format!("only a failed execution is retried; this one is {}", s.as_str()),
            )
        })?;
        save(&mut tx, &row, &wf, &state).await?;
        tx.publish(vec![advance_fact(id, format!("retry:{}", uuid::Uuid::now_v7()))]).await?;
        let rows = tx.commit().await?;
        self.dispatch(&rows).await;
        self.get_execution(who, id).await
    }

    /// Answers an approval step.
    ///
    /// # Errors
    /// `execution_not_found`, `unknown_step`, `step_not_waiting`.
    pub async fn answer_execution(
        &self,
        who: &Principal,
        id: ExecutionId,
        req: AnswerRequest,
    ) -> Result<ExecutionView> {
        if let Some(c) = &req.comment {
            check_json("comment", &Value::String(c.clone()))
                .map_err(|e| Error::invalid("invalid_comment", e.to_string()))?;
        }
        let mut tx = self.store.begin_workflow().await?;
        let row = tx
            .lock_execution(id, Some(who.org_id))
            .await?
            .filter(|r| who.sees(r.user_id))
            .ok_or(Error::NotFound(Entity::Execution))?;
        let wf = workflow_of(&row.definition)?;
        let mut state = state_of(&row)?;
        let by =
            who.user_id.map(|u| u.to_string()).or_else(|| Some(format!("token {}", who.token_id)));
        let approve = req.action == ApprovalAction::Approve;
        let step = engine::answer(
            &wf,
            &mut state,
            req.step_id.as_deref(),
            approve,
            by,
            req.comment,
            Utc::now(),
        )
        .map_err(|e| match e {
            AnswerError::UnknownStep(_) => Error::invalid("unknown_step", e.to_string()),
            AnswerError::NotWaiting(_) | AnswerError::NothingWaits => {
                Error::conflict("step_not_waiting", e.to_string())
            }
        })?;
        save(&mut tx, &row, &wf, &state).await?;
        let attempt = state.steps.get(&step).map_or(0, |s| s.attempt);
        tx.publish(vec![advance_fact(id, format!("answer:{step}:{attempt}"))]).await?;
        let rows = tx.commit().await?;
        self.dispatch(&rows).await;
        self.get_execution(who, id).await
    }

    /// Advances an execution: records the runs of its steps that ended, starts what is ready,
    /// acts on due timers and ends it when nothing is left. Idempotent: advancing twice in a
    /// row changes nothing the second time.
    ///
    /// # Errors
    /// Database failures (transient ones are worth a retry).
    pub async fn advance_execution(&self, id: ExecutionId) -> Result<()> {
        let mut tx = self.store.begin_workflow().await?;
        let Some(row) = tx.lock_execution(id, None).await? else {
            return Ok(());
        };
        if row.status != "running" {
            return Ok(());
        }
        let wf = workflow_of(&row.definition)?;
        let mut state = state_of(&row)?;
        let now = Utc::now();
        // Runs that ended.
        let live: Vec<(String, RunId)> = state
            .steps
            .iter()
            .filter(|(_, s)| s.status == StepStatus::Running)
            .filter_map(|(id, s)| s.run_id.map(|r| (id.clone(), r)))
            .collect();
        let ids: Vec<RunId> = live.iter().map(|(_, r)| *r).collect();
        let runs = tx.step_runs(&ids).await?;
        for (step, run) in &live {
            let Some(r) = runs.iter().find(|x| x.id == *run) else { continue };
            let Some(result) = run_result(&wf, step, r) else { continue };
            engine::attempt_ended(&wf, &mut state, step, *run, result, now);
        }
        let mut effects = engine::advance(&wf, &row.inputs, &mut state, now);
        let mut cancelled = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let mut again = false;
            for e in std::mem::take(&mut effects) {
                match e {
                    Effect::Cancel { run_id, .. } => {
                        tx.cancel_run(row.org_id, run_id).await?;
                        cancelled.push(run_id);
                    }
                    Effect::Start { step, attempt, launch } => {
                        match self.start_step(&mut tx, &row, &step, attempt, launch).await? {
                            Ok(run) => {
                                if let Some(s) = state.steps.get_mut(&step) {
                                    s.run_id = Some(run);
                                }
                            }
                            Err(err) => {
                                engine::start_failed(&wf, &mut state, &step, err, now);
                                again = true;
                            }
                        }
                    }
                }
            }
            if !again {
                break;
            }
            effects = engine::advance(&wf, &row.inputs, &mut state, now);
        }
        save(&mut tx, &row, &wf, &state).await?;
        if state.status.is_terminal() {
            promote_queued(&mut tx, &row).await?;
        }
        let rows = tx.commit().await?;
        self.dispatch(&rows).await;
        for run in cancelled {
            self.signal_cancel(run).await;
        }
        Ok(())
    }

    /// Starts one attempt of a step: `Ok(Ok(run))`, or `Ok(Err(why))` when it cannot start.
    async fn start_step(
        &self,
        tx: &mut ExecTx,
        row: &ExecutionRow,
        step: &str,
        attempt: u32,
        launch: Launch,
    ) -> Result<std::result::Result<RunId, StepError>> {
        let run = RunId::new();
        let metadata = json!({"workflow": {
            "execution_id": row.id, "workflow_id": row.workflow_id, "step_id": step, "attempt": attempt
        }});
        match launch {
            Launch::Agent { agent, input } => {
                let agent_id = match self.agent_for(tx, row.org_id, &agent).await? {
                    Ok(a) => a,
                    Err(e) => return Ok(Err(e)),
                };
                let input = if input.trim().is_empty() { format!("(step {step})") } else { input };
                let created = tx
                    .create_agent_run(&NewAgentRun {
                        run,
                        org: row.org_id,
                        agent: agent_id,
                        user: row.user_id,
                        input: &input,
                        metadata,
                        scopes: &row.scopes,
                        execution: row.id,
                        step,
                        attempt,
                    })
                    .await?;
                if created.is_none() {
                    return Ok(Err(StepError::new(
                        engine::codes::AGENT_NOT_FOUND,
                        "the step's agent was deleted or deactivated",
                    )));
                }
            }
            Launch::Tool { name, arguments } => {
                tx.create_tool_run(&NewToolRun {
                    run,
                    org: row.org_id,
                    user: row.user_id,
                    scopes: &row.scopes,
                    server: server_of(&name),
                    tool: &name,
                    arguments: &arguments,
                    metadata,
                    execution: row.id,
                    step,
                    attempt,
                })
                .await?;
            }
        }
        Ok(Ok(run))
    }

    /// The organization's agent for an agent step: of that type, or the first active one with
    /// that capability (provisioned from its type when the organization has none). Read in the
    /// transition's own transaction.
    async fn agent_for(
        &self,
        tx: &mut ExecTx,
        org: OrgId,
        agent: &AgentRef,
    ) -> Result<std::result::Result<AgentId, StepError>> {
        let not_found = |m: String| Ok(Err(StepError::new(engine::codes::AGENT_NOT_FOUND, m)));
        let ty = match agent {
            AgentRef::Type(t) => t.clone(),
            AgentRef::Capability(c) => {
                let agents = tx.org_agents(org).await?;
                let has = |row: &agentyard_store::agents::AgentRow| {
                    self.catalog
                        .effective(&row.agent_type, &row.name, &row.config)
                        .capabilities
                        .iter()
                        .any(|x| x == c)
                };
                if let Some(a) = agents.iter().find(|r| r.is_active && has(r)) {
                    return Ok(Ok(a.id));
                }
                match self.catalog.type_with_capability(c) {
                    Some(t) => t.to_owned(),
                    None => return not_found(format!("no agent type has the capability {c:?}")),
                }
            }
        };
        let Some(config) = self.catalog.agent_type(&ty) else {
            return not_found(format!("no agent type {ty:?}"));
        };
        let (id, active) = tx.agent_of_type(org, &ty, &config.name).await?;
        if !active {
            return not_found(format!("the organization's {ty} agent is deactivated"));
        }
        Ok(Ok(id))
    }

    /// Fails an execution the orchestrator could not advance (`code`, `reason`): its running
    /// steps are cancelled, so nothing waits for it forever.
    ///
    /// # Errors
    /// Database failures.
    pub async fn fail_execution(&self, id: ExecutionId, code: &str, reason: &str) -> Result<()> {
        let mut tx = self.store.begin_workflow().await?;
        let Some(row) = tx.lock_execution(id, None).await? else { return Ok(()) };
        let Ok(mut state) = state_of(&row) else {
            let error = json!({"step": null, "code": code, "message": reason});
            tx.save_execution(id, "failed", &row.state, None, Some(&error), None).await?;
            let rows = tx.commit().await?;
            self.dispatch(&rows).await;
            return Ok(());
        };
        if state.status.is_terminal() {
            return Ok(());
        }
        let wf = workflow_of(&row.definition)?;
        let runs = cancel_runs(&mut tx, row.org_id, engine::cancel(&mut state, Utc::now())).await?;
        state.status = ExecStatus::Failed;
        state.failure = Some(("(orchestrator)".to_owned(), StepError::new(code, reason)));
        save(&mut tx, &row, &wf, &state).await?;
        promote_queued(&mut tx, &row).await?;
        let rows = tx.commit().await?;
        self.dispatch(&rows).await;
        for run in runs {
            self.signal_cancel(run).await;
        }
        Ok(())
    }

    /// A bus event a step of execution `id` waits for arrived: when the step still waits and
    /// its `where` holds, it completes with the event and the execution advances. Returns
    /// whether it did.
    ///
    /// # Errors
    /// Database failures.
    pub async fn deliver_event(&self, id: ExecutionId, step: &str, event: &Value) -> Result<bool> {
        let mut tx = self.store.begin_workflow().await?;
        let Some(row) = tx.lock_execution(id, None).await? else { return Ok(false) };
        let wf = workflow_of(&row.definition)?;
        let mut state = state_of(&row)?;
        let Some(condition) = wf.step(step).and_then(|s| s.wait.as_ref()) else {
            return Ok(false);
        };
        if let Some(c) = &condition.condition {
            let mut scope = state.scope(&row.inputs);
            scope.event = Some(event.clone());
            match agentyard_workflows::expr::Expr::compile(c).and_then(|e| e.eval_bool(&scope)) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(m) => {
                    tracing::debug!(execution_id = %id, step, error = m, "event wait condition failed");
                    return Ok(false);
                }
            }
        }
        if !engine::event_arrived(&mut state, step, event.clone(), Utc::now()) {
            return Ok(false);
        }
        save(&mut tx, &row, &wf, &state).await?;
        tx.publish(vec![advance_fact(id, format!("event:{step}:{}", uuid::Uuid::now_v7()))])
            .await?;
        let rows = tx.commit().await?;
        self.dispatch(&rows).await;
        Ok(true)
    }

    /// Advances every running execution whose timer is due; returns how many.
    ///
    /// # Errors
    /// Database failures.
    pub async fn wake_due_executions(&self, limit: i64) -> Result<usize> {
        let due = self.store.due_executions(limit).await?;
        for id in &due {
            self.advance_execution(*id).await?;
        }
        Ok(due.len())
    }
}

pub(crate) struct WorkflowRef {
    pub(crate) id: String,
    pub(crate) version: i32,
    pub(crate) definition: Value,
}

pub(crate) fn check_inputs(wf: &Workflow, inputs: &Value) -> Result<()> {
    if inputs.to_string().len() > MAX_INPUTS_BYTES {
        return Err(Error::TooLarge(format!(
            "inputs must be at most {MAX_INPUTS_BYTES} bytes of JSON"
        )));
    }
    check_json("inputs", inputs).map_err(|e| Error::invalid("invalid_inputs", e.to_string()))?;
    match &wf.inputs_schema {
        Some(schema) => schema.check(inputs).map_err(|m| Error::invalid("invalid_inputs", m)),
        None if inputs.is_object() => Ok(()),
        None => Err(Error::invalid("invalid_inputs", "inputs must be a JSON object")),
    }
}

/// How a step's run ended, as the step's result; None while it runs.
fn run_result(
    wf: &Workflow,
    step: &str,
    r: &StepRun,
) -> Option<std::result::Result<Value, StepError>> {
    let def = wf.step(step)?;
    let error = |default: &str| {
        let code = r.error.as_ref().and_then(|e| e.get("code")).and_then(Value::as_str);
        let message = r.error.as_ref().and_then(|e| e.get("message")).and_then(Value::as_str);
        StepError::new(code.unwrap_or(default), message.unwrap_or("the step's run failed"))
    };
    match r.status.as_str() {
        "completed" => {
            let content = r
                .output
                .as_ref()
                .and_then(|o| o.get("content"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            Some(match def.kind() {
                StepKind::Tool => Ok(engine::tool_output(content)),
                _ => {
                    let format = def.agent.as_ref().map_or(OutputFormat::Text, |a| a.output);
                    engine::agent_output(format, content)
                }
            })
        }
        "failed" => Some(Err(error(engine::codes::TOOL_ERROR))),
        "expired" => Some(Err(error("run_expired"))),
        "cancelled" => {
            Some(Err(StepError::new(engine::codes::CANCELLED, "the step's run was cancelled")))
        }
        _ => None,
    }
}

async fn save(tx: &mut ExecTx, row: &ExecutionRow, wf: &Workflow, state: &ExecState) -> Result<()> {
    let error = state
        .failure
        .as_ref()
        .map(|(step, e)| json!({"step": step, "code": e.code, "message": e.message}));
    let doc = serde_json::to_value(state).map_err(|e| internal(e.to_string()))?;
    tx.save_execution(
        row.id,
        state.status.as_str(),
        &doc,
        state.output.as_ref(),
        error.as_ref(),
        state.next_wake(),
    )
    .await?;
    let before = state_of(row)?;
    if wf.def.steps.iter().any(|s| s.wait.as_ref().is_some_and(|w| w.event.is_some())) {
        tx.sync_event_waits(row.id, row.org_id, &engine::event_waits(wf, state)).await?;
    }
    tx.publish(events(row, wf, &before, state)).await?;
    Ok(())
}

/// Cancels execution `id` (locked here); returns the runs it cancelled.
async fn cancel_locked(tx: &mut ExecTx, id: ExecutionId) -> Result<Vec<RunId>> {
    let Some(row) = tx.lock_execution(id, None).await? else { return Ok(Vec::new()) };
    let wf = workflow_of(&row.definition)?;
    let mut state = state_of(&row)?;
    let runs = cancel_runs(tx, row.org_id, engine::cancel(&mut state, Utc::now())).await?;
    save(tx, &row, &wf, &state).await?;
    promote_queued(tx, &row).await?;
    Ok(runs)
}

/// Cancels the runs `effects` (an engine's cancel) name; returns them, to signal their workers
/// after commit.
async fn cancel_runs(tx: &mut ExecTx, org: OrgId, effects: Vec<Effect>) -> Result<Vec<RunId>> {
    let mut runs = Vec::new();
    for e in effects {
        if let Effect::Cancel { run_id, .. } = e {
            tx.cancel_run(org, run_id).await?;
            runs.push(run_id);
        }
    }
    Ok(runs)
}

/// An execution of a concurrency key ended: the oldest queued one of the key starts.
async fn promote_queued(tx: &mut ExecTx, ended: &ExecutionRow) -> Result<()> {
    let Some(key) = &ended.concurrency_key else { return Ok(()) };
    let live = tx.live_of_key(ended.org_id, &ended.workflow_id, key).await?;
    let Some((next, _)) = live.iter().find(|(_, s)| s == "queued") else { return Ok(()) };
    let running = live.iter().filter(|(_, s)| s == "running").count();
    let wf = workflow_of(&ended.definition)?;
    let limit = wf.def.concurrency.as_ref().map_or(1, |c| c.limit as usize);
    if running >= limit {
        return Ok(());
    }
    let Some(row) = tx.lock_execution(*next, None).await? else { return Ok(()) };
    let mut state = state_of(&row)?;
    state.status = ExecStatus::Running;
    save(tx, &row, &wf, &state).await?;
    tx.publish(vec![advance_fact(row.id, "start")]).await?;
    Ok(())
}

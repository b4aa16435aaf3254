//! Workflow definitions as users write them (YAML templates, JSON through the API), parsed with
//! the path of every problem (`steps[2].depends_on[0]: unknown step "triage"`) and validated
//! as a whole: a definition that passes [`parse`] can be run.

use std::collections::{BTreeMap, BTreeSet};

use agentyard_core::FieldError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::Dur;
use crate::expr::{Expr, Template};
use crate::schedule::Cron;

/// Ids the API's routes use (`/v1/workflows/templates`, ...).
pub const RESERVED_IDS: &[&str] = &["templates", "executions", "start", "hooks"];

/// The most steps one definition may have.
pub const MAX_STEPS: usize = 100;

/// A workflow definition (`schemas/workflow.v1.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// A slug: lowercase letters, digits, `_` and `-`, starting with a letter; at most 64.
    pub id: String,
    /// A human name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema (draft 2020-12) the inputs of every execution are checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Value>,
    /// The steps; `depends_on` orders them, independent steps run in parallel.
    pub steps: Vec<Step>,
    /// At most `limit` executions at once per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Start an execution on a cron schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Start an execution on each bus event that matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<EventTrigger>,
}

/// One step: exactly one of `agent`, `tool`, `approval` or `wait`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A slug, unique in the definition; `steps.<id>.output` refers to its output.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Steps that must end (completed, skipped, or failed with `on_failure: continue`) first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// A CEL condition over `inputs` and `steps`; false skips the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentTask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolTask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Wait>,
    /// Attempts and backoff; one attempt when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// How long one attempt of an agent or tool step may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// What a failure (after the last attempt) does: `fail` (the default), `continue`, or
    /// `{compensate: <step>}`.
    #[serde(default, skip_serializing_if = "OnFailure::is_default")]
    pub on_failure: OnFailure,
}

/// An agent answers `input`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentTask {
    /// An agent type of `config/agents.yaml` (the org's agent of that type answers).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    /// A capability: the org's first active agent that has it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// The message, a template (`{{ inputs.name }}`).
    pub input: String,
    /// `text` (the default) or `json`: the answer must parse as JSON (a step error otherwise).
    #[serde(default, skip_serializing_if = "OutputFormat::is_text")]
    pub output: OutputFormat,
}

/// How an agent step's answer becomes its output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

impl OutputFormat {
    fn is_text(&self) -> bool {
        *self == Self::Text
    }
}

/// A tool call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolTask {
    /// A built-in tool (`add_task`) or an MCP server's (`server__tool`).
    pub name: String,
    /// The arguments; every string in it is a template.
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Waits for a human's answer (`POST /v1/workflows/executions/{id}/input`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// What the human is asked, a template.
    pub message: String,
    /// No answer within this long counts as `on_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// What a timeout means: `deny` (the default: the step fails with `approval_timed_out`)
    /// or `approve`.
    #[serde(default, skip_serializing_if = "TimeoutMeans::is_deny")]
    pub on_timeout: TimeoutMeans,
}

/// What an unanswered approval means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutMeans {
    #[default]
    Deny,
    Approve,
}

impl TimeoutMeans {
    fn is_deny(&self) -> bool {
        *self == Self::Deny
    }
}

/// Waits for a duration, or until a bus event that matches arrives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// How long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Dur>,
    /// An event type of the organization (`run.completed`, ...): the step completes with the
    /// first such event after it started waiting whose `where` holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// A CEL condition over `event`, `inputs` and `steps`.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// An event wait fails with `wait_timed_out` after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
}

/// Attempts of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts in all, the first included (1 to 100).
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles for each later one (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Dur>,
    /// The longest wait between attempts (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<Dur>,
    /// Error codes that are never retried (besides those that never are: see the docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_retryable: Vec<String>,
}

/// What a step's failure does to the execution.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The execution fails; steps not started are not run.
    #[default]
    Fail,
    /// The step stays failed (its output null) and its dependents run.
    Continue,
    /// Run this step (a compensation step: nothing depends on it and it depends on nothing),
    /// then the execution fails.
    Compensate(String),
}

impl OnFailure {
    fn is_default(&self) -> bool {
        *self == Self::Fail
    }
}

/// At most `limit` executions of this workflow at once per key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// A template over `inputs` (`{{ inputs.customer_id }}`); one key for all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// 1 or more.
    pub limit: u32,
    /// What a start beyond the limit does (default `queue`).
    #[serde(default)]
    pub on_limit: OnLimit,
}

/// What a start beyond the concurrency limit does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnLimit {
    /// It waits (status `queued`) and starts when one ends.
    #[default]
    Queue,
    /// The oldest running execution of the key is cancelled.
    CancelInProgress,
    /// The start is refused (409 `concurrency_limit`).
    Reject,
}

/// A cron trigger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Five fields (`min hour day month weekday`) or six with seconds first.
    pub cron: String,
    /// An IANA zone (`Europe/Paris`); UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The inputs of each execution it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Value>,
    /// Ticks missed while no orchestrator ran: `skip` them (the default) or fire `once`.
    #[serde(default)]
    pub catch_up: CatchUp,
}

/// What happens to ticks missed while no orchestrator ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    #[default]
    Skip,
    Once,
}

/// Starts an execution from each matching bus event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTrigger {
    /// An event type (`run.completed`, `run.failed`, ...).
    pub event: String,
    /// A CEL condition over `event` (`event.data.run.agent_id == "..."`).
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The inputs of the execution, a template over `event` (the event's data when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Value>,
}

/// The kind of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Agent,
    Tool,
    Approval,
    Wait,
}

impl StepKind {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Tool => "tool",
            Self::Approval => "approval",
            Self::Wait => "wait",
        }
    }
}

impl Step {
    /// Its kind (valid definitions have exactly one).
    pub fn kind(&self) -> StepKind {
        if self.agent.is_some() {
            StepKind::Agent
        } else if self.tool.is_some() {
            StepKind::Tool
        } else if self.approval.is_some() {
            StepKind::Approval
        } else {
            StepKind::Wait
        }
    }
}

/// What a definition may name, for the checks that depend on the platform's configuration.
#[derive(Clone, Debug, Default)]
pub struct Known {
    pub agent_types: BTreeSet<String>,
    pub capabilities: BTreeSet<String>,
    /// Event types a trigger may name.
    pub event_types: BTreeSet<String>,
}

/// A definition that passed every check, with what running it needs precomputed.
#[derive(Clone, Debug)]
pub struct Workflow {
    pub def: Definition,
    /// Index of each step by id.
    pub index: BTreeMap<String, usize>,
    /// Steps run only as another's compensation.
    pub compensation: BTreeSet<String>,
    /// The compiled inputs schema.
    pub inputs_schema: Option<crate::inputs::InputsSchema>,
}

impl Workflow {
    /// The step of that id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.index.get(id).map(|&i| &self.def.steps[i])
    }
}

/// Parses a YAML (a template file) or JSON definition and checks it.
///
/// # Errors
/// Every problem found, each naming its path.
pub fn parse_yaml(text: &str, known: &Known) -> Result<Workflow, Vec<FieldError>> {
    let value: Value = serde_saphyr::from_str(text)
        .map_err(|e| vec![FieldError::new("(document)", format!("not valid YAML: {e}"))])?;
    from_value(value, known)
}

/// Parses a JSON value and checks it.
///
/// # Errors
/// Every problem found, each naming its path.
pub fn from_value(value: Value, known: &Known) -> Result<Workflow, Vec<FieldError>> {
    let def: Definition = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "(document)".to_owned() } else { path };
        vec![FieldError::new(path, e.into_inner().to_string())]
    })?;
    validate(def, known)
}

fn is_slug(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Checks a parsed definition.
///
/// # Errors
/// Every problem found, each naming its path.
pub fn validate(def: Definition, known: &Known) -> Result<Workflow, Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut err = |field: String, message: String| errs.push(FieldError::new(field, message));
    if !is_slug(&def.id) {
        err("id".into(), "must be a slug: a-z first, then a-z, 0-9, _ or -; at most 64".into());
    } else if RESERVED_IDS.contains(&def.id.as_str()) {
        err("id".into(), format!("{:?} is reserved (a route of the API has that name)", def.id));
    }
    if def.steps.is_empty() {
        err("steps".into(), "a workflow needs at least one step".into());
    }
    if def.steps.len() > MAX_STEPS {
        err("steps".into(), format!("at most {MAX_STEPS} steps"));
    }
    let mut index = BTreeMap::new();
    for (i, s) in def.steps.iter().enumerate() {
        if !is_slug(&s.id) {
            err(
                format!("steps[{i}].id"),
                "must be a slug: a-z first, then a-z, 0-9, _ or -".into(),
            );
        } else if index.insert(s.id.clone(), i).is_some() {
            err(format!("steps[{i}].id"), format!("duplicate step id {:?}", s.id));
        }
    }
    let inputs_schema = match &def.inputs {
        None => None,
        Some(schema) => match crate::inputs::InputsSchema::compile(schema) {
            Ok(s) => Some(s),
            Err(m) => {
                err("inputs".into(), m);
                None
            }
        },
    };
    // Compensation steps: named by an on_failure, outside the DAG.
    let mut compensation = BTreeSet::new();
    for (i, s) in def.steps.iter().enumerate() {
        if let OnFailure::Compensate(target) = &s.on_failure {
            let at = format!("steps[{i}].on_failure.compensate");
            match index.get(target) {
                None => err(at, format!("unknown step {target:?}")),
                Some(_) if target == &s.id => err(at, "a step cannot compensate itself".into()),
                Some(_) => {
                    compensation.insert(target.clone());
                }
            }
        }
    }
    for (i, s) in def.steps.iter().enumerate() {
        let kinds = [s.agent.is_some(), s.tool.is_some(), s.approval.is_some(), s.wait.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            err(
                format!("steps[{i}]"),
                "a step has exactly one of agent, tool, approval or wait".into(),
            );
        }
        for (j, d) in s.depends_on.iter().enumerate() {
            let at = format!("steps[{i}].depends_on[{j}]");
            if !index.contains_key(d) {
                err(at, format!("unknown step {d:?}"));
            } else if d == &s.id {
                err(at, "a step cannot depend on itself".into());
            } else if compensation.contains(d) {
                err(at, format!("{d:?} is a compensation step: nothing may depend on it"));
            }
        }
        if compensation.contains(&s.id) {
            if !s.depends_on.is_empty() {
                err(
                    format!("steps[{i}].depends_on"),
                    "a compensation step runs when its step fails: it depends on nothing".into(),
                );
            }
            if s.when.is_some() {
                err(format!("steps[{i}].when"), "a compensation step has no condition".into());
            }
        }
        if let Some(r) = &s.retry
            && !(1..=100).contains(&r.max_attempts)
        {
            err(format!("steps[{i}].retry.max_attempts"), "must be between 1 and 100".into());
        }
        if let Some(a) = &s.agent {
            match (&a.agent_type, &a.capability) {
                (Some(t), None) => {
                    if !known.agent_types.is_empty() && !known.agent_types.contains(t) {
                        let all: Vec<_> = known.agent_types.iter().map(String::as_str).collect();
                        err(
                            format!("steps[{i}].agent.type"),
                            format!("unknown agent type {t:?}; one of {}", all.join(", ")),
                        );
                    }
                }
                (None, Some(c)) => {
                    if !known.capabilities.is_empty() && !known.capabilities.contains(c) {
                        err(
                            format!("steps[{i}].agent.capability"),
                            format!("no agent type has the capability {c:?}"),
                        );
                    }
                }
                _ => err(
                    format!("steps[{i}].agent"),
                    "name exactly one of type or capability".into(),
                ),
            }
        }
        if let Some(w) = &s.wait {
            match (&w.duration, &w.event) {
                (Some(_), None) => {
                    if w.condition.is_some() || w.timeout.is_some() {
                        err(
                            format!("steps[{i}].wait"),
                            "where and timeout go with event, not duration".into(),
                        );
                    }
                }
                (None, Some(e)) => {
                    if !known.event_types.is_empty() && !known.event_types.contains(e) {
                        let all: Vec<_> = known.event_types.iter().map(String::as_str).collect();
                        err(
                            format!("steps[{i}].wait.event"),
                            format!("unknown event type {e:?}; one of {}", all.join(", ")),
                        );
                    }
                }
                _ => {
                    err(format!("steps[{i}].wait"), "name exactly one of duration or event".into())
                }
            }
        }
        if let Some(t) = &s.tool {
            let name = &t.name;
            let namespaced = name.split_once(agentyard_core::tools::NAMESPACE_SEPARATOR);
            let known_tool = match namespaced {
                Some((server, tool)) => !server.is_empty() && !tool.is_empty(),
                None => agentyard_core::tools::builtin(name).is_some(),
            };
            if !known_tool {
                err(
                    format!("steps[{i}].tool.name"),
                    format!("unknown tool {name:?}: a built-in tool or server__tool"),
                );
            }
            if !t.arguments.is_object() {
                err(format!("steps[{i}].tool.arguments"), "must be an object".into());
            }
        }
    }
    // Cycles (only among known ids; unknown ones were reported).
    if let Some(cycle) = find_cycle(&def.steps, &index) {
        err("steps".into(), format!("a cycle: {}", cycle.join(" → ")));
    }
    let ancestors = ancestors(&def.steps, &index);
    errs.extend(check_expressions(&def, &index, &ancestors, &compensation));
    if let Some(c) = &def.concurrency {
        if c.limit == 0 {
            errs.push(FieldError::new("concurrency.limit", "must be at least 1"));
        }
        if let Some(k) = &c.key {
            match Template::compile(k) {
                Ok(t) if !t.step_refs().is_empty() => errs.push(FieldError::new(
                    "concurrency.key",
                    "may refer to inputs only (it is computed before any step runs)",
                )),
                Ok(_) => {}
                Err(m) => errs.push(FieldError::new("concurrency.key", m)),
            }
        }
    }
    if let Some(s) = &def.schedule {
        if let Err(m) = Cron::parse(&s.cron, s.timezone.as_deref()) {
            let field =
                if m.starts_with("timezone") { "schedule.timezone" } else { "schedule.cron" };
            errs.push(FieldError::new(field, m));
        }
        if let Some(schema) = &inputs_schema {
            let inputs = s.inputs.clone().unwrap_or_else(empty_object);
            if let Err(m) = schema.check(&inputs) {
                errs.push(FieldError::new("schedule.inputs", m));
            }
        }
    }
    if let Some(on) = &def.on {
        if !known.event_types.is_empty() && !known.event_types.contains(&on.event) {
            let all: Vec<_> = known.event_types.iter().map(String::as_str).collect();
            errs.push(FieldError::new(
                "on.event",
                format!("unknown event type {:?}; one of {}", on.event, all.join(", ")),
            ));
        }
        if let Some(w) = &on.condition
            && let Err(m) = Expr::compile(w)
        {
            errs.push(FieldError::new("on.where", m));
        }
        if let Some(inputs) = &on.inputs
            && let Err(m) = crate::expr::compile_value(inputs)
        {
            errs.push(FieldError::new("on.inputs", m));
        }
    }
    if errs.is_empty() {
        Ok(Workflow { def, index, compensation, inputs_schema })
    } else {
        errs.dedup();
        Err(errs)
    }
}

/// Checks every condition and template: it compiles, and the steps it reads are known and
/// ancestors of its step (a compensation step may read any step).
fn check_expressions(
    def: &Definition,
    index: &BTreeMap<String, usize>,
    ancestors: &BTreeMap<String, BTreeSet<String>>,
    compensation: &BTreeSet<String>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, s) in def.steps.iter().enumerate() {
        let mut found: Vec<(String, Result<BTreeSet<String>, String>)> = Vec::new();
        if let Some(w) = &s.when {
            found.push((format!("steps[{i}].when"), Expr::compile(w).map(|e| e.step_refs())));
        }
        if let Some(a) = &s.agent {
            let refs = Template::compile(&a.input).map(|t| t.step_refs());
            found.push((format!("steps[{i}].agent.input"), refs));
        }
        if let Some(t) = &s.tool {
            let refs = crate::expr::compile_value(&t.arguments);
            found.push((format!("steps[{i}].tool.arguments"), refs));
        }
        if let Some(a) = &s.approval {
            let refs = Template::compile(&a.message).map(|t| t.step_refs());
            found.push((format!("steps[{i}].approval.message"), refs));
        }
        if let Some(c) = s.wait.as_ref().and_then(|w| w.condition.as_ref()) {
            found.push((format!("steps[{i}].wait.where"), Expr::compile(c).map(|e| e.step_refs())));
        }
        for (at, refs) in found {
            match refs {
                Err(m) => errs.push(FieldError::new(at, m)),
                Ok(refs) => {
                    for r in refs {
                        if !index.contains_key(&r) {
                            errs.push(FieldError::new(
                                &at,
                                format!("refers to unknown step {r:?}"),
                            ));
                        } else if !compensation.contains(&s.id)
                            && !ancestors.get(&s.id).is_some_and(|a| a.contains(&r))
                        {
                            errs.push(FieldError::new(
                                &at,
                                format!(
                                    "refers to step {r:?}, which it does not depend on \
                                     (add it to depends_on)"
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    errs
}

/// A dependency cycle, as the ids along it (first repeated last), if there is one.
fn find_cycle(steps: &[Step], index: &BTreeMap<String, usize>) -> Option<Vec<String>> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut mark = vec![0u8; steps.len()];
    let mut path = Vec::new();
    fn visit(
        i: usize,
        steps: &[Step],
        index: &BTreeMap<String, usize>,
        mark: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        mark[i] = 1;
        path.push(i);
        for d in &steps[i].depends_on {
            let Some(&j) = index.get(d) else { continue };
            if mark[j] == 1 {
                let from = path.iter().position(|&p| p == j).unwrap_or(0);
                let mut cycle: Vec<String> =
                    path[from..].iter().map(|&p| steps[p].id.clone()).collect();
                cycle.push(steps[j].id.clone());
                return Some(cycle);
            }
            if mark[j] == 0
                && let Some(c) = visit(j, steps, index, mark, path)
            {
                return Some(c);
            }
        }
        path.pop();
        mark[i] = 2;
        None
    }
    for i in 0..steps.len() {
        if mark[i] == 0
            && let Some(c) = visit(i, steps, index, &mut mark, &mut path)
        {
            return Some(c);
        }
    }
    None
}

/// Each step's transitive dependencies (cycles tolerated: they were reported).
fn ancestors(
    steps: &[Step],
    index: &BTreeMap<String, usize>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for s in steps {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = s.depends_on.iter().collect();
        while let Some(d) = todo.pop() {
            if let Some(&j) = index.get(d)
                && seen.insert(d.clone())
            {
                todo.extend(steps[j].depends_on.iter());
            }
        }
        out.insert(s.id.clone(), seen);
    }
    out
}

//! Threads and runs: create (one transaction, its job published after commit), read, list,
//! cancel, and answer what a run waits for.

use agentyard_core::run::{
    InputAction, InputAnswer, MultitaskStrategy, Priority, RequiredInput, Run, RunStatus,
};
use agentyard_core::storable::{check_json, check_text};
use agentyard_core::thread::{Message, Thread};
use agentyard_core::{AgentId, RunId, ThreadId};
use agentyard_store::runs::{CancelOutcome, CreateOutcome, NewRun, RunFilter};
use agentyard_store::tools::AnswerOutcome;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::{Entity, Error, Page, Principal, Result, Services, page_limit};

const MAX_METADATA_BYTES: usize = 16 * 1024;
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Body of `POST /v1/threads/{id}/runs` and `POST /v1/runs`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRunRequest {
    /// The user's message. Not empty; at most `AY_MAX_INPUT_BYTES` bytes.
    #[schema(min_length = 1)]
    pub input: String,
    /// Answer with the run's SSE event stream instead of 202.
    #[serde(default)]
    pub stream: bool,
    /// What to do when the thread already has an active run (default `enqueue`).
    #[serde(default)]
    pub multitask_strategy: MultitaskStrategy,
    /// Free-form object stored with the run.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// `POST /v1/runs` only: the thread to post to; a new thread when absent.
    pub thread_id: Option<ThreadId>,
    /// The agent that answers; the org's default agent when absent.
    pub agent_id: Option<AgentId>,
    /// `high`, `normal` (default) or `low`: saturated workers take higher priorities first.
    #[serde(default)]
    pub priority: Priority,
}

/// Body of `POST /v1/runs/{id}/input`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputAnswerRequest {
    /// Elicitation: `accept`, `decline` or `cancel`; tool approval: `approve` or `deny`.
    pub action: InputAction,
    /// With `accept`: the requested fields, valid against the requested schema.
    #[schema(value_type = Option<Object>)]
    pub content: Option<Value>,
}

/// Which runs to list.
#[derive(Clone, Debug, Default)]
pub struct RunQuery {
    pub status: Option<RunStatus>,
    pub thread_id: Option<ThreadId>,
    pub agent_id: Option<AgentId>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// Checks free-form metadata: an object of at most 16 KiB whose strings and numbers Postgres
/// stores and gives back unchanged.
///
/// # Errors
/// `invalid_metadata` naming the field.
pub fn check_metadata(metadata: &Value) -> Result<()> {
    if !metadata.is_object() {
        return Err(Error::invalid("invalid_metadata", "metadata must be a JSON object"));
    }
    if metadata.to_string().len() > MAX_METADATA_BYTES {
        return Err(Error::invalid(
            "invalid_metadata",
            format!("metadata must be at most {MAX_METADATA_BYTES} bytes of JSON"),
        ));
    }
    check_json("metadata", metadata).map_err(|e| Error::invalid("invalid_metadata", e.to_string()))
}

fn check_input(input: &str, max_input_bytes: usize) -> Result<()> {
    if input.trim().is_empty() {
        return Err(Error::invalid("invalid_input", "input must not be empty"));
    }
    if input.len() > max_input_bytes {
        return Err(Error::TooLarge(format!(
            "input is {} bytes; the limit is {max_input_bytes}",
            input.len()
        )));
    }
    check_text("input", input).map_err(|e| Error::invalid("invalid_input", e.to_string()))
}

pub(crate) fn check_idempotency_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || key.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"),
        ));
    }
    Ok(())
}

pub(crate) fn key_reused() -> Error {
    Error::invalid(
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request",
    )
}

/// Parses a list cursor (the id of the previous page's last item).
pub(crate) fn cursor<T: std::str::FromStr>(raw: Option<&str>) -> Result<Option<T>> {
    raw.map(|c| {
        c.parse().map_err(|_| Error::invalid("invalid_cursor", "cursor is not one we gave"))
    })
    .transpose()
}

impl Services {
    /// Creates run `id` (and its thread when `thread` is None), publishes its job, and returns
    /// it (an earlier run when `idempotency`, the key and the SHA-256 of the request, was seen).
    ///
    /// # Errors
    /// `thread_not_found`, `agent_not_found`, `thread_busy`, `agent_inactive`,
    /// `idempotency_key_reused`, `invalid_input`, `invalid_metadata`, `input_too_large`,
    /// `quota_exceeded`.
    pub async fn create_run(
        &self,
        who: &Principal,
        req: CreateRunRequest,
        thread: Option<ThreadId>,
        idempotency: Option<(String, Vec<u8>)>,
        id: RunId,
    ) -> Result<Run> {
        check_input(&req.input, self.settings.max_input_bytes)?;
        if let Some(m) = &req.metadata {
            check_metadata(m)?;
        }
        // Keys are the user's own: two users of an org may use the same key.
        let idempotency = match idempotency {
            Some((key, hash)) => {
                check_idempotency_key(&key)?;
                Some((who.user_id.map_or_else(|| key.clone(), |u| format!("{u}/{key}")), hash))
            }
            None => None,
        };
        if let Some((key, hash)) = &idempotency
            && let Some((seen_hash, run)) = self.store.idempotent_run(who.org_id, key).await?
        {
            return if &seen_hash == hash { Ok(run) } else { Err(key_reused()) };
        }
        let new = NewRun {
            id,
            org: who.org_id,
            thread,
            agent: req.agent_id,
            user: who.user_id,
            input: req.input,
            strategy: req.multitask_strategy,
            metadata: req.metadata.unwrap_or_else(|| serde_json::json!({})),
            idempotency,
            priority: req.priority,
            quota: Some(self.settings.org_max_active_runs).filter(|q| *q > 0),
            scopes: who.scopes.clone(),
            owner: who.owner(),
        };
        match self.store.create_run(&new).await? {
            CreateOutcome::Created { run, outbox, interrupted } => {
                self.dispatch(&outbox).await;
                if let Some(old) = interrupted {
                    self.signal_cancel(old).await;
                }
                Ok(run)
            }
            CreateOutcome::Idempotent(run) => Ok(run),
            CreateOutcome::IdempotencyMismatch => Err(key_reused()),
            CreateOutcome::ThreadNotFound => Err(Error::NotFound(Entity::Thread)),
            CreateOutcome::ThreadBusy { active } => Err(Error::conflict(
                "thread_busy",
                format!("the thread has an active run ({active}) and multitask_strategy is reject"),
            )),
            CreateOutcome::AgentNotFound => Err(Error::NotFound(Entity::Agent)),
            CreateOutcome::AgentInactive => Err(Error::conflict(
                "agent_inactive",
                "the agent is deactivated; activate it with POST /v1/agents/{id}/activate",
            )),
            CreateOutcome::QuotaExceeded { live } => Err(Error::Limited {
                code: "quota_exceeded",
                message: format!(
                    "the organization has {live} active runs; its quota is {}",
                    self.settings.org_max_active_runs
                ),
                retry_after_secs: 1,
            }),
        }
    }

    /// A run of the caller's org (its user's own, for a caller limited to its user).
    ///
    /// # Errors
    /// `run_not_found`.
    pub async fn get_run(&self, who: &Principal, id: RunId) -> Result<Run> {
        let run = self.store.get_run(who.org_id, id).await?;
        run.filter(|r| who.sees(r.user_id)).ok_or(Error::NotFound(Entity::Run))
    }

    /// The org's runs (the user's own, for a caller limited to its user) matching `q`, newest
    /// first.
    ///
    /// # Errors
    /// `invalid_query`, `invalid_cursor`.
    pub async fn list_runs(&self, who: &Principal, q: RunQuery) -> Result<Page<Run>> {
        let limit = page_limit(q.limit, 20, 100)?;
        let before = cursor::<RunId>(q.cursor.as_deref())?;
        let filter = RunFilter {
            status: q.status,
            thread: q.thread_id,
            agent: q.agent_id,
            user: who.owner(),
            since: q.since,
            until: q.until,
        };
        let mut data = self.store.list_runs(who.org_id, &filter, before, limit + 1).await?;
        Ok(page(&mut data, limit, |r| r.id.to_string()))
    }

    /// Cancels a run: queued ones at once; for one in progress the worker is signalled and
    /// stops within a second, and its final write changes nothing.
    ///
    /// # Errors
    /// `run_not_found`, `run_already_terminal`.
    pub async fn cancel_run(&self, who: &Principal, id: RunId) -> Result<Run> {
        if who.owner().is_some() {
            self.get_run(who, id).await?;
        }
        match self.store.cancel_run(who.org_id, id).await? {
            CancelOutcome::NotFound => Err(Error::NotFound(Entity::Run)),
            CancelOutcome::AlreadyTerminal(status) => Err(Error::conflict(
                "run_already_terminal",
                format!("the run is already {}", status.as_str()),
            )),
            CancelOutcome::Cancelled { outbox, .. } => {
                self.dispatch(&outbox).await;
                self.signal_cancel(id).await;
                self.get_run(who, id).await
            }
        }
    }

    /// Answers what a `requires_input` run waits for (`run.required_input` says what): the
    /// call is enqueued again with the answer.
    ///
    /// # Errors
    /// `run_not_found`, `run_not_waiting`, `invalid_action`, `invalid_content`.
    pub async fn answer_input(
        &self,
        who: &Principal,
        id: RunId,
        req: InputAnswerRequest,
    ) -> Result<Run> {
        let run = self.get_run(who, id).await?;
        let not_waiting = || Error::conflict("run_not_waiting", "the run is not waiting for input");
        let (RunStatus::RequiresInput, Some(required)) = (run.status, run.required_input.as_ref())
        else {
            return Err(not_waiting());
        };
        if !required.actions().contains(&req.action) {
            let names: Vec<&str> = required.actions().iter().map(|a| a.as_str()).collect();
            return Err(Error::invalid(
                "invalid_action",
                format!("action must be one of {} for a {}", names.join(", "), required.kind()),
            ));
        }
        let content = match (&req.action, required) {
            (InputAction::Accept, RequiredInput::Elicitation { requested_schema, .. }) => {
                let content = req.content.unwrap_or(Value::Null);
                validate_content(requested_schema, &content)
                    .map_err(|m| Error::invalid("invalid_content", m))?;
                check_json("content", &content)
                    .map_err(|e| Error::invalid("invalid_content", e.to_string()))?;
                Some(content)
            }
            _ => None,
        };
        let answer = InputAnswer { action: req.action, content, timed_out: false };
        let invocation = Some(required.invocation_id());
        match self.store.answer_input(who.org_id, id, invocation, &answer).await? {
            agentyard_store::tools::AnswerOutcome::NotFound => Err(Error::NotFound(Entity::Run)),
            AnswerOutcome::NotWaiting => Err(not_waiting()),
            AnswerOutcome::Answered { run, outbox, .. } => {
                self.dispatch(&outbox).await;
                Ok(*run)
            }
        }
    }

    /// Creates an empty thread.
    ///
    /// # Errors
    /// `invalid_metadata`.
    pub async fn create_thread(&self, who: &Principal, metadata: Option<Value>) -> Result<Thread> {
        let metadata = metadata.unwrap_or_else(|| serde_json::json!({}));
        check_metadata(&metadata)?;
        Ok(self.store.create_thread(who.org_id, who.user_id, &metadata).await?)
    }

    /// A thread of the caller's org (its user's own, for a caller limited to its user).
    ///
    /// # Errors
    /// `thread_not_found`.
    pub async fn get_thread(&self, who: &Principal, id: ThreadId) -> Result<Thread> {
        let thread = self.store.get_thread(who.org_id, id).await?;
        thread.filter(|t| who.sees(t.user_id)).ok_or(Error::NotFound(Entity::Thread))
    }

    /// The org's threads (the user's own, for a caller limited to its user), newest first.
    ///
    /// # Errors
    /// `invalid_query`, `invalid_cursor`.
    pub async fn list_threads(
        &self,
        who: &Principal,
        cursor_: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<Thread>> {
        let limit = page_limit(limit, 20, 100)?;
        let before = cursor::<ThreadId>(cursor_)?;
        let mut data = self.store.list_threads(who.org_id, who.owner(), before, limit + 1).await?;
        Ok(page(&mut data, limit, |t| t.id.to_string()))
    }

    /// A thread's messages with `seq > after`, oldest first, and the `after` of the next page.
    ///
    /// # Errors
    /// `thread_not_found`, `invalid_query`.
    pub async fn list_messages(
        &self,
        who: &Principal,
        id: ThreadId,
        after: Option<i64>,
        limit: Option<i64>,
    ) -> Result<(Vec<Message>, Option<i64>)> {
        let limit = page_limit(limit, 20, 100)?;
        if after.is_some_and(|a| a < 0) {
            return Err(Error::BadQuery(format!("after must be between 0 and {}", i64::MAX)));
        }
        self.get_thread(who, id).await?;
        let mut data =
            self.store.list_messages(who.org_id, id, after.unwrap_or(0), limit + 1).await?;
        let more = data.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        data.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_after = if more { data.last().map(|m| m.seq) } else { None };
        Ok((data, next_after))
    }
}

/// Cuts `data` (fetched with one extra item) to `limit` and names the next page's cursor.
pub(crate) fn page<T>(data: &mut Vec<T>, limit: i64, id: impl Fn(&T) -> String) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = data.len() > limit;
    data.truncate(limit);
    let next_cursor = if more { data.last().map(id) } else { None };
    Page { data: std::mem::take(data), next_cursor }
}

/// Checks an elicitation answer against its requested schema (a flat object of strings,
/// numbers, integers and booleans, with `required`, `enum` and `minLength`).
fn validate_content(schema: &Value, content: &Value) -> Result<(), String> {
    let Value::Object(fields) = content else {
        return Err("content must be a JSON object".into());
    };
    let props = schema["properties"].as_object();
    for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if fields.get(name).is_none_or(Value::is_null) {
            return Err(format!("content.{name} is required"));
        }
    }
    for (name, value) in fields {
        let Some(prop) = props.and_then(|p| p.get(name)) else {
            return Err(format!("content.{name} is not a requested field"));
        };
        let ok = match prop["type"].as_str() {
            Some("string") => value.is_string(),
            Some("number") => value.is_number(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("boolean") => value.is_boolean(),
            _ => true,
        };
        if !ok {
            return Err(format!(
                "content.{name} must be a {}",
                prop["type"].as_str().unwrap_or("value")
            ));
        }
        if let Some(options) = prop["enum"].as_array()
            && !options.contains(value)
        {
            return Err(format!("content.{name} must be one of {}", Value::Array(options.clone())));
        }
        if let (Some(s), Some(min)) = (value.as_str(), prop["minLength"].as_u64())
            && (s.chars().count() as u64) < min
        {
            return Err(format!("content.{name} must be at least {min} characters"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn content_is_checked_against_the_requested_schema() {
        let schema = json!({"type": "object", "properties": {
            "description": {"type": "string", "minLength": 3},
            "priority": {"type": "string", "enum": ["low", "high"]},
            "count": {"type": "integer"}}, "required": ["description"]});
        assert!(
            validate_content(&schema, &json!({"description": "broken", "priority": "low"})).is_ok()
        );
        for bad in [
            json!({}),
            json!({"description": 3}),
            json!({"description": "ok!", "priority": "mid"}),
            json!({"description": "ok!", "extra": 1}),
            json!({"description": "ok!", "count": 1.5}),
            json!({"description": "no"}),
            json!("text"),
        ] {
            assert!(validate_content(&schema, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_that_cannot_be_read_back_is_refused_naming_the_field() {
        let big: Value = serde_json::from_str("{\"score\": 1.7976931348623157e308}").unwrap();
        let err = check_metadata(&big).unwrap_err();
        assert_eq!(err.code(), "invalid_metadata");
        assert!(err.to_string().contains("metadata.score"), "{err}");
        let nul = json!({"note": "a\u{0}b"});
        assert!(check_metadata(&nul).unwrap_err().to_string().contains("metadata.note"));
        assert!(check_input("hi\u{0}", 100).is_err());
        assert!(check_metadata(&json!({"fine": 1.5})).is_ok());
    }
}

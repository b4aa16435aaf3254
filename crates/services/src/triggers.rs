//! What starts executions besides the API: cron schedules, bus events and inbound webhooks.
//! Each start carries an idempotency key derived from what fired it (`cron:<workflow>:<tick>`,
//! `event:<workflow>:<stream seq>`, `hook:<id>:<signature>`), so any number of orchestrators
//! (and any redelivery) start one execution per tick, per event, per signed request.

use std::time::Duration;

use agentyard_core::Scope;
use agentyard_core::storable::check_json;
use agentyard_store::tool_tokens::{hmac, same_bytes};
use agentyard_store::workflows::{HookRow, TriggerRow};
use agentyard_workflows::Workflow;
use agentyard_workflows::def::CatchUp;
use agentyard_workflows::expr::{Expr, Scope as ExprScope, render_value};
use agentyard_workflows::schedule::Cron;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::workflows::{ExecutionView, WorkflowRef, check_inputs, workflow_of};
use crate::{Entity, Error, Principal, Result, Services};

/// A tick is still fired when found this late; older ones were missed (`catch_up: skip`) or
/// only the last of them fires (`catch_up: once`).
pub const CRON_GRACE: Duration = Duration::from_secs(10);
/// How far a webhook's timestamp may be from the platform's clock.
pub const HOOK_TOLERANCE: Duration = Duration::from_secs(300);
/// The platform key webhook secrets derive from.
const HOOK_KEY: &str = "webhook_key";

/// A definition with a trigger, ready to fire.
#[derive(Clone, Debug)]
pub struct Trigger {
    pub row: TriggerRow,
    pub wf: std::sync::Arc<Workflow>,
    pub cron: Option<Cron>,
}

/// A new webhook, with its secret (shown once).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct HookCreated {
    pub id: uuid::Uuid,
    pub workflow_id: String,
    /// Sign each request with it (see the docs); it is not shown again.
    pub secret: String,
    /// Where to POST.
    pub path: String,
    pub created_at: DateTime<Utc>,
}

/// A webhook as listed.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct HookView {
    pub id: uuid::Uuid,
    pub workflow_id: String,
    pub path: String,
    pub created_at: DateTime<Utc>,
}

fn hook_view(h: &HookRow) -> HookView {
    HookView {
        id: h.id,
        workflow_id: h.workflow_id.clone(),
        path: format!("/v1/hooks/{}", h.id),
        created_at: h.created_at,
    }
}

/// Why a webhook call is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("X-Agentyard-Timestamp is missing or not a number of seconds")]
    BadTimestamp,
    #[error("the timestamp is more than {} s away from now: a stale or replayed request", HOOK_TOLERANCE.as_secs())]
    Stale,
    #[error("X-Agentyard-Signature is missing or is not sha256=<hex>")]
    BadSignatureHeader,
    #[error("the signature does not match the body and timestamp")]
    Mismatch,
}

/// The signature of a webhook request: `sha256=` and the hex HMAC-SHA256, under the hook's
/// secret, of `<timestamp>.<raw body>`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut msg = format!("{timestamp}.").into_bytes();
    msg.extend_from_slice(body);
    format!("sha256={}", hex::encode(hmac(secret.as_bytes(), &msg)))
}

/// Checks a webhook request's timestamp and signature at `now`.
///
/// # Errors
/// See [`HookError`].
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> std::result::Result<(), HookError> {
    let ts: i64 = timestamp.and_then(|t| t.trim().parse().ok()).ok_or(HookError::BadTimestamp)?;
    if (now.timestamp() - ts).unsigned_abs() > HOOK_TOLERANCE.as_secs() {
        return Err(HookError::Stale);
    }
    let given = signature
        .and_then(|s| s.trim().strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok())
        .ok_or(HookError::BadSignatureHeader)?;
    let expected = sign(secret, ts, body);
    let expected = hex::decode(&expected["sha256=".len()..]).unwrap_or_default();
    if same_bytes(&given, &expected) { Ok(()) } else { Err(HookError::Mismatch) }
}

fn tick_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Services {
    /// Every definition with a trigger, parsed (one that no longer parses is skipped with a
    /// warning).
    ///
    /// # Errors
    /// Database failures.
    pub async fn load_triggers(&self) -> Result<Vec<Trigger>> {
        let rows = self.store.triggered_workflows().await?;
        let mut out = Vec::new();
        for row in rows {
            let wf = match workflow_of(&row.definition) {
                Ok(wf) => wf,
                Err(e) => {
                    tracing::warn!(workflow = row.id, error = %e, "skipping a trigger");
                    continue;
                }
            };
            let cron = match &wf.def.schedule {
                Some(s) => Cron::parse(&s.cron, s.timezone.as_deref()).ok(),
                None => None,
            };
            out.push(Trigger { row, wf, cron });
        }
        Ok(out)
    }

    /// Fires `t`'s due ticks at `now`: each tick not older than [`CRON_GRACE`] (a slow loop
    /// misses none), or with `catch_up: once` the last one however old. Returns the last
    /// execution started (None when nothing was due); another orchestrator that fired a tick
    /// first makes this one see that execution.
    ///
    /// # Errors
    /// Database failures.
    pub async fn fire_cron(
        &self,
        t: &Trigger,
        now: DateTime<Utc>,
    ) -> Result<Option<ExecutionView>> {
        let (Some(cron), Some(schedule)) = (&t.cron, &t.wf.def.schedule) else { return Ok(None) };
        let last = self.store.last_cron_tick(t.row.org_id, &t.row.id).await?;
        let last = last.and_then(|l| l.parse::<DateTime<Utc>>().ok());
        // Ticks before the definition (its newest version) existed never fire.
        let since = last.map_or(t.row.created_at, |l| l.max(t.row.created_at));
        let grace = chrono::Duration::from_std(CRON_GRACE).unwrap_or_default();
        let (mut ticks, last) = cron.due_within(since, now, grace);
        if ticks.is_empty() && schedule.catch_up == CatchUp::Once {
            ticks.extend(last);
        }
        let mut started = None;
        for tick in ticks {
            let late = (now - tick).to_std().unwrap_or_default();
            let inputs = schedule.inputs.clone().unwrap_or_else(|| json!({}));
            let trigger = json!({"kind": "cron", "scheduled_at": tick_text(tick),
                "late_ms": u64::try_from(late.as_millis()).unwrap_or(u64::MAX)});
            let key = format!("cron:{}:{}", t.row.id, tick_text(tick));
            started = Some(self.start_for(t, inputs, key, trigger).await?);
        }
        Ok(started)
    }

    async fn start_for(
        &self,
        t: &Trigger,
        inputs: Value,
        key: String,
        trigger: Value,
    ) -> Result<ExecutionView> {
        check_inputs(&t.wf, &inputs)?;
        let hash = Sha256::digest(key.as_bytes()).to_vec();
        let wref = WorkflowRef {
            id: t.row.id.clone(),
            version: t.row.version,
            definition: t.row.definition.clone(),
        };
        self.start_checked(
            t.row.org_id,
            t.row.created_by,
            t.row.scopes.clone(),
            &t.wf,
            wref,
            inputs,
            Some((key, hash)),
            trigger,
        )
        .await
    }

    /// Hands a bus event (published at `published`) to the steps waiting for it and starts the
    /// executions it triggers (`on:`); returns how many steps and executions it moved. Events
    /// of runs that workflow steps started never trigger an execution (no loops); waiting
    /// steps see every event of their organization.
    ///
    /// # Errors
    /// Database failures.
    pub async fn on_event(
        &self,
        triggers: &[Trigger],
        subject: &str,
        seq: u64,
        published: DateTime<Utc>,
        payload: &[u8],
    ) -> Result<usize> {
        let Some(address) = self.bus.subjects().parse_event(subject) else { return Ok(0) };
        let Ok(envelope) = serde_json::from_slice::<Value>(payload) else { return Ok(0) };
        let kind = envelope.get("type").and_then(Value::as_str).unwrap_or_default();
        let event = json!({
            "type": kind,
            "run_id": address.run,
            "data": envelope.get("data").cloned().unwrap_or(Value::Null),
        });
        let mut started = 0;
        // Steps waiting for this kind of event (since before it was published).
        for (execution, step) in self.store.event_waits(address.org, kind, published).await? {
            if self.deliver_event(execution, &step, &event).await? {
                started += 1;
            }
        }
        let matching: Vec<&Trigger> = triggers
            .iter()
            .filter(|t| t.row.org_id == address.org)
            .filter(|t| t.wf.def.on.as_ref().is_some_and(|on| on.event == kind))
            .collect();
        if matching.is_empty() || self.store.is_workflow_run(address.run).await? {
            return Ok(started);
        }
        let scope = ExprScope { event: Some(event.clone()), ..Default::default() };
        for t in matching {
            let on = t.wf.def.on.as_ref().expect("filtered");
            if let Some(w) = &on.condition {
                match Expr::compile(w).and_then(|e| e.eval_bool(&scope)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(m) => {
                        tracing::warn!(
                            workflow = t.row.id,
                            error = m,
                            "event trigger condition failed"
                        );
                        continue;
                    }
                }
            }
            let inputs = match &on.inputs {
                Some(tpl) => match render_value(tpl, &scope) {
                    Ok(v) => v,
                    Err(m) => {
                        tracing::warn!(
                            workflow = t.row.id,
                            error = m,
                            "event trigger inputs failed"
                        );
                        continue;
                    }
                },
                None => json!({ "event": event }),
            };
            let key = format!("event:{}:{seq}", t.row.id);
            let trigger =
                json!({"kind": "event", "event": kind, "run_id": address.run, "seq": seq});
            match self.start_for(t, inputs, key, trigger).await {
                Ok(_) => started += 1,
                Err(Error::Invalid { message, .. }) | Err(Error::Conflict { message, .. }) => {
                    tracing::warn!(
                        workflow = t.row.id,
                        error = message,
                        "the event did not start the workflow"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Ok(started)
    }

    async fn hook_secret(&self, id: uuid::Uuid) -> Result<String> {
        let key = self.store.platform_key(HOOK_KEY).await?;
        Ok(format!("whsec_{}", hex::encode(hmac(&key, id.as_bytes()))))
    }

    /// Adds an inbound webhook to the organization's workflow (or template) `workflow`.
    ///
    /// # Errors
    /// `workflow_not_found`.
    pub async fn create_hook(&self, who: &Principal, workflow: &str) -> Result<HookCreated> {
        let exists = !self.store.workflow_versions(who.org_id, workflow).await?.is_empty()
            || self.templates.get(workflow).is_some();
        if !exists {
            return Err(Error::NotFound(Entity::Workflow));
        }
        let h = self.store.create_hook(who.org_id, workflow, who.user_id, &who.scopes).await?;
        Ok(HookCreated {
            id: h.id,
            workflow_id: h.workflow_id.clone(),
            secret: self.hook_secret(h.id).await?,
            path: format!("/v1/hooks/{}", h.id),
            created_at: h.created_at,
        })
    }

    /// The live webhooks of a workflow.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_hooks(&self, who: &Principal, workflow: &str) -> Result<Vec<HookView>> {
        Ok(self.store.list_hooks(who.org_id, workflow).await?.iter().map(hook_view).collect())
    }

    /// Revokes a webhook.
    ///
    /// # Errors
    /// `hook_not_found`.
    pub async fn revoke_hook(&self, who: &Principal, id: uuid::Uuid) -> Result<()> {
        if self.store.revoke_hook(who.org_id, id).await? {
            Ok(())
        } else {
            Err(Error::NotFound(Entity::Hook))
        }
    }

    /// A signed webhook call: checks the signature and starts the workflow with the body as
    /// inputs. A replay of the same signed request within the tolerance returns the execution
    /// it started.
    ///
    /// # Errors
    /// `hook_not_found`; `Unauthorized` on a bad or stale signature (nothing starts);
    /// `invalid_inputs`.
    pub async fn hook_start(
        &self,
        id: uuid::Uuid,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<ExecutionView> {
        let Some(hook) = self.store.get_hook(id).await?.filter(|h| h.revoked_at.is_none()) else {
            return Err(Error::NotFound(Entity::Hook));
        };
        let secret = self.hook_secret(id).await?;
        verify(&secret, timestamp, signature, body, Utc::now())
            .map_err(|e| Error::Unauthorized(e.to_string()))?;
        let inputs: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| Error::invalid("invalid_json", format!("the body is not JSON: {e}")))?
        };
        check_json("inputs", &inputs)
            .map_err(|e| Error::invalid("invalid_inputs", e.to_string()))?;
        let who = Principal {
            org_id: hook.org_id,
            user_id: hook.created_by,
            token_id: agentyard_core::TokenId::nil(),
            scopes: hook.scopes.clone(),
        };
        if !who.scopes.contains(&Scope::WorkflowsRun) {
            return Err(Error::Forbidden(
                "the webhook's creator no longer may start workflows".into(),
            ));
        }
        let key = format!("hook:{id}:{}", signature.unwrap_or_default().trim());
        let hash = Sha256::digest(body).to_vec();
        let trigger = json!({"kind": "webhook", "hook_id": id});
        let req = crate::workflows::StartRequest { inputs: Some(inputs), version: None };
        self.start_execution(
            &who,
            crate::workflows::Target::Any(&hook.workflow_id),
            req,
            Some((key, hash)),
            trigger,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_check_body_timestamp_and_age() {
        let now = Utc::now();
        let ts = now.timestamp();
        let sig = sign("whsec_x", ts, b"{\"a\":1}");
        let t = ts.to_string();
        assert_eq!(verify("whsec_x", Some(&t), Some(&sig), b"{\"a\":1}", now), Ok(()));
        assert_eq!(
            verify("whsec_x", Some(&t), Some(&sig), b"{\"a\":2}", now),
            Err(HookError::Mismatch)
        );
        assert_eq!(
            verify("whsec_y", Some(&t), Some(&sig), b"{\"a\":1}", now),
            Err(HookError::Mismatch)
        );
        let old = (ts - 301).to_string();
        let old_sig = sign("whsec_x", ts - 301, b"{}");
        assert_eq!(
            verify("whsec_x", Some(&old), Some(&old_sig), b"{}", now),
            Err(HookError::Stale)
        );
        assert_eq!(verify("whsec_x", None, Some(&sig), b"{}", now), Err(HookError::BadTimestamp));
        assert_eq!(
            verify("whsec_x", Some(&t), Some("md5=00"), b"{}", now),
            Err(HookError::BadSignatureHeader)
        );
    }
}

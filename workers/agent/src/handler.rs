//! One `AgentStep` job, from decode to settle.

use std::time::Duration;

use agentyard_core::events::{RunEvent, kinds};
use agentyard_core::jobs::AgentStep;
use agentyard_core::run::{RunError, RunOutput, RunStatus, error_codes};
use agentyard_core::{MessageId, RunId};
use agentyard_llm::{ChatRequest, LlmError};
use agentyard_store::StoreError;
use agentyard_store::runs::{Finish, StartedRun};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{AckKind, Message};
use futures::future::join_all;
use std::future::IntoFuture;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Ctx;
use crate::prompt;

/// At most this many messages are read; the token budget then trims them.
const HISTORY_MESSAGES: i64 = 200;

/// How a job ends.
enum Outcome {
    /// Durable write done (or nothing to do): ack.
    Done,
    /// Try again later.
    Retry(Duration),
    /// Give up: fail the run, dead-letter the job, terminate the message.
    Fail { code: &'static str, message: String },
}

/// Handles one message and settles it.
pub(crate) async fn handle(ctx: Ctx, msg: Message) {
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    let job: AgentStep = match serde_json::from_slice(&msg.payload) {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(error = %e, "undecodable agent job: dead-lettering it");
            dead_letter(&ctx, &msg, &format!("undecodable job: {e}")).await;
            settle(&msg, AckKind::Term).await;
            return;
        }
    };
    let span = tracing::info_span!("agent_step", run_id = %job.run_id, step = job.step, delivered);
    handle_job(ctx, msg, job, delivered).instrument(span).await;
}

async fn handle_job(ctx: Ctx, msg: Message, job: AgentStep, delivered: i64) {
    let outcome = if delivered > ctx.settings.max_attempts {
        Outcome::Fail {
            code: error_codes::MAX_DELIVERIES,
            message: format!("the job was delivered {delivered} times without completing"),
        }
    } else {
        agentyard_bus::consume::with_progress(
            &msg,
            ctx.settings.ack_wait,
            step(&ctx, &job, delivered),
        )
        .await
    };
    match outcome {
        Outcome::Done => settle(&msg, AckKind::Ack).await,
        Outcome::Retry(delay) => {
            tracing::warn!(?delay, "transient failure; retrying");
            settle(&msg, AckKind::Nak(Some(delay))).await;
        }
        Outcome::Fail { code, message } => {
            tracing::error!(code, %message, "run failed");
            match fail_run(&ctx, job.run_id, None, code, &message).await {
                Ok(()) => {
                    dead_letter(&ctx, &msg, &format!("{code}: {message}")).await;
                    settle(&msg, AckKind::Term).await;
                }
                // The failure itself could not be recorded: let JetStream redeliver.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record the failure; retrying");
                    settle(&msg, AckKind::Nak(Some(backoff(&ctx, delivered)))).await;
                }
            }
        }
    }
}

async fn step(ctx: &Ctx, job: &AgentStep, delivered: i64) -> Outcome {
    let step = i32::try_from(job.step).unwrap_or(i32::MAX);
    let started = match ctx.store.start_run(job.run_id, step, HISTORY_MESSAGES).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            tracing::debug!(run_id = %job.run_id, "stale or duplicate job: skipping");
            return Outcome::Done;
        }
        Err(e) => return store_failure(ctx, e, delivered),
    };
    let cancel = crate::cancel_token(&ctx.cancels, job.run_id);
    let outcome = generate(ctx, job, &started, delivered, &cancel).await;
    ctx.cancels.lock().expect("cancel map poisoned").remove(&job.run_id);
    outcome
}

async fn generate(
    ctx: &Ctx,
    job: &AgentStep,
    started: &StartedRun,
    delivered: i64,
    cancel: &CancellationToken,
) -> Outcome {
    let run = job.run_id;
    let mut acks: Vec<PublishAckFuture> = Vec::new();
    if started.first_start {
        let mut shown = started.run.clone();
        shown.status = RunStatus::InProgress;
        publish(ctx, run, &RunEvent::with_run(kinds::RUN_STARTED, &shown), &mut acks).await;
    } else if delivered > 1 {
        publish(ctx, run, &reset_event(), &mut acks).await;
    }
    // The agent's overrides come with the run in the statement that started this step, so a
    // changed configuration applies to the next step on every worker, with no cache to go stale.
    let agent =
        ctx.catalog.effective(&started.agent_type, &started.agent_name, &started.agent_config);
    if job.step >= agent.max_steps {
        await_acks(acks).await;
        let message = format!("the run took {} model turns, its agent's max_steps", job.step);
        let step = Some(i32::try_from(job.step).unwrap_or(i32::MAX));
        // Not a job failure: nothing goes to the DLQ.
        return match fail_run(ctx, job.run_id, step, error_codes::MAX_STEPS, &message).await {
            Ok(()) => Outcome::Done,
            Err(e) => store_failure(ctx, e, delivered),
        };
    }
    let tools = match ctx.tools.offered(&ctx.store, started.org_id, &agent.tools_enabled).await {
        Ok(t) => t,
        Err(e) => return store_failure(ctx, e, delivered),
    };
    let request = ChatRequest {
        messages: prompt::build(
            &agent.system_prompt,
            &started.history,
            ctx.settings.history_tokens,
        ),
        temperature: Some(agent.temperature),
        max_tokens: agent.max_tokens.min(ctx.settings.max_tokens),
        model: ctx.catalog.models().get(&agent.model).and_then(|m| m.model.clone()),
        timeout: Some(Duration::from_secs(u64::from(agent.timeout_seconds))),
        tools,
    };
    let mut streamed = false;
    let result = tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        r = stream_answer(ctx, run, &request, &mut acks, &mut streamed) => Some(r),
    };
    let completion = match result {
        None => {
            await_acks(acks).await;
            return Outcome::Done; // the API recorded the cancellation already
        }
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            if streamed {
                publish(ctx, run, &reset_event(), &mut acks).await;
            }
            await_acks(acks).await;
            return llm_failure(ctx, &e, delivered);
        }
    };
    // Every delta is stored before the run completes, so a replay shows the whole answer.
    await_acks(acks).await;
    if !completion.tool_calls.is_empty() {
        return store_tool_calls(ctx, job, completion, &agent.model, delivered).await;
    }
    let finish = Finish {
        run,
        step: Some(i32::try_from(job.step).unwrap_or(i32::MAX)),
        // `queued` too: the start's write commits asynchronously and may have been lost.
        from: &["queued", "in_progress"],
        status: RunStatus::Completed,
        output: Some(RunOutput { content: completion.content.clone() }),
        usage: Some(priced(ctx, &agent.model, completion.usage)),
        error: None,
        message: Some((MessageId::new(), completion.content)),
    };
    match ctx.store.finish_run(&finish).await {
        Ok(done) => {
            if !done.applied {
                tracing::info!(run_id = %run, "run moved on (cancelled?); answer discarded");
            }
            let _ = ctx.outbox.dispatch(&done.outbox).await;
            Outcome::Done
        }
        Err(e) => store_failure(ctx, e, delivered),
    }
}

async fn stream_answer(
    ctx: &Ctx,
    run: RunId,
    request: &ChatRequest,
    acks: &mut Vec<PublishAckFuture>,
    streamed: &mut bool,
) -> Result<agentyard_llm::Completion, LlmError> {
    let mut stream = ctx.llm.stream_chat(request).await?;
    while let Some(delta) = stream.next_delta().await? {
        *streamed = true;
        publish(ctx, run, &RunEvent::delta(&delta), acks).await;
    }
    stream.finish().await
}

fn reset_event() -> RunEvent {
    RunEvent { kind: kinds::MESSAGE_RESET.to_owned(), data: serde_json::json!({}) }
}

/// Sends an event without waiting for its ack (the acks are awaited together later).
async fn publish(ctx: &Ctx, run: RunId, event: &RunEvent, acks: &mut Vec<PublishAckFuture>) {
    match ctx.bus.publish_event(run, event).await {
        Ok(ack) => acks.push(ack),
        Err(e) => tracing::warn!(run_id = %run, error = %e, "cannot publish an event"),
    }
}

fn llm_failure(ctx: &Ctx, e: &LlmError, delivered: i64) -> Outcome {
    if !e.is_transient() {
        return Outcome::Fail { code: e.code(), message: e.to_string() };
    }
    if delivered >= ctx.settings.max_attempts {
        return Outcome::Fail {
            code: e.code(),
            message: format!("{e} (gave up after {delivered} attempts)"),
        };
    }
    let delay = backoff(ctx, delivered).max(e.retry_after().unwrap_or_default());
    Outcome::Retry(delay)
}

fn store_failure(ctx: &Ctx, e: StoreError, delivered: i64) -> Outcome {
    tracing::warn!(error = %e, "database failure");
    if e.is_transient() && delivered < ctx.settings.max_attempts {
        Outcome::Retry(backoff(ctx, delivered))
    } else {
        Outcome::Fail { code: "internal_error", message: e.to_string() }
    }
}

/// Exponential backoff with jitter for the `delivered`-th attempt, capped.
fn backoff(ctx: &Ctx, delivered: i64) -> Duration {
    agentyard_bus::consume::backoff(ctx.settings.retry_base, ctx.settings.retry_max, delivered)
}

/// Fails the run, at `step` only when given (None: whatever step it is at).
async fn fail_run(
    ctx: &Ctx,
    run: RunId,
    step: Option<i32>,
    code: &str,
    message: &str,
) -> Result<(), StoreError> {
    let finish = Finish {
        run,
        step,
        from: &["queued", "in_progress"],
        status: RunStatus::Failed,
        output: None,
        usage: None,
        error: Some(RunError { code: code.to_owned(), message: message.to_owned() }),
        message: None,
    };
    let done = ctx.store.finish_run(&finish).await?;
    let _ = ctx.outbox.dispatch(&done.outbox).await;
    Ok(())
}

async fn dead_letter(ctx: &Ctx, msg: &Message, reason: &str) {
    if let Err(e) = ctx.bus.dead_letter("agent", msg.payload.clone(), reason).await {
        tracing::error!(error = %e, "cannot publish to the DLQ");
    }
}

async fn settle(msg: &Message, kind: AckKind) {
    if let Err(e) = msg.ack_with(kind).await {
        tracing::warn!(error = %e, "cannot settle a message; it will be redelivered");
    }
}

/// Waits for JetStream's acks of events sent earlier; failures are logged (events are not
/// state: the run's outcome is in Postgres and its terminal event goes through the outbox).
async fn await_acks(acks: Vec<PublishAckFuture>) {
    for r in join_all(acks.into_iter().map(IntoFuture::into_future)).await {
        if let Err(e) = r {
            tracing::warn!(error = %e, "an event was not acked");
        }
    }
}

/// The model answered with tool calls: store them with their jobs, in one transaction; the
/// tool workers take it from there (this worker never waits for a tool).
async fn store_tool_calls(
    ctx: &Ctx,
    job: &AgentStep,
    completion: agentyard_llm::Completion,
    model: &str,
    delivered: i64,
) -> Outcome {
    use agentyard_store::tools::{BUILTIN_SERVER, NAMESPACE_SEPARATOR, NewCall};
    let calls: Vec<NewCall> = completion
        .tool_calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let arguments = if c.arguments.trim().is_empty() {
                serde_json::json!({})
            } else {
                serde_json::from_str(&c.arguments)
                    .unwrap_or_else(|_| serde_json::json!({ "_raw": c.arguments }))
            };
            let server = c
                .name
                .split_once(NAMESPACE_SEPARATOR)
                .map_or(BUILTIN_SERVER, |(server, _)| server)
                .to_owned();
            NewCall {
                invocation_id: uuid::Uuid::now_v7(),
                call_id: if c.id.is_empty() { format!("call_{i}") } else { c.id.clone() },
                name: c.name.clone(),
                server,
                arguments,
                raw_arguments: c.arguments.clone(),
            }
        })
        .collect();
    let usage = serde_json::to_value(priced(ctx, model, completion.usage)).unwrap_or_default();
    let step = i32::try_from(job.step).unwrap_or(i32::MAX);
    match ctx
        .store
        .tool_step(job.run_id, step, MessageId::new(), &completion.content, &calls, &usage)
        .await
    {
        Ok(t) => {
            if !t.applied {
                tracing::info!(run_id = %job.run_id, "run moved on (cancelled?); tool calls discarded");
            }
            let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
            tracing::info!(run_id = %job.run_id, tools = ?names, "tool calls dispatched");
            let _ = ctx.outbox.dispatch(&t.outbox).await;
            Outcome::Done
        }
        Err(e) => store_failure(ctx, e, delivered),
    }
}

/// Usage with the model alias and its estimated cost.
fn priced(
    ctx: &Ctx,
    model: &str,
    mut usage: agentyard_core::run::Usage,
) -> agentyard_core::run::Usage {
    let cost =
        ctx.catalog.cost(model, u64::from(usage.prompt_tokens), u64::from(usage.completion_tokens));
    usage.cost_usd = Some((cost * 1e8).round() / 1e8);
    usage.model = Some(model.to_owned());
    usage
}

//! One `AgentStep` job: take the run, call the model with streaming (deltas published as they
//! come), then one transaction that completes the run or stores its tool calls. The runner
//! ([`agentyard_bus::runner`]) owns decoding, the span, progress acks, dead letters and settling;
//! this says what each delivery comes to.

use std::future::IntoFuture;
use std::time::Duration;

use agentyard_bus::runner::{GiveUpFailed, Handler, Verdict};
use agentyard_core::events::Event;
use agentyard_core::jobs::{AgentStep, Job, ToolCall};
use agentyard_core::outbox::Fact;
use agentyard_core::run::{RunError, RunOutput, RunStatus, Usage, error_codes};
use agentyard_core::tools::BUILTIN_SERVER;
use agentyard_core::{InvocationId, MessageId, OrgId, RunId};
use agentyard_llm::{ChatRequest, LlmError};
use agentyard_store::StoreError;
use agentyard_store::runs::{Finish, StartedRun};
use async_nats::jetstream::context::PublishAckFuture;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::{Ctx, prompt};

/// At most this many messages are read; the token budget then trims them.
const HISTORY_MESSAGES: i64 = 200;

/// The agent worker's handler.
pub(crate) struct AgentSteps(pub(crate) Ctx);

impl Handler for AgentSteps {
    type Job = AgentStep;
    const KIND: &'static str = "agent_step";

    fn span(&self, job: &AgentStep, delivered: i64) -> tracing::Span {
        tracing::info_span!("agent_step", run_id = %job.run_id, step = job.step, delivered)
    }

    async fn handle(&self, job: &AgentStep, delivered: i64) -> Verdict {
        step(&self.0, job, delivered).await
    }

    async fn give_up(
        &self,
        job: &AgentStep,
        code: &'static str,
        reason: &str,
    ) -> Result<(), GiveUpFailed> {
        let step = Some(step_number(job));
        fail_run(&self.0, job.run_id, step, code, reason)
            .await
            .map_err(|e| GiveUpFailed(agentyard_services::error::cause_chain(&e)))
    }

    async fn keep_alive(&self, job: &AgentStep) {
        if let Err(e) = self.0.store.touch_run(job.run_id, Some(step_number(job))).await {
            tracing::debug!(error = %e, "cannot mark the run as alive");
        }
    }
}

fn step_number(job: &AgentStep) -> i32 {
    i32::try_from(job.step).unwrap_or(i32::MAX)
}

async fn step(ctx: &Ctx, job: &AgentStep, delivered: i64) -> Verdict {
    let started = match ctx.store.start_run(job.run_id, step_number(job), HISTORY_MESSAGES).await {
        Ok(Some(s)) => s,
        Ok(None) if delivered > 1 => return hand_over_unfinished(ctx, job).await,
        Ok(None) => {
            tracing::debug!(run_id = %job.run_id, "stale or duplicate job: skipping");
            return Verdict::Ack;
        }
        Err(e) => return store_failure(ctx, &e, 1),
    };
    let max = u32::try_from(ctx.settings.max_attempts).unwrap_or(u32::MAX);
    if started.attempt > max {
        // Earlier attempts started the model call and never finished (the worker died).
        return Verdict::GiveUp {
            code: error_codes::MAX_DELIVERIES,
            reason: format!(
                "the model call of step {} was started {} times without completing",
                job.step,
                started.attempt - 1
            ),
        };
    }
    let cancel = crate::cancel_token(&ctx.cancels, job.run_id);
    let turn = generate(ctx, job, &started, &cancel).await;
    // Forgotten before the calls run: their result enqueues the next step, which may start in
    // this process and must get a token of its own.
    ctx.cancels.lock().expect("cancel map poisoned").remove(&job.run_id);
    match turn {
        Turn::Done(verdict) => verdict,
        Turn::Calls(completion, model) => {
            store_tool_calls(ctx, job, completion, &model, &started).await
        }
    }
}

/// What a model turn came to.
enum Turn {
    /// Settled: the run ended, or the turn is retried or given up.
    Done(Verdict),
    /// The model called tools (with the agent's model alias): they are stored next.
    Calls(agentyard_llm::Completion, String),
}

async fn generate(
    ctx: &Ctx,
    job: &AgentStep,
    started: &StartedRun,
    cancel: &CancellationToken,
) -> Turn {
    let (run, org) = (job.run_id, started.org_id);
    let mut acks: Vec<PublishAckFuture> = Vec::new();
    if started.first_start {
        let mut shown = started.run.clone();
        shown.status = RunStatus::InProgress;
        publish(ctx, org, run, &Event::RunStarted { run: shown }, &mut acks).await;
    } else if started.attempt > 1 {
        publish(ctx, org, run, &Event::MessageReset {}, &mut acks).await;
    }
    // The agent's overrides come with the run in the statement that started this step, so a
    // changed configuration applies to the next step on every worker, with no cache to go stale.
    let agent =
        ctx.catalog.effective(&started.agent_type, &started.agent_name, &started.agent_config);
    if job.step >= agent.max_steps {
        await_acks(acks).await;
        let message = format!("the run took {} model turns, its agent's max_steps", job.step);
        // Not a job failure: nothing goes to the dead letters.
        return Turn::Done(
            match fail_run(ctx, run, Some(step_number(job)), error_codes::MAX_STEPS, &message).await
            {
                Ok(()) => Verdict::Ack,
                Err(e) => store_failure(ctx, &e, started.attempt),
            },
        );
    }
    let tools = match ctx.tools.offered(&ctx.store, org, &agent.tools_enabled).await {
        Ok(t) => t,
        Err(e) => return Turn::Done(store_failure(ctx, &e, started.attempt)),
    };
    let model = ctx.catalog.models().get(&agent.model);
    let request = ChatRequest {
        messages: prompt::build(
            &agent.system_prompt,
            &started.history,
            prompt::budget(ctx.settings.history_tokens, model, agent.max_tokens),
        ),
        temperature: Some(agent.temperature),
        max_tokens: agent.max_tokens.min(ctx.settings.max_tokens),
        model: model.and_then(|m| m.model.clone()),
        timeout: Some(Duration::from_secs(u64::from(agent.timeout_seconds))),
        tool_choice: (!tools.is_empty()).then_some(agent.tool_choice),
        tools,
    };
    let mut streamed = false;
    let result = tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        r = stream_answer(ctx, org, run, &request, &mut acks, &mut streamed) => Some(r),
    };
    let completion = match result {
        None => {
            await_acks(acks).await;
            return Turn::Done(Verdict::Ack); // the API recorded the cancellation already
        }
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            if streamed {
                publish(ctx, org, run, &Event::MessageReset {}, &mut acks).await;
            }
            await_acks(acks).await;
            return Turn::Done(llm_failure(ctx, &e, started.attempt));
        }
    };
    // Every delta is stored before the run completes, so a replay shows the whole answer.
    await_acks(acks).await;
    if !completion.tool_calls.is_empty() {
        return Turn::Calls(completion, agent.model.clone());
    }
    let content = storable_text(completion.content);
    let finish = Finish {
        run,
        step: Some(step_number(job)),
        // `queued` too: the start's write commits asynchronously and may have been lost.
        from: &[RunStatus::Queued, RunStatus::InProgress],
        status: RunStatus::Completed,
        output: Some(RunOutput { content: content.clone() }),
        usage: Some(priced(ctx, &agent.model, completion.usage)),
        error: None,
        message: Some((MessageId::new(), content)),
    };
    Turn::Done(match ctx.store.finish_run(&finish).await {
        Ok(done) => {
            if !done.applied {
                tracing::info!(run_id = %run, "run moved on (cancelled?); answer discarded");
            }
            let _ = ctx.outbox.dispatch(&done.outbox).await;
            Verdict::Ack
        }
        Err(e) => store_failure(ctx, &e, started.attempt),
    })
}

async fn stream_answer(
    ctx: &Ctx,
    org: OrgId,
    run: RunId,
    request: &ChatRequest,
    acks: &mut Vec<PublishAckFuture>,
    streamed: &mut bool,
) -> Result<agentyard_llm::Completion, LlmError> {
    let mut stream = ctx.llm.stream_chat(request).await?;
    while let Some(delta) = stream.next_delta().await? {
        *streamed = true;
        publish(ctx, org, run, &Event::delta(storable_text(delta)), acks).await;
    }
    stream.finish().await
}

/// Text a model wrote, as Postgres can store it: a NUL character becomes U+FFFD.
fn storable_text(text: String) -> String {
    if text.contains('\0') { text.replace('\0', "\u{FFFD}") } else { text }
}

/// Sends an event without waiting for its ack (the acks are awaited together later).
async fn publish(
    ctx: &Ctx,
    org: OrgId,
    run: RunId,
    event: &Event,
    acks: &mut Vec<PublishAckFuture>,
) {
    match ctx.bus.publish_event(org, run, event).await {
        Ok(ack) => acks.push(ack),
        Err(e) => tracing::warn!(run_id = %run, error = %e, "cannot publish an event"),
    }
}

fn llm_failure(ctx: &Ctx, e: &LlmError, attempt: u32) -> Verdict {
    if !e.is_transient() {
        return Verdict::GiveUp { code: e.code(), reason: e.to_string() };
    }
    if i64::from(attempt) >= ctx.settings.max_attempts {
        return Verdict::GiveUp {
            code: e.code(),
            reason: format!("{e} (gave up after {attempt} attempts)"),
        };
    }
    let delay = backoff(ctx, attempt).max(e.retry_after().unwrap_or_default());
    tracing::warn!(error = %e, attempt, ?delay, "the model call failed; retrying");
    Verdict::Retry(delay)
}

/// A database failure: retried while it is transient (Postgres down or restarting: the job
/// waits for it, however long; the sweeper bounds the run), given up otherwise.
fn store_failure(ctx: &Ctx, e: &StoreError, attempt: u32) -> Verdict {
    let cause = agentyard_services::error::cause_chain(e);
    if e.is_transient() {
        let delay = backoff(ctx, attempt.max(2));
        tracing::warn!(error = %cause, ?delay, "database unavailable; retrying");
        Verdict::Retry(delay)
    } else {
        Verdict::GiveUp { code: error_codes::INTERNAL, reason: cause }
    }
}

/// Exponential backoff with jitter for the `attempt`-th attempt, capped.
fn backoff(ctx: &Ctx, attempt: u32) -> Duration {
    agentyard_bus::runner::backoff(ctx.settings.retry_base, ctx.settings.retry_max, attempt.into())
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
        from: &[RunStatus::Queued, RunStatus::InProgress],
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

/// Waits for JetStream's acks of events sent earlier; failures are logged (events are not
/// state: the run's outcome is in Postgres and its terminal event goes through the outbox).
async fn await_acks(acks: Vec<PublishAckFuture>) {
    for r in join_all(acks.into_iter().map(IntoFuture::into_future)).await {
        if let Err(e) = r {
            tracing::warn!(error = %e, "an event was not acked");
        }
    }
}

/// The model answered with tool calls: store them with their jobs, in one transaction. The
/// built-in calls this worker runs itself, right away (a call to the platform's own tools costs
/// no trip through the queue and no other process); the others go to the tool workers, and
/// this worker never waits for them.
async fn store_tool_calls(
    ctx: &Ctx,
    job: &AgentStep,
    completion: agentyard_llm::Completion,
    model: &str,
    started: &StartedRun,
) -> Verdict {
    use agentyard_store::tools::{NewCall, PendingCall};
    let attempt = started.attempt;
    let calls: Vec<NewCall> = completion
        .tool_calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let raw = storable_text(c.arguments.clone());
            let arguments = if raw.trim().is_empty() {
                serde_json::json!({})
            } else {
                serde_json::from_str::<serde_json::Value>(&raw)
                    .ok()
                    .filter(|v| agentyard_core::storable::check_json("arguments", v).is_ok())
                    .unwrap_or_else(|| serde_json::json!({ "_raw": raw }))
            };
            let server = agentyard_core::tools::server_of(&c.name).to_owned();
            NewCall {
                invocation_id: InvocationId::new(),
                call_id: if c.id.is_empty() {
                    format!("call_{i}")
                } else {
                    storable_text(c.id.clone())
                },
                name: storable_text(c.name.clone()),
                // This worker runs the built-in calls: the turn claims them.
                claimed: server == BUILTIN_SERVER,
                server,
                arguments,
                raw_arguments: raw,
            }
        })
        .collect();
    let usage = serde_json::to_value(priced(ctx, model, completion.usage)).unwrap_or_default();
    let content = storable_text(completion.content);
    match ctx
        .store
        .tool_step(job.run_id, step_number(job), MessageId::new(), &content, &calls, &usage)
        .await
    {
        Ok(t) => {
            if !t.applied {
                tracing::info!(run_id = %job.run_id, "run moved on (cancelled?); tool calls discarded");
                // Another delivery of this job may have stored the turn and be running its
                // built-in calls: this job, acked now, was their only keeper.
                return hand_over_unfinished(ctx, job).await;
            }
            let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
            tracing::info!(run_id = %job.run_id, tools = ?names, "tool calls dispatched");
            let mut rows = t.outbox;
            let step = step_number(job);
            let claimed: Vec<PendingCall> = (calls.iter().filter(|c| c.claimed))
                .map(|c| PendingCall::claimed_by_turn(started, step, c))
                .collect();
            let ids: Vec<InvocationId> = claimed.iter().map(|c| c.id).collect();
            keep_back(&mut rows, &ids);
            // The built-in calls start, and the other facts go out while they run: each call's
            // `created` event is sent long before its result.
            let (ran, _) = futures::future::join(
                join_all(claimed.into_iter().map(|c| ctx.builtin.run(c))),
                ctx.outbox.dispatch(&rows),
            )
            .await;
            // A call that did not end here (a retry or a give-up is due) goes to a tool worker.
            let left: Vec<InvocationId> =
                ids.into_iter().zip(ran).filter(|(_, done)| !done).map(|(id, _)| id).collect();
            if left.is_empty() {
                return Verdict::Ack;
            }
            hand_over(ctx, job.run_id, &left, attempt).await
        }
        Err(e) => store_failure(ctx, &e, attempt),
    }
}

/// Takes the jobs of the calls `builtin` out of `rows` (the rows' other facts are published
/// without them): this worker runs those calls itself. Should it die before they end, the job
/// it is running comes back ([`hand_over_unfinished`]).
fn keep_back(rows: &mut [agentyard_store::OutboxRow], builtin: &[InvocationId]) {
    for row in rows {
        row.facts.retain(|f| {
            !matches!(f, Fact::Job { job: Job::ToolCall(c) } if builtin.contains(&c.invocation_id))
        });
    }
}

/// Sends the jobs of `run`'s calls `calls` (first round), which this worker did not end, to
/// the tool workers; when NATS cannot take them, this job is retried and hands them over then
/// ([`hand_over_unfinished`]).
async fn hand_over(ctx: &Ctx, run: RunId, calls: &[InvocationId], attempt: u32) -> Verdict {
    let jobs: Vec<Fact> =
        calls.iter().map(|&id| Fact::Job { job: Job::ToolCall(ToolCall::new(id, run)) }).collect();
    match ctx.outbox.publish_now(&jobs).await {
        Ok(()) => {
            tracing::info!(run_id = %run, calls = jobs.len(), "built-in calls handed to the tool workers");
            Verdict::Ack
        }
        Err(e) => {
            let delay = backoff(ctx, attempt.max(2));
            tracing::warn!(run_id = %run, error = %e, ?delay, "cannot hand built-in calls over; retrying");
            Verdict::Retry(delay)
        }
    }
}

/// A step job delivered again found its step stored: the worker that ran it stored the model's
/// calls and may have died running the built-in ones, whose jobs it never sent. Those still
/// pending go to the tool workers now (a job sent twice within the stream's dedupe window is
/// stored once; a built-in call run twice writes once, its writes being idempotent per call).
async fn hand_over_unfinished(ctx: &Ctx, job: &AgentStep) -> Verdict {
    let calls = match ctx.store.unfinished_builtin_calls(job.run_id, step_number(job)).await {
        Ok(c) => c,
        Err(e) => return store_failure(ctx, &e, 2),
    };
    if calls.is_empty() {
        tracing::debug!(run_id = %job.run_id, "stale or duplicate job: skipping");
        return Verdict::Ack;
    }
    hand_over(ctx, job.run_id, &calls, 2).await
}

/// Usage with the model alias and its estimated cost.
fn priced(ctx: &Ctx, model: &str, mut usage: Usage) -> Usage {
    let cost =
        ctx.catalog.cost(model, u64::from(usage.prompt_tokens), u64::from(usage.completion_tokens));
    usage.cost_usd = Some((cost * 1e8).round() / 1e8);
    usage.model = Some(model.to_owned());
    usage
}

//! Reading a streamed completion: content deltas (coalesced when several chunks are already
//! buffered, so a fast model does not cost one event per token), tool calls accumulated by
//! index, and usage.

use std::time::{Duration, Instant};

use agentyard_core::run::Usage;
use async_openai::types::chat::{CreateChatCompletionStreamResponse, FinishReason};
use async_openai::types::stream::StreamResponse;
use futures::{FutureExt, StreamExt};

use crate::LlmError;

/// A tool call the model asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text, as the model wrote it.
    pub arguments: String,
}

/// The whole answer once the stream ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub finish_reason: Option<String>,
}

/// A completion being streamed.
pub struct ChatStream {
    inner: StreamResponse<CreateChatCompletionStreamResponse>,
    timeout: Duration,
    prompt_chars: usize,
    content: String,
    tool_calls: Vec<ToolCall>,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    ended: bool,
    call: CallMetrics,
    /// The call's trace span (see [`crate::Llm::stream_chat`]); it ends with the stream.
    span: tracing::Span,
}

/// One model call as the GenAI metrics see it: recorded once, when it ends (or fails).
#[derive(Debug)]
pub(crate) struct CallMetrics {
    provider: &'static str,
    request_model: String,
    response_model: String,
    started: Instant,
    first_chunk: bool,
    recorded: bool,
}

impl CallMetrics {
    pub(crate) fn start(provider: &'static str, request_model: &str) -> Self {
        Self {
            provider,
            request_model: request_model.to_owned(),
            response_model: String::new(),
            started: Instant::now(),
            first_chunk: false,
            recorded: false,
        }
    }

    fn labels(&self) -> agentyard_metrics::GenAiCall<'_> {
        agentyard_metrics::GenAiCall {
            provider: self.provider,
            request_model: &self.request_model,
            response_model: &self.response_model,
        }
    }

    fn chunk(&mut self, model: &str) {
        if self.response_model.is_empty() && !model.is_empty() {
            model.clone_into(&mut self.response_model);
        }
        if !self.first_chunk {
            self.first_chunk = true;
            self.labels().first_chunk(self.started.elapsed().as_secs_f64());
        }
    }

    /// Records the failure (once) and hands the error back.
    pub(crate) fn failed(mut self, e: LlmError) -> LlmError {
        self.fail(&e);
        e
    }

    fn fail(&mut self, e: &LlmError) {
        if !std::mem::replace(&mut self.recorded, true) {
            let seconds = self.started.elapsed().as_secs_f64();
            self.labels().ended(Some(&e.error_type()), seconds);
        }
    }

    fn succeeded(&mut self, usage: &Usage) {
        if !std::mem::replace(&mut self.recorded, true) {
            let labels = self.labels();
            labels.ended(None, self.started.elapsed().as_secs_f64());
            labels.tokens(u64::from(usage.prompt_tokens), u64::from(usage.completion_tokens));
        }
    }
}

/// A call given up before its end (the run was cancelled) counts as failed with `cancelled`.
impl Drop for CallMetrics {
    fn drop(&mut self) {
        if !self.recorded {
            self.recorded = true;
            self.labels().ended(Some("cancelled"), self.started.elapsed().as_secs_f64());
        }
    }
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream").field("content_len", &self.content.len()).finish()
    }
}

impl ChatStream {
    pub(crate) fn new(
        inner: StreamResponse<CreateChatCompletionStreamResponse>,
        timeout: Duration,
        prompt_chars: usize,
        call: CallMetrics,
        span: tracing::Span,
    ) -> Self {
        Self {
            inner,
            timeout,
            prompt_chars,
            content: String::new(),
            tool_calls: Vec::new(),
            usage: None,
            finish_reason: None,
            ended: false,
            call,
            span,
        }
    }

    /// The next piece of content: every chunk that is ready now, joined. None at the end.
    ///
    /// # Errors
    /// When the stream breaks or stalls longer than the timeout.
    pub async fn next_delta(&mut self) -> Result<Option<String>, LlmError> {
        let next = self.read_delta().await;
        if let Err(e) = &next {
            self.call.fail(e);
        }
        next
    }

    async fn read_delta(&mut self) -> Result<Option<String>, LlmError> {
        let mut delta = String::new();
        while !self.ended {
            let chunk = if delta.is_empty() {
                match tokio::time::timeout(self.timeout, self.inner.next()).await {
                    Ok(c) => c,
                    Err(_) => return Err(failed(&self.span, LlmError::Timeout(self.timeout))),
                }
            } else {
                match self.inner.next().now_or_never() {
                    Some(c) => c,
                    None => break,
                }
            };
            match chunk {
                None => self.ended = true,
                Some(Err(e)) => return Err(failed(&self.span, LlmError::from_openai(e))),
                Some(Ok(chunk)) => self.absorb(chunk, &mut delta),
            }
        }
        Ok((!delta.is_empty()).then_some(delta))
    }

    fn absorb(&mut self, chunk: CreateChatCompletionStreamResponse, delta: &mut String) {
        self.call.chunk(&chunk.model);
        if self.content.is_empty() && self.tool_calls.is_empty() && !self.span.is_disabled() {
            self.span.record("gen_ai.response.model", chunk.model.as_str());
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                total_tokens: u.total_tokens,
                estimated: false,
                ..Usage::default()
            });
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(text) = choice.delta.content {
                delta.push_str(&text);
                self.content.push_str(&text);
            }
            for tc in choice.delta.tool_calls.unwrap_or_default() {
                let i = tc.index as usize;
                if self.tool_calls.len() <= i {
                    self.tool_calls.resize_with(i + 1, ToolCall::default);
                }
                let call = &mut self.tool_calls[i];
                // Some servers repeat id and name on every chunk: set, never append.
                if let Some(id) = tc.id.filter(|s| !s.is_empty()) {
                    call.id = id;
                }
                if let Some(f) = tc.function {
                    if let Some(name) = f.name.filter(|s| !s.is_empty()) {
                        call.name = name;
                    }
                    if let Some(args) = f.arguments {
                        call.arguments.push_str(&args);
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(finish_name(reason).to_owned());
            }
        }
    }

    /// Drains what is left and returns the whole answer. Usage is estimated (4 characters a
    /// token, `estimated: true`) when the server reported none.
    ///
    /// # Errors
    /// As [`ChatStream::next_delta`]; [`LlmError::Incomplete`] when the stream ended without a
    /// finish reason (a server that cut the answer off or sent an empty stream).
    pub async fn finish(mut self) -> Result<Completion, LlmError> {
        while self.next_delta().await?.is_some() {}
        if self.finish_reason.is_none() {
            let e = LlmError::Incomplete(self.content.len());
            self.call.fail(&e);
            return Err(failed(&self.span, e));
        }
        let usage = self.usage.unwrap_or_else(|| {
            let prompt = estimate_tokens(self.prompt_chars);
            let completion = estimate_tokens(self.content.len());
            Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
                estimated: true,
                ..Usage::default()
            }
        });
        self.call.succeeded(&usage);
        self.span.record("gen_ai.usage.input_tokens", usage.prompt_tokens);
        self.span.record("gen_ai.usage.output_tokens", usage.completion_tokens);
        self.span.record("gen_ai.response.finish_reasons", self.finish_reason.as_deref());
        Ok(Completion {
            content: self.content,
            tool_calls: self.tool_calls,
            usage,
            finish_reason: self.finish_reason,
        })
    }
}

/// Marks the call's span failed with the error's type (an HTTP status, else the kind).
pub(crate) fn failed(span: &tracing::Span, e: LlmError) -> LlmError {
    if !span.is_disabled() {
        let kind = match &e {
            LlmError::Status { status, .. } => status.to_string(),
            LlmError::Timeout(_) => "timeout".into(),
            LlmError::Connect(_) => "connect".into(),
            LlmError::Stream(_) => "stream".into(),
            LlmError::Protocol(_) => "protocol".into(),
            LlmError::Incomplete(_) => "incomplete".into(),
        };
        span.record("error.type", kind);
    }
    e
}

fn estimate_tokens(chars: usize) -> u32 {
    u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX)
}

fn finish_name(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::FunctionCall => "function_call",
    }
}

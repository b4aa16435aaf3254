//! The model client: any OpenAI-compatible Chat Completions endpoint through async-openai, with
//! streaming, tool-call accumulation, usage (estimated when the server sends none) and errors
//! classified for retry.
//!
//! Compatibility with self-hosted servers (llama.cpp, vLLM, Ollama): we send `max_tokens`
//! (some ignore `max_completion_tokens`), send `content: ""` on assistant messages that carry
//! tool calls, accept tool-call chunks that repeat `id` and `name`, and estimate usage when none
//! is reported.

pub mod error;
pub mod provider;
mod stream;

use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestToolMessage, ChatCompletionRequestUserMessage,
    ChatCompletionStreamOptions, ChatCompletionTool, ChatCompletionToolChoiceOption,
    ChatCompletionTools, CreateChatCompletionRequest, FunctionCall, FunctionObject,
    ToolChoiceOptions,
};

pub use error::{HttpStatusError, LlmError};
pub use provider::{Provider, ProviderKind};
pub use stream::{ChatStream, Completion, ToolCall};

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    /// Parses a stored role name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "system" => Some(Self::System),
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            "tool" => Some(Self::Tool),
            _ => None,
        }
    }
}

/// One message of the conversation sent to the model.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// Calls an assistant message made.
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool message answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A plain message.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }
}

/// A tool offered to the model.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

/// One model call.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f32>,
    pub max_tokens: u32,
    /// The model to ask for; None: the provider's.
    pub model: Option<String>,
    /// Tools the model may call.
    pub tools: Vec<ToolDef>,
    /// Whether it must, may or must not call one (None: the server's default).
    pub tool_choice: Option<agentyard_core::tools::ToolChoice>,
    /// Bounds this call's wait for the response and for each chunk; None, or longer than the
    /// client's timeout (`AY_LLM_TIMEOUT`): the client's.
    pub timeout: Option<Duration>,
}

/// What a model server said when asked for its models.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelCheck {
    /// It answered HTTP.
    pub reachable: bool,
    /// It lists the model and accepts the key; None when it cannot say (no model list).
    pub available: Option<bool>,
    /// What is wrong, when something is.
    pub problem: Option<String>,
}

impl ModelCheck {
    fn unreachable(problem: String) -> Self {
        Self { reachable: false, available: None, problem: Some(problem) }
    }
}

/// A configured model endpoint.
#[derive(Clone, Debug)]
pub struct Llm {
    client: async_openai::Client<OpenAIConfig>,
    http: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    model: String,
    timeout: Duration,
    /// `gen_ai.provider.name` of this endpoint's metrics and spans.
    provider_name: &'static str,
}

impl Llm {
    /// A client of `provider`; `timeout` bounds the wait for the response and for each chunk.
    pub fn new(provider: &Provider, timeout: Duration) -> Self {
        // HTTPS needs a process-wide rustls provider; the tree ships only `ring`.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = OpenAIConfig::new().with_api_base(provider.base_url.clone());
        if let Some(key) = &provider.api_key {
            config = config.with_api_key(key.clone());
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .connect_timeout(timeout)
            .build()
            .unwrap_or_default();
        let inner = http.clone();
        let service = tower::service_fn(move |factory: HttpRequestFactory| {
            let http = inner.clone();
            async move { execute(http, factory, timeout).await }
        });
        let client = async_openai::Client::with_config(config).with_http_service(service);
        Self {
            client,
            http,
            base_url: provider.base_url.clone(),
            api_key: provider.api_key.clone(),
            model: provider.model.clone(),
            timeout,
            provider_name: provider.kind.gen_ai_name(),
        }
    }

    /// Asks the model server for its models (`GET /models`, within `wait`): whether it
    /// answers, whether it accepts the key, and whether it lists `model` (the one sent with
    /// every request when None).
    pub async fn check(&self, model: Option<&str>, wait: Duration) -> ModelCheck {
        let model = model.unwrap_or(&self.model);
        let url = format!("{}/models", self.base_url.trim_end_matches('/'));
        let mut req = self.http.get(&url);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = match tokio::time::timeout(wait, req.send()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return ModelCheck::unreachable(format!("cannot reach {url}: {e}")),
            Err(_) => {
                return ModelCheck::unreachable(format!("{url} did not answer within {wait:?}"));
            }
        };
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return ModelCheck {
                reachable: true,
                available: Some(false),
                problem: Some(format!("the model server refused the API key ({status})")),
            };
        }
        if !status.is_success() {
            // Some servers have no model list: reachable, availability unknown.
            return ModelCheck { reachable: true, available: None, problem: None };
        }
        let body: serde_json::Value = match tokio::time::timeout(wait, resp.json()).await {
            Ok(Ok(b)) => b,
            _ => return ModelCheck { reachable: true, available: None, problem: None },
        };
        let ids: Vec<&str> = body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str())
            .collect();
        if ids.contains(&model) {
            return ModelCheck { reachable: true, available: Some(true), problem: None };
        }
        ModelCheck {
            reachable: true,
            available: Some(false),
            problem: Some(format!(
                "the model server does not list the model `{model}` (it lists: {})",
                ids.iter().take(20).copied().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// The model name sent with every request.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Starts a streaming completion. Read it with [`ChatStream::next_delta`].
    ///
    /// # Errors
    /// When the server refuses or cannot be reached (see [`LlmError::is_transient`]).
    pub async fn stream_chat(&self, req: &ChatRequest) -> Result<ChatStream, LlmError> {
        let prompt_chars = req.messages.iter().map(|m| m.content.len()).sum();
        let body = self.request(req);
        let call = stream::CallMetrics::start(self.provider_name, &body.model);
        // The call's trace span (GenAI semantic conventions), open until the stream is dropped;
        // disabled at its call site while traces are off.
        let span = tracing::trace_span!("chat",
            otel.name = %format_args!("chat {}", body.model),
            otel.kind = "client",
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = self.provider_name,
            gen_ai.request.model = %body.model,
            gen_ai.request.max_tokens = req.max_tokens,
            gen_ai.response.model = tracing::field::Empty,
            gen_ai.response.finish_reasons = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let chat = self.client.chat();
        let timeout = req.timeout.map_or(self.timeout, |t| t.min(self.timeout));
        let inner = match tokio::time::timeout(timeout, chat.create_stream(body)).await {
            Ok(Ok(inner)) => inner,
            Ok(Err(e)) => {
                return Err(stream::failed(&span, call.failed(LlmError::from_openai(e))));
            }
            Err(_) => return Err(stream::failed(&span, call.failed(LlmError::Timeout(timeout)))),
        };
        Ok(ChatStream::new(inner, timeout, prompt_chars, call, span))
    }

    #[allow(deprecated)] // `max_tokens`: deprecated by OpenAI, the one self-hosted servers read
    fn request(&self, req: &ChatRequest) -> CreateChatCompletionRequest {
        CreateChatCompletionRequest {
            model: req.model.clone().unwrap_or_else(|| self.model.clone()),
            messages: req.messages.iter().map(to_openai).collect(),
            stream: Some(true),
            stream_options: Some(ChatCompletionStreamOptions {
                include_usage: Some(true),
                include_obfuscation: None,
            }),
            max_tokens: Some(req.max_tokens),
            temperature: req.temperature,
            tools: (!req.tools.is_empty()).then(|| {
                req.tools
                    .iter()
                    .map(|t| {
                        ChatCompletionTools::Function(ChatCompletionTool {
                            function: FunctionObject {
                                name: t.name.clone(),
                                description: t.description.clone(),
                                parameters: Some(t.parameters.clone()),
                                strict: None,
                            },
                        })
                    })
                    .collect()
            }),
            tool_choice: req.tool_choice.map(|c| {
                use agentyard_core::tools::ToolChoice;
                ChatCompletionToolChoiceOption::Mode(match c {
                    ToolChoice::Auto => ToolChoiceOptions::Auto,
                    ToolChoice::Required => ToolChoiceOptions::Required,
                    ToolChoice::None => ToolChoiceOptions::None,
                })
            }),
            ..Default::default()
        }
    }
}

/// Sends the request and turns every non-2xx answer into an [`HttpStatusError`] carrying the
/// status, `Retry-After` and body, which async-openai's own error would drop.
async fn execute(
    http: reqwest::Client,
    factory: HttpRequestFactory,
    timeout: Duration,
) -> Result<reqwest::Response, OpenAIError> {
    let request = factory.build().await?;
    let response = http.execute(request).await.map_err(OpenAIError::Reqwest)?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)));
    let body = match tokio::time::timeout(timeout, response.text()).await {
        Ok(Ok(b)) => b.chars().take(500).collect(),
        _ => String::new(),
    };
    Err(OpenAIError::Boxed(Box::new(HttpStatusError {
        status: status.as_u16(),
        retry_after,
        body,
    })))
}

fn to_openai(m: &ChatMessage) -> ChatCompletionRequestMessage {
    match m.role {
        Role::System => ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
            content: m.content.clone().into(),
            name: None,
        }),
        Role::User => ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
            content: m.content.clone().into(),
            name: None,
        }),
        Role::Assistant => {
            let tool_calls = (!m.tool_calls.is_empty()).then(|| {
                m.tool_calls
                    .iter()
                    .map(|c| {
                        ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                            id: c.id.clone(),
                            function: FunctionCall {
                                name: c.name.clone(),
                                arguments: c.arguments.clone(),
                            },
                        })
                    })
                    .collect()
            });
            // Some servers reject an assistant message without `content`: always send it.
            #[allow(deprecated)]
            ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content: Some(ChatCompletionRequestAssistantMessageContent::Text(
                    m.content.clone(),
                )),
                tool_calls,
                ..Default::default()
            })
        }
        Role::Tool => ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
            content: m.content.clone().into(),
            tool_call_id: m.tool_call_id.clone().unwrap_or_default(),
        }),
    }
}

//! The MCP client: connects to a server over streamable HTTP (optionally with a bearer token)
//! or stdio (a child process), lists its tools and calls them. It declares elicitation; when a
//! server asks for input during a call (a server-to-client `elicitation/create` up to protocol
//! 2025-11-25, an input-required result from 2026-07-28 on; rmcp drives both), the request goes
//! to an [`InputBroker`] and its answer back to the server.
//!
//! When given a [`Sampler`], it also declares sampling and answers a server's
//! `sampling/createMessage` with the client's model.
//!
//! A [`SharedSession`] keeps one session open for every call of the process to a server in the
//! same process (the built-in tools in a worker), each call carrying its own token.
//!
//! Also: the operator's `config/mcp-servers.yaml` ([`ConfigServers`]) and the checks on URLs
//! organizations register ([`check_url`]).

mod config;
mod pool;
mod session;
mod url_check;

use std::collections::HashMap;
use std::sync::Mutex;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rmcp::model::{
    CallToolRequestParams, ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction,
    ElicitationCapability, FormElicitationCapability, SamplingCapability,
};
// Sampling is deprecated by SEP-2577 (protocol 2026-07-28) but servers still ask for it.
#[allow(deprecated)]
use rmcp::model::{CreateMessageRequestParams, CreateMessageResult, SamplingMessage};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::common::client_side_sse::SseRetryPolicy;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde::{Deserialize, Serialize};

pub use config::{ConfigServers, ServerConfig, valid_name};
pub use pool::Pool;
pub use session::{CALL_TOKEN_META, INVOCATION_META, LocalEnds, SharedSession, take_call_token};
pub use url_check::{TenantResolver, check_literal, check_url, special_purpose};

/// A tool as a server lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    pub input_schema: serde_json::Value,
}

/// What a human answered to an elicitation.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Accept(serde_json::Value),
    Decline,
    Cancel,
}

/// Takes an elicitation (`message`, the requested JSON Schema) to a human and returns the answer.
pub trait InputBroker: Send + Sync + 'static {
    fn elicit(&self, message: String, schema: serde_json::Value) -> BoxFuture<'static, Answer>;
}

/// Answers a server's sampling requests (`sampling/createMessage`: "ask your model") with the
/// client's own model. Returns (the model's name, its text).
pub trait Sampler: Send + Sync + 'static {
    fn sample(
        &self,
        system: Option<String>,
        prompt: String,
        max_tokens: u32,
    ) -> BoxFuture<'static, Result<(String, String), String>>;
}

/// What a call returned.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// The text contents joined (other contents as JSON).
    pub text: String,
    pub is_error: bool,
}

/// Why a call or a listing failed.
#[derive(Debug)]
pub enum McpError {
    /// The server could not be reached, broke the connection or timed out: worth retrying.
    Unreachable(String),
    /// The server answered with a protocol error (unknown tool, bad arguments, ...).
    Refused(String),
    /// The server is up but cannot serve the call now and says so: a protocol error whose
    /// `data` holds `"retry": true` (the built-in server's database is down). The call did
    /// not run; worth retrying.
    Unavailable(String),
}

impl std::fmt::Display for McpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(m) => write!(f, "server unreachable: {m}"),
            Self::Refused(m) => write!(f, "server refused the call: {m}"),
            Self::Unavailable(m) => write!(f, "server unavailable: {m}"),
        }
    }
}

impl std::error::Error for McpError {}

/// Who answers a server's elicitations: the one call of a session opened for it; on a
/// [`SharedSession`], the call the request names in its `_meta` ([`INVOCATION_META`]); on a
/// [`Pool`]ed connection, the call it serves now.
enum Brokers {
    One(Option<Arc<dyn InputBroker>>),
    ByCall(Arc<Mutex<HashMap<String, Arc<dyn InputBroker>>>>),
    Slot(Arc<Mutex<Option<Arc<dyn InputBroker>>>>),
}

impl Brokers {
    fn of(&self, meta: &rmcp::model::RequestMetaObject) -> Option<Arc<dyn InputBroker>> {
        match self {
            Self::One(broker) => broker.clone(),
            Self::Slot(slot) => slot.lock().expect("slot poisoned").clone(),
            Self::ByCall(calls) => {
                let call = meta.get(INVOCATION_META)?.as_str()?;
                calls.lock().expect("brokers poisoned").get(call).cloned()
            }
        }
    }
}

struct Handler {
    brokers: Brokers,
    sampler: Option<Arc<dyn Sampler>>,
    info: ClientConfig,
}

#[allow(deprecated)] // create_message: sampling, see the imports
impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let Some(sampler) = &self.sampler else {
            return Err(ErrorData::invalid_request("this client does not sample", None));
        };
        // The messages' text, in order (sampling asks one question; roles are kept as labels
        // when there are several).
        let texts: Vec<String> = params
            .messages
            .iter()
            .map(|m| {
                let v = serde_json::to_value(&m.content).unwrap_or_default();
                let blocks =
                    if v.is_array() { v.as_array().cloned().unwrap_or_default() } else { vec![v] };
                blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        let prompt = texts.join("\n\n");
        let max_tokens = params.max_tokens.clamp(1, 4096);
        match sampler.sample(params.system_prompt.clone(), prompt, max_tokens).await {
            Ok((model, text)) => {
                let mut result =
                    CreateMessageResult::new(SamplingMessage::assistant_text(text), model);
                result.stop_reason = Some("endTurn".into());
                Ok(result)
            }
            Err(e) => Err(ErrorData::internal_error(format!("the model failed: {e}"), None)),
        }
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let ElicitRequestParams::FormElicitationParams { meta, message, requested_schema } =
            request
        else {
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        // rmcp hands a request's `_meta` over in its context (the params keep it in an
        // input-required round).
        let Some(broker) = self.brokers.of(meta.as_ref().unwrap_or(&context.meta)) else {
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        let schema = serde_json::to_value(&requested_schema).unwrap_or_default();
        Ok(match broker.elicit(message, schema).await {
            Answer::Accept(content) => {
                ElicitResult::new(ElicitationAction::Accept).with_content(content)
            }
            Answer::Decline => ElicitResult::new(ElicitationAction::Decline),
            Answer::Cancel => ElicitResult::new(ElicitationAction::Cancel),
        })
    }
}

/// A connection to one server.
pub struct Client {
    service: RunningService<RoleClient, Handler>,
}

/// The HTTP client of connections made on an organization's behalf (its registered servers):
/// every name is resolved again at connection and special-purpose addresses are refused
/// (unless `allow_private`), and redirects are never followed. One per setting per process.
pub fn tenant_http(allow_private: bool) -> reqwest::Client {
    static STRICT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    static PRIVATE: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let cell = if allow_private { &PRIVATE } else { &STRICT };
    cell.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(256)
            .dns_resolver(Arc::new(TenantResolver { allow_private }))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
    .clone()
}

/// One HTTP client for every connection of the process: building one (TLS roots, pools) costs
/// milliseconds, more than a call on loopback. Timeouts are enforced around each use.
fn http() -> reqwest::Client {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(256)
            .build()
            .unwrap_or_default()
    })
    .clone()
}

/// How a call's broken response stream (the server died mid-answer) is resumed: three quick
/// tries (0.2, 0.4, 0.8 s), then the call fails and the tool worker retries it whole (each call
/// is idempotent per invocation). rmcp's default retries forever with doubling waits, so such a
/// call hung until the tool timeout (30 s) even when the server was back in a second.
#[derive(Debug)]
struct ResumeBriefly;

impl SseRetryPolicy for ResumeBriefly {
    fn retry(&self, tries: usize) -> Option<Duration> {
        (tries < 3).then(|| Duration::from_millis(200 << tries))
    }
}

/// Streamable HTTP to `url` through `client`, with the bearer token and our trace context.
fn http_transport(
    client: reqwest::Client,
    url: &str,
    bearer_token: Option<&str>,
) -> StreamableHttpClientTransport<reqwest::Client> {
    StreamableHttpClientTransport::with_client(client, http_config(url, bearer_token))
}

/// The transport settings for `url`: the bearer token, [`ResumeBriefly`], and our trace context
/// on every request (the connection serves one call).
fn http_config(url: &str, bearer_token: Option<&str>) -> StreamableHttpClientTransportConfig {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url);
    config.retry_config = Arc::new(ResumeBriefly);
    if let Some(t) = bearer_token {
        config = config.auth_header(t.to_owned());
    }
    // The server continues our trace (the tool call's span).
    if let Some(tp) = agentyard_otel::current_traceparent()
        && let Ok(value) = tp.parse()
    {
        let name = reqwest::header::HeaderName::from_static("traceparent");
        config = config.custom_headers([(name, value)].into());
    }
    config
}

fn handler(brokers: Brokers, sampler: Option<Arc<dyn Sampler>>) -> Handler {
    let mut info = ClientConfig::default();
    info.capabilities.elicitation =
        Some(ElicitationCapability::new().with_form(FormElicitationCapability::default()));
    if sampler.is_some() {
        #[allow(deprecated)] // SEP-2577 deprecates sampling; servers still use it and we answer
        {
            info.capabilities.sampling = Some(SamplingCapability::default());
        }
    }
    info.client_info.name = "agentyard".into();
    info.client_info.version = env!("CARGO_PKG_VERSION").into();
    Handler { brokers, sampler, info }
}

impl Client {
    /// Connects to `server` within `timeout`.
    ///
    /// # Errors
    /// [`McpError::Unreachable`] when it cannot be started or reached.
    pub async fn connect(
        server: &ServerConfig,
        broker: Option<Arc<dyn InputBroker>>,
        sampler: Option<Arc<dyn Sampler>>,
        timeout: Duration,
    ) -> Result<Self, McpError> {
        Self::open(server, Brokers::One(broker), sampler, timeout).await
    }

    async fn open(
        server: &ServerConfig,
        brokers: Brokers,
        sampler: Option<Arc<dyn Sampler>>,
        timeout: Duration,
    ) -> Result<Self, McpError> {
        let handler = handler(brokers, sampler);
        let unreachable = |e: &dyn std::fmt::Display| McpError::Unreachable(e.to_string());
        let connecting = async {
            match server {
                ServerConfig::Http { url, bearer_token } => {
                    let transport = http_transport(http(), url, bearer_token.as_deref());
                    handler.serve(transport).await.map_err(|e| unreachable(&e))
                }
                ServerConfig::Registered { url, bearer_token, allow_private } => {
                    check_literal(url, *allow_private).map_err(McpError::Unreachable)?;
                    let client = tenant_http(*allow_private);
                    let transport = http_transport(client, url, bearer_token.as_deref());
                    handler.serve(transport).await.map_err(|e| unreachable(&e))
                }
                ServerConfig::Stdio { command, args, env } => {
                    let mut cmd = tokio::process::Command::new(command);
                    cmd.args(args).envs(env).stderr(std::process::Stdio::null());
                    // Stdio has no headers: the environment carries the trace context.
                    if let Some(tp) = agentyard_otel::current_traceparent() {
                        cmd.env("TRACEPARENT", tp);
                    }
                    let transport = TokioChildProcess::new(cmd).map_err(|e| unreachable(&e))?;
                    handler.serve(transport).await.map_err(|e| unreachable(&e))
                }
            }
        };
        let service = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| McpError::Unreachable(format!("no answer within {timeout:?}")))??;
        Ok(Self { service })
    }

    /// Every tool the server lists.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn list_tools(&self) -> Result<Vec<Tool>, McpError> {
        let tools = self.service.peer().list_all_tools().await.map_err(classify)?;
        Ok(tools
            .into_iter()
            .map(|t| Tool {
                name: t.name.to_string(),
                description: t.description.map(|d| d.to_string()),
                input_schema: serde_json::Value::Object((*t.input_schema).clone()),
            })
            .collect())
    }

    /// Calls `tool` with `arguments` (a JSON object), answering the server's input requests
    /// through the broker.
    ///
    /// # Errors
    /// [`McpError::Unreachable`] for transport failures, [`McpError::Unavailable`] for a
    /// protocol error that asks for a retry, [`McpError::Refused`] for the other protocol
    /// errors.
    pub async fn call(
        &self,
        tool: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Output, McpError> {
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = Some(arguments);
        self.call_params(params).await
    }

    pub(crate) async fn call_params(
        &self,
        params: CallToolRequestParams,
    ) -> Result<Output, McpError> {
        let result = self.service.call_tool(params).await.map_err(classify)?;
        let text = result
            .content
            .iter()
            .map(|c| content_text(&serde_json::to_value(c).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n");
        let text = if text.is_empty() {
            result.structured_content.map(|s| s.to_string()).unwrap_or_default()
        } else {
            text
        };
        Ok(Output { text, is_error: result.is_error.unwrap_or(false) })
    }

    /// Closes the connection (and stops a stdio server).
    pub async fn close(self) {
        let _ = self.service.cancel().await;
    }
}

/// A call's parameters, with our trace context in its `_meta` (SEP-414) for a connection that
/// outlives the call (so no header or environment of its own carries it).
pub(crate) fn call_params_with_trace(
    tool: &str,
    arguments: serde_json::Map<String, serde_json::Value>,
) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    params.arguments = Some(arguments);
    if let Some(tp) = agentyard_otel::current_traceparent() {
        let mut meta = rmcp::model::MetaObject::default();
        meta.insert("traceparent".into(), tp.into());
        params.meta = Some(rmcp::model::RequestMetaObject(meta));
    }
    params
}

/// One content block as the model sees it: text as it is; images, audio and binary resources
/// described (kind, type, size), never pasted as base64, which would fill the model's context
/// with noise.
fn content_text(v: &serde_json::Value) -> String {
    let decoded = |data: &str| {
        let data = data.trim_end();
        let pad = data.bytes().rev().take_while(|b| *b == b'=').count();
        (data.len() / 4 * 3).saturating_sub(pad)
    };
    match v["type"].as_str() {
        Some("text") => v["text"].as_str().unwrap_or_default().to_owned(),
        Some(kind @ ("image" | "audio")) => format!(
            "[{kind}: {}, {} bytes]",
            v["mimeType"].as_str().unwrap_or("unknown type"),
            v["data"].as_str().map_or(0, decoded)
        ),
        Some("resource") => {
            let r = &v["resource"];
            match (r["text"].as_str(), r["blob"].as_str()) {
                (Some(text), _) => text.to_owned(),
                (None, Some(blob)) => format!(
                    "[resource {}: {}, {} bytes]",
                    r["uri"].as_str().unwrap_or("?"),
                    r["mimeType"].as_str().unwrap_or("unknown type"),
                    decoded(blob)
                ),
                (None, None) => r.to_string(),
            }
        }
        Some("resource_link") => format!("[resource {}]", v["uri"].as_str().unwrap_or("?")),
        _ => v.to_string(),
    }
}

fn classify(e: rmcp::ServiceError) -> McpError {
    match e {
        rmcp::ServiceError::McpError(e)
            if e.data
                .as_ref()
                .and_then(|d| d.get("retry"))
                .and_then(serde_json::Value::as_bool)
                == Some(true) =>
        {
            McpError::Unavailable(e.message.to_string())
        }
        rmcp::ServiceError::McpError(e) => McpError::Refused(e.message.to_string()),
        other => McpError::Unreachable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::content_text;

    #[test]
    fn a_broken_answer_stream_is_resumed_briefly_then_given_up() {
        use super::{Duration, ResumeBriefly, SseRetryPolicy};
        let waits: Vec<Option<Duration>> = (0..4).map(|n| ResumeBriefly.retry(n)).collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(waits, [ms(200), ms(400), ms(800), None], "1.4 s in all, not forever");
    }

    #[test]
    fn a_protocol_error_asking_for_a_retry_is_unavailable_not_refused() {
        let err = |data| {
            rmcp::ServiceError::McpError(rmcp::ErrorData::internal_error("database down", data))
        };
        let retry = super::classify(err(Some(json!({"retry": true}))));
        assert!(matches!(retry, super::McpError::Unavailable(ref m) if m == "database down"));
        assert!(matches!(super::classify(err(None)), super::McpError::Refused(_)));
        let no = super::classify(err(Some(json!({"retry": false}))));
        assert!(matches!(no, super::McpError::Refused(_)));
    }

    #[test]
    fn binary_content_is_described_not_pasted() {
        assert_eq!(content_text(&json!({"type": "text", "text": "hi"})), "hi");
        let png = json!({"type": "image", "mimeType": "image/png", "data": "aGVsbG8="});
        assert_eq!(content_text(&png), "[image: image/png, 5 bytes]");
        let blob = json!({"type": "resource", "resource": {"uri": "file:///a", "mimeType": "application/pdf", "blob": "AAAA"}});
        assert_eq!(content_text(&blob), "[resource file:///a: application/pdf, 3 bytes]");
        let text = json!({"type": "resource", "resource": {"uri": "file:///a", "text": "body"}});
        assert_eq!(content_text(&text), "body");
    }
}

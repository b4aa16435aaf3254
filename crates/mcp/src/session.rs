//! One MCP session kept open for many calls ([`SharedSession`]), for a server that authorizes
//! each HTTP request on its own (the built-in server: a tool token per call). Opening a session
//! costs `initialize`, `notifications/initialized` and, at the end, `DELETE`: more round trips
//! than the call itself on loopback.
//!
//! How each call keeps its own identity on a shared session: the session is opened with a
//! session token (which can call nothing by itself), and each call carries its own token in
//! its `_meta` under [`CALL_TOKEN_META`]; the transport ([`PerCallAuth`]) takes it out of the
//! message and sends it as that request's `Authorization` header. Calls run concurrently on
//! the session, each as its own HTTP request.
//!
//! How a server's question reaches the right call: the server names the call in its
//! elicitation request's `_meta` ([`INVOCATION_META`]), and the session's handler answers
//! through the broker registered under that name for the duration of the call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage, RequestMetaObject};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};

use crate::{
    Brokers, Client, InputBroker, McpError, Output, Sampler, call_params_with_trace, handler,
    http_config,
};

/// The `_meta` key of a call's own bearer token on a shared session (taken out before sending).
pub const CALL_TOKEN_META: &str = "agentyard.dev/authorization";

/// The `_meta` key by which a server's elicitation request names the call it belongs to (the
/// built-in server sets it to the invocation id its tool token names).
pub const INVOCATION_META: &str = "agentyard.dev/invocation_id";

/// Streamable HTTP over `reqwest`, with a call's own token (from its `_meta`) as the bearer of
/// that call's request; every other request uses the session's.
#[derive(Clone)]
pub(crate) struct PerCallAuth(pub(crate) reqwest::Client);

/// The call token a message carries, taken out of it, and the call's trace context (its
/// `_meta.traceparent`, also sent as the request's `traceparent` header, which the server's
/// HTTP span continues).
fn take_call_token(message: &mut ClientJsonRpcMessage) -> (Option<String>, Option<HeaderValue>) {
    let JsonRpcMessage::Request(request) = message else { return (None, None) };
    let ClientRequest::CallToolRequest(call) = &mut request.request else { return (None, None) };
    let Some(meta) = call.params.meta.as_mut() else { return (None, None) };
    let trace = meta.get("traceparent").and_then(|t| t.as_str()).and_then(|t| t.parse().ok());
    let token = match meta.remove(CALL_TOKEN_META) {
        Some(serde_json::Value::String(token)) => Some(token),
        _ => None,
    };
    (token, trace)
}

/// The call's token as the bearer (else the session's) and its trace context as a header.
fn per_call(
    message: &mut ClientJsonRpcMessage,
    auth_header: Option<String>,
    mut custom_headers: HashMap<HeaderName, HeaderValue>,
) -> (Option<String>, HashMap<HeaderName, HeaderValue>) {
    let (token, trace) = take_call_token(message);
    if let Some(tp) = trace {
        custom_headers.insert(HeaderName::from_static("traceparent"), tp);
    }
    (token.or(auth_header), custom_headers)
}

impl StreamableHttpClient for PerCallAuth {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        mut message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let (auth, headers) = per_call(&mut message, auth_header, custom_headers);
        self.0.post_message(uri, message, session_id, auth, headers).await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        mut message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let (auth, headers) = per_call(&mut message, auth_header, custom_headers);
        self.0
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth,
                headers,
                max_sse_event_size,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.0.delete_session(uri, session_id, auth_header, custom_headers).await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<
        futures::stream::BoxStream<'static, Result<sse_stream::Sse, sse_stream::Error>>,
        StreamableHttpError<Self::Error>,
    > {
        self.0.get_stream(uri, session_id, last_event_id, auth_header, custom_headers).await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<
        futures::stream::BoxStream<'static, Result<sse_stream::Sse, sse_stream::Error>>,
        StreamableHttpError<Self::Error>,
    > {
        self.0
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}

/// An open session and what it needs to route its server's questions.
struct Open {
    client: Client,
    brokers: Arc<Mutex<HashMap<String, Arc<dyn InputBroker>>>>,
    opened: Instant,
}

/// One session to `url`, opened on first use and again after it broke or aged past `max_age`
/// (its session token expires); calls share it concurrently.
pub struct SharedSession {
    url: String,
    sampler: Option<Arc<dyn Sampler>>,
    /// Mints the session's token (valid longer than `max_age` plus a call's timeout).
    session_token: Box<dyn Fn() -> String + Send + Sync>,
    max_age: Duration,
    open: tokio::sync::Mutex<Option<Arc<Open>>>,
}

impl SharedSession {
    pub fn new(
        url: &str,
        sampler: Option<Arc<dyn Sampler>>,
        max_age: Duration,
        session_token: impl Fn() -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            url: url.to_owned(),
            sampler,
            session_token: Box::new(session_token),
            max_age,
            open: tokio::sync::Mutex::new(None),
        }
    }

    /// The open session, opened within `timeout` when there is none (or it aged).
    async fn session(&self, timeout: Duration) -> Result<Arc<Open>, McpError> {
        let mut open = self.open.lock().await;
        if let Some(o) = open.as_ref().filter(|o| o.opened.elapsed() < self.max_age) {
            return Ok(o.clone());
        }
        let brokers = Arc::new(Mutex::new(HashMap::new()));
        let handler = handler(Brokers::ByCall(brokers.clone()), self.sampler.clone());
        let token = (self.session_token)();
        // On a task of its own, outside the calling span: the session outlives the call (its
        // tasks would keep the call's span open, so never exported) and belongs to no call's
        // trace.
        let config = http_config(&self.url, Some(&token), false);
        let opening = tokio::spawn(async move {
            let transport =
                StreamableHttpClientTransport::with_client(PerCallAuth(crate::http()), config);
            handler.serve(transport).await
        });
        let service = tokio::time::timeout(timeout, opening)
            .await
            .map_err(|_| McpError::Unreachable(format!("no answer within {timeout:?}")))?
            .map_err(|e| McpError::Unreachable(e.to_string()))?
            .map_err(|e| McpError::Unreachable(e.to_string()))?;
        let fresh = Arc::new(Open { client: Client { service }, brokers, opened: Instant::now() });
        // The one it replaces ends once its last call has (when its last Arc goes).
        *open = Some(fresh.clone());
        Ok(fresh)
    }

    /// Calls `tool` as the holder of `token`, answering the server's questions about
    /// `invocation` through `broker`, within `timeout`. A broken session is dropped, so the
    /// next call opens another.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn call(
        &self,
        token: &str,
        invocation: &str,
        broker: Arc<dyn InputBroker>,
        tool: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
        timeout: Duration,
    ) -> Result<Output, McpError> {
        let open = self.session(timeout).await?;
        let registered = Registered::new(&open.brokers, invocation, broker);
        let mut params = call_params_with_trace(tool, arguments);
        let meta = params.meta.get_or_insert_with(RequestMetaObject::default);
        meta.insert(CALL_TOKEN_META.into(), token.into());
        let out = match tokio::time::timeout(timeout, open.client.call_params(params)).await {
            Ok(r) => r,
            Err(_) => Err(McpError::Unreachable(format!("no answer within {timeout:?}"))),
        };
        drop(registered);
        if matches!(out, Err(McpError::Unreachable(_))) {
            self.drop_session(&open).await;
        }
        out
    }

    /// Forgets `broken` if it is still the open session.
    async fn drop_session(&self, broken: &Arc<Open>) {
        let mut open = self.open.lock().await;
        if open.as_ref().is_some_and(|o| Arc::ptr_eq(o, broken)) {
            *open = None;
        }
    }
}

/// A call's broker, registered under its invocation while the call runs.
struct Registered<'a> {
    brokers: &'a Mutex<HashMap<String, Arc<dyn InputBroker>>>,
    key: String,
}

impl<'a> Registered<'a> {
    fn new(
        brokers: &'a Mutex<HashMap<String, Arc<dyn InputBroker>>>,
        key: &str,
        broker: Arc<dyn InputBroker>,
    ) -> Self {
        brokers.lock().expect("brokers poisoned").insert(key.to_owned(), broker);
        Self { brokers, key: key.to_owned() }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.brokers.lock().expect("brokers poisoned").remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{
        CallToolRequestParams, ClientJsonRpcMessage, JsonRpcRequest, MetaObject, NumberOrString,
        RequestId,
    };

    use super::*;

    fn call_message(meta: Option<RequestMetaObject>) -> ClientJsonRpcMessage {
        let mut params = CallToolRequestParams::new("add_task");
        params.meta = meta;
        let request = ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(params));
        JsonRpcMessage::Request(JsonRpcRequest::new(
            RequestId::from(NumberOrString::Number(1)),
            request,
        ))
    }

    #[test]
    fn a_calls_token_leaves_its_body_for_its_authorization_header() {
        let mut meta = MetaObject::default();
        meta.insert(CALL_TOKEN_META.into(), "ayt.call".into());
        meta.insert("traceparent".into(), "00-x".into());
        let mut message = call_message(Some(RequestMetaObject(meta)));
        let (auth, headers) = per_call(&mut message, Some("session".into()), HashMap::new());
        assert_eq!(auth.as_deref(), Some("ayt.call"));
        assert_eq!(headers[&HeaderName::from_static("traceparent")], "00-x");
        let body = serde_json::to_value(&message).unwrap();
        assert_eq!(body["params"]["_meta"], serde_json::json!({"traceparent": "00-x"}));
        // Taken once; a message without one keeps the session's.
        assert_eq!(
            per_call(&mut message, Some("session".into()), HashMap::new()).0.as_deref(),
            Some("session")
        );
        assert_eq!(take_call_token(&mut call_message(None)), (None, None));
    }
}

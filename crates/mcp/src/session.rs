//! One MCP session kept open for every call of a process ([`SharedSession`]), to a server in the
//! same process (the built-in tools in a worker): its two ends are channels of messages
//! ([`LocalEnds`]), so a call costs no HTTP request, no socket and no JSON encoding.
//!
//! How each call keeps its own identity on the shared session: each call carries its own token
//! in its `_meta` under [`CALL_TOKEN_META`]; the server's end takes it out
//! ([`take_call_token`]) and verifies it before the call reaches a tool, so a tool sees the
//! claims of its own call only, as it would over HTTP with the token as the bearer. Calls run
//! concurrently on the session.
//!
//! How a server's question reaches the right call: the server names the call in its
//! elicitation request's `_meta` ([`INVOCATION_META`]), and the session's handler answers
//! through the broker registered under that name for the duration of the call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, ClientJsonRpcMessage, ClientRequest, JsonRpcMessage, RequestMetaObject,
    ServerJsonRpcMessage,
};

use crate::{Brokers, Client, InputBroker, McpError, Output, Sampler, Tool, handler};

/// The `_meta` key of a call's own token on a shared session (taken out by the server's end).
pub const CALL_TOKEN_META: &str = "agentyard.dev/authorization";

/// The `_meta` key by which a server's elicitation request names the call it belongs to (the
/// built-in server sets it to the invocation id its tool token names).
pub const INVOCATION_META: &str = "agentyard.dev/invocation_id";

/// A client's ends of a session to a server in the same process: its messages to the server,
/// the server's messages to it.
pub type LocalEnds =
    (UnboundedSender<ClientJsonRpcMessage>, UnboundedReceiver<ServerJsonRpcMessage>);

/// The call token a tool call's message carries, taken out of it.
pub fn take_call_token(message: &mut ClientJsonRpcMessage) -> Option<String> {
    let JsonRpcMessage::Request(request) = message else { return None };
    let ClientRequest::CallToolRequest(call) = &mut request.request else { return None };
    match call.params.meta.as_mut()?.remove(CALL_TOKEN_META) {
        Some(serde_json::Value::String(token)) => Some(token),
        _ => None,
    }
}

/// An open session and what it needs to route its server's questions.
struct Open {
    client: Client,
    brokers: Arc<Mutex<HashMap<String, Arc<dyn InputBroker>>>>,
}

/// One session to a server in this process, opened on first use and again after it broke;
/// calls share it concurrently.
pub struct SharedSession {
    /// Starts a session of the server and hands over the client's ends.
    connect: Box<dyn Fn() -> LocalEnds + Send + Sync>,
    sampler: Option<Arc<dyn Sampler>>,
    open: tokio::sync::Mutex<Option<Arc<Open>>>,
}

impl SharedSession {
    pub fn new(
        connect: impl Fn() -> LocalEnds + Send + Sync + 'static,
        sampler: Option<Arc<dyn Sampler>>,
    ) -> Self {
        Self { connect: Box::new(connect), sampler, open: tokio::sync::Mutex::new(None) }
    }

    /// The open session, opened within `timeout` when there is none.
    async fn session(&self, timeout: Duration) -> Result<Arc<Open>, McpError> {
        let mut open = self.open.lock().await;
        if let Some(o) = open.as_ref() {
            return Ok(o.clone());
        }
        let brokers = Arc::new(Mutex::new(HashMap::new()));
        let handler = handler(Brokers::ByCall(brokers.clone()), self.sampler.clone());
        let ends = (self.connect)();
        // On a task of its own, outside the calling span: the session outlives the call (its
        // tasks would keep the call's span open, so never exported) and belongs to no call's
        // trace.
        let opening = tokio::spawn(async move { handler.serve(ends).await });
        let service = tokio::time::timeout(timeout, opening)
            .await
            .map_err(|_| McpError::Unreachable(format!("no answer within {timeout:?}")))?
            .map_err(|e| McpError::Unreachable(e.to_string()))?
            .map_err(|e| McpError::Unreachable(e.to_string()))?;
        let fresh = Arc::new(Open { client: Client { service }, brokers });
        *open = Some(fresh.clone());
        Ok(fresh)
    }

    /// Every tool the server lists.
    ///
    /// # Errors
    /// As [`Client::list_tools`].
    pub async fn list_tools(&self, timeout: Duration) -> Result<Vec<Tool>, McpError> {
        let open = self.session(timeout).await?;
        match tokio::time::timeout(timeout, open.client.list_tools()).await {
            Ok(r) => r,
            Err(_) => Err(McpError::Unreachable(format!("no answer within {timeout:?}"))),
        }
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
        // Only the token goes in `_meta`: the server runs in this process, and the call's trace
        // span is the caller's own (`execute_tool`).
        let mut meta = rmcp::model::MetaObject::default();
        meta.insert(CALL_TOKEN_META.into(), token.into());
        let mut params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        params.meta = Some(RequestMetaObject(meta));
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
    fn a_calls_token_is_taken_out_of_its_meta_once() {
        let mut meta = MetaObject::default();
        meta.insert(CALL_TOKEN_META.into(), "ayt.call".into());
        meta.insert("traceparent".into(), "00-x".into());
        let mut message = call_message(Some(RequestMetaObject(meta)));
        assert_eq!(take_call_token(&mut message).as_deref(), Some("ayt.call"));
        let body = serde_json::to_value(&message).unwrap();
        assert_eq!(body["params"]["_meta"], serde_json::json!({"traceparent": "00-x"}));
        assert_eq!(take_call_token(&mut message), None);
        assert_eq!(take_call_token(&mut call_message(None)), None);
    }
}

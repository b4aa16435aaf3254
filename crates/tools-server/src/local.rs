//! The built-in tools served in the caller's own process: a worker (agent or tool) calls them on one MCP
//! session whose two ends are channels of messages ([`agentyard_mcp::LocalEnds`]), with no HTTP
//! request, socket or JSON encoding in between.
//!
//! Authorization is the same as over HTTP: every tool call carries the tool token of its run's
//! call (in its `_meta`, see [`agentyard_mcp::CALL_TOKEN_META`]); this end takes it out,
//! verifies its signature, and hands its claims to the tool the way [`crate::auth`] does (in
//! the request's `Parts`). A call without a valid token reaches its tool without claims, and
//! the tool refuses it.

use std::sync::Arc;

use agentyard_mcp::LocalEnds;
use agentyard_store::tool_tokens;
use futures::StreamExt;
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};

use crate::ToolServer;

impl ToolServer {
    /// Opens sessions of this server in this process: each call of the returned function
    /// starts one (on a task of its own, which ends with the session) and returns the client's
    /// ends. `key` verifies the calls' tool tokens.
    pub fn in_process(self, key: Arc<Vec<u8>>) -> impl Fn() -> LocalEnds + Send + Sync + 'static {
        move || {
            let (to_server, from_client) = futures::channel::mpsc::unbounded();
            let (to_client, from_server) = futures::channel::mpsc::unbounded();
            let key = key.clone();
            let requests = from_client.map(move |m| authorize(&key, m));
            let server = self.clone();
            tokio::spawn(async move {
                match server.serve((to_client, requests)).await {
                    Ok(running) => {
                        let _ = running.waiting().await;
                    }
                    Err(e) => tracing::warn!(error = %e, "an in-process tool session did not open"),
                }
            });
            (to_server, from_server)
        }
    }
}

/// A tool call's message with its token taken out and, when the token is valid, its claims
/// where the tools read them.
fn authorize(key: &[u8], mut message: ClientJsonRpcMessage) -> ClientJsonRpcMessage {
    let claims = agentyard_mcp::take_call_token(&mut message)
        .and_then(|token| tool_tokens::verify(key, &token));
    if let (Some(claims), JsonRpcMessage::Request(request)) = (claims, &mut message)
        && let ClientRequest::CallToolRequest(call) = &mut request.request
    {
        let (mut parts, ()) = axum::http::Request::new(()).into_parts();
        parts.extensions.insert(claims);
        call.extensions.insert(parts);
    }
    message
}

#[cfg(test)]
mod tests {
    use rmcp::model::{
        CallToolRequestParams, JsonRpcRequest, MetaObject, NumberOrString, RequestId,
        RequestMetaObject,
    };

    use axum::http::request::Parts;

    use super::*;

    fn call(token: Option<&str>) -> ClientJsonRpcMessage {
        let mut params = CallToolRequestParams::new("list_tasks");
        if let Some(t) = token {
            let mut meta = MetaObject::default();
            meta.insert(agentyard_mcp::CALL_TOKEN_META.into(), t.into());
            params.meta = Some(RequestMetaObject(meta));
        }
        let request = ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(params));
        JsonRpcMessage::Request(JsonRpcRequest::new(
            RequestId::from(NumberOrString::Number(1)),
            request,
        ))
    }

    fn claims_of(message: &ClientJsonRpcMessage) -> Option<tool_tokens::ToolClaims> {
        let JsonRpcMessage::Request(r) = message else { return None };
        let ClientRequest::CallToolRequest(c) = &r.request else { return None };
        c.extensions.get::<Parts>()?.extensions.get::<tool_tokens::ToolClaims>().cloned()
    }

    #[test]
    fn only_a_call_with_a_valid_token_gets_its_claims() {
        let key = b"0123456789abcdef0123456789abcdef".to_vec();
        let claims = tool_tokens::ToolClaims {
            exp: chrono::Utc::now().timestamp() + 60,
            ..tool_tokens::ToolClaims::listing()
        };
        let good = tool_tokens::mint(&key, &claims);
        let got = claims_of(&authorize(&key, call(Some(&good)))).expect("claims");
        assert_eq!(got.invocation_id, claims.invocation_id);
        let forged = tool_tokens::mint(b"another key, not the platform's!", &claims);
        assert!(claims_of(&authorize(&key, call(Some(&forged)))).is_none());
        assert!(claims_of(&authorize(&key, call(Some("ayt.garbage")))).is_none());
        assert!(claims_of(&authorize(&key, call(None))).is_none());
        let expired = tool_tokens::ToolClaims { exp: chrono::Utc::now().timestamp() - 1, ..claims };
        assert!(
            claims_of(&authorize(&key, call(Some(&tool_tokens::mint(&key, &expired))))).is_none()
        );
    }
}

//! Who calls: every request to `/mcp` must carry `Authorization: Bearer <tool token>`, a token
//! a tool worker minted for one tool call (`agentyard_store::tool_tokens`). Anything else is
//! 401 with the API's JSON error shape.
//!
//! How the claims reach a tool: [`require_token`] verifies the token and puts its claims in
//! the HTTP request's extensions; rmcp's streamable HTTP service hands every MCP request the
//! HTTP request's parts (`http::request::Parts`) in its `RequestContext` extensions; the
//! [`Caller`] extractor takes the claims from there. So a tool sees the claims of the very
//! HTTP request that carried its call, also inside a long-lived MCP session.

use agentyard_core::Scope;
use std::sync::Arc;

use agentyard_store::Store;
use agentyard_store::tool_tokens::{self, ToolClaims};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::ErrorData;
use rmcp::handler::server::common::{AsRequestContext, FromContextPart};
use tokio::sync::OnceCell;

use crate::reply::ToolError;

/// Reading needs this scope.
pub(crate) const READ: Scope = Scope::RunsRead;
/// Changing data needs this scope.
pub(crate) const WRITE: Scope = Scope::RunsWrite;

/// The platform's token key, read from Postgres on the first request (it never changes).
pub(crate) struct Keys {
    store: Store,
    key: OnceCell<Vec<u8>>,
}

impl Keys {
    pub(crate) fn new(store: Store) -> Self {
        Self { store, key: OnceCell::new() }
    }

    async fn key(&self) -> Result<&[u8], agentyard_store::StoreError> {
        self.key.get_or_try_init(|| self.store.tool_token_key()).await.map(Vec::as_slice)
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Lets a request through with its tool claims in its extensions, or answers 401.
pub(crate) async fn require_token(
    State(keys): State<Arc<Keys>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(header) = request.headers().get(header::AUTHORIZATION) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "send the header Authorization: Bearer <tool token>",
        );
    };
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim);
    let key = match keys.key().await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the tool token key");
            return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "database unavailable");
        }
    };
    match token.and_then(|t| tool_tokens::verify(key, t)) {
        Some(claims) => {
            request.extensions_mut().insert(claims);
            next.run(request).await
        }
        None => error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the tool token is malformed, forged or expired",
        ),
    }
}

/// The claims of the request that carried the tool call.
#[derive(Clone, Debug)]
pub(crate) struct Caller(pub(crate) ToolClaims);

impl Caller {
    /// The claims, when the token holds `scope`.
    ///
    /// # Errors
    /// A tool error naming the missing scope.
    pub(crate) fn require(&self, scope: Scope) -> Result<&ToolClaims, ToolError> {
        if self.0.has_scope(scope) { Ok(&self.0) } else { Err(ToolError::MissingScope(scope)) }
    }
}

impl<C: AsRequestContext> FromContextPart<C> for Caller {
    fn from_context_part(context: &mut C) -> Result<Self, ErrorData> {
        let parts = context.as_request_context().extensions.get::<Parts>();
        parts.and_then(|p| p.extensions.get::<ToolClaims>()).cloned().map(Self).ok_or_else(|| {
            // Only a router without `require_token` in front gets here: a bug, not a client error.
            ErrorData::internal_error("the request carries no tool claims", None)
        })
    }
}

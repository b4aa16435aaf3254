//! Who calls: every request to `/mcp` carries `Authorization: Bearer <token>`, either
//! - a tool token a tool worker minted for one tool call of a run
//!   (`agentyard_store::tool_tokens`, `ayt.…`): verified by its signature, no database read; or
//! - a user's API token (the one the `/v1` API takes): looked up on every request, so a revoked
//!   or expired token stops working at once. Failed lookups are limited per client address as
//!   in the API (`AY_AUTH_FAILURE_RATE`, `AY_AUTH_FAILURE_BURST`: over them, 429 before any
//!   lookup; a token that authenticated lately is not held back). The request then gets [`ToolClaims::direct`]
//!   claims (the token's org, user and scopes, no run, a fresh invocation id) and a [`Direct`]
//!   marker, by which the server records the call in the tool audit log itself.
//!
//! Anything else is 401 with the API's JSON error shape and `WWW-Authenticate: Bearer
//! resource_metadata="…"` pointing at the protected-resource metadata (RFC 9728, see
//! [`crate::metadata`]), as MCP clients expect.
//!
//! How the claims reach a tool: [`require_token`] puts them in the HTTP request's extensions;
//! rmcp's streamable HTTP service hands every MCP request the HTTP request's parts
//! (`http::request::Parts`) in its `RequestContext` extensions; the [`Caller`] extractor takes
//! the claims from there. So a tool sees the claims of the very HTTP request that carried its
//! call, also inside a long-lived MCP session.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use agentyard_core::{Scope, TokenId};
use agentyard_runtime::limit::{RateLimiter, Recent};
use agentyard_store::Store;
use agentyard_store::tool_tokens::{self, ToolClaims};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::ErrorData;
use rmcp::handler::server::common::{AsRequestContext, FromContextPart};
use tokio::sync::OnceCell;

use crate::metadata;
use crate::reply::ToolError;

/// Reading needs this scope.
pub(crate) const READ: Scope = Scope::RunsRead;
/// Changing data needs this scope.
pub(crate) const WRITE: Scope = Scope::RunsWrite;

/// The prefix of tool tokens; API tokens never start with it (they start with `ay_`).
const TOOL_TOKEN_PREFIX: &str = "ayt.";

/// The platform's token key, read from Postgres on the first request (it never changes), the
/// store API tokens are looked up in, and the budget of failed API-token lookups per client
/// address (as in the API: over it, 429 before any lookup).
pub(crate) struct Keys {
    store: Store,
    key: OnceCell<Vec<u8>>,
    failures: RateLimiter<IpAddr>,
    /// API tokens (by SHA-256) that authenticated lately: an address's failures never hold
    /// them back, so a neighbour guessing tokens cannot lock a client out.
    valid: Recent<Vec<u8>>,
}

/// How long a token that authenticated passes an address's exhausted failure budget.
const VALID_TTL: Duration = Duration::from_secs(600);

impl Keys {
    pub(crate) fn new(store: Store, failures: RateLimiter<IpAddr>) -> Self {
        Self { store, key: OnceCell::new(), failures, valid: Recent::new(VALID_TTL) }
    }

    async fn key(&self) -> Result<&[u8], agentyard_store::StoreError> {
        self.key.get_or_try_init(|| self.store.tool_token_key()).await.map(Vec::as_slice)
    }
}

/// Marks a request authenticated with an API token (no run behind it): the server records its
/// tool calls in the audit log under this token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Direct {
    pub(crate) token_id: TokenId,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// 401 with the challenge MCP clients read: where the protected-resource metadata is, and
/// (RFC 6750) `error="invalid_token"` when a token was sent but is not valid.
fn unauthorized(headers: &HeaderMap, code: &str, message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, code, message);
    let mut challenge = format!("Bearer resource_metadata=\"{}\"", metadata::url(headers));
    if code == "invalid_token" {
        challenge.push_str(", error=\"invalid_token\"");
    }
    let value = HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer"));
    response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    response
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer(value: &HeaderValue) -> Option<&str> {
    value.to_str().ok().and_then(agentyard_runtime::http::bearer_token)
}

/// Lets a request through with its claims in its extensions, or answers 401 (503 when the
/// database does not answer).
pub(crate) async fn require_token(
    State(keys): State<Arc<Keys>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return unauthorized(
            request.headers(),
            "missing_token",
            "send the header Authorization: Bearer <API token>",
        );
    };
    let token = bearer(value).map(str::to_owned);
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let found = match token.as_deref() {
        Some(t) if t.starts_with(TOOL_TOKEN_PREFIX) => tool_token(&keys, t).await,
        Some(t) => {
            let hash = agentyard_store::orgs::token_hash(t);
            if let Some(ip) = peer
                && !keys.valid.contains(&hash)
                && let Err(wait) = keys.failures.peek(ip)
            {
                return too_many_failures(wait);
            }
            let found = api_token(&keys, t).await;
            match (&found, peer) {
                (Ok(Some(_)), _) => keys.valid.insert(hash),
                (Ok(None), Some(ip)) => {
                    let _ = keys.failures.check(ip);
                }
                _ => {}
            }
            found
        }
        None => Ok(None),
    };
    match found {
        Ok(Some((claims, direct))) => {
            request.extensions_mut().insert(claims);
            if let Some(direct) = direct {
                request.extensions_mut().insert(direct);
            }
            next.run(request).await
        }
        Ok(None) => unauthorized(
            request.headers(),
            "invalid_token",
            "the token is malformed, unknown, expired or revoked",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot authenticate: the database does not answer");
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "database unavailable")
        }
    }
}

/// 429 for an address over its budget of failed lookups.
fn too_many_failures(wait: Duration) -> Response {
    let message = format!(
        "too many failed authentications from this address; retry after {} ms",
        wait.as_millis()
    );
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", &message);
    let secs = HeaderValue::from(wait.as_secs_f64().ceil() as u64);
    response.headers_mut().insert(header::RETRY_AFTER, secs);
    response
}

type Authenticated = Option<(ToolClaims, Option<Direct>)>;

async fn tool_token(
    keys: &Keys,
    token: &str,
) -> Result<Authenticated, agentyard_store::StoreError> {
    let key = keys.key().await?;
    Ok(tool_tokens::verify(key, token).map(|claims| (claims, None)))
}

async fn api_token(keys: &Keys, token: &str) -> Result<Authenticated, agentyard_store::StoreError> {
    let principal = keys.store.authenticate(token).await?;
    Ok(principal.map(|p| (ToolClaims::direct(&p), Some(Direct { token_id: p.token_id }))))
}

/// The claims and the [`Direct`] marker of the HTTP request behind an MCP request, if any.
pub(crate) fn direct(parts: Option<&Parts>) -> Option<(ToolClaims, Direct)> {
    let parts = parts?;
    let direct = *parts.extensions.get::<Direct>()?;
    parts.extensions.get::<ToolClaims>().cloned().map(|c| (c, direct))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case_and_an_empty_token_is_none() {
        let token = |v: &'static str| bearer(&HeaderValue::from_static(v)).map(str::to_owned);
        assert_eq!(token("Bearer ay_1").as_deref(), Some("ay_1"));
        assert_eq!(token("BEARER ay_1").as_deref(), Some("ay_1"));
        assert_eq!(token("bearer  ayt.x.y ").as_deref(), Some("ayt.x.y"));
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Basic abc"), None);
        assert_eq!(token("ay_1"), None);
    }
}

//! The built-in MCP tool server: an organization's tasks, support tickets and integrations,
//! the platform's health, and demo business data (customers, messages to them, monthly
//! revenue, reports) for the workflow templates, as MCP tools over streamable HTTP at `/mcp`.
//!
//! Every request carries `Authorization: Bearer <token>`: a tool token (see
//! [`agentyard_store::tool_tokens`]) with the claims of the run that calls the tool, or a
//! user's API token, whose org, user and scopes become the claims of an MCP client's call
//! without a run. A tool acts as the claims and only them: it reads and writes the claims'
//! organization only, needs `runs:read` to read and `runs:write` to write, and a write is
//! idempotent per the claims' invocation id.
//!
//! Layout:
//! - `auth`: the bearer-token middleware (401 otherwise) and the `Caller` extractor that hands
//!   the claims to a tool.
//! - `metadata`: the protected-resource metadata (RFC 9728) MCP clients discover.
//! - `direct`: calls made with an API token: the tools their token may call, their audit log.
//! - `args`: tool arguments, parsed so that a bad one is a tool error naming its field.
//! - `reply`: tool results (a sentence plus the data as JSON), errors, idempotent writes.
//! - `tasks`, `tickets`, `integrations`, `system`, `customers`, `messages`, `revenue`,
//!   `reports`: the tools, one group per file.
//! - `data`: the demo business data's rows, reads and writes (tasks, tickets and integrations
//!   are the store's).
//! - `local`: the tools served in the caller's process (a worker's), on channels.
//! - `elicit`: asking the user for a missing value, the way the negotiated protocol does it.
//! - `classify`: a ticket's category and priority from its text.

mod args;
mod auth;
mod classify;
mod customers;
mod data;
mod direct;
mod elicit;
mod integrations;
mod local;
mod messages;
mod metadata;
mod reply;
mod reports;
mod revenue;
mod sample;
mod system;
mod tasks;
mod tickets;

use std::net::IpAddr;
use std::sync::Arc;

use agentyard_bus::Bus;
use agentyard_runtime::limit::RateLimiter;
use agentyard_store::Store;
use axum::Router;
use axum::http::request::Parts;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ResultType, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, tool_handler};
use tokio_util::sync::CancellationToken;

/// What the server tells clients about itself.
const INSTRUCTIONS: &str = "Tools of the agentyard platform: the organization's to-do tasks, \
    support tickets and integrations, the platform's health, and demo business data: \
    customers, messages to them (recorded, never delivered), monthly revenue and reports. \
    Every tool acts for the user of the run that calls it (or whose API token the client \
    sends), inside that user's organization.";

/// The MCP server: one instance per MCP session, all sharing the store, the bus and the
/// tools.
#[derive(Clone)]
pub struct ToolServer {
    store: Store,
    bus: Bus,
    tools: Arc<ToolRouter<ToolServer>>,
}

impl ToolServer {
    /// A server of every built-in tool.
    pub fn new(store: Store, bus: Bus) -> Self {
        Self { store, bus, tools: Arc::new(Self::all_tools()) }
    }

    fn all_tools() -> ToolRouter<Self> {
        Self::task_tools()
            + Self::ticket_tools()
            + Self::integration_tools()
            + Self::system_tools()
            + Self::customer_tools()
            + Self::message_tools()
            + Self::revenue_tools()
            + Self::report_tools()
    }
}

#[tool_handler(router = self.tools)]
impl ServerHandler for ToolServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agentyard", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS.to_owned())
    }

    /// Every tool for a tool worker; for an API token, those its scopes allow.
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let cache_hints =
            context.protocol_version().is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        let direct = auth::direct(context.extensions.get::<Parts>());
        let (tools, scope) = match &direct {
            Some((claims, _)) => {
                (direct::allowed(claims, self.tools.list_all()), CacheScope::Private)
            }
            None => (self.tools.list_all(), CacheScope::Public),
        };
        Ok(ListToolsResult {
            result_type: Some(ResultType::COMPLETE),
            tools,
            meta: None,
            next_cursor: None,
            ttl_ms: cache_hints.then_some(0),
            cache_scope: cache_hints.then_some(scope),
        })
    }

    /// A run's call as it is; an API token's call recorded in the audit log.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match auth::direct(context.extensions.get::<Parts>()) {
            Some(direct) => self.call_direct(direct, request, context).await,
            None => self.tools.call(ToolCallContext::new(self, request, context)).await,
        }
    }
}

/// `/mcp` (and the protected-resource metadata MCP clients discover, RFC 9728) on a router of
/// its own, for `axum::serve` or to merge into another router.
/// Sessions live until the process ends; [`serve`] ends them on shutdown.
pub fn router(store: Store, bus: Bus, auth_failures: RateLimiter<IpAddr>) -> Router {
    build(store, bus, auth_failures, CancellationToken::new())
}

fn build(
    store: Store,
    bus: Bus,
    auth_failures: RateLimiter<IpAddr>,
    shutdown: CancellationToken,
) -> Router {
    let keys = Arc::new(auth::Keys::new(store.clone(), auth_failures));
    let server = ToolServer::new(store, bus);
    // The Host check guards unauthenticated local servers against DNS rebinding. Every request
    // here must carry a token (a signed tool token or an API token), which a rebinding page
    // cannot have, and compose and remote workers reach the server under host names we cannot
    // know in advance.
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown)
        .disable_allowed_hosts();
    let mcp = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let well_known = format!("{}{}", metadata::WELL_KNOWN, metadata::ENDPOINT);
    Router::new()
        .route_service(metadata::ENDPOINT, mcp)
        .route_layer(axum::middleware::from_fn_with_state(keys, auth::require_token))
        .route(metadata::WELL_KNOWN, axum::routing::get(metadata::document))
        .route(&well_known, axum::routing::get(metadata::document))
        .layer(axum::middleware::from_fn(agentyard_otel::trace_http))
}

/// Serves [`router`] on `listener` with `limits` (and `auth_failures`, the budget of failed
/// API-token lookups per client address) until `shutdown`, ending open MCP sessions then, with
/// `GET /metrics` (unless metrics are off).
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    bus: Bus,
    limits: agentyard_runtime::http::HttpLimits,
    auth_failures: RateLimiter<IpAddr>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = build(store, bus, auth_failures, shutdown.child_token());
    let app = agentyard_metrics::http::instrument(app);
    agentyard_runtime::http::serve(listener, app, limits, shutdown).await
}

#[cfg(test)]
mod tests {
    use agentyard_core::tools::BUILTIN_TOOLS;

    use super::ToolServer;

    #[test]
    fn the_server_implements_exactly_the_registry_and_marks_tools_as_it_says() {
        let mut served: Vec<(String, bool, bool)> = ToolServer::all_tools()
            .list_all()
            .into_iter()
            .map(|t| {
                let a = t.annotations.unwrap_or_default();
                (
                    t.name.to_string(),
                    a.read_only_hint == Some(true),
                    a.destructive_hint == Some(true),
                )
            })
            .collect();
        served.sort();
        let mut registry: Vec<(String, bool, bool)> = BUILTIN_TOOLS
            .iter()
            .map(|t| (t.name.to_owned(), t.read_only, t.needs_approval))
            .collect();
        registry.sort();
        assert_eq!(served, registry, "(name, read only, destructive = needs approval)");
    }
}

//! The built-in MCP tool server: an organization's tasks, support tickets and integrations,
//! the platform's health, and demo business data (customers, messages to them, monthly
//! revenue, reports) for the workflow templates, as MCP tools over streamable HTTP at `/mcp`.
//!
//! Every request carries `Authorization: Bearer <tool token>` (see
//! [`agentyard_store::tool_tokens`]): the claims of the run that calls the tool. A tool acts
//! as them and only them: it reads and writes the claims' organization only, needs `runs:read`
//! to read and `runs:write` to write, and a write is idempotent per the claims' invocation id.
//!
//! Layout:
//! - `auth`: the bearer-token middleware (401 otherwise) and the `Caller` extractor that hands
//!   the claims to a tool.
//! - `args`: tool arguments, parsed so that a bad one is a tool error naming its field.
//! - `reply`: tool results (a sentence plus the data as JSON), errors, idempotent writes.
//! - `tasks`, `tickets`, `integrations`, `system`, `customers`, `messages`, `revenue`,
//!   `reports`: the tools, one group per file.
//! - `data`: the demo business data's rows, reads and writes (tasks, tickets and integrations
//!   are the store's).
//! - `elicit`: asking the user for a missing value, the way the negotiated protocol does it.
//! - `classify`: a ticket's category and priority from its text.

mod args;
mod auth;
mod classify;
mod customers;
mod data;
mod elicit;
mod integrations;
mod messages;
mod reply;
mod reports;
mod revenue;
mod sample;
mod system;
mod tasks;
mod tickets;

use std::sync::Arc;

use agentyard_bus::Bus;
use agentyard_store::Store;
use axum::Router;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool_handler};
use tokio_util::sync::CancellationToken;

/// What the server tells clients about itself.
const INSTRUCTIONS: &str = "Tools of the agentyard platform: the organization's to-do tasks, \
    support tickets and integrations, the platform's health, and demo business data: \
    customers, messages to them (recorded, never delivered), monthly revenue and reports. \
    Every tool acts for the user of the run that calls it, inside that user's organization.";

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
}

/// `/mcp` on a router of its own, for `axum::serve` or to merge into another router.
/// Sessions live until the process ends; [`serve`] ends them on shutdown.
pub fn router(store: Store, bus: Bus) -> Router {
    build(store, bus, CancellationToken::new())
}

fn build(store: Store, bus: Bus, shutdown: CancellationToken) -> Router {
    let keys = Arc::new(auth::Keys::new(store.clone()));
    let server = ToolServer::new(store, bus);
    // The Host check guards unauthenticated local servers against DNS rebinding. Every request
    // here must carry a signed tool token, which a rebinding page cannot have, and compose and
    // remote workers reach the server under host names we cannot know in advance.
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown)
        .disable_allowed_hosts();
    let mcp = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .route_service("/mcp", mcp)
        .route_layer(axum::middleware::from_fn_with_state(keys, auth::require_token))
        .layer(axum::middleware::from_fn(agentyard_otel::trace_http))
}

/// Serves [`router`] on `listener` with `limits` until `shutdown`, ending open MCP sessions
/// then, with `GET /metrics` (unless metrics are off).
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    bus: Bus,
    limits: agentyard_runtime::http::HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = agentyard_metrics::http::instrument(build(store, bus, shutdown.child_token()));
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

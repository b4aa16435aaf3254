//! The HTTP routes.

pub(crate) mod agents;
pub(crate) mod dlq;
pub(crate) mod domain;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod orgs;
pub(crate) mod runs;
pub(crate) mod system;
pub(crate) mod threads;
pub(crate) mod tools;
pub(crate) mod workflows;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::AppState;

/// Every route, with the body limit derived from `AY_MAX_INPUT_BYTES`.
pub(crate) fn router(state: AppState) -> Router {
    // JSON escaping can double a string's size; leave room for the other fields.
    let body_limit = state.services.settings.max_input_bytes * 2 + 64 * 1024;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(crate::openapi::spec))
        .route("/docs", get(crate::openapi::docs))
        .route("/console", get(crate::console::index))
        .route("/console/", get(crate::console::index))
        .route("/console/{name}", get(crate::console::file))
        .route("/v1/threads", post(threads::create).get(threads::list))
        .route("/v1/threads/{id}", get(threads::get))
        .route("/v1/threads/{id}/messages", get(threads::messages))
        .route("/v1/threads/{id}/runs", post(runs::create_on_thread))
        .route("/v1/runs", post(runs::create).get(runs::list))
        .route("/v1/runs/{id}", get(runs::get))
        .route("/v1/runs/{id}/events", get(runs::events))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/runs/{id}/tool-invocations", get(tools::run_invocations))
        .route("/v1/runs/{id}/input", post(runs::answer))
        .route("/v1/events", get(events::org_events))
        .route("/v1/tool-invocations", get(tools::invocations))
        .route("/v1/mcp-servers", post(tools::register).get(tools::list))
        .route("/v1/mcp-servers/{id}", get(tools::get).delete(tools::delete))
        .route("/v1/mcp-servers/{id}/tools", get(tools::tools))
        .route("/v1/mcp-servers/{id}/refresh", post(tools::refresh))
        .route("/v1/tasks", get(domain::list_tasks).post(domain::create_task))
        .route("/v1/tickets", get(domain::list_tickets))
        .route("/v1/integrations", get(domain::list_integrations).post(domain::create_integration))
        .route("/v1/integrations/{id}", axum::routing::patch(domain::patch_integration))
        .route("/v1/organizations", post(orgs::create_org))
        .route("/v1/organizations/{id}", get(orgs::get_org))
        .route("/v1/users", post(orgs::create_user).get(orgs::list_users))
        .route("/v1/tokens", post(orgs::create_token).get(orgs::list_tokens))
        .route("/v1/tokens/{id}", axum::routing::delete(orgs::revoke_token))
        .route("/v1/usage", get(orgs::usage))
        .route("/v1/agent-types", get(agents::types))
        .route("/v1/agents", get(agents::list).post(agents::create))
        .route("/v1/agents/delegate", post(agents::delegate))
        .route("/v1/agents/{id}", get(agents::get).patch(agents::patch).delete(agents::delete))
        .route("/v1/agents/{id}/recreate", post(agents::recreate))
        .route("/v1/agents/{id}/activate", post(agents::activate))
        .route("/v1/agents/{id}/deactivate", post(agents::deactivate))
        .route("/v1/agents/{id}/reset-config", post(agents::reset_config))
        .route("/v1/agents/{id}/status", get(agents::status))
        .route("/v1/agents/{id}/configuration", get(agents::configuration))
        .route("/v1/agents/{id}/config-source", get(agents::config_source))
        .route("/v1/agents/{id}/tools", get(agents::tools).put(agents::put_tools))
        .route("/v1/agents/{id}/stats", get(agents::stats))
        .route("/v1/agents/{id}/performance", get(agents::performance))
        .route("/v1/audit-log", get(orgs::audit_log))
        .route("/v1/admin/dlq", get(dlq::list))
        .route("/v1/admin/dlq/{id}", get(dlq::get).delete(dlq::drop))
        .route("/v1/admin/dlq/{id}/replay", post(dlq::replay))
        .route("/v1/system/status", get(system::status))
        .route("/v1/system/availability", get(system::availability))
        .route("/v1/system/health-report", get(system::health_report))
        .route("/v1/system/performance-trends", get(system::performance_trends))
        .route("/v1/system/alerts", get(system::alerts))
        .route("/v1/system/alerts/{id}", get(system::alert))
        .route("/v1/system/alerts/{id}/resolve", post(system::resolve_alert))
        .route("/v1/workflows", get(workflows::list).post(workflows::create))
        .route("/v1/workflows/templates", get(workflows::templates))
        .route("/v1/workflows/start/{id}", post(workflows::start_template))
        .route("/v1/workflows/executions", get(workflows::executions))
        .route("/v1/workflows/executions/{id}", get(workflows::execution))
        .route("/v1/workflows/executions/{id}/cancel", post(workflows::cancel))
        .route("/v1/workflows/executions/{id}/retry", post(workflows::retry))
        .route("/v1/workflows/executions/{id}/input", post(workflows::answer))
        .route("/v1/workflows/executions/{id}/events", get(workflows::events))
        .route("/v1/workflows/{id}", get(workflows::get))
        .route("/v1/workflows/{id}/executions", post(workflows::start))
        .route("/v1/workflows/{id}/hooks", post(workflows::create_hook).get(workflows::list_hooks))
        .route("/v1/hooks/{id}", post(workflows::hook).delete(workflows::revoke_hook))
        .fallback(|| async {
            crate::ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", "no such route")
        })
        .method_not_allowed_fallback(|| async {
            crate::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

//! The OpenAPI document, generated from the route annotations, at `/openapi.json`, and a
//! browsable reference at `/docs`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_scalar::{Scalar, Servable};

use crate::AppState;
use crate::routes::{agents, domain, orgs, runs, threads, tools};

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "agentyard", description = "Run AI agents behind a message queue."),
    modifiers(&Bearer),
    paths(
        crate::routes::health::healthz, crate::routes::health::readyz,
        threads::create, threads::get, threads::messages,
        runs::create_on_thread, runs::create, runs::get, runs::events, runs::cancel,
        orgs::create_org, orgs::get_org, orgs::create_user, orgs::list_users,
        orgs::create_token, orgs::list_tokens, orgs::revoke_token, orgs::usage,
        agents::types, agents::list, agents::create, agents::delegate, agents::get, agents::patch,
        agents::delete, agents::recreate, agents::activate, agents::deactivate,
        agents::reset_config, agents::status, agents::configuration, agents::config_source,
        agents::tools, agents::put_tools, agents::stats, agents::performance,
        tools::run_invocations, tools::answer, tools::invocations, tools::register, tools::list,
        tools::delete, tools::tools, tools::refresh,
        domain::list_tasks, domain::create_task, domain::list_tickets, domain::list_integrations,
        domain::create_integration, domain::patch_integration,
    ),
    components(schemas(crate::error::ErrorBody, agentyard_core::run::Run))
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub(crate) async fn spec() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// `GET /docs`.
pub(crate) fn docs() -> axum::Router<AppState> {
    Scalar::with_url("/docs", ApiDoc::openapi()).into()
}

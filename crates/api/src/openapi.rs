//! The OpenAPI document, generated from the route annotations, at `/openapi.json`, and a
//! reference page at `/docs` rendered here from the same document: plain HTML with its styles
//! inline, so it works offline (no script from a CDN).

use std::fmt::Write;
use std::sync::OnceLock;

use axum::Json;
use axum::response::Html;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{agents, dlq, domain, events, orgs, runs, system, threads, tools, workflows};

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
        threads::create, threads::list, threads::get, threads::messages,
        runs::create_on_thread, runs::create, runs::list, runs::get, runs::events, runs::cancel,
        runs::answer, events::org_events,
        orgs::create_org, orgs::get_org, orgs::create_user, orgs::list_users,
        orgs::create_token, orgs::list_tokens, orgs::revoke_token, orgs::usage,
        agents::types, agents::list, agents::create, agents::delegate, agents::get, agents::patch,
        agents::delete, agents::recreate, agents::activate, agents::deactivate,
        agents::reset_config, agents::status, agents::configuration, agents::config_source,
        agents::tools, agents::put_tools, agents::stats, agents::performance,
        tools::run_invocations, tools::invocations, tools::register, tools::list,
        tools::delete, tools::tools, tools::refresh,
        domain::list_tasks, domain::create_task, domain::list_tickets, domain::list_integrations,
        domain::create_integration, domain::patch_integration,
        workflows::templates, workflows::list, workflows::create, workflows::get,
        workflows::start, workflows::start_template, workflows::executions, workflows::execution,
        workflows::cancel, workflows::retry, workflows::answer, workflows::create_hook,
        workflows::list_hooks, workflows::revoke_hook, workflows::hook, workflows::events,
        orgs::audit_log, system::status, system::availability, system::health_report, system::performance_trends,
        system::alerts, system::alert, system::resolve_alert, dlq::list, dlq::get, dlq::replay, dlq::drop,
    ),
    components(schemas(crate::error::ErrorBody, agentyard_core::run::Run))
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub(crate) async fn spec() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// `GET /docs`.
pub(crate) async fn docs() -> Html<&'static str> {
    static PAGE: OnceLock<String> = OnceLock::new();
    Html(PAGE.get_or_init(|| render(&serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The name a `$ref` points at.
fn ref_name(v: &serde_json::Value) -> Option<&str> {
    v.get("$ref").and_then(|r| r.as_str()).and_then(|r| r.rsplit('/').next())
}

fn schema_label(v: &serde_json::Value) -> String {
    if let Some(name) = ref_name(v) {
        return format!(r##"<a href="#schema-{0}">{0}</a>"##, esc(name));
    }
    if let Some(items) = v.get("items") {
        return format!("array of {}", schema_label(items));
    }
    v.get("type").and_then(|t| t.as_str()).map_or_else(|| "object".to_owned(), esc)
}

/// The whole reference as one HTML page.
fn render(doc: &serde_json::Value) -> String {
    let mut html = String::from(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>agentyard API</title>\
         <style>body{font:15px/1.5 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}\
         h2{border-bottom:1px solid #ddd;margin-top:2em}.op{border:1px solid #e3e3e3;border-radius:6px;padding:.6em 1em;margin:.8em 0}\
         .m{display:inline-block;min-width:4.2em;font-weight:700;text-transform:uppercase}.get{color:#0a6}.post{color:#06c}\
         .patch{color:#a60}.put{color:#a60}.delete{color:#c22}code{background:#f5f5f5;padding:0 .25em}\
         pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:13px}table{border-collapse:collapse}\
         td{padding:.1em .8em .1em 0;vertical-align:top}</style></head><body>",
    );
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    let _ = write!(
        html,
        "<h1>{} API</h1><p>{}</p><p>Every <code>/v1</code> route takes <code>Authorization: Bearer &lt;token&gt;</code>. \
         The machine-readable document is <a href=\"/openapi.json\">/openapi.json</a>.</p>",
        esc(title),
        esc(doc["info"]["description"].as_str().unwrap_or_default()),
    );
    let mut by_tag: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for (method, op) in item.as_object().into_iter().flatten() {
                let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
                by_tag.entry(tag).or_default().push(render_op(path, method, op));
            }
        }
    }
    for (tag, ops) in by_tag {
        let _ = write!(html, "<h2>{}</h2>", esc(&tag));
        for op in ops {
            html.push_str(&op);
        }
    }
    html.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            let pretty = serde_json::to_string_pretty(schema).unwrap_or_default();
            let _ = write!(
                html,
                "<h3 id=\"schema-{0}\">{0}</h3><pre>{1}</pre>",
                esc(name),
                esc(&pretty)
            );
        }
    }
    html.push_str("</body></html>");
    html
}

fn render_op(path: &str, method: &str, op: &serde_json::Value) -> String {
    let mut h = String::new();
    let summary = op["summary"].as_str().or(op["description"].as_str()).unwrap_or_default();
    let _ = write!(
        h,
        "<div class=op><div><span class=\"m {0}\">{0}</span> <code>{1}</code></div><p>{2}</p>",
        esc(method),
        esc(path),
        esc(summary)
    );
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        h.push_str("<table>");
        for p in params {
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p["name"].as_str().unwrap_or_default()),
                esc(p["in"].as_str().unwrap_or_default()),
                schema_label(&p["schema"]),
                esc(p["description"].as_str().unwrap_or_default()),
            );
        }
        h.push_str("</table>");
    }
    if let Some(body) = op["requestBody"]["content"].as_object().and_then(|c| c.values().next()) {
        let _ = write!(h, "<p>Body: {}</p>", schema_label(&body["schema"]));
    }
    if let Some(responses) = op["responses"].as_object() {
        h.push_str("<table>");
        for (status, r) in responses {
            let schema = r["content"]
                .as_object()
                .and_then(|c| c.values().next())
                .map(|c| schema_label(&c["schema"]))
                .unwrap_or_default();
            let _ = write!(
                h,
                "<tr><td><b>{}</b></td><td>{}</td><td>{}</td></tr>",
                esc(status),
                schema,
                esc(r["description"].as_str().unwrap_or_default()),
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</div>");
    h
}

//! The OpenAPI document, generated from the route annotations, at `/openapi.json`, and a
//! reference page at `/docs` rendered here from the same document: plain HTML with its styles
//! inline, so it works offline (no script from a CDN).

use std::fmt::Write;
use std::sync::OnceLock;

use axum::Json;
use axum::response::Html;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
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

/// The error answers an operation can give by its shape alone, added where its annotation does
/// not list them (one it lists keeps its own description): every JSON body can be malformed,
/// too large or of the wrong shape; every query string can be invalid; every id in the path can
/// be unknown; every authenticated route can meet a missing token, a missing scope or the rate
/// limit; every `/v1` route can find Postgres or NATS down.
struct CommonErrors;

impl CommonErrors {
    fn add(op: &mut Operation, path: &str) {
        let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
        let has_body = op.request_body.is_some();
        let has_query = op
            .parameters
            .iter()
            .flatten()
            .any(|p| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query)));
        let mut add = |status: &str, description: &str| {
            op.responses.responses.entry(status.to_owned()).or_insert_with(|| error(description));
        };
        if has_body {
            add("400", "invalid_json: the body is not JSON, or is empty");
            add("413", "input_too_large: the body is over the limit");
            add("422", "invalid_request: a field is missing, unknown or of the wrong type");
        }
        if has_query {
            add("400", "invalid_query: a number that is not one, or out of range");
            add("422", "invalid_query");
        }
        if path.contains('{') {
            add("404", "not found (or of another organization)");
        }
        if secured {
            add("401", "missing_token, invalid_token");
            add("403", "insufficient_scope");
            add("429", "rate_limited (with Retry-After)");
        }
        if path.starts_with("/v1/") {
            add("503", "Postgres or NATS is unavailable");
        }
    }
}

fn error(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", content)
            .build(),
    )
}

impl Modify for CommonErrors {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut api.paths.paths {
            let ops =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for op in ops.into_iter().flatten() {
                Self::add(op, path);
            }
        }
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "agentyard", description = "Run AI agents behind a message queue."),
    modifiers(&Bearer, &CommonErrors),
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
        tools::get, tools::delete, tools::tools, tools::refresh,
        domain::list_tasks, domain::create_task, domain::list_tickets, domain::list_integrations,
        domain::create_integration, domain::patch_integration,
        workflows::templates, workflows::list, workflows::create, workflows::get,
        workflows::start, workflows::start_template, workflows::executions, workflows::execution,
        workflows::cancel, workflows::retry, workflows::answer, workflows::create_hook,
        workflows::list_hooks, workflows::revoke_hook, workflows::hook, workflows::events,
        orgs::audit_log, system::status, system::availability, system::health_report, system::performance_trends,
        system::alerts, system::alert, system::resolve_alert, dlq::list, dlq::get, dlq::replay, dlq::drop,
    ),
    components(schemas(
        crate::error::ErrorBody,
        agentyard_core::run::Run,
        // Named only by a query parameter (the audit log's `outcome`), so not found by itself.
        agentyard_store::tools::InvocationOutcome,
    ))
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn doc() -> Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap()
    }

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((method.to_uppercase(), path.clone(), op));
            }
        }
        out
    }

    #[test]
    fn a_run_priority_and_a_ticket_priority_are_two_schemas() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        assert!(schemas.get("Priority").is_none(), "an ambiguous `Priority` schema");
        assert_eq!(schemas["RunPriority"]["enum"], json!(["high", "normal", "low"]));
        assert_eq!(schemas["TicketPriority"]["enum"], json!(["low", "medium", "high"]));
        let run_ref = json!("#/components/schemas/RunPriority");
        assert_eq!(schemas["CreateRunRequest"]["properties"]["priority"]["$ref"], run_ref);
        assert_eq!(schemas["Run"]["properties"]["priority"]["$ref"], run_ref);
        assert_eq!(
            schemas["TicketRow"]["properties"]["priority"]["$ref"],
            json!("#/components/schemas/TicketPriority")
        );
        // The same for the two `Source` enums (an agent's configuration, a workflow's).
        assert!(schemas.get("Source").is_none(), "an ambiguous `Source` schema");
        assert_eq!(schemas["ConfigSource"]["enum"], json!(["default", "custom"]));
        assert_eq!(schemas["WorkflowSource"]["enum"], json!(["org", "template"]));
    }

    #[test]
    fn enums_list_the_names_sent_not_the_rust_names() {
        let doc = doc();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        assert_eq!(
            schemas["TicketStatus"]["enum"],
            json!(["open", "in_progress", "resolved", "closed"])
        );
        assert_eq!(schemas["TaskStatus"]["enum"], json!(["pending", "completed"]));
        assert_eq!(
            schemas["Category"]["enum"],
            json!(["billing", "technical", "account", "general"])
        );
        for (name, schema) in schemas {
            for v in schema["enum"].as_array().into_iter().flatten() {
                let v = v.as_str().unwrap_or_default();
                let wire = v.chars().all(|c| c.is_ascii_lowercase() || "0123456789_:.".contains(c));
                assert!(wire, "{name} lists {v:?}, not a name the API sends");
            }
        }
    }

    #[test]
    fn query_parameters_are_documented_in_the_query() {
        let doc = doc();
        for (method, path, op) in operations(&doc) {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                if p["in"] == "path" {
                    assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: {name} is no path parameter"
                    );
                }
            }
        }
        let runs = &doc["paths"]["/v1/runs"]["get"]["parameters"];
        assert!(
            runs.as_array().unwrap().iter().any(|p| p["name"] == "cursor" && p["in"] == "query")
        );
    }

    #[test]
    fn a_streamed_run_creation_documents_its_event_stream() {
        let doc = doc();
        for path in ["/v1/runs", "/v1/threads/{id}/runs"] {
            let responses = &doc["paths"][path]["post"]["responses"];
            assert!(
                responses["200"]["content"]["text/event-stream"].is_object(),
                "{path}: {responses}"
            );
            assert!(
                responses["202"]["content"]["application/json"].is_object(),
                "{path}: {responses}"
            );
        }
    }

    #[test]
    fn every_operation_lists_the_errors_its_shape_can_give() {
        let doc = doc();
        for (method, path, op) in operations(&doc) {
            let responses = op["responses"].as_object().unwrap();
            let has = |s: &str| responses.contains_key(s);
            if op.get("requestBody").is_some() {
                assert!(has("400") && has("413") && has("422"), "{method} {path}");
            }
            if op.get("security").is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty())) {
                assert!(has("401") && has("403") && has("429"), "{method} {path}");
            }
            if path.contains('{') {
                assert!(has("404"), "{method} {path}");
            }
            let in_query = |p: &Value| p["in"] == "query";
            if op["parameters"].as_array().is_some_and(|ps| ps.iter().any(in_query)) {
                assert!(has("400") && has("422"), "{method} {path}");
            }
            if path.starts_with("/v1/") {
                assert!(has("503"), "{method} {path}");
            }
        }
    }

    #[test]
    fn every_reference_names_a_schema_of_the_document() {
        let doc = doc();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "a reference to the missing schema {name}");
        }
    }
}

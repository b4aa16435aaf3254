//! The console's workflows page in a real Chromium: see `tests/console/workflows.test.mjs`.
//! Against a real `agentyard dev`: the page starts a template from the form generated from its
//! inputs schema (the API's 422 first), watches it complete in the DAG and shows a step's
//! output; answers an approval in place; cancels a waiting execution; retries a failed one.
//! The API then shows that each of those really happened as the page showed it.

use agentyard_e2e::{TestApp, TestOptions};
use reqwest::Method;
use serde_json::{Value, json};

use super::{DevStack, assert_screenshots, browser};

async fn define(dev: &DevStack, def: Value) {
    let (s, body) = dev.call(Method::POST, "/v1/workflows", Some(def)).await;
    assert_eq!(s, 201, "{body}");
}

async fn execution(dev: &DevStack, id: &Value) -> Value {
    let id = id.as_str().unwrap_or_else(|| panic!("not an id: {id}"));
    let (s, e) = dev.call(Method::GET, &format!("/v1/workflows/executions/{id}"), None).await;
    assert_eq!(s, 200, "{e}");
    e
}

fn step<'a>(e: &'a Value, id: &str) -> &'a Value {
    e["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("{id}"))
}

#[tokio::test]
async fn a_browser_starts_a_template_watches_its_dag_answers_an_approval_cancels_and_retries() {
    let app = TestApp::spawn_with(TestOptions { workers: 0, ..Default::default() }).await;
    let dev = DevStack::start(&app, &[]).await;

    // An approval before a task (its inputs give the form a text, an integer and a yes/no
    // field), a long wait to cancel, and a lookup that fails, to retry.
    define(
        &dev,
        json!({"id": "gate", "name": "Offer with approval",
        "inputs": {"type": "object", "required": ["who"], "properties": {
            "who": {"type": "string", "minLength": 1, "description": "who gets the offer"},
            "count": {"type": "integer", "minimum": 1}, "urgent": {"type": "boolean"}}},
        "steps": [
            {"id": "ok", "name": "Approve the offer",
             "approval": {"message": "Send the offer to {{ inputs.who }}?", "timeout": "1h"}},
            {"id": "send", "name": "Record the offer", "depends_on": ["ok"],
             "tool": {"name": "add_task", "arguments": {"title": "offer for {{ inputs.who }}"}}}]}),
    )
    .await;
    define(
        &dev,
        json!({"id": "long", "name": "A long wait", "steps": [
        {"id": "pause", "wait": {"duration": "5m"}},
        {"id": "after", "depends_on": ["pause"], "tool": {"name": "list_tasks"}}]}),
    )
    .await;
    define(&dev, json!({"id": "flaky", "name": "Look up nobody", "steps": [
        {"id": "lookup", "tool": {"name": "get_customer", "arguments": {"email": "nobody@example.com"}}},
        {"id": "after", "depends_on": ["lookup"], "tool": {"name": "list_tasks"}}]}))
    .await;
    // What the API answers to a bad email, which the page must show as it is.
    let (s, bad) = dev
        .call(
            Method::POST,
            "/v1/workflows/start/customer_onboarding",
            Some(json!({"name": "Ada Lovelace", "email": "not-an-email"})),
        )
        .await;
    assert_eq!(s, 422, "{bad}");
    let email = "ada.lovelace@example.com";

    let result = browser(
        "workflows",
        &format!("{}/console", dev.url),
        &dev.token,
        &[("AY_INVALID_MESSAGE", bad["error"]["message"].as_str().unwrap()), ("AY_EMAIL", email)],
    )
    .await;

    // The template's execution: completed with the form's inputs, every step as the DAG showed
    // it, and the outputs the page showed are the stored ones.
    let e = execution(&dev, &result["onboarding"]).await;
    assert_eq!(e["workflow_id"], "customer_onboarding");
    assert_eq!(e["status"], "completed", "{e:#}");
    assert_eq!(e["inputs"], json!({"name": "Ada Lovelace", "email": email, "plan": "enterprise"}));
    let shown = result["steps"].as_object().unwrap();
    assert_eq!(shown.len(), e["steps"].as_array().unwrap().len(), "{result}");
    for s in e["steps"].as_array().unwrap() {
        assert_eq!(s["status"], "completed", "{s}");
        assert_eq!(shown[s["id"].as_str().unwrap()], s["status"], "{result}");
    }
    assert_eq!(result["recordOutput"], step(&e, "create_record")["output"], "{result}");
    assert_eq!(result["welcome"], step(&e, "welcome_content")["output"], "{result}");
    assert_eq!(result["recordOutput"]["email"], email);
    let sent = &step(&e, "send_welcome")["output"];
    assert_eq!(sent["customer_id"], result["recordOutput"]["id"], "{sent}");

    // The approval answered from the page, with its comment; then the task was recorded.
    let g = execution(&dev, &result["gate"]).await;
    assert_eq!(g["status"], "completed", "{g:#}");
    assert_eq!(g["inputs"], json!({"who": "Ada", "count": 3, "urgent": true}));
    assert_eq!(step(&g, "ok")["output"]["comment"], "ship it", "{g:#}");
    assert_eq!(result["sent"], step(&g, "send")["output"], "{result}");
    assert_eq!(step(&g, "send")["output"]["title"], "offer for Ada");

    // Cancelled from the page: every step cancelled, nothing ran after.
    let l = execution(&dev, &result["long"]).await;
    assert_eq!(l["status"], "cancelled", "{l:#}");
    for s in l["steps"].as_array().unwrap() {
        assert_eq!(s["status"], "cancelled", "{s}");
    }

    // Retried from the page: the failed step ran again (a new run) and failed again.
    let f = execution(&dev, &result["flaky"]).await;
    assert_eq!(f["status"], "failed", "{f:#}");
    let lookup = step(&f, "lookup");
    assert_eq!(lookup["run_id"], result["secondRun"], "{result}");
    assert_ne!(result["firstRun"], result["secondRun"], "{result}");
    let first = result["firstRun"].as_str().unwrap();
    let (s, run) = dev.call(Method::GET, &format!("/v1/runs/{first}"), None).await;
    assert_eq!(s, 200, "the first attempt's run: {run}");
    let error = format!(
        "lookup: {}: {}",
        f["error"]["code"].as_str().unwrap(),
        f["error"]["message"].as_str().unwrap()
    );
    assert_eq!(result["failedError"], error.as_str(), "{result}");

    assert_screenshots(&["workflows", "workflow-dag", "workflow-375"]);
}

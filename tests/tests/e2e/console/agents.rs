//! The console's agents page in a real Chromium against `agentyard dev`: see
//! `tests/console/agents.test.mjs`. The page creates an agent from a type, edits the default
//! agent's configuration and resets it, shows the API's 422 for a bad value, deactivates and
//! activates the agent, and draws its stats and performance from a few runs made here first.
//! Afterwards the API must hold what the page did.

use std::time::{Duration, Instant};

use agentyard_e2e::{TestApp, TestOptions};
use reqwest::Method;
use serde_json::{Value, json};

use super::{DevStack, assert_screenshots, browser};

const NEW_TYPE: &str = "data_analyst";
const RUNS: [&str; 3] = ["hello", "What integrations are active?", "thanks, bye"];

#[tokio::test]
async fn a_browser_edits_resets_and_deactivates_an_agent_and_sees_its_charts() {
    let app = TestApp::spawn_with(TestOptions { workers: 0, ..Default::default() }).await;
    let dev = DevStack::start(&app, &[]).await;

    let (s, list) = dev.call(Method::GET, "/v1/agents", None).await;
    assert_eq!(s, 200, "{list}");
    let agents = list["data"].as_array().unwrap();
    let agent = agents.iter().find(|a| a["is_default"] == true).expect("a default agent");
    let id = agent["id"].as_str().unwrap().to_owned();
    assert_eq!(agent["overrides"], json!({}), "{agent}");
    assert!(agents.iter().all(|a| a["agent_type"] != NEW_TYPE), "{list}");

    // A few ended runs of the agent, for its stats and charts.
    for input in RUNS {
        let (s, run) =
            dev.call(Method::POST, "/v1/runs", Some(json!({"input": input, "agent_id": id}))).await;
        assert_eq!(s, 202, "{run}");
        let run = wait_terminal(&dev, run["id"].as_str().unwrap()).await;
        assert_eq!(run["status"], "completed", "{run}");
    }
    // What the API answers to a temperature out of range (nothing is stored), which the page
    // must show as it is.
    let bad = json!({"configuration": {"temperature": 5}});
    let (s, invalid) = dev.call(Method::PATCH, &format!("/v1/agents/{id}"), Some(bad)).await;
    assert_eq!(s, 422, "{invalid}");

    let result = browser(
        "agents",
        &format!("{}/console", dev.url),
        &dev.token,
        &[
            ("AY_AGENT", &id),
            ("AY_RUNS", &RUNS.len().to_string()),
            ("AY_INVALID_MESSAGE", invalid["error"]["message"].as_str().unwrap()),
            ("AY_NEW_TYPE", NEW_TYPE),
        ],
    )
    .await;

    // The agent created from the page.
    let new_id = result["newAgent"].as_str().unwrap();
    let (s, created) = dev.call(Method::GET, &format!("/v1/agents/{new_id}"), None).await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(
        (&created["agent_type"], &created["name"]),
        (&json!(NEW_TYPE), &json!("Numbers desk"))
    );

    // The agent's administrative acts, oldest first: the edit was stored as the page sent it
    // (the audit log records a change only once it is stored), then the reset, deactivate and
    // activate; the refused value stored nothing.
    let (s, log) = dev.call(Method::GET, "/v1/audit-log?limit=100", None).await;
    assert_eq!(s, 200, "{log}");
    let mut acts: Vec<&Value> =
        log["data"].as_array().unwrap().iter().filter(|e| e["target_id"] == id.as_str()).collect();
    acts.reverse();
    let actions: Vec<&str> = acts.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["agent.updated", "agent.reset", "agent.deactivated", "agent.activated"],
        "{log}"
    );
    let edit = json!({"configuration": {
        "temperature": 0.7, "system_prompt": "You are terse. Answer in one sentence."}});
    assert_eq!(acts[0]["details"], edit, "{log}");
    assert_eq!(result["saved"]["prompt"], edit["configuration"]["system_prompt"], "{result}");

    // The reset removed the edit: no overrides, the type's defaults (as the page showed them
    // again), and the agent active at the end.
    let (_, after) = dev.call(Method::GET, &format!("/v1/agents/{id}"), None).await;
    assert_eq!(after["overrides"], json!({}), "{after}");
    assert_eq!(after["is_active"], true, "{after}");
    let (_, sources) = dev.call(Method::GET, &format!("/v1/agents/{id}/config-source"), None).await;
    assert_eq!(sources["temperature"]["source"], "default", "{sources}");
    assert_eq!(sources["system_prompt"]["source"], "default", "{sources}");
    assert_eq!(result["defaults"]["prompt"], sources["system_prompt"]["value"], "{result}");

    // The performance the page drew is the API's.
    let (_, perf) = dev.call(Method::GET, &format!("/v1/agents/{id}/performance"), None).await;
    assert_eq!(perf["success_rate"], 1.0, "{perf}");
    assert_eq!(result["successRate"], "Success rate: 100% of 3 ended runs", "{result}");

    assert_screenshots(&["agents", "agent", "agent-375", "agent-invalid"]);
}

/// The run once it has ended (completed, failed, cancelled or expired).
async fn wait_terminal(dev: &DevStack, run_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, run) = dev.call(Method::GET, &format!("/v1/runs/{run_id}?wait=5"), None).await;
        assert_eq!(s, 200, "{run}");
        if ["completed", "failed", "cancelled", "expired"]
            .contains(&run["status"].as_str().unwrap())
        {
            return run;
        }
        assert!(Instant::now() < deadline, "run {run_id} still {}", run["status"]);
    }
}

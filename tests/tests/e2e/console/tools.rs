//! The console's tools page in a real Chromium: see `tests/console/tools.test.mjs`. Against a
//! real `agentyard dev`: the page registers the dev's own built-in tool server (and one where
//! nothing listens), shows its tools, refreshes and deletes it, and pages through and filters
//! (by outcome, tool and server) the tool audit log of runs made here and of older calls
//! written for it; the API then shows that all of it really happened.

use std::time::Duration;

use agentyard_e2e::{TestApp, TestOptions};
use reqwest::Method;
use serde_json::{Value, json};

use super::{DevStack, assert_screenshots, browser};

/// Starts a run of the dev org's default agent and waits for its end.
async fn run(dev: &DevStack, input: &str) -> Value {
    let (s, run) = dev.call(Method::POST, "/v1/runs", Some(json!({"input": input}))).await;
    assert_eq!(s, 202, "{run}");
    let path = format!("/v1/runs/{}", run["id"].as_str().unwrap());
    for _ in 0..600 {
        let (_, run) = dev.call(Method::GET, &path, None).await;
        if ["completed", "failed", "cancelled", "expired"]
            .contains(&run["status"].as_str().unwrap())
        {
            assert_eq!(run["status"], "completed", "{run}");
            return run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} did not end");
}

/// The org's server named `name`, if any.
async fn server(dev: &DevStack, name: &str) -> Option<Value> {
    let (s, list) = dev.call(Method::GET, "/v1/mcp-servers", None).await;
    assert_eq!(s, 200, "{list}");
    list["data"].as_array().unwrap().iter().find(|s| s["name"] == name).cloned()
}

#[tokio::test]
async fn a_browser_registers_refreshes_and_deletes_a_server_and_filters_the_tool_audit_log() {
    let app = TestApp::spawn_with(TestOptions { workers: 0, ..Default::default() }).await;
    // The built-in tool server listens where this test says, so the page can register it.
    let mcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dev = DevStack::start(&app, &[("AY_MCP_ADDR", &mcp.to_string())]).await;
    // The default agent calls its tools once the dev's tool worker has listed them.
    app.wait_tools().await;

    // Calls for the audit log: three of one tool, one of another.
    let mut runs = Vec::new();
    for _ in 0..3 {
        let r = run(&dev, "What integrations are active?").await;
        assert_eq!(r["tools_used"], json!(["get_active_integrations"]), "{r}");
        runs.push(r["id"].as_str().unwrap().to_owned());
    }
    let other = run(&dev, "call list_tickets {}").await;
    assert_eq!(other["tools_used"], json!(["list_tickets"]), "{other}");
    // And older calls, more than a page of the log: an MCP client's (no run behind them), of a
    // server since removed, every fourth one failed.
    let org: uuid::Uuid = sqlx::query_scalar("SELECT org_id FROM tool_invocations LIMIT 1")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO tool_invocations(id, org_id, token_id, step, call_index, call_id, server, \
            tool, arguments, status, result, is_error, error, created_at, started_at, \
            completed_at, duration_ms) \
         SELECT gen_random_uuid(), $1, $2, 0, i, 'call-' || i, 'archive', 'lookup', \
            jsonb_build_object('n', i), 'completed', 'found ' || i, i % 4 = 0, \
            CASE WHEN i % 4 = 0 THEN 'not found' END, \
            now() - interval '1 day' + i * interval '1 second', \
            now() - interval '1 day' + i * interval '1 second', \
            now() - interval '1 day' + i * interval '1 second', 5 \
         FROM generate_series(1, 52) i",
    )
    .bind(org)
    .bind(uuid::Uuid::now_v7())
    .execute(app.store.pool())
    .await
    .unwrap();
    // What the API answers to a malformed URL, which the page must show as it is.
    let (s, bad) = dev
        .call(Method::POST, "/v1/mcp-servers", Some(json!({"name": "broken", "url": "not a url"})))
        .await;
    assert_eq!((s, bad["error"]["code"].as_str()), (422, Some("invalid_url")), "{bad}");
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();

    let started = std::time::Instant::now();
    let mcp_url = format!("http://{mcp}/mcp");
    let dead_url = format!("http://{dead}/mcp");
    let console = format!("{}/console", dev.url);
    let env = [
        ("AY_MCP_URL", mcp_url.as_str()),
        ("AY_DEAD_URL", &dead_url),
        ("AY_BAD_URL_MESSAGE", bad["error"]["message"].as_str().unwrap()),
    ];
    let page = browser("tools", &console, &dev.token, &env);
    // While the page works, the server it registers shows up in the API with its tools (the
    // row is stored first, its tools a moment later).
    let registered = async {
        loop {
            let yard = server(&dev, "yard").await;
            if let Some(s) = yard.filter(|s| !s["tools_refreshed_at"].is_null()) {
                return s;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "yard was never registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (result, yard) = tokio::join!(page, registered);

    // Registered with the page's bearer token, its tools listed: the ones the page showed.
    assert_eq!(yard["id"], result["serverId"], "{yard}");
    assert_eq!(yard["url"], mcp_url.as_str());
    assert_eq!(yard["has_token"], true, "{yard}");
    assert!(yard["last_error"].is_null(), "{yard}");
    let names: Vec<&Value> = yard["tools"].as_array().unwrap().iter().map(|t| &t["name"]).collect();
    assert!(names.contains(&&json!("get_active_integrations")), "{yard}");
    assert_eq!(json!(names), result["tools"], "{result}");
    // Refreshed after it was registered, and deleted: gone from the list and from its routes.
    let at = |v: &Value| v.as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!(at(&result["refreshedAt"]) > at(&yard["tools_refreshed_at"]), "{result}");
    assert!(server(&dev, "yard").await.is_none());
    let path = format!("/v1/mcp-servers/{}/tools", yard["id"].as_str().unwrap());
    let (s, gone) = dev.call(Method::GET, &path, None).await;
    assert_eq!(s, 404, "{gone}");
    // The unreachable one stays registered, with the error the page showed; the bad URL left
    // nothing behind.
    let dead = server(&dev, "dead").await.expect("dead is registered");
    assert_eq!(dead["last_error"], result["deadError"], "{dead}");
    assert!(server(&dev, "broken").await.is_none());

    // The log, paged: every call once, newest first, as the API lists them; 56 calls are two
    // pages of 50.
    let ids = |page: &Value| -> Vec<Value> {
        page["data"].as_array().unwrap().iter().map(|c| c["id"].clone()).collect()
    };
    let (_, all) = dev.call(Method::GET, "/v1/tool-invocations?limit=500", None).await;
    assert_eq!(ids(&all).len(), 56, "{all}");
    assert_eq!(result["pagedIds"], json!(ids(&all)), "{result}");
    assert_eq!(result["pages"], 2, "{result}");
    // The outcome filter showed the failed calls, all of them.
    let (_, failed) =
        dev.call(Method::GET, "/v1/tool-invocations?outcome=error&limit=500", None).await;
    assert_eq!(ids(&failed).len(), 13, "{failed}");
    assert_eq!(result["errorIds"], json!(ids(&failed)), "{result}");
    assert!(failed["data"].as_array().unwrap().iter().all(|c| c["is_error"] == true));

    // The log filtered by tool and server showed this tool's calls, all of them, and the
    // opened one as stored.
    let (_, calls) = dev
        .call(Method::GET, "/v1/tool-invocations?tool=get_active_integrations&server=builtin", None)
        .await;
    let calls = calls["data"].as_array().unwrap();
    assert_eq!(calls.len(), 3);
    assert_eq!(result["filtered"], 3, "{result}");
    let newest = &calls[0];
    assert_eq!(newest["run_id"], result["runId"], "{result}");
    assert_eq!(newest["run_id"].as_str(), runs.last().map(String::as_str));
    assert_eq!(newest["arguments"], result["args"]);
    assert_eq!(newest["result"], result["result"]);
    assert_eq!(result["duration"], format!("{} ms", newest["duration_ms"]).as_str());
    assert_screenshots(&["tools", "tools-server", "tools-more", "tools-audit", "tools-375"]);
}

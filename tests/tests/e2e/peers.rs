//! What users and real peers hit: long-polls, many readers of one run, data Postgres cannot read
//! back, models whose streams end early or whose context is small, tool choice, what agent
//! status checks, quirky MCP servers, and the operator's servers.

use std::time::{Duration, Instant};

use agentyard_e2e::{TestApp, TestOptions, sse};
use serde_json::{Value, json};

use crate::tools::{T, agent_of_type, ask, default_agent, invocations, set_tools, tools_app};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[tokio::test]
async fn long_polls_answer_within_a_second_of_their_runs_end() {
    let app = TestApp::spawn_with(TestOptions { workers: 2, ..Default::default() }).await;
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    // Many clients, not so many that the machine saturates (then every answer queues, lost
    // wakeup or not): a lost wakeup shows as a poll that sleeps to its end.
    for c in 0..16 {
        let (http, api, token) = (app.http.clone(), app.api_url.clone(), app.token.clone());
        clients.spawn(async move {
            let mut late = Vec::new();
            for n in 0..12 {
                let run: Value = http
                    .post(format!("{api}/v1/runs"))
                    .bearer_auth(&token)
                    .json(&json!({"input": format!("poll {c} {n}")}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let id = run["id"].as_str().unwrap().to_owned();
                let asked = Instant::now();
                let done: Value = http
                    .get(format!("{api}/v1/runs/{id}?wait=30"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let answered = chrono::Utc::now();
                assert_eq!(done["status"], "completed", "{done}");
                let ended: chrono::DateTime<chrono::Utc> =
                    done["completed_at"].as_str().unwrap().parse().unwrap();
                let after_end = (answered - ended).num_milliseconds();
                if after_end > 1000 {
                    late.push((id, after_end, asked.elapsed()));
                }
            }
            late
        });
    }
    let mut late = Vec::new();
    while let Some(r) = clients.join_next().await {
        late.extend(r.unwrap());
    }
    assert!(
        late.is_empty(),
        "long-polls answered more than a second after their run ended: {late:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn many_readers_of_one_run_share_the_api_s_one_consumer_and_a_token_s_streams_are_capped() {
    let app = TestApp::spawn_with(TestOptions {
        env: env(&[("AY_MAX_STREAMS_PER_TOKEN", "40")]),
        ..Default::default()
    })
    .await;
    let run = app.start_run("slow answer for many readers").await;
    let id = run["id"].as_str().unwrap().to_owned();
    let js = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let subjects = agentyard_core::subjects::Subjects::new(app.prefix.clone());
    let mut events = js.get_stream(subjects.events_stream()).await.unwrap();
    let consumers_before = events.info().await.unwrap().state.consumer_count;
    let mut readers = Vec::new();
    for _ in 0..40 {
        let resp =
            app.req(reqwest::Method::GET, &format!("/v1/runs/{id}/events")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        readers.push(resp);
    }
    // One more is refused, with the JSON error naming the limit.
    let (s, e) = app.get(&format!("/v1/runs/{id}/events")).await;
    assert_eq!((s, e["error"]["code"].as_str()), (429, Some("too_many_streams")), "{e}");
    assert_eq!(
        events.info().await.unwrap().state.consumer_count,
        consumers_before,
        "a consumer per reader"
    );
    let mut contents = Vec::new();
    for r in readers {
        let evs = sse::read_all(r, T).await;
        assert_eq!(sse::kinds(&evs).last(), Some(&"run.completed"));
        contents.push(sse::content(&evs));
    }
    assert!(contents.windows(2).all(|w| w[0] == w[1]), "readers saw different answers");
    // Closed streams give their places back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp =
        app.req(reqwest::Method::GET, &format!("/v1/runs/{id}/events")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let replay = sse::read_all(resp, T).await;
    assert_eq!(sse::content(&replay), contents[0], "a late reader gets the stored events");
}

#[tokio::test]
async fn values_postgres_cannot_give_back_are_refused_naming_the_field() {
    let app = TestApp::spawn_with(TestOptions { workers: 0, ..Default::default() }).await;
    let huge = r#"{"input": "hi", "metadata": {"score": 1.7976931348623157e308}}"#;
    let resp = app
        .req(reqwest::Method::POST, "/v1/runs")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_metadata", "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("metadata.score"), "{e}");
    for (body, code) in [
        (json!({"input": "a\u{0}b"}), "invalid_input"),
        (json!({"input": "hi", "metadata": {"note": "x\u{0}"}}), "invalid_metadata"),
    ] {
        let (s, e) = app.post("/v1/runs", body).await;
        assert_eq!((s, e["error"]["code"].as_str()), (422, Some(code)), "{e}");
    }
    let (s, e) = app.post("/v1/threads", json!({"metadata": {"k\u{0}": 1}})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("invalid_metadata")), "{e}");
    assert_eq!(app.count("SELECT count(*) FROM runs").await, 0, "nothing was stored");
}

#[tokio::test]
async fn a_fact_the_relay_cannot_read_is_set_aside_and_the_others_are_published() {
    let app = TestApp::spawn().await;
    let org: agentyard_core::OrgId = app.org_id.parse().unwrap();
    // A row Postgres stores but no JSON reader takes back (a number that overflows a double),
    // written as a transition would; then a good run left unpublished (a crash after commit).
    sqlx::query(
        "INSERT INTO outbox(facts, created_at) VALUES ($1::text::jsonb, now() - interval '10 seconds')",
    )
    .bind(format!(
        r#"[{{"fact": "event", "org": "{org}", "run": "{}", "key": "bad", "event": {{"type": "run.queued", "data": {{"run": {{"x": 1.7976931348623157e308}}}}}}}}]"#,
        agentyard_core::RunId::new()
    ))
    .execute(app.store.pool())
    .await
    .unwrap();
    let run = app.create_run_unpublished("left behind").await;
    let done = app.wait_terminal(&run.id.to_string(), T).await;
    assert_eq!(done["status"], "completed", "{done}");
    for _ in 0..100 {
        if app.count("SELECT count(*) FROM outbox").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.count("SELECT count(*) FROM outbox").await, 0, "the relay stalled");
    let rejected: Vec<(String, String)> = sqlx::query_as("SELECT fact, error FROM outbox_rejects")
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].0.contains("\"key\": \"bad\""), "{rejected:?}");
}

#[tokio::test]
async fn a_stream_that_ends_without_a_finish_reason_is_a_failed_model_call() {
    let app = TestApp::spawn().await;
    let run = app.start_run("empty stream please").await;
    let done = app.wait_terminal(run["id"].as_str().unwrap(), T).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "llm_incomplete_response", "{done}");
    assert!(done["usage"].is_null(), "nothing was billed: {done}");
    assert_eq!(app.llm.requests().len(), 4, "retried up to AY_MAX_ATTEMPTS");
    // Cut off once, then whole: the run completes with the whole answer only.
    app.llm.clear_requests();
    let run = app.start_run("cut once please").await;
    let done = app.wait_terminal(run["id"].as_str().unwrap(), T).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["content"], "whole on the second try");
    assert_eq!(app.llm.requests().len(), 2);
}

#[tokio::test]
async fn the_history_sent_fits_the_model_alias_s_context() {
    let dir = std::env::temp_dir().join(format!("ay-context-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let agents = include_str!("../../../config/agents.yaml").replacen(
        "  primary:\n",
        "  primary:\n    context_tokens: 1500\n",
        1,
    );
    std::fs::write(dir.join("agents.yaml"), agents).unwrap();
    let app = TestApp::spawn_with(TestOptions {
        env: env(&[("AY_CONFIG_DIR", dir.to_str().unwrap())]),
        ..Default::default()
    })
    .await;
    let (_, thread) = app.post("/v1/threads", json!({})).await;
    let thread = thread["id"].as_str().unwrap();
    for i in 0..6 {
        let input = format!("message {i}: {}", "words ".repeat(200));
        let (s, r) = app.post(&format!("/v1/threads/{thread}/runs"), json!({"input": input})).await;
        assert_eq!(s, 202, "{r}");
        app.wait_terminal(r["id"].as_str().unwrap(), T).await;
    }
    let last: Value = app.llm.requests().last().cloned().unwrap();
    let messages = last["messages"].as_array().unwrap();
    let chars: usize =
        messages[1..].iter().map(|m| m["content"].as_str().unwrap_or("").len()).sum();
    // 1500 tokens of context less 1024 for the answer, less a tenth: 429 tokens, ~1.7k chars.
    assert!(chars <= 429 * 4, "{chars} characters of history sent");
    assert!(messages.len() < 12, "the whole thread was sent: {} messages", messages.len());
    assert!(messages.last().unwrap()["content"].as_str().unwrap().starts_with("message 5"));
}

#[tokio::test]
async fn an_agent_s_tool_choice_reaches_the_model() {
    let app = tools_app(&[]).await;
    let agent = agent_of_type(&app, "task_assistant").await;
    let (s, a) = app
        .patch(
            &format!("/v1/agents/{agent}"),
            json!({"configuration": {"tool_choice": "required"}}),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["configuration"]["tool_choice"], "required");
    let run = ask(&app, Some(&agent), "call list_tasks {}").await;
    assert_eq!(run["status"], "completed", "{run}");
    let first: Value = app.llm.requests()[0].clone();
    assert_eq!(first["tool_choice"], "required", "{first}");
    let (s, e) = app
        .patch(&format!("/v1/agents/{agent}"), json!({"configuration": {"tool_choice": "always"}}))
        .await;
    assert_eq!(s, 422, "{e}");
    assert_eq!(e["error"]["fields"][0]["field"], "configuration.tool_choice");
}

#[tokio::test]
async fn agent_status_checks_that_the_configured_model_exists() {
    let app = TestApp::spawn_with(TestOptions {
        env: env(&[("AY_MODEL", "no-such-model")]),
        ..Default::default()
    })
    .await;
    let (_, agents) = app.get("/v1/agents").await;
    let id = agents["data"][0]["id"].as_str().unwrap();
    // The worker answers once it is up.
    let mut status = Value::Null;
    for _ in 0..50 {
        let (s, st) = app.get(&format!("/v1/agents/{id}/status")).await;
        assert_eq!(s, 200, "{st}");
        status = st;
        if status["workers"].as_u64() > Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status["model_reachable"], true, "{status}");
    assert_eq!(status["model_available"], false, "{status}");
    assert_eq!(status["ready"], false, "{status}");
    assert!(status["model_problem"].as_str().unwrap().contains("no-such-model"), "{status}");
}

/// A stdio MCP server whose tools answer what real ones sometimes do: a NUL character, an
/// image. Written next to the installed MCP SDK (from server-everything's install).
fn quirky_server() -> std::path::PathBuf {
    let everything = crate::tools::everything_js();
    let npm = everything.ancestors().nth(4).unwrap().to_path_buf();
    let script = npm.join("quirky-mcp-test-server.mjs");
    std::fs::write(
        &script,
        r#"import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
const server = new McpServer({ name: "quirky", version: "1.0.0" });
server.registerTool("nul_text", { description: "Text with a NUL character." },
  async () => ({ content: [{ type: "text", text: "before\u0000after" }] }));
const png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
server.registerTool("tiny_image", { description: "A one-pixel image." },
  async () => ({ content: [{ type: "text", text: "here it is" }, { type: "image", data: png, mimeType: "image/png" }] }));
await server.connect(new StdioServerTransport());
"#,
    )
    .unwrap();
    script
}

#[tokio::test]
async fn a_nul_in_a_tool_result_and_an_image_reach_the_model_as_text_and_the_runs_end() {
    let script = quirky_server();
    let dir = std::env::temp_dir().join(format!("ay-quirky-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("mcp-servers.yaml"),
        format!("servers:\n  quirky:\n    command: node\n    args: [\"{}\"]\n", script.display()),
    )
    .unwrap();
    let app = tools_app(&[("AY_CONFIG_DIR", dir.to_str().unwrap())]).await;
    for _ in 0..200 {
        if app.count("SELECT count(*) FROM platform_tools WHERE server = 'quirky'").await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agent = default_agent(&app).await;
    set_tools(&app, &agent, &["quirky__*"], &[]).await;
    tokio::time::sleep(Duration::from_secs(6)).await; // the agent workers' tool cache
    let run = ask(&app, None, "call quirky__nul_text {}").await;
    assert_eq!(run["status"], "completed", "{run}");
    let calls = invocations(&app, &run).await;
    assert_eq!(calls[0]["result"], "before\u{FFFD}after", "{calls:?}");
    let run = ask(&app, None, "call quirky__tiny_image {}").await;
    assert_eq!(run["status"], "completed", "{run}");
    let calls = invocations(&app, &run).await;
    let result = calls[0]["result"].as_str().unwrap();
    assert!(
        result.contains("here it is") && result.contains("[image: image/png, 70 bytes]"),
        "{result}"
    );
    assert!(!result.contains("iVBOR"), "base64 pasted into the model's context: {result}");
}

#[tokio::test]
async fn operator_servers_are_listed_and_a_broken_one_is_backed_off_alone() {
    let everything = crate::tools::everything_js();
    let dir = std::env::temp_dir().join(format!("ay-operator-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (broken_log, healthy_log) = (dir.join("broken.log"), dir.join("healthy.log"));
    std::fs::write(
        dir.join("mcp-servers.yaml"),
        format!(
            "servers:\n  broken:\n    command: sh\n    args: [\"-c\", \"echo launched >> {}; exit 1\"]\n  \
             every:\n    command: sh\n    args: [\"-c\", \"echo launched >> {}; exec node {} stdio\"]\n",
            broken_log.display(),
            healthy_log.display(),
            everything.display()
        ),
    )
    .unwrap();
    let app = tools_app(&[("AY_CONFIG_DIR", dir.to_str().unwrap())]).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let launches =
        |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default().lines().count();
    // 2 s, 4 s, 8 s apart: at most four tries in 15 s; the healthy one listed once a minute.
    assert!(
        (2..=5).contains(&launches(&broken_log)),
        "broken launched {} times",
        launches(&broken_log)
    );
    assert_eq!(launches(&healthy_log), 1, "the healthy server was launched again");
    let (s, list) = app.get("/v1/mcp-servers").await;
    assert_eq!(s, 200, "{list}");
    let data = list["data"].as_array().unwrap();
    let find = |n: &str| data.iter().find(|s| s["name"] == n).unwrap().clone();
    let (broken, every) = (find("broken"), find("every"));
    assert_eq!(
        (broken["source"].as_str(), broken["transport"].as_str()),
        (Some("operator"), Some("stdio"))
    );
    assert!(broken["last_error"].is_string(), "{broken}");
    assert!(every["last_error"].is_null(), "{every}");
    assert!(every["tools"].as_array().unwrap().iter().any(|t| t["name"] == "echo"), "{every}");
    assert!(every["id"].is_null());
}

#[tokio::test]
async fn setting_only_tools_enabled_keeps_working_when_a_default_approval_is_no_longer_enabled() {
    let app = tools_app(&[]).await;
    let agent = agent_of_type(&app, "task_assistant").await;
    let (s, a) = app
        .call(
            reqwest::Method::PUT,
            &format!("/v1/agents/{agent}/tools"),
            &app.token,
            Some(json!({"tools_enabled": ["add_task", "list_tasks"]})),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["configuration"]["tools_require_approval"], json!([]), "{a}");
    // Enabling a tool that needs approval by default brings its approval back.
    let (s, a) = app
        .call(
            reqwest::Method::PUT,
            &format!("/v1/agents/{agent}/tools"),
            &app.token,
            Some(json!({"tools_enabled": ["list_tasks", "delete_task"]})),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["configuration"]["tools_require_approval"], json!(["delete_task"]), "{a}");
    // An explicit approval list naming a tool that is off is still refused.
    let (s, e) = app
        .call(
            reqwest::Method::PUT,
            &format!("/v1/agents/{agent}/tools"),
            &app.token,
            Some(
                json!({"tools_enabled": ["list_tasks"], "tools_require_approval": ["delete_task"]}),
            ),
        )
        .await;
    assert_eq!(s, 422, "{e}");
}

#[tokio::test]
async fn a_warning_about_a_transient_failure_says_what_failed() {
    let app = TestApp::spawn().await;
    let run = app.start_run("flaky model once more").await;
    app.wait_terminal(run["id"].as_str().unwrap(), T).await;
    let log = std::fs::read_to_string(format!(
        "{}/../target/e2e-logs/{}-worker0.log",
        env!("CARGO_MANIFEST_DIR"),
        app.prefix
    ))
    .unwrap_or_default();
    let warning =
        log.lines().find(|l| l.contains("WARN") && l.contains("retrying")).unwrap_or_default();
    assert!(warning.contains("429") && warning.contains("slow down"), "{warning}");
}

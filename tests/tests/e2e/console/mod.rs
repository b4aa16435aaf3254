//! The web console at `/console`: served without a token with a strict CSP, and driven in a
//! real headless Chromium (Debian's `chromium`, through `playwright-core` from npm, both
//! installed by `.ci/run`) by `tests/console/console.test.mjs` against a real stack: log in,
//! a bad token's message, a streamed chat answer with its tool call, an approval answered in
//! place, an elicitation answered with a form, a run cancelled from the chat, an answer
//! resumed after a reload mid-stream, a run found by status and by time. The other pages have a module each, most against a real `agentyard dev` stack
//! ([`DevStack`]); each page's browser script is `tests/console/<page>.test.mjs`.

mod agents;
mod system;
mod tools;
mod workflows;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentyard_e2e::{TestApp, TestOptions};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_console_is_served_from_the_binary_without_a_token_and_with_a_strict_csp() {
    let app = TestApp::spawn().await;
    for (path, kind) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
    ] {
        let r = app.http.get(format!("{}{path}", app.api_url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert_eq!(h["content-type"], kind, "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'; script-src 'self';"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    let r = app.http.get(format!("{}/console/secrets.js", app.api_url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
}

#[tokio::test]
async fn a_browser_logs_in_chats_with_a_streamed_answer_and_finds_a_failed_run() {
    let app =
        TestApp::spawn_with(TestOptions { tools: true, token_delay_ms: 10, ..Default::default() })
            .await;
    app.wait_tools().await;
    app.store.seed_demo(app.org_id.parse().unwrap()).await.unwrap();

    // A failed run for the Runs page's status filter (the scripted model refuses this input).
    let (s, run) = app.post("/v1/runs", json!({"input": "bad request"})).await;
    assert_eq!(s, 202, "{run}");
    let failed = app.wait_terminal(run["id"].as_str().unwrap(), T).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    // An agent with the task tools (delete_task waits for approval) and two tasks to delete.
    let (s, agent) = app.post("/v1/agents", json!({"agent_type": "task_assistant"})).await;
    assert_eq!(s, 201, "{agent}");
    for title in ["old errand", "keep me"] {
        let (s, task) = app.post("/v1/tasks", json!({"title": title})).await;
        assert_eq!(s, 201, "{task}");
    }
    // What the API answers to a bad token, which the login page must show as it is.
    let (s, bad) = app.call(reqwest::Method::GET, "/v1/agents", "ay_not-a-real-token", None).await;
    assert_eq!(s, 401, "{bad}");

    let result = browser(
        "console",
        &format!("{}/console", app.api_url),
        &app.token,
        &[
            ("AY_BAD_TOKEN_MESSAGE", bad["error"]["message"].as_str().unwrap()),
            ("AY_FAILED_RUN", failed["id"].as_str().unwrap()),
            ("AY_TASK_AGENT", agent["id"].as_str().unwrap()),
        ],
    )
    .await;

    // What the page showed is what the API stored: the streamed text is the run's output and
    // the tool's result is the invocation's.
    let thread = result["threadId"].as_str().unwrap();
    let (_, runs) = app.get(&format!("/v1/runs?thread_id={thread}")).await;
    let chat_run = &runs["data"][0];
    assert_eq!(chat_run["status"], "completed", "{runs}");
    assert_eq!(chat_run["tools_used"], json!(["get_active_integrations"]));
    assert_eq!(result["text"], chat_run["output"]["content"], "{result}");
    let (_, calls) =
        app.get(&format!("/v1/runs/{}/tool-invocations", chat_run["id"].as_str().unwrap())).await;
    assert_eq!(result["toolResult"], calls["data"][0]["result"], "{result}");
    let events = result["events"].as_array().unwrap();
    assert_eq!(events.last().unwrap(), "run.failed", "{result}");
    let run_error = format!(
        "{}: {}",
        failed["error"]["code"].as_str().unwrap(),
        failed["error"]["message"].as_str().unwrap()
    );
    assert_eq!(result["runError"], run_error.as_str());
    // The approved delete happened, the cancelled one did not.
    let (_, tasks) = app.get("/v1/tasks").await;
    let titles: Vec<&str> =
        tasks["data"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["keep me"], "{tasks}");
    assert!(result["cancelled"].as_str().unwrap().contains("cancel"), "{result}");
    // The elicitation's answer reached the tool.
    let (_, tickets) = app.get("/v1/tickets").await;
    let printer =
        tickets["data"].as_array().unwrap().iter().find(|t| t["title"] == "Printer on fire");
    assert_eq!(printer.map(|t| &t["description"]), Some(&json!("Smoke from tray 2")), "{tickets}");
    // The answer resumed after the reload is the run's whole output.
    let slow_thread = result["slowThread"].as_str().unwrap();
    let (_, slow) = app.get(&format!("/v1/runs?thread_id={slow_thread}")).await;
    assert_eq!(slow["data"][0]["status"], "completed", "{slow}");
    assert_eq!(result["slowText"], slow["data"][0]["output"]["content"], "{result}");
    let shots_taken = [
        "chat-resumed",
        "login-error",
        "chat",
        "chat-375",
        "chat-approval",
        "chat-elicitation",
        "run-tools",
        "runs",
        "run",
        "run-375",
    ];
    assert_screenshots(&shots_taken);
}

/// Where the browser scripts write their screenshots (`console-<name>.png`).
pub(crate) fn shots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-logs")
}

/// Fails unless each named screenshot was written.
pub(crate) fn assert_screenshots(names: &[&str]) {
    for name in names {
        let path = shots_dir().join(format!("console-{name}.png"));
        assert!(path.exists(), "no screenshot {}", path.display());
    }
}

/// Runs `tests/console/<script>.test.mjs` in the system Chromium against the console at
/// `console_url` with `token` (and `env`); returns the JSON of its `RESULT` line.
pub(crate) async fn browser(
    script: &str,
    console_url: &str,
    token: &str,
    env: &[(&str, &str)],
) -> Value {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(chromium.exists(), "no /usr/bin/chromium: `apt-get install chromium` (.ci/run does)");
    let npm = playwright_core();
    let shots = shots_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("console/{script}.test.mjs"));
    let out = tokio::process::Command::new("node")
        .arg(&path)
        .env("AY_TEST_NPM_DIR", &npm)
        .env("AY_CONSOLE_URL", console_url)
        .env("AY_TOKEN", token)
        .env("AY_SHOTS", &shots)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script}.test.mjs failed:\n{stdout}\n{stderr}");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("no RESULT line:\n{stdout}\n{stderr}"))
}

/// `agentyard dev` (API, agent and tool workers, orchestrator, monitor, built-in tool server
/// and the scripted model in one process) on the test's database and subject prefix, with the
/// demo data `dev` seeds; stopped when dropped.
pub(crate) struct DevStack {
    pub url: String,
    /// The dev token: every org scope and `platform:admin`.
    pub token: String,
    pub http: reqwest::Client,
    _child: tokio::process::Child,
}

impl DevStack {
    pub(crate) async fn start(app: &TestApp, env: &[(&str, &str)]) -> Self {
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (http, mcp) = (free(), free());
        let home = std::env::temp_dir().join(format!("ay-console-{}", app.prefix));
        std::fs::create_dir_all(&home).unwrap();
        let mut cmd = app.command("dev", &["dev"]);
        cmd.env("AY_HOME", &home)
            .env("AY_HTTP_ADDR", http.to_string())
            .env("AY_MCP_ADDR", mcp.to_string())
            .env("AY_METRICS_ADDR", "127.0.0.1:0")
            .env_remove("OPENAI_BASE_URL")
            .envs(env.iter().copied());
        let child = cmd.spawn().unwrap();
        let url = format!("http://{http}");
        let client = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..600 {
            let r = client.get(format!("{url}/readyz")).send().await;
            if r.is_ok_and(|r| r.status().is_success()) && home.join("dev-token").exists() {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "dev did not start; see target/e2e-logs/{}-dev.log", app.prefix);
        let token = std::fs::read_to_string(home.join("dev-token")).unwrap().trim().to_owned();
        Self { url, token, http: client, _child: child }
    }

    /// `GET`/`POST`/... `path` with the dev token; the status and the JSON body (Null if none).
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req =
            self.http.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// `playwright-core` under `AY_TEST_NPM_DIR` (default `~/.cache/agentyard/npm`), installed by
/// `.ci/run` (or here when missing) without a browser: the test drives the system Chromium.
fn playwright_core() -> PathBuf {
    let dir = std::env::var("AY_TEST_NPM_DIR").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/agentyard/npm")
    });
    if !dir.join("node_modules/playwright-core/package.json").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "playwright-core"])
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .current_dir(&dir)
            .status()
            .expect("npm");
        assert!(ok.success(), "npm install playwright-core failed");
    }
    dir
}

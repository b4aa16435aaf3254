//! OpenTelemetry traces across processes: one chat run whose model calls a built-in tool,
//! with the API, an agent worker (which runs the built-in calls itself) and a tool worker as
//! real processes exporting to a real OTLP receiver (tests/otlp_receiver.py, which decodes
//! every request with the official `opentelemetry-proto` package).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::tools::{T, seed, tools_app};

/// The Python of a venv holding `opentelemetry-proto` (from PyPI).
fn receiver_python() -> PathBuf {
    let import = "opentelemetry.proto.collector.trace.v1.trace_service_pb2";
    let venv =
        agentyard_e2e::python_venv("AY_TEST_OTLP_VENV", "otlp-venv", "opentelemetry-proto", import);
    venv.join("bin/python")
}

/// The receiver, started: (its process, its endpoint, the file it writes spans to).
async fn start_receiver() -> (tokio::process::Child, String, PathBuf) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("otlp_receiver.py");
    let out =
        std::env::temp_dir().join(format!("ay-spans-{}.jsonl", uuid::Uuid::now_v7().simple()));
    let mut child = tokio::process::Command::new(receiver_python())
        .arg(&script)
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the OTLP receiver");
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    let mut stdout = tokio::io::BufReader::new(stdout);
    let read = stdout.read_line(&mut first);
    tokio::time::timeout(Duration::from_secs(30), read).await.unwrap().unwrap();
    let port = first.trim().strip_prefix("listening on ").expect("the receiver's port");
    (child, format!("http://127.0.0.1:{port}"), out)
}

fn spans(path: &PathBuf) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let spans: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    if let Some(bad) = spans.iter().find(|s| s.get("error").is_some()) {
        panic!("the receiver could not decode a request: {bad}");
    }
    spans
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

#[tokio::test]
async fn one_trace_spans_the_api_and_the_workers() {
    let (_receiver, endpoint, out) = start_receiver().await;
    let app = tools_app(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ])
    .await;
    seed(&app).await;
    // The client's own trace: everything the request causes continues it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let res = app
        .req(reqwest::Method::POST, "/v1/runs")
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&json!({"input": "What integrations are active?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let run: Value = res.json().await.unwrap();
    let run = app.wait_terminal(run["id"].as_str().unwrap(), T).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["tools_used"], json!(["get_active_integrations"]));

    // The run's last spans (the second model turn) reach the receiver within a few batches.
    let deadline = Instant::now() + Duration::from_secs(30);
    let trace = loop {
        let trace: Vec<Value> =
            spans(&out).into_iter().filter(|s| s["trace_id"] == trace_id).collect();
        let chats = trace.iter().filter(|s| attr(s, "gen_ai.operation.name") == "chat").count();
        let agent_jobs = trace
            .iter()
            .filter(|s| {
                s["kind"] == "SPAN_KIND_CONSUMER" && s["service"] == "agentyard-worker-agent"
            })
            .count();
        if chats >= 2 && agent_jobs >= 2 {
            break trace;
        }
        assert!(
            Instant::now() < deadline,
            "the trace is incomplete after 30 s: {}",
            serde_json::to_string_pretty(&spans(&out)).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let dump = serde_json::to_string_pretty(&trace).unwrap();
    let by_id: HashMap<&str, &Value> =
        trace.iter().map(|s| (s["span_id"].as_str().unwrap(), s)).collect();
    let one = |what: &str, f: &dyn Fn(&Value) -> bool| -> Value {
        let found: Vec<&Value> = trace.iter().filter(|s| f(s)).collect();
        assert_eq!(found.len(), 1, "expected one {what} span in {dump}");
        found[0].clone()
    };
    let parent_of = |s: &Value| by_id.get(s["parent_span_id"].as_str().unwrap()).copied();

    // The API's server span continues the client's span.
    let api = one("API", &|s| s["service"] == "agentyard-api" && s["name"] == "POST /v1/runs");
    assert_eq!(api["kind"], "SPAN_KIND_SERVER");
    assert_eq!(api["parent_span_id"], client_span);
    assert_eq!(attr(&api, "http.request.method"), "POST");
    assert_eq!(attr(&api, "http.route"), "/v1/runs");
    assert_eq!(attr(&api, "http.response.status_code"), 202);

    // Every span of the trace descends from it, across processes.
    for s in &trace {
        let mut at = s;
        let mut hops = 0;
        while at["span_id"] != api["span_id"] {
            at = parent_of(at)
                .unwrap_or_else(|| panic!("{} does not reach the API span: {dump}", s["name"]));
            hops += 1;
            assert!(hops < 20, "a parent cycle: {dump}");
        }
    }
    let services: std::collections::BTreeSet<&str> =
        trace.iter().map(|s| s["service"].as_str().unwrap()).collect();
    assert_eq!(
        services.into_iter().collect::<Vec<_>>(),
        ["agentyard-api", "agentyard-worker-agent"],
        "{dump}"
    );

    // API -> agent worker: the first step's job.
    let step0 = one("first agent job", &|s| {
        s["service"] == "agentyard-worker-agent" && s["parent_span_id"] == api["span_id"]
    });
    assert_eq!(step0["kind"], "SPAN_KIND_CONSUMER");
    assert_eq!(attr(&step0, "messaging.system"), "nats");
    let subject = attr(&step0, "messaging.destination.name").as_str().unwrap();
    assert!(subject.starts_with(&format!("{}.jobs.agent.", app.prefix)), "{subject}");
    assert_eq!(step0["name"], format!("process {subject}"));

    // The model call, with the GenAI attributes.
    let chat = one("first chat", &|s| {
        attr(s, "gen_ai.operation.name") == "chat" && s["parent_span_id"] == step0["span_id"]
    });
    let model = attr(&chat, "gen_ai.request.model").as_str().unwrap();
    assert_eq!(chat["name"], format!("chat {model}"));
    assert_eq!(chat["kind"], "SPAN_KIND_CLIENT");
    assert!(attr(&chat, "gen_ai.provider.name").is_string(), "{chat}");
    assert!(attr(&chat, "gen_ai.response.model").is_string(), "{chat}");
    assert!(attr(&chat, "gen_ai.usage.input_tokens").as_i64().unwrap() > 0, "{chat}");
    assert!(attr(&chat, "gen_ai.usage.output_tokens").as_i64().is_some(), "{chat}");

    // The agent worker runs the built-in call itself, in the first job's trace (no tool
    // worker, no built-in server's process take part).
    let execute = one("execute_tool", &|s| attr(s, "gen_ai.operation.name") == "execute_tool");
    assert_eq!(execute["name"], "execute_tool get_active_integrations");
    assert_eq!(execute["service"], "agentyard-worker-agent");
    assert_eq!(execute["parent_span_id"], step0["span_id"]);
    assert_eq!(attr(&execute, "gen_ai.tool.name"), "get_active_integrations");
    assert!(!attr(&execute, "gen_ai.tool.call.id").as_str().unwrap().is_empty(), "{execute}");
    assert!(attr(&execute, "error.type").is_null(), "{execute}");

    // The call's result enqueued the second model turn, from the first job.
    let step1 = one("second agent job", &|s| {
        s["service"] == "agentyard-worker-agent"
            && s["parent_span_id"] == step0["span_id"]
            && s["kind"] == "SPAN_KIND_CONSUMER"
    });
    one("second chat", &|s| s["parent_span_id"] == step1["span_id"]);
}

//! Faults under a steady load of runs that each call the built-in `add_task` (a write, so side
//! effects can be counted): NATS killed and restarted, Postgres stopped (immediate) and
//! restarted, the API killed -9 and restarted, each worker kind killed -9 and restarted, one
//! node of a three-node NATS cluster killed -9. After each, the same checks
//! (`agentyard_e2e::faults::check`): nothing lost, nothing stuck, nothing doubled; while a
//! dependency is down every request is answered in time, with a 503 and the JSON error body
//! when it cannot be served. Each test prints its recovery times (`-- --nocapture`); they are
//! recorded in BENCHMARKS.md. NATS and Postgres here are the tests' own (`private`).

use std::time::{Duration, Instant};

use agentyard_e2e::faults::{self, ANSWER_WITHIN, Load, Recovery};
use agentyard_e2e::private::{PrivateNats, PrivateNatsCluster, PrivatePostgres};
use agentyard_e2e::{TestApp, TestOptions};
use serde_json::{Value, json};

/// Runs per second: small, since the fault tests share two cores with the rest of the suite.
const RATE: f64 = 4.0;
/// How long a dependency stays down.
const OUTAGE: Duration = Duration::from_secs(8);
/// Load after the recovery, before the checks.
const AFTER: Duration = Duration::from_secs(2);
/// Generous: the machine is shared.
const DRAIN: Duration = Duration::from_secs(120);

/// The whole system: API, agent worker, built-in MCP server, tool worker, orchestrator and
/// monitor, with the model streaming slowly enough that runs are mid-flight when a fault hits.
async fn stack(
    nats_url: Option<String>,
    postgres_url: Option<String>,
    env: &[(&str, &str)],
) -> (TestApp, String) {
    let mut app = TestApp::spawn_with(TestOptions {
        tools: true,
        orchestrator: true,
        token_delay_ms: 10,
        nats_url,
        postgres_url,
        env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        ..Default::default()
    })
    .await;
    app.start_role("monitor", &["worker", "monitor"]).expect("a monitor");
    app.wait_tools().await;
    let (s, agent) = app.post("/v1/agents", json!({"agent_type": "task_assistant"})).await;
    assert_eq!(s, 201, "{agent}");
    (app, agent["id"].as_str().unwrap().to_owned())
}

/// `GET path` answered within [`ANSWER_WITHIN`]: (status, JSON body).
async fn timed_get(app: &TestApp, path: &str) -> (u16, Value) {
    let started = Instant::now();
    let r = tokio::time::timeout(ANSWER_WITHIN, app.req(reqwest::Method::GET, path).send())
        .await
        .unwrap_or_else(|_| panic!("GET {path} hung past {ANSWER_WITHIN:?}"))
        .expect("GET");
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(Value::Null);
    let took = started.elapsed();
    println!("GET {path}: {status} in {:.2}s", took.as_secs_f64());
    assert!(took <= ANSWER_WITHIN, "GET {path} took {took:?}");
    (status, body)
}

/// The end of every fault test: the runs accepted before `back` end, the load goes on for
/// `then` and stops, the checks pass; prints and returns the numbers.
async fn finish(
    app: &TestApp,
    load: Load,
    fault: &'static str,
    (down, back, then): (Duration, Instant, Duration),
    api_may_be_down: bool,
) -> Recovery {
    let first_accepted = load.first_accepted_after(back, Duration::from_secs(60)).await;
    let before = faults::accepted_before(&load.attempts(), back);
    let all_terminal =
        faults::wait_terminal(app, &before, DRAIN).await.saturating_duration_since(back);
    // More load after the recovery, then stop and check everything.
    tokio::time::sleep(then).await;
    let attempts = load.stop().await;
    let (refused, unanswered, slowest_answer) = faults::check_answers(&attempts, api_may_be_down);
    let checked = faults::check(app, &attempts, DRAIN).await;
    let accepted = faults::accepted(&attempts).len();
    assert!(checked.runs >= accepted);
    let r = Recovery {
        fault,
        down,
        first_accepted,
        all_terminal,
        accepted,
        refused,
        unanswered,
        slowest_answer,
    };
    r.print();
    r
}

#[tokio::test]
async fn nats_killed_and_restarted_under_load_loses_strands_and_doubles_nothing() {
    let mut nats = PrivateNats::start().await.expect("a private nats-server");
    let (app, agent) = stack(Some(nats.url()), None, &[]).await;
    let load = Load::start(&app, &agent, RATE);
    load.wait_accepted(8, Duration::from_secs(30)).await;
    let some_run = faults::accepted(&load.attempts())[0].0.clone();
    nats.down().await;
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Not ready, said in time; what needs NATS to answer is a 503 with the error body.
    let events = format!("/v1/runs/{some_run}/events");
    let ((s, ready), (s2, e)) = tokio::join!(timed_get(&app, "/readyz"), timed_get(&app, &events));
    assert_eq!((s, &ready["nats"]), (503, &json!(false)), "{ready}");
    // An event stream cannot be served: 503 at once, not a stream that ends after a timeout.
    assert_eq!((s2, e["error"]["code"].as_str()), (503, Some("unavailable")), "{e}");
    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    // Runs posted meanwhile were accepted: they wait in the outbox.
    let during = load.attempts().iter().filter(|a| a.sent >= down_at).count();
    let accepted_during = faults::accepted(&load.attempts()).len()
        - faults::accepted_before(&load.attempts(), down_at).len();
    assert!(accepted_during > 0, "none of {during} runs posted while NATS was down was accepted");
    nats.up().await.expect("nats back");
    let back = Instant::now();
    let r = finish(&app, load, "NATS killed -9", (back - down_at, back, AFTER), false).await;
    // Runs accepted during the outage waited in the outbox: they are among those checked.
    assert!(r.accepted > 8, "{r:?}");
}

#[tokio::test]
async fn postgres_stopped_and_restarted_under_load_answers_503_in_time_and_loses_nothing() {
    let pg = PrivatePostgres::start().await.expect("a private postgres");
    let (app, agent) = stack(None, Some(pg.url()), &[]).await;
    let load = Load::start(&app, &agent, RATE);
    load.wait_accepted(8, Duration::from_secs(30)).await;
    pg.down().await;
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ((s, ready), (s2, e)) =
        tokio::join!(timed_get(&app, "/readyz"), timed_get(&app, "/v1/runs"));
    assert_eq!((s, &ready["postgres"]), (503, &json!(false)), "{ready}");
    assert_eq!((s2, e["error"]["code"].as_str()), (503, Some("unavailable")), "{e}");
    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    pg.up().await.expect("postgres back");
    let back = Instant::now();
    let r =
        finish(&app, load, "Postgres stopped (immediate)", (back - down_at, back, AFTER), false)
            .await;
    assert!(r.refused > 0, "requests during the outage were refused with 503: {r:?}");
}

#[tokio::test]
async fn the_api_killed_and_restarted_under_load_loses_and_doubles_nothing() {
    let (mut app, agent) = stack(None, None, &[]).await;
    let load = Load::start(&app, &agent, RATE);
    load.wait_accepted(8, Duration::from_secs(30)).await;
    app.kill_api().await;
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.start_api().await;
    let back = Instant::now();
    finish(&app, load, "API killed -9", (back - down_at, back, AFTER), true).await;
}

#[tokio::test]
async fn each_worker_kind_killed_and_restarted_under_load_loses_and_doubles_nothing() {
    let (mut app, agent) = stack(None, None, &[]).await;
    let load = Load::start(&app, &agent, RATE);
    load.wait_accepted(8, Duration::from_secs(30)).await;
    // The stack's processes: 0 agent worker, 1 MCP server, 2 tool worker, 3 orchestrator,
    // 4 monitor.
    let kinds: [(usize, &'static str, &[&str]); 5] = [
        (0, "agent worker killed -9", &["worker", "agent"]),
        (2, "tool worker killed -9", &["worker", "tool"]),
        (1, "MCP server killed -9", &["mcp-server"]),
        (3, "orchestrator killed -9", &["worker", "orchestrator"]),
        (4, "monitor killed -9", &["worker", "monitor"]),
    ];
    let mut last = None;
    for (i, fault, args) in kinds {
        app.kill_worker(i).await;
        let down_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        app.start_role("again", args).expect("restart");
        let back = Instant::now();
        // Every run accepted so far ends, those the dead process held included.
        let before = faults::accepted_before(&load.attempts(), back);
        let done = faults::wait_terminal(&app, &before, DRAIN).await;
        let first = load.first_accepted_after(back, Duration::from_secs(60)).await;
        Recovery {
            fault,
            down: back - down_at,
            first_accepted: first,
            all_terminal: done.saturating_duration_since(back),
            accepted: before.len(),
            refused: 0,
            unanswered: 0,
            slowest_answer: Duration::ZERO,
        }
        .print();
        last = Some((down_at, back));
    }
    let (down_at, back) = last.unwrap();
    finish(&app, load, "all worker kinds killed", (back - down_at, back, AFTER), false).await;
}

#[tokio::test]
async fn a_nats_cluster_node_killed_under_load_loses_and_doubles_nothing() {
    let mut cluster = PrivateNatsCluster::start().await.expect("a three-node NATS cluster");
    let (app, agent) = stack(Some(cluster.url()), None, &[("AY_NATS_REPLICAS", "3")]).await;
    // The streams are replicated on the three nodes.
    let client = async_nats::connect(agentyard_e2e::nats_addrs(&cluster.url())).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let subjects = agentyard_core::subjects::Subjects::new(app.prefix.clone());
    let mut jobs = js.get_stream(subjects.jobs_stream()).await.unwrap();
    let info = jobs.info().await.unwrap().clone();
    assert_eq!(info.config.num_replicas, 3);
    let leader = info.cluster.as_ref().and_then(|c| c.leader.clone()).expect("a leader");
    let load = Load::start(&app, &agent, RATE);
    load.wait_accepted(8, Duration::from_secs(30)).await;
    // Kill the node that leads the jobs stream: the worst one to lose.
    let node = cluster.index_of(&leader).expect("the leader is one of ours");
    cluster.kill(node).await;
    let down_at = Instant::now();
    // Nothing comes back: two nodes of three carry on. Measured from the kill.
    let fault = "NATS cluster node killed -9";
    finish(&app, load, fault, (Duration::ZERO, down_at, OUTAGE), false).await;
    let info = jobs.info().await.unwrap().clone();
    let new_leader = info.cluster.and_then(|c| c.leader).unwrap_or_default();
    assert_ne!(new_leader, leader, "another node leads the jobs stream");
}

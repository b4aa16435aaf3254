//! What every fault test shares: a steady load of runs that each call a built-in write tool
//! ([`Load`]), and the checks made after the fault ([`check`]): every run accepted reaches a
//! terminal state, none twice (one assistant reply per turn, one task per `add_task`, at most one
//! terminal event), none stuck, nothing left in the outbox; a refused request wrote nothing and
//! was answered in time. [`Recovery`] is what a test prints and `BENCHMARKS.md` records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::TestApp;

/// The longest any request may take while a dependency is down: the longest timeout on the
/// way (5 s to get a Postgres connection, 5 s for JetStream's ack of a publish) plus a margin
/// for a 2-core machine running other tests at the same time.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(12);

/// What one request of the load got.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// 202: the run and the title its task will have.
    Accepted { run: String, title: String },
    /// Another status, with its body.
    Refused { status: u16, body: Value },
    /// No answer: the connection failed (the API is down) or the request timed out.
    NoAnswer(String),
}

/// One request of the load.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub sent: Instant,
    pub took: Duration,
    pub title: String,
    pub outcome: Outcome,
}

impl Attempt {
    /// When its answer came.
    pub fn answered(&self) -> Instant {
        self.sent + self.took
    }
}

/// A steady stream of `POST /v1/runs` asking `agent` to "add a task to load-<n>-<id>": each run
/// calls the built-in `add_task` once, then answers. Each request runs on its own task, so a
/// slow answer never slows the rate.
pub struct Load {
    attempts: Arc<Mutex<Vec<Attempt>>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Load {
    /// Starts posting `per_second` runs to `agent` on `app`.
    pub fn start(app: &TestApp, agent: &str, per_second: f64) -> Self {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let url = format!("{}/v1/runs", app.api_url);
        let (token, agent) = (app.token.clone(), agent.to_owned());
        let tag = uuid::Uuid::now_v7().simple().to_string()[24..].to_owned();
        let task = tokio::spawn({
            let (attempts, stop) = (attempts.clone(), stop.clone());
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
                let mut inflight = Vec::new();
                for n in 0.. {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let title = format!("load-{n}-{tag}");
                    let body =
                        json!({"input": format!("add a task to {title}"), "agent_id": agent});
                    let req = http.post(&url).bearer_auth(&token).json(&body);
                    let attempts = attempts.clone();
                    inflight.push(tokio::spawn(async move {
                        let sent = Instant::now();
                        let outcome = match req.send().await {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let body: Value = r.json().await.unwrap_or(Value::Null);
                                match (status, body["id"].as_str()) {
                                    (202, Some(id)) => Outcome::Accepted {
                                        run: id.to_owned(),
                                        title: title.clone(),
                                    },
                                    _ => Outcome::Refused { status, body },
                                }
                            }
                            Err(e) => Outcome::NoAnswer(e.to_string()),
                        };
                        let a = Attempt { sent, took: sent.elapsed(), title, outcome };
                        attempts.lock().expect("attempts").push(a);
                    }));
                }
                for t in inflight {
                    let _ = t.await;
                }
            }
        });
        Self { attempts, stop, task }
    }

    /// The answers so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().expect("attempts").clone()
    }

    /// Waits until `n` runs were accepted (the load is flowing), at most `within`.
    pub async fn wait_accepted(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let accepted = accepted(&self.attempts()).len();
            if accepted >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {accepted} of {n} runs accepted in {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How long after `since` the first request sent after it was accepted (waits for it, at
    /// most `within`).
    pub async fn first_accepted_after(&self, since: Instant, within: Duration) -> Duration {
        let deadline = since + within;
        loop {
            let first = self
                .attempts()
                .iter()
                .filter(|a| a.sent >= since && matches!(a.outcome, Outcome::Accepted { .. }))
                .map(Attempt::answered)
                .min();
            if let Some(t) = first {
                return t - since;
            }
            assert!(Instant::now() < deadline, "no run accepted within {within:?} of the return");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops posting; waits for the answers of the requests in flight.
    pub async fn stop(self) -> Vec<Attempt> {
        self.stop.cancel();
        let _ = self.task.await;
        self.attempts.lock().expect("attempts").clone()
    }
}

/// The accepted runs: (run id, title).
pub fn accepted(attempts: &[Attempt]) -> Vec<(String, String)> {
    attempts
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Accepted { run, title } => Some((run.clone(), title.clone())),
            _ => None,
        })
        .collect()
}

/// Asserts that every answer came within [`ANSWER_WITHIN`], and that each one that was not a
/// 202 is a 503 with the JSON error body (`unavailable`), or no answer at all when
/// `api_may_be_down`. Returns (refused, unanswered, slowest answer).
pub fn check_answers(attempts: &[Attempt], api_may_be_down: bool) -> (usize, usize, Duration) {
    let (mut refused, mut unanswered, mut slowest) = (0, 0, Duration::ZERO);
    for a in attempts {
        slowest = slowest.max(a.took);
        assert!(a.took <= ANSWER_WITHIN, "a request took {:?}: {:?}", a.took, a.outcome);
        match &a.outcome {
            Outcome::Accepted { .. } => {}
            Outcome::Refused { status, body } => {
                refused += 1;
                assert_eq!(*status, 503, "{body}");
                assert_eq!(body["error"]["code"], "unavailable", "{body}");
                assert!(body["error"]["message"].is_string(), "{body}");
            }
            Outcome::NoAnswer(e) => {
                unanswered += 1;
                assert!(api_may_be_down, "no answer while the API was up: {e}");
            }
        }
    }
    (refused, unanswered, slowest)
}

/// Waits until every run of `ids` is terminal (at most `within`); returns when they were.
pub async fn wait_terminal(app: &TestApp, ids: &[String], within: Duration) -> Instant {
    let db = pool(app).await;
    let deadline = Instant::now() + within;
    loop {
        let live: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id::text FROM runs WHERE id::text = ANY($1) AND status NOT IN {TERMINAL}"
        )))
        .bind(ids)
        .fetch_all(&db)
        .await
        .unwrap_or_else(|_| ids.to_vec());
        if live.is_empty() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "runs stuck after {within:?}: {live:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A pool of our own: the test's may hold connections a Postgres restart broke.
async fn pool(app: &TestApp) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&app.database_url)
        .await
        .expect("the database")
}

/// The runs of `attempts` accepted by requests sent before `t`.
pub fn accepted_before(attempts: &[Attempt], t: Instant) -> Vec<String> {
    attempts
        .iter()
        .filter(|a| a.sent < t)
        .filter_map(|a| match &a.outcome {
            Outcome::Accepted { run, .. } => Some(run.clone()),
            _ => None,
        })
        .collect()
}

/// What [`check`] found.
#[derive(Debug)]
pub struct Checked {
    /// Runs in the database (the accepted ones, and any whose 202 was lost with the API).
    pub runs: usize,
    /// When the last of them was terminal (as first seen by polling).
    pub all_terminal_at: Instant,
}

const TERMINAL: &str = "('completed','failed','cancelled','expired')";

/// The checks after a fault: waits (at most `within`) until every run of the database is
/// terminal, then asserts that every accepted run is among them and `completed`, with exactly
/// one assistant message with the tool call and one final answer, one tool invocation, exactly
/// one task of its title, at most one terminal event in the events stream; that no request
/// that got another answer than 202 left a run or a task; and that the outbox empties.
pub async fn check(app: &TestApp, attempts: &[Attempt], within: Duration) -> Checked {
    let db = pool(app).await;
    let deadline = Instant::now() + within;
    let all_terminal_at = loop {
        let live: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id::text, status FROM runs WHERE status NOT IN {TERMINAL} ORDER BY id"
        )))
        .fetch_all(&db)
        .await
        .expect("runs");
        if live.is_empty() {
            break Instant::now();
        }
        assert!(Instant::now() < deadline, "{} runs stuck after {within:?}: {live:?}", live.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let runs: Vec<(String, String, String, Option<Value>)> =
        sqlx::query_as("SELECT id::text, status, input, error FROM runs")
            .fetch_all(&db)
            .await
            .expect("runs");
    let by_id: HashMap<&str, _> = runs.iter().map(|r| (r.0.as_str(), r)).collect();
    for (id, title) in accepted(attempts) {
        let run = by_id.get(id.as_str()).unwrap_or_else(|| panic!("accepted run {id} lost"));
        assert_eq!(run.1, "completed", "run {id} ({title}) ended {}: {:?}", run.1, run.3);
    }
    for r in &runs {
        assert_eq!(r.1, "completed", "run {} ended {}: {:?}", r.0, r.1, r.3);
    }
    // One reply per turn: the turn that called the tool and the turn that answered.
    let replies: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT r.id::text, \
           count(m.id) FILTER (WHERE m.tool_calls IS NOT NULL), \
           count(m.id) FILTER (WHERE m.tool_calls IS NULL) \
         FROM runs r LEFT JOIN messages m ON m.run_id = r.id AND m.role = 'assistant' \
         GROUP BY r.id",
    )
    .fetch_all(&db)
    .await
    .expect("messages");
    for (id, calls, answers) in &replies {
        assert_eq!((calls, answers), (&1, &1), "run {id}: tool-call turns, answers");
    }
    let invocations: Vec<(String, i64)> = sqlx::query_as(
        "SELECT r.id::text, count(i.id) FROM runs r \
         LEFT JOIN tool_invocations i ON i.run_id = r.id GROUP BY r.id",
    )
    .fetch_all(&db)
    .await
    .expect("tool invocations");
    for (id, n) in &invocations {
        assert_eq!(*n, 1, "run {id}: tool invocations");
    }
    // One side effect per write: one task per run, of the title it asked for.
    let tasks: HashMap<String, i64> =
        sqlx::query_as("SELECT title, count(*) FROM tasks GROUP BY title")
            .fetch_all(&db)
            .await
            .expect("tasks")
            .into_iter()
            .collect();
    for r in &runs {
        let title = r.2.strip_prefix("add a task to ").unwrap_or(&r.2);
        if tasks.get(title) != Some(&1) {
            let call: Option<(Option<String>, i32)> = sqlx::query_as(
                "SELECT result, attempt FROM tool_invocations WHERE run_id = $1::uuid",
            )
            .bind(&r.0)
            .fetch_optional(&db)
            .await
            .expect("tool invocation");
            panic!("run {}: {:?} tasks titled {title}; its call: {call:?}", r.0, tasks.get(title));
        }
    }
    assert_eq!(tasks.values().sum::<i64>(), runs.len() as i64, "a task without a run");
    // A refused request wrote nothing.
    for a in attempts {
        if let Outcome::Refused { status, .. } = &a.outcome {
            let input = format!("add a task to {}", a.title);
            assert!(
                !runs.iter().any(|r| r.2 == input),
                "the refused ({status}) {} left a run",
                a.title
            );
        }
    }
    // None ended twice on the bus either.
    let terminal = terminal_events(app).await;
    for (run, n) in &terminal {
        assert!(*n <= 1, "run {run}: {n} terminal events");
    }
    // Nothing waits in the outbox.
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&db).await.expect("outbox");
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} outbox rows never published");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Checked { runs: runs.len(), all_terminal_at }
}

/// Terminal events per run, read from the whole events stream.
async fn terminal_events(app: &TestApp) -> HashMap<String, usize> {
    use async_nats::jetstream::consumer::pull;
    let client = async_nats::connect(crate::nats_addrs(&app.nats_url)).await.expect("NATS");
    let js = async_nats::jetstream::new(client);
    let subjects = agentyard_core::subjects::Subjects::new(app.prefix.clone());
    // Retried: a cluster that lost a node may still be electing the stream's leader.
    let mut tries = 0;
    let consumer = loop {
        let config = pull::Config { filter_subject: subjects.all_events(), ..Default::default() };
        let made = match js.get_stream(subjects.events_stream()).await {
            Ok(stream) => stream.create_consumer(config).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match made {
            Ok(c) => break c,
            Err(e) if tries < 60 => {
                tries += 1;
                eprintln!("cannot read the events stream yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("cannot read the events stream: {e}"),
        }
    };
    let mut out: HashMap<String, usize> = HashMap::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .expect("fetch");
        let mut got = 0;
        while let Some(Ok(m)) = batch.next().await {
            got += 1;
            let e: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            let kind = e["type"].as_str().unwrap_or_default();
            if ["run.completed", "run.failed", "run.cancelled", "run.expired"].contains(&kind) {
                let run = e["data"]["run"]["id"].as_str().unwrap_or_default().to_owned();
                *out.entry(run).or_default() += 1;
            }
            let _ = m.ack().await;
        }
        if got == 0 {
            return out;
        }
    }
}

/// A fault's numbers.
#[derive(Debug)]
pub struct Recovery {
    pub fault: &'static str,
    /// How long the dependency (or process) was down.
    pub down: Duration,
    /// From its return to the first 202 of a request sent after it.
    pub first_accepted: Duration,
    /// From its return to every run terminal.
    pub all_terminal: Duration,
    pub accepted: usize,
    /// Answered with a 503 (or no answer, while the API itself was down).
    pub refused: usize,
    pub unanswered: usize,
    pub slowest_answer: Duration,
}

impl Recovery {
    /// Prints one line (`cargo test -- --nocapture` shows it; BENCHMARKS.md records them).
    pub fn print(&self) {
        println!(
            "fault {:<28} down {:>5.1}s | first 202 {:>5.2}s after return | all terminal {:>5.2}s after return | {} accepted, {} refused (503), {} unanswered, slowest answer {:.2}s",
            self.fault,
            self.down.as_secs_f64(),
            self.first_accepted.as_secs_f64(),
            self.all_terminal.as_secs_f64(),
            self.accepted,
            self.refused,
            self.unanswered,
            self.slowest_answer.as_secs_f64(),
        );
    }
}

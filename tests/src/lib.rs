//! The end-to-end harness: a fresh database and subject prefix per test, the scripted model in
//! the test process, and the API and agent workers as real child processes of the `agentyard`
//! binary (so tests can `kill -9` them). Set `TEST_LOG=1` to see the children's logs; they are
//! otherwise written to `target/e2e-logs/`.

pub mod faults;
pub mod private;
pub mod sse;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentyard_scripted_llm::{Options, Script, Spawned};
use agentyard_store::Store;
use agentyard_store::secrets::Keyring;
use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::{Child, Command};

pub use agentyard_core::sse::SseEvent;

/// The script every test's model follows (see crates/scripted-llm/examples/script.yaml).
/// What it does not answer goes to the scripted model's built-in tool rules (`add a task to
/// <title>`, `call <name> <json>`, ...: crates/scripted-llm/src/builtin.yaml), then to the
/// default answer.
pub const TEST_SCRIPT: &str = r#"
rules:
  - match: "^flaky"
    responses:
      - error: { status: 429, retry_after: 1, message: "slow down" }
      - error: { status: 500 }
      - text: "recovered after two failures"
  - match: "^always fail"
    responses:
      - error: { status: 500, message: "the model is down" }
  # Dead-lettered after AY_MAX_ATTEMPTS (4), then answers: a replay after the cause is fixed.
  - match: "^fails four times"
    responses:
      - error: { status: 500, message: "the model is down" }
      - error: { status: 500, message: "the model is down" }
      - error: { status: 500, message: "the model is down" }
      - error: { status: 500, message: "the model is down" }
      - text: "back on the fifth try"
  - match: "^bad request"
    responses:
      - error: { status: 400, message: "unsupported parameter" }
  # A model that calls a tool whether or not the agent offers it (to test the tool worker's
  # own checks).
  - match: "^rogue call (?P<name>\\S+)"
    responses:
      - tool_calls:
          - name: "$name"
            arguments: {}
  - match: "^rogue call"
    on: tool
    responses:
      - text: "Here is what I found:\n$tool_results"
  - match: "^rogue add (?P<title>.+)"
    responses:
      - tool_calls:
          - name: add_task
            arguments: { title: "$title" }
  - match: "^rogue add"
    on: tool
    responses:
      - text: "Here is what I found:\n$tool_results"
  - match: "^empty stream"
    responses:
      - text: "never sent"
        cut_after_tokens: 0
  - match: "^cut once"
    responses:
      - text: "cut off after two words"
        cut_after_tokens: 2
      - text: "whole on the second try"
  - match: "^busy"
    responses:
      - text: "working on it one two three four five six seven"
        token_delay_ms: 30
  - match: "^json on the second try"
    responses:
      - text: "Sure! Here is what you asked for."
      - text: '{"ok": true}'
  - match: "^slow"
    responses:
      - text: "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty twentyone twentytwo twentythree twentyfour twentyfive twentysix twentyseven twentyeight twentynine thirty"
        token_delay_ms: 150
"#;

/// How to start a test stack.
#[derive(Clone, Debug)]
pub struct TestOptions {
    pub workers: usize,
    /// Also start the built-in tool server and one tool worker.
    pub tools: bool,
    /// Also start one workflow orchestrator.
    pub orchestrator: bool,
    pub token_delay_ms: u64,
    /// Extra environment for the API and the workers.
    pub env: Vec<(String, String)>,
    /// A Postgres server of the test's own (its `postgres` database URL) instead of
    /// DATABASE_URL's.
    pub postgres_url: Option<String>,
    /// A NATS server of the test's own instead of NATS_URL's.
    pub nats_url: Option<String>,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            tools: false,
            orchestrator: false,
            token_delay_ms: 0,
            env: Vec::new(),
            postgres_url: None,
            nats_url: None,
        }
    }
}

/// A running stack.
pub struct TestApp {
    pub api_url: String,
    pub database_url: String,
    pub db_name: String,
    pub nats_url: String,
    pub prefix: String,
    /// Admin token of the first organization.
    pub token: String,
    pub org_id: String,
    pub store: Store,
    pub llm: Spawned,
    pub http: reqwest::Client,
    env: HashMap<String, String>,
    admin_url: String,
    api: Option<Child>,
    workers: Vec<Option<Child>>,
}
/// A venv with a test's PyPI package: `$var`, else `~/.cache/agentyard/<dir>`. `.ci/run` makes
/// it; when `import` fails in it, it is made here (`python3 -m venv`, `pip install <package>`).
///
/// # Panics
/// When the package cannot be installed.
pub fn python_venv(var: &str, dir: &str, package: &str, import: &str) -> PathBuf {
    let venv = std::env::var(var).map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/agentyard").join(dir)
    });
    let python = venv.join("bin/python");
    use std::process::Command as Cmd;
    let run = |cmd: &mut Cmd| cmd.status().is_ok_and(|s| s.success());
    let has = || run(Cmd::new(&python).args(["-c", &format!("import {import}")]));
    if !has() {
        let made = run(Cmd::new("python3").args(["-m", "venv"]).arg(&venv))
            && run(Cmd::new(&python).args(["-m", "pip", "install", "--quiet", package]));
        assert!(made && has(), "cannot install {package} into {} ({var})", venv.display());
    }
    venv
}

/// Binary under test.
pub fn node_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_ay-test-node") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/ay-test-node
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(|d| d.parent()).expect("target dir").join("ay-test-node")
}

/// The servers of a `NATS_URL` that lists several, comma-separated (a cluster's nodes), as the
/// NATS client takes them.
pub fn nats_addrs(url: &str) -> Vec<String> {
    url.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect()
}

fn base_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap_or((url, ""));
    format!("{base}/{db}")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Whether process `pid` has a socket listening on `127.0.0.1:port` (or any address): one of
/// its file descriptors is the inode of a listening entry of `/proc/net/tcp` on that port.
fn listens(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else { return false };
    let port = format!(":{port:04X}");
    // Columns: sl, local_address, rem_address, st (0A: LISTEN), ..., inode (the tenth).
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| c.len() > 9 && c[1].ends_with(&port) && c[3] == "0A")
        .map(|c| format!("socket:[{}]", c[9]))
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
    })
}

fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-logs");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

impl TestApp {
    /// One worker, default options.
    pub async fn spawn() -> Self {
        Self::spawn_with(TestOptions::default()).await
    }

    /// Starts a stack; panics with context when it cannot.
    pub async fn spawn_with(opts: TestOptions) -> Self {
        Self::try_spawn(opts).await.expect("test stack failed to start")
    }

    async fn try_spawn(opts: TestOptions) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let secs = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let id = uuid::Uuid::now_v7().simple().to_string();
        let short = &id[id.len() - 10..];
        let db_name = format!("ay_test_{secs}_{short}");
        let prefix = format!("t{short}");
        let admin_url = opts.postgres_url.clone().unwrap_or_else(base_database_url);
        let database_url = with_database(&admin_url, &db_name);
        let nats_url = opts.nats_url.clone().unwrap_or_else(|| {
            std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
        });
        agentyard_cli::roles::create_database_if_missing(&database_url).await?;
        // Every process of the stack seals secrets with one key of the test's own (a test may
        // give its own in `env`).
        let secret_key = opts
            .env
            .iter()
            .find(|(k, _)| k == "AY_SECRET_KEY")
            .map_or_else(Keyring::generate_encoded, |(_, v)| v.clone());
        let keys = Keyring::from_vars(Some(&secret_key), None)?.context("a secret key")?;
        let store = Store::connect(&database_url, 8).await?.with_keys(keys);
        store.migrate().await?;
        let org = store.create_org("org-a").await?;

        let script = Script::from_yaml_str(TEST_SCRIPT)?;
        let llm = agentyard_scripted_llm::spawn(Options {
            script,
            token_delay_ms: opts.token_delay_ms,
            ..Default::default()
        })
        .await?;
        let port = free_port();
        let mut env: HashMap<String, String> = [
            ("DATABASE_URL", database_url.as_str()),
            ("NATS_URL", nats_url.as_str()),
            ("AY_SUBJECT_PREFIX", prefix.as_str()),
            ("AY_HTTP_ADDR", &format!("127.0.0.1:{port}")),
            ("AY_MCP_ADDR", &format!("127.0.0.1:{}", free_port())),
            ("OPENAI_BASE_URL", llm.base_url.as_str()),
            ("AY_ACK_WAIT", "2s"),
            ("AY_RETRY_BASE", "100ms"),
            ("AY_RETRY_MAX", "2s"),
            ("AY_MAX_ATTEMPTS", "4"),
            ("AY_LLM_TIMEOUT", "10s"),
            ("AY_DB_POOL_SIZE", "8"),
            ("AY_LOG", "info,sqlx=warn,async_nats=warn,rmcp=warn"),
            // Limits are off unless a test turns them on.
            ("AY_RATE_LIMIT", "0"),
            ("AY_AUTH_FAILURE_RATE", "0"),
            ("AY_ORG_MAX_ACTIVE_RUNS", "0"),
            ("AY_SECRET_KEY", secret_key.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.extend(opts.env.iter().cloned());
        let mut app = Self {
            api_url: format!("http://127.0.0.1:{port}"),
            database_url,
            db_name,
            nats_url,
            prefix,
            token: org.token.secret.clone(),
            org_id: org.org_id.to_string(),
            store,
            llm,
            http: reqwest::Client::new(),
            env,
            admin_url,
            api: None,
            workers: Vec::new(),
        };
        app.api = Some(app.start_listening("api", &["api"], "AY_HTTP_ADDR").await?);
        app.api_url = format!("http://{}", app.env["AY_HTTP_ADDR"]);
        app.wait_ready().await?;
        for _ in 0..opts.workers {
            app.start_worker()?;
        }
        if opts.tools {
            app.start_tools().await?;
        }
        if opts.orchestrator {
            app.start_orchestrator()?;
        }
        Ok(app)
    }

    /// Starts `ay-test-node <args>` with the stack's environment.
    pub fn start(&self, name: &str, args: &[&str]) -> anyhow::Result<Child> {
        self.command(name, args).spawn().with_context(|| format!("cannot start {name}"))
    }

    /// The command for `ay-test-node <args>` with the stack's environment (inherited `AY_*` and
    /// `OPENAI_*` variables removed).
    pub fn command(&self, name: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(node_bin());
        cmd.args(args).kill_on_drop(true).stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("AY_") || k.starts_with("OPENAI_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(&self.env);
        if std::env::var_os("TEST_LOG").is_none() {
            let path = log_dir().join(format!("{}-{name}.log", self.prefix));
            if let Ok(f) = std::fs::File::create(path) {
                cmd.stderr(f);
            }
            cmd.stdout(Stdio::null());
        }
        cmd
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = self.http.get(format!("{}/readyz", self.api_url)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the API did not become ready; see target/e2e-logs/{}-api.log", self.prefix)
    }

    /// Starts one more agent worker process; returns its index.
    pub fn start_worker(&mut self) -> anyhow::Result<usize> {
        let i = self.workers.len();
        let child = self.start(&format!("worker{i}"), &["worker", "agent"])?;
        self.workers.push(Some(child));
        Ok(i)
    }

    /// Starts the built-in tool server (waiting until it listens) and one tool worker.
    ///
    /// # Errors
    /// When a process cannot start or the server does not listen.
    pub async fn start_tools(&mut self) -> anyhow::Result<()> {
        let child = self.start_listening("mcp", &["mcp-server"], "AY_MCP_ADDR").await?;
        self.workers.push(Some(child));
        self.start_tool_worker()?;
        Ok(())
    }

    /// Starts a process that listens on the address in the variable `addr_var`, and waits
    /// until that process itself listens there. The port was free when it was picked, but
    /// another test's process may take it first: then this one cannot bind and exits (and the
    /// other one answers on the port), so it is started again on another free port (the
    /// variable changes for every process started from then on).
    async fn start_listening(
        &mut self,
        name: &str,
        args: &[&str],
        addr_var: &str,
    ) -> anyhow::Result<Child> {
        for _ in 0..5 {
            let addr = self.env[addr_var].clone();
            let port: u16 =
                addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).context("port")?;
            let mut child = self.start(name, args)?;
            let pid = child.id().context("pid")?;
            for _ in 0..600 {
                if child.try_wait()?.is_some() {
                    break;
                }
                if listens(pid, port) {
                    return Ok(child);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
            eprintln!("{name} did not listen on {addr} (taken by another test?): another port");
            self.env.insert(addr_var.to_owned(), format!("127.0.0.1:{}", free_port()));
        }
        bail!("{name} did not listen; see target/e2e-logs/{}-{name}.log", self.prefix)
    }

    /// `kill -9` of every process but the API.
    pub async fn kill_workers(&mut self) {
        for i in 0..self.workers.len() {
            self.kill_worker(i).await;
        }
    }

    /// Starts one more tool worker process; returns its index (for [`TestApp::kill_worker`]).
    pub fn start_tool_worker(&mut self) -> anyhow::Result<usize> {
        let i = self.workers.len();
        let child = self.start(&format!("tool{i}"), &["worker", "tool"])?;
        self.workers.push(Some(child));
        Ok(i)
    }

    /// Starts `ay-test-node <args>` as one more process of the stack; returns its index (for
    /// [`TestApp::kill_worker`]).
    pub fn start_role(&mut self, name: &str, args: &[&str]) -> anyhow::Result<usize> {
        let i = self.workers.len();
        let child = self.start(&format!("{name}{i}"), args)?;
        self.workers.push(Some(child));
        Ok(i)
    }

    /// Starts one more orchestrator process; returns its index (for [`TestApp::kill_worker`]).
    pub fn start_orchestrator(&mut self) -> anyhow::Result<usize> {
        let i = self.workers.len();
        let child = self.start(&format!("orchestrator{i}"), &["worker", "orchestrator"])?;
        self.workers.push(Some(child));
        Ok(i)
    }

    /// Waits until a tool worker has listed the built-in server's tools (models see them).
    pub async fn wait_tools(&self) {
        for _ in 0..300 {
            if self.count("SELECT count(*) FROM platform_tools WHERE server = 'builtin'").await > 0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no tool worker listed the built-in tools; see target/e2e-logs/{}-tool*.log",
            self.prefix
        );
    }

    /// Sets (`Some`) or removes (`None`) a variable of the environment of the processes started
    /// from now on.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.env.insert(key.to_owned(), v.to_owned()),
            None => self.env.remove(key),
        };
    }

    /// `kill -9` of the API.
    pub async fn kill_api(&mut self) {
        if let Some(mut c) = self.api.take() {
            c.start_kill().expect("kill api");
            let _ = c.wait().await;
        }
    }

    /// Starts the API again (after [`TestApp::kill_api`]) and waits until it is ready.
    pub async fn start_api(&mut self) {
        self.kill_api().await;
        // A log of its own: the first API's log shows what happened before.
        self.api = Some(self.start("api-again", &["api"]).expect("start api"));
        self.wait_ready().await.expect("the API did not become ready");
    }

    /// `kill -9` of a worker.
    pub async fn kill_worker(&mut self, i: usize) {
        if let Some(mut c) = self.workers[i].take() {
            c.start_kill().expect("kill worker");
            let _ = c.wait().await;
        }
    }

    /// The built-in MCP server's endpoint (started with [`TestOptions::tools`]).
    pub fn mcp_url(&self) -> String {
        format!("http://{}/mcp", self.env["AY_MCP_ADDR"])
    }

    /// A request with the admin token.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.api_url)).bearer_auth(&self.token)
    }

    /// `POST path` with a JSON body and the admin token; returns (status, JSON body).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.req(reqwest::Method::POST, path).json(&body).send().await.expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET path` with the admin token.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.req(reqwest::Method::GET, path).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `method path` with `token` and an optional JSON body; returns (status, JSON body or null).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.api_url)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `PATCH path` with a JSON body and the admin token.
    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, &self.token, Some(body)).await
    }

    /// Posts `input` on a new thread; returns the run.
    pub async fn start_run(&self, input: &str) -> Value {
        let (status, run) = self.post("/v1/runs", serde_json::json!({"input": input})).await;
        assert_eq!(status, 202, "{run}");
        run
    }

    /// The run once terminal (long-polls; fails the test after `timeout`).
    pub async fn wait_terminal(&self, run_id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, run) = self.get(&format!("/v1/runs/{run_id}?wait=5")).await;
            assert_eq!(status, 200, "{run}");
            let s = run["status"].as_str().unwrap_or_default();
            if ["completed", "failed", "cancelled", "expired"].contains(&s) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {run_id} still {s} after {timeout:?}");
        }
    }

    /// A second organization: (org id, admin token).
    pub async fn new_org(&self, name: &str) -> (String, String) {
        let org = self.store.create_org(name).await.expect("create org");
        (org.org_id.to_string(), org.token.secret)
    }

    /// A run created as a transition would, but never published: its outbox row waits for
    /// the relay (as after a crash between commit and publish). Returns the run.
    pub async fn create_run_unpublished(&self, input: &str) -> agentyard_core::run::Run {
        let new = agentyard_store::runs::NewRun {
            id: agentyard_core::RunId::new(),
            org: self.org_id.parse().expect("org id"),
            thread: None,
            agent: None,
            user: None,
            input: input.into(),
            strategy: Default::default(),
            metadata: serde_json::json!({}),
            idempotency: None,
            priority: Default::default(),
            quota: None,
            scopes: vec![agentyard_core::Scope::RunsRead, agentyard_core::Scope::RunsWrite],
            owner: None,
        };
        match self.store.create_run(&new).await.expect("create_run") {
            agentyard_store::runs::CreateOutcome::Created { run, .. } => run,
            other => panic!("not created: {other:?}"),
        }
    }

    /// One SQL count.
    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(self.store.pool()).await.expect(sql)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let children =
            std::mem::take(&mut self.workers).into_iter().flatten().chain(self.api.take());
        for mut c in children {
            let _ = c.start_kill();
        }
        // Clean up on a thread of its own: Drop cannot await, and the test's runtime is ending.
        let (nats, prefix, admin, db) = (
            self.nats_url.clone(),
            self.prefix.clone(),
            self.admin_url.clone(),
            self.db_name.clone(),
        );
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(c) = async_nats::connect(nats_addrs(&nats)).await {
                    let js = async_nats::jetstream::new(c);
                    let subjects = agentyard_core::subjects::Subjects::new(prefix);
                    for s in
                        [subjects.jobs_stream(), subjects.events_stream(), subjects.dlq_stream()]
                    {
                        let _ = js.delete_stream(s).await;
                    }
                }
                if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

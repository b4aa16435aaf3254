//! The system under test, started from the release `agentyard` binary: a fresh database
//! (`ay_bench_<unix_ts>`) and subject prefix (`bench<random>`), the scripted model, the API and
//! N agent workers. Each child writes stdout and stderr to `target/bench-logs/<db>/<name>.log`
//! and runs in that directory (so no stray `.env` is read), with a cleared environment.
//!
//! Invariant: [`Stack::shutdown`] undoes everything [`Stack::start`] did, even a partial start:
//! children are killed (they are also killed if the `Stack` is dropped), then the JetStream
//! streams and the database are deleted unless `keep` is set.

use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentyard_core::subjects::Subjects;
use anyhow::{Context, bail};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use tokio::process::{Child, Command};

use crate::procfs::{Target, Watched};

/// How long a child may take to answer its readiness probe.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What to start.
#[derive(Clone, Debug)]
pub(crate) struct StackOptions {
    /// The `agentyard` binary.
    pub(crate) bin: PathBuf,
    /// The Postgres server, without a database name (the bench adds its own).
    pub(crate) postgres_url: String,
    pub(crate) nats_url: String,
    /// API port; a free one when absent.
    pub(crate) api_port: Option<u16>,
    pub(crate) workers: usize,
    /// The scripted model's delay before its first token.
    pub(crate) first_token_ms: u64,
    /// `AY_AGENT_CONCURRENCY` of the workers, when set.
    pub(crate) agent_concurrency: Option<usize>,
    /// `AY_DB_POOL_SIZE` of the API and the workers, when set.
    pub(crate) db_pool_size: Option<u32>,
    /// Leave the database and streams behind for inspection.
    pub(crate) keep: bool,
    /// Also start the built-in tool server and one tool worker.
    pub(crate) tools: bool,
    /// Also start one workflow orchestrator.
    pub(crate) orchestrator: bool,
    /// Also start the monitor.
    pub(crate) monitor: bool,
    /// Extra environment of every process.
    pub(crate) env: Vec<(String, String)>,
}

/// A running child process.
#[derive(Debug)]
struct Proc {
    name: String,
    pid: u32,
    child: Child,
    log: PathBuf,
}

/// The processes of one benchmark and the resources they use.
#[derive(Debug)]
pub(crate) struct Stack {
    opts: StackOptions,
    db_name: String,
    prefix: String,
    log_dir: PathBuf,
    api_addr: String,
    procs: Vec<Proc>,
}

impl Stack {
    /// Names the database, prefix and log directory; starts nothing yet.
    ///
    /// # Errors
    /// When the log directory cannot be created or no API port is free.
    pub(crate) fn new(opts: StackOptions) -> anyhow::Result<Self> {
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).context("clock before 1970")?;
        let db_name = format!("ay_bench_{}", ts.as_secs());
        let random = std::collections::hash_map::RandomState::new().hash_one(ts.as_nanos());
        let prefix = format!("bench{:08x}", random as u32);
        let exe = std::env::current_exe().context("cannot locate the bench executable")?;
        // target/release/agentyard-bench -> target/bench-logs
        let target = exe.parent().and_then(Path::parent).unwrap_or(Path::new("target"));
        let log_dir = target.join("bench-logs").join(&db_name);
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("cannot create {}", log_dir.display()))?;
        let api_port = match opts.api_port {
            Some(p) => p,
            None => free_port()?,
        };
        let api_addr = format!("127.0.0.1:{api_port}");
        Ok(Self { opts, db_name, prefix, log_dir, api_addr, procs: Vec::new() })
    }

    /// The API's base URL.
    pub(crate) fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// The bench database's URL.
    pub(crate) fn database_url(&self) -> String {
        format!("{}/{}", self.opts.postgres_url.trim_end_matches('/'), self.db_name)
    }

    /// Migrates, starts the model, the API and the workers, waits until they answer, and
    /// creates an organization.
    ///
    /// # Returns
    /// The organization's API token.
    ///
    /// # Errors
    /// When a step fails; the message names the log file to read.
    pub(crate) async fn start(&mut self, http: &reqwest::Client) -> anyhow::Result<String> {
        eprintln!(
            "stack: database {}, subject prefix {}, logs in {}",
            self.db_name,
            self.prefix,
            self.log_dir.display()
        );
        self.run_once("migrate", &["migrate"]).await?;

        let llm_addr = format!("127.0.0.1:{}", free_port()?);
        let first_token = self.opts.first_token_ms.to_string();
        let args = ["scripted-llm", "--addr", &llm_addr, "--first-token-ms", &first_token];
        self.spawn("scripted-llm", &args, &[])?;
        self.wait_ready(http, &format!("http://{llm_addr}/v1/models")).await?;

        let api_env = [("AY_HTTP_ADDR", self.api_addr.clone())];
        self.spawn("api", &["api"], &api_env)?;
        self.wait_ready(http, &format!("{}/readyz", self.api_url())).await?;

        let mut worker_env = vec![("OPENAI_BASE_URL", format!("http://{llm_addr}/v1"))];
        if let Some(n) = self.opts.agent_concurrency {
            worker_env.push(("AY_AGENT_CONCURRENCY", n.to_string()));
        }
        for i in 1..=self.opts.workers {
            self.spawn(&format!("worker-{i}"), &["worker", "agent"], &worker_env)?;
        }

        if self.opts.tools {
            let mcp_env = [("AY_MCP_ADDR", format!("127.0.0.1:{}", free_port()?))];
            self.spawn("mcp-server", &["mcp-server"], &mcp_env)?;
            self.spawn("tool-worker", &["worker", "tool"], &mcp_env)?;
            self.wait_tools().await?;
        }
        if self.opts.orchestrator {
            self.spawn("orchestrator", &["worker", "orchestrator"], &[])?;
        }
        if self.opts.monitor {
            let llm = [("OPENAI_BASE_URL", format!("http://{llm_addr}/v1"))];
            self.spawn("monitor", &["worker", "monitor"], &llm)?;
        }

        let out =
            self.run_once("create-org", &["admin", "create-org", "--name", "bench", "--json"]);
        let out: serde_json::Value =
            serde_json::from_str(&out.await?).context("create-org did not print JSON")?;
        let token = out["token"].as_str().context("create-org printed no token")?;
        Ok(token.to_owned())
    }

    /// Waits until the tool worker has listed the built-in tools.
    async fn wait_tools(&self) -> anyhow::Result<()> {
        let db = sqlx::PgPool::connect(&self.database_url()).await?;
        for _ in 0..300 {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM platform_tools").fetch_one(&db).await?;
            if n > 0 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "the tool worker never listed the built-in tools; see {}",
            self.log_dir.display()
        )
    }

    /// The children, the bench itself, Postgres and NATS, for the processes table.
    pub(crate) fn watched(&self) -> Vec<Watched> {
        let mut w: Vec<Watched> = self
            .procs
            .iter()
            .map(|p| Watched { name: p.name.clone(), target: Target::Pid(p.pid) })
            .collect();
        w.push(Watched { name: "bench (client)".into(), target: Target::Myself });
        w.push(Watched { name: "postgres (all)".into(), target: Target::Comm("postgres") });
        w.push(Watched { name: "nats-server".into(), target: Target::Comm("nats-server") });
        w
    }

    /// The process id of the child named `name` (`api`, `worker-1`, ...).
    pub(crate) fn pid(&self, name: &str) -> Option<u32> {
        self.procs.iter().find(|p| p.name == name).map(|p| p.pid)
    }

    /// Children that have exited, with their status and log file.
    pub(crate) fn exited(&mut self) -> Vec<String> {
        self.procs
            .iter_mut()
            .filter_map(|p| match p.child.try_wait() {
                Ok(Some(status)) => {
                    Some(format!("{} exited ({status}); see {}", p.name, p.log.display()))
                }
                _ => None,
            })
            .collect()
    }

    /// Where each process logs, for error messages.
    pub(crate) fn log_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.log_dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Kills the children, then deletes the streams and the database (unless `keep`).
    pub(crate) async fn shutdown(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.start_kill();
        }
        for p in &mut self.procs {
            let _ = tokio::time::timeout(Duration::from_secs(5), p.child.wait()).await;
        }
        self.procs.clear();
        if self.opts.keep {
            eprintln!("kept database {} and streams of prefix {}", self.db_name, self.prefix);
            return;
        }
        if let Err(e) = self.delete_streams().await {
            eprintln!("warning: cannot delete the streams of prefix {}: {e:#}", self.prefix);
        }
        if let Err(e) = self.drop_database().await {
            eprintln!("warning: cannot drop database {}: {e:#}", self.db_name);
        }
    }

    async fn delete_streams(&self) -> anyhow::Result<()> {
        let nats = async_nats::connect(&self.opts.nats_url).await?;
        let js = async_nats::jetstream::new(nats);
        let subjects = Subjects::new(self.prefix.clone());
        for name in [subjects.jobs_stream(), subjects.events_stream(), subjects.dlq_stream()] {
            // A stream that was never created (a failed start) is not an error here.
            let _ = js.delete_stream(&name).await;
        }
        Ok(())
    }

    async fn drop_database(&self) -> anyhow::Result<()> {
        let opts: PgConnectOptions =
            self.opts.postgres_url.parse().context("invalid --postgres-url")?;
        let mut conn = opts.database("postgres").connect().await?;
        // The name is ours (`ay_bench_<digits>`), so formatting it into SQL is safe.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db_name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
        Ok(())
    }

    /// An `agentyard` command with a clean environment and its output in `log`.
    fn command(
        &self,
        args: &[&str],
        env: &[(&str, String)],
        log: &Path,
    ) -> anyhow::Result<Command> {
        let file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = Command::new(&self.opts.bin);
        cmd.args(args).current_dir(&self.log_dir).env_clear();
        for key in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        // The bench's own `OTEL_*` variables reach the stack: traces on and off can be compared.
        for (k, v) in std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")) {
            cmd.env(k, v);
        }
        cmd.env("DATABASE_URL", self.database_url())
            .env("NATS_URL", &self.opts.nats_url)
            .env("AY_SUBJECT_PREFIX", &self.prefix)
            .env("AY_LOG", "warn")
            // One token drives all the load: no per-token limit. The quota is on (its check is
            // part of every create) but far above any scenario's runs in flight.
            .env("AY_RATE_LIMIT", "0")
            .env(
                "AY_ORG_MAX_ACTIVE_RUNS",
                std::env::var("BENCH_QUOTA").unwrap_or_else(|_| "100000".into()),
            )
            .env("RUST_BACKTRACE", "1")
            // The bench's database is its own and dropped after: a fixed key seals its secrets.
            .env("AY_SECRET_KEY", "YmVuY2gta2V5LW5vdC1zZWNyZXQtMDEyMzQ1Njc4OWE=");
        if let Some(n) = self.opts.db_pool_size {
            cmd.env("AY_DB_POOL_SIZE", n.to_string());
        }
        cmd.envs(self.opts.env.iter().map(|(k, v)| (k, v)));
        cmd.envs(env.iter().map(|(k, v)| (*k, v)));
        cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file).kill_on_drop(true);
        Ok(cmd)
    }

    fn spawn(&mut self, name: &str, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<()> {
        let log = self.log_dir.join(format!("{name}.log"));
        let child = self.command(args, env, &log)?.spawn().with_context(|| {
            format!(
                "cannot start {} (build it with cargo build --release)",
                self.opts.bin.display()
            )
        })?;
        let pid = child.id().context("the child exited at once")?;
        self.procs.push(Proc { name: name.to_owned(), pid, child, log });
        Ok(())
    }

    /// Runs a command to completion; returns its stdout.
    async fn run_once(&self, name: &str, args: &[&str]) -> anyhow::Result<String> {
        let log = self.log_dir.join(format!("{name}.log"));
        let mut cmd = self.command(args, &[], &log)?;
        cmd.stdout(Stdio::piped());
        let out = cmd
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.opts.bin.display()))?;
        if !out.status.success() {
            bail!("`agentyard {}` failed ({}); see {}", args.join(" "), out.status, log.display());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Polls `url` until it answers 200, failing early when a child exits.
    async fn wait_ready(&mut self, http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < READY_TIMEOUT {
            if let Some(dead) = self.exited().into_iter().next() {
                bail!("{dead}");
            }
            let probe = http.get(url).timeout(Duration::from_secs(1)).send().await;
            if probe.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{url} did not answer 200 within {}s", READY_TIMEOUT.as_secs())
    }
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

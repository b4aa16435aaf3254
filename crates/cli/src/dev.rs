//! `agentyard dev`: the whole system in one process. NATS and Postgres are used at their URLs
//! when they answer; otherwise private instances are started from the installed binaries under
//! `AY_HOME` (default `./.agentyard`). Then: migrate, a dev organization and token (reused by
//! the next `dev` on the same database, which also gets demo integrations and tickets), the model
//! (scripted when none is configured), the API, the agent worker, the tool worker, the
//! orchestrator, the monitor and the built-in tool server.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agentyard_bus::Bus;
use agentyard_core::Scope;
use agentyard_llm::Provider;
use agentyard_runtime::Settings;
use agentyard_runtime::config::Secret;
use agentyard_store::Store;
use agentyard_store::secrets::Keyring;
use anyhow::{Context, bail};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::roles;

const DEV_ORG: &str = "dev";

/// Runs everything until `shutdown`.
///
/// # Errors
/// When a dependency can neither be reached nor started.
pub async fn run(mut settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    roles::check_agents_file(&settings)?;
    // A developer's own MCP servers run on localhost: let the dev org register them.
    settings.mcp_allow_private = true;
    std::fs::create_dir_all(&settings.home)
        .with_context(|| format!("cannot create AY_HOME {}", settings.home.display()))?;
    let home = std::fs::canonicalize(&settings.home)?;
    if settings.secret_key.is_none() {
        settings.secret_key = Some(Secret(dev_secret_key(&home)?));
    }
    let mut children: Vec<Child> = Vec::new();

    if Bus::probe(&settings.nats_url, Duration::from_secs(1)).await.is_err() {
        let (child, url) = start_nats(&home).await?;
        eprintln!(
            "NATS at {} did not answer: started a private nats-server at {url}",
            settings.nats_url
        );
        children.push(child);
        settings.nats_url = url;
    }
    let mut private_pg = None;
    if !postgres_answers(&settings.database_url).await {
        let (pg, url) = start_postgres(&home).await?;
        eprintln!(
            "Postgres at {} did not answer: using a private one at {url}",
            roles::redact(&settings.database_url)
        );
        private_pg = Some(pg);
        settings.database_url = url;
    }

    let store = roles::connect_store(&settings, true).await?;
    let bus = roles::connect_bus(&settings).await?;
    let token = dev_token(&store, &home).await?;
    if let Some(org) = store.find_org_by_name(DEV_ORG).await? {
        store.seed_demo(org).await.context("cannot seed the dev organization")?;
    }

    let provider = match Provider::from_settings(
        settings.openai_base_url.as_deref(),
        settings.openai_api_key.as_deref(),
        settings.model.as_deref(),
    )
    .await
    {
        Some(p) => p,
        None => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let base = format!("http://{}/v1", listener.local_addr()?);
            let options = agentyard_scripted_llm::Options::default();
            tokio::spawn(agentyard_scripted_llm::serve(listener, options, shutdown.clone()));
            Provider::scripted(base, settings.model.as_deref())
        }
    };
    print_banner(&settings, &provider, &token, &home);

    let worker = roles::run_agent_worker(
        settings.clone(),
        store.clone(),
        bus.clone(),
        &provider,
        shutdown.clone(),
    );
    let tools = async {
        let llm = agentyard_llm::Llm::new(&provider, settings.llm_timeout);
        agentyard_tool_worker::run(
            settings.clone(),
            store.clone(),
            bus.clone(),
            Some(llm),
            shutdown.clone(),
        )
        .await
        .map_err(anyhow::Error::from)
    };
    let api = roles::serve_api(settings.clone(), store.clone(), bus.clone(), shutdown.clone());
    let mcp = roles::serve_mcp(&settings, store.clone(), bus.clone(), shutdown.clone());
    let orchestrator = async {
        agentyard_orchestrator::run(settings.clone(), store.clone(), bus.clone(), shutdown.clone())
            .await
            .map_err(anyhow::Error::from)
    };
    let monitor = async {
        let model = Some(roles::model_endpoint(&provider));
        agentyard_monitor::run(
            settings.clone(),
            store.clone(),
            bus.clone(),
            model,
            shutdown.clone(),
        )
        .await
        .map_err(anyhow::Error::from)
    };
    let res = tokio::try_join!(api, worker, tools, mcp, orchestrator, monitor);
    shutdown.cancel();
    for mut c in children {
        let _ = c.kill().await;
    }
    if let Some(pg) = private_pg {
        pg.stop().await;
    }
    res.map(|_| ())
}

fn print_banner(settings: &Settings, provider: &Provider, token: &str, home: &Path) {
    let url = format!("http://{}", settings.http_addr);
    let token_file = home.join("dev-token");
    eprintln!(
        "\nagentyard dev is up\n  API:   {url}  (reference: {url}/docs)\n  web:   {url}/console  \
         (the web console: log in with the token below)\n  MCP:   http://{}/mcp  \
         (the built-in tools, for any MCP client: send the token as Authorization: Bearer)\n  \
         {}\n  token: {token}\n         (saved in {})\n\ntry:\n  curl -s -X POST {url}/v1/runs -H \"Authorization: Bearer $(cat {})\" \\\n    \
         -H 'Content-Type: application/json' -d '{{\"input\": \"Hello!\"}}'\n  cargo run --release -- chat \"Hello!\"\n",
        settings.mcp_addr,
        provider.banner(),
        token_file.display(),
        token_file.display(),
    );
}

/// The dev token holds every org scope, and `platform:admin` (it is the operator's own
/// machine), so every route can be tried with it.
fn dev_scopes() -> Vec<Scope> {
    Scope::ALL.to_vec()
}

/// The dev org's token: the saved one while it still works, else a new one.
async fn dev_token(store: &Store, home: &Path) -> anyhow::Result<String> {
    let path = home.join("dev-token");
    let org = store.find_org_by_name(DEV_ORG).await?;
    if let (Some(org), Ok(saved)) = (org, std::fs::read_to_string(&path))
        && let Some(p) = store.authenticate(saved.trim()).await?
        && p.org_id == org
        && dev_scopes().iter().all(|s| p.has_scope(*s))
    {
        return Ok(saved.trim().to_owned());
    }
    let token = match org {
        Some(org) => store.create_token(org, "dev", &dev_scopes()).await?.secret,
        None => {
            let org = store.create_org(DEV_ORG).await?.org_id;
            store.create_token(org, "dev", &dev_scopes()).await?.secret
        }
    };
    write_private(&path, &format!("{token}\n"))?;
    Ok(token)
}

/// The key that seals the dev database's secrets: made once and kept in `AY_HOME/secret-key`
/// (readable by its owner only), like the dev token, so `dev` works with nothing set.
fn dev_secret_key(home: &Path) -> anyhow::Result<String> {
    let path = home.join("secret-key");
    if let Ok(saved) = std::fs::read_to_string(&path) {
        return Ok(saved.trim().to_owned());
    }
    let key = Keyring::generate_encoded();
    write_private(&path, &format!("{key}\n"))?;
    eprintln!("generated the key that seals stored secrets: {}", path.display());
    Ok(key)
}

/// Writes `text` to `path`, readable by its owner only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

async fn postgres_answers(url: &str) -> bool {
    let Ok(opts) = url.parse::<PgConnectOptions>() else {
        return false;
    };
    let opts = opts.database("postgres");
    matches!(tokio::time::timeout(Duration::from_secs(2), opts.connect()).await, Ok(Ok(_)))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start_nats(home: &Path) -> anyhow::Result<(Child, String)> {
    // A nats-server left by a dev that was killed would hold the store directory.
    let pid_file = home.join("nats.pid");
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let pid = pid.trim();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("nats-server") {
            let _ = Command::new("kill").args(["-TERM", pid]).status().await;
            for _ in 0..50 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let port = free_port()?;
    let store_dir = home.join("nats");
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("NATS is not reachable and nats-server could not be started (is it installed?)")?;
    if let Some(pid) = child.id() {
        std::fs::write(&pid_file, pid.to_string())?;
    }
    let url = format!("nats://127.0.0.1:{port}");
    for _ in 0..100 {
        if Bus::probe(&url, Duration::from_millis(200)).await.is_ok() {
            return Ok((child, url));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the private nats-server did not start on {url}")
}

/// Finds an installed Postgres binary (`initdb`, `pg_ctl`): on PATH, else the newest under
/// `/usr/lib/postgresql` (Debian's layout).
pub fn pg_binary(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    let versioned = || {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin").join(name))
            .filter(|p| p.is_file())
            .collect();
        dirs.sort();
        dirs.pop()
    };
    on_path.or_else(versioned).unwrap_or_else(|| PathBuf::from(name))
}

/// Postgres refuses to run as root: run it as the `postgres` user then.
pub fn pg_command(bin: &Path) -> Command {
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

/// A private Postgres, run by `pg_ctl` in the background so it survives a killed `dev` (the
/// next `dev` finds it running and reuses it) and stops when `dev` stops.
pub(crate) struct PrivatePostgres {
    data: PathBuf,
}

impl PrivatePostgres {
    /// Stops the server (fast shutdown).
    pub(crate) async fn stop(&self) {
        let _ = pg_command(&pg_binary("pg_ctl"))
            .args(["stop", "-m", "fast", "-D"])
            .arg(&self.data)
            .stdout(Stdio::null())
            .status()
            .await;
    }
}

async fn start_postgres(home: &Path) -> anyhow::Result<(PrivatePostgres, String)> {
    let data = home.join("pg");
    let url = |port: &str| format!("postgres://postgres@127.0.0.1:{port}/agentyard");
    if !data.join("PG_VERSION").is_file() {
        std::fs::create_dir_all(&data)?;
        let _ = std::process::Command::new("chown").args(["-R", "postgres"]).arg(&data).status();
        let status = pg_command(&pg_binary("initdb"))
            .args(["-U", "postgres", "--auth=trust", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .await
            .context("Postgres is not reachable and initdb could not be run (is it installed?)")?;
        if !status.success() {
            bail!("initdb failed for {}", data.display());
        }
    }
    // Still running from an earlier dev? Its port is line 4 of postmaster.pid.
    let running = pg_command(&pg_binary("pg_ctl"))
        .arg("status")
        .arg("-D")
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if running {
        let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
        if let Some(port) = pid_file.lines().nth(3).map(str::trim)
            && postgres_answers(&url(port)).await
        {
            return Ok((PrivatePostgres { data }, url(port)));
        }
    }
    let port = free_port()?.to_string();
    let options = format!("-p {port} -h 127.0.0.1 -k {}", data.display());
    let status = pg_command(&pg_binary("pg_ctl"))
        .args(["start", "-w", "-t", "60", "-o", &options, "-l"])
        .arg(data.join("server.log"))
        .arg("-D")
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .await
        .context("cannot run pg_ctl")?;
    if !status.success() {
        bail!("the private postgres did not start; see {}", data.join("server.log").display());
    }
    Ok((PrivatePostgres { data }, url(&port)))
}

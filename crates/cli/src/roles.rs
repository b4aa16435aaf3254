//! Connecting to the infrastructure and running each role; `dev` runs several of these in one
//! process, production runs each as its own process.

use std::path::PathBuf;
use std::time::Duration;

use agentyard_bus::{Bus, BusSettings};
use agentyard_llm::{Llm, Provider};
use agentyard_runtime::Settings;
use agentyard_runtime::config::Secret;
use agentyard_store::Store;
use agentyard_store::secrets::{KEY_VAR, Keyring, Pass};
use anyhow::{Context, bail};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use tokio_util::sync::CancellationToken;

/// Connects to Postgres; with `migrate`, creates the database when missing and migrates. With
/// a secret key (`AY_SECRET_KEY`), the store seals and opens secrets with it, and secrets stored
/// before sealing existed are sealed now.
///
/// # Errors
/// When a key variable is invalid, or Postgres cannot be reached or migrated.
pub async fn connect_store(settings: &Settings, migrate: bool) -> anyhow::Result<Store> {
    let keys = keyring(settings)?;
    if migrate {
        create_database_if_missing(&settings.database_url).await?;
    }
    let mut store =
        Store::connect(&settings.database_url, settings.db_pool_size).await.with_context(|| {
            format!("cannot connect to Postgres (DATABASE_URL={})", redact(&settings.database_url))
        })?;
    if migrate {
        store.migrate().await.context("cannot migrate the database")?;
    }
    store = store.with_group_commit(settings.db_group_commit);
    if let Some(keys) = keys {
        store = store.with_keys(keys);
        let done = store
            .reseal_secrets(Pass::Plaintext)
            .await
            .context("cannot seal the secrets stored before sealing existed")?;
        if done.resealed > 0 {
            tracing::info!(sealed = done.resealed, "sealed secrets stored in plaintext");
        }
    }
    Ok(store)
}

/// The keyring `AY_SECRET_KEY` and `AY_SECRET_KEY_OLD` describe (None when unset).
///
/// # Errors
/// A key that is not base64 of 32 bytes, naming its variable.
pub fn keyring(settings: &Settings) -> anyhow::Result<Option<Keyring>> {
    Ok(Keyring::from_vars(
        settings.secret_key.as_ref().map(Secret::expose),
        settings.secret_key_old.as_ref().map(Secret::expose),
    )?)
}

/// Every service seals and opens secrets: it refuses to start without a key.
///
/// # Errors
/// When `AY_SECRET_KEY` is not set.
pub fn require_secret_key(settings: &Settings) -> anyhow::Result<()> {
    if settings.secret_key.is_none() {
        bail!(
            "{KEY_VAR} is not set: every agentyard service needs the key that seals the \
             secrets stored in Postgres (base64 of 32 bytes, e.g. `openssl rand -base64 32`; \
             the same on every process; see docs/secrets.md)"
        );
    }
    Ok(())
}

/// Creates the database named in `url` when the server has no such database.
///
/// # Errors
/// When the server cannot be reached.
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
    let opts: PgConnectOptions = url.parse().context("DATABASE_URL is not a valid URL")?;
    let Some(name) = opts.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = opts
        .clone()
        .database("postgres")
        .connect()
        .await
        .with_context(|| format!("cannot connect to Postgres at {}", redact(url)))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        // Another process may create it at the same moment: that is fine.
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await {
            let dup = e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "42P04");
            if !dup {
                return Err(e).context("cannot create the database");
            }
        }
    }
    Ok(())
}

/// Hides the password of a connection URL.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// How long a starting process goes on trying to provision JetStream: a request can time out
/// while a new cluster elects its leaders, or while other processes provision the same streams.
const PROVISION_FOR: Duration = Duration::from_secs(30);

/// Connects to NATS and provisions streams and consumers, trying again for [`PROVISION_FOR`].
///
/// # Errors
/// When NATS cannot be reached or JetStream refuses the configuration.
pub async fn connect_bus(settings: &Settings) -> anyhow::Result<Bus> {
    agentyard_bus::Bus::probe(&settings.nats_url, Duration::from_secs(5))
        .await
        .with_context(|| format!("cannot connect to NATS (NATS_URL={})", settings.nats_url))?;
    let bus = Bus::connect(&settings.nats_url, &settings.subject_prefix).await?;
    let wanted = BusSettings {
        events_max_age: settings.events_max_age,
        ack_wait: settings.ack_wait,
        replicas: settings.nats_replicas,
    };
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        let e = match bus.provision(&wanted).await {
            Ok(()) => return Ok(bus),
            Err(e) => anyhow::Error::new(e),
        };
        if started.elapsed() + delay >= PROVISION_FOR {
            return Err(e.context("cannot provision JetStream (is it enabled? nats-server -js)"));
        }
        tracing::warn!(
            error = format!("{e:#}"),
            ?delay,
            "cannot provision JetStream yet; retrying"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(4));
    }
}

/// Fails first thing when `agents.yaml` is broken (the message names its line and field).
///
/// # Errors
/// As above.
pub fn check_agents_file(settings: &Settings) -> anyhow::Result<()> {
    agentyard_agents::Catalog::load(settings.config_dir.as_deref()).map_err(anyhow::Error::msg)?;
    Ok(())
}

/// `agentyard api`.
///
/// # Errors
/// When a dependency is unreachable or the address cannot be bound.
pub async fn api(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    require_secret_key(&settings)?;
    check_agents_file(&settings)?;
    let store = connect_store(&settings, false).await?;
    let bus = connect_bus(&settings).await?;
    serve_api(settings, store, bus, shutdown).await
}

/// Binds `AY_HTTP_ADDR` and serves the API until `shutdown`.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve_api(
    settings: Settings,
    store: Store,
    bus: Bus,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("cannot listen on AY_HTTP_ADDR={}", settings.http_addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "API listening");
    if settings.metrics {
        agentyard_bus::heartbeat::announce_metrics_addr(reachable(addr));
    }
    let state = agentyard_api::AppState::new(settings, store, bus, shutdown.clone()).await?;
    agentyard_api::serve(listener, state, shutdown).await?;
    Ok(())
}

/// `agentyard mcp-server`.
///
/// # Errors
/// When a dependency is unreachable or the address cannot be bound.
pub async fn mcp_server(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    require_secret_key(&settings)?;
    let store = connect_store(&settings, false).await?;
    let bus = connect_bus(&settings).await?;
    // Its own listener serves /metrics too (under `dev`, the API's listener is announced).
    if settings.metrics {
        agentyard_bus::heartbeat::announce_metrics_addr(reachable(settings.mcp_addr));
    }
    serve_mcp(&settings, store, bus, shutdown).await
}

/// Serves `GET /metrics` at `AY_METRICS_ADDR` for a worker (which has no HTTP server of its
/// own), logs the address and puts it in the heartbeats; nothing when metrics are off.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve_worker_metrics(
    settings: &Settings,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    if !settings.metrics {
        return Ok(());
    }
    let addr =
        agentyard_metrics::http::serve(settings.metrics_addr, settings.http, shutdown.clone())
            .await
            .with_context(|| {
                format!("cannot listen on AY_METRICS_ADDR={}", settings.metrics_addr)
            })?;
    tracing::info!(url = %format!("http://{addr}/metrics"), "metrics listening");
    agentyard_bus::heartbeat::announce_metrics_addr(reachable(addr));
    Ok(())
}

/// How others reach a bound address: an unspecified IP (`0.0.0.0`, `::`) is replaced with
/// the host's name (a container's name resolves in its network).
fn reachable(addr: std::net::SocketAddr) -> String {
    if !addr.ip().is_unspecified() {
        return addr.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    match host.trim() {
        "" => addr.to_string(),
        host => format!("{host}:{}", addr.port()),
    }
}

/// Binds `AY_MCP_ADDR` and serves the built-in MCP tool server until `shutdown`.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve_mcp(
    settings: &Settings,
    store: Store,
    bus: Bus,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.mcp_addr)
        .await
        .with_context(|| format!("cannot listen on AY_MCP_ADDR={}", settings.mcp_addr))?;
    let url = format!("http://{}/mcp", listener.local_addr()?);
    tracing::info!(%url, "MCP tool server listening");
    let every = settings.heartbeat_every;
    agentyard_bus::heartbeat::spawn(bus.clone(), "mcp-server", None, None, every, shutdown.clone());
    let failures = agentyard_runtime::limit::RateLimiter::new(
        settings.auth_failure_rate,
        settings.auth_failure_burst,
    );
    agentyard_tools_server::serve(listener, store, bus, settings.http, failures, shutdown).await?;
    Ok(())
}

/// `agentyard worker tool`.
///
/// # Errors
/// When the configuration is broken or a dependency is unreachable.
pub async fn tool_worker(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    require_secret_key(&settings)?;
    check_agents_file(&settings)?;
    // The model answers servers' sampling requests; without one, sampling is not offered.
    let llm = Provider::from_settings(
        settings.openai_base_url.as_deref(),
        settings.openai_api_key.as_deref(),
        settings.model.as_deref(),
    )
    .await
    .map(|p| Llm::new(&p, settings.llm_timeout));
    let store = connect_store(&settings, false).await?;
    let bus = connect_bus(&settings).await?;
    serve_worker_metrics(&settings, &shutdown).await?;
    agentyard_tool_worker::run(settings, store, bus, llm, shutdown).await?;
    Ok(())
}

/// `agentyard worker orchestrator`.
///
/// # Errors
/// When the configuration is broken or a dependency is unreachable.
pub async fn orchestrator(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    require_secret_key(&settings)?;
    check_agents_file(&settings)?;
    let store = connect_store(&settings, false).await?;
    let bus = connect_bus(&settings).await?;
    serve_worker_metrics(&settings, &shutdown).await?;
    agentyard_orchestrator::run(settings, store, bus, shutdown).await?;
    Ok(())
}

/// `agentyard worker monitor`.
///
/// # Errors
/// When a dependency is unreachable.
pub async fn monitor(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    require_secret_key(&settings)?;
    let store = connect_store(&settings, false).await?;
    let bus = connect_bus(&settings).await?;
    // The model server the agent workers use, to probe its aliases; none configured, none
    // probed.
    let provider = Provider::from_settings(
        settings.openai_base_url.as_deref(),
        settings.openai_api_key.as_deref(),
        settings.model.as_deref(),
    )
    .await;
    serve_worker_metrics(&settings, &shutdown).await?;
    let model = provider.as_ref().map(model_endpoint);
    agentyard_monitor::run(settings, store, bus, model, shutdown).await?;
    Ok(())
}

/// Where `provider` serves, for the monitor's model probes.
pub fn model_endpoint(provider: &Provider) -> agentyard_monitor::ModelEndpoint {
    agentyard_monitor::ModelEndpoint {
        base_url: provider.base_url.clone(),
        api_key: provider.api_key.clone(),
    }
}

/// `agentyard worker agent`: needs a configured model (OPENAI_BASE_URL, OPENAI_API_KEY or a
/// local Ollama).
///
/// # Errors
/// When no model is configured or a dependency is unreachable.
pub async fn agent_worker(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    require_secret_key(&settings)?;
    check_agents_file(&settings)?;
    let provider = Provider::from_settings(
        settings.openai_base_url.as_deref(),
        settings.openai_api_key.as_deref(),
        settings.model.as_deref(),
    )
    .await
    .context(
        "no model configured: set OPENAI_BASE_URL (e.g. to `agentyard scripted-llm`'s \
         http://127.0.0.1:8090/v1) or OPENAI_API_KEY",
    )?;
    eprintln!("{}", provider.banner());
    let store = connect_store(&settings, false).await?;
    let bus = connect_bus(&settings).await?;
    serve_worker_metrics(&settings, &shutdown).await?;
    run_agent_worker(settings, store, bus, &provider, shutdown).await
}

/// Runs the agent worker with `provider` until `shutdown`.
///
/// # Errors
/// When the bus fails for good.
pub async fn run_agent_worker(
    settings: Settings,
    store: Store,
    bus: Bus,
    provider: &Provider,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let llm = Llm::new(provider, settings.llm_timeout);
    agentyard_agent_worker::run(settings, store, bus, llm, shutdown).await?;
    Ok(())
}

/// `agentyard scripted-llm`.
///
/// # Errors
/// When the script is invalid or the address cannot be bound.
pub async fn scripted_llm(
    addr: &str,
    first_token_ms: u64,
    token_delay_ms: u64,
    script: Option<PathBuf>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let script = match script {
        Some(p) => agentyard_scripted_llm::Script::from_file(&p)?,
        None => agentyard_scripted_llm::Script::default(),
    };
    let options = agentyard_scripted_llm::Options {
        first_token_ms,
        token_delay_ms,
        script,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    eprintln!("scripted model listening on http://{}/v1", listener.local_addr()?);
    agentyard_scripted_llm::serve(listener, options, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unspecified_address_is_announced_with_the_host_name() {
        assert_eq!(super::reachable("127.0.0.1:9464".parse().unwrap()), "127.0.0.1:9464");
        let any = super::reachable("0.0.0.0:9464".parse().unwrap());
        assert!(any.ends_with(":9464") && !any.starts_with("0.0.0.0"), "{any}");
    }
}

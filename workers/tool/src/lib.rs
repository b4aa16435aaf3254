//! The tool worker: consumes `ToolCall` jobs and runs each call on its MCP server, as the user
//! who started the run. Every call ends as a row of the audit log (`tool_invocations`) with its
//! result or error; the transaction recording a step's last result enqueues the next
//! `AgentStep`. Stateless: any number of processes share the durable `tool` consumer.
//!
//! The agent worker runs the first round of its built-in calls itself, with this crate's
//! [`InlineCalls`]; the tool workers get those calls that it hands over (a retry is due, or it
//! died running them), their later rounds (after an answer), and every call to another server.
//!
//! Before a call runs: the tool must be enabled for the agent and allowed by the run's scopes
//! (else an error result goes back to the model and nothing runs); a tool that needs approval
//! waits for a human (`requires_input`), as a state, not in a worker slot. During a call, a
//! server's elicitation waits the same way (the call runs again once answered). A server's
//! sampling request ("ask your model") is answered with the platform's model when one is
//! configured. Unreachable servers and timeouts are retried with backoff, behind a circuit
//! breaker per server, then answered with an error result.

mod call;
mod input;
mod refresh;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentyard_agents::Catalog;
use agentyard_bus::{Bus, BusError, Outbox};
use agentyard_mcp::ConfigServers;
use agentyard_runtime::Settings;
use agentyard_store::Store;
use tokio_util::sync::CancellationToken;

/// Why the worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] agentyard_store::StoreError),
    #[error("{0}")]
    Config(String),
}

/// Consecutive failures after which a server's breaker opens.
const BREAKER_FAILURES: u32 = 3;
/// How long an open breaker refuses calls.
const BREAKER_OPEN: Duration = Duration::from_secs(10);

/// Per server: consecutive failures and, when open, until when.
#[derive(Debug, Default)]
pub(crate) struct Breakers(Mutex<HashMap<String, (u32, Option<Instant>)>>);

impl Breakers {
    /// None when calls may go; else how long the breaker stays open.
    pub(crate) fn open_for(&self, server: &str) -> Option<Duration> {
        let map = self.0.lock().expect("breakers poisoned");
        map.get(server)
            .and_then(|(_, until)| *until)
            .and_then(|u| u.checked_duration_since(Instant::now()))
    }

    pub(crate) fn record(&self, server: &str, ok: bool) {
        let mut map = self.0.lock().expect("breakers poisoned");
        let entry = map.entry(server.to_owned()).or_default();
        if ok {
            *entry = (0, None);
        } else {
            entry.0 += 1;
            if entry.0 >= BREAKER_FAILURES {
                tracing::warn!(server, failures = entry.0, "circuit breaker open");
                entry.1 = Some(Instant::now() + BREAKER_OPEN);
            }
        }
    }
}

/// What a call handler needs; shared by all jobs of the process.
#[derive(Clone)]
pub(crate) struct Ctx {
    store: Store,
    outbox: Outbox,
    settings: Arc<Settings>,
    catalog: Arc<Catalog>,
    servers: Arc<ConfigServers>,
    key: Arc<Vec<u8>>,
    breakers: Arc<Breakers>,
    /// Answers servers' sampling requests; None: sampling is not offered.
    sampler: Option<Arc<dyn agentyard_mcp::Sampler>>,
    /// The session to the built-in tools, served in this process, that every call shares.
    builtin: Arc<agentyard_mcp::SharedSession>,
    /// Stdio servers' processes between calls, by server and organization.
    stdio: Arc<agentyard_mcp::Pool>,
}

/// The tool worker's handling of a call, in another role's process: the agent worker runs the
/// built-in calls of its model's turns with it, right after storing them, instead of sending
/// them to a tool worker (docs/decisions.md, "Built-in calls run where the model asked for
/// them").
pub struct InlineCalls(call::ToolCalls);

impl InlineCalls {
    /// With the agent catalog the caller loaded: the operator's MCP servers, the tool token
    /// key, the built-in tools on an in-process session, the stdio pool. The tool worker builds
    /// its own handling here too.
    ///
    /// # Errors
    /// When the configuration is broken or the tool token key cannot be read.
    pub async fn new(
        settings: Arc<Settings>,
        store: Store,
        bus: Bus,
        outbox: Outbox,
        catalog: Arc<Catalog>,
        llm: Option<agentyard_llm::Llm>,
    ) -> Result<Self, WorkerError> {
        let servers = Arc::new(
            ConfigServers::load(settings.config_dir.as_deref()).map_err(WorkerError::Config)?,
        );
        let key = Arc::new(store.tool_token_key().await?);
        let sampler = llm.map(|l| Arc::new(ModelSampler(l)) as Arc<dyn agentyard_mcp::Sampler>);
        // The built-in tools run here, on the worker's own store and bus: a call to one costs
        // no request to another process.
        let tools = agentyard_tools_server::ToolServer::new(store.clone(), bus);
        let builtin = Arc::new(agentyard_mcp::SharedSession::new(
            tools.in_process(key.clone()),
            sampler.clone(),
        ));
        Ok(Self(call::ToolCalls(Ctx {
            store,
            outbox,
            settings,
            catalog,
            servers,
            key,
            breakers: Arc::default(),
            sampler,
            builtin,
            stdio: Arc::new(agentyard_mcp::Pool::new(STDIO_IDLE, STDIO_IDLE_FOR)),
        })))
    }

    /// Runs `call`, which its turn claimed, as a tool worker's first delivery would after the
    /// claim: checks, the call, its result stored. False when it did not end here (a retry or
    /// a give-up is due, or the store failed: the tool workers must take the call, with their
    /// backoff and dead letters).
    pub async fn run(&self, call: agentyard_store::tools::PendingCall) -> bool {
        use agentyard_bus::runner::Verdict;
        match call::run_claimed(&self.0.0, call).await {
            Ok(Verdict::Ack) => true,
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %agentyard_services::error::cause_chain(&e),
                    "a built-in call could not be stored; a tool worker takes it");
                false
            }
        }
    }
}

/// Idle processes kept per stdio server and organization, and for how long.
const STDIO_IDLE: usize = 4;
const STDIO_IDLE_FOR: Duration = Duration::from_secs(300);

/// Sampling with the platform's model (the one agent workers use).
struct ModelSampler(agentyard_llm::Llm);

impl agentyard_mcp::Sampler for ModelSampler {
    fn sample(
        &self,
        system: Option<String>,
        prompt: String,
        max_tokens: u32,
    ) -> futures::future::BoxFuture<'static, Result<(String, String), String>> {
        use agentyard_llm::{ChatMessage, ChatRequest, Role};
        let llm = self.0.clone();
        Box::pin(async move {
            let mut messages = Vec::new();
            if let Some(s) = system {
                messages.push(ChatMessage::new(Role::System, s));
            }
            messages.push(ChatMessage::new(Role::User, prompt));
            let request = ChatRequest {
                messages,
                temperature: Some(0.0),
                max_tokens,
                model: None,
                timeout: None,
                tools: Vec::new(),
                tool_choice: None,
            };
            let stream = llm.stream_chat(&request).await.map_err(|e| e.to_string())?;
            let done = stream.finish().await.map_err(|e| e.to_string())?;
            Ok((llm.model().to_owned(), done.content))
        })
    }
}

/// Runs the tool worker until `shutdown`, then finishes the calls in flight.
///
/// # Errors
/// When the configuration is broken or the bus cannot be read.
pub async fn run(
    settings: Settings,
    store: Store,
    bus: Bus,
    llm: Option<agentyard_llm::Llm>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let settings = Arc::new(settings);
    let outbox = Outbox::start(bus.clone(), store.clone(), shutdown.clone());
    let catalog =
        Arc::new(Catalog::load(settings.config_dir.as_deref()).map_err(WorkerError::Config)?);
    // The same handling the agent worker borrows for its built-in calls.
    let InlineCalls(call::ToolCalls(ctx)) = InlineCalls::new(
        settings.clone(),
        store.clone(),
        bus.clone(),
        outbox.clone(),
        catalog,
        llm,
    )
    .await?;
    use agentyard_services::sweeper::{Sweeper, runner_settings};
    Sweeper::spawn(store.clone(), outbox, settings.clone(), &ctx.catalog, shutdown.clone());
    let consumer = bus.tool_consumer().await?;
    let runner = runner_settings(&settings, settings.tool_concurrency);
    let capacity = u64::try_from(settings.tool_concurrency).ok();
    let (every, jobs) = (settings.heartbeat_every, Some(runner.in_flight.clone()));
    agentyard_bus::heartbeat::spawn(bus.clone(), "tool", capacity, jobs, every, shutdown.clone());
    tokio::spawn(refresh::platform_tools(ctx.clone(), shutdown.clone()));
    tracing::info!(
        concurrency = runner.concurrency,
        servers = ctx.servers.0.len(),
        "tool worker started"
    );
    let stdio = ctx.stdio.clone();
    let handler = Arc::new(call::ToolCalls(ctx));
    agentyard_bus::runner::run(bus, vec![consumer], runner, shutdown, handler).await?;
    stdio.close_all().await;
    tracing::info!("tool worker stopped");
    Ok(())
}

//! What the platform does, below any transport: the API, the orchestrator and the CLI call these
//! services, which validate, persist through [`agentyard_store`], publish through
//! [`agentyard_bus`] and answer with domain errors ([`Error`]) that each caller maps to its own
//! terms (HTTP statuses for the API).
//!
//! Layout:
//! - [`runs`]: threads and runs: create, read, list, cancel, answer a run's input request.
//! - [`agents`]: an org's agents (effective configuration, changes, status) and delegation.
//! - [`mcp`]: MCP servers an org registers, and the operator's.
//! - [`tenancy`]: organizations, users, tokens.
//! - [`workflows`]: workflow definitions and templates, executions and their transitions.
//! - [`triggers`]: cron schedules, bus events and signed webhooks that start executions.
//! - [`system`]: the platform's state for operators (dependencies, processes by role, series,
//!   alerts).
//! - [`alerting`]: alert rules (`config/alerts.yaml`) and what they decide.
//! - [`audit`]: the audit trail of administrative acts.
//! - [`dlq`]: dead letters for operators (jobs given up: list, show, drop).
//! - [`sweeper`]: ends what nothing else would: late input answers, runs that stopped moving.
//! - [`error`]: the domain errors.

pub mod agents;
pub mod alerting;
pub mod audit;
pub mod dlq;
pub mod error;
pub mod mcp;
pub mod runs;
pub mod series;
pub mod sweeper;
pub mod system;
pub mod tenancy;
pub mod triggers;
pub mod workflows;

use std::sync::Arc;

use agentyard_bus::{Bus, Outbox};
use agentyard_core::RunId;
use agentyard_runtime::Settings;
use agentyard_store::{OutboxRow, Store};

pub use agentyard_store::orgs::Principal;
pub use error::{Entity, Error, Result};

/// The services and what they need; cheap to clone.
#[derive(Clone, Debug)]
pub struct Services {
    pub store: Store,
    pub bus: Bus,
    pub outbox: Outbox,
    pub settings: Arc<Settings>,
    /// Agent types and model aliases (`config/agents.yaml`).
    pub catalog: Arc<agentyard_agents::Catalog>,
    /// The operator's MCP servers (`config/mcp-servers.yaml`).
    pub mcp_servers: Arc<agentyard_mcp::ConfigServers>,
    /// The built-in workflow templates (`config/workflows/`).
    pub templates: Arc<agentyard_workflows::Templates>,
    /// Alert rules and webhooks (`config/alerts.yaml`).
    pub alerts: Arc<alerting::AlertConfig>,
}

impl Services {
    /// The services, with the configuration files of `settings.config_dir` (or the compiled-in
    /// ones) loaded and checked.
    ///
    /// # Errors
    /// The first broken file, with its problems.
    pub fn new(settings: Settings, store: Store, bus: Bus, outbox: Outbox) -> Result<Self, String> {
        let dir = settings.config_dir.as_deref();
        let catalog = agentyard_agents::Catalog::load(dir)?;
        let mcp_servers = agentyard_mcp::ConfigServers::load(dir)?;
        let templates = agentyard_workflows::Templates::load(dir, &workflows::known(&catalog))?;
        let alerts = alerting::AlertConfig::load_without_secrets(dir)?;
        Ok(Self {
            store,
            bus,
            outbox,
            settings: Arc::new(settings),
            catalog: Arc::new(catalog),
            mcp_servers: Arc::new(mcp_servers),
            templates: Arc::new(templates),
            alerts: Arc::new(alerts),
        })
    }

    /// Publishes outbox rows a transition wrote; a failure is logged and left to the relay
    /// (the state is committed).
    pub async fn dispatch(&self, rows: &[OutboxRow]) {
        if let Err(e) = self.outbox.dispatch(rows).await {
            tracing::warn!(error = %e, "publish after commit failed; the relay will retry");
        }
    }

    /// Tells the worker generating `run` to stop (core NATS; best effort: the run's final
    /// write is conditional anyway).
    pub async fn signal_cancel(&self, run: RunId) {
        if let Err(e) = self.bus.signal_cancel(run).await {
            tracing::warn!(run_id = %run, error = %e, "cannot send the cancel signal");
        }
    }
}

/// A page of a list, newest first: pass `next_cursor` back as `cursor` for the next one.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Checks a page size.
///
/// # Errors
/// `invalid_query` outside 1..=max.
pub fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(Error::BadQuery(format!("limit must be between 1 and {max}")))
    }
}

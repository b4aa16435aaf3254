//! Postgres persistence: every repository function is scoped to the organization it serves.
//! SQL knows rows, not NATS: transitions write outbox facts (`agentyard_core::outbox::Fact`),
//! and `bus` turns them into subjects and messages.
//!
//! Layout:
//! - [`orgs`]: organizations, users, API tokens and authentication.
//! - [`threads`]: threads and their messages.
//! - [`runs`]: the run state machine. Each transition (create, start, finish, cancel) is one
//!   round trip: multi-row transitions are Postgres functions (migrations/0002_runs.sql), so
//!   the state change and its outbox facts commit together.
//! - [`tools`]: the tool-call state machine (migrations/0003_tools.sql), the audit log, the
//!   tools offered to models, the MCP servers organizations register.
//! - [`outbox`]: facts waiting to be published, and the relay's reading of them.
//! - [`agents`]: an organization's agents (overrides of their type's defaults).
//! - [`usage`]: usage and performance aggregated from the runs.
//! - [`domain`]: the built-in tools' data (tasks, tickets, integrations).
//! - [`monitor`]: instances by their heartbeats, and their ups and downs.
//! - [`series`]: the monitor's lease and place in the event stream, time-bucketed series and
//!   probes of dependencies.
//! - [`alerts`]: alerts, the conditions behind them and their webhook deliveries.
//! - [`audit`]: the append-only trail of administrative acts.
//! - [`direct_calls`]: the audit log's rows of built-in tool calls an MCP client made with an
//!   API token (no run).
//! - [`tool_tokens`]: the signed tokens tool workers mint per call.
//! - [`secrets`]: secrets sealed at rest under the key from `AY_SECRET_KEY`, and rotation.
//! - [`workflows`]: workflow definitions, executions and the transaction they advance in
//!   (migrations/0004_workflows.sql).

pub mod agents;
pub mod alerts;
pub mod audit;
pub mod direct_calls;
pub mod domain;
pub mod error;
mod group;
pub mod monitor;
pub mod orgs;
pub mod outbox;
pub mod runs;
pub mod secrets;
pub mod series;
pub mod threads;
pub mod tool_tokens;
pub mod tools;
pub mod usage;
pub mod workflows;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use error::{Result, StoreError};
pub use outbox::OutboxRow;

/// The schema migrations, embedded in every binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Connections of [`Store::generic_pool`] at most: one per grouped transition (each has one
/// lane) and one for the outbox's deletes.
const GENERIC_CONNECTIONS: u32 = 7;

/// Handle to the database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    /// Connections to the same database where every statement runs its generic plan: the
    /// group commits' lanes and the outbox's deletes use them (see [`Store::generic_pool`]).
    generic: PgPool,
    /// The keys that seal and open the secrets stored here; none: reading or writing a secret
    /// fails with [`secrets::SecretError::NoKey`].
    keys: Option<Arc<secrets::Keyring>>,
    /// The group commits of the hot transitions, started on first use.
    groups: Arc<Groups>,
    /// False: the hot transitions commit one call at a time.
    group_commit: bool,
}

/// The transitions that commit in groups ([`group`]); each starts its loop on first use.
#[derive(Default)]
struct Groups {
    create: OnceLock<group::Group<runs::NewRun, runs::CreateOutcome>>,
    start: OnceLock<group::Group<runs::StartCall, Option<runs::StartedRun>>>,
    finish: OnceLock<group::Group<runs::Finish, runs::FinishOutcome>>,
    tool_step: OnceLock<group::Group<tools::StepCall, tools::Transition>>,
    tool_result: OnceLock<group::Group<tools::ResultCall, tools::Transition>>,
    claim: OnceLock<group::Group<tools::ClaimCall, Option<tools::PendingCall>>>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups").finish_non_exhaustive()
    }
}

impl Store {
    /// Wraps an existing pool.
    pub fn new(pool: PgPool) -> Self {
        let generic = Self::generic_pool(&pool);
        Self { pool, generic, keys: None, groups: Arc::default(), group_commit: true }
    }

    /// A pool like `pool` whose connections plan every prepared statement once, generically
    /// (`plan_cache_mode = force_generic_plan`), opened as they are needed.
    ///
    /// The hot transitions take their calls as arrays, so Postgres's default plan cache costs
    /// a custom plan (knowing the arrays' lengths) against the generic one (assuming ten
    /// elements), finds the custom one cheaper, and plans the statement again on every batch:
    /// measured in `agentyard-bench tools`, planning was a tenth of Postgres's CPU, and the
    /// run start's statement took longer to plan than to run. Every statement run here is a
    /// lookup by key, whose plan does not depend on the values; the queries whose plan does
    /// (lists with optional filters) stay on the main pool. Sequential and bitmap scans are
    /// off on these connections: see below.
    fn generic_pool(pool: &PgPool) -> PgPool {
        // A generic plan is made once per connection, with the tables as they are then: on
        // a new database, empty. Postgres then finds a sequential scan as cheap as an index
        // lookup, and the connection would keep scanning the whole table on every call as it
        // grows (seen in `agentyard-bench tools`: 1,121 scans of `tool_invocations` and
        // 1,678 of `runs` in 12 s, 10 % of Postgres's CPU). Every statement here has an
        // index to look its rows up by, so the planner is told to use it. A plan that has to
        // scan anyway then costs more than `jit_above_cost`, and would be compiled on every
        // call (70 ms): nothing here is worth compiling.
        let options = (*pool.connect_options()).clone().options([
            ("plan_cache_mode", "force_generic_plan"),
            ("enable_seqscan", "off"),
            ("enable_bitmapscan", "off"),
            ("jit", "off"),
        ]);
        PgPoolOptions::new()
            .max_connections(GENERIC_CONNECTIONS)
            .test_before_acquire(false)
            // A lane's connection may sit idle through a Postgres restart, and its next batch
            // would fail on it: one that rested over a second is pinged first (a busy lane's
            // never is), and replaced when the ping fails.
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > Duration::from_secs(1) {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options)
    }

    /// This store with group commit on or off (on by default; see [`group`]).
    #[must_use]
    pub fn with_group_commit(mut self, on: bool) -> Self {
        self.group_commit = on;
        self
    }

    /// Runs `req` through `t`: queued in the group `cell` holds (started on first use, on a
    /// store of its own), or alone when group commit is off.
    async fn commit<Req: Send + Sync + 'static, Out: Send + 'static>(
        &self,
        cell: &OnceLock<group::Group<Req, Out>>,
        t: &'static group::Transition<Req, Out>,
        req: Req,
    ) -> Result<Out> {
        if !self.group_commit {
            return (t.alone)(self, &req).await;
        }
        cell.get_or_init(|| group::Group::spawn(self.detached(), t)).call(t.op, req).await
    }

    /// This store for a group's loop: the generic-plan pool as its pool, the same keys, and
    /// groups of its own (never started), so the loop does not keep the groups that feed it
    /// alive.
    fn detached(&self) -> Self {
        Self {
            pool: self.generic.clone(),
            generic: self.generic.clone(),
            keys: self.keys.clone(),
            groups: Arc::default(),
            group_commit: false,
        }
    }

    /// This store with `keys` to seal and open secrets.
    #[must_use]
    pub fn with_keys(mut self, keys: secrets::Keyring) -> Self {
        self.keys = Some(Arc::new(keys));
        self
    }

    /// The keys, or the error saying none is configured.
    ///
    /// # Errors
    /// [`secrets::SecretError::NoKey`].
    pub fn keys(&self) -> Result<&secrets::Keyring> {
        self.keys.as_deref().ok_or(StoreError::Secret(secrets::SecretError::NoKey))
    }

    /// Connects a pool of at most `max_connections`.
    ///
    /// # Errors
    /// When the URL is invalid or the server does not answer within 5 s.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options: PgConnectOptions =
            url.parse().map_err(|source| StoreError::db("parse DATABASE_URL", source))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            // A ping before every checkout would double the round trips of one-statement
            // transitions; a broken connection fails its query instead, which callers retry.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::db("connect", source))?;
        Ok(Self::new(pool))
    }

    /// Applies pending migrations.
    ///
    /// # Errors
    /// When a migration fails or the database was migrated by a newer version.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(StoreError::Migrate)
    }

    /// The pool, for health checks and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool whose connections run generic plans (see [`Store::generic_pool`]), for tests.
    pub fn generic(&self) -> &PgPool {
        &self.generic
    }

    /// True when Postgres answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// Decodes a JSON value a transition returned.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    op: &'static str,
    v: serde_json::Value,
) -> Result<T> {
    serde_json::from_value(v).map_err(|e| StoreError::Decode { op, detail: e.to_string() })
}

/// The member `name` of a transition's result (null when absent).
pub(crate) fn field(v: &serde_json::Value, name: &str) -> serde_json::Value {
    v.get(name).cloned().unwrap_or(serde_json::Value::Null)
}

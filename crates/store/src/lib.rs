//! Postgres persistence: every repository function is scoped to the organization it serves.
//!
//! Layout:
//! - [`orgs`]: organizations, users, API tokens and authentication.
//! - [`threads`]: threads and their messages.
//! - [`runs`]: the run state machine. Each transition (create, start, finish, cancel) is one
//!   round trip: multi-row transitions are Postgres functions defined in the migrations, so the
//!   state change and its outbox rows commit together.
//! - [`outbox`]: rows waiting to be published to JetStream.
//! - [`agents`]: an organization's agents (overrides of their type's defaults).
//! - [`usage`]: usage and performance aggregated from the runs.

pub mod agents;
pub mod domain;
pub mod error;
pub mod orgs;
pub mod outbox;
pub mod runs;
pub mod threads;
pub mod tool_tokens;
pub mod tools;
pub mod usage;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use error::{Result, StoreError};
pub use outbox::{OutboxMessage, OutboxRow};

/// The schema migrations, embedded in every binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Handle to the database: a pool plus the subject prefix that outbox rows are written under.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    prefix: String,
}

impl Store {
    /// Wraps an existing pool; `prefix` is the bus subject prefix (e.g. `ay`).
    pub fn new(pool: PgPool, prefix: impl Into<String>) -> Self {
        Self { pool, prefix: prefix.into() }
    }

    /// Connects a pool of at most `max_connections`.
    ///
    /// # Errors
    /// When the URL is invalid or the server does not answer within 5 s.
    pub async fn connect(url: &str, max_connections: u32, prefix: &str) -> Result<Self> {
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
        Ok(Self::new(pool, prefix))
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

    /// The bus subject prefix outbox rows are written under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// True when Postgres answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

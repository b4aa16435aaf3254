//! The store's error type.

/// What went wrong talking to Postgres.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A query failed; `op` names the operation.
    #[error("database operation `{op}` failed")]
    Database {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// Migrations could not be applied.
    #[error("migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A row we wrote came back in a shape we do not understand (a bug, not bad input).
    #[error("unexpected data from `{op}`: {detail}")]
    Decode { op: &'static str, detail: String },
    /// A secret could not be sealed or opened (no key, a wrong key, an altered value).
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
}

impl StoreError {
    pub(crate) fn db(op: &'static str, source: sqlx::Error) -> Self {
        Self::Database { op, source }
    }

    /// Connection-level failures are worth retrying; constraint violations and bugs are not.
    /// A server going down or coming up is one: its backends end their sessions with 57P01
    /// (`admin_shutdown`, also sent on an immediate stop) or 57P02 (`crash_shutdown`), and it
    /// refuses connections with 57P03 (`cannot_connect_now`) while it starts.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database { source, .. } => {
                matches!(
                    source,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                ) || source.as_database_error().and_then(|e| e.code()).is_some_and(|c| {
                    matches!(c.as_ref(), "40001" | "40P01" | "57P01" | "57P02" | "57P03")
                        || c.starts_with("08")
                })
            }
            Self::Migrate(_) | Self::Decode { .. } | Self::Secret(_) => false,
        }
    }
}

/// Shorthand.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

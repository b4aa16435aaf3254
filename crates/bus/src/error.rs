//! The bus's error type.

type Source = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: Source,
    },
    #[error("cannot provision {what}")]
    Provision {
        what: String,
        #[source]
        source: Source,
    },
    #[error("failed to publish to {subject}")]
    Publish {
        subject: String,
        #[source]
        source: Source,
    },
    #[error("failed to read {what}")]
    Read {
        what: String,
        #[source]
        source: Source,
    },
    #[error("cannot encode a message")]
    Encode(#[source] serde_json::Error),
}

impl BusError {
    /// Everything but encoding is a matter of NATS being (briefly) unavailable.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Encode(_))
    }
}

/// Shorthand.
pub type Result<T, E = BusError> = std::result::Result<T, E>;

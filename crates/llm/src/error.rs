//! Model errors, classified: transient ones (429, 5xx, timeouts, connection failures) are
//! retried with backoff, honouring `Retry-After`; a 4xx other than 429 fails the run at once.

use std::time::Duration;

use async_openai::error::OpenAIError;

/// A non-2xx answer, with what async-openai's own error drops.
#[derive(Debug, thiserror::Error)]
#[error("model server answered {status}: {body}")]
pub struct HttpStatusError {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: String,
}

/// What went wrong calling the model.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("model server answered {status}: {body}")]
    Status { status: u16, retry_after: Option<Duration>, body: String },
    #[error("model server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the model server")]
    Connect(#[source] reqwest::Error),
    #[error("the model stream broke: {0}")]
    Stream(String),
    #[error("the model server sent something unexpected: {0}")]
    Protocol(String),
    /// The streamed answer ended without a finish reason: cut off, or (llama.cpp with an
    /// overflowing context) an empty stream with no `[DONE]`.
    #[error("the model's streamed answer ended without a finish reason ({0} characters received)")]
    Incomplete(usize),
}

impl LlmError {
    pub(crate) fn from_openai(e: OpenAIError) -> Self {
        match e {
            OpenAIError::Boxed(b) => match b.downcast::<HttpStatusError>() {
                Ok(s) => {
                    Self::Status { status: s.status, retry_after: s.retry_after, body: s.body }
                }
                Err(b) => match b.downcast::<OpenAIError>() {
                    Ok(inner) => Self::from_openai(*inner),
                    Err(b) => Self::Protocol(b.to_string()),
                },
            },
            OpenAIError::ApiError(api) => Self::Status {
                status: api.status_code.as_u16(),
                retry_after: None,
                body: api.api_error.message,
            },
            OpenAIError::Reqwest(e) if e.is_timeout() => Self::Timeout(Duration::ZERO),
            OpenAIError::Reqwest(e) => Self::Connect(e),
            OpenAIError::StreamError(e) => Self::Stream(e.to_string()),
            other => Self::Protocol(other.to_string()),
        }
    }

    /// True when another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Timeout(_) | Self::Connect(_) | Self::Stream(_) | Self::Incomplete(_) => true,
            Self::Protocol(_) => false,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// `error.type` in the GenAI metrics: the HTTP status, or what broke (a small fixed set).
    pub fn error_type(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::Status { status, .. } => status.to_string().into(),
            Self::Timeout(_) => "timeout".into(),
            Self::Connect(_) => "connect".into(),
            Self::Stream(_) => "stream".into(),
            Self::Protocol(_) => "protocol".into(),
            Self::Incomplete(_) => "incomplete".into(),
        }
    }

    /// The stable error code a run fails with because of this error.
    pub fn code(&self) -> &'static str {
        use agentyard_core::run::error_codes::{LLM_BAD_REQUEST, LLM_INCOMPLETE, LLM_UNAVAILABLE};
        match self {
            Self::Incomplete(_) => LLM_INCOMPLETE,
            e if e.is_transient() => LLM_UNAVAILABLE,
            _ => LLM_BAD_REQUEST,
        }
    }
}

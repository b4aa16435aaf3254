//! Every error answer is `{"error": {"code": "...", "message": "..."}}` with a fitting status.
//! 5xx answers say only "internal error"; the cause goes to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Per-field problems of a rejected configuration.
    pub fields: Vec<agentyard_agents::FieldError>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

/// The error body (for OpenAPI).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_json`, `thread_not_found`, `insufficient_scope`, ...
    pub code: String,
    pub message: String,
    /// Every bad field, for validation errors that found several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<agentyard_agents::FieldError>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), fields: Vec::new(), retry_after: None }
    }

    /// 422 naming every bad field.
    pub fn fields(code: &'static str, fields: Vec<agentyard_agents::FieldError>) -> Self {
        let message = fields.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        Self { fields, ..Self::invalid(code, message) }
    }

    /// 429 with `Retry-After: seconds`.
    pub fn too_many(code: &'static str, message: impl Into<String>, seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    /// 403 for a missing scope.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "insufficient_scope", message)
    }

    /// 404 for a resource of kind `what` (also answered for other orgs' resources).
    pub fn not_found(code: &'static str, what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, format!("{what} not found"))
    }

    /// 422 with a message naming the bad field.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 500; logs `err` with its cause chain.
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = err.to_string();
        let mut src = err.source();
        while let Some(s) = src {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            src = s.source();
        }
        tracing::error!(error.cause_chain = %chain, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error")
    }
}

impl From<agentyard_store::StoreError> for ApiError {
    fn from(e: agentyard_store::StoreError) -> Self {
        if e.is_transient() {
            tracing::warn!(error = %e, "database unavailable");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "database unavailable",
            );
        }
        Self::internal(&e)
    }
}

impl From<agentyard_bus::BusError> for ApiError {
    fn from(e: agentyard_bus::BusError) -> Self {
        tracing::warn!(error = %e, "bus unavailable");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "message bus unavailable")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                fields: self.fields,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, s.into());
        }
        response
    }
}

/// Parses a JSON body: malformed JSON is 400 `invalid_json`; valid JSON of the wrong shape is
/// 422 `invalid_request`, naming the field.
///
/// # Errors
/// As above.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", "the body is empty"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    deserialize_all(de)
}

fn deserialize_all<'de, T: DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, ApiError> {
    let value = T::deserialize(&mut *de).and_then(|v| de.end().map(|()| v));
    value.map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {e}"),
            ),
            Category::Data => ApiError::invalid("invalid_request", e.to_string()),
        }
    })
}

/// The request body, or a JSON error when it could not be read (too large: 413).
///
/// # Errors
/// 413 `input_too_large` over the body limit, 400 `invalid_body` otherwise.
pub fn body(
    read: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    read.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(e.status(), "input_too_large", "the request body is too large")
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.body_text())
        }
    })
}

//! Every error answer is `{"error": {"code": "...", "message": "..."}}` with a fitting status;
//! 5xx answers say only "internal error" (the cause goes to the log). Domain errors of
//! [`agentyard_services`] map to statuses here. Also the extractors that turn a bad request
//! into such an answer: [`JsonBody`] (400 `invalid_json`, 422 `invalid_request`, 413; 408
//! `request_timeout` for a body too slow to arrive), [`PathId`] (a malformed id is the entity's
//! 404), [`QueryParams`] (422 `invalid_query`) and [`QueryNumber`] (400 `invalid_query` naming
//! the parameter).

use agentyard_services::{Entity, Error};
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
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

    /// 404 for a resource of kind `entity` (also answered for other orgs' resources).
    pub fn not_found(entity: Entity) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            entity.not_found_code(),
            format!("{} not found", entity.name()),
        )
    }

    /// 400 `invalid_query`: a query parameter is not a number or out of its range.
    pub fn bad_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    /// 422 with a message naming the bad field.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 500; logs `err` with its cause chain.
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        let chain = agentyard_services::error::cause_chain(err);
        tracing::error!(error.cause_chain = %chain, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error")
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let code = e.code();
        match e {
            Error::NotFound(entity) => Self::not_found(entity),
            Error::Invalid { message, fields, .. } => {
                Self { fields, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message) }
            }
            Error::TooLarge(m) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, m),
            Error::BadQuery(m) => Self::bad_query(m),
            Error::Conflict { message, .. } => Self::new(StatusCode::CONFLICT, code, message),
            Error::Forbidden(m) => Self::forbidden(m),
            Error::Unauthorized(m) => Self::new(StatusCode::UNAUTHORIZED, code, m),
            Error::Limited { message, retry_after_secs, .. } => {
                Self::too_many(code, message, retry_after_secs)
            }
            Error::Unavailable(what) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, code, format!("{what} unavailable"))
            }
            Error::Internal(source) => Self::internal(source.as_ref()),
        }
    }
}

impl From<agentyard_store::StoreError> for ApiError {
    fn from(e: agentyard_store::StoreError) -> Self {
        Error::from(e).into()
    }
}

impl From<agentyard_bus::BusError> for ApiError {
    fn from(e: agentyard_bus::BusError) -> Self {
        Error::from(e).into()
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
/// 422 `invalid_request`. Both name the field where parsing failed (`metadata.score: number
/// out of range at line 1 column 40`).
///
/// # Errors
/// As above.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", "the body is empty"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize::<_, T>(&mut *de)
        .map_err(|e| (e.path().to_string(), e.into_inner()))
        .and_then(|v| de.end().map(|()| v).map_err(|e| (String::new(), e)));
    value.map_err(|(path, e)| {
        use serde_json::error::Category;
        // The path of the body itself is `.`.
        let at = if path.is_empty() || path == "." { String::new() } else { format!("{path}: ") };
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {at}{e}"),
            ),
            Category::Data => ApiError::invalid("invalid_request", format!("{at}{e}")),
        }
    })
}

fn body_error(e: &BytesRejection) -> ApiError {
    if let Some(t) = agentyard_runtime::http::BodyTimedOut::find(e) {
        let secs = t.0.as_secs_f64();
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request body did not arrive within {secs} s"),
        );
    }
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(e.status(), "input_too_large", "the request body is too large")
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.body_text())
    }
}

/// A JSON body, parsed (see [`parse_json`]), with its bytes (an idempotency key guards them).
#[derive(Debug)]
pub struct JsonBody<T> {
    pub value: T,
    pub bytes: Bytes,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| body_error(&e))?;
        Ok(Self { value: parse_json(&bytes)?, bytes })
    }
}

/// A JSON body that may be empty (then `None`).
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| body_error(&e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        Ok(Self(Some(parse_json(&bytes)?)))
    }
}

/// An id in the path whose entity says its "not found" answer (a malformed id is answered like
/// an unknown one: ids are opaque to clients).
pub trait PathEntity: std::str::FromStr {
    const ENTITY: Entity;
}

macro_rules! path_entity {
    ($($id:ty => $entity:ident),+ $(,)?) => {$(
        impl PathEntity for $id {
            const ENTITY: Entity = Entity::$entity;
        }
    )+};
}

path_entity!(
    agentyard_core::RunId => Run,
    agentyard_core::ThreadId => Thread,
    agentyard_core::AgentId => Agent,
    agentyard_core::McpServerId => McpServer,
    agentyard_core::OrgId => Organization,
    agentyard_core::TokenId => Token,
    agentyard_core::IntegrationId => Integration,
    agentyard_core::ExecutionId => Execution,
    uuid::Uuid => Alert,
    u64 => DeadLetter,
);

/// The `{id}` of the path, parsed.
#[derive(Debug)]
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T: PathEntity> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::not_found(T::ENTITY))?;
        raw.parse().map(Self).map_err(|_| ApiError::not_found(T::ENTITY))
    }
}

/// The query string, parsed; a bad one is 422 `invalid_query`.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Self(q))
            .map_err(|e| ApiError::invalid("invalid_query", e.body_text()))
    }
}

/// The largest event id (JetStream sequences stay below 2^63): the most an `after` or a
/// `Last-Event-ID` may be.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// A number of the query string, kept as sent and parsed where it is used, so that a bad one
/// (not a number, too large for any type, out of range) is 400 `invalid_query` naming its
/// parameter.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct QueryNumber(String);

impl QueryNumber {
    /// A whole number in `min..=max`.
    ///
    /// # Errors
    /// 400 `invalid_query` naming `name`.
    pub fn integer(&self, name: &str, min: i64, max: i64) -> Result<i64, ApiError> {
        let bad = || {
            if (min, max) == (i64::MIN, i64::MAX) {
                ApiError::bad_query(format!("{name} must be a whole number"))
            } else {
                ApiError::bad_query(format!("{name} must be a whole number from {min} to {max}"))
            }
        };
        let n: i64 = self.0.trim().parse().map_err(|_| bad())?;
        if (min..=max).contains(&n) { Ok(n) } else { Err(bad()) }
    }

    /// A finite number in `min..=max`.
    ///
    /// # Errors
    /// 400 `invalid_query` naming `name`.
    pub fn float(&self, name: &str, min: f64, max: f64) -> Result<f64, ApiError> {
        match self.0.trim().parse::<f64>() {
            Ok(n) if n.is_finite() && (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_query(format!("{name} must be a number from {min} to {max}"))),
        }
    }
}

/// An optional `limit`, any whole number (the service checks its range).
///
/// # Errors
/// 400 `invalid_query`.
pub fn query_limit(raw: Option<&QueryNumber>) -> Result<Option<i64>, ApiError> {
    raw.map(|n| n.integer("limit", i64::MIN, i64::MAX)).transpose()
}

/// An optional event id to resume after: 0 to [`MAX_SEQ`].
///
/// # Errors
/// 400 `invalid_query` naming `name`.
pub fn query_seq(name: &str, raw: Option<&QueryNumber>) -> Result<Option<u64>, ApiError> {
    let max = i64::try_from(MAX_SEQ).unwrap_or(i64::MAX);
    raw.map(|n| n.integer(name, 0, max).map(|n| n.unsigned_abs())).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        input: String,
        metadata: Option<serde_json::Value>,
        limit: Option<u32>,
    }

    #[test]
    fn a_body_that_does_not_parse_names_the_field() {
        // Too large for a double: a 4xx naming where, never a 500.
        let huge = br#"{"input": "hi", "metadata": {"score": 1e400}}"#;
        let e = parse_json::<Body>(huge).unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_json"));
        assert!(e.message.contains("metadata.score: number out of range"), "{}", e.message);
        let e = parse_json::<Body>(br#"{"input": "hi", "limit": 1e300}"#).unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"));
        assert!(e.message.starts_with("limit: invalid type"), "{}", e.message);
        let e = parse_json::<Body>(br#"{"input": "hi", "extra": 1}"#).unwrap_err();
        assert!(e.message.contains("unknown field `extra`"), "{}", e.message);
        let e = parse_json::<Body>(br#"{"input": "hi"} x"#).unwrap_err();
        assert_eq!(e.code, "invalid_json");
        assert!(parse_json::<Body>(br#"{"input": "hi", "metadata": {"n": 1e300}}"#).is_ok());
    }
}

//! Bearer-token authentication. A principal is cached for a short time (hashing and one
//! indexed lookup per request would otherwise dominate small requests); revocation is seen
//! within [`CACHE_TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agentyard_store::orgs::{Principal, token_hash};
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::{ApiError, AppState};

/// How long an authenticated token is trusted without asking Postgres again.
pub const CACHE_TTL: Duration = Duration::from_secs(2);
const CACHE_MAX: usize = 100_000;

/// Recently authenticated tokens, by SHA-256.
#[derive(Debug, Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<Vec<u8>, (Principal, Instant)>>,
}

impl AuthCache {
    fn get(&self, hash: &[u8]) -> Option<Principal> {
        let map = self.entries.lock().expect("auth cache poisoned");
        map.get(hash).filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(p, _)| p.clone())
    }

    fn put(&self, hash: Vec<u8>, p: Principal) {
        let mut map = self.entries.lock().expect("auth cache poisoned");
        if map.len() >= CACHE_MAX {
            map.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
        }
        map.insert(hash, (p, Instant::now()));
    }
}

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct Auth(pub Principal);

impl Auth {
    /// 403 unless the token holds `scope`.
    ///
    /// # Errors
    /// `insufficient_scope`.
    pub fn require(&self, scope: &str) -> Result<&Principal, ApiError> {
        if self.0.has_scope(scope) {
            Ok(&self.0)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this token lacks the scope {scope}"),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "send the header Authorization: Bearer <token>",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the Authorization header must be: Bearer <token>",
                )
            })?;
        let hash = token_hash(token);
        if let Some(p) = state.auth.get(&hash) {
            return Ok(Self(p));
        }
        match state.store.authenticate(token).await? {
            Some(p) => {
                state.auth.put(hash, p.clone());
                Ok(Self(p))
            }
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the token is unknown, expired or revoked",
            )),
        }
    }
}

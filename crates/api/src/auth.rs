//! Bearer-token authentication. A principal is cached for a short time (hashing and one
//! indexed lookup per request would otherwise dominate small requests). Revoking a token
//! evicts it here at once and, through a core NATS broadcast, in every other API process; were
//! the broadcast lost, the entry still expires after [`CACHE_TTL`].
//!
//! Each token is also rate limited here (`AY_RATE_LIMIT` requests a second with bursts of
//! `AY_RATE_BURST`), per API process: with N API processes behind a balancer, a token may make
//! up to N times the rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agentyard_core::{Scope, TokenId};
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
    /// Forgets every cached principal of `token` (revoked).
    pub fn evict(&self, token: TokenId) {
        let mut map = self.entries.lock().expect("auth cache poisoned");
        map.retain(|_, (p, _)| p.token_id != token);
    }

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
    pub fn require(&self, scope: Scope) -> Result<&Principal, ApiError> {
        if self.0.has_scope(scope) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(format!("this token lacks the scope {scope}")))
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
        let principal = match state.auth.get(&hash) {
            Some(p) => p,
            None => match state.services.store.authenticate(token).await? {
                Some(p) => {
                    state.auth.put(hash, p.clone());
                    p
                }
                None => {
                    return Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_token",
                        "the token is unknown, expired or revoked",
                    ));
                }
            },
        };
        if let Err(wait) = state.limiter.check(principal.token_id) {
            return Err(ApiError::too_many(
                "rate_limited",
                format!(
                    "this token exceeded {} requests per second; retry after {} ms",
                    state.services.settings.rate_limit,
                    wait.as_millis()
                ),
                wait.as_secs_f64().ceil() as u64,
            ));
        }
        Ok(Self(principal))
    }
}

/// Per-token request rate (GCRA: a token's "theoretical arrival time" moves forward by
/// 1/rate per request and may run at most `burst` requests ahead of now).
#[derive(Debug)]
pub struct RateLimiter {
    interval: Option<Duration>,
    tolerance: Duration,
    tat: Mutex<HashMap<TokenId, Instant>>,
}

impl RateLimiter {
    /// `rate` requests per second (0: unlimited) with bursts of `burst`.
    pub fn new(rate: f64, burst: u32) -> Self {
        let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        let tolerance = interval.map_or(Duration::ZERO, |i| i * burst.max(1));
        Self { interval, tolerance, tat: Mutex::new(HashMap::new()) }
    }

    /// Ok, or how long to wait before the next request would be allowed.
    pub fn check(&self, token: TokenId) -> Result<(), Duration> {
        let Some(interval) = self.interval else { return Ok(()) };
        let now = Instant::now();
        let mut map = self.tat.lock().expect("rate limiter poisoned");
        if map.len() >= CACHE_MAX {
            map.retain(|_, tat| *tat > now);
        }
        let tat = map.get(&token).copied().unwrap_or(now).max(now);
        let next = tat + interval;
        if next > now + self.tolerance {
            return Err(next - (now + self.tolerance));
        }
        map.insert(token, next);
        Ok(())
    }
}

/// Evicts tokens revoked by any API process (core NATS broadcast of their ids).
pub(crate) async fn listen_for_revocations(
    bus: agentyard_bus::Bus,
    cache: std::sync::Arc<AuthCache>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use futures::StreamExt;
    let mut sub = match bus.client().subscribe(bus.subjects().auth_revoked()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to token revocations");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = sub.next() => match m { Some(m) => m, None => return },
        };
        if let Some(id) = std::str::from_utf8(&msg.payload).ok().and_then(|s| s.parse().ok()) {
            cache.evict(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_allows_a_burst_then_the_rate() {
        let l = RateLimiter::new(10.0, 3);
        let t = TokenId::new();
        for _ in 0..3 {
            assert!(l.check(t).is_ok());
        }
        let wait = l.check(t).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(l.check(TokenId::new()).is_ok(), "another token has its own budget");
        assert!(RateLimiter::new(0.0, 1).check(t).is_ok());
    }
}

//! Bearer-token authentication. A principal is cached for a short time (hashing and one
//! indexed lookup per request would otherwise dominate small requests). Revoking a token
//! evicts it here at once and, through a core NATS broadcast, in every other API process; were
//! the broadcast lost, the entry still expires after [`CACHE_TTL`].
//!
//! Each token is also rate limited here (`AY_RATE_LIMIT` requests a second with bursts of
//! `AY_RATE_BURST`), per API process: with N API processes behind a balancer, a token may make
//! up to N times the rate.
//!
//! Failed authentications are limited per client address (`AY_AUTH_FAILURE_RATE` a second with
//! bursts of `AY_AUTH_FAILURE_BURST`): beyond, the address gets 429 `rate_limited` without a
//! lookup, except for tokens that authenticated in the last [`KNOWN_TTL`] (a client with a
//! good token is not locked out by a neighbour's bad one). A token found unknown is remembered
//! for [`UNKNOWN_TTL`], so repeating it costs no lookup either.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agentyard_core::{Scope, TokenId};
use agentyard_runtime::limit::Recent;
use agentyard_store::orgs::{Principal, token_hash};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::{ApiError, AppState};

/// How long an authenticated token is trusted without asking Postgres again.
pub const CACHE_TTL: Duration = Duration::from_secs(2);
/// How long a token that authenticated stays exempt from its address's failure limit.
pub const KNOWN_TTL: Duration = Duration::from_secs(600);
/// How long a token found unknown (or expired, or revoked) is refused without a lookup.
pub const UNKNOWN_TTL: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 100_000;

/// Recently authenticated tokens, and tokens recently found unknown, by SHA-256.
#[derive(Debug)]
pub struct AuthCache {
    entries: Mutex<HashMap<Vec<u8>, (Principal, Instant)>>,
    unknown: Recent<Vec<u8>>,
}

impl Default for AuthCache {
    fn default() -> Self {
        Self { entries: Mutex::default(), unknown: Recent::new(UNKNOWN_TTL) }
    }
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

    /// The token authenticated within [`KNOWN_TTL`] (and was not revoked here since).
    fn recently_valid(&self, hash: &[u8]) -> bool {
        let map = self.entries.lock().expect("auth cache poisoned");
        map.get(hash).is_some_and(|(_, at)| at.elapsed() < KNOWN_TTL)
    }

    fn put(&self, hash: Vec<u8>, p: Principal) {
        let mut map = self.entries.lock().expect("auth cache poisoned");
        if map.len() >= CACHE_MAX {
            map.retain(|_, (_, at)| at.elapsed() < KNOWN_TTL);
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
        let token =
            header.to_str().ok().and_then(agentyard_runtime::http::bearer_token).ok_or_else(
                || {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_token",
                        "the Authorization header must be: Bearer <token>",
                    )
                },
            )?;
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let principal = authenticate(state, token, peer).await?;
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

/// The principal of `token`: from the cache, else from Postgres, unless `peer` has failed too
/// often (then 429 without a lookup, for a token not recently valid).
async fn authenticate(
    state: &AppState,
    token: &str,
    peer: Option<IpAddr>,
) -> Result<Principal, ApiError> {
    let hash = token_hash(token);
    if let Some(p) = state.auth.get(&hash) {
        return Ok(p);
    }
    if let Some(ip) = peer
        && !state.auth.recently_valid(&hash)
        && let Err(wait) = state.failures.peek(ip)
    {
        return Err(ApiError::too_many(
            "rate_limited",
            format!(
                "too many failed authentications from this address; retry after {} ms",
                wait.as_millis()
            ),
            wait.as_secs_f64().ceil() as u64,
        ));
    }
    if !state.auth.unknown.contains(&hash) {
        if let Some(p) = state.services.store.authenticate(token).await? {
            state.auth.put(hash, p.clone());
            return Ok(p);
        }
        state.auth.unknown.insert(hash);
    }
    if let Some(ip) = peer {
        let _ = state.failures.check(ip);
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "the token is unknown, expired or revoked",
    ))
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

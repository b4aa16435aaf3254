//! Short-lived tokens a tool worker mints for one tool call: they carry the run's principal
//! (org, user, scopes) and the call (run, invocation), signed with the platform's HMAC-SHA256
//! key, so the built-in tool server acts exactly as the user who started the run and keys its
//! idempotent writes by the invocation. Verifying needs no database round trip.
//!
//! An MCP client that calls the built-in server with a user's API token gets the same
//! [`ToolClaims`] ([`ToolClaims::direct`]): the token's org, user and scopes, no run, and an
//! invocation id of its own per request, so the tools treat both callers alike.
//!
//! Format: `ayt.<hex of the JSON claims>.<hex of the HMAC-SHA256 of that hex>`.

use agentyard_core::{AgentId, InvocationId, OrgId, RunId, Scope, UserId};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::orgs::Principal;
use crate::{Result, Store, StoreError};

/// What a tool token stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolClaims {
    pub org_id: OrgId,
    pub user_id: Option<UserId>,
    pub agent_id: AgentId,
    pub run_id: RunId,
    pub invocation_id: InvocationId,
    pub scopes: Vec<Scope>,
    /// Expiry, unix seconds.
    pub exp: i64,
}

impl ToolClaims {
    /// The user the call is limited to: the run's user, unless its token was an admin's (see
    /// [`agentyard_core::scope::limited_to`]).
    pub fn owner(&self) -> Option<UserId> {
        agentyard_core::scope::limited_to(self.user_id, &self.scopes)
    }

    /// The claims of a tool listing (`tools/list`), which needs a valid token but no
    /// principal: nil ids, no scopes, valid for two minutes.
    pub fn listing() -> Self {
        Self {
            org_id: OrgId::nil(),
            user_id: None,
            agent_id: AgentId::nil(),
            run_id: RunId::nil(),
            invocation_id: InvocationId::nil(),
            scopes: Vec::new(),
            exp: chrono::Utc::now().timestamp() + 120,
        }
    }

    /// The claims of one request of an MCP client that authenticated with an API token: the
    /// token's organization, user and scopes, no agent or run (nil ids), and a fresh
    /// invocation id, so each call's writes are idempotent on their own. Valid for the request
    /// only (the token is looked up again on the next one).
    pub fn direct(principal: &Principal) -> Self {
        Self {
            org_id: principal.org_id,
            user_id: principal.user_id,
            agent_id: AgentId::nil(),
            run_id: RunId::nil(),
            invocation_id: InvocationId::new(),
            scopes: principal.scopes.clone(),
            exp: chrono::Utc::now().timestamp() + 60,
        }
    }

    /// True when the token holds `scope`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104) of `msg` under `key`.
pub fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let (mut inner, mut outer) = (Sha256::new(), Sha256::new());
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Compares in constant time: the comparison does not stop at the first differing byte.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Signs `claims`.
pub fn mint(key: &[u8], claims: &ToolClaims) -> String {
    let body = hex::encode(serde_json::to_vec(claims).expect("claims serialize"));
    let mac = hex::encode(hmac(key, body.as_bytes()));
    format!("ayt.{body}.{mac}")
}

/// The claims of a token signed with `key` that has not expired.
pub fn verify(key: &[u8], token: &str) -> Option<ToolClaims> {
    let rest = token.strip_prefix("ayt.")?;
    let (body, mac) = rest.split_once('.')?;
    let mac = hex::decode(mac).ok()?;
    let expected = hmac(key, body.as_bytes());
    // Constant time: the comparison does not stop at the first differing byte.
    if mac.len() != expected.len()
        || mac.iter().zip(expected).fold(0, |acc, (a, b)| acc | (a ^ b)) != 0
    {
        return None;
    }
    let claims: ToolClaims = serde_json::from_slice(&hex::decode(body).ok()?).ok()?;
    (claims.exp > chrono::Utc::now().timestamp()).then_some(claims)
}

impl Store {
    /// The platform's tool-token key, made (32 random bytes) on first use.
    ///
    /// # Errors
    /// Database failures.
    pub async fn tool_token_key(&self) -> Result<Vec<u8>> {
        self.platform_key("tool_token_key").await
    }

    /// A platform key `name` (32 random bytes made on first use; every process reads the same),
    /// sealed at rest under the secret key (`platform_secrets:<name>`).
    ///
    /// # Errors
    /// Database failures; no secret key, or one the stored key was not sealed with.
    pub async fn platform_key(&self, name: &str) -> Result<Vec<u8>> {
        let keys = self.keys()?;
        let context = platform_secret_context(name);
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        sqlx::query(
            "INSERT INTO platform_secrets(name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(keys.seal(&context, &fresh).into_bytes())
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("platform_key.init", e))?;
        let stored: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM platform_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| StoreError::db("platform_key", e))?;
        Ok(keys.open(&context, &stored)?)
    }
}

/// Where a platform secret lives (its associated data).
pub(crate) fn platform_secret_context(name: &str) -> String {
    format!("platform_secrets:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> ToolClaims {
        ToolClaims {
            org_id: OrgId::new(),
            user_id: None,
            agent_id: AgentId::new(),
            run_id: RunId::new(),
            invocation_id: InvocationId::new(),
            scopes: vec![Scope::RunsRead],
            exp,
        }
    }

    #[test]
    fn a_minted_token_verifies_and_a_tampered_or_expired_one_does_not() {
        let key = b"k".repeat(40);
        let c = claims(chrono::Utc::now().timestamp() + 60);
        let t = mint(&key, &c);
        assert_eq!(verify(&key, &t), Some(c.clone()));
        assert_eq!(verify(b"other key", &t), None);
        let mut forged = c;
        forged.scopes.push(Scope::RunsWrite);
        let body = hex::encode(serde_json::to_vec(&forged).unwrap());
        let mac = t.rsplit('.').next().unwrap();
        assert_eq!(verify(&key, &format!("ayt.{body}.{mac}")), None);
        assert_eq!(verify(&key, &mint(&key, &claims(1))), None, "expired");
        assert_eq!(verify(&key, "ay_123"), None);
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

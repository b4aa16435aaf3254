//! Organizations, users, API tokens and authentication. Tokens are `ay_` + 64 hex characters;
//! only their SHA-256 is stored, so a database leak does not leak credentials.

use agentyard_core::{AgentId, OrgId, Scope, TokenId, UserId};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::FromRow;

use crate::{Result, Store, StoreError};

/// The agent type every organization gets as its default agent.
pub const DEFAULT_AGENT_TYPE: &str = "customer_support";

/// An organization.
#[derive(Clone, Debug, PartialEq, serde::Serialize, FromRow, utoipa::ToSchema)]
pub struct OrgRow {
    pub id: OrgId,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A user.
#[derive(Clone, Debug, PartialEq, serde::Serialize, FromRow, utoipa::ToSchema)]
pub struct UserRow {
    pub id: UserId,
    pub org_id: OrgId,
    pub name: String,
    pub email: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A token as listed: never its secret.
#[derive(Clone, Debug, PartialEq, serde::Serialize, FromRow, utoipa::ToSchema)]
pub struct TokenRow {
    pub id: TokenId,
    pub org_id: OrgId,
    pub user_id: Option<UserId>,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Who is calling: what an authenticated token stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub org_id: OrgId,
    pub user_id: Option<UserId>,
    pub token_id: TokenId,
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// True when the token holds `scope`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// The user this caller is limited to (see [`agentyard_core::scope::limited_to`]); None:
    /// the whole organization.
    pub fn owner(&self) -> Option<UserId> {
        agentyard_core::scope::limited_to(self.user_id, &self.scopes)
    }

    /// True when the caller may see what belongs to `user` in its organization.
    pub fn sees(&self, user: Option<UserId>) -> bool {
        self.owner().is_none_or(|me| user == Some(me))
    }

    /// The user a list is filtered by when the caller asks for `asked`'s (or everyone's):
    /// `Some(asked)` for a caller that sees the whole org, `Some(Some(own))` for a limited one;
    /// None when a limited caller asks for another user's (nothing to list).
    pub fn user_filter(&self, asked: Option<UserId>) -> Option<Option<UserId>> {
        match (self.owner(), asked) {
            (None, asked) => Some(asked),
            (Some(me), Some(other)) if other != me => None,
            (Some(me), _) => Some(Some(me)),
        }
    }
}

/// A token as created: the only moment its secret exists outside the client.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub id: TokenId,
    pub org_id: OrgId,
    pub secret: String,
    pub scopes: Vec<Scope>,
    pub user_id: Option<UserId>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A new organization with its admin user, default agent and admin token.
#[derive(Clone, Debug)]
pub struct NewOrg {
    pub org_id: OrgId,
    pub user_id: UserId,
    pub agent_id: AgentId,
    pub token: NewToken,
}

#[derive(FromRow)]
struct PrincipalRow {
    id: TokenId,
    org_id: OrgId,
    user_id: Option<UserId>,
    scopes: Vec<Scope>,
}

/// SHA-256 of a token secret, as stored.
pub fn token_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("ay_{}", hex::encode(bytes))
}

impl Store {
    /// Creates an organization with an admin user, its default agent and a token holding
    /// [`ORG_SCOPES`], in one transaction.
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_org(&self, name: &str) -> Result<NewOrg> {
        let (org_id, user_id, agent_id) = (OrgId::new(), UserId::new(), AgentId::new());
        let mut tx = self.pool.begin().await.map_err(|e| StoreError::db("create_org", e))?;
        sqlx::query("INSERT INTO organizations(id, name) VALUES ($1, $2)")
            .bind(org_id)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::db("create_org", e))?;
        sqlx::query("INSERT INTO users(id, org_id, name) VALUES ($1, $2, 'admin')")
            .bind(user_id)
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::db("create_org.user", e))?;
        sqlx::query(
            "INSERT INTO agents(id, org_id, agent_type, name, is_default) \
             VALUES ($1, $2, $3, 'Customer support', true)",
        )
        .bind(agent_id)
        .bind(org_id)
        .bind(DEFAULT_AGENT_TYPE)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::db("create_org.agent", e))?;
        let token =
            insert_token(&mut tx, org_id, Some(user_id), "admin", &Scope::ORG, None).await?;
        tx.commit().await.map_err(|e| StoreError::db("create_org.commit", e))?;
        Ok(NewOrg { org_id, user_id, agent_id, token })
    }

    /// Finds an organization by name (the oldest, when several share it).
    ///
    /// # Errors
    /// Database failures.
    pub async fn find_org_by_name(&self, name: &str) -> Result<Option<OrgId>> {
        sqlx::query_scalar::<_, OrgId>(
            "SELECT id FROM organizations WHERE name = $1 ORDER BY created_at, id LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("find_org_by_name", e))
    }

    /// True when the organization exists.
    ///
    /// # Errors
    /// Database failures.
    pub async fn org_exists(&self, org: OrgId) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM organizations WHERE id = $1)")
            .bind(org)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("org_exists", e))
    }

    /// Creates a token for `org` with `scopes`. The caller validates the scope names.
    ///
    /// # Errors
    /// Database failures (including an unknown org: a foreign-key violation).
    pub async fn create_token(&self, org: OrgId, name: &str, scopes: &[Scope]) -> Result<NewToken> {
        self.create_user_token(org, None, name, scopes, None).await
    }

    /// Creates a token for `org`, acting as `user` (which must belong to `org`), valid until
    /// `expires_at`. The caller validates the scope names.
    ///
    /// # Errors
    /// Database failures (a user of another org violates a foreign key of its own: see
    /// [`Store::user_in_org`]).
    pub async fn create_user_token(
        &self,
        org: OrgId,
        user: Option<UserId>,
        name: &str,
        scopes: &[Scope],
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<NewToken> {
        let mut tx = self.pool.begin().await.map_err(|e| StoreError::db("create_token", e))?;
        let token = insert_token(&mut tx, org, user, name, scopes, expires_at).await?;
        tx.commit().await.map_err(|e| StoreError::db("create_token.commit", e))?;
        Ok(token)
    }

    /// The org's tokens, newest first (revoked ones too, marked).
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_tokens(&self, org: OrgId) -> Result<Vec<TokenRow>> {
        sqlx::query_as(
            "SELECT id, org_id, user_id, name, scopes, created_at, expires_at, revoked_at              FROM api_tokens WHERE org_id = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(org)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list_tokens", e))
    }

    /// An organization.
    ///
    /// # Errors
    /// Database failures.
    pub async fn get_org(&self, org: OrgId) -> Result<Option<OrgRow>> {
        sqlx::query_as("SELECT id, name, created_at FROM organizations WHERE id = $1")
            .bind(org)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::db("get_org", e))
    }

    /// Creates a user of `org`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_user(
        &self,
        org: OrgId,
        name: &str,
        email: Option<&str>,
    ) -> Result<UserRow> {
        sqlx::query_as(
            "INSERT INTO users(id, org_id, name, email) VALUES ($1, $2, $3, $4)              RETURNING id, org_id, name, email, created_at",
        )
        .bind(UserId::new())
        .bind(org)
        .bind(name)
        .bind(email)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::db("create_user", e))
    }

    /// The org's users, oldest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_users(&self, org: OrgId) -> Result<Vec<UserRow>> {
        sqlx::query_as(
            "SELECT id, org_id, name, email, created_at FROM users WHERE org_id = $1              ORDER BY created_at, id",
        )
        .bind(org)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list_users", e))
    }

    /// True when `user` belongs to `org`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn user_in_org(&self, org: OrgId, user: UserId) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM users WHERE id = $1 AND org_id = $2)")
            .bind(user)
            .bind(org)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("user_in_org", e))
    }

    /// Revokes a token at once. Returns false when the org has no such live token.
    ///
    /// # Errors
    /// Database failures.
    pub async fn revoke_token(&self, org: OrgId, token: TokenId) -> Result<bool> {
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = now() \
             WHERE id = $1 AND org_id = $2 AND revoked_at IS NULL",
        )
        .bind(token)
        .bind(org)
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected() == 1)
        .map_err(|e| StoreError::db("revoke_token", e))
    }

    /// The principal of a live (not revoked, not expired) token, if any.
    ///
    /// # Errors
    /// Database failures.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Principal>> {
        let row: Option<PrincipalRow> = sqlx::query_as(
            "SELECT id, org_id, user_id, scopes FROM api_tokens WHERE token_sha256 = $1 \
             AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
        )
        .bind(token_hash(secret))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("authenticate", e))?;
        Ok(row.map(|r| Principal {
            org_id: r.org_id,
            user_id: r.user_id,
            token_id: r.id,
            scopes: r.scopes,
        }))
    }
}

async fn insert_token(
    tx: &mut sqlx::PgConnection,
    org: OrgId,
    user: Option<UserId>,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<NewToken> {
    let (id, secret) = (TokenId::new(), new_secret());
    sqlx::query(
        "INSERT INTO api_tokens(id, org_id, user_id, name, token_sha256, scopes, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(org)
    .bind(user)
    .bind(name)
    .bind(token_hash(&secret))
    .bind(scopes)
    .bind(expires_at)
    .execute(tx)
    .await
    .map_err(|e| StoreError::db("insert_token", e))?;
    Ok(NewToken { id, org_id: org, secret, scopes: scopes.to_vec(), user_id: user, expires_at })
}

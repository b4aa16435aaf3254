//! The audit trail of administrative acts (migrations/0008_audit.sql): append-only, a trigger
//! refuses every change and removal.

use agentyard_core::{OrgId, TokenId, UserId};
use chrono::{DateTime, Utc};
use sqlx::FromRow;

use crate::{Result, Store, StoreError};

/// One act.
#[derive(Clone, Debug, PartialEq, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// The user whose token acted (none for a service token).
    pub actor_user_id: Option<UserId>,
    pub actor_token_id: TokenId,
    /// `token.created`, `token.revoked`, `user.created`, `agent.created`, `agent.updated`,
    /// `agent.tools_set`, `agent.reset`, `agent.recreated`, `agent.activated`,
    /// `agent.deactivated`, `agent.deleted`, `mcp_server.registered`, `mcp_server.deleted`.
    pub action: String,
    /// `token`, `user`, `agent`, `mcp_server`.
    pub target_type: String,
    pub target_id: String,
    /// What the act said (a token's name and scopes, never its secret; an agent's changes).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// An act to record.
#[derive(Clone, Debug)]
pub struct NewAuditEntry<'a> {
    pub org: OrgId,
    pub user: Option<UserId>,
    pub token: TokenId,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: String,
    pub details: serde_json::Value,
}

impl Store {
    /// Appends an act.
    ///
    /// # Errors
    /// Database failures.
    pub async fn record_audit(&self, e: &NewAuditEntry<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log(org_id, actor_user_id, actor_token_id, action, target_type, \
                target_id, details) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.org)
        .bind(e.user)
        .bind(e.token)
        .bind(e.action)
        .bind(e.target_type)
        .bind(&e.target_id)
        .bind(&e.details)
        .execute(&self.pool)
        .await
        .map_err(|err| StoreError::db("record_audit", err))?;
        Ok(())
    }

    /// The organization's acts, newest first, older than the id `before` when given.
    ///
    /// # Errors
    /// Database failures.
    pub async fn audit_log(
        &self,
        org: OrgId,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        sqlx::query_as(
            "SELECT id, actor_user_id, actor_token_id, action, target_type, target_id, details, at \
             FROM audit_log WHERE org_id = $1 AND ($2::bigint IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(org)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|err| StoreError::db("audit_log", err))
    }
}

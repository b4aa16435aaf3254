//! An organization's agents: one per agent type, storing only its overrides of the type's
//! defaults. Deleting an agent hides it (`deleted_at`), so `recreate` can bring the same id back
//! with the defaults; creating a type whose agent was deleted brings that row back too.

use agentyard_core::{AgentId, OrgId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;

use crate::{Result, Store, StoreError};

/// An agent as stored.
#[derive(Clone, Debug, PartialEq, Serialize, FromRow)]
pub struct AgentRow {
    pub id: AgentId,
    pub org_id: OrgId,
    pub agent_type: String,
    pub name: String,
    pub is_active: bool,
    pub is_default: bool,
    /// Overrides of the type's defaults.
    pub config: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) const COLUMNS: &str =
    "id, org_id, agent_type, name, is_active, is_default, config, created_at, updated_at";

/// How a create ended.
#[derive(Debug)]
pub enum CreateAgent {
    Created(AgentRow),
    /// The org already has a (live) agent of that type.
    Exists(AgentId),
}

impl Store {
    /// The org's live agents, oldest first, provisioning the default agent when it is missing.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_agents(&self, org: OrgId) -> Result<Vec<AgentRow>> {
        sqlx::query("SELECT ay_default_agent($1)")
            .bind(org)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::db("list_agents.default", e))?;
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE org_id = $1 AND deleted_at IS NULL \
             ORDER BY created_at, id"
        )))
        .bind(org)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list_agents", e))
    }

    /// A live agent of the org.
    ///
    /// # Errors
    /// Database failures.
    pub async fn get_agent(&self, org: OrgId, id: AgentId) -> Result<Option<AgentRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL"
        )))
        .bind(id)
        .bind(org)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("get_agent", e))
    }

    /// The org's live agent of `agent_type`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn agent_of_type(&self, org: OrgId, agent_type: &str) -> Result<Option<AgentRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE org_id = $1 AND agent_type = $2 \
             AND deleted_at IS NULL"
        )))
        .bind(org)
        .bind(agent_type)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("agent_of_type", e))
    }

    /// Creates the org's agent of `agent_type` (bringing back a deleted one, same id).
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_agent(
        &self,
        org: OrgId,
        agent_type: &str,
        name: &str,
        config: &serde_json::Value,
    ) -> Result<CreateAgent> {
        let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO agents(id, org_id, agent_type, name, config) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (org_id, agent_type) DO UPDATE \
                SET name = EXCLUDED.name, config = EXCLUDED.config, is_active = true, \
                    deleted_at = NULL, created_at = now(), updated_at = now() \
                WHERE agents.deleted_at IS NOT NULL \
             RETURNING {COLUMNS}"
        )))
        .bind(AgentId::new())
        .bind(org)
        .bind(agent_type)
        .bind(name)
        .bind(config)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("create_agent", e))?;
        match row {
            Some(r) => Ok(CreateAgent::Created(r)),
            None => {
                let existing = self.agent_of_type(org, agent_type).await?;
                Ok(CreateAgent::Exists(existing.map_or_else(AgentId::nil, |a| a.id)))
            }
        }
    }

    /// Changes a live agent: `change` gets the stored row (locked) and returns its new name and
    /// overrides, or an error that leaves it untouched.
    ///
    /// # Errors
    /// Database failures (outer); `change`'s error (inner).
    pub async fn update_agent<E>(
        &self,
        org: OrgId,
        id: AgentId,
        change: impl FnOnce(&AgentRow) -> Result<(String, serde_json::Value), E>,
    ) -> Result<Result<Option<AgentRow>, E>> {
        let mut tx = self.pool.begin().await.map_err(|e| StoreError::db("update_agent", e))?;
        let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL \
             FOR UPDATE"
        )))
        .bind(id)
        .bind(org)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| StoreError::db("update_agent.lock", e))?;
        let Some(row) = row else { return Ok(Ok(None)) };
        let (name, config) = match change(&row) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let updated: AgentRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE agents SET name = $2, config = $3, updated_at = now() WHERE id = $1 \
             RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(name)
        .bind(config)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::db("update_agent", e))?;
        tx.commit().await.map_err(|e| StoreError::db("update_agent.commit", e))?;
        Ok(Ok(Some(updated)))
    }

    /// Activates or deactivates a live agent.
    ///
    /// # Errors
    /// Database failures.
    pub async fn set_agent_active(
        &self,
        org: OrgId,
        id: AgentId,
        active: bool,
    ) -> Result<Option<AgentRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE agents SET is_active = $3, updated_at = now() \
             WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(org)
        .bind(active)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("set_agent_active", e))
    }

    /// Deletes (hides) a live agent. Its runs keep their history.
    ///
    /// # Errors
    /// Database failures.
    pub async fn delete_agent(&self, org: OrgId, id: AgentId) -> Result<bool> {
        sqlx::query(
            "UPDATE agents SET deleted_at = now(), updated_at = now() \
             WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(org)
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected() == 1)
        .map_err(|e| StoreError::db("delete_agent", e))
    }

    /// Brings an agent (live or deleted) back to its type's defaults under the same id: no
    /// overrides, the type's name, active.
    ///
    /// # Errors
    /// Database failures.
    pub async fn recreate_agent(
        &self,
        org: OrgId,
        id: AgentId,
        name_of_type: impl FnOnce(&str) -> String,
    ) -> Result<Option<AgentRow>> {
        let agent_type: Option<String> =
            sqlx::query_scalar("SELECT agent_type FROM agents WHERE id = $1 AND org_id = $2")
                .bind(id)
                .bind(org)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| StoreError::db("recreate_agent.find", e))?;
        let Some(agent_type) = agent_type else { return Ok(None) };
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE agents SET config = '{{}}', name = $3, is_active = true, deleted_at = NULL, \
                 updated_at = now() \
             WHERE id = $1 AND org_id = $2 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(org)
        .bind(name_of_type(&agent_type))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("recreate_agent", e))
    }
}

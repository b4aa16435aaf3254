//! The external systems an organization connected (Slack, a CRM, a help desk, ...): a name
//! unique in the org (case-insensitive), a kind, whether it is active, and its configuration.

use agentyard_core::{IntegrationId, OrgId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor};

use super::{Invalid, optional_text, required_text};
use crate::{Result, Store, StoreError};

/// Longest name or kind, in characters.
pub const MAX_NAME: usize = 100;

/// An integration as stored.
#[derive(Clone, Debug, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct IntegrationRow {
    pub id: IntegrationId,
    pub name: String,
    pub kind: String,
    pub is_active: bool,
    /// Settings of the integration (a JSON object).
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, kind, is_active, config, created_at, updated_at";

/// A valid new integration.
#[derive(Clone, Debug, PartialEq)]
pub struct NewIntegration {
    name: String,
    kind: String,
    is_active: bool,
    config: serde_json::Value,
}

fn config_object(config: Option<serde_json::Value>) -> Result<Option<serde_json::Value>, Invalid> {
    match config {
        Some(c) if !c.is_object() => Err(Invalid::new("config", "must be a JSON object")),
        Some(c) => match agentyard_core::storable::check_json("config", &c) {
            Ok(()) => Ok(Some(c)),
            Err(e) => Err(Invalid::new("config", e.to_string())),
        },
        None => Ok(None),
    }
}

impl NewIntegration {
    /// Without a kind: `custom`; without `is_active`: active; without a config: `{}`.
    ///
    /// # Errors
    /// An empty or too long `name` or `kind`, a `config` that is not an object.
    pub fn parse(
        name: &str,
        kind: Option<&str>,
        is_active: Option<bool>,
        config: Option<serde_json::Value>,
    ) -> Result<Self, Invalid> {
        Ok(Self {
            name: required_text("name", name, MAX_NAME)?,
            kind: optional_text("kind", kind, MAX_NAME)?.unwrap_or_else(|| "custom".into()),
            is_active: is_active.unwrap_or(true),
            config: config_object(config)?.unwrap_or_else(|| serde_json::json!({})),
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A valid change of an integration: at least one field. A new config replaces the old one.
#[derive(Clone, Debug, PartialEq)]
pub struct IntegrationChange {
    name: Option<String>,
    is_active: Option<bool>,
    config: Option<serde_json::Value>,
}

impl IntegrationChange {
    /// # Errors
    /// No change at all, an empty or too long `name`, a `config` that is not an object.
    pub fn parse(
        name: Option<&str>,
        is_active: Option<bool>,
        config: Option<serde_json::Value>,
    ) -> Result<Self, Invalid> {
        let change = Self {
            name: name.map(|n| required_text("name", n, MAX_NAME)).transpose()?,
            is_active,
            config: config_object(config)?,
        };
        if change.name.is_none() && change.is_active.is_none() && change.config.is_none() {
            return Err(Invalid::new(
                "is_active",
                "nothing to change: give is_active, name or config",
            ));
        }
        Ok(change)
    }
}

/// The integrations [`Store::seed_demo`] adds.
pub(crate) fn demo() -> Vec<NewIntegration> {
    [
        ("Slack", "chat", true),
        ("Salesforce", "crm", true),
        ("Zendesk", "helpdesk", false),
        ("GitHub", "code", true),
        ("Jira", "project_management", false),
    ]
    .into_iter()
    .filter_map(|(name, kind, active)| {
        NewIntegration::parse(name, Some(kind), Some(active), None).ok()
    })
    .collect()
}

/// How an update ended.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateIntegration {
    Updated(IntegrationRow),
    NotFound,
    /// Another integration of the org has the new name.
    NameTaken,
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "23505")
}

/// Inserts `new`; None when the org has an integration of that name.
pub(crate) async fn insert(
    db: impl PgExecutor<'_>,
    org: OrgId,
    new: &NewIntegration,
) -> Result<Option<IntegrationRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO integrations(id, org_id, name, kind, is_active, config) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id, lower(name)) DO NOTHING \
         RETURNING {COLUMNS}"
    )))
    .bind(IntegrationId::new())
    .bind(org)
    .bind(&new.name)
    .bind(&new.kind)
    .bind(new.is_active)
    .bind(&new.config)
    .fetch_optional(db)
    .await
    .map_err(|e| StoreError::db("insert_integration", e))
}

impl Store {
    /// The org's integrations by name; only the active ones with `active_only`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_integrations(
        &self,
        org: OrgId,
        active_only: bool,
    ) -> Result<Vec<IntegrationRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM integrations WHERE org_id = $1 AND (is_active OR NOT $2) \
             ORDER BY lower(name)"
        )))
        .bind(org)
        .bind(active_only)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list_integrations", e))
    }

    /// Adds an integration to the org; None when it has one of that name.
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_integration(
        &self,
        org: OrgId,
        new: &NewIntegration,
    ) -> Result<Option<IntegrationRow>> {
        insert(&self.pool, org, new).await
    }

    /// Changes an integration of the org.
    ///
    /// # Errors
    /// Database failures.
    pub async fn update_integration(
        &self,
        org: OrgId,
        id: IntegrationId,
        change: &IntegrationChange,
    ) -> Result<UpdateIntegration> {
        let row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE integrations SET name = coalesce($3, name), \
             is_active = coalesce($4, is_active), config = coalesce($5, config), \
             updated_at = now() WHERE id = $1 AND org_id = $2 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(org)
        .bind(&change.name)
        .bind(change.is_active)
        .bind(&change.config)
        .fetch_optional(&self.pool)
        .await;
        match row {
            Ok(Some(row)) => Ok(UpdateIntegration::Updated(row)),
            Ok(None) => Ok(UpdateIntegration::NotFound),
            Err(e) if is_unique_violation(&e) => Ok(UpdateIntegration::NameTaken),
            Err(e) => Err(StoreError::db("update_integration", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_integration_has_defaults_and_an_object_config() {
        let i = NewIntegration::parse("Slack", None, None, None).unwrap();
        assert_eq!((i.kind.as_str(), i.is_active), ("custom", true));
        assert_eq!(i.config, serde_json::json!({}));
        let bad = NewIntegration::parse("Slack", None, None, Some(serde_json::json!([1])));
        assert_eq!(bad.unwrap_err().field, "config");
        assert_eq!(IntegrationChange::parse(None, None, None).unwrap_err().field, "is_active");
        assert_eq!(demo().len(), 5);
    }
}

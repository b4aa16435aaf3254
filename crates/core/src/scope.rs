//! What a token may do. A token holds a set of scopes; every route names the one it needs.

use serde::{Deserialize, Serialize};

/// One permission. Shown and stored as `area:level` (`runs:read`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = "text"))]
pub enum Scope {
    /// Threads, messages, runs and their events.
    #[serde(rename = "runs:read")]
    #[cfg_attr(feature = "sqlx", sqlx(rename = "runs:read"))]
    RunsRead,
    /// Create threads and runs, cancel, answer input, delegate.
    #[serde(rename = "runs:write")]
    #[cfg_attr(feature = "sqlx", sqlx(rename = "runs:write"))]
    RunsWrite,
    /// Read agents and MCP servers.
    #[serde(rename = "agents:read")]
    #[cfg_attr(feature = "sqlx", sqlx(rename = "agents:read"))]
    AgentsRead,
    /// Create, change and delete agents.
    #[serde(rename = "agents:admin")]
    #[cfg_attr(feature = "sqlx", sqlx(rename = "agents:admin"))]
    AgentsAdmin,
    /// Register MCP servers, change integrations.
    #[serde(rename = "tools:admin")]
    #[cfg_attr(feature = "sqlx", sqlx(rename = "tools:admin"))]
    ToolsAdmin,
    /// Start and cancel workflow executions.
    #[serde(rename = "workflows:run")]
    #[cfg_attr(feature = "sqlx", sqlx(rename = "workflows:run"))]
    WorkflowsRun,
    /// Users, tokens and usage of the organization.
    #[serde(rename = "org:admin")]
    #[cfg_attr(feature = "sqlx", sqlx(rename = "org:admin"))]
    OrgAdmin,
    /// Organizations themselves; only `agentyard admin create-token` grants it.
    #[serde(rename = "platform:admin")]
    #[cfg_attr(feature = "sqlx", sqlx(rename = "platform:admin"))]
    PlatformAdmin,
}

impl Scope {
    /// Every scope a token can hold inside its organization.
    pub const ORG: [Scope; 7] = [
        Self::RunsRead,
        Self::RunsWrite,
        Self::AgentsRead,
        Self::AgentsAdmin,
        Self::ToolsAdmin,
        Self::WorkflowsRun,
        Self::OrgAdmin,
    ];

    /// Every scope there is.
    pub const ALL: [Scope; 8] = [
        Self::RunsRead,
        Self::RunsWrite,
        Self::AgentsRead,
        Self::AgentsAdmin,
        Self::ToolsAdmin,
        Self::WorkflowsRun,
        Self::OrgAdmin,
        Self::PlatformAdmin,
    ];

    /// The name shown and stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RunsRead => "runs:read",
            Self::RunsWrite => "runs:write",
            Self::AgentsRead => "agents:read",
            Self::AgentsAdmin => "agents:admin",
            Self::ToolsAdmin => "tools:admin",
            Self::WorkflowsRun => "workflows:run",
            Self::OrgAdmin => "org:admin",
            Self::PlatformAdmin => "platform:admin",
        }
    }
}

/// The user whose own threads, runs, messages, tool invocations, tasks and workflow executions
/// a caller is limited to: a token bound to `user` that holds neither `org:admin` nor
/// `platform:admin`. None: the caller sees its whole organization (an admin, or a token bound to
/// no user, for services).
pub fn limited_to(user: Option<crate::UserId>, scopes: &[Scope]) -> Option<crate::UserId> {
    if scopes.iter().any(|s| matches!(s, Scope::OrgAdmin | Scope::PlatformAdmin)) {
        None
    } else {
        user
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|x| x.as_str()).collect();
            format!("unknown scope `{s}` (known: {})", known.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_user_bound_token_without_admin_is_limited_to_its_user() {
        let u = crate::UserId::new();
        assert_eq!(limited_to(Some(u), &[Scope::RunsRead, Scope::RunsWrite]), Some(u));
        assert_eq!(limited_to(Some(u), &[Scope::RunsRead, Scope::OrgAdmin]), None);
        assert_eq!(limited_to(Some(u), &[Scope::PlatformAdmin]), None);
        assert_eq!(limited_to(None, &[Scope::RunsRead]), None);
    }

    #[test]
    fn scopes_round_trip_through_their_names() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("runs:admin".parse::<Scope>().unwrap_err().contains("runs:read"));
    }
}

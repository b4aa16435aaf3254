//! Organizations (platform admins), their users and tokens (org admins).

use agentyard_core::{OrgId, Scope, TokenId, UserId};
use agentyard_store::orgs::{NewOrg, OrgRow, TokenRow, UserRow};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::{Entity, Error, Principal, Result, Services};

/// Body of `POST /v1/organizations`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    pub name: String,
}

/// Body of `POST /v1/users`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub name: String,
    pub email: Option<String>,
}

/// Body of `POST /v1/tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// The user the token acts as (of the caller's org); none: the organization itself.
    pub user_id: Option<UserId>,
    pub name: String,
    /// Org scopes, each held by the caller.
    pub scopes: Vec<String>,
    /// Default: never.
    pub expires_at: Option<DateTime<Utc>>,
}

fn check_name(field: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid(
            "invalid_request",
            format!("{field} must be 1 to 200 characters"),
        ));
    }
    agentyard_core::storable::check_text(field, name)
        .map_err(|e| Error::invalid("invalid_request", e.to_string()))
}

impl Services {
    /// Creates an organization with its admin user, default agent and an admin token holding
    /// every org scope.
    ///
    /// # Errors
    /// `invalid_request`.
    pub async fn create_org(&self, req: CreateOrg) -> Result<(NewOrg, OrgRow)> {
        check_name("name", &req.name)?;
        let new = self.store.create_org(req.name.trim()).await?;
        let org =
            self.store.get_org(new.org_id).await?.ok_or(Error::NotFound(Entity::Organization))?;
        Ok((new, org))
    }

    /// An organization: a platform admin reads any, an org admin its own.
    ///
    /// # Errors
    /// `organization_not_found`.
    pub async fn get_org(&self, who: &Principal, id: OrgId) -> Result<OrgRow> {
        if !who.has_scope(Scope::PlatformAdmin) && id != who.org_id {
            return Err(Error::NotFound(Entity::Organization));
        }
        self.store.get_org(id).await?.ok_or(Error::NotFound(Entity::Organization))
    }

    /// Adds a user to the caller's organization.
    ///
    /// # Errors
    /// `invalid_request`.
    pub async fn create_user(&self, who: &Principal, req: CreateUser) -> Result<UserRow> {
        check_name("name", &req.name)?;
        if let Some(e) = &req.email
            && (e.len() > 320
                || !e.contains('@')
                || e.contains(char::is_whitespace)
                || e.contains('\0'))
        {
            return Err(Error::invalid("invalid_request", "email is not an email address"));
        }
        Ok(self.store.create_user(who.org_id, req.name.trim(), req.email.as_deref()).await?)
    }

    /// Creates a token in the caller's organization. It cannot hold a scope the caller lacks,
    /// nor `platform:admin` (only the operator's CLI grants that).
    ///
    /// # Errors
    /// `invalid_scopes`, `invalid_request`, `insufficient_scope`, `user_not_found`.
    pub async fn create_token(
        &self,
        who: &Principal,
        req: CreateToken,
    ) -> Result<agentyard_store::orgs::NewToken> {
        check_name("name", &req.name)?;
        let (mut scopes, mut unknown) = (Vec::new(), Vec::new());
        for s in &req.scopes {
            match s.parse::<Scope>() {
                Ok(scope) => scopes.push(scope),
                Err(_) => unknown.push(s.as_str()),
            }
        }
        if !unknown.is_empty() {
            let known: Vec<&str> = Scope::ORG.iter().map(|s| s.as_str()).collect();
            return Err(Error::invalid(
                "invalid_scopes",
                format!("unknown scopes: {}; known: {}", unknown.join(", "), known.join(", ")),
            ));
        }
        if scopes.is_empty() {
            return Err(Error::invalid("invalid_scopes", "scopes must not be empty"));
        }
        if scopes.contains(&Scope::PlatformAdmin) {
            return Err(Error::Forbidden(
                "platform:admin is granted only with `agentyard admin create-token`".into(),
            ));
        }
        let missing: Vec<&str> =
            scopes.iter().filter(|s| !who.has_scope(**s)).map(|s| s.as_str()).collect();
        if !missing.is_empty() {
            return Err(Error::Forbidden(format!(
                "the caller lacks the scopes it would grant: {}",
                missing.join(", ")
            )));
        }
        if req.expires_at.is_some_and(|e| e <= Utc::now()) {
            return Err(Error::invalid("invalid_request", "expires_at must be in the future"));
        }
        if let Some(user) = req.user_id
            && !self.store.user_in_org(who.org_id, user).await?
        {
            return Err(Error::NotFound(Entity::User));
        }
        scopes.sort_unstable();
        scopes.dedup();
        Ok(self
            .store
            .create_user_token(who.org_id, req.user_id, req.name.trim(), &scopes, req.expires_at)
            .await?)
    }

    /// The organization's tokens, without their secrets.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_tokens(&self, who: &Principal) -> Result<Vec<TokenRow>> {
        Ok(self.store.list_tokens(who.org_id).await?)
    }

    /// Revokes a token and tells every API process at once (core NATS; were it lost, the
    /// processes' caches still expire within seconds).
    ///
    /// # Errors
    /// `token_not_found`.
    pub async fn revoke_token(&self, who: &Principal, id: TokenId) -> Result<()> {
        if !self.store.revoke_token(who.org_id, id).await? {
            return Err(Error::NotFound(Entity::Token));
        }
        let subject = self.bus.subjects().auth_revoked();
        if let Err(e) = self.bus.client().publish(subject, id.to_string().into()).await {
            tracing::warn!(error = %e, "cannot broadcast a revocation; other API processes see it within the cache TTL");
        }
        Ok(())
    }
}

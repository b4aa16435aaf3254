//! Tenancy: organizations (platform admins), users and tokens (org admins), usage.

use agentyard_core::{OrgId, TokenId, UserId};
use agentyard_store::orgs::{ALL_SCOPES, ORG_SCOPES, OrgRow, PLATFORM_ADMIN, TokenRow, UserRow};
use agentyard_store::usage::{AgentTotals, ModelTotals, Totals};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::parse_id;
use crate::auth::Auth;
use crate::error::{self, ErrorBody, parse_json};
use crate::{ApiError, AppState};

const ORG_ADMIN: &str = "org:admin";

fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid(
            "invalid_request",
            format!("{field} must be 1 to 200 characters"),
        ));
    }
    Ok(())
}

/// Body of `POST /v1/organizations`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateOrg {
    name: String,
}

/// A new organization, its admin user, default agent and admin token (shown only here).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct NewOrgView {
    organization: OrgRow,
    admin_user_id: UserId,
    default_agent_id: agentyard_core::AgentId,
    /// Holds every org scope. Shown once.
    admin_token: NewTokenView,
}

/// Creates an organization with its admin user, default agent and an admin token.
#[utoipa::path(post, path = "/v1/organizations", tag = "tenancy",
    request_body(content = CreateOrg, content_type = "application/json"),
    responses((status = 201, body = NewOrgView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "needs platform:admin"), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create_org(
    State(state): State<AppState>,
    auth: Auth,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<NewOrgView>), ApiError> {
    auth.require(PLATFORM_ADMIN)?;
    let req: CreateOrg = parse_json(&error::body(body)?)?;
    check_name("name", &req.name)?;
    let new = state.store.create_org(req.name.trim()).await?;
    let organization = state
        .store
        .get_org(new.org_id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization_not_found", "organization"))?;
    Ok((
        StatusCode::CREATED,
        Json(NewOrgView {
            organization,
            admin_user_id: new.user_id,
            default_agent_id: new.agent_id,
            admin_token: NewTokenView::from(new.token),
        }),
    ))
}

/// An organization: a platform admin reads any, an org admin its own.
#[utoipa::path(get, path = "/v1/organizations/{id}", tag = "tenancy", params(("id" = String, Path)),
    responses((status = 200, body = OrgRow), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_org(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<OrgRow>, ApiError> {
    let platform = auth.0.has_scope(PLATFORM_ADMIN);
    if !platform {
        auth.require(ORG_ADMIN)?;
    }
    let not_found = || ApiError::not_found("organization_not_found", "organization");
    let id: OrgId = parse_id(&id, "organization_not_found", "organization")?;
    if !platform && id != auth.0.org_id {
        return Err(not_found());
    }
    state.store.get_org(id).await?.map(Json).ok_or_else(not_found)
}

/// Body of `POST /v1/users`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    name: String,
    email: Option<String>,
}

/// Adds a user to the caller's organization.
#[utoipa::path(post, path = "/v1/users", tag = "tenancy",
    request_body(content = CreateUser, content_type = "application/json"),
    responses((status = 201, body = UserRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    auth: Auth,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<UserRow>), ApiError> {
    let who = auth.require(ORG_ADMIN)?;
    let req: CreateUser = parse_json(&error::body(body)?)?;
    check_name("name", &req.name)?;
    if let Some(e) = &req.email
        && (e.len() > 320 || !e.contains('@') || e.contains(char::is_whitespace))
    {
        return Err(ApiError::invalid("invalid_request", "email is not an email address"));
    }
    let user = state.store.create_user(who.org_id, req.name.trim(), req.email.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// A list.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct List<T: utoipa::ToSchema> {
    data: Vec<T>,
}

/// The organization's users.
#[utoipa::path(get, path = "/v1/users", tag = "tenancy",
    responses((status = 200, body = List<UserRow>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<List<UserRow>>, ApiError> {
    let who = auth.require(ORG_ADMIN)?;
    Ok(Json(List { data: state.store.list_users(who.org_id).await? }))
}

/// Body of `POST /v1/tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    /// The user the token acts as (of the caller's org); none: the organization itself.
    user_id: Option<UserId>,
    name: String,
    /// Org scopes, each held by the caller.
    scopes: Vec<String>,
    /// Default: never.
    expires_at: Option<DateTime<Utc>>,
}

/// A token as created: `token` is shown only here.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct NewTokenView {
    id: TokenId,
    /// The secret: send it as `Authorization: Bearer <token>`. Not stored; not shown again.
    token: String,
    scopes: Vec<String>,
    user_id: Option<UserId>,
    expires_at: Option<DateTime<Utc>>,
}

impl From<agentyard_store::orgs::NewToken> for NewTokenView {
    fn from(t: agentyard_store::orgs::NewToken) -> Self {
        Self {
            id: t.id,
            token: t.secret,
            scopes: t.scopes,
            user_id: t.user_id,
            expires_at: t.expires_at,
        }
    }
}

/// Creates a token in the caller's organization. It cannot hold a scope the caller lacks.
#[utoipa::path(post, path = "/v1/tokens", tag = "tenancy",
    request_body(content = CreateToken, content_type = "application/json"),
    responses((status = 201, body = NewTokenView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "org:admin missing, or a scope the caller lacks"),
        (status = 404, body = ErrorBody, description = "user_not_found"), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    auth: Auth,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<NewTokenView>), ApiError> {
    let who = auth.require(ORG_ADMIN)?;
    let req: CreateToken = parse_json(&error::body(body)?)?;
    check_name("name", &req.name)?;
    let unknown: Vec<&str> =
        req.scopes.iter().map(String::as_str).filter(|s| !ALL_SCOPES.contains(s)).collect();
    if !unknown.is_empty() {
        return Err(ApiError::invalid(
            "invalid_scopes",
            format!("unknown scopes: {}; known: {}", unknown.join(", "), ORG_SCOPES.join(", ")),
        ));
    }
    if req.scopes.is_empty() {
        return Err(ApiError::invalid("invalid_scopes", "scopes must not be empty"));
    }
    if req.scopes.iter().any(|s| s == PLATFORM_ADMIN) {
        return Err(ApiError::forbidden(
            "platform:admin is granted only with `agentyard admin create-token`",
        ));
    }
    let missing: Vec<&str> =
        req.scopes.iter().map(String::as_str).filter(|s| !who.has_scope(s)).collect();
    if !missing.is_empty() {
        return Err(ApiError::forbidden(format!(
            "the caller lacks the scopes it would grant: {}",
            missing.join(", ")
        )));
    }
    if req.expires_at.is_some_and(|e| e <= Utc::now()) {
        return Err(ApiError::invalid("invalid_request", "expires_at must be in the future"));
    }
    if let Some(user) = req.user_id
        && !state.store.user_in_org(who.org_id, user).await?
    {
        return Err(ApiError::not_found("user_not_found", "user"));
    }
    let mut scopes = req.scopes.clone();
    scopes.sort_unstable();
    scopes.dedup();
    let token = state
        .store
        .create_user_token(who.org_id, req.user_id, req.name.trim(), &scopes, req.expires_at)
        .await?;
    Ok((StatusCode::CREATED, Json(NewTokenView::from(token))))
}

/// The organization's tokens, without their secrets.
#[utoipa::path(get, path = "/v1/tokens", tag = "tenancy",
    responses((status = 200, body = List<TokenRow>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<List<TokenRow>>, ApiError> {
    let who = auth.require(ORG_ADMIN)?;
    Ok(Json(List { data: state.store.list_tokens(who.org_id).await? }))
}

/// Revokes a token, at once, in every API process.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tenancy", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let who = auth.require(ORG_ADMIN)?;
    let id: TokenId = parse_id(&id, "token_not_found", "token")?;
    if !state.store.revoke_token(who.org_id, id).await? {
        return Err(ApiError::not_found("token_not_found", "token"));
    }
    state.auth.evict(id);
    let subject = state.bus.subjects().auth_revoked();
    if let Err(e) = state.bus.client().publish(subject, id.to_string().into()).await {
        tracing::warn!(error = %e, "cannot broadcast a revocation; other API processes see it within the cache TTL");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /v1/usage`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct UsageQuery {
    /// RFC 3339; default 30 days before `to`.
    from: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive; default now.
    to: Option<DateTime<Utc>>,
}

/// The organization's usage over runs created in `[from, to)`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct UsageReport {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    totals: Totals,
    by_agent: Vec<AgentTotals>,
    by_model: Vec<ModelTotals>,
}

/// Token usage and estimated cost of the organization's runs, in total, per agent and per model.
#[utoipa::path(get, path = "/v1/usage", tag = "tenancy", params(UsageQuery),
    responses((status = 200, body = UsageReport), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn usage(
    State(state): State<AppState>,
    auth: Auth,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<UsageReport>, ApiError> {
    let who = auth.require(ORG_ADMIN)?;
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let to = q.to.unwrap_or_else(Utc::now);
    let from = q.from.unwrap_or(to - chrono::Duration::days(30));
    if from >= to {
        return Err(ApiError::invalid("invalid_query", "from must be before to"));
    }
    let (totals, by_agent, by_model) = state.store.org_usage(who.org_id, from, to).await?;
    Ok(Json(UsageReport { from, to, totals, by_agent, by_model }))
}

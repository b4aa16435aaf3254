//! Tenancy: organizations (platform admins), users and tokens (org admins), usage.

use agentyard_core::{OrgId, Scope, TokenId, UserId};
use agentyard_services::tenancy::{CreateOrg, CreateToken, CreateUser};
use agentyard_store::orgs::{OrgRow, TokenRow, UserRow};
use agentyard_store::usage::{AgentTotals, ModelTotals, Totals};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::error::{ErrorBody, JsonBody, PathId, QueryNumber, QueryParams, query_limit};
use crate::{ApiError, AppState};

const ORG_ADMIN: Scope = Scope::OrgAdmin;

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
    body: JsonBody<CreateOrg>,
) -> Result<(StatusCode, Json<NewOrgView>), ApiError> {
    auth.require(Scope::PlatformAdmin)?;
    let (new, organization) = state.services.create_org(body.value).await?;
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
    PathId(id): PathId<OrgId>,
) -> Result<Json<OrgRow>, ApiError> {
    let who =
        if auth.0.has_scope(Scope::PlatformAdmin) { &auth.0 } else { auth.require(ORG_ADMIN)? };
    Ok(Json(state.services.get_org(who, id).await?))
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
    body: JsonBody<CreateUser>,
) -> Result<(StatusCode, Json<UserRow>), ApiError> {
    let who = auth.require(ORG_ADMIN)?;
    let user = state.services.create_user(who, body.value).await?;
    state.services.audit(who, "user.created", "user", user.id, raw(&body.bytes)).await;
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
    Ok(Json(List { data: state.services.store.list_users(who.org_id).await? }))
}

/// A token as created: `token` is shown only here.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct NewTokenView {
    id: TokenId,
    /// The secret: send it as `Authorization: Bearer <token>`. Not stored; not shown again.
    token: String,
    scopes: Vec<Scope>,
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
    body: JsonBody<CreateToken>,
) -> Result<(StatusCode, Json<NewTokenView>), ApiError> {
    let who = auth.require(ORG_ADMIN)?;
    let token = state.services.create_token(who, body.value).await?;
    state.services.audit(who, "token.created", "token", token.id, raw(&body.bytes)).await;
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
    Ok(Json(List { data: state.services.list_tokens(who).await? }))
}

/// Revokes a token, at once, in every API process.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tenancy", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<TokenId>,
) -> Result<StatusCode, ApiError> {
    let who = auth.require(ORG_ADMIN)?;
    state.services.revoke_token(who, id).await?;
    state.auth.evict(id);
    state.services.audit(who, "token.revoked", "token", id, serde_json::json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /v1/usage`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
    QueryParams(q): QueryParams<UsageQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    let who = auth.require(ORG_ADMIN)?;
    let to = q.to.unwrap_or_else(Utc::now);
    let from = q.from.unwrap_or(to - chrono::Duration::days(30));
    if from >= to {
        return Err(ApiError::invalid("invalid_query", "from must be before to"));
    }
    let (totals, by_agent, by_model) = state.services.store.org_usage(who.org_id, from, to).await?;
    Ok(Json(UsageReport { from, to, totals, by_agent, by_model }))
}

/// A request's JSON body, for the audit log (bodies that hold no secret only).
pub(crate) fn raw(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_default()
}

/// Query of `GET /v1/audit-log`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// A page's `next_cursor`.
    cursor: Option<String>,
    /// 1 to 500 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<QueryNumber>,
}

/// A page of the audit log.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AuditPage {
    data: Vec<agentyard_store::audit::AuditEntry>,
    /// Pass as `cursor` for the next (older) page; null on the last.
    next_cursor: Option<String>,
}

/// The organization's administrative acts made through the API, newest first: tokens created
/// and revoked, users created, agents created, changed, reset, recreated, activated,
/// deactivated and deleted, MCP servers registered and deleted; who (user, token) and when.
/// Append-only.
#[utoipa::path(get, path = "/v1/audit-log", tag = "tenancy", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody, description = "invalid_query: a number out of range"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn audit_log(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let who = auth.require(ORG_ADMIN)?;
    let limit = agentyard_services::page_limit(query_limit(q.limit.as_ref())?, 100, 500)?;
    let page = state.services.audit_log(who, q.cursor.as_deref(), limit).await?;
    Ok(Json(AuditPage { data: page.data, next_cursor: page.next_cursor }))
}

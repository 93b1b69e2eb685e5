//! Users and auth endpoints.

use crate::rest::{ApiRoutes, AppState, PeerAddr};
use crate::edge::{AppJson, CallerExt, ClientId, client_addr};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use shared_kernel::{ApiError, Caller, Page, PageRequest, ProblemDetails, UserId};
use users_contract::{Credentials, PublicKeySet, RefreshRequest, RegisterUser, TokenPair, UserView};

/// Its operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(register, login, refresh, logout, me, list_users, deactivate_user, jwks), tags((name = "users", description = "Accounts"), (name = "auth", description = "Tokens and keys")))]
pub struct Doc;

pub fn routes() -> ApiRoutes<AppState> {
    ApiRoutes::new()
        .v1("/users/register", post(register))
        .v1("/auth/login", post(login))
        .v1("/auth/refresh", post(refresh))
        .v1("/auth/logout", post(logout))
        .v1("/users/me", get(me))
        .v1("/users", get(list_users))
        .v1("/users/{id}/deactivate", post(deactivate_user))
}

/// `/.well-known/jwks.json`: outside `/api`, so not versioned.
pub fn well_known() -> Router<AppState> {
    Router::new().route("/.well-known/jwks.json", get(jwks))
}

/// Query of a paginated list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// 1..=100, default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, example = 20)]
    pub limit: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

// The auth endpoints act for whoever presents the credentials in the body: a stale bearer
// token that a client library still sends must not get in the way, so they resolve no caller.

/// Register a customer account.
#[utoipa::path(post, path = "/api/v1/users/register", tag = "users", request_body = RegisterUser, responses(
    (status = 201, body = UserView),
    (status = 400, description = "Malformed JSON", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 409, description = "Email taken (case-insensitive)", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 422, description = "Invalid email, weak password or empty name", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn register(
    State(state): State<AppState>,
    AppJson(body): AppJson<RegisterUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let user = state.users.register(&Caller::Anonymous, body).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Log in with email and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Credentials, responses(
    (status = 200, body = TokenPair),
    (status = 401, description = "Wrong email or password", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 403, description = "Account deactivated", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 429, description = "Too many attempts (see Retry-After)", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn login(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    AppJson(body): AppJson<Credentials>,
) -> Result<Response, ApiError> {
    let address = client_addr(&headers, peer, state.trust_forwarded_for);
    let pair = state.users.login(&Caller::Anonymous, body, address).await?;
    Ok(no_store(Json(pair)))
}

/// Exchange a refresh token for a new pair (the old one stops working).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, body = TokenPair),
    (status = 401, description = "Invalid, expired, used or revoked token", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn refresh(State(state): State<AppState>, AppJson(body): AppJson<RefreshRequest>) -> Result<Response, ApiError> {
    let pair = state.users.refresh(&Caller::Anonymous, body).await?;
    Ok(no_store(Json(pair)))
}

/// Log out: revokes the refresh token and every token rotated from the same login.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest, responses((status = 204, description = "Logged out")))]
pub async fn logout(State(state): State<AppState>, AppJson(body): AppJson<RefreshRequest>) -> Result<StatusCode, ApiError> {
    state.users.logout(&Caller::Anonymous, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The calling user.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])), responses(
    (status = 200, body = UserView),
    (status = 401, body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn me(State(state): State<AppState>, CallerExt(caller): CallerExt) -> Result<Json<UserView>, ApiError> {
    state.users.me(&caller).await.map(Json)
}

/// Every user (admin).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(ListQuery), security(("bearer" = [])), responses(
    (status = 200, body = Page<UserView>),
    (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 403, body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn list_users(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page<UserView>>, ApiError> {
    let page = PageRequest::from_query(query.limit.as_deref(), query.cursor.as_deref())?;
    state.users.list_users(&caller, page).await.map(Json)
}

/// Deactivate an account (admin): no more logins, refreshes or orders.
#[utoipa::path(post, path = "/api/v1/users/{id}/deactivate", tag = "users", params(("id" = String, Path, format = Uuid)), security(("bearer" = [])), responses(
    (status = 200, body = UserView),
    (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 409, description = "Your own account", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn deactivate_user(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let id = ClientId::<UserId>::new(&id);
    id.explain(state.users.deactivate_user(&caller, id.get()).await).map(Json)
}

/// The public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, body = PublicKeySet)))]
pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let keys = state.users.signing_keys(&Caller::Anonymous).await?;
    let mut response = Json(keys).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    Ok(response)
}

/// Token responses must not be cached by anything in between.
fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

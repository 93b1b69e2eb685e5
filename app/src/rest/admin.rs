//! Dead letters (admin only): list, show, replay to their consumer, discard (kept as audit).
//! Covers the consumers of every deployed module: each module's dead letters are reached
//! through their contract, where that module runs.

use super::AppState;
use crate::edge::CallerExt;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use shared_kernel::outbox::DeadLetter;
use shared_kernel::outbox::admin::DeadLettersApi;
use shared_kernel::{ApiError, Caller, Page, PageRequest, ProblemDetails};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/admin/dead-letters", get(list_dead_letters))
        .route("/api/admin/dead-letters/{id}", get(get_dead_letter).delete(discard_dead_letter))
        .route("/api/admin/dead-letters/{id}/replay", post(replay_dead_letter))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeadLetterQuery {
    /// 1..=100, default 20.
    pub limit: Option<String>,
    pub cursor: Option<String>,
    /// Also list replayed and discarded ones (the audit trail).
    #[serde(default)]
    pub include_resolved: bool,
}

/// Events a consumer gave up on, oldest first, each with every attempt's time and error.
#[utoipa::path(get, path = "/api/admin/dead-letters", tag = "events", params(DeadLetterQuery), security(("bearer" = [])), responses(
    (status = 200, body = Page<DeadLetter>),
    (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 403, body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Query(query): Query<DeadLetterQuery>,
) -> Result<Json<Page<DeadLetter>>, ApiError> {
    caller.require_admin()?;
    let page = PageRequest::from_query(query.limit.as_deref(), query.cursor.as_deref())?;
    // Ids are UUIDv7 and unique across modules: merging each module's next rows by id gives
    // one ordered list, and the last id is a cursor valid for every module. A module that does
    // not answer fails the list (503) rather than being left out of it silently.
    let lists =
        futures::future::try_join_all(state.dead_letters.iter().map(|module| module.list(&caller, page.clone(), query.include_resolved)))
            .await?;
    let mut rows: Vec<DeadLetter> = lists.into_iter().flatten().collect();
    rows.sort_by_key(|row| row.id);
    rows.dedup_by_key(|row| row.id);
    Ok(Json(Page::from_overfetched(rows, page.limit(), |row| row.id.to_string())))
}

/// One dead letter.
#[utoipa::path(get, path = "/api/admin/dead-letters/{id}", tag = "events", params(("id" = String, Path, format = Uuid)), security(("bearer" = [])), responses(
    (status = 200, body = DeadLetter),
    (status = 404, body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn get_dead_letter(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<DeadLetter>, ApiError> {
    caller.require_admin()?;
    let (_, dead_letter) = find(&state, &caller, &id).await?;
    Ok(Json(dead_letter))
}

/// Delivers the event again to the consumer that gave up on it (with the usual retries; if it
/// fails again it becomes a new dead letter), and marks this one replayed.
#[utoipa::path(post, path = "/api/admin/dead-letters/{id}/replay", tag = "events", params(("id" = String, Path, format = Uuid)), security(("bearer" = [])), responses(
    (status = 200, description = "Delivered again", body = DeadLetter),
    (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 409, description = "Already replayed or discarded", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn replay_dead_letter(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<DeadLetter>, ApiError> {
    caller.require_admin()?;
    let (module, dead_letter) = find(&state, &caller, &id).await?;
    // The module that holds it replays it, to its own consumer, in its own process.
    Ok(Json(module.replay(&caller, dead_letter.id).await?))
}

/// Discards a dead letter: it stays in the audit trail (`include_resolved=true`) as discarded.
#[utoipa::path(delete, path = "/api/admin/dead-letters/{id}", tag = "events", params(("id" = String, Path, format = Uuid)), security(("bearer" = [])), responses(
    (status = 204, description = "Discarded"),
    (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 409, body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn discard_dead_letter(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    let (module, dead_letter) = find(&state, &caller, &id).await?;
    module.discard(&caller, dead_letter.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The module holding dead letter `id`, and the letter.
async fn find<'a>(state: &'a AppState, caller: &Caller, id: &str) -> Result<(&'a dyn DeadLettersApi, DeadLetter), ApiError> {
    let not_found = || ApiError::not_found("dead letter not found");
    let id = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
    for module in state.dead_letters.iter() {
        match module.get(caller, id).await {
            Ok(dead_letter) => return Ok((module.as_ref(), dead_letter)),
            Err(ApiError::NotFound { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    Err(not_found())
}

//! Dead letters (admin only): list, show, replay to their consumer, discard (kept as audit).
//! Covers the consumers of every module hosted in this process.

use super::AppState;
use crate::edge::CallerExt;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use shared_kernel::outbox::{DeadLetter, DeadLetterStatus, DeadLetterStore};
use shared_kernel::{ApiError, Page, PageRequest, ProblemDetails};

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
    // Ids are UUIDv7 and unique across modules: merging each store's next rows by id gives
    // one ordered list, and the last id is a cursor valid for every store.
    let mut rows = Vec::new();
    for store in state.dead_letters.iter() {
        rows.extend(store.list_overfetched(&page, query.include_resolved).await?);
    }
    rows.sort_by_key(|row| row.id);
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
    let (_, dead_letter) = find(&state, &id).await?;
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
    let (store, dead_letter) = find(&state, &id).await?;
    if dead_letter.status != DeadLetterStatus::Pending {
        return Err(ApiError::conflict("this dead letter was already replayed or discarded"));
    }
    // Claim it first, so two admins replaying at once deliver it once; if the delivery cannot
    // even be attempted, it goes back to pending rather than vanishing from the list.
    store.mark_replayed(dead_letter.id).await?;
    // Detached from the request: a client that goes away, or the request timeout, cannot stop a
    // replay half-way and leave the letter marked replayed but undelivered.
    let replay = {
        let (bus, store, letter) = (state.bus.clone(), store.clone(), dead_letter.clone());
        tokio::spawn(async move {
            let outcome = bus.redeliver(&letter.consumer, &letter.event).await;
            if let Err(error) = &outcome {
                tracing::error!(%error, dead_letter = %letter.id, "replay failed; the dead letter is pending again");
                let _ = store.reopen(letter.id).await;
            }
            outcome
        })
    };
    if !matches!(replay.await, Ok(Ok(()))) {
        return Err(ApiError::unavailable("the event could not be delivered again", 1));
    }
    tracing::info!(dead_letter = %dead_letter.id, consumer = %dead_letter.consumer, event_id = %dead_letter.event.id, "replayed a dead letter");
    Ok(Json(store.get(dead_letter.id).await?))
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
    let admin = caller.require_admin()?;
    let (store, dead_letter) = find(&state, &id).await?;
    store.mark_discarded(dead_letter.id).await?;
    tracing::info!(dead_letter = %dead_letter.id, admin_id = %admin.id, "discarded a dead letter");
    Ok(StatusCode::NO_CONTENT)
}

async fn find<'a>(state: &'a AppState, id: &str) -> Result<(&'a DeadLetterStore, DeadLetter), ApiError> {
    let not_found = || ApiError::not_found("dead letter not found");
    let id = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
    for store in state.dead_letters.iter() {
        match store.get(id).await {
            Ok(dead_letter) => return Ok((store, dead_letter)),
            Err(ApiError::NotFound { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    Err(not_found())
}

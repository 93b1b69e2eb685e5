//! The admin API. Dead letters: list, show, replay to their consumer, discard (kept as audit),
//! for the consumers of every deployed module, each module's reached through their contract
//! where that module runs. Status: where every module runs and how it fares from here.

use super::{ApiRoutes, AppState};
use crate::edge::CallerExt;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use shared_kernel::outbox::DeadLetter;
use shared_kernel::outbox::admin::DeadLettersApi;
use shared_kernel::{ApiError, Caller, Page, PageRequest, ProblemDetails};

pub fn routes() -> ApiRoutes<AppState> {
    ApiRoutes::new()
        .v1("/admin/dead-letters", get(list_dead_letters))
        .v1("/admin/dead-letters/{id}", get(get_dead_letter).delete(discard_dead_letter))
        .v1("/admin/dead-letters/{id}/replay", post(replay_dead_letter))
        .v1("/admin/status", get(status))
}

/// What this process sees of every module.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SystemStatus {
    /// The process answering (`server.service_name`).
    pub service: String,
    pub modules: Vec<ModuleReport>,
}

/// One module as this process sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModuleReport {
    pub name: String,
    /// `local`, `http`, `nats` or `not_deployed`.
    pub runs: String,
    /// Instances seen: 1 when local; the addresses its URLs resolve to over HTTP; those that
    /// answered a discovery request over NATS. Null when not deployed.
    pub instances: Option<usize>,
    /// The circuit to it: `closed`, `half_open` or `open`. Null unless remote.
    pub circuit: Option<String>,
    /// Whether it answered its last background probe (every 5 s). Null unless remote.
    pub reachable: Option<bool>,
    /// Calls to it in flight from here, and waiting for a slot. Null unless remote.
    pub in_flight: Option<usize>,
    pub queued: Option<usize>,
    /// Dead letters of its consumers waiting for an admin. Null when not deployed, or when it
    /// did not answer (then `error` says why).
    pub dead_letters_pending: Option<u64>,
    pub error: Option<String>,
}

/// Every module: where it runs (local, http or nats), the instances seen, the circuit to it, and
/// its pending dead letters. A module that does not answer is reported, not left out.
#[utoipa::path(get, path = "/api/v1/admin/status", tag = "operations", security(("bearer" = [])), responses(
    (status = 200, body = SystemStatus),
    (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 403, body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn status(State(state): State<AppState>, CallerExt(caller): CallerExt) -> Result<Json<SystemStatus>, ApiError> {
    caller.require_admin()?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    let modules = futures::future::join_all(state.status.iter().map(|module| report(module, &caller, deadline))).await;
    Ok(Json(SystemStatus { service: state.service_name.clone(), modules }))
}

async fn report(module: &crate::composition::ModuleStatus, caller: &Caller, deadline: tokio::time::Instant) -> ModuleReport {
    use crate::composition::Placement;
    let instances = async {
        match (&module.instances, module.placement) {
            (Some(count), _) => tokio::time::timeout_at(deadline, count()).await.ok(),
            (None, Placement::Local) => Some(1),
            (None, _) => None,
        }
    };
    let dead_letters = async {
        let api = module.dead_letters.as_ref()?;
        Some(match tokio::time::timeout_at(deadline, api.pending_count(caller)).await {
            Ok(Ok(count)) => Ok(count),
            Ok(Err(error)) => Err(error.to_problem().detail),
            Err(_) => Err(format!("the {} module did not answer in time", module.name)),
        })
    };
    let reachable = async {
        match &module.reachable {
            Some(probe) => Some(probe().await),
            None => None,
        }
    };
    let (instances, dead_letters, reachable) = tokio::join!(instances, dead_letters, reachable);
    let (dead_letters_pending, error) = match dead_letters {
        Some(Ok(count)) => (Some(count), None),
        Some(Err(error)) => (None, Some(error)),
        None => (None, None),
    };
    let load = module.upstream.as_ref().map(|upstream| upstream.load());
    let runs = module.placement.as_str().to_owned();
    let circuit = module.upstream.as_ref().map(|upstream| upstream.circuit_status().as_str().to_owned());
    ModuleReport {
        name: module.name.to_owned(),
        runs,
        instances,
        circuit,
        reachable,
        in_flight: load.map(|(in_flight, _)| in_flight),
        queued: load.map(|(_, queued)| queued),
        dead_letters_pending,
        error,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeadLetterQuery {
    /// 1..=100, default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, example = 20)]
    pub limit: Option<String>,
    pub cursor: Option<String>,
    /// Also list replayed and discarded ones (the audit trail).
    #[serde(default)]
    pub include_resolved: bool,
}

/// Events a consumer gave up on, oldest first, each with every attempt's time and error.
#[utoipa::path(get, path = "/api/v1/admin/dead-letters", tag = "events", params(DeadLetterQuery), security(("bearer" = [])), responses(
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
#[utoipa::path(get, path = "/api/v1/admin/dead-letters/{id}", tag = "events", params(("id" = String, Path, format = Uuid)), security(("bearer" = [])), responses(
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
#[utoipa::path(post, path = "/api/v1/admin/dead-letters/{id}/replay", tag = "events", params(("id" = String, Path, format = Uuid)), security(("bearer" = [])), responses(
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
#[utoipa::path(delete, path = "/api/v1/admin/dead-letters/{id}", tag = "events", params(("id" = String, Path, format = Uuid)), security(("bearer" = [])), responses(
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

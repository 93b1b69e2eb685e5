//! The caller's notifications (api.md): list them, mark one read.

use crate::rest::{ApiRoutes, AppState};
use crate::edge::{CallerExt, ClientId};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use notifications_contract::{NotificationId, NotificationView};
use shared_kernel::{ApiError, Page, PageRequest, ProblemDetails};

/// Its operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_notifications, mark_read), tags((name = "notifications", description = "The caller's notifications")))]
pub struct Doc;

pub fn routes() -> ApiRoutes<AppState> {
    ApiRoutes::new().v1("/me/notifications", get(list_notifications)).v1("/me/notifications/{id}/read", post(mark_read))
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/api/v1/me/notifications", tag = "notifications", params(crate::modules::orders::rest::OrderListQuery), security(("bearer" = [])), responses(
    (status = 200, body = Page<NotificationView>),
    (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 422, description = "A bad limit or cursor", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 503, description = "The notifications module cannot be reached", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn list_notifications(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Query(query): Query<crate::modules::orders::rest::OrderListQuery>,
) -> Result<Json<Page<NotificationView>>, ApiError> {
    caller.require_user()?;
    let page = PageRequest::from_query(query.limit.as_deref(), query.cursor.as_deref())?;
    state.notifications.list_notifications(&caller, page).await.map(Json)
}

/// Mark one of the caller's notifications read. Marking it again answers it unchanged (the
/// first time it was read stands).
#[utoipa::path(post, path = "/api/v1/me/notifications/{id}/read", tag = "notifications", params(("id" = String, Path, format = Uuid)), security(("bearer" = [])), responses(
    (status = 200, body = NotificationView),
    (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 404, description = "No such notification, or not yours", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 503, description = "The notifications module cannot be reached", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn mark_read(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<NotificationView>, ApiError> {
    caller.require_user()?;
    let id = ClientId::<NotificationId>::new(&id);
    id.explain(state.notifications.mark_read(&caller, id.get()).await).map(Json)
}

//! Order endpoints (api.md): placement with an idempotency key, reads, cancellation.

use crate::rest::{ApiRoutes, AppState};
use crate::edge::{AppJson, CallerExt, ClientId};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use orders_contract::{OrderView, PlaceOrder};
use serde::Deserialize;
use shared_kernel::{ApiError, OrderId, Page, PageRequest, ProblemDetails};

/// Its operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(place_order, list_orders, get_order, cancel_order), tags((name = "orders", description = "Placing, reading and cancelling orders")))]
pub struct Doc;

pub fn routes() -> ApiRoutes<AppState> {
    ApiRoutes::new()
        .v1("/orders", get(list_orders).post(place_order))
        .v1("/orders/{id}", get(get_order))
        .v1("/orders/{id}/cancel", post(cancel_order))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct OrderListQuery {
    /// 1..=100, default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, example = 20)]
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// The header that makes placement safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Place an order. Send a fresh `Idempotency-Key` per order (a UUID is a good choice) and the
/// same one again to retry: the retry answers the same order and charges nothing more. 201
/// when the order is settled (`confirmed` or `rejected`), 202 while it is still `pending`.
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", request_body = PlaceOrder, security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "1 to 255 visible ASCII characters, unique per order")),
    responses(
    (status = 201, description = "Settled: confirmed, or rejected with `failure_reason`", body = OrderView),
    (status = 202, description = "Still pending: poll `GET /api/orders/{id}`", body = OrderView),
    (status = 400, description = "No Idempotency-Key header", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 403, description = "The account is deactivated", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 409, description = "The key was used with another body", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 422, description = "Invalid lines, an unknown product, or a card number failing the Luhn check", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 503, body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn place_order(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    headers: HeaderMap,
    AppJson(order): AppJson<PlaceOrder>,
) -> Result<Response, ApiError> {
    // Authentication first: an anonymous caller learns nothing about the header's rules.
    caller.require_user()?;
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(|| ApiError::bad_request("the Idempotency-Key header is required"))?
        .to_str()
        .map_err(|_| ApiError::invalid_field("Idempotency-Key", "must be 1 to 255 visible ASCII characters"))?
        .to_owned();
    let placement = super::place(&state.modules, &caller, key, order).await?;
    let status = if placement.order.status.is_settled() { StatusCode::CREATED } else { StatusCode::ACCEPTED };
    let location = HeaderValue::from_str(&format!("/api/v1/orders/{}", placement.order.id)).map_err(|_| ApiError::Internal)?;
    let mut response = (status, [(header::LOCATION, location)], Json(placement.order)).into_response();
    if placement.replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// One order: its owner or an admin; 404 for anyone else.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", params(("id" = String, Path, format = Uuid)), security(("bearer" = [])), responses(
    (status = 200, body = OrderView),
    (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 404, description = "No such order, or not yours", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn get_order(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let id = ClientId::<OrderId>::new(&id);
    id.explain(state.orders.get_order(&caller, id.get()).await).map(Json)
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", params(OrderListQuery), security(("bearer" = [])), responses(
    (status = 200, body = Page<OrderView>),
    (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 422, description = "A bad limit or cursor", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn list_orders(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Query(query): Query<OrderListQuery>,
) -> Result<Json<Page<OrderView>>, ApiError> {
    caller.require_user()?;
    let page = PageRequest::from_query(query.limit.as_deref(), query.cursor.as_deref())?;
    state.orders.list_orders(&caller, page).await.map(Json)
}

/// Cancel a confirmed order: the payment is refunded and the stock put back. Its owner or an
/// admin. Cancelling a cancelled order answers it unchanged; any other status is 409.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders", params(("id" = String, Path, format = Uuid)), security(("bearer" = [])), responses(
    (status = 200, body = OrderView),
    (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 404, description = "No such order, or not yours", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 409, description = "The order is not confirmed", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn cancel_order(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let id = ClientId::<OrderId>::new(&id);
    id.explain(state.orders.cancel_order(&caller, id.get()).await).map(Json)
}

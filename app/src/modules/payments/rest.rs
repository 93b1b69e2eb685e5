//! An order's payment (api.md).

use crate::rest::{ApiRoutes, AppState};
use crate::edge::{CallerExt, ClientId};
use axum::Json;
use axum::extract::{Path, State};
use axum::routing::get;
use payments_contract::PaymentView;
use shared_kernel::{ApiError, OrderId, ProblemDetails};

/// Its operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(get_payment), tags((name = "payments", description = "An order's payment")))]
pub struct Doc;

pub fn routes() -> ApiRoutes<AppState> {
    ApiRoutes::new().v1("/orders/{id}/payment", get(get_payment))
}

/// The payment of an order: its owner or an admin; 404 for anyone else.
#[utoipa::path(get, path = "/api/v1/orders/{id}/payment", tag = "payments", params(("id" = String, Path, format = Uuid)), security(("bearer" = [])), responses(
    (status = 200, body = PaymentView),
    (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 404, description = "No such payment, or not yours", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn get_payment(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<PaymentView>, ApiError> {
    let id = ClientId::<OrderId>::new(&id);
    id.explain(state.payments.get_payment(&caller, id.get()).await).map(Json)
}

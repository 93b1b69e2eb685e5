//! `GET /api/me/overview`: the caller's profile, their newest orders and each order's payment,
//! and their latest notifications, in one answer, gathered through the contracts under one
//! deadline (the profile, the orders and the notifications at once, then the payments of those
//! orders). A module that fails or does not answer in time
//! leaves its part empty (`null`) and says so in `warnings`: the answer is partial, never an
//! error, in the monolith and split alike.

use super::{ApiRoutes, AppState};
use crate::edge::CallerExt;
use axum::Json;
use axum::extract::State;
use axum::routing::get;
use notifications_contract::NotificationView;
use orders_contract::OrderView;
use payments_contract::PaymentView;
use serde::Serialize;
use shared_kernel::{ApiError, PageRequest, ProblemDetails};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use users_contract::UserView;

/// How many of the newest orders the overview shows.
const RECENT_ORDERS: u32 = 5;
/// How many of the latest notifications the overview shows.
const LATEST_NOTIFICATIONS: u32 = 5;
/// The whole overview's bound: past it, what has not answered is left out with a warning.
const DEADLINE: Duration = Duration::from_secs(2);

pub fn routes() -> ApiRoutes<AppState> {
    ApiRoutes::new().v1("/me/overview", get(overview))
}

/// The caller's overview; every part may be missing, each missing part named in `warnings`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// The caller's account; null when the users module did not answer.
    pub profile: Option<UserView>,
    /// Their newest orders (up to 5), newest first, each with its payment; null when the orders
    /// module did not answer.
    pub recent_orders: Option<Vec<OverviewOrder>>,
    /// Their latest notifications (up to 5), newest first; null when the notifications module
    /// did not answer.
    pub notifications: Option<Vec<NotificationView>>,
    /// One line per part left out: which module, and why.
    pub warnings: Vec<String>,
}

/// An order with its payment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OverviewOrder {
    pub order: OrderView,
    /// Null when the order has no payment (yet), or when payments did not answer (then
    /// `warnings` says so).
    pub payment: Option<PaymentView>,
}

/// The caller's profile, recent orders and their payments, with partial data rather than an
/// error when a module is down.
#[utoipa::path(get, path = "/api/v1/me/overview", tag = "users", security(("bearer" = [])), responses(
    (status = 200, body = Overview, description = "Every part the modules answered within the deadline; the others are null and named in `warnings`"),
    (status = 401, body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn overview(State(state): State<AppState>, CallerExt(caller): CallerExt) -> Result<Json<Overview>, ApiError> {
    caller.require_user()?;
    let deadline = Instant::now() + DEADLINE;
    let first = PageRequest::new(Some(RECENT_ORDERS), None)?;
    let latest = PageRequest::new(Some(LATEST_NOTIFICATIONS), None)?;
    let (profile, orders, notifications) = tokio::join!(
        within(deadline, "users", state.users.me(&caller)),
        within(deadline, "orders", state.orders.list_orders(&caller, first)),
        within(deadline, "notifications", state.notifications.list_notifications(&caller, latest)),
    );
    let mut warnings = Vec::new();
    let profile = profile.map_err(|warning| warnings.push(warning)).ok();
    let orders = orders.map_err(|warning| warnings.push(warning)).ok().map(|page| page.items);
    let notifications = notifications.map_err(|warning| warnings.push(warning)).ok().map(|page| page.items);
    let payments = match &orders {
        Some(orders) if !orders.is_empty() => {
            let ids = orders.iter().map(|order| order.id).collect();
            within(deadline, "payments", state.payments.get_payments(&caller, ids)).await.map_err(|warning| warnings.push(warning)).ok()
        }
        _ => Some(Vec::new()),
    };
    let recent_orders = orders.map(|orders| {
        orders
            .into_iter()
            .map(|order| {
                let payment = payments.as_ref().and_then(|payments| payments.iter().find(|payment| payment.order_id == order.id).cloned());
                OverviewOrder { order, payment }
            })
            .collect()
    });
    Ok(Json(Overview { profile, recent_orders, notifications, warnings }))
}

/// `call`'s answer, or the warning that stands for it: its error in words, or the deadline.
async fn within<T>(deadline: Instant, module: &str, call: impl Future<Output = Result<T, ApiError>>) -> Result<T, String> {
    match tokio::time::timeout_at(deadline, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            tracing::warn!(module, error = %error, "the overview goes without a part");
            Err(format!("{module}: {}", error.to_problem().detail))
        }
        Err(_) => {
            tracing::warn!(module, "the overview goes without a part: no answer within the deadline");
            Err(format!("{module}: no answer within {} ms", DEADLINE.as_millis()))
        }
    }
}

//! `/health/live`, `/health/ready` and `/metrics`.

use crate::composition::ReadinessCheck;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    /// `live`, `ready` or `unavailable`.
    pub status: &'static str,
    /// Each check by name: `ok` or `failed`.
    pub checks: BTreeMap<String, &'static str>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, body = HealthReport)))]
pub async fn live() -> Json<HealthReport> {
    Json(HealthReport { status: "live", checks: BTreeMap::new() })
}

/// Ready when this process's databases and every module it calls answer; 503 with the failing
/// check named otherwise.
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses(
    (status = 200, body = HealthReport),
    (status = 503, description = "A check failed; the body names it", body = HealthReport)))]
pub async fn ready(checks: Vec<ReadinessCheck>) -> Response {
    let results = futures::future::join_all(checks.iter().map(|check| async move {
        let ok = tokio::time::timeout(Duration::from_secs(2), (check.probe)()).await.unwrap_or(false);
        (check.name.clone(), if ok { "ok" } else { "failed" })
    }))
    .await;
    let all_ok = results.iter().all(|(_, result)| *result == "ok");
    let report = HealthReport { status: if all_ok { "ready" } else { "unavailable" }, checks: results.into_iter().collect() };
    if all_ok {
        (StatusCode::OK, Json(report)).into_response()
    } else {
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(report)).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        response
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(handle: metrics_exporter_prometheus::PrometheusHandle) -> Response {
    let mut response = handle.render().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

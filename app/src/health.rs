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
    /// `live`, `ready`, `unavailable`, or `draining` (shutting down).
    pub status: &'static str,
    /// Each check by name: `ok`, `failed`, or `degraded` (an optional check failing: the
    /// process serves without it, e.g. reads go to the database while the shared cache is away).
    pub checks: BTreeMap<String, &'static str>,
    /// Why it is not ready, or what it does without, in words (absent when all is well).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Set once the process is shutting down: readiness answers 503 from then on.
#[derive(Debug, Clone, Default)]
pub struct Draining(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, body = HealthReport)))]
pub async fn live() -> Json<HealthReport> {
    Json(HealthReport { status: "live", checks: BTreeMap::new(), reason: None })
}

/// Ready when what this process needs of its own answers: its databases and, when it uses one,
/// its broker connection; 503 with the failing check named otherwise. Another service is never
/// a reason: a remote module that does not answer, or whose circuit is open, is `degraded` (its
/// own operations answer 503), as is the shared cache; the process stays ready. Every check
/// reads state kept by this process (remote modules are probed in the background): readiness
/// makes no call to another service.
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses(
    (status = 200, body = HealthReport),
    (status = 503, description = "A check failed; the body names it", body = HealthReport)))]
pub async fn ready(checks: Vec<ReadinessCheck>, draining: Draining) -> Response {
    if draining.is_set() {
        let report = HealthReport { status: "draining", checks: BTreeMap::new(), reason: Some("the process is shutting down".to_owned()) };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(report)).into_response();
    }
    let results = futures::future::join_all(checks.iter().map(|check| async move {
        let ok = tokio::time::timeout(Duration::from_secs(2), (check.probe)()).await.unwrap_or(false);
        let result = match (ok, check.required) {
            (true, _) => "ok",
            (false, true) => "failed",
            (false, false) => "degraded",
        };
        (check.name.clone(), result)
    }))
    .await;
    let named = |wanted: &str| results.iter().filter(|(_, result)| *result == wanted).map(|(name, _)| name.as_str()).collect::<Vec<_>>();
    let (failed, degraded) = (named("failed"), named("degraded"));
    let all_ok = failed.is_empty();
    let reason = match (failed.is_empty(), degraded.is_empty()) {
        (false, _) => Some(format!("failed: {}", failed.join(", "))),
        (true, false) => Some(format!("degraded: {} (serving without)", degraded.join(", "))),
        (true, true) => None,
    };
    let report = HealthReport { status: if all_ok { "ready" } else { "unavailable" }, checks: results.into_iter().collect(), reason };
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

//! Health, metrics, the OpenAPI document and the offline API reference page.

use cleave_tests::{TestApp, Topology};
use serde_json::Value;

async fn health_reports_each_check(app: TestApp) {
    let live = app.get("/health/live", None).await;
    assert_eq!(live.status(), 200);
    let ready = app.get("/health/ready", None).await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let check = match app.topology {
        Topology::Monolith(_) => "users.database",
        Topology::Extracted(_) => "users.remote",
    };
    assert_eq!(body["checks"][check], "ok", "{body}");
}

async fn metrics_are_prometheus_text_with_red_per_route(app: TestApp) {
    app.get("/health/live", None).await;
    let response = app.get("/metrics", None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert!(text.contains("http_requests_total{method=\"GET\",route=\"/health/live\",status=\"200\"}"), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
}

async fn the_openapi_document_and_the_docs_page_work_offline(app: TestApp) {
    let document: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(document["paths"]["/api/auth/login"]["post"].is_object());
    let page = app.get("/docs/", None).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(!html.contains("https://") && !html.contains("http://"), "the page must load nothing from outside: {html}");
    for asset in ["swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-initializer.js"] {
        let response = app.get(&format!("/docs/{asset}"), None).await;
        assert_eq!(response.status(), 200, "{asset}");
        assert!(response.bytes().await.unwrap().len() > 100, "{asset}");
    }
    let initializer = app.get("/docs/swagger-initializer.js", None).await.text().await.unwrap();
    assert!(initializer.contains("/openapi.json"), "{initializer}");
}

crate::topologies!(
    health_reports_each_check,
    metrics_are_prometheus_text_with_red_per_route,
    the_openapi_document_and_the_docs_page_work_offline
);

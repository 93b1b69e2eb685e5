//! One trace across processes. Every OS process exports its spans over OTLP to a receiver this
//! test runs; an order placed at the edge with a `traceparent` of the test's own must come back
//! as one connected trace: the edge's request, the orders service's placement, its calls to the
//! catalog and to payments and their server side in those processes, and the event consumer
//! that took the order's event in another process. The processes log JSON, and their lines
//! carry the same trace and span ids.

use axum::extract::State;
use axum::response::IntoResponse;
use cleave::config::LogFormat;
use cleave_tests::{Layout, ProcessOptions, TestApp, spawn_processes};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One span as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    trace_id: String,
    span_id: String,
    parent_id: String,
    name: String,
    kind: i32,
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const CONSUMER: i32 = 5;

type Spans = Arc<Mutex<Vec<Received>>>;

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) keeping every span it is sent.
async fn otlp_receiver() -> (String, Spans) {
    let spans = Spans::default();
    let router = axum::Router::new().route("/v1/traces", axum::routing::post(collect)).with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, spans)
}

async fn collect(State(spans): State<Spans>, body: axum::body::Bytes) -> axum::response::Response {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (axum::http::StatusCode::BAD_REQUEST, "not an ExportTraceServiceRequest").into_response();
    };
    let mut kept = spans.lock().unwrap();
    for resource in request.resource_spans {
        let attributes = resource.resource.map(|resource| resource.attributes).unwrap_or_default();
        let service = attributes
            .iter()
            .find(|attribute| attribute.key == "service.name")
            .and_then(|attribute| match attribute.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(name) => Some(name.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for span in resource.scope_spans.into_iter().flat_map(|scope| scope.spans) {
            kept.push(Received {
                service: service.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_id: hex(&span.parent_span_id),
                name: span.name,
                kind: span.kind,
            });
        }
    }
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    ([(axum::http::header::CONTENT_TYPE, "application/x-protobuf")], answer).into_response()
}

/// The trace as an indented tree, each span as `service kind name`.
fn tree(trace: &[Received]) -> String {
    fn walk(trace: &[Received], parent: &str, depth: usize, out: &mut String) {
        for span in trace.iter().filter(|span| span.parent_id == parent) {
            let kind = match span.kind {
                SERVER => "server",
                CLIENT => "client",
                CONSUMER => "consumer",
                _ => "internal",
            };
            out.push_str(&format!("{:indent$}{} {kind} {}\n", "", span.service, span.name, indent = depth * 2));
            walk(trace, &span.span_id, depth + 1, out);
        }
    }
    let ids: std::collections::BTreeSet<&str> = trace.iter().map(|span| span.span_id.as_str()).collect();
    let mut out = String::new();
    for root in trace
        .iter()
        .filter(|span| !ids.contains(span.parent_id.as_str()))
        .map(|span| span.parent_id.clone())
        .collect::<std::collections::BTreeSet<_>>()
    {
        walk(trace, &root, 0, &mut out);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore as _;
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex(&buffer)
}

/// Where each part of the placement runs in a layout: the edge, the catalog, and the process
/// whose consumer counts the sale.
struct Places {
    edge: &'static str,
    catalog: &'static str,
}

async fn one_trace_spans_every_process(layout: Layout, places: Places) {
    let (receiver, spans) = otlp_receiver().await;
    let env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), receiver),
        // Export within a tenth of a second rather than five.
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
    ];
    let options = ProcessOptions { env, ..ProcessOptions::default() };
    let Some(app) = spawn_processes(layout, |settings| settings.log.format = LogFormat::Json, options).await else { return };
    let admin = app.admin_token().await;
    let product = product(&app, &admin).await;
    let buyer = app.mint_customer_token();

    let trace_id = random_hex(16);
    let caller_span = random_hex(8);
    let body = json!({"items": [{"product_id": product, "quantity": 1}], "payment": {"card_number": "4242424242424242"}});
    let response = app
        .request(Method::POST, "/api/orders")
        .bearer_auth(&buyer)
        .header("idempotency-key", "traced")
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "confirmed", "{order}");

    let ours =
        |spans: &Spans| -> Vec<Received> { spans.lock().unwrap().iter().filter(|span| span.trace_id == trace_id).cloned().collect() };
    let has = |trace: &[Received], service: &str, kind: i32, prefix: &str| {
        trace.iter().any(|span| span.service == service && span.kind == kind && span.name.starts_with(prefix))
    };
    let complete = |trace: &[Received]| {
        has(trace, places.edge, SERVER, "POST /api/orders")
            && has(trace, "orders", SERVER, "orders.place_order")
            && has(trace, "orders", CLIENT, "catalog.reserve")
            && has(trace, "orders", CLIENT, "payments.charge")
            && has(trace, places.catalog, SERVER, "catalog.reserve")
            && has(trace, "payments", SERVER, "payments.charge")
            && has(trace, places.catalog, CONSUMER, "catalog.sales")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !complete(&ours(&spans)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trace never had every part; its spans: {:#?}\nevery span received: {}",
            ours(&spans),
            spans.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Late spans of the same trace (the relay's, the sale's) are in by now too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let trace = ours(&spans);
    eprintln!("the trace, {} spans:\n{}", trace.len(), tree(&trace));

    // One tree: the edge's request hangs under the caller's span, and every other span under a
    // span of the same trace, whichever process sent it.
    let ids: std::collections::BTreeSet<&str> = trace.iter().map(|span| span.span_id.as_str()).collect();
    let roots: Vec<&Received> = trace.iter().filter(|span| !ids.contains(span.parent_id.as_str())).collect();
    assert_eq!(roots.len(), 1, "exactly one span hangs outside the trace: {roots:#?}");
    assert_eq!(roots[0].parent_id, caller_span, "{:?}", roots[0]);
    assert_eq!((roots[0].service.as_str(), roots[0].kind), (places.edge, SERVER), "{:?}", roots[0]);
    // Each hop's server span is the child of the client span that made the call.
    for (service, name) in [(places.catalog, "catalog.reserve"), ("payments", "payments.charge")] {
        let server = trace.iter().find(|span| span.service == service && span.kind == SERVER && span.name == name).unwrap();
        let client = trace.iter().find(|span| span.span_id == server.parent_id).unwrap();
        assert_eq!((client.service.as_str(), client.kind, client.name.as_str()), ("orders", CLIENT, name), "{server:?} under {client:?}");
    }

    // The JSON log lines of the orders service name the same trace, and the span id of its
    // placement, so a log search finds the trace and the trace finds the lines.
    let log = app.process_log("orders");
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["trace_id"] == trace_id.as_str())
        .collect();
    assert!(!lines.is_empty(), "no JSON line of the orders service names the trace:\n{log}");
    let placement = trace.iter().find(|span| span.service == "orders" && span.kind == SERVER).unwrap();
    assert!(lines.iter().any(|line| line["span_id"] == placement.span_id.as_str()), "no line names the placement's span {placement:?}");
    let orders_spans: Vec<&str> = trace.iter().filter(|span| span.service == "orders").map(|span| span.span_id.as_str()).collect();
    for line in &lines {
        assert!(line["span_id"].as_str().is_some_and(|id| orders_spans.contains(&id)), "{line} names a span orders did not export");
        assert!(line["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{line}");
        assert!(line["timestamp"].is_string() && line["level"].is_string() && line["message"].is_string(), "{line}");
    }
}

async fn product(app: &TestApp, admin: &str) -> String {
    let body = json!({"sku": "TRACE-1", "name": "Traced lamp", "price": {"amount": 1000, "currency": "EUR"}, "stock_on_hand": 5});
    let response = app.post_json("/api/catalog/products", &body, Some(admin)).await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

/// Every module's service and the gateway, every call and event over NATS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_every_process_over_nats() {
    one_trace_spans_every_process(Layout::ServicesOverNats, Places { edge: "gateway", catalog: "catalog" }).await;
}

/// Orders and payments apart from the monolith over HTTP, events on JetStream: the monolith is
/// the edge and hosts the catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_every_process_over_http() {
    one_trace_spans_every_process(Layout::OrdersAndPaymentsApart, Places { edge: "monolith", catalog: "monolith" }).await;
}

//! The OpenAPI 3.1 document (`/openapi.json`, `cleave openapi`) and the API reference page
//! (`/docs`, Swagger UI with its assets compiled into the binary: it works offline).

use crate::rest::versions;
use serde_json::{Value, json};
use std::sync::LazyLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "cleave", description = "A commerce backend: users, catalog, orders, payments, notifications. Errors are RFC 9457 problem details (application/problem+json). Every REST route is listed at its canonical path, `/api/v1/...`; `/api/...` is an alias of the newest version of each route. A deprecated route is marked here and answers with `Deprecation` and `Sunset` headers."),
    paths(
        crate::rest::me::overview,
        crate::rest::admin::list_dead_letters,
        crate::rest::admin::get_dead_letter,
        crate::rest::admin::replay_dead_letter,
        crate::rest::admin::discard_dead_letter,
        crate::rest::admin::status,
        crate::health::live,
        crate::health::ready,
        crate::health::metrics,
    ),
    components(schemas(shared_kernel::ProblemDetails, shared_kernel::FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "events", description = "Dead letters of event consumers (admin)"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// Each module's paths and tags (in the order of the module list), then the edge's own.
fn merged() -> utoipa::openapi::OpenApi {
    let mut edge = ApiDoc::openapi();
    let edge_tags = edge.tags.take().unwrap_or_default();
    for module in crate::modules::openapi() {
        edge.merge(module);
    }
    edge.tags.get_or_insert_with(Vec::new).extend(edge_tags);
    edge
}

/// The document as served: what the handlers declare, plus the answers the edge gives on any
/// route (`standard_responses`) and the deprecations in force. Built once.
pub fn document() -> &'static Value {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
        let mut document = serde_json::to_value(merged()).unwrap_or_else(|_| json!({}));
        standard_responses(&mut document);
        mark_deprecated(&mut document, versions::DEPRECATED);
        document
    });
    &DOCUMENT
}

/// The document as pretty JSON (`cleave openapi`, `docs/openapi.json`).
pub fn document_json() -> String {
    let mut text = serde_json::to_string_pretty(document()).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

/// `/docs` (the reference page) and `/openapi.json`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::from(utoipa_swagger_ui::SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", document().clone()))
        .with_state(())
}

/// The HTTP methods the document's operations use, as OpenAPI spells them.
pub(crate) const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Adds, to every operation that lacks them, the answers that come from the edge or the
/// extractors rather than from the handler, each a problem+json body:
/// - every REST route (`/api/...`): 401 (a bearer token that does not verify is refused even on
///   public routes), 429 (the edge's rate limit) and 503 (a module it needs is unreachable, or
///   the request ran past `server.request_timeout_secs`);
/// - routes with a bearer requirement: 403;
/// - routes with a body: 400 (not JSON, or no JSON content type), 413 (over
///   `server.body_limit_bytes`) and 422 (the wrong shape, or a value out of bounds);
/// - routes with query parameters: 400 (unreadable) and 422; with path parameters: 404;
/// - the JWKS document: 503 (the users module is unreachable).
fn standard_responses(document: &mut Value) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            let Some(operation) = item.get_mut(method).and_then(Value::as_object_mut) else { continue };
            let has_body = operation.contains_key("requestBody");
            let secured = operation.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
            let parameters_in =
                |place: &str| operation.get("parameters").and_then(Value::as_array).is_some_and(|ps| ps.iter().any(|p| p["in"] == place));
            let (in_query, in_path) = (parameters_in("query"), parameters_in("path"));
            let mut add = Vec::new();
            if path.starts_with("/api/") {
                add.extend([
                    (401, "The bearer token is missing where required, malformed, expired or revoked"),
                    (429, "Too many requests from this client: wait for `Retry-After` seconds"),
                    (503, "A module this route needs is unreachable, or the request took too long: retry after `Retry-After` seconds"),
                ]);
                if secured {
                    add.push((403, "The caller may not do this"));
                }
                if has_body {
                    add.extend([
                        (400, "The body is not JSON, or the Content-Type is not application/json"),
                        (413, "The body is larger than the server accepts"),
                        (422, "The body is JSON of the wrong shape, or a value is out of bounds; `errors` names each field"),
                    ]);
                }
                if in_query {
                    add.extend([(400, "The query string cannot be read"), (422, "A query parameter is invalid; `errors` names it")]);
                }
                if in_path {
                    add.push((404, "No such resource, or not the caller's to see"));
                }
            } else if path.starts_with("/.well-known/") {
                add.push((503, "The users module is unreachable: retry after `Retry-After` seconds"));
            }
            let responses = operation.entry("responses").or_insert_with(|| json!({}));
            let Some(responses) = responses.as_object_mut() else { continue };
            for (status, description) in add {
                responses.entry(status.to_string()).or_insert_with(|| problem_response(description));
            }
        }
    }
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { shared_kernel::error::PROBLEM_JSON: { "schema": { "$ref": "#/components/schemas/ProblemDetails" } } }
    })
}

/// Marks each deprecated route's operations, with a line saying when it goes and what replaces it.
fn mark_deprecated(document: &mut Value, deprecated: &[versions::Deprecated]) {
    for entry in deprecated {
        let Some(item) = document.pointer_mut(&format!("/paths/{}", entry.canonical().replace('~', "~0").replace('/', "~1"))) else {
            continue;
        };
        for method in METHODS {
            let Some(operation) = item.get_mut(method).and_then(Value::as_object_mut) else { continue };
            operation.insert("deprecated".to_owned(), Value::Bool(true));
            // The contract check allows removing the route once this date has passed.
            operation.insert("x-sunset".to_owned(), Value::String(entry.sunset.to_owned()));
            let description = operation.get("description").and_then(Value::as_str).unwrap_or_default();
            let description = if description.is_empty() { entry.notice() } else { format!("{}\n\n{description}", entry.notice()) };
            operation.insert("description".to_owned(), Value::String(description));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_lists_every_route_at_its_canonical_path() {
        let document: Value = serde_json::from_str(&document_json()).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
        let listed: std::collections::BTreeSet<String> =
            document["paths"].as_object().unwrap().keys().filter(|p| p.starts_with("/api/")).cloned().collect();
        let registered: std::collections::BTreeSet<String> =
            crate::modules::routes().registered().into_iter().map(|(version, path)| versions::canonical(version, path)).collect();
        assert_eq!(listed, registered, "the document and the router disagree");
        for path in ["/.well-known/jwks.json", "/health/ready", "/health/live", "/metrics"] {
            assert!(document["paths"].get(path).is_some(), "{path} is missing");
        }
    }

    #[test]
    fn every_operation_declares_the_answers_the_edge_can_give() {
        let document = document();
        for (route, operation) in crate::contracts::openapi::operations(document) {
            let (method, path) = route.split_once(' ').unwrap();
            let responses = operation["responses"].as_object().unwrap();
            let declares = |status: u16| responses.contains_key(&status.to_string());
            if path.starts_with("/api/") {
                for status in [401, 429, 503] {
                    assert!(declares(status), "{method} {path} does not declare {status}");
                }
                if operation.get("requestBody").is_some() {
                    for status in [400, 413, 422] {
                        assert!(declares(status), "{method} {path} does not declare {status}");
                    }
                }
                if path.contains('{') {
                    assert!(declares(404), "{method} {path} does not declare 404");
                }
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let content = &response["content"];
                    assert!(
                        content.get(shared_kernel::error::PROBLEM_JSON).is_some() || path == "/health/ready",
                        "{method} {path} {status} is not problem+json: {response}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_deprecated_route_is_marked_with_its_sunset_and_successor() {
        let mut document = document().clone();
        let entry = versions::Deprecated {
            version: 1,
            path: "/orders/{id}",
            since: "2026-12-01",
            sunset: "2027-06-01",
            successor: Some("/api/v2/orders/{id}"),
        };
        mark_deprecated(&mut document, &[entry]);
        let operation = &document["paths"]["/api/v1/orders/{id}"]["get"];
        assert_eq!(operation["deprecated"], true);
        assert_eq!(operation["x-sunset"], "2027-06-01");
        let description = operation["description"].as_str().unwrap();
        assert!(description.contains("2027-06-01") && description.contains("/api/v2/orders/{id}"), "{description}");
        assert!(document["paths"]["/api/v1/orders"]["get"].get("deprecated").is_none());
    }
}

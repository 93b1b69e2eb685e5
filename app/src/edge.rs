//! The edge: what every request passes through, in the monolith and in the gateway alike.
//! Request id and trace context, one log line and RED metrics per request, panics and
//! timeouts as problem+json, CORS, compression, body limits, and problem+json for every error
//! the framework itself produces. No business logic.

use crate::config::ServerSettings;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Router, extract::DefaultBodyLimit};
use shared_kernel::wire::{self, CallerResolver, REQUEST_ID_HEADER, TRACEPARENT_HEADER};
use shared_kernel::{ApiError, Caller, Identifier, RequestContext, TraceContext};
use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, Any as AnyOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

/// Wraps `router` in the edge stack.
pub fn layer(router: Router, settings: &ServerSettings) -> Router {
    let timeout = Duration::from_secs(settings.request_timeout_secs);
    router
        .layer(middleware::from_fn(move |request: Request, next: Next| enforce_timeout(timeout, request, next)))
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .layer(RequestBodyLimitLayer::new(settings.body_limit_bytes))
        .layer(middleware::from_fn(problem_for_every_error))
        .layer(CompressionLayer::new())
        .layer(cors(&settings.cors_allowed_origins))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(request_context))
}

fn cors(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static(REQUEST_ID_HEADER),
            HeaderName::from_static(TRACEPARENT_HEADER),
        ])
        .expose_headers([HeaderName::from_static(REQUEST_ID_HEADER), axum::http::header::RETRY_AFTER])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|origin| origin == "*") {
        return base.allow_origin(AnyOrigin);
    }
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()).collect();
    base.allow_origin(AllowOrigin::list(allowed))
}

/// A request id we accept from a client: short and printable, so it is safe in logs.
fn acceptable_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| text.to_owned())
}

/// Gives the request its id and trace, makes them current for everything it calls, writes the
/// access log line and the RED metrics, and returns the id on the response.
async fn request_context(mut request: Request, next: Next) -> Response {
    use tracing::Instrument as _;
    let started = Instant::now();
    let request_id =
        request.headers().get(REQUEST_ID_HEADER).and_then(acceptable_request_id).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let incoming = request.headers().get(TRACEPARENT_HEADER).and_then(|value| value.to_str().ok()).and_then(TraceContext::parse);
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned());
    // Field values are only evaluated when the span is enabled (never at the default `warn`
    // filter of a busy production process). The `otel.*` and semantic convention fields name the
    // span when traces are exported.
    let route_name = route.as_deref().unwrap_or("unmatched");
    let span = tracing::info_span!(
        "request",
        otel.name = %SpanName { method: &method, route: route_name },
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = route_name,
        http.response.status_code = tracing::field::Empty,
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        method = %method,
        path = %request.uri().path(),
    );
    let trace = shared_kernel::trace_context::start_trace(&span, incoming);
    if !span.is_disabled() {
        span.record("trace_id", trace.trace_id().as_str());
    }
    let id_header = HeaderValue::from_str(&request_id).ok();
    let context = RequestContext { request_id, trace };
    request.extensions_mut().insert(context.clone());
    // Everything below runs in the request's context, its access log line included.
    let handled = async move {
        let mut response = next.run(request).instrument(span.clone()).await;
        let status = response.status();
        let elapsed = started.elapsed();
        let route = route
            .or_else(|| response.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()))
            .unwrap_or_else(|| "unmatched".to_owned());
        // Bounded label values: an arbitrary extension method must not mint a new series.
        let method_label: &'static str = match method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::HEAD => "HEAD",
            Method::OPTIONS => "OPTIONS",
            _ => "OTHER",
        };
        let labels = [
            metrics::Label::from_static_parts("method", method_label),
            metrics::Label::new("route", route),
            metrics::Label::new("status", status.as_u16().to_string()),
        ];
        metrics::counter!("http_requests_total", labels.iter()).increment(1);
        metrics::histogram!("http_request_duration_seconds", labels[..2].iter()).record(elapsed.as_secs_f64());
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
        span.in_scope(|| {
            if status.is_server_error() {
                tracing::error!(status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "request failed");
            } else {
                tracing::info!(status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "request");
            }
        });
        if let Some(value) = id_header {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        response
    };
    wire::with_request_context(context, handled).await
}

/// A request span's name: `GET /api/catalog/products/{id}`; a contract call over the internal
/// wire is named as its client names it, `catalog.reserve`.
struct SpanName<'a> {
    method: &'a Method,
    route: &'a str,
}

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.route.strip_prefix("/rpc/").and_then(|operation| operation.split_once('/')) {
            Some((module, operation)) => write!(f, "{module}.{operation}"),
            None => write!(f, "{} {}", self.method, self.route),
        }
    }
}

async fn enforce_timeout(timeout: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_secs = timeout.as_secs(), "request timed out");
            ApiError::unavailable("the request took too long", 1).into_response()
        }
    }
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message =
        panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("unknown panic");
    tracing::error!(panic = message, "a handler panicked");
    ApiError::Internal.into_response()
}

/// Rewrites any error response that is not problem+json (axum's own 404/405/413/415, the body
/// limit, a proxy page) into problem+json of the same status, keeping headers such as `Allow`.
async fn problem_for_every_error(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with(shared_kernel::error::PROBLEM_JSON) || value.starts_with("application/json"));
    // A JSON error body was written on purpose (problem details, a readiness report): keep it.
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let mut problem = ApiError::from_status(status.as_u16()).to_problem();
    problem.status = status.as_u16();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        "/problems/method-not-allowed".clone_into(&mut problem.problem_type);
        "Method not allowed".clone_into(&mut problem.title);
    }
    problem.request_id = wire::current_request_context().map(|c| c.request_id);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    parts.headers.remove(CONTENT_ENCODING);
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static(shared_kernel::error::PROBLEM_JSON));
    parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    Response::from_parts(parts, Body::from(body))
}

/// JSON request bodies whose rejections are problem+json: 400 malformed, 413 too large, 415
/// (as 400) wrong content type, 422 well-formed but not the expected shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::JsonDataError(error)) => {
                let (field, message) = data_error_field(&error.body_text());
                Err(ApiError::invalid_field(field, shared_kernel::error::redact_values(&message)))
            }
            Err(JsonRejection::JsonSyntaxError(_)) => Err(ApiError::bad_request("the body is not valid JSON")),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::bad_request("expected Content-Type: application/json")),
            Err(JsonRejection::BytesRejection(error)) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge { detail: "the request body is larger than allowed".to_owned() })
            }
            Err(other) => Err(ApiError::bad_request(other.body_text())),
        }
    }
}

/// The field a body's data error is about (`payment.card_number`), and its message: axum
/// reports `Failed to deserialize …: <path>: <message>` when serde knows the path.
fn data_error_field(text: &str) -> (String, String) {
    let detail = text.split_once("target type: ").map_or(text, |(_, rest)| rest);
    match detail.split_once(": ") {
        Some((path, message)) if !path.is_empty() && !path.contains(' ') => (path.to_owned(), message.to_owned()),
        _ => ("body".to_owned(), detail.to_owned()),
    }
}

/// What a call on the internal listener must prove before it reaches a module.
#[derive(Clone)]
pub struct InternalGuard {
    /// With trusted processes configured: a valid service assertion of one of them, bound to
    /// the operation (`/rpc/<module>/<operation>`) and the body.
    pub gate: Option<std::sync::Arc<shared_kernel::identity::WireGate>>,
    /// Else, with a service token configured: that token.
    pub service_token: Option<shared_kernel::Secret<String>>,
    /// The largest body read to check an assertion.
    pub body_limit: usize,
}

/// On the internal listener: every call proves the calling process (its assertion, or the
/// service token), before anything else reads it.
pub async fn guard_internal_wire(guard: InternalGuard, request: Request, next: Next) -> Response {
    // Tells a calling service that a refusal is about *its* credentials, not its caller's.
    let refused = |error: ApiError, what: &'static str| {
        let mut response = error.into_response();
        response.headers_mut().insert(wire::WIRE_AUTH_REFUSED_HEADER, HeaderValue::from_static(what));
        response
    };
    if let Some(gate) = &guard.gate {
        let Some(operation) = request.uri().path().strip_prefix("/rpc/").map(|rest| rest.replacen('/', ".", 1)) else {
            return next.run(request).await;
        };
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, guard.body_limit).await {
            Ok(bytes) => bytes,
            Err(_) => return ApiError::PayloadTooLarge { detail: "the request body is larger than allowed".to_owned() }.into_response(),
        };
        let deadline = match gate.admit(&parts.headers, &operation, &bytes) {
            Ok(verified) => verified.deadline,
            // A genuine call that waited past its caller's deadline: not a credential problem.
            Err(error @ ApiError::Unavailable { .. }) => return error.into_response(),
            Err(error) => return refused(error, "service-assertion"),
        };
        // The calls this one makes give up by its caller's deadline.
        let work = next.run(Request::from_parts(parts, axum::body::Body::from(bytes)));
        return shared_kernel::resilience::within_deadline(deadline, work).await;
    }
    if let Some(expected) = &guard.service_token {
        let presented = request.headers().get(wire::SERVICE_TOKEN_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
        if expected.expose().is_empty() || !wire::constant_time_eq(presented, expected.expose().as_bytes()) {
            return refused(ApiError::unauthenticated("the internal wire requires the service token"), "service-token");
        }
    }
    next.run(request).await
}

/// An id a client sent (in a path, or as a GraphQL argument). Text that is not a UUID names
/// nothing: the module is asked for [`Identifier::UNKNOWN`] instead, so its authorization still
/// answers first (401, 403, exactly as for a real id), and its 404 then says that the text was
/// not an id at all.
#[derive(Debug, Clone)]
pub struct ClientId<T> {
    id: T,
    malformed: bool,
}

impl<T: Identifier> ClientId<T> {
    pub fn new(text: &str) -> Self {
        match T::parse_text(text) {
            Ok(id) => Self { id, malformed: false },
            Err(_) => Self { id: T::UNKNOWN, malformed: true },
        }
    }

    /// The id to ask the module for.
    pub fn get(&self) -> T {
        self.id
    }

    /// The module's answer, with its 404 for a malformed id saying so.
    pub fn explain<R>(&self, result: Result<R, ApiError>) -> Result<R, ApiError> {
        match result {
            Err(ApiError::NotFound { .. }) if self.malformed => Err(ApiError::not_found("the id is not a UUID, so it names nothing")),
            result => result,
        }
    }
}

/// The TCP peer, when the server was started with connection info (absent in `oneshot` tests).
pub struct PeerAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|info| info.0)))
    }
}

/// The verified caller of a public request.
pub struct CallerExt(pub Caller);

/// The caller as a middleware already resolved it (the rate limiter), so the handler does not
/// verify the token a second time.
#[derive(Clone)]
pub struct ResolvedCaller(pub Result<Caller, ApiError>);

/// What the edge needs to resolve callers; part of every router's state.
pub trait HasCallerResolver {
    fn caller_resolver(&self) -> &Arc<dyn CallerResolver>;
}

impl<S> FromRequestParts<S> for CallerExt
where
    S: HasCallerResolver + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ResolvedCaller(resolved)) = parts.extensions.get::<ResolvedCaller>() {
            return resolved.clone().map(CallerExt);
        }
        state.caller_resolver().resolve(&parts.headers).await.map(CallerExt)
    }
}

/// The client's address: the socket peer, or, when trusted, the right-most `X-Forwarded-For`
/// entry: the one our own proxy appended (the entries left of it are whatever the client sent).
pub fn client_addr(headers: &HeaderMap, peer: Option<SocketAddr>, trust_forwarded_for: bool) -> Option<String> {
    if trust_forwarded_for
        && let Some(last) = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).last()
    {
        let last = last.trim();
        if last.parse::<std::net::IpAddr>().is_ok() {
            return Some(last.to_owned());
        }
    }
    peer.map(|addr| addr.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_bounded_and_printable() {
        assert_eq!(acceptable_request_id(&HeaderValue::from_static("abc-123")).as_deref(), Some("abc-123"));
        assert!(acceptable_request_id(&HeaderValue::from_static("has space")).is_none());
        assert!(acceptable_request_id(&HeaderValue::from_str(&"x".repeat(129)).unwrap()).is_none());
    }

    #[test]
    fn data_errors_name_the_field_when_serde_knows_it() {
        let (field, message) = data_error_field(
            "Failed to deserialize the JSON body into the target type: payment.card_number: is not a valid card number at line 1 column 80",
        );
        assert_eq!((field.as_str(), message.as_str()), ("payment.card_number", "is not a valid card number at line 1 column 80"));
        let (field, _) =
            data_error_field("Failed to deserialize the JSON body into the target type: missing field `items` at line 1 column 2");
        assert_eq!(field, "body");
    }

    #[test]
    fn forwarded_for_is_used_only_when_trusted() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9, 10.0.0.1"));
        let peer = Some(SocketAddr::from(([127, 0, 0, 1], 5000)));
        assert_eq!(client_addr(&headers, peer, false).as_deref(), Some("127.0.0.1"));
        assert_eq!(client_addr(&headers, peer, true).as_deref(), Some("10.0.0.1"), "the hop our proxy appended, not the client's claim");
    }
}

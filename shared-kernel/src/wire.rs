//! Both ends of the HTTP wire shared by every contract: problem+json responses, the request
//! context that travels with a call, caller resolution on the server, and the RPC client.

use crate::discovery::{DiscoveryPolicy, Endpoints, SystemResolver};
use crate::error::PROBLEM_JSON;
use crate::resilience::{Failure, Operation, Upstream};
use crate::{ApiError, Caller, Secret};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The request id header, on requests and responses.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The W3C trace context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// Names the calling service on a service-to-service call.
pub const SERVICE_NAME_HEADER: &str = "x-cleave-service";
/// Carries the shared service token on a service-to-service call.
pub const SERVICE_TOKEN_HEADER: &str = "x-cleave-service-token";
/// Set on a 401 from an internal listener that refused the *service token* (a deployment
/// error), so the caller does not mistake it for its user's credentials being wrong.
pub const WIRE_AUTH_REFUSED_HEADER: &str = "x-cleave-wire-auth";

pub use crate::trace_context::{current_request_context, with_request_context};

/// The one codec of every wire (HTTP and NATS alike): arguments as a JSON object named after the
/// operation's parameters, results as JSON, errors as RFC 9457 problem details.
pub mod codec {
    use crate::{ApiError, ProblemDetails, current_request_context};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// A result or arguments as sent.
    ///
    /// # Errors
    /// A value serde cannot encode (a bug): logged, 500.
    pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
        serde_json::to_vec(value).map_err(|error| {
            tracing::error!(%error, "cannot encode a wire value");
            ApiError::Internal
        })
    }

    /// An operation's arguments as received.
    ///
    /// # Errors
    /// 400 naming what is malformed, with the values themselves redacted.
    pub fn decode_args<A: DeserializeOwned>(bytes: &[u8]) -> Result<A, ApiError> {
        serde_json::from_slice(bytes)
            .map_err(|error| ApiError::bad_request(format!("malformed arguments: {}", crate::error::redact_values(&error.to_string()))))
    }

    /// A result as received from `module`.
    ///
    /// # Errors
    /// An unreadable result: logged, 500.
    pub fn decode_result<R: DeserializeOwned>(bytes: &[u8], module: &str) -> Result<R, ApiError> {
        serde_json::from_slice(bytes).map_err(|error| {
            tracing::error!(module, %error, "a remote module answered an unreadable result");
            ApiError::Internal
        })
    }

    /// The problem details of `error` as sent, with the current request id.
    pub fn problem(error: &ApiError) -> ProblemDetails {
        let mut problem = error.to_problem();
        problem.request_id = current_request_context().map(|context| context.request_id);
        problem
    }

    /// The error a problem body stands for; `status` decides when the body is not a problem.
    pub fn decode_problem(bytes: &[u8], status: u16) -> ApiError {
        match serde_json::from_slice::<ProblemDetails>(bytes) {
            Ok(problem) => ApiError::from_problem(problem),
            Err(_) => ApiError::from_status(status),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        problem_response(&self)
    }
}

/// The problem+json response for an error, with `Retry-After` where it applies and the current
/// request id in the body.
pub fn problem_response(error: &ApiError) -> Response {
    let problem = codec::problem(error);
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{\"status\":500}".to_vec());
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if let Some(seconds) = problem.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if matches!(error, ApiError::Unauthenticated { .. }) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Turns the headers of an incoming call into a verified [`Caller`]. Implemented once per
/// process (token verification against the users module's keys, service-token check) and used
/// by the edge and by every contract router.
#[async_trait::async_trait]
pub trait CallerResolver: Send + Sync + 'static {
    /// # Errors
    /// [`ApiError::Unauthenticated`] when credentials are present but do not verify. No
    /// credentials is not an error: it is [`Caller::Anonymous`].
    async fn resolve(&self, headers: &HeaderMap) -> Result<Caller, ApiError>;
}

/// One contract operation served at `POST`: resolves the caller, reads the JSON arguments,
/// calls `operation`, and answers JSON or problem+json.
pub fn rpc_operation<A, R, F, Fut>(resolver: Arc<dyn CallerResolver>, operation: F) -> MethodRouter
where
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(Caller, A) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<R, ApiError>> + Send + 'static,
{
    post(move |headers: HeaderMap, body: Bytes| {
        let resolver = resolver.clone();
        let operation = operation.clone();
        async move {
            let caller = match resolver.resolve(&headers).await {
                Ok(caller) => caller,
                Err(error) => return error.into_response(),
            };
            let args: A = match codec::decode_args(&body) {
                Ok(args) => args,
                Err(error) => return error.into_response(),
            };
            match operation(caller, args).await {
                Ok(result) => axum::Json(result).into_response(),
                Err(error) => error.into_response(),
            }
        }
    })
}

/// The headers every outgoing contract call carries, on either wire: the request id and a child
/// of the current trace, the service token (which authenticates this process to the remote on
/// every call), and the caller's own identity beside it (the forwarded bearer token, or the
/// service name).
pub fn outgoing_headers(caller: &Caller, service_token: Option<&Secret<String>>) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(4);
    if let Some(context) = current_request_context() {
        headers.push((REQUEST_ID_HEADER, context.request_id));
    }
    if let Some(trace) = crate::trace_context::outgoing_trace() {
        headers.push((TRACEPARENT_HEADER, trace.header_value()));
    }
    if let Some(token) = service_token {
        headers.push((SERVICE_TOKEN_HEADER, token.expose().clone()));
    }
    match caller {
        Caller::Anonymous => {}
        Caller::User(user) => headers.push(("authorization", format!("Bearer {}", user.token.expose()))),
        Caller::Service(service) => headers.push((SERVICE_NAME_HEADER, service.as_str().to_owned())),
    }
    headers
}

/// How a client reaches a remote module.
#[derive(Clone)]
pub struct RpcClientConfig {
    /// The service's base URL, e.g. `http://users:8080`, or several separated by commas; each
    /// host name stands for every address it resolves to.
    pub base_url: String,
    /// How the instances behind `base_url` are found and ejected.
    pub discovery: DiscoveryPolicy,
    /// The timeouts, retries, circuit and bulkhead of every call to this module.
    pub upstream: Arc<Upstream>,
    /// This process's name, sent as the `User-Agent` of every call (it shows in the remote's
    /// access log).
    pub service_name: String,
    /// The shared service token, sent when the caller is a service.
    pub service_token: Option<Secret<String>>,
    /// This process's identity: every call carries an assertion signed with it.
    pub identity: Option<Arc<crate::identity::ServiceIdentity>>,
    /// TLS for `https://` URLs: the deployment's CA and this process's client certificate
    /// ([`crate::tls::client_config`]). Unset: the system's roots, no client certificate.
    pub tls: Option<rustls::ClientConfig>,
}

impl std::fmt::Debug for RpcClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClientConfig").field("base_url", &self.base_url).field("upstream", &self.upstream).finish()
    }
}

/// The client half of the wire: posts a contract operation's arguments and reads back its
/// result or its `ApiError`. The caller's token, the request id and the trace travel as headers.
/// Every call goes through the module's [`Upstream`] guard.
#[derive(Clone, Debug)]
pub struct RpcClient {
    http: reqwest::Client,
    config: Arc<RpcClientConfig>,
    endpoints: Arc<Endpoints>,
}

impl RpcClient {
    /// # Errors
    /// When the HTTP client cannot be built (a broken TLS configuration or system), or a URL
    /// cannot be used.
    pub fn new(config: RpcClientConfig) -> Result<Self, ApiError> {
        let timeout = config.upstream.default_timeout();
        crate::tls::install_default_provider();
        // A connect that stalls (a pod's address gone silent) counts as refused well within
        // the call's timeout, so the call goes to another instance.
        let mut builder = reqwest::Client::builder()
            .connect_timeout((timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(2)))
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(tls) = config.tls.clone() {
            builder = builder.tls_backend_preconfigured(tls);
        }
        let http = builder.build().map_err(|error| {
            tracing::error!(%error, "cannot build the HTTP client");
            ApiError::Internal
        })?;
        let endpoints = Endpoints::new(&config.base_url, config.discovery, Box::new(SystemResolver)).map_err(|error| {
            tracing::error!(%error, "a module's URL cannot be used");
            ApiError::Internal
        })?;
        Ok(Self { http, config: Arc::new(config), endpoints: Arc::new(endpoints) })
    }

    /// The configured base URL(s).
    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    /// The guard of every call this client makes.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.config.upstream
    }

    /// The instances it knows now (every address its URLs resolve to, ejected ones included).
    pub async fn instances(&self) -> usize {
        self.endpoints.count().await
    }

    /// Calls `operation` of the contract served as `name` (`/rpc/<name>/<operation>`).
    ///
    /// # Errors
    /// The remote's `ApiError` as it sent it; [`ApiError::Unavailable`] when it cannot be
    /// reached, times out, or its circuit is open; [`ApiError::Internal`] when it answers
    /// something unreadable.
    pub async fn call<A: Serialize + Sync, R: DeserializeOwned>(
        &self,
        caller: &Caller,
        name: &str,
        operation: Operation,
        args: &A,
    ) -> Result<R, ApiError> {
        use tracing::Instrument as _;
        let upstream = self.config.upstream.clone();
        let span = crate::trace_context::client_span(upstream.module(), operation.name, "http");
        async move {
            let body = Bytes::from(codec::encode(args)?);
            let headers: Arc<[(&'static str, String)]> = outgoing_headers(caller, self.config.service_token.as_ref()).into();
            let path: Arc<str> = format!("/rpc/{name}/{}", operation.name).into();
            let signed_as: Arc<str> = format!("{name}.{}", operation.name).into();
            let answer = upstream
                .call(operation, |timeout| {
                    // No later than the deadline of the call this one serves, if any.
                    let Some((timeout, deadline)) = crate::resilience::attempt_bounds(timeout) else {
                        return Box::pin(std::future::ready(Err(crate::resilience::past_callers_deadline())));
                    };
                    // A fresh assertion per attempt: the callee refuses one it has seen before.
                    let mut headers = headers.to_vec();
                    if let Some(identity) = &self.config.identity {
                        headers.push((crate::identity::ASSERTION_HEADER, identity.assert(&signed_as, &body, chrono::Utc::now(), deadline)));
                    }
                    Box::pin(self.clone().send(path.clone(), body.clone(), headers.into(), timeout))
                })
                .await?;
            codec::decode_result(&answer, upstream.module())
        }
        .instrument(span)
        .await
    }

    /// One attempt: to one instance, or to the next when one refuses the connection (it never
    /// saw the call, so another may take it, for any operation). Any other failure is
    /// ambiguous (the call may have run): no second try here.
    async fn send(self, path: Arc<str>, body: Bytes, headers: Arc<[(&'static str, String)]>, timeout: Duration) -> Result<Bytes, Failure> {
        // The client learns which module is down, never an internal address or path.
        let module = self.config.upstream.module();
        let attempts = self.endpoints.count().await;
        let mut sent = false;
        for attempt in 1..=attempts {
            let base = self.endpoints.pick().await;
            let url = format!("{base}{path}");
            let mut request = self.http.post(&url).timeout(timeout).header(header::CONTENT_TYPE, "application/json").body(body.clone());
            for (name, value) in headers.iter() {
                request = request.header(*name, value.as_str());
            }
            match request.send().await {
                Ok(response) => return Self::read(response, &url, module).await,
                Err(error) => {
                    self.endpoints.eject(&base);
                    tracing::warn!(%url, error = %error, attempt, "remote call failed");
                    if !error.is_connect() {
                        sent = true;
                        break;
                    }
                }
            }
        }
        let detail = format!("the {module} module is unreachable");
        // Every instance refused the connection: the call is known not to have run.
        Err(if sent { Failure::Lost(ApiError::unavailable(detail, 1)) } else { Failure::NotSent(ApiError::not_sent(detail, 1)) })
    }

    async fn read(response: reqwest::Response, url: &str, module: &str) -> Result<Bytes, Failure> {
        let status = response.status();
        if response.headers().contains_key(WIRE_AUTH_REFUSED_HEADER) {
            tracing::error!(
                %url,
                "the remote refused this process's credentials (its service assertion or service token): check auth.identity_seed_file and the remote's auth.trusted"
            );
            return Err(Failure::Answered(ApiError::Internal));
        }
        let body = response.bytes().await.map_err(|error| {
            tracing::warn!(%url, error = %error, "remote call broke off");
            Failure::Lost(ApiError::unavailable(format!("the {module} module did not answer"), 1))
        })?;
        if status.is_success() {
            return Ok(body);
        }
        Err(Failure::Answered(codec::decode_problem(&body, status.as_u16())))
    }
}

/// The standard resolver: `Authorization: Bearer <access token>` verified against the users
/// module's keys, or a service call carrying the shared service token; nothing else.
#[cfg(feature = "auth")]
pub struct TokenCallerResolver {
    pub verifier: crate::auth::TokenVerifier,
    pub service_token: Option<Secret<String>>,
    /// Accept `x-cleave-service` callers. Only on the internal listener: the public edge never
    /// lets a request speak as a service.
    pub accept_service_callers: bool,
    /// The service names believed on the wire: the modules of the composition's list and the
    /// edge. Any other name is refused (401).
    pub services: Vec<crate::ServiceName>,
    /// The transport admitted every call with a service assertion first
    /// ([`crate::identity::WireGate`]), which also checked the service name against the
    /// process: no service token is asked for.
    pub services_verified_by_wire: bool,
}

#[cfg(feature = "auth")]
#[async_trait::async_trait]
impl CallerResolver for TokenCallerResolver {
    async fn resolve(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
            let text = value.to_str().map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
            let Some(token) = text.strip_prefix("Bearer ").or_else(|| text.strip_prefix("bearer ")) else {
                return Err(ApiError::unauthenticated("use Authorization: Bearer <access token>"));
            };
            return self.verifier.caller_for(token.trim()).await;
        }
        if let Some(name) = headers.get(SERVICE_NAME_HEADER).filter(|_| self.accept_service_callers) {
            if !self.services_verified_by_wire {
                let presented = headers.get(SERVICE_TOKEN_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
                let expected = self.service_token.as_ref().map(|token| token.expose().as_bytes()).unwrap_or_default();
                if expected.is_empty() || !constant_time_eq(presented, expected) {
                    return Err(ApiError::unauthenticated("the service token is missing or wrong"));
                }
            }
            let service = name.to_str().ok().and_then(|name| crate::ServiceName::parse_among(name, &self.services));
            return service.map(Caller::Service).ok_or_else(|| ApiError::unauthenticated("unknown service name"));
        }
        Ok(Caller::Anonymous)
    }
}

/// Compares two secrets without an early exit, so timing does not tell how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}

//! Both ends of the NATS wire shared by every contract: a module served as a service of the
//! standard NATS micro-service protocol (it answers `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`;
//! instances of one module share its queue group), and a client calling it by request/reply.
//!
//! Same codec as the HTTP wire ([`crate::wire::codec`]): JSON arguments and results, problem
//! details for errors. The same headers travel (caller identity, service token, request id,
//! trace), and the server resolves the caller with the same [`CallerResolver`].
//!
//! Subjects: `<prefix>.rpc.<module>.<operation>`, the prefix `cleave` unless configured (two
//! deployments sharing one NATS account keep apart by prefix). An error answers with the
//! protocol's `Nats-Service-Error` / `Nats-Service-Error-Code` headers (status text and HTTP
//! status) and the whole problem in [`PROBLEM_HEADER`].
//!
//! One adapter in one file (over 400 lines on purpose): the serving side, the calling side and
//! the codec glue of the NATS wire change together, and splitting them would scatter one
//! protocol across files.

use crate::resilience::{Failure, Upstream};
use crate::wire::{
    CallerResolver, REQUEST_ID_HEADER, SERVICE_NAME_HEADER, SERVICE_TOKEN_HEADER, TRACEPARENT_HEADER, WIRE_AUTH_REFUSED_HEADER, codec,
    constant_time_eq, outgoing_headers,
};
use crate::{ApiError, Caller, ProblemDetails, RequestContext, Secret, TraceContext, current_request_context, with_request_context};
use async_nats::service::ServiceExt as _;
use bytes::Bytes;
use futures::StreamExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

/// Carries an error's whole problem details (JSON) on a response.
pub const PROBLEM_HEADER: &str = "Cleave-Problem";
/// The micro-service protocol's error headers.
const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";
/// The headers a server reads; every other one is ignored.
const CALL_HEADERS: [&str; 6] =
    ["authorization", SERVICE_NAME_HEADER, SERVICE_TOKEN_HEADER, REQUEST_ID_HEADER, TRACEPARENT_HEADER, crate::identity::ASSERTION_HEADER];

/// How this process connects to NATS.
#[derive(Clone, Default)]
pub struct NatsOptions {
    /// One or more server URLs (`nats://host:4222`); the client fails over between them.
    pub urls: Vec<String>,
    pub token: Option<Secret<String>>,
    pub user: Option<String>,
    pub password: Option<Secret<String>>,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// A file holding an NKey user seed (`SU…`) to authenticate with.
    pub nkey_seed_file: Option<PathBuf>,
    /// The prefix of this connection's reply subjects (the client's `_INBOX` when unset).
    pub inbox_prefix: Option<String>,
    /// A CA certificate (PEM) to verify the servers with; TLS is then required.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate and its key (PEM), presented to a server that requires one.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// The connection's name, as the server's monitoring shows it.
    pub name: String,
}

impl std::fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOptions")
            .field("urls", &self.urls.iter().map(|url| without_credentials(url)).collect::<Vec<_>>())
            .field("user", &self.user)
            .field("credentials_file", &self.credentials_file)
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("inbox_prefix", &self.inbox_prefix)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_client", &self.tls_client)
            .finish_non_exhaustive()
    }
}

/// Why a NATS wire could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("nats.url holds no server URL")]
    NoUrl,
    #[error("cannot read the NATS credentials file {path}: {source}")]
    Credentials { path: PathBuf, source: std::io::Error },
    #[error("cannot connect to NATS at {urls}: {source}")]
    Connect { urls: String, source: async_nats::ConnectError },
    #[error("cannot start the {module} NATS service: {detail}")]
    Service { module: &'static str, detail: String },
}

/// Connects with `options`. Waits for the first connection: a process whose wire is NATS does
/// not start without it.
///
/// # Errors
/// No URL, an unreadable credentials file, or no server reachable.
pub async fn connect(options: &NatsOptions) -> Result<async_nats::Client, WireError> {
    if options.urls.is_empty() {
        return Err(WireError::NoUrl);
    }
    // What the server refuses this connection (a subject its broker user may not use) is an
    // operator's to see: logged, never silent.
    let mut connect = async_nats::ConnectOptions::new().name(&options.name).connection_timeout(Duration::from_secs(5)).event_callback(
        |event| async move {
            if let async_nats::Event::ServerError(error) = event {
                tracing::warn!(%error, "the NATS server refused something this process sent (check its broker user's permissions)");
            }
        },
    );
    if let Some(token) = &options.token {
        connect = connect.token(token.expose().clone());
    }
    if let (Some(user), Some(password)) = (&options.user, &options.password) {
        connect = connect.user_and_password(user.clone(), password.expose().clone());
    }
    if let Some(path) = &options.credentials_file {
        connect = connect.credentials_file(path).await.map_err(|source| WireError::Credentials { path: path.clone(), source })?;
    }
    if let Some(path) = &options.nkey_seed_file {
        let seed = std::fs::read_to_string(path).map_err(|source| WireError::Credentials { path: path.clone(), source })?;
        connect = connect.nkey(seed.trim().to_owned());
    }
    if let Some(prefix) = &options.inbox_prefix {
        connect = connect.custom_inbox_prefix(prefix);
    }
    if let Some(ca) = &options.tls_ca_file {
        connect = connect.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((certificate, key)) = &options.tls_client {
        connect = connect.add_client_certificate(certificate.clone(), key.clone()).require_tls(true);
    }
    let shown = options.urls.iter().map(|url| without_credentials(url)).collect::<Vec<_>>().join(",");
    connect.connect(options.urls.as_slice()).await.map_err(|source| WireError::Connect { urls: shown, source })
}

/// `url` with any `user:password@` taken out, for messages and logs.
pub fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url.rsplit_once('@').map_or_else(|| url.to_owned(), |(_, host)| format!("***@{host}")),
    }
}

/// The subject of `operation` of `module` under `prefix`.
pub fn subject(prefix: &str, module: &str, operation: &str) -> String {
    format!("{prefix}.rpc.{module}.{operation}")
}

type Handler = Arc<dyn Fn(Caller, Bytes) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, ApiError>> + Send>> + Send + Sync>;

/// One operation of a contract, as its NATS endpoint serves it.
pub struct Operation {
    name: &'static str,
    handler: Handler,
}

impl Operation {
    /// `operation` served under `name`: arguments decoded, the result encoded, by the codec.
    pub fn new<A, R, F, Fut>(name: &'static str, operation: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(Caller, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ApiError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |caller, payload: Bytes| match codec::decode_args::<A>(&payload) {
            Ok(args) => {
                let call = operation(caller, args);
                Box::pin(async move { codec::encode(&call.await?) })
            }
            Err(error) => Box::pin(std::future::ready(Err(error))),
        });
        Self { name, handler }
    }
}

/// How a module's NATS service runs.
#[derive(Clone)]
pub struct ServeOptions {
    pub client: async_nats::Client,
    /// The subjects' first token (`cleave`).
    pub subject_prefix: String,
    /// With a service token configured, every call must carry it (as on the internal HTTP
    /// listener).
    pub service_token: Option<Secret<String>>,
    /// Calls handled at once by this instance; more wait (backpressure on the subscription).
    pub max_in_flight: usize,
    /// With trusted processes configured, every call must carry a valid assertion of one of them
    /// (and then no service token is needed).
    pub gate: Option<Arc<crate::identity::WireGate>>,
}

/// A running module service. Dropping it stops answering; [`NatsService::stop`] also tells the
/// micro-service protocol that this instance is gone.
pub struct NatsService {
    service: Option<async_nats::service::Service>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    /// One permit per call in flight may be held; all back means none is.
    permits: Arc<tokio::sync::Semaphore>,
    max_in_flight: u32,
}

impl std::fmt::Debug for NatsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsService").field("endpoints", &self.workers.len()).finish()
    }
}

impl NatsService {
    /// Stops taking calls (the instance leaves its queue group, so the others take them), then
    /// waits up to `grace` for the calls in flight to be answered.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(service) = self.service.take()
            && let Err(error) = service.stop().await
        {
            tracing::warn!(%error, "cannot stop a NATS service cleanly");
        }
        for worker in self.workers.drain(..) {
            worker.abort();
        }
        if tokio::time::timeout(grace, self.permits.acquire_many(self.max_in_flight)).await.is_err() {
            tracing::warn!(grace_secs = grace.as_secs(), "NATS calls were still in flight when the grace ran out");
        }
    }
}

impl Drop for NatsService {
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.abort();
        }
    }
}

/// Serves `operations` of `module` as the micro service `module`, version `version`, one
/// endpoint per operation, in the module's queue group. Every call's caller is resolved by
/// `resolver` on this side: nothing from the wire is trusted.
///
/// # Errors
/// The service or an endpoint cannot be registered (the connection is gone).
pub async fn serve(
    module: &'static str,
    version: &str,
    description: &str,
    resolver: Arc<dyn CallerResolver>,
    options: ServeOptions,
    operations: Vec<Operation>,
) -> Result<NatsService, WireError> {
    let failed = |error: async_nats::Error| WireError::Service { module, detail: error.to_string() };
    let service = options.client.service_builder().description(description).start(module, version).await.map_err(failed)?;
    let group = service.group(format!("{}.rpc.{module}", options.subject_prefix));
    let max_in_flight = u32::try_from(options.max_in_flight.max(1)).unwrap_or(u32::MAX);
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight as usize));
    let service_token = Arc::new(options.service_token.clone());
    let gate = options.gate.clone();
    let mut workers = Vec::with_capacity(operations.len());
    for operation in operations {
        let mut endpoint = group.endpoint_builder().name(operation.name).add(operation.name).await.map_err(failed)?;
        let (resolver, permits, service_token, gate) = (resolver.clone(), permits.clone(), service_token.clone(), gate.clone());
        let (handler, name) = (operation.handler, operation.name);
        workers.push(tokio::spawn(async move {
            while let Some(request) = endpoint.next().await {
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let (resolver, handler, service_token, gate) = (resolver.clone(), handler.clone(), service_token.clone(), gate.clone());
                tokio::spawn(async move {
                    let guard = Guard { service_token: service_token.as_ref().as_ref(), gate: gate.as_deref() };
                    answer(module, name, request, resolver.as_ref(), &handler, guard).await;
                    drop(permit);
                });
            }
        }));
    }
    tracing::info!(module, subjects = %format!("{}.rpc.{module}.*", options.subject_prefix), "serving the module over NATS");
    Ok(NatsService { service: Some(service), workers, permits, max_in_flight })
}

/// What a call must prove before it is resolved: a valid assertion of a trusted process (when
/// any is configured), else the service token (when one is).
#[derive(Clone, Copy)]
struct Guard<'a> {
    service_token: Option<&'a Secret<String>>,
    gate: Option<&'a crate::identity::WireGate>,
}

/// Handles one call and sends its answer; logs it (with its request id and trace, like the
/// HTTP access log) and counts it (`nats_calls_total`, `nats_call_duration_seconds`).
async fn answer(
    module: &'static str,
    operation: &'static str,
    request: async_nats::service::Request,
    resolver: &dyn CallerResolver,
    handler: &Handler,
    guard: Guard<'_>,
) {
    let started = std::time::Instant::now();
    let headers = call_headers(request.message.headers.as_ref());
    let span = tracing::info_span!(
        "call",
        otel.name = %format_args!("{module}.{operation}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "nats",
        request_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        module,
        operation,
    );
    let context = incoming_context(&headers, &span);
    span.record("request_id", context.request_id.as_str());
    if !span.is_disabled() {
        span.record("trace_id", context.trace.trace_id().as_str());
    }
    let outcome = with_request_context(context.clone(), async {
        let mut deadline = None;
        if let Some(gate) = guard.gate {
            let verified =
                gate.admit(&headers, &format!("{module}.{operation}"), &request.message.payload).map_err(|error| (error, true))?;
            deadline = Some(verified.deadline);
        } else if let Some(expected) = guard.service_token {
            let presented = headers.get(SERVICE_TOKEN_HEADER).map(http::HeaderValue::as_bytes).unwrap_or_default();
            if expected.expose().is_empty() || !constant_time_eq(presented, expected.expose().as_bytes()) {
                return Err((ApiError::unauthenticated("the internal wire requires the service token"), true));
            }
        }
        let work = async {
            let caller = resolver.resolve(&headers).await.map_err(|error| (error, false))?;
            handler(caller, request.message.payload.clone()).await.map_err(|error| (error, false))
        };
        // The calls this one makes give up by its caller's deadline.
        match deadline {
            Some(deadline) => crate::resilience::within_deadline(deadline, work).await,
            None => work.await,
        }
    })
    .instrument(span.clone())
    .await;
    let status = outcome.as_ref().map_or_else(|(error, _)| error.status(), |_| 200);
    // A call taken after its caller's deadline is dropped unanswered: the caller has gone.
    if let Err((ApiError::Unavailable { .. }, true)) = &outcome {
        return;
    }
    let sent = match outcome {
        Ok(body) => request.respond(Ok(body.into())).await,
        Err((error, service_token_refused)) => {
            let problem = crate::with_request_context_sync(context.clone(), || codec::problem(&error));
            let mut headers = async_nats::HeaderMap::new();
            // serde_json escapes every control character: the problem is one header line.
            headers.insert(PROBLEM_HEADER, serde_json::to_string(&problem).unwrap_or_default().as_str());
            if service_token_refused {
                headers.insert(WIRE_AUTH_REFUSED_HEADER, if guard.gate.is_some() { "service-assertion" } else { "service-token" });
            }
            let title = problem.title.replace(['\r', '\n'], " ");
            let status = async_nats::service::error::Error { status: title, code: usize::from(problem.status) };
            request.respond_with_headers(Err(status), headers).await
        }
    };
    let elapsed = started.elapsed();
    let labels = [
        metrics::Label::from_static_parts("module", module),
        metrics::Label::from_static_parts("operation", operation),
        metrics::Label::new("status", status.to_string()),
    ];
    metrics::counter!("nats_calls_total", labels.iter()).increment(1);
    metrics::histogram!("nats_call_duration_seconds", labels[..2].iter()).record(elapsed.as_secs_f64());
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    crate::with_request_context_sync(context, || {
        span.in_scope(|| {
            let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            if let Err(error) = &sent {
                tracing::warn!(status, elapsed_ms, %error, "cannot answer a NATS call");
            } else if status >= 500 {
                tracing::error!(status, elapsed_ms, "call failed");
            } else {
                tracing::info!(status, elapsed_ms, "call");
            }
        })
    });
}

/// The call headers a server reads, as the `CallerResolver` takes them.
fn call_headers(incoming: Option<&async_nats::HeaderMap>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    let Some(incoming) = incoming else { return headers };
    for name in CALL_HEADERS {
        if let Some(value) = incoming.get(name)
            && let Ok(value) = http::HeaderValue::from_str(value.as_str())
        {
            headers.insert(name, value);
        }
    }
    headers
}

/// The request id a call carries in, or a new one, and the trace it continues in `span`.
fn incoming_context(headers: &http::HeaderMap, span: &tracing::Span) -> RequestContext {
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|text| !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let incoming = headers.get(TRACEPARENT_HEADER).and_then(|value| value.to_str().ok()).and_then(TraceContext::parse);
    RequestContext { request_id, trace: crate::trace_context::start_trace(span, incoming) }
}

/// The client half of the NATS wire: requests a contract operation and reads back its result or
/// its `ApiError`. Every call goes through the module's [`Upstream`] guard.
#[derive(Clone)]
pub struct NatsClient {
    client: async_nats::Client,
    module: &'static str,
    subject_prefix: String,
    upstream: Arc<Upstream>,
    service_token: Option<Secret<String>>,
    identity: Option<Arc<crate::identity::ServiceIdentity>>,
}

impl std::fmt::Debug for NatsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsClient").field("module", &self.module).field("upstream", &self.upstream).finish_non_exhaustive()
    }
}

impl NatsClient {
    /// Calls the micro service `module` on `client`, each call guarded by `upstream`.
    pub fn new(
        client: async_nats::Client,
        module: &'static str,
        subject_prefix: impl Into<String>,
        upstream: Arc<Upstream>,
        service_token: Option<Secret<String>>,
    ) -> Self {
        Self { client, module, subject_prefix: subject_prefix.into(), upstream, service_token, identity: None }
    }

    /// Signs every call with `identity` (an assertion per attempt).
    #[must_use]
    pub fn with_identity(mut self, identity: Option<Arc<crate::identity::ServiceIdentity>>) -> Self {
        self.identity = identity;
        self
    }

    /// The guard of every call this client makes.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// Calls `operation` on whichever instance of the module answers first.
    ///
    /// # Errors
    /// The remote's `ApiError` as it sent it; [`ApiError::Unavailable`] at once when no
    /// instance is subscribed or the circuit is open, and when the call times out or the
    /// connection is down; [`ApiError::Internal`] when it answers something unreadable.
    pub async fn call<A: Serialize + Sync, R: DeserializeOwned>(
        &self,
        caller: &Caller,
        operation: crate::resilience::Operation,
        args: &A,
    ) -> Result<R, ApiError> {
        let span = crate::trace_context::client_span(self.module, operation.name, "nats");
        self.call_in_span(caller, operation, args).instrument(span).await
    }

    async fn call_in_span<A: Serialize + Sync, R: DeserializeOwned>(
        &self,
        caller: &Caller,
        operation: crate::resilience::Operation,
        args: &A,
    ) -> Result<R, ApiError> {
        let module = self.module;
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in outgoing_headers(caller, self.service_token.as_ref()) {
            // A value with a line break cannot travel as a NATS header (a service token read
            // from a file with its newline, say): an error, not a panic.
            let value = value.parse::<async_nats::HeaderValue>().map_err(|_| {
                tracing::error!(module, header = name, "a call header holds a line break; check auth.service_token");
                ApiError::Internal
            })?;
            headers.insert(name, value);
        }
        let payload = bytes::Bytes::from(codec::encode(args)?);
        let subject = subject(&self.subject_prefix, module, operation.name);
        let answer = self
            .upstream
            .call(operation, |timeout| {
                // No later than the deadline of the call this one serves, if any.
                let Some((timeout, deadline)) = crate::resilience::attempt_bounds(timeout) else {
                    return Box::pin(std::future::ready(Err(crate::resilience::past_callers_deadline())));
                };
                // A fresh assertion per attempt: the callee refuses one it has seen before.
                let mut headers = headers.clone();
                if let Some(identity) = &self.identity {
                    let assertion = identity.assert(&format!("{module}.{}", operation.name), &payload, chrono::Utc::now(), deadline);
                    headers.insert(crate::identity::ASSERTION_HEADER, assertion.as_str());
                }
                let request = async_nats::Request::new().payload(payload.clone()).headers(headers).timeout(Some(timeout));
                Box::pin(send(self.client.clone(), subject.clone(), request, self.upstream.module(), operation.name))
            })
            .await?;
        codec::decode_result(&answer, self.upstream.module())
    }
}

/// How many instances of micro service `name` under `subject_prefix` answer `$SRV.INFO` within
/// `wait` (services of the same name under another prefix, another deployment on the same
/// server, are not counted).
pub async fn count_instances(client: &async_nats::Client, name: &str, subject_prefix: &str, wait: Duration) -> usize {
    let inbox = client.new_inbox();
    let Ok(mut replies) = client.subscribe(inbox.clone()).await else { return 0 };
    if client.publish_with_reply(format!("$SRV.INFO.{name}"), inbox, bytes::Bytes::new()).await.is_err() {
        return 0;
    }
    let ours = format!("{subject_prefix}.rpc.{name}.");
    let mut ids = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await {
        let Ok(info) = serde_json::from_slice::<serde_json::Value>(&reply.payload) else { continue };
        let endpoints = info["endpoints"].as_array().map(Vec::as_slice).unwrap_or_default();
        if endpoints.iter().any(|endpoint| endpoint["subject"].as_str().is_some_and(|subject| subject.starts_with(&ours))) {
            ids.insert(info["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    ids.len()
}

/// One attempt at a NATS call.
async fn send(
    client: async_nats::Client,
    subject: String,
    request: async_nats::Request,
    module: &'static str,
    operation: &'static str,
) -> Result<bytes::Bytes, Failure> {
    let response = client.send_request(subject, request).await.map_err(|error| {
        use async_nats::client::RequestErrorKind;
        let context = current_request_context().map(|context| context.request_id).unwrap_or_default();
        match error.kind() {
            RequestErrorKind::NoResponders => {
                tracing::warn!(module, operation, request_id = %context, "no instance of the module is serving over NATS");
                // The server had no one to give it to: known not to have run.
                Failure::NotSent(ApiError::not_sent(format!("the {module} module is unreachable"), 1))
            }
            RequestErrorKind::TimedOut => {
                tracing::warn!(module, operation, request_id = %context, "a NATS call timed out");
                Failure::Lost(ApiError::unavailable(format!("the {module} module did not answer"), 1))
            }
            RequestErrorKind::InvalidSubject | RequestErrorKind::MaxPayloadExceeded => {
                tracing::error!(module, operation, %error, "a NATS call could not be sent");
                Failure::Answered(ApiError::Internal)
            }
            RequestErrorKind::Other => {
                tracing::warn!(module, operation, %error, "a NATS call failed");
                Failure::Lost(ApiError::unavailable(format!("the {module} module is unreachable"), 1))
            }
        }
    })?;
    let Some(headers) = response.headers.as_ref().filter(|headers| headers.get(SERVICE_ERROR_CODE).is_some()) else {
        return Ok(response.payload);
    };
    if headers.get(WIRE_AUTH_REFUSED_HEADER).is_some() {
        tracing::error!(
            module,
            "the remote refused this process's credentials (its service assertion or service token): check auth.identity_seed_file and the remote's auth.trusted"
        );
        return Err(Failure::Answered(ApiError::Internal));
    }
    let status = headers.get(SERVICE_ERROR_CODE).and_then(|code| code.as_str().parse::<u16>().ok()).unwrap_or(500);
    Err(Failure::Answered(match headers.get(PROBLEM_HEADER).map(|problem| serde_json::from_str::<ProblemDetails>(problem.as_str())) {
        Some(Ok(problem)) => ApiError::from_problem(problem),
        _ => ApiError::from_status(status),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_credentials() {
        assert_eq!(without_credentials("nats://cleave:s3cret@nats:4222"), "nats://***@nats:4222");
        assert_eq!(without_credentials("nats://nats:4222"), "nats://nats:4222");
        assert_eq!(without_credentials("token@nats:4222"), "***@nats:4222");
        let options = NatsOptions { urls: vec!["nats://u:p@h:4222".into()], ..NatsOptions::default() };
        assert!(!format!("{options:?}").contains("u:p"));
    }
}

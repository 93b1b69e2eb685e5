//! Logging and traces (`tracing`): human-readable lines in development, JSON in production,
//! spans exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; and the Prometheus
//! recorder, installed once per process.

use crate::config::{LogFormat, LogSettings};
use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// What [`init`] installed. [`Telemetry::shutdown`] sends the spans not yet exported; call it
/// once the process is done.
#[must_use = "shut it down when the process stops, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is still buffered (bounded by `OTEL_BSP_EXPORT_TIMEOUT`) and stops the
    /// exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: the last spans could not be exported: {error}");
        }
    }
}

/// Installs the global subscriber: the log lines (`log.format`, filtered by `log.filter` or
/// `RUST_LOG`) and, when an OTLP endpoint is configured, the OpenTelemetry layer that exports
/// every span as `service_name` (unless `OTEL_SERVICE_NAME` says otherwise). A second call
/// (tests) installs nothing.
///
/// Call it outside the async runtime: the exporter's HTTP client keeps a runtime of its own.
///
/// # Errors
/// The OTLP settings in the environment cannot be used (an unsupported protocol, a malformed
/// endpoint).
pub fn init(settings: &LogSettings, service_name: &str) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
    // Colours only on a terminal (and never with NO_COLOR set): a log file or a collector gets
    // plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let (json, text) = match settings.format {
        LogFormat::Json => (
            Some(
                tracing_subscriber::fmt::layer()
                    .event_format(JsonLines)
                    .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                    .with_writer(std::io::stderr),
            ),
            None,
        ),
        LogFormat::Text => (None, Some(tracing_subscriber::fmt::layer().compact().with_ansi(ansi).with_writer(std::io::stderr))),
    };
    let provider = otlp_provider(service_name)?;
    let otel = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("cleave")).with_location(false).with_threads(false));
    let installed = tracing_subscriber::registry().with(json).with(text).with(otel).with(filter).try_init().is_ok();
    Ok(Telemetry { provider: provider.filter(|_| installed) })
}

/// The span exporter, when an OTLP endpoint is configured: OTLP over HTTP with protobuf, every
/// `OTEL_EXPORTER_OTLP_*` and `OTEL_BSP_*` variable honoured by the SDK.
fn otlp_provider(service_name: &str) -> anyhow::Result<Option<SdkTracerProvider>> {
    let set = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
    if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT")).is_none() {
        return Ok(None);
    }
    if set("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    if let Some(protocol) = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL")) {
        anyhow::ensure!(
            protocol == "http/protobuf",
            "OTEL_EXPORTER_OTLP_PROTOCOL is `{protocol}`; cleave exports traces over `http/protobuf` only (a collector's port 4318)"
        );
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .context("cannot set up the OTLP trace exporter (check OTEL_EXPORTER_OTLP_ENDPOINT)")?;
    let mut resource =
        opentelemetry_sdk::Resource::builder().with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if set("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service_name.to_owned());
    }
    Ok(Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build()))
}

/// One JSON object per line: time, level, target, the message and the event's fields, the
/// request id, trace id and span id of the work it belongs to (the span this process opened
/// for the request, call or event it handles), and the current span with its fields.
struct JsonLines;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use serde_json::Value;
        let metadata = event.metadata();
        let mut line = serde_json::Map::new();
        line.insert("timestamp".into(), Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)));
        line.insert("level".into(), Value::String(metadata.level().to_string()));
        line.insert("target".into(), Value::String(metadata.target().to_owned()));
        event.record(&mut JsonVisitor(&mut line));
        if let Some(context) = shared_kernel::current_request_context() {
            line.insert("request_id".into(), Value::String(context.request_id));
            line.insert("trace_id".into(), Value::String(context.trace.trace_id()));
            line.insert("span_id".into(), Value::String(context.trace.span_id()));
        }
        if let Some(span) = ctx.lookup_current() {
            let mut fields = span
                .extensions()
                .get::<tracing_subscriber::fmt::FormattedFields<N>>()
                .and_then(|fields| serde_json::from_str::<serde_json::Map<String, Value>>(fields).ok())
                .unwrap_or_default();
            fields.insert("name".into(), Value::String(span.name().to_owned()));
            line.insert("span".into(), Value::Object(fields));
        }
        let text = serde_json::to_string(&line).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Collects an event's fields into a JSON object.
struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

/// How often the recorder folds recorded samples into its histograms and summaries.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide Prometheus recorder (installed on first use), with its upkeep thread.
///
/// **Invariant:** metrics take constant memory whether or not anyone scrapes `/metrics`. The
/// recorder keeps every histogram sample in a buffer until its upkeep folds it into the buckets;
/// without upkeep, an unscraped process grew by about 25 bytes a request, for ever.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".to_owned()),
                    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                )
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_ok() {
                describe_metrics();
            }
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new().name("metrics-upkeep".to_owned()).spawn(move || {
                loop {
                    std::thread::sleep(METRICS_UPKEEP);
                    upkeep.run_upkeep();
                }
            });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start the metrics upkeep thread: histograms grow until /metrics is scraped");
            }
            handle
        })
        .clone()
}

/// The help text of every metric this process records (Prometheus `# HELP`, which `promtool
/// check metrics` requires). A metric recorded without one here fails the metrics test.
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("http_requests_total", "Requests answered by the public and internal listeners, by method, route and status.");
    describe_histogram!("http_request_duration_seconds", Unit::Seconds, "Time to answer a request, by method and route.");
    describe_counter!("http_rate_limited_total", "Requests refused with 429 by the per-client rate limit.");
    describe_counter!(
        "graphql_response_cache_total",
        "Anonymous catalog queries answered from the kept answers (hit) or run (miss), and answers kept (kept)."
    );
    // Each module's own metrics (`crate::modules::<name>::describe_metrics`).
    crate::modules::describe_metrics();
    describe_counter!("graphql_document_cache_total", "GraphQL documents found parsed in the cache (hit) or parsed afresh (miss).");
    describe_counter!("contract_calls_total", "Calls to a remote module's contract, by module, operation, transport and outcome.");
    describe_histogram!(
        "contract_call_duration_seconds",
        Unit::Seconds,
        "Time a remote contract call took, retries and backoff included, by module, operation and transport."
    );
    describe_counter!("contract_retries_total", "Attempts after the first at an idempotent remote operation, by module and operation.");
    describe_counter!(
        "upstream_rejected_total",
        "Remote calls refused unsent by the guard, by module and reason (circuit_open, bulkhead_full)."
    );
    describe_gauge!("upstream_circuit_state", "The circuit to a remote module: 0 closed, 1 half-open, 2 open.");
    describe_counter!(
        "calls_past_deadline_total",
        "Calls on the internal wire taken after their caller's deadline (queued too long): not started, and over NATS not answered."
    );
    describe_gauge!("remote_module_up", "Whether a remote module answered its last background probe (every 5 s): 1 or 0.");
    describe_gauge!("upstream_in_flight", "Calls to a remote module in flight from this process (its bulkhead's slots in use).");
    describe_gauge!("upstream_queued", "Calls to a remote module waiting for a slot in its bulkhead.");
    describe_counter!("nats_calls_total", "Contract calls this process served over NATS, by module, operation and status.");
    describe_histogram!("nats_call_duration_seconds", Unit::Seconds, "Time to serve a contract call over NATS, by module and operation.");
    describe_counter!("events_handled_total", "Events a consumer handled, by consumer and event type.");
    describe_gauge!("events_consumer_lag", "Events waiting on the broker for a consumer behind the one it took last (JetStream).");
    describe_counter!("events_retries_total", "Failed attempts of a consumer at an event, retried, by consumer.");
    describe_counter!("events_dead_lettered_total", "Events a consumer gave up on and put in its dead-letter store, by consumer.");
    describe_counter!(
        "service_assertions_refused_total",
        "Calls refused on the internal wire for their service assertion (missing, forged, expired, replayed…) or a service name their process may not use, by operation and reason."
    );
    describe_counter!(
        "internal_tls_handshakes_failed_total",
        "TLS handshakes of the internal wire that failed, by reason: refused, timeout or busy on the internal listener; not_the_module when a server's certificate is not of a process that may host the module called."
    );
    describe_counter!(
        "events_refused_total",
        "Events a consumer refused unhandled (dead-lettered with the reason), by consumer and reason (foreign_stream: its type is not the stream's)."
    );
    describe_counter!("outbox_delivered_total", "Events the outbox relay handed to the bus, by module.");
    describe_gauge!("outbox_backlog", "Events written to a module's outbox and not yet handed to the bus.");
    describe_histogram!(
        "outbox_delivery_lag_seconds",
        Unit::Seconds,
        "Time from an event's commit to its hand-over to the bus, by module."
    );
}

//! Logging (`tracing`): human-readable lines in development, JSON in production; and the
//! Prometheus recorder, installed once per process.

use crate::config::{LogFormat, LogSettings};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. A second call (tests) does nothing.
pub fn init_logging(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
    // Colours only on a terminal (and never with NO_COLOR set): a log file or a collector gets
    // plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Text => builder.compact().try_init(),
    };
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
    describe_gauge!("upstream_in_flight", "Calls to a remote module in flight from this process (its bulkhead's slots in use).");
    describe_gauge!("upstream_queued", "Calls to a remote module waiting for a slot in its bulkhead.");
    describe_counter!("nats_calls_total", "Contract calls this process served over NATS, by module, operation and status.");
    describe_histogram!("nats_call_duration_seconds", Unit::Seconds, "Time to serve a contract call over NATS, by module and operation.");
    describe_counter!("events_handled_total", "Events a consumer handled, by consumer and event type.");
    describe_gauge!("events_consumer_lag", "Events waiting on the broker for a consumer behind the one it took last (JetStream).");
    describe_counter!("events_retries_total", "Failed attempts of a consumer at an event, retried, by consumer.");
    describe_counter!("events_dead_lettered_total", "Events a consumer gave up on and put in its dead-letter store, by consumer.");
    describe_counter!("outbox_delivered_total", "Events the outbox relay handed to the bus, by module.");
    describe_gauge!("outbox_backlog", "Events written to a module's outbox and not yet handed to the bus.");
    describe_histogram!(
        "outbox_delivery_lag_seconds",
        Unit::Seconds,
        "Time from an event's commit to its hand-over to the bus, by module."
    );
}

//! What stands between a module and a remote upstream it calls, on either wire: a timeout per
//! operation, retries with backoff and jitter for the operations the contract declares
//! idempotent, a circuit breaker and a bulkhead per upstream.
//!
//! One [`Upstream`] guards every call this process makes to one module, whatever the wire: the
//! wire's transport only sends one attempt and says how it failed ([`Failure`]). The circuit
//! breaker is `tower-resilience-circuitbreaker`'s, the backoff `backon`'s; the bulkhead is a
//! `tokio` semaphore with a bounded queue in front of it (the bulkhead crates bound the wait, not
//! the queue).

use crate::ApiError;
use std::time::Duration;

/// Whether calls to a module are being refused right now without being sent (its circuit is
/// open), and for how long. A use case that would start something it cannot finish without
/// that module asks first (orders asks about payments before it reserves stock).
pub trait CallGate: Send + Sync + 'static {
    /// `Some(retry after)` while calls are refused.
    fn refusing(&self) -> Option<Duration>;
}

/// The gate of a module in this process, or of one that is not guarded: never refusing.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysOpen;

impl CallGate for AlwaysOpen {
    fn refusing(&self) -> Option<Duration> {
        None
    }
}

/// One operation of a contract as a client calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub name: &'static str,
    /// Declared in the contract (`-> T, idempotent;`): a repeat has no further effect, so a
    /// failed attempt may be tried again.
    pub idempotent: bool,
}

/// How one attempt at a remote call failed, as its transport saw it.
#[derive(Debug)]
pub enum Failure {
    /// It never reached the upstream (every instance refused the connection, no NATS
    /// responder): known not to have run.
    NotSent(ApiError),
    /// It left but no answer came (a timeout, a broken connection): it may have run.
    Lost(ApiError),
    /// The upstream answered this error.
    Answered(ApiError),
}

impl Failure {
    fn into_error(self) -> ApiError {
        match self {
            Self::NotSent(error) | Self::Lost(error) | Self::Answered(error) => error,
        }
    }

    /// Whether the upstream looks unhealthy: it could not be reached, or it failed internally.
    /// A domain answer (404, 409, 422) is a healthy upstream; so is its own 503 (one of *its*
    /// upstreams is down), so that one outage does not open every circuit in front of it.
    fn counts_against_upstream(&self) -> bool {
        match self {
            Self::NotSent(_) | Self::Lost(_) => true,
            Self::Answered(error) => matches!(error, ApiError::Internal),
        }
    }

    /// Whether another attempt may help (for an idempotent operation).
    fn transient(&self) -> bool {
        match self {
            Self::NotSent(_) | Self::Lost(_) => true,
            Self::Answered(error) => matches!(error, ApiError::Unavailable { .. }),
        }
    }
}

/// Retries of idempotent operations.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry).
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles, with jitter, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

/// The circuit breaker of one upstream.
#[derive(Debug, Clone)]
pub struct CircuitPolicy {
    /// Share of failed calls (0 < x ≤ 1) within `window` that opens the circuit.
    pub failure_rate: f64,
    /// The sliding window the failure rate is measured over.
    pub window: Duration,
    /// Calls within the window before the rate counts at all.
    pub minimum_calls: usize,
    /// How long an open circuit refuses calls before it lets probes through.
    pub open_for: Duration,
    /// Probes let through when half-open; all must succeed to close it again.
    pub half_open_probes: usize,
}

/// The bulkhead of one upstream.
#[derive(Debug, Clone)]
pub struct BulkheadPolicy {
    /// Calls in flight at once.
    pub max_concurrent: usize,
    /// Calls waiting for a slot; one more is refused at once.
    pub max_queued: usize,
    /// How long a call waits for a slot before it is refused.
    pub max_wait: Duration,
}

/// Everything that guards the calls to one upstream.
#[derive(Debug, Clone)]
pub struct ResiliencePolicy {
    /// Bound on one attempt, unless the operation has its own.
    pub timeout: Duration,
    /// Per operation (by name), overriding `timeout`.
    pub operation_timeouts: std::collections::HashMap<String, Duration>,
    pub retry: RetryPolicy,
    pub circuit: CircuitPolicy,
    pub bulkhead: BulkheadPolicy,
}

impl Default for ResiliencePolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            operation_timeouts: std::collections::HashMap::new(),
            retry: RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(50), max_delay: Duration::from_secs(1) },
            circuit: CircuitPolicy {
                failure_rate: 0.5,
                window: Duration::from_secs(10),
                minimum_calls: 5,
                open_for: Duration::from_secs(5),
                half_open_probes: 2,
            },
            bulkhead: BulkheadPolicy { max_concurrent: 256, max_queued: 1024, max_wait: Duration::from_secs(5) },
        }
    }
}

/// A circuit's state, as reported (status, metrics, readiness).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitStatus {
    Closed,
    HalfOpen,
    Open,
}

impl CircuitStatus {
    /// As the status report names it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }

    /// As a gauge: 0 closed, 1 half-open, 2 open.
    pub const fn as_gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

/// Counts one contract call and its duration (`contract_calls_total`,
/// `contract_call_duration_seconds`): `transport` is `local` for a call to the implementation in
/// this process, `http` or `nats` for a remote one.
pub fn record_call<T>(
    module: &'static str,
    operation: &'static str,
    transport: &'static str,
    result: &Result<T, ApiError>,
    started: std::time::Instant,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(error) if error.status() >= 500 => "unavailable",
        Err(_) => "error",
    };
    let labels = [
        metrics::Label::from_static_parts("module", module),
        metrics::Label::from_static_parts("operation", operation),
        metrics::Label::from_static_parts("transport", transport),
        metrics::Label::from_static_parts("outcome", outcome),
    ];
    metrics::counter!("contract_calls_total", labels.iter()).increment(1);
    metrics::histogram!("contract_call_duration_seconds", labels[..3].iter()).record(started.elapsed().as_secs_f64());
}

#[cfg(feature = "http")]
pub(crate) use guarded::past_callers_deadline;
#[cfg(feature = "http")]
pub use guarded::{Upstream, attempt_bounds, probing, within_deadline};

#[cfg(feature = "http")]
mod guarded;

#[cfg(all(test, feature = "http"))]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures::future::BoxFuture;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const READ: Operation = Operation { name: "get", idempotent: true };
    const WRITE: Operation = Operation { name: "charge", idempotent: false };

    fn policy() -> ResiliencePolicy {
        let mut policy = ResiliencePolicy::default();
        policy.retry.base_delay = Duration::from_millis(1);
        policy.retry.max_delay = Duration::from_millis(5);
        policy.circuit.minimum_calls = 4;
        policy.circuit.open_for = Duration::from_millis(300);
        policy.circuit.half_open_probes = 1;
        policy
    }

    /// A transport answering from a script (one entry per attempt, the last repeated), and
    /// counting its attempts.
    fn scripted(
        script: Vec<fn() -> Result<Bytes, Failure>>,
    ) -> (Arc<AtomicUsize>, impl Fn(Duration) -> BoxFuture<'static, Result<Bytes, Failure>>) {
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let script = Arc::new(script);
        (sent, move |_timeout| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let answer = script[n.min(script.len() - 1)]();
            Box::pin(async move { answer })
        })
    }

    fn ok() -> Result<Bytes, Failure> {
        Ok(Bytes::from_static(b"{}"))
    }
    fn refused() -> Result<Bytes, Failure> {
        Err(Failure::NotSent(ApiError::not_sent("the m module is unreachable", 1)))
    }
    fn lost() -> Result<Bytes, Failure> {
        Err(Failure::Lost(ApiError::unavailable("the m module did not answer", 1)))
    }
    fn not_found() -> Result<Bytes, Failure> {
        Err(Failure::Answered(ApiError::not_found("no such thing")))
    }

    #[tokio::test]
    async fn an_idempotent_operation_is_retried_and_another_is_sent_once() {
        let upstream = Upstream::new("m", "http", policy()).unwrap();
        let (sent, transport) = scripted(vec![lost, refused, ok]);
        assert!(upstream.call(READ, &transport).await.is_ok());
        assert_eq!(sent.load(Ordering::SeqCst), 3);

        let (sent, transport) = scripted(vec![lost, ok]);
        let error = upstream.call(WRITE, &transport).await.unwrap_err();
        assert_eq!(sent.load(Ordering::SeqCst), 1);
        assert!(matches!(error, ApiError::Unavailable { not_sent: false, .. }), "{error:?}");
    }

    #[tokio::test]
    async fn a_domain_answer_is_final_and_keeps_the_circuit_closed() {
        let upstream = Upstream::new("m", "http", policy()).unwrap();
        let (sent, transport) = scripted(vec![not_found]);
        for _ in 0..10 {
            assert!(matches!(upstream.call(READ, &transport).await, Err(ApiError::NotFound { .. })));
        }
        assert_eq!(sent.load(Ordering::SeqCst), 10);
        assert_eq!(upstream.circuit_status(), CircuitStatus::Closed);
    }

    #[tokio::test]
    async fn attempts_that_may_have_run_are_not_reported_as_not_sent() {
        let upstream = Upstream::new("m", "http", policy()).unwrap();
        let (_, transport) = scripted(vec![lost, refused]);
        let error = upstream.call(READ, &transport).await.unwrap_err();
        assert!(matches!(error, ApiError::Unavailable { not_sent: false, .. }), "{error:?}");
        let (_, transport) = scripted(vec![refused]);
        assert!(upstream.call(WRITE, &transport).await.unwrap_err().is_not_sent());
    }

    #[tokio::test]
    async fn an_open_circuit_refuses_at_once_then_probes_and_closes() {
        let upstream = Upstream::new("m", "http", policy()).unwrap();
        let (sent, failing) = scripted(vec![refused]);
        for _ in 0..4 {
            assert!(upstream.call(WRITE, &failing).await.is_err());
        }
        assert_eq!(upstream.circuit_status(), CircuitStatus::Open);
        let retry_after = upstream.refusing().expect("refusing while open");
        assert!(retry_after <= Duration::from_millis(300));

        // Refused here: nothing reaches the transport, the answer says when to come back.
        let (probed, healthy) = scripted(vec![ok]);
        let error = upstream.call(READ, &healthy).await.unwrap_err();
        assert!(error.is_not_sent());
        assert_eq!(error.retry_after_secs(), Some(1));
        assert_eq!(probed.load(Ordering::SeqCst), 0);
        assert_eq!(sent.load(Ordering::SeqCst), 4);

        // After `open_for`, one probe goes through; its success closes the circuit.
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(upstream.refusing(), None);
        assert!(upstream.call(READ, &healthy).await.is_ok());
        assert_eq!(probed.load(Ordering::SeqCst), 1);
        assert_eq!(upstream.circuit_status(), CircuitStatus::Closed);
    }

    #[tokio::test]
    async fn a_health_probe_neither_opens_the_circuit_nor_is_refused_by_it() {
        let upstream = Upstream::new("m", "http", policy()).unwrap();
        let (sent, failing) = scripted(vec![refused]);
        for _ in 0..8 {
            assert!(probing(upstream.call(WRITE, &failing)).await.is_err());
        }
        assert_eq!((sent.load(Ordering::SeqCst), upstream.circuit_status()), (8, CircuitStatus::Closed), "probes are not counted");
        for _ in 0..4 {
            assert!(upstream.call(WRITE, &failing).await.is_err());
        }
        assert_eq!(upstream.circuit_status(), CircuitStatus::Open, "clients' calls are");
        let (probed, healthy) = scripted(vec![ok]);
        assert!(probing(upstream.call(READ, &healthy)).await.is_ok(), "a probe reaches the module through an open circuit");
        assert_eq!(probed.load(Ordering::SeqCst), 1);
        assert!(upstream.call(READ, &healthy).await.unwrap_err().is_not_sent(), "a client's call is still refused");
    }

    #[tokio::test]
    async fn an_attempt_gives_up_by_its_callers_deadline() {
        let own = Duration::from_secs(5);
        let (timeout, _) = attempt_bounds(own).expect("no caller's deadline: its own timeout");
        assert_eq!(timeout, own);
        let soon = chrono::Utc::now() + chrono::Duration::milliseconds(800);
        let (timeout, deadline) = within_deadline(soon, async { attempt_bounds(own) }).await.expect("time is left");
        assert!(timeout <= Duration::from_millis(800) && timeout > Duration::from_millis(500), "{timeout:?}");
        assert_eq!(deadline, soon, "the caller's deadline travels on");
        let later = chrono::Utc::now() + chrono::Duration::minutes(5);
        assert_eq!(within_deadline(later, async { attempt_bounds(own) }).await.unwrap().0, own, "its own timeout when that is sooner");
        let past = chrono::Utc::now() - chrono::Duration::milliseconds(1);
        assert!(within_deadline(past, async { attempt_bounds(own) }).await.is_none(), "nothing is sent past it");
        // Through an upstream: not sent at all.
        let upstream = Upstream::new("m", "http", policy()).unwrap();
        let (sent, transport) = scripted(vec![ok]);
        let error = within_deadline(
            past,
            upstream.call(WRITE, |timeout| match attempt_bounds(timeout) {
                Some(_) => transport(timeout),
                None => Box::pin(std::future::ready(Err(past_callers_deadline()))),
            }),
        )
        .await
        .unwrap_err();
        assert!(error.is_not_sent(), "{error:?}");
        assert_eq!(sent.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_failed_probe_opens_the_circuit_again() {
        let upstream = Upstream::new("m", "http", policy()).unwrap();
        let (_, failing) = scripted(vec![lost]);
        for _ in 0..4 {
            let _ = upstream.call(WRITE, &failing).await;
        }
        assert_eq!(upstream.circuit_status(), CircuitStatus::Open);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(upstream.call(WRITE, &failing).await.is_err());
        assert_eq!(upstream.circuit_status(), CircuitStatus::Open);
        assert!(upstream.refusing().is_some());
    }

    #[tokio::test]
    async fn the_bulkhead_caps_calls_in_flight_and_its_queue() {
        let mut policy = policy();
        policy.bulkhead = BulkheadPolicy { max_concurrent: 2, max_queued: 1, max_wait: Duration::from_secs(5) };
        let upstream = Upstream::new("m", "http", policy).unwrap();
        let (release, released) = tokio::sync::watch::channel(false);
        let sent = Arc::new(AtomicUsize::new(0));
        let transport = {
            let sent = sent.clone();
            move |_timeout: Duration| -> BoxFuture<'static, Result<Bytes, Failure>> {
                sent.fetch_add(1, Ordering::SeqCst);
                let mut released = released.clone();
                Box::pin(async move {
                    let _ = released.wait_for(|go| *go).await;
                    ok()
                })
            }
        };
        let mut calls = Vec::new();
        for _ in 0..3 {
            let (upstream, transport) = (upstream.clone(), transport.clone());
            calls.push(tokio::spawn(async move { upstream.call(WRITE, transport).await }));
        }
        // Two in flight, one queued: a fourth is refused at once, unsent.
        tokio::time::timeout(Duration::from_secs(5), async {
            while upstream.load() != (2, 1) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("two calls in flight and one queued");
        let refused = upstream.call(WRITE, &transport).await.unwrap_err();
        assert!(refused.is_not_sent(), "{refused:?}");
        assert_eq!(sent.load(Ordering::SeqCst), 2);

        release.send_replace(true);
        for call in calls {
            assert!(call.await.unwrap().is_ok());
        }
        assert_eq!(sent.load(Ordering::SeqCst), 3);
        assert_eq!(upstream.load(), (0, 0));
    }

    #[tokio::test]
    async fn an_operation_may_have_its_own_timeout() {
        let mut policy = policy();
        policy.operation_timeouts.insert("charge".to_owned(), Duration::from_secs(9));
        let upstream = Upstream::new("m", "http", policy).unwrap();
        assert_eq!(upstream.timeout_of("charge"), Duration::from_secs(9));
        assert_eq!(upstream.timeout_of("get"), Duration::from_secs(5));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let transport = move |timeout: Duration| -> BoxFuture<'static, Result<Bytes, Failure>> {
            record.lock().unwrap().push(timeout);
            Box::pin(async { ok() })
        };
        upstream.call(WRITE, &transport).await.unwrap();
        upstream.call(READ, &transport).await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![Duration::from_secs(9), Duration::from_secs(5)]);
    }
}

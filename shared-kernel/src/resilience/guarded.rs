//! [`Upstream`]: the guard of every call this process makes to one remote module — the
//! bulkhead's bounded queue, the circuit breaker, the timeout per attempt and the retries of
//! idempotent operations — and the state it reports.

use super::{CallGate, CircuitStatus, Failure, Operation, ResiliencePolicy};
use crate::ApiError;
use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;
use tower_resilience_circuitbreaker::{
    CircuitBreaker, CircuitBreakerError, CircuitBreakerHandle, CircuitBreakerLayer, CircuitState, FnClassifier, SlidingWindowType,
};

/// One attempt, as a transport sends it.
type Attempt = BoxFuture<'static, Result<Bytes, Failure>>;
type Classifier = FnClassifier<fn(&Result<Bytes, Failure>) -> bool>;

/// An attempt as the circuit breaker passes it on (a named type: with the boxed future as
/// the request type itself, the compiler cannot prove the caller's future `Send`).
struct Pending(Attempt);

/// The innermost service: runs the attempt it is given (the circuit breaker around it
/// admits it or not, and records how it went).
#[derive(Clone, Copy)]
struct Run;

impl tower::Service<Pending> for Run {
    type Response = Bytes;
    type Error = Failure;
    type Future = Attempt;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, attempt: Pending) -> Attempt {
        attempt.0
    }
}

tokio::task_local! {
    /// Set while a health probe calls (see [`probing`]).
    static PROBING: ();
    /// The deadline of the call this work serves (see [`within_deadline`]).
    static CALLER_DEADLINE: chrono::DateTime<chrono::Utc>;
}

/// Runs `work` for a caller whose deadline is `deadline` (a call taken on the internal wire):
/// the remote calls it makes give up by then, each attempt's timeout cut to what is left, and
/// carry that deadline on in their own assertions.
pub async fn within_deadline<F: std::future::Future>(deadline: chrono::DateTime<chrono::Utc>, work: F) -> F::Output {
    CALLER_DEADLINE.scope(deadline, work).await
}

/// An attempt's timeout and deadline: `timeout` from now, or what is left of the caller's
/// deadline when that comes first. `None` when the caller's deadline has passed (send nothing).
pub fn attempt_bounds(timeout: Duration) -> Option<(Duration, chrono::DateTime<chrono::Utc>)> {
    let now = chrono::Utc::now();
    let own = now + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
    match CALLER_DEADLINE.try_with(|deadline| *deadline) {
        Ok(caller) if caller <= now => None,
        Ok(caller) if caller < own => Some(((caller - now).to_std().unwrap_or_default(), caller)),
        _ => Some((timeout, own)),
    }
}

/// The failure of an attempt not sent because its caller's deadline has passed.
pub(crate) fn past_callers_deadline() -> Failure {
    Failure::NotSent(ApiError::not_sent("the caller's deadline has passed; nothing was sent", 1))
}

/// Runs `probe`, a health probe's call, outside every circuit and bulkhead: its attempts are
/// sent even while the circuit is open and are not counted by it. A probe of a module that is
/// still starting never opens the circuit that clients' calls go through, and a probe tells
/// whether the module answers, not whether this process would send to it.
pub async fn probing<F: std::future::Future>(probe: F) -> F::Output {
    PROBING.scope((), probe).await
}

fn counts_against_upstream(result: &Result<Bytes, Failure>) -> bool {
    result.as_ref().err().is_some_and(Failure::counts_against_upstream)
}

/// Guards every call this process makes to one module (see the module docs).
pub struct Upstream {
    module: &'static str,
    transport: &'static str,
    policy: ResiliencePolicy,
    breaker: CircuitBreaker<Run, Classifier>,
    circuit: CircuitBreakerHandle<Classifier>,
    opened_at: Arc<Mutex<Option<Instant>>>,
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("module", &self.module).field("circuit", &self.circuit_status()).finish_non_exhaustive()
    }
}

impl Upstream {
    /// The guard of the calls to `module` over `transport` (`http`, `nats`: a metrics label).
    ///
    /// # Errors
    /// A policy the circuit breaker refuses (a failure rate outside (0, 1]), as a sentence
    /// naming the module.
    pub fn new(module: &'static str, transport: &'static str, policy: ResiliencePolicy) -> Result<Arc<Self>, String> {
        let opened_at = Arc::new(Mutex::new(None));
        let on_transition = opened_at.clone();
        let circuit = &policy.circuit;
        let (layer, handle) = CircuitBreakerLayer::builder()
            .name(module)
            .sliding_window_type(SlidingWindowType::TimeBased)
            .sliding_window_duration(circuit.window)
            .failure_rate_threshold(circuit.failure_rate)
            .minimum_number_of_calls(circuit.minimum_calls.max(1))
            .wait_duration_in_open(circuit.open_for)
            .permitted_calls_in_half_open(circuit.half_open_probes.max(1))
            .failure_classifier(counts_against_upstream as fn(&Result<Bytes, Failure>) -> bool)
            .on_state_transition(move |from, to| {
                let to = status_of(to);
                if let Ok(mut opened) = on_transition.lock() {
                    *opened = (to == CircuitStatus::Open).then(Instant::now);
                }
                metrics::gauge!("upstream_circuit_state", "module" => module).set(to.as_gauge());
                match to {
                    CircuitStatus::Open => tracing::warn!(module, from = ?status_of(from), "circuit opened: calls are refused at once"),
                    CircuitStatus::HalfOpen => tracing::info!(module, "circuit half-open: probing"),
                    CircuitStatus::Closed => tracing::info!(module, "circuit closed: calls flow again"),
                }
            })
            .build_with_handle()
            .map_err(|error| format!("the circuit breaker settings of {module} are invalid: {error}"))?;
        metrics::gauge!("upstream_circuit_state", "module" => module).set(CircuitStatus::Closed.as_gauge());
        let slots = Arc::new(Semaphore::new(policy.bulkhead.max_concurrent.max(1)));
        Ok(Arc::new(Self {
            module,
            transport,
            breaker: tower::Layer::layer(&layer, Run),
            circuit: handle,
            opened_at,
            slots,
            queued: AtomicUsize::new(0),
            policy,
        }))
    }

    /// The module it guards.
    pub const fn module(&self) -> &'static str {
        self.module
    }

    /// The wire it guards (`http`, `nats`).
    pub const fn transport(&self) -> &'static str {
        self.transport
    }

    /// The circuit's state now.
    pub fn circuit_status(&self) -> CircuitStatus {
        status_of(self.circuit.state())
    }

    /// Calls in flight now, and calls waiting for a slot.
    pub fn load(&self) -> (usize, usize) {
        let max = self.policy.bulkhead.max_concurrent.max(1);
        (max - self.slots.available_permits().min(max), self.queued.load(Ordering::Relaxed))
    }

    /// The bound on one attempt at an operation without a timeout of its own.
    pub const fn default_timeout(&self) -> Duration {
        self.policy.timeout
    }

    /// The bound on one attempt at `operation`.
    pub fn timeout_of(&self, operation: &str) -> Duration {
        self.policy.operation_timeouts.get(operation).copied().unwrap_or(self.policy.timeout)
    }

    /// Calls `operation`: `attempt(timeout)` sends one attempt, bounded by `timeout`.
    ///
    /// # Errors
    /// The upstream's own error; 503 known-not-sent at once while the circuit is open or
    /// the bulkhead is full (with `Retry-After`); the last attempt's error when every
    /// attempt failed (known-not-sent only if none of them may have run).
    pub async fn call(&self, operation: Operation, attempt: impl Fn(Duration) -> Attempt) -> Result<Bytes, ApiError> {
        let started = Instant::now();
        let result = self.attempts(operation, attempt).await;
        super::record_call(self.module, operation.name, self.transport, &result, started);
        result
    }

    async fn attempts(&self, operation: Operation, attempt: impl Fn(Duration) -> Attempt) -> Result<Bytes, ApiError> {
        let timeout = self.timeout_of(operation.name);
        let retry = &self.policy.retry;
        let retries = if operation.idempotent { retry.max_attempts.max(1) - 1 } else { 0 };
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(retry.base_delay)
            .with_max_delay(retry.max_delay)
            .with_jitter()
            .with_max_times(retries as usize)
            .build();
        // Known not to have run only if no attempt may have.
        let mut maybe_ran = false;
        loop {
            let failure = match self.attempt(timeout, &attempt).await {
                Ok(body) => return Ok(body),
                Err(Refused(error)) => return Err(error),
                Err(Tried(failure)) => failure,
            };
            maybe_ran |= !matches!(failure, Failure::NotSent(_));
            let delay = if failure.transient() { delays.next() } else { None };
            let Some(delay) = delay.filter(|_| self.refusing().is_none()) else {
                let error = failure.into_error();
                return Err(match error {
                    ApiError::Unavailable { detail, retry_after_secs, not_sent: true } if maybe_ran => {
                        ApiError::unavailable(detail, retry_after_secs)
                    }
                    error => error,
                });
            };
            metrics::counter!("contract_retries_total", "module" => self.module, "operation" => operation.name).increment(1);
            tracing::debug!(module = self.module, operation = operation.name, delay_ms = delay.as_millis() as u64, "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt through the circuit and the bulkhead.
    async fn attempt(&self, timeout: Duration, attempt: &impl Fn(Duration) -> Attempt) -> Result<Bytes, AttemptError> {
        if PROBING.try_with(|()| ()).is_ok() {
            return attempt(timeout).await.map_err(Tried);
        }
        if let Some(retry_after) = self.refusing() {
            return Err(Refused(self.circuit_open(retry_after)));
        }
        let slot = self.slot().await.ok_or_else(|| {
            metrics::counter!("upstream_rejected_total", "module" => self.module, "reason" => "bulkhead_full").increment(1);
            Refused(ApiError::not_sent(format!("too many calls to the {} module are in flight; nothing was sent", self.module), 1))
        })?;
        let _slot = InFlight { upstream: self, _permit: slot };
        self.record_load(0);
        match self.breaker.clone().oneshot(Pending(attempt(timeout))).await {
            Ok(body) => Ok(body),
            Err(CircuitBreakerError::Inner(failure)) => Err(Tried(failure)),
            Err(CircuitBreakerError::OpenCircuit) => Err(Refused(self.circuit_open(self.refusing().unwrap_or(Duration::from_secs(1))))),
        }
    }

    /// The bulkhead's saturation, as gauges (`leaving`: slots about to be given back).
    fn record_load(&self, leaving: usize) {
        let (in_flight, queued) = self.load();
        metrics::gauge!("upstream_in_flight", "module" => self.module).set(in_flight.saturating_sub(leaving) as f64);
        metrics::gauge!("upstream_queued", "module" => self.module).set(queued as f64);
    }

    fn circuit_open(&self, retry_after: Duration) -> ApiError {
        metrics::counter!("upstream_rejected_total", "module" => self.module, "reason" => "circuit_open").increment(1);
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        ApiError::not_sent(format!("the {} module is unavailable; nothing was sent", self.module), seconds)
    }

    /// A slot in the bulkhead: at once if one is free, else after waiting in the bounded
    /// queue; `None` when the queue is full or the wait runs out.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Some(permit);
        }
        let bulkhead = &self.policy.bulkhead;
        if self.queued.fetch_add(1, Ordering::AcqRel) >= bulkhead.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        // Leaves the queue however the wait ends (a cancelled caller included).
        struct Queued<'a>(&'a AtomicUsize);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _queued = Queued(&self.queued);
        tokio::time::timeout(bulkhead.max_wait, self.slots.clone().acquire_owned()).await.ok()?.ok()
    }
}

/// A call's slot in the bulkhead: the load gauges follow it out.
struct InFlight<'a> {
    upstream: &'a Upstream,
    _permit: OwnedSemaphorePermit,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // The permit goes back after this body: count it as gone already.
        self.upstream.record_load(1);
    }
}

enum AttemptError {
    /// Refused here (circuit open, bulkhead full): never sent, not to be retried.
    Refused(ApiError),
    /// Sent, or tried to be, and failed.
    Tried(Failure),
}
use AttemptError::{Refused, Tried};

impl CallGate for Upstream {
    fn refusing(&self) -> Option<Duration> {
        if self.circuit.state() != CircuitState::Open {
            return None;
        }
        let opened = self.opened_at.lock().ok().and_then(|opened| *opened)?;
        let open_for = self.policy.circuit.open_for;
        // Past `open_for` the next call is a half-open probe: let it through.
        open_for.checked_sub(opened.elapsed()).filter(|left| !left.is_zero())
    }
}

fn status_of(state: CircuitState) -> CircuitStatus {
    match state {
        CircuitState::Closed => CircuitStatus::Closed,
        CircuitState::HalfOpen => CircuitStatus::HalfOpen,
        CircuitState::Open => CircuitStatus::Open,
    }
}

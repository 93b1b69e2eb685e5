//! Integration events: the envelope every event travels in, the bus port, and the in-process
//! bus adapter.
//!
//! Guarantees, identical for every bus adapter (in-process now, NATS JetStream later):
//! - **at least once**: a published event reaches every consumer of its type, or that
//!   consumer's dead-letter store, before `publish` returns;
//! - **retries**: a failing handler is retried with exponential backoff and jitter, up to
//!   `RetryPolicy::max_attempts`; then the event and every attempt's time and error go to the
//!   consumer's dead letters;
//! - **order**: one consumer sees the events of one `publish` caller in publish order (the
//!   outbox relay publishes in commit order per aggregate);
//! - consumers make redeliveries harmless with an inbox (see `outbox::Inbox`).

use crate::RequestContext;
use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use uuid::Uuid;

/// An event a module publishes for others. Its type name is stable and versioned
/// (`users.user_registered.v1`): a new incompatible shape is a new type, published beside the old
/// one until every consumer moved.
pub trait IntegrationEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// `<module>.<event>.v<version>`.
    const TYPE: &'static str;
    const VERSION: u32;
    /// The aggregate this event is about; events of one aggregate are delivered in commit order.
    fn aggregate_id(&self) -> String;
}

/// The JSON Schema (2020-12) of an event type's payload, with the types it refers to under
/// `$defs`: what `docs/events/<type>.schema.json` holds and the contract check compares.
pub fn json_schema<E: IntegrationEvent + utoipa::ToSchema>() -> (&'static str, serde_json::Value) {
    fn local_refs(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(target)) = map.get_mut("$ref")
                    && let Some(name) = target.strip_prefix("#/components/schemas/")
                {
                    *target = format!("#/$defs/{name}");
                }
                map.values_mut().for_each(local_refs);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(local_refs),
            _ => {}
        }
    }
    let mut referenced = Vec::new();
    E::schemas(&mut referenced);
    let mut defs = serde_json::Map::new();
    for (name, schema) in referenced {
        defs.insert(name, serde_json::to_value(schema).unwrap_or_default());
    }
    let mut root = serde_json::Map::new();
    root.insert("$schema".to_owned(), "https://json-schema.org/draft/2020-12/schema".into());
    root.insert("$id".to_owned(), format!("urn:cleave:event:{}", E::TYPE).into());
    root.insert("title".to_owned(), E::TYPE.into());
    root.insert("x-event-version".to_owned(), E::VERSION.into());
    if let serde_json::Value::Object(schema) = serde_json::to_value(E::schema()).unwrap_or_default() {
        root.extend(schema);
    }
    if !defs.is_empty() {
        root.insert("$defs".to_owned(), defs.into());
    }
    let mut schema = serde_json::Value::Object(root);
    local_refs(&mut schema);
    (E::TYPE, schema)
}

/// What travels on the bus: metadata plus the event as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// UUIDv7; consumers deduplicate on it.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub occurred_at: DateTime<Utc>,
    pub aggregate_id: String,
    /// The request (or upstream event) that started the chain.
    pub correlation_id: Option<String>,
    /// The event that caused this one, if an event handler published it.
    pub causation_id: Option<Uuid>,
    /// W3C trace context of the request that produced it.
    pub traceparent: Option<String>,
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("cannot encode {event_type}: {detail}")]
    Encode { event_type: &'static str, detail: String },
    #[error("an event of type {actual} is not a {expected}")]
    WrongType { expected: &'static str, actual: String },
    #[error("{event_type} does not decode: {detail}")]
    Decode { event_type: String, detail: String },
}

impl EventEnvelope {
    /// Wraps `event`, taking correlation and trace from the current request, if any.
    ///
    /// # Errors
    /// When the event does not serialize (a bug in its type).
    pub fn wrap<E: IntegrationEvent>(event: &E, occurred_at: DateTime<Utc>, context: Option<&RequestContext>) -> Result<Self, EventError> {
        let payload = serde_json::to_value(event).map_err(|error| EventError::Encode { event_type: E::TYPE, detail: error.to_string() })?;
        Ok(Self {
            id: Uuid::now_v7(),
            event_type: E::TYPE.to_owned(),
            version: E::VERSION,
            occurred_at,
            aggregate_id: event.aggregate_id(),
            correlation_id: context.map(|c| c.request_id.clone()),
            causation_id: None,
            // The span that published it (a use case's, when traces are exported), so the
            // consumer's span hangs under it.
            traceparent: context.map(|c| crate::trace_context::current_trace().unwrap_or(c.trace).header_value()),
            payload,
        })
    }

    /// The event inside, if it is an `E`.
    ///
    /// # Errors
    /// Another type, or a payload that does not match `E`.
    pub fn decode<E: IntegrationEvent>(&self) -> Result<E, EventError> {
        if self.event_type != E::TYPE {
            return Err(EventError::WrongType { expected: E::TYPE, actual: self.event_type.clone() });
        }
        serde_json::from_value(self.payload.clone())
            .map_err(|error| EventError::Decode { event_type: self.event_type.clone(), detail: error.to_string() })
    }
}

/// Why a handler did not process an event. The message goes to the dead-letter record, so it
/// must not contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

impl HandlerError {
    pub fn new(message: impl std::fmt::Display) -> Self {
        Self(message.to_string())
    }
}

/// A consumer's reaction to an event. Must be idempotent (use an inbox): it may see an event
/// more than once.
#[async_trait::async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, event: &EventEnvelope) -> Result<(), HandlerError>;
}

/// One failed delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub error: String,
}

/// Where a consumer's given-up events go (kept in the consumer's own database).
#[async_trait::async_trait]
pub trait DeadLetterSink: Send + Sync + 'static {
    /// # Errors
    /// When the record cannot be stored; the bus then reports the publish as failed, so the
    /// event is published again later rather than lost.
    async fn dead_letter(&self, consumer: &str, event: &EventEnvelope, attempts: &[Attempt]) -> Result<(), String>;
}

/// The dead-letter store of a consumer that never fails (a live feed, a cache's invalidation):
/// nothing is ever given up, so nothing is kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDeadLetters;

#[async_trait::async_trait]
impl DeadLetterSink for NoDeadLetters {
    async fn dead_letter(&self, _consumer: &str, _event: &EventEnvelope, _attempts: &[Attempt]) -> Result<(), String> {
        Ok(())
    }
}

/// A durable consumer: a stable name, the event types it wants, its handler and its dead letters.
#[derive(Clone)]
pub struct Consumer {
    pub name: String,
    pub event_types: Vec<String>,
    pub handler: Arc<dyn EventHandler>,
    pub dead_letters: Arc<dyn DeadLetterSink>,
    /// Every process that subscribes gets every event (a live feed, e.g. GraphQL subscriptions),
    /// instead of the instances of a module sharing the work. Such a consumer does not resume
    /// after a restart: it sees what is published while it runs.
    pub each_process: bool,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("name", &self.name).field("event_types", &self.event_types).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("the bus is unavailable: {0}")]
    Unavailable(String),
    #[error("consumer `{0}` is already subscribed")]
    DuplicateConsumer(String),
}

/// The bus port. Adapters: [`InProcessBus`]; NATS JetStream later, with the same guarantees.
#[async_trait::async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Registers a durable consumer.
    ///
    /// # Errors
    /// A consumer name already taken.
    async fn subscribe(&self, consumer: Consumer) -> Result<(), BusError>;
    /// Hands `event` to the bus. When this returns `Ok`, every consumer of its type has it (or
    /// has dead-lettered it); on `Err` the caller keeps it and publishes again later.
    ///
    /// # Errors
    /// The bus (or a dead-letter store) is unavailable.
    async fn publish(&self, event: &EventEnvelope) -> Result<(), BusError>;
    /// Delivers `event` again to one consumer only (dead-letter replay).
    ///
    /// # Errors
    /// An unknown consumer, or the bus is unavailable.
    async fn redeliver(&self, consumer: &str, event: &EventEnvelope) -> Result<(), BusError>;
    /// Makes ready what `module`'s events go through, before its first one (over JetStream, its
    /// stream, which only the module's own process may make): called when the module is hosted,
    /// so consumers elsewhere find it at once.
    ///
    /// # Errors
    /// The bus is unavailable or refuses (a broker user without the rights).
    async fn prepare_publisher(&self, _module: &str) -> Result<(), BusError> {
        Ok(())
    }
    /// Stops delivering: each consumer finishes the event in hand, then takes no more (what it
    /// did not take stays with the broker, or is delivered by the relay after a restart).
    async fn shutdown(&self) {}
}

/// How often and how patiently a failing handler is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts before the event is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles each time, with ±50 % jitter.
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, base_delay_ms: 100, max_delay_ms: 5_000 }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exponential = self.base_delay_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(20)).min(self.max_delay_ms);
        let jitter = rand::random_range(0.5..1.5);
        Duration::from_millis((exponential as f64 * jitter) as u64)
    }
}

/// The in-process bus: each matching consumer handles the event in its own task (consumers do
/// not wait for each other), with retries; `publish` returns when all are done. Nothing is
/// kept in memory between publishes, so a crash loses nothing the outbox has not marked
/// delivered.
pub struct InProcessBus {
    consumers: RwLock<Vec<Arc<Consumer>>>,
    policy: RetryPolicy,
    clock: Arc<dyn crate::Clock>,
}

impl std::fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBus").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl InProcessBus {
    pub fn new(policy: RetryPolicy) -> Self {
        Self { consumers: RwLock::new(Vec::new()), policy, clock: Arc::new(crate::SystemClock) }
    }

    /// Where the bus reads the time it records for each failed attempt (default: the system
    /// clock).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn crate::Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn matching(&self, event_type: &str) -> Vec<Arc<Consumer>> {
        let consumers = self.consumers.read().unwrap_or_else(|p| p.into_inner());
        consumers.iter().filter(|c| c.event_types.iter().any(|t| t == event_type)).cloned().collect()
    }

    async fn deliver(&self, consumer: &Consumer, event: &EventEnvelope) -> Result<(), BusError> {
        deliver(consumer, event, self.policy, self.clock.as_ref()).await
    }
}

/// Hands `event` to `consumer` as every bus adapter does: retried with `policy`'s backoff, then
/// put in the consumer's dead-letter store with every attempt's time and error. `Ok` when it was
/// handled or dead-lettered.
///
/// # Errors
/// The dead-letter store is unavailable (the event must come again).
pub async fn deliver(consumer: &Consumer, event: &EventEnvelope, policy: RetryPolicy, clock: &dyn crate::Clock) -> Result<(), BusError> {
    use tracing::Instrument as _;
    // The consumer's span continues the trace of the request that published the event, in
    // whichever process it was published; what the handler calls and publishes stays in it.
    let span = tracing::info_span!(
        "event",
        otel.name = %format_args!("{} {}", consumer.name, event.event_type),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        messaging.consumer.group.name = %consumer.name,
        messaging.message.id = %event.id,
        event_type = %event.event_type,
        request_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let incoming = event.traceparent.as_deref().and_then(crate::TraceContext::parse);
    let trace = crate::trace_context::start_trace(&span, incoming);
    let request_id = event.correlation_id.clone().unwrap_or_else(|| event.id.to_string());
    span.record("request_id", request_id.as_str());
    if !span.is_disabled() {
        span.record("trace_id", trace.trace_id().as_str());
    }
    let context = RequestContext { request_id, trace };
    let delivered = crate::with_request_context(context, attempt_delivery(consumer, event, policy, clock)).instrument(span.clone()).await;
    if !matches!(delivered, Ok(Delivery::Handled)) {
        span.record("otel.status_code", "ERROR");
    }
    delivered.map(|_| ())
}

/// How a delivery ended.
enum Delivery {
    Handled,
    DeadLettered,
}

async fn attempt_delivery(
    consumer: &Consumer,
    event: &EventEnvelope,
    policy: RetryPolicy,
    clock: &dyn crate::Clock,
) -> Result<Delivery, BusError> {
    let mut attempts = Vec::new();
    let max_attempts = policy.max_attempts.max(1);
    for attempt in 1..=max_attempts {
        let outcome = std::panic::AssertUnwindSafe(consumer.handler.handle(event)).catch_unwind().await;
        let error = match outcome {
            Ok(Ok(())) => {
                metrics::counter!("events_handled_total", "consumer" => consumer.name.clone(), "type" => event.event_type.clone())
                    .increment(1);
                return Ok(Delivery::Handled);
            }
            Ok(Err(error)) => error.0,
            Err(_) => "the handler panicked".to_owned(),
        };
        tracing::warn!(consumer = %consumer.name, event_id = %event.id, event_type = %event.event_type, attempt, %error, "event handler failed");
        attempts.push(Attempt { at: clock.now(), error });
        if attempt < max_attempts {
            metrics::counter!("events_retries_total", "consumer" => consumer.name.clone()).increment(1);
            tokio::time::sleep(policy.delay_after(attempt)).await;
        }
    }
    consumer.dead_letters.dead_letter(&consumer.name, event, &attempts).await.map_err(BusError::Unavailable)?;
    metrics::counter!("events_dead_lettered_total", "consumer" => consumer.name.clone()).increment(1);
    tracing::error!(consumer = %consumer.name, event_id = %event.id, event_type = %event.event_type, "event dead-lettered");
    Ok(Delivery::DeadLettered)
}

#[async_trait::async_trait]
impl EventBus for InProcessBus {
    async fn subscribe(&self, consumer: Consumer) -> Result<(), BusError> {
        let mut consumers = self.consumers.write().unwrap_or_else(|p| p.into_inner());
        if consumers.iter().any(|c| c.name == consumer.name) {
            return Err(BusError::DuplicateConsumer(consumer.name));
        }
        consumers.push(Arc::new(consumer));
        Ok(())
    }

    async fn publish(&self, event: &EventEnvelope) -> Result<(), BusError> {
        let consumers = self.matching(&event.event_type);
        let results = futures::future::join_all(consumers.iter().map(|consumer| self.deliver(consumer, event))).await;
        results.into_iter().collect()
    }

    async fn redeliver(&self, consumer: &str, event: &EventEnvelope) -> Result<(), BusError> {
        let found = self.consumers.read().unwrap_or_else(|p| p.into_inner()).iter().find(|c| c.name == consumer).cloned();
        let consumer = found.ok_or_else(|| BusError::Unavailable(format!("no consumer named `{consumer}`")))?;
        self.deliver(&consumer, event).await
    }
}

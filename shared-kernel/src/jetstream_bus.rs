//! The bus port over NATS JetStream, so that events cross processes.
//!
//! - **One stream per publishing module**, `<PREFIX>_EVENTS_<MODULE>`, on the subjects
//!   `<prefix>.events.<module>.>` (an event of type `orders.order_confirmed.v1` goes to
//!   `cleave.events.orders.order_confirmed.v1`). Created or updated by the process that
//!   publishes its events, before its first one; a consumer never makes another module's stream
//!   (under `cleave trust init`'s broker permissions it could not): it reads the stream once it
//!   exists, waiting for it, and misses nothing (a durable consumer starts
//!   at the stream's first event). File storage,
//!   limits retention (events are kept for [`JetStreamSettings::max_age`], 7 days by default,
//!   whoever has read them), and a duplicate window ([`JetStreamSettings::duplicate_window`],
//!   2 minutes by default).
//! - **Publish** sends the envelope with `Nats-Msg-Id` = the event id and returns only after the
//!   stream's ack: the relay marks the outbox row delivered after that, so a relay that dies in
//!   between publishes again and the server drops the duplicate within the window (past it, the
//!   consumers' inbox drops it).
//! - **One durable consumer per subscriber and stream**, named after `Consumer::name`: the
//!   instances of a module share its work, and a restarted process resumes where the consumer
//!   stopped. A consumer marked `each_process` (a live feed) gets an ephemeral consumer of its
//!   own instead: every process sees every new event. One message in flight per consumer (`max_ack_pending = 1`), so events reach it in
//!   stream order, which is each publisher's commit order: per-aggregate order holds across
//!   instances as in process. A message is acked only after the handler returned (its
//!   transaction committed); the handler's inbox still drops a redelivery.
//! - **Retries** with the policy's backoff, then the consumer's dead-letter store, with every
//!   attempt's time and error, exactly as in process ([`crate::events::deliver`]), and the message
//!   is acked (confirmed by the server, tried again while it is away). While a handler works, the
//!   consumer tells the server so every third of `ack_wait`; so `ack_wait` (10 s) bounds only what
//!   a delivery lost in a broker restart costs. A replay delivers to the local consumer only.

use crate::Clock;
use crate::events::{BusError, Consumer, EventBus, EventEnvelope, RetryPolicy};
use async_nats::jetstream;
use futures::StreamExt as _;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the streams are kept.
#[derive(Debug, Clone)]
pub struct JetStreamSettings {
    /// The first token of every subject, and (upper-cased) of every stream name.
    pub prefix: String,
    /// How long a stream keeps an event.
    pub max_age: Duration,
    /// Within this window a republished event (same id) is dropped by the server.
    pub duplicate_window: Duration,
    /// How long the server waits for a consumer's ack (or its "still working") before it
    /// delivers again: what a delivery lost with a broker restart costs the consumer.
    pub ack_wait: Duration,
}

impl Default for JetStreamSettings {
    fn default() -> Self {
        Self {
            prefix: "cleave".to_owned(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            ack_wait: Duration::from_secs(10),
        }
    }
}

/// The bus over JetStream.
pub struct JetStreamBus {
    context: jetstream::Context,
    settings: JetStreamSettings,
    policy: RetryPolicy,
    clock: Arc<dyn Clock>,
    consumers: Mutex<BTreeMap<String, Arc<Consumer>>>,
    workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Set on shutdown: each worker finishes the event in hand and stops.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The modules whose stream this bus has made sure of (a publisher makes its own).
    streams: Mutex<std::collections::BTreeSet<String>>,
}

impl std::fmt::Debug for JetStreamBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamBus").field("settings", &self.settings).field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Drop for JetStreamBus {
    fn drop(&mut self) {
        for worker in self.workers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            worker.abort();
        }
    }
}

/// The module that publishes events of `event_type` (its first dotted token).
fn module_of(event_type: &str) -> &str {
    event_type.split('.').next().unwrap_or(event_type)
}

/// A NATS name from free text: letters, digits, `-` and `_` only.
fn token(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// The stream of `module`'s events under subject prefix `prefix`: `<PREFIX>_EVENTS_<MODULE>`.
pub fn stream_name(prefix: &str, module: &str) -> String {
    format!("{}_EVENTS_{}", token(prefix).to_uppercase(), token(module).to_uppercase())
}

/// Stream `name`, or `None` while it does not exist yet (its module has not started).
async fn existing_stream(context: &jetstream::Context, name: &str) -> Result<Option<jetstream::stream::Stream>, BusError> {
    match context.get_stream(name).await {
        Ok(stream) => Ok(Some(stream)),
        Err(error) => match error.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(inner) if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND => {
                Ok(None)
            }
            _ => Err(unavailable(&format!("stream {name}"), error)),
        },
    }
}

/// A pull consumer on stream `name` with `config`, once the stream exists: waits for its module
/// to make it (looking again four times a second) unless `stopping`. `None` when stopped first.
async fn consumer_when_ready(
    context: &jetstream::Context,
    name: &str,
    config: &jetstream::consumer::pull::Config,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<jetstream::consumer::Consumer<jetstream::consumer::pull::Config>> {
    let mut told = false;
    loop {
        match existing_stream(context, name).await {
            Ok(Some(stream)) => match stream.create_consumer(config.clone()).await {
                Ok(consumer) => return Some(consumer),
                Err(error) => tracing::warn!(stream = name, %error, "cannot create an event consumer; retrying"),
            },
            Ok(None) if !told => {
                tracing::info!(stream = name, "the stream does not exist yet (its module has not published); waiting for it");
                told = true;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot look up an event stream; retrying"),
        }
        let stop = tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => true,
            () = tokio::time::sleep(Duration::from_millis(250)) => false,
        };
        if stop {
            return None;
        }
    }
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("{what}: {error}"))
}

impl JetStreamBus {
    pub fn new(client: async_nats::Client, settings: JetStreamSettings, policy: RetryPolicy, clock: Arc<dyn Clock>) -> Self {
        Self {
            context: jetstream::new(client),
            settings,
            policy,
            clock,
            consumers: Mutex::new(BTreeMap::new()),
            workers: Mutex::new(Vec::new()),
            stopping: tokio::sync::watch::channel(false).0,
            streams: Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    /// The stream of `module`'s events, created or brought up to date.
    ///
    /// # Errors
    /// JetStream is unavailable or refuses the configuration.
    pub async fn ensure_stream(&self, module: &str) -> Result<jetstream::stream::Stream, BusError> {
        let name = stream_name(&self.settings.prefix, module);
        let config = jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("{}.events.{module}.>", self.settings.prefix)],
            retention: jetstream::stream::RetentionPolicy::Limits,
            storage: jetstream::stream::StorageType::File,
            max_age: self.settings.max_age,
            duplicate_window: self.settings.duplicate_window,
            ..Default::default()
        };
        self.context.create_or_update_stream(config).await.map_err(|error| unavailable(&format!("stream {name}"), error))?;
        self.context.get_stream(&name).await.map_err(|error| unavailable(&format!("stream {name}"), error))
    }

    fn subject(&self, event_type: &str) -> String {
        format!("{}.events.{event_type}", self.settings.prefix)
    }

    /// Acks a handled event and waits for the server to confirm it. While the broker is away
    /// (a restart), it tries again, for up to `ack_wait`: an ack lost with the broker would
    /// otherwise hold the consumer (one event in flight) until the server redelivers. Past that,
    /// the redelivery comes and the inbox drops it.
    async fn ack(consumer: &Consumer, event: &EventEnvelope, message: &jetstream::Message, ack_wait: Duration) {
        let deadline = tokio::time::Instant::now() + ack_wait;
        let mut delay = Duration::from_millis(50);
        loop {
            match message.double_ack().await {
                Ok(()) => return,
                Err(error) if tokio::time::Instant::now() + delay < deadline => {
                    tracing::debug!(consumer = %consumer.name, event_id = %event.id, %error, "an ack did not get through; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(error) => {
                    // The effect is committed; the redelivery is dropped by the inbox.
                    tracing::warn!(consumer = %consumer.name, event_id = %event.id, %error, "cannot ack an event; it will come again");
                    return;
                }
            }
        }
    }

    /// Handles one message for `consumer`: retries, then the dead-letter store; acks when done.
    /// `events_subject` is the subjects' common start (`<prefix>.events.`).
    async fn handle(
        consumer: &Consumer,
        events_subject: &str,
        policy: RetryPolicy,
        clock: &dyn Clock,
        ack_wait: Duration,
        message: jetstream::Message,
    ) {
        let event: EventEnvelope = match serde_json::from_slice(&message.payload) {
            Ok(event) => event,
            Err(error) => {
                // Not an event of ours: nothing can ever handle it.
                tracing::error!(consumer = %consumer.name, subject = %message.subject, %error, "an unreadable message on an event stream; dropped");
                let _ = message.ack().await;
                return;
            }
        };
        // An event is published on the subject of its own type, in its own module's stream; one
        // whose type names another module (or another type) than the subject it came on was not
        // published by a relay of ours: whoever could publish on that module's subjects is trying
        // to speak for another. It is never handled, and kept with the reason.
        let arrived_as = message.subject.as_str().strip_prefix(events_subject).unwrap_or(message.subject.as_str());
        if arrived_as != event.event_type {
            let reason = format!(
                "refused: the event says it is a {} but arrived as {arrived_as} on the stream of the {} module",
                event.event_type,
                module_of(arrived_as)
            );
            tracing::error!(consumer = %consumer.name, event_id = %event.id, event_type = %event.event_type, subject = %message.subject, "an event on another module's stream; refused and dead-lettered");
            metrics::counter!("events_refused_total", "consumer" => consumer.name.clone(), "reason" => "foreign_stream").increment(1);
            let attempts = [crate::events::Attempt { at: clock.now(), error: reason }];
            match consumer.dead_letters.dead_letter(&consumer.name, &event, &attempts).await {
                Ok(()) => Self::ack(consumer, &event, &message, ack_wait).await,
                Err(error) => {
                    tracing::error!(consumer = %consumer.name, event_id = %event.id, %error, "cannot dead-letter a refused event; it will come again");
                    let _ = message.ack_with(jetstream::AckKind::Nak(Some(Duration::from_secs(5)))).await;
                }
            }
            return;
        }
        // A server before 2.10 ignores `filter_subjects` and delivers the whole stream: what the
        // consumer did not subscribe to is passed over here.
        if !consumer.event_types.contains(&event.event_type) {
            tracing::trace!(consumer = %consumer.name, event_type = %event.event_type, "not subscribed to this event type; passed over");
            Self::ack(consumer, &event, &message, ack_wait).await;
            return;
        }
        // While the handler (and its retries) runs, tell the server it is still in hand, so that
        // `ack_wait` bounds only a lost delivery, not a slow handler.
        let message = Arc::new(message);
        let keep_alive = tokio::spawn({
            let message = message.clone();
            async move {
                loop {
                    tokio::time::sleep(ack_wait / 3).await;
                    let _ = message.ack_with(jetstream::AckKind::Progress).await;
                }
            }
        });
        // The events still waiting for this consumer behind this one, as the server counted them
        // when it delivered it.
        if let Ok(info) = message.info() {
            metrics::gauge!("events_consumer_lag", "consumer" => consumer.name.clone()).set(info.pending as f64);
        }
        let delivered = crate::events::deliver(consumer, &event, policy, clock).await;
        keep_alive.abort();
        match delivered {
            Ok(()) => Self::ack(consumer, &event, &message, ack_wait).await,
            Err(error) => {
                // Nothing is lost: without an ack the server delivers it again.
                tracing::error!(consumer = %consumer.name, event_id = %event.id, %error, "cannot dead-letter an event; it will come again");
                let _ = message.ack_with(jetstream::AckKind::Nak(Some(Duration::from_secs(5)))).await;
            }
        }
    }
}

#[async_trait::async_trait]
impl EventBus for JetStreamBus {
    async fn subscribe(&self, consumer: Consumer) -> Result<(), BusError> {
        let consumer = Arc::new(consumer);
        {
            let mut consumers = self.consumers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if consumers.contains_key(&consumer.name) {
                return Err(BusError::DuplicateConsumer(consumer.name.clone()));
            }
            consumers.insert(consumer.name.clone(), consumer.clone());
        }
        let mut by_module: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for event_type in &consumer.event_types {
            by_module.entry(module_of(event_type)).or_default().push(self.subject(event_type));
        }
        for (module, mut subjects) in by_module {
            // A consumer never makes or changes another module's stream (the broker lets only
            // the module's own identity do that): it reads the stream once it exists.
            let stream_name = stream_name(&self.settings.prefix, module);
            let stream = existing_stream(&self.context, &stream_name).await?;
            let durable = token(&consumer.name);
            // One subject goes in `filter_subject`, which every server since 2.2 applies; several
            // need `filter_subjects` (2.10 and later; an older server delivers the whole stream
            // and `handle` passes over the rest).
            let (filter_subject, filter_subjects) =
                if subjects.len() == 1 { (subjects.pop().unwrap_or_default(), Vec::new()) } else { (String::new(), subjects) };
            let config = if consumer.each_process {
                // Ephemeral: this process alone, from now on; the server drops it once idle.
                jetstream::consumer::pull::Config {
                    filter_subject,
                    filter_subjects,
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.settings.ack_wait,
                    max_ack_pending: 1,
                    deliver_policy: jetstream::consumer::DeliverPolicy::New,
                    inactive_threshold: Duration::from_secs(60),
                    ..Default::default()
                }
            } else {
                jetstream::consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject,
                    filter_subjects,
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.settings.ack_wait,
                    max_ack_pending: 1,
                    deliver_policy: jetstream::consumer::DeliverPolicy::All,
                    ..Default::default()
                }
            };
            // Created, or updated to this release's filter (a consumer's event types may change).
            let pull = match stream {
                Some(stream) => {
                    Some(stream.create_consumer(config.clone()).await.map_err(|error| unavailable(&format!("consumer {durable}"), error))?)
                }
                None => None,
            };
            let (consumer, policy, clock, ack_wait) = (consumer.clone(), self.policy, self.clock.clone(), self.settings.ack_wait);
            let events_subject = format!("{}.events.", self.settings.prefix);
            let mut stopping = self.stopping.subscribe();
            let context = self.context.clone();
            let worker = tokio::spawn(async move {
                let pull = match pull {
                    Some(pull) => Some(pull),
                    None => consumer_when_ready(&context, &stream_name, &config, &mut stopping).await,
                };
                let Some(mut pull) = pull else { return };
                loop {
                    match pull.messages().await {
                        Ok(mut messages) => loop {
                            // The stop is looked at between events only: the one in hand is
                            // handled and acked first.
                            let next = tokio::select! {
                                biased;
                                _ = stopping.wait_for(|stop| *stop) => None,
                                message = messages.next() => Some(message),
                            };
                            let Some(message) = next else {
                                // What already arrived goes back to the server at once, for the
                                // next process (else it waits out `ack_wait`).
                                use futures::FutureExt as _;
                                let mut arrived = Vec::new();
                                while let Some(Some(next)) = messages.next().now_or_never() {
                                    arrived.extend(next.ok());
                                }
                                for message in arrived {
                                    let _ = message.ack_with(jetstream::AckKind::Nak(None)).await;
                                }
                                return;
                            };
                            match message {
                                Some(Ok(message)) => {
                                    Self::handle(&consumer, &events_subject, policy, clock.as_ref(), ack_wait, message).await
                                }
                                Some(Err(error)) => {
                                    tracing::warn!(consumer = %consumer.name, %error, "an event stream broke off; reading again");
                                    break;
                                }
                                None => break,
                            }
                        },
                        Err(error) => tracing::warn!(consumer = %consumer.name, %error, "cannot read an event stream; retrying"),
                    }
                    let stop = tokio::select! {
                        _ = stopping.wait_for(|stop| *stop) => true,
                        () = tokio::time::sleep(Duration::from_secs(1)) => false,
                    };
                    if stop {
                        return;
                    }
                    // The consumer may be gone (an ephemeral one after a long outage, a deleted
                    // durable or stream): make sure of it before reading again.
                    match consumer_when_ready(&context, &stream_name, &config, &mut stopping).await {
                        Some(again) => pull = again,
                        None => return,
                    }
                }
            });
            self.workers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(worker);
        }
        Ok(())
    }

    async fn publish(&self, event: &EventEnvelope) -> Result<(), BusError> {
        // The publishing module's stream exists whether or not anything consumes it yet.
        let module = module_of(&event.event_type).to_owned();
        let known = self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&module);
        if !known {
            self.ensure_stream(&module).await?;
            self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(module);
        }
        let payload = serde_json::to_vec(event).map_err(|error| unavailable("encode", error))?;
        let message = jetstream::message::PublishMessage::build().payload(payload.into()).message_id(event.id.to_string());
        let ack =
            self.context.send_publish(self.subject(&event.event_type), message).await.map_err(|error| unavailable("publish", error))?;
        ack.await.map_err(|error| unavailable("publish ack", error))?;
        Ok(())
    }

    async fn prepare_publisher(&self, module: &str) -> Result<(), BusError> {
        self.ensure_stream(module).await?;
        self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(module.to_owned());
        Ok(())
    }

    async fn shutdown(&self) {
        self.stopping.send_replace(true);
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for worker in workers {
            let _ = worker.await;
        }
    }

    async fn redeliver(&self, consumer: &str, event: &EventEnvelope) -> Result<(), BusError> {
        let found = self.consumers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(consumer).cloned();
        let consumer = found.ok_or_else(|| BusError::Unavailable(format!("no consumer `{consumer}` in this process")))?;
        crate::events::deliver(&consumer, event, self.policy, self.clock.as_ref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_names_are_nats_tokens() {
        assert_eq!(module_of("orders.order_confirmed.v1"), "orders");
        assert_eq!(token("catalog.sales counter"), "catalog_sales_counter");
        let settings = JetStreamSettings::default();
        assert_eq!(settings.duplicate_window, Duration::from_secs(120));
    }
}

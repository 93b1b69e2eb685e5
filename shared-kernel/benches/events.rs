//! Event throughput. Run: `cargo bench -p shared-kernel --bench events`
//! (PostgreSQL figures need `DATABASE_URL`, a server where databases may be created).
//!
//! 1. Raw in-memory dispatch: `InProcessBus::publish` of one prepared envelope to one consumer
//!    whose handler does nothing, in a loop on one task.
//! 2. Outbox → relay → handler with inbox: events committed one per transaction (each its own
//!    unit of work), then the relay drains them to a handler that records each in its inbox
//!    and writes one row, in its own transaction. Reported: commits/s of the producer, and
//!    delivered events/s of the relay.
//! 3. Over NATS JetStream (`NATS_URL`, else a throwaway `nats-server`): the raw rate of
//!    async-nats JetStream publishes, each awaiting its ack as the relay does; then events
//!    committed to the outbox, relayed through one bus connection and handled (inbox, one row)
//!    through another, as two processes would. Reported: the relay's publish rate and the
//!    handled rate, commit to effect.

use migrations::MigratorTrait as _;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde::{Deserialize, Serialize};
use shared_kernel::db::{DatabaseTarget, connect_module};
use shared_kernel::events::{
    Consumer, DeadLetterSink, EventBus, EventEnvelope, EventHandler, HandlerError, InProcessBus, IntegrationEvent, RetryPolicy,
};
use shared_kernel::outbox::{DeadLetterStore, Inbox, Outbox, Relay, UnitOfWork};
use std::sync::Arc;
use std::time::Instant;

#[derive(Serialize, Deserialize)]
struct Ping {
    n: u64,
}

impl IntegrationEvent for Ping {
    const TYPE: &'static str = "bench.ping.v1";
    const VERSION: u32 = 1;
    fn aggregate_id(&self) -> String {
        (self.n % 64).to_string()
    }
}

struct Nothing;

#[async_trait::async_trait]
impl EventHandler for Nothing {
    async fn handle(&self, _: &EventEnvelope) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl DeadLetterSink for Nothing {
    async fn dead_letter(&self, _: &str, _: &EventEnvelope, _: &[shared_kernel::events::Attempt]) -> Result<(), String> {
        Ok(())
    }
}

struct Recording {
    db: DatabaseConnection,
}

#[async_trait::async_trait]
impl EventHandler for Recording {
    async fn handle(&self, event: &EventEnvelope) -> Result<(), HandlerError> {
        let Some(transaction) = Inbox::begin(&self.db, &shared_kernel::SystemClock, "bench", event.id).await.map_err(HandlerError::new)?
        else {
            return Ok(());
        };
        let sql = format!("INSERT INTO bench_effects (aggregate_id) VALUES ('{}')", event.aggregate_id);
        transaction.execute_unprepared(&sql).await.map_err(HandlerError::new)?;
        transaction.commit().await.map_err(HandlerError::new)
    }
}

async fn raw_dispatch(events: u64) {
    let bus = InProcessBus::new(RetryPolicy::default());
    bus.subscribe(Consumer {
        name: "nothing".into(),
        event_types: vec![Ping::TYPE.into()],
        handler: Arc::new(Nothing),
        dead_letters: Arc::new(Nothing),
        each_process: false,
    })
    .await
    .unwrap();
    let envelope = EventEnvelope::wrap(&Ping { n: 1 }, chrono::Utc::now(), None).unwrap();
    for _ in 0..10_000 {
        bus.publish(&envelope).await.unwrap();
    }
    let started = Instant::now();
    for _ in 0..events {
        bus.publish(&envelope).await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "raw in-memory dispatch: {events} events in {:.3} s = {:.0} events/s",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64()
    );
}

/// Commits `events` pings, one per unit of work.
async fn commit_pings(db: &DatabaseConnection, outbox: &Outbox, events: u64) {
    for n in 0..events {
        let mut unit = UnitOfWork::begin(db, outbox).await.unwrap();
        unit.publish(&Ping { n }, chrono::Utc::now(), None).await.unwrap();
        unit.commit().await.unwrap();
    }
}

/// Runs the relay's batches until nothing is left; returns how many it delivered.
async fn drain(relay: &Relay) -> usize {
    let mut delivered = 0;
    loop {
        let batch = relay.deliver_batch().await.unwrap();
        if batch == 0 {
            return delivered;
        }
        delivered += batch;
    }
}

/// The bench's database: the event tables and one table of effects.
async fn bench_database(target: &DatabaseTarget) -> DatabaseConnection {
    let db = connect_module("bench", target, 8).await.unwrap();
    migrations::event_tables::EventTablesOnly::up(&db, None).await.unwrap();
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        "CREATE TABLE IF NOT EXISTS bench_effects (aggregate_id VARCHAR(64) NOT NULL)",
    ))
    .await
    .unwrap();
    db
}

/// A consumer recording each event once (inbox), one row per event.
fn recording_consumer(db: &DatabaseConnection) -> Consumer {
    Consumer {
        name: "bench".into(),
        event_types: vec![Ping::TYPE.into()],
        handler: Arc::new(Recording { db: db.clone() }),
        dead_letters: Arc::new(DeadLetterStore::new(db.clone(), "bench")),
        each_process: false,
    }
}

async fn outbox_to_handler(label: &str, target: DatabaseTarget, events: u64) {
    let db = bench_database(&target).await;
    let outbox = Outbox::new("bench");
    let bus = Arc::new(InProcessBus::new(RetryPolicy::default()));
    bus.subscribe(recording_consumer(&db)).await.unwrap();
    let started = Instant::now();
    commit_pings(&db, &outbox, events).await;
    let produced = started.elapsed();
    let relay = Relay::new(db.clone(), outbox, bus);
    let started = Instant::now();
    let delivered = drain(&relay).await;
    let drained = started.elapsed();
    assert_eq!(delivered as u64, events);
    println!(
        "{label}: {events} events committed one per transaction at {:.0}/s; relayed to a handler with inbox at {:.0}/s",
        events as f64 / produced.as_secs_f64(),
        events as f64 / drained.as_secs_f64()
    );
}

/// Raw JetStream publishes, one at a time, each awaiting its ack.
async fn raw_jetstream_publish(client: &async_nats::Client, prefix: &str, events: u64) -> f64 {
    let context = async_nats::jetstream::new(client.clone());
    let stream = format!("{}_RAW", prefix.to_uppercase());
    context
        .create_or_update_stream(async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{prefix}.raw.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    let payload = serde_json::to_vec(&EventEnvelope::wrap(&Ping { n: 1 }, chrono::Utc::now(), None).unwrap()).unwrap();
    let started = Instant::now();
    for _ in 0..events {
        context.publish(format!("{prefix}.raw.ping"), payload.clone().into()).await.unwrap().await.unwrap();
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    context.delete_stream(&stream).await.unwrap();
    println!("raw JetStream publish, each awaiting its ack: {events} at {rate:.0}/s");
    rate
}

/// Outbox → relay (one connection) → JetStream → consumer with inbox (another connection).
async fn outbox_over_jetstream(url: &str, prefix: &str, target: DatabaseTarget, events: u64, raw: f64) {
    use shared_kernel::jetstream_bus::{JetStreamBus, JetStreamSettings};
    let db = bench_database(&target).await;
    let bus = |client| {
        let settings = JetStreamSettings { prefix: prefix.to_owned(), ..JetStreamSettings::default() };
        Arc::new(JetStreamBus::new(client, settings, RetryPolicy::default(), Arc::new(shared_kernel::SystemClock)))
    };
    let consuming = bus(async_nats::connect(url).await.unwrap());
    consuming.subscribe(recording_consumer(&db)).await.unwrap();
    let outbox = Outbox::new("bench");
    commit_pings(&db, &outbox, events).await;
    let relay = Relay::new(db.clone(), outbox, bus(async_nats::connect(url).await.unwrap()));
    let started = Instant::now();
    let delivered = drain(&relay).await;
    let published = started.elapsed();
    assert_eq!(delivered as u64, events);
    let count = || async {
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), "SELECT COUNT(*) AS n FROM bench_effects"))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    };
    while count().await < events as i64 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let handled = started.elapsed();
    let relay_rate = events as f64 / published.as_secs_f64();
    println!(
        "outbox → JetStream → handler with inbox, two connections: relay published {events} at {relay_rate:.0}/s ({:.0} % of raw), all handled at {:.0}/s",
        100.0 * relay_rate / raw,
        events as f64 / handled.as_secs_f64()
    );
    let context = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    let _ = context.delete_stream(format!("{}_EVENTS_BENCH", prefix.to_uppercase())).await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        raw_dispatch(2_000_000).await;
        let temp = tempfile::tempdir().unwrap();
        outbox_to_handler("SQLite (WAL, synchronous=NORMAL)", DatabaseTarget::SqliteDir(temp.path().to_owned()), 5_000).await;
        match cleave_test_support::postgres() {
            Some(server) => {
                let url = server.fresh_database().await.unwrap();
                outbox_to_handler("PostgreSQL", DatabaseTarget::Url(url), 5_000).await;
            }
            None => println!("PostgreSQL: skipped (no server; set DATABASE_URL)"),
        }
        let server = cleave_test_support::nats().expect("a NATS server (NATS_URL, or nats-server installed)");
        let client = async_nats::connect(server.url.as_str()).await.unwrap();
        let prefix = cleave_test_support::nats::unique_prefix();
        let raw = raw_jetstream_publish(&client, &prefix, 5_000).await;
        let temp = tempfile::tempdir().unwrap();
        outbox_over_jetstream(&server.url, &prefix, DatabaseTarget::SqliteDir(temp.path().to_owned()), 5_000, raw).await;
    });
}

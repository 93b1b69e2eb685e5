//! Event throughput. Run: `cargo bench -p shared-kernel --bench events`
//! (PostgreSQL figures need `DATABASE_URL`, a server where databases may be created).
//!
//! 1. Raw in-memory dispatch: `InProcessBus::publish` of one prepared envelope to one consumer
//!    whose handler does nothing, in a loop on one task.
//! 2. Outbox → relay → handler with inbox: events committed one per transaction (each its own
//!    unit of work), then the relay drains them to a handler that records each in its inbox
//!    and writes one row, in its own transaction. Reported: commits/s of the producer, and
//!    delivered events/s of the relay.

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

async fn outbox_to_handler(label: &str, target: DatabaseTarget, events: u64) {
    let db = connect_module("bench", &target, 8).await.unwrap();
    migrations::event_tables::EventTablesOnly::up(&db, None).await.unwrap();
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        "CREATE TABLE IF NOT EXISTS bench_effects (aggregate_id VARCHAR(64) NOT NULL)",
    ))
    .await
    .unwrap();
    let outbox = Outbox::new("bench");
    let bus = Arc::new(InProcessBus::new(RetryPolicy::default()));
    bus.subscribe(Consumer {
        name: "bench".into(),
        event_types: vec![Ping::TYPE.into()],
        handler: Arc::new(Recording { db: db.clone() }),
        dead_letters: Arc::new(DeadLetterStore::new(db.clone(), "bench")),
        each_process: false,
    })
    .await
    .unwrap();
    let started = Instant::now();
    for n in 0..events {
        let mut unit = UnitOfWork::begin(&db, &outbox).await.unwrap();
        unit.publish(&Ping { n }, chrono::Utc::now(), None).await.unwrap();
        unit.commit().await.unwrap();
    }
    let produced = started.elapsed();
    let relay = Relay::new(db.clone(), outbox, bus);
    let started = Instant::now();
    let mut delivered = 0;
    loop {
        let batch = relay.deliver_batch().await.unwrap();
        if batch == 0 {
            break;
        }
        delivered += batch;
    }
    let drained = started.elapsed();
    assert_eq!(delivered as u64, events);
    println!(
        "{label}: {events} events committed one per transaction at {:.0}/s; relayed to a handler with inbox at {:.0}/s",
        events as f64 / produced.as_secs_f64(),
        events as f64 / drained.as_secs_f64()
    );
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
    });
}

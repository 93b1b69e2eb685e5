//! The event backbone's guarantees, on SQLite and on PostgreSQL: nothing committed is lost
//! across a crash, nothing rolled back is published, retries apply an effect once, poison
//! events are dead-lettered with every attempt and replay once, duplicates have no second
//! effect, events of one aggregate arrive in commit order under concurrent writers, and a
//! commit wakes the relay without waiting for its poll.

use migrations::MigratorTrait as _;
use migrations::event_tables::EventTablesOnly;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::{Deserialize, Serialize};
use shared_kernel::db::{DatabaseTarget, connect_module};
use shared_kernel::events::{Consumer, EventBus, EventEnvelope, EventHandler, HandlerError, InProcessBus, IntegrationEvent, RetryPolicy};
use shared_kernel::outbox::{DeadLetterStore, Inbox, Outbox, Relay, UnitOfWork};
use shared_kernel::{Clock as _, PageRequest};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Bumped {
    aggregate: String,
    version: i64,
}

impl IntegrationEvent for Bumped {
    const TYPE: &'static str = "tests.bumped.v1";
    const VERSION: u32 = 1;
    fn aggregate_id(&self) -> String {
        self.aggregate.clone()
    }
}

/// Where a test's data lives; reconnecting to it is "restarting the process".
#[derive(Clone)]
struct Place {
    target: DatabaseTarget,
    _temp: Option<Arc<tempfile::TempDir>>,
}

impl Place {
    async fn sqlite() -> Option<Self> {
        let temp = tempfile::tempdir().unwrap();
        Some(Self { target: DatabaseTarget::SqliteDir(temp.path().to_owned()), _temp: Some(Arc::new(temp)) })
    }

    async fn postgres() -> Option<Self> {
        let server = cleave_test_support::postgres()?;
        Some(Self { target: DatabaseTarget::Url(server.fresh_database().await.unwrap()), _temp: None })
    }

    async fn connect(&self) -> DatabaseConnection {
        let db = connect_module("tests", &self.target, 8).await.unwrap();
        EventTablesOnly::up(&db, None).await.unwrap();
        for sql in [
            "CREATE TABLE IF NOT EXISTS aggregates (id VARCHAR(64) PRIMARY KEY, version BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS effects (consumer VARCHAR(64) NOT NULL, aggregate_id VARCHAR(64) NOT NULL, version BIGINT NOT NULL, arrival BIGINT NOT NULL)",
        ] {
            db.execute_unprepared(sql).await.unwrap();
        }
        db
    }
}

fn statement(db: &DatabaseConnection, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    let backend = db.get_database_backend();
    let sql = if backend == DbBackend::Postgres {
        let mut numbered = String::new();
        let mut n = 0;
        for ch in sql.chars() {
            if ch == '?' {
                n += 1;
                numbered.push_str(&format!("${n}"));
            } else {
                numbered.push(ch);
            }
        }
        numbered
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// One state change and its event in one unit of work: bump the aggregate's version (locking
/// its row) and publish the new version.
async fn bump(db: &DatabaseConnection, outbox: &Outbox, aggregate: &str) -> i64 {
    let mut unit = UnitOfWork::begin(db, outbox).await.unwrap();
    unit.execute_raw(statement(
        db,
        "INSERT INTO aggregates (id, version) VALUES (?, 0) ON CONFLICT (id) DO NOTHING",
        vec![aggregate.into()],
    ))
    .await
    .unwrap();
    let row = unit
        .query_one_raw(statement(db, "UPDATE aggregates SET version = version + 1 WHERE id = ? RETURNING version", vec![aggregate.into()]))
        .await
        .unwrap()
        .unwrap();
    let version: i64 = row.try_get("", "version").unwrap();
    unit.publish(&Bumped { aggregate: aggregate.to_owned(), version }, chrono::Utc::now(), None).await.unwrap();
    unit.commit().await.unwrap();
    version
}

/// A consumer recording each event's effect once (inbox), optionally failing first.
struct Recorder {
    db: DatabaseConnection,
    name: String,
    fail_first: AtomicU32,
    poison: AtomicBool,
    calls: AtomicU32,
    arrivals: AtomicU64,
}

#[async_trait::async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, event: &EventEnvelope) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_first.load(Ordering::SeqCst) > 0 {
            self.fail_first.fetch_sub(1, Ordering::SeqCst);
            return Err(HandlerError::new("transient failure"));
        }
        if self.poison.load(Ordering::SeqCst) {
            return Err(HandlerError::new("cannot handle this event"));
        }
        let bumped: Bumped = event.decode().map_err(HandlerError::new)?;
        let Some(transaction) =
            Inbox::begin(&self.db, &shared_kernel::SystemClock, &self.name, event.id).await.map_err(HandlerError::new)?
        else {
            return Ok(());
        };
        let arrival = self.arrivals.fetch_add(1, Ordering::SeqCst) as i64;
        transaction
            .execute_raw(statement(
                &self.db,
                "INSERT INTO effects (consumer, aggregate_id, version, arrival) VALUES (?, ?, ?, ?)",
                vec![self.name.clone().into(), bumped.aggregate.into(), bumped.version.into(), arrival.into()],
            ))
            .await
            .map_err(HandlerError::new)?;
        transaction.commit().await.map_err(HandlerError::new)
    }
}

struct World {
    db: DatabaseConnection,
    outbox: Outbox,
    bus: Arc<InProcessBus>,
    recorder: Arc<Recorder>,
    dead_letters: DeadLetterStore,
    clock: Arc<shared_kernel::ManualClock>,
}

impl World {
    async fn start(place: &Place, max_attempts: u32) -> Self {
        let db = place.connect().await;
        let clock = Arc::new(shared_kernel::ManualClock::new(chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap()));
        let bus = Arc::new(InProcessBus::new(RetryPolicy { max_attempts, base_delay_ms: 1, max_delay_ms: 5 }).with_clock(clock.clone()));
        let recorder = Arc::new(Recorder {
            db: db.clone(),
            name: "recorder".into(),
            fail_first: AtomicU32::new(0),
            poison: AtomicBool::new(false),
            calls: AtomicU32::new(0),
            arrivals: AtomicU64::new(0),
        });
        let dead_letters = DeadLetterStore::new(db.clone(), "tests");
        bus.subscribe(Consumer {
            name: "recorder".into(),
            event_types: vec![Bumped::TYPE.into()],
            handler: recorder.clone(),
            dead_letters: Arc::new(dead_letters.clone()),
            each_process: false,
        })
        .await
        .unwrap();
        Self { db, outbox: Outbox::new("tests"), bus, recorder, dead_letters, clock }
    }

    fn relay(&self) -> Relay {
        Relay::new(self.db.clone(), self.outbox.clone(), self.bus.clone())
    }

    async fn effects(&self) -> Vec<(String, i64)> {
        let rows =
            self.db.query_all_raw(statement(&self.db, "SELECT aggregate_id, version FROM effects ORDER BY arrival", vec![])).await.unwrap();
        rows.iter().map(|row| (row.try_get("", "aggregate_id").unwrap(), row.try_get("", "version").unwrap())).collect()
    }
}

async fn committed_events_survive_a_crash_before_delivery(place: Place) {
    {
        let before_crash = World::start(&place, 3).await;
        for _ in 0..3 {
            bump(&before_crash.db, &before_crash.outbox, "a").await;
        }
        // The process dies here: committed, never relayed.
        before_crash.db.close().await.unwrap();
    }
    let after_restart = World::start(&place, 3).await;
    let relay = after_restart.relay();
    assert_eq!(relay.backlog().await.unwrap(), 3);
    assert_eq!(relay.deliver_batch().await.unwrap(), 3);
    assert_eq!(after_restart.effects().await, [("a".into(), 1), ("a".into(), 2), ("a".into(), 3)]);
    assert_eq!(relay.deliver_batch().await.unwrap(), 0, "delivered events are not sent again");
}

async fn rolled_back_work_publishes_nothing(place: Place) {
    let world = World::start(&place, 3).await;
    {
        let mut unit = UnitOfWork::begin(&world.db, &world.outbox).await.unwrap();
        unit.publish(&Bumped { aggregate: "ghost".into(), version: 1 }, chrono::Utc::now(), None).await.unwrap();
        // Dropped without commit.
    }
    assert_eq!(world.relay().backlog().await.unwrap(), 0);
    assert_eq!(world.relay().deliver_batch().await.unwrap(), 0);
    assert!(world.effects().await.is_empty());
}

async fn a_handler_failing_twice_then_succeeding_applies_its_effect_once(place: Place) {
    let world = World::start(&place, 5).await;
    world.recorder.fail_first.store(2, Ordering::SeqCst);
    bump(&world.db, &world.outbox, "b").await;
    assert_eq!(world.relay().deliver_batch().await.unwrap(), 1);
    assert_eq!(world.recorder.calls.load(Ordering::SeqCst), 3);
    assert_eq!(world.effects().await, [("b".into(), 1)]);
    assert!(world.dead_letters.list(&PageRequest::default(), false).await.unwrap().items.is_empty());
}

async fn a_poison_event_is_dead_lettered_with_every_attempt_and_replays_once(place: Place) {
    let world = World::start(&place, 3).await;
    world.recorder.poison.store(true, Ordering::SeqCst);
    bump(&world.db, &world.outbox, "p").await;
    assert_eq!(world.relay().deliver_batch().await.unwrap(), 1, "a dead-lettered event counts as delivered: the relay moves on");
    let dead = world.dead_letters.list(&PageRequest::default(), false).await.unwrap().items;
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.consumer, "recorder");
    assert_eq!(letter.event.event_type, Bumped::TYPE);
    assert_eq!(letter.attempts.len(), 3);
    assert!(letter.attempts.iter().all(|attempt| attempt.error == "cannot handle this event"));
    assert!(letter.attempts.windows(2).all(|pair| pair[0].at <= pair[1].at));
    assert!(letter.attempts.iter().all(|attempt| attempt.at == world.clock.now()), "attempt times come from the bus's clock");
    assert!(world.effects().await.is_empty());

    // A replay that cannot be delivered goes back to pending.
    world.dead_letters.mark_replayed(letter.id).await.unwrap();
    world.dead_letters.reopen(letter.id).await.unwrap();
    assert_eq!(world.dead_letters.get(letter.id).await.unwrap().status, shared_kernel::outbox::DeadLetterStatus::Pending);
    assert!(world.dead_letters.get(letter.id).await.unwrap().resolved_at.is_none());

    // The bug is fixed; the operator replays it.
    world.recorder.poison.store(false, Ordering::SeqCst);
    world.dead_letters.mark_replayed(letter.id).await.unwrap();
    world.bus.redeliver("recorder", &letter.event).await.unwrap();
    assert_eq!(world.effects().await, [("p".into(), 1)]);
    // A second replay of the same event (say, two admins at once) has no second effect.
    world.bus.redeliver("recorder", &letter.event).await.unwrap();
    assert_eq!(world.effects().await.len(), 1);
    assert_eq!(world.dead_letters.mark_replayed(letter.id).await.unwrap_err().status(), 409);
    assert!(world.dead_letters.list(&PageRequest::default(), false).await.unwrap().items.is_empty());
    assert_eq!(
        world.dead_letters.list(&PageRequest::default(), true).await.unwrap().items[0].status,
        shared_kernel::outbox::DeadLetterStatus::Replayed
    );
}

async fn duplicate_deliveries_have_no_second_effect(place: Place) {
    let world = World::start(&place, 3).await;
    let envelope = EventEnvelope::wrap(&Bumped { aggregate: "d".into(), version: 1 }, chrono::Utc::now(), None).unwrap();
    world.bus.publish(&envelope).await.unwrap();
    world.bus.publish(&envelope).await.unwrap();
    let (first, second) = tokio::join!(world.bus.publish(&envelope), world.bus.publish(&envelope));
    first.unwrap();
    second.unwrap();
    assert_eq!(world.effects().await, [("d".into(), 1)]);
}

async fn events_of_one_aggregate_arrive_in_commit_order_under_concurrent_writers(place: Place) {
    let world = Arc::new(World::start(&place, 3).await);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let relay = tokio::spawn(world.relay().with_poll_interval(Duration::from_millis(20)).run(stopped));
    let writers: Vec<_> = (0..6)
        .map(|writer| {
            let world = world.clone();
            tokio::spawn(async move {
                for n in 0..8 {
                    let aggregate = format!("agg-{}", (writer + n) % 3);
                    bump(&world.db, &world.outbox, &aggregate).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while world.effects().await.len() < 48 {
        assert!(tokio::time::Instant::now() < deadline, "only {} of 48 events arrived", world.effects().await.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    relay.await.unwrap();
    let effects = world.effects().await;
    assert_eq!(effects.len(), 48);
    for aggregate in ["agg-0", "agg-1", "agg-2"] {
        let versions: Vec<i64> = effects.iter().filter(|(a, _)| a == aggregate).map(|(_, v)| *v).collect();
        let expected: Vec<i64> = (1..=versions.len() as i64).collect();
        assert_eq!(versions, expected, "{aggregate} arrived out of order");
    }
}

async fn a_commit_wakes_the_relay_without_waiting_for_its_poll(place: Place) {
    let world = World::start(&place, 3).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // A poll of an hour: only the wake-up can deliver within the deadline.
    let relay = tokio::spawn(world.relay().with_poll_interval(Duration::from_secs(3600)).run(stopped));
    tokio::time::sleep(Duration::from_millis(100)).await;
    bump(&world.db, &world.outbox, "w").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while world.effects().await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the relay did not wake up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if world.db.get_database_backend() == DbBackend::Postgres {
        // Another process's commit (an outbox whose in-process wake-up nobody listens to)
        // reaches this relay through LISTEN/NOTIFY.
        let elsewhere = place.connect().await;
        bump(&elsewhere, &Outbox::new("tests"), "w").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while world.effects().await.len() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "NOTIFY did not wake the relay");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.send(true).unwrap();
    relay.await.unwrap();
}

/// PostgreSQL only (SQLite has one process by construction): two relays on one database, as
/// two replicas of a module would run, deliver each event once between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_postgres_database_deliver_each_event_once() {
    let Some(place) = Place::postgres().await else { return };
    let world = World::start(&place, 3).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let first = tokio::spawn(world.relay().with_poll_interval(Duration::from_millis(10)).run(stopped.clone()));
    let second = tokio::spawn(world.relay().with_poll_interval(Duration::from_millis(10)).run(stopped));
    for n in 0..30 {
        bump(&world.db, &world.outbox, &format!("r-{}", n % 3)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while world.effects().await.len() < 30 {
        assert!(tokio::time::Instant::now() < deadline, "only {} of 30 arrived", world.effects().await.len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    first.await.unwrap();
    second.await.unwrap();
    // The handler's own count, before its inbox: no event reached it twice.
    assert_eq!(world.recorder.calls.load(Ordering::SeqCst), 30);
}

macro_rules! on_both_databases {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Place::sqlite().await.unwrap()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(place) = super::Place::postgres().await else { return };
                    super::$case(place).await;
                }
            )*
        }
    };
}

on_both_databases!(
    committed_events_survive_a_crash_before_delivery,
    rolled_back_work_publishes_nothing,
    a_handler_failing_twice_then_succeeding_applies_its_effect_once,
    a_poison_event_is_dead_lettered_with_every_attempt_and_replays_once,
    duplicate_deliveries_have_no_second_effect,
    events_of_one_aggregate_arrive_in_commit_order_under_concurrent_writers,
    a_commit_wakes_the_relay_without_waiting_for_its_poll,
);

/// The bus port over NATS JetStream: the same promises, across two bus instances standing for
/// two processes (one publishing through its relay, one consuming), against a real nats-server.
mod jetstream {
    use super::*;
    use cleave_test_support::nats;
    use futures::StreamExt as _;
    use shared_kernel::jetstream_bus::{JetStreamBus, JetStreamSettings};

    struct Broker {
        client: async_nats::Client,
        prefix: String,
    }

    impl Broker {
        async fn new() -> Option<Self> {
            Some(Self { client: nats::client().await?, prefix: nats::unique_prefix() })
        }

        /// A bus as one process has it (its own connection).
        async fn bus(&self, max_attempts: u32) -> Arc<JetStreamBus> {
            let client = async_nats::connect(nats::nats().unwrap().url.as_str()).await.unwrap();
            let settings = JetStreamSettings { prefix: self.prefix.clone(), ..JetStreamSettings::default() };
            let policy = RetryPolicy { max_attempts, base_delay_ms: 1, max_delay_ms: 5 };
            Arc::new(JetStreamBus::new(client, settings, policy, Arc::new(shared_kernel::SystemClock)))
        }

        /// Removes this test's streams from the shared server.
        async fn clean_up(self) {
            let context = async_nats::jetstream::new(self.client);
            let ours = self.prefix.to_uppercase();
            let names: Vec<String> = context.stream_names().filter_map(|name| async move { name.ok() }).collect().await;
            for name in names.into_iter().filter(|name| name.starts_with(&ours)) {
                let _ = context.delete_stream(&name).await;
            }
        }
    }

    pub(super) async fn recorder(db: &DatabaseConnection) -> Arc<Recorder> {
        Arc::new(Recorder {
            db: db.clone(),
            name: "recorder".into(),
            fail_first: AtomicU32::new(0),
            poison: AtomicBool::new(false),
            calls: AtomicU32::new(0),
            arrivals: AtomicU64::new(0),
        })
    }

    pub(super) async fn subscribe(bus: &JetStreamBus, recorder: Arc<Recorder>, dead_letters: &DeadLetterStore) {
        bus.subscribe(Consumer {
            name: "tests.recorder".into(),
            event_types: vec![Bumped::TYPE.into()],
            handler: recorder,
            dead_letters: Arc::new(dead_letters.clone()),
            each_process: false,
        })
        .await
        .unwrap();
    }

    async fn effects(db: &DatabaseConnection) -> Vec<(String, i64)> {
        let rows = db.query_all_raw(statement(db, "SELECT aggregate_id, version FROM effects ORDER BY arrival", vec![])).await.unwrap();
        rows.iter().map(|row| (row.try_get("", "aggregate_id").unwrap(), row.try_get("", "version").unwrap())).collect()
    }

    async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !done().await {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_cross_processes_in_commit_order_per_aggregate_with_a_failing_consumer() {
        let Some(broker) = Broker::new().await else { return };
        let place = Place::sqlite().await.unwrap();
        let db = place.connect().await;
        let consuming = broker.bus(5).await;
        let recorder = recorder(&db).await;
        recorder.fail_first.store(3, Ordering::SeqCst);
        subscribe(&consuming, recorder.clone(), &DeadLetterStore::new(db.clone(), "tests")).await;
        let publishing = broker.bus(5).await;
        let outbox = Outbox::new("tests");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let relay = tokio::spawn(
            Relay::new(db.clone(), outbox.clone(), publishing.clone()).with_poll_interval(Duration::from_millis(10)).run(stopped),
        );
        let writers: Vec<_> = (0..3)
            .map(|writer| {
                let (db, outbox) = (db.clone(), outbox.clone());
                tokio::spawn(async move {
                    for n in 0..10 {
                        bump(&db, &outbox, &format!("agg-{}", (writer + n) % 3)).await;
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        until("30 effects", async || effects(&db).await.len() == 30).await;
        stop.send(true).unwrap();
        relay.await.unwrap();
        let effects = effects(&db).await;
        for aggregate in ["agg-0", "agg-1", "agg-2"] {
            let versions: Vec<i64> = effects.iter().filter(|(a, _)| a == aggregate).map(|(_, v)| *v).collect();
            assert_eq!(versions, (1..=10).collect::<Vec<i64>>(), "{aggregate} arrived out of commit order");
        }
        assert_eq!(recorder.calls.load(Ordering::SeqCst), 33, "30 events, 3 failed attempts retried, nothing handled twice");
        broker.clean_up().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_republished_event_is_dropped_by_the_server_and_a_restarted_consumer_resumes() {
        let Some(broker) = Broker::new().await else { return };
        let place = Place::sqlite().await.unwrap();
        let db = place.connect().await;
        let dead_letters = DeadLetterStore::new(db.clone(), "tests");
        let publishing = broker.bus(3).await;
        let first = recorder(&db).await;
        {
            let before_restart = broker.bus(3).await;
            subscribe(&before_restart, first.clone(), &dead_letters).await;
            let envelope = EventEnvelope::wrap(&Bumped { aggregate: "r".into(), version: 1 }, chrono::Utc::now(), None).unwrap();
            // A relay that died after the publish and before marking the row: it publishes again.
            publishing.publish(&envelope).await.unwrap();
            publishing.publish(&envelope).await.unwrap();
            until("the first event", async || effects(&db).await.len() == 1).await;
            assert_eq!(first.calls.load(Ordering::SeqCst), 1, "the server dropped the duplicate: the handler saw it once");
        }
        // The consuming process is gone; events keep coming.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for version in 2..=4 {
            let envelope = EventEnvelope::wrap(&Bumped { aggregate: "r".into(), version }, chrono::Utc::now(), None).unwrap();
            publishing.publish(&envelope).await.unwrap();
        }
        let after = recorder(&db).await;
        let restarted = broker.bus(3).await;
        subscribe(&restarted, after.clone(), &dead_letters).await;
        until("what was missed", async || effects(&db).await.len() == 4).await;
        assert_eq!(effects(&db).await, [("r".into(), 1), ("r".into(), 2), ("r".into(), 3), ("r".into(), 4)]);
        assert_eq!(after.calls.load(Ordering::SeqCst), 3, "the durable consumer resumed after what it had acked");
        broker.clean_up().await;
    }

    /// Another event type of the same module, which the recorder does not read.
    #[derive(Serialize, Deserialize)]
    struct Renamed {
        aggregate: String,
    }

    impl IntegrationEvent for Renamed {
        const TYPE: &'static str = "tests.renamed.v1";
        const VERSION: u32 = 1;
        fn aggregate_id(&self) -> String {
            self.aggregate.clone()
        }
    }

    /// A consumer of two of a stream's types never sees a third, whether the server filters
    /// (2.10 and later) or delivers the whole stream (2.9, which ignores `filter_subjects`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_consumer_sees_only_the_event_types_it_subscribed_to() {
        let Some(broker) = Broker::new().await else { return };
        let place = Place::sqlite().await.unwrap();
        let db = place.connect().await;
        let dead_letters = DeadLetterStore::new(db.clone(), "tests");
        let consuming = broker.bus(3).await;
        let recorder = recorder(&db).await;
        consuming
            .subscribe(Consumer {
                name: "tests.recorder".into(),
                event_types: vec![Bumped::TYPE.into(), "tests.never_published.v1".into()],
                handler: recorder.clone(),
                dead_letters: Arc::new(dead_letters.clone()),
                each_process: false,
            })
            .await
            .unwrap();
        let publishing = broker.bus(3).await;
        let renamed = EventEnvelope::wrap(&Renamed { aggregate: "f".into() }, chrono::Utc::now(), None).unwrap();
        publishing.publish(&renamed).await.unwrap();
        let bumped = EventEnvelope::wrap(&Bumped { aggregate: "f".into(), version: 1 }, chrono::Utc::now(), None).unwrap();
        publishing.publish(&bumped).await.unwrap();
        until("the bump", async || effects(&db).await.len() == 1).await;
        assert_eq!(recorder.calls.load(Ordering::SeqCst), 1, "the handler saw only the event it subscribed to");
        assert!(dead_letters.list(&PageRequest::default(), false).await.unwrap().items.is_empty(), "nothing was dead-lettered");
        broker.clean_up().await;
    }

    /// An event is accepted only from its own module's stream: a message on the `tests` stream
    /// whose payload claims another module's type (as a client allowed to publish on one module's
    /// subjects would forge, to speak for another) is refused, dead-lettered with the reason, and
    /// never handled, while the stream's own events go on being handled.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_on_another_modules_stream_is_refused_and_dead_lettered() {
        let Some(broker) = Broker::new().await else { return };
        let place = Place::sqlite().await.unwrap();
        let db = place.connect().await;
        let dead_letters = DeadLetterStore::new(db.clone(), "tests");
        let consuming = broker.bus(3).await;
        let recorder = recorder(&db).await;
        consuming
            .subscribe(Consumer {
                name: "tests.recorder".into(),
                event_types: vec![Bumped::TYPE.into(), "intruded.forged.v1".into()],
                handler: recorder.clone(),
                dead_letters: Arc::new(dead_letters.clone()),
                each_process: false,
            })
            .await
            .unwrap();
        // The forgery: a real envelope, its type changed to another module's, published straight
        // on the `tests` module's subject.
        let mut forged = EventEnvelope::wrap(&Bumped { aggregate: "x".into(), version: 1 }, chrono::Utc::now(), None).unwrap();
        forged.event_type = "intruded.forged.v1".into();
        let context = async_nats::jetstream::new(broker.client.clone());
        let subject = format!("{}.events.{}", broker.prefix, Bumped::TYPE);
        consuming
            .publish(&EventEnvelope::wrap(&Bumped { aggregate: "warm".into(), version: 1 }, chrono::Utc::now(), None).unwrap())
            .await
            .unwrap();
        until("the stream's own event", async || effects(&db).await.len() == 1).await;
        context.publish(subject, serde_json::to_vec(&forged).unwrap().into()).await.unwrap().await.unwrap();
        until("the refusal", async || !dead_letters.list(&PageRequest::default(), false).await.unwrap().items.is_empty()).await;
        let dead = dead_letters.list(&PageRequest::default(), false).await.unwrap().items;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].event.event_type, "intruded.forged.v1");
        assert!(
            dead[0].attempts[0].error.contains("arrived as tests.bumped.v1 on the stream of the tests module"),
            "{:?}",
            dead[0].attempts
        );
        assert_eq!(recorder.calls.load(Ordering::SeqCst), 1, "the forged event never reached the handler");
        // The stream goes on: the next real event is handled.
        consuming
            .publish(&EventEnvelope::wrap(&Bumped { aggregate: "after".into(), version: 1 }, chrono::Utc::now(), None).unwrap())
            .await
            .unwrap();
        until("the next event", async || effects(&db).await.len() == 2).await;
        broker.clean_up().await;
    }

    /// A handler that holds each event until told to let it go.
    struct Held {
        seen: tokio::sync::watch::Sender<u32>,
        release: tokio::sync::watch::Receiver<bool>,
    }

    #[async_trait::async_trait]
    impl EventHandler for Held {
        async fn handle(&self, _event: &EventEnvelope) -> Result<(), HandlerError> {
            self.seen.send_modify(|seen| *seen += 1);
            let _ = self.release.clone().wait_for(|go| *go).await;
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_finishes_the_event_in_hand_and_takes_no_more() {
        let Some(broker) = Broker::new().await else { return };
        let place = Place::sqlite().await.unwrap();
        let db = place.connect().await;
        let dead_letters = DeadLetterStore::new(db.clone(), "tests");
        let (seen, mut seen_rx) = tokio::sync::watch::channel(0);
        let (release, released) = tokio::sync::watch::channel(false);
        let consumer = |handler: Arc<dyn EventHandler>| Consumer {
            name: "tests.held".into(),
            event_types: vec![Bumped::TYPE.into()],
            handler,
            dead_letters: Arc::new(dead_letters.clone()),
            each_process: false,
        };
        let stopping = broker.bus(3).await;
        stopping.subscribe(consumer(Arc::new(Held { seen, release: released }))).await.unwrap();
        let publishing = broker.bus(3).await;
        for version in 1..=3 {
            let event = EventEnvelope::wrap(&Bumped { aggregate: "s".into(), version }, chrono::Utc::now(), None).unwrap();
            publishing.publish(&event).await.unwrap();
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), seen_rx.wait_for(|seen| *seen == 1)).await.expect("the first event in hand");
        let shutdown = tokio::spawn({
            let stopping = stopping.clone();
            async move { stopping.shutdown().await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!shutdown.is_finished(), "shutdown waits for the event in hand");
        release.send_replace(true);
        tokio::time::timeout(Duration::from_secs(20), shutdown).await.expect("shutdown returns once the event is handled").unwrap();
        assert_eq!(*seen_rx.borrow(), 1, "no event taken after the stop");

        // The next process's consumer gets the two it did not take, and not the one it acked.
        let recorder = recorder(&db).await;
        let next = broker.bus(3).await;
        next.subscribe(consumer(recorder.clone())).await.unwrap();
        until("the two events left", async || effects(&db).await.len() == 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(effects(&db).await, [("s".into(), 2), ("s".into(), 3)]);
        broker.clean_up().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_consumer_deleted_on_the_server_is_made_again_and_nothing_is_missed() {
        let Some(broker) = Broker::new().await else { return };
        let place = Place::sqlite().await.unwrap();
        let db = place.connect().await;
        let consuming = broker.bus(3).await;
        subscribe(&consuming, recorder(&db).await, &DeadLetterStore::new(db.clone(), "tests")).await;
        let publishing = broker.bus(3).await;
        let event = |version| EventEnvelope::wrap(&Bumped { aggregate: "c".into(), version }, chrono::Utc::now(), None).unwrap();
        publishing.publish(&event(1)).await.unwrap();
        until("the first effect", async || effects(&db).await.len() == 1).await;
        let context = async_nats::jetstream::new(broker.client.clone());
        let stream = context.get_stream(format!("{}_EVENTS_TESTS", broker.prefix.to_uppercase())).await.unwrap();
        stream.delete_consumer("tests_recorder").await.unwrap();
        assert!(stream.consumer_info("tests_recorder").await.is_err(), "the consumer is gone");
        publishing.publish(&event(2)).await.unwrap();
        until("the event after the deletion", async || effects(&db).await.len() == 2).await;
        assert_eq!(
            effects(&db).await,
            [("c".into(), 1), ("c".into(), 2)],
            "the first event, redelivered to the new consumer, had no second effect"
        );
        broker.clean_up().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_poison_event_reaches_the_same_dead_letter_store_and_replays_to_its_consumer_only() {
        let Some(broker) = Broker::new().await else { return };
        let place = Place::sqlite().await.unwrap();
        let db = place.connect().await;
        let dead_letters = DeadLetterStore::new(db.clone(), "tests");
        let consuming = broker.bus(3).await;
        let recorder = recorder(&db).await;
        recorder.poison.store(true, Ordering::SeqCst);
        subscribe(&consuming, recorder.clone(), &dead_letters).await;
        let envelope = EventEnvelope::wrap(&Bumped { aggregate: "p".into(), version: 1 }, chrono::Utc::now(), None).unwrap();
        broker.bus(3).await.publish(&envelope).await.unwrap();
        until("the dead letter", async || !dead_letters.list(&PageRequest::default(), false).await.unwrap().items.is_empty()).await;
        let letter = dead_letters.list(&PageRequest::default(), false).await.unwrap().items.remove(0);
        assert_eq!((letter.consumer.as_str(), letter.attempts.len(), letter.event.id), ("tests.recorder", 3, envelope.id));
        assert!(letter.attempts.iter().all(|attempt| attempt.error == "cannot handle this event"));
        recorder.poison.store(false, Ordering::SeqCst);
        consuming.redeliver("tests.recorder", &letter.event).await.unwrap();
        assert_eq!(effects(&db).await, [("p".into(), 1)]);
        assert!(consuming.redeliver("nobody", &letter.event).await.is_err(), "a replay names its consumer");
        broker.clean_up().await;
    }
}

/// A broker restart under load: nothing lost, no effect twice, and the backlog drains after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_load_loses_nothing_and_duplicates_no_effect() {
    use shared_kernel::jetstream_bus::{JetStreamBus, JetStreamSettings};
    let Some(mut server) = cleave_test_support::nats::OwnNatsServer::start() else { return };
    let place = Place::sqlite().await.unwrap();
    let db = place.connect().await;
    let bus = |client| {
        let policy = RetryPolicy { max_attempts: 3, base_delay_ms: 1, max_delay_ms: 5 };
        Arc::new(JetStreamBus::new(client, JetStreamSettings::default(), policy, Arc::new(shared_kernel::SystemClock)))
    };
    let consuming = bus(async_nats::connect(server.url()).await.unwrap());
    jetstream::subscribe(&consuming, jetstream::recorder(&db).await, &DeadLetterStore::new(db.clone(), "tests")).await;
    let outbox = Outbox::new("tests");
    let publishing = bus(async_nats::connect(server.url()).await.unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let relay = tokio::spawn(Relay::new(db.clone(), outbox.clone(), publishing).with_poll_interval(Duration::from_millis(20)).run(stopped));
    let count = async || {
        let rows = db.query_all_raw(statement(&db, "SELECT aggregate_id, version FROM effects ORDER BY arrival", vec![])).await.unwrap();
        rows.iter()
            .map(|row| (row.try_get::<String>("", "aggregate_id").unwrap(), row.try_get::<i64>("", "version").unwrap()))
            .collect::<Vec<_>>()
    };
    let until = async |n: usize| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while count().await.len() < n {
            assert!(tokio::time::Instant::now() < deadline, "only {} of {n} effects", count().await.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    for _ in 0..10 {
        bump(&db, &outbox, "b").await;
    }
    until(10).await;
    server.stop();
    // Committed while the broker is down: they wait in the outbox.
    for _ in 0..10 {
        bump(&db, &outbox, "b").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    until(20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    relay.await.unwrap();
    let effects = count().await;
    assert_eq!(
        effects.iter().map(|(_, version)| *version).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<i64>>(),
        "every event once, in order"
    );
    assert_eq!(Relay::new(db.clone(), outbox, bus(async_nats::connect(server.url()).await.unwrap())).backlog().await.unwrap(), 0);
}

//! Integration events end to end: the users module's events leave through its outbox, a stop
//! between commit and delivery loses nothing, and the dead-letter admin API.

use cleave_tests::{ADMIN_EMAIL, ComposeHook, Database, Topology, problem, spawn_app_with};
use serde_json::Value;
use shared_kernel::events::{Consumer, EventEnvelope, EventHandler, HandlerError, IntegrationEvent};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use users_contract::events::{UserDeactivatedV1, UserRegisteredV1};

/// A consumer of `UserRegistered` that fails while told to and records what it processed,
/// once per event id.
#[derive(Default)]
struct TestConsumer {
    failing: AtomicBool,
    calls: AtomicU32,
    /// Every successful delivery, duplicates included: "exactly once" is asserted on this.
    seen: Mutex<Vec<(uuid::Uuid, String)>>,
}

#[async_trait::async_trait]
impl EventHandler for TestConsumer {
    async fn handle(&self, event: &EventEnvelope) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(HandlerError::new("downstream is down"));
        }
        let registered: UserRegisteredV1 = event.decode().map_err(HandlerError::new)?;
        self.seen.lock().unwrap().push((event.id, registered.email));
        Ok(())
    }
}

impl TestConsumer {
    fn times_seen(&self, email: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|(_, e)| e == email).count()
    }
}

fn subscribe(consumer: Arc<TestConsumer>) -> ComposeHook {
    Arc::new(move |composition| {
        let bus = composition.bus.clone();
        let dead_letters = composition.dead_letters.first().expect("users is local").clone();
        let consumer = consumer.clone();
        Box::pin(async move {
            bus.subscribe(Consumer {
                name: "tests.registrations".into(),
                event_types: vec![UserRegisteredV1::TYPE.into()],
                handler: consumer,
                dead_letters: Arc::new(dead_letters),
                each_process: false,
            })
            .await
            .expect("a new consumer");
        })
    })
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn a_stop_between_commit_and_delivery_loses_nothing(database: Database) {
    let stuck = Arc::new(TestConsumer { failing: AtomicBool::new(true), ..Default::default() });
    let configure = |settings: &mut cleave::Settings| {
        settings.events.max_attempts = 10_000;
        settings.events.base_delay_ms = 10;
        settings.events.max_delay_ms = 20;
    };
    let Some(mut app) = spawn_app_with(Topology::Monolith(database), configure, Some(subscribe(stuck.clone()))).await else { return };
    assert_eq!(app.register("crash@example.com").await.status(), 201);
    // The consumer keeps failing, so the relay is mid-delivery of the first event...
    eventually("the consumer was tried a few times", || stuck.calls.load(Ordering::SeqCst) >= 3).await;
    // ...when the process stops. It starts again with a working consumer.
    let healthy = Arc::new(TestConsumer::default());
    app.restart_with_hook(|_| {}, Some(subscribe(healthy.clone()))).await;
    eventually("both registrations arrived", || healthy.times_seen(ADMIN_EMAIL) >= 1 && healthy.times_seen("crash@example.com") >= 1).await;
    // Nothing was lost; and this consumer keeps no inbox, so the relay itself did not send
    // anything twice after the restart.
    assert_eq!((healthy.times_seen(ADMIN_EMAIL), healthy.times_seen("crash@example.com")), (1, 1));
}

/// Through the edge of `topology`: behind a gateway, the admin API reaches the users module's
/// dead letters through their contract, in the process that holds them.
async fn the_dead_letter_api_lists_replays_and_discards(topology: Topology) {
    let consumer = Arc::new(TestConsumer { failing: AtomicBool::new(true), ..Default::default() });
    let configure = |settings: &mut cleave::Settings| {
        settings.events.max_attempts = 2;
        settings.events.base_delay_ms = 1;
    };
    let Some(app) = spawn_app_with(topology, configure, Some(subscribe(consumer.clone()))).await else { return };
    assert_eq!(app.register("poison@example.com").await.status(), 201);
    let admin = app.admin_token().await;
    let customer = app.customer("curious@example.com").await;
    problem(app.get("/api/admin/dead-letters", None).await, 401).await;
    problem(app.get("/api/admin/dead-letters", customer["access_token"].as_str()).await, 403).await;

    let mut letters = Vec::new();
    for _ in 0..1500 {
        let page: Value = app.get("/api/admin/dead-letters", Some(&admin)).await.json().await.unwrap();
        letters = page["items"].as_array().unwrap().clone();
        if letters.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(letters.len(), 3, "admin, poison and curious were each dead-lettered: {letters:?}");
    let poison = letters.iter().find(|l| l["event"]["payload"]["email"] == "poison@example.com").expect("the poison letter").clone();
    assert_eq!(poison["consumer"], "tests.registrations");
    assert_eq!(poison["module"], "users");
    assert_eq!(poison["status"], "pending");
    assert_eq!(poison["event"]["type"], UserRegisteredV1::TYPE);
    let attempts = poison["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|a| a["error"] == "downstream is down" && a["at"].is_string()));
    let id = poison["id"].as_str().unwrap();
    let shown: Value = app.get(&format!("/api/admin/dead-letters/{id}"), Some(&admin)).await.json().await.unwrap();
    assert_eq!(shown["id"], poison["id"]);

    consumer.failing.store(false, Ordering::SeqCst);
    let replayed = app.post_json(&format!("/api/admin/dead-letters/{id}/replay"), &serde_json::json!({}), Some(&admin)).await;
    assert_eq!(replayed.status(), 200);
    assert_eq!(replayed.json::<Value>().await.unwrap()["status"], "replayed");
    assert_eq!(consumer.times_seen("poison@example.com"), 1);
    problem(app.post_json(&format!("/api/admin/dead-letters/{id}/replay"), &serde_json::json!({}), Some(&admin)).await, 409).await;
    assert_eq!(consumer.times_seen("poison@example.com"), 1);

    let other = letters.iter().find(|l| l["event"]["payload"]["email"] == ADMIN_EMAIL).unwrap()["id"].as_str().unwrap().to_owned();
    let response =
        app.request(reqwest::Method::DELETE, &format!("/api/admin/dead-letters/{other}")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let again = app.request(reqwest::Method::DELETE, &format!("/api/admin/dead-letters/{other}")).bearer_auth(&admin).send().await.unwrap();
    problem(again, 409).await;
    assert_eq!(consumer.times_seen(ADMIN_EMAIL), 0, "a discarded event is not delivered");

    let pending: Value = app.get("/api/admin/dead-letters", Some(&admin)).await.json().await.unwrap();
    assert_eq!(pending["items"].as_array().unwrap().len(), 1, "only curious's is left pending");
    let audit: Value = app.get("/api/admin/dead-letters?include_resolved=true", Some(&admin)).await.json().await.unwrap();
    let mut statuses: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|l| l["status"].as_str().unwrap()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["discarded", "pending", "replayed"]);
    problem(app.get(&format!("/api/admin/dead-letters/{}", uuid::Uuid::now_v7()), Some(&admin)).await, 404).await;
    problem(app.get("/api/admin/dead-letters?limit=0", Some(&admin)).await, 422).await;

    if !topology.is_split() {
        // (Behind a gateway these series are the users process's, not the gateway's.)
        let metrics = app.get("/metrics", None).await.text().await.unwrap();
        assert!(metrics.contains("events_dead_lettered_total{consumer=\"tests.registrations\"}"), "{metrics}");
        assert!(metrics.contains("outbox_delivered_total{module=\"users\"}"), "{metrics}");
    }
}

async fn users_events_carry_the_request_that_caused_them_in_order(database: Database) {
    let seen_envelopes = Arc::new(Mutex::new(Vec::<EventEnvelope>::new()));
    struct Capture(Arc<Mutex<Vec<EventEnvelope>>>);
    #[async_trait::async_trait]
    impl EventHandler for Capture {
        async fn handle(&self, event: &EventEnvelope) -> Result<(), HandlerError> {
            self.0.lock().unwrap().push(event.clone());
            Ok(())
        }
    }
    let capture = seen_envelopes.clone();
    let hook: ComposeHook = Arc::new(move |composition| {
        let bus = composition.bus.clone();
        let dead_letters = composition.dead_letters[0].clone();
        let handler = Arc::new(Capture(capture.clone()));
        Box::pin(async move {
            bus.subscribe(Consumer {
                name: "tests.capture".into(),
                event_types: vec![UserRegisteredV1::TYPE.into(), UserDeactivatedV1::TYPE.into()],
                handler,
                dead_letters: Arc::new(dead_letters),
                each_process: false,
            })
            .await
            .unwrap();
        })
    });
    let Some(app) = spawn_app_with(Topology::Monolith(database), |_| {}, Some(hook)).await else { return };
    let response = app
        .request(reqwest::Method::POST, "/api/users/register")
        .header("x-request-id", "register-req-1")
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .json(&serde_json::json!({"email": "traced@example.com", "password": cleave_tests::PASSWORD, "name": "T"}))
        .send()
        .await
        .unwrap();
    let user: Value = response.json().await.unwrap();
    eventually("the event arrived", || seen_envelopes.lock().unwrap().iter().any(|e| e.payload["email"] == "traced@example.com")).await;
    {
        let envelopes = seen_envelopes.lock().unwrap();
        let event = envelopes.iter().find(|e| e.payload["email"] == "traced@example.com").unwrap();
        assert_eq!(event.event_type, "users.user_registered.v1");
        assert_eq!(event.version, 1);
        assert_eq!(event.aggregate_id, user["id"].as_str().unwrap());
        assert_eq!(event.id.get_version_num(), 7);
        assert_eq!(event.correlation_id.as_deref(), Some("register-req-1"));
        assert!(event.traceparent.as_deref().unwrap().contains("0af7651916cd43dd8448eb211c80319c"));
    }
    // Deactivation is an event too, delivered after the same user's registration.
    let id = user["id"].as_str().unwrap().to_owned();
    let admin = app.admin_token().await;
    assert_eq!(app.post_json(&format!("/api/users/{id}/deactivate"), &serde_json::json!({}), Some(&admin)).await.status(), 200);
    eventually("the deactivation arrived", || seen_envelopes.lock().unwrap().iter().any(|e| e.event_type == UserDeactivatedV1::TYPE)).await;
    let envelopes = seen_envelopes.lock().unwrap();
    let of_user: Vec<&str> = envelopes.iter().filter(|e| e.aggregate_id == id).map(|e| e.event_type.as_str()).collect();
    assert_eq!(of_user, [UserRegisteredV1::TYPE, UserDeactivatedV1::TYPE]);
    let deactivated: UserDeactivatedV1 = envelopes.iter().find(|e| e.event_type == UserDeactivatedV1::TYPE).unwrap().decode().unwrap();
    assert_eq!(deactivated.user_id.to_string(), id);
}

mod monolith_sqlite {
    use super::Database::Sqlite;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_between_commit_and_delivery_loses_nothing() {
        super::a_stop_between_commit_and_delivery_loses_nothing(Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dead_letter_api_lists_replays_and_discards() {
        super::the_dead_letter_api_lists_replays_and_discards(super::Topology::Monolith(Sqlite)).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn users_events_carry_the_request_that_caused_them_in_order() {
        super::users_events_carry_the_request_that_caused_them_in_order(Sqlite).await;
    }
}

mod monolith_postgres {
    use super::Database::Postgres;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_between_commit_and_delivery_loses_nothing() {
        super::a_stop_between_commit_and_delivery_loses_nothing(Postgres).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dead_letter_api_lists_replays_and_discards() {
        super::the_dead_letter_api_lists_replays_and_discards(super::Topology::Monolith(Postgres)).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn users_events_carry_the_request_that_caused_them_in_order() {
        super::users_events_carry_the_request_that_caused_them_in_order(Postgres).await;
    }
}

/// The gateway's admin API in front of a backend holding the dead letters, over each wire.
mod behind_a_gateway {
    use super::{Database, Topology};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dead_letter_api_lists_replays_and_discards_over_http() {
        super::the_dead_letter_api_lists_replays_and_discards(Topology::Extracted(Database::Sqlite)).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dead_letter_api_lists_replays_and_discards_over_nats() {
        super::the_dead_letter_api_lists_replays_and_discards(Topology::ExtractedOverNats(Database::Sqlite)).await;
    }
}

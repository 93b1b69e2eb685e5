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

/// docs/events.md against the code. The event types come from the contracts (every
/// `impl IntegrationEvent for …` in a module's crates, and each module's `events::schemas()` as
/// the app lists them); the consumers from the source of the app and the modules, where each
/// names itself in a `const CONSUMER: &'static str` and lists what it reads in the
/// `Consumer { event_types, each_process, .. }` it builds. A new event type or a new consumer
/// fails here until the page names it.
mod events_page {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    const PAGE: &str = include_str!("../../docs/events.md");

    /// A consumer as the source declares it.
    #[derive(Debug)]
    struct Declared {
        reads: BTreeSet<String>,
        each_process: bool,
    }

    /// Every `.rs` file under `dir`, recursively.
    fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                rust_files(&path, found);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                found.push(path);
            }
        }
    }

    /// The source of the app and of every module and contract crate, each file without the
    /// inline test module at its end (`#[cfg(test)] mod … {`): what the shipped code subscribes.
    fn shipped_sources() -> Vec<(PathBuf, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf();
        let mut dirs = vec![root.join("app/src")];
        for entry in std::fs::read_dir(root.join("modules")).expect("modules/") {
            let src = entry.expect("a directory entry").path().join("src");
            if src.is_dir() {
                dirs.push(src);
            }
        }
        let mut files = Vec::new();
        for dir in &dirs {
            rust_files(dir, &mut files);
        }
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
                // An inline test module (`mod tests {`), not a test file declared (`mod tests;`).
                let tests = text
                    .match_indices("#[cfg(test)]\nmod ")
                    .map(|(at, _)| at)
                    .find(|&at| text[at..].lines().nth(1).is_some_and(|line| line.trim_end().ends_with('{')));
                let shipped = match tests {
                    Some(at) => text[..at].to_owned(),
                    None => text,
                };
                (path, shipped)
            })
            .collect()
    }

    /// The string literal that follows each `marker` in `text` (up to its closing quote), with
    /// where the marker is.
    fn literals_after<'a>(text: &'a str, marker: &str) -> Vec<(usize, &'a str)> {
        text.match_indices(marker)
            .filter_map(|(at, _)| {
                let rest = &text[at + marker.len()..];
                rest.find('"').map(|end| (at, &rest[..end]))
            })
            .collect()
    }

    /// The identifier `text` ends with (`events::UserRegisteredV1` gives `UserRegisteredV1`).
    fn trailing_identifier(text: &str) -> &str {
        let start = text.char_indices().rev().take_while(|(_, c)| c.is_alphanumeric() || *c == '_').last().map_or(text.len(), |(at, _)| at);
        &text[start..]
    }

    /// The text of each `code span` in a table cell.
    fn code_spans(cell: &str) -> Vec<&str> {
        cell.split('`').skip(1).step_by(2).collect()
    }

    /// Each event struct of the contracts by name, with its type: `impl IntegrationEvent for X`
    /// and the `const TYPE` in it.
    fn event_types_by_struct(sources: &[(PathBuf, String)]) -> BTreeMap<String, String> {
        const IMPL: &str = "impl IntegrationEvent for ";
        let mut found = BTreeMap::new();
        for (path, text) in sources {
            for (at, _) in text.match_indices(IMPL) {
                let rest = &text[at + IMPL.len()..];
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let (_, event_type) = *literals_after(rest, "const TYPE: &'static str = \"")
                    .first()
                    .unwrap_or_else(|| panic!("{}: `impl IntegrationEvent for {name}` has no `const TYPE`", path.display()));
                found.insert(name, event_type.to_owned());
            }
        }
        found
    }

    /// For a consumer named in `impl Alias { const CONSUMER … }` whose `Consumer` reads a generic
    /// `E::TYPE` (the GraphQL feeds): the event of `type Alias = Feed<Event>;` in the same file.
    fn aliased_event(text: &str, at: usize, types: &BTreeMap<String, String>) -> Option<String> {
        let impl_at = text[..at].rfind("\nimpl ")?;
        let alias: String = text[impl_at + "\nimpl ".len()..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let definition = format!("type {alias} = ");
        let rest = &text[text.find(&definition)? + definition.len()..];
        let rest = &rest[..rest.find(';')?];
        let event = rest[rest.find('<')? + 1..].trim_end_matches('>');
        types.get(trailing_identifier(event)).cloned()
    }

    /// Where each `Consumer { … }` is built in `text` (not the struct, its `impl`s or a return
    /// type).
    fn consumer_literals(text: &str) -> Vec<usize> {
        text.match_indices("Consumer {")
            .map(|(at, _)| at)
            .filter(|&at| {
                let before = &text[..at];
                let joined_to_a_name = before.chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
                let before = before.trim_end();
                !joined_to_a_name && !before.ends_with("->") && !before.ends_with("struct") && !before.ends_with("for")
            })
            .collect()
    }

    /// Every consumer the shipped code subscribes, by name.
    fn declared_consumers(sources: &[(PathBuf, String)], types: &BTreeMap<String, String>) -> BTreeMap<String, Declared> {
        const NAME: &str = "const CONSUMER: &'static str = \"";
        let mut declared = BTreeMap::new();
        for (path, text) in sources {
            let file = path.display();
            let mut named_literals = BTreeSet::new();
            for (at, name) in literals_after(text, NAME) {
                // The first `Consumer { event_types, .. }` after the name is the one it names.
                let start = text[at..]
                    .find("event_types:")
                    .map(|offset| at + offset)
                    .unwrap_or_else(|| panic!("{file}: consumer `{name}` is followed by no `Consumer {{ event_types, .. }}`"));
                named_literals.insert(start);
                let literal = &text[start..];
                let end = literal
                    .find("handler:")
                    .unwrap_or_else(|| panic!("{file}: the `Consumer` of `{name}` has no `handler` after its `event_types`"));
                let each_process = literal
                    .find("each_process:")
                    .map(|offset| literal[offset + "each_process:".len()..].trim_start().starts_with("true"))
                    .unwrap_or_else(|| panic!("{file}: the `Consumer` of `{name}` does not set `each_process`"));
                let mut reads = BTreeSet::new();
                for (offset, _) in literal[..end].match_indices("::TYPE") {
                    let ident = trailing_identifier(&literal[..offset]);
                    let event_type = types
                        .get(ident)
                        .cloned()
                        .or_else(|| aliased_event(text, at, types))
                        .unwrap_or_else(|| panic!("{file}: consumer `{name}` reads `{ident}::TYPE`, which is no contract's event"));
                    reads.insert(event_type);
                }
                assert!(!reads.is_empty(), "{file}: consumer `{name}` reads no event type as `<Event>::TYPE`");
                let previous = declared.insert(name.to_owned(), Declared { reads, each_process });
                assert!(previous.is_none(), "two consumers are named `{name}`");
            }
            // Every consumer the file builds is found through its name.
            for at in consumer_literals(text) {
                let start = text[at..].find("event_types:").map(|offset| at + offset);
                assert!(
                    start.is_some_and(|start| named_literals.contains(&start)),
                    "{file}: a `Consumer` with no `const CONSUMER: &'static str` before it; name it so (docs/events.md lists it by that name)"
                );
            }
        }
        declared
    }

    /// The rows of the page's table whose header line starts with `header`, as cells.
    fn table<'a>(page: &'a str, header: &str) -> Vec<Vec<&'a str>> {
        let mut lines = page.lines().skip_while(|line| !line.starts_with(header));
        assert!(lines.next().is_some(), "docs/events.md has no table headed `{header}`");
        lines
            .skip(1) // |---|
            .take_while(|line| line.starts_with('|'))
            .map(|line| line.trim().trim_matches('|').split('|').map(str::trim).collect())
            .collect()
    }

    #[test]
    fn the_events_page_names_every_event_type_and_every_consumer() {
        let sources = shipped_sources();
        let types = event_types_by_struct(&sources);
        let declared_types: BTreeSet<String> =
            cleave::modules::event_schemas().into_iter().map(|(event_type, _)| event_type.to_owned()).collect();
        let in_contracts: BTreeSet<String> = types.values().cloned().collect();
        assert_eq!(in_contracts, declared_types, "every event of a contract crate is in its module's `events::schemas()`, and only those");
        let consumers = declared_consumers(&sources, &types);
        for known in ["orders.customer_status", "catalog.cache", "notifications.delivery", "graphql.order_status"] {
            assert!(consumers.contains_key(known), "the scan of the source missed `{known}`: {consumers:#?}");
        }

        // The event types: one row each, published by their module, and who reads them.
        let mut documented = BTreeSet::new();
        for row in table(PAGE, "| Type |") {
            assert_eq!(row.len(), 5, "docs/events.md, a row of type, publisher, when, payload and consumers: {row:?}");
            let event_type = row[0].trim_matches('`');
            assert!(documented.insert(event_type.to_owned()), "docs/events.md lists `{event_type}` twice");
            assert_eq!(Some(row[1]), event_type.split('.').next(), "docs/events.md: who publishes `{event_type}`");
            let named: BTreeSet<String> = code_spans(row[4]).into_iter().filter(|span| span.contains('.')).map(str::to_owned).collect();
            let reading: BTreeSet<String> =
                consumers.iter().filter(|(_, consumer)| consumer.reads.contains(event_type)).map(|(name, _)| name.clone()).collect();
            assert_eq!(named, reading, "docs/events.md: the consumers of `{event_type}`");
        }
        assert_eq!(documented, declared_types, "docs/events.md has a row for every event type the code declares, and no other");

        // The consumers: one row each, what each reads, and whether every process gets every event.
        let mut listed = BTreeSet::new();
        for row in table(PAGE, "| Consumer |") {
            assert_eq!(row.len(), 4, "docs/events.md, a row of consumer, subscriber, what it reads and delivery: {row:?}");
            let name = row[0].trim_matches('`');
            assert!(listed.insert(name.to_owned()), "docs/events.md lists `{name}` twice");
            let consumer =
                consumers.get(name).unwrap_or_else(|| panic!("docs/events.md lists `{name}`, which the code does not subscribe"));
            let reads: BTreeSet<String> = code_spans(row[2]).into_iter().map(str::to_owned).collect();
            assert_eq!(reads, consumer.reads, "docs/events.md: what `{name}` reads");
            assert_eq!(
                row[3].starts_with("every process"),
                consumer.each_process,
                "docs/events.md: whether every process gets every event of `{name}`"
            );
        }
        let subscribed: BTreeSet<String> = consumers.keys().cloned().collect();
        assert_eq!(listed, subscribed, "docs/events.md has a row for every consumer the code subscribes, and no other");
    }
}

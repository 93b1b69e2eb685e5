//! The catalog's read cache across instances: two catalog processes on one database, each
//! invalidated by the other's events on JetStream, with the cache in process and shared on
//! Redis; and a Redis outage, which costs nothing but speed.

use cleave::config::Settings;
use cleave_tests::{Layout, ProcessOptions, TestApp, spawn_app_with, spawn_processes};
use reqwest::Method;
use serde_json::{Value, json};
use shared_kernel::Secret;
use std::time::{Duration, Instant};

/// Far longer than any test: what a test sees can only come from invalidation.
const TTL_MS: u64 = 300_000;
/// The bound the tests hold invalidation to (documented: typically milliseconds).
const WITHIN: Duration = Duration::from_secs(5);

async fn get(app: &TestApp, base: &str, path: &str) -> Value {
    let response = app.client.get(format!("{base}{path}")).send().await.expect("an answer");
    assert_eq!(response.status(), 200, "GET {base}{path}");
    response.json().await.expect("JSON")
}

async fn send(app: &TestApp, method: Method, base: &str, path: &str, token: &str, body: &Value) -> Value {
    let response =
        app.client.request(method.clone(), format!("{base}{path}")).bearer_auth(token).json(body).send().await.expect("an answer");
    let status = response.status();
    let text = response.text().await.expect("a body");
    assert!(status.is_success(), "{method} {base}{path}: {status} {text}");
    serde_json::from_str(&text).expect("JSON")
}

/// Polls `base` until `check` holds on what `path` answers; returns how long it took.
async fn seen_within(app: &TestApp, base: &str, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let found = get(app, base, path).await;
        if check(&found) {
            return started.elapsed();
        }
        assert!(started.elapsed() < WITHIN, "{what} not seen at {base} within {WITHIN:?}: {found}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `base` with an anonymous GraphQL query of `product` until it is named `name`; asserts
/// the answer was kept before it changes.
async fn graphql_name_seen_within(app: &TestApp, base: &str, product: &str, name: &str) -> Duration {
    let body = json!({"query": "query($id: ID!) { product(id: $id) { name } }", "variables": {"id": product}});
    let started = Instant::now();
    loop {
        let response = app.client.post(format!("{base}/graphql")).json(&body).send().await.expect("an answer");
        let found: Value = response.json().await.expect("JSON");
        if found["data"]["product"]["name"] == name {
            return started.elapsed();
        }
        assert!(started.elapsed() < WITHIN, "{name} not seen over GraphQL at {base} within {WITHIN:?}: {found}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether `base` answers the anonymous GraphQL query of `product` from its kept answers.
async fn graphql_kept(app: &TestApp, base: &str, product: &str) -> bool {
    let body = json!({"query": "query($id: ID!) { product(id: $id) { name } }", "variables": {"id": product}});
    let response = app.client.post(format!("{base}/graphql")).json(&body).send().await.expect("an answer");
    response.headers().get("x-cache").is_some_and(|value| value == "hit")
}

/// A counter of `/metrics` at `base` (0 when absent).
async fn metric(app: &TestApp, base: &str, line_start: &str) -> f64 {
    let text = app.client.get(format!("{base}/metrics")).send().await.expect("an answer").text().await.expect("a body");
    text.lines().filter(|line| line.starts_with(line_start)).filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

fn cache_settings(redis: Option<String>) -> impl FnOnce(&mut Settings) {
    move |settings: &mut Settings| {
        settings.cache.ttl_ms = TTL_MS;
        settings.cache.key_prefix = cleave_test_support::nats::unique_prefix();
        settings.cache.redis_url = redis.map(Secret::new);
    }
}

async fn a_write_on_one_instance_is_seen_by_the_other(redis: Option<String>) {
    let shared = redis.is_some();
    let Some(mut app) = spawn_processes(Layout::ServicesOverNats, cache_settings(redis), ProcessOptions::default()).await else { return };
    app.start_replica("catalog", "catalog-2").await;
    let admin = app.admin_token().await;
    let (one, two) = (app.process_url("catalog"), app.process_url("catalog-2"));
    let books = send(&app, Method::POST, &one, "/api/catalog/categories", &admin, &json!({"name": "Books"})).await;
    let body = json!({"sku": "C-1", "name": "Before", "price": {"amount": 1000, "currency": "EUR"}, "category_id": books["id"], "stock_on_hand": 5});
    let product = send(&app, Method::POST, &one, "/api/catalog/products", &admin, &body).await;
    let path = format!("/api/catalog/products/{}", product["id"].as_str().expect("an id"));
    let list = "/api/catalog/products?limit=20";
    // Both instances read everything once, so both have it cached.
    for base in [&one, &two] {
        assert_eq!(get(&app, base, &path).await["name"], "Before");
        assert_eq!(get(&app, base, list).await["items"][0]["name"], "Before");
        assert_eq!(get(&app, base, "/api/catalog/categories").await["items"].as_array().map(Vec::len), Some(1));
    }
    // Instance two keeps its anonymous GraphQL answer too.
    let id = product["id"].as_str().expect("an id");
    graphql_name_seen_within(&app, &two, id, "Before").await;
    assert!(graphql_kept(&app, &two, id).await, "instance two keeps the answer");
    // An edit on one instance: the other sees it by id, in the list and over GraphQL.
    let patch = json!({"version": 1, "name": "After"});
    send(&app, Method::PATCH, &one, &path, &admin, &patch).await;
    let by_id = seen_within(&app, &two, &path, "the new name", |found| found["name"] == "After").await;
    let over_graphql = graphql_name_seen_within(&app, &two, id, "After").await;
    seen_within(&app, &two, list, "the new name in the list", |found| found["items"][0]["name"] == "After").await;
    // Stock set on the other instance: the first sees it.
    send(&app, Method::PUT, &two, &format!("{path}/stock"), &admin, &json!({"on_hand": 2})).await;
    let stock = seen_within(&app, &one, &path, "the new stock", |found| found["stock_available"] == 2).await;
    // A category created on one: the other's category list has it.
    send(&app, Method::POST, &one, "/api/catalog/categories", &admin, &json!({"name": "Games"})).await;
    let categories =
        seen_within(&app, &two, "/api/catalog/categories", "the new category", |found| found["items"].as_array().map(Vec::len) == Some(2))
            .await;
    eprintln!("seen on the other instance after: edit {by_id:?} (GraphQL {over_graphql:?}), stock {stock:?}, category {categories:?}");
    if shared {
        // A product only instance one has read is served to instance two from Redis.
        let body = json!({"sku": "C-2", "name": "Shared", "price": {"amount": 500, "currency": "EUR"}});
        let other = send(&app, Method::POST, &one, "/api/catalog/products", &admin, &body).await;
        let other_path = format!("/api/catalog/products/{}", other["id"].as_str().expect("an id"));
        let hits = r#"cache_lookups_total{cache="catalog",level="redis",result="hit"}"#;
        let started = Instant::now();
        // Until the creation's events have reached both instances (each one moves the product's
        // generation on), an entry stored meanwhile is rightly not served.
        loop {
            get(&app, &one, &other_path).await;
            let before = metric(&app, &two, hits).await;
            assert_eq!(get(&app, &two, &other_path).await["name"], "Shared");
            if metric(&app, &two, hits).await > before {
                break;
            }
            assert!(started.elapsed() < WITHIN, "instance two never read instance one's entry from Redis");
            send(&app, Method::PUT, &one, &format!("{other_path}/stock"), &admin, &json!({"on_hand": 1})).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Two orders for the last two units and one more: the reservation decides, not the cache.
    let customer = app.customer("cache-buyer@example.com").await;
    let token = customer["access_token"].as_str().expect("a token");
    let mut confirmed = 0;
    for key in ["k-1", "k-2", "k-3"] {
        let order = json!({"items": [{"product_id": product["id"], "quantity": 1}], "payment": {"card_number": "4242424242424242"}});
        let response = app.request(Method::POST, "/api/orders").bearer_auth(token).header("idempotency-key", key).json(&order).send().await;
        let placed: Value = response.expect("an answer").json().await.expect("JSON");
        confirmed += usize::from(placed["status"] == "confirmed");
    }
    assert_eq!(confirmed, 2, "exactly the stock on hand was sold");
    for base in [&one, &two] {
        seen_within(&app, base, &path, "the stock sold out", |found| found["stock_available"] == 0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_catalog_instance_is_seen_by_the_other_in_process() {
    a_write_on_one_instance_is_seen_by_the_other(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_catalog_instance_is_seen_by_the_other_on_redis() {
    let Some(redis) = cleave_test_support::redis() else { return };
    a_write_on_one_instance_is_seen_by_the_other(Some(redis.url.clone())).await;
}

async fn readiness(app: &TestApp) -> (u16, Value) {
    let response = app.get("/health/ready", None).await;
    (response.status().as_u16(), response.json().await.expect("JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_reads_go_to_the_database_and_readiness_says_so() {
    let Some(mut redis) = cleave_test_support::redis::OwnRedisServer::start() else { return };
    let topology = cleave_tests::Topology::Monolith(cleave_tests::Database::Sqlite);
    let app = spawn_app_with(topology, cache_settings(Some(redis.url())), None).await.expect("SQLite needs nothing");
    let admin = app.admin_token().await;
    let body = json!({"sku": "R-1", "name": "Before", "price": {"amount": 1000, "currency": "EUR"}});
    let product: Value = app.post_json("/api/catalog/products", &body, Some(&admin)).await.json().await.expect("JSON");
    let path = format!("/api/catalog/products/{}", product["id"].as_str().expect("an id"));
    assert_eq!(app.get(&path, None).await.json::<Value>().await.expect("JSON")["name"], "Before");
    let (status, report) = readiness(&app).await;
    assert_eq!((status, report["checks"]["catalog.cache"].as_str()), (200, Some("ok")), "{report}");

    redis.stop();
    let response = app.request(Method::PATCH, &path).bearer_auth(&admin).json(&json!({"version": 1, "name": "During"})).send().await;
    assert_eq!(response.expect("an answer").status(), 200, "a write does not need the cache");
    for _ in 0..20 {
        let response = app.get(&path, None).await;
        assert_eq!(response.status(), 200, "a read does not need the cache");
        assert_eq!(response.json::<Value>().await.expect("JSON")["name"], "During");
    }
    let (status, report) = readiness(&app).await;
    assert_eq!(status, 200, "the process stays ready without its shared cache: {report}");
    assert_eq!(report["checks"]["catalog.cache"], "degraded", "{report}");
    assert!(report["reason"].as_str().is_some_and(|reason| reason.contains("catalog.cache")), "{report}");
    assert!(app.logs().contains("the Redis cache is failing"), "the outage is logged");

    redis.restart();
    let started = Instant::now();
    while readiness(&app).await.1["checks"]["catalog.cache"] != "ok" {
        assert!(started.elapsed() < WITHIN, "readiness did not see Redis come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = app.request(Method::PATCH, &path).bearer_auth(&admin).json(&json!({"version": 2, "name": "After"})).send().await;
    assert_eq!(response.expect("an answer").status(), 200);
    assert_eq!(app.get(&path, None).await.json::<Value>().await.expect("JSON")["name"], "After");
}

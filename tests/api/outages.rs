//! Outages in real topologies of OS processes: the broker restarted under load, and a service
//! killed and started again. Nothing is lost, nothing is applied twice, and what a stopped
//! service missed reaches it when it is back.

use cleave_tests::{Layout, TestApp, Topology, spawn_app_with};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const GOOD_CARD: &str = "4242424242424242";

async fn product(app: &TestApp, admin: &str, sku: &str, stock: i64) -> String {
    let body = json!({"sku": sku, "name": format!("Product {sku}"), "price": {"amount": 1000, "currency": "EUR"}, "stock_on_hand": stock});
    let response = app.post_json("/api/catalog/products", &body, Some(admin)).await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn place(app: &TestApp, token: &str, key: &str, product: &str) -> reqwest::Response {
    let body = json!({"items": [{"product_id": product, "quantity": 1}], "payment": {"card_number": GOOD_CARD}});
    app.request(Method::POST, "/api/orders").bearer_auth(token).header("idempotency-key", key).json(&body).send().await.unwrap()
}

async fn catalog_view(app: &TestApp, product: &str) -> Value {
    app.get(&format!("/api/catalog/products/{product}"), None).await.json().await.unwrap()
}

/// Polls `check` until it holds; fails after `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Orders and payments each in a process of their own over HTTP, events on JetStream. NATS is
/// killed and started again while buyers keep placing orders: placement goes on (its wire is
/// HTTP), the order events wait in the orders process's outbox, and once the broker is back the
/// catalog in the monolith has counted every confirmed order exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_under_load_loses_and_duplicates_no_event() {
    let topology = Topology::Processes(Layout::OrdersAndPaymentsApart);
    let Some(mut app) = spawn_app_with(topology, |_| {}, None).await else { return };
    let mut nats = app.take_broker();
    let admin = app.admin_token().await;
    let lamp = product(&app, &admin, "LAMP-1", 1_000).await;

    let buyers: Vec<String> = (0..48).map(|_| app.mint_customer_token()).collect();
    let load = async {
        let mut confirmed = 0;
        for (round, pair) in buyers.chunks(4).enumerate() {
            let responses = futures::future::join_all(pair.iter().map(|token| place(&app, token, "lamp", &lamp))).await;
            for response in responses {
                assert_eq!(response.status(), 201, "placement does not need the broker");
                let order: Value = response.json().await.unwrap();
                assert_eq!(order["status"], "confirmed", "{order}");
                confirmed += 1;
            }
            if round == 1 {
                tokio::task::block_in_place(|| nats.stop());
            }
            if round == 6 {
                tokio::task::block_in_place(|| nats.restart());
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        confirmed
    };
    let confirmed = load.await;
    assert_eq!(confirmed, 48);
    // The backlog drains after the broker is back; the count is exact: none lost, none twice.
    eventually("every sale counted", Duration::from_secs(60), || async { catalog_view(&app, &lamp).await["units_sold"] == confirmed })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let view = catalog_view(&app, &lamp).await;
    assert_eq!(view["units_sold"], confirmed, "still exact once everything is delivered: {view}");
    assert_eq!(view["stock_on_hand"].as_i64(), Some(1_000 - confirmed), "{view}");
    assert_eq!(view["stock_reserved"], 0, "{view}");
    // The catalog's consumer has nothing left behind it.
    let scrape = app.get("/metrics", None).await.text().await.unwrap();
    assert!(scrape.lines().any(|line| line == "events_consumer_lag{consumer=\"catalog.sales\"} 0"), "{scrape}");
    drop(app);
    drop(nats);
}

/// The four services and the gateway over NATS. The orders service is killed (SIGKILL); while
/// it is down the catalog renames a product and users deactivates a customer. Started again,
/// its durable consumers resume where they stopped: the order shows the new name, and the
/// deactivated customer is refused from orders' own projection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_catches_up_on_the_events_it_missed() {
    let Some(mut app) = spawn_app_with(Topology::Processes(Layout::ServicesOverNats), |_| {}, None).await else { return };
    let admin = app.admin_token().await;
    let book = product(&app, &admin, "BOOK-9", 10).await;
    let reader = app.customer("reader@example.com").await;
    let reader = reader["access_token"].as_str().unwrap().to_owned();
    let leaving = app.customer("leaving@example.com").await;
    let leaving = leaving["access_token"].as_str().unwrap().to_owned();
    let leaving_id = app.get("/api/users/me", Some(&leaving)).await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let order: Value = place(&app, &reader, "book", &book).await.json().await.unwrap();
    assert_eq!(order["items"][0]["product_name"], "Product BOOK-9");
    assert_eq!(place(&app, &leaving, "before", &book).await.status(), 201);

    app.kill_process("orders");
    let patch = app
        .request(Method::PATCH, &format!("/api/catalog/products/{book}"))
        .bearer_auth(&admin)
        .json(&json!({"version": 1, "name": "The Book, revised"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200);
    assert!(app.post_json(&format!("/api/users/{leaving_id}/deactivate"), &json!({}), Some(&admin)).await.status().is_success());
    let down = place(&app, &reader, "while-down", &book).await;
    assert_eq!(down.status(), 503, "no orders service answers");

    app.revive_process("orders").await;
    let path = format!("/api/orders/{}", order["id"].as_str().unwrap());
    eventually("the rename to reach orders", Duration::from_secs(30), || async {
        let now: Value = app.get(&path, Some(&reader)).await.json().await.unwrap();
        now["items"][0]["product_name"] == "The Book, revised"
    })
    .await;
    // Users' stream has a durable consumer of orders' own, caught up the same way.
    let mut key = 0;
    eventually("the deactivation to reach orders", Duration::from_secs(30), || {
        key += 1;
        let (app, leaving, book) = (&app, leaving.clone(), book.clone());
        async move { place(app, &leaving, &format!("after-{key}"), &book).await.status() == 403 }
    })
    .await;
}

/// Payments killed while a buyer keeps placing orders. The edge exchanges the card with payments
/// before it places anything, so every placement answers 503 with `Retry-After` and nothing is
/// placed or reserved; once the failures open the circuit to payments, well under a second.
/// Ten seconds on nothing is pending and nothing reserved; once payments is back (and the
/// circuit's probes pass) orders are confirmed again.
async fn payments_killed_under_order_load(layout: Layout) {
    let configure = |settings: &mut cleave::config::Settings| settings.modules.payments.circuit.open_secs = 2;
    let Some(mut app) = spawn_app_with(Topology::Processes(layout), configure, None).await else { return };
    let admin = app.admin_token().await;
    let kettle = product(&app, &admin, "KETTLE-1", 50).await;
    let buyer = app.customer("kettle@example.com").await;
    let buyer = buyer["access_token"].as_str().unwrap().to_owned();
    let before = place(&app, &buyer, "before", &kettle).await;
    assert_eq!(before.json::<Value>().await.unwrap()["status"], "confirmed");
    app.kill_process("payments");
    let mut answered_in = Vec::new();
    for n in 0..12 {
        let started = std::time::Instant::now();
        let response = place(&app, &buyer, &format!("down-{n}"), &kettle).await;
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(2), "placement {n} answered in {elapsed:?}");
        assert_eq!(response.status(), 503, "placement {n}");
        let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["detail"], "payments is unavailable; no order was placed, try again later", "{problem}");
        answered_in.push(elapsed);
    }
    let quick = answered_in.iter().filter(|elapsed| **elapsed < Duration::from_millis(500)).count();
    assert!(quick >= 6, "the circuit should open within a few failures and answer at once: {answered_in:?}");
    println!("{layout:?}: 12 refused with 503 ({quick} in under 500 ms, slowest {:?})", answered_in.iter().max().unwrap());
    // The overview still answers: the profile and the orders, without their payments, and says
    // which part is missing.
    let overview: Value = app.get("/api/me/overview", Some(&buyer)).await.json().await.unwrap();
    assert_eq!(overview["profile"]["email"], "kettle@example.com", "{overview}");
    let recent = overview["recent_orders"].as_array().unwrap();
    assert!(!recent.is_empty() && recent.iter().all(|order| order["payment"].is_null()), "{overview}");
    let warnings = overview["warnings"].as_array().unwrap();
    assert!(warnings.len() == 1 && warnings[0].as_str().unwrap().starts_with("payments: "), "{overview}");

    // The process that calls payments stays ready (payments' outage is not its own), says what
    // it serves without, and the rest of the API answers: a catalog read, a login.
    if layout == Layout::PaymentsApart {
        let ready = app.get("/health/ready", None).await;
        assert_eq!(ready.status(), 200);
        let report: Value = ready.json().await.unwrap();
        assert_eq!(
            (report["status"].as_str(), report["checks"]["payments.circuit"].as_str()),
            (Some("ready"), Some("degraded")),
            "{report}"
        );
        assert!(
            report["reason"].as_str().unwrap().starts_with("degraded: ") && report["reason"].as_str().unwrap().contains("payments.circuit"),
            "{report}"
        );
        // The status names the open circuit, and the count it could not get.
        let status: Value = app.get("/api/admin/status", Some(&admin)).await.json().await.unwrap();
        let payments = status["modules"].as_array().unwrap().iter().find(|module| module["name"] == "payments").unwrap().clone();
        assert_eq!((payments["runs"].as_str(), payments["circuit"].as_str()), (Some("http"), Some("open")), "{status}");
        assert!(payments["dead_letters_pending"].is_null() && payments["error"].is_string(), "{status}");
    }
    assert_eq!(app.get(&format!("/api/catalog/products/{kettle}"), None).await.status(), 200, "the catalog answers");
    assert_eq!(app.login("kettle@example.com", cleave_tests::PASSWORD).await.status(), 200, "logins answer");
    // Within a probe's interval every process reports payments unreachable, and is ready.
    for process in app.process_names() {
        let url = app.process_url(&process);
        eventually(&format!("{process} to see payments down"), Duration::from_secs(12), || {
            let (client, url) = (reqwest::Client::new(), url.clone());
            async move {
                let response = client.get(format!("{url}/health/ready")).send().await.unwrap();
                let ready = response.status() == 200;
                let report: Value = response.json().await.unwrap();
                // A process that never calls payments (the gateway over NATS calls it for the
                // edge; each service only what its part needs) has no check of it.
                ready && (report["checks"].get("payments.remote").is_none() || report["checks"]["payments.remote"] == "degraded")
            }
        })
        .await;
    }
    if layout == Layout::ServicesOverNats {
        let ready: Value = app.get("/health/ready", None).await.json().await.unwrap();
        assert_eq!(ready["checks"]["nats"], "ok", "{ready}");
    }

    tokio::time::sleep(Duration::from_secs(10)).await;
    let orders: Value = app.get("/api/orders?limit=100", Some(&buyer)).await.json().await.unwrap();
    let statuses: Vec<&str> = orders["items"].as_array().unwrap().iter().map(|order| order["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["confirmed"], "only the order placed before the outage: {orders}");
    let view = catalog_view(&app, &kettle).await;
    assert_eq!((view["stock_reserved"].as_i64(), view["stock_available"].as_i64()), (Some(0), Some(49)), "{view}");

    app.revive_process("payments").await;
    let mut n = 0;
    eventually("an order confirmed after payments is back", Duration::from_secs(20), || {
        n += 1;
        let (app, buyer, kettle) = (&app, &buyer, &kettle);
        async move {
            let response = place(app, buyer, &format!("back-{n}"), kettle).await;
            response.status() == 201 && response.json::<Value>().await.unwrap()["status"] == "confirmed"
        }
    })
    .await;
    for n in 0..3 {
        let response = place(&app, &buyer, &format!("after-{n}"), &kettle).await;
        assert_eq!(response.json::<Value>().await.unwrap()["status"], "confirmed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_killed_under_order_load_over_http() {
    payments_killed_under_order_load(Layout::PaymentsApart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_killed_under_order_load_over_nats() {
    payments_killed_under_order_load(Layout::ServicesOverNats).await;
}

/// The monolith as one OS process gets SIGTERM while six placements are in flight (each waiting
/// on a slow card charge). Readiness answers 503 at once; after the shutdown delay the listener
/// takes no new connection; the six placements still finish `confirmed`; the process exits 0
/// within its grace. Started again, nothing is lost: six orders confirmed, six units sold,
/// nothing left reserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_what_is_in_flight_and_loses_nothing() {
    let configure = |settings: &mut cleave::config::Settings| {
        settings.server.shutdown_delay_ms = 700;
        settings.server.shutdown_grace_secs = 15;
        settings.payments.simulator_latency_ms = 3_000;
        settings.orders.placement_wait_ms = 10_000;
    };
    let Some(mut app) = spawn_app_with(Topology::Processes(Layout::Monolith), configure, None).await else { return };
    let admin = app.admin_token().await;
    let lamp = product(&app, &admin, "LAMP-1", 20).await;
    let buyer = app.customer("lamp@example.com").await;
    let buyer = buyer["access_token"].as_str().unwrap().to_owned();
    let (client, orders_url) = (reqwest::Client::new(), app.url("/api/orders"));
    let placements: Vec<_> = (0..6)
        .map(|n| {
            let body = json!({"items": [{"product_id": lamp, "quantity": 1}], "payment": {"card_number": GOOD_CARD}});
            let request = client.post(&orders_url).bearer_auth(&buyer).header("idempotency-key", format!("term-{n}")).json(&body);
            tokio::spawn(async move {
                let response = request.send().await.expect("a placement in flight gets its answer");
                (response.status().as_u16(), response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    // All six hold their stock and wait on the charge.
    eventually("six reservations", Duration::from_secs(10), || async { catalog_view(&app, &lamp).await["stock_reserved"] == 6 }).await;

    let stopped_at = std::time::Instant::now();
    app.terminate_process("monolith");
    let base = app.process_url("monolith");
    let fresh = || reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let ready = fresh().get(format!("{base}/health/ready")).send().await.expect("still accepting during the delay");
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "draining");
    tokio::time::sleep(Duration::from_millis(1_000).saturating_sub(stopped_at.elapsed())).await;
    let refused = fresh().get(format!("{base}/health/live")).send().await;
    assert!(refused.as_ref().is_err_and(reqwest::Error::is_connect), "a new connection after the delay: {refused:?}");

    for placement in placements {
        let (status, order) = placement.await.unwrap();
        assert_eq!((status, order["status"].as_str()), (201, Some("confirmed")), "{order}");
    }
    let exit = app.wait_exit("monolith", Duration::from_secs(15)).await.expect("exits within its grace");
    assert!(exit.success(), "exit status {exit}");

    app.revive_process("monolith").await;
    let orders: Value = app.get("/api/orders?limit=100", Some(&buyer)).await.json().await.unwrap();
    let statuses: Vec<&str> = orders["items"].as_array().unwrap().iter().map(|order| order["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["confirmed"; 6], "{orders}");
    eventually("six units sold", Duration::from_secs(10), || async { catalog_view(&app, &lamp).await["units_sold"] == 6 }).await;
    let view = catalog_view(&app, &lamp).await;
    assert_eq!((view["stock_reserved"].as_i64(), view["stock_available"].as_i64()), (Some(0), Some(14)), "{view}");
}

/// Slow clients (slowloris): hundreds of connections that trickle their headers, and uploads
/// that trickle their bodies, hold the gateway's connections open. Every other client is still
/// answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_never_exhaust_the_gateway() {
    use tokio::io::AsyncWriteExt as _;
    let Some(app) = spawn_app_with(Topology::Processes(Layout::ServicesOverNats), |_| {}, None).await else { return };
    let admin = app.admin_token().await;
    product(&app, &admin, "SLOW-1", 10).await;
    let address = app.url("").trim_start_matches("http://").trim_end_matches('/').to_owned();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut slow = Vec::new();
    for n in 0..300 {
        let (address, mut stopped) = (address.clone(), stopped.clone());
        slow.push(tokio::spawn(async move {
            let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await else { return };
            let head = if n % 6 == 0 {
                // An upload that never finishes.
                "POST /api/orders HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
            } else {
                "GET /api/catalog/products HTTP/1.1\r\nHost: gateway\r\n"
            };
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // One more byte every half second, until told to stop or cut off.
            while !*stopped.borrow() {
                if stream.write_all(if n % 6 == 0 { b" " } else { b"X" }).await.is_err() {
                    return;
                }
                let _ = tokio::time::timeout(Duration::from_millis(500), stopped.changed()).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let response = client.get(app.url("/api/catalog/products")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap()["items"].as_array().map(Vec::len), Some(1));
        slowest = slowest.max(started.elapsed());
    }
    println!("with 300 slow clients connected, the slowest of 20 other requests took {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "a request beside the slow clients took {slowest:?}");
    let _ = stop.send(true);
    for task in slow {
        let _ = task.await;
    }
}

/// An HTTPS proxy that holds each request for `delay_ms` before it forwards it, and counts the
/// requests it holds at once: latency injected between a caller and the module it calls. It
/// serves with the monolith's certificate and forwards with the orders service's, as a
/// middlebox inside the deployment would have to.
struct SlowProxy {
    upstream: std::sync::Mutex<Option<String>>,
    delay_ms: std::sync::atomic::AtomicU64,
    in_flight: std::sync::atomic::AtomicUsize,
    most_in_flight: std::sync::atomic::AtomicUsize,
    held: std::sync::atomic::AtomicUsize,
    client: reqwest::Client,
}

impl SlowProxy {
    async fn start(trust: &cleave_tests::TopologyTrust) -> (std::sync::Arc<Self>, String) {
        let proxy = std::sync::Arc::new(Self {
            upstream: std::sync::Mutex::default(),
            delay_ms: std::sync::atomic::AtomicU64::default(),
            in_flight: std::sync::atomic::AtomicUsize::default(),
            most_in_flight: std::sync::atomic::AtomicUsize::default(),
            held: std::sync::atomic::AtomicUsize::default(),
            client: trust.http_client("orders"),
        });
        let router = axum::Router::new().fallback(Self::forward).with_state(proxy.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let files = shared_kernel::tls::TlsFiles {
            ca: trust.dir.join("ca.pem"),
            certificate: trust.dir.join("monolith.crt"),
            key: trust.dir.join("monolith.key"),
        };
        let listener = shared_kernel::tls::TlsListener::new(listener, shared_kernel::tls::server_config(&files).unwrap()).unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (proxy, url)
    }

    fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(u64::try_from(delay.as_millis()).unwrap(), std::sync::atomic::Ordering::SeqCst);
    }

    async fn forward(
        axum::extract::State(proxy): axum::extract::State<std::sync::Arc<Self>>,
        method: axum::http::Method,
        uri: axum::http::Uri,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        use std::sync::atomic::Ordering::SeqCst;
        // Counts this request while it is held or forwarded; a caller that gives up (its
        // timeout) drops this future, and the count with it.
        struct Held<'a>(&'a SlowProxy);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                self.0.in_flight.fetch_sub(1, SeqCst);
            }
        }
        let now = proxy.in_flight.fetch_add(1, SeqCst) + 1;
        proxy.most_in_flight.fetch_max(now, SeqCst);
        let _held = Held(&proxy);
        let delay = proxy.delay_ms.load(SeqCst);
        if delay > 0 {
            proxy.held.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let upstream = proxy.upstream.lock().unwrap().clone().expect("the proxy knows its upstream");
        let mut request = proxy.client.request(method, format!("{upstream}{uri}")).body(body);
        for (name, value) in &headers {
            if name != axum::http::header::HOST {
                request = request.header(name, value);
            }
        }
        let Ok(response) = request.send().await else { return axum::http::StatusCode::BAD_GATEWAY.into_response() };
        let (status, headers) = (response.status(), response.headers().clone());
        let body = response.bytes().await.unwrap_or_default();
        let mut answer = (status, body).into_response();
        for (name, value) in &headers {
            if name != axum::http::header::CONTENT_LENGTH && name != axum::http::header::TRANSFER_ENCODING {
                answer.headers_mut().insert(name, value.clone());
            }
        }
        answer
    }
}

/// Orders and payments apart from the monolith over HTTP, with the orders service's calls to
/// the catalog going through a proxy that holds each for 800 ms. The orders service allows the
/// catalog 300 ms per attempt, 2 calls in flight and 2 waiting (for at most 200 ms). Twelve
/// placements at once: each is answered 503 within its bound (two attempts at the read it starts
/// with, and the wait), never more than 2 calls are held at the catalog at once, the calls past
/// the queue are refused unsent, and nothing is reserved. Without the latency, orders confirm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_in_the_catalog_is_bounded_by_timeouts_and_the_bulkhead() {
    // The topology's trust files are made first, for the proxy between orders and the catalog.
    let trust_dir = tempfile::tempdir().unwrap();
    let trust = cleave_tests::TopologyTrust::init(trust_dir.path().join("trust"));
    let (proxy, proxy_url) = SlowProxy::start(&trust).await;
    let configure = |settings: &mut cleave::config::Settings| {
        let catalog = &mut settings.modules.catalog;
        catalog.timeout_ms = 300;
        catalog.retry.max_attempts = 2;
        catalog.retry.base_delay_ms = 50;
        catalog.bulkhead.max_concurrent = 2;
        catalog.bulkhead.max_queued = 2;
        catalog.bulkhead.max_wait_ms = 200;
        // The bulkhead is what this test watches: the circuit stays closed throughout.
        catalog.circuit.minimum_calls = 10_000;
    };
    let behind_proxy = proxy.clone();
    let adjust: cleave_tests::ProcessHook = std::sync::Arc::new(move |name, settings| {
        if name == "orders" {
            *behind_proxy.upstream.lock().unwrap() = settings.modules.catalog.url.clone();
            settings.modules.catalog.url = Some(proxy_url.clone());
        }
    });
    let options = cleave_tests::ProcessOptions { env: Vec::new(), adjust: Some(adjust), trust: Some(trust) };
    let Some(app) = cleave_tests::spawn_processes(Layout::OrdersAndPaymentsApart, configure, options).await else { return };
    let admin = app.admin_token().await;
    let stove = product(&app, &admin, "STOVE-1", 50).await;
    let buyer = app.customer("stove@example.com").await;
    let buyer = buyer["access_token"].as_str().unwrap().to_owned();
    let first = place(&app, &buyer, "before", &stove).await;
    assert_eq!(first.status(), 201, "through the proxy without latency, placement works");

    proxy.set_delay(Duration::from_millis(800));
    proxy.most_in_flight.store(0, std::sync::atomic::Ordering::SeqCst);
    let placements = (0..12).map(|n| {
        let (app, buyer, stove) = (&app, &buyer, &stove);
        async move {
            let started = std::time::Instant::now();
            let response = place(app, buyer, &format!("slow-{n}"), stove).await;
            (response.status().as_u16(), response.headers().get("retry-after").is_some(), started.elapsed())
        }
    });
    let answers = futures::future::join_all(placements).await;
    let slowest = answers.iter().map(|(_, _, elapsed)| *elapsed).max().unwrap();
    let quickest = answers.iter().map(|(_, _, elapsed)| *elapsed).min().unwrap();
    let most = proxy.most_in_flight.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "12 placements with 800 ms of catalog latency: quickest {quickest:?}, slowest {slowest:?}, most calls held at the catalog {most}"
    );
    for (status, retry_after, elapsed) in &answers {
        assert_eq!(*status, 503, "a placement whose catalog read timed out is refused");
        assert!(retry_after, "a 503 says when to come back");
        // Two attempts of 300 ms, a backoff of at most 100 ms, at most 200 ms in the queue,
        // and the hops: well under 2 s, never the 800 ms latency twice.
        assert!(*elapsed < Duration::from_millis(1_500), "a placement answered in {elapsed:?}");
    }
    assert!((1..=2).contains(&most), "the bulkhead holds the calls to the catalog at 2; {most} were held at once");
    let scrape = app.client.get(format!("{}/metrics", app.process_url("orders"))).send().await.unwrap().text().await.unwrap();
    let refused = scrape
        .lines()
        .find(|line| line.starts_with("upstream_rejected_total{") && line.contains("module=\"catalog\"") && line.contains("bulkhead_full"))
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "calls past the bulkhead's queue are refused unsent:\n{scrape}");
    let view = catalog_view(&app, &stove).await;
    assert_eq!(view["stock_reserved"], 0, "nothing was reserved: {view}");
    assert_eq!(view["stock_on_hand"], 49, "only the first order took stock: {view}");

    proxy.set_delay(Duration::ZERO);
    let after = place(&app, &buyer, "after", &stove).await;
    assert_eq!(after.status(), 201);
    let order: Value = after.json().await.unwrap();
    assert_eq!(order["status"], "confirmed", "{order}");
}

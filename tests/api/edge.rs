//! The edge: limits, malformed input, framework errors as problem+json, request ids, traces.

use cleave_tests::{TestApp, problem};
use reqwest::Method;

async fn a_body_over_the_limit_is_413_and_changes_nothing(app: TestApp) {
    // A declared 3 MiB body is refused from its headers alone: send only those and read the
    // answer (a client still uploading could see the connection close before the answer).
    let host = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let head = format!(
        "POST /api/users/register HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        3 * 1024 * 1024
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 413"), "{answer}");
    assert!(answer.contains("content-type: application/problem+json") && answer.contains("/problems/payload-too-large"), "{answer}");
    // Without a Content-Length the body is streamed; the server refuses it at the limit. Such
    // requests use a client that never puts a connection back in a pool.
    let unpooled = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    // Without a Content-Length the stream is cut at the limit too. The server answers 413 and
    // closes while the client may still be writing, so the client sees either that answer or
    // the connection cut: both are a refusal (and the check below shows nothing was created).
    let chunks = futures::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])));
    let streamed = unpooled
        .post(app.url("/api/users/register"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    match streamed {
        Ok(response) => {
            problem(response, 413).await;
        }
        Err(error) => assert!(error.is_request() || error.is_body(), "the upload was cut, not refused otherwise: {error}"),
    }
    assert_eq!(app.login("big@example.com", "correct horse battery staple").await.status(), 401);
}

async fn malformed_json_is_400_and_a_wrong_content_type_is_refused(app: TestApp) {
    let response = app
        .request(Method::POST, "/api/users/register")
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    let body = problem(response, 400).await;
    assert_eq!(body["type"], "/problems/bad-request");
    let response = app.request(Method::POST, "/api/users/register").header("content-type", "text/plain").body("{}").send().await.unwrap();
    problem(response, 400).await;
    let response =
        app.request(Method::POST, "/api/auth/login").header("content-type", "application/json").body("[1, 2]").send().await.unwrap();
    problem(response, 422).await;
}

async fn framework_errors_are_problem_json_too(app: TestApp) {
    problem(app.get("/api/no-such-thing", None).await, 404).await;
    let response = app.request(Method::DELETE, "/api/users/me").send().await.unwrap();
    assert!(response.headers().get("allow").is_some(), "405 keeps its Allow header");
    assert_eq!(problem(response, 405).await["type"], "/problems/method-not-allowed");
}

async fn every_response_carries_a_request_id_and_echoes_a_given_one(app: TestApp) {
    let response = app.get("/health/live", None).await;
    let generated = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).expect("a request id").to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok());
    let response = app.request(Method::GET, "/api/users/me").header("x-request-id", "client-chosen-42").send().await.unwrap();
    assert_eq!(response.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("client-chosen-42"));
    let body = problem(response, 401).await;
    assert_eq!(body["request_id"], "client-chosen-42");
    let response = app.request(Method::GET, "/health/live").header("x-request-id", "bad id with spaces").send().await.unwrap();
    assert_ne!(response.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("bad id with spaces"));
}

async fn the_trace_context_is_honoured_and_crosses_the_wire(app: TestApp) {
    let trace_id = format!("{:032x}", uuid::Uuid::now_v7().as_u128());
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let response = app
        .request(Method::POST, "/api/users/register")
        .header("traceparent", &traceparent)
        .json(&serde_json::json!({"email": "trace@example.com", "password": "correct horse battery staple", "name": "T"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let logs = app.logs();
    let request_lines = logs.lines().filter(|line| line.contains(&trace_id) && line.contains("status=")).count();
    // Behind a gateway, the gateway's line and the users service's line carry the same trace id.
    let expected = if app.topology.edge_hosts_users() { 1 } else { 2 };
    assert_eq!(request_lines, expected, "request log lines with trace {trace_id}");
}

async fn cors_allows_no_foreign_origin_by_default(app: TestApp) {
    let response = app
        .request(Method::OPTIONS, "/api/users/register")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());
}

async fn responses_are_compressed_when_asked(app: TestApp) {
    let response = app.request(Method::GET, "/openapi.json").header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(response.headers().get("content-encoding").and_then(|v| v.to_str().ok()), Some("gzip"));
}

/// `/api/v1/...` is canonical and `/api/...` its alias (docs/api-versioning.md): the same
/// handlers, the same data, whichever path a client uses; an unknown version is a 404.
async fn every_route_answers_at_its_canonical_path_and_at_the_alias(app: TestApp) {
    let admin = app.admin_token().await;
    let created = app
        .post_json(
            "/api/v1/catalog/products",
            &serde_json::json!({"sku": "V1-1", "name": "Versioned", "price": {"amount": 500, "currency": "EUR"}, "stock_on_hand": 3}),
            Some(&admin),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    for path in [format!("/api/v1/catalog/products/{id}"), format!("/api/catalog/products/{id}")] {
        let response = app.get(&path, None).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers().get("deprecation").is_none() && response.headers().get("sunset").is_none(), "{path}");
        assert_eq!(response.json::<serde_json::Value>().await.unwrap(), created, "{path}");
    }
    let mine = app.get("/api/v1/users/me", Some(&admin)).await;
    assert_eq!(mine.status(), 200);
    assert_eq!(
        mine.json::<serde_json::Value>().await.unwrap(),
        app.get("/api/users/me", Some(&admin)).await.json::<serde_json::Value>().await.unwrap()
    );
    problem(app.get(&format!("/api/v2/catalog/products/{id}"), None).await, 404).await;
    problem(app.get("/api/v1/v1/catalog/products", None).await, 404).await;
}

crate::topologies!(
    every_route_answers_at_its_canonical_path_and_at_the_alias,
    a_body_over_the_limit_is_413_and_changes_nothing,
    malformed_json_is_400_and_a_wrong_content_type_is_refused,
    framework_errors_are_problem_json_too,
    every_response_carries_a_request_id_and_echoes_a_given_one,
    the_trace_context_is_honoured_and_crosses_the_wire,
    cors_allows_no_foreign_origin_by_default,
    responses_are_compressed_when_asked,
);

mod wire {
    use cleave_tests::{Database, Topology, problem, spawn_app};
    use serde_json::json;
    use shared_kernel::identity::ServiceIdentity;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_public_listener_never_serves_the_module_wire() {
        for topology in [Topology::Monolith(Database::Sqlite), Topology::Extracted(Database::Sqlite)] {
            let app = spawn_app(topology).await.unwrap();
            let body = json!({"credentials": {"email": "a@example.com", "password": "x"}, "client_addr": "203.0.113.1"});
            problem(app.post_json("/rpc/users/login", &body, None).await, 404).await;
        }
    }

    /// One call of the internal HTTP wire, as an attacker on the internal network would send it:
    /// with a stolen certificate (the gateway's), else the TLS handshake already fails.
    async fn call(app: &cleave_tests::TestApp, path: &str, body: &[u8], headers: &[(&str, String)]) -> reqwest::Response {
        let internal = app.internal_address.clone().expect("an internal listener");
        let client = app.trust().http_client("gateway");
        let mut request = client.post(format!("{internal}{path}")).header("content-type", "application/json").body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.unwrap()
    }

    fn signed(identity: &ServiceIdentity, operation: &str, body: &[u8], issued_ago: chrono::Duration) -> String {
        let now = chrono::Utc::now() - issued_ago;
        identity.assert(operation, body, now, now + chrono::Duration::seconds(5))
    }

    /// The internal wire admits a call only with a valid assertion of a trusted process, bound
    /// to its operation and body, once; a process calls only as the services it hosts. Tried as
    /// an attacker on the internal network would: no assertion, the old shared token, a key of
    /// its own, an assertion for another operation or body, a replay, an expired one, a service
    /// name the process does not host. Each refusal is marked as being about the process's
    /// credentials (`x-cleave-wire-auth`), never the user's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_internal_http_wire_admits_only_a_trusted_process_signed_call_once() {
        let app = spawn_app(Topology::Extracted(Database::Sqlite)).await.unwrap();
        let gateway = &app.trust().identity("gateway");
        let body =
            serde_json::to_vec(&json!({"input": {"email": "wire@example.com", "password": "correct horse battery staple", "name": "W"}}))
                .unwrap();
        let refused = |response: reqwest::Response, status: u16| async move {
            assert!(response.headers().get("x-cleave-wire-auth").is_some(), "a refusal of the process, not of its caller");
            problem(response, status).await
        };
        let missing = refused(call(&app, "/rpc/users/register", &body, &[]).await, 401).await;
        assert!(missing["detail"].as_str().unwrap().contains("no service assertion"), "{missing}");
        refused(call(&app, "/rpc/users/register", &body, &[("x-cleave-service-token", "a token of old".to_owned())]).await, 401).await;
        let impostor = ServiceIdentity::generate("gateway");
        let forged = signed(&impostor, "users.register", &body, chrono::Duration::zero());
        refused(call(&app, "/rpc/users/register", &body, &[("x-cleave-assertion", forged)]).await, 401).await;
        let for_login = signed(gateway, "users.login", &body, chrono::Duration::zero());
        refused(call(&app, "/rpc/users/register", &body, &[("x-cleave-assertion", for_login)]).await, 401).await;
        let other_body = signed(gateway, "users.register", b"{}", chrono::Duration::zero());
        refused(call(&app, "/rpc/users/register", &body, &[("x-cleave-assertion", other_body)]).await, 401).await;
        let expired = signed(gateway, "users.register", &body, chrono::Duration::minutes(2));
        let expired = refused(call(&app, "/rpc/users/register", &body, &[("x-cleave-assertion", expired)]).await, 401).await;
        assert!(expired["detail"].as_str().unwrap().contains("expired"), "{expired}");
        // A genuine call taken after its deadline (it waited in a queue): not started, 503.
        let late = signed(gateway, "users.register", &body, chrono::Duration::seconds(10));
        let late = problem(call(&app, "/rpc/users/register", &body, &[("x-cleave-assertion", late)]).await, 503).await;
        assert!(late["detail"].as_str().unwrap().contains("deadline passed"), "{late}");
        let valid = signed(gateway, "users.register", &body, chrono::Duration::zero());
        let accepted = call(&app, "/rpc/users/register", &body, &[("x-cleave-assertion", valid.clone())]).await;
        assert_eq!(accepted.status(), 200);
        let replayed = refused(call(&app, "/rpc/users/register", &body, &[("x-cleave-assertion", valid)]).await, 401).await;
        assert!(replayed["detail"].as_str().unwrap().contains("used before"), "{replayed}");

        // A service name: only one the process hosts; then the operation's own list judges it.
        let user_id = accepted.json::<serde_json::Value>().await.unwrap()["id"].clone();
        let get_user = serde_json::to_vec(&json!({"id": user_id})).unwrap();
        let as_service = |identity: &ServiceIdentity, service: &str| {
            vec![
                ("x-cleave-assertion", signed(identity, "users.get_user", &get_user, chrono::Duration::zero())),
                ("x-cleave-service", service.to_owned()),
            ]
        };
        let not_its_own = refused(call(&app, "/rpc/users/get_user", &get_user, &as_service(gateway, "orders")).await, 403).await;
        assert!(
            not_its_own["detail"].as_str().unwrap().contains("the gateway process may not call as the orders service"),
            "{not_its_own}"
        );
        let refused_by_users =
            problem(call(&app, "/rpc/users/get_user", &get_user, &as_service(&app.trust().identity("orders"), "orders")).await, 403).await;
        assert!(
            refused_by_users["detail"].as_str().unwrap_or_default().contains("the orders service may not call users.get_user"),
            "{refused_by_users}"
        );
        // Health stays open for probes (of the deployment: TLS with its certificates).
        let internal = app.internal_address.clone().unwrap();
        assert_eq!(app.trust().http_client("gateway").get(format!("{internal}/health/ready")).send().await.unwrap().status(), 200);
        // Without a certificate of the deployment nothing reaches the wire at all.
        let stranger = reqwest::Client::builder().tls_danger_accept_invalid_certs(true).build().unwrap();
        assert!(stranger.get(format!("{internal}/health/ready")).send().await.is_err(), "no client certificate, no connection");
        let plain = internal.replacen("https://", "http://", 1);
        assert!(app.client.get(format!("{plain}/health/ready")).send().await.is_err(), "no plain HTTP");
    }

    /// The same over NATS: a client on the broker that requests a module's subject directly is
    /// refused without a valid, fresh assertion of a trusted process.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_nats_wire_admits_only_a_trusted_process_signed_call_once() {
        let app = spawn_app(Topology::ExtractedOverNats(Database::Sqlite)).await.unwrap();
        // The gateway's stolen broker credentials: it may call users' operations.
        let url = app.nats_url().expect("a NATS topology");
        let client = app.trust().nats_client("gateway", &url).await.unwrap();
        let subject = format!("{}.rpc.users.register", app.nats_prefix().expect("a NATS topology"));
        let body = serde_json::to_vec(
            &json!({"input": {"email": "nats-wire@example.com", "password": "correct horse battery staple", "name": "N"}}),
        )
        .unwrap();
        let ask = |assertion: Option<String>| {
            let (client, subject, body) = (client.clone(), subject.clone(), body.clone());
            async move {
                let mut headers = async_nats::HeaderMap::new();
                if let Some(assertion) = assertion {
                    headers.insert("x-cleave-assertion", assertion.as_str());
                }
                let answer = client.request_with_headers(subject, headers, body.into()).await.unwrap();
                let code = answer.headers.as_ref().and_then(|headers| headers.get("Nats-Service-Error-Code")).map(|code| code.to_string());
                let wire_auth = answer.headers.as_ref().is_some_and(|headers| headers.get("x-cleave-wire-auth").is_some());
                (code, wire_auth)
            }
        };
        let gateway = &app.trust().identity("gateway");
        assert_eq!(ask(None).await, (Some("401".to_owned()), true), "no assertion");
        let forged = signed(&ServiceIdentity::generate("gateway"), "users.register", &body, chrono::Duration::zero());
        assert_eq!(ask(Some(forged)).await, (Some("401".to_owned()), true), "another key");
        let expired = signed(gateway, "users.register", &body, chrono::Duration::minutes(2));
        assert_eq!(ask(Some(expired)).await, (Some("401".to_owned()), true), "expired");
        // A genuine call taken after its deadline is dropped unanswered: its caller has gone.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("x-cleave-assertion", signed(gateway, "users.register", &body, chrono::Duration::seconds(10)).as_str());
        let late =
            async_nats::Request::new().headers(headers).payload(body.clone().into()).timeout(Some(std::time::Duration::from_secs(2)));
        assert!(client.send_request(subject.clone(), late).await.is_err(), "no answer to a call past its deadline");
        let valid = signed(gateway, "users.register", &body, chrono::Duration::zero());
        assert_eq!(ask(Some(valid.clone())).await, (None, false), "a valid call is answered");
        assert_eq!(ask(Some(valid)).await, (Some("401".to_owned()), true), "a replay");
    }
}

/// The broker decides who may say what: every process kind is a user of the broker that
/// `cleave trust init` configured, with only the subjects its part needs. Tried as an attacker
/// would, against the five services and the gateway as OS processes: with no credentials at
/// all, and with the notifications service's stolen key and certificate, while a customer buys.
mod broker {
    use cleave_tests::{Layout, TestApp, Topology, spawn_app};
    use futures::StreamExt as _;
    use serde_json::{Value, json};
    use std::time::Duration;

    /// What the broker told a connection it refused (`-ERR` lines).
    type Refusals = tokio::sync::mpsc::UnboundedReceiver<String>;

    async fn connect_as(app: &TestApp, kind: &str) -> (async_nats::Client, Refusals) {
        let (sender, refusals) = tokio::sync::mpsc::unbounded_channel();
        let options = app.trust().nats_options(kind).event_callback(move |event| {
            let sender = sender.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    let _ = sender.send(error.to_string().to_lowercase());
                }
            }
        });
        (options.connect(app.nats_url().unwrap()).await.expect("the stolen key connects"), refusals)
    }

    /// Waits (up to 5 s) for the broker to refuse `what` on `subject`.
    async fn refused(refusals: &mut Refusals, what: &str, subject: &str) {
        let expected = format!("permissions violation for {what} to \"{subject}\"").to_lowercase();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, refusals.recv()).await {
                Ok(Some(refusal)) if refusal.contains(&expected) => return,
                Ok(Some(_)) => {}
                _ => panic!("the broker did not refuse {what} to {subject}"),
            }
        }
    }

    pub(super) async fn buy(app: &TestApp) {
        let admin = app.admin_token().await;
        let body = json!({"sku": "WATCHED-1", "name": "Watched", "price": {"amount": 700, "currency": "EUR"}, "stock_on_hand": 5});
        let created: Value = app.post_json("/api/catalog/products", &body, Some(&admin)).await.json().await.unwrap();
        let customer = app.customer("watched@example.com").await;
        let token = customer["access_token"].as_str().unwrap();
        let order = json!({"items": [{"product_id": created["id"], "quantity": 1}], "payment": {"card_number": "4242424242424242"}});
        let response = app
            .request(reqwest::Method::POST, "/api/orders")
            .bearer_auth(token)
            .header("idempotency-key", "watched")
            .json(&order)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let placed: Value = response.json().await.unwrap();
        assert_eq!(placed["status"], "confirmed", "the deployment works under the permissions: {placed}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_what_each_process_kind_may_say_gets_through_the_broker() {
        let Some(app) = spawn_app(Topology::Processes(Layout::ServicesOverNats)).await else { return };
        let url = app.nats_url().unwrap();

        // No credentials: no TLS, then TLS with a certificate of the deployment but no key.
        assert!(async_nats::ConnectOptions::new().max_reconnects(Some(1)).connect(&url).await.is_err(), "a plain client is refused");
        assert!(app.trust().tls_only_options("notifications").connect(&url).await.is_err(), "a certificate alone is refused");

        // The notifications service's key: it may not read payments' requests, nor answer users'
        // key requests, nor call charge, nor speak for users on their event subjects.
        let (thief, mut refusals) = connect_as(&app, "notifications").await;
        let mut payments_requests = thief.subscribe("cleave.rpc.payments.>").await.unwrap();
        refused(&mut refusals, "subscription", "cleave.rpc.payments.>").await;
        let mut key_requests = thief.subscribe("cleave.rpc.users.signing_keys").await.unwrap();
        refused(&mut refusals, "subscription", "cleave.rpc.users.signing_keys").await;
        let charge = json!({"request": {"order_id": uuid::Uuid::new_v4(), "customer_id": uuid::Uuid::new_v4(), "amount": {"amount": 100, "currency": "EUR"}, "payment_method": "pm_stolen"}});
        let sent = thief.request("cleave.rpc.payments.charge", serde_json::to_vec(&charge).unwrap().into());
        assert!(tokio::time::timeout(Duration::from_secs(3), sent).await.map_or(true, |answer| answer.is_err()), "no charge is answered");
        refused(&mut refusals, "publish", "cleave.rpc.payments.charge").await;
        thief.publish("cleave.events.users.user_deactivated.v1", b"{}".as_slice().into()).await.unwrap();
        thief.flush().await.unwrap();
        refused(&mut refusals, "publish", "cleave.events.users.user_deactivated.v1").await;

        // A customer buys through the gateway meanwhile: every call (the saga's charge, every
        // process's key fetch) goes through, and the thief's subscriptions see none of it.
        buy(&app).await;
        let nothing = Duration::from_millis(500);
        assert!(tokio::time::timeout(nothing, payments_requests.next()).await.is_err(), "the thief read no payment request");
        assert!(tokio::time::timeout(nothing, key_requests.next()).await.is_err(), "the thief answered no key request");
    }
}

/// Per-client rate limiting at the edge: in the monolith, and at the gateway of a split
/// deployment.
mod rate_limit {
    use cleave_tests::{Database, TestApp, Topology, problem, spawn_app_with};

    async fn limited(topology: Topology) -> TestApp {
        spawn_app_with(
            topology,
            |settings| {
                settings.server.rate_limit.enabled = true;
                settings.server.rate_limit.per_second = 1;
                settings.server.rate_limit.burst = 3;
            },
            None,
        )
        .await
        .expect("SQLite needs nothing")
    }

    fn header(response: &reqwest::Response, name: &str) -> String {
        response.headers().get(name).unwrap_or_else(|| panic!("no {name}")).to_str().unwrap().to_owned()
    }

    async fn a_client_past_its_burst_gets_429_and_another_client_does_not(app: TestApp) {
        // Two customers' tokens, minted without a request.
        let (ada, grace) = (app.mint_customer_token(), app.mint_customer_token());
        for remaining in (0..3).rev() {
            let response = app.get("/api/catalog/products", None).await;
            assert_eq!(response.status(), 200);
            assert_eq!(header(&response, "ratelimit-limit"), "3");
            assert_eq!(header(&response, "ratelimit-remaining"), remaining.to_string());
        }
        let refused = app.get("/api/catalog/products", None).await;
        assert_eq!(refused.status(), 429);
        let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
        assert!((1..=3).contains(&retry_after), "Retry-After: {retry_after}");
        assert_eq!(header(&refused, "ratelimit-remaining"), "0");
        let body = problem(refused, 429).await;
        assert_eq!(body["detail"], "too many requests from this client; slow down");

        // A signed-in client is counted by its token's subject, not by the shared address.
        for _ in 0..3 {
            assert_eq!(app.get("/api/orders", Some(&ada)).await.status(), 200);
        }
        assert_eq!(app.get("/api/orders", Some(&ada)).await.status(), 429);
        assert_eq!(app.get("/api/orders", Some(&grace)).await.status(), 200);

        // Health and metrics are never limited.
        for _ in 0..10 {
            assert_eq!(app.get("/health/live", None).await.status(), 200);
            let metrics = app.get("/metrics", None).await;
            assert_eq!(metrics.status(), 200);
            assert!(metrics.headers().get("ratelimit-limit").is_none());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_the_monolith() {
        a_client_past_its_burst_gets_429_and_another_client_does_not(limited(Topology::Monolith(Database::Sqlite)).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_the_gateway() {
        a_client_past_its_burst_gets_429_and_another_client_does_not(limited(Topology::Extracted(Database::Sqlite)).await).await;
    }
}

/// The card stops at payments: a customer buys while a broker user with full read rights (made
/// for this test; no deployment has one) watches every subject. The card number crosses the
/// broker in one message only, the `tokenize` request to payments (none at all when the wire is
/// HTTP), and afterwards no table of any process's database holds it.
mod card_watch {
    use cleave_tests::{Layout, ProcessOptions, TestApp, TopologyTrust, spawn_processes};
    use futures::StreamExt as _;
    use sea_orm::{ConnectionTrait as _, Statement};
    use std::time::Duration;

    const CARD: &str = "4242424242424242";

    /// Starts `layout` with a watcher on its broker, buys once, and returns the subjects of the
    /// messages that carried the card, with the subjects of every message seen.
    async fn buy_while_watched(layout: Layout) -> Option<(TestApp, Vec<String>, Vec<String>)> {
        let trust_dir = tempfile::tempdir().unwrap();
        let trust = TopologyTrust::init(trust_dir.path().join("trust"));
        let watcher = trust.add_watcher();
        let app = spawn_processes(layout, |_| {}, ProcessOptions { trust: Some(trust), ..ProcessOptions::default() }).await?;
        let eyes = watcher.connect(app.nats_url().unwrap()).await.expect("the watcher connects");
        let mut everything = eyes.subscribe(">").await.unwrap();
        eyes.flush().await.unwrap();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let watching = tokio::spawn(async move {
            let (mut carrying, mut seen) = (Vec::new(), Vec::new());
            loop {
                let message = tokio::select! {
                    Some(message) = everything.next() => message,
                    _ = &mut stopped => break,
                };
                let subject = message.subject.to_string();
                if message.payload.windows(CARD.len()).any(|window| window == CARD.as_bytes()) {
                    carrying.push(subject.clone());
                }
                seen.push(subject);
            }
            (carrying, seen)
        });
        super::broker::buy(&app).await;
        // The order's events and the reactions to them cross the broker after the answer.
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.send(()).unwrap();
        let (carrying, seen) = watching.await.unwrap();
        drop(trust_dir);
        Some((app, carrying, seen))
    }

    /// How many rows of every table of every process's database hold `text`.
    async fn rows_holding(app: &TestApp, text: &str) -> usize {
        let mut found = 0;
        for url in app.database_urls() {
            let db = sea_orm::Database::connect(&url).await.unwrap();
            let backend = db.get_database_backend();
            let tables = db
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT table_schema, table_name FROM information_schema.tables \
                     WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
                ))
                .await
                .unwrap();
            for table in tables {
                let (schema, name): (String, String) = (table.try_get_by_index(0).unwrap(), table.try_get_by_index(1).unwrap());
                let count = db
                    .query_one_raw(Statement::from_string(
                        backend,
                        format!("SELECT count(*) FROM \"{schema}\".\"{name}\" t WHERE t::text LIKE '%{text}%'"),
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                found += usize::try_from(count.try_get_by_index::<i64>(0).unwrap()).unwrap();
            }
            db.close().await.unwrap();
        }
        found
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn over_nats_the_card_crosses_the_broker_only_to_payments_and_rests_nowhere() {
        let Some((app, carrying, seen)) = buy_while_watched(Layout::ServicesOverNats).await else { return };
        let prefix = app.nats_subject_prefix().unwrap().to_owned();
        assert!(seen.iter().any(|subject| subject == &format!("{prefix}.rpc.orders.place_order")), "the watcher saw the placement");
        assert_eq!(carrying, [format!("{prefix}.rpc.payments.tokenize")], "the card in one message only");
        assert!(rows_holding(&app, "4242").await > 0, "the scan reads the tables (the last four digits are kept)");
        assert_eq!(rows_holding(&app, CARD).await, 0, "no table holds the card");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn over_http_the_card_never_crosses_the_broker_and_rests_nowhere() {
        let Some((app, carrying, seen)) = buy_while_watched(Layout::PaymentsApart).await else { return };
        let prefix = app.nats_subject_prefix().unwrap().to_owned();
        assert!(seen.iter().any(|subject| subject.starts_with(&format!("{prefix}.events.orders."))), "the watcher saw the order's events");
        assert!(carrying.is_empty(), "the card is in no event: {carrying:?}");
        assert!(rows_holding(&app, "4242").await > 0, "the scan reads the tables (the last four digits are kept)");
        assert_eq!(rows_holding(&app, CARD).await, 0, "no table holds the card");
    }
}

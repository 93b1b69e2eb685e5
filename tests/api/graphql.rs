//! The GraphQL API: queries, mutations, auth, errors and limits over HTTP in every topology;
//! batching proven by counting contract calls; the committed SDL matches the code.

use catalog_contract::{CatalogApi, CategoryView, NewCategory, NewProduct, ProductPatch, ProductQuery, ProductView, ReserveLine, SetStock};
use cleave_tests::{Database, TestApp, Topology, spawn_app};
use serde_json::{Value, json};
use shared_kernel::{ApiError, Caller, CategoryId, OrderId, Page, PageRequest, ProductId};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const GOOD_CARD: &str = "4242424242424242";

async fn admin_product(app: &TestApp, admin: &str, sku: &str, category: Option<&str>) -> Value {
    let created = app
        .graphql(
            "mutation($input: NewProductInput!) { createProduct(input: $input) { id sku name version price { amount currency } stockAvailable } }",
            json!({"input": {"sku": sku, "name": format!("Name {sku}"), "price": {"amount": 1250, "currency": "EUR"}, "stockOnHand": 10, "categoryId": category}}),
            Some(admin),
        )
        .await;
    assert!(created["errors"].is_null(), "{created}");
    created["data"]["createProduct"].clone()
}

async fn catalog_queries_and_admin_mutations_answer_as_rest_does(app: TestApp) {
    let admin = app.admin_token().await;
    let category = app.graphql("mutation { createCategory(name: \"Tools\") { id name } }", json!({}), Some(&admin)).await;
    let category_id = category["data"]["createCategory"]["id"].as_str().unwrap().to_owned();
    let hammer = admin_product(&app, &admin, "HAM-1", Some(&category_id)).await;
    admin_product(&app, &admin, "SAW-1", None).await;
    assert_eq!(hammer["price"], json!({"amount": 1250, "currency": "EUR"}));

    let query = "query($id: ID!) { product(id: $id) { id sku name stockAvailable version category { id name } } }";
    let fetched = app.graphql(query, json!({"id": hammer["id"]}), None).await;
    let product = &fetched["data"]["product"];
    assert_eq!((product["sku"].as_str(), product["stockAvailable"].as_i64()), (Some("HAM-1"), Some(10)));
    assert_eq!(product["category"]["name"], "Tools");
    let rest: Value = app.get(&format!("/api/catalog/products/{}", hammer["id"].as_str().unwrap()), None).await.json().await.unwrap();
    assert_eq!(product["name"], rest["name"]);
    let missing = app.graphql(query, json!({"id": uuid::Uuid::now_v7().to_string()}), None).await;
    assert!(missing["data"]["product"].is_null() && missing["errors"].is_null(), "{missing}");

    // Relay pagination over the module's cursors.
    let page =
        "query($after: String) { products(first: 1, after: $after) { edges { cursor node { sku } } pageInfo { hasNextPage endCursor } } }";
    let first = app.graphql(page, json!({"after": null}), None).await;
    let connection = &first["data"]["products"];
    assert_eq!(connection["edges"][0]["node"]["sku"], "HAM-1");
    assert_eq!(connection["pageInfo"]["hasNextPage"], true);
    let second = app.graphql(page, json!({"after": connection["pageInfo"]["endCursor"]}), None).await;
    assert_eq!(second["data"]["products"]["edges"][0]["node"]["sku"], "SAW-1");
    assert_eq!(second["data"]["products"]["pageInfo"]["hasNextPage"], false);
    let in_category = app
        .graphql("query($c: ID) { products(category: $c) { edges { node { sku } } } categories { edges { node { name products { edges { node { sku } } } } } } }", json!({"c": category_id}), None)
        .await;
    assert_eq!(in_category["data"]["products"]["edges"].as_array().unwrap().len(), 1);
    assert_eq!(in_category["data"]["categories"]["edges"][0]["node"]["products"]["edges"][0]["node"]["sku"], "HAM-1");

    // Optimistic concurrency and admin-only writes, with the problem codes.
    let update = "mutation($id: ID!, $v: Int!) { updateProduct(id: $id, input: {version: $v, name: \"Claw hammer\"}) { name version } }";
    let updated = app.graphql(update, json!({"id": hammer["id"], "v": 1}), Some(&admin)).await;
    assert_eq!(updated["data"]["updateProduct"], json!({"name": "Claw hammer", "version": 2}));
    let stale = app.graphql(update, json!({"id": hammer["id"], "v": 1}), Some(&admin)).await;
    assert_eq!(stale["errors"][0]["extensions"]["code"], "conflict", "{stale}");
    let customer = app.customer("gql-shopper@example.com").await;
    let refused = app.graphql("mutation { createCategory(name: \"Toys\") { id } }", json!({}), customer["access_token"].as_str()).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "forbidden", "{refused}");
    let anonymous = app.graphql("mutation { createCategory(name: \"Toys\") { id } }", json!({}), None).await;
    assert_eq!(anonymous["errors"][0]["extensions"]["code"], "unauthenticated");
    let invalid = app.graphql("mutation { setStock(id: \"nope\", onHand: 5) { id } }", json!({}), Some(&admin)).await;
    assert_eq!(invalid["errors"][0]["extensions"]["code"], "not-found");
}

async fn accounts_orders_and_payments_work_through_graphql(app: TestApp) {
    let admin = app.admin_token().await;
    let drill = admin_product(&app, &admin, "DRILL-1", None).await;
    let registered = app
        .graphql(
            "mutation { register(email: \"gql@example.com\", password: \"correct horse battery staple\", name: \"G\") { id email status } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(registered["data"]["register"]["status"], "ACTIVE", "{registered}");
    assert!(!registered.to_string().contains("argon2"), "no hash is ever exposed");
    let login = app
        .graphql("mutation { login(email: \"gql@example.com\", password: \"correct horse battery staple\") { accessToken refreshToken tokenType } }", json!({}), None)
        .await;
    let token = login["data"]["login"]["accessToken"].as_str().unwrap().to_owned();
    let wrong = app
        .graphql("mutation { login(email: \"gql@example.com\", password: \"wrong password here\") { accessToken } }", json!({}), None)
        .await;
    assert_eq!(wrong["errors"][0]["extensions"]["code"], "unauthenticated");
    let refreshed = app
        .graphql(
            "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }",
            json!({"t": login["data"]["login"]["refreshToken"]}),
            None,
        )
        .await;
    assert!(refreshed["data"]["refreshToken"]["accessToken"].is_string(), "{refreshed}");
    let me = app.graphql("{ me { email roles } }", json!({}), Some(&token)).await;
    assert_eq!(me["data"]["me"], json!({"email": "gql@example.com", "roles": ["customer"]}));
    let nobody = app.graphql("{ me { email } }", json!({}), None).await;
    assert_eq!(nobody["errors"][0]["extensions"]["code"], "unauthenticated");

    let place = "mutation($input: PlaceOrderInput!, $key: String!) { placeOrder(input: $input, idempotencyKey: $key) { id status total { amount } failureReason items { quantity unitPrice { amount } product { sku } } payment { status amount { amount } cardLast4 } } }";
    let input = json!({"items": [{"productId": drill["id"], "quantity": 2}], "cardNumber": GOOD_CARD});
    let placed = app.graphql(place, json!({"input": input, "key": "gql-1"}), Some(&token)).await;
    let order = &placed["data"]["placeOrder"];
    assert_eq!(order["status"], "CONFIRMED", "{placed}");
    assert_eq!(order["total"]["amount"], 2500);
    assert_eq!(order["items"][0]["product"]["sku"], "DRILL-1");
    assert_eq!(order["payment"], json!({"status": "CAPTURED", "amount": {"amount": 2500}, "cardLast4": "4242"}));
    let replay = app.graphql(place, json!({"input": input, "key": "gql-1"}), Some(&token)).await;
    assert_eq!(replay["data"]["placeOrder"]["id"], order["id"], "the same key gives the same order");

    let declined = app
        .graphql(
            place,
            json!({"input": {"items": [{"productId": drill["id"], "quantity": 1}], "cardNumber": "4000000000000002"}, "key": "gql-2"}),
            Some(&token),
        )
        .await;
    assert_eq!(declined["data"]["placeOrder"]["status"], "REJECTED");
    assert_eq!(declined["data"]["placeOrder"]["failureReason"], "card declined");
    let luhn = app
        .graphql(
            place,
            json!({"input": {"items": [{"productId": drill["id"], "quantity": 1}], "cardNumber": "4242424242424241"}, "key": "gql-3"}),
            Some(&token),
        )
        .await;
    assert_eq!(luhn["errors"][0]["extensions"]["code"], "validation-failed", "{luhn}");
    assert_eq!(luhn["errors"][0]["extensions"]["errors"][0]["field"], "input.cardNumber");
    assert!(!luhn.to_string().contains("4242424242424241"), "the card number is never echoed");

    let mine = app.graphql("{ myOrders(first: 10) { edges { node { id status } } } }", json!({}), Some(&token)).await;
    assert_eq!(mine["data"]["myOrders"]["edges"].as_array().unwrap().len(), 2);
    let stranger = app.customer("gql-stranger@example.com").await;
    let theirs =
        app.graphql("query($id: ID!) { order(id: $id) { id } }", json!({"id": order["id"]}), stranger["access_token"].as_str()).await;
    assert!(theirs["data"]["order"].is_null(), "another customer's order is not there: {theirs}");
    let cancelled = app
        .graphql("mutation($id: ID!) { cancelOrder(id: $id) { status payment { status } } }", json!({"id": order["id"]}), Some(&token))
        .await;
    assert_eq!(cancelled["data"]["cancelOrder"], json!({"status": "CANCELLED", "payment": {"status": "REFUNDED"}}));
}

async fn limits_refuse_deep_and_costly_queries_before_running_them(app: TestApp) {
    let deep = "{ categories(first: 1) { edges { node { products(first: 1) { edges { node { category { products(first: 1) { edges { node { category { name } } } } } } } } } } } }";
    let refused = app.graphql(deep, json!({}), None).await;
    assert!(refused["data"].is_null(), "{refused}");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("nested too deep"), "{refused}");
    assert_eq!(refused["errors"][0]["extensions"]["code"], "bad-request");
    let costly = "{ products(first: 100) { edges { node { category { products(first: 100) { edges { node { id } } } } } } } }";
    let refused = app.graphql(costly, json!({}), None).await;
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("too complex"), "{refused}");
    assert_eq!(refused["errors"][0]["extensions"]["code"], "bad-request");
    let fine = app.graphql("{ products(first: 5) { edges { node { id category { name } } } } }", json!({}), None).await;
    assert!(fine["errors"].is_null(), "{fine}");
    let aliased: String = (0..21).map(|i| format!("a{i}: categories(first: 1) {{ nodes {{ id }} }} ")).collect();
    let refused = app.graphql(&format!("{{ {aliased} }}"), json!({}), None).await;
    let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("root fields") || message.contains("aliases"), "{refused}");
    assert_eq!(refused["errors"][0]["extensions"]["code"], "bad-request");
    let aliases: String = (0..21).map(|i| format!("n{i}: id ")).collect();
    let refused = app.graphql(&format!("{{ products(first: 1) {{ nodes {{ {aliases} }} }} }}"), json!({}), None).await;
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("at most 20 aliases"), "{refused}");
    let malformed = app.graphql("{ products(first: 5) { edges ", json!({}), None).await;
    assert!(malformed["errors"].is_array() && malformed["data"].is_null());
}

async fn repeated_documents_and_persisted_queries_answer_as_the_first_time(app: TestApp) {
    let admin = app.admin_token().await;
    let (one, two) = (admin_product(&app, &admin, "DOC-1", None).await, admin_product(&app, &admin, "DOC-2", None).await);
    // The same text with other variables: the cached document runs with the new ones.
    let by_id = "query($id: ID!) { product(id: $id) { sku } }";
    for _ in 0..2 {
        for product in [&one, &two] {
            let found = app.graphql(by_id, json!({"id": product["id"]}), None).await;
            assert_eq!(found["data"]["product"]["sku"], product["sku"], "{found}");
        }
    }
    // A refused document is refused every time, and bad variables too.
    let deep = "{ categories(first: 1) { edges { node { products(first: 1) { edges { node { category { products(first: 1) { edges { node { category { name } } } } } } } } } } } }";
    for _ in 0..2 {
        let refused = app.graphql(deep, json!({}), None).await;
        assert!(refused["errors"][0]["message"].as_str().unwrap_or_default().contains("nested too deep"), "{refused}");
        let bad = app.graphql("query($n: Int) { products(first: $n) { nodes { id } } }", json!({"n": "many"}), None).await;
        assert!(bad["errors"].is_array() && bad["data"].is_null(), "{bad}");
        let good = app.graphql("query($n: Int) { products(first: $n) { nodes { id } } }", json!({"n": 1}), None).await;
        assert_eq!(good["data"]["products"]["nodes"].as_array().map(Vec::len), Some(1), "{good}");
    }
    // Automatic persisted queries: the hash alone is unknown at first, then the text with its
    // hash is remembered, then the hash alone runs it.
    use sha2::Digest as _;
    let query = "{ products(first: 2) { nodes { sku } } }";
    let hash = format!("{:x}", sha2::Sha256::digest(query.as_bytes()));
    let persisted = json!({"persistedQuery": {"version": 1, "sha256Hash": hash}});
    let app = &app;
    let post = |body: Value| async move { app.post_json("/graphql", &body, None).await.json::<Value>().await.expect("JSON") };
    let unknown = post(json!({"extensions": persisted})).await;
    assert_eq!(unknown["errors"][0]["message"], "PersistedQueryNotFound", "{unknown}");
    let wrong = post(json!({"query": "{ products(first: 1) { nodes { sku } } }", "extensions": persisted})).await;
    assert!(wrong["errors"][0]["message"].as_str().unwrap_or_default().contains("SHA-256"), "{wrong}");
    let registered = post(json!({"query": query, "extensions": persisted})).await;
    assert_eq!(registered["data"]["products"]["nodes"].as_array().map(Vec::len), Some(2), "{registered}");
    let by_hash = post(json!({"extensions": persisted})).await;
    assert_eq!(by_hash["data"], registered["data"], "{by_hash}");
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `graphql-transport-ws` connection, initialised with `token` (if any) in the payload.
async fn connect(app: &TestApp, token: Option<&str>) -> Socket {
    use futures::SinkExt as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let url = format!("{}/graphql/ws", app.address.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("the WebSocket upgrade");
    let payload = token.map_or(json!({}), |token| json!({"Authorization": format!("Bearer {token}")}));
    socket.send(json!({"type": "connection_init", "payload": payload}).to_string().into()).await.unwrap();
    assert_eq!(next_message(&mut socket).await["type"], "connection_ack");
    socket
}

/// The next protocol message (pings answered), failing after 10 s.
async fn next_message(socket: &mut Socket) -> Value {
    use futures::{SinkExt as _, StreamExt as _};
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next()).await.expect("a message within 10 s");
        let text = match message.expect("the socket is open").expect("a frame") {
            tokio_tungstenite::tungstenite::Message::Text(text) => text.to_string(),
            _ => continue,
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        if value["type"] == "ping" {
            socket.send(json!({"type": "pong"}).to_string().into()).await.unwrap();
            continue;
        }
        return value;
    }
}

async fn subscribe_to(socket: &mut Socket, order_id: &str) {
    use futures::SinkExt as _;
    let query = "subscription($id: ID!) { orderStatusChanged(orderId: $id) { orderId status failureReason } }";
    let message = json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"id": order_id}}});
    socket.send(message.to_string().into()).await.unwrap();
}

/// A confirmed order of a new customer, for subscribers: (the customer's token, the order id).
async fn a_confirmed_order(app: &TestApp, sku: &str, email: &str) -> (String, String) {
    let admin = app.admin_token().await;
    let product = admin_product(app, &admin, sku, None).await;
    let owner = app.customer(email).await;
    let token = owner["access_token"].as_str().unwrap().to_owned();
    let body = json!({"items": [{"product_id": product["id"], "quantity": 1}], "payment": {"card_number": GOOD_CARD}});
    let placed = app
        .request(reqwest::Method::POST, "/api/orders")
        .bearer_auth(&token)
        .header("idempotency-key", sku)
        .json(&body)
        .send()
        .await
        .unwrap();
    let order: Value = placed.json().await.unwrap();
    assert_eq!(order["status"], "confirmed", "{order}");
    (token, order["id"].as_str().unwrap().to_owned())
}

async fn a_subscription_follows_its_order_and_only_its_owner_may_subscribe(app: TestApp) {
    let (token, id) = a_confirmed_order(&app, "KETTLE-1", "watcher@example.com").await;
    let (token, id) = (token.as_str(), id.as_str());

    let mut socket = connect(&app, Some(token)).await;
    subscribe_to(&mut socket, id).await;
    let first = next_message(&mut socket).await;
    assert_eq!(first["type"], "next", "{first}");
    assert_eq!(first["payload"]["data"]["orderStatusChanged"], json!({"orderId": id, "status": "CONFIRMED", "failureReason": null}));
    let cancel = app.post_json(&format!("/api/orders/{id}/cancel"), &json!({}), Some(token)).await;
    assert_eq!(cancel.status(), 200);
    let change = next_message(&mut socket).await;
    assert_eq!(change["payload"]["data"]["orderStatusChanged"]["status"], "CANCELLED", "{change}");
    let complete = next_message(&mut socket).await;
    assert_eq!(
        (complete["type"].as_str(), complete["id"].as_str()),
        (Some("complete"), Some("1")),
        "a cancelled order changes no more: {complete}"
    );

    // Someone else's order, and no caller at all: refused.
    let stranger = app.customer("peeker@example.com").await;
    for (token, code) in [(stranger["access_token"].as_str(), "not-found"), (None, "unauthenticated")] {
        let mut socket = connect(&app, token).await;
        subscribe_to(&mut socket, id).await;
        let refused = next_message(&mut socket).await;
        let errors = if refused["type"] == "error" { refused["payload"].clone() } else { refused["payload"]["errors"].clone() };
        assert_eq!(errors[0]["extensions"]["code"], code, "{refused}");
    }
}

/// One connection holds at most `graphql.max_subscriptions_per_socket` (32 by default)
/// subscriptions at once: one more is refused, and stopping one frees its place.
async fn a_connection_holds_a_bounded_number_of_subscriptions(app: TestApp) {
    use futures::SinkExt as _;
    let (token, id) = a_confirmed_order(&app, "LAMP-1", "many@example.com").await;
    let mut socket = connect(&app, Some(&token)).await;
    let query = "subscription($id: ID!) { orderStatusChanged(orderId: $id) { status } }";
    let subscribe =
        |n: usize| json!({"id": format!("s{n}"), "type": "subscribe", "payload": {"query": query, "variables": {"id": id}}}).to_string();
    for n in 0..32 {
        socket.send(subscribe(n).into()).await.unwrap();
    }
    // Each begins with the order's status now.
    let mut started = std::collections::BTreeSet::new();
    while started.len() < 32 {
        let message = next_message(&mut socket).await;
        assert_eq!(
            (message["type"].as_str(), &message["payload"]["data"]["orderStatusChanged"]["status"]),
            (Some("next"), &json!("CONFIRMED")),
            "{message}"
        );
        started.insert(message["id"].as_str().unwrap().to_owned());
    }
    socket.send(subscribe(32).into()).await.unwrap();
    let refused = next_message(&mut socket).await;
    assert_eq!(refused["id"], "s32", "{refused}");
    let errors = if refused["type"] == "error" { refused["payload"].clone() } else { refused["payload"]["errors"].clone() };
    assert_eq!(errors[0]["extensions"]["code"], "rate-limited", "the 33rd is refused: {refused}");
    // The client stops one: its place is free for another.
    socket.send(json!({"id": "s0", "type": "complete"}).to_string().into()).await.unwrap();
    socket.send(subscribe(33).into()).await.unwrap();
    let admitted = loop {
        let message = next_message(&mut socket).await;
        if message["id"] == "s33" {
            break message;
        }
        // The refused one and the stopped one may be acknowledged as complete.
        assert!(message["type"] == "complete" && ["s0", "s32"].contains(&message["id"].as_str().unwrap_or_default()), "{message}");
    };
    assert_eq!(admitted["type"], "next", "{admitted}");
    assert_eq!(admitted["payload"]["data"]["orderStatusChanged"]["status"], "CONFIRMED", "{admitted}");
}

/// `notificationReceived`: the caller's new notifications as they are made (from the bus, or
/// from the poll where this process's bus does not carry notifications' events), nobody else's.
async fn a_notification_subscription_sees_the_callers_new_notifications(app: TestApp) {
    use futures::SinkExt as _;
    let (token, id) = a_confirmed_order(&app, "BELL-1", "listener@example.com").await;
    let subscribe = json!({"id": "n", "type": "subscribe", "payload": {"query": "subscription { notificationReceived { kind orderId subject readAt } }"}});
    let mut socket = connect(&app, Some(&token)).await;
    socket.send(subscribe.to_string().into()).await.unwrap();
    // Someone else's order makes nothing for this subscriber.
    let _ = a_confirmed_order(&app, "BELL-2", "someone-else@example.com").await;
    let cancel = app.post_json(&format!("/api/orders/{id}/cancel"), &json!({}), Some(&token)).await;
    assert_eq!(cancel.status(), 200);
    let cancelled = loop {
        let message = next_message(&mut socket).await;
        assert_eq!(message["type"], "next", "{message}");
        let received = message["payload"]["data"]["notificationReceived"].clone();
        // The welcome and the confirmation may be made after the subscription began.
        assert!(["WELCOME", "ORDER_CONFIRMED", "ORDER_CANCELLED"].contains(&received["kind"].as_str().unwrap()), "{received}");
        if received["kind"] == "ORDER_CANCELLED" {
            break received;
        }
        assert!(received["kind"] == "WELCOME" || received["orderId"] == id, "only the caller's: {received}");
    };
    assert_eq!(cancelled["orderId"], id);
    assert!(cancelled["readAt"].is_null());

    let mut anonymous = connect(&app, None).await;
    anonymous.send(subscribe.to_string().into()).await.unwrap();
    let refused = next_message(&mut anonymous).await;
    let errors = if refused["type"] == "error" { refused["payload"].clone() } else { refused["payload"]["errors"].clone() };
    assert_eq!(errors[0]["extensions"]["code"], "unauthenticated", "{refused}");
}

/// Asks `body` again until the answer comes from the kept answers: the events of a write made
/// just before may still arrive and drop what was kept. Returns that answer.
/// A gateway on the in-process bus never sees the catalog's events, so it keeps nothing: then
/// the answer must not be kept, and is returned as it comes.
async fn kept_within(app: &TestApp, body: &Value) -> Value {
    if matches!(app.topology, Topology::Extracted(_) | Topology::OrdersApart(_)) {
        let (kept, found) = answer(app, body, None).await;
        assert!(!kept, "a process that does not see the catalog's events keeps nothing");
        return found;
    }
    let started = std::time::Instant::now();
    loop {
        let (kept, found) = answer(app, body, None).await;
        if kept {
            return found;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "never answered from the kept answers: {found}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A GraphQL answer and whether it came from the kept answers.
async fn answer(app: &TestApp, body: &Value, token: Option<&str>) -> (bool, Value) {
    let response = app.post_json("/graphql", body, token).await;
    assert_eq!(response.status(), 200);
    let kept = response.headers().get("x-cache").is_some_and(|value| value == "hit");
    (kept, response.json().await.expect("JSON"))
}

async fn anonymous_catalog_answers_are_kept_until_the_catalog_changes(app: TestApp) {
    let admin = app.admin_token().await;
    let product = admin_product(&app, &admin, "KEPT-1", None).await;
    let id = product["id"].as_str().expect("an id").to_owned();
    let body = json!({"query": "query($id: ID!) { product(id: $id) { name version stockAvailable } }", "variables": {"id": id}});
    let (kept, first) = answer(&app, &body, None).await;
    assert!(!kept && first["data"]["product"]["name"] == "Name KEPT-1", "{first}");
    let again = kept_within(&app, &body).await;
    assert_eq!(again, first, "the same anonymous query is answered again from what was kept");
    let (kept, _) = answer(&app, &body, Some(&admin)).await;
    assert!(!kept, "a caller with a token runs the query");
    let me = json!({"query": "{ __typename me { id } }"});
    assert!(!answer(&app, &me, None).await.0 && !answer(&app, &me, None).await.0, "only catalog fields are kept");

    // A REST write through this process: the next answer is fresh at once.
    let path = format!("/api/catalog/products/{id}");
    let patched =
        app.request(reqwest::Method::PATCH, &path).bearer_auth(&admin).json(&json!({"version": 1, "name": "Renamed"})).send().await;
    assert_eq!(patched.expect("an answer").status(), 200);
    let (kept, renamed) = answer(&app, &body, None).await;
    assert!(!kept && renamed["data"]["product"]["name"] == "Renamed", "{renamed}");
    assert_eq!(kept_within(&app, &body).await["data"]["product"]["name"], "Renamed");
    // A GraphQL mutation: the same.
    let update = "mutation($id: ID!) { updateProduct(id: $id, input: {version: 2, name: \"Again\"}) { version } }";
    let updated = app.graphql(update, json!({"id": id}), Some(&admin)).await;
    assert!(updated["errors"].is_null(), "{updated}");
    let (kept, again) = answer(&app, &body, None).await;
    assert!(!kept && again["data"]["product"]["name"] == "Again", "{again}");
    // A sale: the stock shown moves on (at once, or when the reservation's event arrives).
    let customer = app.customer("kept-answers@example.com").await;
    let token = customer["access_token"].as_str().expect("a token");
    let order = json!({"items": [{"product_id": id, "quantity": 1}], "payment": {"card_number": GOOD_CARD}});
    let placed =
        app.request(reqwest::Method::POST, "/api/orders").bearer_auth(token).header("idempotency-key", "kept-1").json(&order).send().await;
    assert!(placed.expect("an answer").status().is_success());
    let started = std::time::Instant::now();
    loop {
        let (_, seen) = answer(&app, &body, None).await;
        if seen["data"]["product"]["stockAvailable"] == 9 {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "the sale is not seen: {seen}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

crate::topologies!(
    anonymous_catalog_answers_are_kept_until_the_catalog_changes,
    a_subscription_follows_its_order_and_only_its_owner_may_subscribe,
    a_notification_subscription_sees_the_callers_new_notifications,
    a_connection_holds_a_bounded_number_of_subscriptions,
    catalog_queries_and_admin_mutations_answer_as_rest_does,
    accounts_orders_and_payments_work_through_graphql,
    limits_refuse_deep_and_costly_queries_before_running_them,
    repeated_documents_and_persisted_queries_answer_as_the_first_time,
);

/// The catalog, counting the calls that matter for batching.
struct Counting {
    inner: Arc<dyn CatalogApi>,
    get_product: AtomicUsize,
    get_products: AtomicUsize,
    get_categories: AtomicUsize,
}

#[async_trait::async_trait]
impl CatalogApi for Counting {
    async fn list_categories(&self, caller: &Caller, page: PageRequest) -> Result<Page<CategoryView>, ApiError> {
        self.inner.list_categories(caller, page).await
    }
    async fn create_category(&self, caller: &Caller, input: NewCategory) -> Result<CategoryView, ApiError> {
        self.inner.create_category(caller, input).await
    }
    async fn get_categories(&self, caller: &Caller, ids: Vec<CategoryId>) -> Result<Vec<CategoryView>, ApiError> {
        self.get_categories.fetch_add(1, Ordering::SeqCst);
        self.inner.get_categories(caller, ids).await
    }
    async fn list_products(&self, caller: &Caller, query: ProductQuery) -> Result<Page<ProductView>, ApiError> {
        self.inner.list_products(caller, query).await
    }
    async fn get_product(&self, caller: &Caller, id: ProductId) -> Result<ProductView, ApiError> {
        self.get_product.fetch_add(1, Ordering::SeqCst);
        self.inner.get_product(caller, id).await
    }
    async fn get_products(&self, caller: &Caller, ids: Vec<ProductId>) -> Result<Vec<ProductView>, ApiError> {
        self.get_products.fetch_add(1, Ordering::SeqCst);
        self.inner.get_products(caller, ids).await
    }
    async fn create_product(&self, caller: &Caller, input: NewProduct) -> Result<ProductView, ApiError> {
        self.inner.create_product(caller, input).await
    }
    async fn update_product(&self, caller: &Caller, id: ProductId, patch: ProductPatch) -> Result<ProductView, ApiError> {
        self.inner.update_product(caller, id, patch).await
    }
    async fn set_stock(&self, caller: &Caller, id: ProductId, stock: SetStock) -> Result<ProductView, ApiError> {
        self.inner.set_stock(caller, id, stock).await
    }
    async fn reserve(
        &self,
        caller: &Caller,
        order_id: OrderId,
        lines: Vec<ReserveLine>,
    ) -> Result<catalog_contract::ReserveOutcome, ApiError> {
        self.inner.reserve(caller, order_id, lines).await
    }
    async fn release(&self, caller: &Caller, order_id: OrderId) -> Result<(), ApiError> {
        self.inner.release(caller, order_id).await
    }
    async fn commit(&self, caller: &Caller, order_id: OrderId) -> Result<catalog_contract::CommitOutcome, ApiError> {
        self.inner.commit(caller, order_id).await
    }
    async fn restock(&self, caller: &Caller, order_id: OrderId) -> Result<catalog_contract::RestockOutcome, ApiError> {
        self.inner.restock(caller, order_id).await
    }
}

/// Payments, counting single and batched reads.
struct CountingPayments {
    inner: Arc<dyn payments_contract::PaymentsApi>,
    get_payment: AtomicUsize,
    get_payments: AtomicUsize,
}

#[async_trait::async_trait]
impl payments_contract::PaymentsApi for CountingPayments {
    async fn tokenize(&self, caller: &Caller, card: payments_contract::CardNumber) -> Result<payments_contract::PaymentMethod, ApiError> {
        self.inner.tokenize(caller, card).await
    }
    async fn charge(
        &self,
        caller: &Caller,
        request: payments_contract::ChargeRequest,
    ) -> Result<payments_contract::ChargeOutcome, ApiError> {
        self.inner.charge(caller, request).await
    }
    async fn refund(
        &self,
        caller: &Caller,
        order_id: OrderId,
        amount: Option<shared_kernel::Money>,
    ) -> Result<payments_contract::RefundOutcome, ApiError> {
        self.inner.refund(caller, order_id, amount).await
    }
    async fn void_charge(
        &self,
        caller: &Caller,
        order_id: OrderId,
        customer_id: shared_kernel::UserId,
        amount: shared_kernel::Money,
    ) -> Result<payments_contract::VoidOutcome, ApiError> {
        self.inner.void_charge(caller, order_id, customer_id, amount).await
    }
    async fn get_payment(&self, caller: &Caller, order_id: OrderId) -> Result<payments_contract::PaymentView, ApiError> {
        self.get_payment.fetch_add(1, Ordering::SeqCst);
        self.inner.get_payment(caller, order_id).await
    }
    async fn get_payments(&self, caller: &Caller, order_ids: Vec<OrderId>) -> Result<Vec<payments_contract::PaymentView>, ApiError> {
        self.get_payments.fetch_add(1, Ordering::SeqCst);
        self.inner.get_payments(caller, order_ids).await
    }
}

/// Nested fields are batched: however many orders, items and products a response holds, the
/// products come from one `get_products` call and their categories from one `get_categories`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_products_and_categories_are_loaded_in_one_call_each() {
    let app = spawn_app(Topology::Monolith(Database::Sqlite)).await.unwrap();
    let admin = app.admin_token().await;
    let mut categories = Vec::new();
    for name in ["A", "B", "C"] {
        let created = app.graphql(&format!("mutation {{ createCategory(name: \"{name}\") {{ id }} }}"), json!({}), Some(&admin)).await;
        categories.push(created["data"]["createCategory"]["id"].as_str().unwrap().to_owned());
    }
    let mut products = Vec::new();
    for i in 0..6 {
        let product = admin_product(&app, &admin, &format!("N1-{i}"), Some(&categories[i % 3])).await;
        products.push(product["id"].as_str().unwrap().to_owned());
    }
    let buyer = app.customer("batched@example.com").await;
    let token = buyer["access_token"].as_str().unwrap();
    for (n, chunk) in products.chunks(2).enumerate() {
        let items: Vec<Value> = chunk.iter().map(|id| json!({"productId": id, "quantity": 1})).collect();
        let placed = app
            .graphql(
                "mutation($input: PlaceOrderInput!, $key: String!) { placeOrder(input: $input, idempotencyKey: $key) { status } }",
                json!({"input": {"items": items, "cardNumber": GOOD_CARD}, "key": format!("batch-{n}")}),
                Some(token),
            )
            .await;
        assert_eq!(placed["data"]["placeOrder"]["status"], "CONFIRMED", "{placed}");
    }

    let modules = app.composition_modules();
    let counting = Arc::new(Counting {
        inner: modules.catalog.clone(),
        get_product: AtomicUsize::new(0),
        get_products: AtomicUsize::new(0),
        get_categories: AtomicUsize::new(0),
    });
    let payments =
        Arc::new(CountingPayments { inner: modules.payments.clone(), get_payment: AtomicUsize::new(0), get_payments: AtomicUsize::new(0) });
    let counted = cleave::graphql::Modules { catalog: counting.clone(), payments: payments.clone(), ..modules };
    let minute = std::time::Duration::from_secs(60);
    let feeds = (cleave::graphql::OrderStatusFeed::new(minute), cleave::graphql::NotificationFeed::new(minute));
    let schema = cleave::graphql::schema(
        counted.clone(),
        feeds,
        cleave::graphql::Limits {
            depth: 10,
            complexity: 2_000,
            root_fields: 10,
            aliases: 20,
            introspection: true,
            subscriptions_per_socket: 32,
        },
        cleave::graphql::DocumentCache::new(100),
    );
    let me: Value = app.get("/api/users/me", Some(token)).await.json().await.unwrap();
    let caller = Caller::User(shared_kernel::AuthenticatedUser {
        id: shared_kernel::UserId::parse(me["id"].as_str().unwrap()).unwrap(),
        roles: vec![shared_kernel::Role::Customer],
        token: shared_kernel::Secret::new(token.to_owned()),
    });
    let request = cleave::graphql::scoped(
        async_graphql::Request::new("{ myOrders { edges { node { payment { status } items { product { sku category { name } } } } } } }"),
        &counted,
        cleave::graphql::RequestScope { caller, client_addr: None },
    );
    let response = schema.execute(request).await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    let data = response.data.into_json().unwrap();
    let skus: Vec<&str> = data["myOrders"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|edge| edge["node"]["items"].as_array().unwrap())
        .map(|item| item["product"]["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus.len(), 6, "{data}");
    assert_eq!(counting.get_products.load(Ordering::SeqCst), 1, "items → products must be one batched call");
    assert_eq!(counting.get_categories.load(Ordering::SeqCst), 1, "products → categories must be one batched call");
    assert_eq!(counting.get_product.load(Ordering::SeqCst), 0);
    let paid = data["myOrders"]["edges"].as_array().unwrap().iter().filter(|edge| edge["node"]["payment"]["status"] == "CAPTURED").count();
    assert_eq!(paid, 3, "{data}");
    assert_eq!(payments.get_payments.load(Ordering::SeqCst), 1, "orders → payments must be one batched call");
    assert_eq!(payments.get_payment.load(Ordering::SeqCst), 0);

    // A product list puts its page's categories in the loader with one call, before any
    // product's `category` resolves (no batching delay), and each product gets its own.
    counting.get_categories.store(0, Ordering::SeqCst);
    let request = cleave::graphql::scoped(
        async_graphql::Request::new("{ products(first: 20) { edges { node { sku category { id name } } } } }"),
        &counted,
        cleave::graphql::RequestScope { caller: Caller::Anonymous, client_addr: None },
    );
    let response = schema.execute(request).await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    let data = response.data.into_json().unwrap();
    let listed = data["products"]["edges"].as_array().unwrap();
    assert_eq!(listed.len(), 6, "{data}");
    for edge in listed {
        let sku = edge["node"]["sku"].as_str().unwrap();
        let i: usize = sku.trim_start_matches("N1-").parse().unwrap();
        assert_eq!(edge["node"]["category"]["id"], categories[i % 3].as_str(), "{sku}");
        assert_eq!(edge["node"]["category"]["name"], ["A", "B", "C"][i % 3], "{sku}");
    }
    assert_eq!(counting.get_categories.load(Ordering::SeqCst), 1, "a list's categories must be one call");
}

/// docs/schema.graphql is what `cleave graphql-schema` prints; regenerate it with
/// `cargo run -- graphql-schema > docs/schema.graphql` when the schema changes on purpose.
#[test]
fn the_committed_sdl_matches_the_code() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/schema.graphql")).expect("docs/schema.graphql");
    assert!(
        committed == cleave::graphql::sdl(),
        "docs/schema.graphql is out of date: run `cargo run -- graphql-schema > docs/schema.graphql`"
    );
}

/// The subscription is fed by orders' events: with the contract check every ten minutes, the
/// change still arrives at once, in a process that hosts orders and on a gateway in front of an
/// orders process elsewhere (its events on JetStream).
async fn the_subscription_is_fed_by_the_event_bus(topology: Topology) {
    let Some(app) = cleave_tests::spawn_app_with(topology, |settings| settings.graphql.subscription_poll_ms = 600_000, None).await else {
        return;
    };
    let (token, id) = a_confirmed_order(&app, "KETTLE-2", "evented@example.com").await;
    let (token, id) = (token.as_str(), id.as_str());
    let mut socket = connect(&app, Some(token)).await;
    subscribe_to(&mut socket, id).await;
    assert_eq!(next_message(&mut socket).await["payload"]["data"]["orderStatusChanged"]["status"], "CONFIRMED");
    let started = std::time::Instant::now();
    assert_eq!(app.post_json(&format!("/api/orders/{id}/cancel"), &json!({}), Some(token)).await.status(), 200);
    let change = next_message(&mut socket).await;
    assert_eq!(change["payload"]["data"]["orderStatusChanged"]["status"], "CANCELLED", "{change}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "the change came by the event, not the ten-minute check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_is_fed_by_the_event_bus_in_the_monolith() {
    the_subscription_is_fed_by_the_event_bus(Topology::Monolith(Database::Sqlite)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_on_a_gateway_is_fed_by_a_remote_orders_modules_events() {
    the_subscription_is_fed_by_the_event_bus(Topology::OrdersApartOverNats(Database::Sqlite)).await;
}

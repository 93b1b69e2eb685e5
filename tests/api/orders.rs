//! Every order flow of api.md over HTTP: placement with each test card, idempotent replays
//! (sequential and concurrent), cancellation, authorization, validation, the projections fed by
//! events, and 120 concurrent buyers for 20 units.

use cleave_tests::{TestApp, problem};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const GOOD_CARD: &str = "4242424242424242";

/// A product priced `price` EUR cents with `stock` on hand; returns its id.
async fn product(app: &TestApp, admin: &str, sku: &str, price: i64, stock: i64) -> String {
    let body = json!({"sku": sku, "name": format!("Product {sku}"), "price": {"amount": price, "currency": "EUR"}, "stock_on_hand": stock});
    let response = app.post_json("/api/catalog/products", &body, Some(admin)).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

async fn place(app: &TestApp, token: &str, key: &str, body: &Value) -> reqwest::Response {
    app.request(Method::POST, "/api/orders").bearer_auth(token).header("idempotency-key", key).json(body).send().await.unwrap()
}

fn order_body(product: &str, quantity: u32, card: &str) -> Value {
    json!({"items": [{"product_id": product, "quantity": quantity}], "payment": {"card_number": card}})
}

async fn stock(app: &TestApp, product: &str) -> Value {
    app.get(&format!("/api/catalog/products/{product}"), None).await.json().await.unwrap()
}

/// Polls `check` until it holds (events are delivered asynchronously); fails after 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn a_good_card_confirms_the_order_charges_it_and_sells_the_stock(app: TestApp) {
    let admin = app.admin_token().await;
    let mug = product(&app, &admin, "MUG-1", 1500, 5).await;
    let pair = app.customer("buyer@example.com").await;
    let token = pair["access_token"].as_str().unwrap();

    let response = place(&app, token, "key-1", &order_body(&mug, 2, GOOD_CARD)).await;
    assert_eq!(response.status(), 201);
    let location = response.headers().get("location").unwrap().to_str().unwrap().to_owned();
    assert!(response.headers().get("idempotent-replayed").is_none());
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["total"], json!({"amount": 3000, "currency": "EUR"}));
    assert_eq!(order["items"][0]["unit_price"], json!({"amount": 1500, "currency": "EUR"}));
    assert_eq!(order["items"][0]["quantity"], 2);
    assert_eq!(order["items"][0]["product_name"], "Product MUG-1");
    assert_eq!(order["card_last4"], "4242");
    assert!(order["failure_reason"].is_null());
    assert!(order["created_at"].is_string());
    let id = order["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/orders/{id}"));

    let product_now = stock(&app, &mug).await;
    assert_eq!((product_now["stock_available"].as_i64(), product_now["stock_on_hand"].as_i64()), (Some(3), Some(3)));
    let payment: Value = app.get(&format!("/api/orders/{id}/payment"), Some(token)).await.json().await.unwrap();
    assert_eq!((payment["status"].as_str(), payment["amount"]["amount"].as_i64()), (Some("captured"), Some(3000)));

    let fetched: Value = app.get(&format!("/api/orders/{id}"), Some(token)).await.json().await.unwrap();
    assert_eq!(fetched, order);
    let mine: Value = app.get("/api/orders", Some(token)).await.json().await.unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    assert_eq!(mine["items"][0]["id"], order["id"]);

    // Nobody else sees it; an admin does.
    let other = app.customer("other@example.com").await;
    problem(app.get(&format!("/api/orders/{id}"), other["access_token"].as_str()).await, 404).await;
    problem(app.get(&format!("/api/orders/{id}/payment"), other["access_token"].as_str()).await, 404).await;
    let theirs: Value = app.get("/api/orders", other["access_token"].as_str()).await.json().await.unwrap();
    assert!(theirs["items"].as_array().unwrap().is_empty());
    assert_eq!(app.get(&format!("/api/orders/{id}"), Some(&admin)).await.status(), 200);
    problem(app.get(&format!("/api/orders/{id}"), None).await, 401).await;
    problem(app.get("/api/orders", None).await, 401).await;
    problem(app.get("/api/orders/not-an-id", Some(token)).await, 404).await;
}

/// Choreography: the catalog counts sales from `OrderConfirmed` and takes them back on
/// `OrderCancelled`, with no call from orders.
async fn the_catalog_counts_sales_from_order_events(app: TestApp) {
    let admin = app.admin_token().await;
    let mug = product(&app, &admin, "MUG-2", 1500, 5).await;
    let pair = app.customer("counted@example.com").await;
    let token = pair["access_token"].as_str().unwrap();
    let order: Value = place(&app, token, "counted", &order_body(&mug, 2, GOOD_CARD)).await.json().await.unwrap();
    eventually("the sales count", || async { stock(&app, &mug).await["units_sold"] == 2 }).await;
    let declined: Value = place(&app, token, "not-counted", &order_body(&mug, 1, "4000000000000002")).await.json().await.unwrap();
    assert_eq!(declined["status"], "rejected");
    let cancelled = app.post_json(&format!("/api/orders/{}/cancel", order["id"].as_str().unwrap()), &json!({}), Some(token)).await;
    assert_eq!(cancelled.status(), 200);
    eventually("the sale taken back", || async { stock(&app, &mug).await["units_sold"] == 0 }).await;
}

async fn each_test_card_ends_as_the_api_says_and_a_rejection_keeps_nothing(app: TestApp) {
    let admin = app.admin_token().await;
    let lamp = product(&app, &admin, "LAMP-1", 2500, 10).await;
    let pair = app.customer("cards@example.com").await;
    let token = pair["access_token"].as_str().unwrap();
    let cases = [
        ("4000000000000002", "card declined", "declined"),
        ("4000000000009995", "insufficient funds", "declined"),
        ("4000000000000119", "the payment could not be completed", "failed"),
    ];
    for (i, (card, reason, payment_status)) in cases.into_iter().enumerate() {
        let response = place(&app, token, &format!("card-{i}"), &order_body(&lamp, 1, card)).await;
        assert_eq!(response.status(), 201, "{card}");
        let order: Value = response.json().await.unwrap();
        assert_eq!(order["status"], "rejected", "{card}: {order}");
        assert_eq!(order["failure_reason"], reason, "{card}");
        let id = order["id"].as_str().unwrap();
        let payment: Value = app.get(&format!("/api/orders/{id}/payment"), Some(token)).await.json().await.unwrap();
        assert_eq!(payment["status"], payment_status, "{card}: {payment}");
        assert_eq!(payment["refunded_amount"]["amount"], 0, "nothing was captured, so nothing refunded");
        let now = stock(&app, &lamp).await;
        assert_eq!((now["stock_available"].as_i64(), now["stock_reserved"].as_i64()), (Some(10), Some(0)), "{card}: nothing kept reserved");
    }

    // Not enough stock: rejected before any charge.
    let response = place(&app, token, "too-many", &order_body(&lamp, 11, GOOD_CARD)).await;
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "rejected");
    assert!(order["failure_reason"].as_str().unwrap().contains("stock"), "{order}");
    problem(app.get(&format!("/api/orders/{}/payment", order["id"].as_str().unwrap()), Some(token)).await, 404).await;

    // A number failing the Luhn check is 422 at placement and creates nothing.
    let bad = problem(place(&app, token, "luhn", &order_body(&lamp, 1, "4242424242424241")).await, 422).await;
    assert_eq!(bad["errors"][0]["field"], "payment.card_number", "{bad}");
    assert!(!bad.to_string().contains("4242424242424241"), "the card number is echoed: {bad}");
    let mine: Value = app.get("/api/orders", Some(token)).await.json().await.unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 4);
    assert_eq!(stock(&app, &lamp).await["stock_on_hand"], 10);
}

async fn an_idempotency_key_gives_one_order_sequentially_and_concurrently(app: TestApp) {
    let admin = app.admin_token().await;
    let pen = product(&app, &admin, "PEN-1", 300, 50).await;
    let pair = app.customer("retry@example.com").await;
    let token = pair["access_token"].as_str().unwrap();
    let body = order_body(&pen, 3, GOOD_CARD);

    let first: Value = place(&app, token, "same-key", &body).await.json().await.unwrap();
    let again = place(&app, token, "same-key", &body).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(stock(&app, &pen).await["stock_on_hand"], 47, "the replay sold nothing more");
    let payment: Value =
        app.get(&format!("/api/orders/{}/payment", first["id"].as_str().unwrap()), Some(token)).await.json().await.unwrap();
    assert_eq!(payment["amount"]["amount"], 900);

    // The same key with another body is a conflict, and changes nothing.
    problem(place(&app, token, "same-key", &order_body(&pen, 4, GOOD_CARD)).await, 409).await;
    // The same key from another customer is another order.
    let other = app.customer("retry2@example.com").await;
    let theirs: Value = place(&app, other["access_token"].as_str().unwrap(), "same-key", &body).await.json().await.unwrap();
    assert_ne!(theirs["id"], first["id"]);

    // Eight at once with one fresh key: one order, one sale.
    let racing = futures::future::join_all((0..8).map(|_| place(&app, token, "raced-key", &body))).await;
    let mut ids = std::collections::BTreeSet::new();
    for response in racing {
        assert_eq!(response.status(), 201);
        let order: Value = response.json().await.unwrap();
        assert_eq!(order["status"], "confirmed");
        ids.insert(order["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "concurrent requests with one key made {} orders", ids.len());
    assert_eq!(stock(&app, &pen).await["stock_on_hand"], 41);
    let mine: Value = app.get("/api/orders", Some(token)).await.json().await.unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 2);

    // The header is required, and bounded.
    let missing = app.request(Method::POST, "/api/orders").bearer_auth(token).json(&body).send().await.unwrap();
    problem(missing, 400).await;
    problem(place(&app, token, &"k".repeat(256), &body).await, 422).await;
}

async fn cancelling_a_confirmed_order_refunds_and_restocks_once(app: TestApp) {
    let admin = app.admin_token().await;
    let cup = product(&app, &admin, "CUP-1", 800, 4).await;
    let pair = app.customer("cancel@example.com").await;
    let token = pair["access_token"].as_str().unwrap();
    let order: Value = place(&app, token, "to-cancel", &order_body(&cup, 3, GOOD_CARD)).await.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    assert_eq!(stock(&app, &cup).await["stock_on_hand"], 1);

    let other = app.customer("not-owner@example.com").await;
    problem(app.post_json(&format!("/api/orders/{id}/cancel"), &json!({}), other["access_token"].as_str()).await, 404).await;

    let cancelled = app.post_json(&format!("/api/orders/{id}/cancel"), &json!({}), Some(token)).await;
    assert_eq!(cancelled.status(), 200);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(stock(&app, &cup).await["stock_on_hand"], 4);
    let payment: Value = app.get(&format!("/api/orders/{id}/payment"), Some(token)).await.json().await.unwrap();
    assert_eq!((payment["status"].as_str(), payment["refunded_amount"]["amount"].as_i64()), (Some("refunded"), Some(2400)));

    // Again: unchanged, nothing refunded or restocked twice.
    let again: Value = app.post_json(&format!("/api/orders/{id}/cancel"), &json!({}), Some(token)).await.json().await.unwrap();
    assert_eq!(again["status"], "cancelled");
    assert_eq!(stock(&app, &cup).await["stock_on_hand"], 4);

    // Only confirmed orders can be cancelled.
    let rejected: Value = place(&app, token, "declined", &order_body(&cup, 1, "4000000000000002")).await.json().await.unwrap();
    problem(app.post_json(&format!("/api/orders/{}/cancel", rejected["id"].as_str().unwrap()), &json!({}), Some(token)).await, 409).await;
    // An admin may cancel anyone's.
    let order: Value = place(&app, token, "admin-cancels", &order_body(&cup, 1, GOOD_CARD)).await.json().await.unwrap();
    let by_admin: Value = app
        .post_json(&format!("/api/orders/{}/cancel", order["id"].as_str().unwrap()), &json!({}), Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_admin["status"], "cancelled");
}

async fn bad_orders_get_clear_errors_and_change_nothing(app: TestApp) {
    let admin = app.admin_token().await;
    let hat = product(&app, &admin, "HAT-1", 1200, 5).await;
    let pair = app.customer("invalid@example.com").await;
    let token = pair["access_token"].as_str().unwrap();
    let body = order_body(&hat, 1, GOOD_CARD);
    let anonymous = app.request(Method::POST, "/api/orders").header("idempotency-key", "k").json(&body).send().await.unwrap();
    problem(anonymous, 401).await;
    problem(place(&app, token, "empty", &json!({"items": [], "payment": {"card_number": GOOD_CARD}})).await, 422).await;
    let zero = problem(place(&app, token, "zero", &order_body(&hat, 0, GOOD_CARD)).await, 422).await;
    assert_eq!(zero["errors"][0]["field"], "items[0].quantity");
    let unknown = problem(place(&app, token, "unknown", &order_body(&uuid::Uuid::now_v7().to_string(), 1, GOOD_CARD)).await, 422).await;
    assert_eq!(unknown["errors"][0]["field"], "items[0].product_id");
    let twice =
        json!({"items": [{"product_id": hat, "quantity": 1}, {"product_id": hat, "quantity": 2}], "payment": {"card_number": GOOD_CARD}});
    problem(place(&app, token, "twice", &twice).await, 422).await;
    problem(place(&app, token, "no-payment", &json!({"items": [{"product_id": hat, "quantity": 1}]})).await, 422).await;
    let malformed = app
        .request(Method::POST, "/api/orders")
        .bearer_auth(token)
        .header("idempotency-key", "bad-json")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    problem(malformed, 400).await;
    let mine: Value = app.get("/api/orders", Some(token)).await.json().await.unwrap();
    assert!(mine["items"].as_array().unwrap().is_empty());
    assert_eq!(stock(&app, &hat).await["stock_reserved"], 0);
}

async fn a_deactivated_customer_is_refused_from_orders_own_projection(app: TestApp) {
    let admin = app.admin_token().await;
    let sock = product(&app, &admin, "SOCK-1", 500, 5).await;
    let pair = app.customer("leaving@example.com").await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    let me: Value = app.get("/api/users/me", Some(&token)).await.json().await.unwrap();
    assert_eq!(place(&app, &token, "before", &order_body(&sock, 1, GOOD_CARD)).await.status(), 201);
    let response = app.post_json(&format!("/api/users/{}/deactivate", me["id"].as_str().unwrap()), &json!({}), Some(&admin)).await;
    assert!(response.status().is_success());
    // The access token is still valid for minutes; orders learns of the deactivation from users'
    // event (eventually: an order racing the event may still go through).
    let accepted = std::sync::atomic::AtomicI64::new(0);
    let mut key = 0;
    eventually("the deactivation to reach orders", || {
        key += 1;
        let (app, token, sock, accepted) = (&app, token.clone(), sock.clone(), &accepted);
        async move {
            let response = place(app, &token, &format!("after-{key}"), &order_body(&sock, 1, GOOD_CARD)).await;
            if response.status() == 201 {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            response.status() == 403
        }
    })
    .await;
    let refused = problem(place(&app, &token, "later", &order_body(&sock, 1, GOOD_CARD)).await, 403).await;
    assert!(refused["detail"].as_str().unwrap().contains("deactivated"), "{refused}");
    let sold = 1 + accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(stock(&app, &sock).await["stock_on_hand"].as_i64(), Some(5 - sold), "the refused orders sold nothing");
}

async fn order_views_show_current_product_names_from_catalog_events(app: TestApp) {
    let admin = app.admin_token().await;
    let book = product(&app, &admin, "BOOK-1", 2000, 5).await;
    let pair = app.customer("reader@example.com").await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    let order: Value = place(&app, &token, "book", &order_body(&book, 1, GOOD_CARD)).await.json().await.unwrap();
    assert_eq!(order["items"][0]["product_name"], "Product BOOK-1");
    let patch = app
        .request(Method::PATCH, &format!("/api/catalog/products/{book}"))
        .bearer_auth(&admin)
        .json(&json!({"version": 1, "name": "The Book, 2nd edition"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200);
    let path = format!("/api/orders/{}", order["id"].as_str().unwrap());
    eventually("the new name in the order", || async {
        let now: Value = app.get(&path, Some(&token)).await.json().await.unwrap();
        now["items"][0]["product_name"] == "The Book, 2nd edition"
    })
    .await;
    let now: Value = app.get(&path, Some(&token)).await.json().await.unwrap();
    assert_eq!(now["items"][0]["unit_price"]["amount"], 2000, "the price charged stays");
}

async fn a_hundred_and_twenty_buyers_for_twenty_units_confirm_exactly_twenty(app: TestApp) {
    let admin = app.admin_token().await;
    let drop = product(&app, &admin, "DROP-1", 4900, 20).await;
    let buyers: Vec<String> = (0..120).map(|_| app.mint_customer_token()).collect();
    let body = order_body(&drop, 1, GOOD_CARD);
    let responses = futures::future::join_all(buyers.iter().map(|token| place(&app, token, "buy", &body))).await;
    let (mut confirmed, mut rejected) = (0, 0);
    for response in responses {
        let status = response.status();
        let order: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "{order}");
        match order["status"].as_str().unwrap() {
            "confirmed" => confirmed += 1,
            "rejected" => rejected += 1,
            other => panic!("unexpected status {other}: {order}"),
        }
    }
    assert_eq!((confirmed, rejected), (20, 100));
    let now = stock(&app, &drop).await;
    assert_eq!(
        (now["stock_on_hand"].as_i64(), now["stock_reserved"].as_i64(), now["stock_available"].as_i64()),
        (Some(0), Some(0), Some(0))
    );
}

async fn the_overview_gathers_profile_orders_and_payments(app: TestApp) {
    let admin = app.admin_token().await;
    let mug = product(&app, &admin, "MUG-1", 1200, 5).await;
    let pair = app.customer("overview@example.com").await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    let placed: Value = place(&app, &token, "mug", &order_body(&mug, 2, GOOD_CARD)).await.json().await.unwrap();
    assert_eq!(placed["status"], "confirmed");

    let response = app.get("/api/me/overview", Some(&token)).await;
    assert_eq!(response.status(), 200);
    let overview: Value = response.json().await.unwrap();
    assert_eq!(overview["warnings"], json!([]), "{overview}");
    assert_eq!(overview["profile"]["email"], "overview@example.com");
    let recent = overview["recent_orders"].as_array().unwrap();
    assert_eq!(recent.len(), 1, "{overview}");
    assert_eq!(recent[0]["order"]["id"], placed["id"]);
    assert_eq!(recent[0]["payment"]["status"], "captured", "{overview}");
    assert_eq!(recent[0]["payment"]["amount"]["amount"], 2400);

    assert_eq!(app.get("/api/me/overview", None).await.status(), 401);
}

crate::topologies!(
    a_good_card_confirms_the_order_charges_it_and_sells_the_stock,
    the_overview_gathers_profile_orders_and_payments,
    the_catalog_counts_sales_from_order_events,
    each_test_card_ends_as_the_api_says_and_a_rejection_keeps_nothing,
    an_idempotency_key_gives_one_order_sequentially_and_concurrently,
    cancelling_a_confirmed_order_refunds_and_restocks_once,
    bad_orders_get_clear_errors_and_change_nothing,
    a_deactivated_customer_is_refused_from_orders_own_projection,
    order_views_show_current_product_names_from_catalog_events,
    a_hundred_and_twenty_buyers_for_twenty_units_confirm_exactly_twenty,
);

// Orders in its own process: the saga crosses the wire to the catalog and payments as the service
// `orders`. (The projections and sales counts need events across processes: the NATS bus.)
crate::orders_apart!(
    a_good_card_confirms_the_order_charges_it_and_sells_the_stock,
    each_test_card_ends_as_the_api_says_and_a_rejection_keeps_nothing,
    an_idempotency_key_gives_one_order_sequentially_and_concurrently,
    cancelling_a_confirmed_order_refunds_and_restocks_once,
    bad_orders_get_clear_errors_and_change_nothing,
    a_hundred_and_twenty_buyers_for_twenty_units_confirm_exactly_twenty,
);
// Events cross processes on JetStream: orders apart from users and the catalog still sees a
// deactivation, feeds the sales count, and keeps product names current.
crate::across_processes!(
    the_catalog_counts_sales_from_order_events,
    a_deactivated_customer_is_refused_from_orders_own_projection,
    order_views_show_current_product_names_from_catalog_events,
);

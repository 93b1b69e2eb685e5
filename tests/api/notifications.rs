//! The notifications module (choreography): orders' and users' events make a notification for
//! the user, listed at `/api/me/notifications` (the caller's own, newest first), marked read,
//! shown in the overview, and sent through the delivery port — to a real SMTP sink in the tests
//! that configure SMTP, with retries ending in a replayable dead letter.

use cleave::config::{DeliveryKind, Settings, SmtpTls};
use cleave_test_support::smtp::SmtpSink;
use cleave_tests::{Layout, ProcessOptions, TestApp, Topology, problem, spawn_app_with, spawn_processes};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const GOOD_CARD: &str = "4242424242424242";
const DECLINED_CARD: &str = "4000000000000002";

async fn product(app: &TestApp, admin: &str, sku: &str) -> String {
    let body = json!({"sku": sku, "name": format!("Product {sku}"), "price": {"amount": 1999, "currency": "EUR"}, "stock_on_hand": 10});
    let response = app.post_json("/api/catalog/products", &body, Some(admin)).await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn place(app: &TestApp, token: &str, key: &str, product: &str, card: &str) -> Value {
    let body = json!({"items": [{"product_id": product, "quantity": 1}], "payment": {"card_number": card}});
    let response =
        app.request(Method::POST, "/api/orders").bearer_auth(token).header("idempotency-key", key).json(&body).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

/// The caller's notifications once `ready` holds for them (events arrive asynchronously); fails
/// after 20 s with what was there.
async fn notifications_when(app: &TestApp, token: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut items = Vec::new();
    for _ in 0..400 {
        let response = app.get("/api/me/notifications", Some(token)).await;
        if response.status() == 200 {
            items = response.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone();
            if ready(&items) {
                return items;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the notifications never got there: {items:#?}");
}

fn kinds(items: &[Value]) -> Vec<&str> {
    items.iter().map(|item| item["kind"].as_str().unwrap()).collect()
}

async fn orders_and_registrations_make_notifications_for_their_user_only(app: TestApp) {
    let admin = app.admin_token().await;
    let mug = product(&app, &admin, "NOTE-1").await;
    let buyer = app.customer("noted@example.com").await;
    let token = buyer["access_token"].as_str().unwrap();
    let confirmed = place(&app, token, "note-1", &mug, GOOD_CARD).await;
    assert_eq!(confirmed["status"], "confirmed");
    let rejected = place(&app, token, "note-2", &mug, DECLINED_CARD).await;
    assert_eq!(rejected["status"], "rejected");
    let order_id = confirmed["id"].as_str().unwrap();
    let cancelled = app.post_json(&format!("/api/orders/{order_id}/cancel"), &json!({}), Some(token)).await;
    assert_eq!(cancelled.status(), 200);

    let items = notifications_when(&app, token, |items| items.len() >= 4).await;
    let mut seen = kinds(&items);
    seen.sort_unstable();
    assert_eq!(seen, ["order_cancelled", "order_confirmed", "order_rejected", "welcome"], "{items:#?}");
    assert_eq!(items.last().unwrap()["kind"], "welcome", "newest first: the welcome came first");
    let about_confirmed = items.iter().find(|item| item["kind"] == "order_confirmed").unwrap();
    assert_eq!(about_confirmed["order_id"], confirmed["id"]);
    assert!(about_confirmed["body"].as_str().unwrap().contains("19.99 EUR"), "{about_confirmed}");
    assert!(about_confirmed["read_at"].is_null());
    let about_rejected = items.iter().find(|item| item["kind"] == "order_rejected").unwrap();
    assert_eq!(about_rejected["order_id"], rejected["id"]);

    // Pages: the cursor walks the same list.
    let first: Value = app.get("/api/me/notifications?limit=3", Some(token)).await.json().await.unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let rest: Value = app.get(&format!("/api/v1/me/notifications?limit=3&cursor={cursor}"), Some(token)).await.json().await.unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), items.len() - 3);
    assert_eq!(rest["items"][0]["id"], items[3]["id"]);
    problem(app.get("/api/me/notifications?limit=0", Some(token)).await, 422).await;
    problem(app.get("/api/me/notifications?cursor=%%%", Some(token)).await, 422).await;

    // Read: once, and the first time stands.
    let id = about_confirmed["id"].as_str().unwrap();
    let read = app.post_json(&format!("/api/me/notifications/{id}/read"), &json!({}), Some(token)).await;
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap();
    assert!(read["read_at"].is_string(), "{read}");
    let again: Value = app.post_json(&format!("/api/me/notifications/{id}/read"), &json!({}), Some(token)).await.json().await.unwrap();
    assert_eq!(again["read_at"], read["read_at"]);

    // Nobody else's: not listed, not readable; anonymous callers get 401.
    let other = app.customer("other-reader@example.com").await;
    let other_token = other["access_token"].as_str().unwrap();
    let theirs = notifications_when(&app, other_token, |items| !items.is_empty()).await;
    assert_eq!(kinds(&theirs), ["welcome"]);
    problem(app.post_json(&format!("/api/me/notifications/{id}/read"), &json!({}), Some(other_token)).await, 404).await;
    problem(app.post_json(&format!("/api/me/notifications/{id}/read"), &json!({}), Some(&admin)).await, 404).await;
    problem(app.post_json("/api/me/notifications/not-a-uuid/read", &json!({}), Some(token)).await, 404).await;
    problem(app.get("/api/me/notifications", None).await, 401).await;
    problem(app.post_json(&format!("/api/me/notifications/{id}/read"), &json!({}), None).await, 401).await;

    // The overview shows the latest ones.
    let overview: Value = app.get("/api/me/overview", Some(token)).await.json().await.unwrap();
    let latest = overview["notifications"].as_array().expect("notifications in the overview");
    assert_eq!(latest.len(), 4, "{overview}");
    assert_eq!(latest[0]["id"], items[0]["id"]);
    assert_eq!(overview["warnings"], json!([]));

    // GraphQL: the same list, and the same read mark.
    let answer = app.graphql("{ myNotifications(first: 10) { edges { node { id kind subject readAt } } } }", json!({}), Some(token)).await;
    let edges = answer["data"]["myNotifications"]["edges"].as_array().unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(edges.len(), 4);
    let read_one = edges.iter().find(|edge| edge["node"]["id"] == id).unwrap();
    assert_eq!(read_one["node"]["kind"], "ORDER_CONFIRMED");
    assert!(read_one["node"]["readAt"].is_string());
    let marked =
        app.graphql("mutation($id: ID!) { markNotificationRead(id: $id) { id readAt } }", json!({"id": items[1]["id"]}), Some(token)).await;
    assert!(marked["data"]["markNotificationRead"]["readAt"].is_string(), "{marked}");
}

crate::topologies!(orders_and_registrations_make_notifications_for_their_user_only);

/// Notifications by email to `sink`, retried quickly and given up after two attempts.
fn smtp_to(sink: &SmtpSink) -> impl Fn(&mut Settings) + Clone + use<> {
    let port = sink.port;
    move |settings: &mut Settings| {
        settings.notifications.delivery = DeliveryKind::Smtp;
        settings.notifications.smtp.host = "127.0.0.1".to_owned();
        settings.notifications.smtp.port = port;
        settings.notifications.smtp.tls = SmtpTls::None;
        settings.notifications.smtp.sender = "Cleave Shop <shop@cleave.test>".to_owned();
        settings.events.max_attempts = 2;
        settings.events.base_delay_ms = 10;
    }
}

/// An order placed → an email in the sink, and the notification listed.
async fn an_order_is_emailed_to_its_customer(app: &TestApp, sink: &SmtpSink) {
    let admin = app.admin_token().await;
    let mug = product(app, &admin, "MAIL-1").await;
    let buyer = app.customer("mailed@example.com").await;
    let token = buyer["access_token"].as_str().unwrap();
    let order = place(app, token, "mail-1", &mug, GOOD_CARD).await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    let email = sink
        .wait_for(Duration::from_secs(20), |message| message.body().contains(&order_id))
        .await
        .unwrap_or_else(|| panic!("no email about the order; the sink has {:#?}", sink.received()));
    assert_eq!(email.to, ["mailed@example.com"]);
    assert_eq!(email.from, "shop@cleave.test");
    let subject = email.header("subject").unwrap();
    assert!(subject.starts_with("Order ") && subject.ends_with(" confirmed"), "{subject}");
    let welcome = sink
        .wait_for(Duration::from_secs(5), |message| message.to == ["mailed@example.com"] && message.body().contains("account is ready"))
        .await;
    assert!(welcome.is_some(), "the welcome email too");
    let items = notifications_when(app, token, |items| items.iter().any(|item| item["order_id"] == order["id"])).await;
    assert!(items.iter().any(|item| item["kind"] == "order_confirmed"));
    // Sent once each, whatever the redeliveries.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().iter().filter(|message| message.body().contains(&order_id)).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_monolith_an_order_is_emailed_through_smtp() {
    let sink = SmtpSink::start().await;
    let app = spawn_app_with(Topology::Monolith(cleave_tests::Database::Sqlite), smtp_to(&sink), None).await.expect("SQLite needs nothing");
    an_order_is_emailed_to_its_customer(&app, &sink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_over_nats_an_order_is_emailed_through_smtp() {
    let sink = SmtpSink::start().await;
    let Some(app) = spawn_processes(Layout::ServicesOverNats, smtp_to(&sink), ProcessOptions::default()).await else { return };
    an_order_is_emailed_to_its_customer(&app, &sink).await;
}

/// A refusing SMTP server: retried, then dead-lettered; replayed once it accepts, sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_email_ends_in_the_dead_letters_and_is_sent_when_replayed() {
    let sink = SmtpSink::start().await;
    sink.refuse(true);
    let app = spawn_app_with(Topology::Monolith(cleave_tests::Database::Sqlite), smtp_to(&sink), None).await.expect("SQLite needs nothing");
    let admin = app.admin_token().await;
    let customer = app.customer("refused@example.com").await;
    let me: Value = app.get("/api/users/me", customer["access_token"].as_str()).await.json().await.unwrap();
    let mut letter = None;
    for _ in 0..400 {
        let page: Value = app.get("/api/admin/dead-letters", Some(&admin)).await.json().await.unwrap();
        letter = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|letter| letter["consumer"] == "notifications.delivery" && letter["event"]["payload"]["user_id"] == me["id"])
            .cloned();
        if letter.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let letter = letter.expect("the refused email's dead letter");
    assert_eq!(letter["module"], "notifications");
    assert_eq!(letter["attempts"].as_array().unwrap().len(), 2, "{letter}");
    assert!(sink.received().iter().all(|message| message.to != ["refused@example.com"]), "nothing was accepted while refusing");

    sink.refuse(false);
    let id = letter["id"].as_str().unwrap();
    let replayed = app.post_json(&format!("/api/admin/dead-letters/{id}/replay"), &json!({}), Some(&admin)).await;
    assert_eq!(replayed.status(), 200);
    let email = sink.wait_for(Duration::from_secs(10), |message| message.to == ["refused@example.com"]).await;
    assert!(email.is_some_and(|email| email.header("subject").as_deref() == Some("Welcome to cleave")));
    let replayed_again = app.post_json(&format!("/api/admin/dead-letters/{id}/replay"), &json!({}), Some(&admin)).await;
    problem(replayed_again, 409).await;
    assert_eq!(sink.received().iter().filter(|message| message.to == ["refused@example.com"]).count(), 1);
}

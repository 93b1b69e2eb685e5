//! Users endpoints of api.md, with their failure cases.

use cleave_tests::{ADMIN_EMAIL, PASSWORD, TestApp, problem};
use serde_json::{Value, json};

async fn registering_returns_the_user_without_any_password_material(app: TestApp) {
    let response = app.register("Ada@Example.com").await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["email"], "ada@example.com");
    assert_eq!(body["roles"], json!(["customer"]));
    assert_eq!(body["status"], "active");
    assert!(uuid::Uuid::parse_str(body["id"].as_str().unwrap()).unwrap().get_version_num() == 7);
    let text = body.to_string();
    assert!(!text.contains("password") && !text.contains("argon2") && !text.contains(PASSWORD), "{text}");
}

async fn a_duplicate_email_is_a_conflict_whatever_its_case(app: TestApp) {
    assert_eq!(app.register("grace@example.com").await.status(), 201);
    let body = problem(app.register("GRACE@Example.COM").await, 409).await;
    assert_eq!(body["type"], "/problems/conflict");
}

async fn a_weak_password_or_a_bad_email_is_422_naming_the_field(app: TestApp) {
    let weak = app.post_json("/api/users/register", &json!({"email": "w@example.com", "password": "password123", "name": "W"}), None).await;
    let body = problem(weak, 422).await;
    assert_eq!(body["errors"][0]["field"], "password");
    let bad_email = app.post_json("/api/users/register", &json!({"email": "not-an-email", "password": PASSWORD, "name": "W"}), None).await;
    let body = problem(bad_email, 422).await;
    assert_eq!(body["errors"][0]["field"], "email");
    let missing = app.post_json("/api/users/register", &json!({"email": "m@example.com"}), None).await;
    problem(missing, 422).await;
    // Nothing was created by the refused requests.
    assert_eq!(app.login("w@example.com", "password123").await.status(), 401);
}

async fn me_needs_a_token_and_returns_the_caller(app: TestApp) {
    problem(app.get("/api/users/me", None).await, 401).await;
    let pair = app.customer("me@example.com").await;
    let response = app.get("/api/users/me", pair["access_token"].as_str()).await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["email"], "me@example.com");
}

async fn listing_users_is_for_admins_and_paginates(app: TestApp) {
    let customer = app.customer("c1@example.com").await;
    app.register("c2@example.com").await;
    problem(app.get("/api/users", customer["access_token"].as_str()).await, 403).await;
    problem(app.get("/api/users", None).await, 401).await;
    let admin = app.admin_token().await;
    problem(app.get("/api/users?limit=0", Some(&admin)).await, 422).await;
    problem(app.get("/api/users?limit=101", Some(&admin)).await, 422).await;
    let first: Value = app.get("/api/users?limit=2", Some(&admin)).await.json().await.unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second: Value = app.get(&format!("/api/users?limit=2&cursor={cursor}"), Some(&admin)).await.json().await.unwrap();
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert!(second["next_cursor"].is_null());
    let mut emails: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|u| u["email"].as_str().unwrap().to_owned())
        .collect();
    emails.sort();
    assert_eq!(emails, [ADMIN_EMAIL, "c1@example.com", "c2@example.com"]);
    problem(app.get("/api/users?cursor=forged!", Some(&admin)).await, 422).await;
}

async fn a_deactivated_user_can_neither_log_in_nor_refresh(app: TestApp) {
    let pair = app.customer("mallory@example.com").await;
    let me: Value = app.get("/api/users/me", pair["access_token"].as_str()).await.json().await.unwrap();
    let id = me["id"].as_str().unwrap();
    problem(app.post_json(&format!("/api/users/{id}/deactivate"), &json!({}), pair["access_token"].as_str()).await, 403).await;
    let admin = app.admin_token().await;
    let response = app.post_json(&format!("/api/users/{id}/deactivate"), &json!({}), Some(&admin)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "deactivated");
    problem(app.login("mallory@example.com", PASSWORD).await, 403).await;
    problem(app.post_json("/api/auth/refresh", &json!({"refresh_token": pair["refresh_token"]}), None).await, 401).await;
    problem(app.post_json(&format!("/api/users/{}/deactivate", uuid::Uuid::now_v7()), &json!({}), Some(&admin)).await, 404).await;
    problem(app.post_json("/api/users/not-a-uuid/deactivate", &json!({}), Some(&admin)).await, 404).await;
    // Authorization comes first, whatever the id looks like.
    problem(app.post_json("/api/users/not-a-uuid/deactivate", &json!({}), None).await, 401).await;
    let customer = app.customer("nosy@example.com").await;
    problem(app.post_json("/api/users/not-a-uuid/deactivate", &json!({}), customer["access_token"].as_str()).await, 403).await;
}

async fn the_bootstrap_admin_promotes_an_existing_account_on_restart(mut app: TestApp) {
    let pair = app.customer("boss@example.com").await;
    let before: Value = app.get("/api/users/me", pair["access_token"].as_str()).await.json().await.unwrap();
    assert_eq!(before["roles"], json!(["customer"]));
    app.restart_with(|settings| {
        settings.admin_bootstrap = Some(cleave::config::AdminBootstrap {
            email: "boss@example.com".into(),
            password: shared_kernel::Secret::new("ignored for existing accounts".into()),
        });
    })
    .await;
    let response = app.login("boss@example.com", PASSWORD).await;
    assert_eq!(response.status(), 200, "the password is unchanged");
    let token: Value = response.json().await.unwrap();
    let after: Value = app.get("/api/users/me", token["access_token"].as_str()).await.json().await.unwrap();
    assert_eq!(after["roles"], json!(["customer", "admin"]));
    assert_eq!(app.get("/api/users", token["access_token"].as_str()).await.status(), 200);
}

crate::topologies!(
    registering_returns_the_user_without_any_password_material,
    a_duplicate_email_is_a_conflict_whatever_its_case,
    a_weak_password_or_a_bad_email_is_422_naming_the_field,
    me_needs_a_token_and_returns_the_caller,
    listing_users_is_for_admins_and_paginates,
    a_deactivated_user_can_neither_log_in_nor_refresh,
    the_bootstrap_admin_promotes_an_existing_account_on_restart,
);

//! Tokens: forgeries are refused, refresh rotates, reuse revokes, logout, rate limits, keys,
//! and no secret ever reaches a log line.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cleave_tests::{PASSWORD, TestApp, problem};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn claims(sub: &str, overrides: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "sub": sub, "roles": ["customer", "admin"], "exp": now + 600, "iat": now,
        "iss": "cleave", "aud": "cleave-api", "jti": uuid::Uuid::now_v7().to_string(),
    });
    for (key, value) in overrides.as_object().unwrap() {
        claims[key] = value.clone();
    }
    claims
}

fn sign_eddsa(kid: &str, pem: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_pem(pem.as_bytes()).unwrap()).unwrap()
}

async fn assert_refused(app: &TestApp, token: &str, what: &str) {
    let response = app.get("/api/users/me", Some(token)).await;
    assert_eq!(response.status(), 401, "{what} was accepted");
    assert_eq!(response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"), "{what}");
    problem(response, 401).await;
}

async fn forged_tokens_are_refused_and_only_a_real_signature_passes(app: TestApp) {
    let pair = app.customer("target@example.com").await;
    let me: Value = app.get("/api/users/me", pair["access_token"].as_str()).await.json().await.unwrap();
    let sub = me["id"].as_str().unwrap();
    let (kid, pem) = app.signing_key_pem();

    // Control: our forging machinery with the real key and valid claims is accepted, so every
    // refusal below is about the one thing each forgery changes.
    let genuine = sign_eddsa(&kid, &pem, &claims(sub, json!({})));
    assert_eq!(app.get("/api/users/me", Some(&genuine)).await.status(), 200);

    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let none = format!("{}.{}.", encode(&json!({"alg": "none", "typ": "JWT", "kid": kid})), encode(&claims(sub, json!({}))));
    assert_refused(&app, &none, "alg none").await;

    let real = pair["access_token"].as_str().unwrap();
    let parts: Vec<&str> = real.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["roles"] = json!(["customer", "admin"]);
    let tampered = format!("{}.{}.{}", parts[0], encode(&payload), parts[2]);
    assert_refused(&app, &tampered, "a tampered payload").await;

    let jwks: Value = app.get("/.well-known/jwks.json", None).await.json().await.unwrap();
    let public_x = jwks["keys"][0]["x"].as_str().unwrap();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    for secret in [URL_SAFE_NO_PAD.decode(public_x).unwrap(), public_x.as_bytes().to_vec()] {
        let confused = jsonwebtoken::encode(&hs_header, &claims(sub, json!({})), &EncodingKey::from_secret(&secret)).unwrap();
        assert_refused(&app, &confused, "HS256 signed with the public key").await;
    }

    let now = chrono::Utc::now().timestamp();
    assert_refused(&app, &sign_eddsa(&kid, &pem, &claims(sub, json!({"exp": now - 3600, "iat": now - 4500}))), "an expired token").await;
    assert_refused(&app, &sign_eddsa(&kid, &pem, &claims(sub, json!({"aud": "another-api"}))), "a wrong audience").await;
    assert_refused(&app, &sign_eddsa(&kid, &pem, &claims(sub, json!({"iss": "someone-else"}))), "a wrong issuer").await;
    assert_refused(&app, &sign_eddsa("unknown-kid", &pem, &claims(sub, json!({}))), "an unknown kid").await;
    assert_refused(&app, "not.a.token", "garbage").await;
    let response =
        app.request(reqwest::Method::GET, "/api/users/me").header("authorization", format!("Basic {real}")).send().await.unwrap();
    problem(response, 401).await;
}

async fn refresh_rotates_and_presenting_a_used_token_revokes_the_family(app: TestApp) {
    let first = app.customer("rotate@example.com").await;
    let response = app.post_json("/api/auth/refresh", &json!({"refresh_token": first["refresh_token"]}), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let second: Value = response.json().await.unwrap();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(second["token_type"], "Bearer");
    assert_eq!(app.get("/api/users/me", second["access_token"].as_str()).await.status(), 200);
    problem(app.post_json("/api/auth/refresh", &json!({"refresh_token": first["refresh_token"]}), None).await, 401).await;
    problem(app.post_json("/api/auth/refresh", &json!({"refresh_token": second["refresh_token"]}), None).await, 401).await;
    problem(app.post_json("/api/auth/refresh", &json!({"refresh_token": "never-issued"}), None).await, 401).await;
    problem(app.post_json("/api/auth/refresh", &json!({}), None).await, 422).await;
}

async fn logout_ends_the_session(app: TestApp) {
    let pair = app.customer("bye@example.com").await;
    let response = app.post_json("/api/auth/logout", &json!({"refresh_token": pair["refresh_token"]}), None).await;
    assert_eq!(response.status(), 204);
    problem(app.post_json("/api/auth/refresh", &json!({"refresh_token": pair["refresh_token"]}), None).await, 401).await;
}

async fn wrong_passwords_are_401_and_brute_force_gets_429(app: TestApp) {
    app.register("brute@example.com").await;
    for _ in 0..5 {
        problem(app.login("brute@example.com", "a wrong password guess").await, 401).await;
    }
    let response = app.login("brute@example.com", PASSWORD).await;
    let retry_after: u64 =
        response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!(retry_after >= 1);
    problem(response, 429).await;
    // Another account from the same address still works: the per-address budget is larger.
    app.register("other@example.com").await;
    assert_eq!(app.login("other@example.com", PASSWORD).await.status(), 200);
}

async fn the_jwks_verifies_our_tokens(app: TestApp) {
    let response = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(response.status(), 200);
    let jwks: Value = response.json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!((key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()), (Some("OKP"), Some("Ed25519"), Some("EdDSA")));
    let pair = app.customer("jwks@example.com").await;
    let token = pair["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["cleave-api"]);
    validation.set_issuer(&["cleave"]);
    let data = jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(), &validation).unwrap();
    for claim in ["sub", "roles", "exp", "iat", "iss", "aud", "jti"] {
        assert!(data.claims.get(claim).is_some(), "claim {claim} is missing");
    }
    assert!(data.claims["exp"].as_i64().unwrap() - data.claims["iat"].as_i64().unwrap() <= 900);
}

async fn no_password_hash_or_token_reaches_a_response_or_a_log_line(app: TestApp) {
    let password = format!("unique password {}", uuid::Uuid::now_v7());
    let email = format!("secret-{}@example.com", uuid::Uuid::now_v7().simple());
    let registered = app.post_json("/api/users/register", &json!({"email": email, "password": password, "name": "S"}), None).await;
    let registered_text = registered.text().await.unwrap();
    let user_id = serde_json::from_str::<Value>(&registered_text).unwrap()["id"].as_str().unwrap().to_owned();
    let pair: Value = app.login(&email, &password).await.json().await.unwrap();
    let refreshed: Value =
        app.post_json("/api/auth/refresh", &json!({"refresh_token": pair["refresh_token"]}), None).await.json().await.unwrap();
    let me = app.get("/api/users/me", refreshed["access_token"].as_str()).await.text().await.unwrap();
    let wrong_password = format!("wrong password {}", uuid::Uuid::now_v7());
    app.login(&email, &wrong_password).await;
    let logs = app.logs();
    // This test's own lines are there (the user id is logged on login)...
    assert!(logs.lines().any(|line| line.contains(&user_id) && line.contains("logged in")), "the capture works");
    // ...and none of its secrets.
    for secret in [
        password.as_str(),
        wrong_password.as_str(),
        pair["access_token"].as_str().unwrap(),
        pair["refresh_token"].as_str().unwrap(),
        refreshed["access_token"].as_str().unwrap(),
        refreshed["refresh_token"].as_str().unwrap(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
        assert!(!me.contains(secret) && !registered_text.contains(secret));
    }
    for text in [&logs, &me, &registered_text] {
        assert!(!text.contains("$argon2"), "a password hash leaked");
    }
}

async fn auth_endpoints_ignore_a_stale_bearer_token(app: TestApp) {
    let pair = app.customer("stale@example.com").await;
    let stale = "Bearer expired.or.garbage";
    let response = app
        .request(reqwest::Method::POST, "/api/auth/refresh")
        .header("authorization", stale)
        .json(&json!({"refresh_token": pair["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "a client that still sends its old access token can refresh");
    let response = app
        .request(reqwest::Method::POST, "/api/auth/login")
        .header("authorization", stale)
        .json(&json!({"email": "stale@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn the_public_edge_never_accepts_a_service_identity(app: TestApp) {
    // Whatever it claims, a public request is not a service caller.
    let response = app
        .request(reqwest::Method::GET, "/api/users")
        .header("x-cleave-service", "orders")
        .header("x-cleave-service-token", "a token of old")
        .send()
        .await
        .unwrap();
    problem(response, 401).await;
}

crate::topologies!(
    auth_endpoints_ignore_a_stale_bearer_token,
    the_public_edge_never_accepts_a_service_identity,
    forged_tokens_are_refused_and_only_a_real_signature_passes,
    refresh_rotates_and_presenting_a_used_token_revokes_the_family,
    logout_ends_the_session,
    wrong_passwords_are_401_and_brute_force_gets_429,
    the_jwks_verifies_our_tokens,
    no_password_hash_or_token_reaches_a_response_or_a_log_line,
);

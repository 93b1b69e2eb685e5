//! The users contract suite: one set of assertions, run against the in-process service, against
//! the HTTP pair (generated router + generated client, server on port 0) and against the NATS
//! pair (generated service + client, a real nats-server), on SQLite, and in process on
//! PostgreSQL.

use migrations::MigratorTrait as _;
use shared_kernel::auth::{TokenPolicy, TokenVerifier};
use shared_kernel::db::{DatabaseTarget, connect_module};
use shared_kernel::wire::{RpcClient, RpcClientConfig, TokenCallerResolver};
use shared_kernel::{ApiError, Caller, PageRequest, Role, Secret, SystemClock};
use std::sync::Arc;
use users::{KeyRing, LoginRateLimits, UsersService, UsersSettings};
use users_contract::{Credentials, RefreshRequest, RegisterUser, TokenPair, UserStatus, UsersApi, http_wire, nats_wire};

const PASSWORD: &str = "correct horse battery staple";

struct Harness {
    api: Arc<dyn UsersApi>,
    service: UsersService,
    verifier: TokenVerifier,
    _temp: Option<tempfile::TempDir>,
    _served: Option<shared_kernel::nats_wire::NatsService>,
}

/// The settings these tests run the module with (the app's `[auth]` section gives them in a
/// process).
fn settings() -> UsersSettings {
    UsersSettings {
        issuer: "cleave".to_owned(),
        audience: "cleave-api".to_owned(),
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 14 * 24 * 3600,
        login_rate_limits: LoginRateLimits { per_account_per_minute: 5, per_address_per_minute: 20 },
    }
}

fn policy() -> TokenPolicy {
    let settings = settings();
    TokenPolicy { issuer: settings.issuer, audience: settings.audience, leeway_secs: 0 }
}

async fn service_on(target: DatabaseTarget) -> UsersService {
    let db = connect_module("users", &target, 5).await.expect("connect");
    migrations::users::Migrator::up(&db, None).await.expect("migrate");
    UsersService::new(
        db,
        Arc::new(KeyRing::generate_in_memory()),
        settings(),
        Arc::new(SystemClock),
        shared_kernel::outbox::Outbox::new("users"),
    )
}

impl cleave_test_support::contract::Transports for Harness {
    type Parts = UsersService;

    async fn parts_on(target: DatabaseTarget) -> Self::Parts {
        service_on(target).await
    }

    async fn in_process(service: Self::Parts, temp: Option<tempfile::TempDir>) -> Self {
        let verifier = TokenVerifier::new(Arc::new(service.clone()), policy());
        Self { api: Arc::new(service.clone()), service, verifier, _temp: temp, _served: None }
    }

    async fn over_http(service: Self::Parts, temp: Option<tempfile::TempDir>) -> Self {
        let verifier = TokenVerifier::new(Arc::new(service.clone()), policy());
        let resolver = Arc::new(TokenCallerResolver {
            verifier: verifier.clone(),
            service_token: None,
            accept_service_callers: true,
            services: Vec::new(),
            services_verified_by_wire: false,
        });
        let router = http_wire::router(Arc::new(service.clone()), resolver);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let client = RpcClient::new(RpcClientConfig {
            identity: None,
            tls: None,
            base_url: format!("http://{addr}"),
            upstream: cleave_test_support::callers::upstream("users"),
            service_name: "contract-tests".into(),
            service_token: None,
            discovery: shared_kernel::discovery::DiscoveryPolicy::default(),
        })
        .unwrap();
        Self { api: Arc::new(http_wire::Client::new(client)), service, verifier, _temp: temp, _served: None }
    }

    /// Over the NATS pair, with the real token resolver on the service's side; `None` when
    /// there is no NATS server (never under `CI=true`).
    async fn over_nats(service: Self::Parts, temp: Option<tempfile::TempDir>) -> Option<Self> {
        use cleave_test_support::nats;
        let client = nats::client().await?;
        let prefix = nats::unique_prefix();
        let verifier = TokenVerifier::new(Arc::new(service.clone()), policy());
        let resolver = Arc::new(TokenCallerResolver {
            verifier: verifier.clone(),
            service_token: None,
            accept_service_callers: true,
            services: Vec::new(),
            services_verified_by_wire: false,
        });
        let served = nats_wire::serve(Arc::new(service.clone()), resolver, nats::serve_options(&client, &prefix)).await.unwrap();
        let api = Arc::new(nats_wire::Client::new(nats::rpc_client(&client, nats_wire::MODULE, &prefix)));
        Some(Self { api, service, verifier, _temp: temp, _served: Some(served) })
    }
}

impl Harness {
    async fn register(&self, email: &str) -> Result<users_contract::UserView, ApiError> {
        let input = RegisterUser { email: email.into(), password: Secret::new(PASSWORD.into()), name: "Test User".into() };
        self.api.register(&Caller::Anonymous, input).await
    }

    async fn login(&self, email: &str, password: &str) -> Result<TokenPair, ApiError> {
        let credentials = Credentials { email: email.into(), password: Secret::new(password.into()) };
        self.api.login(&Caller::Anonymous, credentials, None).await
    }

    async fn caller(&self, pair: &TokenPair) -> Caller {
        self.verifier.caller_for(pair.access_token.expose()).await.expect("a token we issued verifies")
    }

    /// A registered, logged-in customer.
    async fn customer(&self, email: &str) -> (Caller, TokenPair) {
        self.register(email).await.unwrap();
        let pair = self.login(email, PASSWORD).await.unwrap();
        (self.caller(&pair).await, pair)
    }

    async fn admin(&self, email: &str) -> Caller {
        self.service.ensure_admin(email, PASSWORD).await.unwrap();
        let pair = self.login(email, PASSWORD).await.unwrap();
        self.caller(&pair).await
    }
}

fn refresh_request(token: &Secret<String>) -> RefreshRequest {
    RefreshRequest { refresh_token: token.clone() }
}

fn status<T: std::fmt::Debug>(result: Result<T, ApiError>) -> u16 {
    result.expect_err("expected an error").status()
}

async fn registration_normalises_the_email_and_hides_the_hash(h: Harness) {
    let user = h.register("  Ada@Example.COM ").await.unwrap();
    assert_eq!(user.email, "ada@example.com");
    assert_eq!(user.roles, vec![Role::Customer]);
    assert_eq!(user.status, UserStatus::Active);
    let json = serde_json::to_string(&user).unwrap();
    assert!(!json.contains("argon2") && !json.contains("password"), "{json}");
}

async fn duplicate_emails_conflict_case_insensitively(h: Harness) {
    h.register("grace@example.com").await.unwrap();
    assert_eq!(status(h.register("GRACE@example.com").await), 409);
}

async fn invalid_registrations_name_each_field(h: Harness) {
    let input = RegisterUser { email: "not-an-email".into(), password: Secret::new("short".into()), name: "".into() };
    let error = h.api.register(&Caller::Anonymous, input).await.unwrap_err();
    let ApiError::Invalid { errors, .. } = error else { panic!("expected 422, got {error:?}") };
    let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["email", "password", "name"]);
    let weak = RegisterUser { email: "weak@example.com".into(), password: Secret::new("password123".into()), name: "W".into() };
    assert_eq!(status(h.api.register(&Caller::Anonymous, weak).await), 422);
}

async fn login_issues_tokens_that_verify_and_carry_the_claims(h: Harness) {
    let user = h.register("linus@example.com").await.unwrap();
    let pair = h.login("LINUS@example.com", PASSWORD).await.unwrap();
    assert_eq!(pair.token_type, "Bearer");
    assert!(pair.expires_in > 0 && pair.expires_in <= 900);
    let claims = h.verifier.verify(pair.access_token.expose()).await.unwrap();
    assert_eq!(claims.sub, user.id.to_string());
    assert_eq!(claims.roles, vec!["customer"]);
    assert!(claims.exp - claims.iat <= 900);
    let me = h.api.me(&h.caller(&pair).await).await.unwrap();
    assert_eq!(me.id, user.id);
}

async fn wrong_credentials_are_401_without_saying_which(h: Harness) {
    h.register("ken@example.com").await.unwrap();
    let wrong_password = h.login("ken@example.com", "not the password at all").await.unwrap_err();
    let unknown_email = h.login("nobody@example.com", PASSWORD).await.unwrap_err();
    assert_eq!(wrong_password.status(), 401);
    assert_eq!(wrong_password, unknown_email);
}

async fn refresh_rotates_and_reuse_revokes_the_family(h: Harness) {
    let (_, first) = h.customer("barbara@example.com").await;
    let second = h.api.refresh(&Caller::Anonymous, refresh_request(&first.refresh_token)).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    // The first token is used: presenting it again is a theft signal.
    assert_eq!(status(h.api.refresh(&Caller::Anonymous, refresh_request(&first.refresh_token)).await), 401);
    // ...which revoked the whole family, including the legitimately rotated token.
    assert_eq!(status(h.api.refresh(&Caller::Anonymous, refresh_request(&second.refresh_token)).await), 401);
    // A new login starts a new family that works.
    let fresh = h.login("barbara@example.com", PASSWORD).await.unwrap();
    h.api.refresh(&Caller::Anonymous, refresh_request(&fresh.refresh_token)).await.unwrap();
}

async fn concurrent_refreshes_with_one_token_let_at_most_one_through(h: Harness) {
    let (_, pair) = h.customer("race@example.com").await;
    let (a, b) = tokio::join!(
        h.api.refresh(&Caller::Anonymous, refresh_request(&pair.refresh_token)),
        h.api.refresh(&Caller::Anonymous, refresh_request(&pair.refresh_token)),
    );
    // Exactly one wins; the loser is a reuse, which revokes the family, winner's new token included.
    let (winner, loser) = match (a, b) {
        (Ok(winner), Err(loser)) | (Err(loser), Ok(winner)) => (winner, loser),
        (a, b) => panic!("expected exactly one successful rotation, got {:?} and {:?}", a.map(|_| "ok"), b.map(|_| "ok")),
    };
    assert_eq!(loser.status(), 401);
    assert_eq!(status(h.api.refresh(&Caller::Anonymous, refresh_request(&winner.refresh_token)).await), 401);
}

async fn logout_revokes_the_refresh_token(h: Harness) {
    let (_, pair) = h.customer("dennis@example.com").await;
    h.api.logout(&Caller::Anonymous, refresh_request(&pair.refresh_token)).await.unwrap();
    assert_eq!(status(h.api.refresh(&Caller::Anonymous, refresh_request(&pair.refresh_token)).await), 401);
    // Logging out twice, or with a token we never issued, is not an error.
    h.api.logout(&Caller::Anonymous, refresh_request(&pair.refresh_token)).await.unwrap();
    h.api.logout(&Caller::Anonymous, refresh_request(&Secret::new("never-issued".into()))).await.unwrap();
}

async fn only_admins_list_and_deactivate(h: Harness) {
    let (customer, _) = h.customer("customer@example.com").await;
    let admin = h.admin("admin@example.com").await;
    assert_eq!(status(h.api.list_users(&customer, PageRequest::default()).await), 403);
    assert_eq!(status(h.api.list_users(&Caller::Anonymous, PageRequest::default()).await), 401);
    let victim = h.register("victim@example.com").await.unwrap();
    assert_eq!(status(h.api.deactivate_user(&customer, victim.id).await), 403);
    let first_page = h.api.list_users(&admin, PageRequest::new(Some(2), None).unwrap()).await.unwrap();
    assert_eq!(first_page.items.len(), 2);
    let cursor = first_page.next_cursor.clone().expect("three users make a second page");
    let second_page = h.api.list_users(&admin, PageRequest::new(Some(2), Some(cursor)).unwrap()).await.unwrap();
    assert_eq!(second_page.items.len(), 1);
    assert!(second_page.next_cursor.is_none());
    let mut all: Vec<_> = first_page.items.iter().chain(&second_page.items).map(|u| u.email.clone()).collect();
    all.sort();
    assert_eq!(all, ["admin@example.com", "customer@example.com", "victim@example.com"]);
    let admin_id = admin.user_id().unwrap();
    assert_eq!(status(h.api.deactivate_user(&admin, admin_id).await), 409);
    assert_eq!(status(h.api.deactivate_user(&admin, shared_kernel::UserId::new()).await), 404);
}

async fn a_deactivated_user_can_neither_log_in_nor_refresh(h: Harness) {
    let (_, pair) = h.customer("mallory@example.com").await;
    let admin = h.admin("root@example.com").await;
    let mallory = h.api.get_user(&admin, h.caller(&pair).await.user_id().unwrap()).await.unwrap();
    let deactivated = h.api.deactivate_user(&admin, mallory.id).await.unwrap();
    assert_eq!(deactivated.status, UserStatus::Deactivated);
    assert_eq!(status(h.login("mallory@example.com", PASSWORD).await), 403);
    assert_eq!(status(h.login("mallory@example.com", "wrong password here").await), 401);
    assert_eq!(status(h.api.refresh(&Caller::Anonymous, refresh_request(&pair.refresh_token)).await), 401);
    // Deactivating again changes nothing.
    assert_eq!(h.api.deactivate_user(&admin, mallory.id).await.unwrap().status, UserStatus::Deactivated);
}

async fn a_user_sees_only_themself(h: Harness) {
    let (alice, _) = h.customer("alice@example.com").await;
    let (bob, _) = h.customer("bob@example.com").await;
    let bob_id = bob.user_id().unwrap();
    assert_eq!(status(h.api.get_user(&alice, bob_id).await), 404);
    assert_eq!(h.api.get_user(&bob, bob_id).await.unwrap().email, "bob@example.com");
    assert_eq!(status(h.api.me(&Caller::Anonymous).await), 401);
}

async fn repeated_logins_are_rate_limited_per_account_and_address(h: Harness) {
    h.register("eve@example.com").await.unwrap();
    let attempt = |email: &'static str, address: &'static str| {
        let api = h.api.clone();
        async move {
            let credentials = Credentials { email: email.into(), password: Secret::new("guessing passwords".into()) };
            api.login(&Caller::Anonymous, credentials, Some(address.into())).await
        }
    };
    for _ in 0..5 {
        assert_eq!(status(attempt("eve@example.com", "192.0.2.1").await), 401);
    }
    let limited = attempt("eve@example.com", "192.0.2.2").await.unwrap_err();
    assert_eq!(limited.status(), 429);
    assert!(limited.retry_after_secs().unwrap() >= 1);
    // Even the right password waits now: the limit is on attempts.
    let right = Credentials { email: "eve@example.com".into(), password: Secret::new(PASSWORD.into()) };
    assert_eq!(status(h.api.login(&Caller::Anonymous, right, Some("192.0.2.3".into())).await), 429);
}

async fn published_keys_verify_issued_tokens(h: Harness) {
    let (_, pair) = h.customer("keys@example.com").await;
    let keys = h.api.signing_keys(&Caller::Anonymous).await.unwrap();
    assert_eq!(keys.keys.len(), 1);
    let key = &keys.keys[0];
    assert_eq!((key.kty.as_str(), key.crv.as_str(), key.alg.as_str(), key.use_.as_str()), ("OKP", "Ed25519", "EdDSA", "sig"));
    let header = jsonwebtoken::decode_header(pair.access_token.expose()).unwrap();
    assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
}

cleave_test_support::contract_suite!(Harness:
    registration_normalises_the_email_and_hides_the_hash,
    duplicate_emails_conflict_case_insensitively,
    invalid_registrations_name_each_field,
    login_issues_tokens_that_verify_and_carry_the_claims,
    wrong_credentials_are_401_without_saying_which,
    refresh_rotates_and_reuse_revokes_the_family,
    concurrent_refreshes_with_one_token_let_at_most_one_through,
    logout_revokes_the_refresh_token,
    only_admins_list_and_deactivate,
    a_deactivated_user_can_neither_log_in_nor_refresh,
    a_user_sees_only_themself,
    repeated_logins_are_rate_limited_per_account_and_address,
    published_keys_verify_issued_tokens,
);

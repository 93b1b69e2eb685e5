//! The payments contract suite: one set of assertions, run in process, over the HTTP pair and
//! over the NATS pair (against a real nats-server) on SQLite, and in process on PostgreSQL.

use cleave_test_support::callers::{TestResolver, admin, customer, orders_service, rpc_client, serve, service, user};
use migrations::MigratorTrait as _;
use payments::{PaymentProvider, PaymentsService, ProviderError, ProviderOutcome, SimulatedCardProcessor, SimulatorSettings};
use payments_contract::{
    CardNumber, ChargeOutcome, ChargeRequest, PaymentMethodToken, PaymentStatus, PaymentView, PaymentsApi, RefundOutcome, VoidOutcome,
    http_wire, nats_wire,
};
use shared_kernel::db::{DatabaseTarget, connect_module};
use shared_kernel::{ApiError, Caller, Currency, Money, OrderId, Role, UserId};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// The simulator, watched: every charge id it hands out is recorded, so a test can count
/// distinct captures.
struct Watched {
    inner: SimulatedCardProcessor,
    captures: Mutex<BTreeSet<String>>,
}

#[async_trait::async_trait]
impl PaymentProvider for Watched {
    async fn tokenize(&self, card: &CardNumber) -> Result<String, ProviderError> {
        self.inner.tokenize(card).await
    }
    async fn charge(&self, key: &str, method: &str, amount: Money) -> Result<ProviderOutcome, ProviderError> {
        // A provider takes time: concurrent charges of one order overlap here, so a missing
        // idempotency guard shows as a second capture, not by luck of timing.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let outcome = self.inner.charge(key, method, amount).await;
        if let Ok(ProviderOutcome::Captured { charge_id }) = &outcome {
            self.captures.lock().unwrap().insert(charge_id.clone());
        }
        outcome
    }
    async fn refund(&self, key: &str, charge_id: &str, amount: Money) -> Result<String, ProviderError> {
        self.inner.refund(key, charge_id, amount).await
    }
    async fn find_charge(&self, key: &str) -> Result<Option<ProviderOutcome>, ProviderError> {
        self.inner.find_charge(key).await
    }
}

struct Harness {
    api: Arc<dyn PaymentsApi>,
    provider: Arc<Watched>,
    _temp: Option<tempfile::TempDir>,
    _served: Option<shared_kernel::nats_wire::NatsService>,
}

async fn service_on(target: DatabaseTarget) -> (PaymentsService, Arc<Watched>) {
    let db = connect_module("payments", &target, 10).await.expect("connect");
    migrations::payments::Migrator::up(&db, None).await.expect("migrate");
    let provider = Arc::new(Watched {
        inner: SimulatedCardProcessor::new(db.clone(), SimulatorSettings::default()),
        captures: Mutex::new(BTreeSet::new()),
    });
    (PaymentsService::new(db, provider.clone()), provider)
}

impl cleave_test_support::contract::Transports for Harness {
    type Parts = (PaymentsService, Arc<Watched>);

    async fn parts_on(target: DatabaseTarget) -> Self::Parts {
        service_on(target).await
    }

    async fn in_process((service, provider): Self::Parts, temp: Option<tempfile::TempDir>) -> Self {
        Self { api: Arc::new(service), provider, _temp: temp, _served: None }
    }

    async fn over_http((service, provider): Self::Parts, temp: Option<tempfile::TempDir>) -> Self {
        let base_url = serve(http_wire::router(Arc::new(service), Arc::new(TestResolver))).await;
        Self { api: Arc::new(http_wire::Client::new(rpc_client(base_url))), provider, _temp: temp, _served: None }
    }

    async fn over_nats((service, provider): Self::Parts, temp: Option<tempfile::TempDir>) -> Option<Self> {
        use cleave_test_support::nats;
        let client = nats::client().await?;
        let prefix = nats::unique_prefix();
        let served = nats_wire::serve(Arc::new(service), Arc::new(TestResolver), nats::serve_options(&client, &prefix)).await.unwrap();
        let api = Arc::new(nats_wire::Client::new(nats::rpc_client(&client, nats_wire::MODULE, &prefix)));
        Some(Self { api, provider, _temp: temp, _served: Some(served) })
    }
}

impl Harness {
    fn captures(&self) -> usize {
        self.provider.captures.lock().unwrap().len()
    }
}

fn euros(amount: i64) -> Money {
    Money::new(amount, Currency::EUR)
}

/// A charge of `order` for `customer` with `card`, exchanged for a payment method as the edge
/// does (tokenized by the customer).
async fn charge(api: &dyn PaymentsApi, order: OrderId, customer: UserId, amount: i64, card: &str) -> ChargeRequest {
    let method = api.tokenize(&user(Role::Customer, customer), CardNumber::parse(card).unwrap()).await.expect("tokenize");
    ChargeRequest { order_id: order, customer_id: customer, amount: euros(amount), payment_method: method.token }
}

/// The payment a charge captured, failing the test on any other answer.
fn captured(outcome: Result<ChargeOutcome, ApiError>) -> PaymentView {
    match outcome {
        Ok(ChargeOutcome::Captured(payment)) => payment,
        other => panic!("expected a capture, got {other:?}"),
    }
}

/// The payment a refund gave money back from, failing the test on any other answer.
fn refunded(outcome: Result<RefundOutcome, ApiError>) -> PaymentView {
    match outcome {
        Ok(RefundOutcome::Refunded { payment }) => payment,
        other => panic!("expected a refund, got {other:?}"),
    }
}

fn status<T: std::fmt::Debug>(result: Result<T, ApiError>) -> u16 {
    result.expect_err("expected an error").status()
}

async fn each_test_card_has_its_published_outcome(h: Harness) {
    let owner = UserId::new();
    let approved = captured(h.api.charge(&orders_service(), charge(&*h.api, OrderId::new(), owner, 1999, "4242424242424242").await).await);
    assert_eq!((approved.status, approved.amount, approved.card_last4.as_str()), (PaymentStatus::Captured, euros(1999), "4242"));
    let Ok(ChargeOutcome::Declined(declined)) =
        h.api.charge(&orders_service(), charge(&*h.api, OrderId::new(), owner, 1999, "4000000000000002").await).await
    else {
        panic!("the declined card is declined")
    };
    assert_eq!((declined.status, declined.failure_reason.as_deref()), (PaymentStatus::Declined, Some("card declined")));
    let Ok(ChargeOutcome::Declined(broke)) =
        h.api.charge(&orders_service(), charge(&*h.api, OrderId::new(), owner, 1999, "4000000000009995").await).await
    else {
        panic!("the insufficient-funds card is declined")
    };
    assert_eq!((broke.status, broke.failure_reason.as_deref()), (PaymentStatus::Declined, Some("insufficient funds")));
    let flaky_order = OrderId::new();
    let failed = h.api.charge(&orders_service(), charge(&*h.api, flaky_order, owner, 1999, "4000000000000119").await).await.unwrap_err();
    assert_eq!((failed.status(), failed.retry_after_secs().is_some()), (503, true));
    assert_eq!(h.api.get_payment(&orders_service(), flaky_order).await.unwrap().status, PaymentStatus::Failed);
    assert_eq!(h.captures(), 1);
}

async fn charging_one_order_again_or_at_once_captures_once(h: Harness) {
    let service = orders_service();
    let order = OrderId::new();
    let owner = UserId::new();
    let first_request = charge(&*h.api, order, owner, 5000, "4242424242424242").await;
    let first = captured(h.api.charge(&orders_service(), first_request.clone()).await);
    let again = captured(h.api.charge(&orders_service(), first_request.clone()).await);
    assert_eq!(first, again);
    let concurrent_order = OrderId::new();
    let request = charge(&*h.api, concurrent_order, owner, 700, "4242424242424242").await;
    let results = futures::future::join_all((0..10).map(|_| h.api.charge(&service, request.clone()))).await;
    let payments: Vec<PaymentView> = results.into_iter().map(captured).collect();
    let ids: BTreeSet<_> = payments.iter().map(|payment| payment.id).collect();
    assert_eq!(ids.len(), 1, "one payment for the order");
    assert!(payments.iter().all(|payment| payment.status == PaymentStatus::Captured));
    assert_eq!(h.captures(), 2, "one capture per order, whatever the retries");
    assert_eq!(
        h.api.charge(&orders_service(), ChargeRequest { amount: euros(4000), ..first_request.clone() }).await.unwrap(),
        ChargeOutcome::AmountMismatch(first),
        "same order, another amount: the first payment, nothing more charged"
    );
    assert_eq!(h.captures(), 2);
}

async fn refunds_never_exceed_the_capture(h: Harness) {
    let service = orders_service();
    let order = OrderId::new();
    captured(h.api.charge(&orders_service(), charge(&*h.api, order, UserId::new(), 1000, "4242424242424242").await).await);
    let partial = refunded(h.api.refund(&orders_service(), order, Some(euros(300))).await);
    assert_eq!((partial.status, partial.refunded_amount), (PaymentStatus::PartiallyRefunded, euros(300)));
    let Ok(RefundOutcome::ExceedsCapture { payment }) = h.api.refund(&orders_service(), order, Some(euros(800))).await else {
        panic!("800 more than the 700 left is refused")
    };
    assert_eq!(payment.refunded_amount, euros(300), "and nothing more is refunded");
    assert_eq!(status(h.api.refund(&orders_service(), order, Some(Money::new(100, Currency::USD))).await), 422);
    assert_eq!(status(h.api.refund(&orders_service(), order, Some(euros(0))).await), 422);
    let full = refunded(h.api.refund(&orders_service(), order, None).await);
    assert_eq!((full.status, full.refunded_amount), (PaymentStatus::Refunded, euros(1000)));
    assert_eq!(refunded(h.api.refund(&orders_service(), order, None).await), full, "a full refund of a refunded payment changes nothing");
    assert_eq!(h.api.refund(&orders_service(), OrderId::new(), None).await.unwrap(), RefundOutcome::NoPayment);

    let raced = OrderId::new();
    captured(h.api.charge(&orders_service(), charge(&*h.api, raced, UserId::new(), 1000, "4242424242424242").await).await);
    let results = futures::future::join_all((0..5).map(|_| h.api.refund(&service, raced, Some(euros(300))))).await;
    let done = results.iter().filter(|r| matches!(r, Ok(RefundOutcome::Refunded { .. }))).count();
    let refused = results.iter().filter(|r| matches!(r, Ok(RefundOutcome::ExceedsCapture { .. }))).count();
    assert_eq!((done, refused), (3, 2), "three refunds of 300 fit in 1000, the others are refused");
    assert_eq!(h.api.get_payment(&orders_service(), raced).await.unwrap().refunded_amount, euros(900));

    let both_full = OrderId::new();
    captured(h.api.charge(&orders_service(), charge(&*h.api, both_full, UserId::new(), 1000, "4242424242424242").await).await);
    let (first, second) = tokio::join!(h.api.refund(&service, both_full, None), h.api.refund(&service, both_full, None));
    assert_eq!(
        (refunded(first).status, refunded(second).status),
        (PaymentStatus::Refunded, PaymentStatus::Refunded),
        "two full refunds at once: both done, once"
    );
    assert_eq!(h.api.get_payment(&orders_service(), both_full).await.unwrap().refunded_amount, euros(1000));

    let declined = OrderId::new();
    h.api.charge(&orders_service(), charge(&*h.api, declined, UserId::new(), 1000, "4000000000000002").await).await.unwrap();
    assert!(
        matches!(h.api.refund(&orders_service(), declined, None).await, Ok(RefundOutcome::NothingCaptured { .. })),
        "a declined charge captured nothing to give back"
    );
}

async fn only_orders_and_admins_charge_and_only_the_owner_sees_the_payment(h: Harness) {
    let owner_id = UserId::new();
    let order = OrderId::new();
    assert_eq!(status(h.api.charge(&customer(), charge(&*h.api, order, owner_id, 100, "4242424242424242").await).await), 403);
    assert_eq!(status(h.api.charge(&Caller::Anonymous, charge(&*h.api, order, owner_id, 100, "4242424242424242").await).await), 401);
    captured(h.api.charge(&admin(), charge(&*h.api, order, owner_id, 100, "4242424242424242").await).await);
    let owner = user(Role::Customer, owner_id);
    assert_eq!(h.api.get_payment(&owner, order).await.unwrap().order_id, order);
    assert_eq!(status(h.api.get_payment(&customer(), order).await), 404, "another customer learns nothing");
    assert_eq!(status(h.api.get_payment(&Caller::Anonymous, order).await), 401);
    assert_eq!(h.api.get_payment(&admin(), order).await.unwrap().order_id, order);
    assert_eq!(status(h.api.get_payment(&admin(), OrderId::new()).await), 404);
    assert_eq!(status(h.api.refund(&customer(), order, None).await), 403);
    // Only orders, of the services, may move money: the edge (a gateway speaking for itself) and
    // every other module are refused, and nothing is charged or refunded for them.
    for name in ["edge", "users", "catalog", "payments", "notifications"] {
        let stranger = service(name);
        let other_order = OrderId::new();
        assert_eq!(
            status(h.api.charge(&stranger, charge(&*h.api, other_order, owner_id, 100, "4242424242424242").await).await),
            403,
            "{name} charges"
        );
        assert_eq!(status(h.api.refund(&stranger, order, None).await), 403, "{name} refunds");
        assert_eq!(status(h.api.get_payments(&stranger, vec![order]).await), 403, "{name} reads every payment");
        assert_eq!(status(h.api.get_payment(&admin(), other_order).await), 404, "nothing was charged for {name}");
    }
    assert_eq!(h.api.get_payment(&admin(), order).await.unwrap().refunded_amount.amount(), 0, "nothing was refunded");
    assert_eq!(status(h.api.get_payment(&service("edge"), order).await), 403, "the edge reads a payment only for its owner or an admin");
    assert_eq!(h.api.get_payments(&orders_service(), vec![order]).await.unwrap().len(), 1, "orders reads its orders' payments");
    assert_eq!(status(h.api.get_payment(&service("notifications"), order).await), 403);
}

async fn a_payment_method_pays_once_and_only_for_its_customer(h: Harness) {
    let owner = UserId::new();
    let card = CardNumber::parse("4242-4242-4242-4242").unwrap();
    assert_eq!(status(h.api.tokenize(&Caller::Anonymous, card.clone()).await), 401);
    assert_eq!(status(h.api.tokenize(&orders_service(), card.clone()).await), 401, "a service holds no card of its own");
    let method = h.api.tokenize(&user(Role::Customer, owner), card).await.unwrap();
    assert_eq!(method.card_last4, "4242");
    assert!(method.token.expose().starts_with("pm_") && method.token.expose().len() >= 40, "an unguessable token");
    let paying = |order: OrderId, customer: UserId| ChargeRequest {
        order_id: order,
        customer_id: customer,
        amount: euros(1200),
        payment_method: method.token.clone(),
    };
    let refused = |outcome: Result<ChargeOutcome, ApiError>| match outcome {
        Ok(ChargeOutcome::MethodRefused { reason }) => reason,
        other => panic!("expected the method to be refused, got {other:?}"),
    };
    // Another customer's order cannot use it, and nothing is charged or recorded for it.
    let strangers_order = OrderId::new();
    assert_eq!(
        refused(h.api.charge(&orders_service(), paying(strangers_order, UserId::new())).await),
        "the payment method is unknown, expired or already used"
    );
    assert_eq!(status(h.api.get_payment(&admin(), strangers_order).await), 404);
    // Its own customer's order pays with it, as often as the order is retried.
    let order = OrderId::new();
    let payment = captured(h.api.charge(&orders_service(), paying(order, owner)).await);
    assert_eq!(payment.card_last4, "4242");
    assert_eq!(captured(h.api.charge(&orders_service(), paying(order, owner)).await), payment, "a retry of the same order");
    // A second order of the same customer cannot.
    let second = OrderId::new();
    refused(h.api.charge(&orders_service(), paying(second, owner)).await);
    assert_eq!(status(h.api.get_payment(&admin(), second).await), 404);
    // Nor can a token payments never issued.
    let forged = ChargeRequest {
        payment_method: PaymentMethodToken::parse("pm_forged0123456789abcdefghijklmnopqrstuvwx").unwrap(),
        ..paying(OrderId::new(), owner)
    };
    refused(h.api.charge(&orders_service(), forged).await);
    assert_eq!(h.captures(), 1);
}

async fn a_voided_charge_never_captures_and_a_captured_one_is_refunded(h: Harness) {
    let owner = UserId::new();
    let orders = orders_service();
    let void = |order: OrderId| h.api.void_charge(&orders, order, owner, euros(900));
    // Voided before any charge came: a charge still on its way sends nothing, and there is no
    // payment to read.
    let early = OrderId::new();
    assert_eq!(void(early).await.unwrap(), VoidOutcome::Voided);
    let late = charge(&*h.api, early, owner, 900, "4242424242424242").await;
    assert_eq!(h.api.charge(&orders, late.clone()).await.unwrap(), ChargeOutcome::Voided);
    assert_eq!(status(h.api.get_payment(&admin(), early).await), 404, "a voided charge is no payment");
    assert!(h.api.get_payments(&admin(), vec![early]).await.unwrap().is_empty());
    assert_eq!(h.api.refund(&orders, early, None).await.unwrap(), RefundOutcome::NoPayment);
    assert_eq!(void(early).await.unwrap(), VoidOutcome::Voided, "voiding again changes nothing");
    // Captured first: refunded in full.
    let paid = OrderId::new();
    captured(h.api.charge(&orders, charge(&*h.api, paid, owner, 900, "4242424242424242").await).await);
    let Ok(VoidOutcome::Refunded { payment }) = void(paid).await else { panic!("a capture is refunded") };
    assert_eq!((payment.status, payment.refunded_amount), (PaymentStatus::Refunded, euros(900)));
    assert!(matches!(void(paid).await, Ok(VoidOutcome::Refunded { .. })), "and stays refunded, once");
    // Failed at the provider: voided (it still reads as failed), and its retry sends nothing.
    let flaky = OrderId::new();
    let retry = charge(&*h.api, flaky, owner, 900, "4000000000000119").await;
    assert_eq!(status(h.api.charge(&orders, retry.clone()).await), 503);
    assert_eq!(void(flaky).await.unwrap(), VoidOutcome::Voided);
    assert_eq!(h.api.charge(&orders, retry).await.unwrap(), ChargeOutcome::Voided);
    assert_eq!(h.api.get_payment(&admin(), flaky).await.unwrap().status, PaymentStatus::Failed);
    // Declined: nothing to give back.
    let refused = OrderId::new();
    assert!(matches!(
        h.api.charge(&orders, charge(&*h.api, refused, owner, 900, "4000000000000002").await).await,
        Ok(ChargeOutcome::Declined(_))
    ));
    assert_eq!(void(refused).await.unwrap(), VoidOutcome::Voided);
    assert_eq!(h.captures(), 1, "only the order paid before its void captured");
    // Only orders (or an admin) may void, and only a positive amount.
    assert_eq!(status(h.api.void_charge(&customer(), OrderId::new(), owner, euros(1)).await), 403);
    assert_eq!(status(h.api.void_charge(&service("notifications"), OrderId::new(), owner, euros(1)).await), 403);
    assert_eq!(status(h.api.void_charge(&orders, OrderId::new(), owner, euros(0)).await), 422);
}

cleave_test_support::contract_suite!(Harness:
    a_voided_charge_never_captures_and_a_captured_one_is_refunded,
    a_payment_method_pays_once_and_only_for_its_customer,
    each_test_card_has_its_published_outcome,
    charging_one_order_again_or_at_once_captures_once,
    refunds_never_exceed_the_capture,
    only_orders_and_admins_charge_and_only_the_owner_sees_the_payment,
);

/// A payment row whose status or currency does not read back is an error naming it, never a
/// default (an unknown status used to read as `pending`, an unknown currency as EUR).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_row_that_does_not_read_back_is_an_error_not_a_default() {
    use sea_orm::ConnectionTrait as _;
    let temp = tempfile::tempdir().unwrap();
    let target = DatabaseTarget::SqliteDir(temp.path().to_owned());
    let (service, _provider) = service_on(target.clone()).await;
    let order = OrderId::new();
    captured(service.charge(&orders_service(), charge(&service, order, UserId::new(), 1999, "4242424242424242").await).await);
    let db = connect_module("payments", &target, 1).await.unwrap();
    db.execute_unprepared("UPDATE payments SET status = 'misplaced'").await.unwrap();
    assert_eq!(status(service.get_payment(&admin(), order).await), 500);
    db.execute_unprepared("UPDATE payments SET status = 'captured', currency = 'XXQ'").await.unwrap();
    assert_eq!(status(service.get_payment(&admin(), order).await), 500);
    assert_eq!(status(service.refund(&orders_service(), order, None).await), 500);
    db.execute_unprepared("UPDATE payments SET currency = 'EUR'").await.unwrap();
    assert_eq!(service.get_payment(&admin(), order).await.unwrap().status, PaymentStatus::Captured);
}

/// An unused payment method expires an hour after its issue; one that paid keeps serving its
/// order's retries. Neither the card number nor the token is ever written to the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_expires_unused_and_no_card_or_token_reaches_the_database() {
    let temp = tempfile::tempdir().unwrap();
    let target = DatabaseTarget::SqliteDir(temp.path().to_owned());
    let clock = Arc::new(shared_kernel::ManualClock::new(chrono::Utc::now()));
    let (service, _provider) = service_on(target.clone()).await;
    let service = service.with_clock(clock.clone());
    let owner = UserId::new();
    let card = "4000056655665556";
    let holder = user(Role::Customer, owner);
    let tokenize = || service.tokenize(&holder, CardNumber::parse(card).unwrap());
    let (used, unused) = (tokenize().await.unwrap(), tokenize().await.unwrap());
    let request = |token: &PaymentMethodToken, order: OrderId| ChargeRequest {
        order_id: order,
        customer_id: owner,
        amount: euros(800),
        payment_method: token.clone(),
    };
    let order = OrderId::new();
    captured(service.charge(&orders_service(), request(&used.token, order)).await);
    clock.advance(chrono::Duration::minutes(61));
    assert!(
        matches!(service.charge(&orders_service(), request(&unused.token, OrderId::new())).await, Ok(ChargeOutcome::MethodRefused { .. })),
        "an unused method an hour old is refused"
    );
    captured(service.charge(&orders_service(), request(&used.token, order)).await);

    // Every byte SQLite wrote (the database and its write-ahead log).
    drop(service);
    let mut written = Vec::new();
    for entry in std::fs::read_dir(temp.path()).unwrap() {
        written.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let holds = |needle: &str| written.windows(needle.len()).any(|window| window == needle.as_bytes());
    assert!(holds("5556"), "the last four digits are kept (the search can find what is there)");
    assert!(!holds(card), "the card number is in no table");
    assert!(!holds(used.token.expose()) && !holds(unused.token.expose()), "tokens are kept as their hashes only");
}

/// The simulator, with payments dying inside a refund: before the provider gets it, or after the
/// provider made it and before payments recorded it (the call never returns).
struct DyingRefunds {
    inner: SimulatedCardProcessor,
    after_the_provider: bool,
}

#[async_trait::async_trait]
impl PaymentProvider for DyingRefunds {
    async fn tokenize(&self, card: &CardNumber) -> Result<String, ProviderError> {
        self.inner.tokenize(card).await
    }
    async fn charge(&self, key: &str, method: &str, amount: Money) -> Result<ProviderOutcome, ProviderError> {
        self.inner.charge(key, method, amount).await
    }
    async fn refund(&self, key: &str, charge_id: &str, amount: Money) -> Result<String, ProviderError> {
        if self.after_the_provider {
            self.inner.refund(key, charge_id, amount).await?;
        }
        std::future::pending().await
    }
    async fn find_charge(&self, key: &str) -> Result<Option<ProviderOutcome>, ProviderError> {
        self.inner.find_charge(key).await
    }
}

/// Rows in `table`.
async fn rows(db: &sea_orm::DatabaseConnection, table: &str) -> i64 {
    use sea_orm::ConnectionTrait as _;
    let statement = sea_orm::Statement::from_string(db.get_database_backend(), format!("SELECT count(*) FROM {table}"));
    db.query_one_raw(statement).await.unwrap().unwrap().try_get_by_index(0).unwrap()
}

/// A refund interrupted between its claim and its record, on either side of the provider call,
/// is finished exactly once after a restart: by the sweep, or by the next refund of the payment
/// (the saga's retry), each with the refund's own idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_interrupted_anywhere_is_finished_exactly_once() {
    for (after_the_provider, by_the_sweep) in [(false, true), (true, true), (false, false), (true, false)] {
        let case = format!("dies after the provider: {after_the_provider}, finished by the sweep: {by_the_sweep}");
        let temp = tempfile::tempdir().unwrap();
        let target = DatabaseTarget::SqliteDir(temp.path().to_owned());
        let (_, _) = service_on(target.clone()).await;
        let db = connect_module("payments", &target, 5).await.unwrap();
        let simulator = || SimulatedCardProcessor::new(db.clone(), SimulatorSettings::default());
        let dying = PaymentsService::new(db.clone(), Arc::new(DyingRefunds { inner: simulator(), after_the_provider }));
        let (owner, order) = (UserId::new(), OrderId::new());
        captured(dying.charge(&orders_service(), charge(&dying, order, owner, 1000, "4242424242424242").await).await);
        let died = tokio::time::timeout(std::time::Duration::from_millis(300), dying.refund(&orders_service(), order, None)).await;
        assert!(died.is_err(), "{case}: the process died inside the refund");
        assert_eq!(rows(&db, "pending_refunds").await, 1, "{case}: the claim left its pending refund");

        let restarted = PaymentsService::new(db.clone(), Arc::new(simulator()));
        if by_the_sweep {
            assert_eq!(restarted.finish_pending_refunds(std::time::Duration::ZERO).await.unwrap(), 1, "{case}");
            assert_eq!(restarted.finish_pending_refunds(std::time::Duration::ZERO).await.unwrap(), 0, "{case}: nothing left");
        }
        let again = refunded(restarted.refund(&orders_service(), order, None).await);
        assert_eq!((again.status, again.refunded_amount), (PaymentStatus::Refunded, euros(1000)), "{case}");
        assert_eq!(
            (rows(&db, "simulated_refunds").await, rows(&db, "refunds").await, rows(&db, "pending_refunds").await),
            (1, 1, 0),
            "{case}: one refund at the provider, recorded once"
        );
    }
}

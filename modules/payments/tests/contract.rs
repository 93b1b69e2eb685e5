//! The payments contract suite: one set of assertions, run in process, over the HTTP pair and
//! over the NATS pair (against a real nats-server) on SQLite, and in process on PostgreSQL.

use cleave_test_support::callers::{TestResolver, admin, customer, orders_service, rpc_client, serve, service, user};
use migrations::MigratorTrait as _;
use payments::{PaymentProvider, PaymentsService, ProviderError, ProviderOutcome, SimulatedCardProcessor, SimulatorSettings};
use payments_contract::{
    CardNumber, ChargeOutcome, ChargeRequest, PaymentStatus, PaymentView, PaymentsApi, RefundOutcome, http_wire, nats_wire,
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
    async fn charge(&self, key: &str, card: &CardNumber, amount: Money) -> Result<ProviderOutcome, ProviderError> {
        // A provider takes time: concurrent charges of one order overlap here, so a missing
        // idempotency guard shows as a second capture, not by luck of timing.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let outcome = self.inner.charge(key, card, amount).await;
        if let Ok(ProviderOutcome::Captured { charge_id }) = &outcome {
            self.captures.lock().unwrap().insert(charge_id.clone());
        }
        outcome
    }
    async fn refund(&self, charge_id: &str, amount: Money) -> Result<String, ProviderError> {
        self.inner.refund(charge_id, amount).await
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

fn charge(order: OrderId, customer: UserId, amount: i64, card: &str) -> ChargeRequest {
    ChargeRequest { order_id: order, customer_id: customer, amount: euros(amount), card_number: CardNumber::parse(card).unwrap() }
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
    let approved = captured(h.api.charge(&orders_service(), charge(OrderId::new(), owner, 1999, "4242424242424242")).await);
    assert_eq!((approved.status, approved.amount, approved.card_last4.as_str()), (PaymentStatus::Captured, euros(1999), "4242"));
    let Ok(ChargeOutcome::Declined(declined)) =
        h.api.charge(&orders_service(), charge(OrderId::new(), owner, 1999, "4000000000000002")).await
    else {
        panic!("the declined card is declined")
    };
    assert_eq!((declined.status, declined.failure_reason.as_deref()), (PaymentStatus::Declined, Some("card declined")));
    let Ok(ChargeOutcome::Declined(broke)) = h.api.charge(&orders_service(), charge(OrderId::new(), owner, 1999, "4000000000009995")).await
    else {
        panic!("the insufficient-funds card is declined")
    };
    assert_eq!((broke.status, broke.failure_reason.as_deref()), (PaymentStatus::Declined, Some("insufficient funds")));
    let flaky_order = OrderId::new();
    let failed = h.api.charge(&orders_service(), charge(flaky_order, owner, 1999, "4000000000000119")).await.unwrap_err();
    assert_eq!((failed.status(), failed.retry_after_secs().is_some()), (503, true));
    assert_eq!(h.api.get_payment(&orders_service(), flaky_order).await.unwrap().status, PaymentStatus::Failed);
    assert_eq!(h.captures(), 1);
}

async fn charging_one_order_again_or_at_once_captures_once(h: Harness) {
    let service = orders_service();
    let order = OrderId::new();
    let owner = UserId::new();
    let first = captured(h.api.charge(&orders_service(), charge(order, owner, 5000, "4242424242424242")).await);
    let again = captured(h.api.charge(&orders_service(), charge(order, owner, 5000, "4242424242424242")).await);
    assert_eq!(first, again);
    let concurrent_order = OrderId::new();
    let results =
        futures::future::join_all((0..10).map(|_| h.api.charge(&service, charge(concurrent_order, owner, 700, "4242424242424242")))).await;
    let payments: Vec<PaymentView> = results.into_iter().map(captured).collect();
    let ids: BTreeSet<_> = payments.iter().map(|payment| payment.id).collect();
    assert_eq!(ids.len(), 1, "one payment for the order");
    assert!(payments.iter().all(|payment| payment.status == PaymentStatus::Captured));
    assert_eq!(h.captures(), 2, "one capture per order, whatever the retries");
    assert_eq!(
        h.api.charge(&orders_service(), charge(order, owner, 4000, "4242424242424242")).await.unwrap(),
        ChargeOutcome::AmountMismatch(first),
        "same order, another amount: the first payment, nothing more charged"
    );
    assert_eq!(h.captures(), 2);
}

async fn refunds_never_exceed_the_capture(h: Harness) {
    let service = orders_service();
    let order = OrderId::new();
    captured(h.api.charge(&orders_service(), charge(order, UserId::new(), 1000, "4242424242424242")).await);
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
    captured(h.api.charge(&orders_service(), charge(raced, UserId::new(), 1000, "4242424242424242")).await);
    let results = futures::future::join_all((0..5).map(|_| h.api.refund(&service, raced, Some(euros(300))))).await;
    let done = results.iter().filter(|r| matches!(r, Ok(RefundOutcome::Refunded { .. }))).count();
    let refused = results.iter().filter(|r| matches!(r, Ok(RefundOutcome::ExceedsCapture { .. }))).count();
    assert_eq!((done, refused), (3, 2), "three refunds of 300 fit in 1000, the others are refused");
    assert_eq!(h.api.get_payment(&orders_service(), raced).await.unwrap().refunded_amount, euros(900));

    let both_full = OrderId::new();
    captured(h.api.charge(&orders_service(), charge(both_full, UserId::new(), 1000, "4242424242424242")).await);
    let (first, second) = tokio::join!(h.api.refund(&service, both_full, None), h.api.refund(&service, both_full, None));
    assert_eq!(
        (refunded(first).status, refunded(second).status),
        (PaymentStatus::Refunded, PaymentStatus::Refunded),
        "two full refunds at once: both done, once"
    );
    assert_eq!(h.api.get_payment(&orders_service(), both_full).await.unwrap().refunded_amount, euros(1000));

    let declined = OrderId::new();
    h.api.charge(&orders_service(), charge(declined, UserId::new(), 1000, "4000000000000002")).await.unwrap();
    assert!(
        matches!(h.api.refund(&orders_service(), declined, None).await, Ok(RefundOutcome::NothingCaptured { .. })),
        "a declined charge captured nothing to give back"
    );
}

async fn only_orders_and_admins_charge_and_only_the_owner_sees_the_payment(h: Harness) {
    let owner_id = UserId::new();
    let order = OrderId::new();
    assert_eq!(status(h.api.charge(&customer(), charge(order, owner_id, 100, "4242424242424242")).await), 403);
    assert_eq!(status(h.api.charge(&Caller::Anonymous, charge(order, owner_id, 100, "4242424242424242")).await), 401);
    captured(h.api.charge(&admin(), charge(order, owner_id, 100, "4242424242424242")).await);
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
        assert_eq!(status(h.api.charge(&stranger, charge(other_order, owner_id, 100, "4242424242424242")).await), 403, "{name} charges");
        assert_eq!(status(h.api.refund(&stranger, order, None).await), 403, "{name} refunds");
        assert_eq!(status(h.api.get_payments(&stranger, vec![order]).await), 403, "{name} reads every payment");
        assert_eq!(status(h.api.get_payment(&admin(), other_order).await), 404, "nothing was charged for {name}");
    }
    assert_eq!(h.api.get_payment(&admin(), order).await.unwrap().refunded_amount.amount(), 0, "nothing was refunded");
    assert_eq!(status(h.api.get_payment(&service("edge"), order).await), 403, "the edge reads a payment only for its owner or an admin");
    assert_eq!(h.api.get_payments(&orders_service(), vec![order]).await.unwrap().len(), 1, "orders reads its orders' payments");
    assert_eq!(status(h.api.get_payment(&service("notifications"), order).await), 403);
}

cleave_test_support::contract_suite!(Harness:
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
    captured(service.charge(&orders_service(), charge(order, UserId::new(), 1999, "4242424242424242")).await);
    let db = connect_module("payments", &target, 1).await.unwrap();
    db.execute_unprepared("UPDATE payments SET status = 'misplaced'").await.unwrap();
    assert_eq!(status(service.get_payment(&admin(), order).await), 500);
    db.execute_unprepared("UPDATE payments SET status = 'captured', currency = 'XXQ'").await.unwrap();
    assert_eq!(status(service.get_payment(&admin(), order).await), 500);
    assert_eq!(status(service.refund(&orders_service(), order, None).await), 500);
    db.execute_unprepared("UPDATE payments SET currency = 'EUR'").await.unwrap();
    assert_eq!(service.get_payment(&admin(), order).await.unwrap().status, PaymentStatus::Captured);
}

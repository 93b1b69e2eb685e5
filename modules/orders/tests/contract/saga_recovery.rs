//! Crash recovery of the place-order saga, on SQLite and PostgreSQL. The modules are composed by
//! hand so a fault can sit between orders and payments: a call that never returns stands for the
//! process dying at that point (nothing after it runs). A second orders instance on the same
//! databases then plays the restarted process: its recovery must finish every order correctly.

use catalog_contract::{CatalogApi, NewProduct, ProductView};
use cleave_test_support::callers::{admin, customer};
use migrations::MigratorTrait as _;
use orders::{OrdersService, OrdersSettings};
use orders_contract::{CardNumber, OrderLineInput, OrderRequest, OrderStatus, OrdersApi, PaymentMethod};
use payments::{PaymentProvider, PaymentsService, ProviderError, ProviderOutcome, SimulatedCardProcessor, SimulatorSettings};
use payments_contract::{ChargeOutcome, ChargeRequest, PaymentStatus, PaymentView, PaymentsApi, RefundOutcome, VoidOutcome};
use shared_kernel::db::{DatabaseTarget, connect_module};
use shared_kernel::outbox::Outbox;
use shared_kernel::{ApiError, Caller, Currency, Money, OrderId, SystemClock, UserId};
use std::sync::Arc;
use std::time::Duration;

/// Where the "crash" happens.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Crash {
    /// Orders reserved the stock and died before asking payments to charge.
    AfterReserve,
    /// Payments captured the charge; orders died before it got the answer.
    AfterCharge,
    /// The provider captured; payments died before recording it (its row stays pending).
    InsideProviderAfterCapture,
    /// Payments died before the provider got the charge (its row stays pending).
    InsideProviderBeforeCharge,
}

/// Payments as orders sees it, dying at `crash`.
struct DyingPayments {
    inner: Arc<dyn PaymentsApi>,
    crash: Crash,
}

#[async_trait::async_trait]
impl PaymentsApi for DyingPayments {
    async fn tokenize(&self, caller: &Caller, card: CardNumber) -> Result<PaymentMethod, ApiError> {
        self.inner.tokenize(caller, card).await
    }
    async fn charge(&self, caller: &Caller, request: ChargeRequest) -> Result<ChargeOutcome, ApiError> {
        match self.crash {
            Crash::AfterReserve => std::future::pending().await,
            Crash::AfterCharge => {
                self.inner.charge(caller, request).await?;
                std::future::pending().await
            }
            _ => self.inner.charge(caller, request).await,
        }
    }
    async fn refund(&self, caller: &Caller, order_id: OrderId, amount: Option<Money>) -> Result<RefundOutcome, ApiError> {
        self.inner.refund(caller, order_id, amount).await
    }
    async fn void_charge(&self, caller: &Caller, order_id: OrderId, customer: UserId, amount: Money) -> Result<VoidOutcome, ApiError> {
        self.inner.void_charge(caller, order_id, customer, amount).await
    }
    async fn get_payment(&self, caller: &Caller, order_id: OrderId) -> Result<PaymentView, ApiError> {
        self.inner.get_payment(caller, order_id).await
    }
    async fn get_payments(&self, caller: &Caller, order_ids: Vec<OrderId>) -> Result<Vec<PaymentView>, ApiError> {
        self.inner.get_payments(caller, order_ids).await
    }
}

/// The provider as payments sees it, with payments dying around the provider call.
struct DyingProvider {
    inner: SimulatedCardProcessor,
    crash: Crash,
}

#[async_trait::async_trait]
impl PaymentProvider for DyingProvider {
    async fn tokenize(&self, card: &CardNumber) -> Result<String, ProviderError> {
        self.inner.tokenize(card).await
    }
    async fn charge(&self, key: &str, method: &str, amount: Money) -> Result<ProviderOutcome, ProviderError> {
        match self.crash {
            Crash::InsideProviderBeforeCharge => std::future::pending().await,
            Crash::InsideProviderAfterCapture => {
                self.inner.charge(key, method, amount).await?;
                std::future::pending().await
            }
            _ => self.inner.charge(key, method, amount).await,
        }
    }
    async fn refund(&self, key: &str, charge_id: &str, amount: Money) -> Result<String, ProviderError> {
        self.inner.refund(key, charge_id, amount).await
    }
    async fn find_charge(&self, key: &str) -> Result<Option<ProviderOutcome>, ProviderError> {
        self.inner.find_charge(key).await
    }
}

/// Payments as orders sees it when a charge's answer is lost but the charge itself still
/// reaches payments later (a request still queued on the broker, an answer lost on the way
/// back): each charge answers "did not answer" at once and runs `delay` later.
struct LateCharges {
    inner: Arc<dyn PaymentsApi>,
    delay: Duration,
}

#[async_trait::async_trait]
impl PaymentsApi for LateCharges {
    async fn tokenize(&self, caller: &Caller, card: CardNumber) -> Result<PaymentMethod, ApiError> {
        self.inner.tokenize(caller, card).await
    }
    async fn charge(&self, caller: &Caller, request: ChargeRequest) -> Result<ChargeOutcome, ApiError> {
        let (inner, caller, delay) = (self.inner.clone(), caller.clone(), self.delay);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = inner.charge(&caller, request).await;
        });
        Err(ApiError::unavailable("the payments module did not answer", 1))
    }
    async fn refund(&self, caller: &Caller, order_id: OrderId, amount: Option<Money>) -> Result<RefundOutcome, ApiError> {
        self.inner.refund(caller, order_id, amount).await
    }
    async fn void_charge(&self, caller: &Caller, order_id: OrderId, customer: UserId, amount: Money) -> Result<VoidOutcome, ApiError> {
        self.inner.void_charge(caller, order_id, customer, amount).await
    }
    async fn get_payment(&self, caller: &Caller, order_id: OrderId) -> Result<PaymentView, ApiError> {
        self.inner.get_payment(caller, order_id).await
    }
    async fn get_payments(&self, caller: &Caller, order_ids: Vec<OrderId>) -> Result<Vec<PaymentView>, ApiError> {
        self.inner.get_payments(caller, order_ids).await
    }
}

/// The saga gives up on a charge whose answers were all lost and compensates: it voids the
/// charge before it calls the order rejected, so the charges still on their way arrive to find
/// it voided and capture nothing.
async fn a_charge_arriving_after_the_saga_gave_up_captures_nothing(postgres: bool) {
    use sea_orm::ConnectionTrait as _;
    let Some(db) = databases(postgres).await else { return };
    let (catalog, product) = catalog_with_a_product(&db).await;
    let payments: Arc<dyn PaymentsApi> = Arc::new(PaymentsService::new(
        db.payments.clone(),
        Arc::new(SimulatedCardProcessor::new(db.payments.clone(), SimulatorSettings::default())),
    ));
    let late: Arc<dyn PaymentsApi> = Arc::new(LateCharges { inner: payments.clone(), delay: Duration::from_millis(500) });
    let orders = orders_on(&db, catalog.clone(), late);
    let buyer = customer();
    let payment_method = payments.tokenize(&buyer, CardNumber::parse("4242424242424242").unwrap()).await.unwrap();
    let order = OrderRequest { items: vec![OrderLineInput { product_id: product.id, quantity: 2 }], payment_method };
    let placed = orders.place_order(&buyer, "late".into(), order).await.unwrap().order;
    assert_eq!((placed.status, placed.failure_reason.as_deref()), (OrderStatus::Rejected, Some("the payment could not be completed")));
    // Every charge the saga sent (one per attempt) arrives now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(payments.get_payments(&admin(), vec![placed.id]).await.unwrap().is_empty(), "no payment");
    let captures = db
        .payments
        .query_one_raw(sea_orm::Statement::from_string(db.payments.get_database_backend(), "SELECT count(*) FROM simulated_charges"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(captures.try_get_by_index::<i64>(0).unwrap(), 0, "the provider never saw a charge");
    let now = stock(catalog.as_ref(), &product).await;
    assert_eq!((now.stock_on_hand, now.stock_reserved), (5, 0), "the reservation was released");
}

struct Databases {
    catalog: sea_orm::DatabaseConnection,
    orders: sea_orm::DatabaseConnection,
    payments: sea_orm::DatabaseConnection,
    _temp: Option<tempfile::TempDir>,
}

async fn databases(postgres: bool) -> Option<Databases> {
    let (target, temp) = if postgres {
        let server = cleave_test_support::postgres()?;
        (DatabaseTarget::Url(server.fresh_database().await.expect("a database")), None)
    } else {
        let temp = tempfile::tempdir().unwrap();
        (DatabaseTarget::SqliteDir(temp.path().to_owned()), Some(temp))
    };
    let catalog = connect_module("catalog", &target, 5).await.unwrap();
    migrations::catalog::Migrator::up(&catalog, None).await.unwrap();
    let orders = connect_module("orders", &target, 5).await.unwrap();
    migrations::orders::Migrator::up(&orders, None).await.unwrap();
    let payments = connect_module("payments", &target, 5).await.unwrap();
    migrations::payments::Migrator::up(&payments, None).await.unwrap();
    Some(Databases { catalog, orders, payments, _temp: temp })
}

fn settings() -> OrdersSettings {
    OrdersSettings {
        placement_wait: Duration::from_millis(300),
        step_attempts: 4,
        step_retry_delay: Duration::from_millis(10),
        stale_after: Duration::from_secs(30),
    }
}

fn orders_on(db: &Databases, catalog: Arc<dyn CatalogApi>, payments: Arc<dyn PaymentsApi>) -> OrdersService {
    OrdersService::new(db.orders.clone(), Outbox::new("orders"), catalog, payments, Arc::new(SystemClock), settings())
}

async fn stock(catalog: &dyn CatalogApi, product: &ProductView) -> ProductView {
    catalog.get_product(&Caller::Anonymous, product.id).await.unwrap()
}

/// The catalog on `db`, holding one product with 5 on hand at 12.50.
async fn catalog_with_a_product(db: &Databases) -> (Arc<dyn CatalogApi>, ProductView) {
    let catalog: Arc<dyn CatalogApi> = Arc::new(catalog::CatalogService::new(
        db.catalog.clone(),
        Arc::new(SystemClock),
        Outbox::new("catalog"),
        catalog::CatalogSettings {
            reservation_ttl: chrono::Duration::minutes(15),
            cache: catalog::cache::CacheSettings { ttl: std::time::Duration::from_secs(5), max_entries: 10_000 },
        },
    ));
    let product = catalog
        .create_product(
            &admin(),
            NewProduct {
                sku: "CRASH-1".into(),
                name: "Crash test dummy".into(),
                description: String::new(),
                price: Money::new(1250, Currency::EUR),
                category_id: None,
                stock_on_hand: 5,
            },
        )
        .await
        .unwrap();
    (catalog, product)
}

/// Places an order through a process that dies at `crash`, restarts orders (and payments) on the
/// same databases, recovers, and returns what the restarted process sees.
async fn crash_and_recover(
    postgres: bool,
    crash: Crash,
) -> Option<(OrderStatus, Option<String>, ProductView, Result<PaymentView, ApiError>)> {
    let db = databases(postgres).await?;
    let (catalog, product) = catalog_with_a_product(&db).await;
    let simulator = || SimulatedCardProcessor::new(db.payments.clone(), SimulatorSettings::default());

    // The process that dies.
    let dying_payments: Arc<dyn PaymentsApi> = Arc::new(DyingPayments {
        inner: Arc::new(PaymentsService::new(db.payments.clone(), Arc::new(DyingProvider { inner: simulator(), crash }))),
        crash,
    });
    let buyer = customer();
    let before = orders_on(&db, catalog.clone(), dying_payments.clone());
    let payment_method = dying_payments.tokenize(&buyer, CardNumber::parse("4242424242424242").unwrap()).await.unwrap();
    let order = OrderRequest { items: vec![OrderLineInput { product_id: product.id, quantity: 2 }], payment_method };
    let placed = before.place_order(&buyer, "crash-key".into(), order).await.unwrap();
    assert_eq!(placed.order.status, OrderStatus::Pending, "{crash:?}: the saga is stuck where the process died");
    assert_eq!(stock(catalog.as_ref(), &product).await.stock_reserved, 2, "{crash:?}: the stock was reserved before the crash");
    drop(before);

    // The restarted process: real payments (its stale pending charges settle at once here).
    let payments: Arc<dyn PaymentsApi> =
        Arc::new(PaymentsService::new(db.payments.clone(), Arc::new(simulator())).with_pending_timeout(Duration::ZERO));
    let after = orders_on(&db, catalog.clone(), payments.clone());
    // Two recoveries at once (two instances starting together): one outcome.
    let twin = orders_on(&db, catalog.clone(), payments.clone());
    let (a, b) = tokio::join!(after.recover_in_flight(Duration::ZERO), twin.recover_in_flight(Duration::ZERO));
    assert!(a.is_ok() && b.is_ok());
    let recovered = after.get_order(&buyer, placed.order.id).await.unwrap();
    assert_eq!(after.recover_in_flight(Duration::ZERO).await.unwrap(), 0, "nothing is left in flight");
    let payment = payments.get_payment(&admin(), placed.order.id).await;
    Some((recovered.status, recovered.failure_reason, stock(catalog.as_ref(), &product).await, payment))
}

async fn interrupted_after_reserve_resumes_to_a_charge(postgres: bool) {
    // The order holds its payment method's token, so the restarted process charges it (before
    // payment tokens, the card was only in the dead process's memory and the order was rejected).
    let Some((status, reason, product, payment)) = crash_and_recover(postgres, Crash::AfterReserve).await else { return };
    assert_eq!((status, reason), (OrderStatus::Confirmed, None));
    assert_eq!((product.stock_on_hand, product.stock_reserved), (3, 0), "the stock was committed once");
    let payment = payment.unwrap();
    assert_eq!((payment.status, payment.amount.amount()), (PaymentStatus::Captured, 2500));
}

async fn interrupted_after_charge_resumes_to_confirmed(postgres: bool) {
    let Some((status, reason, product, payment)) = crash_and_recover(postgres, Crash::AfterCharge).await else { return };
    assert_eq!((status, reason), (OrderStatus::Confirmed, None));
    assert_eq!((product.stock_on_hand, product.stock_reserved), (3, 0), "the stock was committed once");
    let payment = payment.unwrap();
    assert_eq!((payment.status, payment.amount.amount(), payment.refunded_amount.amount()), (PaymentStatus::Captured, 2500, 0));
}

async fn interrupted_inside_the_provider_after_capture_resumes_to_confirmed(postgres: bool) {
    let Some((status, _, product, payment)) = crash_and_recover(postgres, Crash::InsideProviderAfterCapture).await else { return };
    assert_eq!(status, OrderStatus::Confirmed);
    assert_eq!((product.stock_on_hand, product.stock_reserved), (3, 0));
    assert_eq!(payment.unwrap().status, PaymentStatus::Captured, "payments settled the charge from the provider's record");
}

async fn interrupted_inside_the_provider_before_charge_resumes_to_a_charge(postgres: bool) {
    // Payments' row stayed pending; the resumed saga charges again under the same idempotency
    // key, which the provider had never seen: one capture.
    let Some((status, _, product, payment)) = crash_and_recover(postgres, Crash::InsideProviderBeforeCharge).await else { return };
    assert_eq!(status, OrderStatus::Confirmed);
    assert_eq!((product.stock_on_hand, product.stock_reserved), (3, 0));
    let payment = payment.unwrap();
    assert_eq!((payment.status, payment.failure_reason.as_deref(), payment.refunded_amount.amount()), (PaymentStatus::Captured, None, 0));
}

macro_rules! on_both_databases {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(false).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(true).await;
                }
            )*
        }
    };
}

on_both_databases!(
    a_charge_arriving_after_the_saga_gave_up_captures_nothing,
    interrupted_after_reserve_resumes_to_a_charge,
    interrupted_after_charge_resumes_to_confirmed,
    interrupted_inside_the_provider_after_capture_resumes_to_confirmed,
    interrupted_inside_the_provider_before_charge_resumes_to_a_charge,
);

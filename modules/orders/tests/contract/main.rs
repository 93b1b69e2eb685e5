//! The orders contract suite: one set of assertions, run against the service in process, over
//! the HTTP pair (generated router + client) and over the NATS pair (generated service + client,
//! a real nats-server) on SQLite, and in process on PostgreSQL. Orders runs
//! with the real catalog and payments modules it reaches through their contracts (in process),
//! as Spring Modulith boots a module with its direct dependencies. `saga_recovery` (the saga's
//! component tests: crashes at four points, then a restart) lives beside it in this binary.

mod saga_recovery;

use catalog::{CatalogService, CatalogSettings};
use catalog_contract::{CatalogApi, NewProduct, ProductView};
use cleave_test_support::callers::{TestResolver, admin, customer, rpc_client, serve, user};
use migrations::MigratorTrait as _;
use orders::{CustomerStatusProjection, OrdersService, OrdersSettings};
use orders_contract::{CardNumber, OrderLineInput, OrderRequest, OrderStatus, OrdersApi, PaymentMethod, Placement, http_wire, nats_wire};
use payments::{PaymentsService, SimulatedCardProcessor, SimulatorSettings};
use payments_contract::{PaymentStatus, PaymentsApi};
use shared_kernel::db::{DatabaseTarget, connect_module};
use shared_kernel::events::{EventEnvelope, EventHandler as _};
use shared_kernel::outbox::Outbox;
use shared_kernel::{ApiError, Caller, Currency, Cursor, Money, OrderId, PageRequest, ProductId, Role, SystemClock, UserId};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const GOOD_CARD: &str = "4242424242424242";

struct Harness {
    /// Orders as the suite reaches it: in process or over HTTP.
    api: Arc<dyn OrdersApi>,
    catalog: Arc<dyn CatalogApi>,
    payments: Arc<dyn PaymentsApi>,
    orders_db: sea_orm::DatabaseConnection,
    _temp: Option<tempfile::TempDir>,
    _served: Option<shared_kernel::nats_wire::NatsService>,
}

struct Modules {
    orders: OrdersService,
    catalog: Arc<dyn CatalogApi>,
    payments: Arc<dyn PaymentsApi>,
    orders_db: sea_orm::DatabaseConnection,
}

async fn modules_on(target: DatabaseTarget) -> Modules {
    let open = |name: &'static str| {
        let target = target.clone();
        async move { connect_module(name, &target, 5).await.expect("connect") }
    };
    let catalog_db = open("catalog").await;
    migrations::catalog::Migrator::up(&catalog_db, None).await.expect("migrate catalog");
    let payments_db = open("payments").await;
    migrations::payments::Migrator::up(&payments_db, None).await.expect("migrate payments");
    let orders_db = open("orders").await;
    migrations::orders::Migrator::up(&orders_db, None).await.expect("migrate orders");
    let catalog: Arc<dyn CatalogApi> = Arc::new(CatalogService::new(
        catalog_db,
        Arc::new(SystemClock),
        Outbox::new("catalog"),
        CatalogSettings {
            reservation_ttl: chrono::Duration::minutes(15),
            cache: catalog::cache::CacheSettings { ttl: std::time::Duration::from_secs(5), max_entries: 10_000 },
        },
    ));
    let provider = Arc::new(SimulatedCardProcessor::new(payments_db.clone(), SimulatorSettings::default()));
    let payments: Arc<dyn PaymentsApi> = Arc::new(PaymentsService::new(payments_db, provider));
    let settings = OrdersSettings {
        placement_wait: Duration::from_secs(3),
        step_attempts: 4,
        step_retry_delay: Duration::from_millis(5),
        stale_after: Duration::from_secs(30),
    };
    let orders =
        OrdersService::new(orders_db.clone(), Outbox::new("orders"), catalog.clone(), payments.clone(), Arc::new(SystemClock), settings);
    Modules { orders, catalog, payments, orders_db }
}

impl cleave_test_support::contract::Transports for Harness {
    type Parts = Modules;

    async fn parts_on(target: DatabaseTarget) -> Self::Parts {
        modules_on(target).await
    }

    async fn in_process(modules: Self::Parts, temp: Option<tempfile::TempDir>) -> Self {
        let Modules { orders, catalog, payments, orders_db } = modules;
        Self { api: Arc::new(orders), catalog, payments, orders_db, _temp: temp, _served: None }
    }

    async fn over_http(modules: Self::Parts, temp: Option<tempfile::TempDir>) -> Self {
        let Modules { orders, catalog, payments, orders_db } = modules;
        let base_url = serve(http_wire::router(Arc::new(orders), Arc::new(TestResolver))).await;
        Self { api: Arc::new(http_wire::Client::new(rpc_client(base_url))), catalog, payments, orders_db, _temp: temp, _served: None }
    }

    async fn over_nats(modules: Self::Parts, temp: Option<tempfile::TempDir>) -> Option<Self> {
        use cleave_test_support::nats;
        let Modules { orders, catalog, payments, orders_db } = modules;
        let client = nats::client().await?;
        let prefix = nats::unique_prefix();
        let served = nats_wire::serve(Arc::new(orders), Arc::new(TestResolver), nats::serve_options(&client, &prefix)).await.unwrap();
        let api = Arc::new(nats_wire::Client::new(nats::rpc_client(&client, nats_wire::MODULE, &prefix)));
        Some(Self { api, catalog, payments, orders_db, _temp: temp, _served: Some(served) })
    }
}

impl Harness {
    async fn product(&self, sku: &str, price: i64, on_hand: i64) -> ProductView {
        let input = NewProduct {
            sku: sku.into(),
            name: format!("Product {sku}"),
            description: String::new(),
            price: Money::new(price, Currency::EUR),
            category_id: None,
            stock_on_hand: on_hand,
        };
        self.catalog.create_product(&admin(), input).await.unwrap()
    }

    /// `(on hand, reserved)` of `product` now.
    async fn stock(&self, product: &ProductView) -> (i64, i64) {
        let now = self.catalog.get_product(&Caller::Anonymous, product.id).await.unwrap();
        (now.stock_on_hand, now.stock_reserved)
    }
}

impl Harness {
    /// Places an order as the edge does: the card exchanged with payments for a token (issued
    /// to the caller, or to some customer when the caller is not one, so orders gets to refuse
    /// it), then the order placed with the token.
    async fn place(&self, caller: &Caller, key: String, lines: &[(ProductId, u32)], card: &str) -> Result<Placement, ApiError> {
        let holder = if matches!(caller, Caller::User(_)) { caller.clone() } else { customer() };
        let payment_method = self.payments.tokenize(&holder, CardNumber::parse(card).unwrap()).await?;
        let items = lines.iter().map(|&(product_id, quantity)| OrderLineInput { product_id, quantity }).collect();
        self.api.place_order(caller, key, OrderRequest { items, payment_method }).await
    }
}

fn fields(error: ApiError) -> Vec<String> {
    match error {
        ApiError::Invalid { errors, .. } => errors.into_iter().map(|e| e.field).collect(),
        other => panic!("expected 422, got {other:?}"),
    }
}

fn status<T: std::fmt::Debug>(result: Result<T, ApiError>) -> u16 {
    result.expect_err("expected an error").status()
}

async fn a_good_card_confirms_the_order_charges_it_and_sells_the_stock(h: Harness) {
    let mug = h.product("MUG-1", 1500, 5).await;
    let buyer = customer();
    let placed = h.place(&buyer, "key-1".into(), &[(mug.id, 2)], GOOD_CARD).await.unwrap();
    assert!(!placed.replayed);
    let view = placed.order;
    assert_eq!((view.status, view.total, view.failure_reason.as_deref()), (OrderStatus::Confirmed, Money::new(3000, Currency::EUR), None));
    assert_eq!(view.items.len(), 1);
    let line = &view.items[0];
    assert_eq!((line.quantity, line.unit_price.amount(), line.line_total.amount()), (2, 1500, 3000));
    assert_eq!((line.product_name.as_str(), view.card_last4.as_str()), ("Product MUG-1", "4242"));
    assert_eq!(h.stock(&mug).await, (3, 0), "sold: on hand down, nothing left reserved");
    let payment = h.payments.get_payment(&admin(), view.id).await.unwrap();
    assert_eq!((payment.status, payment.amount.amount()), (PaymentStatus::Captured, 3000));
    assert_eq!(h.api.get_order(&buyer, view.id).await.unwrap(), view, "read back as answered");
    let mine = h.api.list_orders(&buyer, PageRequest::new(Some(10), None).unwrap()).await.unwrap();
    assert_eq!(mine.items, vec![view]);
}

async fn each_test_card_ends_as_the_api_says_and_a_rejection_keeps_nothing(h: Harness) {
    let lamp = h.product("LAMP-1", 2500, 10).await;
    let buyer = customer();
    let cases = [
        ("4000000000000002", "card declined", PaymentStatus::Declined),
        ("4000000000009995", "insufficient funds", PaymentStatus::Declined),
        ("4000000000000119", "the payment could not be completed", PaymentStatus::Failed),
    ];
    for (i, (card, reason, payment_status)) in cases.into_iter().enumerate() {
        let placed = h.place(&buyer, format!("card-{i}"), &[(lamp.id, 1)], card).await.unwrap();
        assert_eq!((placed.order.status, placed.order.failure_reason.as_deref()), (OrderStatus::Rejected, Some(reason)), "{card}");
        let payment = h.payments.get_payment(&admin(), placed.order.id).await.unwrap();
        assert_eq!((payment.status, payment.refunded_amount.amount()), (payment_status, 0), "{card}: nothing captured or refunded");
        assert_eq!(h.stock(&lamp).await, (10, 0), "{card}: nothing kept reserved");
    }
    // Not enough stock: rejected by the catalog's refusal, before any charge.
    let short = h.place(&buyer, "too-many".into(), &[(lamp.id, 11)], GOOD_CARD).await.unwrap();
    assert_eq!(short.order.status, OrderStatus::Rejected);
    assert_eq!(short.order.failure_reason, Some(format!("not enough stock of product {}", lamp.id)));
    assert!(h.payments.get_payments(&admin(), vec![short.order.id]).await.unwrap().is_empty(), "never charged");
    assert_eq!(h.stock(&lamp).await, (10, 0));
}

async fn an_idempotency_key_gives_one_order_sequentially_and_concurrently(h: Harness) {
    let book = h.product("BOOK-1", 900, 10).await;
    let buyer = customer();
    let first = h.place(&buyer, "same".into(), &[(book.id, 1)], GOOD_CARD).await.unwrap();
    let again = h.place(&buyer, "same".into(), &[(book.id, 1)], GOOD_CARD).await.unwrap();
    assert!(again.replayed && !first.replayed);
    assert_eq!(again.order, first.order);
    assert_eq!(status(h.place(&buyer, "same".into(), &[(book.id, 2)], GOOD_CARD).await), 409, "another body");
    let other = h.place(&customer(), "same".into(), &[(book.id, 1)], GOOD_CARD).await.unwrap();
    assert_ne!(other.order.id, first.order.id, "a key is per customer");

    let racer = customer();
    let lines = [(book.id, 1)];
    let attempts = futures::future::join_all((0..6).map(|_| h.place(&racer, "raced".into(), &lines, GOOD_CARD))).await;
    let ids: BTreeSet<OrderId> = attempts.iter().map(|a| a.as_ref().expect("every attempt answers").order.id).collect();
    assert_eq!(ids.len(), 1, "one order for one key");
    assert_eq!(attempts.iter().filter(|a| !a.as_ref().unwrap().replayed).count(), 1, "placed once, replayed otherwise");
    assert_eq!(h.stock(&book).await, (7, 0), "three orders sold three units");
}

async fn cancelling_a_confirmed_order_refunds_and_restocks_once(h: Harness) {
    let pen = h.product("PEN-1", 400, 5).await;
    let buyer = customer();
    let placed = h.place(&buyer, "c-1".into(), &[(pen.id, 2)], GOOD_CARD).await.unwrap().order;
    assert_eq!(status(h.api.cancel_order(&customer(), placed.id).await), 404, "not another customer's to cancel");
    let cancelled = h.api.cancel_order(&buyer, placed.id).await.unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(h.api.cancel_order(&buyer, placed.id).await.unwrap(), cancelled, "cancelling again changes nothing");
    assert_eq!(h.stock(&pen).await, (5, 0), "restocked once");
    let payment = h.payments.get_payment(&admin(), placed.id).await.unwrap();
    assert_eq!((payment.status, payment.refunded_amount.amount()), (PaymentStatus::Refunded, 800), "refunded once, in full");
    let rejected = h.place(&buyer, "c-2".into(), &[(pen.id, 1)], "4000000000000002").await.unwrap().order;
    assert_eq!(status(h.api.cancel_order(&buyer, rejected.id).await), 409, "only a confirmed order can be cancelled");
    let by_admin = h.place(&buyer, "c-3".into(), &[(pen.id, 1)], GOOD_CARD).await.unwrap().order;
    assert_eq!(h.api.cancel_order(&admin(), by_admin.id).await.unwrap().status, OrderStatus::Cancelled, "an admin may cancel");
}

async fn bad_orders_get_clear_errors_and_change_nothing(h: Harness) {
    let cup = h.product("CUP-1", 300, 5).await;
    let buyer = customer();
    let place = async |key: &str, lines: &[(ProductId, u32)]| h.place(&buyer, key.into(), lines, GOOD_CARD).await;
    assert_eq!(fields(place("k", &[]).await.unwrap_err()), ["items"]);
    assert_eq!(
        fields(place("k", &[(cup.id, 0), (cup.id, 1001)]).await.unwrap_err()),
        ["items[0].quantity", "items[1].quantity", "items[1].product_id"]
    );
    assert_eq!(fields(place("k", &[(cup.id, 1), (ProductId::new(), 1)]).await.unwrap_err()), ["items[1].product_id"]);
    assert_eq!(fields(place("", &[(cup.id, 1)]).await.unwrap_err()), ["Idempotency-Key"]);
    assert_eq!(fields(place("with space", &[(cup.id, 1)]).await.unwrap_err()), ["Idempotency-Key"]);
    let anonymous = h.place(&Caller::Anonymous, "k".into(), &[(cup.id, 1)], GOOD_CARD).await;
    assert_eq!(status(anonymous), 401);
    assert!(h.api.list_orders(&buyer, PageRequest::new(Some(10), None).unwrap()).await.unwrap().items.is_empty(), "nothing placed");
    assert_eq!(h.stock(&cup).await, (5, 0), "nothing held");
    assert_eq!(status(h.api.get_order(&buyer, OrderId::new()).await), 404);
    assert_eq!(status(h.api.list_orders(&Caller::Anonymous, PageRequest::new(Some(10), None).unwrap()).await), 401);
}

async fn orders_are_their_owners_and_listed_newest_first_a_page_at_a_time(h: Harness) {
    let tea = h.product("TEA-1", 250, 10).await;
    let owner_id = UserId::new();
    let owner = user(Role::Customer, owner_id);
    let mut placed = Vec::new();
    for i in 0..3 {
        placed.push(h.place(&owner, format!("p-{i}"), &[(tea.id, 1)], GOOD_CARD).await.unwrap().order.id);
    }
    let first = h.api.list_orders(&owner, PageRequest::new(Some(2), None).unwrap()).await.unwrap();
    let second = h.api.list_orders(&owner, PageRequest::new(Some(2), first.next_cursor.clone()).unwrap()).await.unwrap();
    let listed: Vec<OrderId> = first.items.iter().chain(&second.items).map(|o| o.id).collect();
    placed.reverse();
    assert_eq!(listed, placed, "newest first, every order once");
    assert!(second.next_cursor.is_none());
    assert!(h.api.list_orders(&customer(), PageRequest::new(Some(10), None).unwrap()).await.unwrap().items.is_empty());
    assert_eq!(status(h.api.get_order(&customer(), placed[0]).await), 404, "another customer learns nothing");
    assert_eq!(h.api.get_order(&admin(), placed[0]).await.unwrap().customer_id, owner_id, "an admin sees any order");
    let forged = PageRequest::new(Some(2), Some(Cursor::encode("not-an-order-id"))).unwrap();
    assert_eq!(status(h.api.list_orders(&owner, forged).await), 422, "a cursor this API did not issue");
}

async fn a_deactivated_customer_is_refused_from_orders_own_projection(h: Harness) {
    let jam = h.product("JAM-1", 600, 5).await;
    let id = UserId::new();
    let customer = user(Role::Customer, id);
    h.place(&customer, "before".into(), &[(jam.id, 1)], GOOD_CARD).await.unwrap();
    let deactivated = users_contract::events::UserDeactivatedV1 { user_id: id, deactivated_at: chrono::Utc::now() };
    let event = EventEnvelope::wrap(&deactivated, chrono::Utc::now(), None).unwrap();
    CustomerStatusProjection::new(h.orders_db.clone(), Arc::new(SystemClock)).handle(&event).await.unwrap();
    let refused = h.place(&customer, "after".into(), &[(jam.id, 1)], GOOD_CARD).await;
    assert_eq!(status(refused), 403);
    assert_eq!(h.stock(&jam).await, (4, 0), "the refused order held nothing");
}

async fn a_payment_method_pays_for_one_order_of_its_own_customer(h: Harness) {
    let pot = h.product("POT-1", 700, 5).await;
    let buyer = customer();
    let card = || CardNumber::parse(GOOD_CARD).unwrap();
    let method = h.payments.tokenize(&buyer, card()).await.unwrap();
    let request = |payment_method: &PaymentMethod| OrderRequest {
        items: vec![OrderLineInput { product_id: pot.id, quantity: 1 }],
        payment_method: payment_method.clone(),
    };
    let first = h.api.place_order(&buyer, "m-1".into(), request(&method)).await.unwrap().order;
    assert_eq!(first.status, OrderStatus::Confirmed);
    let refused = Some("the payment method is unknown, expired or already used");
    let reused = h.api.place_order(&buyer, "m-2".into(), request(&method)).await.unwrap().order;
    assert_eq!((reused.status, reused.failure_reason.as_deref()), (OrderStatus::Rejected, refused), "a token pays once");
    let strangers = h.payments.tokenize(&customer(), card()).await.unwrap();
    let stolen = h.api.place_order(&buyer, "m-3".into(), request(&strangers)).await.unwrap().order;
    assert_eq!((stolen.status, stolen.failure_reason.as_deref()), (OrderStatus::Rejected, refused), "another customer's token");
    assert_eq!(h.stock(&pot).await, (4, 0), "one sold; nothing held for the refused ones");
    assert!(h.payments.get_payments(&admin(), vec![reused.id, stolen.id]).await.unwrap().is_empty(), "nothing charged for them");
    let mangled = PaymentMethod { card_last4: "42424".into(), ..method };
    assert_eq!(fields(h.api.place_order(&buyer, "m-4".into(), request(&mangled)).await.unwrap_err()), ["payment_method.card_last4"]);
}

cleave_test_support::contract_suite!(Harness:
    a_payment_method_pays_for_one_order_of_its_own_customer,
    a_good_card_confirms_the_order_charges_it_and_sells_the_stock,
    each_test_card_ends_as_the_api_says_and_a_rejection_keeps_nothing,
    an_idempotency_key_gives_one_order_sequentially_and_concurrently,
    cancelling_a_confirmed_order_refunds_and_restocks_once,
    bad_orders_get_clear_errors_and_change_nothing,
    orders_are_their_owners_and_listed_newest_first_a_page_at_a_time,
    a_deactivated_customer_is_refused_from_orders_own_projection,
);

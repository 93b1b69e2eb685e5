//! The catalog contract suite: one set of assertions, run in process, over the HTTP pair
//! (generated router + client) and over the NATS pair (generated service + client, against a
//! real nats-server) on SQLite, and in process on PostgreSQL.

use catalog::{CatalogService, CatalogSettings};
use catalog_contract::{
    CatalogApi, CommitOutcome, NewCategory, NewProduct, ProductPatch, ProductQuery, Reservation, ReservationStatus, ReserveLine,
    ReserveOutcome, RestockOutcome, SetStock, StockRefusal, http_wire, nats_wire,
};
use cleave_test_support::callers::{TestResolver, admin, customer, orders_service};
use migrations::MigratorTrait as _;
use shared_kernel::db::{DatabaseTarget, connect_module};
use shared_kernel::{ApiError, Caller, CategoryId, Currency, ManualClock, Money, OrderId, PageRequest, ProductId};
use std::sync::Arc;

struct Harness {
    api: Arc<dyn CatalogApi>,
    service: CatalogService,
    clock: Arc<ManualClock>,
    _temp: Option<tempfile::TempDir>,
    _served: Option<shared_kernel::nats_wire::NatsService>,
}

async fn service_on(target: DatabaseTarget, clock: Arc<ManualClock>) -> CatalogService {
    let db = connect_module("catalog", &target, 10).await.expect("connect");
    migrations::catalog::Migrator::up(&db, None).await.expect("migrate");
    CatalogService::new(
        db,
        clock,
        shared_kernel::outbox::Outbox::new("catalog"),
        CatalogSettings {
            reservation_ttl: chrono::Duration::minutes(15),
            cache: catalog::cache::CacheSettings { ttl: std::time::Duration::from_secs(5), max_entries: 10_000 },
        },
    )
}

impl cleave_test_support::contract::Transports for Harness {
    type Parts = (CatalogService, Arc<ManualClock>);

    async fn parts_on(target: DatabaseTarget) -> Self::Parts {
        // A database error behind a 500 is logged by the service: shown with a failing test.
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        (service_on(target, clock.clone()).await, clock)
    }

    async fn in_process((service, clock): Self::Parts, temp: Option<tempfile::TempDir>) -> Self {
        Self { api: Arc::new(service.clone()), service, clock, _temp: temp, _served: None }
    }

    async fn over_http((service, clock): Self::Parts, temp: Option<tempfile::TempDir>) -> Self {
        let base_url = cleave_test_support::callers::serve(http_wire::router(Arc::new(service.clone()), Arc::new(TestResolver))).await;
        let client = cleave_test_support::callers::rpc_client(base_url);
        Self { api: Arc::new(http_wire::Client::new(client)), service, clock, _temp: temp, _served: None }
    }

    async fn over_nats((service, clock): Self::Parts, temp: Option<tempfile::TempDir>) -> Option<Self> {
        use cleave_test_support::nats;
        let client = nats::client().await?;
        let prefix = nats::unique_prefix();
        let served =
            nats_wire::serve(Arc::new(service.clone()), Arc::new(TestResolver), nats::serve_options(&client, &prefix)).await.unwrap();
        let api = Arc::new(nats_wire::Client::new(nats::rpc_client(&client, nats_wire::MODULE, &prefix)));
        Some(Self { api, service, clock, _temp: temp, _served: Some(served) })
    }
}

impl Harness {
    async fn product(&self, sku: &str, price: i64, on_hand: i64, category: Option<CategoryId>) -> catalog_contract::ProductView {
        let input = NewProduct {
            sku: sku.into(),
            name: format!("Product {sku}"),
            description: format!("About {sku}"),
            price: Money::new(price, Currency::EUR),
            category_id: category,
            stock_on_hand: on_hand,
        };
        self.api.create_product(&admin(), input).await.unwrap()
    }
}

/// The reservation a reserve answered, failing the test on a refusal.
fn reserved(outcome: Result<ReserveOutcome, ApiError>) -> Reservation {
    match outcome {
        Ok(ReserveOutcome::Reserved { reservation }) => reservation,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

/// The refusal a reserve answered, failing the test on anything else.
fn refusal(outcome: Result<ReserveOutcome, ApiError>) -> StockRefusal {
    match outcome {
        Ok(ReserveOutcome::Refused { refusal }) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn status<T: std::fmt::Debug>(result: Result<T, ApiError>) -> u16 {
    result.expect_err("expected an error").status()
}

fn query(category: Option<CategoryId>, q: Option<&str>, limit: u32) -> ProductQuery {
    ProductQuery { category, q: q.map(str::to_owned), page: PageRequest::new(Some(limit), None).unwrap() }
}

async fn categories_are_admin_made_unique_and_listed_by_name(h: Harness) {
    let books = h.api.create_category(&admin(), NewCategory { name: "Books".into() }).await.unwrap();
    h.api.create_category(&admin(), NewCategory { name: "Art".into() }).await.unwrap();
    assert_eq!(status(h.api.create_category(&admin(), NewCategory { name: "BOOKS".into() }).await), 409);
    assert_eq!(status(h.api.create_category(&customer(), NewCategory { name: "Toys".into() }).await), 403);
    assert_eq!(status(h.api.create_category(&Caller::Anonymous, NewCategory { name: "Toys".into() }).await), 401);
    assert_eq!(status(h.api.create_category(&admin(), NewCategory { name: " ".into() }).await), 422);
    let first = h.api.list_categories(&Caller::Anonymous, PageRequest::new(Some(1), None).unwrap()).await.unwrap();
    assert_eq!(first.items[0].name, "Art");
    let second = h.api.list_categories(&Caller::Anonymous, PageRequest::new(Some(1), first.next_cursor).unwrap()).await.unwrap();
    assert_eq!(second.items, vec![books]);
    assert!(second.next_cursor.is_none());
}

async fn products_are_validated_unique_by_sku_and_found_by_category_and_text(h: Harness) {
    let books = h.api.create_category(&admin(), NewCategory { name: "Books".into() }).await.unwrap();
    let rust = h.product("BK-RUST", 3999, 5, Some(books.id)).await;
    h.product("BK-GO", 2999, 5, Some(books.id)).await;
    h.product("MUG-1", 999, 5, None).await;
    assert_eq!(rust.stock_available, 5);
    assert_eq!(rust.version, 1);
    assert_eq!(rust.price, Money::new(3999, Currency::EUR));
    let duplicate = NewProduct {
        sku: "bk-rust".into(),
        name: "Dup".into(),
        description: String::new(),
        price: Money::new(1, Currency::EUR),
        category_id: None,
        stock_on_hand: 0,
    };
    assert_eq!(status(h.api.create_product(&admin(), duplicate).await), 409);
    let bad = NewProduct {
        sku: "bad sku".into(),
        name: "".into(),
        description: String::new(),
        price: Money::new(-5, Currency::EUR),
        category_id: None,
        stock_on_hand: -1,
    };
    let ApiError::Invalid { errors, .. } = h.api.create_product(&admin(), bad).await.unwrap_err() else { panic!("expected 422") };
    assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["sku", "name", "price", "stock_on_hand"]);
    let orphan = NewProduct {
        sku: "X-1".into(),
        name: "X".into(),
        description: String::new(),
        price: Money::new(1, Currency::EUR),
        category_id: Some(CategoryId::new()),
        stock_on_hand: 0,
    };
    assert_eq!(status(h.api.create_product(&admin(), orphan).await), 422);
    let as_customer = NewProduct {
        sku: "X-2".into(),
        name: "X".into(),
        description: String::new(),
        price: Money::new(1, Currency::EUR),
        category_id: None,
        stock_on_hand: 0,
    };
    assert_eq!(status(h.api.create_product(&customer(), as_customer).await), 403);

    assert_eq!(h.api.get_product(&Caller::Anonymous, rust.id).await.unwrap(), rust);
    assert_eq!(status(h.api.get_product(&Caller::Anonymous, ProductId::new()).await), 404);
    let in_books = h.api.list_products(&Caller::Anonymous, query(Some(books.id), None, 10)).await.unwrap();
    assert_eq!(in_books.items.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>(), ["BK-RUST", "BK-GO"]);
    let found = h.api.list_products(&Caller::Anonymous, query(None, Some("rUsT"), 10)).await.unwrap();
    assert_eq!(found.items.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>(), ["BK-RUST"]);
    assert!(h.api.list_products(&Caller::Anonymous, query(None, Some("%"), 10)).await.unwrap().items.is_empty(), "% is literal");
    let page = h.api.list_products(&Caller::Anonymous, query(None, None, 2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = h
        .api
        .list_products(
            &Caller::Anonymous,
            ProductQuery { category: None, q: None, page: PageRequest::new(Some(2), page.next_cursor).unwrap() },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>(), ["MUG-1"]);
    let batch = h.api.get_products(&orders_service(), vec![rust.id, ProductId::new(), rust.id]).await.unwrap();
    assert_eq!(batch.len(), 1);
}

async fn updates_need_the_current_version(h: Harness) {
    let product = h.product("UPD-1", 1000, 3, None).await;
    let patch = |version, price| ProductPatch {
        version,
        name: Some("Renamed".into()),
        description: None,
        price: Some(Money::new(price, Currency::EUR)),
        category_id: None,
    };
    let updated = h.api.update_product(&admin(), product.id, patch(1, 1500)).await.unwrap();
    assert_eq!((updated.version, updated.name.as_str(), updated.price.amount()), (2, "Renamed", 1500));
    assert_eq!(updated.description, product.description);
    assert_eq!(status(h.api.update_product(&admin(), product.id, patch(1, 1600)).await), 409, "a stale version");
    assert_eq!(status(h.api.update_product(&customer(), product.id, patch(2, 1600)).await), 403);
    assert_eq!(status(h.api.update_product(&admin(), ProductId::new(), patch(1, 1600)).await), 404);
    assert_eq!(status(h.api.update_product(&admin(), product.id, patch(2, -1)).await), 422);
    let category = h.api.create_category(&admin(), NewCategory { name: "Mugs".into() }).await.unwrap();
    let with_category = ProductPatch { version: 2, name: None, description: None, price: None, category_id: Some(Some(category.id)) };
    assert_eq!(h.api.update_product(&admin(), product.id, with_category).await.unwrap().category_id, Some(category.id));
    let without = ProductPatch { version: 3, name: None, description: None, price: None, category_id: Some(None) };
    assert_eq!(h.api.update_product(&admin(), product.id, without).await.unwrap().category_id, None);
}

async fn reservations_are_all_or_nothing_idempotent_and_committed_once(h: Harness) {
    let a = h.product("RES-A", 100, 5, None).await;
    let b = h.product("RES-B", 200, 1, None).await;
    let order = OrderId::new();
    let too_many = vec![ReserveLine { product_id: a.id, quantity: 2 }, ReserveLine { product_id: b.id, quantity: 2 }];
    assert_eq!(refusal(h.api.reserve(&orders_service(), order, too_many).await), StockRefusal::OutOfStock { product_id: b.id });
    assert_eq!(h.api.get_product(&Caller::Anonymous, a.id).await.unwrap().stock_available, 5, "nothing held after a refusal");
    let lines = vec![ReserveLine { product_id: a.id, quantity: 2 }, ReserveLine { product_id: b.id, quantity: 1 }];
    assert_eq!(status(h.api.reserve(&customer(), order, lines.clone()).await), 403);
    let reservation = reserved(h.api.reserve(&orders_service(), order, lines.clone()).await);
    assert_eq!(reservation.status, ReservationStatus::Reserved);
    assert_eq!(reservation.lines.iter().map(|l| l.unit_price.amount()).sum::<i64>(), 300);
    let again = reserved(h.api.reserve(&orders_service(), order, lines.clone()).await);
    assert_eq!(again, reservation, "the same order reserves once");
    let other_lines = vec![ReserveLine { product_id: a.id, quantity: 1 }];
    assert_eq!(
        refusal(h.api.reserve(&orders_service(), order, other_lines).await),
        StockRefusal::OtherLinesReserved,
        "one order, one set of lines"
    );
    let stranger = cleave_test_support::callers::service("payments");
    assert_eq!(status(h.api.reserve(&stranger, OrderId::new(), lines.clone()).await), 403, "only orders holds stock");
    let product_a = h.api.get_product(&Caller::Anonymous, a.id).await.unwrap();
    assert_eq!((product_a.stock_on_hand, product_a.stock_reserved, product_a.stock_available), (5, 2, 3));
    assert_eq!(status(h.api.set_stock(&admin(), a.id, SetStock { on_hand: 1 }).await), 409, "below what is reserved");
    assert_eq!(status(h.api.set_stock(&admin(), a.id, SetStock { on_hand: -3 }).await), 422);
    assert_eq!(h.api.commit(&orders_service(), order).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(h.api.commit(&orders_service(), order).await.unwrap(), CommitOutcome::Committed, "a commit again is the same sale");
    h.api.release(&orders_service(), order).await.unwrap();
    let product_a = h.api.get_product(&Caller::Anonymous, a.id).await.unwrap();
    assert_eq!((product_a.stock_on_hand, product_a.stock_reserved), (3, 0), "committed once; release after commit changes nothing");
    assert_eq!(h.api.commit(&orders_service(), OrderId::new()).await.unwrap(), CommitOutcome::NoReservation);
    h.api.release(&orders_service(), OrderId::new()).await.unwrap();
    let invalid = vec![ReserveLine { product_id: a.id, quantity: 0 }];
    assert_eq!(status(h.api.reserve(&orders_service(), OrderId::new(), invalid).await), 422);
    let duplicate_lines = vec![ReserveLine { product_id: a.id, quantity: 1 }, ReserveLine { product_id: a.id, quantity: 1 }];
    assert_eq!(status(h.api.reserve(&orders_service(), OrderId::new(), duplicate_lines).await), 422);
    let unknown = vec![ReserveLine { product_id: ProductId::new(), quantity: 1 }];
    assert_eq!(refusal(h.api.reserve(&orders_service(), OrderId::new(), unknown).await), StockRefusal::UnknownProduct);
}

async fn committed_stock_of_a_cancelled_order_goes_back_once(h: Harness) {
    let a = h.product("RST-A", 100, 5, None).await;
    let order = OrderId::new();
    reserved(h.api.reserve(&orders_service(), order, vec![ReserveLine { product_id: a.id, quantity: 3 }]).await);
    assert_eq!(h.api.restock(&orders_service(), order).await.unwrap(), RestockOutcome::NotCommitted, "never committed");
    assert_eq!(h.api.commit(&orders_service(), order).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(h.api.get_product(&Caller::Anonymous, a.id).await.unwrap().stock_on_hand, 2);
    assert_eq!(h.api.restock(&orders_service(), order).await.unwrap(), RestockOutcome::Restocked);
    assert_eq!(h.api.restock(&orders_service(), order).await.unwrap(), RestockOutcome::Restocked);
    let after = h.api.get_product(&Caller::Anonymous, a.id).await.unwrap();
    assert_eq!((after.stock_on_hand, after.stock_reserved, after.stock_available), (5, 0, 5), "put back once");
    assert_eq!(h.api.restock(&orders_service(), OrderId::new()).await.unwrap(), RestockOutcome::NoReservation);
    assert_eq!(status(h.api.restock(&customer(), order).await), 403);
}

async fn a_released_reservation_gives_stock_back_and_cannot_be_committed(h: Harness) {
    let a = h.product("REL-A", 100, 4, None).await;
    let order = OrderId::new();
    reserved(h.api.reserve(&orders_service(), order, vec![ReserveLine { product_id: a.id, quantity: 3 }]).await);
    h.api.release(&orders_service(), order).await.unwrap();
    h.api.release(&orders_service(), order).await.unwrap();
    assert_eq!(h.api.get_product(&Caller::Anonymous, a.id).await.unwrap().stock_available, 4);
    assert_eq!(h.api.commit(&orders_service(), order).await.unwrap(), CommitOutcome::Lapsed);
}

async fn concurrent_reserves_for_one_order_hold_stock_once(h: Harness) {
    let a = h.product("ONE-A", 100, 10, None).await;
    let b = h.product("ONE-B", 100, 10, None).await;
    let order = OrderId::new();
    let service = orders_service();
    let attempts = futures::future::join_all((0..8).map(|i| {
        let lines = if i % 2 == 0 {
            vec![ReserveLine { product_id: a.id, quantity: 2 }]
        } else {
            vec![ReserveLine { product_id: b.id, quantity: 3 }]
        };
        h.api.reserve(&service, order, lines)
    }))
    .await;
    assert!(
        attempts.iter().all(|a| matches!(
            a,
            Ok(ReserveOutcome::Reserved { .. } | ReserveOutcome::Refused { refusal: StockRefusal::OtherLinesReserved })
                | Err(ApiError::Unavailable { .. })
        )),
        "{attempts:?}"
    );
    let held = h.api.get_product(&Caller::Anonymous, a.id).await.unwrap().stock_reserved
        + h.api.get_product(&Caller::Anonymous, b.id).await.unwrap().stock_reserved;
    assert!(held == 2 || held == 3, "exactly one of the two line sets is held, not both: {held}");
}

async fn reservations_expire_after_their_ttl(h: Harness) {
    let a = h.product("TTL-A", 100, 2, None).await;
    let order = OrderId::new();
    reserved(h.api.reserve(&orders_service(), order, vec![ReserveLine { product_id: a.id, quantity: 2 }]).await);
    assert_eq!(h.service.expire_reservations().await.unwrap(), 0, "not yet");
    h.clock.advance(chrono::Duration::minutes(16));
    assert_eq!(h.service.expire_reservations().await.unwrap(), 1);
    assert_eq!(h.api.get_product(&Caller::Anonymous, a.id).await.unwrap().stock_available, 2);
    assert_eq!(h.api.commit(&orders_service(), order).await.unwrap(), CommitOutcome::Lapsed, "an expired reservation cannot be committed");
}

async fn one_hundred_twenty_concurrent_buyers_never_oversell_twenty_units(h: Harness) {
    let product = h.product("HOT-1", 500, 20, None).await;
    let attempts = futures::future::join_all((0..120).map(|_| {
        let api = h.api.clone();
        async move { api.reserve(&orders_service(), OrderId::new(), vec![ReserveLine { product_id: product.id, quantity: 1 }]).await }
    }))
    .await;
    let won: Vec<&Reservation> = attempts
        .iter()
        .filter_map(|a| match a {
            Ok(ReserveOutcome::Reserved { reservation }) => Some(reservation),
            _ => None,
        })
        .collect();
    let out_of_stock =
        |a: &&Result<ReserveOutcome, ApiError>| matches!(a, Ok(ReserveOutcome::Refused { refusal: StockRefusal::OutOfStock { .. } }));
    let lost = attempts.iter().filter(out_of_stock).count();
    assert_eq!(
        (won.len(), lost),
        (20, 100),
        "every attempt either won or was refused for stock: {:?}",
        attempts.iter().filter(|a| !out_of_stock(a) && !matches!(a, Ok(ReserveOutcome::Reserved { .. }))).collect::<Vec<_>>()
    );
    let after = h.api.get_product(&Caller::Anonymous, product.id).await.unwrap();
    assert_eq!((after.stock_on_hand, after.stock_reserved, after.stock_available), (20, 20, 0));
    for reservation in won {
        assert_eq!(h.api.commit(&orders_service(), reservation.order_id).await.unwrap(), CommitOutcome::Committed);
    }
    let sold_out = h.api.get_product(&Caller::Anonymous, product.id).await.unwrap();
    assert_eq!((sold_out.stock_on_hand, sold_out.stock_reserved, sold_out.stock_available), (0, 0, 0));
}

cleave_test_support::contract_suite!(Harness:
    categories_are_admin_made_unique_and_listed_by_name,
    products_are_validated_unique_by_sku_and_found_by_category_and_text,
    updates_need_the_current_version,
    reservations_are_all_or_nothing_idempotent_and_committed_once,
    a_released_reservation_gives_stock_back_and_cannot_be_committed,
    reservations_expire_after_their_ttl,
    concurrent_reserves_for_one_order_hold_stock_once,
    committed_stock_of_a_cancelled_order_goes_back_once,
    one_hundred_twenty_concurrent_buyers_never_oversell_twenty_units,
);

/// The service alone on SQLite files of its own (kept as long as the directory).
async fn on_sqlite() -> (CatalogService, tempfile::TempDir) {
    let temp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    (service_on(DatabaseTarget::SqliteDir(temp.path().to_owned()), clock).await, temp)
}

/// A harness on SQLite with a product `sku`, and a raw connection to the same database, for
/// tests that corrupt a row behind the module's back.
async fn with_raw_database(sku: &str) -> (Harness, catalog_contract::ProductView, sea_orm::DatabaseConnection) {
    let temp = tempfile::tempdir().unwrap();
    let target = DatabaseTarget::SqliteDir(temp.path().to_owned());
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let parts = (service_on(target.clone(), clock.clone()).await, clock);
    let h = <Harness as cleave_test_support::contract::Transports>::in_process(parts, Some(temp)).await;
    let product = h.product(sku, 100, 5, None).await;
    let db = connect_module("catalog", &target, 1).await.unwrap();
    (h, product, db)
}

/// A stored reservation status the code does not know is an error naming the order, never read
/// as some other status (it used to become `released`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_with_an_unknown_stored_status_is_an_error_not_a_guess() {
    use sea_orm::ConnectionTrait as _;
    let (h, product, db) = with_raw_database("ODD-1").await;
    let order = OrderId::new();
    let lines = vec![ReserveLine { product_id: product.id, quantity: 1 }];
    reserved(h.api.reserve(&orders_service(), order, lines.clone()).await);
    db.execute_unprepared("UPDATE reservations SET status = 'misplaced'").await.unwrap();
    assert_eq!(status(h.api.reserve(&orders_service(), order, lines).await), 500);
    assert_eq!(status(h.api.commit(&orders_service(), order).await), 500);
}

/// A stored price whose currency the code does not know is an error naming the product, never
/// read as euros (it used to be).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_with_an_unknown_stored_currency_is_an_error_not_euros() {
    use sea_orm::ConnectionTrait as _;
    let (h, product, db) = with_raw_database("ODD-2").await;
    db.execute_unprepared("UPDATE products SET price_currency = 'ZZZ'").await.unwrap();
    assert_eq!(status(h.api.get_products(&orders_service(), vec![product.id]).await), 500);
    assert_eq!(status(h.api.list_products(&Caller::Anonymous, query(None, None, 10)).await), 500);
}

/// The NATS wire's own promises, shown on the catalog's contract: the standard micro-service
/// protocol, a shared queue group, "no responders" at once, and the service token.
mod nats_wire_behaviour {
    use super::*;
    use cleave_test_support::nats;
    use futures::StreamExt as _;
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    /// Every reply to `subject` within `wait` (the micro protocol's discovery answers from every
    /// instance).
    async fn gather(client: &async_nats::Client, subject: &str, wait: Duration) -> Vec<serde_json::Value> {
        let inbox = client.new_inbox();
        let mut replies = client.subscribe(inbox.clone()).await.unwrap();
        client.publish_with_reply(subject.to_owned(), inbox, "".into()).await.unwrap();
        client.flush().await.unwrap();
        let mut found = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await {
            found.push(serde_json::from_slice(&message.payload).unwrap());
        }
        found
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_service_answers_the_micro_protocol_and_two_instances_share_the_calls() {
        let Some(client) = nats::client().await else { return };
        let prefix = nats::unique_prefix();
        let (service, _temp) = super::on_sqlite().await;
        let api: Arc<dyn CatalogApi> = Arc::new(service);
        let first = nats_wire::serve(api.clone(), Arc::new(TestResolver), nats::serve_options(&client, &prefix)).await.unwrap();
        let second = nats_wire::serve(api.clone(), Arc::new(TestResolver), nats::serve_options(&client, &prefix)).await.unwrap();
        let remote = nats_wire::Client::new(nats::rpc_client(&client, nats_wire::MODULE, &prefix));
        for _ in 0..40 {
            remote.list_categories(&Caller::Anonymous, PageRequest::default()).await.unwrap();
        }
        let pings = gather(&client, "$SRV.PING.catalog", Duration::from_millis(500)).await;
        assert!(pings.len() >= 2, "both instances answer PING: {pings:?}");
        assert!(pings.iter().all(|ping| ping["name"] == "catalog" && ping["version"] == "0.1.0"), "{pings:?}");
        let infos = gather(&client, "$SRV.INFO.catalog", Duration::from_millis(500)).await;
        let ours: Vec<_> = infos
            .iter()
            .filter(|info| info["endpoints"][0]["subject"].as_str().is_some_and(|subject| subject.starts_with(&prefix)))
            .collect();
        assert_eq!(ours.len(), 2, "{infos:?}");
        let subjects: BTreeSet<&str> = ours[0]["endpoints"].as_array().unwrap().iter().map(|e| e["subject"].as_str().unwrap()).collect();
        assert_eq!(subjects.len(), nats_wire::OPERATIONS.len(), "one endpoint per operation");
        assert!(subjects.contains(format!("{prefix}.rpc.catalog.get_product").as_str()), "{subjects:?}");
        assert!(ours.iter().all(|info| info["endpoints"][0]["queue_group"] == "q"), "one queue group for every instance");
        let stats = gather(&client, "$SRV.STATS.catalog", Duration::from_millis(500)).await;
        let served: Vec<u64> = stats
            .iter()
            .filter(|s| s["endpoints"][0]["subject"].as_str().is_some_and(|subject| subject.starts_with(&prefix)))
            .map(|s| {
                s["endpoints"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["name"] == "list_categories")
                    .map(|e| e["num_requests"].as_u64().unwrap())
                    .sum()
            })
            .collect();
        assert_eq!(served.iter().sum::<u64>(), 40, "{stats:?}");
        assert!(served.len() == 2 && served.iter().all(|&n| n > 0), "both instances took calls: {served:?}");
        drop((first, second));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_module_nobody_serves_is_unavailable_at_once_not_after_the_timeout() {
        let Some(client) = nats::client().await else { return };
        let nobody = nats_wire::Client::new(shared_kernel::nats_wire::NatsClient::new(
            client.clone(),
            nats_wire::MODULE,
            nats::unique_prefix(),
            cleave_test_support::callers::upstream("catalog"),
            None,
        ));
        let started = Instant::now();
        let error = nobody.get_product(&Caller::Anonymous, ProductId::new()).await.unwrap_err();
        assert_eq!((error.status(), error.retry_after_secs()), (503, Some(1)), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "answered at once, not after the 30 s timeout: {:?}", started.elapsed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_a_service_token_every_call_must_carry_it() {
        let Some(client) = nats::client().await else { return };
        let prefix = nats::unique_prefix();
        let (service, _temp) = super::on_sqlite().await;
        let token = shared_kernel::Secret::new("wire-secret".to_owned());
        let options =
            shared_kernel::nats_wire::ServeOptions { service_token: Some(token.clone()), ..nats::serve_options(&client, &prefix) };
        let _served = nats_wire::serve(Arc::new(service), Arc::new(TestResolver), options).await.unwrap();
        let call = |token: Option<shared_kernel::Secret<String>>| {
            let client = client.clone();
            let prefix = prefix.clone();
            async move {
                let nats = shared_kernel::nats_wire::NatsClient::new(
                    client,
                    nats_wire::MODULE,
                    prefix,
                    cleave_test_support::callers::upstream("catalog"),
                    token,
                );
                nats_wire::Client::new(nats).list_categories(&Caller::Anonymous, PageRequest::default()).await
            }
        };
        assert!(call(Some(token.clone())).await.is_ok());
        assert_eq!(status(call(None).await), 500, "a process without the token is a deployment error, not its caller's");
        assert_eq!(status(call(Some(shared_kernel::Secret::new("wrong".into()))).await), 500);
    }
}

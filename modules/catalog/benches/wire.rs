//! One contract call, `get_product`, in process, over the HTTP wire and over the NATS wire, in
//! one run on one machine. Run: `cargo bench -p catalog --bench wire` (NATS from `NATS_URL`,
//! else a throwaway `nats-server`).
//!
//! Each transport: 32 concurrent callers for 5 s after a 1 s warm-up, server and client in this
//! one process (the same for both wires), the product served from the catalog's cache, so what
//! is measured is the call itself. Reported: calls/s, p50 and p99 latency.

use catalog::{CatalogService, CatalogSettings};
use catalog_contract::{CatalogApi, NewProduct, http_wire, nats_wire};
use cleave_test_support::bench::{Figures, closed_loop};
use cleave_test_support::callers::{TestResolver, admin, rpc_client, serve};
use cleave_test_support::nats;
use migrations::MigratorTrait as _;
use shared_kernel::db::{DatabaseTarget, connect_module};
use shared_kernel::{Caller, Currency, Money, ProductId, SystemClock};
use std::sync::Arc;
use std::time::Duration;

const CALLERS: usize = 32;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

/// `callers` concurrent callers of `get_product` on `api`, closed loop.
async fn measure(api: Arc<dyn CatalogApi>, id: ProductId, callers: usize) -> Figures {
    closed_loop(callers, WARM_UP, MEASURE, move || {
        let api = api.clone();
        async move {
            api.get_product(&Caller::Anonymous, id).await.expect("the product answers");
        }
    })
    .await
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let temp = tempfile::tempdir().unwrap();
        let db = connect_module("catalog", &DatabaseTarget::SqliteDir(temp.path().to_owned()), 10).await.unwrap();
        migrations::catalog::Migrator::up(&db, None).await.unwrap();
        let service = CatalogService::new(
            db,
            Arc::new(SystemClock),
            shared_kernel::outbox::Outbox::new("catalog"),
            CatalogSettings {
                reservation_ttl: chrono::Duration::minutes(15),
                cache: catalog::cache::CacheSettings { ttl: std::time::Duration::from_secs(5), max_entries: 10_000 },
            },
        );
        let product = service
            .create_product(
                &admin(),
                NewProduct {
                    sku: "BENCH-1".into(),
                    name: "A product".into(),
                    description: "Measured".into(),
                    price: Money::new(1999, Currency::EUR),
                    category_id: None,
                    stock_on_hand: 10,
                },
            )
            .await
            .unwrap();
        let local: Arc<dyn CatalogApi> = Arc::new(service.clone());
        let base_url = serve(http_wire::router(Arc::new(service.clone()), Arc::new(TestResolver))).await;
        let over_http: Arc<dyn CatalogApi> = Arc::new(http_wire::Client::new(rpc_client(base_url)));
        let client = nats::client().await.expect("a NATS server (NATS_URL, or nats-server installed)");
        let prefix = nats::unique_prefix();
        let _served = nats_wire::serve(Arc::new(service), Arc::new(TestResolver), nats::serve_options(&client, &prefix)).await.unwrap();
        let over_nats: Arc<dyn CatalogApi> = Arc::new(nats_wire::Client::new(nats::rpc_client(&client, nats_wire::MODULE, &prefix)));

        println!("get_product, {CALLERS} concurrent callers, {} s each", MEASURE.as_secs());
        println!("{:<12} {:>12} {:>10} {:>10}", "transport", "calls/s", "p50 µs", "p99 µs");
        let mut p50 = Vec::new();
        for (name, api) in [("in process", local), ("HTTP wire", over_http), ("NATS wire", over_nats)] {
            let figures = measure(api, product.id, CALLERS).await;
            println!("{name:<12} {:>12.0} {:>10.1} {:>10.1}", figures.calls_per_sec, figures.p50_us, figures.p99_us);
            p50.push(figures.p50_us);
        }
        println!("NATS p50 / HTTP p50 = {:.2}", p50[2] / p50[1]);
    });
}

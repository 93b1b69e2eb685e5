//! One contract call, `get_product`, in process, over the HTTP wire and over the NATS wire, in
//! one run on one machine. Run: `cargo bench -p catalog --bench wire` (NATS from `NATS_URL`,
//! else a throwaway `nats-server`).
//!
//! Each transport: 32 concurrent callers for 5 s after a 1 s warm-up, server and client in this
//! one process (the same for both wires), the product served from the catalog's cache, so what
//! is measured is the call itself. Reported: calls/s, p50 and p99 latency.

use catalog::{CatalogService, CatalogSettings};
use catalog_contract::{CatalogApi, NewProduct, http_wire, nats_wire};
use cleave_test_support::callers::{TestResolver, admin, rpc_client, serve};
use cleave_test_support::nats;
use migrations::MigratorTrait as _;
use shared_kernel::db::{DatabaseTarget, connect_module};
use shared_kernel::{Caller, Currency, Money, ProductId, SystemClock};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CALLERS: usize = 32;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

struct Figures {
    calls_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

async fn measure(api: Arc<dyn CatalogApi>, id: ProductId) -> Figures {
    let run = |until: Instant, record: bool| {
        let api = api.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let started = Instant::now();
                api.get_product(&Caller::Anonymous, id).await.expect("the product answers");
                if record {
                    latencies.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
                }
            }
            latencies
        })
    };
    let warm_until = Instant::now() + WARM_UP;
    for task in (0..CALLERS).map(|_| run(warm_until, false)).collect::<Vec<_>>() {
        task.await.unwrap();
    }
    let started = Instant::now();
    let until = started + MEASURE;
    let mut latencies = Vec::new();
    for task in (0..CALLERS).map(|_| run(until, true)).collect::<Vec<_>>() {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)] as f64 / 1000.0;
    Figures { calls_per_sec: latencies.len() as f64 / elapsed, p50_us: at(0.50), p99_us: at(0.99) }
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
            let figures = measure(api, product.id).await;
            println!("{name:<12} {:>12.0} {:>10.1} {:>10.1}", figures.calls_per_sec, figures.p50_us, figures.p99_us);
            p50.push(figures.p50_us);
        }
        println!("NATS p50 / HTTP p50 = {:.2}", p50[2] / p50[1]);
    });
}

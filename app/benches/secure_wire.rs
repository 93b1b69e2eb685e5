//! What the zero-trust wire costs: one contract call, `get_product`, over NATS as it was (no
//! TLS, no broker user, no assertion) against NATS as `cleave trust init` sets it up (TLS with
//! client certificates, an nkey user per process kind with its permissions, every call signed
//! by the caller and checked by the callee: signature, operation, body digest, expiry, replay).
//! Run: `cargo bench -p cleave --bench secure_wire` (needs the `nats-server` binary).
//!
//! Each: 32 concurrent callers for 5 s after a 1 s warm-up, then one caller the same way (the
//! latency a call pays when the machine is not saturated), the catalog served from its cache
//! so that the call itself is what is measured; server and client in this one process, each
//! broker a `nats-server` of its own on this machine. Reported: calls/s, p50 and p99.

use catalog::{CatalogService, CatalogSettings};
use catalog_contract::{CatalogApi, NewProduct, nats_wire};
use cleave_test_support::bench::{Figures, closed_loop};
use cleave_test_support::callers::{TestResolver, admin, upstream};
use cleave_test_support::nats::OwnNatsServer;
use migrations::MigratorTrait as _;
use shared_kernel::db::{DatabaseTarget, connect_module};
use shared_kernel::identity::{ServiceIdentity, TrustedProcesses, WireGate};
use shared_kernel::nats_wire::{NatsClient, NatsOptions, ServeOptions};
use shared_kernel::{Caller, Currency, Money, ProductId, ServiceName, SystemClock};
use std::collections::BTreeMap;
use std::path::Path;
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

/// A connection to `url` as process kind `kind` of the deployment in `trust`.
async fn connect_as(trust: &Path, kind: &str, url: String) -> async_nats::Client {
    shared_kernel::nats_wire::connect(&NatsOptions {
        urls: vec![url],
        nkey_seed_file: Some(trust.join(format!("{kind}.nk"))),
        inbox_prefix: Some(cleave::trust::broker::inbox_prefix(kind)),
        tls_ca_file: Some(trust.join("ca.pem")),
        tls_client: Some((trust.join(format!("{kind}.crt")), trust.join(format!("{kind}.key")))),
        name: kind.to_owned(),
        ..NatsOptions::default()
    })
    .await
    .expect("the secured broker admits the process kind")
}

fn identity(trust: &Path, kind: &str) -> ServiceIdentity {
    ServiceIdentity::from_seed(kind, &std::fs::read_to_string(trust.join(format!("{kind}.nk"))).unwrap()).unwrap()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let temp = tempfile::tempdir().unwrap();
        let trust = temp.path().join("trust");
        cleave::trust::init(&trust, &cleave::trust::InitOptions::default()).unwrap();
        let db = connect_module("catalog", &DatabaseTarget::SqliteDir(temp.path().to_owned()), 10).await.unwrap();
        migrations::catalog::Migrator::up(&db, None).await.unwrap();
        let service = CatalogService::new(
            db,
            Arc::new(SystemClock),
            shared_kernel::outbox::Outbox::new("catalog"),
            CatalogSettings {
                reservation_ttl: chrono::Duration::minutes(15),
                cache: catalog::cache::CacheSettings { ttl: Duration::from_secs(5), max_entries: 10_000 },
            },
        );
        let new = NewProduct {
            sku: "BENCH-1".into(),
            name: "A product".into(),
            description: "Measured".into(),
            price: Money::new(1999, Currency::EUR),
            category_id: None,
            stock_on_hand: 10,
        };
        let product = service.create_product(&admin(), new).await.unwrap();

        // Each variant on a broker of its own: as it was (a broker anyone may use, no
        // assertion), the signed assertions alone, the secured broker alone (TLS with client
        // certificates, nkey users with their permissions), and both, as `cleave trust init`
        // sets a deployment up.
        let gateway = Arc::new(identity(&trust, "gateway"));
        let keys = BTreeMap::from([("gateway".to_owned(), vec![gateway.public_key()])]);
        let gate = || {
            let speaks_as = BTreeMap::from([("gateway".to_owned(), vec![ServiceName::EDGE])]);
            Arc::new(WireGate::new(TrustedProcesses::new(&keys).unwrap(), speaks_as))
        };
        let mut brokers = Vec::new();
        let mut variants: Vec<(&str, Arc<dyn CatalogApi>)> = Vec::new();
        for (name, secured_broker, signed) in
            [("plain", false, false), ("assertions", false, true), ("TLS + nkey", true, false), ("TLS + nkey + assertions", true, true)]
        {
            let broker = if secured_broker { OwnNatsServer::start_with(Some(&trust.join("nats.conf"))) } else { OwnNatsServer::start() }
                .expect("nats-server is installed");
            let (serving, calling) = if secured_broker {
                (connect_as(&trust, "catalog", broker.url()).await, connect_as(&trust, "gateway", broker.url()).await)
            } else {
                (async_nats::connect(broker.url()).await.unwrap(), async_nats::connect(broker.url()).await.unwrap())
            };
            let options = ServeOptions {
                client: serving,
                subject_prefix: "cleave".into(),
                service_token: None,
                max_in_flight: 256,
                gate: signed.then(gate),
            };
            let served = nats_wire::serve(Arc::new(service.clone()), Arc::new(TestResolver), options).await.unwrap();
            let client = NatsClient::new(calling, nats_wire::MODULE, "cleave", upstream("catalog"), None)
                .with_identity(signed.then(|| gateway.clone()));
            variants.push((name, Arc::new(nats_wire::Client::new(client))));
            brokers.push((broker, served));
        }

        println!("get_product over NATS, {} s each: {CALLERS} concurrent callers, then one caller", MEASURE.as_secs());
        println!("{:<26} {:>10} {:>9} {:>9} {:>14} {:>14}", "wire", "calls/s", "p50 µs", "p99 µs", "1 caller: p50", "calls/s");
        let mut figures = Vec::new();
        for (name, api) in variants {
            let loaded = measure(api.clone(), product.id, CALLERS).await;
            let alone = measure(api, product.id, 1).await;
            println!(
                "{name:<26} {:>10.0} {:>9.1} {:>9.1} {:>14.1} {:>14.0}",
                loaded.calls_per_sec, loaded.p50_us, loaded.p99_us, alone.p50_us, alone.calls_per_sec
            );
            figures.push((loaded, alone));
        }
        let (plain, secured) = (figures[0], figures[figures.len() - 1]);
        println!(
            "secured / plain: {CALLERS} callers p50 {:.2}×, throughput {:.0} %; one caller p50 {:.2}× (+{:.0} µs)",
            secured.0.p50_us / plain.0.p50_us,
            100.0 * secured.0.calls_per_sec / plain.0.calls_per_sec,
            secured.1.p50_us / plain.1.p50_us,
            secured.1.p50_us - plain.1.p50_us
        );
    });
}

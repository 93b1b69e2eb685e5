//! The catalog module in the composition.

pub mod settings;
use crate::composition::{HostFn, ModuleInfo, ModuleSpec};
use catalog_contract::CatalogApi;
use shared_kernel::Caller;
use std::sync::Arc;

pub mod graphql;
pub mod rest;

/// Its contract.
pub type Api = dyn catalog_contract::CatalogApi;

/// The JSON Schemas of the events it publishes.
pub fn event_schemas() -> Vec<(&'static str, serde_json::Value)> {
    catalog_contract::events::schemas()
}

/// An example of each event it publishes.
#[cfg(test)]
pub(crate) fn event_samples() -> Vec<(&'static str, serde_json::Value)> {
    use super::sample;
    use chrono::Utc;
    let product = shared_kernel::ProductId::new();
    vec![
        sample(catalog_contract::events::ProductChangedV1 {
            product_id: product,
            sku: "S".into(),
            name: "N".into(),
            price: shared_kernel::Money::new(1999, shared_kernel::money::Currency::EUR),
            version: 1,
            changed_at: Utc::now(),
        }),
        sample(catalog_contract::events::StockChangedV1 {
            product_ids: vec![product],
            change: catalog_contract::events::StockChange::Reserved,
            order_id: Some(shared_kernel::OrderId::new()),
            changed_at: Utc::now(),
        }),
        sample(catalog_contract::events::StockChangedV1 {
            product_ids: vec![],
            change: catalog_contract::events::StockChange::Set,
            order_id: None,
            changed_at: Utc::now(),
        }),
        sample(catalog_contract::events::CategoryCreatedV1 {
            category_id: shared_kernel::CategoryId::new(),
            name: "C".into(),
            created_at: Utc::now(),
        }),
    ]
}

/// The help text of its own metrics.
pub(crate) fn describe_metrics() {
    metrics::describe_counter!(
        "cache_lookups_total",
        "Read-cache look-ups, by cache, level (in_process, redis) and result (hit, miss, error, skipped)."
    );
}

pub(crate) fn spec() -> ModuleSpec<dyn CatalogApi> {
    ModuleSpec {
        name: "catalog",
        dead_letters: "catalog_dead_letters",
        settings: |modules| &modules.catalog,
        http_client: |rpc| Arc::new(catalog_contract::http_wire::Client::new(rpc)),
        nats_client: |nats| Arc::new(catalog_contract::nats_wire::Client::new(nats)),
        not_deployed: || Arc::new(catalog_contract::not_deployed::NotDeployed),
        metered: |api| Arc::new(catalog_contract::metered::Metered::new(api)),
        http_router: catalog_contract::http_wire::router,
        serve_nats: |api, resolver, options| Box::pin(catalog_contract::nats_wire::serve(api, resolver, options)),
        probe: |api| Box::pin(async move { api.list_categories(&Caller::Anonymous, shared_kernel::PageRequest::default()).await.is_ok() }),
        host: host(),
    }
}

/// How to host the module here, when its implementation is compiled in (the `catalog-local`
/// feature).
fn host() -> Option<HostFn<dyn CatalogApi>> {
    let mut compiled = Vec::<HostFn<dyn CatalogApi>>::new();
    #[cfg(feature = "catalog-local")]
    compiled.push(|ctx| Box::pin(local(ctx)));
    compiled.pop()
}

pub(crate) fn info() -> ModuleInfo {
    ModuleInfo {
        name: "catalog",
        compiled_local: cfg!(feature = "catalog-local"),
        settings: |modules| &modules.catalog,
        own_url: |database| database.catalog_url.as_ref(),
        migrate: crate::composition::migrator::<migrations::catalog::Migrator>,
    }
}

#[cfg(feature = "catalog-local")]
async fn local(ctx: &mut crate::composition::Context) -> anyhow::Result<Arc<dyn CatalogApi>> {
    let settings = &ctx.settings;
    let db = crate::composition::open_database::<migrations::catalog::Migrator>(settings, "catalog", settings.database.catalog_url.as_ref()).await?;
    let outbox = shared_kernel::outbox::Outbox::new("catalog").with_clock(ctx.clock.clone());
    if settings.catalog.product_cache_ttl_ms.is_some() {
        tracing::warn!("catalog.product_cache_ttl_ms is deprecated: it is taken as cache.ttl_ms; rename it");
    }
    let cache = catalog::cache::CacheSettings { ttl: settings.cache_ttl(), max_entries: settings.cache.max_entries };
    let catalog_settings = catalog::CatalogSettings {
        reservation_ttl: chrono::Duration::seconds(i64::try_from(settings.catalog.reservation_ttl_secs).unwrap_or(i64::MAX)),
        cache,
    };
    let every = std::time::Duration::from_secs(settings.catalog.reservation_sweep_secs.max(1));
    let mut service = catalog::CatalogService::new(db.clone(), ctx.clock.clone(), outbox.clone(), catalog_settings);
    if let Some(url) = &settings.cache.redis_url {
        let redis = catalog::cache::RedisCacheSettings {
            url: url.expose().clone(),
            key_prefix: settings.cache.key_prefix.clone(),
            timeout: std::time::Duration::from_millis(settings.cache.redis_timeout_ms),
        };
        let shared = catalog::cache::RedisCache::new(&redis, cache).map_err(|error| anyhow::anyhow!(error))?;
        service = service.with_cache(Arc::new(shared));
    }
    let store = service.cache();
    tracing::info!(cache = store.kind(), ttl_ms = cache.ttl.as_millis(), "the catalog's read cache");
    // Optional: reads fall back to the database when the shared cache is away.
    ctx.optional_check("catalog.cache", move || {
        let store = store.clone();
        Box::pin(async move { store.healthy().await })
    });
    let dead_letters = Arc::new(shared_kernel::outbox::DeadLetterStore::new(db.clone(), "catalog").with_clock(ctx.clock.clone()));
    ctx.subscribe(service.sales_counter().consumer(dead_letters)).await?;
    ctx.subscribe(service.cache_invalidator().consumer()).await?;
    let service = Arc::new(service);
    let probe = service.clone();
    ctx.host("catalog", crate::composition::Hosted { database: db, outbox }, move || {
        let probe = probe.clone();
        Box::pin(async move { probe.ping().await })
    })
    .await?;
    let sweeper = service.clone();
    ctx.background(Box::new(move |stop| Box::pin(sweep_expired_reservations(sweeper, every, stop))));
    Ok(service)
}

#[cfg(feature = "catalog-local")]
async fn sweep_expired_reservations(
    catalog: Arc<catalog::CatalogService>,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if let Err(error) = catalog.expire_reservations().await {
            tracing::warn!(%error, "releasing expired reservations failed; will retry");
        }
    }
}

//! Which adapter each module gets: its implementation in this process (`local`) or a client of
//! its contract (`remote`). Features decide what is compiled in; configuration picks among
//! what is; asking for something not compiled in stops start-up with a clear error.

use crate::config::{ModuleMode, ModuleSettings, Settings};
use anyhow::Context as _;
use axum::Router;
use catalog_contract::CatalogApi;
use futures::future::BoxFuture;
use orders_contract::OrdersApi;
use payments_contract::PaymentsApi;
use shared_kernel::auth::{KeySource, TokenPolicy, TokenVerifier};
use shared_kernel::events::{EventBus, InProcessBus};
use shared_kernel::outbox::DeadLetterStore;
use shared_kernel::wire::{CallerResolver, TokenCallerResolver};
use shared_kernel::{ApiError, Caller};
use std::sync::Arc;
use tokio::sync::watch;
use users_contract::UsersApi;

/// A readiness check: a name (`users.database`, `users.remote`) and a probe.
#[derive(Clone)]
pub struct ReadinessCheck {
    pub name: String,
    pub probe: Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>,
}

/// Work that runs beside the servers until told to stop (outbox relays, reservation sweeps).
pub type BackgroundTask = Box<dyn FnOnce(watch::Receiver<bool>) -> BoxFuture<'static, ()> + Send>;

/// The modules as this process reaches them.
pub struct Composition {
    pub users: Arc<dyn UsersApi>,
    pub catalog: Arc<dyn CatalogApi>,
    pub payments: Arc<dyn PaymentsApi>,
    pub orders: Arc<dyn OrdersApi>,
    /// The event bus of this process (in-process adapter).
    pub bus: Arc<dyn EventBus>,
    /// Order status changes seen on this bus, for GraphQL subscriptions.
    pub order_status_feed: crate::graphql::OrderStatusFeed,
    /// The dead letters of the consumers of every module hosted here.
    pub dead_letters: Vec<DeadLetterStore>,
    /// Started by `Application::run_until`, stopped after the servers drain.
    pub background: Vec<BackgroundTask>,
    pub resolver: Arc<dyn CallerResolver>,
    pub readiness: Vec<ReadinessCheck>,
    /// The wire routes (`/rpc/<module>/…`) of the modules hosted here, for the internal listener.
    pub internal_routes: Router,
    /// Names of the modules hosted here, for the start-up banner and `/health/ready`.
    pub local_modules: Vec<&'static str>,
    #[cfg(feature = "users-local")]
    pub users_local: Option<Arc<users::UsersService>>,
    #[cfg(feature = "catalog-local")]
    pub catalog_local: Option<Arc<catalog::CatalogService>>,
    #[cfg(feature = "orders-local")]
    pub orders_local: Option<Arc<orders::OrdersService>>,
}

/// The mode module `name` runs in, or why it cannot.
///
/// # Errors
/// A mode this binary was not built with.
pub fn mode_of(name: &str, module: &ModuleSettings, compiled_local: bool, compiled_remote: bool) -> anyhow::Result<ModuleMode> {
    if module.mode.is_none() && compiled_local && module.url.is_some() {
        tracing::warn!(
            "modules.{name}.url is set but {name} is compiled in and runs locally; set modules.{name}.mode = \"remote\" to use the URL"
        );
    }
    let mode = module.mode.unwrap_or(if compiled_local {
        ModuleMode::Local
    } else if compiled_remote && module.url.is_some() {
        ModuleMode::Remote
    } else {
        ModuleMode::NotDeployed
    });
    match mode {
        ModuleMode::Local if !compiled_local => {
            anyhow::bail!("modules.{name}.mode is `local` but this binary was built without the `{name}-local` feature")
        }
        ModuleMode::Remote if !compiled_remote => {
            anyhow::bail!("modules.{name}.mode is `remote` but this binary was built without the `{name}-remote` feature")
        }
        mode => Ok(mode),
    }
}

/// What composing one local module adds to the process.
struct Hosted {
    database: sea_orm::DatabaseConnection,
    outbox: shared_kernel::outbox::Outbox,
}

/// Builds every module's adapter as configured.
///
/// # Errors
/// A database that cannot be reached or migrated, unreadable keys, a module configured in a
/// mode this binary was not built with, a remote module without a URL.
pub async fn compose(settings: &Settings) -> anyhow::Result<Composition> {
    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new(settings.events.retry_policy()));
    let mut parts = Parts { readiness: Vec::new(), local_modules: Vec::new(), dead_letters: Vec::new(), background: Vec::new() };

    let users_mode = mode_of("users", &settings.modules.users, cfg!(feature = "users-local"), cfg!(feature = "users-remote"))?;
    #[cfg(feature = "users-local")]
    let mut users_local = None;
    let users: Arc<dyn UsersApi> = match users_mode {
        ModuleMode::Local => {
            #[cfg(feature = "users-local")]
            {
                let (service, hosted) = local_users(settings).await?;
                let service = Arc::new(service);
                let probe = service.clone();
                parts.host("users", hosted, &bus, settings, move || {
                    let probe = probe.clone();
                    Box::pin(async move { probe.ping().await })
                });
                users_local = Some(service.clone());
                service
            }
            #[cfg(not(feature = "users-local"))]
            unreachable!("mode_of refuses local mode without the feature")
        }
        ModuleMode::Remote => {
            let client: Arc<dyn UsersApi> =
                Arc::new(users_contract::http_wire::Client::new(remote_client(settings, "users", &settings.modules.users)?));
            let probe = client.clone();
            // A real call through the wire: it proves the address, the service token and the
            // remote's own health at once.
            parts.remote("users", move || {
                let probe = probe.clone();
                Box::pin(async move { probe.signing_keys(&Caller::Anonymous).await.is_ok() })
            });
            client
        }
        ModuleMode::NotDeployed => {
            tracing::warn!(
                "the users module is not deployed with this process (set modules.users.url to reach it): its operations answer 503"
            );
            Arc::new(users_contract::not_deployed::NotDeployed)
        }
    };

    let catalog_mode = mode_of("catalog", &settings.modules.catalog, cfg!(feature = "catalog-local"), cfg!(feature = "catalog-remote"))?;
    #[cfg(feature = "catalog-local")]
    let mut catalog_local = None;
    let catalog: Arc<dyn CatalogApi> = match catalog_mode {
        ModuleMode::Local => {
            #[cfg(feature = "catalog-local")]
            {
                let (service, hosted) = local_catalog(settings).await?;
                let dead_letters = Arc::new(DeadLetterStore::new(hosted.database.clone(), "catalog"));
                bus.subscribe(service.sales_counter().consumer(dead_letters))
                    .await
                    .context("cannot subscribe the catalog's sales counter")?;
                let service = Arc::new(service);
                let probe = service.clone();
                parts.host("catalog", hosted, &bus, settings, move || {
                    let probe = probe.clone();
                    Box::pin(async move { probe.ping().await })
                });
                let sweeper = service.clone();
                let every = std::time::Duration::from_secs(settings.catalog.reservation_sweep_secs.max(1));
                parts.background.push(Box::new(move |stop| Box::pin(sweep_expired_reservations(sweeper, every, stop))));
                catalog_local = Some(service.clone());
                service
            }
            #[cfg(not(feature = "catalog-local"))]
            unreachable!("mode_of refuses local mode without the feature")
        }
        ModuleMode::Remote => {
            let client: Arc<dyn CatalogApi> =
                Arc::new(catalog_contract::http_wire::Client::new(remote_client(settings, "catalog", &settings.modules.catalog)?));
            let probe = client.clone();
            parts.remote("catalog", move || {
                let probe = probe.clone();
                Box::pin(async move { probe.list_categories(&Caller::Anonymous, shared_kernel::PageRequest::default()).await.is_ok() })
            });
            client
        }
        ModuleMode::NotDeployed => {
            tracing::warn!(
                "the catalog module is not deployed with this process (set modules.catalog.url to reach it): its operations answer 503"
            );
            Arc::new(catalog_contract::not_deployed::NotDeployed)
        }
    };

    let payments_mode =
        mode_of("payments", &settings.modules.payments, cfg!(feature = "payments-local"), cfg!(feature = "payments-remote"))?;
    let payments: Arc<dyn PaymentsApi> = match payments_mode {
        ModuleMode::Local => {
            #[cfg(feature = "payments-local")]
            {
                let (service, hosted) = local_payments(settings).await?;
                let service = Arc::new(service);
                let probe = service.clone();
                parts.host("payments", hosted, &bus, settings, move || {
                    let probe = probe.clone();
                    Box::pin(async move { probe.ping().await })
                });
                service
            }
            #[cfg(not(feature = "payments-local"))]
            unreachable!("mode_of refuses local mode without the feature")
        }
        ModuleMode::Remote => {
            let client: Arc<dyn PaymentsApi> =
                Arc::new(payments_contract::http_wire::Client::new(remote_client(settings, "payments", &settings.modules.payments)?));
            let probe = client.clone();
            parts.remote("payments", move || {
                let probe = probe.clone();
                // Any answer but 503 proves the wire, the token and the service are up.
                Box::pin(async move {
                    let service = Caller::Service(shared_kernel::ServiceName::Edge);
                    matches!(
                        probe.get_payment(&service, shared_kernel::OrderId::from_uuid(uuid::Uuid::nil())).await,
                        Ok(_) | Err(ApiError::NotFound { .. })
                    )
                })
            });
            client
        }
        ModuleMode::NotDeployed => {
            tracing::warn!(
                "the payments module is not deployed with this process (set modules.payments.url to reach it): its operations answer 503"
            );
            Arc::new(payments_contract::not_deployed::NotDeployed)
        }
    };

    let orders_mode = mode_of("orders", &settings.modules.orders, cfg!(feature = "orders-local"), cfg!(feature = "orders-remote"))?;
    #[cfg(feature = "orders-local")]
    let mut orders_local = None;
    let orders: Arc<dyn OrdersApi> = match orders_mode {
        ModuleMode::Local => {
            #[cfg(feature = "orders-local")]
            {
                let (service, hosted) = local_orders(settings, catalog.clone(), payments.clone()).await?;
                let dead_letters: Arc<DeadLetterStore> = Arc::new(DeadLetterStore::new(hosted.database.clone(), "orders"));
                bus.subscribe(
                    orders::CustomerStatusProjection::new(hosted.database.clone(), Arc::new(shared_kernel::SystemClock))
                        .consumer(dead_letters.clone()),
                )
                .await
                .context("cannot subscribe orders' customer-status projection")?;
                bus.subscribe(
                    orders::ProductNamesProjection::new(hosted.database.clone(), Arc::new(shared_kernel::SystemClock))
                        .consumer(dead_letters),
                )
                .await
                .context("cannot subscribe orders' product-name projection")?;
                let service = Arc::new(service);
                let probe = service.clone();
                parts.host("orders", hosted, &bus, settings, move || {
                    let probe = probe.clone();
                    Box::pin(async move { probe.ping().await })
                });
                let recovery = service.clone();
                let every = std::time::Duration::from_secs(settings.orders.recovery_sweep_secs.max(1));
                let stale_after = std::time::Duration::from_secs(settings.orders.stale_after_secs);
                parts.background.push(Box::new(move |stop| Box::pin(recover_sagas(recovery, every, stale_after, stop))));
                orders_local = Some(service.clone());
                service
            }
            #[cfg(not(feature = "orders-local"))]
            unreachable!("mode_of refuses local mode without the feature")
        }
        ModuleMode::Remote => {
            let client: Arc<dyn OrdersApi> =
                Arc::new(orders_contract::http_wire::Client::new(remote_client(settings, "orders", &settings.modules.orders)?));
            let probe = client.clone();
            parts.remote("orders", move || {
                let probe = probe.clone();
                // 401 proves the wire, the token check and the service are up.
                Box::pin(async move {
                    matches!(
                        probe.get_order(&Caller::Anonymous, shared_kernel::OrderId::from_uuid(uuid::Uuid::nil())).await,
                        Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Unauthenticated { .. })
                    )
                })
            });
            client
        }
        ModuleMode::NotDeployed => {
            tracing::warn!(
                "the orders module is not deployed with this process (set modules.orders.url to reach it): its operations answer 503"
            );
            Arc::new(orders_contract::not_deployed::NotDeployed)
        }
    };

    let order_status_feed =
        crate::graphql::OrderStatusFeed::new(std::time::Duration::from_millis(settings.graphql.subscription_poll_ms.max(100)));
    bus.subscribe(order_status_feed.consumer()).await.context("cannot subscribe the GraphQL order status feed")?;

    let verifier = TokenVerifier::new(
        Arc::new(ContractKeySource { users: users.clone() }),
        TokenPolicy { issuer: settings.auth.issuer.clone(), audience: settings.auth.audience.clone(), leeway_secs: 5 },
    );
    let resolver: Arc<dyn CallerResolver> = Arc::new(TokenCallerResolver {
        verifier: verifier.clone(),
        service_token: settings.auth.service_token.clone(),
        accept_service_callers: false,
    });
    let internal_resolver: Arc<dyn CallerResolver> =
        Arc::new(TokenCallerResolver { verifier, service_token: settings.auth.service_token.clone(), accept_service_callers: true });
    let mut internal_routes = Router::new();
    if users_mode == ModuleMode::Local {
        internal_routes = internal_routes.merge(users_contract::http_wire::router(users.clone(), internal_resolver.clone()));
    }
    if catalog_mode == ModuleMode::Local {
        internal_routes = internal_routes.merge(catalog_contract::http_wire::router(catalog.clone(), internal_resolver.clone()));
    }
    if orders_mode == ModuleMode::Local {
        internal_routes = internal_routes.merge(orders_contract::http_wire::router(orders.clone(), internal_resolver.clone()));
    }
    if payments_mode == ModuleMode::Local {
        internal_routes = internal_routes.merge(payments_contract::http_wire::router(payments.clone(), internal_resolver));
    }
    Ok(Composition {
        users,
        catalog,
        payments,
        orders,
        bus,
        order_status_feed,
        dead_letters: parts.dead_letters,
        background: parts.background,
        resolver,
        readiness: parts.readiness,
        internal_routes,
        local_modules: parts.local_modules,
        #[cfg(feature = "users-local")]
        users_local,
        #[cfg(feature = "catalog-local")]
        catalog_local,
        #[cfg(feature = "orders-local")]
        orders_local,
    })
}

/// What the modules add to the process as they are composed.
struct Parts {
    readiness: Vec<ReadinessCheck>,
    local_modules: Vec<&'static str>,
    dead_letters: Vec<DeadLetterStore>,
    background: Vec<BackgroundTask>,
}

impl Parts {
    /// A module hosted here: its database check, dead letters and outbox relay.
    #[allow(dead_code)] // unused in a build with no local module (the gateway)
    fn host(
        &mut self,
        name: &'static str,
        hosted: Hosted,
        bus: &Arc<dyn EventBus>,
        settings: &Settings,
        ping: impl Fn() -> BoxFuture<'static, bool> + Send + Sync + 'static,
    ) {
        self.readiness.push(ReadinessCheck { name: format!("{name}.database"), probe: Arc::new(ping) });
        self.local_modules.push(name);
        self.dead_letters.push(DeadLetterStore::new(hosted.database.clone(), name));
        let relay = shared_kernel::outbox::Relay::new(hosted.database, hosted.outbox, bus.clone())
            .with_poll_interval(std::time::Duration::from_millis(settings.events.relay_poll_ms.max(10)));
        self.background.push(Box::new(move |stop| Box::pin(relay.run(stop))));
    }

    /// A module reached over the wire: its readiness is a real call.
    fn remote(&mut self, name: &'static str, probe: impl Fn() -> BoxFuture<'static, bool> + Send + Sync + 'static) {
        self.readiness.push(ReadinessCheck { name: format!("{name}.remote"), probe: Arc::new(probe) });
    }
}

#[cfg(feature = "catalog-local")]
async fn sweep_expired_reservations(catalog: Arc<catalog::CatalogService>, every: std::time::Duration, mut stop: watch::Receiver<bool>) {
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

/// Resumes sagas that made no progress for `stale_after`, at start-up and then every `every`.
/// Never younger ones, even at start-up: in a rolling restart another instance may still be
/// driving them (with the card in memory), and two drivers would both call the other modules.
#[cfg(feature = "orders-local")]
async fn recover_sagas(
    orders: Arc<orders::OrdersService>,
    every: std::time::Duration,
    stale_after: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            result = orders.recover_in_flight(stale_after) => {
                if let Err(error) = result {
                    tracing::warn!(%error, "resuming interrupted orders failed; will retry");
                }
            }
            _ = stop.changed() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(feature = "orders-local")]
async fn local_orders(
    settings: &Settings,
    catalog: Arc<dyn CatalogApi>,
    payments: Arc<dyn PaymentsApi>,
) -> anyhow::Result<(orders::OrdersService, Hosted)> {
    let db = open_database::<migrations::orders::Migrator>(settings, "orders", settings.database.orders_url.as_ref()).await?;
    let outbox = shared_kernel::outbox::Outbox::new("orders");
    let config = &settings.orders;
    let orders_settings = orders::OrdersSettings {
        placement_wait: std::time::Duration::from_millis(config.placement_wait_ms),
        step_attempts: config.step_attempts.max(1),
        step_retry_delay: std::time::Duration::from_millis(config.step_retry_delay_ms),
        stale_after: std::time::Duration::from_secs(config.stale_after_secs),
    };
    let service =
        orders::OrdersService::new(db.clone(), outbox.clone(), catalog, payments, Arc::new(shared_kernel::SystemClock), orders_settings);
    Ok((service, Hosted { database: db, outbox }))
}

/// Opens a local module's own database and applies its migrations (if configured).
#[allow(dead_code)] // unused in a build with no local module (the gateway)
async fn open_database<M: migrations::MigratorTrait>(
    settings: &Settings,
    name: &str,
    own_url: Option<&String>,
) -> anyhow::Result<sea_orm::DatabaseConnection> {
    let target = settings.database_target(own_url);
    let db = shared_kernel::db::connect_module(name, &target, settings.database.max_connections)
        .await
        .with_context(|| format!("cannot open the {name} database"))?;
    if settings.database.migrate_on_start {
        M::up(&db, None).await.with_context(|| format!("cannot migrate the {name} database"))?;
    }
    Ok(db)
}

#[cfg(feature = "payments-local")]
async fn local_payments(settings: &Settings) -> anyhow::Result<(payments::PaymentsService, Hosted)> {
    let db = open_database::<migrations::payments::Migrator>(settings, "payments", settings.database.payments_url.as_ref()).await?;
    let simulator = payments::SimulatorSettings {
        latency: std::time::Duration::from_millis(settings.payments.simulator_latency_ms),
        failure_rate: settings.payments.simulator_failure_rate,
    };
    let provider = Arc::new(payments::SimulatedCardProcessor::new(db.clone(), simulator));
    let service = payments::PaymentsService::new(db.clone(), provider)
        .with_pending_timeout(std::time::Duration::from_secs(settings.payments.pending_timeout_secs));
    Ok((service, Hosted { database: db, outbox: shared_kernel::outbox::Outbox::new("payments") }))
}

#[cfg(feature = "catalog-local")]
async fn local_catalog(settings: &Settings) -> anyhow::Result<(catalog::CatalogService, Hosted)> {
    let db = open_database::<migrations::catalog::Migrator>(settings, "catalog", settings.database.catalog_url.as_ref()).await?;
    let outbox = shared_kernel::outbox::Outbox::new("catalog");
    let catalog_settings = catalog::CatalogSettings {
        reservation_ttl: chrono::Duration::seconds(settings.catalog.reservation_ttl_secs as i64),
        product_cache_ttl: std::time::Duration::from_millis(settings.catalog.product_cache_ttl_ms),
    };
    let service = catalog::CatalogService::new(db.clone(), Arc::new(shared_kernel::SystemClock), outbox.clone(), catalog_settings);
    Ok((service, Hosted { database: db, outbox }))
}

fn remote_client(settings: &Settings, name: &str, module: &ModuleSettings) -> anyhow::Result<shared_kernel::wire::RpcClient> {
    let base_url = module.url.clone().with_context(|| format!("modules.{name}.url is required when {name} is remote"))?;
    shared_kernel::wire::RpcClient::new(shared_kernel::wire::RpcClientConfig {
        base_url,
        timeout: std::time::Duration::from_millis(module.timeout_ms.max(1)),
        service_name: settings.server.service_name.clone(),
        service_token: settings.auth.service_token.clone(),
    })
    .map_err(|error| anyhow::anyhow!("cannot build the client for {name}: {error}"))
}

#[cfg(feature = "users-local")]
async fn local_users(settings: &Settings) -> anyhow::Result<(users::UsersService, Hosted)> {
    let db = open_database::<migrations::users::Migrator>(settings, "users", settings.database.users_url.as_ref()).await?;
    let keys = match &settings.auth.keys_json {
        Some(json) => users::KeyRing::from_json(json.expose()).context("auth.keys_json")?,
        None => {
            users::KeyRing::load_or_generate(&settings.keys_file(), settings.auth.generate_keys).context("cannot load the signing keys")?
        }
    };
    let users_settings = users::UsersSettings {
        issuer: settings.auth.issuer.clone(),
        audience: settings.auth.audience.clone(),
        access_token_ttl_secs: settings.auth.access_token_ttl_secs,
        refresh_token_ttl_secs: settings.auth.refresh_token_ttl_secs,
        login_rate_limits: users::LoginRateLimits {
            per_account_per_minute: settings.auth.login_per_account_per_minute,
            per_address_per_minute: settings.auth.login_per_address_per_minute,
        },
    };
    let outbox = shared_kernel::outbox::Outbox::new("users");
    let service =
        users::UsersService::new(db.clone(), Arc::new(keys), users_settings, Arc::new(shared_kernel::SystemClock), outbox.clone());
    if let Some(admin) = &settings.admin_bootstrap {
        service
            .ensure_admin(&admin.email, admin.password.expose())
            .await
            .map_err(|error| anyhow::anyhow!("ADMIN_EMAIL/ADMIN_PASSWORD: {error}"))?;
    }
    Ok((service, Hosted { database: db, outbox }))
}

/// Token verification keys from the users contract: in process, or over its wire.
struct ContractKeySource {
    users: Arc<dyn UsersApi>,
}

#[async_trait::async_trait]
impl KeySource for ContractKeySource {
    async fn fetch_keys(&self) -> Result<jsonwebtoken::jwk::JwkSet, ApiError> {
        let keys = self.users.signing_keys(&Caller::Anonymous).await?;
        let json = serde_json::to_value(keys).map_err(|_| ApiError::Internal)?;
        serde_json::from_value(json).map_err(|error| {
            tracing::error!(%error, "the published keys are not a JWKS");
            ApiError::Internal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(mode: Option<ModuleMode>, url: Option<&str>) -> ModuleSettings {
        ModuleSettings { mode, url: url.map(str::to_owned), ..ModuleSettings::default() }
    }

    #[test]
    fn placement_follows_what_is_compiled_in_and_configured() {
        // Unset: local if compiled in, else remote if reachable, else not deployed.
        assert_eq!(mode_of("m", &module(None, None), true, true).unwrap(), ModuleMode::Local);
        assert_eq!(mode_of("m", &module(None, Some("http://m")), false, true).unwrap(), ModuleMode::Remote);
        assert_eq!(mode_of("m", &module(None, None), false, true).unwrap(), ModuleMode::NotDeployed);
        assert_eq!(mode_of("m", &module(None, Some("http://m")), false, false).unwrap(), ModuleMode::NotDeployed);
        // Asked for explicitly: it must be compiled in, else start-up fails loudly.
        assert!(mode_of("m", &module(Some(ModuleMode::Local), None), false, true).is_err());
        assert!(mode_of("m", &module(Some(ModuleMode::Remote), Some("http://m")), true, false).is_err());
        assert_eq!(mode_of("m", &module(Some(ModuleMode::NotDeployed), None), true, true).unwrap(), ModuleMode::NotDeployed);
    }
}

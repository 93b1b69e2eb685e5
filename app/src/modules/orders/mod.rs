//! The orders module in the composition. It calls the catalog and payments, so it is placed
//! after them.

pub mod settings;
use crate::composition::{HostFn, ModuleInfo, ModuleSpec};
use orders_contract::{OrderRequest, OrdersApi, PlaceOrder, Placement};
use shared_kernel::{ApiError, Caller};
use std::sync::Arc;

pub mod graphql;
pub mod rest;

/// Its contract.
pub type Api = dyn orders_contract::OrdersApi;

/// Places a client's order at the edge (REST and GraphQL alike): the card goes to payments,
/// which answers a single-use token, and orders gets the token. The card goes no further.
///
/// # Errors
/// 401 without a user; payments' and orders' errors as they answer them.
pub(crate) async fn place(
    modules: &crate::module_list::ModuleHandles,
    caller: &Caller,
    idempotency_key: String,
    order: PlaceOrder,
) -> Result<Placement, ApiError> {
    caller.require_user()?;
    let payment_method = modules.payments.tokenize(caller, order.payment.card_number).await.map_err(|error| match error {
        // Said as placement says it: nothing was placed, come back later.
        ApiError::Unavailable { retry_after_secs, not_sent, .. } => {
            let detail = "payments is unavailable; no order was placed, try again later";
            if not_sent { ApiError::not_sent(detail, retry_after_secs) } else { ApiError::unavailable(detail, retry_after_secs) }
        }
        other => other,
    })?;
    modules.orders.place_order(caller, idempotency_key, OrderRequest { items: order.items, payment_method }).await
}

/// The JSON Schemas of the events it publishes.
pub fn event_schemas() -> Vec<(&'static str, serde_json::Value)> {
    orders_contract::events::schemas()
}

/// An example of each event it publishes.
#[cfg(test)]
pub(crate) fn event_samples() -> Vec<(&'static str, serde_json::Value)> {
    use super::sample;
    use chrono::Utc;
    let (order, user) = (shared_kernel::OrderId::new(), shared_kernel::UserId::new());
    let line = orders_contract::events::OrderedLine { product_id: shared_kernel::ProductId::new(), quantity: 2 };
    vec![
        sample(orders_contract::events::OrderStatusChangedV1 {
            order_id: order,
            customer_id: user,
            status: orders_contract::OrderStatus::Rejected,
            failure_reason: Some("declined".into()),
            changed_at: Utc::now(),
        }),
        sample(orders_contract::events::OrderConfirmedV1 {
            order_id: order,
            customer_id: user,
            lines: vec![line.clone()],
            total: shared_kernel::Money::new(3998, shared_kernel::money::Currency::EUR),
            confirmed_at: Utc::now(),
        }),
        sample(orders_contract::events::OrderCancelledV1 {
            order_id: order,
            customer_id: user,
            lines: vec![line],
            cancelled_at: Utc::now(),
        }),
    ]
}

/// It has no metrics of its own (its calls and events are counted by the kernel's).
pub(crate) fn describe_metrics() {}

pub(crate) fn spec() -> ModuleSpec<dyn OrdersApi> {
    ModuleSpec {
        name: "orders",
        dead_letters: "orders_dead_letters",
        settings: |modules| &modules.orders,
        http_client: |rpc| Arc::new(orders_contract::http_wire::Client::new(rpc)),
        nats_client: |nats| Arc::new(orders_contract::nats_wire::Client::new(nats)),
        not_deployed: || Arc::new(orders_contract::not_deployed::NotDeployed),
        metered: |api| Arc::new(orders_contract::metered::Metered::new(api)),
        http_router: orders_contract::http_wire::router,
        serve_nats: |api, resolver, options| Box::pin(orders_contract::nats_wire::serve(api, resolver, options)),
        // 401 proves the wire, the token check and the service are up.
        probe: |api| {
            Box::pin(async move {
                let unknown = <shared_kernel::OrderId as shared_kernel::Identifier>::UNKNOWN;
                matches!(
                    api.get_order(&Caller::Anonymous, unknown).await,
                    Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Unauthenticated { .. })
                )
            })
        },
        host: host(),
    }
}

/// How to host the module here, when its implementation is compiled in (the `orders-local`
/// feature).
fn host() -> Option<HostFn<dyn OrdersApi>> {
    let mut compiled = Vec::<HostFn<dyn OrdersApi>>::new();
    #[cfg(feature = "orders-local")]
    compiled.push(|ctx| Box::pin(local(ctx)));
    compiled.pop()
}

pub(crate) fn info() -> ModuleInfo {
    ModuleInfo {
        name: "orders",
        compiled_local: cfg!(feature = "orders-local"),
        settings: |modules| &modules.orders,
        own_url: |database| database.orders_url.as_ref(),
        migrate: crate::composition::migrator::<migrations::orders::Migrator>,
    }
}

#[cfg(feature = "orders-local")]
async fn local(ctx: &mut crate::composition::Context) -> anyhow::Result<Arc<dyn OrdersApi>> {
    use anyhow::Context as _;
    let catalog = ctx.handles.catalog.clone().context("the catalog is placed before orders")?;
    let payments = ctx.handles.payments.clone().context("payments is placed before orders")?;
    let settings = &ctx.settings;
    let db = crate::composition::open_database::<migrations::orders::Migrator>(settings, "orders", settings.database.orders_url.as_ref()).await?;
    let outbox = shared_kernel::outbox::Outbox::new("orders").with_clock(ctx.clock.clone());
    let config = &settings.orders;
    let orders_settings = orders::OrdersSettings {
        placement_wait: std::time::Duration::from_millis(config.placement_wait_ms),
        step_attempts: config.step_attempts.max(1),
        step_retry_delay: std::time::Duration::from_millis(config.step_retry_delay_ms),
        stale_after: std::time::Duration::from_secs(config.stale_after_secs),
    };
    let every = std::time::Duration::from_secs(config.recovery_sweep_secs.max(1));
    let stale_after = std::time::Duration::from_secs(config.stale_after_secs);
    let service = orders::OrdersService::new(db.clone(), outbox.clone(), catalog, payments, ctx.clock.clone(), orders_settings)
        .with_payments_gate(ctx.gate("payments"));
    let dead_letters = Arc::new(shared_kernel::outbox::DeadLetterStore::new(db.clone(), "orders").with_clock(ctx.clock.clone()));
    let clock = ctx.clock.clone();
    ctx.subscribe(orders::CustomerStatusProjection::new(db.clone(), clock.clone()).consumer(dead_letters.clone())).await?;
    ctx.subscribe(orders::ProductNamesProjection::new(db.clone(), clock).consumer(dead_letters)).await?;
    let service = Arc::new(service);
    let probe = service.clone();
    ctx.host("orders", crate::composition::Hosted { database: db, outbox }, move || {
        let probe = probe.clone();
        Box::pin(async move { probe.ping().await })
    })
    .await?;
    let recovery = service.clone();
    ctx.background(Box::new(move |stop| Box::pin(recover_sagas(recovery, every, stale_after, stop))));
    Ok(service)
}

/// Resumes sagas that made no progress for `stale_after`, at start-up and then every `every`.
/// Never younger ones, even at start-up: in a rolling restart another instance may still be
/// driving them, and two drivers would both call the other modules.
#[cfg(feature = "orders-local")]
async fn recover_sagas(
    orders: Arc<orders::OrdersService>,
    every: std::time::Duration,
    stale_after: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
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

//! The payments module in the composition.

pub mod settings;
use crate::composition::{HostFn, ModuleInfo, ModuleSpec};
use payments_contract::PaymentsApi;
use shared_kernel::{ApiError, Caller};
use std::sync::Arc;

pub mod graphql;
pub mod rest;

/// Its contract.
pub type Api = dyn payments_contract::PaymentsApi;

/// It publishes no integration events.
pub fn event_schemas() -> Vec<(&'static str, serde_json::Value)> {
    Vec::new()
}

#[cfg(test)]
pub(crate) fn event_samples() -> Vec<(&'static str, serde_json::Value)> {
    Vec::new()
}

/// It has no metrics of its own (its calls and events are counted by the kernel's).
pub(crate) fn describe_metrics() {}

pub(crate) fn spec() -> ModuleSpec<dyn PaymentsApi> {
    ModuleSpec {
        name: "payments",
        dead_letters: "payments_dead_letters",
        settings: |modules| &modules.payments,
        http_client: |rpc| Arc::new(payments_contract::http_wire::Client::new(rpc)),
        nats_client: |nats| Arc::new(payments_contract::nats_wire::Client::new(nats)),
        not_deployed: || Arc::new(payments_contract::not_deployed::NotDeployed),
        metered: |api| Arc::new(payments_contract::metered::Metered::new(api)),
        http_router: payments_contract::http_wire::router,
        serve_nats: |api, resolver, options| Box::pin(payments_contract::nats_wire::serve(api, resolver, options)),
        // An answer of the service itself (a payment is no one's to read anonymously) proves
        // the wire, this process's identity and the service are up.
        probe: |api| {
            Box::pin(async move {
                let unknown = <shared_kernel::OrderId as shared_kernel::Identifier>::UNKNOWN;
                matches!(
                    api.get_payment(&Caller::Anonymous, unknown).await,
                    Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Unauthenticated { .. } | ApiError::Forbidden { .. })
                )
            })
        },
        host: host(),
    }
}

/// How to host the module here, when its implementation is compiled in (the `payments-local`
/// feature).
fn host() -> Option<HostFn<dyn PaymentsApi>> {
    let mut compiled = Vec::<HostFn<dyn PaymentsApi>>::new();
    #[cfg(feature = "payments-local")]
    compiled.push(|ctx| Box::pin(local(ctx)));
    compiled.pop()
}

pub(crate) fn info() -> ModuleInfo {
    ModuleInfo {
        name: "payments",
        compiled_local: cfg!(feature = "payments-local"),
        settings: |modules| &modules.payments,
        own_url: |database| database.payments_url.as_ref(),
        migrate: crate::composition::migrator::<migrations::payments::Migrator>,
    }
}

#[cfg(feature = "payments-local")]
async fn local(ctx: &mut crate::composition::Context) -> anyhow::Result<Arc<dyn PaymentsApi>> {
    let settings = &ctx.settings;
    let db = crate::composition::open_database::<migrations::payments::Migrator>(settings, "payments", settings.database.payments_url.as_ref()).await?;
    let simulator = payments::SimulatorSettings {
        latency: std::time::Duration::from_millis(settings.payments.simulator_latency_ms),
        failure_rate: settings.payments.simulator_failure_rate,
    };
    let provider = Arc::new(payments::SimulatedCardProcessor::new(db.clone(), simulator));
    let service = Arc::new(
        payments::PaymentsService::new(db.clone(), provider)
            .with_clock(ctx.clock.clone())
            .with_pending_timeout(std::time::Duration::from_secs(settings.payments.pending_timeout_secs)),
    );
    let outbox = shared_kernel::outbox::Outbox::new("payments").with_clock(ctx.clock.clone());
    // Refunds interrupted between their claim and their record are finished, with their own
    // idempotency keys, once they are older than a provider call may take.
    let (sweeper, older_than) = (service.clone(), std::time::Duration::from_secs(settings.payments.pending_timeout_secs));
    ctx.background(Box::new(move |stop| Box::pin(finish_refunds(sweeper, older_than, stop))));
    let probe = service.clone();
    ctx.host("payments", crate::composition::Hosted { database: db, outbox }, move || {
        let probe = probe.clone();
        Box::pin(async move { probe.ping().await })
    })
    .await?;
    Ok(service)
}

/// Finishes interrupted refunds at start-up and then every 10 s until told to stop.
#[cfg(feature = "payments-local")]
async fn finish_refunds(payments: Arc<payments::PaymentsService>, older_than: std::time::Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        match payments.finish_pending_refunds(older_than).await {
            Ok(0) => {}
            Ok(finished) => tracing::info!(finished, "finished refunds that were interrupted"),
            Err(error) => tracing::warn!(%error, "finishing interrupted refunds failed; will retry"),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
            _ = stop.changed() => return,
        }
    }
}

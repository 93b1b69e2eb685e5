//! The notifications module in the composition. It calls no module: it only consumes events
//! (users' and orders'), so it can be placed anywhere in the order.

pub mod settings;
use crate::composition::{HostFn, ModuleInfo, ModuleSpec};
use notifications_contract::NotificationsApi;
use shared_kernel::{ApiError, Caller, PageRequest};
use std::sync::Arc;

pub mod graphql;
pub mod rest;

/// Its contract.
pub type Api = dyn notifications_contract::NotificationsApi;

/// The JSON Schemas of the events it publishes.
pub fn event_schemas() -> Vec<(&'static str, serde_json::Value)> {
    notifications_contract::events::schemas()
}

/// An example of each event it publishes.
#[cfg(test)]
pub(crate) fn event_samples() -> Vec<(&'static str, serde_json::Value)> {
    use super::sample;
    use chrono::Utc;
    vec![
        sample(notifications_contract::events::NotificationCreatedV1 {
            notification_id: notifications_contract::NotificationId::new(),
            user_id: shared_kernel::UserId::new(),
            kind: notifications_contract::NotificationKind::OrderConfirmed,
            subject: "Order 0190 confirmed".into(),
            body: "Your order is confirmed.".into(),
            order_id: Some(shared_kernel::OrderId::new()),
            created_at: Utc::now(),
        }),
    ]
}

/// The help text of its own metrics.
pub(crate) fn describe_metrics() {
    metrics::describe_counter!(
        "notifications_delivered_total",
        "Notifications the delivery port accepted (an email handed to the SMTP server, or a line in the log), by adapter."
    );
}

pub(crate) fn spec() -> ModuleSpec<dyn NotificationsApi> {
    ModuleSpec {
        name: "notifications",
        dead_letters: "notifications_dead_letters",
        settings: |modules| &modules.notifications,
        http_client: |rpc| Arc::new(notifications_contract::http_wire::Client::new(rpc)),
        nats_client: |nats| Arc::new(notifications_contract::nats_wire::Client::new(nats)),
        not_deployed: || Arc::new(notifications_contract::not_deployed::NotDeployed),
        metered: |api| Arc::new(notifications_contract::metered::Metered::new(api)),
        http_router: notifications_contract::http_wire::router,
        serve_nats: |api, resolver, options| Box::pin(notifications_contract::nats_wire::serve(api, resolver, options)),
        // 401 proves the wire, the token check and the service are up.
        probe: |api| {
            Box::pin(async move {
                matches!(
                    api.list_notifications(&Caller::Anonymous, PageRequest::default()).await,
                    Ok(_) | Err(ApiError::Unauthenticated { .. })
                )
            })
        },
        host: host(),
    }
}

/// How to host the module here, when its implementation is compiled in (the
/// `notifications-local` feature).
fn host() -> Option<HostFn<dyn NotificationsApi>> {
    let mut compiled = Vec::<HostFn<dyn NotificationsApi>>::new();
    #[cfg(feature = "notifications-local")]
    compiled.push(|ctx| Box::pin(local(ctx)));
    compiled.pop()
}

pub(crate) fn info() -> ModuleInfo {
    ModuleInfo {
        name: "notifications",
        compiled_local: cfg!(feature = "notifications-local"),
        settings: |modules| &modules.notifications,
        own_url: |database| database.notifications_url.as_ref(),
        migrate: crate::composition::migrator::<migrations::notifications::Migrator>,
    }
}

#[cfg(feature = "notifications-local")]
async fn local(ctx: &mut crate::composition::Context) -> anyhow::Result<Arc<dyn NotificationsApi>> {
    let settings = &ctx.settings;
    let db = crate::composition::open_database::<migrations::notifications::Migrator>(
        settings,
        "notifications",
        settings.database.notifications_url.as_ref(),
    )
    .await?;
    let outbox = shared_kernel::outbox::Outbox::new("notifications").with_clock(ctx.clock.clone());
    let delivery = delivery(&settings.notifications)?;
    tracing::info!(delivery = delivery.name(), "notifications are sent through this adapter");
    let ready = delivery.clone();
    // Optional: notifications wait in the bus's retries (then the dead letters) while the
    // delivery is away; nothing else depends on it.
    ctx.optional_check("notifications.delivery", move || {
        let ready = ready.clone();
        Box::pin(async move { ready.ready().await })
    });
    let dead_letters = Arc::new(shared_kernel::outbox::DeadLetterStore::new(db.clone(), "notifications").with_clock(ctx.clock.clone()));
    let clock = ctx.clock.clone();
    ctx.subscribe(notifications::Reactions::new(db.clone(), outbox.clone(), clock.clone()).consumer(dead_letters.clone())).await?;
    ctx.subscribe(notifications::Dispatcher::new(db.clone(), delivery, clock.clone()).consumer(dead_letters)).await?;
    let service = Arc::new(notifications::NotificationsService::new(db.clone(), clock));
    let probe = service.clone();
    ctx.host("notifications", crate::composition::Hosted { database: db, outbox }, move || {
        let probe = probe.clone();
        Box::pin(async move { probe.ping().await })
    })
    .await?;
    Ok(service)
}

/// The delivery adapter `notifications.delivery` names.
#[cfg(feature = "notifications-local")]
fn delivery(settings: &crate::config::NotificationsSettings) -> anyhow::Result<Arc<dyn notifications::Delivery>> {
    use crate::config::DeliveryKind;
    Ok(match settings.delivery {
        DeliveryKind::Log => Arc::new(notifications::LogDelivery),
        DeliveryKind::Smtp => {
            let smtp = &settings.smtp;
            let config = notifications::smtp::SmtpSettings {
                host: smtp.host.clone(),
                port: smtp.port,
                tls: match smtp.tls {
                    crate::config::SmtpTls::None => notifications::smtp::SmtpTls::None,
                    crate::config::SmtpTls::StartTls => notifications::smtp::SmtpTls::StartTls,
                    crate::config::SmtpTls::Tls => notifications::smtp::SmtpTls::Tls,
                },
                username: smtp.username.clone(),
                password: smtp.password.clone(),
                sender: smtp.sender.clone(),
                timeout: std::time::Duration::from_secs(smtp.timeout_secs.max(1)),
            };
            Arc::new(notifications::smtp::SmtpDelivery::new(&config).map_err(|error| anyhow::anyhow!("notifications.smtp: {error}"))?)
        }
    })
}

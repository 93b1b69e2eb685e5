//! The users module in the composition.

use crate::composition::{HostFn, ModuleInfo, ModuleSpec};
use shared_kernel::Caller;
use std::sync::Arc;
use users_contract::UsersApi;

pub mod graphql;
pub mod rest;

/// Its contract.
pub type Api = dyn users_contract::UsersApi;

/// The JSON Schemas of the events it publishes.
pub fn event_schemas() -> Vec<(&'static str, serde_json::Value)> {
    users_contract::events::schemas()
}

/// An example of each event it publishes.
#[cfg(test)]
pub(crate) fn event_samples() -> Vec<(&'static str, serde_json::Value)> {
    use super::sample;
    use chrono::Utc;
    let user = shared_kernel::UserId::new();
    vec![
        sample(users_contract::events::UserRegisteredV1 {
            user_id: user,
            email: "a@example.com".into(),
            name: "A".into(),
            registered_at: Utc::now(),
        }),
        sample(users_contract::events::UserDeactivatedV1 { user_id: user, deactivated_at: Utc::now() }),
    ]
}

/// It has no metrics of its own (its calls and events are counted by the kernel's).
pub(crate) fn describe_metrics() {}

pub(crate) fn spec() -> ModuleSpec<dyn UsersApi> {
    ModuleSpec {
        name: "users",
        dead_letters: "users_dead_letters",
        settings: |modules| &modules.users,
        http_client: |rpc| Arc::new(users_contract::http_wire::Client::new(rpc)),
        nats_client: |nats| Arc::new(users_contract::nats_wire::Client::new(nats)),
        not_deployed: || Arc::new(users_contract::not_deployed::NotDeployed),
        metered: |api| Arc::new(users_contract::metered::Metered::new(api)),
        http_router: users_contract::http_wire::router,
        serve_nats: |api, resolver, options| Box::pin(users_contract::nats_wire::serve(api, resolver, options)),
        probe: |api| Box::pin(async move { api.signing_keys(&Caller::Anonymous).await.is_ok() }),
        host: host(),
    }
}

/// How to host the module here, when its implementation is compiled in (the `users-local`
/// feature).
fn host() -> Option<HostFn<dyn UsersApi>> {
    let mut compiled = Vec::<HostFn<dyn UsersApi>>::new();
    #[cfg(feature = "users-local")]
    compiled.push(|ctx| Box::pin(local(ctx)));
    compiled.pop()
}

pub(crate) fn info() -> ModuleInfo {
    ModuleInfo {
        name: "users",
        compiled_local: cfg!(feature = "users-local"),
        settings: |modules| &modules.users,
        own_url: |database| database.users_url.as_ref(),
        migrate: crate::composition::migrator::<migrations::users::Migrator>,
    }
}

#[cfg(feature = "users-local")]
async fn local(ctx: &mut crate::composition::Context) -> anyhow::Result<Arc<dyn UsersApi>> {
    use anyhow::Context as _;
    let settings = &ctx.settings;
    let db = crate::composition::open_database::<migrations::users::Migrator>(settings, "users", settings.database.users_url.as_ref()).await?;
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
    let outbox = shared_kernel::outbox::Outbox::new("users").with_clock(ctx.clock.clone());
    let service = users::UsersService::new(db.clone(), Arc::new(keys), users_settings, ctx.clock.clone(), outbox.clone());
    if let Some(admin) = &settings.admin_bootstrap {
        service
            .ensure_admin(&admin.email, admin.password.expose())
            .await
            .map_err(|error| anyhow::anyhow!("ADMIN_EMAIL/ADMIN_PASSWORD: {error}"))?;
    }
    let service = Arc::new(service);
    let probe = service.clone();
    ctx.host("users", crate::composition::Hosted { database: db, outbox }, move || {
        let probe = probe.clone();
        Box::pin(async move { probe.ping().await })
    })
    .await?;
    Ok(service)
}

//! Which adapter each module gets: its implementation in this process (`local`) or a client of
//! its contract (`remote`). Features decide what is compiled in; configuration picks among
//! what is; asking for something not compiled in stops start-up with a clear error.

use crate::config::{ModuleMode, ModuleSettings, Settings};
use anyhow::Context as _;
use axum::Router;
use futures::future::BoxFuture;
use shared_kernel::auth::{KeySource, TokenPolicy, TokenVerifier};
use shared_kernel::events::{EventBus, InProcessBus};
use shared_kernel::outbox::{DeadLetterStore, Relay};
use shared_kernel::wire::{CallerResolver, TokenCallerResolver};
use shared_kernel::{ApiError, Caller};
use std::sync::Arc;
use users_contract::UsersApi;

/// A readiness check: a name (`users.database`, `users.remote`) and a probe.
#[derive(Clone)]
pub struct ReadinessCheck {
    pub name: String,
    pub probe: Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>,
}

/// The modules as this process reaches them.
pub struct Composition {
    pub users: Arc<dyn UsersApi>,
    /// The event bus of this process (in-process adapter).
    pub bus: Arc<dyn EventBus>,
    /// The dead letters of the consumers of every module hosted here.
    pub dead_letters: Vec<DeadLetterStore>,
    /// One outbox relay per module hosted here; started by `Application::run_until`.
    pub relays: Vec<Relay>,
    pub resolver: Arc<dyn CallerResolver>,
    pub readiness: Vec<ReadinessCheck>,
    /// The wire routes (`/rpc/<module>/…`) of the modules hosted here, for the internal listener.
    pub internal_routes: Router,
    /// Names of the modules hosted here, for the start-up banner and `/health/ready`.
    pub local_modules: Vec<&'static str>,
    #[cfg(feature = "users-local")]
    pub users_local: Option<Arc<users::UsersService>>,
}

/// The mode module `name` runs in, or why it cannot.
///
/// # Errors
/// A mode this binary was not built with.
pub fn mode_of(name: &str, module: &ModuleSettings, compiled_local: bool, compiled_remote: bool) -> anyhow::Result<ModuleMode> {
    let mode = module.mode.unwrap_or(if compiled_local { ModuleMode::Local } else { ModuleMode::Remote });
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

/// Builds every module's adapter as configured.
///
/// # Errors
/// A database that cannot be reached or migrated, unreadable keys, a module configured in a
/// mode this binary was not built with, a remote module without a URL.
pub async fn compose(settings: &Settings) -> anyhow::Result<Composition> {
    let mut readiness = Vec::new();
    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new(settings.events.retry_policy()));
    #[allow(unused_mut)] // only local modules add stores and relays
    let mut dead_letters = Vec::new();
    #[allow(unused_mut)]
    let mut relays = Vec::new();
    #[allow(unused_mut)] // only local modules push, and a gateway has none
    let mut local_modules = Vec::new();
    #[allow(unused_mut)]
    let mut internal_routes = Router::new();
    #[cfg(feature = "users-local")]
    let mut users_local = None;

    let users_mode = mode_of("users", &settings.modules.users, cfg!(feature = "users-local"), cfg!(feature = "users-remote"))?;
    let users: Arc<dyn UsersApi> = match users_mode {
        ModuleMode::Local => {
            #[cfg(feature = "users-local")]
            {
                let (service, db, outbox) = local_users(settings).await?;
                let service = Arc::new(service);
                dead_letters.push(DeadLetterStore::new(db.clone(), "users"));
                relays.push(
                    Relay::new(db, outbox, bus.clone())
                        .with_poll_interval(std::time::Duration::from_millis(settings.events.relay_poll_ms.max(10))),
                );
                let probe_service = service.clone();
                readiness.push(ReadinessCheck {
                    name: "users.database".into(),
                    probe: Arc::new(move || {
                        let service = probe_service.clone();
                        Box::pin(async move { service.ping().await })
                    }),
                });
                local_modules.push("users");
                users_local = Some(service.clone());
                service
            }
            #[cfg(not(feature = "users-local"))]
            unreachable!("mode_of refuses local mode without the feature")
        }
        ModuleMode::Remote => {
            let client: Arc<dyn UsersApi> =
                Arc::new(users_contract::http_wire::Client::new(remote_client(settings, "users", &settings.modules.users)?));
            let probe_client = client.clone();
            // A real call through the wire: it proves the address, the service token and the
            // remote's own health at once.
            readiness.push(ReadinessCheck {
                name: "users.remote".into(),
                probe: Arc::new(move || {
                    let client = probe_client.clone();
                    Box::pin(async move { client.signing_keys(&Caller::Anonymous).await.is_ok() })
                }),
            });
            client
        }
    };

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
    if users_mode == ModuleMode::Local {
        internal_routes = internal_routes.merge(users_contract::http_wire::router(users.clone(), internal_resolver));
    }
    Ok(Composition {
        users,
        bus,
        dead_letters,
        relays,
        resolver,
        readiness,
        internal_routes,
        local_modules,
        #[cfg(feature = "users-local")]
        users_local,
    })
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
async fn local_users(
    settings: &Settings,
) -> anyhow::Result<(users::UsersService, sea_orm::DatabaseConnection, shared_kernel::outbox::Outbox)> {
    use migrations::MigratorTrait as _;
    let target = settings.database_target(settings.database.users_url.as_ref());
    let db = shared_kernel::db::connect_module("users", &target, settings.database.max_connections)
        .await
        .context("cannot open the users database")?;
    if settings.database.migrate_on_start {
        migrations::users::Migrator::up(&db, None).await.context("cannot migrate the users database")?;
    }
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
    Ok((service, db, outbox))
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

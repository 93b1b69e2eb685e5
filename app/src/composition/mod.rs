//! Which adapter each module gets: its implementation in this process (`local`), a client of its
//! contract over HTTP or over NATS (`remote`), or "not deployed". Every build links every
//! module's clients on both wires; a module's implementation is linked by its `<m>-local`
//! feature. Configuration picks among what is linked; asking for something that is not stops
//! start-up with a clear error.
//!
//! Each module is described once ([`ModuleSpec`], in its directory under `crate::modules`) and
//! placed by one code path ([`place`]), in the order of the module list (`crate::modules`).

use crate::config::{ModuleMode, ModuleSettings, ModulesSettings, Settings, Wire};
use crate::module_list::{ModuleHandles, Placed};
use anyhow::Context as _;
use axum::Router;
use futures::future::BoxFuture;
use shared_kernel::auth::{KeySource, TokenPolicy, TokenVerifier};
use shared_kernel::events::{EventBus, InProcessBus};
use shared_kernel::nats_wire::{NatsClient, NatsService, ServeOptions, WireError};
use shared_kernel::outbox::DeadLetterStore;
use shared_kernel::outbox::admin::{self as dead_letters_contract, DeadLettersApi, LocalDeadLetters};
use shared_kernel::resilience::{AlwaysOpen, CallGate, Upstream};
use shared_kernel::wire::{CallerResolver, RpcClient, TokenCallerResolver};
use shared_kernel::{ApiError, Caller, Clock};
use std::sync::Arc;
use tokio::sync::watch;
use users_contract::UsersApi;

/// A readiness check: a name (`users.database`, `users.remote`) and a probe.
#[derive(Clone)]
pub struct ReadinessCheck {
    pub name: String,
    pub probe: Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>,
    /// A failing check that is not required is reported (`degraded`) but leaves the process
    /// ready: the process serves without it (a shared cache, say).
    pub required: bool,
}

/// Work that runs beside the servers until told to stop (outbox relays, reservation sweeps).
pub type BackgroundTask = Box<dyn FnOnce(watch::Receiver<bool>) -> BoxFuture<'static, ()> + Send>;

/// The modules as this process reaches them.
pub struct Composition {
    pub modules: ModuleHandles,
    /// The event bus of this process (in-process adapter).
    pub bus: Arc<dyn EventBus>,
    /// Whether the bus is this process's alone (`events.bus = "in_process"`).
    events_in_process: bool,
    /// The dead letters of the consumers of every module hosted here.
    pub dead_letters: Vec<DeadLetterStore>,
    /// The dead letters of every deployed module, each through its contract: in process for
    /// the modules hosted here, over their wire for the others (the admin API gathers them).
    pub dead_letter_admin: Vec<Arc<dyn DeadLettersApi>>,
    /// Started by `Application::run_until`, stopped after the servers drain.
    pub background: Vec<BackgroundTask>,
    pub resolver: Arc<dyn CallerResolver>,
    pub readiness: Vec<ReadinessCheck>,
    /// The wire routes (`/rpc/<module>/…`) of the modules hosted here, for the internal listener.
    pub internal_routes: Router,
    /// The NATS services of the modules hosted here (when `nats.url` is set).
    pub nats_services: Vec<NatsService>,
    /// Names of the modules hosted here, for the start-up banner and `/health/ready`.
    pub local_modules: Vec<&'static str>,
    /// Every module, where it runs and how it fares, in composition order.
    pub status: Vec<ModuleStatus>,
}

/// How module `name` is reached from this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Local,
    Http,
    Nats,
    NotDeployed,
}

impl Placement {
    /// As configuration and the status report name it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Http => "http",
            Self::Nats => "nats",
            Self::NotDeployed => "not_deployed",
        }
    }
}

/// Counts the instances of a remote module this process sees now.
pub type InstanceCount = Arc<dyn Fn() -> BoxFuture<'static, usize> + Send + Sync>;

/// One module as `GET /api/admin/status` reports it.
#[derive(Clone)]
pub struct ModuleStatus {
    pub name: &'static str,
    pub placement: Placement,
    /// The guard of the calls to it (remote modules).
    pub upstream: Option<Arc<Upstream>>,
    pub instances: Option<InstanceCount>,
    /// Its dead letters' contract (every deployed module).
    pub dead_letters: Option<Arc<dyn DeadLettersApi>>,
}

/// Where module `name` runs, or why it cannot. A hosted module ignores `wire`, so one
/// environment can be given to every process of a deployment.
///
/// # Errors
/// `local` without the implementation compiled in; `remote` over HTTP without a `url`, or over
/// NATS without `nats.url`.
pub fn placement_of(name: &str, module: &ModuleSettings, compiled_local: bool, nats_configured: bool) -> anyhow::Result<Placement> {
    let remote = || match module.wire {
        Wire::Http => {
            anyhow::ensure!(module.url.is_some(), "modules.{name}.url is required when {name} is remote over HTTP");
            Ok(Placement::Http)
        }
        Wire::Nats => {
            anyhow::ensure!(nats_configured, "modules.{name}.wire is `nats` but nats.url is not set");
            Ok(Placement::Nats)
        }
    };
    match module.mode {
        Some(ModuleMode::Local) if !compiled_local => {
            anyhow::bail!("modules.{name}.mode is `local` but this binary was built without the `{name}-local` feature")
        }
        Some(ModuleMode::Local) => Ok(Placement::Local),
        Some(ModuleMode::Remote) => remote(),
        Some(ModuleMode::NotDeployed) => Ok(Placement::NotDeployed),
        None if compiled_local => {
            if module.url.is_some() || module.wire == Wire::Nats {
                tracing::warn!("{name} is compiled in and runs locally; set modules.{name}.mode = \"remote\" to reach another process");
            }
            Ok(Placement::Local)
        }
        None if module.wire == Wire::Nats || module.url.is_some() => remote(),
        None => Ok(Placement::NotDeployed),
    }
}

/// One module, as the composition root sees it: its contract's adapters (in every build) and,
/// when its implementation is compiled in, how to host it here.
pub(crate) struct ModuleSpec<A: ?Sized + Send + Sync + 'static> {
    pub name: &'static str,
    /// The name its dead letters' contract is served under: `<name>_dead_letters`.
    pub dead_letters: &'static str,
    pub settings: fn(&ModulesSettings) -> &ModuleSettings,
    pub http_client: fn(RpcClient) -> Arc<A>,
    pub nats_client: fn(NatsClient) -> Arc<A>,
    pub not_deployed: fn() -> Arc<A>,
    /// The hosted implementation with its calls counted (`transport = "local"`).
    pub metered: fn(Arc<A>) -> Arc<A>,
    pub http_router: fn(Arc<A>, Arc<dyn CallerResolver>) -> Router,
    pub serve_nats: fn(Arc<A>, Arc<dyn CallerResolver>, ServeOptions) -> Serving,
    /// A real call through the wire: it proves the address, the service token and the remote's
    /// own health at once.
    pub probe: fn(Arc<A>) -> BoxFuture<'static, bool>,
    /// Hosts the module in this process; `None` when its implementation is not compiled in.
    pub host: Option<HostFn<A>>,
}

/// A module's NATS service starting.
pub(crate) type Serving = BoxFuture<'static, Result<NatsService, WireError>>;

pub(crate) type HostFn<A> = for<'a> fn(&'a mut Context) -> BoxFuture<'a, anyhow::Result<Arc<A>>>;

/// What the modules composed so far add to the process, and what hosting one needs.
#[allow(dead_code)] // partly unused in a build with no local module (the gateway)
pub(crate) struct Context {
    pub settings: Settings,
    pub bus: Arc<dyn EventBus>,
    pub clock: Arc<dyn Clock>,
    nats: Option<async_nats::Client>,
    pub handles: Placed,
    readiness: Vec<ReadinessCheck>,
    local_modules: Vec<&'static str>,
    dead_letters: Vec<DeadLetterStore>,
    dead_letter_admin: Vec<Arc<dyn DeadLettersApi>>,
    background: Vec<BackgroundTask>,
    wires: Vec<HostedWire>,
    /// Every consumer subscribed here: its name and the event types it reads.
    subscriptions: Vec<(String, Vec<String>)>,
    /// The guards of the remote modules, as placed.
    upstreams: Vec<Arc<Upstream>>,
    status: Vec<ModuleStatus>,
}

/// How a hosted module's wires are served, once the process's caller resolver exists.
struct HostedWire {
    name: &'static str,
    router: Box<dyn FnOnce(Arc<dyn CallerResolver>) -> Router + Send>,
    nats: Box<dyn FnOnce(Arc<dyn CallerResolver>, ServeOptions) -> Serving + Send>,
}

/// A module hosted here: its own database and outbox.
#[allow(dead_code)] // unused in a build with no local module (the gateway)
pub(crate) struct Hosted {
    pub database: sea_orm::DatabaseConnection,
    pub outbox: shared_kernel::outbox::Outbox,
}

#[allow(dead_code)] // unused in a build with no local module (the gateway)
impl Context {
    /// Registers a hosted module's database check, dead letters and outbox relay.
    pub fn host(&mut self, name: &'static str, hosted: Hosted, ping: impl Fn() -> BoxFuture<'static, bool> + Send + Sync + 'static) {
        self.readiness.push(ReadinessCheck { name: format!("{name}.database"), probe: Arc::new(ping), required: true });
        self.dead_letters.push(DeadLetterStore::new(hosted.database.clone(), name).with_clock(self.clock.clone()));
        let relay = shared_kernel::outbox::Relay::new(hosted.database, hosted.outbox, self.bus.clone())
            .with_poll_interval(std::time::Duration::from_millis(self.settings.events.relay_poll_ms.max(10)));
        self.background.push(Box::new(move |stop| Box::pin(relay.run(stop))));
    }

    /// Reports `probe` in readiness without making the process unready when it fails.
    pub fn optional_check(&mut self, name: &str, probe: impl Fn() -> BoxFuture<'static, bool> + Send + Sync + 'static) {
        self.readiness.push(ReadinessCheck { name: name.to_owned(), probe: Arc::new(probe), required: false });
    }

    /// Subscribes `consumer` to this process's bus.
    pub async fn subscribe(&mut self, consumer: shared_kernel::events::Consumer) -> anyhow::Result<()> {
        let (name, types) = (consumer.name.clone(), consumer.event_types.clone());
        self.bus.subscribe(consumer).await.with_context(|| format!("cannot subscribe {name}"))?;
        self.subscriptions.push((name, types));
        Ok(())
    }

    /// The guard of this process's calls to remote module `name` (one per module, shared by
    /// its contract's client and its dead letters' client).
    fn guard(&mut self, name: &'static str, transport: &'static str, module: &ModuleSettings) -> anyhow::Result<Arc<Upstream>> {
        let upstream = Upstream::new(name, transport, module.resilience()).map_err(|error| anyhow::anyhow!(error))?;
        self.upstreams.push(upstream.clone());
        Ok(upstream)
    }

    /// Whether calls to module `name` are refused right now (its circuit is open); never for a
    /// module hosted here or not guarded.
    pub fn gate(&self, name: &str) -> Arc<dyn CallGate> {
        match self.upstreams.iter().find(|upstream| upstream.module() == name) {
            Some(upstream) => upstream.clone(),
            None => Arc::new(AlwaysOpen),
        }
    }

    /// Work that runs beside the servers.
    pub fn background(&mut self, task: BackgroundTask) {
        self.background.push(task);
    }
}

/// A module's own database, migrated if configured.
#[allow(dead_code)] // unused in a build with no local module (the gateway)
pub(crate) async fn open_database<M: migrations::MigratorTrait>(
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

/// Places module `spec`: hosts it, or builds the client of its wire, or its "not deployed"
/// adapter.
pub(crate) async fn place<A: ?Sized + Send + Sync + 'static>(spec: &ModuleSpec<A>, ctx: &mut Context) -> anyhow::Result<Arc<A>> {
    let name = spec.name;
    let module = (spec.settings)(&ctx.settings.modules).clone();
    let placement = placement_of(name, &module, spec.host.is_some(), ctx.nats.is_some())?;
    let api = match (placement, spec.host) {
        (Placement::Local, Some(host)) => {
            let api = host(ctx).await?;
            ctx.local_modules.push(name);
            let (for_http, for_nats) = (api.clone(), api.clone());
            let (http_router, serve_nats) = (spec.http_router, spec.serve_nats);
            ctx.wires.push(HostedWire {
                name,
                router: Box::new(move |resolver| http_router(for_http, resolver)),
                nats: Box::new(move |resolver, options| serve_nats(for_nats, resolver, options)),
            });
            let dead_letters = host_dead_letters(spec, ctx);
            ctx.status.push(ModuleStatus { name, placement, upstream: None, instances: None, dead_letters });
            // The wires serve the implementation itself; this process calls it counted.
            return Ok((spec.metered)(api));
        }
        (Placement::Local, None) => anyhow::bail!("{name} cannot run here: this binary was built without the `{name}-local` feature"),
        (Placement::Http, _) => {
            let base_url = module.url.clone().with_context(|| format!("modules.{name}.url is required when {name} is remote over HTTP"))?;
            let upstream = ctx.guard(name, "http", &module)?;
            let rpc = RpcClient::new(shared_kernel::wire::RpcClientConfig {
                base_url,
                upstream,
                service_name: ctx.settings.server.service_name.clone(),
                service_token: ctx.settings.auth.service_token.clone(),
                discovery: shared_kernel::discovery::DiscoveryPolicy {
                    resolve_every: std::time::Duration::from_secs(module.resolve_every_secs.max(1)),
                    eject_for: std::time::Duration::from_secs(module.eject_cooldown_secs),
                },
            })
            .map_err(|error| anyhow::anyhow!("cannot build the client for {name}: {error}"))?;
            let dead_letters: Arc<dyn DeadLettersApi> =
                Arc::new(dead_letters_contract::http_wire::Client::as_name(spec.dead_letters, rpc.clone()));
            ctx.dead_letter_admin.push(dead_letters.clone());
            let counted = rpc.clone();
            let instances: InstanceCount = Arc::new(move || {
                let rpc = counted.clone();
                Box::pin(async move { rpc.instances().await })
            });
            let upstream = Some(rpc.upstream().clone());
            ctx.status.push(ModuleStatus { name, placement, upstream, instances: Some(instances), dead_letters: Some(dead_letters) });
            (spec.http_client)(rpc)
        }
        (Placement::Nats, _) => {
            let client = ctx.nats.clone().with_context(|| format!("modules.{name}.wire is `nats` but nats.url is not set"))?;
            let (prefix, token) = (ctx.settings.nats.subject_prefix.clone(), ctx.settings.auth.service_token.clone());
            let upstream = ctx.guard(name, "nats", &module)?;
            let dead_letters = NatsClient::new(client.clone(), spec.dead_letters, prefix.clone(), upstream.clone(), token.clone());
            let dead_letters: Arc<dyn DeadLettersApi> = Arc::new(dead_letters_contract::nats_wire::Client::new(dead_letters));
            ctx.dead_letter_admin.push(dead_letters.clone());
            let (counting, counted_prefix) = (client.clone(), prefix.clone());
            let instances: InstanceCount = Arc::new(move || {
                let (client, prefix) = (counting.clone(), counted_prefix.clone());
                Box::pin(async move {
                    shared_kernel::nats_wire::count_instances(&client, name, &prefix, std::time::Duration::from_millis(250)).await
                })
            });
            let status = ModuleStatus {
                name,
                placement,
                upstream: Some(upstream.clone()),
                instances: Some(instances),
                dead_letters: Some(dead_letters),
            };
            ctx.status.push(status);
            (spec.nats_client)(NatsClient::new(client, name, prefix, upstream, token))
        }
        (Placement::NotDeployed, _) => {
            ctx.status.push(ModuleStatus { name, placement, upstream: None, instances: None, dead_letters: None });
            tracing::warn!(
                "the {name} module is not deployed with this process (set modules.{name}.url, or modules.{name}.wire = \"nats\", to reach it): its operations answer 503"
            );
            return Ok((spec.not_deployed)());
        }
    };
    let (probe_api, probe) = (api.clone(), spec.probe);
    ctx.readiness.push(ReadinessCheck {
        name: format!("{name}.remote"),
        probe: Arc::new(move || probe(probe_api.clone())),
        required: true,
    });
    // An open circuit: this process refuses every call to the module, so it is not ready.
    if let Some(upstream) = ctx.upstreams.iter().find(|upstream| upstream.module() == name).cloned() {
        let circuit = move || -> BoxFuture<'static, bool> {
            let closed = upstream.circuit_status() != shared_kernel::resilience::CircuitStatus::Open;
            Box::pin(std::future::ready(closed))
        };
        ctx.readiness.push(ReadinessCheck { name: format!("{name}.circuit"), probe: Arc::new(circuit), required: true });
    }
    Ok(api)
}

/// Serves the dead letters of hosted module `spec` (those of its consumers, in its database)
/// through their contract: to the admin API here, and on this process's wires for the others.
fn host_dead_letters<A: ?Sized + Send + Sync + 'static>(spec: &ModuleSpec<A>, ctx: &mut Context) -> Option<Arc<dyn DeadLettersApi>> {
    let store = ctx.dead_letters.iter().find(|store| store.module() == spec.name)?;
    let api: Arc<dyn DeadLettersApi> = Arc::new(LocalDeadLetters::new(store.clone(), ctx.bus.clone()));
    ctx.dead_letter_admin.push(api.clone());
    let (for_http, for_nats, wire_name) = (api.clone(), api.clone(), spec.dead_letters);
    ctx.wires.push(HostedWire {
        name: wire_name,
        router: Box::new(move |resolver| dead_letters_contract::http_wire::router_as(wire_name, for_http, resolver)),
        nats: Box::new(move |resolver, options| {
            Box::pin(dead_letters_contract::nats_wire::serve_as(wire_name, for_nats, resolver, options))
        }),
    });
    Some(api)
}

/// Places every module of the list, in its order (`crate::modules` gives it).
pub(crate) type PlaceAll = for<'a> fn(&'a mut Context) -> BoxFuture<'a, anyhow::Result<ModuleHandles>>;

/// Builds every module's adapter as configured (`place_all` places each, in the list's order),
/// and serves the hosted ones on the wires that are configured (HTTP routes for
/// `server.internal_addr`, NATS services when `nats.url` is set). The edge's own consumers (the
/// GraphQL feeds, kept answers) subscribe afterwards ([`Composition::subscribe`]).
///
/// # Errors
/// A database that cannot be reached or migrated, unreadable keys, NATS that cannot be reached,
/// a module configured in a way this binary or configuration cannot satisfy.
pub(crate) async fn compose(settings: &Settings, place_all: PlaceAll) -> anyhow::Result<Composition> {
    let clock: Arc<dyn Clock> = Arc::new(shared_kernel::SystemClock);
    let nats = match settings.nats.options(&settings.server.service_name) {
        Some(options) => Some(shared_kernel::nats_wire::connect(&options).await?),
        None => None,
    };
    let bus: Arc<dyn EventBus> = match (settings.events.bus, &nats) {
        (crate::config::BusKind::Nats, Some(client)) => {
            let streams = shared_kernel::jetstream_bus::JetStreamSettings {
                prefix: settings.nats.subject_prefix.clone(),
                ..shared_kernel::jetstream_bus::JetStreamSettings::default()
            };
            Arc::new(shared_kernel::jetstream_bus::JetStreamBus::new(
                client.clone(),
                streams,
                settings.events.retry_policy(),
                clock.clone(),
            ))
        }
        (crate::config::BusKind::Nats, None) => anyhow::bail!("events.bus = \"nats\" needs nats.url"),
        (crate::config::BusKind::InProcess, _) => Arc::new(InProcessBus::new(settings.events.retry_policy()).with_clock(clock.clone())),
    };
    let mut readiness = Vec::new();
    if let Some(client) = nats.clone() {
        let connected = move || -> BoxFuture<'static, bool> {
            Box::pin(std::future::ready(client.connection_state() == async_nats::connection::State::Connected))
        };
        readiness.push(ReadinessCheck { name: "nats".to_owned(), probe: Arc::new(connected), required: true });
    }
    let mut ctx = Context {
        settings: settings.clone(),
        bus: bus.clone(),
        clock,
        nats: nats.clone(),
        handles: Placed::default(),
        readiness,
        local_modules: Vec::new(),
        dead_letters: Vec::new(),
        dead_letter_admin: Vec::new(),
        background: Vec::new(),
        wires: Vec::new(),
        subscriptions: Vec::new(),
        upstreams: Vec::new(),
        status: Vec::new(),
    };

    let modules = place_all(&mut ctx).await?;
    if settings.events.bus == crate::config::BusKind::InProcess {
        for (consumer, types) in &ctx.subscriptions {
            warn_of_unseen_events(consumer, types, &ctx.local_modules);
        }
    }

    let verifier = TokenVerifier::new(
        Arc::new(ContractKeySource { users: modules.users.clone() }),
        TokenPolicy { issuer: settings.auth.issuer.clone(), audience: settings.auth.audience.clone(), leeway_secs: 5 },
    );
    let resolver: Arc<dyn CallerResolver> = Arc::new(TokenCallerResolver {
        verifier: verifier.clone(),
        service_token: settings.auth.service_token.clone(),
        accept_service_callers: false,
        services: Vec::new(),
    });
    let internal_resolver: Arc<dyn CallerResolver> = Arc::new(TokenCallerResolver {
        verifier,
        service_token: settings.auth.service_token.clone(),
        accept_service_callers: true,
        services: crate::module_list::service_names(),
    });

    let mut internal_routes = Router::new();
    let mut nats_services = Vec::new();
    if nats.is_some() && !ctx.wires.is_empty() {
        anyhow::ensure!(
            settings.auth.service_token.is_some() || settings.server.allow_unauthenticated_internal,
            "serving modules over NATS needs auth.service_token (or server.allow_unauthenticated_internal = true, for development only)"
        );
    }
    for wire in std::mem::take(&mut ctx.wires) {
        internal_routes = internal_routes.merge((wire.router)(internal_resolver.clone()));
        if let Some(client) = &nats {
            let options = ServeOptions {
                client: client.clone(),
                subject_prefix: settings.nats.subject_prefix.clone(),
                service_token: settings.auth.service_token.clone(),
                max_in_flight: settings.nats.max_in_flight.max(1),
            };
            let name = wire.name;
            nats_services
                .push((wire.nats)(internal_resolver.clone(), options).await.with_context(|| format!("cannot serve {name} over NATS"))?);
        }
    }
    Ok(Composition {
        modules,
        bus,
        events_in_process: settings.events.bus == crate::config::BusKind::InProcess,
        dead_letters: ctx.dead_letters,
        dead_letter_admin: ctx.dead_letter_admin,
        background: ctx.background,
        resolver,
        readiness: ctx.readiness,
        internal_routes,
        nats_services,
        local_modules: ctx.local_modules,
        status: ctx.status,
    })
}

impl Composition {
    /// Subscribes `consumer` (one of the edge's own: the GraphQL feeds, kept answers) to this
    /// process's bus, warning as for the modules' consumers when it would miss events.
    ///
    /// # Errors
    /// The bus refuses the subscription.
    pub async fn subscribe(&self, consumer: shared_kernel::events::Consumer) -> anyhow::Result<()> {
        let (name, types) = (consumer.name.clone(), consumer.event_types.clone());
        self.bus.subscribe(consumer).await.with_context(|| format!("cannot subscribe {name}"))?;
        if self.events_in_process {
            warn_of_unseen_events(&name, &types, &self.local_modules);
        }
        Ok(())
    }
}

/// With the in-process bus, events of a module running elsewhere never reach this process: says
/// which of `consumer`'s modules' events it misses.
fn warn_of_unseen_events(consumer: &str, types: &[String], local_modules: &[&'static str]) {
    let mut remote: Vec<&str> = types.iter().filter_map(|t| t.split('.').next()).filter(|module| !local_modules.contains(module)).collect();
    remote.sort_unstable();
    remote.dedup();
    for module in remote {
        tracing::warn!(
            consumer = %consumer,
            module,
            "events.bus is in_process and {module} runs elsewhere: {consumer} will not see {module}'s events (set events.bus = \"nats\")"
        );
    }
}

/// A module as the CLI sees it: where it runs and how its database is migrated.
pub struct ModuleInfo {
    pub name: &'static str,
    pub compiled_local: bool,
    pub settings: fn(&ModulesSettings) -> &ModuleSettings,
    pub own_url: fn(&crate::config::DatabaseSettings) -> Option<&String>,
    pub migrate: fn(sea_orm::DatabaseConnection) -> BoxFuture<'static, Result<(), sea_orm::DbErr>>,
}

impl ModuleInfo {
    /// Whether the module runs in this process under `settings`.
    ///
    /// # Errors
    /// A configuration this binary cannot satisfy (see [`placement_of`]).
    pub fn is_local(&self, settings: &Settings) -> anyhow::Result<bool> {
        let placement = placement_of(self.name, (self.settings)(&settings.modules), self.compiled_local, settings.nats.url.is_some())?;
        Ok(placement == Placement::Local)
    }
}

pub(crate) fn migrator<M: migrations::MigratorTrait>(db: sea_orm::DatabaseConnection) -> BoxFuture<'static, Result<(), sea_orm::DbErr>> {
    Box::pin(async move { M::up(&db, None).await })
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

    fn module(mode: Option<ModuleMode>, url: Option<&str>, wire: Wire) -> ModuleSettings {
        ModuleSettings { mode, url: url.map(str::to_owned), wire, ..ModuleSettings::default() }
    }

    #[test]
    fn placement_follows_what_is_compiled_in_and_configured() {
        use Placement::{Http, Local, Nats, NotDeployed};
        let (http, nats) = (Wire::Http, Wire::Nats);
        // Unset: local if compiled in (whatever the wire), else remote if reachable, else not deployed.
        assert_eq!(placement_of("m", &module(None, None, http), true, false).unwrap(), Local);
        assert_eq!(placement_of("m", &module(None, None, nats), true, true).unwrap(), Local, "a hosted module ignores wire");
        assert_eq!(placement_of("m", &module(None, Some("http://m"), http), false, false).unwrap(), Http);
        assert_eq!(placement_of("m", &module(None, None, nats), false, true).unwrap(), Nats, "over NATS no URL is needed");
        assert_eq!(placement_of("m", &module(None, None, http), false, true).unwrap(), NotDeployed);
        // Asked for explicitly: it must be possible, else start-up fails loudly.
        assert!(placement_of("m", &module(Some(ModuleMode::Local), None, http), false, false).is_err());
        assert!(placement_of("m", &module(Some(ModuleMode::Remote), None, http), true, false).is_err(), "HTTP needs a URL");
        assert!(placement_of("m", &module(Some(ModuleMode::Remote), None, nats), true, false).is_err(), "NATS needs nats.url");
        assert!(placement_of("m", &module(None, None, nats), false, false).is_err(), "NATS needs nats.url");
        assert_eq!(placement_of("m", &module(Some(ModuleMode::Remote), Some("http://m"), http), true, false).unwrap(), Http);
        assert_eq!(placement_of("m", &module(Some(ModuleMode::Remote), None, nats), true, true).unwrap(), Nats);
        assert_eq!(placement_of("m", &module(Some(ModuleMode::NotDeployed), None, http), true, true).unwrap(), NotDeployed);
    }
}

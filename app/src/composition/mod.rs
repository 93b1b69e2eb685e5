//! Which adapter each module gets: its implementation in this process (`local`), a client of its
//! contract over HTTP or over NATS (`remote`), or "not deployed". Every build links every
//! module's clients on both wires; a module's implementation is linked by its `<m>-local`
//! feature. Configuration picks among what is linked; asking for something that is not stops
//! start-up with a clear error.
//!
//! Each module is described once ([`ModuleSpec`], in its directory under `crate::modules`) and
//! placed by one code path ([`place`]), in the order of the module list (`crate::modules`).

use crate::config::Settings;
use crate::module_list::{ModuleHandles, Placed};
use anyhow::Context as _;
use axum::Router;
use futures::future::BoxFuture;
use shared_kernel::auth::{KeySource, TokenPolicy, TokenVerifier};
use shared_kernel::events::{EventBus, InProcessBus};
use shared_kernel::nats_wire::{NatsService, ServeOptions};
use shared_kernel::outbox::DeadLetterStore;
use shared_kernel::outbox::admin::DeadLettersApi;
use shared_kernel::wire::{CallerResolver, TokenCallerResolver};
use shared_kernel::{ApiError, Caller, Clock};
use std::sync::Arc;
use tokio::sync::watch;
use users_contract::UsersApi;

mod context;
mod placement;

pub(crate) use context::Context;
use context::HostedWire;
#[allow(unused_imports)] // unused in a build with no local module (the gateway)
pub(crate) use context::{Hosted, open_database};
pub(crate) use placement::{HostFn, ModuleSpec, Serving, migrator, place};
pub use placement::{InstanceCount, ModuleInfo, ModuleStatus, Placement, placement_of};

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
    /// What calls on this process's internal wire (HTTP and NATS) must prove, when
    /// `auth.trusted` is set: one gate, so an assertion is accepted once whichever wire it came on.
    pub wire_gate: Option<Arc<shared_kernel::identity::WireGate>>,
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
        identity: identity(settings)?,
        tls_files: settings.tls.files(),
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
        services_verified_by_wire: false,
    });
    let wire_gate = wire_gate(settings)?;
    let internal_resolver: Arc<dyn CallerResolver> = Arc::new(TokenCallerResolver {
        verifier,
        service_token: settings.auth.service_token.clone(),
        accept_service_callers: true,
        services: crate::module_list::service_names(),
        services_verified_by_wire: wire_gate.is_some(),
    });

    let mut internal_routes = Router::new();
    let mut nats_services = Vec::new();
    if nats.is_some() && !ctx.wires.is_empty() {
        anyhow::ensure!(
            settings.internal_wire_guarded() || settings.server.allow_unauthenticated_internal,
            "serving modules over NATS needs auth.trusted (or auth.service_token; or server.allow_unauthenticated_internal = true, for development only)"
        );
    }
    for wire in std::mem::take(&mut ctx.wires) {
        internal_routes = internal_routes.merge((wire.router)(internal_resolver.clone()));
        if nats.is_some() {
            // Each service on a connection of its own: the broker lets a connection answer a
            // request once (`allow_responses`), and a discovery request (`$SRV.PING`) is one
            // request that every service answers.
            let name = format!("{}/{}", settings.server.service_name, wire.name);
            let options = settings.nats.options(&name).context("nats.url is set")?;
            let client = shared_kernel::nats_wire::connect(&options).await?;
            let options = ServeOptions {
                client,
                subject_prefix: settings.nats.subject_prefix.clone(),
                service_token: settings.auth.service_token.clone(),
                max_in_flight: settings.nats.max_in_flight.max(1),
                gate: wire_gate.clone(),
            };
            let name = wire.name;
            nats_services
                .push((wire.nats)(internal_resolver.clone(), options).await.with_context(|| format!("cannot serve {name} over NATS"))?);
        }
    }
    Ok(Composition {
        modules,
        bus,
        wire_gate,
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

/// This process's identity, from `auth.identity_seed_file`.
fn identity(settings: &Settings) -> anyhow::Result<Option<Arc<shared_kernel::identity::ServiceIdentity>>> {
    let Some(file) = &settings.auth.identity_seed_file else { return Ok(None) };
    let seed = std::fs::read_to_string(file).with_context(|| format!("cannot read auth.identity_seed_file {}", file.display()))?;
    let identity = shared_kernel::identity::ServiceIdentity::from_seed(settings.identity_process(), &seed)
        .map_err(|error| anyhow::anyhow!("auth.identity_seed_file {}: {error}", file.display()))?;
    tracing::info!(process = identity.process(), public_key = %identity.public_key(), "calls are signed with this process's identity");
    Ok(Some(Arc::new(identity)))
}

/// The gate of the internal wire, when `auth.trusted` names processes.
fn wire_gate(settings: &Settings) -> anyhow::Result<Option<Arc<shared_kernel::identity::WireGate>>> {
    if settings.auth.trusted.is_empty() {
        return Ok(None);
    }
    let trusted = shared_kernel::identity::TrustedProcesses::new(&settings.trusted_keys())
        .map_err(|error| anyhow::anyhow!("auth.trusted: {error}"))?;
    let known = crate::module_list::service_names();
    let speaks_as = settings
        .auth
        .trusted
        .iter()
        .map(|(process, trusted)| {
            let names = known.iter().copied().filter(|name| trusted.services.iter().any(|service| service == name.as_str())).collect();
            (process.clone(), names)
        })
        .collect();
    Ok(Some(Arc::new(shared_kernel::identity::WireGate::new(trusted, speaks_as))))
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

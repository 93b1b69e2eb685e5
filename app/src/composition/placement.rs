//! Where each module runs and how it is placed: its [`ModuleSpec`] (in its directory under
//! `crate::modules`), the rule that picks local, HTTP, NATS or not deployed ([`placement_of`]),
//! and [`place`], the one code path that hosts a module or builds the client of its wire.

use crate::config::{ModuleMode, ModuleSettings, ModulesSettings, Settings, Wire};
use anyhow::Context as _;
use axum::Router;
use futures::future::BoxFuture;
use shared_kernel::nats_wire::{NatsClient, NatsService, ServeOptions, WireError};
use shared_kernel::outbox::admin::{self as dead_letters_contract, DeadLettersApi, LocalDeadLetters};
use shared_kernel::resilience::Upstream;
use shared_kernel::wire::{CallerResolver, RpcClient};
use std::sync::Arc;

use super::*;

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

/// A readiness probe.
type Probe = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

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
    /// Whether its last background probe answered (remote modules).
    pub reachable: Option<Probe>,
}

/// How often a remote module that answers is probed in the background (one that does not, every
/// second, so its return shows at once). Readiness and the status read the last result: neither
/// makes a call on a client's behalf.
pub const REMOTE_PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Probes remote module `name` with `live` in a background task (each probe bounded by 2 s),
/// keeps `remote_module_up{module}` and logs each change; returns the reader of the last result
/// (down until the first probe answers).
fn probed_in_background(ctx: &mut Context, name: &'static str, live: Probe) -> Probe {
    use std::sync::atomic::{AtomicBool, Ordering};
    let last = Arc::new(AtomicBool::new(false));
    let seen = last.clone();
    ctx.background(Box::new(move |mut stop| {
        Box::pin(async move {
            let mut first = true;
            loop {
                let probe = shared_kernel::resilience::probing(live());
                let up = tokio::time::timeout(std::time::Duration::from_secs(2), probe).await.unwrap_or(false);
                let was = seen.swap(up, Ordering::AcqRel);
                metrics::gauge!("remote_module_up", "module" => name).set(if up { 1.0 } else { 0.0 });
                match (first, was, up) {
                    (_, false, true) => tracing::info!(module = name, "the remote module answers"),
                    (true, _, false) | (false, true, false) => {
                        tracing::warn!(module = name, "the remote module does not answer; its operations answer 503, the rest is served")
                    }
                    _ => {}
                }
                first = false;
                tokio::select! {
                    () = tokio::time::sleep(if up { REMOTE_PROBE_EVERY } else { std::time::Duration::from_secs(1) }) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    }));
    Arc::new(move || Box::pin(std::future::ready(last.load(Ordering::Acquire))))
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
    /// A real call through the HTTP wire: it proves the address, this process's identity and
    /// the remote's own health at once. (Over NATS, an instance answering discovery does.)
    pub probe: fn(Arc<A>) -> BoxFuture<'static, bool>,
    /// Hosts the module in this process; `None` when its implementation is not compiled in.
    pub host: Option<HostFn<A>>,
}

/// A module's NATS service starting.
pub(crate) type Serving = BoxFuture<'static, Result<NatsService, WireError>>;

pub(crate) type HostFn<A> = for<'a> fn(&'a mut Context) -> BoxFuture<'a, anyhow::Result<Arc<A>>>;

/// Places module `spec`: hosts it, or builds the client of its wire, or its "not deployed"
/// adapter.
pub(crate) async fn place<A: ?Sized + Send + Sync + 'static>(spec: &ModuleSpec<A>, ctx: &mut Context) -> anyhow::Result<Arc<A>> {
    let name = spec.name;
    let module = (spec.settings)(&ctx.settings.modules).clone();
    let placement = placement_of(name, &module, spec.host.is_some(), ctx.nats.is_some())?;
    let mut nats_probe: Option<Probe> = None;
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
            ctx.status.push(ModuleStatus { name, placement, upstream: None, instances: None, dead_letters, reachable: None });
            // The wires serve the implementation itself; this process calls it counted.
            return Ok((spec.metered)(api));
        }
        (Placement::Local, None) => anyhow::bail!("{name} cannot run here: this binary was built without the `{name}-local` feature"),
        (Placement::Http, _) => {
            let base_url = module.url.clone().with_context(|| format!("modules.{name}.url is required when {name} is remote over HTTP"))?;
            let upstream = ctx.guard(name, "http", &module)?;
            // The server must be a process that may host the module: its own kind, or the
            // monolith (not another kind of the deployment holding a certificate of the CA).
            let tls = match &ctx.tls_files {
                Some(files) => Some(shared_kernel::tls::client_config_for(files, name, &[name, "monolith"]).context("[tls]")?),
                None => None,
            };
            let rpc = RpcClient::new(shared_kernel::wire::RpcClientConfig {
                base_url,
                upstream,
                service_name: ctx.settings.server.service_name.clone(),
                service_token: ctx.settings.auth.service_token.clone(),
                identity: ctx.identity.clone(),
                tls,
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
            ctx.status.push(ModuleStatus {
                name,
                placement,
                upstream,
                instances: Some(instances),
                dead_letters: Some(dead_letters),
                reachable: None,
            });
            (spec.http_client)(rpc)
        }
        (Placement::Nats, _) => {
            let client = ctx.nats.clone().with_context(|| format!("modules.{name}.wire is `nats` but nats.url is not set"))?;
            let (prefix, token) = (ctx.settings.nats.subject_prefix.clone(), ctx.settings.auth.service_token.clone());
            let upstream = ctx.guard(name, "nats", &module)?;
            let dead_letters = NatsClient::new(client.clone(), spec.dead_letters, prefix.clone(), upstream.clone(), token.clone())
                .with_identity(ctx.identity.clone());
            let dead_letters: Arc<dyn DeadLettersApi> = Arc::new(dead_letters_contract::nats_wire::Client::new(dead_letters));
            ctx.dead_letter_admin.push(dead_letters.clone());
            let (counting, counted_prefix) = (client.clone(), prefix.clone());
            let instances: InstanceCount = Arc::new(move || {
                let (client, prefix) = (counting.clone(), counted_prefix.clone());
                Box::pin(async move {
                    shared_kernel::nats_wire::count_instances(&client, name, &prefix, std::time::Duration::from_millis(250)).await
                })
            });
            // Over NATS the module is up when an instance answers discovery: a process may call
            // only the operations its part needs (the broker's permissions), not a probe's.
            let counted = instances.clone();
            nats_probe = Some(Arc::new(move || {
                let counted = counted.clone();
                Box::pin(async move { counted().await > 0 }) as BoxFuture<'static, bool>
            }));
            let status = ModuleStatus {
                name,
                placement,
                upstream: Some(upstream.clone()),
                instances: Some(instances),
                dead_letters: Some(dead_letters),
                reachable: None,
            };
            ctx.status.push(status);
            (spec.nats_client)(NatsClient::new(client, name, prefix, upstream, token).with_identity(ctx.identity.clone()))
        }
        (Placement::NotDeployed, _) => {
            ctx.status.push(ModuleStatus { name, placement, upstream: None, instances: None, dead_letters: None, reachable: None });
            tracing::warn!(
                "the {name} module is not deployed with this process (set modules.{name}.url, or modules.{name}.wire = \"nats\", to reach it): its operations answer 503"
            );
            return Ok((spec.not_deployed)());
        }
    };
    let (probe_api, probe) = (api.clone(), spec.probe);
    let live = nats_probe.unwrap_or_else(|| Arc::new(move || probe(probe_api.clone())));
    // Readiness is about this process: a remote module that does not answer, or whose circuit
    // is open, is reported (`degraded`) and its own operations answer 503, but the process
    // stays in its load balancer for everything else.
    let probe = probed_in_background(ctx, name, live);
    if let Some(status) = ctx.status.iter_mut().rev().find(|status| status.name == name) {
        status.reachable = Some(probe.clone());
    }
    ctx.readiness.push(ReadinessCheck { name: format!("{name}.remote"), probe, required: false });
    if let Some(upstream) = ctx.upstreams.iter().find(|upstream| upstream.module() == name).cloned() {
        let circuit = move || -> BoxFuture<'static, bool> {
            let closed = upstream.circuit_status() != shared_kernel::resilience::CircuitStatus::Open;
            Box::pin(std::future::ready(closed))
        };
        ctx.readiness.push(ReadinessCheck { name: format!("{name}.circuit"), probe: Arc::new(circuit), required: false });
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

//! What placing the modules builds up ([`Context`]): readiness checks, dead letters, relays,
//! wires to serve, subscriptions, and the guards of remote modules; and a hosted module's own
//! database.

use crate::config::{ModuleSettings, Settings};
use crate::module_list::Placed;
use anyhow::Context as _;
use axum::Router;
use futures::future::BoxFuture;
use shared_kernel::Clock;
use shared_kernel::events::EventBus;
use shared_kernel::nats_wire::ServeOptions;
use shared_kernel::outbox::DeadLetterStore;
use shared_kernel::outbox::admin::DeadLettersApi;
use shared_kernel::resilience::{AlwaysOpen, CallGate, Upstream};
use shared_kernel::wire::CallerResolver;
use std::sync::Arc;

use super::*;

/// What the modules composed so far add to the process, and what hosting one needs.
#[allow(dead_code)] // partly unused in a build with no local module (the gateway)
pub(crate) struct Context {
    pub settings: Settings,
    pub bus: Arc<dyn EventBus>,
    pub clock: Arc<dyn Clock>,
    pub(super) nats: Option<async_nats::Client>,
    /// This process's identity, which signs every call its clients make.
    pub(super) identity: Option<Arc<shared_kernel::identity::ServiceIdentity>>,
    /// The TLS files of this process's calls over the HTTP wire (`[tls]`).
    pub(super) tls_files: Option<shared_kernel::tls::TlsFiles>,
    pub handles: Placed,
    pub(super) readiness: Vec<ReadinessCheck>,
    pub(super) local_modules: Vec<&'static str>,
    pub(super) dead_letters: Vec<DeadLetterStore>,
    pub(super) dead_letter_admin: Vec<Arc<dyn DeadLettersApi>>,
    pub(super) background: Vec<BackgroundTask>,
    pub(super) wires: Vec<HostedWire>,
    /// Every consumer subscribed here: its name and the event types it reads.
    pub(super) subscriptions: Vec<(String, Vec<String>)>,
    /// The guards of the remote modules, as placed.
    pub(super) upstreams: Vec<Arc<Upstream>>,
    pub(super) status: Vec<ModuleStatus>,
}

/// How a hosted module's wires are served, once the process's caller resolver exists.
pub(super) struct HostedWire {
    pub(super) name: &'static str,
    pub(super) router: Box<dyn FnOnce(Arc<dyn CallerResolver>) -> Router + Send>,
    pub(super) nats: Box<dyn FnOnce(Arc<dyn CallerResolver>, ServeOptions) -> Serving + Send>,
}

/// A module hosted here: its own database and outbox.
#[allow(dead_code)] // unused in a build with no local module (the gateway)
pub(crate) struct Hosted {
    pub database: sea_orm::DatabaseConnection,
    pub outbox: shared_kernel::outbox::Outbox,
}

#[allow(dead_code)] // unused in a build with no local module (the gateway)
impl Context {
    /// Registers a hosted module's database check, dead letters and outbox relay, and makes
    /// ready what its events go through (its stream, over JetStream).
    ///
    /// # Errors
    /// The bus refuses (over JetStream: unavailable, or a broker user without the rights).
    pub async fn host(
        &mut self,
        name: &'static str,
        hosted: Hosted,
        ping: impl Fn() -> BoxFuture<'static, bool> + Send + Sync + 'static,
    ) -> anyhow::Result<()> {
        self.bus.prepare_publisher(name).await.with_context(|| format!("cannot prepare the {name} module's events"))?;
        self.readiness.push(ReadinessCheck { name: format!("{name}.database"), probe: Arc::new(ping), required: true });
        self.dead_letters.push(DeadLetterStore::new(hosted.database.clone(), name).with_clock(self.clock.clone()));
        let relay = shared_kernel::outbox::Relay::new(hosted.database, hosted.outbox, self.bus.clone())
            .with_poll_interval(std::time::Duration::from_millis(self.settings.events.relay_poll_ms.max(10)));
        self.background.push(Box::new(move |stop| Box::pin(relay.run(stop))));
        Ok(())
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
    pub(super) fn guard(&mut self, name: &'static str, transport: &'static str, module: &ModuleSettings) -> anyhow::Result<Arc<Upstream>> {
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

//! Black-box harness: `spawn_app(topology)` starts cleave on port 0 with fresh databases and
//! returns typed helpers. Every suite runs against each topology:
//! - the monolith on SQLite, and on PostgreSQL;
//! - the extracted topology: a backend process hosting the modules behind a gateway that
//!   reaches them all remotely, both real servers talking HTTP, or NATS;
//! - orders apart: orders in a process of its own, over HTTP or NATS;
//! - the preset binaries as OS processes, in four layouts ([`Layout`]), each process on a
//!   PostgreSQL database of its own.

pub mod processes;

pub use processes::{Layout, OsProcess, Preset};

use cleave::config::{AdminBootstrap, ModuleMode, ModuleSettings, Settings, Wire};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use shared_kernel::Secret;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::oneshot;

pub const ADMIN_EMAIL: &str = "admin@cleave.test";
pub const ADMIN_PASSWORD: &str = "admin password for tests";
pub const PASSWORD: &str = "correct horse battery staple";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Monolith(Database),
    /// A gateway in front of a users service.
    Extracted(Database),
    /// The strangler step for orders: orders in a process of its own (reaching users, catalog and
    /// payments over their wires, as the service `orders`), everything else in the backend
    /// process, a gateway in front of both.
    OrdersApart(Database),
    /// [`Topology::Extracted`] with every module reached over NATS (no addresses).
    ExtractedOverNats(Database),
    /// [`Topology::OrdersApart`] with every module reached over NATS.
    OrdersApartOverNats(Database),
    /// The preset binaries started as OS processes, as users run them (on PostgreSQL).
    Processes(Layout),
}

impl Topology {
    pub fn database(self) -> Database {
        match self {
            Self::Monolith(database)
            | Self::Extracted(database)
            | Self::OrdersApart(database)
            | Self::ExtractedOverNats(database)
            | Self::OrdersApartOverNats(database) => database,
            Self::Processes(_) => Database::Postgres,
        }
    }

    /// Whether the public API is served in front of other processes.
    pub fn is_split(self) -> bool {
        !matches!(self, Self::Monolith(_) | Self::Processes(Layout::Monolith))
    }

    /// Whether orders runs in a process of its own.
    pub fn orders_apart(self) -> bool {
        matches!(
            self,
            Self::OrdersApart(_)
                | Self::OrdersApartOverNats(_)
                | Self::Processes(Layout::ServicesOverNats | Layout::OrdersAndPaymentsApart)
        )
    }

    /// Whether the process serving the public API hosts users itself (else it reaches users
    /// over a wire).
    pub fn edge_hosts_users(self) -> bool {
        matches!(self, Self::Monolith(_) | Self::Processes(Layout::Monolith | Layout::PaymentsApart | Layout::OrdersAndPaymentsApart))
    }

    /// The wire between the processes.
    pub fn wire(self) -> Wire {
        if matches!(self, Self::ExtractedOverNats(_) | Self::OrdersApartOverNats(_) | Self::Processes(Layout::ServicesOverNats)) {
            Wire::Nats
        } else {
            Wire::Http
        }
    }

    /// Whether events cross the processes on JetStream.
    pub fn events_on_nats(self) -> bool {
        self.wire() == Wire::Nats || (self.is_split() && matches!(self, Self::Processes(_)))
    }
}

/// Everything every test process logs, at debug level, so tests can prove what is never logged.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = CaptureWriter(buffer.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(processes::LOG_FILTER))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        buffer
    })
}

#[derive(Clone)]
struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs on the users process's composition before it serves: tests subscribe their own
/// consumers to its bus this way.
pub type ComposeHook = Arc<dyn Fn(&cleave::composition::Composition) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// One running server.
struct Server {
    catalog: Arc<dyn catalog_contract::CatalogApi>,
    modules: cleave::graphql::Modules,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts a server; returns it with its public and (if any) internal base URLs.
    async fn start(settings: Settings, hook: Option<&ComposeHook>) -> anyhow::Result<(Self, String, Option<String>)> {
        let settings_tls = settings.tls.files().is_some();
        let application = cleave::Application::build(settings).await?;
        if let Some(hook) = hook {
            hook(application.composition()).await;
        }
        let address = format!("http://{}", application.local_addr());
        let scheme = if settings_tls { "https" } else { "http" };
        let internal = application.internal_addr().map(|addr| format!("{scheme}://{addr}"));
        let modules = application.composition().modules.clone();
        let catalog = modules.catalog.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = application
                .run_until(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok((Self { catalog, modules, stop: Some(stop), task }, address, internal))
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

/// A running topology and a client for it.
pub struct TestApp {
    pub address: String,
    /// The users process's internal listener (extracted topology only).
    pub internal_address: Option<String>,
    pub topology: Topology,
    pub client: reqwest::Client,
    /// The data directory of the process hosting users (its key file is there).
    pub users_data_dir: PathBuf,
    users_settings: Settings,
    users_server: Option<Server>,
    orders_server: Option<Server>,
    gateway: Option<Server>,
    /// The OS processes of a [`Topology::Processes`] topology, the one serving the public API
    /// last.
    os_processes: Vec<OsProcess>,
    /// Each OS process's PostgreSQL database, by process name (kept across restarts).
    databases: std::collections::BTreeMap<&'static str, String>,
    /// How each OS process was started (by name), to start it again.
    launched: std::collections::BTreeMap<String, (Preset, Settings)>,
    /// The processes killed by [`TestApp::kill_process`], with where they stood in
    /// `os_processes`.
    killed: Vec<(usize, OsProcess)>,
    hook: Option<ComposeHook>,
    process_options: ProcessOptions,
    /// `cleave trust init`'s output, in a split topology.
    pub trust: Option<TopologyTrust>,
    /// The topology's own broker, when its wire or events are on NATS.
    nats_server: Option<cleave_test_support::nats::OwnNatsServer>,
    temp: tempfile::TempDir,
}

impl TestApp {
    /// The first token of the NATS subjects of this topology, when it uses NATS.
    pub fn nats_prefix(&self) -> Option<String> {
        self.users_settings.nats.url.as_ref().map(|_| self.users_settings.nats.subject_prefix.clone())
    }
}

/// Every module's settings.
fn modules_mut(settings: &mut Settings) -> impl Iterator<Item = &mut ModuleSettings> {
    settings.modules.each_mut().into_iter().map(|(_, module)| module)
}

/// Every module's name, in composition order (each has a `<name>-service` preset).
fn module_names() -> Vec<&'static str> {
    cleave::modules::infos().iter().map(|module| module.name).collect()
}

/// Makes `module` remote over `wire`: at `url` over HTTP, by name over NATS.
fn remote(module: &mut ModuleSettings, wire: Wire, url: &str) {
    module.mode = Some(ModuleMode::Remote);
    module.wire = wire;
    module.url = (wire == Wire::Http).then(|| url.to_owned());
}

/// A port nobody listens on now, for a process whose address another must know before it
/// starts. Taken below Linux's ephemeral range (32768 and up): a port from that range, once
/// released, can go to any outgoing connection or `bind(0)` before the process binds it.
fn free_port() -> std::net::SocketAddr {
    use rand::Rng as _;
    let mut rng = rand::rng();
    (0..1_000)
        .map(|_| std::net::SocketAddr::from(([127, 0, 0, 1], rng.random_range(20_000..32_000))))
        .find(|addr| std::net::TcpListener::bind(addr).is_ok())
        .expect("a free port below the ephemeral range")
}

/// What `cleave trust init` made for one split topology: every process kind's identity, its
/// certificate and its broker user, as an operator's deployment has them. No secret is shared
/// between processes.
pub struct TopologyTrust {
    pub dir: PathBuf,
}

impl TopologyTrust {
    /// Runs `cleave trust init` into `dir`.
    ///
    /// # Panics
    /// When it fails.
    pub fn init(dir: PathBuf) -> Self {
        cleave::trust::init(&dir, &cleave::trust::InitOptions::default()).expect("cleave trust init");
        Self { dir }
    }

    /// The lines of process kind `kind`'s env file.
    pub fn env(&self, kind: &str) -> Vec<(String, String)> {
        cleave::trust::read_env(&self.dir.join(format!("{kind}.env"))).expect("the process kind's env file")
    }

    /// `settings` as a process of `kind` started with its env file has them.
    pub fn apply(&self, settings: &mut Settings, kind: &str) {
        *settings = settings.with_env_pairs(&self.env(kind)).unwrap_or_else(|error| panic!("{kind}'s env file: {error:#}"));
    }

    /// The identity of process kind `kind` (its key on file): what an attacker who stole it holds.
    pub fn identity(&self, kind: &str) -> shared_kernel::identity::ServiceIdentity {
        let seed = std::fs::read_to_string(self.dir.join(format!("{kind}.nk"))).expect("the key file");
        shared_kernel::identity::ServiceIdentity::from_seed(kind, &seed).expect("a key")
    }

    /// An HTTP client presenting process kind `kind`'s certificate and trusting only the
    /// deployment's CA: what reaches the internal HTTP wire at all.
    pub fn http_client(&self, kind: &str) -> reqwest::Client {
        let files = shared_kernel::tls::TlsFiles {
            ca: self.dir.join("ca.pem"),
            certificate: self.dir.join(format!("{kind}.crt")),
            key: self.dir.join(format!("{kind}.key")),
        };
        shared_kernel::tls::install_default_provider();
        let tls = shared_kernel::tls::client_config(&files).expect("the TLS files");
        reqwest::Client::builder().tls_backend_preconfigured(tls).build().expect("a client")
    }

    /// A connection to the topology's broker at `url` as process kind `kind` (its nkey, its
    /// certificate, its inbox).
    ///
    /// # Errors
    /// The broker refuses it.
    pub async fn nats_client(&self, kind: &str, url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
        self.nats_options(kind).connect(url).await
    }

    /// The connection options of process kind `kind` on the topology's broker (its nkey, its
    /// certificate, its inbox), for a test to add to.
    pub fn nats_options(&self, kind: &str) -> async_nats::ConnectOptions {
        let seed = std::fs::read_to_string(self.dir.join(format!("{kind}.nk"))).expect("the key file");
        self.tls_only_options(kind).nkey(seed.trim().to_owned()).custom_inbox_prefix(format!("_INBOX_{kind}"))
    }

    /// Adds a broker user to the topology's `nats.conf` that may read every subject and publish
    /// none: the eyes of a test on everything that crosses the broker. No deployment has one
    /// (`cleave trust init` never writes it). Call it before the topology starts; returns the
    /// options to connect as it.
    ///
    /// # Panics
    /// When the file cannot be read or written.
    pub fn add_watcher(&self) -> async_nats::ConnectOptions {
        let watcher = shared_kernel::identity::ServiceIdentity::generate("watcher");
        let path = self.dir.join("nats.conf");
        let conf = std::fs::read_to_string(&path).expect("nats.conf");
        let end = conf.rfind("  ]\n}").expect("the users list of nats.conf");
        let user = format!(
            "    # watcher (a test's, full read)\n    {{\n      nkey: \"{}\"\n      permissions: {{\n        publish: {{ deny: \">\" }}\n        subscribe: {{ allow: \">\" }}\n      }}\n    }}\n",
            watcher.public_key()
        );
        std::fs::write(&path, format!("{}{user}{}", &conf[..end], &conf[end..])).expect("nats.conf written");
        let seed = watcher.seed().expect("a seed");
        self.tls_only_options("gateway").nkey(seed.expose().clone())
    }

    /// TLS with process kind `kind`'s certificate, and no broker credentials at all.
    pub fn tls_only_options(&self, kind: &str) -> async_nats::ConnectOptions {
        async_nats::ConnectOptions::new()
            .add_root_certificates(self.dir.join("ca.pem"))
            .add_client_certificate(self.dir.join(format!("{kind}.crt")), self.dir.join(format!("{kind}.key")))
            .require_tls(true)
            .connection_timeout(std::time::Duration::from_secs(5))
            .max_reconnects(Some(1))
    }
}

fn base_settings(data_dir: &Path) -> Settings {
    let mut settings = Settings::default();
    settings.server.addr = "127.0.0.1:0".parse().expect("a socket address");
    settings.data_dir = data_dir.to_owned();
    settings.database.max_connections = 5;
    // The suites send far more from one address than a client would; the limiter has its own
    // tests (`tests/api/edge.rs`, `rate_limit`).
    settings.server.rate_limit.enabled = false;
    settings
}

/// Starts `topology` with fresh databases. `None` when it needs PostgreSQL and none is
/// available outside CI (the harness says so loudly; under CI it panics instead).
pub async fn spawn_app(topology: Topology) -> Option<TestApp> {
    spawn_app_with(topology, |_| {}, None).await
}

/// [`spawn_app`] with settings changed for the users process, and a hook run on its
/// composition at every start.
pub async fn spawn_app_with(topology: Topology, configure: impl FnOnce(&mut Settings), hook: Option<ComposeHook>) -> Option<TestApp> {
    spawn(topology, configure, hook, ProcessOptions::default()).await
}

/// Changes the settings of OS process `name` (`orders`, `monolith`, …) once its layout has made
/// them, before it starts.
pub type ProcessHook = Arc<dyn Fn(&str, &mut Settings) + Send + Sync>;

/// What the OS processes of a topology get beyond the test's settings.
#[derive(Default)]
pub struct ProcessOptions {
    /// Environment variables for every process (beside `PATH` and `NO_COLOR`).
    pub env: Vec<(String, String)>,
    /// Run on each process's settings last.
    pub adjust: Option<ProcessHook>,
    /// The topology's trust files, made by the test beforehand (else the topology makes them).
    pub trust: Option<TopologyTrust>,
}

/// The OS processes of `layout`, with `configure` applied to the test's settings and `options`
/// to each process.
pub async fn spawn_processes(layout: Layout, configure: impl FnOnce(&mut Settings), options: ProcessOptions) -> Option<TestApp> {
    spawn(Topology::Processes(layout), configure, None, options).await
}

async fn spawn(
    topology: Topology,
    configure: impl FnOnce(&mut Settings),
    hook: Option<ComposeHook>,
    mut options: ProcessOptions,
) -> Option<TestApp> {
    log_buffer();
    // The HTTP clients take the process's TLS provider.
    shared_kernel::tls::install_default_provider();
    let temp = tempfile::tempdir().expect("a temporary directory");
    let users_dir = temp.path().join("users");
    let mut users_settings = base_settings(&users_dir);
    users_settings.admin_bootstrap = Some(AdminBootstrap { email: ADMIN_EMAIL.into(), password: Secret::new(ADMIN_PASSWORD.into()) });
    let database = topology.database();
    // A split topology runs as a deployment does: `cleave trust init`'s identities, certificates
    // and broker configuration, no shared secret.
    // (The OS-process monolith has its internal listener too, as `cleave trust init`'s files
    // give it.)
    let trust = (topology.is_split() || matches!(topology, Topology::Processes(_)))
        .then(|| options.trust.take().unwrap_or_else(|| TopologyTrust::init(temp.path().join("trust"))));
    if let Some(trust) = trust.as_ref().filter(|_| topology.is_split()) {
        users_settings.server.internal_addr = Some("127.0.0.1:0".parse().expect("a socket address"));
        if !matches!(topology, Topology::Processes(_)) {
            // The backend process hosts every module: the monolith's kind.
            trust.apply(&mut users_settings, "monolith");
        }
    }
    let mut nats_server = None;
    if topology.events_on_nats() {
        // A broker of the topology's own, from the generated nats.conf (TLS, one user per
        // process kind with its permissions).
        let conf = trust.as_ref().map(|trust| trust.dir.join("nats.conf"));
        let server = cleave_test_support::nats::OwnNatsServer::start_with(conf.as_deref())?;
        users_settings.nats.url = Some(server.url());
        // Events cross the processes too, on JetStream.
        users_settings.events.bus = cleave::config::BusKind::Nats;
        nats_server = Some(server);
    }
    if topology.orders_apart() && !matches!(topology, Topology::Processes(_)) {
        users_settings.modules.orders.mode = Some(ModuleMode::NotDeployed);
    }
    configure(&mut users_settings);
    if database == Database::Postgres {
        let server = cleave_test_support::postgres()?;
        // OS processes get a database each, made as they first start.
        if !matches!(topology, Topology::Processes(_)) {
            users_settings.database.url = Some(server.fresh_database().await.expect("a fresh PostgreSQL database"));
        }
    }
    let mut app = TestApp {
        address: String::new(),
        internal_address: None,
        topology,
        client: reqwest::Client::new(),
        users_data_dir: users_dir,
        users_settings,
        users_server: None,
        orders_server: None,
        gateway: None,
        os_processes: Vec::new(),
        databases: std::collections::BTreeMap::new(),
        launched: std::collections::BTreeMap::new(),
        killed: Vec::new(),
        hook,
        process_options: options,
        trust,
        nats_server,
        temp,
    };
    app.start().await;
    Some(app)
}

/// The processes go first, keeping their logs when the test failed; then the topology's broker.
impl Drop for TestApp {
    fn drop(&mut self) {
        // The processes go first (they would make their streams again), keeping their logs
        // when the test failed.
        if std::thread::panicking() && self.os_processes.is_empty() {
            // In-process servers log to the shared buffer (every test's lines): its errors and
            // warnings are what a failed request left behind.
            let logs = captured_logs();
            let lines: Vec<&str> = logs.lines().filter(|line| line.contains(" ERROR ") || line.contains(" WARN ")).collect();
            eprintln!(
                "--- the last errors and warnings logged in this test process:\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        if std::thread::panicking() && !self.os_processes.is_empty() {
            for process in &self.os_processes {
                eprintln!("--- the last lines of {}'s log:\n{}", process.name, process.tail(60));
            }
            self.temp.disable_cleanup(true);
            eprintln!("--- every process's log and configuration is kept in {}", self.temp.path().display());
        }
        for process in &mut self.os_processes {
            process.kill();
        }
        // The topology's broker (if any) goes with it: its store is in its own directory.
        self.nats_server.take();
    }
}

impl TestApp {
    /// The topology's trust files.
    ///
    /// # Panics
    /// In a topology that is not split (it has none).
    pub fn trust(&self) -> &TopologyTrust {
        self.trust.as_ref().expect("a split topology has its trust files")
    }

    /// The PostgreSQL database of every OS process started so far (empty for in-process
    /// topologies).
    pub fn database_urls(&self) -> Vec<String> {
        self.databases.values().cloned().collect()
    }

    /// The topology's own broker, for the test to stop and start again (it stops for good
    /// when the test drops it).
    ///
    /// # Panics
    /// In a topology with no NATS, or when taken already.
    pub fn take_broker(&mut self) -> cleave_test_support::nats::OwnNatsServer {
        self.nats_server.take().expect("a topology on NATS has a broker of its own")
    }

    async fn start(&mut self) {
        if let Topology::Processes(layout) = self.topology {
            return self.start_processes(layout).await;
        }
        let (users_server, users_address, internal) =
            Server::start(self.users_settings.clone(), self.hook.as_ref()).await.expect("the users process starts");
        self.users_server = Some(users_server);
        self.internal_address = internal.clone();
        if !self.topology.is_split() {
            self.address = users_address;
            return;
        }
        let mut gateway_settings = base_settings(&self.temp.path().join("gateway"));
        gateway_settings.server.service_name = "gateway".into();
        self.trust().apply(&mut gateway_settings, "gateway");
        gateway_settings.nats = self.users_settings.nats.clone();
        gateway_settings.events.bus = self.users_settings.events.bus;
        // The gateway serves the public API, GraphQL included: it follows the test's settings.
        gateway_settings.graphql = self.users_settings.graphql.clone();
        gateway_settings.server.rate_limit = self.users_settings.server.rate_limit.clone();
        // The backend process hosts every module; the gateway reaches them all remotely.
        let internal = internal.expect("the backend process has an internal listener");
        let wire = self.topology.wire();
        for module in modules_mut(&mut gateway_settings) {
            remote(module, wire, &internal);
        }
        if self.topology.orders_apart() {
            let (orders, orders_internal) = self.start_orders(&internal).await;
            self.orders_server = Some(orders);
            remote(&mut gateway_settings.modules.orders, wire, &orders_internal);
        }
        let (gateway, address, _) = Server::start(gateway_settings, None).await.expect("the gateway starts");
        self.gateway = Some(gateway);
        self.address = address;
    }

    /// The orders process of [`Topology::OrdersApart`]: its own database (a file of its own, or its
    /// schema on the backend's PostgreSQL database), every other module over `backend`'s wire.
    async fn start_orders(&self, backend: &str) -> (Server, String) {
        let mut settings = base_settings(&self.temp.path().join("orders"));
        settings.server.service_name = "orders".into();
        settings.server.internal_addr = Some("127.0.0.1:0".parse().expect("a socket address"));
        self.trust().apply(&mut settings, "orders");
        settings.database.url = self.users_settings.database.url.clone();
        settings.orders = self.users_settings.orders.clone();
        settings.nats = self.users_settings.nats.clone();
        settings.events.bus = self.users_settings.events.bus;
        let wire = self.topology.wire();
        for (name, module) in settings.modules.each_mut() {
            if name == "orders" {
                module.mode = Some(ModuleMode::Local);
            } else {
                remote(module, wire, backend);
            }
        }
        let (server, _, internal) = Server::start(settings, None).await.expect("the orders process starts");
        (server, internal.expect("the orders process has an internal listener"))
    }

    /// Starts the OS processes of `layout`, each service before those that call it, and waits
    /// until all are ready.
    async fn start_processes(&mut self, layout: Layout) {
        let mut started = Vec::new();
        let users_host = match layout {
            Layout::Monolith => {
                let settings = self.process_settings("monolith").await;
                started.push(self.launch(Preset::Monolith, "monolith", &settings).await);
                "monolith"
            }
            Layout::ServicesOverNats => {
                // One process per module, each after those it calls, then the gateway.
                let services = module_names().into_iter().map(|name| (name, Preset::Service(name))).chain([("gateway", Preset::Gateway)]);
                for (name, preset) in services {
                    let mut settings = self.process_settings(name).await;
                    // Every module it does not host is reached by name over NATS.
                    for module in modules_mut(&mut settings) {
                        module.wire = Wire::Nats;
                    }
                    if preset == Preset::Gateway {
                        settings.server.internal_addr = None;
                        settings.database.url = None;
                    }
                    started.push(self.launch(preset, name, &settings).await);
                }
                "users"
            }
            Layout::PaymentsApart => {
                // Payments verifies its callers' tokens with the users module's keys, and the
                // monolith calls payments: the monolith's internal port is chosen first.
                let monolith_internal = free_port();
                let payments = self.launch_payments(monolith_internal).await;
                let mut settings = self.process_settings("monolith").await;
                settings.server.internal_addr = Some(monolith_internal);
                remote(&mut settings.modules.payments, Wire::Http, payments.internal.as_deref().expect("an internal listener"));
                started.push(payments);
                started.push(self.launch(Preset::Monolith, "monolith", &settings).await);
                "monolith"
            }
            Layout::OrdersAndPaymentsApart => {
                // Orders and payments call the monolith and it calls them (see above).
                let monolith_internal = free_port();
                let payments = self.launch_payments(monolith_internal).await;
                let payments_url = payments.internal.clone().expect("an internal listener");
                started.push(payments);
                let mut orders = self.process_settings("orders").await;
                orders.admin_bootstrap = None;
                for module in [&mut orders.modules.users, &mut orders.modules.catalog] {
                    remote(module, Wire::Http, &format!("https://{monolith_internal}"));
                }
                remote(&mut orders.modules.payments, Wire::Http, &payments_url);
                orders.modules.orders.mode = Some(ModuleMode::Local);
                // Every module this layout does not place is left out of the orders process.
                for (name, module) in orders.modules.each_mut() {
                    if !["users", "catalog", "payments", "orders"].contains(&name) {
                        module.mode = Some(ModuleMode::NotDeployed);
                    }
                }
                let orders = self.launch(Preset::Monolith, "orders", &orders).await;
                let mut settings = self.process_settings("monolith").await;
                settings.server.internal_addr = Some(monolith_internal);
                remote(&mut settings.modules.orders, Wire::Http, orders.internal.as_deref().expect("an internal listener"));
                remote(&mut settings.modules.payments, Wire::Http, &payments_url);
                started.push(orders);
                started.push(self.launch(Preset::Monolith, "monolith", &settings).await);
                "monolith"
            }
        };
        for process in &mut started {
            process.wait_ready(&self.client).await.unwrap_or_else(|error| panic!("{error:#}"));
        }
        self.address = started.last().expect("a process").address.clone();
        self.users_data_dir = self.temp.path().join(users_host);
        self.os_processes = started;
    }

    /// The default binary hosting only payments, reaching users at the monolith's internal
    /// listener (to verify its callers' tokens).
    async fn launch_payments(&mut self, monolith_internal: std::net::SocketAddr) -> OsProcess {
        let mut settings = self.process_settings("payments").await;
        settings.admin_bootstrap = None;
        remote(&mut settings.modules.users, Wire::Http, &format!("https://{monolith_internal}"));
        for (name, module) in settings.modules.each_mut() {
            match name {
                "payments" => module.mode = Some(ModuleMode::Local),
                "users" => {}
                _ => module.mode = Some(ModuleMode::NotDeployed),
            }
        }
        self.launch(Preset::Monolith, "payments", &settings).await
    }

    /// The test's settings for OS process `name`: a data directory, a database and a name of its
    /// own, both listeners on free ports.
    async fn process_settings(&mut self, name: &'static str) -> Settings {
        let mut settings = self.users_settings.clone();
        settings.data_dir = self.temp.path().join(name);
        settings.server.service_name = name.to_owned();
        settings.server.addr = "127.0.0.1:0".parse().expect("a socket address");
        settings.server.internal_addr = Some("127.0.0.1:0".parse().expect("a socket address"));
        // Its identity comes from `cleave trust init`'s env file for it (see `launch_as_is`).
        settings.auth.service_token = None;
        settings.auth.identity_seed_file = None;
        settings.auth.identity_process = None;
        settings.auth.trusted.clear();
        settings.log.filter = processes::LOG_FILTER.to_owned();
        if !self.databases.contains_key(name) {
            let server = cleave_test_support::postgres().expect("PostgreSQL (checked when the topology was made)");
            self.databases.insert(name, server.fresh_database().await.expect("a fresh PostgreSQL database"));
        }
        settings.database.url = self.databases.get(name).cloned();
        settings
    }

    /// Starts process `name` with `settings`, changed by the test's [`ProcessHook`] if it has one.
    async fn launch(&mut self, preset: Preset, name: &str, settings: &Settings) -> OsProcess {
        let mut settings = settings.clone();
        if let Some(adjust) = &self.process_options.adjust {
            adjust(name, &mut settings);
        }
        self.launch_as_is(preset, name, &settings).await
    }

    /// Starts process `name` with exactly `settings`.
    async fn launch_as_is(&mut self, preset: Preset, name: &str, settings: &Settings) -> OsProcess {
        self.launched.insert(name.to_owned(), (preset, settings.clone()));
        let binary = tokio::task::spawn_blocking(move || processes::preset_binary(preset)).await.expect("the build task");
        // The process's identity, certificate and broker user, as an operator gives them:
        // `cleave trust init`'s env file for its kind (a replica is the same kind:
        // `server.service_name`), made once per topology.
        let kind = settings.server.service_name.clone();
        let mut env = self.trust.as_ref().map(|trust| trust.env(&kind)).unwrap_or_default();
        env.extend(self.process_options.env.iter().cloned());
        OsProcess::start(&binary, name, settings, &self.temp.path().join(name), &env).await.unwrap_or_else(|error| panic!("{error:#}"))
    }

    /// Kills OS process `name` (`users`, `catalog`, `orders`, `payments`, `gateway` or
    /// `monolith`, as the layout has them) at once, as a crash would: SIGKILL, nothing drained.
    ///
    /// # Panics
    /// When this topology has no such process running.
    pub fn kill_process(&mut self, name: &str) {
        let index = self.os_processes.iter().position(|process| process.name == name).unwrap_or_else(|| panic!("no process {name}"));
        let mut process = self.os_processes.remove(index);
        process.kill();
        self.killed.push((index, process));
    }

    /// Sends OS process `name` SIGTERM, as an orchestrator stopping it does, and returns at once;
    /// [`TestApp::wait_exit`] waits for it to finish, [`TestApp::revive_process`] starts it again.
    ///
    /// # Panics
    /// When this topology has no such process running.
    pub fn terminate_process(&mut self, name: &str) {
        let index = self.os_processes.iter().position(|process| process.name == name).unwrap_or_else(|| panic!("no process {name}"));
        let process = self.os_processes.remove(index);
        process.terminate();
        self.killed.push((index, process));
    }

    /// Waits up to `within` for terminated process `name` to exit: its status, `None` if it
    /// still runs.
    ///
    /// # Panics
    /// When `name` was not terminated or killed.
    pub async fn wait_exit(&mut self, name: &str, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let (_, process) =
            self.killed.iter_mut().find(|(_, process)| process.name == name).unwrap_or_else(|| panic!("{name} was not stopped"));
        process.wait_exit(within).await
    }

    /// Everything OS process `name` logged so far, running or stopped.
    ///
    /// # Panics
    /// When this topology has no such process.
    pub fn process_log(&self, name: &str) -> String {
        let process = self.os_processes.iter().chain(self.killed.iter().map(|(_, process)| process)).find(|process| process.name == name);
        process.unwrap_or_else(|| panic!("no process {name}")).log()
    }

    /// The names of the OS processes running now.
    pub fn process_names(&self) -> Vec<String> {
        self.os_processes.iter().map(|process| process.name.clone()).collect()
    }

    /// The public base URL of OS process `name`, running or stopped.
    ///
    /// # Panics
    /// When this topology has no such process.
    pub fn process_url(&self, name: &str) -> String {
        let process = self.os_processes.iter().chain(self.killed.iter().map(|(_, process)| process)).find(|process| process.name == name);
        process.unwrap_or_else(|| panic!("no process {name}")).address.clone()
    }

    /// Starts a process killed by [`TestApp::kill_process`] again, on its ports, its settings
    /// and its database, and waits until it is ready.
    ///
    /// # Panics
    /// When `name` was not killed, or does not start.
    pub async fn revive_process(&mut self, name: &str) {
        let at = self.killed.iter().position(|(_, process)| process.name == name).unwrap_or_else(|| panic!("{name} was not killed"));
        let (index, old) = self.killed.remove(at);
        let (preset, mut settings) = self.launched.get(name).cloned().expect("a launched process");
        fn address(url: &str) -> std::net::SocketAddr {
            url.trim_start_matches("https://").trim_start_matches("http://").parse().expect("a socket address")
        }
        settings.server.addr = address(&old.address);
        settings.server.internal_addr = old.internal.as_deref().map(address);
        let mut process = self.launch_as_is(preset, name, &settings).await;
        process.wait_ready(&self.client).await.unwrap_or_else(|error| panic!("{error:#}"));
        self.os_processes.insert(index.min(self.os_processes.len()), process);
    }

    /// Starts `name`, a second instance of OS process `of`: the same preset, settings and
    /// database, ports and a data directory of its own. Waits until it is ready.
    ///
    /// # Panics
    /// When `of` was never launched, or the replica does not start.
    pub async fn start_replica(&mut self, of: &str, name: &str) {
        let (preset, mut settings) = self.launched.get(of).cloned().unwrap_or_else(|| panic!("no process {of}"));
        settings.data_dir = self.temp.path().join(name);
        settings.server.service_name = of.to_owned();
        settings.server.addr = "127.0.0.1:0".parse().expect("a socket address");
        if settings.server.internal_addr.is_some() {
            settings.server.internal_addr = Some("127.0.0.1:0".parse().expect("a socket address"));
        }
        let mut process = self.launch_as_is(preset, name, &settings).await;
        process.wait_ready(&self.client).await.unwrap_or_else(|error| panic!("{error:#}"));
        self.os_processes.push(process);
    }

    /// Everything logged so far: by this test process (every test's lines, at debug level) and
    /// by each OS process of this topology.
    pub fn logs(&self) -> String {
        let mut logs = captured_logs();
        for process in self.os_processes.iter().chain(self.killed.iter().map(|(_, process)| process)) {
            logs.push_str(&process.log());
        }
        logs
    }

    /// Stops every process of the topology and starts it again on the same databases and keys,
    /// after `change` to the users process's settings.
    pub async fn restart_with(&mut self, change: impl FnOnce(&mut Settings)) {
        self.restart_with_hook(change, self.hook.clone()).await;
    }

    /// [`TestApp::restart_with`], with another composition hook from now on.
    pub async fn restart_with_hook(&mut self, change: impl FnOnce(&mut Settings), hook: Option<ComposeHook>) {
        self.hook = hook;
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await;
        }
        if let Some(orders) = self.orders_server.take() {
            orders.shutdown().await;
        }
        if let Some(server) = self.users_server.take() {
            server.shutdown().await;
        }
        // The edge first, then the services behind it.
        while let Some(process) = self.os_processes.pop() {
            process.stop(std::time::Duration::from_secs(15)).await;
        }
        change(&mut self.users_settings);
        self.start().await;
    }

    /// The NATS subject prefix of this topology's processes (NATS topologies only).
    pub fn nats_subject_prefix(&self) -> Option<&str> {
        self.users_settings.nats.url.as_ref().map(|_| self.users_settings.nats.subject_prefix.as_str())
    }

    /// The URL of the topology's broker, when it has one.
    pub fn nats_url(&self) -> Option<String> {
        self.users_settings.nats.url.clone()
    }

    /// The catalog as the process hosting the modules reaches it (in process).
    pub fn composition_catalog(&self) -> Arc<dyn catalog_contract::CatalogApi> {
        self.users_server.as_ref().expect("a running topology").catalog.clone()
    }

    /// The module contracts as the process hosting the modules reaches them (for component
    /// tests of the GraphQL schema).
    pub fn composition_modules(&self) -> cleave::graphql::Modules {
        self.users_server.as_ref().expect("a running topology").modules.clone()
    }

    /// Runs a GraphQL document over HTTP; returns the response body.
    pub async fn graphql(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let response = self.post_json("/graphql", &json!({"query": query, "variables": variables}), token).await;
        assert_eq!(response.status(), StatusCode::OK, "GraphQL answers 200 with errors in the body");
        response.json().await.expect("a GraphQL response")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.request(Method::GET, path);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("the request is sent")
    }

    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        let mut request = self.request(Method::POST, path).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("the request is sent")
    }

    pub async fn register(&self, email: &str) -> Response {
        self.post_json("/api/users/register", &json!({"email": email, "password": PASSWORD, "name": "Test User"}), None).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json("/api/auth/login", &json!({"email": email, "password": password}), None).await
    }

    /// Registers and logs in; returns the token pair body.
    pub async fn customer(&self, email: &str) -> Value {
        assert_eq!(self.register(email).await.status(), StatusCode::CREATED);
        let response = self.login(email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("a token pair")
    }

    pub async fn admin_token(&self) -> String {
        let response = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK, "the bootstrap admin logs in");
        let body: Value = response.json().await.expect("a token pair");
        body["access_token"].as_str().expect("an access token").to_owned()
    }

    /// A valid access token for a new customer that never registered (signed with the real key):
    /// many buyers without a registration and login each.
    pub fn mint_customer_token(&self) -> String {
        let (kid, pem) = self.signing_key_pem();
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "sub": uuid::Uuid::now_v7().to_string(), "roles": ["customer"], "exp": now + 600, "iat": now,
            "iss": "cleave", "aud": "cleave-api", "jti": uuid::Uuid::now_v7().to_string(),
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(kid);
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).expect("an Ed25519 key"))
            .expect("a token")
    }

    /// The private signing key of the users process (PKCS#8 PEM), to forge tokens with.
    pub fn signing_key_pem(&self) -> (String, String) {
        let file: Value =
            serde_json::from_str(&std::fs::read_to_string(self.users_data_dir.join("signing-keys.json")).expect("the key file"))
                .expect("JSON");
        let key = &file["keys"][0];
        (key["kid"].as_str().expect("kid").to_owned(), key["private_key_pem"].as_str().expect("pem").to_owned())
    }
}

/// Reads a problem+json response and checks its media type and status.
pub async fn problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(content_type.starts_with("application/problem+json"), "content type was {content_type}");
    let body: Value = response.json().await.expect("a JSON problem");
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().is_some_and(|t| t.starts_with("/problems/")), "{body}");
    assert!(body["title"].is_string() && body["detail"].is_string(), "{body}");
    body
}

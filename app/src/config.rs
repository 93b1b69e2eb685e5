//! Settings: defaults → optional TOML file → environment (`CLEAVE_` prefix, `__` between
//! levels: `CLEAVE_SERVER__ADDR=0.0.0.0:8080`). Every key is listed in docs/configuration.md.

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use shared_kernel::Secret;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    /// Where embedded databases and development keys live.
    pub data_dir: PathBuf,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub modules: ModulesSettings,
    pub nats: NatsSettings,
    pub catalog: CatalogSettings,
    pub cache: CacheSettings,
    pub orders: OrdersSettings,
    pub payments: PaymentsSettings,
    pub notifications: NotificationsSettings,
    pub events: EventSettings,
    pub graphql: GraphqlSettings,
    pub log: LogSettings,
    /// From `ADMIN_EMAIL` and `ADMIN_PASSWORD` (not a file key: credentials stay out of files).
    #[serde(skip)]
    pub admin_bootstrap: Option<AdminBootstrap>,
}

/// The admin account to ensure at start-up.
#[derive(Debug, Clone)]
pub struct AdminBootstrap {
    pub email: String,
    pub password: Secret<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub addr: SocketAddr,
    /// Largest request body accepted (bytes); larger gets 413.
    pub body_limit_bytes: usize,
    /// Bound on handling one request (seconds); past it the client gets 503.
    pub request_timeout_secs: u64,
    /// Origins allowed by CORS; empty allows none, `["*"]` allows any.
    pub cors_allowed_origins: Vec<String>,
    /// Take the client address from the first `X-Forwarded-For` entry (only behind a proxy
    /// that sets it).
    pub trust_forwarded_for: bool,
    /// This process's name: the `User-Agent` of its calls to other services.
    pub service_name: String,
    /// Where the wire routes of the modules hosted here (`/rpc/<module>/…`) are served, with
    /// `/health/*`. Unset: not served at all (a monolith needs none). Keep it on an internal
    /// network; with `auth.service_token` set every call there must carry that token.
    pub internal_addr: Option<SocketAddr>,
    /// Serve `internal_addr` without `auth.service_token` (development only: then anyone who
    /// reaches it can call the modules hosted here).
    pub allow_unauthenticated_internal: bool,
    /// On SIGTERM, how long the requests, NATS calls and background work in flight may take to
    /// finish before they are cut off (seconds).
    pub shutdown_grace_secs: u64,
    /// On SIGTERM, how long the listeners go on accepting while readiness already answers 503,
    /// so a load balancer stops sending first (milliseconds; 0: stop accepting at once).
    pub shutdown_delay_ms: u64,
    /// Per-client rate limiting of the public API (`/api/*`, `/graphql`).
    pub rate_limit: RateLimitSettings,
}

/// `server.rate_limit`: requests per client (the token's subject when the request carries a
/// valid one, else the client address), in memory, per process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// The sustained rate one client may keep up.
    pub per_second: u32,
    /// How many requests one client may send at once above that rate.
    pub burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self { enabled: true, per_second: 100, burst: 200 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// One PostgreSQL server for every module (`postgres://user@host/db`): each module gets its
    /// own schema there. Unset: one SQLite file per module in `data_dir` (a `sqlite:` URL here
    /// would put every module in one file, so it is refused: use `data_dir`).
    pub url: Option<String>,
    /// The users module's own database URL, overriding `url`.
    pub users_url: Option<String>,
    /// The catalog module's own database URL, overriding `url`.
    pub catalog_url: Option<String>,
    /// The orders module's own database URL, overriding `url`.
    pub orders_url: Option<String>,
    /// The payments module's own database URL, overriding `url`.
    pub payments_url: Option<String>,
    /// The notifications module's own database URL, overriding `url`.
    pub notifications_url: Option<String>,
    /// Pool size per module.
    pub max_connections: u32,
    /// Apply pending migrations at start-up.
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    /// At most 900.
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    /// The signing key file (see `cleave keys generate`). Default: `<data_dir>/signing-keys.json`.
    pub keys_file: Option<PathBuf>,
    /// The key set itself, as JSON in the key-file format (takes precedence over the file).
    pub keys_json: Option<Secret<String>>,
    /// Create the key file with a new key when it is missing (development). Turn off in
    /// production so a missing key is an error, not a silent new identity.
    pub generate_keys: bool,
    pub login_per_account_per_minute: u32,
    pub login_per_address_per_minute: u32,
    /// Shared token for service-to-service calls made on a service's own behalf.
    pub service_token: Option<Secret<String>>,
}

/// Event delivery: retries of failing consumers and the outbox relay.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventSettings {
    /// Attempts per consumer before an event is dead-lettered.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles per attempt, ±50 % jitter.
    pub base_delay_ms: u64,
    /// Cap on the delay between attempts.
    pub max_delay_ms: u64,
    /// The relay's fallback poll; a commit wakes it at once anyway.
    pub relay_poll_ms: u64,
    /// Which bus carries the events: in this process only, or NATS JetStream (needs `nats.url`),
    /// across processes.
    pub bus: BusKind,
}

/// The event bus adapter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    /// Events reach the consumers of this process only.
    #[default]
    InProcess,
    /// NATS JetStream: a stream per publishing module, a durable consumer per subscriber.
    Nats,
}

impl Default for EventSettings {
    fn default() -> Self {
        let policy = shared_kernel::events::RetryPolicy::default();
        Self {
            max_attempts: policy.max_attempts,
            base_delay_ms: policy.base_delay_ms,
            max_delay_ms: policy.max_delay_ms,
            relay_poll_ms: 1_000,
            bus: BusKind::InProcess,
        }
    }
}

impl EventSettings {
    pub fn retry_policy(&self) -> shared_kernel::events::RetryPolicy {
        shared_kernel::events::RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            base_delay_ms: self.base_delay_ms,
            max_delay_ms: self.max_delay_ms,
        }
    }
}

/// `ModulesSettings`, with a field per module (`modules.<name>`) and the lists of them, from one
/// list of names: the struct and its lists cannot disagree.
macro_rules! modules_settings {
    ($($name:ident),+ $(,)?) => {
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct ModulesSettings {
            $(pub $name: ModuleSettings,)+
        }

        impl ModulesSettings {
            /// Every module's settings, by name.
            pub fn each(&self) -> Vec<(&'static str, &ModuleSettings)> {
                vec![$((stringify!($name), &self.$name),)+]
            }

            /// Every module's settings, by name, to change.
            pub fn each_mut(&mut self) -> Vec<(&'static str, &mut ModuleSettings)> {
                vec![$((stringify!($name), &mut self.$name),)+]
            }
        }
    };
}

modules_settings!(users, catalog, orders, payments, notifications);

/// The payments module's own settings (where it runs locally): the built-in simulated card
/// processor's behaviour beyond its published test numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsSettings {
    /// Latency added to every provider call, in milliseconds.
    pub simulator_latency_ms: u64,
    /// Share (0.0–1.0) of otherwise approved charges that fail as a provider error.
    pub simulator_failure_rate: f64,
    /// A charge still pending after this many seconds lost its caller (a crash): reading or
    /// refunding it asks the provider what happened. Keep it above the longest provider call.
    pub pending_timeout_secs: u64,
}

impl Default for PaymentsSettings {
    fn default() -> Self {
        Self { simulator_latency_ms: 0, simulator_failure_rate: 0.0, pending_timeout_secs: 60 }
    }
}

/// The notifications module's own settings (where it runs locally): how notifications are sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsSettings {
    /// `log` (the default: each notification is written to the log) or `smtp` (an email
    /// through `notifications.smtp`).
    pub delivery: DeliveryKind,
    pub smtp: SmtpSettings,
}

/// Which adapter sends notifications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    #[default]
    Log,
    Smtp,
}

/// The SMTP server notifications are sent through (`notifications.delivery = "smtp"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    /// `starttls` (the default), `tls` (from the first byte, usually port 465) or `none`
    /// (plain text: only for a server on the same host, or a test sink).
    pub tls: SmtpTls,
    /// With `password`: log in. Neither: send without authentication.
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
    /// The `From:` address, as `Shop <shop@example.com>` or `shop@example.com`.
    pub sender: String,
    /// Bound on connecting and on each SMTP command, in seconds.
    pub timeout_secs: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 587,
            tls: SmtpTls::StartTls,
            username: None,
            password: None,
            sender: "cleave <noreply@localhost>".to_owned(),
            timeout_secs: 10,
        }
    }
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    None,
    #[serde(rename = "starttls")]
    StartTls,
    Tls,
}

/// The GraphQL endpoint's limits (`POST /graphql`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphqlSettings {
    /// Deepest selection nesting a query may have.
    pub max_depth: usize,
    /// Highest complexity a query may have: each field counts 1, a list of `first: n` counts n
    /// times what it selects.
    pub max_complexity: usize,
    /// Most fields one operation may select at its root.
    pub max_root_fields: usize,
    /// Most aliases one query may use.
    pub max_aliases: usize,
    /// Most subscriptions one WebSocket connection may hold open at once.
    pub max_subscriptions_per_socket: usize,
    /// Whether the schema answers introspection (`__schema`, `__type`): the playground needs it.
    pub introspection: bool,
    /// How often a subscription also checks its order through the contract (for processes that
    /// do not see orders' events on their own bus), in milliseconds.
    pub subscription_poll_ms: u64,
    /// Bytes of answers to public catalog queries kept in this process (0: none kept). Each is
    /// dropped on any catalog change, and `cache.ttl_ms` after it was kept at the latest.
    pub response_cache_max_bytes: u64,
}

impl Default for GraphqlSettings {
    fn default() -> Self {
        Self {
            max_depth: 10,
            max_complexity: 2_000,
            max_root_fields: 10,
            max_aliases: 20,
            max_subscriptions_per_socket: 32,
            introspection: true,
            subscription_poll_ms: 2_000,
            response_cache_max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The orders module's own settings (where it runs locally): how it runs its sagas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersSettings {
    /// How long `POST /api/orders` waits for the saga before answering 202 with the order still
    /// `pending` (it then finishes in the background). Keep it below the gateway's
    /// `modules.orders.timeout_ms` when orders is remote.
    pub placement_wait_ms: u64,
    /// Calls per saga step while the catalog or payments answers "unavailable": past it a
    /// reserve or a charge fails the order (compensated); later steps are left to the sweep.
    pub step_attempts: u32,
    /// The first retry's delay within a step, doubling per attempt.
    pub step_retry_delay_ms: u64,
    /// A saga with no progress for this long is resumed by the recovery sweep (at start-up every
    /// unfinished saga is resumed at once).
    pub stale_after_secs: u64,
    /// How often the recovery sweep looks for stalled sagas.
    pub recovery_sweep_secs: u64,
}

impl Default for OrdersSettings {
    fn default() -> Self {
        Self { placement_wait_ms: 3_000, step_attempts: 4, step_retry_delay_ms: 100, stale_after_secs: 30, recovery_sweep_secs: 10 }
    }
}

/// The catalog module's own settings (where it runs locally).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSettings {
    /// A stock reservation not committed within this time is released.
    pub reservation_ttl_secs: u64,
    /// How often expired reservations are looked for.
    pub reservation_sweep_secs: u64,
    /// Deprecated: `cache.ttl_ms`. When set, it is taken as `cache.ttl_ms` (with a warning).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_cache_ttl_ms: Option<u64>,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self { reservation_ttl_secs: 900, reservation_sweep_secs: 30, product_cache_ttl_ms: None }
    }
}

/// The read cache of the modules hosted here (the catalog's products, product pages and
/// categories): in this process only, or shared on Redis with this process's level in front.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// `redis://[user:password@]host:port[/db]` (`rediss://` for TLS). Unset: in process only.
    pub redis_url: Option<Secret<String>>,
    /// An entry is dropped this long after it was stored (0: no caching). Writes invalidate at
    /// once, on every instance through the catalog's events; this bounds what a lost event costs.
    pub ttl_ms: u64,
    /// Entries kept in this process at most.
    pub max_entries: u64,
    /// The first part of every Redis key (several deployments may share one server).
    pub key_prefix: String,
    /// Each Redis command's time limit; past it the database answers.
    pub redis_timeout_ms: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { redis_url: None, ttl_ms: 5_000, max_entries: 10_000, key_prefix: "cleave".to_owned(), redis_timeout_ms: 100 }
    }
}

/// How this process connects to NATS: for the NATS wire (serving the modules hosted here, and
/// calling the modules set to `wire = "nats"`). Unset `url`: no NATS at all.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// One server URL, or several separated by commas (`nats://a:4222,nats://b:4222`).
    pub url: Option<String>,
    pub token: Option<Secret<String>>,
    pub user: Option<String>,
    pub password: Option<Secret<String>>,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// A CA certificate (PEM); when set, TLS is required and the servers are verified with it.
    pub tls_ca_file: Option<PathBuf>,
    /// The first token of every wire subject (`<prefix>.rpc.<module>.<operation>`).
    pub subject_prefix: String,
    /// Calls one instance of a module handles at once; more wait.
    pub max_in_flight: usize,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: None,
            token: None,
            user: None,
            password: None,
            credentials_file: None,
            tls_ca_file: None,
            subject_prefix: "cleave".to_owned(),
            max_in_flight: 512,
        }
    }
}

impl NatsSettings {
    /// The connection options, when `url` is set; `name` is this process's name.
    pub fn options(&self, name: &str) -> Option<shared_kernel::nats_wire::NatsOptions> {
        let url = self.url.as_ref()?;
        Some(shared_kernel::nats_wire::NatsOptions {
            urls: url.split(',').map(str::trim).filter(|url| !url.is_empty()).map(str::to_owned).collect(),
            token: self.token.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            credentials_file: self.credentials_file.clone(),
            tls_ca_file: self.tls_ca_file.clone(),
            name: name.to_owned(),
        })
    }
}

/// A string, or a list of strings joined by commas (`modules.<m>.url`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Option::<OneOrMany>::deserialize(deserializer)?.map(|urls| match urls {
        OneOrMany::One(url) => url,
        OneOrMany::Many(urls) => urls.join(","),
    }))
}

/// Which wire reaches a remote module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wire {
    /// `POST <url>/rpc/<module>/<operation>` (needs `modules.<m>.url`).
    #[default]
    Http,
    /// NATS request/reply to the module's micro service (needs `nats.url`; no address).
    Nats,
}

/// Where a module runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleMode {
    /// In this process (the implementation crate must be compiled in).
    Local,
    /// In another process, reached over `wire` (HTTP at `url`, or NATS).
    Remote,
    /// Not reachable from this process: its operations answer 503. The default for a module that
    /// is neither compiled in nor given a `url` (a module service does not need every module).
    NotDeployed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModuleSettings {
    /// Unset: local when compiled in, else remote when `wire = "nats"` or a `url` is set, else
    /// not deployed.
    pub mode: Option<ModuleMode>,
    /// The remote service's base URL (remote over HTTP), or several: a list, or separated by
    /// commas. A host name stands for every address it resolves to.
    #[serde(deserialize_with = "one_or_many")]
    pub url: Option<String>,
    /// How often the host names in `url` are resolved again, in seconds.
    pub resolve_every_secs: u64,
    /// How long an instance that failed a call sits out before it is tried again, in seconds.
    pub eject_cooldown_secs: u64,
    /// How a remote module is reached. A module hosted here ignores it.
    pub wire: Wire,
    /// Bound on one attempt at a remote call, in milliseconds.
    pub timeout_ms: u64,
    /// Per operation, overriding `timeout_ms` (`timeouts_ms = { charge = 8000 }`).
    pub timeouts_ms: std::collections::BTreeMap<String, u64>,
    /// Retries of the operations the contract declares idempotent.
    pub retry: RemoteRetrySettings,
    /// The circuit breaker in front of the module.
    pub circuit: CircuitSettings,
    /// The bulkhead in front of the module: calls in flight at once, and waiting.
    pub bulkhead: BulkheadSettings,
}

/// `modules.<m>.retry`: retries of idempotent operations after a transient failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteRetrySettings {
    /// Attempts in all, the first included (1: never retry).
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles (with jitter) up to `max_delay_ms`.
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
}

/// `modules.<m>.circuit`: when calls to the module stop being sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitSettings {
    /// Failed calls, in percent of the calls in the window, that open the circuit.
    pub failure_rate_percent: u8,
    /// The sliding window the rate is measured over, in seconds.
    pub window_secs: u64,
    /// Calls in the window before the rate counts.
    pub minimum_calls: usize,
    /// How long an open circuit answers 503 at once before it lets probes through, in seconds.
    pub open_secs: u64,
    /// Probes let through when half-open; all must succeed for it to close.
    pub half_open_probes: usize,
}

/// `modules.<m>.bulkhead`: a bound on the calls to the module in flight and queued.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadSettings {
    pub max_concurrent: usize,
    /// Calls waiting for a slot; one more answers 503 at once.
    pub max_queued: usize,
    /// How long a call waits for a slot before it answers 503, in milliseconds.
    pub max_wait_ms: u64,
}

impl Default for RemoteRetrySettings {
    fn default() -> Self {
        Self { max_attempts: 3, base_delay_ms: 50, max_delay_ms: 1_000 }
    }
}

impl Default for CircuitSettings {
    fn default() -> Self {
        Self { failure_rate_percent: 50, window_secs: 10, minimum_calls: 5, open_secs: 5, half_open_probes: 2 }
    }
}

impl Default for BulkheadSettings {
    fn default() -> Self {
        Self { max_concurrent: 256, max_queued: 1_024, max_wait_ms: 5_000 }
    }
}

impl ModuleSettings {
    /// What guards this process's calls to the module.
    pub fn resilience(&self) -> shared_kernel::resilience::ResiliencePolicy {
        use shared_kernel::resilience::{BulkheadPolicy, CircuitPolicy, ResiliencePolicy, RetryPolicy};
        let ms = |ms: u64| Duration::from_millis(ms.max(1));
        ResiliencePolicy {
            timeout: ms(self.timeout_ms),
            operation_timeouts: self.timeouts_ms.iter().map(|(operation, timeout)| (operation.clone(), ms(*timeout))).collect(),
            retry: RetryPolicy {
                max_attempts: self.retry.max_attempts.max(1),
                base_delay: ms(self.retry.base_delay_ms),
                max_delay: ms(self.retry.max_delay_ms.max(self.retry.base_delay_ms)),
            },
            circuit: CircuitPolicy {
                failure_rate: f64::from(self.circuit.failure_rate_percent.clamp(1, 100)) / 100.0,
                window: Duration::from_secs(self.circuit.window_secs.max(1)),
                minimum_calls: self.circuit.minimum_calls.max(1),
                open_for: Duration::from_secs(self.circuit.open_secs.max(1)),
                half_open_probes: self.circuit.half_open_probes.max(1),
            },
            bulkhead: BulkheadPolicy {
                max_concurrent: self.bulkhead.max_concurrent.max(1),
                max_queued: self.bulkhead.max_queued,
                max_wait: ms(self.bulkhead.max_wait_ms),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (development).
    Text,
    /// One JSON object per line (production).
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter; `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings::default(),
            data_dir: PathBuf::from("data"),
            database: DatabaseSettings::default(),
            auth: AuthSettings::default(),
            modules: ModulesSettings::default(),
            nats: NatsSettings::default(),
            catalog: CatalogSettings::default(),
            cache: CacheSettings::default(),
            orders: OrdersSettings::default(),
            payments: PaymentsSettings::default(),
            notifications: NotificationsSettings::default(),
            events: EventSettings::default(),
            graphql: GraphqlSettings::default(),
            log: LogSettings::default(),
            admin_bootstrap: None,
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 2 * 1024 * 1024,
            request_timeout_secs: 30,
            cors_allowed_origins: Vec::new(),
            trust_forwarded_for: false,
            service_name: "cleave".to_owned(),
            internal_addr: None,
            allow_unauthenticated_internal: false,
            shutdown_grace_secs: 20,
            shutdown_delay_ms: 0,
            rate_limit: RateLimitSettings::default(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            users_url: None,
            catalog_url: None,
            orders_url: None,
            payments_url: None,
            notifications_url: None,
            max_connections: 10,
            migrate_on_start: true,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "cleave".to_owned(),
            audience: "cleave-api".to_owned(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 14 * 24 * 3600,
            keys_file: None,
            keys_json: None,
            generate_keys: true,
            login_per_account_per_minute: 5,
            login_per_address_per_minute: 20,
            service_token: None,
        }
    }
}

impl Default for ModuleSettings {
    fn default() -> Self {
        Self {
            mode: None,
            url: None,
            wire: Wire::Http,
            timeout_ms: 5_000,
            timeouts_ms: std::collections::BTreeMap::new(),
            retry: RemoteRetrySettings::default(),
            circuit: CircuitSettings::default(),
            bulkhead: BulkheadSettings::default(),
            resolve_every_secs: 10,
            eject_cooldown_secs: 10,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: LogFormat::Text, filter: "info,sqlx=warn,sea_orm=warn".to_owned() }
    }
}

impl Settings {
    /// Loads the settings: defaults, then `file` (or `cleave.toml` if present), then `CLEAVE_*`.
    ///
    /// # Errors
    /// An explicitly named file that does not exist, or a value of the wrong type or an unknown
    /// key anywhere.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                anyhow::ensure!(path.exists(), "the configuration file {} does not exist", path.display());
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new("cleave.toml").exists() => figment = figment.merge(Toml::file_exact("cleave.toml")),
            None => {}
        }
        figment = figment.merge(Env::prefixed("CLEAVE_").split("__").ignore(&["config"]));
        let mut settings: Settings = figment.extract().context("invalid configuration")?;
        if let (Ok(email), Ok(password)) = (std::env::var("ADMIN_EMAIL"), std::env::var("ADMIN_PASSWORD"))
            && !email.is_empty()
        {
            settings.admin_bootstrap = Some(AdminBootstrap { email, password: Secret::new(password) });
        }
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.server.body_limit_bytes > 0, "server.body_limit_bytes must be positive");
        anyhow::ensure!(self.server.request_timeout_secs > 0, "server.request_timeout_secs must be positive");
        anyhow::ensure!(self.server.shutdown_grace_secs > 0, "server.shutdown_grace_secs must be positive");
        if let Some(url) = &self.database.url {
            anyhow::ensure!(
                url.starts_with("postgres://") || url.starts_with("postgresql://"),
                "database.url must be a postgres:// URL (for SQLite set data_dir: each module gets its own file there)"
            );
        }
        for (name, module) in self.modules.each() {
            for url in module.url.iter().flat_map(|urls| urls.split(',')).map(str::trim) {
                anyhow::ensure!(
                    url.starts_with("http://"),
                    "modules.{name}.url must be an http:// URL (the internal wire has no TLS; use a service mesh or a private network)"
                );
            }
        }
        anyhow::ensure!(self.events.bus == BusKind::InProcess || self.nats.url.is_some(), "events.bus = \"nats\" needs nats.url");
        if let Some(options) = self.nats.options(&self.server.service_name) {
            anyhow::ensure!(!options.urls.is_empty(), "nats.url holds no server URL");
            for url in &options.urls {
                anyhow::ensure!(
                    ["nats://", "tls://"].iter().any(|scheme| url.starts_with(scheme)) || !url.contains("://"),
                    "nats.url must hold nats:// (or tls://) URLs, not {url:?}"
                );
            }
            anyhow::ensure!(self.nats.user.is_some() == self.nats.password.is_some(), "nats.user and nats.password go together");
        }
        anyhow::ensure!(
            !self.nats.subject_prefix.is_empty()
                && self.nats.subject_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "nats.subject_prefix must be letters, digits, `-` or `_` (one subject token)"
        );
        anyhow::ensure!(
            self.server.internal_addr.is_none() || self.auth.service_token.is_some() || self.server.allow_unauthenticated_internal,
            "server.internal_addr needs auth.service_token (or server.allow_unauthenticated_internal = true, for development only)"
        );
        anyhow::ensure!(
            (60..=365 * 24 * 3600).contains(&self.auth.refresh_token_ttl_secs),
            "auth.refresh_token_ttl_secs must be between 60 and 31536000 (a year)"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.payments.simulator_failure_rate),
            "payments.simulator_failure_rate must be between 0.0 and 1.0"
        );
        if let Some(url) = &self.cache.redis_url {
            anyhow::ensure!(
                ["redis://", "rediss://", "redis+unix://", "unix://"].iter().any(|scheme| url.expose().starts_with(scheme)),
                "cache.redis_url must be a redis:// (or rediss://) URL"
            );
        }
        anyhow::ensure!(self.graphql.max_subscriptions_per_socket >= 1, "graphql.max_subscriptions_per_socket must be positive");
        anyhow::ensure!(self.cache.redis_timeout_ms >= 1, "cache.redis_timeout_ms must be positive");
        anyhow::ensure!(self.cache.max_entries >= 1, "cache.max_entries must be positive");
        anyhow::ensure!(
            !self.cache.key_prefix.is_empty() && !self.cache.key_prefix.contains(char::is_whitespace),
            "cache.key_prefix must be a non-empty word"
        );
        anyhow::ensure!(self.catalog.reservation_ttl_secs >= 1, "catalog.reservation_ttl_secs must be positive");
        anyhow::ensure!(self.catalog.reservation_sweep_secs >= 1, "catalog.reservation_sweep_secs must be positive");
        anyhow::ensure!(
            (1..=900).contains(&self.auth.access_token_ttl_secs),
            "auth.access_token_ttl_secs must be between 1 and 900 (15 minutes)"
        );
        Ok(())
    }

    /// The cache's TTL: `cache.ttl_ms`, or the deprecated `catalog.product_cache_ttl_ms` when set.
    pub fn cache_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.catalog.product_cache_ttl_ms.unwrap_or(self.cache.ttl_ms))
    }

    /// The signing key file in use.
    pub fn keys_file(&self) -> PathBuf {
        self.auth.keys_file.clone().unwrap_or_else(|| self.data_dir.join("signing-keys.json"))
    }

    /// Where a module keeps its data: its own URL, else the shared PostgreSQL server (one
    /// schema per module), else a SQLite file per module in `data_dir`.
    pub fn database_target(&self, module_url: Option<&String>) -> shared_kernel::db::DatabaseTarget {
        match module_url.or(self.database.url.as_ref()) {
            Some(url) => shared_kernel::db::DatabaseTarget::Url(url.clone()),
            None => shared_kernel::db::DatabaseTarget::SqliteDir(self.data_dir.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_documentation() {
        let settings = Settings::default();
        settings.validate().unwrap();
        assert_eq!(settings.server.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.server.body_limit_bytes, 2 * 1024 * 1024);
        assert_eq!(settings.auth.access_token_ttl_secs, 900);
    }

    #[test]
    fn a_file_then_the_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("custom.toml", "data_dir = \"/tmp/x\"\n[server]\naddr = \"0.0.0.0:9000\"\n")?;
            jail.set_env("CLEAVE_SERVER__REQUEST_TIMEOUT_SECS", "7");
            let settings = Settings::load(Some(Path::new("custom.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(settings.server.addr.port(), 9000);
            assert_eq!(settings.server.request_timeout_secs, 7);
            assert_eq!(settings.data_dir, PathBuf::from("/tmp/x"));
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_ttls_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[server]\nadress = \"x\"\n")?;
            assert!(Settings::load(Some(Path::new("bad.toml"))).is_err());
            jail.create_file("ttl.toml", "[auth]\naccess_token_ttl_secs = 3600\n")?;
            assert!(Settings::load(Some(Path::new("ttl.toml"))).is_err());
            jail.create_file("sqlite.toml", "[database]\nurl = \"sqlite://one.db\"\n")?;
            assert!(Settings::load(Some(Path::new("sqlite.toml"))).is_err());
            jail.create_file("tls.toml", "[modules.users]\nurl = \"https://users\"\n")?;
            assert!(Settings::load(Some(Path::new("tls.toml"))).is_err());
            jail.create_file("open.toml", "[server]\ninternal_addr = \"127.0.0.1:9000\"\n")?;
            assert!(Settings::load(Some(Path::new("open.toml"))).is_err(), "an internal listener needs a service token");
            jail.create_file("refresh.toml", "[auth]\nrefresh_token_ttl_secs = 18446744073709551615\n")?;
            assert!(Settings::load(Some(Path::new("refresh.toml"))).is_err());
            assert!(Settings::load(Some(Path::new("missing.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn nats_settings_take_several_urls_and_refuse_what_cannot_work() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CLEAVE_NATS__URL", "nats://a:4222, nats://b:4222");
            jail.set_env("CLEAVE_MODULES__PAYMENTS__WIRE", "nats");
            let settings = Settings::load(None).expect("valid");
            assert_eq!(settings.nats.options("cleave").unwrap().urls, ["nats://a:4222", "nats://b:4222"]);
            assert_eq!(settings.modules.payments.wire, Wire::Nats);
            assert_eq!((settings.modules.users.wire, settings.nats.subject_prefix.as_str()), (Wire::Http, "cleave"));
            jail.set_env("CLEAVE_MODULES__PAYMENTS__WIRE", "carrier-pigeon");
            assert!(Settings::load(None).is_err(), "an unknown wire");
            jail.set_env("CLEAVE_MODULES__PAYMENTS__WIRE", "http");
            jail.set_env("CLEAVE_NATS__URL", "http://a:4222");
            assert!(Settings::load(None).is_err(), "not a NATS URL");
            jail.set_env("CLEAVE_NATS__URL", " , ");
            assert!(Settings::load(None).is_err(), "no URL at all");
            jail.set_env("CLEAVE_NATS__URL", "nats://a:4222");
            jail.set_env("CLEAVE_NATS__USER", "cleave");
            assert!(Settings::load(None).is_err(), "a user without a password");
            jail.set_env("CLEAVE_NATS__PASSWORD", "secret");
            jail.set_env("CLEAVE_NATS__SUBJECT_PREFIX", "two.tokens");
            assert!(Settings::load(None).is_err(), "a prefix is one subject token");
            jail.set_env("CLEAVE_NATS__SUBJECT_PREFIX", "staging");
            assert_eq!(Settings::load(None).expect("valid").nats.subject_prefix, "staging");
            Ok(())
        });
    }
}

//! Settings: defaults → optional TOML file → environment (`CLEAVE_` prefix, `__` between
//! levels: `CLEAVE_SERVER__ADDR=0.0.0.0:8080`). Every key is listed in docs/configuration.md.
//!
//! This file holds the process-wide sections (`server`, `database`, `auth`, `nats`, `events`,
//! `log`) and the loader. Each module's own section is its type in the module's directory
//! (`app/src/modules/<m>/settings.rs`, with its defaults and checks, once), `[graphql]` is the
//! edge's (`app/src/graphql/settings.rs`) and `modules.<m>` (placement and the calls across a
//! wire) is in `config/remote.rs`. Every process accepts every key, whatever it hosts.

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use shared_kernel::Secret;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod auth;
mod nats;
mod remote;
mod tls;

pub use crate::graphql::settings::GraphqlSettings;
pub use crate::modules::catalog::settings::{CacheSettings, CatalogSettings};
pub use crate::modules::notifications::settings::{DeliveryKind, NotificationsSettings, SmtpSettings, SmtpTls};
pub use crate::modules::orders::settings::OrdersSettings;
pub use crate::modules::payments::settings::PaymentsSettings;
pub use auth::{AuthSettings, TrustedProcess};
pub use nats::NatsSettings;
pub use remote::{BulkheadSettings, CircuitSettings, ModuleMode, ModuleSettings, ModulesSettings, RemoteRetrySettings, Wire};
pub use tls::TlsSettings;

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
    /// The internal HTTP wire's TLS.
    pub tls: TlsSettings,
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
    /// Development only: serve and call the internal wires (HTTP and NATS) without identities
    /// and TLS. Without it, a process given `internal_addr`, a module's `url` or `nats.url`
    /// refuses to start unless it has its identity (`auth.identity_seed_file`, `auth.trusted`),
    /// TLS (`[tls]` and `https://` URLs; `nats.tls_ca_file`) and broker credentials
    /// (`nats.nkey_seed_file`, or another): `cleave trust init` writes all of them.
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
            tls: TlsSettings::default(),
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

    /// These settings with `CLEAVE_*` variables applied over them as the environment would be
    /// (`cleave trust init`'s `<process>.env` files hold such lines), checked as at start-up:
    /// for a program that starts cleave in process with an operator's env file.
    ///
    /// # Errors
    /// A value of the wrong type, or settings that do not validate.
    pub fn with_env_pairs(&self, pairs: &[(String, String)]) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(self));
        for (name, value) in pairs {
            if let Some(key) = name.strip_prefix("CLEAVE_") {
                let value: figment::value::Value = value.parse().unwrap_or_else(|never: std::convert::Infallible| match never {});
                figment = figment.merge(Serialized::default(&key.to_lowercase().replace("__", "."), value));
            }
        }
        let mut settings: Settings = figment.extract().context("invalid configuration")?;
        settings.admin_bootstrap.clone_from(&self.admin_bootstrap);
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
                    url.starts_with("https://") || url.starts_with("http://"),
                    "modules.{name}.url must be an https:// (or, in development, http://) URL"
                );
            }
        }
        self.tls.validate()?;
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
            self.auth.service_token.as_ref().is_none_or(|token| !token.expose().trim().is_empty()),
            "auth.service_token is set but empty: set a long random secret, or leave it unset"
        );
        self.validate_identities()?;
        anyhow::ensure!(
            (60..=365 * 24 * 3600).contains(&self.auth.refresh_token_ttl_secs),
            "auth.refresh_token_ttl_secs must be between 60 and 31536000 (a year)"
        );
        self.payments.validate()?;
        self.catalog.validate()?;
        self.cache.validate()?;
        self.graphql.validate()?;
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
mod tests;

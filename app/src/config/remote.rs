//! `modules.<m>`: where each module runs and, when it is remote, how this process reaches it —
//! its wire and addresses, and the timeouts, retries, circuit breaker and bulkhead in front of it.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `ModulesSettings`, with a field per module (`modules.<name>`) and the lists of them, from one
/// list of names: the struct and its lists cannot disagree.
macro_rules! modules_settings {
    ($($name:ident: $api:path),+ $(,)?) => {
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

crate::module_list::module_list!(modules_settings);

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

//! `[payments]`: the payments module's own settings, read where it runs locally. Every default is
//! here, once; the module's service takes the values it is given.

use serde::{Deserialize, Serialize};

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

impl PaymentsSettings {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!((0.0..=1.0).contains(&self.simulator_failure_rate), "payments.simulator_failure_rate must be between 0.0 and 1.0");
        Ok(())
    }
}

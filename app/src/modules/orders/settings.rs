//! `[orders]`: the orders module's own settings, read where it runs locally: how it runs its
//! sagas. Every default is here, once; `orders::OrdersSettings` takes the values it is given.

use serde::{Deserialize, Serialize};

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

//! How orders runs its sagas: the module's settings, with their defaults in one place (the app's
//! `[orders]` section reads them from here).

use std::time::Duration;

/// How orders runs its sagas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrdersSettings {
    /// How long placement waits for the saga before answering with the order still `pending`
    /// (the saga then finishes in the background).
    pub placement_wait: Duration,
    /// Calls per saga step when the other module's call fails before the step counts as failed
    /// (reserve, charge) or is left to the recovery sweep (every other step).
    pub step_attempts: u32,
    /// The first retry's delay; it doubles per attempt.
    pub step_retry_delay: Duration,
    /// A saga with no progress for this long is taken over by the recovery sweep.
    pub stale_after: Duration,
}

impl Default for OrdersSettings {
    fn default() -> Self {
        Self {
            placement_wait: Duration::from_secs(5),
            step_attempts: 4,
            step_retry_delay: Duration::from_millis(100),
            stale_after: Duration::from_secs(30),
        }
    }
}

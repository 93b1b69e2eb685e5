//! How orders runs its sagas: the module's settings. No defaults here: the app's `[orders]`
//! section holds them, once, and gives the values.

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

//! `[graphql]`: the GraphQL endpoint's limits, an edge concern.

use serde::{Deserialize, Serialize};

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

impl GraphqlSettings {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_subscriptions_per_socket >= 1, "graphql.max_subscriptions_per_socket must be positive");
        Ok(())
    }
}

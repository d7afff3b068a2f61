//! KIP-848 consumer groups (ConsumerGroupHeartbeat): placeholder until the protocol lands.

use crate::config::BrokerConfig;

/// The KIP-848 groups of the broker.
pub struct ConsumerGroups {}

impl ConsumerGroups {
    /// No groups yet.
    pub fn new(_config: &BrokerConfig) -> Self {
        ConsumerGroups {}
    }

    /// Runs membership timers.
    pub fn tick(&self, _now_ms: i64) {}
}

//! Classic consumer groups (JoinGroup, SyncGroup, Heartbeat, LeaveGroup): placeholder until the
//! state machine lands.

use crate::config::BrokerConfig;

/// The classic groups of the broker.
pub struct ClassicGroups {}

impl ClassicGroups {
    /// No groups yet.
    pub fn new(_config: &BrokerConfig) -> Self {
        ClassicGroups {}
    }

    /// Runs membership timers.
    pub fn tick(&self, _now_ms: i64) {}
}

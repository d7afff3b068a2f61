//! The group coordinator: consumer groups of both protocols (the classic JoinGroup/SyncGroup
//! protocol and KIP-848's ConsumerGroupHeartbeat) and their committed offsets, durable in the
//! internal topic `__consumer_offsets`. A single node coordinates every group.

pub mod classic;
pub mod consumer;
pub mod offsets;

use std::sync::Arc;
use std::time::Duration;

use crate::broker::now_ms;
use crate::config::BrokerConfig;
use crate::error::Result;
use crate::topics::Topics;

/// How often membership timers (session and rebalance timeouts) are checked.
pub const TICK_MS: u64 = 100;

/// One group as ListGroups reports it, from either protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// `consumer` for consumer groups of either protocol, or what classic members declared.
    pub protocol_type: String,
    /// The group state under Kafka's name, e.g. `Stable` or `Empty`.
    pub state: String,
}

/// Every group of the broker, by protocol, and their committed offsets.
pub struct GroupCoordinator {
    /// Committed offsets of every group, loaded from `__consumer_offsets` on start.
    pub offsets: offsets::OffsetStore,
    /// Groups using the classic protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup).
    pub classic: classic::ClassicGroups,
    /// Groups using the KIP-848 protocol (ConsumerGroupHeartbeat).
    pub consumer: consumer::ConsumerGroups,
}

impl GroupCoordinator {
    /// Creates `__consumer_offsets` if needed and loads every committed offset from it.
    pub fn open(topics: &Topics, config: &BrokerConfig) -> Result<GroupCoordinator> {
        Ok(GroupCoordinator {
            offsets: offsets::OffsetStore::open(topics, config)?,
            classic: classic::ClassicGroups::new(config),
            consumer: consumer::ConsumerGroups::new(config),
        })
    }

    /// Expires members whose session ended and completes rebalances whose time is up, until
    /// `shutdown` turns true.
    pub async fn run_timers(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = now_ms();
            self.classic.tick(now);
            self.consumer.tick(now);
            self.offsets
                .expire_if_due(now, |g| offsets::membership::is_idle(&self, g))
                .await;
        }
    }
}

//! One member of a classic group: who it is, what it supports, what it was assigned, and what
//! keeps it alive.

use bytes::Bytes;

use super::types::Protocol;

/// One member of a classic group.
#[derive(Debug, Clone)]
pub struct Member {
    /// The member id.
    pub id: String,
    /// Its `group.instance.id`, for static members.
    pub instance_id: Option<String>,
    /// Its `client.id`.
    pub client_id: String,
    /// Its address.
    pub client_host: String,
    /// Its session timeout.
    pub session_timeout_ms: i32,
    /// Its rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// The protocols it supports, most preferred first.
    pub protocols: Vec<Protocol>,
    /// Its assignment in the current generation, empty until the leader's SyncGroup.
    pub assignment: Bytes,
    /// Join order: the lowest is the oldest member.
    pub(super) seq: u64,
    /// A JoinGroup of this member is waiting for the join phase to end.
    pub(super) awaiting_join: bool,
    /// A SyncGroup of this member is waiting for the leader's assignment.
    pub(super) awaiting_sync: bool,
    /// Joined during the current rebalance and never completed a join.
    pub(super) is_new: bool,
    /// When the member expires unless it heartbeats (or waits on a join or sync).
    pub(super) deadline_ms: i64,
}

impl Member {
    pub(super) fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    pub(super) fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    /// Whether the member stays alive at `now_ms` (Kafka's `hasSatisfiedHeartbeat`).
    pub(super) fn alive(&self, now_ms: i64) -> bool {
        if !self.is_new && (self.awaiting_join || self.awaiting_sync) {
            return true;
        }
        now_ms < self.deadline_ms
    }
}

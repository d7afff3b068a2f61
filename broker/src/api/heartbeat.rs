//! Heartbeat (v0-4): keeps a classic group member's session alive and tells it when the group
//! rebalances (REBALANCE_IN_PROGRESS) or has moved on without it.

use std::sync::Arc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::{now_ms, Broker};

/// Records the heartbeat and answers with the member's standing in the group.
pub fn handle(broker: &Arc<Broker>, request: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    let code = broker.groups.classic.heartbeat(
        request.group_id.0.as_str(),
        request.member_id.as_str(),
        request.group_instance_id.as_deref(),
        request.generation_id,
        now_ms(),
    );
    HeartbeatResponse::default().with_error_code(code)
}

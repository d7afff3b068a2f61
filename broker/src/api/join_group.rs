//! JoinGroup (v0-9): a member joins a classic group or rejoins it for a rebalance. The group
//! state machine decides at once; a member that must wait for the join phase gets its answer
//! through a channel, so later requests on the connection are not held up by the group lock.

use std::sync::Arc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{Client, Reply};
use crate::broker::{now_ms, Broker};
use crate::group::classic::{JoinRequest, JoinResult, Pending, Protocol};

/// Joins the member, answering now or when the join phase ends.
pub fn handle(broker: &Arc<Broker>, request: JoinGroupRequest, version: i16, client: &Client) -> Reply {
    let group = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    if broker.groups.consumer.exists(&group) && !broker.groups.consumer.is_empty_or_absent(&group) {
        // The group id belongs to a live KIP-848 consumer group.
        let result = JoinResult::error(ResponseError::InconsistentGroupProtocol, &member_id);
        return Reply::Now(Box::new(ResponseKind::JoinGroup(response(result, version))));
    }
    let join = JoinRequest {
        member_id: member_id.clone(),
        instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client.id.to_string(),
        client_host: format!("/{}", client.addr.ip()),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version == 0 {
            request.session_timeout_ms
        } else {
            request.rebalance_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata.clone(),
            })
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    match broker.groups.classic.join(&group, join, now_ms()) {
        Pending::Now(result) => Reply::Now(Box::new(ResponseKind::JoinGroup(response(result, version)))),
        Pending::Later(rx) => Reply::Later(Box::pin(async move {
            // A closed channel: a newer JoinGroup of the same member took this one's place.
            let result = rx
                .await
                .unwrap_or_else(|_| JoinResult::error(ResponseError::RebalanceInProgress, &member_id));
            Some(ResponseKind::JoinGroup(response(result, version)))
        })),
    }
}

fn text(s: String) -> StrBytes {
    StrBytes::from_string(s)
}

/// The wire response for a version: the protocol name is not nullable before v7, the protocol
/// type exists from v7, skip_assignment from v9.
pub fn response(result: JoinResult, version: i16) -> JoinGroupResponse {
    let protocol_name = match result.protocol_name {
        Some(name) => Some(text(name)),
        None if version < 7 => Some(StrBytes::default()),
        None => None,
    };
    JoinGroupResponse::default()
        .with_error_code(result.error)
        .with_generation_id(result.generation_id)
        .with_protocol_type(if version >= 7 {
            result.protocol_type.map(text)
        } else {
            None
        })
        .with_protocol_name(protocol_name)
        .with_leader(text(result.leader))
        .with_skip_assignment(version >= 9 && result.skip_assignment)
        .with_member_id(text(result.member_id))
        .with_members(
            result
                .members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(text(m.member_id))
                        .with_group_instance_id(if version >= 5 { m.instance_id.map(text) } else { None })
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}

#[cfg(test)]
#[path = "classic_group_tests.rs"]
mod tests;

//! SyncGroup (v0-5): the leader hands out the assignment of a generation and every member
//! receives its own. Followers wait for the leader through a channel.

use std::sync::Arc;

use kafka_protocol::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::Reply;
use crate::broker::{now_ms, Broker};
use crate::group::classic::{Pending, SyncRequest, SyncResult};

/// Syncs the member, answering now or when the leader's assignment arrives.
pub fn handle(broker: &Arc<Broker>, request: SyncGroupRequest, version: i16) -> Reply {
    let group = request.group_id.0.to_string();
    let sync = SyncRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        generation_id: request.generation_id,
        protocol_type: request.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    match broker.groups.classic.sync(&group, sync, now_ms()) {
        Pending::Now(result) => Reply::Now(Box::new(ResponseKind::SyncGroup(response(result, version)))),
        Pending::Later(rx) => Reply::Later(Box::pin(async move {
            // A closed channel: a newer SyncGroup of the same member took this one's place.
            let result = rx
                .await
                .unwrap_or_else(|_| SyncResult::error(ResponseError::RebalanceInProgress));
            Some(ResponseKind::SyncGroup(response(result, version)))
        })),
    }
}

/// The wire response for a version: protocol type and name exist from v5.
pub fn response(result: SyncResult, version: i16) -> SyncGroupResponse {
    let (protocol_type, protocol_name) = if version >= 5 {
        (
            result.protocol_type.map(StrBytes::from_string),
            result.protocol_name.map(StrBytes::from_string),
        )
    } else {
        (None, None)
    };
    SyncGroupResponse::default()
        .with_error_code(result.error)
        .with_protocol_type(protocol_type)
        .with_protocol_name(protocol_name)
        .with_assignment(result.assignment)
}

//! LeaveGroup (v0-5): members leave a classic group, one per request before v3 and in batches
//! from v3 (KIP-345), where a static member may be named by its instance id alone.

use std::sync::Arc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::broker::{now_ms, Broker};
use crate::group::classic::Leaving;

/// Removes the members; before v3 the single member's error is the response's error.
pub fn handle(broker: &Arc<Broker>, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let leaving: Vec<Leaving> = if version < 3 {
        vec![Leaving {
            member_id: request.member_id.to_string(),
            instance_id: None,
        }]
    } else {
        request
            .members
            .iter()
            .map(|m| Leaving {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    };
    let outcome = broker
        .groups
        .classic
        .leave(request.group_id.0.as_str(), &leaving, now_ms());
    let response = LeaveGroupResponse::default();
    match outcome {
        Err(code) => response.with_error_code(code),
        Ok(codes) if version < 3 => response.with_error_code(codes.iter().copied().find(|c| *c != 0).unwrap_or(0)),
        Ok(codes) => response.with_members(
            request
                .members
                .into_iter()
                .zip(codes)
                .map(|(m, code)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(code)
                })
                .collect(),
        ),
    }
}

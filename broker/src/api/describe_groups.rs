//! DescribeGroups (v0-6): the state, protocol and members of groups. Classic groups show member
//! metadata and assignments while Stable; KIP-848 groups show their state and members; groups
//! known only by committed offsets are Empty; unknown groups are Dead with no error before v6
//! and GROUP_ID_NOT_FOUND from v6 (KIP-1043), as Kafka answers.

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;

/// Kafka's operation bits a client may perform on a group without ACLs: READ, DELETE, DESCRIBE.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

fn text(s: String) -> StrBytes {
    StrBytes::from_string(s)
}

/// Describes each requested group.
pub fn handle(broker: &Arc<Broker>, request: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|id| {
            let mut described = describe(broker, id.0.as_str(), version);
            described.group_id = id;
            if version >= 3 && request.include_authorized_operations {
                described.authorized_operations = GROUP_OPERATIONS;
            }
            described
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

fn describe(broker: &Broker, group: &str, version: i16) -> DescribedGroup {
    let instance = |i: Option<String>| if version >= 4 { i.map(text) } else { None };
    if let Some(d) = broker.groups.classic.describe(group) {
        let members = d
            .members
            .into_iter()
            .map(|m| {
                DescribedGroupMember::default()
                    .with_member_id(text(m.member_id))
                    .with_group_instance_id(instance(m.instance_id))
                    .with_client_id(text(m.client_id))
                    .with_client_host(text(m.client_host))
                    .with_member_metadata(m.metadata)
                    .with_member_assignment(m.assignment)
            })
            .collect();
        return DescribedGroup::default()
            .with_group_state(StrBytes::from_static_str(d.state))
            .with_protocol_type(text(d.protocol_type))
            .with_protocol_data(text(d.protocol_data))
            .with_members(members);
    }
    if let Some(d) = broker.groups.consumer.describe(group) {
        let members = d
            .members
            .into_iter()
            .map(|m| {
                DescribedGroupMember::default()
                    .with_member_id(text(m.member_id))
                    .with_group_instance_id(instance(m.instance_id))
            })
            .collect();
        return DescribedGroup::default()
            .with_group_state(StrBytes::from_static_str(d.state))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocol_data(StrBytes::from_static_str(d.assignor))
            .with_members(members);
    }
    if broker.groups.offsets.has_offsets(group) {
        return DescribedGroup::default()
            .with_group_state(StrBytes::from_static_str("Empty"))
            .with_protocol_type(StrBytes::from_static_str("consumer"));
    }
    let dead = DescribedGroup::default().with_group_state(StrBytes::from_static_str("Dead"));
    if version >= 6 {
        dead.with_error_code(ResponseError::GroupIdNotFound.code())
            .with_error_message(Some(text(format!("Group {group} not found."))))
    } else {
        dead
    }
}

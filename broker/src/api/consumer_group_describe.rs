//! ConsumerGroupDescribe (KIP-848, v0-1): epochs, state, assignor and every member's current
//! and target assignment of next-generation consumer groups.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::broker::Broker;
use crate::group::consumer::{assignor, GroupDescription};

/// The member type ConsumerGroupDescribe v1 reports for KIP-848 members.
const CONSUMER_MEMBER_TYPE: i8 = 1;
/// Kafka's value for "authorized operations not requested".
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// Describes each requested group; unknown groups get GROUP_ID_NOT_FOUND and state `Dead`.
pub fn handle(
    broker: &Arc<Broker>,
    request: ConsumerGroupDescribeRequest,
    _version: i16,
) -> ConsumerGroupDescribeResponse {
    let names: BTreeMap<Uuid, String> = broker.topics.all().iter().map(|t| (t.id, t.name.clone())).collect();
    let groups = request
        .group_ids
        .into_iter()
        .map(|GroupId(id)| {
            let group = DescribedGroup::default()
                .with_group_id(GroupId(id.clone()))
                .with_authorized_operations(OPERATIONS_NOT_REQUESTED);
            match broker.groups.consumer.describe(id.as_str()) {
                Some(d) => described(group, d, &names),
                None => {
                    let why = if broker.groups.classic.is_empty_or_absent(id.as_str()) {
                        format!("group {} not found", id.as_str())
                    } else {
                        format!("group {} is not a consumer group", id.as_str())
                    };
                    group
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(StrBytes::from_string(why)))
                        .with_group_state(StrBytes::from_static_str("Dead"))
                }
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

fn described(group: DescribedGroup, d: GroupDescription, names: &BTreeMap<Uuid, String>) -> DescribedGroup {
    let text = |s: Option<String>| s.map(StrBytes::from_string);
    let members = d
        .members
        .into_iter()
        .map(|m| {
            Member::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_instance_id(text(m.instance_id))
                .with_rack_id(text(m.rack_id))
                .with_client_id(StrBytes::from_string(m.client_id))
                .with_client_host(StrBytes::from_string(m.client_host))
                .with_member_epoch(m.member_epoch)
                .with_subscribed_topic_names(
                    m.subscribed_topic_names
                        .into_iter()
                        .map(|n| TopicName(StrBytes::from_string(n)))
                        .collect(),
                )
                .with_assignment(to_wire(m.assignment, names))
                .with_target_assignment(to_wire(m.target_assignment, names))
                .with_member_type(CONSUMER_MEMBER_TYPE)
        })
        .collect();
    group
        .with_group_state(StrBytes::from_static_str(d.state))
        .with_group_epoch(d.group_epoch)
        .with_assignment_epoch(d.assignment_epoch)
        .with_assignor_name(StrBytes::from_static_str(d.assignor))
        .with_members(members)
}

/// Topics deleted since the assignment was made are left out: clients cannot name them.
fn to_wire(assignment: assignor::Assignment, names: &BTreeMap<Uuid, String>) -> Assignment {
    let topic_partitions = assignment
        .into_iter()
        .filter_map(|(id, partitions)| {
            let name = names.get(&id)?;
            Some(
                TopicPartitions::default()
                    .with_topic_id(id)
                    .with_topic_name(TopicName(StrBytes::from_string(name.clone())))
                    .with_partitions(partitions.into_iter().collect()),
            )
        })
        .collect();
    Assignment::default().with_topic_partitions(topic_partitions)
}

#[cfg(test)]
mod tests {
    const CLIENT: crate::api::Client<'static> = crate::api::Client {
        id: "test-client",
        addr: std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 1)),
    };

    use super::*;
    use crate::api::consumer_group_heartbeat;
    use crate::api::create_topics::test_support::{encodes, open, s, topic};
    use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, CreateTopicsRequest};

    #[test]
    fn describes_members_and_assignments() {
        let (_dir, broker) = open();
        let create = CreateTopicsRequest::default().with_topics(vec![topic("t", 2, 1, &[])]);
        crate::api::create_topics::handle(&broker, create, 7);
        let join = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s("m1"))
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
            .with_topic_partitions(Some(vec![]));
        assert_eq!(
            consumer_group_heartbeat::handle(&broker, join, 1, &CLIENT).error_code,
            0
        );

        let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("g")), GroupId(s("nope"))]);
        let r = handle(&broker, request, 1);
        encodes(&r, 0..=1);
        let g = &r.groups[0];
        assert_eq!((g.error_code, g.group_state.as_str()), (0, "Stable"));
        assert_eq!(
            (g.group_epoch, g.assignment_epoch, g.assignor_name.as_str()),
            (1, 1, "uniform")
        );
        let m = &g.members[0];
        assert_eq!((m.member_id.as_str(), m.member_epoch), ("m1", 1));
        assert_eq!(m.assignment.topic_partitions[0].topic_name.0.as_str(), "t");
        assert_eq!(m.assignment.topic_partitions[0].partitions, vec![0, 1]);
        assert_eq!(m.assignment, m.target_assignment);
        let missing = &r.groups[1];
        assert_eq!(missing.error_code, ResponseError::GroupIdNotFound.code());
        assert_eq!(missing.group_state.as_str(), "Dead");
    }
}

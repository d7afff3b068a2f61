//! ConsumerGroupHeartbeat (KIP-848, v0-1): joins, heartbeats and leaves of next-generation
//! consumer groups; the coordinator in `group::consumer` assigns partitions server-side.

use std::sync::Arc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::{now_ms, Broker};
use crate::group::consumer::assignor::{self, TopicInfo};
use crate::group::consumer::{Heartbeat, Settings};

/// Runs one heartbeat against the group coordinator.
pub fn handle(
    broker: &Arc<Broker>,
    request: ConsumerGroupHeartbeatRequest,
    version: i16,
    client: &crate::api::Client,
) -> ConsumerGroupHeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    if !broker.groups.classic.is_empty_or_absent(&group_id) {
        return error(
            ResponseError::GroupIdNotFound.code(),
            format!("group {group_id} is a classic group with members, not a consumer group"),
        );
    }
    let mut hb = to_heartbeat(request, version, group_id);
    hb.client_id = client.id.to_string();
    // Kafka shows the host as "/ip", as Java's InetAddress prints it.
    hb.client_host = format!("/{}", client.addr.ip());
    let settings = Settings::from_config(&broker.config());
    let resolve = |name: &str| {
        broker.topics.get(name).map(|t| TopicInfo {
            id: t.id,
            partitions: t.partition_count(),
        })
    };
    match broker.groups.consumer.heartbeat(&hb, &settings, now_ms(), &resolve) {
        Ok(reply) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(reply.member_id)))
            .with_member_epoch(reply.member_epoch)
            .with_heartbeat_interval_ms(reply.heartbeat_interval_ms)
            .with_assignment(reply.assignment.map(to_wire)),
        Err(e) => error(e.code(), e.to_string()),
    }
}

fn error(code: i16, message: String) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(code)
        .with_error_message(Some(StrBytes::from_string(message)))
}

fn to_heartbeat(request: ConsumerGroupHeartbeatRequest, version: i16, group_id: String) -> Heartbeat {
    let text = |s: Option<StrBytes>| s.map(|s| s.to_string());
    Heartbeat {
        version,
        group_id,
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: text(request.instance_id),
        rack_id: text(request.rack_id),
        client_id: String::new(),
        client_host: String::new(),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
        // Kafka treats an empty regex as none; librdkafka sends "" with topic-name subscriptions.
        subscribed_topic_regex: text(request.subscribed_topic_regex).filter(|r| !r.is_empty()),
        server_assignor: text(request.server_assignor),
        owned: request.topic_partitions.map(|topics| {
            let mut owned = assignor::Assignment::new();
            for t in topics.into_iter().filter(|t| !t.partitions.is_empty()) {
                owned.entry(t.topic_id).or_default().extend(t.partitions);
            }
            owned
        }),
    }
}

fn to_wire(assignment: assignor::Assignment) -> Assignment {
    Assignment::default().with_topic_partitions(
        assignment
            .into_iter()
            .map(|(topic_id, partitions)| {
                TopicPartitions::default()
                    .with_topic_id(topic_id)
                    .with_partitions(partitions.into_iter().collect())
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    const CLIENT: crate::api::Client<'static> = crate::api::Client {
        id: "test-client",
        addr: std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 1)),
    };

    use super::*;
    use crate::api::create_topics::test_support::{encodes, open, s, topic};
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as Owned;
    use kafka_protocol::messages::{CreateTopicsRequest, GroupId, TopicName};

    fn join(member: &str) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s(member))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
            .with_server_assignor(Some(s("range")))
            .with_topic_partitions(Some(vec![]))
    }

    #[test]
    fn a_member_joins_heartbeats_and_leaves() {
        let (_dir, broker) = open();
        let create = CreateTopicsRequest::default().with_topics(vec![topic("t", 3, 1, &[])]);
        crate::api::create_topics::handle(&broker, create, 7);
        let topic_id = broker.topics.get("t").unwrap().id;

        let r = handle(&broker, join("m1"), 1, &CLIENT);
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        assert_eq!(r.member_id.as_deref(), Some("m1"));
        assert_eq!(r.member_epoch, 1);
        assert_eq!(r.heartbeat_interval_ms, 5000);
        let assignment = r.assignment.clone().expect("the joiner gets its assignment");
        assert_eq!(assignment.topic_partitions[0].topic_id, topic_id);
        assert_eq!(assignment.topic_partitions[0].partitions, vec![0, 1, 2]);
        encodes(&r, 0..=1);

        let beat = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s("m1"))
            .with_member_epoch(1)
            .with_rebalance_timeout_ms(-1)
            .with_topic_partitions(Some(vec![Owned::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![0, 1, 2])]));
        let r = handle(&broker, beat.clone(), 1, &CLIENT);
        assert_eq!((r.error_code, r.member_epoch, r.assignment.is_none()), (0, 1, true));
        encodes(&r, 0..=1);

        let r = handle(&broker, beat.clone().with_member_epoch(7), 1, &CLIENT);
        assert_eq!(r.error_code, ResponseError::FencedMemberEpoch.code());
        encodes(&r, 0..=1);

        let r = handle(
            &broker,
            beat.clone().with_member_epoch(-1).with_topic_partitions(None),
            1,
            &CLIENT,
        );
        assert_eq!((r.error_code, r.member_epoch), (0, -1));
        let r = handle(&broker, beat, 1, &CLIENT);
        assert_eq!(r.error_code, ResponseError::UnknownMemberId.code());
    }

    #[test]
    fn bad_first_heartbeats_get_kafkas_codes() {
        let (_dir, broker) = open();
        let r = handle(&broker, join("m1").with_server_assignor(Some(s("sticky"))), 1, &CLIENT);
        assert_eq!(r.error_code, ResponseError::UnsupportedAssignor.code());
        let r = handle(&broker, join("m1").with_subscribed_topic_names(None), 1, &CLIENT);
        assert_eq!(r.error_code, ResponseError::InvalidRequest.code());
        let r = handle(
            &broker,
            join("m1").with_subscribed_topic_regex(Some(s("t.*"))),
            1,
            &CLIENT,
        );
        assert_eq!(r.error_code, ResponseError::InvalidRequest.code());
        let r = handle(&broker, join(""), 1, &CLIENT);
        assert_eq!(r.error_code, ResponseError::InvalidRequest.code());
        // An empty regex is no regex (librdkafka sends one with topic-name subscriptions).
        let r = handle(&broker, join("m2").with_subscribed_topic_regex(Some(s(""))), 1, &CLIENT);
        assert_eq!(r.error_code, 0);
        let r = handle(&broker, join(""), 0, &CLIENT);
        assert_eq!(r.error_code, 0, "v0 members may let the broker name them");
        assert!(r.member_id.is_some_and(|id| !id.is_empty()));
        assert!(
            r.assignment.is_some_and(|a| a.topic_partitions.is_empty()),
            "no such topic yet"
        );
    }
}

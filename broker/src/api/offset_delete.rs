//! OffsetDelete (v0): removes a group's committed offsets for some partitions, with tombstones
//! in `__consumer_offsets`, answering once they are durable.
//!
//! Kafka refuses per topic with GROUP_SUBSCRIBED_TO_TOPIC when a live member of the group is
//! subscribed to it. The membership engines expose no subscription query, so Brook is more
//! conservative and refuses the whole request with NON_EMPTY_GROUP while the group has any live
//! member, as Kafka does for classic groups that do not use the consumer protocol type.

use std::sync::Arc;

use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::Reply;
use crate::broker::{now_ms, Broker};
use crate::group::offsets::{coordinator_error_code, membership};

/// Checks the group, then appends tombstones for the partitions that exist and answers once durable.
pub fn handle(broker: &Arc<Broker>, request: OffsetDeleteRequest, _version: i16) -> Reply {
    let group = request.group_id.0.as_str();
    let offsets = &broker.groups.offsets;
    let group_error = if group.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else if !membership::is_idle(&broker.groups, group) {
        Some(ResponseError::NonEmptyGroup)
    } else if !offsets.has_offsets(group) {
        Some(ResponseError::GroupIdNotFound)
    } else {
        None
    };
    if let Some(e) = group_error {
        let response = OffsetDeleteResponse::default().with_error_code(e.code());
        return Reply::Now(Box::new(ResponseKind::OffsetDelete(response)));
    }
    let mut doomed = Vec::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let code = if broker.topics.log(name, p.partition_index).is_err() {
                    ResponseError::UnknownTopicOrPartition.code()
                } else {
                    doomed.push((name.to_string(), p.partition_index));
                    0
                };
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
            })
            .collect();
        topics.push(
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    let response = OffsetDeleteResponse::default().with_topics(topics);
    let failed = |e: &crate::Error| {
        tracing::error!(group = %request.group_id.0, error = %e, "offset delete failed");
        OffsetDeleteResponse::default().with_error_code(coordinator_error_code(e))
    };
    let appended = match offsets.begin_delete_offsets(group, &doomed, now_ms()) {
        Ok(appended) => appended,
        Err(e) => return Reply::Now(Box::new(ResponseKind::OffsetDelete(failed(&e)))),
    };
    let broker = broker.clone();
    let group_id = request.group_id.0.clone();
    Reply::Later(Box::pin(async move {
        match broker.groups.offsets.finish(appended).await {
            Ok(()) => Some(ResponseKind::OffsetDelete(response)),
            Err(e) => {
                tracing::error!(group = %group_id, error = %e, "offset delete not durable");
                let response = OffsetDeleteResponse::default().with_error_code(coordinator_error_code(&e));
                Some(ResponseKind::OffsetDelete(response))
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
    use kafka_protocol::messages::{GroupId, TopicName};

    use super::*;
    use crate::api::create_topics::test_support::{self as support, s};
    use crate::api::offset_commit::test_support::{commit_request, resolve, roundtrip};

    fn request(group: &str, partitions: &[(&str, i32)]) -> OffsetDeleteRequest {
        let topics = partitions
            .iter()
            .map(|(t, p)| {
                OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s(t)))
                    .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(*p)])
            })
            .collect();
        OffsetDeleteRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(topics)
    }

    async fn delete(broker: &Arc<Broker>, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
        match resolve(handle(broker, roundtrip(&request, 0), 0)).await {
            Some(ResponseKind::OffsetDelete(r)) => {
                support::encodes(&r, 0..=0);
                r
            }
            _ => panic!("not an OffsetDelete response"),
        }
    }

    #[tokio::test]
    async fn deletes_some_offsets_and_refuses_unknown_groups_and_partitions() {
        let (_dir, broker) = support::open();
        broker
            .topics
            .create(&broker.config(), "t", 2, BTreeMap::new(), false)
            .unwrap();
        let commit = commit_request("g", -1, "", &[("t", 0, 5), ("t", 1, 6)]);
        resolve(crate::api::offset_commit::handle(&broker, commit, 9))
            .await
            .unwrap();

        let response = delete(&broker, request("g", &[("t", 0), ("t", 7), ("gone", 0)])).await;
        assert_eq!(response.error_code, 0);
        let codes: Vec<i16> = response.topics.iter().map(|t| t.partitions[0].error_code).collect();
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(codes, vec![0, unknown, unknown]);
        assert!(broker.groups.offsets.fetch("g", "t", 0).is_none());
        assert_eq!(broker.groups.offsets.fetch("g", "t", 1).unwrap().offset, 6);

        let response = delete(&broker, request("nobody", &[("t", 0)])).await;
        assert_eq!(response.error_code, ResponseError::GroupIdNotFound.code());
        let response = delete(&broker, request("", &[("t", 0)])).await;
        assert_eq!(response.error_code, ResponseError::InvalidGroupId.code());
    }
}

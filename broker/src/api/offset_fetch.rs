//! OffsetFetch (v1-9): a group's committed offsets for given partitions or all of them (null
//! topics, v2+), for several groups in one request from v8.
//!
//! As Kafka answers: a partition without a committed offset gets offset -1, leader epoch -1 and
//! empty metadata with no error; an unknown group is a group without offsets. With
//! `require_stable` (v7+), a partition for which an open transaction holds an offset answers
//! UNSTABLE_OFFSET_COMMIT (retriable: the client asks again once the transaction ends).

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::group::offsets::{membership, OffsetValue};

/// The committed offset reported for a partition without one.
const NO_OFFSET: i64 = -1;
/// The leader epoch reported when it is unknown.
const NO_LEADER_EPOCH: i32 = -1;

/// One partition's answer, before it takes the shape of the request's version.
struct PartitionAnswer {
    index: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
    error_code: i16,
}

/// One group's answer: a group-level error, or offsets by topic.
struct GroupAnswer {
    error_code: i16,
    topics: Vec<(TopicName, Vec<PartitionAnswer>)>,
}

/// Answers one group (v1-7) or every group of the request (v8+).
pub fn handle(broker: &Arc<Broker>, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let topics = g
                    .topics
                    .map(|ts| ts.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
                let answer = answer_group(
                    broker,
                    g.group_id.0.as_str(),
                    topics,
                    g.member_id.as_deref(),
                    g.member_epoch,
                    request.require_stable,
                );
                let topics = answer
                    .topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        let partitions = partitions
                            .into_iter()
                            .map(|p| {
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p.index)
                                    .with_committed_offset(p.offset)
                                    .with_committed_leader_epoch(p.leader_epoch)
                                    .with_metadata(Some(StrBytes::from_string(p.metadata)))
                                    .with_error_code(p.error_code)
                            })
                            .collect();
                        OffsetFetchResponseTopics::default()
                            .with_name(name)
                            .with_partitions(partitions)
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(answer.error_code)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = request
        .topics
        .map(|ts| ts.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
    let require_stable = version >= 7 && request.require_stable;
    let answer = answer_group(broker, request.group_id.0.as_str(), topics, None, -1, require_stable);
    // v1 has no top-level error code: a group error is reported on every partition.
    let partition_error = if version < 2 { answer.error_code } else { 0 };
    let topics = answer
        .topics
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|p| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p.index)
                        .with_committed_offset(p.offset)
                        .with_committed_leader_epoch(p.leader_epoch)
                        .with_metadata(Some(StrBytes::from_string(p.metadata)))
                        .with_error_code(if p.error_code != 0 {
                            p.error_code
                        } else {
                            partition_error
                        })
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    let response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response.with_error_code(answer.error_code)
    } else {
        response
    }
}

/// One group's committed offsets for the given partitions, or all of them for `None`.
fn answer_group(
    broker: &Broker,
    group: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
    member_id: Option<&str>,
    member_epoch: i32,
    require_stable: bool,
) -> GroupAnswer {
    if let Err(error_code) = membership::validate_fetch(&broker.groups, group, member_id, member_epoch) {
        return GroupAnswer {
            error_code,
            topics: Vec::new(),
        };
    }
    let offsets = &broker.groups.offsets;
    // Pending first, value after: a transaction that completes in between has applied its
    // offset by the time it is read.
    let read = |topic: &str, index: i32| {
        if require_stable && offsets.has_pending_txn(group, topic, index) {
            return PartitionAnswer::new(index, None, ResponseError::UnstableOffsetCommit.code());
        }
        PartitionAnswer::new(index, offsets.fetch(group, topic, index), 0)
    };
    let topics = match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(name, indexes)| {
                let partitions = indexes.into_iter().map(|index| read(name.0.as_str(), index)).collect();
                (name, partitions)
            })
            .collect(),
        None => {
            let mut by_topic: Vec<(TopicName, Vec<PartitionAnswer>)> = Vec::new();
            for (topic, index, v) in offsets.fetch_all(group) {
                // With require_stable the value is read again after the pending check.
                let answer = if require_stable {
                    read(&topic, index)
                } else {
                    PartitionAnswer::new(index, Some(v), 0)
                };
                // fetch_all is ordered by topic, so a topic's partitions are adjacent.
                match by_topic.last_mut() {
                    Some((name, partitions)) if name.0.as_str() == topic => partitions.push(answer),
                    _ => by_topic.push((TopicName(StrBytes::from_string(topic)), vec![answer])),
                }
            }
            by_topic
        }
    };
    GroupAnswer { error_code: 0, topics }
}

impl PartitionAnswer {
    /// A partition's committed offset, or the answer for none (also given with an error).
    fn new(index: i32, committed: Option<OffsetValue>, error_code: i16) -> PartitionAnswer {
        match committed {
            Some(v) => PartitionAnswer {
                index,
                offset: v.offset,
                leader_epoch: v.leader_epoch,
                metadata: v.metadata,
                error_code,
            },
            None => PartitionAnswer {
                index,
                offset: NO_OFFSET,
                leader_epoch: NO_LEADER_EPOCH,
                metadata: String::new(),
                error_code,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::GroupId;

    use super::*;
    use crate::api::create_topics::test_support::{self as support, s};
    use crate::api::offset_commit::test_support::{commit_request, resolve, roundtrip};

    async fn commit(broker: &Arc<Broker>, group: &str, offsets: &[(&str, i32, i64)]) {
        let reply = crate::api::offset_commit::handle(broker, commit_request(group, -1, "", offsets), 9);
        resolve(reply).await.unwrap();
    }

    fn topic(name: &str, partitions: &[i32]) -> OffsetFetchRequestTopic {
        OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(name)))
            .with_partition_indexes(partitions.to_vec())
    }

    #[tokio::test]
    async fn one_group_at_every_version_before_8() {
        let (_dir, broker) = support::open();
        broker
            .topics
            .create(&broker.config(), "t", 3, BTreeMap::new(), false)
            .unwrap();
        commit(&broker, "g", &[("t", 0, 10), ("t", 2, 12)]).await;
        for version in 1..=7 {
            let request = OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(Some(vec![topic("t", &[0, 1]), topic("other", &[0])]));
            let response = handle(&broker, roundtrip(&request, version), version);
            support::encodes(&response, version..=version);
            let got: Vec<(i32, i64, i32, i16)> = response
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        (
                            p.partition_index,
                            p.committed_offset,
                            p.committed_leader_epoch,
                            p.error_code,
                        )
                    })
                })
                .collect();
            assert_eq!(got, vec![(0, 10, 3, 0), (1, -1, -1, 0), (0, -1, -1, 0)], "v{version}");
            assert_eq!(response.topics[0].partitions[0].metadata.as_deref(), Some("meta"));
            if version >= 2 {
                // Null topics: every committed offset of the group.
                let all = handle(&broker, roundtrip(&request.clone().with_topics(None), version), version);
                support::encodes(&all, version..=version);
                let got: Vec<(i32, i64)> = all.topics[0]
                    .partitions
                    .iter()
                    .map(|p| (p.partition_index, p.committed_offset))
                    .collect();
                assert_eq!((all.topics.len(), got), (1, vec![(0, 10), (2, 12)]), "v{version}");
            }
        }
    }

    #[tokio::test]
    async fn several_groups_from_version_8() {
        let (_dir, broker) = support::open();
        broker
            .topics
            .create(&broker.config(), "t", 2, BTreeMap::new(), false)
            .unwrap();
        commit(&broker, "a", &[("t", 0, 1)]).await;
        commit(&broker, "b", &[("t", 1, 2)]).await;
        for version in 8..=9 {
            let group = |name: &str, topics: Option<Vec<OffsetFetchRequestTopics>>| {
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s(name)))
                    .with_topics(topics)
            };
            let t = OffsetFetchRequestTopics::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0, 1]);
            let request = OffsetFetchRequest::default()
                .with_require_stable(true)
                .with_groups(vec![
                    group("a", Some(vec![t])),
                    group("b", None),
                    group("unknown", None),
                ]);
            let response = handle(&broker, roundtrip(&request, version), version);
            support::encodes(&response, version..=version);
            let a: Vec<i64> = response.groups[0].topics[0]
                .partitions
                .iter()
                .map(|p| p.committed_offset)
                .collect();
            assert_eq!(a, vec![1, -1], "v{version}");
            let b = &response.groups[1].topics[0];
            assert_eq!(
                (
                    b.name.0.as_str(),
                    b.partitions[0].partition_index,
                    b.partitions[0].committed_offset
                ),
                ("t", 1, 2)
            );
            assert_eq!((response.groups[2].error_code, response.groups[2].topics.len()), (0, 0));
        }
    }
}

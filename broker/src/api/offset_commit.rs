//! OffsetCommit (v2-9): checks that the committer may commit for its group, appends the offsets
//! to `__consumer_offsets` at once (in request order) and answers once they are durable.

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::Reply;
use crate::broker::{now_ms, Broker};
use crate::group::offsets::{coordinator_error_code, membership, record, CommitEntry};

/// `retention_time_ms` meaning "the broker's retention" (OffsetCommit v2-4).
const DEFAULT_RETENTION_TIME_MS: i64 = -1;

/// Validates the group and every partition, appends the accepted offsets now, and answers once
/// they are durable; each partition gets its own error code.
pub fn handle(broker: &Arc<Broker>, request: OffsetCommitRequest, version: i16) -> Reply {
    let group = request.group_id.0.as_str();
    let now = now_ms();
    let group_error = if group.is_empty() || group.len() > record::MAX_STRING_BYTES {
        Err(ResponseError::InvalidGroupId.code())
    } else {
        membership::validate_commit(
            &broker.groups,
            group,
            request.member_id.as_str(),
            request.generation_id_or_member_epoch,
            request.group_instance_id.as_deref(),
            version,
        )
    };
    // Kafka honours an explicit retention only up to v4, where the field exists.
    let expire_timestamp_ms = (version <= 4 && request.retention_time_ms != DEFAULT_RETENTION_TIME_MS)
        .then(|| now.saturating_add(request.retention_time_ms));
    let offsets = &broker.groups.offsets;
    let mut entries = Vec::new();
    // (topic index, partition index) of every entry, to report a failed write.
    let mut slots = Vec::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    for (ti, topic) in request.topics.iter().enumerate() {
        let name = topic.name.0.as_str();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for (pi, p) in topic.partitions.iter().enumerate() {
            let metadata = p.committed_metadata.as_deref().unwrap_or("");
            let code = if let Err(code) = group_error {
                code
            } else if broker.topics.log(name, p.partition_index).is_err() {
                ResponseError::UnknownTopicOrPartition.code()
            } else if offsets.metadata_too_large(metadata) {
                ResponseError::OffsetMetadataTooLarge.code()
            } else {
                entries.push(CommitEntry {
                    topic: name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: metadata.to_string(),
                    expire_timestamp_ms,
                });
                slots.push((ti, pi));
                0
            };
            partitions.push(
                OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code),
            );
        }
        topics.push(
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    let mut response = OffsetCommitResponse::default().with_topics(topics);
    if entries.is_empty() {
        return Reply::Now(Box::new(ResponseKind::OffsetCommit(response)));
    }
    let fail = |response: &mut OffsetCommitResponse, slots: &[(usize, usize)], e: &crate::Error| {
        tracing::warn!(group = %request.group_id.0, error = %e, "offset commit failed");
        let code = coordinator_error_code(e);
        for &(ti, pi) in slots {
            response.topics[ti].partitions[pi].error_code = code;
        }
    };
    let appended = match offsets.begin_commit(group, entries, now) {
        Ok(appended) => appended,
        Err(e) => {
            fail(&mut response, &slots, &e);
            return Reply::Now(Box::new(ResponseKind::OffsetCommit(response)));
        }
    };
    let broker = broker.clone();
    let group_id = request.group_id.0.clone();
    Reply::Later(Box::pin(async move {
        if let Err(e) = broker.groups.offsets.finish(appended).await {
            tracing::error!(group = %group_id, error = %e, "offset commit not durable");
            let code = coordinator_error_code(&e);
            for (ti, pi) in slots {
                response.topics[ti].partitions[pi].error_code = code;
            }
        }
        Some(ResponseKind::OffsetCommit(response))
    }))
}

#[cfg(test)]
pub(crate) mod test_support {
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest, TopicName};

    use kafka_protocol::messages::ResponseKind;
    use kafka_protocol::protocol::{Decodable, Encodable};

    use crate::api::create_topics::test_support::s;
    use crate::api::Reply;

    /// Runs a handler's reply to its response.
    pub async fn resolve(reply: Reply) -> Option<ResponseKind> {
        match reply {
            Reply::Now(kind) => Some(*kind),
            Reply::Later(future) => future.await,
            Reply::Nothing => None,
        }
    }

    /// A request as a client sends it at `version`: fields the version lacks are lost.
    pub fn roundtrip<T: Encodable + Decodable>(request: &T, version: i16) -> T {
        let mut buf = bytes::BytesMut::new();
        request.encode(&mut buf, version).expect("the request encodes");
        T::decode(&mut buf.freeze(), version).expect("the request decodes")
    }

    /// An OffsetCommit request for one group committing `(topic, partition, offset)` triples.
    pub fn commit_request(
        group: &str,
        generation: i32,
        member: &str,
        offsets: &[(&str, i32, i64)],
    ) -> OffsetCommitRequest {
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for &(topic, partition, offset) in offsets {
            let p = OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(3)
                .with_committed_metadata(Some(s("meta")));
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(topic)))
                        .with_partitions(vec![p]),
                ),
            }
        }
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(topics)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::test_support::commit_request;
    use super::test_support::{resolve, roundtrip};
    use super::*;
    use crate::api::create_topics::test_support::{self as support, s};

    async fn answer(reply: Reply) -> OffsetCommitResponse {
        match resolve(reply).await {
            Some(ResponseKind::OffsetCommit(r)) => r,
            _ => panic!("not an OffsetCommit response"),
        }
    }

    fn codes(response: &OffsetCommitResponse) -> Vec<i16> {
        response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    }

    #[tokio::test]
    async fn commits_become_visible_and_encode_at_every_version() {
        let (_dir, broker) = support::open();
        let config = broker.config();
        broker.topics.create(&config, "t", 2, BTreeMap::new(), false).unwrap();
        for version in 2..=9 {
            let offset = 100 + i64::from(version);
            let request = commit_request("g", -1, "", &[("t", 0, offset), ("t", 1, offset + 1)]);
            let request = roundtrip(&request, version);
            let response = answer(handle(&broker, request, version)).await;
            support::encodes(&response, version..=version);
            assert_eq!(codes(&response), vec![0, 0], "v{version}");
            let committed = broker.groups.offsets.fetch("g", "t", 1).unwrap();
            assert_eq!((committed.offset, committed.metadata.as_str()), (offset + 1, "meta"));
            let epoch = if version >= 6 { 3 } else { -1 };
            assert_eq!(
                broker.groups.offsets.fetch("g", "t", 0).unwrap().leader_epoch,
                epoch,
                "v{version}"
            );
        }
    }

    #[tokio::test]
    async fn bad_partitions_metadata_and_groups_get_their_own_codes() {
        let (_dir, broker) = support::open();
        let config = broker.config();
        broker.topics.create(&config, "t", 1, BTreeMap::new(), false).unwrap();
        let mut request = commit_request("g", -1, "", &[("t", 0, 5), ("t", 9, 5), ("nope", 0, 5), ("t", 0, 6)]);
        request.topics[0].partitions[2].committed_metadata = Some(s(&"x".repeat(4097)));
        let response = answer(handle(&broker, request, 8)).await;
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        let too_large = ResponseError::OffsetMetadataTooLarge.code();
        assert_eq!(codes(&response), vec![0, unknown, too_large, unknown]);
        assert_eq!(broker.groups.offsets.fetch("g", "t", 0).unwrap().offset, 5);

        let response = answer(handle(&broker, commit_request("", -1, "", &[("t", 0, 1)]), 8)).await;
        assert_eq!(codes(&response), vec![ResponseError::InvalidGroupId.code()]);
        assert!(!broker.groups.offsets.has_offsets(""));
    }

    #[tokio::test]
    async fn retention_time_sets_an_expiry_up_to_v4() {
        let (_dir, broker) = support::open();
        let config = broker.config();
        broker.topics.create(&config, "t", 1, BTreeMap::new(), false).unwrap();
        let request = commit_request("g", -1, "", &[("t", 0, 1)]).with_retention_time_ms(60_000);
        answer(handle(&broker, request.clone(), 4)).await;
        let v = broker.groups.offsets.fetch("g", "t", 0).unwrap();
        assert_eq!(v.expire_timestamp_ms, Some(v.commit_timestamp_ms + 60_000));
        answer(handle(&broker, request, 5)).await;
        assert_eq!(
            broker.groups.offsets.fetch("g", "t", 0).unwrap().expire_timestamp_ms,
            None
        );
    }
}

//! OffsetCommit (v2-9): checks that the committer may commit for its group, appends the offsets
//! to `__consumer_offsets` at once (in request order) and answers once they are durable.

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::Reply;
use crate::broker::{now_ms, Broker};
use crate::group::offsets::{coordinator_error_code, membership, record, Appended, CommitEntry};

/// `retention_time_ms` meaning "the broker's retention" (OffsetCommit v2-4).
const DEFAULT_RETENTION_TIME_MS: i64 = -1;

/// Validates the group and every partition, appends the accepted offsets now, and answers once
/// they are durable; each partition gets its own error code.
pub fn handle(broker: &Arc<Broker>, mut request: OffsetCommitRequest, version: i16) -> Reply {
    let group = request.group_id.0.as_str();
    let now = now_ms();
    let group_error = check_group(group, || {
        membership::validate_commit(
            &broker.groups,
            group,
            request.member_id.as_str(),
            request.generation_id_or_member_epoch,
            request.group_instance_id.as_deref(),
            version,
        )
    });
    // Kafka honours an explicit retention only up to v4, where the field exists.
    let expire_timestamp_ms = (version <= 4 && request.retention_time_ms != DEFAULT_RETENTION_TIME_MS)
        .then(|| now.saturating_add(request.retention_time_ms));
    let checked = CheckedCommit::new(
        broker,
        group_error,
        expire_timestamp_ms,
        request.topics.iter().map(|t| {
            let partitions = t.partitions.iter().map(|p| PartitionCommit {
                index: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_deref(),
            });
            (t.name.0.as_str(), partitions.collect())
        }),
    );
    let topics = std::mem::take(&mut request.topics);
    let respond = move |codes: Vec<Vec<i16>>| {
        let topics = topics
            .into_iter()
            .zip(codes)
            .map(|(t, codes)| {
                let partitions = t.partitions.iter().zip(codes).map(|(p, code)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                });
                OffsetCommitResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(partitions.collect())
            })
            .collect();
        ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics))
    };
    checked.write(
        broker,
        group,
        |entries| {
            broker.groups.offsets.begin_commit(group, entries, now).map_err(|e| {
                tracing::warn!(group, error = %e, "offset commit failed");
                coordinator_error_code(&e)
            })
        },
        respond,
    )
}

/// The group's own check for a commit: an empty or oversized group id is INVALID_GROUP_ID, any
/// other group is asked of `validate` (the membership rules).
pub(super) fn check_group(group: &str, validate: impl FnOnce() -> Result<(), i16>) -> Result<(), i16> {
    if group.is_empty() || group.len() > record::MAX_STRING_BYTES {
        return Err(ResponseError::InvalidGroupId.code());
    }
    validate()
}

/// One partition of a commit request (OffsetCommit or TxnOffsetCommit).
pub(super) struct PartitionCommit<'a> {
    /// The partition index.
    pub index: i32,
    /// The committed offset.
    pub offset: i64,
    /// The leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// The client's metadata, if any.
    pub metadata: Option<&'a str>,
}

/// A commit request checked partition by partition, as both commit APIs check it.
pub(super) struct CheckedCommit {
    /// Every partition's error code, by topic, in request order.
    codes: Vec<Vec<i16>>,
    /// The offsets that passed every check.
    entries: Vec<CommitEntry>,
    /// (topic index, partition index) of every entry.
    slots: Vec<(usize, usize)>,
}

impl CheckedCommit {
    /// Kafka's checks, in its order: the group (`group_error`), then whether the partition
    /// exists, then whether its metadata fits `offset.metadata.max.bytes`. `topics` holds each
    /// topic's name and partitions, in request order.
    pub(super) fn new<'a>(
        broker: &Broker,
        group_error: Result<(), i16>,
        expire_timestamp_ms: Option<i64>,
        topics: impl Iterator<Item = (&'a str, Vec<PartitionCommit<'a>>)>,
    ) -> CheckedCommit {
        let offsets = &broker.groups.offsets;
        let mut checked = CheckedCommit {
            codes: Vec::new(),
            entries: Vec::new(),
            slots: Vec::new(),
        };
        for (ti, (topic, partitions)) in topics.enumerate() {
            let mut codes = Vec::with_capacity(partitions.len());
            for (pi, p) in partitions.into_iter().enumerate() {
                let metadata = p.metadata.unwrap_or("");
                let code = if let Err(code) = group_error {
                    code
                } else if broker.topics.log(topic, p.index).is_err() {
                    ResponseError::UnknownTopicOrPartition.code()
                } else if offsets.metadata_too_large(metadata) {
                    ResponseError::OffsetMetadataTooLarge.code()
                } else {
                    checked.entries.push(CommitEntry {
                        topic: topic.to_string(),
                        partition: p.index,
                        offset: p.offset,
                        leader_epoch: p.leader_epoch,
                        metadata: metadata.to_string(),
                        expire_timestamp_ms,
                    });
                    checked.slots.push((ti, pi));
                    0
                };
                codes.push(code);
            }
            checked.codes.push(codes);
        }
        checked
    }

    /// Appends the accepted offsets now with `begin` (which answers a refusal with its code) and
    /// answers through `respond` with every partition's code: at once when nothing was written
    /// or the write was refused, else once the offsets are durable.
    pub(super) fn write(
        mut self,
        broker: &Arc<Broker>,
        group: &str,
        begin: impl FnOnce(Vec<CommitEntry>) -> Result<Appended, i16>,
        respond: impl FnOnce(Vec<Vec<i16>>) -> ResponseKind + Send + 'static,
    ) -> Reply {
        if self.entries.is_empty() {
            return Reply::Now(Box::new(respond(self.codes)));
        }
        let appended = match begin(std::mem::take(&mut self.entries)) {
            Ok(appended) => appended,
            Err(code) => {
                self.fail(code);
                return Reply::Now(Box::new(respond(self.codes)));
            }
        };
        let broker = broker.clone();
        let group = group.to_string();
        Reply::Later(Box::pin(async move {
            if let Err(e) = broker.groups.offsets.finish(appended).await {
                tracing::error!(group = %group, error = %e, "offset commit not durable");
                self.fail(coordinator_error_code(&e));
            }
            Some(respond(self.codes))
        }))
    }

    /// Gives every accepted partition `code`: their write failed.
    fn fail(&mut self, code: i16) {
        for &(ti, pi) in &self.slots {
            self.codes[ti][pi] = code;
        }
    }
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

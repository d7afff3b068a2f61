//! TxnOffsetCommit (v0-4): a transactional producer commits a consumer group's offsets as part
//! of its transaction. The offsets are appended to `__consumer_offsets` as transactional records
//! of the producer and become visible to OffsetFetch only when the commit marker lands there.
//!
//! Checks, in Kafka's order: the group id, the group membership named by the request (v3+),
//! then the transaction (the producer is current and AddOffsetsToTxn added the group's offsets
//! partition, KIP-890's verification); each partition also needs to exist and its metadata to
//! fit `offset.metadata.max.bytes`.

use std::sync::Arc;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ResponseKind, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::offset_commit::{check_group, CheckedCommit, PartitionCommit};
use super::Reply;
use crate::broker::{now_ms, Broker};
use crate::error::Error;
use crate::group::offsets::{coordinator_error_code, membership, OFFSETS_TOPIC};
use crate::txn;

/// The first version that may answer TRANSACTION_ABORTABLE (KIP-890).
const TRANSACTION_ABORTABLE_VERSION: i16 = 4;

/// Validates the commit, appends the accepted offsets now, and answers once they are durable.
pub fn handle(broker: &Arc<Broker>, mut request: TxnOffsetCommitRequest, version: i16) -> Reply {
    let group = request.group_id.0.as_str();
    let offsets = &broker.groups.offsets;
    let group_error = check_group(group, || {
        membership::validate_txn_commit(
            &broker.groups,
            group,
            request.member_id.as_str(),
            request.generation_id,
            request.group_instance_id.as_deref(),
        )
    });
    let checked = CheckedCommit::new(
        broker,
        group_error,
        None,
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
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                });
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(partitions.collect())
            })
            .collect();
        ResponseKind::TxnOffsetCommit(TxnOffsetCommitResponse::default().with_topics(topics))
    };
    let transactional_id = request.transactional_id.0.as_str();
    let (producer_id, producer_epoch) = (request.producer_id.0, request.producer_epoch);
    let offsets_partition = (OFFSETS_TOPIC.to_string(), offsets.partition_of(group) as i32);
    let begin = |entries| {
        let now_ms = now_ms();
        let written = broker.txns.with_verified(
            transactional_id,
            producer_id,
            producer_epoch,
            &offsets_partition,
            || offsets.begin_txn_commit(group, producer_id, producer_epoch, entries, now_ms),
        );
        match written {
            Err(e) => {
                tracing::debug!(transactional_id, group, error = %e, "TxnOffsetCommit refused");
                Err(transaction_error_code(&e, version))
            }
            Ok(Err(e)) => {
                tracing::warn!(group, error = %e, "transactional offset commit failed");
                Err(coordinator_error_code(&e))
            }
            Ok(Ok(appended)) => Ok(appended),
        }
    };
    checked.write(broker, group, begin, respond)
}

/// The code for a refusal by the transaction coordinator. As Kafka's verification answers
/// transactional writes, a fenced producer gets INVALID_PRODUCER_EPOCH at every version, and a
/// partition outside the transaction INVALID_TXN_STATE (TRANSACTION_ABORTABLE from v4).
fn transaction_error_code(e: &Error, version: i16) -> i16 {
    match e {
        Error::InvalidTxnState { .. } if version >= TRANSACTION_ABORTABLE_VERSION => {
            ResponseError::TransactionAbortable.code()
        }
        other => txn::error_code(other, false),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetFetchRequest, ProducerId, TopicName, TransactionalId};

    use super::*;
    use crate::api::create_topics::test_support::{encodes, s};
    use crate::api::offset_commit::test_support::{commit_request, resolve, roundtrip};
    use crate::txn::tests::{end_txn, init, open_broker, topic};

    fn request(id: &str, pid: i64, epoch: i16, group: &str, offsets: &[(&str, i32, i64)]) -> TxnOffsetCommitRequest {
        let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
        for &(name, partition, offset) in offsets {
            let p = TxnOffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(s("m")));
            match topics.iter_mut().find(|t| t.name.0.as_str() == name) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(name)))
                        .with_partitions(vec![p]),
                ),
            }
        }
        TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_group_id(GroupId(s(group)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_topics(topics)
    }

    async fn commit(broker: &Arc<Broker>, request: TxnOffsetCommitRequest, version: i16) -> Vec<i16> {
        match resolve(handle(broker, roundtrip(&request, version), version)).await {
            Some(ResponseKind::TxnOffsetCommit(r)) => {
                encodes(&r, version..=version);
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                    .collect()
            }
            _ => panic!("not a TxnOffsetCommit response"),
        }
    }

    /// AddOffsetsToTxn for group `g`, through the coordinator.
    async fn add_offsets(broker: &Arc<Broker>, id: &str, pid: i64, epoch: i16) {
        let partition = broker.groups.offsets.partition_of("g") as i32;
        let partitions = std::collections::BTreeSet::from([(OFFSETS_TOPIC.to_string(), partition)]);
        let waiting = broker.txns.add_partitions(broker, id, pid, epoch, partitions, now_ms());
        waiting.unwrap().await.unwrap();
    }

    /// OffsetFetch v7 of group `g`, partition t-0: (offset, error code).
    fn fetch(broker: &Arc<Broker>, require_stable: bool) -> (i64, i16) {
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0])]))
            .with_require_stable(require_stable);
        let response = crate::api::offset_fetch::handle(broker, roundtrip(&request, 7), 7);
        let p = &response.topics[0].partitions[0];
        (p.committed_offset, p.error_code)
    }

    #[tokio::test]
    async fn offsets_become_visible_with_the_commit_and_never_with_an_abort() {
        let (_dir, broker) = open_broker();
        topic(&broker, "t", 1);
        let unstable = ResponseError::UnstableOffsetCommit.code();
        for version in 0..=4 {
            let (pid, epoch) = init(&broker, "tx").await;
            let offset = 100 + i64::from(version);
            for commit_it in [false, true] {
                add_offsets(&broker, "tx", pid, epoch).await;
                let codes = commit(&broker, request("tx", pid, epoch, "g", &[("t", 0, offset)]), version).await;
                assert_eq!(codes, vec![0], "v{version}");
                let before = broker.groups.offsets.fetch("g", "t", 0).map(|v| v.offset);
                assert_eq!(fetch(&broker, true), (-1, unstable), "v{version}");
                assert_eq!(fetch(&broker, false).0, before.unwrap_or(-1));
                assert_eq!(end_txn(&broker, "tx", pid, epoch, commit_it, 4).await, 0);
                broker.txns.settled("tx").await;
                let want = if commit_it { Some(offset) } else { before };
                assert_eq!(
                    broker.groups.offsets.fetch("g", "t", 0).map(|v| v.offset),
                    want,
                    "v{version}"
                );
                assert_eq!(fetch(&broker, true), (want.unwrap_or(-1), 0));
            }
        }
    }

    #[tokio::test]
    async fn a_plain_commit_appended_after_the_transactional_one_wins() {
        let (_dir, broker) = open_broker();
        topic(&broker, "t", 1);
        let (pid, epoch) = init(&broker, "tx").await;
        add_offsets(&broker, "tx", pid, epoch).await;
        assert_eq!(
            commit(&broker, request("tx", pid, epoch, "g", &[("t", 0, 10)]), 3).await,
            vec![0]
        );
        let plain = crate::api::offset_commit::handle(&broker, commit_request("g", -1, "", &[("t", 0, 20)]), 8);
        resolve(plain).await.unwrap();
        assert_eq!(end_txn(&broker, "tx", pid, epoch, true, 4).await, 0);
        broker.txns.settled("tx").await;
        assert_eq!(broker.groups.offsets.fetch("g", "t", 0).unwrap().offset, 20);
    }

    #[tokio::test]
    async fn kafkas_errors_for_commits_outside_a_valid_transaction() {
        let (_dir, broker) = open_broker();
        topic(&broker, "t", 1);
        let (pid, epoch) = init(&broker, "tx").await;
        let one = |code: ResponseError| vec![code.code()];
        // Without AddOffsetsToTxn the partition is not in the transaction.
        let outside = request("tx", pid, epoch, "g", &[("t", 0, 1)]);
        assert_eq!(
            commit(&broker, outside.clone(), 3).await,
            one(ResponseError::InvalidTxnState)
        );
        assert_eq!(
            commit(&broker, outside, 4).await,
            one(ResponseError::TransactionAbortable)
        );
        add_offsets(&broker, "tx", pid, epoch).await;
        for version in 0..=4 {
            let stale = request("tx", pid, epoch - 1, "g", &[("t", 0, 1)]);
            assert_eq!(
                commit(&broker, stale, version).await,
                one(ResponseError::InvalidProducerEpoch)
            );
        }
        let unknown = request("nobody", pid, epoch, "g", &[("t", 0, 1)]);
        assert_eq!(
            commit(&broker, unknown, 3).await,
            one(ResponseError::InvalidProducerIdMapping)
        );
        let mixed = request("tx", pid, epoch, "g", &[("t", 0, 1), ("t", 7, 1), ("nope", 0, 1)]);
        let unknown_partition = ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(
            commit(&broker, mixed, 3).await,
            vec![0, unknown_partition, unknown_partition]
        );
        let empty_group = request("tx", pid, epoch, "", &[("t", 0, 1)]);
        assert_eq!(
            commit(&broker, empty_group, 3).await,
            one(ResponseError::InvalidGroupId)
        );
        // v3+: naming a member of a group that has none.
        let member = request("tx", pid, epoch, "g", &[("t", 0, 1)])
            .with_member_id(s("m-1"))
            .with_generation_id(1);
        assert_eq!(commit(&broker, member, 3).await, one(ResponseError::UnknownMemberId));
        // Once the transaction is ending, commits wait.
        assert_eq!(end_txn(&broker, "tx", pid, epoch, true, 4).await, 0);
        let late = commit(&broker, request("tx", pid, epoch, "g", &[("t", 0, 1)]), 3).await;
        assert!(
            late == one(ResponseError::ConcurrentTransactions) || late == one(ResponseError::InvalidTxnState),
            "{late:?}"
        );
    }
}

//! The transaction requests of KIP-98 as single round trips: FindCoordinator for a transactional
//! id, InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn, each
//! turning its response's error codes into one `Result` (the retry policy lives with the caller).

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, InitProducerIdRequest, ProducerId,
    TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::ResponseError;

use super::check_code;
use super::connection::Connection;
use super::consumer_protocol::TopicPartition;
use super::offsets::{by_topic, group_id, text, topic_name};
use super::transaction::ConsumerGroupMetadata;
use crate::error::Result;

/// FindCoordinator's key type for transactional ids.
pub(crate) const KEY_TYPE_TRANSACTION: i8 = 1;

/// The producer identity a transactional request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIdentity {
    /// The producer id.
    pub(crate) id: i64,
    /// The producer epoch.
    pub(crate) epoch: i16,
}

pub(crate) fn transactional_id(s: &str) -> TransactionalId {
    TransactionalId(text(s))
}

/// InitProducerId for a transactional id; `current` (sent from v3) asks for an epoch bump of the
/// producer's own id rather than a new incarnation (KIP-360).
pub(crate) async fn init_producer_id(
    connection: &Arc<Connection>,
    id: &str,
    transaction_timeout_ms: i32,
    current: Option<ProducerIdentity>,
) -> Result<ProducerIdentity> {
    let version = connection.version(ApiKey::InitProducerId)?;
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = Some(transactional_id(id));
    request.transaction_timeout_ms = transaction_timeout_ms;
    let current = current.filter(|_| version >= 3);
    request.producer_id = ProducerId(current.map_or(-1, |c| c.id));
    request.producer_epoch = current.map_or(-1, |c| c.epoch);
    let response = connection.request(&request, version).await?;
    check_code(response.error_code, Some(&format!("transactional id {id}")))?;
    Ok(ProducerIdentity {
        id: response.producer_id.0,
        epoch: response.producer_epoch,
    })
}

/// The error code that best explains a batch of per-item results: the first real error, else
/// OPERATION_NOT_ATTEMPTED (which only says another item failed), else none.
fn worst(codes: impl IntoIterator<Item = (i16, String)>) -> Result<()> {
    let not_attempted = ResponseError::OperationNotAttempted.code();
    let mut fallback = None;
    for (code, what) in codes {
        if code == 0 {
            continue;
        }
        if code == not_attempted {
            fallback.get_or_insert((code, what));
            continue;
        }
        return check_code(code, Some(&what));
    }
    match fallback {
        Some((code, what)) => check_code(code, Some(&what)),
        None => Ok(()),
    }
}

/// AddPartitionsToTxn (the client's versions 0-3) for some partitions.
pub(crate) async fn add_partitions(
    connection: &Arc<Connection>,
    id: &str,
    producer: ProducerIdentity,
    partitions: &[TopicPartition],
) -> Result<()> {
    let version = connection.version(ApiKey::AddPartitionsToTxn)?;
    let items: Vec<(String, i32, ())> = partitions.iter().map(|(t, p)| (t.clone(), *p, ())).collect();
    let mut request = AddPartitionsToTxnRequest::default();
    request.v3_and_below_transactional_id = transactional_id(id);
    request.v3_and_below_producer_id = ProducerId(producer.id);
    request.v3_and_below_producer_epoch = producer.epoch;
    request.v3_and_below_topics = by_topic(&items)
        .into_iter()
        .map(|(topic, parts)| {
            let mut t = AddPartitionsToTxnTopic::default();
            t.name = topic_name(topic);
            t.partitions = parts.into_iter().map(|(p, ())| p).collect();
            t
        })
        .collect();
    let response = connection.request(&request, version).await?;
    worst(response.results_by_topic_v3_and_below.iter().flat_map(|t| {
        t.results_by_partition
            .iter()
            .map(move |p| (p.partition_error_code, format!("{}-{}", t.name.0, p.partition_index)))
    }))
}

/// AddOffsetsToTxn: puts the group's offsets partition into the transaction.
pub(crate) async fn add_offsets(
    connection: &Arc<Connection>,
    id: &str,
    producer: ProducerIdentity,
    group: &str,
) -> Result<()> {
    let version = connection.version(ApiKey::AddOffsetsToTxn)?;
    let mut request = AddOffsetsToTxnRequest::default();
    request.transactional_id = transactional_id(id);
    request.producer_id = ProducerId(producer.id);
    request.producer_epoch = producer.epoch;
    request.group_id = group_id(group);
    let response = connection.request(&request, version).await?;
    check_code(
        response.error_code,
        Some(&format!("adding offsets of group {group} to transaction {id}")),
    )
}

/// TxnOffsetCommit to the group's coordinator: offsets that become visible when the transaction commits.
pub(crate) async fn txn_offset_commit(
    connection: &Arc<Connection>,
    id: &str,
    producer: ProducerIdentity,
    group: &ConsumerGroupMetadata,
    offsets: &[(String, i32, i64)],
) -> Result<()> {
    let version = connection.version(ApiKey::TxnOffsetCommit)?;
    let mut request = TxnOffsetCommitRequest::default();
    request.transactional_id = transactional_id(id);
    request.group_id = group_id(&group.group_id);
    request.producer_id = ProducerId(producer.id);
    request.producer_epoch = producer.epoch;
    request.generation_id = group.generation_id;
    request.member_id = text(&group.member_id);
    request.group_instance_id = group.group_instance_id.as_deref().map(text);
    request.topics = by_topic(offsets)
        .into_iter()
        .map(|(topic, parts)| {
            let mut t = TxnOffsetCommitRequestTopic::default();
            t.name = topic_name(topic);
            t.partitions = parts
                .into_iter()
                .map(|(partition, offset)| {
                    let mut p = TxnOffsetCommitRequestPartition::default();
                    p.partition_index = partition;
                    p.committed_offset = offset;
                    p.committed_leader_epoch = -1;
                    p.committed_metadata = Some(text(""));
                    p
                })
                .collect();
            t
        })
        .collect();
    let response = connection.request(&request, version).await?;
    let group_id = &group.group_id;
    worst(response.topics.iter().flat_map(|t| {
        t.partitions.iter().map(move |p| {
            (
                p.error_code,
                format!("{}-{} in group {group_id}", t.name.0, p.partition_index),
            )
        })
    }))
}

/// EndTxn: asks the coordinator to commit or abort the open transaction.
pub(crate) async fn end_txn(
    connection: &Arc<Connection>,
    id: &str,
    producer: ProducerIdentity,
    commit: bool,
) -> Result<()> {
    let version = connection.version(ApiKey::EndTxn)?;
    let mut request = EndTxnRequest::default();
    request.transactional_id = transactional_id(id);
    request.producer_id = ProducerId(producer.id);
    request.producer_epoch = producer.epoch;
    request.committed = commit;
    let response = connection.request(&request, version).await?;
    let what = if commit { "committing" } else { "aborting" };
    check_code(response.error_code, Some(&format!("{what} transaction {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn code_of(result: Result<()>) -> i16 {
        match result {
            Ok(()) => 0,
            Err(Error::Remote { code, .. }) => code,
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn the_worst_code_is_a_real_error_before_operation_not_attempted() {
        assert_eq!(code_of(worst([(0, "a".to_string())])), 0);
        assert_eq!(
            code_of(worst([
                (55, "a".to_string()),
                (3, "b".to_string()),
                (0, "c".to_string())
            ])),
            3
        );
        assert_eq!(code_of(worst([(55, "a".to_string()), (0, "b".to_string())])), 55);
        assert_eq!(code_of(worst(Vec::new())), 0);
    }
}

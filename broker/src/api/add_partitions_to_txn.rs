//! AddPartitionsToTxn (v0-3, the client versions): adds partitions to a producer's transaction
//! before it writes to them. Versions 4 and up batch several transactions for brokers
//! (KIP-890) and are not advertised.
//!
//! As Kafka answers: if any partition does not exist, nothing is added, those partitions get
//! UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED; otherwise every partition
//! gets the coordinator's answer.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ResponseKind, TopicName};
use kafka_protocol::ResponseError;

use super::Reply;
use crate::broker::{now_ms, Broker};
use crate::txn::{self, TopicPartition};

/// Adds the request's partitions to its transaction; answers once the change is durable.
pub fn handle(broker: &Arc<Broker>, request: AddPartitionsToTxnRequest, version: i16) -> Reply {
    let topics: Vec<(TopicName, Vec<i32>)> = request
        .v3_and_below_topics
        .into_iter()
        .map(|t| (t.name, t.partitions))
        .collect();
    let unknown = |name: &TopicName, p: i32| broker.topics.log(name.0.as_str(), p).is_err();
    if topics.iter().any(|(name, ps)| ps.iter().any(|&p| unknown(name, p))) {
        let codes = |name: &TopicName, p: i32| {
            if unknown(name, p) {
                ResponseError::UnknownTopicOrPartition.code()
            } else {
                ResponseError::OperationNotAttempted.code()
            }
        };
        return now(response(&topics, codes));
    }
    let partitions: BTreeSet<TopicPartition> = topics
        .iter()
        .flat_map(|(name, ps)| ps.iter().map(|&p| (name.0.to_string(), p)))
        .collect();
    let waiting = broker.txns.add_partitions(
        broker,
        request.v3_and_below_transactional_id.0.as_str(),
        request.v3_and_below_producer_id.0,
        request.v3_and_below_producer_epoch,
        partitions,
        now_ms(),
    );
    txn::reply_with_code(waiting, version >= txn::PRODUCER_FENCED_VERSION, move |code| {
        ResponseKind::AddPartitionsToTxn(response(&topics, |_, _| code))
    })
}

/// Every requested partition with its code, in request order.
fn response(topics: &[(TopicName, Vec<i32>)], code: impl Fn(&TopicName, i32) -> i16) -> AddPartitionsToTxnResponse {
    let results = topics
        .iter()
        .map(|(name, ps)| {
            let partitions = ps
                .iter()
                .map(|&p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(code(name, p))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(name.clone())
                .with_results_by_partition(partitions)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

fn now(response: AddPartitionsToTxnResponse) -> Reply {
    Reply::Now(Box::new(ResponseKind::AddPartitionsToTxn(response)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::tests::{add_partitions, init, open_broker, topic};

    fn codes(r: &AddPartitionsToTxnResponse) -> Vec<(String, i32, i16)> {
        r.results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| (t.name.0.to_string(), p.partition_index, p.partition_error_code))
            })
            .collect()
    }

    #[tokio::test]
    async fn partitions_join_the_transaction_at_every_version() {
        let (_dir, broker) = open_broker();
        topic(&broker, "t", 4);
        let (pid, epoch) = init(&broker, "tx").await;
        for version in 0..=3 {
            let r = add_partitions(&broker, "tx", pid, epoch, &[("t", version.into())], version).await;
            assert_eq!(codes(&r), vec![("t".to_string(), i32::from(version), 0)], "v{version}");
        }
        let state = broker.txns.describe("tx").unwrap();
        assert_eq!(state.state, txn::TxnState::Ongoing);
        assert_eq!(state.partitions.len(), 4);
    }

    #[tokio::test]
    async fn unknown_partitions_fail_the_whole_request() {
        let (_dir, broker) = open_broker();
        topic(&broker, "t", 1);
        let (pid, epoch) = init(&broker, "tx").await;
        let r = add_partitions(&broker, "tx", pid, epoch, &[("t", 0), ("t", 5), ("nope", 0)], 3).await;
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        let not_attempted = ResponseError::OperationNotAttempted.code();
        assert_eq!(
            codes(&r),
            vec![
                ("t".to_string(), 0, not_attempted),
                ("t".to_string(), 5, unknown),
                ("nope".to_string(), 0, unknown)
            ]
        );
        assert_eq!(broker.txns.describe("tx").unwrap().state, txn::TxnState::Empty);
    }

    #[tokio::test]
    async fn fencing_and_mapping_errors_follow_the_version() {
        let (_dir, broker) = open_broker();
        topic(&broker, "t", 1);
        let (pid, epoch) = init(&broker, "tx").await;
        let (_, newer) = init(&broker, "tx").await;
        assert_eq!(newer, epoch + 1);
        let code = |r: &AddPartitionsToTxnResponse| codes(r)[0].2;
        let stale = add_partitions(&broker, "tx", pid, epoch, &[("t", 0)], 1).await;
        assert_eq!(code(&stale), ResponseError::InvalidProducerEpoch.code());
        let stale = add_partitions(&broker, "tx", pid, epoch, &[("t", 0)], 2).await;
        assert_eq!(code(&stale), ResponseError::ProducerFenced.code());
        let other = add_partitions(&broker, "tx", pid + 100, newer, &[("t", 0)], 3).await;
        assert_eq!(code(&other), ResponseError::InvalidProducerIdMapping.code());
        let unknown = add_partitions(&broker, "nobody", pid, newer, &[("t", 0)], 3).await;
        assert_eq!(code(&unknown), ResponseError::InvalidProducerIdMapping.code());
    }
}

//! DescribeTransactions (v0): the coordinator's state of given transactional ids, as
//! `kafka-transactions.sh describe` shows it.

use std::sync::Arc;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::error::Error;

/// Describes every requested transactional id; unknown ones get TRANSACTIONAL_ID_NOT_FOUND and
/// an empty one INVALID_REQUEST.
pub fn handle(
    broker: &Arc<Broker>,
    request: DescribeTransactionsRequest,
    _version: i16,
) -> DescribeTransactionsResponse {
    let states = request
        .transactional_ids
        .into_iter()
        .map(|id| describe(broker, id))
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

fn describe(broker: &Broker, id: TransactionalId) -> TransactionState {
    let answer = TransactionState::default().with_transactional_id(id.clone());
    if id.0.is_empty() {
        let e = Error::MalformedRequest("the transactional id is empty".to_string());
        return answer.with_error_code(e.kafka_code());
    }
    match broker.txns.describe(id.0.as_str()) {
        Err(e) => answer.with_error_code(e.kafka_code()),
        Ok(meta) => {
            let mut topics: Vec<TopicData> = Vec::new();
            for (topic, partition) in meta.partitions {
                match topics.last_mut() {
                    Some(t) if t.topic.0.as_str() == topic => t.partitions.push(partition),
                    _ => topics.push(
                        TopicData::default()
                            .with_topic(TopicName(StrBytes::from_string(topic)))
                            .with_partitions(vec![partition]),
                    ),
                }
            }
            answer
                .with_transaction_state(StrBytes::from_static_str(meta.state.name()))
                .with_transaction_timeout_ms(meta.timeout_ms)
                .with_transaction_start_time_ms(meta.start_ms)
                .with_producer_id(ProducerId(meta.producer_id))
                .with_producer_epoch(meta.producer_epoch)
                .with_topics(topics)
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::ResponseError;

    use super::*;
    use crate::api::create_topics::test_support::{encodes, s};
    use crate::api::offset_commit::test_support::roundtrip;
    use crate::txn::tests::{add_partitions, init, open_broker, topic};

    #[tokio::test]
    async fn known_unknown_and_empty_ids() {
        let (_dir, broker) = open_broker();
        topic(&broker, "a", 2);
        topic(&broker, "b", 1);
        let (pid, epoch) = init(&broker, "tx").await;
        add_partitions(&broker, "tx", pid, epoch, &[("b", 0), ("a", 1), ("a", 0)], 3).await;
        let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![
            TransactionalId(s("tx")),
            TransactionalId(s("nobody")),
            TransactionalId(s("")),
        ]);
        let response = handle(&broker, roundtrip(&request, 0), 0);
        encodes(&response, 0..=0);
        let tx = &response.transaction_states[0];
        assert_eq!((tx.error_code, tx.transaction_state.as_str()), (0, "Ongoing"));
        assert_eq!((tx.producer_id.0, tx.producer_epoch), (pid, epoch));
        assert_eq!(tx.transaction_timeout_ms, 60_000);
        assert!(tx.transaction_start_time_ms > 0);
        let topics: Vec<(&str, Vec<i32>)> = tx
            .topics
            .iter()
            .map(|t| (t.topic.0.as_str(), t.partitions.clone()))
            .collect();
        assert_eq!(topics, vec![("a", vec![0, 1]), ("b", vec![0])]);
        assert_eq!(
            response.transaction_states[1].error_code,
            ResponseError::TransactionalIdNotFound.code()
        );
        assert_eq!(
            response.transaction_states[2].error_code,
            ResponseError::InvalidRequest.code()
        );
    }
}

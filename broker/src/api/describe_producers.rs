//! DescribeProducers (v0): the producers a partition knows (idempotent and transactional), with
//! the start offset of each one's open transaction, as `kafka-transactions.sh describe-producers`
//! and `find-hanging` use it.

use std::sync::Arc;

use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

/// Describes the producers of every requested partition; unknown partitions get
/// UNKNOWN_TOPIC_OR_PARTITION.
pub fn handle(broker: &Arc<Broker>, request: DescribeProducersRequest, _version: i16) -> DescribeProducersResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let answer = PartitionResponse::default().with_partition_index(index);
                    match broker.topics.log(topic.name.0.as_str(), index) {
                        Err(e) => answer
                            .with_error_code(e.kafka_code())
                            .with_error_message(Some(StrBytes::from_string(e.to_string()))),
                        Ok(log) => {
                            let mut producers = log.producers();
                            producers.sort_by_key(|p| p.producer_id);
                            answer.with_active_producers(
                                producers
                                    .into_iter()
                                    .map(|p| {
                                        ProducerState::default()
                                            .with_producer_id(ProducerId(p.producer_id))
                                            .with_producer_epoch(i32::from(p.producer_epoch))
                                            .with_last_sequence(p.last_sequence)
                                            .with_last_timestamp(p.last_timestamp_ms)
                                            .with_coordinator_epoch(p.coordinator_epoch)
                                            .with_current_txn_start_offset(p.current_txn_start_offset)
                                    })
                                    .collect(),
                            )
                        }
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::ResponseError;

    use super::*;
    use crate::api::create_topics::test_support::{encodes, s};
    use crate::api::offset_commit::test_support::roundtrip;
    use crate::txn::tests::{add_partitions, init, open_broker, produce, topic};

    #[tokio::test]
    async fn producers_with_their_open_transaction() {
        let (_dir, broker) = open_broker();
        topic(&broker, "t", 1);
        let (pid, epoch) = init(&broker, "tx").await;
        add_partitions(&broker, "tx", pid, epoch, &[("t", 0)], 3).await;
        let log = broker.topics.log("t", 0).unwrap();
        produce(&log, pid, epoch, 0, "a").await;
        produce(&log, pid, epoch, 1, "b").await;
        let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0, 3])]);
        let response = handle(&broker, roundtrip(&request, 0), 0);
        encodes(&response, 0..=0);
        let partitions = &response.topics[0].partitions;
        assert_eq!(partitions[0].error_code, 0);
        let p = &partitions[0].active_producers[0];
        assert_eq!(
            (
                p.producer_id.0,
                p.producer_epoch,
                p.last_sequence,
                p.current_txn_start_offset
            ),
            (pid, i32::from(epoch), 1, 0)
        );
        assert_eq!(partitions[1].error_code, ResponseError::UnknownTopicOrPartition.code());
    }
}

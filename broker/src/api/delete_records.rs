//! DeleteRecords (v0-2): raises partitions' log start offsets, making older records unreadable.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::error::{Error, Result};

/// The offset that means "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;
/// The low watermark reported with an error, as Kafka reports it.
const INVALID_LOW_WATERMARK: i64 = -1;

/// Deletes per partition; each partition gets its new low watermark or an error code.
pub fn handle(broker: &Arc<Broker>, request: DeleteRecordsRequest, _version: i16) -> DeleteRecordsResponse {
    let mut response = DeleteRecordsResponse::default();
    for topic in &request.topics {
        let name = topic.name.as_str();
        let mut topic_result = DeleteRecordsTopicResult::default();
        topic_result.name = topic.name.clone();
        // Kafka refuses to delete records of its internal topics.
        let internal = broker.topics.get(name).is_some_and(|t| t.is_internal());
        for p in &topic.partitions {
            let mut result = DeleteRecordsPartitionResult::default();
            result.partition_index = p.partition_index;
            let outcome = if internal {
                Err(ResponseError::InvalidTopicException.code())
            } else {
                delete(broker, name, p.partition_index, p.offset).map_err(|e| e.kafka_code())
            };
            match outcome {
                Ok(low_watermark) => result.low_watermark = low_watermark,
                Err(code) => {
                    result.error_code = code;
                    result.low_watermark = INVALID_LOW_WATERMARK;
                }
            }
            topic_result.partitions.push(result);
        }
        response.topics.push(topic_result);
    }
    response
}

fn delete(broker: &Broker, topic: &str, partition: i32, offset: i64) -> Result<i64> {
    let log = broker.topics.log(topic, partition)?;
    if offset < 0 && offset != HIGH_WATERMARK {
        return Err(Error::OffsetOutOfRange {
            offset,
            log_start_offset: log.log_start_offset(),
            log_end_offset: log.log_end_offset(),
        });
    }
    let low_watermark = log.delete_records_before(offset)?;
    tracing::info!(topic, partition, offset, low_watermark, "records deleted");
    Ok(low_watermark)
}

#[cfg(test)]
mod tests {
    use super::super::create_topics::test_support::{append, create, encodes, open, s};
    use super::*;
    use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    use kafka_protocol::messages::TopicName;

    fn request(topic: &str, partitions: &[(i32, i64)]) -> DeleteRecordsRequest {
        let mut t = DeleteRecordsTopic::default();
        t.name = TopicName(s(topic));
        t.partitions = partitions
            .iter()
            .map(|(p, o)| {
                let mut d = DeleteRecordsPartition::default();
                d.partition_index = *p;
                d.offset = *o;
                d
            })
            .collect();
        let mut r = DeleteRecordsRequest::default();
        r.topics = vec![t];
        r
    }

    fn results(response: &DeleteRecordsResponse) -> Vec<(i16, i64)> {
        response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.low_watermark))
            .collect()
    }

    #[test]
    fn unknown_partitions_internal_topics_and_bad_offsets_are_refused() {
        let (_dir, broker) = open();
        create(&broker, "t", 1, &[]);
        // `__consumer_offsets` exists from the start: the group coordinator creates it.
        let response = handle(&broker, request("t", &[(0, 5), (0, -7), (3, 0)]), 2);
        encodes(&response, 0..=2);
        let out_of_range = ResponseError::OffsetOutOfRange.code();
        assert_eq!(
            results(&response),
            vec![
                (out_of_range, -1),
                (out_of_range, -1),
                (ResponseError::UnknownTopicOrPartition.code(), -1)
            ]
        );
        let internal = handle(&broker, request("__consumer_offsets", &[(0, -1)]), 2);
        assert_eq!(
            results(&internal),
            vec![(ResponseError::InvalidTopicException.code(), -1)]
        );
        let missing = handle(&broker, request("missing", &[(0, 0)]), 0);
        assert_eq!(
            results(&missing),
            vec![(ResponseError::UnknownTopicOrPartition.code(), -1)]
        );
    }

    #[test]
    fn deleting_raises_the_log_start_offset() {
        let (_dir, broker) = open();
        create(&broker, "t", 1, &[("flush.messages", "1000")]);
        append(&broker, "t", 5);
        append(&broker, "t", 5);
        let log = broker.topics.get("t").unwrap().partition(0).unwrap();
        assert_eq!(log.high_watermark(), 10);
        assert_eq!(results(&handle(&broker, request("t", &[(0, 3)]), 2)), vec![(0, 3)]);
        assert_eq!(log.log_start_offset(), 3);
        assert_eq!(
            results(&handle(&broker, request("t", &[(0, 2)]), 2)),
            vec![(0, 3)],
            "the start never moves back"
        );
        assert_eq!(
            results(&handle(&broker, request("t", &[(0, 11)]), 2)),
            vec![(ResponseError::OffsetOutOfRange.code(), -1)]
        );
        assert_eq!(results(&handle(&broker, request("t", &[(0, -1)]), 2)), vec![(0, 10)]);
        assert_eq!(log.log_start_offset(), 10);
    }

    #[test]
    fn deleting_up_to_the_high_watermark_of_an_empty_log_keeps_it_at_zero() {
        let (_dir, broker) = open();
        create(&broker, "t", 1, &[]);
        let response = handle(&broker, request("t", &[(0, -1), (0, 0)]), 2);
        assert_eq!(results(&response), vec![(0, 0), (0, 0)]);
    }
}

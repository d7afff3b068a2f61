//! ListOffsets: earliest (-2), latest (-1: the high watermark, or the last stable offset under
//! read_committed), max timestamp (-3), earliest local (-4, the same as earliest here), or the
//! first offset at or after a timestamp; the last two never answer at or past the end the
//! request's isolation level sees.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;
use crate::error::Result;
use crate::log::{Isolation, PartitionLog};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

/// Answers ListOffsets for every requested partition.
pub fn handle(broker: &Arc<Broker>, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let isolation = Isolation::from_level(request.isolation_level);
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    let outcome = broker
                        .topics
                        .log(&name, p.partition_index)
                        .and_then(|log| lookup(&log, p.timestamp, isolation));
                    match outcome {
                        Ok((offset, timestamp)) => response
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(if offset >= 0 && version >= 4 { 0 } else { -1 }),
                        Err(e) => response
                            .with_error_code(e.kafka_code())
                            .with_offset(-1)
                            .with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// (offset, timestamp) for one partition; (-1, -1) when no record matches a timestamp query.
fn lookup(log: &PartitionLog, timestamp: i64, isolation: Isolation) -> Result<(i64, i64)> {
    Ok(match timestamp {
        LATEST => (log.visible_offsets().end(isolation), -1),
        EARLIEST | EARLIEST_LOCAL => (log.log_start_offset(), -1),
        MAX_TIMESTAMP => log.max_timestamp_in(isolation)?.unwrap_or((-1, -1)),
        ts => log.offset_for_timestamp_in(ts, isolation)?.unwrap_or((-1, -1)),
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::api::create_topics::test_support;
    use crate::log::batch::{encode_batch, validate_batches, EncodeOptions, NewRecord};
    use crate::log::AppendOptions;

    /// Appends one record at `timestamp_ms`, transactional for producer `producer_id` if given.
    fn append(log: &PartitionLog, timestamp_ms: i64, producer_id: Option<i64>) {
        let record = NewRecord {
            timestamp_ms,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
        };
        let options = match producer_id {
            Some(producer_id) => EncodeOptions {
                producer_id,
                producer_epoch: 0,
                base_sequence: 0,
                transactional: true,
                ..EncodeOptions::default()
            },
            None => EncodeOptions::default(),
        };
        let payload = encode_batch(&[record], &options).unwrap();
        let headers = validate_batches(&payload).unwrap();
        let opts = AppendOptions {
            now_ms: timestamp_ms,
            log_append_time: false,
            leader_epoch: 0,
        };
        log.append(payload, &headers, &opts).unwrap();
    }

    /// The (offset, timestamp) answered for each of `timestamps` at `isolation_level`.
    fn ask(broker: &Arc<Broker>, timestamps: &[i64], isolation_level: i8) -> Vec<(i64, i64)> {
        let partitions = timestamps
            .iter()
            .map(|&t| {
                ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(t)
            })
            .collect();
        let request = ListOffsetsRequest::default()
            .with_isolation_level(isolation_level)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(partitions)]);
        let response = handle(broker, request, 8);
        test_support::encodes(&response, 4..=8);
        response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.offset, p.timestamp))
            .collect()
    }

    #[test]
    fn read_committed_answers_stop_at_the_last_stable_offset() {
        let (_dir, broker) = test_support::open();
        let configs = std::collections::BTreeMap::from([("flush.messages".to_string(), "1000".to_string())]);
        broker.topics.create(&broker.config(), "t", 1, configs, false).unwrap();
        let log = broker.topics.log("t", 0).unwrap();
        append(&log, 100, None); // 0
        append(&log, 200, Some(7)); // 1, open
        append(&log, 300, None); // 2
        let queries = [LATEST, EARLIEST, MAX_TIMESTAMP, 150, 250];
        assert_eq!(
            ask(&broker, &queries, 0),
            vec![(3, -1), (0, -1), (2, 300), (1, 200), (2, 300)]
        );
        assert_eq!(
            ask(&broker, &queries, 1),
            vec![(1, -1), (0, -1), (-1, -1), (-1, -1), (-1, -1)]
        );
        // The marker lands at 3. As in Kafka, its timestamp counts: it is the latest record here.
        log.append_marker_at(7, 0, true, 0, 400).unwrap();
        assert_eq!(
            ask(&broker, &queries, 1),
            vec![(4, -1), (0, -1), (3, 400), (1, 200), (2, 300)]
        );
    }
}

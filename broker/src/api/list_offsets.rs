//! ListOffsets: earliest (-2), latest (-1, the log end offset), max timestamp (-3), earliest
//! local (-4, the same as earliest here), or the first offset at or after a timestamp.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;
use crate::error::Result;
use crate::log::PartitionLog;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

/// Answers ListOffsets for every requested partition.
pub fn handle(broker: &Arc<Broker>, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
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
                        .and_then(|log| lookup(&log, p.timestamp));
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
fn lookup(log: &PartitionLog, timestamp: i64) -> Result<(i64, i64)> {
    Ok(match timestamp {
        LATEST => (log.high_watermark(), -1),
        EARLIEST | EARLIEST_LOCAL => (log.log_start_offset(), -1),
        MAX_TIMESTAMP => log.max_timestamp()?.unwrap_or((-1, -1)),
        ts => log.offset_for_timestamp(ts)?.unwrap_or((-1, -1)),
    })
}

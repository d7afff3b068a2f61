//! OffsetForLeaderEpoch (v2-4): the end offset of a leader epoch, which consumers use to detect
//! log truncation. Brook's single node has been leader of every partition since epoch 0, so the
//! epoch cache Kafka keeps reduces to one entry: epoch 0 starting at the log start offset.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::log::PartitionLog;

/// The only leader epoch Brook ever has.
const LEADER_EPOCH: i32 = 0;
/// Kafka's "no epoch" value, in requests and in answers.
const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's "no offset" answer.
const UNDEFINED_OFFSET: i64 = -1;

/// Answers each partition independently.
pub fn handle(
    broker: &Arc<Broker>,
    request: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in &request.topics {
        let mut topic_result = OffsetForLeaderTopicResult::default();
        topic_result.topic = topic.topic.clone();
        topic_result.partitions = topic
            .partitions
            .iter()
            .map(|p| answer(broker, topic.topic.as_str(), p))
            .collect();
        response.topics.push(topic_result);
    }
    response
}

fn answer(broker: &Broker, topic: &str, request: &OffsetForLeaderPartition) -> EpochEndOffset {
    let mut result = EpochEndOffset::default();
    result.partition = request.partition;
    let log = match broker.topics.log(topic, request.partition) {
        Ok(log) => log,
        Err(e) => {
            result.error_code = e.kafka_code();
            return result;
        }
    };
    // Fencing first, as in Kafka's Partition.lastOffsetForLeaderEpoch: -1 skips the check.
    if request.current_leader_epoch != UNDEFINED_EPOCH {
        if request.current_leader_epoch < LEADER_EPOCH {
            result.error_code = ResponseError::FencedLeaderEpoch.code();
            return result;
        }
        if request.current_leader_epoch > LEADER_EPOCH {
            result.error_code = ResponseError::UnknownLeaderEpoch.code();
            return result;
        }
    }
    let (epoch, end_offset) = end_offset_for(request.leader_epoch, &log);
    result.leader_epoch = epoch;
    result.end_offset = end_offset;
    result
}

/// Kafka's LeaderEpochFileCache.endOffsetFor over a cache holding only epoch 0: the current
/// epoch ends at the log end offset; an undefined or a future epoch has no end (-1, -1), without
/// an error; an epoch older than any known one gets the start offset of epoch 0.
fn end_offset_for(requested: i32, log: &PartitionLog) -> (i32, i64) {
    match requested {
        UNDEFINED_EPOCH => (UNDEFINED_EPOCH, UNDEFINED_OFFSET),
        LEADER_EPOCH => (LEADER_EPOCH, log.log_end_offset()),
        e if e > LEADER_EPOCH => (UNDEFINED_EPOCH, UNDEFINED_OFFSET),
        e => (e, log.log_start_offset()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::create_topics::test_support::{append, create, encodes, open, s};
    use super::*;
    use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderTopic;
    use kafka_protocol::messages::TopicName;

    fn ask(broker: &Arc<Broker>, topic: &str, partitions: &[(i32, i32, i32)]) -> Vec<(i16, i32, i64)> {
        let mut t = OffsetForLeaderTopic::default();
        t.topic = TopicName(s(topic));
        t.partitions = partitions
            .iter()
            .map(|(partition, current, epoch)| {
                let mut p = OffsetForLeaderPartition::default();
                p.partition = *partition;
                p.current_leader_epoch = *current;
                p.leader_epoch = *epoch;
                p
            })
            .collect();
        let mut request = OffsetForLeaderEpochRequest::default();
        request.topics = vec![t];
        let response = handle(broker, request, 4);
        encodes(&response, 2..=4);
        response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
            .collect()
    }

    #[test]
    fn epoch_zero_ends_at_the_log_end() {
        let (_dir, broker) = open();
        create(&broker, "t", 1, &[]);
        let fenced = ResponseError::FencedLeaderEpoch.code();
        let unknown_epoch = ResponseError::UnknownLeaderEpoch.code();
        let unknown_partition = ResponseError::UnknownTopicOrPartition.code();
        let answers = ask(
            &broker,
            "t",
            &[
                (0, -1, 0),
                (0, 0, 0),
                (0, 0, 3),
                (0, 0, -1),
                (0, 0, -5),
                (0, 1, 0),
                (0, -3, 0),
                (4, -1, 0),
            ],
        );
        assert_eq!(
            answers,
            vec![
                (0, 0, 0),
                (0, 0, 0),
                (0, -1, -1),
                (0, -1, -1),
                (0, -5, 0),
                (unknown_epoch, -1, -1),
                (fenced, -1, -1),
                (unknown_partition, -1, -1)
            ]
        );
        assert_eq!(
            ask(&broker, "missing", &[(0, -1, 0)]),
            vec![(unknown_partition, -1, -1)]
        );
    }

    #[test]
    fn end_offsets_follow_appends_and_deletions() {
        let (_dir, broker) = open();
        create(&broker, "t", 1, &[("flush.messages", "1000")]);
        append(&broker, "t", 4);
        assert_eq!(ask(&broker, "t", &[(0, 0, 0)]), vec![(0, 0, 4)]);
        broker
            .topics
            .get("t")
            .unwrap()
            .partition(0)
            .unwrap()
            .delete_records_before(2)
            .unwrap();
        assert_eq!(ask(&broker, "t", &[(0, -1, -2)]), vec![(0, -2, 2)]);
    }
}

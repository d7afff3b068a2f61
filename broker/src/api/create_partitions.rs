//! CreatePartitions (v0-3): grows topics to a larger partition count; manual assignments are
//! accepted only when they place every new partition on this node alone.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;

use super::create_topics::{validate_replicas, Failure};
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::error::Error;

/// Every existing Brook partition has exactly one replica.
const REPLICAS_PER_PARTITION: usize = 1;

/// Grows each topic independently; one failure does not stop the others.
pub fn handle(broker: &Arc<Broker>, request: CreatePartitionsRequest, _version: i16) -> CreatePartitionsResponse {
    let config = broker.config();
    let mut occurrences: HashMap<&str, usize> = HashMap::new();
    for topic in &request.topics {
        *occurrences.entry(topic.name.as_str()).or_default() += 1;
    }
    let mut answered = std::collections::HashSet::new();
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.as_str();
        // Kafka answers once per distinct name, refusing every name given more than once.
        if !answered.insert(name) {
            continue;
        }
        let outcome = if occurrences.get(name).copied().unwrap_or(0) > 1 {
            Err(Failure::new(
                ResponseError::InvalidRequest,
                format!("topic {name} appears more than once in the request"),
            ))
        } else {
            grow(broker, &config, topic, request.validate_only)
        };
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        result.error_message = None;
        if let Err(failure) = outcome {
            result.error_code = failure.code;
            result.error_message = failure.message_bytes();
        }
        results.push(result);
    }
    let mut response = CreatePartitionsResponse::default();
    response.results = results;
    response
}

/// Checks the new count (through a validate-only pass), then the assignments, then grows.
fn grow(
    broker: &Broker,
    config: &BrokerConfig,
    topic: &CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), Failure> {
    let name = topic.name.as_str();
    let existing = broker
        .topics
        .get(name)
        .ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string()))?;
    broker.topics.create_partitions(config, name, topic.count, true)?;
    if let Some(assignments) = &topic.assignments {
        let added = i64::from(topic.count) - i64::from(existing.partition_count());
        if assignments.len() as i64 != added {
            let message = format!(
                "{added} partitions are being added, but {} assignments were given",
                assignments.len()
            );
            return Err(Failure::new(ResponseError::InvalidReplicaAssignment, message));
        }
        for a in assignments {
            let replicas: Vec<i32> = a.broker_ids.iter().map(|id| id.0).collect();
            validate_replicas(&replicas, config.node_id, Some(REPLICAS_PER_PARTITION))?;
        }
    }
    if !validate_only {
        broker.topics.create_partitions(config, name, topic.count, false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::create_topics::test_support::{create, encodes, open, s};
    use super::*;
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
    use kafka_protocol::messages::{BrokerId, TopicName};

    fn grow_to(name: &str, count: i32, assignments: Option<Vec<Vec<i32>>>) -> CreatePartitionsTopic {
        let mut t = CreatePartitionsTopic::default();
        t.name = TopicName(s(name));
        t.count = count;
        t.assignments = assignments.map(|all| {
            all.into_iter()
                .map(|ids| {
                    let mut a = CreatePartitionsAssignment::default();
                    a.broker_ids = ids.into_iter().map(BrokerId).collect();
                    a
                })
                .collect()
        });
        t
    }

    fn run(broker: &Arc<Broker>, topics: Vec<CreatePartitionsTopic>, validate_only: bool) -> Vec<i16> {
        let mut request = CreatePartitionsRequest::default();
        request.topics = topics;
        request.validate_only = validate_only;
        let response = handle(broker, request, 3);
        encodes(&response, 0..=3);
        for r in &response.results {
            assert!(r.error_code == 0 || r.error_message.as_ref().is_some_and(|m| !m.is_empty()));
        }
        response.results.iter().map(|r| r.error_code).collect()
    }

    fn count(broker: &Arc<Broker>, name: &str) -> i32 {
        broker.topics.get(name).unwrap().partition_count()
    }

    #[test]
    fn grows_topics_and_honours_validate_only() {
        let (_dir, broker) = open();
        create(&broker, "t", 1, &[]);
        assert_eq!(run(&broker, vec![grow_to("t", 3, None)], true), vec![0]);
        assert_eq!(count(&broker, "t"), 1);
        assert_eq!(run(&broker, vec![grow_to("t", 3, None)], false), vec![0]);
        assert_eq!(count(&broker, "t"), 3);
        assert!(broker.topics.get("t").unwrap().partition(2).is_some());
        assert_eq!(
            run(&broker, vec![grow_to("t", 5, Some(vec![vec![0], vec![0]]))], false),
            vec![0]
        );
        assert_eq!(count(&broker, "t"), 5);
    }

    #[test]
    fn refusals_carry_kafka_codes() {
        let (_dir, broker) = open();
        create(&broker, "t", 2, &[]);
        create(&broker, "u", 1, &[]);
        let invalid_assignment = ResponseError::InvalidReplicaAssignment.code();
        let invalid_partitions = ResponseError::InvalidPartitions.code();
        let cases = vec![
            (grow_to("t", 2, None), invalid_partitions),
            (grow_to("t", 1, None), invalid_partitions),
            (grow_to("t", 3, Some(vec![vec![1]])), invalid_assignment),
            (grow_to("t", 3, Some(vec![vec![0, 0]])), invalid_assignment),
            (grow_to("t", 4, Some(vec![vec![0]])), invalid_assignment),
            (
                grow_to("missing", 4, None),
                ResponseError::UnknownTopicOrPartition.code(),
            ),
        ];
        for (topic, code) in cases {
            assert_eq!(run(&broker, vec![topic], false), vec![code]);
        }
        assert_eq!(count(&broker, "t"), 2);
        let codes = run(
            &broker,
            vec![grow_to("u", 2, None), grow_to("u", 3, None), grow_to("t", 3, None)],
            false,
        );
        assert_eq!(codes, vec![ResponseError::InvalidRequest.code(), 0]);
        assert_eq!((count(&broker, "u"), count(&broker, "t")), (1, 3));
    }
}

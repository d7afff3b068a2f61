//! CreateTopics (v2-7): creates topics on this single node, validating names, partition counts,
//! replication factors, manual assignments and configs the way Apache Kafka does. Also home of
//! the small helpers the other admin handlers share (`Failure`, `validate_replicas`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::describe_configs::source_code;
use crate::broker::Broker;
use crate::config::{validate_topic_config, BrokerConfig, TOPIC_CONFIGS};
use crate::error::Error;
use crate::topics::validate_topic_name;

/// A per-resource failure as a client sees it: a Kafka error code and a prose message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The Kafka error code.
    pub code: i16,
    /// The message for the response's error_message field.
    pub message: String,
}

impl Failure {
    /// A failure with a code that has no [`Error`] equivalent.
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Failure {
            code: error.code(),
            message: message.into(),
        }
    }

    /// The message as the protocol's string type.
    pub fn message_bytes(&self) -> Option<StrBytes> {
        Some(StrBytes::from_string(self.message.clone()))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            code: e.kafka_code(),
            message: e.to_string(),
        }
    }
}

/// Checks one manually assigned replica list against this single-node cluster, as Kafka's
/// controller does: non-empty, no repeated broker, only registered brokers (here only
/// `node_id`), and the same replica count as the partitions before it.
pub(crate) fn validate_replicas(replicas: &[i32], node_id: i32, previous_count: Option<usize>) -> Result<(), Failure> {
    let bad = |message: String| Failure::new(ResponseError::InvalidReplicaAssignment, message);
    if replicas.is_empty() {
        return Err(bad(
            "the manual partition assignment includes an empty replica list".to_string()
        ));
    }
    for (i, id) in replicas.iter().enumerate() {
        if replicas[..i].contains(id) {
            return Err(bad(format!(
                "the manual partition assignment includes broker {id} more than once"
            )));
        }
        if *id != node_id {
            return Err(bad(format!(
                "the manual partition assignment includes broker {id}, but only broker {node_id} exists"
            )));
        }
    }
    if let Some(count) = previous_count {
        if count != replicas.len() {
            return Err(bad(format!(
                "the manual partition assignment includes a partition with {} replicas, but previous partitions have {count}",
                replicas.len()
            )));
        }
    }
    Ok(())
}

/// Creates each topic of the request independently; one failure does not stop the others.
pub fn handle(broker: &Arc<Broker>, request: CreateTopicsRequest, _version: i16) -> CreateTopicsResponse {
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
            create_one(broker, &config, topic, request.validate_only)
        };
        results.push(outcome.unwrap_or_else(|failure| {
            let mut result = CreatableTopicResult::default();
            result.name = topic.name.clone();
            result.error_code = failure.code;
            result.error_message = failure.message_bytes();
            result
        }));
    }
    let mut response = CreateTopicsResponse::default();
    response.topics = results;
    response
}

/// Validates and creates one topic, in Kafka's order of checks: name, existence, partitions and
/// replication, configs.
fn create_one(
    broker: &Broker,
    config: &BrokerConfig,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<CreatableTopicResult, Failure> {
    let name = topic.name.as_str();
    validate_topic_name(name)?;
    if broker.topics.get(name).is_some() {
        return Err(Error::TopicAlreadyExists(name.to_string()).into());
    }
    let (partitions, replication_factor) = layout(config, topic)?;
    let mut configs = BTreeMap::new();
    for c in &topic.configs {
        let Some(value) = &c.value else {
            let reason = "a null value is not supported".to_string();
            return Err(Error::InvalidConfig {
                name: c.name.to_string(),
                reason,
            }
            .into());
        };
        validate_topic_config(c.name.as_str(), value.as_str())?;
        configs.insert(c.name.to_string(), value.to_string());
    }
    let created = broker
        .topics
        .create(config, name, partitions, configs.clone(), validate_only)?;
    let mut result = CreatableTopicResult::default();
    result.name = topic.name.clone();
    result.topic_id = created.id;
    result.error_message = None;
    result.num_partitions = partitions;
    result.replication_factor = replication_factor;
    result.configs = Some(effective_configs(config, &configs));
    Ok(result)
}

/// The partition count and replication factor a topic gets, from its counts or its manual assignment.
fn layout(config: &BrokerConfig, topic: &CreatableTopic) -> Result<(i32, i16), Failure> {
    let node_id = config.node_id;
    if !topic.assignments.is_empty() {
        let invalid = |message: &str| Failure::new(ResponseError::InvalidRequest, message);
        if topic.replication_factor != -1 {
            return Err(invalid(
                "a manual partition assignment was given, but the replication factor was not set to -1",
            ));
        }
        if topic.num_partitions != -1 {
            return Err(invalid(
                "a manual partition assignment was given, but the number of partitions was not set to -1",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut previous = None;
        for a in &topic.assignments {
            if !seen.insert(a.partition_index) {
                let message = format!(
                    "found more than one manual assignment for partition {}",
                    a.partition_index
                );
                return Err(Failure::new(ResponseError::InvalidReplicaAssignment, message));
            }
            let replicas: Vec<i32> = a.broker_ids.iter().map(|id| id.0).collect();
            validate_replicas(&replicas, node_id, previous)?;
            previous = Some(replicas.len());
        }
        if seen.iter().enumerate().any(|(i, p)| i64::from(*p) != i as i64) {
            let message = "the partitions of a manual assignment must be numbered 0, 1, 2... without gaps";
            return Err(Failure::new(ResponseError::InvalidReplicaAssignment, message));
        }
        let count = i32::try_from(seen.len()).unwrap_or(i32::MAX);
        return Ok((count, 1));
    }
    let partitions = match topic.num_partitions {
        -1 => i32::try_from(config.long("num.partitions")).unwrap_or(i32::MAX),
        n if n <= 0 => {
            let message = format!("the number of partitions must be positive, or -1 for the default, not {n}");
            return Err(Error::InvalidPartitions(message).into());
        }
        n => n,
    };
    let replication_factor = match topic.replication_factor {
        -1 => i16::try_from(config.long("default.replication.factor")).unwrap_or(i16::MAX),
        n => n,
    };
    if replication_factor <= 0 {
        let message = "replication factor must be larger than 0, or -1 to use the default value";
        return Err(Failure::new(ResponseError::InvalidReplicationFactor, message));
    }
    if replication_factor > 1 {
        let message = format!("replication factor {replication_factor} is larger than the 1 available broker");
        return Err(Failure::new(ResponseError::InvalidReplicationFactor, message));
    }
    Ok((partitions, replication_factor))
}

/// Every topic config with its effective value and source, as CreateTopics v5+ reports them.
fn effective_configs(config: &BrokerConfig, overrides: &BTreeMap<String, String>) -> Vec<CreatableTopicConfigs> {
    TOPIC_CONFIGS
        .iter()
        .filter_map(|def| {
            let (value, source) = config.topic_value(overrides, def.name)?;
            let mut entry = CreatableTopicConfigs::default();
            entry.name = StrBytes::from_static_str(def.name);
            entry.value = Some(StrBytes::from_string(value));
            entry.read_only = false;
            entry.config_source = source_code(source);
            entry.is_sensitive = false;
            Some(entry)
        })
        .collect()
}

/// Helpers for the admin handlers' tests: a broker on a temporary directory.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use crate::broker::Broker;
    use crate::config::BrokerConfig;

    /// A broker on a fresh directory; keep the directory alive as long as the broker.
    pub fn open() -> (tempfile::TempDir, Arc<Broker>) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = BrokerConfig::new(dir.path().to_path_buf());
        // One offsets partition instead of 50 keeps every test broker quick to open.
        config.set("offsets.topic.num.partitions", "1").expect("a valid config");
        let broker = Broker::open(config).expect("broker opens");
        (dir, broker)
    }

    /// Asserts that a response encodes at every version in `versions`.
    pub fn encodes<T: kafka_protocol::protocol::Encodable>(message: &T, versions: std::ops::RangeInclusive<i16>) {
        for version in versions {
            let mut buf = bytes::BytesMut::new();
            if let Err(e) = message.encode(&mut buf, version) {
                panic!("the response does not encode at v{version}: {e}");
            }
        }
    }

    /// A protocol string.
    pub fn s(text: &str) -> StrBytes {
        StrBytes::from_string(text.to_string())
    }

    /// A CreateTopics entry with a partition count, replication factor and configs.
    pub fn topic(name: &str, partitions: i32, replication_factor: i16, configs: &[(&str, &str)]) -> CreatableTopic {
        let mut t = CreatableTopic::default();
        t.name = TopicName(s(name));
        t.num_partitions = partitions;
        t.replication_factor = replication_factor;
        t.configs = configs
            .iter()
            .map(|(k, v)| {
                let mut c = CreatableTopicConfig::default();
                c.name = s(k);
                c.value = Some(s(v));
                c
            })
            .collect();
        t
    }

    /// Appends `count` small records to partition 0 of `topic`. Give the topic `flush.messages`
    /// above 1 so that the high watermark moves without waiting for a group-commit fsync.
    pub fn append(broker: &Arc<Broker>, topic: &str, count: usize) {
        use crate::log::batch::{encode_batch, validate_batches, EncodeOptions, NewRecord};
        use crate::log::AppendOptions;
        let records: Vec<NewRecord> = (0..count)
            .map(|i| NewRecord {
                timestamp_ms: 1_000 + i as i64,
                key: None,
                value: Some(bytes::Bytes::from_static(b"v")),
                headers: Vec::new(),
            })
            .collect();
        let options = EncodeOptions::default();
        let payload = encode_batch(&records, &options).expect("encodable batch");
        let headers = validate_batches(&payload).expect("valid batch");
        let log = broker
            .topics
            .get(topic)
            .and_then(|t| t.partition(0))
            .expect("partition 0 exists");
        log.append(
            payload,
            &headers,
            &AppendOptions {
                now_ms: 1_000,
                log_append_time: false,
                leader_epoch: 0,
            },
        )
        .expect("append");
    }

    /// Creates a topic through the handler and asserts it worked.
    pub fn create(broker: &Arc<Broker>, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let mut request = CreateTopicsRequest::default();
        request.topics = vec![topic(name, partitions, -1, configs)];
        let response = super::handle(broker, request, 7);
        assert_eq!(
            response.topics[0].error_code, 0,
            "{:?}",
            response.topics[0].error_message
        );
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{open, topic};
    use super::*;
    use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
    use kafka_protocol::messages::BrokerId;

    fn request(topics: Vec<CreatableTopic>, validate_only: bool) -> CreateTopicsRequest {
        let mut r = CreateTopicsRequest::default();
        r.topics = topics;
        r.validate_only = validate_only;
        r
    }

    fn code(e: ResponseError) -> i16 {
        e.code()
    }

    #[test]
    fn creates_topics_with_configs_and_reports_them() {
        let (_dir, broker) = open();
        let response = handle(
            &broker,
            request(vec![topic("orders", 3, -1, &[("retention.ms", "1000")])], false),
            7,
        );
        let result = &response.topics[0];
        assert_eq!(result.error_code, 0);
        assert_eq!(result.error_message, None);
        assert_eq!((result.num_partitions, result.replication_factor), (3, 1));
        let created = broker.topics.get("orders").expect("topic exists");
        assert_eq!(result.topic_id, created.id);
        assert_eq!(created.partition_count(), 3);
        assert_eq!(created.configs().get("retention.ms").map(String::as_str), Some("1000"));
        let configs = result.configs.as_ref().expect("configs in v5+");
        assert_eq!(configs.len(), TOPIC_CONFIGS.len());
        let retention = configs.iter().find(|c| c.name.as_str() == "retention.ms").unwrap();
        assert_eq!((retention.value.as_deref(), retention.config_source), (Some("1000"), 1));
        let segment = configs.iter().find(|c| c.name.as_str() == "segment.bytes").unwrap();
        assert_eq!(segment.config_source, 5);
    }

    #[test]
    fn default_partition_count_comes_from_the_broker() {
        let (_dir, broker) = open();
        broker
            .alter_config(&[("num.partitions".to_string(), Some("4".to_string()))], false)
            .unwrap();
        let response = handle(&broker, request(vec![topic("t", -1, -1, &[])], false), 5);
        assert_eq!(response.topics[0].num_partitions, 4);
        assert_eq!(broker.topics.get("t").unwrap().partition_count(), 4);
    }

    #[test]
    fn validate_only_creates_nothing() {
        let (_dir, broker) = open();
        let response = handle(
            &broker,
            request(vec![topic("dry", 2, 1, &[("cleanup.policy", "compact")])], true),
            7,
        );
        assert_eq!(response.topics[0].error_code, 0);
        assert_eq!(response.topics[0].num_partitions, 2);
        assert!(broker.topics.get("dry").is_none());
    }

    #[test]
    fn refusals_carry_kafka_codes_and_messages() {
        let (_dir, broker) = open();
        let topics = vec![
            topic("bad-config", 1, -1, &[("retention.ms", "soon")]),
            topic("unknown-config", 1, -1, &[("no.such.config", "1")]),
            topic("bad name", 1, -1, &[]),
            topic("twice", 1, -1, &[]),
            topic("twice", 2, -1, &[]),
            topic("replicated", 1, 2, &[]),
            topic("zero", 0, -1, &[]),
            topic("good", 1, -1, &[]),
        ];
        let response = handle(&broker, request(topics, false), 7);
        test_support::encodes(&response, 2..=7);
        let by_name = |n: &str| response.topics.iter().find(|t| t.name.as_str() == n).unwrap();
        assert_eq!(response.topics.len(), 7, "one answer per distinct name");
        assert_eq!(by_name("bad-config").error_code, code(ResponseError::InvalidConfig));
        assert_eq!(by_name("unknown-config").error_code, code(ResponseError::InvalidConfig));
        assert_eq!(
            by_name("bad name").error_code,
            code(ResponseError::InvalidTopicException)
        );
        assert_eq!(by_name("twice").error_code, code(ResponseError::InvalidRequest));
        let replicated = by_name("replicated");
        assert_eq!(replicated.error_code, code(ResponseError::InvalidReplicationFactor));
        assert_eq!(
            replicated.error_message.as_deref(),
            Some("replication factor 2 is larger than the 1 available broker")
        );
        assert_eq!(by_name("zero").error_code, code(ResponseError::InvalidPartitions));
        assert_eq!(by_name("good").error_code, 0);
        for t in &response.topics {
            assert!(
                t.error_code == 0 || t.error_message.as_ref().is_some_and(|m| !m.is_empty()),
                "{:?}",
                t.name
            );
        }
        assert!(broker.topics.get("twice").is_none());
        assert!(broker.topics.get("bad-config").is_none());
        let again = handle(&broker, request(vec![topic("good", 1, -1, &[])], false), 7);
        assert_eq!(again.topics[0].error_code, code(ResponseError::TopicAlreadyExists));
    }

    #[test]
    fn manual_assignments_must_name_only_this_broker() {
        let (_dir, broker) = open();
        let assign = |partition: i32, ids: &[i32]| {
            let mut a = CreatableReplicaAssignment::default();
            a.partition_index = partition;
            a.broker_ids = ids.iter().map(|i| BrokerId(*i)).collect();
            a
        };
        let mut ok = topic("assigned", -1, -1, &[]);
        ok.assignments = vec![assign(0, &[0]), assign(1, &[0])];
        let mut elsewhere = topic("elsewhere", -1, -1, &[]);
        elsewhere.assignments = vec![assign(0, &[1])];
        let mut gap = topic("gap", -1, -1, &[]);
        gap.assignments = vec![assign(0, &[0]), assign(2, &[0])];
        let mut counted = topic("counted", 2, -1, &[]);
        counted.assignments = vec![assign(0, &[0])];
        let response = handle(&broker, request(vec![ok, elsewhere, gap, counted], false), 7);
        let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
        let invalid_assignment = code(ResponseError::InvalidReplicaAssignment);
        assert_eq!(
            codes,
            vec![
                0,
                invalid_assignment,
                invalid_assignment,
                code(ResponseError::InvalidRequest)
            ]
        );
        assert_eq!(broker.topics.get("assigned").unwrap().partition_count(), 2);
    }

    #[test]
    fn null_config_values_are_refused() {
        let (_dir, broker) = open();
        let mut t = topic("nulls", 1, -1, &[("retention.ms", "1")]);
        t.configs[0].value = None;
        let response = handle(&broker, request(vec![t], false), 7);
        assert_eq!(response.topics[0].error_code, code(ResponseError::InvalidConfig));
    }
}

//! Metadata: the broker list and the topics with their partitions; creates topics on demand
//! when `auto.create.topics.enable` is on.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::error::Error;
use crate::topics::Topic;

/// Answers Metadata for the named topics, or for all when none are named.
pub fn handle(broker: &Arc<Broker>, request: MetadataRequest, version: i16) -> MetadataResponse {
    let config = broker.config();
    let node = BrokerId(config.node_id);
    let brokers = vec![MetadataResponseBroker::default()
        .with_node_id(node)
        .with_host(StrBytes::from_string(config.advertised_host.clone()))
        .with_port(config.advertised_port)];
    // v0 asks for all topics with an empty list; v1+ with null.
    let names: Option<Vec<String>> = match request.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect()),
    };
    let auto_create = config.bool("auto.create.topics.enable") && (version < 4 || request.allow_auto_topic_creation);
    let topics = match names {
        None => broker.topics.all().iter().map(|t| describe(t, node)).collect(),
        Some(names) => {
            let mut seen = BTreeMap::new();
            for name in names {
                if seen.contains_key(&name) {
                    continue;
                }
                let entry = match broker.topics.get(&name) {
                    Some(t) => describe(&t, node),
                    None if auto_create => match broker.topics.create(
                        &config,
                        &name,
                        config.long("num.partitions") as i32,
                        BTreeMap::new(),
                        false,
                    ) {
                        Ok(t) => describe(&t, node),
                        Err(Error::TopicAlreadyExists(_)) => match broker.topics.get(&name) {
                            Some(t) => describe(&t, node),
                            None => error_topic(&name, ResponseError::UnknownTopicOrPartition.code()),
                        },
                        Err(e) => {
                            tracing::info!(topic = %name, error = %e, "auto-create refused");
                            error_topic(&name, e.kafka_code())
                        }
                    },
                    None => error_topic(&name, ResponseError::UnknownTopicOrPartition.code()),
                };
                seen.insert(name, entry);
            }
            seen.into_values().collect()
        }
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(node)
        .with_topics(topics)
}

fn describe(topic: &Topic, node: BrokerId) -> MetadataResponseTopic {
    let partitions = topic
        .partitions()
        .iter()
        .enumerate()
        .map(|(p, log)| {
            let p = p as i32;
            // A partition whose fsync failed is offline until a restart recovers it.
            let error_code = log.storage_failure().map_or(0, |e| e.kafka_code());
            MetadataResponsePartition::default()
                .with_error_code(error_code)
                .with_partition_index(p)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions)
}

fn error_topic(name: &str, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_error_code(code)
}

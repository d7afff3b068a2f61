//! Topic administration over the wire: create, delete, grow, configure, list and trim topics
//! (group administration is in `group_admin.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::cluster::Cluster;
use super::metadata::ClusterMetadata;
use super::{check_code, ClientConfig};
use crate::error::Result;

/// Kafka's resource type for topics in DescribeConfigs and IncrementalAlterConfigs.
const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs source code of a value that is the default.
const SOURCE_DEFAULT: i8 = 5;

/// An admin client for one cluster.
pub struct Admin {
    pub(super) cluster: Arc<Cluster>,
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// The topic name.
    pub name: String,
    /// The partition count, -1 for the broker's default.
    pub partitions: i32,
    /// The replication factor, -1 for the broker's default.
    pub replication_factor: i16,
    /// Topic configs by Kafka name, e.g. `("retention.ms", "60000")`.
    pub configs: Vec<(String, String)>,
}

/// One topic config as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The config's Kafka name.
    pub name: String,
    /// Its value, `None` when sensitive or unset.
    pub value: Option<String>,
    /// Whether it cannot be altered.
    pub read_only: bool,
    /// Whether the value is the default.
    pub is_default: bool,
    /// Whether the value is hidden because it is sensitive.
    pub is_sensitive: bool,
}

/// Which offset ListOffsets looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark).
    Latest,
    /// The offset of the record with the largest timestamp.
    MaxTimestamp,
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    /// The timestamp value ListOffsets uses for this spec.
    pub(crate) fn wire_timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::MaxTimestamp => -3,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

/// One partition's answer to ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffset {
    /// The partition index.
    pub partition: i32,
    /// The offset, -1 when no record matches a timestamp.
    pub offset: i64,
    /// The timestamp of that record, -1 when not applicable.
    pub timestamp: i64,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Admin {
    /// Connects to the cluster through its bootstrap servers.
    pub async fn connect(config: ClientConfig) -> Result<Admin> {
        Ok(Admin {
            cluster: Cluster::connect(config).await?,
        })
    }

    /// Describes the brokers and some topics (`None` for all topics).
    pub async fn metadata(&self, topics: Option<&[String]>) -> Result<ClusterMetadata> {
        self.cluster.retry(None, || self.cluster.metadata(topics)).await
    }

    /// Creates one topic; `validate_only` checks the request without creating anything.
    pub async fn create_topic(&self, topic: NewTopic, validate_only: bool) -> Result<()> {
        let connection = self.cluster.any_connection().await?;
        let version = connection.version(ApiKey::CreateTopics)?;
        let mut creatable = CreatableTopic::default();
        creatable.name = topic_name(&topic.name);
        creatable.num_partitions = topic.partitions;
        creatable.replication_factor = topic.replication_factor;
        creatable.configs = topic
            .configs
            .iter()
            .map(|(name, value)| {
                let mut config = CreatableTopicConfig::default();
                config.name = text(name);
                config.value = Some(text(value));
                config
            })
            .collect();
        let mut request = CreateTopicsRequest::default();
        request.topics = vec![creatable];
        request.timeout_ms = self.timeout_ms();
        request.validate_only = validate_only;
        let response = connection.request(&request, version).await?;
        for result in &response.topics {
            check_code(result.error_code, result.error_message.as_deref())?;
        }
        Ok(())
    }

    /// Deletes topics by name; fails on the first topic the broker refused.
    pub async fn delete_topics(&self, names: &[String]) -> Result<()> {
        let connection = self.cluster.any_connection().await?;
        let version = connection.version(ApiKey::DeleteTopics)?;
        let mut request = DeleteTopicsRequest::default();
        if version >= 6 {
            request.topics = names
                .iter()
                .map(|name| {
                    let mut state = DeleteTopicState::default();
                    state.name = Some(topic_name(name));
                    state
                })
                .collect();
        } else {
            request.topic_names = names.iter().map(|n| topic_name(n)).collect();
        }
        request.timeout_ms = self.timeout_ms();
        let response = connection.request(&request, version).await?;
        for result in &response.responses {
            check_code(result.error_code, result.error_message.as_deref())?;
        }
        Ok(())
    }

    /// Grows a topic to `total_count` partitions.
    pub async fn create_partitions(&self, topic: &str, total_count: i32) -> Result<()> {
        let connection = self.cluster.any_connection().await?;
        let version = connection.version(ApiKey::CreatePartitions)?;
        let mut grow = CreatePartitionsTopic::default();
        grow.name = topic_name(topic);
        grow.count = total_count;
        grow.assignments = None;
        let mut request = CreatePartitionsRequest::default();
        request.topics = vec![grow];
        request.timeout_ms = self.timeout_ms();
        let response = connection.request(&request, version).await?;
        for result in &response.results {
            check_code(result.error_code, result.error_message.as_deref())?;
        }
        self.cluster.invalidate(topic);
        Ok(())
    }

    /// Lists every config of a topic with its value and whether it is a default.
    pub async fn describe_topic_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let connection = self.cluster.any_connection().await?;
        let version = connection.version(ApiKey::DescribeConfigs)?;
        let mut resource = DescribeConfigsResource::default();
        resource.resource_type = RESOURCE_TOPIC;
        resource.resource_name = text(topic);
        resource.configuration_keys = None;
        let mut request = DescribeConfigsRequest::default();
        request.resources = vec![resource];
        let response = connection.request(&request, version).await?;
        let mut entries = Vec::new();
        for result in response.results {
            check_code(result.error_code, result.error_message.as_deref())?;
            for config in result.configs {
                entries.push(ConfigEntry {
                    name: config.name.to_string(),
                    value: config.value.map(|v| v.to_string()),
                    read_only: config.read_only,
                    is_default: config.config_source == SOURCE_DEFAULT,
                    is_sensitive: config.is_sensitive,
                });
            }
        }
        Ok(entries)
    }

    /// Sets and deletes (reverts to default) topic configs with IncrementalAlterConfigs.
    pub async fn alter_topic_configs(&self, topic: &str, set: &[(String, String)], delete: &[String]) -> Result<()> {
        let connection = self.cluster.any_connection().await?;
        let version = connection.version(ApiKey::IncrementalAlterConfigs)?;
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = RESOURCE_TOPIC;
        resource.resource_name = text(topic);
        for (name, value) in set {
            let mut config = AlterableConfig::default();
            config.name = text(name);
            config.config_operation = 0;
            config.value = Some(text(value));
            resource.configs.push(config);
        }
        for name in delete {
            let mut config = AlterableConfig::default();
            config.name = text(name);
            config.config_operation = 1;
            config.value = None;
            resource.configs.push(config);
        }
        let mut request = IncrementalAlterConfigsRequest::default();
        request.resources = vec![resource];
        let response = connection.request(&request, version).await?;
        for result in &response.responses {
            check_code(result.error_code, result.error_message.as_deref())?;
        }
        Ok(())
    }

    /// Looks up offsets of some partitions of a topic, asking each partition's leader.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<PartitionOffset>> {
        let cluster = self.cluster.clone();
        let specs: Vec<(i32, OffsetSpec)> = partitions.iter().map(|p| (*p, spec)).collect();
        self.cluster
            .retry(Some(topic), || list_offsets(&cluster, topic, &specs, 0))
            .await
    }

    /// Deletes records before the given offsets; returns each partition's new low watermark.
    pub async fn delete_records(&self, topic: &str, before: &[(i32, i64)]) -> Result<Vec<(i32, i64)>> {
        let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
        for (partition, offset) in before {
            let leader = self.cluster.leader(topic, *partition).await?;
            by_leader.entry(leader).or_default().push((*partition, *offset));
        }
        let mut out = Vec::new();
        for (leader, partitions) in by_leader {
            let connection = self.cluster.broker(leader).await?;
            let version = connection.version(ApiKey::DeleteRecords)?;
            let mut target = DeleteRecordsTopic::default();
            target.name = topic_name(topic);
            target.partitions = partitions
                .iter()
                .map(|(partition, offset)| {
                    let mut p = DeleteRecordsPartition::default();
                    p.partition_index = *partition;
                    p.offset = *offset;
                    p
                })
                .collect();
            let mut request = DeleteRecordsRequest::default();
            request.topics = vec![target];
            request.timeout_ms = self.timeout_ms();
            let response = connection.request(&request, version).await?;
            for t in response.topics {
                for p in t.partitions {
                    check_code(p.error_code, Some(&format!("{topic}-{}", p.partition_index)))?;
                    out.push((p.partition_index, p.low_watermark));
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn timeout_ms(&self) -> i32 {
        i32::try_from(self.cluster.config.request_timeout_ms).unwrap_or(i32::MAX)
    }
}

/// ListOffsets for some partitions of one topic, each with its own spec, grouped by leader.
pub(crate) async fn list_offsets(
    cluster: &Cluster,
    topic: &str,
    specs: &[(i32, OffsetSpec)],
    isolation_level: i8,
) -> Result<Vec<PartitionOffset>> {
    let mut by_leader: BTreeMap<i32, Vec<(i32, OffsetSpec)>> = BTreeMap::new();
    for (partition, spec) in specs {
        let leader = cluster.leader(topic, *partition).await?;
        by_leader.entry(leader).or_default().push((*partition, *spec));
    }
    let mut out = Vec::with_capacity(specs.len());
    for (leader, partitions) in by_leader {
        let connection = cluster.broker(leader).await?;
        let version = connection.version(ApiKey::ListOffsets)?;
        let mut target = ListOffsetsTopic::default();
        target.name = topic_name(topic);
        target.partitions = partitions
            .iter()
            .map(|(partition, spec)| {
                let mut p = ListOffsetsPartition::default();
                p.partition_index = *partition;
                p.timestamp = spec.wire_timestamp();
                p
            })
            .collect();
        let mut request = ListOffsetsRequest::default();
        request.replica_id = (-1).into();
        request.isolation_level = isolation_level;
        request.topics = vec![target];
        let response = connection.request(&request, version).await?;
        for t in response.topics {
            for p in t.partitions {
                check_code(p.error_code, Some(&format!("{topic}-{}", p.partition_index)))?;
                out.push(PartitionOffset {
                    partition: p.partition_index,
                    offset: p.offset,
                    timestamp: p.timestamp,
                });
            }
        }
    }
    out.sort_unstable_by_key(|p| p.partition);
    Ok(out)
}

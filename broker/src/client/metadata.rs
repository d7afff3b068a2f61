//! The cluster metadata the client hands out: brokers, controller, topics and partition leaders.

use kafka_protocol::messages::MetadataResponse;

/// A snapshot of the cluster as one Metadata response described it.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetadata {
    /// The cluster id, if the broker reports one.
    pub cluster_id: Option<String>,
    /// The node id of the controller, -1 if unknown.
    pub controller_id: i32,
    /// The live brokers.
    pub brokers: Vec<BrokerMetadata>,
    /// The topics asked for (or all of them).
    pub topics: Vec<TopicMetadata>,
}

/// One broker's advertised address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// The broker's node id.
    pub node_id: i32,
    /// The advertised host.
    pub host: String,
    /// The advertised port.
    pub port: i32,
    /// The rack, if configured.
    pub rack: Option<String>,
}

/// One topic's partitions, or the error that stopped the broker describing it.
#[derive(Debug, Clone)]
pub struct TopicMetadata {
    /// The topic name.
    pub name: String,
    /// The topic id (all zeros when the broker does not report one).
    pub topic_id: [u8; 16],
    /// Whether the topic is internal, like `__consumer_offsets`.
    pub is_internal: bool,
    /// The Kafka error code for this topic, 0 when described.
    pub error_code: i16,
    /// The partitions, sorted by index.
    pub partitions: Vec<PartitionMetadata>,
}

/// One partition's leader and replicas.
#[derive(Debug, Clone)]
pub struct PartitionMetadata {
    /// The partition index.
    pub partition: i32,
    /// The leader's node id, -1 when there is none.
    pub leader: i32,
    /// The leader epoch, -1 if unknown.
    pub leader_epoch: i32,
    /// The replicas' node ids.
    pub replicas: Vec<i32>,
    /// The in-sync replicas' node ids.
    pub isr: Vec<i32>,
    /// The Kafka error code for this partition, 0 when healthy.
    pub error_code: i16,
}

impl ClusterMetadata {
    /// Builds the snapshot from a Metadata response.
    pub(crate) fn from_response(response: MetadataResponse) -> ClusterMetadata {
        let brokers = response
            .brokers
            .into_iter()
            .map(|b| BrokerMetadata {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.map(|r| r.to_string()),
            })
            .collect();
        let topics = response
            .topics
            .into_iter()
            .map(|t| {
                let mut partitions: Vec<PartitionMetadata> = t
                    .partitions
                    .into_iter()
                    .map(|p| PartitionMetadata {
                        partition: p.partition_index,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                        isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                        error_code: p.error_code,
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                TopicMetadata {
                    name: t.name.map(|n| n.0.to_string()).unwrap_or_default(),
                    topic_id: *t.topic_id.as_bytes(),
                    is_internal: t.is_internal,
                    error_code: t.error_code,
                    partitions,
                }
            })
            .collect();
        ClusterMetadata {
            cluster_id: response.cluster_id.map(|c| c.to_string()),
            controller_id: response.controller_id.0,
            brokers,
            topics,
        }
    }

    /// The topic with this name, if the snapshot holds it.
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.iter().find(|t| t.name == name)
    }
}

impl BrokerMetadata {
    /// The `host:port` to dial.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl TopicMetadata {
    /// The topic id as Kafka prints it: URL-safe base64 without padding.
    pub fn topic_id_string(&self) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::with_capacity(22);
        for chunk in self.topic_id.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_print_as_kafka_prints_them() {
        let topic = TopicMetadata {
            name: "t".into(),
            topic_id: [0; 16],
            is_internal: false,
            error_code: 0,
            partitions: vec![],
        };
        assert_eq!(topic.topic_id_string(), "AAAAAAAAAAAAAAAAAAAAAA");
        let topic = TopicMetadata {
            topic_id: [0xff; 16],
            ..topic
        };
        assert_eq!(topic.topic_id_string(), "_____________________w");
    }
}

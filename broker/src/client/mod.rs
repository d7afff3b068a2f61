//! A Kafka client over the wire protocol (admin, producer, consumer) that works against Brook or
//! any Kafka-compatible cluster; the CLI, the engine and the connectors reach remote topics through it.

mod accumulator;
mod admin;
mod assignor;
mod cluster;
mod connection;
#[cfg(test)]
mod connection_tests;
mod consumer;
mod consumer_protocol;
mod fetch_decode;
mod group;
mod group_admin;
mod group_classic;
mod group_kip848;
mod metadata;
mod offsets;
mod partitioner;
mod producer;
mod transaction;
#[cfg(test)]
mod transaction_broker_tests;
#[cfg(test)]
mod transaction_tests;
mod txn_admin;
mod txn_protocol;
mod txn_state;
mod versions;

pub use admin::{Admin, ConfigEntry, NewTopic, OffsetSpec, PartitionOffset};
pub use assignor::Assignor;
pub use connection::Connection;
pub use consumer::{Assignment, AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, StartOffset, TimestampType};
pub use consumer_protocol::TopicPartition;
pub use group::{GroupConfig, GroupProtocol, RebalanceEvent, MAX_QUEUED_EVENTS, MAX_SUBSCRIBED_TOPICS};
pub use group_admin::{GroupDescription, GroupListing, GroupMember};
pub use metadata::{BrokerMetadata, ClusterMetadata, PartitionMetadata, TopicMetadata};
pub use partitioner::{murmur2, partition_for_key};
pub use producer::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
pub use transaction::{ConsumerGroupMetadata, MAX_TRANSACTION_OFFSETS};
pub use txn_admin::{
    ActiveProducer, PartitionProducers, TransactionDescription, TransactionListing, MAX_DESCRIBED_TRANSACTIONS,
    TRANSACTION_STATES,
};

// For `crate::access`, which fetches one partition at a time and decodes as the consumer does.
pub(crate) use admin::list_offsets as list_partition_offsets;
pub(crate) use cluster::Cluster;
pub(crate) use fetch_decode::decode_partition;

use kafka_protocol::ResponseError;

use crate::error::{Error, Result};

/// How to reach a cluster and the bounds every connection to it keeps.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` addresses tried in order to discover the cluster.
    pub bootstrap_servers: Vec<String>,
    /// The client id sent in every request header.
    pub client_id: String,
    /// How long one request may wait for its response.
    pub request_timeout_ms: u64,
    /// The largest response frame accepted; a larger one closes the connection.
    pub max_response_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap_servers: vec!["127.0.0.1:9092".to_string()],
            client_id: "brook".to_string(),
            request_timeout_ms: 30_000,
            max_response_bytes: 128 * 1024 * 1024,
        }
    }
}

impl ClientConfig {
    /// A config for the given bootstrap servers, other fields at their defaults.
    pub fn new(bootstrap_servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ClientConfig {
            bootstrap_servers: bootstrap_servers.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// Turns a Kafka error code from a response into a `Result`, keeping the broker's message if any.
pub(crate) fn check_code(code: i16, message: Option<&str>) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    Err(remote_error(code, message))
}

/// The client's error for a non-zero Kafka error code.
pub(crate) fn remote_error(code: i16, message: Option<&str>) -> Error {
    let name = match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => format!("unknown error code {code}"),
    };
    let message = match message {
        Some(m) if !m.is_empty() => format!("{name}: {m}"),
        _ => name,
    };
    Error::Remote { code, message }
}

/// Whether an error means the client's view of partition leadership may be stale.
pub(crate) fn is_stale_metadata(error: &Error) -> bool {
    match error {
        Error::Remote { code, .. } => matches!(
            ResponseError::try_from_code(*code),
            Some(
                ResponseError::UnknownTopicOrPartition
                    | ResponseError::NotLeaderOrFollower
                    | ResponseError::LeaderNotAvailable
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::NotCoordinator
            )
        ),
        Error::Connection { .. } | Error::Timeout { .. } => true,
        _ => false,
    }
}

/// The delay before retry number `attempt` (1-based): 100 ms doubling up to 1 s.
pub(crate) fn backoff_ms(attempt: u32) -> u64 {
    (100u64 << attempt.saturating_sub(1).min(4)).min(1_000)
}

//! Transaction administration in [`Admin`], as kafka-transactions.sh does it: list the
//! transactions every broker coordinates (ListTransactions), describe transactional ids at their
//! coordinator (DescribeTransactions), and describe the producers a partition knows, with their
//! open transactions (DescribeProducers, at the partition's leader).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeTransactionsRequest, ListTransactionsRequest, ProducerId,
};

use super::admin::Admin;
use super::consumer_protocol::TopicPartition;
use super::offsets::find_coordinator;
use super::offsets::{text, topic_name};
use super::txn_protocol::{transactional_id, KEY_TYPE_TRANSACTION};
use super::{check_code, remote_error};
use crate::error::{Error, Result};

/// The transaction states Kafka's coordinator reports, for ListTransactions filters.
pub const TRANSACTION_STATES: &[&str] = crate::txn::state::STATE_NAMES;
/// The most transactional ids one `describe_transactions` call takes.
pub const MAX_DESCRIBED_TRANSACTIONS: usize = 10_000;

/// One transaction as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    /// The transactional id.
    pub transactional_id: String,
    /// The node id of its coordinator.
    pub coordinator_id: i32,
    /// The producer id it has now.
    pub producer_id: i64,
    /// Its state: `Empty`, `Ongoing`, `PrepareCommit`, `CompleteCommit`, ...
    pub state: String,
}

/// One transactional id as DescribeTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    /// The transactional id.
    pub transactional_id: String,
    /// The node id of its coordinator.
    pub coordinator_id: i32,
    /// Its state.
    pub state: String,
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// The `transaction.timeout.ms` the producer asked for.
    pub transaction_timeout_ms: i32,
    /// When the open transaction started (ms since the epoch), -1 when none is open.
    pub transaction_start_time_ms: i64,
    /// The partitions in the open transaction, sorted.
    pub partitions: Vec<TopicPartition>,
}

/// One producer a partition knows, as DescribeProducers reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveProducer {
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i32,
    /// The last sequence number written, -1 when none.
    pub last_sequence: i32,
    /// The timestamp of its last write (ms since the epoch), -1 when unknown.
    pub last_timestamp_ms: i64,
    /// The epoch of the coordinator that wrote its last transaction marker, -1 when none.
    pub coordinator_epoch: i32,
    /// The first offset of its open transaction here, -1 when none is open.
    pub current_txn_start_offset: i64,
}

/// The producers of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProducers {
    /// The partition index.
    pub partition: i32,
    /// The producers, sorted by producer id.
    pub producers: Vec<ActiveProducer>,
}

impl PartitionProducers {
    /// The producers with a transaction open in this partition, oldest transaction first.
    pub fn open_transactions(&self) -> Vec<&ActiveProducer> {
        let mut open: Vec<&ActiveProducer> = self
            .producers
            .iter()
            .filter(|p| p.current_txn_start_offset >= 0)
            .collect();
        open.sort_by_key(|p| p.current_txn_start_offset);
        open
    }
}

impl Admin {
    /// Lists the transactions of every broker, optionally only those in some `states`, of
    /// some producer ids, or open longer than `min_duration_ms` (brokers from ListTransactions v1).
    pub async fn list_transactions(
        &self,
        states: &[String],
        producer_ids: &[i64],
        min_duration_ms: Option<i64>,
    ) -> Result<Vec<TransactionListing>> {
        let unknown: Vec<&String> = states
            .iter()
            .filter(|s| !TRANSACTION_STATES.contains(&s.as_str()))
            .collect();
        if !unknown.is_empty() {
            return Err(Error::InvalidConfig {
                name: "state".to_string(),
                reason: format!(
                    "unknown transaction state {unknown:?}; the states are {}",
                    TRANSACTION_STATES.join(", ")
                ),
            });
        }
        let metadata = self.metadata(Some(&[])).await?;
        let mut out: BTreeMap<String, TransactionListing> = BTreeMap::new();
        for broker in &metadata.brokers {
            let connection = self.cluster.broker(broker.node_id).await?;
            let version = connection.version(ApiKey::ListTransactions)?;
            let mut request = ListTransactionsRequest::default();
            request.state_filters = states.iter().map(|s| text(s)).collect();
            request.producer_id_filters = producer_ids.iter().map(|id| ProducerId(*id)).collect();
            if let Some(ms) = min_duration_ms {
                if version < 1 {
                    return Err(remote_error(
                        35,
                        Some("the broker cannot filter transactions by duration (ListTransactions v1)"),
                    ));
                }
                request.duration_filter = ms;
            }
            let response = connection.request(&request, version).await?;
            check_code(response.error_code, None)?;
            for t in response.transaction_states {
                let listing = TransactionListing {
                    transactional_id: t.transactional_id.0.to_string(),
                    coordinator_id: broker.node_id,
                    producer_id: t.producer_id.0,
                    state: t.transaction_state.to_string(),
                };
                out.insert(listing.transactional_id.clone(), listing);
            }
        }
        Ok(out.into_values().collect())
    }

    /// Describes transactional ids at their coordinators; an unknown id fails the call with
    /// TRANSACTIONAL_ID_NOT_FOUND.
    pub async fn describe_transactions(&self, ids: &[String]) -> Result<Vec<TransactionDescription>> {
        if ids.len() > MAX_DESCRIBED_TRANSACTIONS {
            return Err(Error::TooLarge {
                what: "transactional ids to describe",
                size_bytes: ids.len(),
                limit_bytes: MAX_DESCRIBED_TRANSACTIONS,
            });
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let described = self
                .cluster
                .retry(None, || async {
                    let node = find_coordinator(&self.cluster, KEY_TYPE_TRANSACTION, id).await?;
                    let connection = self.cluster.broker(node).await?;
                    let version = connection.version(ApiKey::DescribeTransactions)?;
                    let mut request = DescribeTransactionsRequest::default();
                    request.transactional_ids = vec![transactional_id(id)];
                    let response = connection.request(&request, version).await?;
                    let state = response
                        .transaction_states
                        .into_iter()
                        .find(|s| s.transactional_id.0.as_str() == id)
                        .ok_or_else(|| remote_error(105, Some(id)))?;
                    check_code(state.error_code, Some(&format!("transactional id {id}")))?;
                    let mut partitions: Vec<TopicPartition> = state
                        .topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
                        .collect();
                    partitions.sort();
                    Ok(TransactionDescription {
                        transactional_id: id.clone(),
                        coordinator_id: node,
                        state: state.transaction_state.to_string(),
                        producer_id: state.producer_id.0,
                        producer_epoch: state.producer_epoch,
                        transaction_timeout_ms: state.transaction_timeout_ms,
                        transaction_start_time_ms: state.transaction_start_time_ms,
                        partitions,
                    })
                })
                .await?;
            out.push(described);
        }
        Ok(out)
    }

    /// Describes the producers some partitions of a topic know, asking each partition's leader.
    pub async fn describe_producers(&self, topic: &str, partitions: &[i32]) -> Result<Vec<PartitionProducers>> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for partition in partitions {
            let leader = self.cluster.leader(topic, *partition).await?;
            by_leader.entry(leader).or_default().push(*partition);
        }
        let mut out = Vec::with_capacity(partitions.len());
        for (leader, indexes) in by_leader {
            let found = self
                .cluster
                .retry(Some(topic), || async {
                    let connection = self.cluster.broker(leader).await?;
                    let version = connection.version(ApiKey::DescribeProducers)?;
                    let mut target = TopicRequest::default();
                    target.name = topic_name(topic);
                    target.partition_indexes = indexes.clone();
                    let mut request = DescribeProducersRequest::default();
                    request.topics = vec![target];
                    let response = connection.request(&request, version).await?;
                    let mut found = Vec::new();
                    for t in response.topics {
                        for p in t.partitions {
                            check_code(
                                p.error_code,
                                Some(&p.error_message.as_deref().map_or_else(
                                    || format!("{topic}-{}", p.partition_index),
                                    |m| format!("{topic}-{}: {m}", p.partition_index),
                                )),
                            )?;
                            let mut producers: Vec<ActiveProducer> = p
                                .active_producers
                                .iter()
                                .map(|s| ActiveProducer {
                                    producer_id: s.producer_id.0,
                                    producer_epoch: s.producer_epoch,
                                    last_sequence: s.last_sequence,
                                    last_timestamp_ms: s.last_timestamp,
                                    coordinator_epoch: s.coordinator_epoch,
                                    current_txn_start_offset: s.current_txn_start_offset,
                                })
                                .collect();
                            producers.sort_by_key(|s| s.producer_id);
                            found.push(PartitionProducers {
                                partition: p.partition_index,
                                producers,
                            });
                        }
                    }
                    Ok(found)
                })
                .await?;
            out.extend(found);
        }
        out.sort_by_key(|p| p.partition);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer(id: i64, start: i64) -> ActiveProducer {
        ActiveProducer {
            producer_id: id,
            producer_epoch: 0,
            last_sequence: 3,
            last_timestamp_ms: 1,
            coordinator_epoch: 0,
            current_txn_start_offset: start,
        }
    }

    #[test]
    fn open_transactions_are_the_producers_with_a_start_offset_oldest_first() {
        let p = PartitionProducers {
            partition: 0,
            producers: vec![producer(1, 40), producer(2, -1), producer(3, 12)],
        };
        let open: Vec<i64> = p.open_transactions().iter().map(|p| p.producer_id).collect();
        assert_eq!(open, vec![3, 1]);
    }
}

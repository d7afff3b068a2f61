//! The transaction log: every state change of a transactional id as one record of the compacted
//! internal topic `__transaction_state`, on the partition Kafka would choose, replayed on start.
//!
//! The topic is created by the first InitProducerId with a transactional id (as Kafka creates it
//! on first use), so brokers that never see a transaction carry no such topic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::record;
use super::state::TxnMetadata;
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::group::offsets::internal_topic::{self, Batch};
use crate::group::offsets::partition_for;
use crate::log::batch::{self, EncodeOptions, NewRecord};
use crate::log::{PartitionLog, MAX_DECODED_BATCH_BYTES};
use crate::topics::Topics;

/// The internal topic holding transaction states, as Kafka names it.
pub const TXN_TOPIC: &str = "__transaction_state";
/// Segment size of the transaction log (Kafka's `transaction.state.log.segment.bytes` default).
const TXN_SEGMENT_BYTES: &str = "104857600";

/// The partitions of `__transaction_state` once the topic exists, with the largest batch it takes.
struct Partitions {
    logs: Vec<Arc<PartitionLog>>,
    max_batch_bytes: usize,
}

/// A record appended to the transaction log, durable once [`TxnLog::wait`] returns.
#[derive(Debug, Clone)]
pub struct Written {
    log: Arc<PartitionLog>,
    end_offset: i64,
}

/// The `__transaction_state` topic. Send + Sync.
pub struct TxnLog {
    partitions: OnceLock<Partitions>,
    /// Serialises the topic's creation.
    creating: Mutex<()>,
}

impl TxnLog {
    /// Opens the transaction log and replays it when the topic exists: the latest state of every
    /// transactional id, tombstoned ones left out.
    pub fn open(topics: &Topics, config: &BrokerConfig) -> Result<(TxnLog, HashMap<String, TxnMetadata>)> {
        let log = TxnLog {
            partitions: OnceLock::new(),
            creating: Mutex::new(()),
        };
        let Some(topic) = topics.get(TXN_TOPIC) else {
            return Ok((log, HashMap::new()));
        };
        let logs = topic.partitions();
        let mut txns = HashMap::new();
        let mut records = 0;
        for (p, partition) in logs.iter().enumerate() {
            records += load_partition(p, partition, &mut txns)?;
        }
        tracing::info!(
            partitions = logs.len(),
            records,
            transactional_ids = txns.len(),
            "transaction states loaded"
        );
        let max_batch_bytes = config.topic_rules(&topic.configs()).max_message_bytes;
        let _ = log.partitions.set(Partitions { logs, max_batch_bytes });
        Ok((log, txns))
    }

    /// Creates `__transaction_state` (`transaction.state.log.num.partitions` partitions,
    /// compacted) unless it exists.
    pub fn ensure(&self, topics: &Topics, config: &BrokerConfig) -> Result<()> {
        if self.partitions.get().is_some() {
            return Ok(());
        }
        let _creating = self.creating.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.partitions.get().is_some() {
            return Ok(());
        }
        let topic = internal_topic::open_or_create(
            topics,
            config,
            TXN_TOPIC,
            "transaction.state.log.num.partitions",
            TXN_SEGMENT_BYTES,
        )?;
        let max_batch_bytes = config.topic_rules(&topic.configs()).max_message_bytes;
        let _ = self.partitions.set(Partitions {
            logs: topic.partitions(),
            max_batch_bytes,
        });
        Ok(())
    }

    /// The partition of `__transaction_state` that holds a transactional id's records (Kafka's
    /// `abs(hashCode) % partitions`), once the topic exists.
    pub fn partition_of(&self, transactional_id: &str) -> Option<i32> {
        let partitions = self.partitions.get()?;
        Some(partition_for(transactional_id, partitions.logs.len() as i32))
    }

    /// Appends the state of a transactional id (None: a tombstone) now, in call order; the
    /// change is durable once [`TxnLog::wait`] returns.
    pub fn append(&self, transactional_id: &str, meta: Option<&TxnMetadata>, now_ms: i64) -> Result<Written> {
        let partitions = self.partitions.get().ok_or(Error::Shutdown("transaction log"))?;
        let p = partition_for(transactional_id, partitions.logs.len() as i32) as usize;
        let record = NewRecord {
            timestamp_ms: now_ms,
            key: Some(record::encode_key(transactional_id)?),
            value: meta.map(record::encode_value).transpose()?,
            headers: Vec::new(),
        };
        let log = &partitions.logs[p];
        let info =
            Batch::encode(&[record], &EncodeOptions::default(), partitions.max_batch_bytes)?.append_to(log, now_ms)?;
        Ok(Written {
            log: log.clone(),
            end_offset: info.last_offset + 1,
        })
    }

    /// Waits until an appended record is durable.
    pub async fn wait(&self, written: Written) -> Result<()> {
        written.log.wait_durable(written.end_offset).await
    }
}

/// Replays one partition into `txns`; returns the records read. Undecodable records are skipped
/// with a log line, like Kafka's loader skips unknown record types.
fn load_partition(p: usize, log: &PartitionLog, txns: &mut HashMap<String, TxnMetadata>) -> Result<usize> {
    let mut count = 0;
    internal_topic::replay(log, "loading transactions", |header, bytes| {
        if !header.is_control() && !header.is_transactional() {
            for r in batch::decode_records(bytes, MAX_DECODED_BATCH_BYTES)? {
                count += 1;
                load_record(p, r, txns);
            }
        }
        Ok(())
    })?;
    Ok(count)
}

fn load_record(p: usize, r: batch::Record, txns: &mut HashMap<String, TxnMetadata>) {
    let skip = |reason: String| {
        tracing::warn!(partition = p, offset = r.offset, reason = %reason, "skipped a __transaction_state record");
    };
    let Some(key) = r.key.as_deref() else {
        return skip("the record has no key".to_string());
    };
    let transactional_id = match record::decode_key(key) {
        Ok(Some(id)) => id,
        Ok(None) => return,
        Err(e) => return skip(e.to_string()),
    };
    match r.value.as_deref().map(record::decode_value).transpose() {
        Ok(Some(meta)) => {
            txns.insert(transactional_id, meta);
        }
        Ok(None) => {
            txns.remove(&transactional_id);
        }
        Err(e) => skip(e.to_string()),
    }
}

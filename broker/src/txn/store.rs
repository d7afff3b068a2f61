//! The transaction log: every state change of a transactional id as one record of the compacted
//! internal topic `__transaction_state`, on the partition Kafka would choose, replayed on start.
//!
//! The topic is created by the first InitProducerId with a transactional id (as Kafka creates it
//! on first use), so brokers that never see a transaction carry no such topic.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use super::record;
use super::state::TxnMetadata;
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::group::offsets::partition_for;
use crate::log::batch::{self, EncodeOptions, NewRecord};
use crate::log::{AppendOptions, PartitionLog, MAX_DECODED_BATCH_BYTES};
use crate::topics::{Topics, MAX_PARTITIONS};

/// The internal topic holding transaction states, as Kafka names it.
pub const TXN_TOPIC: &str = "__transaction_state";
/// Segment size of the transaction log (Kafka's `transaction.state.log.segment.bytes` default).
const TXN_SEGMENT_BYTES: &str = "104857600";
/// Bytes read from the log at a time while loading.
const LOAD_READ_BYTES: usize = 1 << 20;

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
        let topic = match topics.get(TXN_TOPIC) {
            Some(topic) => topic,
            None => {
                let count = config
                    .long("transaction.state.log.num.partitions")
                    .clamp(1, i64::from(MAX_PARTITIONS)) as i32;
                let configs = BTreeMap::from([
                    ("cleanup.policy".to_string(), "compact".to_string()),
                    ("segment.bytes".to_string(), TXN_SEGMENT_BYTES.to_string()),
                ]);
                topics.create(config, TXN_TOPIC, count, configs, false)?
            }
        };
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
        let batch = batch::encode_batch(&[record], &EncodeOptions::default())?;
        if batch.len() > partitions.max_batch_bytes {
            return Err(Error::MessageTooLarge {
                size_bytes: batch.len(),
                max_bytes: partitions.max_batch_bytes,
            });
        }
        let headers = batch::validate_batches(&batch)?;
        let options = AppendOptions {
            now_ms,
            log_append_time: false,
            leader_epoch: 0,
        };
        let log = &partitions.logs[p];
        let info = log.append(batch, &headers, &options)?;
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
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut count = 0;
    while offset < end {
        let chunk = log.read(offset, LOAD_READ_BYTES, end)?;
        let before = offset;
        for item in batch::scan_headers(&chunk) {
            let (position, header) = item?;
            offset = offset.max(header.last_offset() + 1);
            if header.is_control() || header.is_transactional() {
                continue;
            }
            let bytes = &chunk[position..position + header.total_bytes()];
            for r in batch::decode_records(bytes, MAX_DECODED_BATCH_BYTES)? {
                count += 1;
                load_record(p, r, txns);
            }
        }
        if offset == before {
            return Err(Error::CorruptLog {
                path: log.dir().display().to_string(),
                reason: format!("no complete batch could be read at offset {offset} while loading transactions"),
            });
        }
    }
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

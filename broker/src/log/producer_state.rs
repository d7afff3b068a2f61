//! Idempotent and transactional producer state per partition: epochs, the last five batches'
//! sequence ranges, and each producer's open transaction.
//!
//! This is Kafka's `ProducerStateManager` and `ProducerAppendInfo` reduced to what a produce and a
//! transaction marker need: find a retried batch that is already in the log (answer with its
//! original offsets), refuse a fenced epoch, refuse a sequence gap, refuse a non-transactional
//! batch while the producer's transaction is open, and track transactions (a transactional batch
//! opens one at its base offset, a marker ends it) in the [`TxnIndex`] that gives the last stable
//! offset and the aborted transactions.

use std::collections::{HashMap, VecDeque};

use super::batch::BatchHeader;
use super::txn::{AbortedTxn, EndMarker, TxnIndex};
use crate::error::{Error, Result};

/// Batches remembered per producer for duplicate detection, like Kafka
/// (`max.in.flight.requests.per.connection` may be at most 5 for idempotence).
pub const BATCHES_TO_RETAIN: usize = 5;

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data: assign offsets and append.
    Append,
    /// A retried batch already in the log: answer with its original offsets.
    Duplicate {
        /// Offset of the original batch's first record.
        base_offset: i64,
        /// Offset of the original batch's last record.
        last_offset: i64,
    },
}

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMetadata {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

/// What a partition knows of one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    /// The latest epoch seen; a change clears `batches`.
    epoch: i16,
    /// The last appended batches of `epoch`, oldest first, at most [`BATCHES_TO_RETAIN`].
    batches: VecDeque<BatchMetadata>,
    /// The largest `maxTimestamp` of its batches, for expiration.
    last_timestamp_ms: i64,
    /// The coordinator epoch of the last transaction marker, or -1.
    coordinator_epoch: i32,
    /// The first offset of the producer's open transaction in this partition.
    txn_first_offset: Option<i64>,
}

/// What DescribeProducers reports of one producer of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSnapshot {
    /// The producer id.
    pub producer_id: i64,
    /// The latest epoch seen.
    pub producer_epoch: i16,
    /// The sequence of the last record appended in that epoch, or -1.
    pub last_sequence: i32,
    /// The largest timestamp of its batches and markers.
    pub last_timestamp_ms: i64,
    /// The coordinator epoch of the last transaction marker, or -1.
    pub coordinator_epoch: i32,
    /// The first offset of the open transaction, or -1 when none is open.
    pub current_txn_start_offset: i64,
}

impl ProducerEntry {
    fn last_seq(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }

    fn snapshot(&self, producer_id: i64) -> ProducerSnapshot {
        ProducerSnapshot {
            producer_id,
            producer_epoch: self.epoch,
            last_sequence: self.last_seq(),
            last_timestamp_ms: self.last_timestamp_ms,
            coordinator_epoch: self.coordinator_epoch,
            current_txn_start_offset: self.txn_first_offset.unwrap_or(-1),
        }
    }
}

/// The idempotent and transactional producers of one partition, by producer id.
///
/// To truncate the tail of the log, [`clear`](Self::clear) the table and [`record`](Self::record)
/// the surviving batches again in offset order: with at most five batches per producer kept,
/// there is no exact way to undo appends, and Kafka likewise reloads from a snapshot and replays.
#[derive(Debug, Clone, Default)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    txns: TxnIndex,
}

impl ProducerStateTable {
    /// Decides what to do with an incoming batch (its header as the client sent it; the base
    /// offset is ignored), following Kafka's `findDuplicateBatch`, `checkProducerEpoch` and
    /// `checkSequence`. Non-idempotent batches (producer id < 0) are always appended. A marker
    /// (control batch) is only fenced by its epoch. A batch with a producer id but no sequence
    /// (-1) is a coordinator's write, e.g. TxnOffsetCommit records: fenced by epoch, never
    /// sequence-checked (clients cannot send one: validation refuses it).
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck> {
        if header.producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        // An unknown producer id (new, or forgotten after retention) may start at any sequence.
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        let fenced = || Error::InvalidProducerEpoch {
            producer_id: header.producer_id,
            current: entry.epoch,
            got: header.producer_epoch,
        };
        if header.is_control() {
            return if header.producer_epoch < entry.epoch {
                Err(fenced())
            } else {
                Ok(SequenceCheck::Append)
            };
        }
        let first_seq = header.base_sequence;
        let last_seq = header.last_sequence();
        if header.producer_epoch == entry.epoch && first_seq >= 0 {
            if let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            {
                return Ok(SequenceCheck::Duplicate {
                    base_offset: dup.base_offset,
                    last_offset: dup.last_offset,
                });
            }
        }
        if header.producer_epoch < entry.epoch {
            return Err(fenced());
        }
        if let (false, Some(first_offset)) = (header.is_transactional(), entry.txn_first_offset) {
            // Kafka's InvalidTxnStateException: the open transaction must end with a marker first.
            return Err(Error::InvalidRecord(format!(
                "producer {} has a transaction open since offset {first_offset}: \
                 a non-transactional batch cannot follow it before its marker",
                header.producer_id
            )));
        }
        if first_seq < 0 || entry.epoch == NO_PRODUCER_EPOCH {
            // A coordinator's write has no sequence; without a known epoch, Kafka accepts any.
            return Ok(SequenceCheck::Append);
        }
        let expected = if header.producer_epoch != entry.epoch {
            // A new epoch starts its sequences again at 0.
            0
        } else {
            next_sequence(entry.last_seq())
        };
        if first_seq != expected {
            return Err(Error::OutOfOrderSequence {
                producer_id: header.producer_id,
                expected,
                got: first_seq,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records an appended data batch (its header with the assigned base offset). Log recovery
    /// calls this for every data batch in offset order to rebuild the table, without
    /// [`check`](Self::check). A transactional batch opens the producer's transaction at its base
    /// offset unless one is open. An epoch change forgets the previous epoch's batches, as Kafka's
    /// `maybeUpdateProducerEpoch` does. A control batch given here (one that is not a transaction
    /// marker) only moves the epoch; markers go through [`record_marker`](Self::record_marker).
    pub fn record(&mut self, header: &BatchHeader) {
        if header.producer_id < 0 {
            return;
        }
        let entry = upsert(&mut self.producers, header);
        if header.is_control() {
            return;
        }
        if header.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(header.base_offset);
            self.txns.begin(header.producer_id, header.base_offset);
        }
        if header.base_sequence < 0 {
            return;
        }
        if entry.batches.len() == BATCHES_TO_RETAIN {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
        });
    }

    /// Records an appended transaction marker (its header with the assigned offset): it ends the
    /// producer's open transaction, if any, and moves the epoch. Returns the first offset of the
    /// transaction it ended; a marker without an open transaction changes nothing else.
    pub fn record_marker(&mut self, header: &BatchHeader, marker: EndMarker) -> Option<i64> {
        if header.producer_id < 0 {
            return None;
        }
        let entry = upsert(&mut self.producers, header);
        entry.coordinator_epoch = marker.coordinator_epoch;
        let first_offset = entry.txn_first_offset.take()?;
        self.txns
            .end(header.producer_id, first_offset, header.base_offset, marker.commit);
        Some(first_offset)
    }

    /// The first offset of the earliest transaction still open, or ended by a marker that is not
    /// yet below the high watermark (see [`on_high_watermark`](Self::on_high_watermark)).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.txns.first_unstable_offset()
    }

    /// Tells the table that every offset below `high_watermark` is durable: transactions whose
    /// marker lies below it no longer hold the last stable offset.
    pub fn on_high_watermark(&mut self, high_watermark: i64) {
        self.txns.on_high_watermark(high_watermark);
    }

    /// The aborted transactions whose records may lie in `[from, upto)`, in marker order.
    pub fn aborted_overlapping(&self, from: i64, upto: i64) -> Vec<AbortedTxn> {
        self.txns.aborted_overlapping(from, upto)
    }

    /// The first offset of the producer's open transaction here, if one is open.
    pub fn open_transaction(&self, producer_id: i64) -> Option<i64> {
        self.producers.get(&producer_id)?.txn_first_offset
    }

    /// Every producer the table knows, in producer id order.
    pub fn snapshots(&self) -> Vec<ProducerSnapshot> {
        let mut out: Vec<ProducerSnapshot> = self
            .producers
            .iter()
            .map(|(&producer_id, entry)| entry.snapshot(producer_id))
            .collect();
        out.sort_by_key(|s| s.producer_id);
        out
    }

    /// What the table knows of one producer.
    pub fn snapshot(&self, producer_id: i64) -> Option<ProducerSnapshot> {
        Some(self.producers.get(&producer_id)?.snapshot(producer_id))
    }

    /// Forgets producers whose last batch lies entirely before `log_start_offset` (retention or
    /// DeleteRecords), like Kafka's `ProducerStateManager.truncateHead`, unless their transaction
    /// is open (its marker is still to come); a producer known only from a transaction marker has
    /// no batch and is forgotten too. Aborted transactions whose marker lies below the start go.
    pub fn truncate_before(&mut self, log_start_offset: i64) {
        self.producers.retain(|_, entry| {
            entry.txn_first_offset.is_some() || entry.batches.back().is_some_and(|b| b.last_offset >= log_start_offset)
        });
        self.txns.truncate_before(log_start_offset);
    }

    /// Forgets producers whose newest `maxTimestamp` is at least `expiration_ms` older than
    /// `now_ms` (Kafka's `producer.id.expiration.ms`, default one day), bounding the table;
    /// producers with an open transaction stay, as in Kafka.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) {
        self.producers.retain(|_, entry| {
            entry.txn_first_offset.is_some() || now_ms.saturating_sub(entry.last_timestamp_ms) < expiration_ms
        });
    }

    /// The last offsets of every batch the table remembers (at most [`BATCHES_TO_RETAIN`] per
    /// producer). The log cleaner keeps these batches, emptied if need be, so that rebuilding the
    /// table from batch headers after compaction gives the same sequence state.
    pub fn remembered_batch_last_offsets(&self) -> std::collections::HashSet<i64> {
        self.producers
            .values()
            .flat_map(|entry| entry.batches.iter().map(|b| b.last_offset))
            .collect()
    }

    /// Forgets every producer and transaction, before replaying the log after its tail was truncated.
    pub fn clear(&mut self) {
        self.producers.clear();
        self.txns = TxnIndex::default();
    }

    /// The current epoch of a producer id, if the partition knows it.
    pub fn producer_epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|entry| entry.epoch)
    }

    /// Number of producer ids known.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer id is known.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

/// The epoch of a batch without a producer.
const NO_PRODUCER_EPOCH: i16 = -1;

/// The entry of the batch's producer, created if new, with its epoch and timestamp moved on.
fn upsert<'a>(producers: &'a mut HashMap<i64, ProducerEntry>, header: &BatchHeader) -> &'a mut ProducerEntry {
    let entry = producers.entry(header.producer_id).or_insert_with(|| ProducerEntry {
        epoch: header.producer_epoch,
        batches: VecDeque::with_capacity(BATCHES_TO_RETAIN),
        last_timestamp_ms: header.max_timestamp,
        coordinator_epoch: -1,
        txn_first_offset: None,
    });
    if entry.epoch != header.producer_epoch {
        entry.epoch = header.producer_epoch;
        entry.batches.clear();
    }
    entry.last_timestamp_ms = entry.last_timestamp_ms.max(header.max_timestamp);
    entry
}

/// The sequence after `last_seq`: 0 after `i32::MAX` and after -1 (nothing appended yet).
fn next_sequence(last_seq: i32) -> i32 {
    if last_seq == i32::MAX {
        0
    } else {
        last_seq + 1
    }
}

#[cfg(test)]
mod tests;

//! Idempotent producer state per partition: epochs and the last five batches' sequence ranges.
//!
//! This is Kafka's `ProducerStateManager` and `ProducerAppendInfo` reduced to what a produce needs:
//! find a retried batch that is already in the log (answer with its original offsets), refuse a
//! fenced epoch, and refuse a sequence gap. Transactions' open first offsets (for the last stable
//! offset) are not kept here.

use std::collections::{HashMap, VecDeque};

use super::batch::BatchHeader;
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
}

impl ProducerEntry {
    fn last_seq(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }
}

/// The idempotent producers of one partition, by producer id.
///
/// To truncate the tail of the log, [`clear`](Self::clear) the table and [`record`](Self::record)
/// the surviving batches again in offset order: with at most five batches per producer kept,
/// there is no exact way to undo appends, and Kafka likewise reloads from a snapshot and replays.
#[derive(Debug, Clone, Default)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateTable {
    /// Decides what to do with an incoming batch (its header as the client sent it; the base
    /// offset is ignored), following Kafka's `findDuplicateBatch`, `checkProducerEpoch` and
    /// `checkSequence`. Non-idempotent batches (producer id < 0) are always appended.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck> {
        if header.producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        // An unknown producer id (new, or forgotten after retention) may start at any sequence.
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        let first_seq = header.base_sequence;
        let last_seq = header.last_sequence();
        if header.producer_epoch == entry.epoch {
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
            return Err(Error::InvalidProducerEpoch {
                producer_id: header.producer_id,
                current: entry.epoch,
                got: header.producer_epoch,
            });
        }
        if entry.epoch == NO_PRODUCER_EPOCH {
            // Without a known epoch, Kafka accepts any sequence.
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

    /// Records an appended batch (its header with the assigned base offset). Log recovery calls
    /// this for every batch in offset order to rebuild the table, without [`check`](Self::check).
    /// A control batch (transaction marker) only moves the epoch; an epoch change forgets the
    /// previous epoch's batches, as Kafka's `maybeUpdateProducerEpoch` does.
    pub fn record(&mut self, header: &BatchHeader) {
        if header.producer_id < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::with_capacity(BATCHES_TO_RETAIN),
                last_timestamp_ms: header.max_timestamp,
            });
        if entry.epoch != header.producer_epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(header.max_timestamp);
        if header.is_control() {
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

    /// Forgets producers whose last batch lies entirely before `log_start_offset` (retention or
    /// DeleteRecords), like Kafka's `ProducerStateManager.truncateHead`; a producer known only
    /// from a transaction marker has no batch and is forgotten too.
    pub fn truncate_before(&mut self, log_start_offset: i64) {
        self.producers
            .retain(|_, entry| entry.batches.back().is_some_and(|b| b.last_offset >= log_start_offset));
    }

    /// Forgets producers whose newest `maxTimestamp` is at least `expiration_ms` older than
    /// `now_ms` (Kafka's `producer.id.expiration.ms`, default one day), bounding the table.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) {
        self.producers
            .retain(|_, entry| now_ms.saturating_sub(entry.last_timestamp_ms) < expiration_ms);
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

    /// Forgets every producer, before replaying the log after its tail was truncated.
    pub fn clear(&mut self) {
        self.producers.clear();
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

/// The sequence after `last_seq`: 0 after `i32::MAX` and after -1 (nothing appended yet).
fn next_sequence(last_seq: i32) -> i32 {
    if last_seq == i32::MAX {
        0
    } else {
        last_seq + 1
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A header of producer `producer_id` as a client sends it, or as stored at `base_offset`.
    fn batch(producer_id: i64, epoch: i16, base_sequence: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 49,
            partition_leader_epoch: -1,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: base_offset,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            record_count: count,
        }
    }

    fn marker(producer_id: i64, epoch: i16, offset: i64) -> BatchHeader {
        BatchHeader {
            attributes: 0x30,
            base_sequence: -1,
            ..batch(producer_id, epoch, -1, 1, offset)
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Outcome {
        Append,
        Duplicate(i64, i64),
        Fenced { current: i16, got: i16 },
        OutOfOrder { expected: i32, got: i32 },
    }

    fn outcome(result: Result<SequenceCheck>) -> Outcome {
        match result {
            Ok(SequenceCheck::Append) => Outcome::Append,
            Ok(SequenceCheck::Duplicate {
                base_offset,
                last_offset,
            }) => Outcome::Duplicate(base_offset, last_offset),
            Err(Error::InvalidProducerEpoch { current, got, .. }) => Outcome::Fenced { current, got },
            Err(Error::OutOfOrderSequence { expected, got, .. }) => Outcome::OutOfOrder { expected, got },
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn retries_get_their_original_offsets() {
        let mut table = ProducerStateTable::default();
        for (i, seq) in [0, 3, 5].into_iter().enumerate() {
            let count = [3, 2, 4][i];
            assert_eq!(
                table.check(&batch(7, 0, seq, count, -1)).unwrap(),
                SequenceCheck::Append
            );
            table.record(&batch(7, 0, seq, count, 100 + 10 * i as i64));
        }
        let dup = table.check(&batch(7, 0, 3, 2, -1)).unwrap();
        assert_eq!(
            dup,
            SequenceCheck::Duplicate {
                base_offset: 110,
                last_offset: 111
            }
        );
        // Same first sequence but another length is not the same batch.
        assert_eq!(
            outcome(table.check(&batch(7, 0, 3, 3, -1))),
            Outcome::OutOfOrder { expected: 9, got: 3 }
        );
        assert_eq!(
            outcome(table.check(&batch(7, 0, 10, 1, -1))),
            Outcome::OutOfOrder { expected: 9, got: 10 }
        );
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut table = ProducerStateTable::default();
        for seq in 0..6 {
            table.record(&batch(1, 0, seq, 1, i64::from(seq)));
        }
        assert_eq!(
            outcome(table.check(&batch(1, 0, 0, 1, -1))),
            Outcome::OutOfOrder { expected: 6, got: 0 }
        );
        assert_eq!(outcome(table.check(&batch(1, 0, 1, 1, -1))), Outcome::Duplicate(1, 1));
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut table = ProducerStateTable::default();
        table.record(&batch(1, 5, 0, 10, 0));
        let err = table.check(&batch(1, 4, 10, 1, -1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "producer 1 used epoch 4, older than the current epoch 5"
        );
        let err = table.check(&batch(1, 6, 10, 1, -1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "out of order sequence number for producer 1: expected 0, got 10"
        );
        assert_eq!(table.check(&batch(1, 6, 0, 1, -1)).unwrap(), SequenceCheck::Append);
        // A transaction marker with a bumped epoch forgets the old batches: sequences restart at 0.
        table.record(&marker(1, 7, 10));
        assert_eq!(table.producer_epoch(1), Some(7));
        assert_eq!(
            outcome(table.check(&batch(1, 7, 10, 1, -1))),
            Outcome::OutOfOrder { expected: 0, got: 10 }
        );
        assert_eq!(outcome(table.check(&batch(1, 7, 0, 1, -1))), Outcome::Append);
    }

    #[test]
    fn unknown_producers_and_non_idempotent_batches_append() {
        let table = ProducerStateTable::default();
        assert_eq!(table.check(&batch(9, 3, 12345, 2, -1)).unwrap(), SequenceCheck::Append);
        assert_eq!(table.check(&batch(-1, -1, -1, 2, -1)).unwrap(), SequenceCheck::Append);
        let mut table = table;
        table.record(&batch(-1, -1, -1, 2, 0));
        assert!(table.is_empty());
    }

    #[test]
    fn sequences_wrap_from_max_to_zero() {
        let mut table = ProducerStateTable::default();
        table.record(&batch(1, 0, i32::MAX - 1, 2, 0));
        assert_eq!(table.check(&batch(1, 0, 0, 1, -1)).unwrap(), SequenceCheck::Append);
        table.record(&batch(1, 0, i32::MAX - 2, 4, 10));
        assert_eq!(
            outcome(table.check(&batch(1, 0, 0, 1, -1))),
            Outcome::OutOfOrder { expected: 1, got: 0 }
        );
        assert_eq!(
            outcome(table.check(&batch(1, 0, i32::MAX - 2, 4, -1))),
            Outcome::Duplicate(10, 13)
        );
    }

    #[test]
    fn retention_and_expiration_forget_producers() {
        let mut table = ProducerStateTable::default();
        table.record(&batch(1, 0, 0, 5, 0)); // offsets 0..=4
        table.record(&batch(2, 0, 0, 5, 5)); // offsets 5..=9
        table.record(&marker(3, 0, 10));
        table.truncate_before(5);
        assert_eq!(
            (table.len(), table.producer_epoch(1), table.producer_epoch(2)),
            (1, None, Some(0))
        );
        table.remove_expired(5 + 1000, 1000);
        assert!(table.is_empty());
        table.record(&batch(4, 0, 0, 1, 0));
        table.clear();
        assert!(table.is_empty());
    }

    /// A client's view of one producer id.
    #[derive(Debug, Clone, Default)]
    struct Client {
        epoch: i16,
        next_seq: i32,
        sent: Vec<(i16, i32, i32)>,
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Send the next batch of `count` records.
        Next { producer: usize, count: i32 },
        /// Resend one of the last sent batches.
        Retry { producer: usize, back: usize },
        /// Send past a gap.
        Skip { producer: usize, gap: i32 },
        /// Bump the epoch, restarting at sequence 0.
        Bump { producer: usize },
        /// Send with an epoch below the client's.
        Stale { producer: usize },
        /// Jump near the sequence wrap.
        NearWrap { producer: usize },
        /// The coordinator writes a transaction marker with the client's epoch.
        Marker { producer: usize },
        /// Retention moves the log start offset to this fraction of the log end.
        Retention { per_255: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        let p = 0usize..3;
        prop_oneof![
            6 => (p.clone(), 1i32..4).prop_map(|(producer, count)| Op::Next { producer, count }),
            4 => (p.clone(), 0usize..8).prop_map(|(producer, back)| Op::Retry { producer, back }),
            1 => (p.clone(), 1i32..3).prop_map(|(producer, gap)| Op::Skip { producer, gap }),
            1 => p.clone().prop_map(|producer| Op::Bump { producer }),
            1 => p.clone().prop_map(|producer| Op::Stale { producer }),
            1 => p.clone().prop_map(|producer| Op::NearWrap { producer }),
            1 => p.prop_map(|producer| Op::Marker { producer }),
            1 => any::<u8>().prop_map(|per_255| Op::Retention { per_255 }),
        ]
    }

    /// An appended batch or marker: epoch, first and last sequence (-1 for markers), offsets.
    type Appended = (i16, i32, i32, i64, i64);
    /// A data batch of the current epoch: first and last sequence, base and last offset.
    type Recent = (i32, i32, i64, i64);

    /// The rules written over the full history of each producer instead of a five-batch cache.
    #[derive(Debug, Default)]
    struct Model {
        /// Every batch and marker appended, per producer id: (epoch, first, last, base, last offset).
        history: HashMap<i64, Vec<Appended>>,
    }

    impl Model {
        /// The current epoch and the last five data batches appended under it.
        fn current(&self, producer_id: i64) -> Option<(i16, Vec<Recent>)> {
            let history = self.history.get(&producer_id)?;
            let epoch = history.last()?.0;
            let run: Vec<_> = history
                .iter()
                .rev()
                .take_while(|b| b.0 == epoch)
                .filter(|b| b.1 >= 0)
                .collect();
            Some((epoch, run.iter().take(5).rev().map(|b| (b.1, b.2, b.3, b.4)).collect()))
        }

        fn check(&self, h: &BatchHeader) -> Outcome {
            let Some((epoch, batches)) = self.current(h.producer_id) else {
                return Outcome::Append;
            };
            let (first, last) = (h.base_sequence, h.last_sequence());
            if let Some(b) = batches
                .iter()
                .find(|b| h.producer_epoch == epoch && b.0 == first && b.1 == last)
            {
                return Outcome::Duplicate(b.2, b.3);
            }
            if h.producer_epoch < epoch {
                return Outcome::Fenced {
                    current: epoch,
                    got: h.producer_epoch,
                };
            }
            let expected = match batches.last() {
                _ if h.producer_epoch > epoch => 0,
                Some(&(_, i32::MAX, _, _)) | None => 0,
                Some(b) => b.1 + 1,
            };
            if first == expected {
                Outcome::Append
            } else {
                Outcome::OutOfOrder { expected, got: first }
            }
        }

        fn record(&mut self, h: &BatchHeader) {
            let first = if h.is_control() { -1 } else { h.base_sequence };
            let entry = (
                h.producer_epoch,
                first,
                h.last_sequence(),
                h.base_offset,
                h.last_offset(),
            );
            self.history.entry(h.producer_id).or_default().push(entry);
        }

        fn truncate_before(&mut self, log_start_offset: i64) {
            let gone: Vec<i64> = self
                .history
                .keys()
                .copied()
                .filter(|&id| {
                    self.current(id)
                        .unwrap()
                        .1
                        .last()
                        .is_none_or(|b| b.3 < log_start_offset)
                })
                .collect();
            for id in gone {
                self.history.remove(&id);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn table_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..80)) {
            let mut table = ProducerStateTable::default();
            let mut model = Model::default();
            let mut clients = vec![Client::default(); 3];
            let mut log_end = 0i64;
            for op in ops {
                let send = match op {
                    Op::Next { producer, count } => {
                        let c = &mut clients[producer];
                        let sent = (c.epoch, c.next_seq, count);
                        c.next_seq = increment(c.next_seq, count);
                        Some((producer, sent))
                    }
                    Op::Retry { producer, back } => {
                        let sent = &clients[producer].sent;
                        sent.len().checked_sub(back + 1).map(|i| (producer, sent[i]))
                    }
                    Op::Skip { producer, gap } => {
                        let c = &mut clients[producer];
                        c.next_seq = increment(c.next_seq, gap);
                        Some((producer, (c.epoch, c.next_seq, 1)))
                    }
                    Op::Bump { producer } => {
                        let c = &mut clients[producer];
                        c.epoch += 1;
                        c.next_seq = 0;
                        None
                    }
                    Op::Stale { producer } => {
                        let c = &clients[producer];
                        (c.epoch > 0).then_some((producer, (c.epoch - 1, c.next_seq, 1)))
                    }
                    Op::NearWrap { producer } => {
                        clients[producer].next_seq = i32::MAX - 1;
                        None
                    }
                    Op::Marker { producer } => {
                        let m = marker(producer as i64, clients[producer].epoch, log_end);
                        table.record(&m);
                        model.record(&m);
                        log_end += 1;
                        None
                    }
                    Op::Retention { per_255 } => {
                        let start = log_end * i64::from(per_255) / 255;
                        table.truncate_before(start);
                        model.truncate_before(start);
                        None
                    }
                };
                if let Some((producer, (epoch, seq, count))) = send {
                    clients[producer].sent.push((epoch, seq, count));
                    let incoming = batch(producer as i64, epoch, seq, count, -1);
                    let got = outcome(table.check(&incoming));
                    prop_assert_eq!(&got, &model.check(&incoming), "{:?}", incoming);
                    if got == Outcome::Append {
                        let stored = batch(producer as i64, epoch, seq, count, log_end);
                        table.record(&stored);
                        model.record(&stored);
                        log_end += i64::from(count);
                    }
                }
                prop_assert_eq!(table.len(), model.history.len());
            }
        }
    }

    fn increment(seq: i32, by: i32) -> i32 {
        crate::log::batch::increment_sequence(seq, by)
    }
}

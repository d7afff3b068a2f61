//! Transactional offset commits (TxnOffsetCommit), as Kafka keeps them: written into
//! `__consumer_offsets` as transactional records of the producer, held aside per producer until
//! the transaction's marker lands in the same partition, then applied (commit) or dropped
//! (abort). While held aside they make OffsetFetch with `require_stable` answer
//! UNSTABLE_OFFSET_COMMIT for their partitions.
//!
//! Memory bound: at most [`MAX_OPEN_OFFSETS_PER_PRODUCER`] offsets per producer; producers with
//! an open transaction are bounded by `transaction.max.transactional.ids`.

use std::collections::{BTreeMap, HashMap};

use super::OffsetValue;
use crate::error::{Error, Result};

/// Most offsets one producer may hold in open transactions in one partition of the offsets topic.
pub const MAX_OPEN_OFFSETS_PER_PRODUCER: usize = 100_000;

/// A committed offset with the log offset of the batch that wrote it, which orders a
/// transactional commit (applied when its marker lands) against plain commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Committed {
    /// The offset as committed.
    pub value: OffsetValue,
    /// Base offset of the batch holding the record.
    pub batch_offset: i64,
}

/// (group, topic, partition) -> the offset a transaction committed.
pub(super) type TxnOffsets = BTreeMap<(String, String, i32), Committed>;

/// The open transactions' offsets of one partition of `__consumer_offsets`, by producer id.
#[derive(Debug, Default)]
pub(super) struct OpenTxns {
    by_producer: HashMap<i64, TxnOffsets>,
}

impl OpenTxns {
    /// Refuses a write that would take a producer past [`MAX_OPEN_OFFSETS_PER_PRODUCER`].
    pub fn check_room(&self, producer_id: i64, adding: usize) -> Result<()> {
        let held = self.by_producer.get(&producer_id).map_or(0, BTreeMap::len);
        if held.saturating_add(adding) > MAX_OPEN_OFFSETS_PER_PRODUCER {
            return Err(Error::LimitExceeded {
                what: "offsets committed in one open transaction",
                config: "the offsets store's fixed bound",
                limit: MAX_OPEN_OFFSETS_PER_PRODUCER,
            });
        }
        Ok(())
    }

    /// Holds an offset of a producer's open transaction.
    pub fn add(&mut self, producer_id: i64, group: String, topic: String, partition: i32, committed: Committed) {
        self.by_producer
            .entry(producer_id)
            .or_default()
            .insert((group, topic, partition), committed);
    }

    /// Takes every offset a producer's transaction holds (its marker landed).
    pub fn take(&mut self, producer_id: i64) -> TxnOffsets {
        self.by_producer.remove(&producer_id).unwrap_or_default()
    }

    /// Whether an open transaction holds an offset for a group's partition.
    pub fn is_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        let key = (group.to_string(), topic.to_string(), partition);
        self.by_producer.values().any(|offsets| offsets.contains_key(&key))
    }

    /// Every (topic, partition) of a group that an open transaction holds.
    pub fn pending_of(&self, group: &str) -> Vec<(String, i32)> {
        let mut out: Vec<(String, i32)> = self
            .by_producer
            .values()
            .flat_map(|offsets| offsets.keys().filter(|(g, _, _)| g == group))
            .map(|(_, t, p)| (t.clone(), *p))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Offsets held, over every producer.
    pub fn len(&self) -> usize {
        self.by_producer.values().map(BTreeMap::len).sum()
    }
}

/// The base sequence of a producer's next batch in a partition whose producers are `known`
/// (producer id, epoch, last sequence): one past the last when the epoch is the same, else 0.
pub(super) fn next_sequence(known: Option<(i16, i32)>, epoch: i16) -> i32 {
    match known {
        Some((known_epoch, last)) if known_epoch == epoch && (0..i32::MAX).contains(&last) => last + 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(offset: i64, batch_offset: i64) -> Committed {
        Committed {
            value: OffsetValue {
                offset,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 0,
                expire_timestamp_ms: None,
            },
            batch_offset,
        }
    }

    #[test]
    fn open_offsets_are_held_per_producer_until_taken() {
        let mut open = OpenTxns::default();
        open.add(1, "g".into(), "t".into(), 0, committed(5, 10));
        open.add(2, "g".into(), "t".into(), 1, committed(6, 11));
        open.add(1, "h".into(), "t".into(), 0, committed(7, 12));
        assert!(open.is_pending("g", "t", 0));
        assert!(!open.is_pending("g", "t", 2));
        assert_eq!(open.pending_of("g"), vec![("t".to_string(), 0), ("t".to_string(), 1)]);
        assert_eq!(open.len(), 3);
        let taken = open.take(1);
        assert_eq!(taken.len(), 2);
        assert!(!open.is_pending("g", "t", 0));
        assert!(open.take(1).is_empty());
        assert!(open.check_room(2, MAX_OPEN_OFFSETS_PER_PRODUCER - 1).is_ok());
        assert!(open.check_room(2, MAX_OPEN_OFFSETS_PER_PRODUCER).is_err());
    }

    #[test]
    fn sequences_continue_within_an_epoch_and_restart_with_a_new_one() {
        assert_eq!(next_sequence(None, 0), 0);
        assert_eq!(next_sequence(Some((0, 4)), 0), 5);
        assert_eq!(next_sequence(Some((0, 4)), 1), 0);
        assert_eq!(next_sequence(Some((0, -1)), 0), 0);
        assert_eq!(next_sequence(Some((0, i32::MAX)), 0), 0);
    }
}

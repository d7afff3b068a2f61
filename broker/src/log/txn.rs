//! Transactions in the log (KIP-98): the transaction marker format, and the index of a partition's
//! open, not yet durable and aborted transactions from which the last stable offset and Fetch's
//! aborted transactions come.
//!
//! A transaction marker is a control batch (attributes control | transactional) of one record
//! whose key is `[version: i16 = 0][type: i16]` (0 = abort, 1 = commit) and whose value is
//! `[version: i16 = 0][coordinator_epoch: i32]`, as Kafka's `EndTransactionMarker` writes it.
//!
//! There is no per-segment `.txnindex`. Kafka needs one because it restores producer state from
//! snapshots and never reads old segments on start, and because it finds aborted transactions for
//! a fetch by segment. Brook's open already scans every batch header of every segment to rebuild
//! the idempotent producer state, so the same scan rebuilds the transaction state at the cost of
//! reading each marker's small record; the aborted list it yields lives in memory, one
//! [`AbortedTxn`] (24 bytes) per abort marker still in the log, bounded by the log itself. An
//! index file would be a second source of truth to keep consistent through truncation,
//! compaction and crashes for no gain.

use std::collections::{BTreeSet, VecDeque};

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader, EncodeOptions, NewRecord, ATTRIBUTES_AT, CONTROL_FLAG, CRC_AT};
use crate::error::{Error, Result};

/// The control record type of an abort marker.
pub const ABORT_TYPE: i16 = 0;
/// The control record type of a commit marker.
pub const COMMIT_TYPE: i16 = 1;
/// The largest control batch the log reads back (recovery, appends). A marker takes 78 bytes;
/// anything past this bound is not a marker Brook or Kafka writes.
pub const MAX_CONTROL_BATCH_BYTES: usize = 1024;

/// What a transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndMarker {
    /// True for a commit, false for an abort.
    pub commit: bool,
    /// The epoch of the transaction coordinator that wrote it.
    pub coordinator_epoch: i32,
}

/// Encodes the control batch that ends `producer_id`'s transaction, with the base offset 0 and
/// the partition leader epoch -1 (the append path sets both), base sequence -1, uncompressed.
pub fn encode_marker(producer_id: i64, producer_epoch: i16, marker: EndMarker, timestamp_ms: i64) -> Result<BytesMut> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&(if marker.commit { COMMIT_TYPE } else { ABORT_TYPE }).to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let record = NewRecord {
        timestamp_ms,
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        headers: Vec::new(),
    };
    let options = EncodeOptions {
        producer_id,
        producer_epoch,
        base_sequence: -1,
        transactional: true,
        ..EncodeOptions::default()
    };
    let mut out = batch::encode_batch(std::slice::from_ref(&record), &options)?;
    set_control(&mut out);
    Ok(out)
}

/// Sets the control bit of the complete, freshly encoded batch in `out` and recomputes its CRC.
fn set_control(out: &mut [u8]) {
    let attributes = i16::from_be_bytes([out[ATTRIBUTES_AT], out[ATTRIBUTES_AT + 1]]) | CONTROL_FLAG;
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
}

/// Reads the marker of the control batch at `bytes[0]` (the whole batch). None for a control
/// record of another type (Kafka also defines leader-change and snapshot records), which the
/// transaction state ignores. A batch that is not a readable marker is [`Error::CorruptBatch`].
pub fn parse_marker(bytes: &[u8]) -> Result<Option<EndMarker>> {
    let header = BatchHeader::parse(bytes)?;
    if !header.is_control() {
        return Err(Error::CorruptBatch(format!(
            "batch at offset {} is not a control batch",
            header.base_offset
        )));
    }
    if header.total_bytes() > MAX_CONTROL_BATCH_BYTES {
        return Err(Error::CorruptBatch(format!(
            "control batch at offset {} takes {} bytes, more than the {MAX_CONTROL_BATCH_BYTES} a marker may",
            header.base_offset,
            header.total_bytes()
        )));
    }
    let records = batch::decode_records(bytes, MAX_CONTROL_BATCH_BYTES)?;
    let corrupt =
        |reason: &str| Error::CorruptBatch(format!("control batch at offset {} {reason}", header.base_offset));
    let [record] = records.as_slice() else {
        return Err(corrupt("does not hold exactly one record"));
    };
    let key = record.key.as_deref().unwrap_or_default();
    if key.len() < 4 {
        return Err(corrupt("has a control record key shorter than 4 bytes"));
    }
    let kind = i16::from_be_bytes([key[2], key[3]]);
    let commit = match kind {
        ABORT_TYPE => false,
        COMMIT_TYPE => true,
        _ => return Ok(None),
    };
    let value = record.value.as_deref().unwrap_or_default();
    if value.len() < 6 {
        return Err(corrupt("has a transaction marker value shorter than 6 bytes"));
    }
    Ok(Some(EndMarker {
        commit,
        coordinator_epoch: i32::from_be_bytes([value[2], value[3], value[4], value[5]]),
    }))
}

/// A transaction that ended with an abort marker, as Fetch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer whose transaction aborted.
    pub producer_id: i64,
    /// The offset of the transaction's first batch in this partition.
    pub first_offset: i64,
    /// The offset of the abort marker.
    pub last_offset: i64,
}

/// The transactions of one partition, kept by the producer state table.
///
/// Every map here is bounded by the log: an open transaction is one per producer id with data in
/// the log, a completed one waits only until its marker is durable, and an aborted one is dropped
/// once its marker falls below the log start offset.
#[derive(Debug, Clone, Default)]
pub(super) struct TxnIndex {
    /// Open transactions as (first offset, producer id), ordered, so that the earliest comes first.
    ongoing: BTreeSet<(i64, i64)>,
    /// Transactions whose marker is written but not yet below the high watermark, as
    /// (first offset, marker offset) in marker order: they still hold the last stable offset, so
    /// that a crash that loses the marker never shows records of a transaction that is open again.
    unreplicated: VecDeque<(i64, i64)>,
    /// Aborted transactions in marker order (ascending `last_offset`).
    aborted: VecDeque<AbortedTxn>,
    /// The largest `last_offset - first_offset` in `aborted`, which bounds a lookup's scan.
    max_aborted_span: i64,
}

impl TxnIndex {
    /// Records that `producer_id` opened a transaction at `first_offset`.
    pub(super) fn begin(&mut self, producer_id: i64, first_offset: i64) {
        self.ongoing.insert((first_offset, producer_id));
    }

    /// Records the marker at `marker_offset` that ends the transaction `producer_id` opened at
    /// `first_offset`.
    pub(super) fn end(&mut self, producer_id: i64, first_offset: i64, marker_offset: i64, commit: bool) {
        self.ongoing.remove(&(first_offset, producer_id));
        self.unreplicated.push_back((first_offset, marker_offset));
        if !commit {
            self.aborted.push_back(AbortedTxn {
                producer_id,
                first_offset,
                last_offset: marker_offset,
            });
            self.max_aborted_span = self.max_aborted_span.max(marker_offset - first_offset);
        }
    }

    /// The first offset of the earliest transaction that is open or whose marker is not yet
    /// durable: the last stable offset, unless the high watermark is lower.
    pub(super) fn first_unstable_offset(&self) -> Option<i64> {
        let ongoing = self.ongoing.first().map(|&(first, _)| first);
        let unreplicated = self.unreplicated.iter().map(|&(first, _)| first).min();
        match (ongoing, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Forgets the completed transactions whose marker lies below the new high watermark.
    pub(super) fn on_high_watermark(&mut self, high_watermark: i64) {
        while self
            .unreplicated
            .front()
            .is_some_and(|&(_, marker)| marker < high_watermark)
        {
            self.unreplicated.pop_front();
        }
    }

    /// The aborted transactions overlapping `[from, upto)`: the marker at or after `from` and the
    /// first offset before `upto`, in marker order.
    pub(super) fn aborted_overlapping(&self, from: i64, upto: i64) -> Vec<AbortedTxn> {
        if from >= upto {
            return Vec::new();
        }
        // A transaction whose marker lies past `upto + max span` starts at or after `upto`.
        let stop = upto.saturating_add(self.max_aborted_span);
        let start = self.aborted.partition_point(|t| t.last_offset < from);
        self.aborted
            .range(start..)
            .take_while(|t| t.last_offset <= stop)
            .filter(|t| t.first_offset < upto)
            .copied()
            .collect()
    }

    /// Drops the aborted transactions whose marker lies below the log start offset.
    pub(super) fn truncate_before(&mut self, log_start_offset: i64) {
        while self.aborted.front().is_some_and(|t| t.last_offset < log_start_offset) {
            self.aborted.pop_front();
        }
    }

    /// Number of aborted transactions remembered.
    #[cfg(test)]
    pub(super) fn aborted_len(&self) -> usize {
        self.aborted.len()
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::RecordBatchDecoder;

    use super::*;

    #[test]
    fn markers_have_kafkas_layout_and_parse_back() {
        let marker = EndMarker {
            commit: true,
            coordinator_epoch: 0x0102_0304,
        };
        let bytes = encode_marker(77, 3, marker, 1_000).unwrap();
        assert_eq!(bytes.len(), 78, "Kafka's commit marker batch is 78 bytes");
        assert!(batch::crc_ok(&bytes));
        let header = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(
            header.attributes, 0x30,
            "control | transactional, uncompressed, CreateTime"
        );
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
                header.record_count
            ),
            (77, 3, -1, 1)
        );
        assert_eq!((header.base_timestamp, header.max_timestamp), (1_000, 1_000));
        let record = &batch::decode_records(&bytes, 1024).unwrap()[0];
        assert_eq!(record.key.as_deref(), Some(&[0u8, 0, 0, 1][..]));
        assert_eq!(record.value.as_deref(), Some(&[0u8, 0, 1, 2, 3, 4][..]));
        assert!(record.headers.is_empty());
        assert_eq!(parse_marker(&bytes).unwrap(), Some(marker));

        let abort = EndMarker {
            commit: false,
            coordinator_epoch: -1,
        };
        assert_eq!(
            parse_marker(&encode_marker(1, 0, abort, 5).unwrap()).unwrap(),
            Some(abort)
        );
    }

    #[test]
    fn the_kafka_protocol_crate_reads_markers_as_control_records() {
        let marker = EndMarker {
            commit: false,
            coordinator_epoch: 9,
        };
        let mut bytes = encode_marker(5, 1, marker, 42).unwrap().freeze();
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        let [record] = set.records.as_slice() else {
            panic!("one record expected, got {}", set.records.len())
        };
        assert!(record.control && record.transactional);
        assert_eq!((record.producer_id, record.producer_epoch, record.sequence), (5, 1, -1));
        assert_eq!(record.key.as_deref(), Some(&[0u8, 0, 0, 0][..]));
    }

    /// A control batch of producer 5 whose one record has `key` and `value`.
    fn control_batch(key: &'static [u8], value: &'static [u8]) -> BytesMut {
        let record = NewRecord {
            timestamp_ms: 1,
            key: Some(Bytes::from_static(key)),
            value: Some(Bytes::from_static(value)),
            headers: vec![],
        };
        let options = EncodeOptions {
            producer_id: 5,
            producer_epoch: 1,
            transactional: true,
            ..EncodeOptions::default()
        };
        let mut out = batch::encode_batch(&[record], &options).unwrap();
        set_control(&mut out);
        out
    }

    #[test]
    fn other_control_types_are_ignored_and_damage_is_refused() {
        let commit = control_batch(&[0, 0, 0, 1], &[0, 0, 0, 0, 0, 7]);
        assert!(batch::crc_ok(&commit));
        assert_eq!(
            parse_marker(&commit).unwrap(),
            Some(EndMarker {
                commit: true,
                coordinator_epoch: 7
            })
        );
        // Type 3 is a KRaft snapshot header record: not a transaction marker.
        assert_eq!(parse_marker(&control_batch(&[0, 0, 0, 3], &[])).unwrap(), None);
        assert!(parse_marker(&control_batch(&[0, 0], &[0, 0, 0, 0, 0, 7])).is_err());
        assert!(parse_marker(&control_batch(&[0, 0, 0, 0], &[0, 0])).is_err());
        let data = batch::encode_batch(
            &[NewRecord {
                timestamp_ms: 1,
                key: None,
                value: None,
                headers: vec![],
            }],
            &EncodeOptions::default(),
        )
        .unwrap();
        assert!(parse_marker(&data).is_err(), "a data batch is not a marker");
        let mut torn = commit.clone();
        torn.truncate(40);
        assert!(parse_marker(&torn).is_err());
    }

    #[test]
    fn the_earliest_open_or_undurable_transaction_is_unstable() {
        let mut index = TxnIndex::default();
        assert_eq!(index.first_unstable_offset(), None);
        index.begin(1, 10);
        index.begin(2, 5);
        assert_eq!(index.first_unstable_offset(), Some(5));
        // Producer 2 commits with a marker at 20: it holds the offset until the marker is durable.
        index.end(2, 5, 20, true);
        assert_eq!(index.first_unstable_offset(), Some(5));
        index.on_high_watermark(20);
        assert_eq!(
            index.first_unstable_offset(),
            Some(5),
            "the marker at 20 is not below 20"
        );
        index.on_high_watermark(21);
        assert_eq!(index.first_unstable_offset(), Some(10));
        index.end(1, 10, 30, false);
        index.on_high_watermark(31);
        assert_eq!(index.first_unstable_offset(), None);
        assert_eq!(index.aborted_len(), 1);
    }

    #[test]
    fn aborted_lookups_return_every_overlapping_transaction() {
        let mut index = TxnIndex::default();
        // A long transaction of producer 1 (5..=100) and short ones of producers 2 and 3.
        index.begin(1, 5);
        index.begin(2, 10);
        index.end(2, 10, 50, false);
        index.begin(3, 60);
        index.end(3, 60, 70, false);
        index.end(1, 5, 100, false);
        fn found(index: &TxnIndex, from: i64, upto: i64) -> Vec<i64> {
            index
                .aborted_overlapping(from, upto)
                .iter()
                .map(|t| t.producer_id)
                .collect()
        }
        assert_eq!(
            found(&index, 0, 20),
            vec![2, 1],
            "the long one is found past the short one's marker"
        );
        assert_eq!(found(&index, 51, 65), vec![3, 1]);
        assert_eq!(found(&index, 71, 200), vec![1]);
        assert_eq!(found(&index, 101, 200), Vec::<i64>::new());
        assert_eq!(found(&index, 0, 5), Vec::<i64>::new());
        assert_eq!(found(&index, 30, 30), Vec::<i64>::new());
        index.truncate_before(60);
        assert_eq!(found(&index, 0, 200), vec![3, 1]);
        index.truncate_before(101);
        assert_eq!(index.aborted_len(), 0);
    }
}

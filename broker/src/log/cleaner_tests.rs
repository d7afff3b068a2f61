//! Tests of log compaction: the latest value per key survives at its offset, tombstones live for
//! `delete.retention.ms`, young and active segments are untouched, producer state and reopening
//! survive, crashes between the steps of a swap leave a whole segment, and a model test.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use proptest::prelude::*;

use super::batch::{self, BatchHeader, Compression, NewRecord, Record};
use super::cleaner::{CrashPoint, CLEANED_SUFFIX};
use super::segment::{segment_path, LOG_SUFFIX};
use super::tests::{encode_with, opts, payload, NOW_MS};
use super::{AppendInfo, AppendSignal, CompactStats, LogConfig, PartitionLog};
use crate::error::Error;

/// A compacted log: small segments, acks that do not wait for fsync (so that the high watermark
/// follows the log end without a runtime), tombstones kept for one second.
pub(super) fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 1,
        flush_messages: 2,
        retention_ms: -1,
        cleanup_delete: false,
        cleanup_compact: true,
        delete_retention_ms: 1000,
        min_compaction_lag_ms: 0,
        ..LogConfig::default()
    }
}

pub(super) fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config, AppendSignal::default()).unwrap()
}

/// A record of `key` with `value` (None = tombstone) at `timestamp_ms`.
pub(super) fn rec(key: &str, value: Option<&str>, timestamp_ms: i64) -> NewRecord {
    NewRecord {
        timestamp_ms,
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        headers: vec![(Bytes::from_static(b"h"), Some(Bytes::copy_from_slice(key.as_bytes())))],
    }
}

/// Appends one batch with `compression`, optionally from an idempotent producer (id, epoch, sequence).
fn append_with(
    log: &PartitionLog,
    records: &[NewRecord],
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
) -> crate::error::Result<AppendInfo> {
    let (payload, headers) = payload(&[encode_with(records, producer, compression, false)]);
    log.append(payload, &headers, &opts(NOW_MS))
}

/// Appends one transactional batch of producer (id, epoch, base sequence).
pub(super) fn append_txn(log: &PartitionLog, records: &[NewRecord], producer: (i64, i16, i32)) -> AppendInfo {
    let (payload, headers) = payload(&[encode_with(records, Some(producer), Compression::None, true)]);
    log.append(payload, &headers, &opts(NOW_MS)).unwrap()
}

pub(super) fn append(log: &PartitionLog, records: &[NewRecord]) -> AppendInfo {
    append_with(log, records, Compression::None, None).unwrap()
}

/// Closes the active segment and starts a new one.
pub(super) fn roll(log: &PartitionLog) {
    let dir = log.dir().to_path_buf();
    log.lock().roll(&dir).unwrap();
}

/// Every stored batch from the log start, CRC-checked, with its decoded records.
pub(super) fn batches(log: &PartitionLog) -> Vec<(BatchHeader, Vec<Record>)> {
    let bytes = log.read(log.log_start_offset(), usize::MAX, i64::MAX).unwrap();
    batch::scan_headers(&bytes)
        .map(|item| {
            let (position, header) = item.unwrap();
            let stored = &bytes[position..position + header.total_bytes()];
            assert!(
                batch::crc_ok(stored),
                "batch at offset {} has a bad CRC",
                header.base_offset
            );
            (header, batch::decode_records(stored, usize::MAX).unwrap())
        })
        .collect()
}

/// Every record as (offset, key, value).
pub(super) fn contents(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
    let all: Vec<_> = batches(log)
        .into_iter()
        .flat_map(|(_, records)| records)
        .map(|r| (r.offset, text(r.key.as_ref().unwrap()), r.value.as_ref().map(text)))
        .collect();
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "offsets increase: {all:?}");
    all
}

pub(super) fn entry(offset: i64, key: &str, value: Option<&str>) -> (i64, String, Option<String>) {
    (offset, key.to_string(), value.map(str::to_string))
}

fn active_bytes(log: &PartitionLog) -> Vec<u8> {
    let base = log.lock().active().base_offset;
    std::fs::read(segment_path(log.dir(), base, LOG_SUFFIX)).unwrap()
}

/// Segments [a=1 b=1] [a=2 c=1] [b=2 a=3] and the active [c=2].
fn overwrites(log: &PartitionLog) {
    append(log, &[rec("a", Some("1"), NOW_MS), rec("b", Some("1"), NOW_MS)]);
    roll(log);
    append(log, &[rec("a", Some("2"), NOW_MS), rec("c", Some("1"), NOW_MS)]);
    roll(log);
    append(log, &[rec("b", Some("2"), NOW_MS), rec("a", Some("3"), NOW_MS)]);
    roll(log);
    append(log, &[rec("c", Some("2"), NOW_MS)]);
}

#[test]
fn compaction_keeps_the_latest_value_of_each_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    overwrites(&log);
    let active_before = active_bytes(&log);
    let size_before = log.size_bytes();

    let stats = log.compact(NOW_MS).unwrap();
    // c=1 stays: only the active segment supersedes it, and the map stops at the active segment.
    let expected = vec![
        entry(3, "c", Some("1")),
        entry(4, "b", Some("2")),
        entry(5, "a", Some("3")),
        entry(6, "c", Some("2")),
    ];
    assert_eq!(contents(&log), expected);
    assert_eq!(stats.records_removed, 3);
    assert_eq!(
        stats.segments_rewritten, 2,
        "the third segment holds only latest values"
    );
    assert_eq!(stats.cleaned_up_to_offset, 6);
    assert_eq!(size_before - log.size_bytes(), stats.bytes_before - stats.bytes_after);
    assert_eq!(active_bytes(&log), active_before, "the active segment is untouched");
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset(), log.segment_count()),
        (0, 7, 4)
    );
    let headers = batches(&log);
    let second = &headers[0].0;
    assert_eq!(
        (second.base_offset, second.last_offset_delta, second.record_count),
        (2, 1, 1)
    );
    assert_eq!(
        headers[0].1[0].headers[0].1.as_deref(),
        Some(&b"c"[..]),
        "record headers stay"
    );

    assert_eq!(
        log.compact(NOW_MS).unwrap(),
        CompactStats {
            cleaned_up_to_offset: 6,
            ..CompactStats::default()
        }
    );
    log.close().unwrap();
    let reopened = open(dir.path(), config());
    assert_eq!(contents(&reopened), expected, "a reopened log reads the same");
    assert_eq!(
        reopened.compact(NOW_MS).unwrap().records_removed,
        0,
        "a second pass finds nothing"
    );
    append(&reopened, &[rec("a", Some("4"), NOW_MS)]);
    roll(&reopened);
    let stats = reopened.compact(NOW_MS).unwrap();
    assert_eq!(stats.records_removed, 2, "a=3 and c=1 are superseded now");
    assert_eq!(
        contents(&reopened),
        vec![
            entry(4, "b", Some("2")),
            entry(6, "c", Some("2")),
            entry(7, "a", Some("4"))
        ]
    );
}

#[test]
fn tombstones_stay_until_delete_retention_after_their_segment_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    append(&log, &[rec("a", Some("1"), NOW_MS - 10)]);
    roll(&log);
    append(&log, &[rec("a", None, NOW_MS), rec("b", Some("1"), NOW_MS - 5)]);
    roll(&log);
    append(&log, &[rec("c", Some("1"), NOW_MS)]);

    log.compact(NOW_MS).unwrap();
    assert_eq!(
        contents(&log),
        vec![entry(1, "a", None), entry(2, "b", Some("1")), entry(3, "c", Some("1"))]
    );
    let stats = log.compact(NOW_MS + 999).unwrap();
    assert_eq!(stats.records_removed, 0, "the tombstone's segment is 999 ms old");
    assert_eq!(contents(&log).len(), 3);
    let stats = log.compact(NOW_MS + 1000).unwrap();
    assert_eq!((stats.records_removed, stats.segments_rewritten), (1, 1));
    assert_eq!(contents(&log), vec![entry(2, "b", Some("1")), entry(3, "c", Some("1"))]);
}

#[test]
fn min_compaction_lag_protects_young_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            min_compaction_lag_ms: 1000,
            ..config()
        },
    );
    append(&log, &[rec("a", Some("1"), NOW_MS)]);
    roll(&log);
    append(&log, &[rec("a", Some("2"), NOW_MS + 500)]);
    roll(&log);
    assert_eq!(log.compact(NOW_MS + 999).unwrap().records_removed, 0);
    let stats = log.compact(NOW_MS + 1000).unwrap();
    assert_eq!(
        stats.records_removed, 1,
        "the old segment is cleaned against the young one"
    );
    assert_eq!(stats.cleaned_up_to_offset, 1, "the young segment stays dirty");
    assert_eq!(contents(&log), vec![entry(1, "a", Some("2"))]);
}

#[test]
fn compressed_batches_are_recompressed_with_their_offsets_kept() {
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), config());
        let records = [
            rec("a", Some("1"), NOW_MS),
            rec("b", Some("1"), NOW_MS + 3),
            rec("a", Some("2"), NOW_MS + 1),
            rec("c", Some("1"), NOW_MS + 2),
        ];
        append_with(&log, &records, compression, None).unwrap();
        append_with(&log, &[rec("b", Some("2"), NOW_MS)], compression, None).unwrap();
        roll(&log);
        log.compact(NOW_MS + 10).unwrap();
        let kept = batches(&log);
        assert_eq!(kept.len(), 2);
        let (header, records) = &kept[0];
        assert_eq!(header.compression().unwrap(), compression);
        assert_eq!(
            (header.base_offset, header.last_offset_delta, header.record_count),
            (0, 3, 2)
        );
        assert_eq!((header.base_timestamp, header.max_timestamp), (NOW_MS + 1, NOW_MS + 2));
        let kept: Vec<(i64, i64)> = records.iter().map(|r| (r.offset, r.timestamp)).collect();
        assert_eq!(kept, vec![(2, NOW_MS + 1), (3, NOW_MS + 2)], "{compression:?}");
    }
}

#[test]
fn keyless_records_are_removed_as_kafka_does() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    let mut keyless = rec("x", Some("1"), NOW_MS);
    keyless.key = None;
    append(&log, &[keyless, rec("a", Some("1"), NOW_MS)]);
    roll(&log);
    assert_eq!(log.compact(NOW_MS).unwrap().records_removed, 1);
    assert_eq!(contents(&log), vec![entry(1, "a", Some("1"))]);
}

#[test]
fn the_batches_a_producer_is_remembered_by_stay_as_empty_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    let producer = |seq| Some((1, 0, seq));
    for seq in 0..7 {
        append_with(
            &log,
            &[rec("a", Some(&seq.to_string()), NOW_MS)],
            Compression::Zstd,
            producer(seq),
        )
        .unwrap();
        roll(&log);
    }
    append(&log, &[rec("b", Some("1"), NOW_MS)]);
    roll(&log);
    let stats = log.compact(NOW_MS).unwrap();
    assert_eq!(stats.records_removed, 6);
    let kept: Vec<(i64, i32, i32)> = batches(&log)
        .iter()
        .map(|(h, _)| (h.base_offset, h.base_sequence, h.record_count))
        .collect();
    // The first two batches are forgotten by the table (it remembers five) and disappear.
    assert_eq!(
        kept,
        vec![(2, 2, 0), (3, 3, 0), (4, 4, 0), (5, 5, 0), (6, 6, 1), (7, -1, 1)]
    );
    let empty = batches(&log).into_iter().filter(|(_, records)| records.is_empty());
    assert!(empty
        .into_iter()
        .all(|(h, _)| h.compression().unwrap() == Compression::None));

    drop(log); // A crash: recovery rebuilds producer state from the batch headers.
    let log = open(dir.path(), config());
    let retry = append_with(&log, &[rec("a", Some("3"), NOW_MS)], Compression::Zstd, producer(3)).unwrap();
    assert!(retry.duplicate, "a retried batch is still recognised");
    assert_eq!((retry.base_offset, retry.last_offset), (3, 3));
    let next = append_with(&log, &[rec("a", Some("7"), NOW_MS)], Compression::Zstd, producer(7)).unwrap();
    assert_eq!((next.base_offset, next.duplicate), (8, false));
    let gap = append_with(&log, &[rec("a", Some("9"), NOW_MS)], Compression::Zstd, producer(9));
    assert!(
        matches!(gap, Err(Error::OutOfOrderSequence { expected: 8, .. })),
        "{gap:?}"
    );
}

/// Segments [a=1] [a=2 b=1] and the active [c=1]; returns the bytes of the log.
fn crash_setup(log: &PartitionLog) -> bytes::Bytes {
    append(log, &[rec("a", Some("1"), NOW_MS)]);
    roll(log);
    append(log, &[rec("a", Some("2"), NOW_MS), rec("b", Some("1"), NOW_MS)]);
    roll(log);
    append(log, &[rec("c", Some("1"), NOW_MS)]);
    log.read(0, usize::MAX, i64::MAX).unwrap()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(CLEANED_SUFFIX))
        .collect()
}

#[test]
fn a_crash_before_the_rename_leaves_the_original_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    let before = crash_setup(&log);
    log.compact_until(NOW_MS, Some(CrashPoint::BeforeRename)).unwrap();
    assert_eq!(leftovers(dir.path()), vec![format!("{:020}.log{CLEANED_SUFFIX}", 0)]);
    drop(log);

    let log = open(dir.path(), config());
    assert!(leftovers(dir.path()).is_empty(), "recovery deletes the cleaned file");
    assert_eq!(log.read(0, usize::MAX, i64::MAX).unwrap(), before);
    assert_eq!(log.compact(NOW_MS).unwrap().records_removed, 1);
    assert_eq!(
        contents(&log),
        vec![
            entry(1, "a", Some("2")),
            entry(2, "b", Some("1")),
            entry(3, "c", Some("1"))
        ]
    );
}

#[test]
fn a_crash_after_the_rename_leaves_the_cleaned_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    let before = crash_setup(&log);
    log.compact_until(NOW_MS, Some(CrashPoint::AfterRename)).unwrap();
    assert_eq!(
        log.read(0, usize::MAX, i64::MAX).unwrap(),
        before,
        "the open segment still reads the old file"
    );
    drop(log);

    let log = open(dir.path(), config());
    assert!(leftovers(dir.path()).is_empty());
    assert_eq!(
        contents(&log),
        vec![
            entry(1, "a", Some("2")),
            entry(2, "b", Some("1")),
            entry(3, "c", Some("1"))
        ]
    );
}

#[test]
fn a_torn_cleaned_file_is_deleted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    let before = crash_setup(&log);
    drop(log);
    let cleaned = dir.path().join(format!("{:020}.log{CLEANED_SUFFIX}", 1));
    std::fs::write(&cleaned, b"half a batch").unwrap();
    let log = open(dir.path(), config());
    assert!(!cleaned.exists());
    assert_eq!(log.read(0, usize::MAX, i64::MAX).unwrap(), before);
}

#[test]
fn a_reader_holding_the_old_segment_reads_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    let before = crash_setup(&log);
    let view = log.lock().segments[0].view();
    log.compact(NOW_MS).unwrap();
    assert_eq!(log.lock().segments[0].size_bytes, 0, "the first segment is emptied");
    assert_eq!(
        view.read_at(0, view.size_bytes as usize).unwrap(),
        before[..view.size_bytes as usize]
    );
}

#[test]
fn retention_compacts_a_compact_topic_and_never_deletes_it_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            retention_ms: 1,
            retention_bytes: 1,
            ..config()
        },
    );
    overwrites(&log);
    assert_eq!(log.enforce_retention(NOW_MS + 1_000_000).unwrap(), 0);
    assert_eq!(contents(&log).len(), 4);
    assert_eq!(log.log_start_offset(), 0);
}

#[test]
fn a_small_dedupe_buffer_cleans_the_prefix_that_fits_pass_by_pass() {
    let dir = tempfile::tempdir().unwrap();
    let key_cost = 1 + super::cleaner::MAP_ENTRY_OVERHEAD_BYTES;
    let log = open(
        dir.path(),
        LogConfig {
            cleaner_dedupe_buffer_bytes: 3 * key_cost,
            ..config()
        },
    );
    for round in 0..3 {
        for key in ["a", "b", "c", "d", "e", "f"] {
            append(&log, &[rec(key, Some(&round.to_string()), NOW_MS)]);
            roll(&log);
        }
    }
    let first = log.compact(NOW_MS).unwrap();
    assert_eq!(first.cleaned_up_to_offset, 3, "three keys fit");
    let mut passes = 1;
    while log.compact(NOW_MS).unwrap().cleaned_up_to_offset < 18 {
        passes += 1;
        assert!(passes < 20, "compaction makes progress");
    }
    let latest: Vec<_> = contents(&log).into_iter().map(|(o, k, v)| (o, k, v.unwrap())).collect();
    let expected: Vec<_> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .enumerate()
        .map(|(i, k)| (12 + i as i64, k.to_string(), "2".to_string()))
        .collect();
    assert_eq!(latest, expected);
}

// The model test.

/// One step of a model run.
#[derive(Debug, Clone)]
enum Op {
    /// Appends one batch of (key, value) records; None is a tombstone.
    Append(Vec<(u8, Option<u8>)>),
    /// Closes the active segment.
    Roll,
    /// Advances the clock, then compacts.
    Compact { advance_ms: i64 },
    /// Closes cleanly (or drops, as a crash) and reopens.
    Reopen { crash: bool },
    /// Appends one transactional batch of a producer (0 or 1), opening its transaction if need be.
    TxnAppend(u8, Vec<(u8, Option<u8>)>),
    /// Ends the producer's open transaction, if it has one.
    EndTxn { producer: u8, commit: bool },
}

fn op() -> impl Strategy<Value = Op> {
    let record = (0u8..6, prop::option::weighted(0.8, any::<u8>()));
    prop_oneof![
        6 => prop::collection::vec(record.clone(), 1..4).prop_map(Op::Append),
        2 => Just(Op::Roll),
        3 => (0i64..1500).prop_map(|advance_ms| Op::Compact { advance_ms }),
        1 => any::<bool>().prop_map(|crash| Op::Reopen { crash }),
        3 => (0u8..2, prop::collection::vec(record, 1..4)).prop_map(|(p, records)| Op::TxnAppend(p, records)),
        2 => (0u8..2, any::<bool>()).prop_map(|(producer, commit)| Op::EndTxn { producer, commit }),
    ]
}

/// What became of a transactional record's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnStatus {
    Open,
    Committed,
    Aborted,
}

/// The transactions of a model run: each transactional record's transaction, and their fates.
#[derive(Debug, Default)]
struct Txns {
    /// Offset of a transactional record -> (producer, transaction number).
    record_txn: HashMap<i64, (u8, u32)>,
    /// (producer, transaction number) -> status.
    status: HashMap<(u8, u32), TxnStatus>,
    /// Per producer: the number of its current transaction, and whether it is open.
    current: HashMap<u8, (u32, bool)>,
    /// Per producer: the sequence of its next batch.
    next_sequence: HashMap<u8, i32>,
}

impl Txns {
    /// The fate of the record at `offset`; None for a record outside transactions.
    fn of(&self, offset: i64) -> Option<TxnStatus> {
        self.record_txn.get(&offset).map(|txn| self.status[txn])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelRecord {
    offset: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    timestamp_ms: i64,
}

/// The records of one `Append` or `TxnAppend` step, written at `now_ms`.
fn model_batch(records: &[(u8, Option<u8>)], now_ms: i64) -> Vec<NewRecord> {
    records
        .iter()
        .map(|(k, v)| NewRecord {
            timestamp_ms: now_ms,
            key: Some(Bytes::from(vec![b'k', *k])),
            value: v.map(|v| Bytes::from(vec![v; 1 + v as usize % 40])),
            headers: Vec::new(),
        })
        .collect()
}

/// What the model remembers of `records`, appended from `base_offset`.
fn model_records(records: Vec<NewRecord>, base_offset: i64) -> impl Iterator<Item = ModelRecord> {
    records.into_iter().enumerate().map(move |(i, r)| ModelRecord {
        offset: base_offset + i as i64,
        key: r.key.unwrap().to_vec(),
        value: r.value.map(|v| v.to_vec()),
        timestamp_ms: r.timestamp_ms,
    })
}

fn read_model(log: &PartitionLog) -> Vec<ModelRecord> {
    batches(log)
        .into_iter()
        .filter(|(h, _)| !h.is_control())
        .flat_map(|(_, records)| records)
        .map(|r| ModelRecord {
            offset: r.offset,
            key: r.key.unwrap().to_vec(),
            value: r.value.map(|v| v.to_vec()),
            timestamp_ms: r.timestamp,
        })
        .collect()
}

/// Checks a compacted log against every record ever appended, at clock `now_ms`: records of
/// aborted transactions never count and are gone below the clean offset; records of open
/// transactions always stay.
fn check(
    log: &PartitionLog,
    appended: &[ModelRecord],
    txns: &Txns,
    removal_bound: i64,
    config: &LogConfig,
    now_ms: i64,
) {
    let read = read_model(log);
    assert!(read.windows(2).all(|w| w[0].offset < w[1].offset), "offsets increase");
    let by_offset: HashMap<i64, &ModelRecord> = appended.iter().map(|r| (r.offset, r)).collect();
    for record in &read {
        assert_eq!(
            Some(&record),
            by_offset.get(&record.offset),
            "a record keeps its offset and contents"
        );
    }
    let present: HashMap<i64, &ModelRecord> = read.iter().map(|r| (r.offset, r)).collect();
    let mut latest: HashMap<&[u8], &ModelRecord> = HashMap::new();
    // Only plain and committed records supersede others.
    for record in appended
        .iter()
        .filter(|r| matches!(txns.of(r.offset), None | Some(TxnStatus::Committed)))
    {
        latest.insert(&record.key, record);
    }
    for record in appended {
        match txns.of(record.offset) {
            Some(TxnStatus::Open) => {
                assert!(present.contains_key(&record.offset), "open {record:?} vanished");
                continue;
            }
            Some(TxnStatus::Aborted) => {
                assert!(
                    record.offset >= removal_bound || !present.contains_key(&record.offset),
                    "aborted {record:?} survived below the clean offset {removal_bound}"
                );
                continue;
            }
            _ => {}
        }
        let is_latest = latest[record.key.as_slice()].offset == record.offset;
        let young = record.timestamp_ms > now_ms - config.min_compaction_lag_ms;
        let tombstone_alive = record.timestamp_ms.saturating_add(config.delete_retention_ms) > now_ms;
        let must_stay =
            record.offset >= removal_bound || young || (is_latest && (record.value.is_some() || tombstone_alive));
        if must_stay {
            assert!(present.contains_key(&record.offset), "record {record:?} vanished");
        }
    }
    let mut seen = HashMap::new();
    for record in read.iter().filter(|r| r.offset < removal_bound) {
        if let Some(earlier) = seen.insert(&record.key, record.offset) {
            panic!(
                "key {:?} at {earlier} and {} below the clean offset {removal_bound}",
                record.key, record.offset
            );
        }
    }
}

fn model_config(delete_retention_ms: i64, min_compaction_lag_ms: i64) -> LogConfig {
    LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 64,
        delete_retention_ms,
        min_compaction_lag_ms,
        ..config()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn compaction_matches_a_model(
        ops in prop::collection::vec(op(), 1..60),
        delete_retention_ms in prop::sample::select(vec![0i64, 700, 1_000_000]),
        min_compaction_lag_ms in prop::sample::select(vec![0i64, 900]),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = model_config(delete_retention_ms, min_compaction_lag_ms);
        let mut log = open(dir.path(), config.clone());
        let mut appended: Vec<ModelRecord> = Vec::new();
        let mut txns = Txns::default();
        let mut now_ms = NOW_MS;
        let mut removal_bound = 0;
        for op in ops {
            match op {
                Op::Append(records) => {
                    now_ms += 1;
                    let new = model_batch(&records, now_ms);
                    let info = append(&log, &new);
                    appended.extend(model_records(new, info.base_offset));
                }
                Op::Roll => {
                    if !log.lock().active().is_empty() {
                        roll(&log);
                    }
                }
                Op::Compact { advance_ms } => {
                    now_ms += advance_ms;
                    let active_before = active_bytes(&log);
                    let stats = log.compact(now_ms).unwrap();
                    prop_assert_eq!(active_bytes(&log), active_before, "the active segment is untouched");
                    removal_bound = removal_bound.max(stats.cleaned_up_to_offset);
                    let last_stable_offset = log.last_stable_offset();
                    prop_assert!(removal_bound <= last_stable_offset, "nothing past the last stable offset is clean");
                    check(&log, &appended, &txns, removal_bound, &config, now_ms);
                }
                Op::TxnAppend(producer, records) => {
                    now_ms += 1;
                    let new = model_batch(&records, now_ms);
                    let sequence = txns.next_sequence.entry(producer).or_insert(0);
                    let info = append_txn(&log, &new, (i64::from(producer), 0, *sequence));
                    *sequence += new.len() as i32;
                    let current = txns.current.entry(producer).or_insert((0, false));
                    if !current.1 {
                        *current = (current.0 + 1, true);
                        txns.status.insert((producer, current.0), TxnStatus::Open);
                    }
                    let txn = (producer, current.0);
                    for record in model_records(new, info.base_offset) {
                        txns.record_txn.insert(record.offset, txn);
                        appended.push(record);
                    }
                }
                Op::EndTxn { producer, commit } => {
                    if let Some((number, open)) = txns.current.get_mut(&producer).filter(|c| c.1) {
                        *open = false;
                        let status = if commit { TxnStatus::Committed } else { TxnStatus::Aborted };
                        txns.status.insert((producer, *number), status);
                        log.append_marker_at(i64::from(producer), 0, commit, 0, now_ms).unwrap();
                    }
                }
                Op::Reopen { crash } => {
                    let before = log.read(log.log_start_offset(), usize::MAX, i64::MAX).unwrap();
                    if !crash {
                        log.close().unwrap();
                    }
                    drop(log);
                    log = open(dir.path(), config.clone());
                    let after = log.read(log.log_start_offset(), usize::MAX, i64::MAX).unwrap();
                    prop_assert_eq!(after, before, "reopening reads the same");
                }
            }
        }
    }
}

//! Unit tests of the partition log: appends, reads, rolls, timestamps, deletion, retention,
//! idempotence, durability and recovery, plus helpers shared with the model tests.

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader, Compression, EncodeOptions, NewRecord};
use super::checkpoint::CLEAN_SHUTDOWN_FILE;
use super::segment::{segment_path, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
use super::{AppendInfo, AppendOptions, AppendSignal, LogConfig, PartitionLog};
use crate::error::Error;

/// A fixed broker clock for tests.
pub(super) const NOW_MS: i64 = 1_700_000_000_000;
/// The leader epoch tests append with.
pub(super) const EPOCH: i32 = 7;

/// Records with consecutive timestamps from `first_ms` and values of `value_bytes` bytes.
pub(super) fn records(count: usize, first_ms: i64, value_bytes: usize) -> Vec<NewRecord> {
    (0..count)
        .map(|i| NewRecord {
            timestamp_ms: first_ms + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; value_bytes])),
            headers: Vec::new(),
        })
        .collect()
}

/// One client batch of `records`, optionally from an idempotent producer (id, epoch, base sequence).
pub(super) fn encode(records: &[NewRecord], producer: Option<(i64, i16, i32)>) -> BytesMut {
    encode_with(records, producer, Compression::None, false)
}

/// [`encode`] with `compression`, and transactional if asked (which needs a producer).
pub(super) fn encode_with(
    records: &[NewRecord],
    producer: Option<(i64, i16, i32)>,
    compression: Compression,
    transactional: bool,
) -> BytesMut {
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
    let options = EncodeOptions {
        compression,
        producer_id,
        producer_epoch,
        base_sequence,
        transactional,
        ..EncodeOptions::default()
    };
    batch::encode_batch(records, &options).expect("encodable batch")
}

/// A produce payload of `batches` and its validated headers.
pub(super) fn payload(batches: &[BytesMut]) -> (BytesMut, Vec<BatchHeader>) {
    let mut payload = BytesMut::new();
    for b in batches {
        payload.extend_from_slice(b);
    }
    let headers = batch::validate_batches(&payload).expect("valid payload");
    (payload, headers)
}

/// Append options at the test clock.
pub(super) fn opts(now_ms: i64) -> AppendOptions {
    AppendOptions {
        now_ms,
        log_append_time: false,
        leader_epoch: EPOCH,
    }
}

/// The bytes a batch is stored as once given `base_offset` and the test epoch.
pub(super) fn stored(batch: &[u8], base_offset: i64) -> Vec<u8> {
    let mut bytes = batch.to_vec();
    batch::set_base_offset(&mut bytes, base_offset);
    batch::set_partition_leader_epoch(&mut bytes, EPOCH);
    bytes
}

/// The size of the batch `append` writes for `count` records of `value_bytes`.
fn batch_bytes(count: usize, value_bytes: usize) -> u64 {
    encode(&records(count, NOW_MS, value_bytes), None).len() as u64
}

fn config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 1,
        ..LogConfig::default()
    }
}

fn open(dir: &std::path::Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config, AppendSignal::default()).unwrap()
}

/// Appends one batch of `count` records and returns the append info and the stored bytes.
fn append(log: &PartitionLog, count: usize, first_ms: i64, value_bytes: usize) -> (AppendInfo, Vec<u8>) {
    let batch = encode(&records(count, first_ms, value_bytes), None);
    let (payload, headers) = payload(std::slice::from_ref(&batch));
    let info = log.append(payload, &headers, &opts(NOW_MS)).unwrap();
    (info, stored(&batch, info.base_offset))
}

#[test]
fn appends_assign_consecutive_offsets_and_reads_return_stored_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            flush_messages: 2,
            ..config()
        },
    );
    let (first, first_bytes) = append(&log, 3, NOW_MS, 10);
    let (second, second_bytes) = append(&log, 2, NOW_MS, 10);
    assert_eq!((first.base_offset, first.last_offset, first.duplicate), (0, 2, false));
    assert_eq!((second.base_offset, second.last_offset), (3, 4));
    assert_eq!(first.log_append_time_ms, -1);
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(
        log.high_watermark(),
        5,
        "acks do not wait for fsync, so the end is visible"
    );
    let all = log.read(0, usize::MAX, i64::MAX).unwrap();
    assert_eq!(all.as_ref(), [first_bytes.clone(), second_bytes.clone()].concat());
    assert!(batch::crc_ok(&first_bytes));
    assert!(
        log.read(5, 1000, i64::MAX).unwrap().is_empty(),
        "reading at the end is empty"
    );
    assert!(log.read(0, 1000, 0).unwrap().is_empty(), "nothing below limit offset 0");
    assert_eq!(
        log.read(0, usize::MAX, 3).unwrap().as_ref(),
        &first_bytes[..],
        "the limit cuts at a batch"
    );
}

#[test]
fn a_payload_of_several_batches_is_appended_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            flush_messages: 2,
            ..config()
        },
    );
    let batches = [
        encode(&records(2, NOW_MS, 5), None),
        encode(&records(3, NOW_MS, 5), None),
    ];
    let (p, headers) = payload(&batches);
    let info = log.append(p, &headers, &opts(NOW_MS)).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 4));
    let expected = [stored(&batches[0], 0), stored(&batches[1], 2)].concat();
    assert_eq!(log.read(0, usize::MAX, i64::MAX).unwrap().as_ref(), &expected[..]);
}

#[test]
fn reading_at_a_middle_offset_returns_the_whole_batch_and_at_least_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            flush_messages: 2,
            ..config()
        },
    );
    let (_, first) = append(&log, 5, NOW_MS, 100);
    let (_, second) = append(&log, 5, NOW_MS, 100);
    assert_eq!(
        log.read(3, usize::MAX, i64::MAX).unwrap().as_ref(),
        [first.clone(), second.clone()].concat()
    );
    assert_eq!(
        log.read(7, 0, i64::MAX).unwrap().as_ref(),
        &second[..],
        "one batch even past max_bytes"
    );
    assert_eq!(
        log.read(0, first.len() + 1, i64::MAX).unwrap().as_ref(),
        &first[..],
        "max_bytes stops the second"
    );
}

#[test]
fn reads_outside_the_log_are_offset_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            flush_messages: 2,
            ..config()
        },
    );
    append(&log, 4, NOW_MS, 10);
    append(&log, 4, NOW_MS, 10);
    assert!(matches!(
        log.read(9, 100, i64::MAX),
        Err(Error::OffsetOutOfRange {
            offset: 9,
            log_end_offset: 8,
            ..
        })
    ));
    assert!(matches!(
        log.read(-1, 100, i64::MAX),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.delete_records_before(5).unwrap(), 5);
    assert!(matches!(
        log.read(4, 100, i64::MAX),
        Err(Error::OffsetOutOfRange {
            log_start_offset: 5,
            ..
        })
    ));
    assert!(
        !log.read(5, 100, i64::MAX).unwrap().is_empty(),
        "the batch holding the start offset is served"
    );
}

#[test]
fn segments_roll_by_size_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 1000,
            flush_messages: 2,
            ..config()
        },
    );
    let mut expected = Vec::new();
    for _ in 0..10 {
        let (info, bytes) = append(&log, 3, NOW_MS, 100);
        expected.push((info, bytes));
    }
    let batch_bytes = expected[0].1.len() as u64;
    assert!(
        batch_bytes * 2 <= 1000 && batch_bytes * 3 > 1000,
        "two batches fit a segment"
    );
    assert_eq!(log.segment_count(), 5);
    for (info, _) in expected.iter().step_by(2) {
        let path = segment_path(dir.path(), info.base_offset, LOG_SUFFIX);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            batch_bytes * 2,
            "{}",
            path.display()
        );
        assert!(segment_path(dir.path(), info.base_offset, INDEX_SUFFIX).exists());
        assert!(segment_path(dir.path(), info.base_offset, TIME_INDEX_SUFFIX).exists());
    }
    let all: Vec<u8> = expected.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(log.read(0, usize::MAX, i64::MAX).unwrap().as_ref(), &all[..]);
    // From the middle of segment 1's second batch, across three segments.
    let from = expected[3].0.base_offset + 1;
    let want: Vec<u8> = expected[3..6].iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(log.read(from, want.len(), i64::MAX).unwrap().as_ref(), &want[..]);
    assert_eq!(log.size_bytes(), batch_bytes * 10);
}

#[test]
fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            segment_ms: 1000,
            flush_messages: 2,
            ..config()
        },
    );
    let batch = encode(&records(1, NOW_MS, 1), None);
    for now_ms in [NOW_MS, NOW_MS + 1000, NOW_MS + 1001, NOW_MS + 1500] {
        let (p, h) = payload(std::slice::from_ref(&batch));
        log.append(p, &h, &opts(now_ms)).unwrap();
    }
    assert_eq!(log.segment_count(), 2);
    log.enforce_retention(NOW_MS + 2002).unwrap();
    assert_eq!(log.segment_count(), 3, "the retention pass rolls an old active segment");
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 400,
            flush_messages: 2,
            ..config()
        },
    );
    // Offsets 0..3 at 100,110,120; 3..6 at 130,140,150, and so on, across several segments.
    for b in 0..6i64 {
        let recs: Vec<NewRecord> = (0..3i64)
            .map(|i| NewRecord {
                timestamp_ms: 100 + 30 * b + 10 * i,
                ..records(1, 0, 20).remove(0)
            })
            .collect();
        let (p, h) = payload(&[encode(&recs, None)]);
        log.append(p, &h, &opts(NOW_MS)).unwrap();
    }
    assert!(log.segment_count() > 2);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 100)));
    assert_eq!(log.offset_for_timestamp(100).unwrap(), Some((0, 100)));
    assert_eq!(log.offset_for_timestamp(115).unwrap(), Some((2, 120)));
    assert_eq!(log.offset_for_timestamp(121).unwrap(), Some((3, 130)));
    assert_eq!(log.offset_for_timestamp(265).unwrap(), Some((17, 270)));
    assert_eq!(log.offset_for_timestamp(271).unwrap(), None);
    assert_eq!(log.max_timestamp().unwrap(), Some((17, 270)));
    log.delete_records_before(4).unwrap();
    assert_eq!(
        log.offset_for_timestamp(0).unwrap(),
        Some((4, 140)),
        "records below the start are skipped"
    );
}

#[test]
fn max_timestamp_is_the_first_record_with_the_largest_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            flush_messages: 2,
            ..config()
        },
    );
    assert_eq!(log.max_timestamp().unwrap(), None);
    for ts in [[5, 9, 9], [3, 9, 1]] {
        let recs: Vec<NewRecord> = ts
            .iter()
            .map(|&t| NewRecord {
                timestamp_ms: t,
                ..records(1, 0, 3).remove(0)
            })
            .collect();
        let (p, h) = payload(&[encode(&recs, None)]);
        log.append(p, &h, &opts(NOW_MS)).unwrap();
    }
    assert_eq!(log.max_timestamp().unwrap(), Some((1, 9)));
}

#[test]
fn log_append_time_stamps_batches_with_the_broker_clock() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            flush_messages: 2,
            ..config()
        },
    );
    let (p, h) = payload(&[encode(&records(3, 5, 3), None)]);
    let info = log
        .append(
            p,
            &h,
            &AppendOptions {
                log_append_time: true,
                ..opts(NOW_MS)
            },
        )
        .unwrap();
    assert_eq!(info.log_append_time_ms, NOW_MS);
    let stored = log.read(0, usize::MAX, i64::MAX).unwrap();
    let header = BatchHeader::parse(&stored).unwrap();
    assert!(header.is_log_append_time() && batch::crc_ok(&stored));
    assert_eq!(header.max_timestamp, NOW_MS);
    assert_eq!(log.offset_for_timestamp(6).unwrap(), Some((0, NOW_MS)));
}

#[test]
fn delete_records_before_persists_over_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 300,
        flush_messages: 2,
        ..config()
    };
    let log = open(dir.path(), config.clone());
    for _ in 0..6 {
        append(&log, 2, NOW_MS, 50);
    }
    let segments_before = log.segment_count();
    assert!(matches!(
        log.delete_records_before(13),
        Err(Error::OffsetOutOfRange { offset: 13, .. })
    ));
    assert_eq!(log.delete_records_before(5).unwrap(), 5);
    assert!(
        log.segment_count() < segments_before,
        "segments wholly below the start are deleted"
    );
    assert_eq!(
        log.delete_records_before(3).unwrap(),
        5,
        "the start offset never moves back"
    );
    drop(log);
    let log = open(dir.path(), config.clone());
    assert_eq!(log.log_start_offset(), 5, "kept after a crash");
    assert_eq!(log.delete_records_before(-1).unwrap(), 12, "-1 is the high watermark");
    log.close().unwrap();
    let log = open(dir.path(), config);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (12, 12));
    assert_eq!(log.read(12, 100, i64::MAX).unwrap().len(), 0);
    let (info, _) = append(&log, 1, NOW_MS, 1);
    assert_eq!(info.base_offset, 12);
}

#[test]
fn retention_by_size_deletes_the_oldest_segments_but_never_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let segment_bytes = batch_bytes(2, 50) * 2;
    let log = open(
        dir.path(),
        LogConfig {
            segment_bytes,
            flush_messages: 2,
            ..config()
        },
    );
    for _ in 0..8 {
        append(&log, 2, NOW_MS, 50);
    }
    assert_eq!(log.segment_count(), 4);
    // Kafka's rule: drop the oldest segment while what is left stays at least retention.bytes.
    log.set_config(LogConfig {
        retention_bytes: (segment_bytes * 2 + 1) as i64,
        ..log.config()
    });
    assert_eq!(log.enforce_retention(NOW_MS).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 4);
    assert_eq!(log.size_bytes(), segment_bytes * 3);
    log.set_config(LogConfig {
        retention_bytes: 0,
        ..log.config()
    });
    assert_eq!(log.enforce_retention(NOW_MS).unwrap(), 2);
    assert_eq!((log.segment_count(), log.log_start_offset()), (1, 12));
    assert!(!segment_path(dir.path(), 0, LOG_SUFFIX).exists());
    assert_eq!(log.read(12, usize::MAX, i64::MAX).unwrap().len() as u64, segment_bytes);
}

#[test]
fn retention_by_time_uses_each_segments_largest_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let segment_bytes = batch_bytes(2, 50) * 2;
    let log = open(
        dir.path(),
        LogConfig {
            segment_bytes,
            retention_ms: 1000,
            flush_messages: 2,
            ..config()
        },
    );
    // Segments hold timestamps up to 1001, 3001, 5001, 7001.
    for i in 0..8 {
        append(&log, 2, i * 1000, 50);
    }
    assert_eq!(log.segment_count(), 4);
    assert_eq!(
        log.enforce_retention(2001).unwrap(),
        0,
        "1001 is exactly retention.ms old"
    );
    assert_eq!(log.enforce_retention(4002).unwrap(), 2);
    assert_eq!(log.log_start_offset(), 8);
    assert_eq!(log.enforce_retention(100_000).unwrap(), 1, "the active segment stays");
    assert_eq!(log.segment_count(), 1);
}

#[test]
fn an_idempotent_duplicate_returns_the_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            flush_messages: 2,
            ..config()
        },
    );
    append(&log, 2, NOW_MS, 5);
    let first = encode(&records(3, NOW_MS, 5), Some((42, 0, 0)));
    let (p, h) = payload(std::slice::from_ref(&first));
    let original = log.append(p.clone(), &h, &opts(NOW_MS)).unwrap();
    assert_eq!((original.base_offset, original.last_offset), (2, 4));
    let size = log.size_bytes();
    let again = log.append(p.clone(), &h, &opts(NOW_MS)).unwrap();
    assert_eq!((again.base_offset, again.last_offset, again.duplicate), (2, 4, true));
    assert_eq!(log.size_bytes(), size, "nothing written");
    let gap = encode(&records(1, NOW_MS, 5), Some((42, 0, 7)));
    let (p2, h2) = payload(&[gap]);
    assert!(matches!(
        log.append(p2, &h2, &opts(NOW_MS)),
        Err(Error::OutOfOrderSequence { .. })
    ));
    drop(log);
    let log = open(
        dir.path(),
        LogConfig {
            flush_messages: 2,
            ..config()
        },
    );
    let after_crash = log.append(p, &h, &opts(NOW_MS)).unwrap();
    assert!(after_crash.duplicate, "producer state is rebuilt on recovery");
    assert_eq!(after_crash.base_offset, 2);
}

#[tokio::test]
async fn appends_become_durable_and_visible_without_a_waiter() {
    // acks=0 produces never call wait_durable: the append itself must lead to an fsync.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    let mut signal = log.shared.signal.subscribe();
    for _ in 0..50 {
        append(&log, 3, NOW_MS, 5);
    }
    let visible = async {
        while log.high_watermark() < 150 {
            signal.changed().await.unwrap();
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), visible)
        .await
        .expect("the high watermark reaches the log end without anyone waiting");
    assert_eq!(log.log_end_offset(), 150);
}

#[tokio::test]
async fn acks_wait_for_fsync_and_concurrent_waiters_share_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(open(dir.path(), config()));
    assert!(log.flush_before_ack());
    let mut signal = log.shared.signal.subscribe();
    signal.borrow_and_update();
    let (a, _) = append(&log, 2, NOW_MS, 5);
    let (b, _) = append(&log, 2, NOW_MS, 5);
    // Appends start a group commit by themselves, so the high watermark may already have moved,
    // but only to the end of a batch that a completed fsync covered.
    assert!(
        [0, 2, 4].contains(&log.high_watermark()),
        "high watermark {}",
        log.high_watermark()
    );
    let waiters: Vec<_> = [a.last_offset + 1, b.last_offset + 1]
        .into_iter()
        .map(|end| {
            let log = std::sync::Arc::clone(&log);
            tokio::spawn(async move { log.wait_durable(end).await })
        })
        .collect();
    for waiter in waiters {
        waiter.await.unwrap().unwrap();
    }
    assert_eq!(log.high_watermark(), 4);
    assert!(signal.has_changed().unwrap(), "fetches were woken");
    log.wait_durable(4).await.unwrap();
    log.wait_durable(1000).await.unwrap();
}

#[test]
fn a_torn_tail_is_truncated_and_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: batch_bytes(3, 60) * 3,
        flush_messages: 2,
        ..config()
    };
    let log = open(dir.path(), config.clone());
    let mut stored = Vec::new();
    for _ in 0..7 {
        stored.push(append(&log, 3, NOW_MS, 60));
    }
    assert_eq!(log.segment_count(), 3);
    let active = stored.last().unwrap().0.base_offset;
    let before_crash = log.read(0, usize::MAX, i64::MAX).unwrap();
    drop(log);
    let index = segment_path(dir.path(), 0, INDEX_SUFFIX);
    let index_bytes = std::fs::read(&index).unwrap();
    std::fs::remove_file(&index).unwrap();
    let path = segment_path(dir.path(), active, LOG_SUFFIX);
    let len = std::fs::metadata(&path).unwrap().len();
    let last_len = stored.last().unwrap().1.len() as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let log = open(dir.path(), config);
    assert_eq!(log.log_end_offset(), stored.last().unwrap().0.base_offset);
    let after = log.read(0, usize::MAX, i64::MAX).unwrap();
    assert_eq!(after.as_ref(), &before_crash[..before_crash.len() - last_len as usize]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len - last_len);
    assert_eq!(
        std::fs::read(&index).unwrap(),
        index_bytes,
        "the index is rebuilt identically"
    );
    assert!(!index_bytes.is_empty());
    let (info, _) = append(&log, 1, NOW_MS, 1);
    assert_eq!(
        info.base_offset,
        stored.last().unwrap().0.base_offset,
        "the lost offsets were never acked durable"
    );
}

#[test]
fn corruption_before_the_last_segment_truncates_there_and_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: batch_bytes(3, 60) * 3,
        flush_messages: 2,
        ..config()
    };
    let log = open(dir.path(), config.clone());
    let mut stored = Vec::new();
    for _ in 0..7 {
        stored.push(append(&log, 3, NOW_MS, 60));
    }
    drop(log);
    std::fs::remove_file(dir.path().join(super::checkpoint::RECOVERY_POINT_FILE)).unwrap();
    // Flip a byte inside the second batch of the first segment.
    let first = segment_path(dir.path(), 0, LOG_SUFFIX);
    let mut bytes = std::fs::read(&first).unwrap();
    let at = stored[0].1.len() + 40;
    bytes[at] ^= 0xff;
    std::fs::write(&first, &bytes).unwrap();
    let log = open(dir.path(), config);
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.read(0, usize::MAX, i64::MAX).unwrap().as_ref(), &stored[0].1[..]);
    assert!(!segment_path(dir.path(), stored[3].0.base_offset, LOG_SUFFIX).exists());
}

#[test]
fn close_writes_a_clean_marker_that_open_consumes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    append(&log, 2, NOW_MS, 5);
    log.close().unwrap();
    let no_headers = log.append(payload(&[encode(&records(1, 0, 1), None)]).0, &[], &opts(0));
    assert!(
        matches!(no_headers, Err(Error::CorruptBatch(_))),
        "headers must cover the payload"
    );
    let (p, h) = payload(&[encode(&records(1, 0, 1), None)]);
    assert!(matches!(log.append(p, &h, &opts(0)), Err(Error::Shutdown(_))));
    assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    assert_eq!(log.high_watermark(), 2);
    drop(log);
    std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
    std::fs::write(dir.path().join("00000000000000000099.index"), b"orphan").unwrap();
    let log = open(dir.path(), config());
    assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    assert!(!dir.path().join("00000000000000000099.index").exists());
    assert_eq!((log.log_end_offset(), log.high_watermark()), (2, 2));
}

#[test]
fn a_start_offset_beyond_a_lost_tail_starts_the_log_afresh_there() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: 2,
        ..config()
    };
    let log = open(dir.path(), config.clone());
    append(&log, 5, NOW_MS, 5);
    append(&log, 5, NOW_MS, 5);
    log.delete_records_before(8).unwrap();
    drop(log);
    let path = segment_path(dir.path(), 0, LOG_SUFFIX);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let log = open(dir.path(), config);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (8, 8));
    assert!(segment_path(dir.path(), 8, LOG_SUFFIX).exists());
    let (info, _) = append(&log, 1, NOW_MS, 1);
    assert_eq!(info.base_offset, 8, "offsets below the start are never reused");
}

#[test]
fn without_flush_before_ack_fsyncs_follow_the_message_count_and_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            flush_messages: 5,
            flush_ms: 100,
            ..config()
        },
    );
    assert!(!log.flush_before_ack());
    append(&log, 3, NOW_MS, 5);
    assert_eq!(log.shared.commit.durable_offset(), 0);
    append(&log, 3, NOW_MS, 5);
    assert_eq!(
        log.shared.commit.durable_offset(),
        6,
        "five messages reached: fsync'd inline outside a runtime"
    );
    append(&log, 1, NOW_MS, 5);
    log.enforce_retention(NOW_MS).unwrap();
    log.enforce_retention(NOW_MS + 99).unwrap();
    assert_eq!(log.shared.commit.durable_offset(), 6);
    log.enforce_retention(NOW_MS + 100).unwrap();
    assert_eq!(log.shared.commit.durable_offset(), 7, "flush.ms elapsed");
}

//! Tests of transactions in the partition log: the last stable offset, markers and their epochs,
//! aborted transaction lookups, producer snapshots, and recovery of all of them after a clean
//! reopen, a crash that loses the tail mid-transaction, and a torn marker.

use bytes::BytesMut;

use super::batch::{self, BatchHeader, Compression};
use super::segment::{segment_path, LOG_SUFFIX};
use super::tests::{encode_with, opts, payload, records, NOW_MS};
use super::{AppendInfo, AppendSignal, Isolation, LogConfig, PartitionLog, ProducerSnapshot};
use crate::error::{Error, Result};

/// Acks that do not wait for fsync, so that the high watermark follows the log end without a
/// runtime and every step is deterministic.
fn config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 1,
        flush_messages: 2,
        ..LogConfig::default()
    }
}

fn open(dir: &std::path::Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config, AppendSignal::default()).unwrap()
}

/// One client batch of `count` records of producer (id, epoch, base sequence), transactional or not.
pub(super) fn client_batch(count: usize, producer: (i64, i16, i32), transactional: bool) -> BytesMut {
    encode_with(
        &records(count, NOW_MS, 8),
        Some(producer),
        Compression::None,
        transactional,
    )
}

/// Appends a transactional batch of `count` records.
fn txn(log: &PartitionLog, count: usize, producer: (i64, i16, i32)) -> Result<AppendInfo> {
    let (p, h) = payload(&[client_batch(count, producer, true)]);
    log.append(p, &h, &opts(NOW_MS))
}

/// Appends a plain batch of `count` records.
fn plain(log: &PartitionLog, count: usize) -> AppendInfo {
    let (p, h) = payload(&[client_batch(count, (-1, -1, -1), false)]);
    log.append(p, &h, &opts(NOW_MS)).unwrap()
}

fn marker(log: &PartitionLog, producer_id: i64, epoch: i16, commit: bool) -> Result<i64> {
    log.append_marker_at(producer_id, epoch, commit, 3, NOW_MS)
        .map(|info| info.base_offset)
}

#[test]
fn the_last_stable_offset_stops_at_the_earliest_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    plain(&log, 2); // 0..=1
    assert_eq!(log.last_stable_offset(), 2);
    txn(&log, 3, (1, 0, 0)).unwrap(); // 2..=4
    plain(&log, 1); // 5
    txn(&log, 1, (2, 0, 0)).unwrap(); // 6
    assert_eq!((log.high_watermark(), log.last_stable_offset()), (7, 2));
    let visible = log.visible_offsets();
    assert_eq!(
        (
            visible.end(Isolation::ReadUncommitted),
            visible.end(Isolation::ReadCommitted)
        ),
        (7, 2)
    );
    let mut signal = log.shared.signal.subscribe();
    signal.borrow_and_update();
    assert_eq!(marker(&log, 1, 0, true).unwrap(), 7);
    assert!(
        signal.has_changed().unwrap(),
        "a marker wakes long polls like an append"
    );
    assert_eq!(log.last_stable_offset(), 6, "producer 2 still holds it");
    assert_eq!(marker(&log, 2, 0, false).unwrap(), 8);
    assert_eq!(log.last_stable_offset(), 9);
    assert_eq!(log.aborted_transactions(0, 9), vec![(2, 6)]);

    // Reads below the last stable offset never return a batch at or past it.
    txn(&log, 1, (1, 0, 3)).unwrap(); // 9
    plain(&log, 1); // 10
    let committed = log.read(0, usize::MAX, log.last_stable_offset()).unwrap();
    let last = batch::scan_headers(&committed).last().unwrap().unwrap().1;
    assert_eq!(last.last_offset(), 8);
}

#[test]
fn an_undurable_marker_holds_the_last_stable_offset_until_it_is_fsynced() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // fsync before ack: outside a runtime appends stay above the high watermark until a wait.
    let log = open(
        dir.path(),
        LogConfig {
            flush_messages: 1,
            ..config()
        },
    );
    txn(&log, 2, (1, 0, 0)).unwrap();
    runtime.block_on(log.wait_durable(2)).unwrap();
    assert_eq!(log.last_stable_offset(), 0);
    marker(&log, 1, 0, false).unwrap();
    assert_eq!((log.high_watermark(), log.last_stable_offset()), (2, 0));
    runtime.block_on(log.wait_durable(3)).unwrap();
    assert_eq!((log.high_watermark(), log.last_stable_offset()), (3, 3));

    // append_marker itself returns once the marker is durable.
    txn(&log, 1, (1, 0, 2)).unwrap();
    let offset = runtime.block_on(log.append_marker(1, 0, true, 3)).unwrap();
    assert_eq!(offset, 4);
    assert_eq!((log.high_watermark(), log.last_stable_offset()), (5, 5));
}

#[test]
fn marker_epochs_fence_stale_coordinators_and_newer_epochs_take_over() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    txn(&log, 2, (1, 5, 0)).unwrap();
    let end = log.log_end_offset();
    let stale = marker(&log, 1, 4, false).unwrap_err();
    assert!(
        matches!(stale, Error::InvalidProducerEpoch { current: 5, got: 4, .. }),
        "{stale}"
    );
    assert_eq!(log.log_end_offset(), end, "a refused marker writes nothing");
    assert_eq!(log.last_stable_offset(), 0);
    // A bumped epoch (the coordinator aborting a timed-out transaction) ends it and fences
    // the old producer's data.
    marker(&log, 1, 6, false).unwrap();
    assert_eq!(log.last_stable_offset(), 3);
    let fenced = txn(&log, 1, (1, 5, 2)).unwrap_err();
    assert!(matches!(fenced, Error::InvalidProducerEpoch { .. }), "{fenced}");
    txn(&log, 1, (1, 6, 0)).unwrap();
    // A marker for a producer without an open transaction is appended and changes nothing else.
    marker(&log, 9, 0, true).unwrap();
    assert_eq!(
        log.last_stable_offset(),
        3,
        "producer 1's new transaction is still open"
    );
    assert!(marker(&log, -1, 0, true).is_err());
}

#[test]
fn a_plain_batch_of_a_producer_with_an_open_transaction_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    txn(&log, 1, (1, 0, 0)).unwrap();
    let (p, h) = payload(&[client_batch(1, (1, 0, 1), false)]);
    assert!(matches!(log.append(p, &h, &opts(NOW_MS)), Err(Error::InvalidRecord(_))));
}

#[test]
fn aborted_transactions_are_reported_for_the_ranges_they_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    txn(&log, 2, (1, 0, 0)).unwrap(); // 0..=1
    txn(&log, 2, (2, 0, 0)).unwrap(); // 2..=3
    marker(&log, 2, 0, false).unwrap(); // 4
    plain(&log, 2); // 5..=6
    txn(&log, 1, (1, 0, 2)).unwrap(); // 7
    marker(&log, 1, 0, false).unwrap(); // 8
    txn(&log, 1, (3, 0, 0)).unwrap(); // 9
    marker(&log, 3, 0, true).unwrap(); // 10
    assert_eq!(log.aborted_transactions(0, 11), vec![(2, 2), (1, 0)]);
    assert_eq!(log.aborted_transactions(0, 2), vec![(1, 0)]);
    assert_eq!(
        log.aborted_transactions(5, 7),
        vec![(1, 0)],
        "producer 1's transaction spans 0..=8"
    );
    assert_eq!(log.aborted_transactions(9, 11), Vec::<(i64, i64)>::new());
    // DeleteRecords past a marker forgets its transaction.
    log.delete_records_before(5).unwrap();
    assert_eq!(log.aborted_transactions(0, 11), vec![(1, 0)]);
}

#[test]
fn producers_are_described_with_their_open_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    let (p, h) = payload(&[client_batch(3, (4, 1, 0), false)]);
    log.append(p, &h, &opts(NOW_MS)).unwrap();
    txn(&log, 2, (8, 2, 5)).unwrap();
    marker(&log, 4, 1, true).unwrap();
    let described: Vec<(i64, i16, i32, i32, i64)> = log
        .producers()
        .iter()
        .map(|p: &ProducerSnapshot| {
            (
                p.producer_id,
                p.producer_epoch,
                p.last_sequence,
                p.coordinator_epoch,
                p.current_txn_start_offset,
            )
        })
        .collect();
    assert_eq!(described, vec![(4, 1, 2, 3, -1), (8, 2, 6, -1, 3)]);
    assert_eq!(log.producer(8), Some(log.producers()[1]));
    assert_eq!(log.producer(5), None);
}

/// The transaction state a log shows: (last stable offset, aborted transactions, producers).
fn state(log: &PartitionLog) -> (i64, Vec<(i64, i64)>, Vec<ProducerSnapshot>) {
    (
        log.last_stable_offset(),
        log.aborted_transactions(0, i64::MAX),
        log.producers(),
    )
}

#[test]
fn transactions_are_rebuilt_when_the_log_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 300,
        ..config()
    };
    let log = open(dir.path(), config.clone());
    txn(&log, 2, (1, 0, 0)).unwrap();
    txn(&log, 2, (2, 0, 0)).unwrap();
    plain(&log, 2);
    marker(&log, 2, 0, false).unwrap();
    txn(&log, 1, (3, 0, 0)).unwrap();
    marker(&log, 3, 0, true).unwrap();
    txn(&log, 1, (1, 0, 2)).unwrap();
    assert!(log.segment_count() > 2, "markers and batches spread over segments");
    let before = state(&log);
    assert_eq!((before.0, &before.1), (0, &vec![(2, 2)]));
    log.close().unwrap();
    drop(log);
    let log = open(dir.path(), config.clone());
    assert_eq!(state(&log), before, "after a clean close");
    drop(log);
    std::fs::remove_file(dir.path().join(super::checkpoint::RECOVERY_POINT_FILE)).unwrap();
    let log = open(dir.path(), config);
    assert_eq!(state(&log), before, "after a full recovery");
    marker(&log, 1, 0, true).unwrap();
    assert_eq!(log.last_stable_offset(), log.high_watermark());
}

#[test]
fn a_crash_mid_transaction_leaves_it_open_at_its_first_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    plain(&log, 1); // 0
    let first = txn(&log, 2, (1, 0, 0)).unwrap(); // 1..=2
    let lost = txn(&log, 2, (1, 0, 2)).unwrap(); // 3..=4, torn by the crash
    drop(log);
    let path = segment_path(dir.path(), 0, LOG_SUFFIX);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let log = open(dir.path(), config());
    assert_eq!(log.log_end_offset(), lost.base_offset);
    assert_eq!(log.last_stable_offset(), first.base_offset);
    assert_eq!(log.producers()[0].current_txn_start_offset, 1);
    // The producer resends what was lost, and the coordinator's marker ends the transaction.
    txn(&log, 2, (1, 0, 2)).unwrap();
    marker(&log, 1, 0, false).unwrap();
    assert_eq!(log.last_stable_offset(), 6);
    assert_eq!(log.aborted_transactions(0, 6), vec![(1, 1)]);
}

#[test]
fn a_torn_marker_is_truncated_and_its_transaction_is_open_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    txn(&log, 2, (1, 0, 0)).unwrap();
    marker(&log, 1, 0, true).unwrap();
    assert_eq!(log.last_stable_offset(), 3);
    drop(log);
    let path = segment_path(dir.path(), 0, LOG_SUFFIX);
    let mut bytes = std::fs::read(&path).unwrap();
    // Damage a byte of the marker's record: its CRC no longer matches.
    let at = bytes.len() - 8;
    bytes[at] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let log = open(dir.path(), config());
    assert_eq!((log.log_end_offset(), log.last_stable_offset()), (2, 0));
    // The coordinator retries the marker.
    marker(&log, 1, 0, true).unwrap();
    assert_eq!(log.last_stable_offset(), 3);
}

#[test]
fn timestamp_lookups_under_read_committed_stop_at_the_last_stable_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    plain(&log, 2); // 0..=1 at NOW_MS, NOW_MS + 1
    txn(&log, 2, (1, 0, 0)).unwrap(); // 2..=3 at NOW_MS, NOW_MS + 1
    let committed = Isolation::ReadCommitted;
    assert_eq!(
        log.offset_for_timestamp_in(NOW_MS + 1, committed).unwrap(),
        Some((1, NOW_MS + 1))
    );
    let (p, h) = payload(&[client_batch(3, (-1, -1, -1), false)]); // 4..=6, up to NOW_MS + 2
    log.append(p, &h, &opts(NOW_MS)).unwrap();
    assert_eq!(log.offset_for_timestamp_in(NOW_MS + 2, committed).unwrap(), None);
    assert_eq!(
        log.offset_for_timestamp_in(NOW_MS + 2, Isolation::ReadUncommitted)
            .unwrap(),
        Some((6, NOW_MS + 2))
    );
    assert_eq!(log.max_timestamp_in(committed).unwrap(), None);
    assert_eq!(log.max_timestamp().unwrap(), Some((6, NOW_MS + 2)));
    marker(&log, 1, 0, true).unwrap();
    assert_eq!(log.max_timestamp_in(committed).unwrap(), Some((6, NOW_MS + 2)));
}

#[test]
fn headers_of_markers_are_what_clients_expect() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    txn(&log, 1, (1, 2, 0)).unwrap();
    let offset = marker(&log, 1, 2, true).unwrap();
    let bytes = log.read(offset, usize::MAX, i64::MAX).unwrap();
    let header = BatchHeader::parse(&bytes).unwrap();
    assert!(header.is_control() && header.is_transactional());
    assert_eq!(
        (
            header.base_offset,
            header.producer_id,
            header.producer_epoch,
            header.base_sequence
        ),
        (offset, 1, 2, -1)
    );
    assert!(batch::crc_ok(&bytes));
    assert_eq!(
        super::txn::parse_marker(&bytes).unwrap(),
        Some(super::txn::EndMarker {
            commit: true,
            coordinator_epoch: 3
        })
    );
}

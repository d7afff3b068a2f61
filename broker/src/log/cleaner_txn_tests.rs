//! Tests of log compaction with transactions: records of aborted transactions never survive in
//! place of committed ones, committed transactional records compact like any other, markers stay,
//! and nothing at or past the last stable offset is cleaned or lets older records go.

use super::cleaner_tests::{append, append_txn, batches, config, contents, entry, open, rec, roll};
use super::tests::NOW_MS;
use super::PartitionLog;

fn end(log: &PartitionLog, producer_id: i64, commit: bool) -> i64 {
    log.append_marker_at(producer_id, 0, commit, 0, NOW_MS)
        .unwrap()
        .base_offset
}

/// The offsets of the control batches in the log.
fn markers(log: &PartitionLog) -> Vec<i64> {
    batches(log)
        .iter()
        .filter(|(h, _)| h.is_control())
        .map(|(h, _)| h.base_offset)
        .collect()
}

#[test]
fn an_aborted_offset_never_survives_in_place_of_a_committed_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    // [a=1 b=1] [txn 1: a=2 c=1, abort] [txn 2: b=2, commit] and the active [d=1].
    append(&log, &[rec("a", Some("1"), NOW_MS), rec("b", Some("1"), NOW_MS)]);
    roll(&log);
    append_txn(
        &log,
        &[rec("a", Some("2"), NOW_MS), rec("c", Some("1"), NOW_MS)],
        (1, 0, 0),
    );
    assert_eq!(end(&log, 1, false), 4);
    roll(&log);
    append_txn(&log, &[rec("b", Some("2"), NOW_MS)], (2, 0, 0));
    assert_eq!(end(&log, 2, true), 6);
    roll(&log);
    append(&log, &[rec("d", Some("1"), NOW_MS)]);

    let stats = log.compact(NOW_MS).unwrap();
    let expected = vec![
        entry(0, "a", Some("1")),
        entry(5, "b", Some("2")),
        entry(7, "d", Some("1")),
    ];
    assert_eq!(
        contents_without_markers(&log),
        expected,
        "a=1 stays: the aborted a=2 supersedes nothing"
    );
    assert_eq!(stats.records_removed, 3, "b=1, and the aborted a=2 and c=1");
    assert_eq!(markers(&log), vec![4, 6], "markers stay");
    let emptied: Vec<(i64, i32)> = batches(&log)
        .iter()
        .filter(|(h, records)| h.is_transactional() && !h.is_control() && records.is_empty())
        .map(|(h, _)| (h.base_offset, h.record_count))
        .collect();
    assert_eq!(
        emptied,
        vec![(2, 0)],
        "the producer state still remembers the aborted batch"
    );

    drop(log); // A crash: recovery rebuilds the transactions from what compaction left.
    let log = open(dir.path(), config());
    assert_eq!(contents_without_markers(&log), expected);
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    assert_eq!(log.compact(NOW_MS).unwrap().records_removed, 0);
}

#[test]
fn nothing_past_the_last_stable_offset_is_cleaned_or_supersedes_older_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config());
    append(&log, &[rec("a", Some("1"), NOW_MS)]);
    roll(&log);
    append_txn(
        &log,
        &[rec("a", Some("2"), NOW_MS), rec("b", Some("1"), NOW_MS)],
        (1, 0, 0),
    );
    roll(&log);
    append(&log, &[rec("a", Some("3"), NOW_MS), rec("b", Some("2"), NOW_MS)]);
    roll(&log);
    append(&log, &[rec("z", Some("1"), NOW_MS)]);
    assert_eq!(log.last_stable_offset(), 1);

    let before = contents(&log);
    let stats = log.compact(NOW_MS).unwrap();
    assert_eq!(
        stats.records_removed, 0,
        "a=3 lies past the open transaction: it is not mapped"
    );
    assert_eq!(contents(&log), before);
    assert!(stats.cleaned_up_to_offset <= 1);

    assert_eq!(end(&log, 1, true), 6);
    roll(&log);
    let stats = log.compact(NOW_MS).unwrap();
    assert_eq!(stats.records_removed, 3, "a=1, and the committed a=2 and b=1");
    assert_eq!(
        contents_without_markers(&log),
        vec![
            entry(3, "a", Some("3")),
            entry(4, "b", Some("2")),
            entry(5, "z", Some("1"))
        ]
    );
    assert_eq!(markers(&log), vec![6]);
}

/// Every data record as (offset, key, value), control records left out.
fn contents_without_markers(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    let text = |b: &bytes::Bytes| String::from_utf8(b.to_vec()).unwrap();
    batches(log)
        .into_iter()
        .filter(|(h, _)| !h.is_control())
        .flat_map(|(_, records)| records)
        .map(|r| (r.offset, text(r.key.as_ref().unwrap()), r.value.as_ref().map(text)))
        .collect()
}

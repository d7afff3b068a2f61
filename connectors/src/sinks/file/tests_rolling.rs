//! Tests of the `file` sink's rolling mode: roll limits, placeholders, growing schemas, parquet
//! read back with the parquet crate, crashes at each step of a commit, and the compliance checks
//! of rolling CSV and parquet.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::{json, Value};

use super::tests::{
    ctx, data_files, hidden_with_suffix, ids, open, read_all, read_csv, read_file, read_json_lines, write, write_at,
};
use crate::compliance::{check_sink, SinkUnderTest};

/// The names of the visible files in `dir`.
fn names(dir: &Path) -> Vec<String> {
    data_files(dir)
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn rolling_by_records_never_puts_more_rows_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"path": "out/e.jsonl", "roll": {"records": 4}});
    let out = dir.path().join("out");
    let (mut sink, stored) = open(dir.path(), &config).await;
    assert_eq!(stored, vec![]);
    write(sink.as_mut(), 0..10, 0, 0, false).await;
    assert_eq!(names(&out), vec!["e-0000000000.jsonl", "e-0000000001.jsonl"]);
    assert_eq!(ids(&read_all(&out)), (0..8).collect::<Vec<_>>());
    assert_eq!(
        hidden_with_suffix(&out, ".inprogress"),
        vec![".e-0000000002.jsonl.inprogress"]
    );
    // A crash: the two rows in the in-progress file were never committed.
    drop(sink);
    let (mut sink, stored) = open(dir.path(), &config).await;
    assert_eq!(stored, vec![(0, 8)], "only rows in finished files are committed");
    assert!(
        hidden_with_suffix(&out, ".inprogress").is_empty(),
        "leftovers are deleted"
    );
    write(sink.as_mut(), 8..10, 0, 8, false).await;
    sink.flush().await.unwrap();
    assert_eq!(ids(&read_all(&out)), (0..10).collect::<Vec<_>>());
    assert_eq!(names(&out).len(), 3);
    for file in data_files(&out) {
        assert!(read_file(&file).len() <= 4);
    }
    drop(sink);
    assert_eq!(open(dir.path(), &config).await.1, vec![(0, 10)]);
}

#[tokio::test]
async fn rolling_by_bytes_finishes_a_file_once_it_is_big_enough() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"path": "e.csv", "format": "csv", "roll": {"bytes": 1}});
    let (mut sink, _) = open(dir.path(), &config).await;
    write(sink.as_mut(), 0..3, 0, 0, false).await;
    write(sink.as_mut(), 3..5, 1, 0, false).await;
    // Each write made a file of at least one byte, finished at once: no flush needed.
    let files = data_files(dir.path());
    assert_eq!(files.len(), 2);
    assert_eq!(ids(&read_csv(&files[0])), vec![0, 1, 2]);
    assert_eq!(ids(&read_csv(&files[1])), vec![3, 4]);
    drop(sink);
    assert_eq!(open(dir.path(), &config).await.1, vec![(0, 3), (1, 2)]);
}

#[tokio::test]
async fn a_file_past_its_roll_age_is_finished_before_it_gets_more_rows() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"path": "e.jsonl", "roll": {"age_ms": 20}});
    let (mut sink, _) = open(dir.path(), &config).await;
    write(sink.as_mut(), 0..2, 0, 0, false).await;
    let written = Instant::now();
    // The file was started before `written`: wait until it is surely past its age.
    while written.elapsed() < Duration::from_millis(20) {
        std::thread::sleep(Duration::from_millis(1));
    }
    write(sink.as_mut(), 2..4, 0, 2, false).await;
    let files = data_files(dir.path());
    assert!(!files.is_empty(), "the aged file was finished");
    assert_eq!(ids(&read_json_lines(&files[0])), vec![0, 1]);
    sink.flush().await.unwrap();
    assert_eq!(ids(&read_all(dir.path())), vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn placeholders_split_rows_by_topic_partition_date_and_hour() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"path": "out/{topic}/{date}/h{hour}-p{partition}.jsonl"});
    let (mut sink, _) = open(dir.path(), &config).await;
    // 2023-11-14T22:13:20Z, then an hour later.
    let t22 = 1_700_000_000_000;
    let t23 = t22 + 3_600_000;
    write_at(sink.as_mut(), 0..2, 0, 0, t22, false).await.unwrap();
    write_at(sink.as_mut(), 2..3, 1, 0, t22, false).await.unwrap();
    write_at(sink.as_mut(), 3..5, 0, 2, t23, false).await.unwrap();
    assert!(
        data_files(dir.path()).is_empty(),
        "nothing is final before a roll or a flush"
    );
    sink.flush().await.unwrap();
    let out = dir.path().join("out");
    assert_eq!(
        names(&out),
        vec![
            "t/2023-11-14/h22-p0-0000000000.jsonl",
            "t/2023-11-14/h22-p1-0000000001.jsonl",
            "t/2023-11-14/h23-p0-0000000002.jsonl",
        ]
    );
    let files = data_files(&out);
    assert_eq!(ids(&read_json_lines(&files[0])), vec![0, 1]);
    assert_eq!(ids(&read_json_lines(&files[1])), vec![2]);
    assert_eq!(ids(&read_json_lines(&files[2])), vec![3, 4]);
    assert!(out.join(".h{hour}-p{partition}.jsonl.brook-rolling-state").exists());
    drop(sink);
    assert_eq!(open(dir.path(), &config).await.1, vec![(0, 4), (1, 1)]);
}

#[tokio::test]
async fn csv_and_parquet_start_a_new_file_when_a_column_is_added_and_json_does_not() {
    for (format, ext, files) in [("csv", "csv", 2), ("parquet", "parquet", 2), ("json", "jsonl", 1)] {
        let dir = tempfile::tempdir().unwrap();
        let config = json!({"path": format!("e.{ext}"), "format": format, "roll": {"records": 100}});
        let (mut sink, _) = open(dir.path(), &config).await;
        write(sink.as_mut(), 0..2, 0, 0, false).await;
        write(sink.as_mut(), 2..4, 0, 2, true).await;
        sink.flush().await.unwrap();
        let found = data_files(dir.path());
        assert_eq!(found.len(), files, "{format}");
        let rows = read_all(dir.path());
        assert_eq!(ids(&rows), vec![0, 1, 2, 3], "{format}");
        assert_eq!(rows[2].get("extra"), Some(&Value::String("x2".into())), "{format}");
        assert_eq!(rows[3].get("extra"), None, "{format}");
        if format == "csv" {
            let header = |i: usize| {
                fs::read_to_string(&found[i])
                    .unwrap()
                    .lines()
                    .next()
                    .unwrap()
                    .to_string()
            };
            assert_eq!(header(0), "id,name,score");
            assert_eq!(header(1), "id,name,score,extra");
        }
    }
}

#[tokio::test]
async fn parquet_files_read_back_with_their_codec() {
    for (codec, expected) in [
        (None, "ZSTD"),
        (Some("snappy"), "SNAPPY"),
        (Some("none"), "UNCOMPRESSED"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = json!({"path": "t.parquet", "format": "parquet"});
        if let Some(codec) = codec {
            config["compression"] = json!(codec);
        }
        let (mut sink, _) = open(dir.path(), &config).await;
        write(sink.as_mut(), 0..50, 0, 0, true).await;
        assert!(
            data_files(dir.path()).is_empty(),
            "parquet rolls at 100000 rows by default"
        );
        sink.flush().await.unwrap();
        let files = data_files(dir.path());
        assert_eq!(files.len(), 1);
        let rows = read_all(dir.path());
        assert_eq!(ids(&rows), (0..50).collect::<Vec<_>>());
        assert_eq!(rows[7]["score"], json!(3.5));
        let reader = SerializedFileReader::new(fs::File::open(&files[0]).unwrap()).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), 50);
        let compression = meta.row_group(0).column(0).compression();
        assert!(format!("{compression:?}").starts_with(expected), "{compression:?}");
        assert!(matches!(
            (expected, compression),
            ("ZSTD", Compression::ZSTD(_))
                | ("SNAPPY", Compression::SNAPPY)
                | ("UNCOMPRESSED", Compression::UNCOMPRESSED)
        ));
    }
}

#[tokio::test]
async fn a_batch_sent_again_lands_once_in_rolling_mode() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"path": "e.jsonl", "roll": {"records": 2}});
    let (mut sink, _) = open(dir.path(), &config).await;
    write(sink.as_mut(), 0..3, 0, 0, false).await;
    write(sink.as_mut(), 0..3, 0, 0, false).await;
    write(sink.as_mut(), 2..5, 0, 2, false).await;
    sink.flush().await.unwrap();
    assert_eq!(ids(&read_all(dir.path())), vec![0, 1, 2, 3, 4]);
}

/// Writes rows of two partitions into two in-progress files, then stops as a crash in the
/// middle of a commit would: the pending state written by hand and `renamed` of the two files
/// renamed. Returns the directory for reopening.
async fn crash_mid_commit(renamed: usize) -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"path": "p{partition}.jsonl"});
    let (mut sink, _) = open(dir.path(), &config).await;
    write(sink.as_mut(), 0..3, 0, 0, false).await;
    write(sink.as_mut(), 3..5, 1, 0, false).await;
    drop(sink);
    let inprogress = hidden_with_suffix(dir.path(), ".inprogress");
    assert_eq!(inprogress.len(), 2);
    let files: Vec<(String, String)> = inprogress
        .iter()
        .map(|n| (n.clone(), n[1..n.len() - ".inprogress".len()].to_string()))
        .collect();
    for (from, to) in files.iter().take(renamed) {
        fs::rename(dir.path().join(from), dir.path().join(to)).unwrap();
    }
    let state = json!({
        "offsets": [],
        "next_seq": 0,
        "pending": {"offsets": [[0, 3], [1, 2]], "next_seq": 2, "files": files},
    });
    fs::write(
        dir.path().join(".p{partition}.jsonl.brook-rolling-state"),
        state.to_string(),
    )
    .unwrap();
    (dir, config)
}

#[tokio::test]
async fn a_crash_at_any_step_of_a_commit_neither_loses_nor_duplicates() {
    // Before the pending state: nothing was committed and the files are dropped.
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"path": "p{partition}.jsonl"});
    let (mut sink, _) = open(dir.path(), &config).await;
    write(sink.as_mut(), 0..3, 0, 0, false).await;
    drop(sink);
    let (_, stored) = open(dir.path(), &config).await;
    assert_eq!(stored, vec![]);
    assert!(hidden_with_suffix(dir.path(), ".inprogress").is_empty());
    assert!(data_files(dir.path()).is_empty());

    // After the pending state, with none, one or both files renamed: the commit completes.
    for renamed in 0..=2 {
        let (dir, config) = crash_mid_commit(renamed).await;
        let (mut sink, stored) = open(dir.path(), &config).await;
        assert_eq!(stored, vec![(0, 3), (1, 2)], "{renamed} renamed");
        assert_eq!(
            names(dir.path()),
            vec!["p0-0000000000.jsonl", "p1-0000000001.jsonl"],
            "{renamed} renamed"
        );
        assert_eq!(ids(&read_all(dir.path())), vec![0, 1, 2, 3, 4]);
        // The next file takes the next sequence number.
        write(sink.as_mut(), 5..6, 0, 3, false).await;
        sink.flush().await.unwrap();
        assert!(names(dir.path()).contains(&"p0-0000000002.jsonl".to_string()));
    }

    // A pending state naming a file that is gone is an error, not a silent loss.
    let (dir, config) = crash_mid_commit(0).await;
    for name in hidden_with_suffix(dir.path(), ".inprogress") {
        fs::remove_file(dir.path().join(name)).unwrap();
    }
    let mut sink = super::build(&ctx(dir.path()), config).unwrap();
    let err = sink.open("t").await.unwrap_err().to_string();
    assert!(err.contains("removed outside Brook"), "{err}");
}

#[tokio::test]
async fn in_progress_files_of_other_paths_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join(".other-0000000000.jsonl.inprogress");
    fs::write(&other, "{}\n").unwrap();
    let (_sink, _) = open(dir.path(), &json!({"path": "mine.jsonl", "roll": {"records": 3}})).await;
    assert!(other.exists());
}

#[tokio::test]
async fn a_failed_write_may_be_retried_unless_it_dropped_uncommitted_rows() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"path": "out/p{partition}/e.jsonl"});
    // Files where the directories of partitions 1 and 2 should be make their writes fail.
    fs::create_dir_all(dir.path().join("out")).unwrap();
    for p in ["p1", "p2"] {
        fs::write(dir.path().join("out").join(p), "").unwrap();
    }
    let (mut sink, _) = open(dir.path(), &config).await;
    let t = 1_700_000_000_000;
    // Nothing was uncommitted: the disk's error stands and the batch can be sent again.
    let err = write_at(sink.as_mut(), 0..2, 1, 0, t, false).await.unwrap_err();
    assert!(err.is_retriable(), "{err}");
    fs::remove_file(dir.path().join("out/p1")).unwrap();
    write(sink.as_mut(), 0..2, 1, 0, false).await;
    // Now partition 1's rows wait in an in-progress file, and a failure drops them.
    let err = write_at(sink.as_mut(), 2..3, 2, 0, t, false).await.unwrap_err();
    assert!(!err.is_retriable() && err.to_string().contains("replay"), "{err}");
    let err = write_at(sink.as_mut(), 3..4, 0, 0, t, false).await.unwrap_err();
    assert!(!err.is_retriable() && err.to_string().contains("opened again"), "{err}");
    drop(sink);
    // Opened again, the sink stored no offsets, so the runner replays everything once.
    fs::remove_file(dir.path().join("out/p2")).unwrap();
    let (mut sink, stored) = open(dir.path(), &config).await;
    assert_eq!(stored, vec![]);
    write(sink.as_mut(), 0..2, 1, 0, false).await;
    write(sink.as_mut(), 2..3, 2, 0, false).await;
    sink.flush().await.unwrap();
    let mut got = ids(&read_all(dir.path()));
    got.sort();
    assert_eq!(got, vec![0, 1, 2]);
}

/// A compliance check of a rolling sink with `config`, reading every final file in the directory.
async fn check_rolling(config: Value) {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let out = base.join("out");
    check_sink(SinkUnderTest {
        make: Box::new(move || super::build(&ctx(&base), config.clone()).unwrap()),
        read: Box::new(move || {
            let rows = read_all(&out);
            Box::pin(async move { rows })
        }),
    })
    .await;
}

#[tokio::test]
async fn rolling_csv_passes_the_sink_compliance_check() {
    check_rolling(json!({"path": "out/rows.csv", "format": "csv", "roll": {"records": 1000}})).await;
}

#[tokio::test]
async fn parquet_passes_the_sink_compliance_check() {
    check_rolling(json!({"path": "out/{topic}.parquet", "format": "parquet"})).await;
}

//! Tests of the `file` sink's append mode and configuration, the helpers the rolling tests share
//! (rows, writes, reading every format back), and the compliance check of append-json.

use std::fs;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use brook_broker::access::{ConsumerRecord, TimestampType};
use bytes::Bytes;
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Map, Value};

use crate::compliance::{check_sink, SinkUnderTest};
use crate::error::{Error, Result};
use crate::registry::Context;
use crate::sink::{Sink, SinkBatch};

/// A row read back.
pub(super) type Row = Map<String, Value>;

/// The context of a sink in a pipeline kept in `dir`.
pub(super) fn ctx(dir: &Path) -> Context {
    Context {
        name: "p.files".into(),
        base_dir: dir.to_path_buf(),
    }
}

/// Builds and opens a file sink, returning it with the offsets it stored.
pub(super) async fn open(dir: &Path, config: &Value) -> (Box<dyn Sink>, Vec<(i32, i64)>) {
    let mut sink = super::build(&ctx(dir), config.clone()).unwrap();
    let mut stored = sink.open("t").await.unwrap().expect("the file sink stores offsets");
    stored.sort();
    (sink, stored)
}

/// Rows `ids` (columns id, name, score, and `extra` when asked, set on even ids) of `partition`
/// from `first_offset`, every record at `timestamp_ms`.
pub(super) fn rows(
    ids: Range<i64>,
    partition: i32,
    first_offset: i64,
    timestamp_ms: i64,
    extra: bool,
) -> (RecordBatch, Vec<ConsumerRecord>) {
    let ids: Vec<i64> = ids.collect();
    let mut fields = vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("name-{i}")))),
        Arc::new(Float64Array::from_iter_values(ids.iter().map(|i| *i as f64 / 2.0))),
    ];
    if extra {
        fields.push(Field::new("extra", DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from_iter(
            ids.iter().map(|i| (i % 2 == 0).then(|| format!("x{i}"))),
        )));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let records = (0..ids.len())
        .map(|n| ConsumerRecord {
            topic: "t".into(),
            partition,
            offset: first_offset + n as i64,
            timestamp_ms,
            timestamp_type: TimestampType::Create,
            key: None,
            value: Some(Bytes::from_static(b"{}")),
            headers: Vec::new(),
        })
        .collect();
    (batch, records)
}

/// Writes rows `ids` of `partition` from `first_offset` at `timestamp_ms`.
pub(super) async fn write_at(
    sink: &mut dyn Sink,
    ids: Range<i64>,
    partition: i32,
    first_offset: i64,
    timestamp_ms: i64,
    extra: bool,
) -> Result<()> {
    let n = ids.end - ids.start;
    let (batch, records) = rows(ids, partition, first_offset, timestamp_ms, extra);
    sink.write(SinkBatch {
        topic: "t",
        rows: &batch,
        records: &records,
        next_offsets: &[(partition, first_offset + n)],
    })
    .await
}

/// Writes rows `ids` of `partition` from `first_offset`, with a fixed timestamp.
pub(super) async fn write(sink: &mut dyn Sink, ids: Range<i64>, partition: i32, first_offset: i64, extra: bool) {
    write_at(sink, ids.clone(), partition, first_offset, 1_700_000_000_000, extra)
        .await
        .unwrap_or_else(|e| panic!("writing {ids:?}: {e}"));
}

/// The objects of a JSON-lines file.
pub(super) fn read_json_lines(path: &Path) -> Vec<Row> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Object(row)) => row,
            other => panic!("{}: not a JSON object line {line:?} ({other:?})", path.display()),
        })
        .collect()
}

/// The rows of a CSV file with a header line, every value as text (empty fields left out).
/// Values in these tests hold no commas or quotes.
pub(super) fn read_csv(path: &Path) -> Vec<Row> {
    let text = fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().map(|h| h.split(',').collect()).unwrap_or_default();
    lines
        .map(|line| {
            header
                .iter()
                .zip(line.split(','))
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect()
        })
        .collect()
}

/// The rows of a parquet file, read with the parquet crate.
pub(super) fn read_parquet(path: &Path) -> Vec<Row> {
    let file = fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let mut writer = datafusion::arrow::json::WriterBuilder::new()
            .with_explicit_nulls(false)
            .build::<_, datafusion::arrow::json::writer::LineDelimited>(Vec::new());
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        for line in String::from_utf8(writer.into_inner()).unwrap().lines() {
            out.push(serde_json::from_str(line).unwrap());
        }
    }
    out
}

/// Every visible (final) data file under `dir`, recursively, sorted by path.
pub(super) fn data_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            out.extend(data_files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The rows of one data file, by its extension.
pub(super) fn read_file(path: &Path) -> Vec<Row> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => read_csv(path),
        Some("parquet") => read_parquet(path),
        _ => read_json_lines(path),
    }
}

/// The rows of every visible data file under `dir`, in file order.
pub(super) fn read_all(dir: &Path) -> Vec<Row> {
    data_files(dir).iter().flat_map(|p| read_file(p)).collect()
}

/// The ids of rows, whether kept as numbers or as text.
pub(super) fn ids(rows: &[Row]) -> Vec<i64> {
    rows.iter()
        .map(|r| match &r["id"] {
            Value::Number(n) => n.as_i64().unwrap(),
            Value::String(s) => s.parse().unwrap(),
            other => panic!("an id {other:?}"),
        })
        .collect()
}

/// Files in `dir` whose names end with `suffix`.
pub(super) fn hidden_with_suffix(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn append_json_commits_every_write_and_reopens_at_the_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"path": "out/events.jsonl"});
    let (mut sink, stored) = open(dir.path(), &config).await;
    assert_eq!(stored, vec![]);
    write(sink.as_mut(), 0..3, 0, 0, false).await;
    write(sink.as_mut(), 3..5, 1, 0, false).await;
    // Visible at once, as `tail -f` expects, without a flush.
    let data = dir.path().join("out/events.jsonl");
    let rows = read_json_lines(&data);
    assert_eq!(ids(&rows), vec![0, 1, 2, 3, 4]);
    assert_eq!(
        rows[1],
        json!({"id": 1, "name": "name-1", "score": 0.5})
            .as_object()
            .unwrap()
            .clone()
    );
    assert!(dir.path().join("out/.events.jsonl.brook-state").exists());
    drop(sink);
    let (_, stored) = open(dir.path(), &config).await;
    assert_eq!(stored, vec![(0, 3), (1, 2)]);
}

#[tokio::test]
async fn a_torn_or_uncommitted_tail_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"path": "events.jsonl"});
    let (mut sink, _) = open(dir.path(), &config).await;
    write(sink.as_mut(), 0..3, 0, 0, false).await;
    drop(sink);
    let data = dir.path().join("events.jsonl");
    let committed = fs::read(&data).unwrap();
    // A crash in the middle of the next write: part of a line, never committed.
    let mut torn = committed.clone();
    torn.extend_from_slice(b"{\"id\":3,\"na");
    fs::write(&data, &torn).unwrap();
    let (mut sink, stored) = open(dir.path(), &config).await;
    assert_eq!(stored, vec![(0, 3)]);
    assert_eq!(fs::read(&data).unwrap(), committed);
    write(sink.as_mut(), 3..4, 0, 3, false).await;
    assert_eq!(ids(&read_json_lines(&data)), vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn a_batch_sent_again_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"path": "events.jsonl"});
    let (mut sink, _) = open(dir.path(), &config).await;
    write(sink.as_mut(), 0..3, 0, 0, false).await;
    write(sink.as_mut(), 0..3, 0, 0, false).await;
    write(sink.as_mut(), 1..5, 0, 1, false).await;
    assert_eq!(
        ids(&read_json_lines(&dir.path().join("events.jsonl"))),
        vec![0, 1, 2, 3, 4]
    );
}

#[tokio::test]
async fn existing_json_is_kept_and_csv_without_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("old.jsonl"), "{\"id\":-1}\n").unwrap();
    let (mut sink, stored) = open(dir.path(), &json!({"path": "old.jsonl"})).await;
    assert_eq!(stored, vec![]);
    write(sink.as_mut(), 0..2, 0, 0, false).await;
    assert_eq!(ids(&read_json_lines(&dir.path().join("old.jsonl"))), vec![-1, 0, 1]);

    fs::write(dir.path().join("old.csv"), "a,b\n1,2\n").unwrap();
    let mut sink = super::build(&ctx(dir.path()), json!({"path": "old.csv", "format": "csv"})).unwrap();
    let err = sink.open("t").await.unwrap_err().to_string();
    assert!(err.contains("did not write"), "{err}");
}

#[tokio::test]
async fn csv_append_writes_one_header_and_refuses_values_in_new_columns() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"path": "rows.csv", "format": "csv"});
    let (mut sink, _) = open(dir.path(), &config).await;
    write(sink.as_mut(), 0..2, 0, 0, false).await;
    drop(sink);
    let (mut sink, stored) = open(dir.path(), &config).await;
    assert_eq!(stored, vec![(0, 2)]);
    write(sink.as_mut(), 2..4, 0, 2, false).await;
    let data = dir.path().join("rows.csv");
    let text = fs::read_to_string(&data).unwrap();
    assert!(text.starts_with("id,name,score\n"), "{text}");
    assert_eq!(text.matches("id,name").count(), 1, "one header: {text}");
    // A new column holding a value cannot go under the header: that row is refused.
    let err = write_at(sink.as_mut(), 5..7, 0, 4, 0, true).await.unwrap_err();
    assert!(
        matches!(&err, Error::Rejected { index: 1, reason } if reason.contains("extra")),
        "{err}"
    );
    // Where the new column is null, the row is written without it.
    write(sink.as_mut(), 5..6, 0, 4, true).await;
    let rows = read_csv(&data);
    assert_eq!(ids(&rows), vec![0, 1, 2, 3, 5]);
    assert!(rows.iter().all(|r| r.len() == 3));
}

#[tokio::test]
async fn switching_modes_on_one_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, _) = open(dir.path(), &json!({"path": "e.jsonl"})).await;
    write(sink.as_mut(), 0..1, 0, 0, false).await;
    let mut rolling = super::build(&ctx(dir.path()), json!({"path": "e.jsonl", "roll": {"records": 5}})).unwrap();
    let err = rolling.open("t").await.unwrap_err().to_string();
    assert!(err.contains("append mode"), "{err}");
}

#[test]
fn the_configuration_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |config: Value, needle: &str| {
        let err = super::build(&ctx(dir.path()), config)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains(needle), "{err} should mention {needle}");
    };
    refused(json!({"path": "a.json", "compression": "zstd"}), "parquet only");
    refused(json!({"path": "a.json", "roll": {"records": 0}}), "roll.records");
    refused(json!({"path": "{day}/a.json"}), "{day}");
    refused(json!({"path": "a.json", "format": "xml"}), "xml");
    refused(json!({"path": "a.json", "rotate": true}), "rotate");
    refused(json!({"path": "a.json", "roll": {"minutes": 1}}), "minutes");
    refused(json!({"path": " "}), "path");
    refused(json!({}), "path");
    for ok in [
        json!({"path": "a.jsonl"}),
        json!({"path": "out/a.parquet", "format": "parquet", "compression": "snappy"}),
        json!({"path": "{topic}/{date}/{hour}-{partition}.csv", "format": "csv", "roll": {"bytes": 1000}}),
    ] {
        assert!(super::build(&ctx(dir.path()), ok.clone()).is_ok(), "{ok}");
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "building touches nothing");
}

#[tokio::test]
async fn append_json_passes_the_sink_compliance_check() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let read_base = base.clone();
    check_sink(SinkUnderTest {
        make: Box::new(move || super::build(&ctx(&base), json!({"path": "out.jsonl"})).unwrap()),
        read: Box::new(move || {
            let rows = read_json_lines(&read_base.join("out.jsonl"));
            Box::pin(async move { rows })
        }),
    })
    .await;
}

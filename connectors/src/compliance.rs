//! The compliance checks every source and every sink must pass: each connector's tests call
//! [`check_source`] or [`check_sink`] once over a real input or target, so that every connector
//! resumes, stores offsets and survives crashes the same way.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brook_broker::access::{ConsumerRecord, TimestampType};
use bytes::Bytes;
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

use crate::sink::{Sink, SinkBatch};
use crate::source::{Source, SourceItem, SourceRecord};

/// A boxed future, for the closures below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long a check waits for a source to return what was fed before failing; a bound against
/// hanging, not a performance threshold.
const PATIENCE: Duration = Duration::from_secs(60);

/// The topic the sink checks read from.
const TOPIC: &str = "compliance";

/// Reads back every row a target holds, one JSON object per row.
pub type ReadBack = Box<dyn Fn() -> BoxFuture<'static, Vec<Map<String, Value>>> + Send + Sync>;

/// Appends records with ids `first..first + n` to a source's input.
pub type Feed = Box<dyn Fn(u64, usize) -> BoxFuture<'static, ()> + Send + Sync>;

/// A sink over a real target, and a way to read that target back.
pub struct SinkUnderTest {
    /// Builds the sink again over the same target, as after a restart.
    pub make: Box<dyn Fn() -> Box<dyn Sink> + Send + Sync>,
    /// Reads back every row the target holds (committed data only), one JSON object per row.
    pub read: ReadBack,
}

/// A source over a real input, and a way to add to that input.
pub struct SourceUnderTest {
    /// Builds the source again over the same input, as after a restart.
    pub make: Box<dyn Fn() -> Box<dyn Source> + Send + Sync>,
    /// Appends `n` records with ids `first..first + n` to the input; returns once written.
    pub feed: Feed,
    /// The id inside a record the source emitted.
    pub id_of: Box<dyn Fn(&SourceRecord) -> u64 + Send + Sync>,
}

/// Rows `ids` as a sink batch's parts: partition `partition` at offsets from `first_offset`;
/// `extra` adds the nullable column `extra`.
fn rows(
    ids: std::ops::Range<i64>,
    partition: i32,
    first_offset: i64,
    extra: bool,
) -> (RecordBatch, Vec<ConsumerRecord>) {
    let mut fields = vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
    ];
    let ids: Vec<i64> = ids.collect();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("name-{i}")))),
        Arc::new(Float64Array::from_iter_values(ids.iter().map(|i| *i as f64 * 0.5))),
    ];
    if extra {
        fields.push(Field::new("extra", DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from_iter(
            ids.iter().map(|i| (i % 2 == 0).then(|| format!("x{i}"))),
        )));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("a valid batch");
    let records = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let mut value = serde_json::json!({"id": id, "name": format!("name-{id}"), "score": *id as f64 * 0.5});
            if extra && id % 2 == 0 {
                value["extra"] = Value::String(format!("x{id}"));
            }
            ConsumerRecord {
                topic: TOPIC.to_string(),
                partition,
                offset: first_offset + n as i64,
                timestamp_ms: 1_700_000_000_000 + *id,
                timestamp_type: TimestampType::Create,
                key: Some(Bytes::from(id.to_string())),
                value: Some(Bytes::from(value.to_string())),
                headers: Vec::new(),
            }
        })
        .collect();
    (batch, records)
}

/// Writes rows `ids` of `partition` from `first_offset`, with the offsets that follow them.
async fn write(sink: &mut dyn Sink, ids: std::ops::Range<i64>, partition: i32, first_offset: i64, extra: bool) {
    let n = ids.end - ids.start;
    let (batch, records) = rows(ids.clone(), partition, first_offset, extra);
    let next = [(partition, first_offset + n)];
    sink.write(SinkBatch {
        topic: TOPIC,
        rows: &batch,
        records: &records,
        next_offsets: &next,
    })
    .await
    .unwrap_or_else(|e| panic!("writing rows {ids:?} failed: {e}"));
}

/// A number in a read-back row, whether the target kept it as a number or as text.
fn number(row: &Map<String, Value>, column: &str) -> Option<f64> {
    match row.get(column)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// How many times each id is in the target, checking every row's other columns on the way.
async fn count_ids(sut: &SinkUnderTest) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for row in (sut.read)().await {
        let id = number(&row, "id").unwrap_or_else(|| panic!("a row without an integer id: {row:?}")) as i64;
        assert_eq!(
            row.get("name").and_then(Value::as_str),
            Some(format!("name-{id}").as_str()),
            "name of row {row:?}"
        );
        let score = number(&row, "score").unwrap_or_else(|| panic!("a row without a score: {row:?}"));
        assert!((score - id as f64 * 0.5).abs() < 1e-9, "score of row {row:?}");
        if id >= 20 && id % 2 == 0 {
            assert_eq!(
                row.get("extra").and_then(Value::as_str),
                Some(format!("x{id}").as_str()),
                "the added column of row {row:?}"
            );
        }
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// Asserts the target holds each of `ids` exactly once (or at least once) and nothing else.
async fn expect_ids(sut: &SinkUnderTest, ids: std::ops::Range<i64>, exactly_once: bool, when: &str) {
    let counts = count_ids(sut).await;
    let expected: Vec<i64> = ids.collect();
    let got: Vec<i64> = counts.keys().copied().collect();
    assert_eq!(got, expected, "ids in the target {when}");
    if exactly_once {
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "rows written more than once {when}: {twice:?}");
    }
}

/// Sorted stored offsets.
fn sorted(mut offsets: Vec<(i32, i64)>) -> Vec<(i32, i64)> {
    offsets.sort();
    offsets
}

/// Checks a sink: fresh open, writes over two partitions with a schema that grows, reopening,
/// and a crash (the sink dropped without `flush`) followed by the runner's replay.
pub async fn check_sink(sut: SinkUnderTest) {
    let mut sink = (sut.make)();
    let stored = sink.open(TOPIC).await.expect("opening a fresh sink");
    let exactly_once = stored.is_some();
    assert_eq!(stored.unwrap_or_default(), vec![], "a fresh target stores no offsets");
    write(sink.as_mut(), 0..10, 0, 0, false).await;
    write(sink.as_mut(), 10..20, 1, 0, false).await;
    write(sink.as_mut(), 20..30, 0, 10, true).await;
    sink.flush().await.expect("flushing");
    drop(sink);
    expect_ids(&sut, 0..30, exactly_once, "after three batches and a flush").await;

    let mut sink = (sut.make)();
    let stored = sink.open(TOPIC).await.expect("reopening");
    if exactly_once {
        assert_eq!(
            sorted(stored.clone().unwrap_or_default()),
            vec![(0, 20), (1, 10)],
            "stored offsets after reopening"
        );
    }
    // A crash: the batch is written but the sink never flushes or closes.
    write(sink.as_mut(), 30..40, 0, 20, true).await;
    drop(sink);

    let mut sink = (sut.make)();
    let stored = sink.open(TOPIC).await.expect("reopening after a crash");
    // A sink may have committed any prefix of the crashed batch (a file that rolls by record
    // count commits inside a batch): what it holds must match its stored offset exactly.
    let resume = match &stored {
        Some(offsets) => {
            let p0 = offsets.iter().find(|(p, _)| *p == 0).map(|(_, o)| *o).unwrap_or(-1);
            assert!(
                (20..=30).contains(&p0),
                "after a crash partition 0 stores an offset from 20 to 30, not {p0}"
            );
            expect_ids(&sut, 0..(10 + p0), true, "after a crash, matching the stored offsets").await;
            p0
        }
        None => 20,
    };
    // The runner replays from the stored (or committed) offsets.
    if resume < 30 {
        let first_id = 10 + resume;
        write(sink.as_mut(), first_id..40, 0, resume, true).await;
    }
    write(sink.as_mut(), 40..45, 1, 10, true).await;
    sink.flush().await.expect("flushing after the replay");
    drop(sink);
    expect_ids(&sut, 0..45, exactly_once, "after the replay").await;
    if exactly_once {
        let mut sink = (sut.make)();
        let stored = sink.open(TOPIC).await.expect("reopening at the end");
        assert_eq!(
            sorted(stored.unwrap_or_default()),
            vec![(0, 30), (1, 15)],
            "stored offsets at the end"
        );
    }
}

/// Polls until `n` records came (bad items are a failure here), within [`PATIENCE`].
async fn poll_records(source: &mut dyn Source, n: usize) -> Vec<SourceRecord> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "the source returned {} of {n} records in {PATIENCE:?}",
            got.len()
        );
        match source.poll(n - got.len(), 200).await.expect("polling") {
            Some(items) => {
                assert!(items.len() <= n - got.len(), "poll returned more than max_records");
                for item in items {
                    match item {
                        SourceItem::Record(r) => got.push(r),
                        SourceItem::Bad { error, .. } => panic!("a fed record came back bad: {error}"),
                    }
                }
            }
            None => panic!("the source ended after {} of {n} records", got.len()),
        }
    }
    got
}

/// Positions must grow per stream: each record starts at or after where the previous ended.
fn check_positions(records: &[SourceRecord], last: &mut BTreeMap<String, u64>) {
    for r in records {
        let p = &r.position;
        assert!(p.end > p.start, "a record's position must not be empty: {p:?}");
        if let Some(prev_end) = last.get(&p.stream) {
            assert!(p.start >= *prev_end, "positions of {} went back: {p:?}", p.stream);
        }
        last.insert(p.stream.clone(), p.end);
    }
}

/// Checks a source: it returns what was fed, once, in order, and a source rebuilt from its
/// checkpoint returns only what came after.
pub async fn check_source(sut: SourceUnderTest) {
    let mut source = (sut.make)();
    source.open(None).await.expect("opening a fresh source");
    (sut.feed)(0, 10).await;
    let first = poll_records(source.as_mut(), 10).await;
    let ids: Vec<u64> = first.iter().map(|r| (sut.id_of)(r)).collect();
    assert_eq!(ids, (0..10).collect::<Vec<_>>(), "ids of the first records");
    let mut last = BTreeMap::new();
    check_positions(&first, &mut last);
    let checkpoint = source.checkpoint();
    drop(source);

    (sut.feed)(10, 5).await;
    let mut source = (sut.make)();
    source
        .open(Some(checkpoint))
        .await
        .expect("reopening from the checkpoint");
    let next = poll_records(source.as_mut(), 5).await;
    let ids: Vec<u64> = next.iter().map(|r| (sut.id_of)(r)).collect();
    assert_eq!(
        ids,
        (10..15).collect::<Vec<_>>(),
        "ids after resuming from the checkpoint"
    );
    check_positions(&next, &mut last);
}

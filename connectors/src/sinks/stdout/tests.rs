//! Tests of the `stdout` sink over an in-memory writer, and its compliance check.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use brook_broker::access::{ConsumerRecord, TimestampType};
use bytes::Bytes;
use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use tokio::io::AsyncWrite;

use super::*;
use crate::compliance::{check_sink, SinkUnderTest};

/// A writer appending to a buffer the test can read.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl AsyncWrite for Shared {
    fn poll_write(self: Pin<&mut Self>, _: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Two rows, the second with a null name, and records whose values are `values`.
fn batch(values: [Option<&str>; 2]) -> (RecordBatch, Vec<ConsumerRecord>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1, 2])),
        Arc::new(StringArray::from(vec![Some("a"), None])),
    ];
    let rows = RecordBatch::try_new(schema, columns).unwrap();
    let records = values
        .iter()
        .enumerate()
        .map(|(i, v)| ConsumerRecord {
            topic: "t".into(),
            partition: 0,
            offset: i as i64,
            timestamp_ms: 0,
            timestamp_type: TimestampType::Create,
            key: None,
            value: v.map(|v| Bytes::from(v.to_string())),
            headers: Vec::new(),
        })
        .collect();
    (rows, records)
}

async fn print(format: StdoutFormat, values: [Option<&str>; 2]) -> String {
    let out = Shared::default();
    let mut sink = StdoutSink::with_writer(StdoutSinkConfig { format }, Box::new(out.clone()));
    assert_eq!(sink.open("t").await.unwrap(), None, "stdout stores no offsets");
    let (rows, records) = batch(values);
    sink.write(SinkBatch {
        topic: "t",
        rows: &rows,
        records: &records,
        next_offsets: &[(0, 2)],
    })
    .await
    .unwrap();
    out.text()
}

#[tokio::test]
async fn rows_print_as_json_lines_without_nulls() {
    let text = print(StdoutFormat::Json, [Some("x"), Some("y")]).await;
    assert_eq!(text, "{\"id\":1,\"name\":\"a\"}\n{\"id\":2}\n");
}

#[tokio::test]
async fn text_prints_record_values_and_skips_tombstones() {
    let text = print(StdoutFormat::Text, [Some("raw one"), None]).await;
    assert_eq!(text, "raw one\n");
}

#[test]
fn the_configuration_is_checked() {
    let ctx = Context {
        name: "p.out".into(),
        base_dir: ".".into(),
    };
    assert!(build(&ctx, serde_json::json!({"format": "text"})).is_ok());
    assert!(build(&ctx, serde_json::Value::Null).is_ok());
    let err = build(&ctx, serde_json::json!({"format": "xml"}))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("xml"), "{err}");
    let err = build(&ctx, serde_json::json!({"colour": true}))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("colour"), "{err}");
}

#[tokio::test]
async fn stdout_passes_the_sink_compliance_check() {
    let out = Shared::default();
    let make_out = out.clone();
    check_sink(SinkUnderTest {
        make: Box::new(move || {
            Box::new(StdoutSink::with_writer(
                StdoutSinkConfig::default(),
                Box::new(make_out.clone()),
            ))
        }),
        read: Box::new(move || {
            let text = out.text();
            Box::pin(async move {
                text.lines()
                    .map(|line| match serde_json::from_str(line) {
                        Ok(serde_json::Value::Object(row)) => row,
                        other => panic!("not a JSON object line: {line:?} ({other:?})"),
                    })
                    .collect()
            })
        }),
    })
    .await;
}

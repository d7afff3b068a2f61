//! Helpers the sink tests share: configurations with extra settings, batches from named columns,
//! and writing rows as the records of one partition of an input topic.

use brook_broker::access::{ConsumerRecord, TimestampType};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::error::Result;
use crate::sink::{Sink, SinkBatch};

/// The input topic of the batches [`write`] sends.
pub(crate) const TOPIC: &str = "in";

/// The configuration `base` (an object) with the keys of `extra` (an object) set over it.
pub(crate) fn with_extra(mut base: Value, extra: Value) -> Value {
    if let (Some(config), Value::Object(extra)) = (base.as_object_mut(), extra) {
        config.extend(extra);
    }
    base
}

/// A batch from named columns.
pub(crate) fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).expect("a valid batch")
}

/// Writes `rows` as records (without key or value) of [`TOPIC`] partition `partition` from
/// `first_offset`, storing the offset after them.
pub(crate) async fn write(sink: &mut dyn Sink, rows: &RecordBatch, partition: i32, first_offset: i64) -> Result<()> {
    let records: Vec<ConsumerRecord> = (0..rows.num_rows())
        .map(|n| ConsumerRecord {
            topic: TOPIC.to_string(),
            partition,
            offset: first_offset + n as i64,
            timestamp_ms: 0,
            timestamp_type: TimestampType::Create,
            key: None,
            value: None,
            headers: Vec::new(),
        })
        .collect();
    let next = [(partition, first_offset + rows.num_rows() as i64)];
    sink.write(SinkBatch {
        topic: TOPIC,
        rows,
        records: &records,
        next_offsets: &next,
    })
    .await
}

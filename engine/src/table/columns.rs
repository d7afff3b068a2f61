//! The Kafka metadata columns every topic table has beside its value columns (`_partition`,
//! `_offset`, `_timestamp`, `_key`, `_headers`), their types, and how a batch of them is built.

use std::sync::Arc;

use brook_broker::access::ConsumerRecord;
use datafusion::arrow::array::{
    ArrayRef, Int32Array, Int64Array, ListBuilder, StringBuilder, StructBuilder, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};

/// One metadata column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    /// The record's partition, Int32.
    Partition,
    /// The record's offset, Int64.
    Offset,
    /// The record's timestamp, Timestamp(Millisecond, UTC).
    Timestamp,
    /// The record's key as lossy UTF-8, null for no key.
    Key,
    /// The record's headers in order, List<Struct<key, value>>.
    Headers,
}

impl Meta {
    /// Every metadata column, in the order they follow the value columns.
    pub const ALL: [Meta; 5] = [Meta::Partition, Meta::Offset, Meta::Timestamp, Meta::Key, Meta::Headers];

    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Meta::Partition => "_partition",
            Meta::Offset => "_offset",
            Meta::Timestamp => "_timestamp",
            Meta::Key => "_key",
            Meta::Headers => "_headers",
        }
    }

    /// The metadata column called `name`, if it is one.
    pub fn by_name(name: &str) -> Option<Meta> {
        Meta::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The Arrow field.
    pub fn field(self) -> Field {
        match self {
            Meta::Partition => Field::new(self.name(), DataType::Int32, false),
            Meta::Offset => Field::new(self.name(), DataType::Int64, false),
            Meta::Timestamp => Field::new(self.name(), timestamp_type(), false),
            Meta::Key => Field::new(self.name(), DataType::Utf8, true),
            Meta::Headers => Field::new(self.name(), DataType::List(Arc::new(header_item())), false),
        }
    }

    /// The column for `rows`, each an index into `records`.
    pub fn build(self, records: &[ConsumerRecord], rows: &[usize]) -> ArrayRef {
        let pick = || rows.iter().map(|&i| &records[i]);
        match self {
            Meta::Partition => Arc::new(Int32Array::from_iter_values(pick().map(|r| r.partition))),
            Meta::Offset => Arc::new(Int64Array::from_iter_values(pick().map(|r| r.offset))),
            Meta::Timestamp => Arc::new(
                TimestampMillisecondArray::from_iter_values(pick().map(|r| r.timestamp_ms)).with_timezone("UTC"),
            ),
            Meta::Key => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
                for r in pick() {
                    b.append_option(r.key.as_ref().map(|k| String::from_utf8_lossy(k)));
                }
                Arc::new(b.finish())
            }
            Meta::Headers => {
                let values = StructBuilder::from_fields(header_fields(), 0);
                let mut b = ListBuilder::new(values).with_field(Arc::new(header_item()));
                for r in pick() {
                    let entries = b.values();
                    for (k, v) in &r.headers {
                        let key = String::from_utf8_lossy(k);
                        let value = v.as_ref().map(|v| String::from_utf8_lossy(v));
                        entries
                            .field_builder::<StringBuilder>(0)
                            .expect("key is a string")
                            .append_value(key);
                        entries
                            .field_builder::<StringBuilder>(1)
                            .expect("value is a string")
                            .append_option(value);
                        entries.append(true);
                    }
                    b.append(true);
                }
                Arc::new(b.finish())
            }
        }
    }
}

/// Timestamp(Millisecond, "UTC"), the type of `_timestamp`.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ])
}

fn header_item() -> Field {
    Field::new("item", DataType::Struct(header_fields()), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use datafusion::arrow::array::{Array, ListArray, StringArray, StructArray};
    use datafusion::arrow::datatypes::Schema;
    use datafusion::arrow::record_batch::RecordBatch;

    fn record(
        offset: i64,
        key: Option<&'static [u8]>,
        headers: Vec<(&'static str, Option<&'static str>)>,
    ) -> ConsumerRecord {
        ConsumerRecord {
            topic: "t".into(),
            partition: 3,
            offset,
            timestamp_ms: 1_000 + offset,
            timestamp_type: brook_broker::access::TimestampType::Create,
            key: key.map(Bytes::from_static),
            value: None,
            headers: headers
                .into_iter()
                .map(|(k, v)| {
                    (
                        Bytes::from_static(k.as_bytes()),
                        v.map(|v| Bytes::from_static(v.as_bytes())),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn columns_follow_the_picked_rows_and_match_their_fields() {
        let records = vec![
            record(7, Some(b"k\xff"), vec![("a", Some("1")), ("a", None)]),
            record(8, None, vec![]),
        ];
        let rows = [1, 0];
        let fields: Vec<Field> = Meta::ALL.iter().map(|m| m.field()).collect();
        let columns: Vec<ArrayRef> = Meta::ALL.iter().map(|m| m.build(&records, &rows)).collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let offsets = batch.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(offsets.values(), &[8, 7]);
        let keys = batch.column(3).as_any().downcast_ref::<StringArray>().unwrap();
        assert!(keys.is_null(0));
        assert_eq!(keys.value(1), "k\u{fffd}");
        let headers = batch.column(4).as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(headers.value(0).len(), 0);
        let second = headers.value(1);
        let entries = second.as_any().downcast_ref::<StructArray>().unwrap();
        assert_eq!(entries.len(), 2, "duplicate header keys are kept");
        assert!(entries.column(1).is_null(1));
    }
}

//! How a query's result rows become records of its target stream: values encoded in the
//! target's format, keys taken as the query says.
//!
//! The key rule: a result column named `_key` is the key and is left out of the value; else the
//! target stream's `key` column (kept in the value); else records have no key. A key is the
//! column's value as text (a string as is, a number in decimal); a null makes no key.

use std::sync::Arc;

use brook_broker::access::OutRecord;
use bytes::Bytes;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::catalog::StreamDef;
use crate::error::{Error, Result};
use crate::format::{encoder, RecordEncoder};

/// The result column that, when present, is the key and not part of the value.
pub const KEY_COLUMN: &str = "_key";

/// Turns result batches into records for the target stream.
pub struct OutputWriter {
    encoder: Box<dyn RecordEncoder>,
    /// The result column holding the key, if any.
    key: Option<usize>,
    /// The result columns that make the value, by index.
    value_columns: Vec<usize>,
    value_schema: SchemaRef,
}

impl OutputWriter {
    /// A writer of rows with `schema` into `target`.
    pub fn new(target: &StreamDef, schema: &SchemaRef) -> Result<OutputWriter> {
        let dedicated = schema.index_of(KEY_COLUMN).ok();
        let key = match (dedicated, &target.key_column) {
            (Some(i), _) => Some(i),
            (None, Some(name)) => Some(schema.index_of(name).map_err(|_| {
                Error::Catalog(format!(
                    "stream {} is keyed by column {name}, which the query does not produce",
                    target.name
                ))
            })?),
            (None, None) => None,
        };
        let value_columns: Vec<usize> = (0..schema.fields().len()).filter(|i| Some(*i) != dedicated).collect();
        let value_schema = Arc::new(schema.project(&value_columns)?);
        let encoder = encoder(&target.format, value_schema.clone())?;
        Ok(OutputWriter {
            encoder,
            key,
            value_columns,
            value_schema,
        })
    }

    /// The schema of what is encoded (the result without a `_key` column).
    pub fn value_schema(&self) -> SchemaRef {
        self.value_schema.clone()
    }

    /// One record per row of `batch`, in row order.
    pub fn records(&self, batch: &RecordBatch) -> Result<Vec<OutRecord>> {
        let values = self.encoder.encode(&batch.project(&self.value_columns)?)?;
        let keys = match self.key {
            Some(i) => keys(batch, i)?,
            None => vec![None; batch.num_rows()],
        };
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(key, value)| OutRecord {
                key,
                value: Some(value),
                ..OutRecord::default()
            })
            .collect())
    }
}

/// The text of column `i` for every row; None for nulls.
fn keys(batch: &RecordBatch, i: usize) -> Result<Vec<Option<Bytes>>> {
    let column = batch.column(i);
    let options = FormatOptions::default();
    let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
    Ok((0..batch.num_rows())
        .map(|row| (!column.is_null(row)).then(|| Bytes::from(formatter.value(row).to_string())))
        .collect())
}

/// The schema a stream created `AS SELECT` declares: the result's columns without `_key`.
pub fn stream_schema(result: &Schema) -> SchemaRef {
    let fields: Vec<_> = result
        .fields()
        .iter()
        .filter(|f| f.name() != KEY_COLUMN)
        .cloned()
        .collect();
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Format, FormatSpec};
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field};

    fn target(key: Option<&str>) -> StreamDef {
        StreamDef {
            name: "out".into(),
            topic: "out".into(),
            format: FormatSpec::new(Format::Json),
            key_column: key.map(String::from),
        }
    }

    fn batch(names: [&str; 2]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(names[0], DataType::Utf8, true),
            Field::new(names[1], DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Int64Array::from(vec![Some(7), Some(8)])),
            ],
        )
        .unwrap()
    }

    fn pairs(records: Vec<OutRecord>) -> Vec<(Option<String>, String)> {
        let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
        records
            .into_iter()
            .map(|r| (text(r.key), text(r.value).unwrap()))
            .collect()
    }

    #[test]
    fn a_key_column_is_the_key_and_leaves_the_value() {
        let b = batch(["_key", "n"]);
        let w = OutputWriter::new(&target(None), &b.schema()).unwrap();
        assert_eq!(
            pairs(w.records(&b).unwrap()),
            vec![(Some("a".into()), r#"{"n":7}"#.into()), (None, r#"{"n":8}"#.into())]
        );
    }

    #[test]
    fn the_streams_key_column_keys_and_stays_in_the_value() {
        let b = batch(["s", "n"]);
        let w = OutputWriter::new(&target(Some("n")), &b.schema()).unwrap();
        assert_eq!(
            pairs(w.records(&b).unwrap()),
            vec![
                (Some("7".into()), r#"{"s":"a","n":7}"#.into()),
                (Some("8".into()), r#"{"n":8}"#.into())
            ]
        );
        let unkeyed = OutputWriter::new(&target(None), &b.schema()).unwrap();
        assert!(unkeyed.records(&b).unwrap().iter().all(|r| r.key.is_none()));
        assert!(OutputWriter::new(&target(Some("missing")), &b.schema()).is_err());
    }
}

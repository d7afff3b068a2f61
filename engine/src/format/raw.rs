//! The raw formats: `lines` reads each value as one UTF-8 text column `line`, `bytes` as one
//! binary column `value`. A tombstone is a null row in both; neither format ever rejects a value
//! except `lines` one that is not UTF-8.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use super::{Decoded, RecordDecoder, RecordEncoder};
use crate::error::{Error, Result};

/// The column the `lines` format reads into.
pub const LINE_COLUMN: &str = "line";
/// The column the `bytes` format reads into.
pub const VALUE_COLUMN: &str = "value";

/// The value columns of the `lines` format.
pub fn lines_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(LINE_COLUMN, DataType::Utf8, true)]))
}

/// The value columns of the `bytes` format.
pub fn bytes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(VALUE_COLUMN, DataType::Binary, true)]))
}

/// Decodes each value as one line of UTF-8 text, kept verbatim (a trailing newline stays).
pub(crate) struct LinesDecoder;

impl RecordDecoder for LinesDecoder {
    fn schema(&self) -> SchemaRef {
        lines_schema()
    }

    fn decode(&self, values: &[Option<&[u8]>]) -> Result<Decoded> {
        let bytes_total: usize = values.iter().flatten().map(|v| v.len()).sum();
        let mut builder = StringBuilder::with_capacity(values.len(), bytes_total);
        let mut rows = Vec::with_capacity(values.len());
        let mut failed = Vec::new();
        for (i, value) in values.iter().enumerate() {
            match value.map(std::str::from_utf8) {
                None => builder.append_null(),
                Some(Ok(text)) => builder.append_value(text),
                Some(Err(e)) => {
                    failed.push((i, format!("not valid UTF-8: {e}")));
                    continue;
                }
            }
            rows.push(i);
        }
        let column: ArrayRef = Arc::new(builder.finish());
        Ok(Decoded {
            batch: RecordBatch::try_new(lines_schema(), vec![column])?,
            rows,
            failed,
        })
    }
}

/// Decodes each value as opaque bytes.
pub(crate) struct BytesDecoder;

impl RecordDecoder for BytesDecoder {
    fn schema(&self) -> SchemaRef {
        bytes_schema()
    }

    fn decode(&self, values: &[Option<&[u8]>]) -> Result<Decoded> {
        let bytes_total: usize = values.iter().flatten().map(|v| v.len()).sum();
        let mut builder = BinaryBuilder::with_capacity(values.len(), bytes_total);
        for value in values {
            builder.append_option(*value);
        }
        let column: ArrayRef = Arc::new(builder.finish());
        let batch = RecordBatch::try_new(bytes_schema(), vec![column])?;
        Ok(Decoded {
            batch,
            rows: (0..values.len()).collect(),
            failed: Vec::new(),
        })
    }
}

/// Picks the one column a raw encoder writes: the only column, or the one named `preferred`.
fn pick_column(schema: &SchemaRef, preferred: &str, format: &str) -> Result<usize> {
    if schema.fields().len() == 1 {
        return Ok(0);
    }
    schema.index_of(preferred).map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        Error::Schema(format!(
            "the {format} format writes one column (or one named {preferred:?}), but the rows have {}: {}",
            names.len(),
            names.join(", ")
        ))
    })
}

/// Encodes one column as text (cast to Utf8 if need be); a null row encodes as an empty value.
pub(crate) struct LinesEncoder {
    column: usize,
}

impl LinesEncoder {
    pub(crate) fn new(schema: &SchemaRef) -> Result<Self> {
        Ok(LinesEncoder {
            column: pick_column(schema, LINE_COLUMN, "lines")?,
        })
    }
}

impl RecordEncoder for LinesEncoder {
    fn encode(&self, batch: &RecordBatch) -> Result<Vec<Bytes>> {
        let column = cast(batch.column(self.column), &DataType::Utf8)?;
        let text = column.as_string::<i32>();
        Ok((0..text.len())
            .map(|i| {
                if text.is_null(i) {
                    Bytes::new()
                } else {
                    Bytes::copy_from_slice(text.value(i).as_bytes())
                }
            })
            .collect())
    }
}

/// Encodes one column as bytes: binary as is, text as its UTF-8, other types cast to text; a null
/// row encodes as an empty value.
pub(crate) struct BytesEncoder {
    column: usize,
}

impl BytesEncoder {
    pub(crate) fn new(schema: &SchemaRef) -> Result<Self> {
        Ok(BytesEncoder {
            column: pick_column(schema, VALUE_COLUMN, "bytes")?,
        })
    }
}

impl RecordEncoder for BytesEncoder {
    fn encode(&self, batch: &RecordBatch) -> Result<Vec<Bytes>> {
        let source = batch.column(self.column);
        let column = match source.data_type() {
            DataType::Binary => source.clone(),
            DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::LargeBinary
            | DataType::BinaryView => cast(source, &DataType::Binary)?,
            _ => cast(&cast(source, &DataType::Utf8)?, &DataType::Binary)?,
        };
        let binary = column.as_binary::<i32>();
        Ok((0..binary.len())
            .map(|i| {
                if binary.is_null(i) {
                    Bytes::new()
                } else {
                    Bytes::copy_from_slice(binary.value(i))
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;

    use super::*;
    use crate::format::{decoder, encoder, Format, FormatSpec};

    #[test]
    fn lines_and_bytes_keep_nulls_and_round_trip() {
        let values: Vec<Option<&[u8]>> = vec![Some(b"GET /a 200"), None, Some(b""), Some("é\n".as_bytes())];
        for format in [Format::Lines, Format::Bytes] {
            let spec = FormatSpec::new(format);
            let out = decoder(&spec).unwrap().decode(&values).unwrap();
            assert_eq!(out.rows, vec![0, 1, 2, 3], "{format:?}");
            assert!(out.failed.is_empty());
            assert_eq!(out.batch.column(0).null_count(), 1);
            let encoded = encoder(&spec, out.batch.schema()).unwrap().encode(&out.batch).unwrap();
            let expected: Vec<&[u8]> = values.iter().map(|v| v.unwrap_or_default()).collect();
            assert_eq!(
                encoded.iter().map(|b| b.as_ref()).collect::<Vec<_>>(),
                expected,
                "{format:?}"
            );
        }
    }

    #[test]
    fn lines_reject_invalid_utf8_and_bytes_do_not() {
        let values: Vec<Option<&[u8]>> = vec![Some(b"ok"), Some(&[0xff, 0xfe])];
        let lines = decoder(&FormatSpec::new(Format::Lines))
            .unwrap()
            .decode(&values)
            .unwrap();
        assert_eq!(lines.rows, vec![0]);
        assert_eq!(lines.failed.len(), 1);
        assert!(lines.failed[0].1.contains("UTF-8"), "{:?}", lines.failed);
        let bytes = decoder(&FormatSpec::new(Format::Bytes))
            .unwrap()
            .decode(&values)
            .unwrap();
        assert_eq!(bytes.rows, vec![0, 1]);
    }

    #[test]
    fn raw_encoders_cast_one_column_and_refuse_several() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![Some(7), None]))]).unwrap();
        for format in [Format::Lines, Format::Bytes] {
            let out = encoder(&FormatSpec::new(format), schema.clone())
                .unwrap()
                .encode(&batch)
                .unwrap();
            assert_eq!(out, vec![Bytes::from("7"), Bytes::new()]);
        }
        let two = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let err = encoder(&FormatSpec::new(Format::Lines), two).err().unwrap().to_string();
        assert!(err.contains("a, b"), "{err}");
    }
}

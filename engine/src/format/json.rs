//! JSON record values (one object per record) decoded straight into Arrow with arrow-json's
//! vectorised decoder, isolating the records that do not decode instead of failing the batch.
//!
//! The fast path hands every value to one arrow-json `Decoder`, separated by newlines. arrow-json
//! fails a whole batch on one bad row, so when that happens (or the row count does not match the
//! value count) the values are first checked one by one with serde_json (valid JSON, exactly one
//! object), and the survivors are decoded again in bulk; if Arrow still refuses (a field's type
//! conflicts with the schema), the range is bisected until each bad record is alone, so k bad
//! records cost O(k log n) bulk decodes and good records always decode in bulk.

use bytes::Bytes;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::reader::Decoder;
use datafusion::arrow::json::writer::LineDelimited;
use datafusion::arrow::json::{ReaderBuilder, WriterBuilder};
use datafusion::arrow::record_batch::RecordBatch;

use super::{decode_isolating, feed_lines, split_lines, Decoded, RecordDecoder, RecordEncoder};
use crate::error::{Error, Result};

/// Decodes JSON objects into rows of a declared or inferred schema. Fields absent from the schema
/// are ignored, absent fields are null, numbers and booleans are accepted into text columns, and
/// numeric text into numeric columns (arrow-json's coercions).
pub(crate) struct JsonDecoder {
    schema: SchemaRef,
}

impl JsonDecoder {
    pub(crate) fn new(schema: SchemaRef) -> Self {
        JsonDecoder { schema }
    }

    /// Decodes `values` in one arrow-json pass; an error or a row count other than one per value.
    fn bulk(&self, values: &[&[u8]]) -> Result<RecordBatch, String> {
        let mut decoder = ReaderBuilder::new(self.schema.clone())
            .with_batch_size(values.len().max(1))
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(|e| arrow_reason(&e))?;
        let mut batches = Vec::new();
        feed_lines(&mut decoder, values, Decoder::decode, Decoder::flush, &mut batches)
            .map_err(|e| arrow_reason(&e))?;
        batches.extend(decoder.flush().map_err(|e| arrow_reason(&e))?);
        let batch = concat_batches(&self.schema, &batches).map_err(|e| arrow_reason(&e))?;
        if batch.num_rows() != values.len() {
            return Err(format!(
                "{} values decoded into {} rows",
                values.len(),
                batch.num_rows()
            ));
        }
        Ok(batch)
    }
}

impl RecordDecoder for JsonDecoder {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn decode(&self, values: &[Option<&[u8]>]) -> Result<Decoded> {
        let mut failed = Vec::new();
        // Cheap screen: a value must be present and look like one object ({...}); the others are
        // explained by serde_json now and never reach the bulk decoder.
        let mut good: Vec<usize> = Vec::with_capacity(values.len());
        for (i, value) in values.iter().enumerate() {
            match value {
                None => failed.push((i, "no value".to_string())),
                Some(v) if looks_like_object(v) => good.push(i),
                Some(v) => failed.push((i, check_object(v).err().unwrap_or_else(|| "not one JSON object".into()))),
            }
        }
        let slices: Vec<&[u8]> = good.iter().map(|&i| values[i].unwrap_or_default()).collect();
        if let Ok(batch) = self.bulk(&slices) {
            failed.sort_by_key(|f| f.0);
            return Ok(Decoded {
                batch,
                rows: good,
                failed,
            });
        }
        // Slow path: explain the values that are not exactly one JSON object, then bisect the rest.
        let mut checked = Vec::with_capacity(good.len());
        for i in good {
            match check_object(values[i].unwrap_or_default()) {
                Ok(()) => checked.push(i),
                Err(reason) => failed.push((i, reason)),
            }
        }
        let slices: Vec<&[u8]> = checked.iter().map(|&i| values[i].unwrap_or_default()).collect();
        decode_isolating(&self.schema, &|v: &[&[u8]]| self.bulk(v), &slices, &checked, failed)
    }
}

/// Whether the value, trimmed, starts with `{` and ends with `}`.
fn looks_like_object(value: &[u8]) -> bool {
    let trimmed = value.trim_ascii();
    trimmed.first() == Some(&b'{') && trimmed.last() == Some(&b'}')
}

/// Checks that `value` is exactly one JSON object, saying what it is otherwise.
fn check_object(value: &[u8]) -> Result<(), String> {
    match serde_json::from_slice::<serde_json::Value>(value) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(other) => Err(format!("expected a JSON object, found {}", json_kind(&other))),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// The name of a JSON value's type, with an article, for error messages.
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Arrow's message without its "Json error: " category prefix.
fn arrow_reason(e: &ArrowError) -> String {
    match e {
        ArrowError::JsonError(m) => m.clone(),
        other => other.to_string(),
    }
}

/// Encodes each row as one JSON object; null fields are left out.
pub(crate) struct JsonEncoder;

impl RecordEncoder for JsonEncoder {
    fn encode(&self, batch: &RecordBatch) -> Result<Vec<Bytes>> {
        let mut writer = WriterBuilder::new()
            .with_explicit_nulls(false)
            .build::<_, LineDelimited>(Vec::new());
        writer.write(batch)?;
        writer.finish()?;
        let out = writer.into_inner();
        // JSON escapes newlines inside strings, so there is exactly one line per row.
        split_lines(out, batch.num_rows()).ok_or_else(|| Error::Decode {
            format: "json",
            reason: "the JSON writer did not produce one line per row".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;
    use crate::format::{decoder, encoder, infer_schema, Format, FormatSpec};

    fn spec(fields: Vec<Field>) -> FormatSpec {
        FormatSpec::new(Format::Json).with_schema(Arc::new(Schema::new(fields)))
    }

    /// Decodes `values`, checks every input is a row or a failure, and returns the failed indexes.
    fn check(spec: &FormatSpec, values: &[Option<&str>]) -> (Decoded, Vec<usize>) {
        let d = decoder(spec).unwrap();
        let raw: Vec<Option<&[u8]>> = values.iter().map(|v| v.map(str::as_bytes)).collect();
        let out = d.decode(&raw).unwrap();
        assert_eq!(out.batch.num_rows(), out.rows.len());
        assert_eq!(out.rows.len() + out.failed.len(), values.len());
        let failed = out.failed.iter().map(|f| f.0).collect();
        (out, failed)
    }

    /// Values, rows expected, failures expected, and a substring of each failure's reason.
    type Case = (Vec<Option<&'static str>>, Vec<usize>, Vec<usize>, Vec<&'static str>);

    #[test]
    fn bad_records_are_isolated_with_reasons_and_good_ones_decode() {
        let s = spec(vec![Field::new("a", DataType::Int64, true)]);
        let cases: Vec<Case> = vec![
            (
                vec![Some(r#"{"a":1}"#), Some("not json"), Some(r#"{"a":"x"}"#)],
                vec![0],
                vec![1, 2],
                vec!["not valid JSON", "x"],
            ),
            (
                vec![Some("[1,2]"), Some(r#"{"a":2}"#)],
                vec![1],
                vec![0],
                vec!["found an array"],
            ),
            (
                vec![Some("3"), None, Some(r#"{"a":3}"#)],
                vec![2],
                vec![0, 1],
                vec!["found a number", "no value"],
            ),
            (
                vec![Some(r#"{"a":1} {"a":2}"#), Some(r#"{"a":4}"#)],
                vec![1],
                vec![0],
                vec!["trailing"],
            ),
            (
                vec![Some(r#"{"a":1"#), Some(r#"{"a":5}"#)],
                vec![1],
                vec![0],
                vec!["not valid JSON"],
            ),
            (
                vec![Some(r#"{"a":{"b":1}}"#), Some(r#"{"a":6,"z":[1]}"#)],
                vec![1],
                vec![0],
                vec!["a"],
            ),
            (vec![Some(r#"{"a":"7"}"#), Some(r#"{}"#)], vec![0, 1], vec![], vec![]),
        ];
        for (values, rows, failed, reasons) in cases {
            let (out, got_failed) = check(&s, &values);
            assert_eq!(out.rows, rows, "{values:?}");
            assert_eq!(got_failed, failed, "{values:?}");
            for ((_, reason), want) in out.failed.iter().zip(&reasons) {
                assert!(reason.contains(want), "{values:?}: {reason:?} lacks {want:?}");
            }
        }
    }

    #[test]
    fn isolated_rows_keep_their_values_in_input_order() {
        let s = spec(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]);
        let values = [
            Some(r#"{"a":1,"b":"x"}"#),
            Some(r#"{"a":"bad"}"#),
            Some(r#"{"a":3,"b":4}"#),
            Some(r#"{"b":"only b"}"#),
            Some(r#"{"a":[5]}"#),
        ];
        let (out, failed) = check(&s, &values);
        assert_eq!((out.rows.clone(), failed), (vec![0, 2, 3], vec![1, 4]));
        let a = out.batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![Some(1), Some(3), None]);
        let b = out.batch.column(1).as_string::<i32>();
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![Some("x"), Some("4"), Some("only b")]);
    }

    #[test]
    fn round_trip_through_the_encoder() {
        let values = [
            r#"{"id":1,"name":"a\nb","score":1.5,"ok":true,"tags":["x"],"pos":{"x":1}}"#,
            r#"{"id":2}"#,
        ];
        let samples: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let schema = infer_schema(&FormatSpec::new(Format::Json), &samples).unwrap();
        let s = FormatSpec::new(Format::Json).with_schema(schema.clone());
        let raw: Vec<Option<&[u8]>> = samples.iter().map(|v| Some(*v)).collect();
        let first = decoder(&s).unwrap().decode(&raw).unwrap();
        assert!(first.failed.is_empty(), "{:?}", first.failed);
        let encoded = encoder(&s, schema).unwrap().encode(&first.batch).unwrap();
        assert_eq!(encoded.len(), 2);
        let again: Vec<Option<&[u8]>> = encoded.iter().map(|v| Some(v.as_ref())).collect();
        let second = decoder(&s).unwrap().decode(&again).unwrap();
        assert_eq!(first.batch, second.batch);
        let one: serde_json::Value = serde_json::from_slice(&encoded[0]).unwrap();
        assert_eq!(one, serde_json::from_str::<serde_json::Value>(values[0]).unwrap());
    }

    #[test]
    fn a_large_batch_decodes_in_one_go_and_a_bad_record_in_it_is_isolated() {
        let s = spec(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]);
        let mut values: Vec<String> = (0..10_000).map(|i| format!(r#"{{"n":{i},"s":"row {i}"}}"#)).collect();
        let d = decoder(&s).unwrap();
        let raw: Vec<Option<&[u8]>> = values.iter().map(|v| Some(v.as_bytes())).collect();
        let out = d.decode(&raw).unwrap();
        assert_eq!(out.batch.num_rows(), 10_000);
        assert_eq!(out.batch.column(0).as_primitive::<Int64Type>().value(9_999), 9_999);
        values[7_777] = r#"{"n":"seven"}"#.into();
        let raw: Vec<Option<&[u8]>> = values.iter().map(|v| Some(v.as_bytes())).collect();
        let out = d.decode(&raw).unwrap();
        assert_eq!(out.failed.iter().map(|f| f.0).collect::<Vec<_>>(), vec![7_777]);
        assert_eq!(out.batch.num_rows(), 9_999);
        assert_eq!(out.rows[7_777], 7_778);
        assert_eq!(out.batch.column(0).as_primitive::<Int64Type>().value(7_777), 7_778);
        assert_eq!(out.batch.column(0).null_count(), 0);
    }
}

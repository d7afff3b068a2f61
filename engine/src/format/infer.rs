//! Schema inference: the value columns of a topic guessed from a bounded sample of its values,
//! for when the user declares none.
//!
//! JSON: the union of the sampled objects' fields, in first-seen order, each typed by widening
//! what was seen: Int64 < Float64 < Utf8, Boolean with a number is Utf8, null with anything is
//! that thing (and alone Utf8). Nested objects become Struct columns (inferred the same way, so
//! DataFusion can reach `col['field']`) and arrays List columns; a field seen both as an object or
//! array and as a scalar is Utf8, and records with an object or array there then fail to decode
//! (declare the schema to read them). Timestamps stay Utf8 unless declared. Samples that are not
//! JSON objects are skipped. CSV: columns c1..cN (or the header's names), N the widest sampled
//! row, each Int64, Float64, Boolean or Utf8 by sniffing. lines, bytes and avro have fixed or given
//! schemas. Every field is nullable. No samples at all (an empty topic) infer no value columns.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use serde_json::Value;

use super::{avro, csv, raw, Format, FormatSpec};
use crate::error::{Error, Result};

/// The most samples inference looks at; more are ignored.
pub const MAX_INFER_SAMPLES: usize = 1000;

/// How deep nested objects and arrays are followed before the rest is typed Utf8.
const MAX_NESTING_DEPTH: usize = 16;

/// Infers value columns from sample values (at most [`MAX_INFER_SAMPLES`] are used).
pub fn infer_schema(spec: &FormatSpec, samples: &[&[u8]]) -> Result<SchemaRef> {
    let samples = &samples[..samples.len().min(MAX_INFER_SAMPLES)];
    match spec.format {
        Format::Json => infer_json(samples),
        Format::Csv => csv::infer(samples, spec.csv_delimiter, spec.csv_header),
        Format::Avro => avro::arrow_schema(&avro::parse_schema(avro::require_schema(spec)?)?),
        Format::Lines => Ok(raw::lines_schema()),
        Format::Bytes => Ok(raw::bytes_schema()),
    }
}

/// A type being inferred: Null until a non-null value is seen.
#[derive(Debug, Clone, PartialEq)]
enum Guess {
    Null,
    Bool,
    Int,
    Float,
    Text,
    List(Box<Guess>),
    Object(Vec<(String, Guess)>),
}

fn infer_json(samples: &[&[u8]]) -> Result<SchemaRef> {
    let mut fields: Vec<(String, Guess)> = Vec::new();
    let mut objects = 0;
    for sample in samples {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(sample) {
            objects += 1;
            merge_object(&mut fields, &map, 0);
        }
    }
    if objects == 0 && !samples.is_empty() {
        return Err(Error::Schema(format!(
            "none of the {} sampled values is a JSON object: declare the columns or check the format",
            samples.len()
        )));
    }
    Ok(Arc::new(Schema::new(
        fields
            .into_iter()
            .map(|(name, g)| to_field(name, g))
            .collect::<Vec<_>>(),
    )))
}

fn merge_object(fields: &mut Vec<(String, Guess)>, map: &serde_json::Map<String, Value>, depth: usize) {
    for (name, value) in map {
        let guess = guess(value, depth + 1);
        match fields.iter_mut().find(|(n, _)| n == name) {
            Some((_, existing)) => *existing = widen(std::mem::replace(existing, Guess::Null), guess),
            None => fields.push((name.clone(), guess)),
        }
    }
}

fn guess(value: &Value, depth: usize) -> Guess {
    match value {
        Value::Null => Guess::Null,
        Value::Bool(_) => Guess::Bool,
        Value::Number(n) if n.is_i64() => Guess::Int,
        Value::Number(_) => Guess::Float,
        Value::String(_) => Guess::Text,
        _ if depth >= MAX_NESTING_DEPTH => Guess::Text,
        Value::Array(items) => Guess::List(Box::new(
            items.iter().map(|v| guess(v, depth + 1)).fold(Guess::Null, widen),
        )),
        Value::Object(map) => {
            let mut fields = Vec::new();
            merge_object(&mut fields, map, depth);
            Guess::Object(fields)
        }
    }
}

/// The narrowest guess both `a` and `b` fit.
fn widen(a: Guess, b: Guess) -> Guess {
    use Guess::*;
    match (a, b) {
        (Null, x) | (x, Null) => x,
        (a, b) if a == b => a,
        (Int, Float) | (Float, Int) => Float,
        (List(a), List(b)) => List(Box::new(widen(*a, *b))),
        (Object(mut a), Object(b)) => {
            for (name, g) in b {
                match a.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, existing)) => *existing = widen(std::mem::replace(existing, Null), g),
                    None => a.push((name, g)),
                }
            }
            Object(a)
        }
        _ => Text,
    }
}

fn to_type(g: Guess) -> DataType {
    match g {
        Guess::Null | Guess::Text => DataType::Utf8,
        Guess::Bool => DataType::Boolean,
        Guess::Int => DataType::Int64,
        Guess::Float => DataType::Float64,
        Guess::List(item) => DataType::List(Arc::new(Field::new("item", to_type(*item), true))),
        Guess::Object(fields) => DataType::Struct(Fields::from(
            fields.into_iter().map(|(n, g)| to_field(n, g)).collect::<Vec<_>>(),
        )),
    }
}

fn to_field(name: String, g: Guess) -> Field {
    Field::new(name, to_type(g), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (samples, expected "name:type" list)
    fn check(samples: &[&str], expected: &[&str]) {
        let raw: Vec<&[u8]> = samples.iter().map(|s| s.as_bytes()).collect();
        let schema = infer_schema(&FormatSpec::new(Format::Json), &raw).unwrap();
        let got: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("{}:{}", f.name(), f.data_type()))
            .collect();
        assert_eq!(got, expected, "{samples:?}");
    }

    #[test]
    fn json_types_widen_across_samples() {
        check(&[r#"{"a":1}"#, r#"{"a":2.5}"#], &["a:Float64"]);
        check(&[r#"{"a":1}"#, r#"{"a":"x"}"#, r#"{"a":2.0}"#], &["a:Utf8"]);
        check(&[r#"{"a":null}"#, r#"{"a":true}"#], &["a:Boolean"]);
        check(&[r#"{"a":true}"#, r#"{"a":1}"#], &["a:Utf8"]);
        check(&[r#"{"a":null}"#], &["a:Utf8"]);
        check(
            &[r#"{"a":1}"#, "not json", "[1]", r#"{"b":"t","a":3}"#],
            &["a:Int64", "b:Utf8"],
        );
        check(&[r#"{"ts":"2026-01-01T00:00:00Z"}"#], &["ts:Utf8"]);
        check(&[r#"{"l":[1,2.5]}"#, r#"{"l":[]}"#], &["l:List(Float64)"]);
        check(
            &[r#"{"o":{"x":1}}"#, r#"{"o":{"y":"z"}}"#],
            &[r#"o:Struct("x": Int64, "y": Utf8)"#],
        );
        check(&[r#"{"o":{"x":1}}"#, r#"{"o":5}"#], &["o:Utf8"]);
        check(&[], &[]);
    }

    #[test]
    fn json_inference_needs_one_object_and_uses_a_bounded_sample() {
        let err = infer_schema(&FormatSpec::new(Format::Json), &[b"1", b"x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("none of the 2 sampled values"), "{err}");
        let mut samples: Vec<String> = (0..MAX_INFER_SAMPLES).map(|_| r#"{"a":1}"#.to_string()).collect();
        samples.push(r#"{"late":1}"#.into());
        let raw: Vec<&[u8]> = samples.iter().map(|s| s.as_bytes()).collect();
        let schema = infer_schema(&FormatSpec::new(Format::Json), &raw).unwrap();
        assert_eq!(schema.fields().len(), 1);
    }

    #[test]
    fn raw_formats_have_fixed_schemas() {
        let lines = infer_schema(&FormatSpec::new(Format::Lines), &[]).unwrap();
        assert_eq!(lines.field(0).name(), "line");
        let bytes = infer_schema(&FormatSpec::new(Format::Bytes), &[]).unwrap();
        assert_eq!(bytes.field(0).data_type(), &DataType::Binary);
    }
}

//! Avro record values, read and written with a writer schema given inline (or from a file, by the
//! caller) through the `apache-avro` crate.
//!
//! Kafka Avro without a schema registry is one raw binary datum per record. Records framed in the
//! Confluent wire format (magic byte 0, a 4-byte big-endian schema id, then the datum) are read
//! too: the schema id is ignored and the inline schema is used. Framing is detected per record:
//! a value that starts with byte 0 and decodes exactly (no byte left over) after skipping the
//! 5-byte prefix is Confluent-framed; otherwise it must decode exactly as a raw datum. The encoder
//! writes raw datums.
//!
//! Columns: a record schema gives one column per field, any other schema one column `value`.
//! boolean, int, long, float, double, string, bytes, enum (text), fixed (binary), uuid (text),
//! date, timestamp-millis/micros/nanos (local ones too, without a time zone) map to their Arrow
//! types; a union of null and one type is that type, nullable. Nested records, arrays, maps, other
//! unions and decimals are read as Utf8 holding their JSON text, and cannot be written yet.

use std::sync::Arc;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{RecordField, RecordSchema, UnionSchema};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema as AvroSchema;
use bytes::Bytes;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int32Array,
    Int64Array, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Field, Float32Type, Float64Type, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
};
use datafusion::arrow::record_batch::RecordBatch;

use super::{Decoded, FormatSpec, RecordDecoder, RecordEncoder};
use crate::error::{Error, Result};

/// The bytes of the Confluent wire format's prefix: magic byte 0 and a 4-byte schema id.
const CONFLUENT_PREFIX_BYTES: usize = 5;
/// The column a non-record Avro schema is read into.
const VALUE_COLUMN: &str = "value";

/// The spec's Avro schema text, or why there is none.
pub(crate) fn require_schema(spec: &FormatSpec) -> Result<&str> {
    spec.avro_schema.as_deref().ok_or_else(|| {
        Error::Schema("avro values need an Avro schema: give it inline (avro_schema) or in a file".into())
    })
}

/// Parses Avro schema JSON text.
pub(crate) fn parse_schema(text: &str) -> Result<AvroSchema> {
    AvroSchema::parse_str(text).map_err(|e| Error::Schema(format!("invalid Avro schema: {e}")))
}

/// The Arrow type an Avro schema is read as, and whether it is nullable.
fn arrow_type(schema: &AvroSchema) -> (DataType, bool) {
    let t = match schema {
        AvroSchema::Null => return (DataType::Utf8, true),
        AvroSchema::Boolean => DataType::Boolean,
        AvroSchema::Int | AvroSchema::TimeMillis => DataType::Int32,
        AvroSchema::Long | AvroSchema::TimeMicros => DataType::Int64,
        AvroSchema::Float => DataType::Float32,
        AvroSchema::Double => DataType::Float64,
        AvroSchema::Bytes | AvroSchema::Fixed(_) => DataType::Binary,
        AvroSchema::String | AvroSchema::Enum(_) | AvroSchema::Uuid(_) => DataType::Utf8,
        AvroSchema::Date => DataType::Date32,
        AvroSchema::TimestampMillis | AvroSchema::LocalTimestampMillis => {
            DataType::Timestamp(TimeUnit::Millisecond, None)
        }
        AvroSchema::TimestampMicros | AvroSchema::LocalTimestampMicros => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        AvroSchema::TimestampNanos | AvroSchema::LocalTimestampNanos => DataType::Timestamp(TimeUnit::Nanosecond, None),
        AvroSchema::Union(u) => match nullable_branch(u) {
            Some((_, inner)) => return (arrow_type(inner).0, true),
            None => DataType::Utf8,
        },
        _ => DataType::Utf8,
    };
    (t, false)
}

/// For a union of null and one other type: the other type's index and schema.
fn nullable_branch(union: &UnionSchema) -> Option<(usize, &AvroSchema)> {
    let variants = union.variants();
    if variants.len() != 2 || !union.is_nullable() {
        return None;
    }
    variants
        .iter()
        .enumerate()
        .find(|(_, s)| !matches!(s, AvroSchema::Null))
}

/// The Arrow columns an Avro schema is read as.
pub(crate) fn arrow_schema(schema: &AvroSchema) -> Result<SchemaRef> {
    let fields: Vec<Field> = match schema {
        AvroSchema::Record(RecordSchema { fields, .. }) => fields
            .iter()
            .map(|f| {
                let (t, nullable) = arrow_type(&f.schema);
                Field::new(&f.name, t, nullable)
            })
            .collect(),
        other => {
            let (t, nullable) = arrow_type(other);
            vec![Field::new(VALUE_COLUMN, t, nullable)]
        }
    };
    Ok(Arc::new(Schema::new(fields)))
}

/// Decodes raw or Confluent-framed Avro datums written with one schema.
pub(crate) struct AvroDecoder {
    avro: AvroSchema,
    schema: SchemaRef,
}

impl AvroDecoder {
    /// A decoder for datums written with `text`. A declared Arrow schema, if any, is not used: the
    /// columns always follow the Avro schema.
    pub(crate) fn new(text: &str, _declared: Option<SchemaRef>) -> Result<Self> {
        let avro = parse_schema(text)?;
        let schema = arrow_schema(&avro)?;
        Ok(AvroDecoder { avro, schema })
    }
}

/// Reads one datum that must use every byte of `bytes`.
fn read_exact(reader: &GenericDatumReader<'_>, bytes: &[u8]) -> Result<Value, String> {
    let mut rest = bytes;
    let value = reader
        .read_value(&mut rest)
        .map_err(|e| format!("not a datum of the Avro schema: {e}"))?;
    match rest.len() {
        0 => Ok(value),
        n => Err(format!("{n} bytes left over after the Avro datum")),
    }
}

/// The value's datum, trying the Confluent framing first when the magic byte is there.
fn read_record(reader: &GenericDatumReader<'_>, bytes: &[u8]) -> Result<Value, String> {
    if bytes.len() > CONFLUENT_PREFIX_BYTES && bytes[0] == 0 {
        if let Ok(value) = read_exact(reader, &bytes[CONFLUENT_PREFIX_BYTES..]) {
            return Ok(value);
        }
    }
    read_exact(reader, bytes)
}

impl RecordDecoder for AvroDecoder {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn decode(&self, values: &[Option<&[u8]>]) -> Result<Decoded> {
        let reader = GenericDatumReader::builder(&self.avro)
            .build()
            .map_err(|e| Error::Schema(format!("invalid Avro schema: {e}")))?;
        let mut rows = Vec::with_capacity(values.len());
        let mut records: Vec<Vec<Value>> = Vec::with_capacity(values.len());
        let mut failed = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let Some(bytes) = value else {
                failed.push((i, "no value".to_string()));
                continue;
            };
            match read_record(&reader, bytes) {
                Ok(Value::Record(fields)) if matches!(self.avro, AvroSchema::Record(_)) => {
                    records.push(fields.into_iter().map(|(_, v)| v).collect());
                }
                Ok(other) => records.push(vec![other]),
                Err(reason) => {
                    failed.push((i, reason));
                    continue;
                }
            }
            rows.push(i);
        }
        let columns = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(j, field)| {
                column(
                    field.data_type(),
                    records.iter().map(|r| r.get(j).unwrap_or(&Value::Null)),
                )
            })
            .collect::<Vec<_>>();
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        Ok(Decoded { batch, rows, failed })
    }
}

/// Unwraps a union value to the value it holds.
fn unwrap_union(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => unwrap_union(inner),
        other => other,
    }
}

/// Builds one Arrow column of `data_type` from decoded Avro values; a value of another kind than
/// the schema promises (which the reader does not produce) is null.
fn column<'a>(data_type: &DataType, values: impl Iterator<Item = &'a Value>) -> ArrayRef {
    let values = values.map(unwrap_union);
    match data_type {
        DataType::Boolean => Arc::new(
            values
                .map(|v| if let Value::Boolean(b) = v { Some(*b) } else { None })
                .collect::<BooleanArray>(),
        ),
        DataType::Int32 => Arc::new(
            values
                .map(|v| match v {
                    Value::Int(n) | Value::TimeMillis(n) => Some(*n),
                    _ => None,
                })
                .collect::<Int32Array>(),
        ),
        DataType::Int64 => Arc::new(
            values
                .map(|v| match v {
                    Value::Long(n) | Value::TimeMicros(n) => Some(*n),
                    _ => None,
                })
                .collect::<Int64Array>(),
        ),
        DataType::Float32 => Arc::new(
            values
                .map(|v| if let Value::Float(f) = v { Some(*f) } else { None })
                .collect::<Float32Array>(),
        ),
        DataType::Float64 => Arc::new(
            values
                .map(|v| if let Value::Double(f) = v { Some(*f) } else { None })
                .collect::<Float64Array>(),
        ),
        DataType::Date32 => Arc::new(
            values
                .map(|v| if let Value::Date(d) = v { Some(*d) } else { None })
                .collect::<Date32Array>(),
        ),
        DataType::Timestamp(unit, _) => {
            let ts = values.map(|v| match v {
                Value::TimestampMillis(t)
                | Value::LocalTimestampMillis(t)
                | Value::TimestampMicros(t)
                | Value::LocalTimestampMicros(t)
                | Value::TimestampNanos(t)
                | Value::LocalTimestampNanos(t) => Some(*t),
                _ => None,
            });
            match unit {
                TimeUnit::Millisecond => Arc::new(ts.collect::<TimestampMillisecondArray>()),
                TimeUnit::Microsecond => Arc::new(ts.collect::<TimestampMicrosecondArray>()),
                _ => Arc::new(ts.collect::<TimestampNanosecondArray>()),
            }
        }
        DataType::Binary => Arc::new(
            values
                .map(|v| match v {
                    Value::Bytes(b) | Value::Fixed(_, b) => Some(b.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .iter()
                .map(|b| b.as_deref())
                .collect::<BinaryArray>(),
        ),
        _ => Arc::new(
            values
                .map(|v| match v {
                    Value::Null => None,
                    Value::String(s) | Value::Enum(_, s) => Some(s.clone()),
                    Value::Uuid(u) => Some(u.to_string()),
                    other => serde_json::Value::try_from(other.clone()).ok().map(|j| j.to_string()),
                })
                .collect::<StringArray>(),
        ),
    }
}

/// Encodes each row as one raw Avro datum.
pub(crate) struct AvroEncoder {
    avro: AvroSchema,
    /// For each Avro record field (or the one non-record value): the column it is read from, and
    /// the Arrow type that column is cast to; None for a nullable field with no column.
    sources: Vec<Option<(usize, DataType)>>,
}

impl AvroEncoder {
    /// An encoder writing with `text`, or with a record schema derived from `schema`.
    pub(crate) fn new(text: Option<&str>, schema: &SchemaRef) -> Result<Self> {
        let avro = match text {
            Some(text) => parse_schema(text)?,
            None => derive_schema(schema)?,
        };
        let targets: Vec<(&str, &AvroSchema)> = match &avro {
            AvroSchema::Record(RecordSchema { fields, .. }) => fields
                .iter()
                .map(|f: &RecordField| (f.name.as_str(), &f.schema))
                .collect(),
            other => vec![(VALUE_COLUMN, other)],
        };
        let mut sources = Vec::with_capacity(targets.len());
        for (name, field_schema) in targets {
            let (data_type, nullable) = arrow_type(field_schema);
            let writable = matches!(unwrap_nullable(field_schema), s if !matches!(s,
                AvroSchema::Array(_) | AvroSchema::Map(_) | AvroSchema::Record(_) | AvroSchema::Union(_)
                | AvroSchema::Decimal(_) | AvroSchema::BigDecimal | AvroSchema::Duration(_) | AvroSchema::Ref { .. }
                | AvroSchema::Null));
            if !writable {
                return Err(Error::Schema(format!(
                    "writing the Avro field {name:?} of this type is not supported yet"
                )));
            }
            let index = schema
                .index_of(name)
                .ok()
                .or((schema.fields().len() == 1 && !matches!(avro, AvroSchema::Record(_))).then_some(0));
            match index {
                Some(i) => sources.push(Some((i, data_type))),
                None if nullable => sources.push(None),
                None => {
                    return Err(Error::Schema(format!(
                        "the Avro schema needs a column {name:?}, which the rows lack"
                    )))
                }
            }
        }
        Ok(AvroEncoder { avro, sources })
    }
}

/// The schema a nullable union holds, or the schema itself.
fn unwrap_nullable(schema: &AvroSchema) -> &AvroSchema {
    match schema {
        AvroSchema::Union(u) => nullable_branch(u).map(|(_, s)| s).unwrap_or(schema),
        other => other,
    }
}

/// A record schema for Arrow columns: nullable columns are unions with null, types without an
/// Avro equivalent are written as strings.
fn derive_schema(schema: &SchemaRef) -> Result<AvroSchema> {
    let fields: Vec<serde_json::Value> = schema
        .fields()
        .iter()
        .map(|f| {
            let t = match f.data_type() {
                DataType::Boolean => serde_json::json!("boolean"),
                DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
                    serde_json::json!("int")
                }
                DataType::Int64 | DataType::UInt32 => serde_json::json!("long"),
                DataType::Float32 => serde_json::json!("float"),
                DataType::Float64 => serde_json::json!("double"),
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView => serde_json::json!("bytes"),
                DataType::Date32 => serde_json::json!({"type": "int", "logicalType": "date"}),
                DataType::Timestamp(TimeUnit::Millisecond, _) => {
                    serde_json::json!({"type": "long", "logicalType": "timestamp-millis"})
                }
                DataType::Timestamp(TimeUnit::Microsecond, _) => {
                    serde_json::json!({"type": "long", "logicalType": "timestamp-micros"})
                }
                _ => serde_json::json!("string"),
            };
            let t = if f.is_nullable() {
                serde_json::json!(["null", t])
            } else {
                t
            };
            serde_json::json!({"name": f.name(), "type": t})
        })
        .collect();
    let text = serde_json::json!({"type": "record", "name": "row", "fields": fields}).to_string();
    parse_schema(&text)
}

/// The Avro value at `row` of `array` (already cast to `data_type`) for a field of `schema`.
fn avro_value(array: Option<&ArrayRef>, row: usize, schema: &AvroSchema) -> Value {
    if let AvroSchema::Union(u) = schema {
        let null_index = u
            .variants()
            .iter()
            .position(|s| matches!(s, AvroSchema::Null))
            .unwrap_or(0);
        return match (array, nullable_branch(u)) {
            (Some(a), Some((i, inner))) if !a.is_null(row) => {
                Value::Union(i as u32, Box::new(avro_value(Some(a), row, inner)))
            }
            _ => Value::Union(null_index as u32, Box::new(Value::Null)),
        };
    }
    let Some(a) = array.filter(|a| !a.is_null(row)) else {
        return Value::Null;
    };
    match a.data_type() {
        DataType::Boolean => Value::Boolean(a.as_boolean().value(row)),
        DataType::Int32 if matches!(schema, AvroSchema::TimeMillis) => {
            Value::TimeMillis(a.as_primitive::<Int32Type>().value(row))
        }
        DataType::Int32 => Value::Int(a.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 if matches!(schema, AvroSchema::TimeMicros) => {
            Value::TimeMicros(a.as_primitive::<Int64Type>().value(row))
        }
        DataType::Int64 => Value::Long(a.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => Value::Float(a.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => Value::Double(a.as_primitive::<Float64Type>().value(row)),
        DataType::Date32 => Value::Date(a.as_primitive::<Date32Type>().value(row)),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            let t = a.as_primitive::<TimestampMillisecondType>().value(row);
            if matches!(schema, AvroSchema::LocalTimestampMillis) {
                Value::LocalTimestampMillis(t)
            } else {
                Value::TimestampMillis(t)
            }
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let t = a.as_primitive::<TimestampMicrosecondType>().value(row);
            if matches!(schema, AvroSchema::LocalTimestampMicros) {
                Value::LocalTimestampMicros(t)
            } else {
                Value::TimestampMicros(t)
            }
        }
        DataType::Timestamp(_, _) => {
            let t = a.as_primitive::<TimestampNanosecondType>().value(row);
            if matches!(schema, AvroSchema::LocalTimestampNanos) {
                Value::LocalTimestampNanos(t)
            } else {
                Value::TimestampNanos(t)
            }
        }
        DataType::Binary => {
            let b = a.as_binary::<i32>().value(row).to_vec();
            match schema {
                AvroSchema::Fixed(f) => Value::Fixed(f.size, b),
                _ => Value::Bytes(b),
            }
        }
        _ => {
            let s = a.as_string::<i32>().value(row).to_string();
            match schema {
                AvroSchema::Enum(e) => match e.symbols.iter().position(|x| *x == s) {
                    Some(i) => Value::Enum(i as u32, s),
                    None => Value::String(s),
                },
                _ => Value::String(s),
            }
        }
    }
}

impl RecordEncoder for AvroEncoder {
    fn encode(&self, batch: &RecordBatch) -> Result<Vec<Bytes>> {
        let columns: Vec<Option<ArrayRef>> = self
            .sources
            .iter()
            .map(|s| s.as_ref().map(|(i, t)| cast(batch.column(*i), t)).transpose())
            .collect::<Result<_, _>>()?;
        let writer = GenericDatumWriter::builder(&self.avro)
            .build()
            .map_err(|e| Error::Schema(format!("invalid Avro schema: {e}")))?;
        let encode_error = |e: apache_avro::Error| Error::Decode {
            format: "avro",
            reason: format!("cannot write the row: {e}"),
        };
        (0..batch.num_rows())
            .map(|row| {
                let value = match &self.avro {
                    AvroSchema::Record(RecordSchema { fields, .. }) => Value::Record(
                        fields
                            .iter()
                            .zip(&columns)
                            .map(|(f, c)| (f.name.clone(), avro_value(c.as_ref(), row, &f.schema)))
                            .collect(),
                    ),
                    other => avro_value(columns[0].as_ref(), row, other),
                };
                writer.write_value_to_vec(value).map(Bytes::from).map_err(encode_error)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{decoder, encoder, infer_schema, Format};

    const SCHEMA: &str = r#"{"type":"record","name":"click","fields":[
        {"name":"id","type":"int"},
        {"name":"url","type":"string"},
        {"name":"referrer","type":["null","string"]},
        {"name":"score","type":"double"}]}"#;

    fn datum(id: i32, url: &str, referrer: Option<&str>, score: f64) -> Vec<u8> {
        let schema = AvroSchema::parse_str(SCHEMA).unwrap();
        let referrer = match referrer {
            Some(r) => Value::Union(1, Box::new(Value::String(r.into()))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let record = Value::Record(vec![
            ("id".into(), Value::Int(id)),
            ("url".into(), Value::String(url.into())),
            ("referrer".into(), referrer),
            ("score".into(), Value::Double(score)),
        ]);
        GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_value_to_vec(record)
            .unwrap()
    }

    #[test]
    fn raw_and_confluent_framed_datums_decode_and_round_trip() {
        let spec = FormatSpec::new(Format::Avro).with_avro_schema(SCHEMA);
        let schema = infer_schema(&spec, &[]).unwrap();
        let got: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("{}:{}:{}", f.name(), f.data_type(), f.is_nullable()))
            .collect();
        assert_eq!(
            got,
            [
                "id:Int32:false",
                "url:Utf8:false",
                "referrer:Utf8:true",
                "score:Float64:false"
            ]
        );
        let raw = datum(1, "/a", Some("g.co"), 0.5);
        let mut framed = vec![0, 0, 0, 0, 42];
        framed.extend(datum(0, "/b", None, 1.5));
        let truncated = &raw[..raw.len() - 2];
        let mut trailing = raw.clone();
        trailing.push(7);
        let values: Vec<Option<&[u8]>> = vec![
            Some(&raw[..]),
            Some(&framed[..]),
            None,
            Some(truncated),
            Some(&trailing[..]),
            Some(&b""[..]),
        ];
        let out = decoder(&spec).unwrap().decode(&values).unwrap();
        assert_eq!(out.rows, vec![0, 1]);
        assert_eq!(out.failed.iter().map(|f| f.0).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        assert_eq!(out.failed[0].1, "no value");
        assert!(out.failed[2].1.contains("1 bytes left over"), "{:?}", out.failed);
        let b = &out.batch;
        assert_eq!(b.column(0).as_primitive::<Int32Type>().values().to_vec(), vec![1, 0]);
        assert_eq!(b.column(1).as_string::<i32>().value(1), "/b");
        assert!(!b.column(2).is_null(0) && b.column(2).is_null(1));
        assert_eq!(b.column(3).as_primitive::<Float64Type>().value(1), 1.5);
        let encoded = encoder(&spec, b.schema()).unwrap().encode(b).unwrap();
        assert_eq!(encoded[0].as_ref(), raw.as_slice());
        assert_eq!(encoded[1].as_ref(), &framed[CONFLUENT_PREFIX_BYTES..]);
    }

    #[test]
    fn a_schema_derived_from_arrow_columns_round_trips() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, false),
            Field::new("ok", DataType::Boolean, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(BooleanArray::from(vec![Some(true), None])),
            ],
        )
        .unwrap();
        let encoded = encoder(&FormatSpec::new(Format::Avro), schema.clone())
            .unwrap()
            .encode(&batch)
            .unwrap();
        let text = derive_schema(&schema).unwrap().canonical_form();
        let spec = FormatSpec::new(Format::Avro).with_avro_schema(text);
        let values: Vec<Option<&[u8]>> = encoded.iter().map(|v| Some(v.as_ref())).collect();
        let out = decoder(&spec).unwrap().decode(&values).unwrap();
        assert_eq!(out.batch, batch);
    }

    #[test]
    fn a_missing_or_invalid_schema_is_a_schema_error() {
        let err = decoder(&FormatSpec::new(Format::Avro)).err().unwrap().to_string();
        assert!(err.contains("need an Avro schema"), "{err}");
        let err = decoder(&FormatSpec::new(Format::Avro).with_avro_schema("{"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid Avro schema"), "{err}");
    }
}

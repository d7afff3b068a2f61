//! The record formats a topic's values can be read as, named as users write them in SQL and
//! pipeline files (`format = 'json'`), and the decoder and encoder traits every format implements.
//!
//! Decoding never fails a whole batch because of one record: a value that does not decode is
//! reported in [`Decoded::failed`] with its error in prose (the caller sends it to the dead-letter
//! topic, see `crate::dlq`), and the others still become rows. Tombstones (values that are None)
//! are failures ("no value") for json, csv and avro, and null rows for lines and bytes.

mod avro;
mod csv;
mod infer;
mod json;
mod raw;

use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};

/// A bulk decoder of some values: one Arrow row per value, or the reason it refuses them.
type BulkDecode<'a> = dyn Fn(&[&[u8]]) -> std::result::Result<RecordBatch, String> + 'a;

/// Decodes `slices` with `bulk`, isolating the ones it refuses, and maps rows and failures back
/// to input indexes through `origin` (`origin[j]` is the input index of `slices[j]`); `failed`
/// already holds the inputs rejected before the bulk decode.
fn decode_isolating(
    schema: &SchemaRef,
    bulk: &BulkDecode<'_>,
    slices: &[&[u8]],
    origin: &[usize],
    mut failed: Vec<(usize, String)>,
) -> Result<Decoded> {
    let mut parts = Vec::new();
    let mut bad = Vec::new();
    if !slices.is_empty() {
        bisect(bulk, slices, 0..slices.len(), &mut parts, &mut bad);
    }
    failed.extend(bad.into_iter().map(|(j, reason)| (origin[j], reason)));
    failed.sort_by_key(|f| f.0);
    let rows = parts
        .iter()
        .flat_map(|(range, _)| range.clone().map(|j| origin[j]))
        .collect();
    let batches: Vec<RecordBatch> = parts.into_iter().map(|(_, b)| b).collect();
    let batch = datafusion::arrow::compute::concat_batches(schema, &batches)?;
    Ok(Decoded { batch, rows, failed })
}

/// Decodes `values[range]` with `bulk`, bisecting around the values it refuses: good batches go
/// to `out` and failures to `failed`, both as indexes into `values`. Good values always decode
/// in bulk; k bad ones cost about k * log(n) bulk attempts.
fn bisect(
    bulk: &BulkDecode<'_>,
    values: &[&[u8]],
    range: std::ops::Range<usize>,
    out: &mut Vec<(std::ops::Range<usize>, RecordBatch)>,
    failed: &mut Vec<(usize, String)>,
) {
    match bulk(&values[range.clone()]) {
        Ok(batch) => out.push((range, batch)),
        Err(reason) if range.len() == 1 => failed.push((range.start, reason)),
        Err(_) => {
            let mid = range.start + range.len() / 2;
            bisect(bulk, values, range.start..mid, out, failed);
            bisect(bulk, values, mid..range.end, out, failed);
        }
    }
}

/// Feeds each of `values`, then a newline, to one of arrow's push decoders (JSON or CSV), whose
/// `decode` takes what fits in its batch and returns 0 when the batch is full: then `flush` makes
/// room, and the full batch goes to `batches`. What is still buffered is left to the caller.
fn feed_lines<D>(
    decoder: &mut D,
    values: &[&[u8]],
    decode: fn(&mut D, &[u8]) -> std::result::Result<usize, ArrowError>,
    flush: fn(&mut D) -> std::result::Result<Option<RecordBatch>, ArrowError>,
    batches: &mut Vec<RecordBatch>,
) -> std::result::Result<(), ArrowError> {
    for value in values {
        for part in [*value, b"\n".as_slice()] {
            let mut rest = part;
            while !rest.is_empty() {
                let read = decode(decoder, rest)?;
                if read == 0 {
                    batches.extend(flush(decoder)?);
                }
                rest = &rest[read..];
            }
        }
    }
    Ok(())
}

pub use infer::{infer_schema, MAX_INFER_SAMPLES};

/// How a topic's values are encoded, with an optional declared schema.
#[derive(Debug, Clone)]
pub struct FormatSpec {
    /// The format.
    pub format: Format,
    /// The value columns; None to infer them from a sample with [`infer_schema`].
    pub schema: Option<SchemaRef>,
    /// The Avro schema as JSON text, required for avro.
    pub avro_schema: Option<String>,
    /// The CSV field delimiter, `b','` by default.
    pub csv_delimiter: u8,
    /// Whether CSV data starts with a line naming the columns. Topics hold one row per record, so
    /// this is false for them; when true, inference takes column names from the first sample and
    /// the decoder skips records that are that header line again.
    pub csv_header: bool,
}

impl FormatSpec {
    /// A spec for `format` with no declared schema, comma-delimited CSV without a header.
    pub fn new(format: Format) -> Self {
        FormatSpec {
            format,
            schema: None,
            avro_schema: None,
            csv_delimiter: b',',
            csv_header: false,
        }
    }

    /// The same spec with a declared schema.
    pub fn with_schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// The same spec with an Avro schema given as JSON text.
    pub fn with_avro_schema(mut self, avro_schema: impl Into<String>) -> Self {
        self.avro_schema = Some(avro_schema.into());
        self
    }
}

/// What decoding a slice of record values produced: one Arrow row per decodable value.
#[derive(Debug)]
pub struct Decoded {
    /// The value columns, with the decoder's schema.
    pub batch: RecordBatch,
    /// For each output row, the index of its input value.
    pub rows: Vec<usize>,
    /// The inputs that did not decode, with the error in prose, in input order.
    pub failed: Vec<(usize, String)>,
}

impl Decoded {
    /// No rows and no failures.
    pub fn empty(schema: SchemaRef) -> Self {
        Decoded {
            batch: RecordBatch::new_empty(schema),
            rows: Vec::new(),
            failed: Vec::new(),
        }
    }
}

/// Turns record values into Arrow rows.
pub trait RecordDecoder: Send + Sync {
    /// The value columns every decoded batch has.
    fn schema(&self) -> SchemaRef;
    /// Decodes `values` (None is a tombstone); bad values are reported, not fatal.
    fn decode(&self, values: &[Option<&[u8]>]) -> Result<Decoded>;
}

/// Turns Arrow rows into record values.
pub trait RecordEncoder: Send + Sync {
    /// One encoded value per row.
    fn encode(&self, batch: &RecordBatch) -> Result<Vec<Bytes>>;
}

/// A decoder for `spec`. json and csv need a schema (declared, or from [`infer_schema`]):
/// without one this is [`Error::Schema`]; avro needs `avro_schema`.
pub fn decoder(spec: &FormatSpec) -> Result<Box<dyn RecordDecoder>> {
    let need_schema = || {
        spec.schema.clone().ok_or_else(|| {
            Error::Schema(format!(
                "{} values need a schema: declare the columns or infer them from a sample first",
                spec.format.name()
            ))
        })
    };
    Ok(match spec.format {
        Format::Json => Box::new(json::JsonDecoder::new(need_schema()?)),
        Format::Csv => Box::new(csv::CsvDecoder::new(
            need_schema()?,
            spec.csv_delimiter,
            spec.csv_header,
        )),
        Format::Avro => Box::new(avro::AvroDecoder::new(
            avro::require_schema(spec)?,
            spec.schema.clone(),
        )?),
        Format::Lines => Box::new(raw::LinesDecoder),
        Format::Bytes => Box::new(raw::BytesDecoder),
    })
}

/// An encoder for `spec` writing rows of `schema`. Avro writes with `avro_schema` when given,
/// else with a record schema derived from `schema`.
pub fn encoder(spec: &FormatSpec, schema: SchemaRef) -> Result<Box<dyn RecordEncoder>> {
    Ok(match spec.format {
        Format::Json => Box::new(json::JsonEncoder),
        Format::Csv => Box::new(csv::CsvEncoder::new(spec.csv_delimiter)),
        Format::Avro => Box::new(avro::AvroEncoder::new(spec.avro_schema.as_deref(), &schema)?),
        Format::Lines => Box::new(raw::LinesEncoder::new(&schema)?),
        Format::Bytes => Box::new(raw::BytesEncoder::new(&schema)?),
    })
}

/// Splits `out`, which holds one `\n`-terminated encoding per row, into one value per row; None
/// when the count of lines is not `rows` (a value held a newline of its own).
pub(crate) fn split_lines(out: Vec<u8>, rows: usize) -> Option<Vec<Bytes>> {
    let out = Bytes::from(out);
    let mut values = Vec::with_capacity(rows);
    let mut start = 0;
    for (i, b) in out.iter().enumerate() {
        if *b == b'\n' {
            if values.len() == rows {
                return None;
            }
            let end = if i > start && out[i - 1] == b'\r' { i - 1 } else { i };
            values.push(out.slice(start..end));
            start = i + 1;
        }
    }
    (values.len() == rows && start == out.len()).then_some(values)
}

/// How a topic's record values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per record.
    Json,
    /// One CSV row per record.
    Csv,
    /// Avro with a given schema.
    Avro,
    /// The value as one UTF-8 line.
    Lines,
    /// The value as opaque bytes.
    Bytes,
}

impl Format {
    /// Every format, in the order they are documented.
    pub const ALL: [Format; 5] = [Format::Json, Format::Csv, Format::Avro, Format::Lines, Format::Bytes];

    /// The name users write.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Avro => "avro",
            Format::Lines => "lines",
            Format::Bytes => "bytes",
        }
    }

    /// Parses a format name, case-insensitively.
    pub fn parse(name: &str) -> Result<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| Error::UnknownFormat {
                name: name.to_string(),
                expected: Format::ALL.map(Format::name).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for f in Format::ALL {
            assert_eq!(Format::parse(&f.name().to_uppercase()).unwrap(), f);
        }
        let err = Format::parse("xml").unwrap_err().to_string();
        assert!(err.contains("xml") && err.contains("json, csv"), "{err}");
    }
}

//! CSV record values (one row per record, RFC 4180 quoting) decoded straight into Arrow with
//! arrow-csv, isolating the records that do not decode instead of failing the batch.
//!
//! All values go to one arrow-csv decoder, each ended by a newline (one trailing `\n` or `\r\n` of
//! a value's own is dropped first). arrow-csv fails a whole batch on one bad row, and an unclosed
//! quote can swallow the records after it, so on an error or a row count other than one per value
//! the range is bisected until each bad record is alone: k bad records cost O(k log n) bulk
//! decodes. Empty fields are null. With a header, a record that is the header line again (a file
//! tailed from its start) is skipped: it is neither a row nor a failure.

use bytes::Bytes;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::csv::reader::Decoder;
use datafusion::arrow::csv::reader::Format as CsvFormat;
use datafusion::arrow::csv::{ReaderBuilder, WriterBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use super::{decode_isolating, feed_lines, split_lines, Decoded, RecordDecoder, RecordEncoder};
use crate::error::{Error, Result};

/// Decodes one CSV row per value into a declared or inferred schema.
pub(crate) struct CsvDecoder {
    schema: SchemaRef,
    delimiter: u8,
    /// The header line (column names joined by the delimiter), when values may repeat it.
    header_line: Option<Vec<u8>>,
}

impl CsvDecoder {
    pub(crate) fn new(schema: SchemaRef, delimiter: u8, header: bool) -> Self {
        let header_line = header.then(|| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            names.join(&char::from(delimiter).to_string()).into_bytes()
        });
        CsvDecoder {
            schema,
            delimiter,
            header_line,
        }
    }

    /// Decodes `values` in one arrow-csv pass; an error or a row count other than one per value.
    fn bulk(&self, values: &[&[u8]]) -> Result<RecordBatch, String> {
        let mut decoder = ReaderBuilder::new(self.schema.clone())
            .with_header(false)
            .with_delimiter(self.delimiter)
            .with_batch_size(values.len().max(1))
            .build_decoder();
        let mut batches = Vec::new();
        feed_lines(&mut decoder, values, Decoder::decode, Decoder::flush, &mut batches)
            .map_err(|e| arrow_reason(&e))?;
        // An empty buffer tells the decoder the input ended (an unclosed quote is then an error).
        decoder.decode(&[]).map_err(|e| arrow_reason(&e))?;
        batches.extend(decoder.flush().map_err(|e| arrow_reason(&e))?);
        let batch = concat_batches(&self.schema, &batches).map_err(|e| arrow_reason(&e))?;
        match (values.len(), batch.num_rows()) {
            (n, rows) if n == rows => Ok(batch),
            (1, rows) => Err(format!("the value holds {rows} CSV rows, expected one")),
            (n, rows) => Err(format!("{n} values decoded into {rows} rows")),
        }
    }
}

impl RecordDecoder for CsvDecoder {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn decode(&self, values: &[Option<&[u8]>]) -> Result<Decoded> {
        let mut failed = Vec::new();
        let mut good = Vec::with_capacity(values.len());
        let mut slices: Vec<&[u8]> = Vec::with_capacity(values.len());
        for (i, value) in values.iter().enumerate() {
            let Some(value) = value else {
                failed.push((i, "no value".to_string()));
                continue;
            };
            let value = strip_newline(value);
            if self.header_line.as_deref() == Some(value) {
                continue;
            }
            good.push(i);
            slices.push(value);
        }
        if slices.is_empty() {
            return Ok(Decoded {
                failed,
                ..Decoded::empty(self.schema.clone())
            });
        }
        decode_isolating(&self.schema, &|v: &[&[u8]]| self.bulk(v), &slices, &good, failed)
    }
}

/// The value without one trailing `\n` or `\r\n`.
fn strip_newline(value: &[u8]) -> &[u8] {
    let value = value.strip_suffix(b"\n").unwrap_or(value);
    value.strip_suffix(b"\r").unwrap_or(value)
}

/// Arrow's message without its "Csv error: " category prefix.
fn arrow_reason(e: &ArrowError) -> String {
    match e {
        ArrowError::CsvError(m) | ArrowError::ParseError(m) => m.clone(),
        other => other.to_string(),
    }
}

/// Encodes each row as one CSV line without its line ending; never writes a header.
pub(crate) struct CsvEncoder {
    delimiter: u8,
}

impl CsvEncoder {
    pub(crate) fn new(delimiter: u8) -> Self {
        CsvEncoder { delimiter }
    }

    fn write(&self, batch: &RecordBatch) -> Result<Vec<u8>> {
        let mut writer = WriterBuilder::new()
            .with_header(false)
            .with_delimiter(self.delimiter)
            .build(Vec::new());
        writer.write(batch)?;
        Ok(writer.into_inner())
    }
}

impl RecordEncoder for CsvEncoder {
    fn encode(&self, batch: &RecordBatch) -> Result<Vec<Bytes>> {
        // One write for the batch; when a quoted field holds a newline, one write per row.
        if let Some(values) = split_lines(self.write(batch)?, batch.num_rows()) {
            return Ok(values);
        }
        (0..batch.num_rows())
            .map(|i| {
                let mut line = self.write(&batch.slice(i, 1))?;
                line.truncate(strip_newline(&line).len());
                Ok(Bytes::from(line))
            })
            .collect()
    }
}

/// Infers columns from sampled rows: names from the header line or c1..cN (N the first row's
/// width), types by arrow-csv's sniffing narrowed to Boolean, Int64, Float64 and Utf8.
pub(crate) fn infer(samples: &[&[u8]], delimiter: u8, header: bool) -> Result<SchemaRef> {
    if samples.is_empty() {
        return Ok(std::sync::Arc::new(Schema::empty()));
    }
    let mut text = Vec::with_capacity(samples.iter().map(|s| s.len() + 1).sum());
    for sample in samples {
        text.extend_from_slice(strip_newline(sample));
        text.push(b'\n');
    }
    let format = CsvFormat::default()
        .with_header(header)
        .with_delimiter(delimiter)
        .with_truncated_rows(true);
    let (schema, _) = format.infer_schema(text.as_slice(), None).map_err(|e| {
        Error::Schema(format!(
            "cannot infer CSV columns from the sample: {}",
            arrow_reason(&e)
        ))
    })?;
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = if header {
                f.name().clone()
            } else {
                format!("c{}", i + 1)
            };
            let data_type = match f.data_type() {
                t @ (DataType::Boolean | DataType::Int64 | DataType::Float64) => t.clone(),
                _ => DataType::Utf8,
            };
            Field::new(name, data_type, true)
        })
        .collect();
    Ok(std::sync::Arc::new(Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;

    use super::*;
    use crate::format::{decoder, encoder, infer_schema, Format, FormatSpec};

    fn decode(spec: &FormatSpec, values: &[Option<&str>]) -> Decoded {
        let raw: Vec<Option<&[u8]>> = values.iter().map(|v| v.map(str::as_bytes)).collect();
        let out = decoder(spec).unwrap().decode(&raw).unwrap();
        assert_eq!(out.batch.num_rows(), out.rows.len());
        out
    }

    #[test]
    fn inference_sniffs_types_and_names_columns() {
        // (samples, header?, expected "name:type" list)
        let cases: Vec<(Vec<&str>, bool, Vec<&str>)> = vec![
            (
                vec!["1,a,true", "2.5,b,false"],
                false,
                vec!["c1:Float64", "c2:Utf8", "c3:Boolean"],
            ),
            (
                vec!["1,\"x, y\",", "2,z,3"],
                false,
                vec!["c1:Int64", "c2:Utf8", "c3:Int64"],
            ),
            (vec!["id;name", "1;a"], true, vec!["id:Int64", "name:Utf8"]),
            (vec!["2026-01-01,1"], false, vec!["c1:Utf8", "c2:Int64"]),
        ];
        for (samples, header, expected) in cases {
            let mut spec = FormatSpec::new(Format::Csv);
            spec.csv_header = header;
            if samples[0].contains(';') {
                spec.csv_delimiter = b';';
            }
            let raw: Vec<&[u8]> = samples.iter().map(|s| s.as_bytes()).collect();
            let schema = infer_schema(&spec, &raw).unwrap();
            let got: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| format!("{}:{}", f.name(), f.data_type()))
                .collect();
            assert_eq!(got, expected, "{samples:?}");
        }
    }

    #[test]
    fn quotes_round_trip_and_bad_rows_are_isolated() {
        let values = [
            Some("1,\"hello, world\",2.5"),
            Some("2,\"say \"\"hi\"\"\",3"),
            Some("3,\"two\nlines\",4\r\n"),
            Some("x,bad,1"),
            Some("4,too,many,fields"),
            None,
            Some("5,\"unclosed,1"),
            Some("6,,7"),
        ];
        let samples: Vec<&[u8]> = values[..3].iter().map(|v| v.unwrap().as_bytes()).collect();
        let schema = infer_schema(&FormatSpec::new(Format::Csv), &samples).unwrap();
        let spec = FormatSpec::new(Format::Csv).with_schema(schema.clone());
        let out = decode(&spec, &values);
        assert_eq!(out.rows, vec![0, 1, 2, 7]);
        assert_eq!(out.failed.iter().map(|f| f.0).collect::<Vec<_>>(), vec![3, 4, 5, 6]);
        assert!(out.failed[0].1.contains("x"), "{:?}", out.failed);
        assert!(out.failed[1].1.contains("fields"), "{:?}", out.failed);
        assert_eq!(out.failed[2].1, "no value");
        let text = out.batch.column(1).as_string::<i32>();
        assert_eq!(text.value(1), "say \"hi\"");
        assert_eq!(text.value(2), "two\nlines");
        assert!(out.batch.column(1).is_null(3));
        let encoded = encoder(&spec, schema).unwrap().encode(&out.batch).unwrap();
        assert_eq!(encoded[0], "1,\"hello, world\",2.5");
        let again: Vec<Option<&[u8]>> = encoded.iter().map(|v| Some(v.as_ref())).collect();
        let second = decoder(&spec).unwrap().decode(&again).unwrap();
        assert!(second.failed.is_empty(), "{:?}", second.failed);
        assert_eq!(second.batch, out.batch);
    }

    #[test]
    fn a_header_record_is_skipped_and_a_large_batch_decodes() {
        let mut spec = FormatSpec::new(Format::Csv);
        spec.csv_header = true;
        let schema = infer_schema(&spec, &[b"n,s", b"1,a"]).unwrap();
        let spec = spec.with_schema(schema);
        let mut values: Vec<String> = vec!["n,s".into()];
        values.extend((0..10_000).map(|i| format!("{i},row {i}")));
        let raw: Vec<Option<&str>> = values.iter().map(|v| Some(v.as_str())).collect();
        let out = decode(&spec, &raw);
        assert!(out.failed.is_empty());
        assert_eq!(out.rows.len(), 10_000);
        assert_eq!(out.rows[0], 1);
        assert_eq!(out.batch.column(0).as_primitive::<Int64Type>().value(9_999), 9_999);
    }
}

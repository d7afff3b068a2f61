//! How rows become file contents: JSON lines and CSV encoded in memory per slice of rows, Parquet
//! through the parquet crate's Arrow writer; and the filter that drops rows already written, so
//! that a batch sent again after a failure lands once.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{FileFormat, ParquetCompression, RowMeta, NAME};
use crate::error::{Error, Result};

/// Rows per parquet row group at most, which bounds what the writer buffers in memory.
const PARQUET_ROW_GROUP_ROWS: usize = 65_536;
/// Bytes per parquet row group at most (an estimate of the encoded size).
const PARQUET_ROW_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// Encodes `rows` as JSON lines or CSV (with a header line first when `header`).
pub(super) fn encode_text(format: FileFormat, rows: &RecordBatch, header: bool) -> Result<Vec<u8>> {
    let fail =
        |e: &dyn std::fmt::Display| Error::config(NAME, format!("cannot write the rows as {}: {e}", format.name()));
    match format {
        FileFormat::Json => crate::sinks::json_lines(rows).map_err(|e| fail(&e)),
        FileFormat::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(header)
                .build(Vec::new());
            if rows.num_rows() == 0 && header {
                // The CSV writer writes the header only with the first rows.
                let names: Vec<&str> = rows.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
                return Ok(format!("{}\n", names.join(",")).into_bytes());
            }
            writer.write(rows).map_err(|e| fail(&e))?;
            Ok(writer.into_inner())
        }
        FileFormat::Parquet => Err(Error::Internal("parquet is not a text format".into())),
    }
}

/// The rows of a batch not yet covered by the offsets already written.
pub(super) struct Fresh {
    /// The rows.
    pub(super) rows: RecordBatch,
    /// Their metadata.
    pub(super) meta: Vec<RowMeta>,
    /// Each row's index in the batch as given.
    pub(super) index: Vec<usize>,
}

/// The rows of `rows` (with their metadata) whose offsets `written` does not cover yet: a batch
/// sent again after a failure skips what already landed.
pub(super) fn fresh_rows(rows: &RecordBatch, meta: &[RowMeta], written: &BTreeMap<i32, i64>) -> Result<Fresh> {
    let keep: Vec<bool> = meta
        .iter()
        .map(|m| written.get(&m.partition).is_none_or(|next| m.offset >= *next))
        .collect();
    if keep.iter().all(|k| *k) {
        return Ok(Fresh {
            rows: rows.clone(),
            meta: meta.to_vec(),
            index: (0..meta.len()).collect(),
        });
    }
    let index: Vec<usize> = (0..meta.len()).filter(|i| keep[*i]).collect();
    let filtered = filter_record_batch(rows, &BooleanArray::from(keep))
        .map_err(|e| Error::Internal(format!("filtering rows already written: {e}")))?;
    Ok(Fresh {
        rows: filtered,
        meta: index.iter().map(|i| meta[*i]).collect(),
        index,
    })
}

/// The offsets after `meta`'s rows and `next`: per partition, the highest next offset.
pub(super) fn offsets_after(base: &BTreeMap<i32, i64>, meta: &[RowMeta], next: &[(i32, i64)]) -> BTreeMap<i32, i64> {
    let mut out = base.clone();
    let rows: Vec<(i32, i64)> = meta.iter().map(|m| (m.partition, m.offset + 1)).collect();
    super::state::advance(&mut out, &rows);
    super::state::advance(&mut out, next);
    out
}

/// An open data file of the rolling mode, in one format.
pub(super) enum FileWriter {
    /// JSON lines or CSV, appended slice by slice.
    Text {
        /// The format, json or csv.
        format: FileFormat,
        /// The open file.
        file: File,
        /// Bytes written so far.
        bytes: u64,
    },
    /// Parquet, footer written on finish.
    Parquet {
        /// The writer over the open file.
        writer: Box<ArrowWriter<File>>,
    },
}

impl FileWriter {
    /// Creates `path` (which must not exist) for rows of `schema`.
    pub(super) fn create(
        path: &Path,
        format: FileFormat,
        compression: ParquetCompression,
        schema: SchemaRef,
    ) -> Result<FileWriter> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        match format {
            FileFormat::Json | FileFormat::Csv => Ok(FileWriter::Text { format, file, bytes: 0 }),
            FileFormat::Parquet => {
                let compression = match compression {
                    ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
                    ParquetCompression::Snappy => Compression::SNAPPY,
                    ParquetCompression::None => Compression::UNCOMPRESSED,
                };
                let props = WriterProperties::builder()
                    .set_compression(compression)
                    .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP_ROWS))
                    .set_max_row_group_bytes(Some(PARQUET_ROW_GROUP_BYTES))
                    .build();
                let writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| parquet_error(path, e))?;
                Ok(FileWriter::Parquet {
                    writer: Box::new(writer),
                })
            }
        }
    }

    /// Appends `rows`; `first` says whether they are the file's first (CSV writes its header).
    pub(super) fn write(&mut self, path: &Path, rows: &RecordBatch, first: bool) -> Result<()> {
        match self {
            FileWriter::Text { format, file, bytes } => {
                let encoded = encode_text(*format, rows, first)?;
                file.write_all(&encoded)
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                *bytes += encoded.len() as u64;
                Ok(())
            }
            FileWriter::Parquet { writer } => writer.write(rows).map_err(|e| parquet_error(path, e)),
        }
    }

    /// Bytes the file holds, or will hold once buffered rows are encoded (an estimate for parquet).
    pub(super) fn bytes(&self) -> u64 {
        match self {
            FileWriter::Text { bytes, .. } => *bytes,
            FileWriter::Parquet { writer } => (writer.bytes_written() + writer.in_progress_size()) as u64,
        }
    }

    /// Completes the file (the parquet footer) and fsyncs it.
    pub(super) fn finish(self, path: &Path) -> Result<()> {
        let file = match self {
            FileWriter::Text { file, .. } => file,
            FileWriter::Parquet { writer } => writer.into_inner().map_err(|e| parquet_error(path, e))?,
        };
        file.sync_all()
            .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
    }
}

/// A parquet error while writing `path`, as an I/O error (the writer's failures are the disk's or
/// a column type parquet cannot hold).
fn parquet_error(path: &Path, e: parquet::errors::ParquetError) -> Error {
    match e {
        parquet::errors::ParquetError::NYI(what) => Error::config(
            NAME,
            format!("cannot write the rows as parquet to {}: {what}", path.display()),
        ),
        e => Error::io(
            format!("writing {}", path.display()),
            std::io::Error::other(e.to_string()),
        ),
    }
}

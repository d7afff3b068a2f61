//! Sink connectors, one folder each, and the JSON-lines encoding that the file, http and stdout
//! sinks share.

pub mod file;
pub mod http;
pub mod postgres;
pub mod sql_types;
pub mod sqlite;
pub mod stdout;
#[cfg(test)]
mod test_support;

use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::writer::LineDelimited;
use datafusion::arrow::json::WriterBuilder;
use datafusion::arrow::record_batch::RecordBatch;

/// `rows` as JSON lines: one object per row, null fields left out.
pub(crate) fn json_lines(rows: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(false)
        .build::<_, LineDelimited>(Vec::new());
    writer.write(rows)?;
    writer.finish()?;
    Ok(writer.into_inner())
}

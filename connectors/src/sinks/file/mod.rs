//! The `file` sink: rows written to files as JSON lines, CSV or Parquet, exactly once, either
//! appended to one growing file or rolled into finished files by size, age or count.
//!
//! Two modes share the formats:
//! - append (`append.rs`): json or csv with no `roll` and no placeholder in `path`; every write
//!   appends, fsyncs and then commits the file's length and the input offsets in a state file;
//! - rolling (`rolling.rs`): anything else, and always parquet; rows go to hidden in-progress
//!   files that are finished and renamed to their final names together, with the offsets
//!   committed through a pending/committed state file so that a crash never duplicates or loses
//!   a row.
//!
//! File system work blocks, so each call runs on tokio's blocking pool (`Offload`).

mod append;
mod encode;
mod rolling;
mod state;
mod template;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_model;
#[cfg(test)]
mod tests_rolling;

use std::path::PathBuf;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::registry::{parse_config, Context};
use crate::sink::{Sink, SinkBatch};

use append::AppendWriter;
use rolling::RollingWriter;
use template::PathTemplate;

/// The connector's type name.
const NAME: &str = "file";

/// Default roll limits in rolling mode, for every limit the configuration leaves out.
const DEFAULT_ROLL_RECORDS: u64 = 100_000;
/// Default roll age in rolling mode: a minute.
const DEFAULT_ROLL_AGE_MS: u64 = 60_000;
/// Default roll size in rolling mode: 128 MiB.
const DEFAULT_ROLL_BYTES: u64 = 128 * 1024 * 1024;

/// Configuration of the `file` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Where rows go; relative paths are resolved against the pipeline file's directory. May
    /// hold `{topic}`, `{partition}`, `{date}` (UTC `YYYY-MM-DD` of the record timestamp) and
    /// `{hour}` (`00`-`23`), which selects rolling mode.
    pub path: String,
    /// How rows are written: `json` (one object per line, the default), `csv` (with a header
    /// line) or `parquet`.
    #[serde(default)]
    pub format: FileFormat,
    /// Parquet compression: `zstd` (the default), `snappy` or `none`; only for parquet.
    #[serde(default)]
    pub compression: Option<ParquetCompression>,
    /// When to finish a file and start the next; setting it selects rolling mode.
    #[serde(default)]
    pub roll: Option<RollConfig>,
}

/// The file formats the sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// One JSON object per line, null fields left out.
    #[default]
    Json,
    /// CSV with a header line naming the columns.
    Csv,
    /// Apache Parquet through the parquet crate's Arrow writer.
    Parquet,
}

impl FileFormat {
    /// The name users write.
    fn name(self) -> &'static str {
        match self {
            FileFormat::Json => "json",
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
        }
    }
}

/// Compression codecs for parquet files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParquetCompression {
    /// Zstandard at its default level.
    Zstd,
    /// Snappy.
    Snappy,
    /// No compression.
    None,
}

/// Roll limits: a file is finished when any limit is reached. In rolling mode every limit left
/// out takes its default (100000 records, 60000 ms, 128 MiB), so uncommitted data is bounded.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollConfig {
    /// Finish a file once it holds at least this many bytes.
    pub bytes: Option<u64>,
    /// Finish a file once its first row is this old.
    pub age_ms: Option<u64>,
    /// Finish a file once it holds this many rows (a file never holds more).
    pub records: Option<u64>,
}

/// The roll limits in force, every one set.
#[derive(Debug, Clone, Copy)]
struct RollLimits {
    /// Bytes per file.
    bytes: u64,
    /// Age of a file in ms.
    age_ms: u64,
    /// Rows per file.
    records: u64,
}

/// Builds a `file` sink from its configuration, touching nothing on disk.
pub fn build(ctx: &Context, config: serde_json::Value) -> Result<Box<dyn Sink>> {
    let config: FileSinkConfig = parse_config(NAME, config)?;
    Ok(Box::new(FileSink::new(ctx, config)?))
}

/// The sink: one of the two modes, run on the blocking pool.
struct FileSink {
    /// The writer of the chosen mode.
    mode: Offload<Mode>,
}

/// The two ways of writing files.
enum Mode {
    /// One growing file.
    Append(AppendWriter),
    /// Finished files rolled by limits and placeholders.
    Rolling(Box<RollingWriter>),
}

impl FileSink {
    /// Checks `config` and picks the mode.
    fn new(ctx: &Context, config: FileSinkConfig) -> Result<FileSink> {
        if config.path.trim().is_empty() {
            return Err(Error::config(NAME, "path must not be empty"));
        }
        let template = PathTemplate::parse(&ctx.resolve(&config.path))?;
        if config.compression.is_some() && config.format != FileFormat::Parquet {
            return Err(Error::config(
                NAME,
                format!("compression applies to parquet only, not to {}", config.format.name()),
            ));
        }
        let roll = config.roll.clone();
        if let Some(roll) = &roll {
            for (name, value) in [
                ("bytes", roll.bytes),
                ("age_ms", roll.age_ms),
                ("records", roll.records),
            ] {
                if value == Some(0) {
                    return Err(Error::config(NAME, format!("roll.{name} must be at least 1")));
                }
            }
        }
        let rolling = config.format == FileFormat::Parquet || roll.is_some() || template.has_placeholders();
        let mode = if rolling {
            let roll = roll.unwrap_or_default();
            let limits = RollLimits {
                bytes: roll.bytes.unwrap_or(DEFAULT_ROLL_BYTES),
                age_ms: roll.age_ms.unwrap_or(DEFAULT_ROLL_AGE_MS),
                records: roll.records.unwrap_or(DEFAULT_ROLL_RECORDS),
            };
            let compression = config.compression.unwrap_or(ParquetCompression::Zstd);
            Mode::Rolling(Box::new(RollingWriter::new(
                template,
                config.format,
                compression,
                limits,
            )))
        } else {
            Mode::Append(AppendWriter::new(PathBuf::from(template.literal()), config.format))
        };
        Ok(FileSink {
            mode: Offload { inner: Some(mode) },
        })
    }
}

/// What a row brings besides its values: where it came from and when.
#[derive(Debug, Clone, Copy)]
struct RowMeta {
    /// The input partition.
    partition: i32,
    /// The input offset.
    offset: i64,
    /// The record timestamp in ms since the epoch.
    timestamp_ms: i64,
}

/// A [`SinkBatch`] owned, so that it can move to the blocking pool.
struct OwnedBatch {
    /// The input topic.
    topic: String,
    /// The rows.
    rows: RecordBatch,
    /// One entry per row.
    meta: Vec<RowMeta>,
    /// Per partition, the offset to read next once the batch is written.
    next_offsets: Vec<(i32, i64)>,
}

impl OwnedBatch {
    /// Copies what the writers need out of `batch`.
    fn from_batch(batch: &SinkBatch<'_>) -> Result<OwnedBatch> {
        if batch.rows.num_rows() != batch.records.len() {
            return Err(Error::Internal(format!(
                "a sink batch has {} rows for {} records",
                batch.rows.num_rows(),
                batch.records.len()
            )));
        }
        Ok(OwnedBatch {
            topic: batch.topic.to_string(),
            rows: batch.rows.clone(),
            meta: batch
                .records
                .iter()
                .map(|r| RowMeta {
                    partition: r.partition,
                    offset: r.offset,
                    timestamp_ms: r.timestamp_ms,
                })
                .collect(),
            next_offsets: batch.next_offsets.to_vec(),
        })
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn open(&mut self, topic: &str) -> Result<Option<Vec<(i32, i64)>>> {
        let topic = topic.to_string();
        let offsets = self
            .mode
            .run(move |mode| match mode {
                Mode::Append(w) => w.open(),
                Mode::Rolling(w) => w.open(&topic),
            })
            .await??;
        Ok(Some(offsets))
    }

    async fn write(&mut self, batch: SinkBatch<'_>) -> Result<()> {
        let batch = OwnedBatch::from_batch(&batch)?;
        self.mode
            .run(move |mode| match mode {
                Mode::Append(w) => w.write(&batch),
                Mode::Rolling(w) => w.write(&batch),
            })
            .await?
    }

    async fn flush(&mut self) -> Result<()> {
        self.mode
            .run(|mode| match mode {
                Mode::Append(_) => Ok(()),
                Mode::Rolling(w) => w.flush(),
            })
            .await?
    }

    async fn tick(&mut self) -> Result<()> {
        self.mode
            .run(|mode| match mode {
                Mode::Append(_) => Ok(()),
                Mode::Rolling(w) => w.tick(),
            })
            .await?
    }
}

/// Runs closures over a value on tokio's blocking pool, moving it there and back.
struct Offload<T> {
    /// The value; None only while a closure runs, or after one panicked.
    inner: Option<T>,
}

impl<T: Send + 'static> Offload<T> {
    /// Runs `f` over the value on the blocking pool.
    async fn run<R: Send + 'static>(&mut self, f: impl FnOnce(&mut T) -> R + Send + 'static) -> Result<R> {
        let mut inner = self
            .inner
            .take()
            .ok_or_else(|| Error::Internal("the file sink failed in an earlier call and cannot be used".into()))?;
        let (inner, out) = tokio::task::spawn_blocking(move || {
            let out = f(&mut inner);
            (inner, out)
        })
        .await
        .map_err(|e| Error::Internal(format!("the file sink's blocking task failed: {e}")))?;
        self.inner = Some(inner);
        Ok(out)
    }
}

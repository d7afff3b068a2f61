//! The `stdout` sink: rows printed to standard output as JSON lines (or the record values as
//! they are), flushed per batch, for trying pipelines out and piping into other tools. It stores
//! no offsets: the runner commits them after each write (at least once).

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::registry::{parse_config, Context};
use crate::sink::{Sink, SinkBatch};

/// The connector's type name.
const NAME: &str = "stdout";

/// Configuration of the `stdout` sink.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// `json` (the default): each row as one JSON object per line, null fields left out;
    /// `text`: each record's value bytes followed by a newline (records without a value print
    /// nothing).
    #[serde(default)]
    pub format: StdoutFormat,
}

/// What the sink prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdoutFormat {
    /// One JSON object per row.
    #[default]
    Json,
    /// The record values as they are, one per line.
    Text,
}

/// Builds a `stdout` sink from its configuration.
pub fn build(_ctx: &Context, config: serde_json::Value) -> Result<Box<dyn Sink>> {
    let config: StdoutSinkConfig = parse_config(NAME, config)?;
    Ok(Box::new(StdoutSink::with_writer(config, Box::new(tokio::io::stdout()))))
}

/// Prints rows to a writer, standard output outside tests.
pub(crate) struct StdoutSink {
    /// What is printed.
    format: StdoutFormat,
    /// Where.
    out: Box<dyn AsyncWrite + Send + Unpin>,
}

impl StdoutSink {
    /// A sink printing to `out`.
    pub(crate) fn with_writer(config: StdoutSinkConfig, out: Box<dyn AsyncWrite + Send + Unpin>) -> StdoutSink {
        StdoutSink {
            format: config.format,
            out,
        }
    }

    /// The bytes printed for `batch`.
    fn render(&self, batch: &SinkBatch<'_>) -> Result<Vec<u8>> {
        match self.format {
            StdoutFormat::Json => crate::sinks::json_lines(batch.rows)
                .map_err(|e| Error::config(NAME, format!("cannot print the rows as JSON: {e}"))),
            StdoutFormat::Text => {
                let mut out = Vec::new();
                for value in batch.records.iter().filter_map(|r| r.value.as_ref()) {
                    out.extend_from_slice(value);
                    out.push(b'\n');
                }
                Ok(out)
            }
        }
    }
}

#[async_trait]
impl Sink for StdoutSink {
    async fn open(&mut self, _topic: &str) -> Result<Option<Vec<(i32, i64)>>> {
        Ok(None)
    }

    async fn write(&mut self, batch: SinkBatch<'_>) -> Result<()> {
        let bytes = self.render(&batch)?;
        self.out
            .write_all(&bytes)
            .await
            .map_err(|e| Error::io("writing to standard output", e))?;
        self.out
            .flush()
            .await
            .map_err(|e| Error::io("flushing standard output", e))
    }

    async fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .await
            .map_err(|e| Error::io("flushing standard output", e))
    }
}

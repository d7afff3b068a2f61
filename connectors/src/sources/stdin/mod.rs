//! The `stdin` source: reads standard input with the shared line parsers until end of file, for
//! `some-command | brook pipeline run ...`.
//!
//! Standard input cannot be read again, so each run is its own position stream
//! (`stdin:<pid>-<start time>-<count>`) and a checkpoint of an earlier run is ignored.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use brook_engine::format::FormatSpec;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::parse::{
    default_max_line_bytes, CsvConfig, FieldType, LineFormat, MultilineConfig, ParseConfig, Parsed, Parser,
    StreamParser,
};
use crate::registry::{parse_config, Context};
use crate::source::{Source, SourceItem};

#[cfg(test)]
mod tests;

/// The connector type's name.
const TYPE: &str = "stdin";

/// The size of one read from standard input, in bytes.
const READ_BYTES: usize = 64 * 1024;

/// The configuration of a `stdin` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// How lines become values: lines, json, csv or regex.
    #[serde(default)]
    pub format: LineFormat,
    /// CSV options, with `format: csv`.
    #[serde(default)]
    pub csv: Option<CsvConfig>,
    /// The regular expression with named groups, with `format: regex`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Conversions of fields of csv and regex records.
    #[serde(default)]
    pub types: BTreeMap<String, FieldType>,
    /// Multi-line records.
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    /// The longest line, in bytes (default 1 MiB); longer lines become bad items.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

impl StdinConfig {
    /// The parser settings.
    pub fn parse_config(&self) -> ParseConfig {
        ParseConfig {
            format: self.format,
            csv: self.csv.clone(),
            pattern: self.pattern.clone(),
            types: self.types.clone(),
            multiline: self.multiline.clone(),
            max_line_bytes: self.max_line_bytes,
        }
    }
}

/// Builds a `stdin` source; checks the configuration only (standard input is taken at `open`).
pub fn build(_ctx: &Context, config: serde_json::Value) -> Result<Box<dyn Source>> {
    let config: StdinConfig = parse_config(TYPE, config)?;
    let parser = Arc::new(config.parse_config().compile(TYPE)?);
    Ok(Box::new(StdinSource::new(parser, None)))
}

/// Reads lines from standard input, or from any reader given to [`StdinSource::new`].
pub struct StdinSource {
    parser: Arc<Parser>,
    reader: Option<Box<dyn AsyncRead + Send + Unpin>>,
    stream: Option<StreamParser>,
    name: String,
    pending: VecDeque<SourceItem>,
    returned: u64,
    eof: bool,
    buf: Vec<u8>,
}

impl StdinSource {
    /// A source reading `reader`, or standard input when None.
    pub fn new(parser: Arc<Parser>, reader: Option<Box<dyn AsyncRead + Send + Unpin>>) -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        StdinSource {
            parser,
            reader,
            stream: None,
            name: format!("stdin:{}-{started:x}-{run}", std::process::id()),
            pending: VecDeque::new(),
            returned: 0,
            eof: false,
            buf: vec![0; READ_BYTES],
        }
    }

    /// The position stream of this run.
    pub fn stream_name(&self) -> &str {
        &self.name
    }

    fn enqueue(&mut self, parsed: Vec<Parsed>) {
        for p in parsed {
            self.pending.push_back(p.into_item(&self.name));
        }
    }

    fn take(&mut self, max: usize) -> Vec<SourceItem> {
        let n = max.max(1).min(self.pending.len());
        let items: Vec<SourceItem> = self.pending.drain(..n).collect();
        if let Some(last) = items.last() {
            self.returned = last.position().end;
        }
        items
    }
}

#[async_trait]
impl Source for StdinSource {
    fn format(&self) -> FormatSpec {
        self.parser.format_spec()
    }

    async fn open(&mut self, checkpoint: Option<serde_json::Value>) -> Result<()> {
        if checkpoint.as_ref().is_some_and(|c| !c.is_null()) {
            tracing::info!(stream = %self.name, "standard input cannot be read again: the earlier run's checkpoint is ignored");
        }
        if self.reader.is_none() {
            self.reader = Some(Box::new(tokio::io::stdin()));
        }
        self.stream = Some(self.parser.stream(0));
        Ok(())
    }

    async fn poll(&mut self, max_records: usize, wait_ms: u64) -> Result<Option<Vec<SourceItem>>> {
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        loop {
            let Some(stream) = &mut self.stream else {
                return Err(Error::Internal(
                    "the stdin source was polled before it was opened".into(),
                ));
            };
            let mut out = Vec::new();
            stream.flush_due(std::time::Instant::now(), &mut out);
            let multiline_deadline = stream.deadline();
            self.enqueue(out);
            if !self.pending.is_empty() {
                return Ok(Some(self.take(max_records)));
            }
            if self.eof {
                return Ok(None);
            }
            let mut wake_at = deadline;
            if let Some(d) = multiline_deadline {
                wake_at = wake_at.min(Instant::from_std(d));
            }
            let Some(reader) = &mut self.reader else {
                return Err(Error::Internal("the stdin source has no reader".into()));
            };
            // Reading is cancel safe: a read that times out has taken nothing.
            match tokio::time::timeout_at(wake_at, reader.read(&mut self.buf)).await {
                Ok(Ok(0)) => {
                    self.eof = true;
                    let mut out = Vec::new();
                    if let Some(stream) = &mut self.stream {
                        stream.finish(std::time::Instant::now(), &mut out);
                    }
                    tracing::info!(stream = %self.name, offset = self.returned, "standard input ended");
                    self.enqueue(out);
                }
                Ok(Ok(n)) => {
                    let mut out = Vec::new();
                    if let Some(stream) = &mut self.stream {
                        stream.push(&self.buf[..n], std::time::Instant::now(), &mut out);
                    }
                    self.enqueue(out);
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(Error::io("reading standard input", e)),
                Err(_) if Instant::now() >= deadline => return Ok(Some(Vec::new())),
                Err(_) => {}
            }
        }
    }

    fn checkpoint(&self) -> serde_json::Value {
        serde_json::json!({ "stream": self.name, "offset": self.returned })
    }

    fn parse_line(&self, line: &[u8]) -> Option<Result<bytes::Bytes, String>> {
        Some(self.parser.parse(&bytes::Bytes::copy_from_slice(line), None))
    }
}

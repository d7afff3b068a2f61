//! The `file` source: tails log files matched by a path or glob, through rotation, truncation
//! and deletion, parsing their lines with the shared line parsers.
//!
//! The work is done by [`Tailer`] (blocking file I/O, run on tokio's blocking pool one call at a
//! time, each bounded by `read_batch_bytes` per file); this wrapper wakes it on file system
//! events (notify, watching the glob's directory) with a poll timer as the fallback, since
//! events can be missed on some file systems.

mod checkpoint;
mod identity;
mod tailer;
mod tracked;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use brook_engine::format::FormatSpec;
use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use serde::Deserialize;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::parse::{default_max_line_bytes, CsvConfig, FieldType, LineFormat, MultilineConfig, ParseConfig, Parser};
use crate::registry::{parse_config, Context};
use crate::source::{Source, SourceItem};

pub use tailer::{StartAt, Tailer, TailerOptions};

/// The connector type's name.
const TYPE: &str = "file";

/// The configuration of a `file` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to read, or a glob (`*`, `?`, `[..]` in file and directory names); relative
    /// paths are resolved against the pipeline file's directory.
    pub path: String,
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
    /// Where files found at the first start without a checkpoint are read from (default
    /// beginning); files that appear later are always read from their beginning.
    #[serde(default)]
    pub start: StartAt,
    /// How often the glob is rescanned and files are checked when no event came, in ms
    /// (default 500, at least 10).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How many leading bytes (at most; or the first line when shorter) fingerprint a file
    /// (default 256).
    #[serde(default = "default_fingerprint_bytes")]
    pub fingerprint_bytes: usize,
    /// The most files open at once (default 256); files read to their end are closed first.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// The most bytes read from one file at a time (default 256 KiB).
    #[serde(default = "default_read_batch_bytes")]
    pub read_batch_bytes: usize,
}

fn default_poll_interval_ms() -> u64 {
    500
}

fn default_fingerprint_bytes() -> usize {
    256
}

fn default_max_open_files() -> usize {
    256
}

fn default_read_batch_bytes() -> usize {
    256 * 1024
}

impl FileConfig {
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

    /// The tailer settings, with the path resolved against `ctx`.
    pub fn tailer_options(&self, ctx: &Context) -> Result<TailerOptions> {
        let bound = |name: &str, value: u64, min: u64, max: u64| {
            if value < min || value > max {
                Err(Error::config(
                    TYPE,
                    format!("{name} must be between {min} and {max}, not {value}"),
                ))
            } else {
                Ok(())
            }
        };
        bound("poll_interval_ms", self.poll_interval_ms, 10, 3_600_000)?;
        bound("fingerprint_bytes", self.fingerprint_bytes as u64, 1, 64 * 1024)?;
        bound("max_open_files", self.max_open_files as u64, 1, 65_536)?;
        bound("read_batch_bytes", self.read_batch_bytes as u64, 1, 64 << 20)?;
        if self.path.trim().is_empty() {
            return Err(Error::config(TYPE, "path is empty"));
        }
        let path = std::path::Path::new(&self.path);
        let pattern = if path.is_absolute() {
            self.path.clone()
        } else {
            // Resolved like `ctx.resolve` does, but the base directory is escaped: its
            // characters must not act as wildcards.
            let base = ctx.base_dir.to_str().ok_or_else(|| {
                Error::config(
                    TYPE,
                    format!("the base directory {} is not UTF-8", ctx.base_dir.display()),
                )
            })?;
            std::path::Path::new(&glob::Pattern::escape(base))
                .join(path)
                .to_string_lossy()
                .into_owned()
        };
        glob::Pattern::new(&pattern).map_err(|e| Error::config(TYPE, format!("path is not a valid glob: {e}")))?;
        Ok(TailerOptions {
            pattern,
            start: self.start,
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            fingerprint_bytes: self.fingerprint_bytes,
            max_open_files: self.max_open_files,
            read_batch_bytes: self.read_batch_bytes,
        })
    }
}

/// Builds a `file` source; checks the configuration only.
pub fn build(ctx: &Context, config: serde_json::Value) -> Result<Box<dyn Source>> {
    let config: FileConfig = parse_config(TYPE, config)?;
    let parser = Arc::new(config.parse_config().compile(TYPE)?);
    let options = config.tailer_options(ctx)?;
    Ok(Box::new(FileSource::new(ctx.name.clone(), options, parser)))
}

/// The `file` source: a [`Tailer`] woken by file system events and a poll timer.
pub struct FileSource {
    name: String,
    options: TailerOptions,
    parser: Arc<Parser>,
    tailer: Option<Arc<Mutex<Tailer>>>,
    wake: Arc<tokio::sync::Notify>,
    rescan: Arc<AtomicBool>,
    watcher: Option<RecommendedWatcher>,
    last_watch_attempt: Option<Instant>,
}

impl FileSource {
    /// A source over checked settings.
    pub fn new(name: String, options: TailerOptions, parser: Arc<Parser>) -> Self {
        FileSource {
            name,
            options,
            parser,
            tailer: None,
            wake: Arc::new(tokio::sync::Notify::new()),
            rescan: Arc::new(AtomicBool::new(false)),
            watcher: None,
            last_watch_attempt: None,
        }
    }

    /// Watches the glob's directory if not yet watching; retried every poll interval, since the
    /// directory may not exist yet.
    fn ensure_watch(&mut self, now: Instant) {
        if self.watcher.is_some()
            || self
                .last_watch_attempt
                .is_some_and(|t| now.duration_since(t) < self.options.poll_interval)
        {
            return;
        }
        self.last_watch_attempt = Some(now);
        let (root, recursive) = tailer::watch_root(&self.options.pattern);
        let wake = Arc::clone(&self.wake);
        let rescan = Arc::clone(&self.rescan);
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else {
                rescan.store(true, Ordering::Relaxed);
                wake.notify_one();
                return;
            };
            match event.kind {
                EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => return,
                EventKind::Modify(ModifyKind::Data(_)) => {}
                _ => rescan.store(true, Ordering::Relaxed),
            }
            wake.notify_one();
        };
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        let watcher = notify::recommended_watcher(handler).and_then(|mut w| w.watch(&root, mode).map(|()| w));
        match watcher {
            Ok(w) => {
                tracing::debug!(source = %self.name, dir = %root.display(), recursive, "watching for changes");
                self.watcher = Some(w);
            }
            Err(e) => {
                tracing::debug!(source = %self.name, dir = %root.display(), error = %e, "cannot watch, polling");
            }
        }
    }
}

/// Locks the tailer; a panic in another holder does not make its state unusable.
fn lock(tailer: &Mutex<Tailer>) -> MutexGuard<'_, Tailer> {
    tailer.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl Source for FileSource {
    fn format(&self) -> FormatSpec {
        self.parser.format_spec()
    }

    async fn open(&mut self, checkpoint: Option<serde_json::Value>) -> Result<()> {
        let options = self.options.clone();
        let parser = Arc::clone(&self.parser);
        let tailer = tokio::task::spawn_blocking(move || {
            Tailer::open(options, parser, checkpoint.as_ref(), std::time::Instant::now())
        })
        .await
        .map_err(|e| Error::Internal(format!("the file tailer's task failed: {e}")))??;
        let (files, open) = tailer.counts();
        tracing::info!(source = %self.name, pattern = %self.options.pattern, files, open, "file source opened");
        self.tailer = Some(Arc::new(Mutex::new(tailer)));
        self.ensure_watch(Instant::now());
        Ok(())
    }

    async fn poll(&mut self, max_records: usize, wait_ms: u64) -> Result<Option<Vec<SourceItem>>> {
        let tailer = self
            .tailer
            .clone()
            .ok_or_else(|| Error::Internal("the file source was polled before it was opened".into()))?;
        let max_records = max_records.max(1);
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        loop {
            self.ensure_watch(Instant::now());
            let force = self.rescan.swap(false, Ordering::Relaxed);
            let shared = Arc::clone(&tailer);
            // The items stay inside the tailer until `take`, so a poll cancelled while the
            // blocking read runs loses nothing.
            tokio::task::spawn_blocking(move || lock(&shared).fill(std::time::Instant::now(), max_records, force))
                .await
                .map_err(|e| Error::Internal(format!("the file tailer's task failed: {e}")))??;
            let (items, multiline_deadline) = {
                let mut t = lock(&tailer);
                (t.take(max_records), t.next_deadline())
            };
            if !items.is_empty() {
                return Ok(Some(items));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Some(Vec::new()));
            }
            let mut wake_at = deadline.min(now + self.options.poll_interval);
            if let Some(d) = multiline_deadline {
                wake_at = wake_at.min(Instant::from_std(d).max(now));
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    fn checkpoint(&self) -> serde_json::Value {
        match &self.tailer {
            Some(t) => lock(t).checkpoint(),
            None => serde_json::Value::Null,
        }
    }

    fn parse_line(&self, line: &[u8]) -> Option<Result<bytes::Bytes, String>> {
        Some(self.parser.parse(&bytes::Bytes::copy_from_slice(line), None))
    }
}

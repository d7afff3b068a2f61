//! The `sqlite` sink: writes rows to a table of a SQLite database file, exactly once, by storing
//! the input offsets in `_brook_offsets` in the same transaction as the rows.
//!
//! rusqlite is blocking, so the connection lives behind a std `Mutex` in an `Arc` and every call
//! runs on tokio's blocking pool; a call that is cancelled leaves the connection in place for the
//! next one.

mod db;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;

use self::db::Db;
use super::sql_types::check_target;
use crate::error::{Error, Result};
use crate::registry::{parse_config, Context};
use crate::sink::{Sink, SinkBatch};

/// The connector type name.
const NAME: &str = "sqlite";

/// The longest `busy_timeout_ms` accepted: one hour.
const MAX_BUSY_TIMEOUT_MS: u64 = 3_600_000;

/// Configuration of the `sqlite` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file, resolved against the pipeline's directory; it and its parent directory
    /// are created when missing.
    pub path: PathBuf,
    /// The table the rows go to, one identifier (always quoted, so case and dots are kept).
    pub table: String,
    /// Columns that identify a row. A created table gets them as its PRIMARY KEY, and a row
    /// whose key is already there replaces the other columns (an upsert). An existing table
    /// needs a PRIMARY KEY or UNIQUE index on exactly these columns.
    #[serde(default)]
    pub key: Vec<String>,
    /// Whether to create the table (from the first batch's columns) and `_brook_offsets` when
    /// they are missing; when false, both must exist.
    #[serde(default = "default_true")]
    pub create_table: bool,
    /// The most rows in one INSERT statement; a bigger batch becomes several statements in one
    /// transaction (at most 100,000, and fewer when the columns would exceed SQLite's 32,766
    /// parameters per statement).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// How long a write waits for another connection's lock on the file before failing with a
    /// retriable error (at most one hour).
    #[serde(default = "default_busy_timeout_ms")]
    pub busy_timeout_ms: u64,
}

/// Serde's default for `create_table`.
fn default_true() -> bool {
    true
}

/// Serde's default for `batch_rows`.
fn default_batch_rows() -> usize {
    500
}

/// Serde's default for `busy_timeout_ms`.
fn default_busy_timeout_ms() -> u64 {
    5000
}

/// Parses and checks the configuration; opens nothing (the file is opened by `open`).
pub fn build(ctx: &Context, config: serde_json::Value) -> Result<Box<dyn Sink>> {
    let config: SqliteConfig = parse_config(NAME, config)?;
    if config.path.as_os_str().is_empty() {
        return Err(Error::config(NAME, "path must not be empty"));
    }
    check_target(NAME, &config.table, &config.key, config.batch_rows)?;
    if config.busy_timeout_ms > MAX_BUSY_TIMEOUT_MS {
        return Err(Error::config(
            NAME,
            format!(
                "busy_timeout_ms must be at most {MAX_BUSY_TIMEOUT_MS}, not {}",
                config.busy_timeout_ms
            ),
        ));
    }
    Ok(Box::new(SqliteSink {
        name: ctx.name.clone(),
        path: ctx.resolve(&config.path),
        config: Arc::new(config),
        db: Arc::new(Mutex::new(None)),
    }))
}

/// The sink: its configuration and the connection, opened on first use.
struct SqliteSink {
    /// The connector instance's name, the `sink` column of `_brook_offsets`.
    name: String,
    /// The resolved database file.
    path: PathBuf,
    /// The configuration.
    config: Arc<SqliteConfig>,
    /// The open database, None until the first call or after a failure that may have broken it.
    db: Arc<Mutex<Option<Db>>>,
}

impl SqliteSink {
    /// Runs `work` on the blocking pool with the database, opening it first when needed. A
    /// retriable failure closes the connection, so that the next call starts afresh.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce(&mut Db) -> Result<T> + Send + 'static) -> Result<T> {
        let slot = self.db.clone();
        let path = self.path.clone();
        let config = self.config.clone();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves the connection in an unknown state: drop it.
            let mut guard = slot.lock().unwrap_or_else(|poisoned| {
                let mut guard = poisoned.into_inner();
                *guard = None;
                guard
            });
            if guard.is_none() {
                *guard = Some(Db::open(&path, config, name)?);
            }
            let result = match guard.as_mut() {
                Some(db) => work(db),
                None => Err(Error::Internal("the SQLite connection vanished".to_string())),
            };
            if matches!(&result, Err(e) if e.is_retriable()) {
                *guard = None;
            }
            result
        })
        .await
        .map_err(|e| Error::Internal(format!("the SQLite task failed: {e}")))?
    }
}

#[async_trait]
impl Sink for SqliteSink {
    async fn open(&mut self, topic: &str) -> Result<Option<Vec<(i32, i64)>>> {
        let topic = topic.to_string();
        self.run(move |db| db.offsets(&topic)).await.map(Some)
    }

    async fn write(&mut self, batch: SinkBatch<'_>) -> Result<()> {
        let rows = batch.rows.clone();
        let topic = batch.topic.to_string();
        let next_offsets = batch.next_offsets.to_vec();
        self.run(move |db| db.write(&rows, &topic, &next_offsets)).await
    }

    async fn flush(&mut self) -> Result<()> {
        // Every write commits with synchronous=FULL before it returns: nothing is buffered.
        Ok(())
    }
}

#[cfg(test)]
mod tests;

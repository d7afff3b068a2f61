//! The `postgres` sink: writes rows to a PostgreSQL table, exactly once, by storing the input
//! offsets in `_brook_offsets` in the same transaction as the rows.
//!
//! Rows go in as multi-row INSERT statements with typed parameters (COPY would be faster for
//! plain appends, but it cannot upsert and cannot name a refused row, so one path serves both).
//! The connection is opened on first use and again on the call after it broke.

mod write;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio_postgres::{Client, NoTls, Statement};
use tracing::{info, warn};

use super::sql_types::{check_target, quote_ident, OFFSETS_TABLE};
use crate::error::{Error, Result};
use crate::registry::{parse_config, Context};
use crate::sink::{Sink, SinkBatch};

/// The connector type name.
const NAME: &str = "postgres";

/// The longest `connect_timeout_ms` accepted: ten minutes.
const MAX_CONNECT_TIMEOUT_MS: u64 = 600_000;

/// The most prepared statements kept per connection; the cache starts over when full.
const MAX_STATEMENTS: usize = 64;

/// Configuration of the `postgres` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// The connection: libpq key=value pairs (`host=127.0.0.1 user=postgres dbname=test`) or a
    /// `postgres://user@host/db` URL. TLS is not supported.
    pub url: String,
    /// The schema holding the table and `_brook_offsets`; the connection's search path when
    /// absent. Created when missing if `create_table` is true.
    #[serde(default)]
    pub schema: Option<String>,
    /// The table the rows go to, one identifier (always quoted, so case is kept).
    pub table: String,
    /// Columns that identify a row. A created table gets them as its PRIMARY KEY, and a row
    /// whose key is already there updates the other columns (INSERT ... ON CONFLICT DO UPDATE).
    /// An existing table needs a PRIMARY KEY or UNIQUE constraint on exactly these columns.
    #[serde(default)]
    pub key: Vec<String>,
    /// Whether to create the table (from the first batch's columns), `_brook_offsets` and the
    /// schema when they are missing; when false, they must exist.
    #[serde(default = "default_true")]
    pub create_table: bool,
    /// The most rows in one INSERT statement; a bigger batch becomes several statements in one
    /// transaction (at most 100,000, and fewer when the columns would exceed PostgreSQL's 65,535
    /// parameters per statement).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// How long connecting may take before the call fails with a retriable error (1 to 600,000).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

/// Serde's default for `create_table`.
fn default_true() -> bool {
    true
}

/// Serde's default for `batch_rows`.
fn default_batch_rows() -> usize {
    500
}

/// Serde's default for `connect_timeout_ms`.
fn default_connect_timeout_ms() -> u64 {
    10_000
}

/// Parses and checks the configuration, the connection string included; connects to nothing.
pub fn build(ctx: &Context, config: serde_json::Value) -> Result<Box<dyn Sink>> {
    let config: PostgresConfig = parse_config(NAME, config)?;
    check_target(NAME, &config.table, &config.key, config.batch_rows)?;
    let mut pg = tokio_postgres::Config::from_str(&config.url)
        .map_err(|e| Error::config(NAME, format!("url is not a valid connection string: {e}")))?;
    if config.connect_timeout_ms == 0 || config.connect_timeout_ms > MAX_CONNECT_TIMEOUT_MS {
        return Err(Error::config(
            NAME,
            format!(
                "connect_timeout_ms must be between 1 and {MAX_CONNECT_TIMEOUT_MS}, not {}",
                config.connect_timeout_ms
            ),
        ));
    }
    pg.connect_timeout(Duration::from_millis(config.connect_timeout_ms));
    let qualify = |name: &str| match &config.schema {
        Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(name)),
        None => quote_ident(name),
    };
    if config.schema.as_deref() == Some("") {
        return Err(Error::config(NAME, "schema must not be empty when given"));
    }
    Ok(Box::new(PostgresSink {
        name: ctx.name.clone(),
        table: qualify(&config.table),
        offsets: qualify(OFFSETS_TABLE),
        config,
        pg,
        client: None,
        columns: None,
        statements: HashMap::new(),
    }))
}

/// The sink: its configuration, the connection and what it knows about the table.
struct PostgresSink {
    /// The connector instance's name, the `sink` column of `_brook_offsets`.
    name: String,
    /// The configuration.
    config: PostgresConfig,
    /// The parsed connection settings.
    pg: tokio_postgres::Config,
    /// The connection, None until first used and after it broke.
    client: Option<Client>,
    /// The quoted, maybe schema-qualified table name.
    table: String,
    /// The quoted, maybe schema-qualified `_brook_offsets`.
    offsets: String,
    /// The table's columns; None until read, and after a failure so that the next write reads
    /// them again.
    columns: Option<Vec<write::TableColumn>>,
    /// Prepared statements by SQL text, at most [`MAX_STATEMENTS`].
    statements: HashMap<String, Statement>,
}

impl PostgresSink {
    /// Connects when there is no connection or the last one broke, and returns it.
    async fn connect(&mut self) -> Result<&mut Client> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            warn!(sink = %self.name, "postgres connection was lost, reconnecting");
            self.client = None;
        }
        if self.client.is_none() {
            let timeout = Duration::from_millis(self.config.connect_timeout_ms);
            let (client, connection) = tokio::time::timeout(timeout, self.pg.connect(NoTls))
                .await
                .map_err(|_| Error::External {
                    system: NAME,
                    message: format!("connecting timed out after {} ms", self.config.connect_timeout_ms),
                    retriable: true,
                })?
                .map_err(|e| write::connect_error(&e))?;
            let sink = self.name.clone();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    warn!(sink = %sink, error = %e, "postgres connection ended");
                }
            });
            info!(sink = %self.name, "connected to postgres");
            self.statements.clear();
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| Error::Internal("the postgres connection vanished".to_string()))
    }

    /// Forgets what a failed call may have made stale: the table's columns, and the connection
    /// after a retriable error (the client may not have noticed yet that the server closed it).
    fn after<T>(&mut self, result: &Result<T>) {
        if let Err(e) = result {
            self.columns = None;
            if e.is_retriable() {
                self.client = None;
            }
        }
    }

    /// Creates the schema and `_brook_offsets` when allowed, or checks that `_brook_offsets`
    /// exists, and reads this sink's offsets for `topic`.
    async fn read_offsets(&mut self, topic: &str) -> Result<Vec<(i32, i64)>> {
        let create = self.config.create_table;
        let schema = self.config.schema.clone();
        let offsets = self.offsets.clone();
        let sink = self.name.clone();
        let client = self.connect().await?;
        if create {
            if let Some(schema) = &schema {
                write::ddl(
                    client,
                    &format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)),
                    "creating the schema",
                )
                .await?;
            }
            write::ddl(
                client,
                &super::sql_types::create_offsets_sql(&offsets),
                "creating _brook_offsets",
            )
            .await?;
        } else if write::table_columns(client, &offsets).await?.is_empty() {
            return Err(Error::config(
                NAME,
                format!(
                    "table {offsets} does not exist and create_table is false: create it or let the sink create it"
                ),
            ));
        }
        write::stored_offsets(client, &offsets, &sink, topic).await
    }
}

#[async_trait]
impl Sink for PostgresSink {
    async fn open(&mut self, topic: &str) -> Result<Option<Vec<(i32, i64)>>> {
        let result = self.read_offsets(topic).await;
        self.after(&result);
        result.map(Some)
    }

    async fn write(&mut self, batch: SinkBatch<'_>) -> Result<()> {
        let result = self.write_batch(batch).await;
        self.after(&result);
        result
    }

    async fn flush(&mut self) -> Result<()> {
        // Every write commits before it returns: nothing is buffered.
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! The blocking half of the `sqlite` sink: one rusqlite connection, the table's known columns,
//! and the transaction that writes rows and offsets together.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, params_from_iter, Connection, ErrorCode, ToSql, TransactionBehavior};
use tracing::{info, warn};

use super::{SqliteConfig, NAME};
use crate::error::{Error, Result};
use crate::sinks::sql_types::{
    add_column_sql, create_offsets_sql, create_table_sql, insert_sql, key_positions, quote_ident, select_offsets_sql,
    upsert_offset_sql, Dialect, SqlRows, SqlValue, OFFSETS_TABLE,
};

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Int(v) => ValueRef::Integer(*v),
            SqlValue::Float(v) => ValueRef::Real(*v),
            SqlValue::Text(v) => ValueRef::Text(v.as_bytes()),
            SqlValue::Bool(v) => ValueRef::Integer(i64::from(*v)),
            SqlValue::Bytes(v) => ValueRef::Blob(v),
        }))
    }
}

/// How a failed statement is handled.
enum Failure {
    /// The database refused a row's values for good (a constraint, a type): find which row.
    Row(String),
    /// Anything else, already as the error to return.
    Fatal(Error),
}

/// Sorts a rusqlite error: refused values, a busy or failing file (retriable), a table or column
/// that vanished under us (retriable: the next call looks again), or the user's schema.
fn classify(what: &str, e: rusqlite::Error) -> Failure {
    let rusqlite::Error::SqliteFailure(code, message) = &e else {
        return Failure::Fatal(Error::Internal(format!("{what}: {e}")));
    };
    let message = message.clone().unwrap_or_else(|| e.to_string());
    let external = |retriable| {
        Failure::Fatal(Error::External {
            system: NAME,
            message: format!("{what}: {message}"),
            retriable,
        })
    };
    match code.code {
        ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig => Failure::Row(message),
        ErrorCode::DatabaseBusy
        | ErrorCode::DatabaseLocked
        | ErrorCode::SystemIoFailure
        | ErrorCode::DiskFull
        | ErrorCode::CannotOpen
        | ErrorCode::OutOfMemory
        | ErrorCode::ReadOnly
        | ErrorCode::FileLockingProtocolFailed
        | ErrorCode::SchemaChanged
        | ErrorCode::OperationInterrupted => external(true),
        ErrorCode::Unknown
            if ["no such table", "no such column", "has no column named"]
                .iter()
                .any(|m| message.contains(m)) =>
        {
            external(true)
        }
        ErrorCode::Unknown | ErrorCode::AuthorizationForStatementDenied => {
            Failure::Fatal(Error::config(NAME, format!("{what}: {message}")))
        }
        _ => external(false),
    }
}

/// The error of a failure outside row writes, where a refused row is not expected.
fn fatal(what: &str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |e| match classify(what, e) {
        Failure::Row(message) => Error::External {
            system: NAME,
            message: format!("{what}: {message}"),
            retriable: false,
        },
        Failure::Fatal(e) => e,
    }
}

/// An open database and what the sink knows about its table.
pub(super) struct Db {
    /// The connection.
    conn: Connection,
    /// The configuration.
    config: Arc<SqliteConfig>,
    /// The connector instance's name, the `sink` column of `_brook_offsets`.
    sink: String,
    /// The quoted table name.
    table: String,
    /// The table's columns, lowercased (SQLite compares column names without case); None until
    /// read, and after a failure, so that the next write reads them again.
    columns: Option<Vec<String>>,
}

impl Db {
    /// Opens (creating) the database file in WAL mode with synchronous=FULL, so that a write
    /// that returned survives a crash of the process or the machine.
    pub(super) fn open(path: &Path, config: Arc<SqliteConfig>, sink: String) -> Result<Db> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        let what = format!("opening {}", path.display());
        let conn = Connection::open(path).map_err(fatal(&what))?;
        conn.busy_timeout(Duration::from_millis(config.busy_timeout_ms))
            .map_err(fatal(&what))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(fatal(&what))?;
        if !mode.eq_ignore_ascii_case("wal") {
            warn!(path = %path.display(), journal_mode = %mode, "sqlite database is not in WAL mode");
        }
        conn.pragma_update(None, "synchronous", "FULL").map_err(fatal(&what))?;
        Ok(Db {
            conn,
            table: quote_ident(&config.table),
            config,
            sink,
            columns: None,
        })
    }

    /// The columns of table `name` (lowercased), empty when it does not exist.
    fn table_columns(&self, name: &str) -> Result<Vec<String>> {
        let what = format!("reading the columns of {}", quote_ident(name));
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .map_err(fatal(&what))?;
        let names = stmt
            .query_map([name], |row| row.get::<_, String>(0))
            .map_err(fatal(&what))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(fatal(&what))?;
        Ok(names.into_iter().map(|n| n.to_lowercase()).collect())
    }

    /// Creates `_brook_offsets` when allowed and returns the offsets stored for this sink and
    /// `topic`.
    pub(super) fn offsets(&mut self, topic: &str) -> Result<Vec<(i32, i64)>> {
        let offsets = quote_ident(OFFSETS_TABLE);
        if self.config.create_table {
            self.conn
                .execute(&create_offsets_sql(&offsets), [])
                .map_err(fatal("creating _brook_offsets"))?;
        } else if self.table_columns(OFFSETS_TABLE)?.is_empty() {
            return Err(Error::config(
                NAME,
                "table _brook_offsets does not exist and create_table is false: create it or let the sink create it",
            ));
        }
        let what = "reading _brook_offsets";
        let mut stmt = self
            .conn
            .prepare(&select_offsets_sql(Dialect::Sqlite, &offsets))
            .map_err(fatal(what))?;
        let rows = stmt
            .query_map(params![self.sink, topic], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(fatal(what))?
            .collect::<rusqlite::Result<Vec<(i32, i64)>>>()
            .map_err(fatal(what))?;
        Ok(rows)
    }

    /// Writes `batch` and stores `next_offsets` for `topic` in one transaction. A row the
    /// database refuses is `Error::Rejected` with nothing of the batch committed.
    pub(super) fn write(&mut self, batch: &RecordBatch, topic: &str, next_offsets: &[(i32, i64)]) -> Result<()> {
        let rows = SqlRows::from_batch(NAME, batch)?;
        let mut key_columns = Vec::new();
        if rows.rows > 0 {
            if rows.columns.is_empty() {
                return Err(Error::Rejected {
                    index: 0,
                    reason: "the row has no columns to write".to_string(),
                });
            }
            key_columns = key_positions(NAME, &rows, &self.config.key)?;
            self.prepare_table(&rows)?;
        }
        let result = match self.write_chunks(&rows, &key_columns, topic, next_offsets) {
            Ok(()) => Ok(()),
            Err(Failure::Row(_)) => self.write_row_by_row(&rows, topic, next_offsets),
            Err(Failure::Fatal(e)) => Err(e),
        };
        if result.is_err() {
            self.columns = None;
        }
        result
    }

    /// Creates the table from the rows' columns when it is missing (and allowed), and adds the
    /// rows' columns it lacks, each DDL statement committed on its own.
    fn prepare_table(&mut self, rows: &SqlRows) -> Result<()> {
        let mut known = match self.columns.take() {
            Some(known) => known,
            None => self.table_columns(&self.config.table)?,
        };
        if known.is_empty() {
            if !self.config.create_table {
                return Err(Error::config(
                    NAME,
                    format!("table {} does not exist and create_table is false", self.table),
                ));
            }
            let sql = create_table_sql(Dialect::Sqlite, &self.table, &rows.columns, &self.config.key);
            self.conn.execute(&sql, []).map_err(fatal("creating the table"))?;
            info!(sink = %self.sink, table = %self.table, columns = rows.columns.len(), "created sqlite table");
            known = rows.columns.iter().map(|c| c.name.to_lowercase()).collect();
        }
        for column in &rows.columns {
            let lower = column.name.to_lowercase();
            if !known.contains(&lower) {
                let sql = add_column_sql(Dialect::Sqlite, &self.table, column);
                self.conn.execute(&sql, []).map_err(fatal("adding a column"))?;
                info!(sink = %self.sink, table = %self.table, column = %column.name, "added sqlite column");
                known.push(lower);
            }
        }
        self.columns = Some(known);
        Ok(())
    }

    /// The fast path: multi-row statements of at most `batch_rows` rows, then the offsets, in
    /// one IMMEDIATE transaction (the write lock is taken up front, so it never has to be
    /// upgraded midway).
    fn write_chunks(
        &mut self,
        rows: &SqlRows,
        key_columns: &[usize],
        topic: &str,
        next_offsets: &[(i32, i64)],
    ) -> Result<(), Failure> {
        let what = "writing rows";
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| classify("starting a transaction", e))?;
        for range in rows.chunks(Dialect::Sqlite, key_columns, self.config.batch_rows) {
            let sql = insert_sql(
                Dialect::Sqlite,
                &self.table,
                &rows.columns,
                &[],
                &self.config.key,
                range.len(),
            );
            let mut stmt = tx.prepare_cached(&sql).map_err(|e| classify(what, e))?;
            stmt.execute(params_from_iter(rows.params(range)))
                .map_err(|e| classify(what, e))?;
        }
        store_offsets(&tx, &self.sink, topic, next_offsets).map_err(Failure::Fatal)?;
        tx.commit().map_err(|e| classify("committing", e))
    }

    /// The slow path after a refused statement: the rows one by one in a new transaction, so
    /// that the first refused row is named. If every row goes in (the refusal came from
    /// several rows together), the batch is committed.
    fn write_row_by_row(&mut self, rows: &SqlRows, topic: &str, next_offsets: &[(i32, i64)]) -> Result<()> {
        let what = "writing rows one by one";
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fatal("starting a transaction"))?;
        {
            let sql = insert_sql(Dialect::Sqlite, &self.table, &rows.columns, &[], &self.config.key, 1);
            let mut stmt = tx.prepare_cached(&sql).map_err(fatal(what))?;
            for row in 0..rows.rows {
                match stmt.execute(params_from_iter(rows.params(row..row + 1))) {
                    Ok(_) => {}
                    Err(e) => {
                        return Err(match classify(what, e) {
                            Failure::Row(reason) => {
                                warn!(sink = %self.sink, table = %self.table, index = row, reason = %reason, "sqlite refused a row");
                                Error::Rejected { index: row, reason }
                            }
                            Failure::Fatal(e) => e,
                        })
                    }
                }
            }
        }
        store_offsets(&tx, &self.sink, topic, next_offsets)?;
        tx.commit().map_err(fatal("committing"))
    }
}

/// Upserts the batch's next offsets into `_brook_offsets` inside `tx`.
fn store_offsets(tx: &rusqlite::Transaction<'_>, sink: &str, topic: &str, next_offsets: &[(i32, i64)]) -> Result<()> {
    let what = "storing offsets";
    let mut stmt = tx
        .prepare_cached(&upsert_offset_sql(Dialect::Sqlite, &quote_ident(OFFSETS_TABLE)))
        .map_err(fatal(what))?;
    for (part, next) in next_offsets {
        stmt.execute(params![sink, topic, part, next]).map_err(fatal(what))?;
    }
    Ok(())
}

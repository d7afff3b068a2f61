//! How the `postgres` sink writes a batch: the table prepared (created, columns added), the rows
//! as multi-row INSERTs and the offsets upserted in one transaction, and, when PostgreSQL refuses
//! a statement's values, the rows again one by one to name the refused row.

use std::collections::HashMap;

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement, Transaction};
use tracing::{info, warn};

use super::{PostgresSink, MAX_STATEMENTS, NAME};
use crate::error::{Error, Result};
use crate::sink::SinkBatch;
use crate::sinks::sql_types::{
    add_column_sql, create_table_sql, insert_sql, key_positions, select_offsets_sql, upsert_offset_sql, Dialect,
    SqlKind, SqlRows, SqlValue,
};

impl ToSql for SqlValue {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // Every placeholder is cast to the type its value is sent as, so the types always match.
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Int(v) => v.to_sql_checked(ty, out),
            SqlValue::Float(v) => v.to_sql_checked(ty, out),
            SqlValue::Text(v) => v.to_sql_checked(ty, out),
            SqlValue::Bool(v) => v.to_sql_checked(ty, out),
            SqlValue::Bytes(v) => v.to_sql_checked(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A column of the target table as the sink needs to know it.
#[derive(Debug, Clone)]
pub(super) struct TableColumn {
    /// Its name, exactly (PostgreSQL compares quoted names with case).
    name: String,
    /// Its type as SQL (`format_type`), e.g. `timestamp with time zone`.
    type_sql: String,
    /// Whether it is a string type (text, varchar, char), which takes text without a cast.
    string: bool,
}

/// How a failed statement is handled.
pub(super) enum Failure {
    /// PostgreSQL refused a row's values for good (a constraint, a type): find which row.
    Row(String),
    /// Anything else, already as the error to return.
    Fatal(Error),
}

impl Failure {
    /// The error to return where a refused row cannot be named.
    fn into_error(self, what: &str) -> Error {
        match self {
            Failure::Row(message) => Error::External {
                system: NAME,
                message: format!("{what}: {message}"),
                retriable: false,
            },
            Failure::Fatal(e) => e,
        }
    }
}

/// Sorts a PostgreSQL error by SQLSTATE class: refused values (22, 23), transient trouble
/// (connection, serialization, resources, shutdown, a table or column that vanished and is looked
/// up again), the user's schema or rights (42, 28, 3D, 3F), or anything else.
pub(super) fn classify(what: &str, e: &tokio_postgres::Error) -> Failure {
    let Some(db) = e.as_db_error() else {
        // No answer from the server: the connection broke or could not be used.
        let retriable = e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
        return Failure::Fatal(Error::External {
            system: NAME,
            message: format!("{what}: {e}"),
            retriable,
        });
    };
    let code = db.code().code();
    let message = match db.detail() {
        Some(detail) => format!("{} ({detail})", db.message()),
        None => db.message().to_string(),
    };
    let external = |retriable| {
        Failure::Fatal(Error::External {
            system: NAME,
            message: format!("{what}: {message} (SQLSTATE {code})"),
            retriable,
        })
    };
    match code.get(..2).unwrap_or("") {
        "22" | "23" => Failure::Row(message),
        "08" | "40" | "53" | "55" | "57" | "58" => external(true),
        "42" if code == "42P01" || code == "42703" => external(true),
        "42" | "28" | "3D" | "3F" => {
            Failure::Fatal(Error::config(NAME, format!("{what}: {message} (SQLSTATE {code})")))
        }
        _ => external(false),
    }
}

/// The error of a failed connection attempt: the user's when the server refused the login or
/// the database, retriable otherwise.
pub(super) fn connect_error(e: &tokio_postgres::Error) -> Error {
    match classify("connecting", e) {
        Failure::Fatal(Error::External { message, .. }) if e.as_db_error().is_none() => Error::External {
            system: NAME,
            message,
            retriable: true,
        },
        failure => failure.into_error("connecting"),
    }
}

/// Runs one DDL statement on its own. Losing a race with another writer creating the same
/// thing (a duplicate type, table, column or schema) counts as success.
pub(super) async fn ddl(client: &Client, sql: &str, what: &str) -> Result<()> {
    match client.batch_execute(sql).await {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.code().map(|c| c.code()), Some("23505" | "42P07" | "42701" | "42P06")) => Ok(()),
        Err(e) => Err(classify(what, &e).into_error(what)),
    }
}

/// The columns of `table` (quoted, maybe qualified), in order; empty when it does not exist.
pub(super) async fn table_columns(client: &Client, table: &str) -> Result<Vec<TableColumn>> {
    let what = format!("reading the columns of {table}");
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typcategory = 'S' \
             FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = to_regclass($1::text) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&table],
        )
        .await
        .map_err(|e| classify(&what, &e).into_error(&what))?;
    rows.iter()
        .map(|row| {
            Ok(TableColumn {
                name: row.try_get(0).map_err(|e| Error::Internal(format!("{what}: {e}")))?,
                type_sql: row.try_get(1).map_err(|e| Error::Internal(format!("{what}: {e}")))?,
                string: row.try_get(2).map_err(|e| Error::Internal(format!("{what}: {e}")))?,
            })
        })
        .collect()
}

/// The offsets stored in `offsets` for `sink` and `topic`.
pub(super) async fn stored_offsets(client: &Client, offsets: &str, sink: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
    let what = format!("reading {offsets}");
    let rows = client
        .query(&select_offsets_sql(Dialect::Postgres, offsets), &[&sink, &topic])
        .await
        .map_err(|e| classify(&what, &e).into_error(&what))?;
    rows.iter()
        .map(|row| match (row.try_get(0), row.try_get(1)) {
            (Ok(part), Ok(next)) => Ok((part, next)),
            (Err(e), _) | (_, Err(e)) => Err(Error::config(
                NAME,
                format!("{offsets} needs part INTEGER and next_offset BIGINT: {e}"),
            )),
        })
        .collect()
}

/// A prepared statement for `sql` from the cache, or prepared now and cached.
async fn prepared(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, Statement>,
    sql: &str,
) -> std::result::Result<Statement, Failure> {
    if let Some(statement) = cache.get(sql) {
        return Ok(statement.clone());
    }
    let statement = tx
        .prepare(sql)
        .await
        .map_err(|e| classify("preparing a statement", &e))?;
    if cache.len() >= MAX_STATEMENTS {
        cache.clear();
    }
    cache.insert(sql.to_string(), statement.clone());
    Ok(statement)
}

/// Upserts the batch's next offsets into `offsets` inside `tx`.
async fn store_offsets(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, Statement>,
    offsets: &str,
    sink: &str,
    topic: &str,
    next_offsets: &[(i32, i64)],
) -> std::result::Result<(), Failure> {
    let statement = prepared(tx, cache, &upsert_offset_sql(Dialect::Postgres, offsets)).await?;
    for (part, next) in next_offsets {
        tx.execute(&statement, &[&sink, &topic, part, next])
            .await
            .map_err(|e| classify("storing offsets", &e))?;
    }
    Ok(())
}

/// Per column of `rows`, what follows its placeholder. Values sent as text go to an existing
/// column of another type through `::text::<its type>` (so an ISO string reaches a TIMESTAMPTZ
/// column, JSON a JSONB one), and to string columns as plain text (an assignment, which refuses
/// to truncate, unlike a cast to `varchar(n)`); other values rely on PostgreSQL's assignment casts.
fn casts(rows: &SqlRows, table: &[TableColumn]) -> Vec<String> {
    rows.columns
        .iter()
        .map(|column| {
            let target = table.iter().find(|t| t.name == column.name);
            match target {
                Some(t) if column.kind.sent_as_text() && t.string => "::text".to_string(),
                Some(t) if column.kind.sent_as_text() => format!("::text::{}", t.type_sql),
                _ => column.kind.postgres_cast().to_string(),
            }
        })
        .collect()
}

/// The parameters of one statement.
fn params(rows: &SqlRows, range: std::ops::Range<usize>) -> Vec<&(dyn ToSql + Sync)> {
    rows.params(range).map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// The connection, which [`PostgresSink::connect`] has just made sure of.
fn live(client: &mut Option<Client>) -> Result<&mut Client> {
    client
        .as_mut()
        .ok_or_else(|| Error::Internal("the postgres connection vanished".to_string()))
}

impl PostgresSink {
    /// Writes `batch` and stores its next offsets in one transaction.
    pub(super) async fn write_batch(&mut self, batch: SinkBatch<'_>) -> Result<()> {
        let rows = SqlRows::from_batch(NAME, batch.rows)?;
        let mut key_columns = Vec::new();
        if rows.rows > 0 {
            if rows.columns.is_empty() {
                return Err(Error::Rejected {
                    index: 0,
                    reason: "the row has no columns to write".to_string(),
                });
            }
            key_columns = key_positions(NAME, &rows, &self.config.key)?;
        }
        self.connect().await?;
        let casts = if rows.rows > 0 {
            self.prepare_table(&rows).await?
        } else {
            Vec::new()
        };
        match self
            .write_chunks(&rows, &casts, &key_columns, batch.topic, batch.next_offsets)
            .await
        {
            Ok(()) => Ok(()),
            Err(Failure::Row(_)) => {
                self.write_row_by_row(&rows, &casts, batch.topic, batch.next_offsets)
                    .await
            }
            Err(Failure::Fatal(e)) => Err(e),
        }
    }

    /// Creates the table from the rows' columns when it is missing (and allowed) and adds the
    /// rows' columns it lacks, each DDL statement committed on its own; returns the casts of
    /// the rows' columns.
    async fn prepare_table(&mut self, rows: &SqlRows) -> Result<Vec<String>> {
        let client = live(&mut self.client)?;
        let mut known = match self.columns.take() {
            Some(known) => known,
            None => table_columns(client, &self.table).await?,
        };
        let created = |column: &crate::sinks::sql_types::SqlColumn| TableColumn {
            name: column.name.clone(),
            type_sql: column.kind.column_type(Dialect::Postgres).to_string(),
            string: column.kind == SqlKind::Text,
        };
        if known.is_empty() {
            if !self.config.create_table {
                return Err(Error::config(
                    NAME,
                    format!("table {} does not exist and create_table is false", self.table),
                ));
            }
            let sql = create_table_sql(Dialect::Postgres, &self.table, &rows.columns, &self.config.key);
            ddl(client, &sql, "creating the table").await?;
            info!(sink = %self.name, table = %self.table, columns = rows.columns.len(), "created postgres table");
            known = rows.columns.iter().map(created).collect();
        }
        for column in &rows.columns {
            if !known.iter().any(|k| k.name == column.name) {
                ddl(
                    client,
                    &add_column_sql(Dialect::Postgres, &self.table, column),
                    "adding a column",
                )
                .await?;
                info!(sink = %self.name, table = %self.table, column = %column.name, "added postgres column");
                known.push(created(column));
            }
        }
        let casts = casts(rows, &known);
        self.columns = Some(known);
        Ok(casts)
    }

    /// The fast path: multi-row statements of at most `batch_rows` rows, then the offsets, in
    /// one transaction.
    async fn write_chunks(
        &mut self,
        rows: &SqlRows,
        casts: &[String],
        key_columns: &[usize],
        topic: &str,
        next_offsets: &[(i32, i64)],
    ) -> std::result::Result<(), Failure> {
        let client = live(&mut self.client).map_err(Failure::Fatal)?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| classify("starting a transaction", &e))?;
        for range in rows.chunks(Dialect::Postgres, key_columns, self.config.batch_rows) {
            let sql = insert_sql(
                Dialect::Postgres,
                &self.table,
                &rows.columns,
                casts,
                &self.config.key,
                range.len(),
            );
            let statement = prepared(&tx, &mut self.statements, &sql).await?;
            tx.execute(&statement, &params(rows, range))
                .await
                .map_err(|e| classify("writing rows", &e))?;
        }
        store_offsets(
            &tx,
            &mut self.statements,
            &self.offsets,
            &self.name,
            topic,
            next_offsets,
        )
        .await?;
        tx.commit().await.map_err(|e| classify("committing", &e))
    }

    /// The slow path after a refused statement: the rows one by one in a new transaction, so
    /// that the first refused row is named. If every row goes in (the refusal came from
    /// several rows together), the batch is committed.
    async fn write_row_by_row(
        &mut self,
        rows: &SqlRows,
        casts: &[String],
        topic: &str,
        next_offsets: &[(i32, i64)],
    ) -> Result<()> {
        let what = "writing rows one by one";
        let client = live(&mut self.client)?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| classify("starting a transaction", &e).into_error("starting a transaction"))?;
        let sql = insert_sql(
            Dialect::Postgres,
            &self.table,
            &rows.columns,
            casts,
            &self.config.key,
            1,
        );
        let statement = prepared(&tx, &mut self.statements, &sql)
            .await
            .map_err(|f| f.into_error(what))?;
        for row in 0..rows.rows {
            if let Err(e) = tx.execute(&statement, &params(rows, row..row + 1)).await {
                return Err(match classify(what, &e) {
                    Failure::Row(reason) => {
                        warn!(sink = %self.name, table = %self.table, index = row, reason = %reason, "postgres refused a row");
                        Error::Rejected { index: row, reason }
                    }
                    Failure::Fatal(e) => e,
                });
            }
        }
        store_offsets(
            &tx,
            &mut self.statements,
            &self.offsets,
            &self.name,
            topic,
            next_offsets,
        )
        .await
        .map_err(|f| f.into_error("storing offsets"))?;
        tx.commit()
            .await
            .map_err(|e| classify("committing", &e).into_error("committing"))
    }
}

//! The Arrow-to-SQL mapping the `sqlite` and `postgres` sinks share: column types per dialect,
//! cell values as SQL parameters, and the statement texts (CREATE, ALTER, INSERT or upsert, and
//! the `_brook_offsets` table that makes their writes exactly once).

use std::collections::HashSet;
use std::ops::Range;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int32Type, Int64Type, UInt64Type};
use datafusion::arrow::json::writer::{make_encoder, EncoderOptions};
use datafusion::arrow::record_batch::RecordBatch;

use crate::dates::{format_date, format_timestamp};
use crate::error::{Error, Result};

/// The most rows one write may put in one INSERT statement, whatever `batch_rows` says.
pub const MAX_BATCH_ROWS: usize = 100_000;

/// The table both sinks store their input offsets in, next to the rows.
pub const OFFSETS_TABLE: &str = "_brook_offsets";

/// Which database's SQL to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: `?` parameters, dynamic typing, at most 32,766 parameters per statement.
    Sqlite,
    /// PostgreSQL: `$n` parameters with explicit casts, at most 65,535 parameters per statement.
    Postgres,
}

impl Dialect {
    /// The most parameters one statement may bind.
    fn max_params(self) -> usize {
        match self {
            Dialect::Sqlite => 32_766,
            Dialect::Postgres => 65_535,
        }
    }

    /// The placeholder of the `n`th parameter (from 1); PostgreSQL's is followed by `cast`.
    fn param(self, n: usize, cast: &str) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}{cast}"),
        }
    }
}

/// What a column holds in SQL, derived from its Arrow type; decides the column type a created
/// table gets and how values are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlKind {
    /// Integers of any width, sent as a 64-bit integer.
    Integer,
    /// Floating point numbers, sent as a 64-bit float.
    Float,
    /// Text.
    Text,
    /// Booleans: 0/1 in SQLite, BOOLEAN in PostgreSQL.
    Boolean,
    /// Instants, sent as ISO-8601 text in UTC (timestamps without a time zone are taken as UTC).
    Timestamp,
    /// Calendar dates, sent as `YYYY-MM-DD` text.
    Date,
    /// Structs, lists and maps, sent as JSON text.
    Json,
    /// Bytes.
    Binary,
}

impl SqlKind {
    /// The kind of an Arrow type, or None when the sinks cannot write it.
    pub fn of(data_type: &DataType) -> Option<SqlKind> {
        use DataType::*;
        Some(match data_type {
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => SqlKind::Integer,
            Float16 | Float32 | Float64 => SqlKind::Float,
            // A column that is null in every row so far is text, the type that holds anything.
            Utf8 | LargeUtf8 | Utf8View | Null => SqlKind::Text,
            Boolean => SqlKind::Boolean,
            Timestamp(_, _) => SqlKind::Timestamp,
            Date32 | Date64 => SqlKind::Date,
            Struct(_) | List(_) | LargeList(_) | FixedSizeList(_, _) | Map(_, _) => SqlKind::Json,
            Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => SqlKind::Binary,
            Dictionary(_, value) => return SqlKind::of(value),
            _ => return None,
        })
    }

    /// The column type a created table gets.
    pub fn column_type(self, dialect: Dialect) -> &'static str {
        match (dialect, self) {
            (Dialect::Sqlite, SqlKind::Integer | SqlKind::Boolean) => "INTEGER",
            (Dialect::Sqlite, SqlKind::Float) => "REAL",
            (Dialect::Sqlite, SqlKind::Text | SqlKind::Timestamp | SqlKind::Date | SqlKind::Json) => "TEXT",
            (Dialect::Sqlite, SqlKind::Binary) => "BLOB",
            (Dialect::Postgres, SqlKind::Integer) => "BIGINT",
            (Dialect::Postgres, SqlKind::Float) => "DOUBLE PRECISION",
            (Dialect::Postgres, SqlKind::Text) => "TEXT",
            (Dialect::Postgres, SqlKind::Boolean) => "BOOLEAN",
            (Dialect::Postgres, SqlKind::Timestamp) => "TIMESTAMPTZ",
            (Dialect::Postgres, SqlKind::Date) => "DATE",
            (Dialect::Postgres, SqlKind::Json) => "JSONB",
            (Dialect::Postgres, SqlKind::Binary) => "BYTEA",
        }
    }

    /// Whether values of this kind are sent as text (and so can be cast to any column type
    /// that parses text).
    pub fn sent_as_text(self) -> bool {
        matches!(self, SqlKind::Text | SqlKind::Timestamp | SqlKind::Date | SqlKind::Json)
    }

    /// The cast after a PostgreSQL placeholder into a column this sink created: it fixes the
    /// parameter's type to the one the value is sent as, and text goes through `::text` to
    /// reach types that have no binary encoding in tokio-postgres without extra features
    /// (TIMESTAMPTZ, DATE, JSONB).
    pub fn postgres_cast(self) -> &'static str {
        match self {
            SqlKind::Integer => "::int8",
            SqlKind::Float => "::float8",
            SqlKind::Text => "::text",
            SqlKind::Boolean => "::bool",
            SqlKind::Timestamp => "::text::timestamptz",
            SqlKind::Date => "::text::date",
            SqlKind::Json => "::text::jsonb",
            SqlKind::Binary => "::bytea",
        }
    }
}

/// One cell as it is sent to the database.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text (also timestamps, dates and JSON).
    Text(String),
    /// A boolean.
    Bool(bool),
    /// Bytes.
    Bytes(Vec<u8>),
}

/// A column of rows to write.
#[derive(Debug, Clone)]
pub struct SqlColumn {
    /// The column name, as in the Arrow schema.
    pub name: String,
    /// What it holds.
    pub kind: SqlKind,
    /// One value per row.
    pub values: Vec<SqlValue>,
}

/// A batch of rows converted for SQL, column by column.
#[derive(Debug, Clone)]
pub struct SqlRows {
    /// The columns in schema order.
    pub columns: Vec<SqlColumn>,
    /// How many rows there are.
    pub rows: usize,
}

impl SqlRows {
    /// Converts Arrow rows. A column type the sinks cannot write is a `Config` error naming the
    /// column; a value that does not fit (an unsigned integer above `i64::MAX`) is `Rejected`.
    pub fn from_batch(connector: &'static str, batch: &RecordBatch) -> Result<SqlRows> {
        let schema = batch.schema();
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            let kind = SqlKind::of(field.data_type()).ok_or_else(|| {
                Error::config(
                    connector,
                    format!(
                        "column {:?} has type {} which cannot be written to SQL: cast it to a supported type",
                        field.name(),
                        field.data_type()
                    ),
                )
            })?;
            let values = column_values(field, array).map_err(|failure| match failure {
                Failure::Type(message) => Error::config(connector, format!("column {:?}: {message}", field.name())),
                Failure::Row(index, reason) => Error::Rejected {
                    index,
                    reason: format!("column {:?}: {reason}", field.name()),
                },
            })?;
            columns.push(SqlColumn {
                name: field.name().clone(),
                kind,
                values,
            });
        }
        Ok(SqlRows {
            columns,
            rows: batch.num_rows(),
        })
    }

    /// The index of the column named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Splits the rows into ranges written by one INSERT each: at most `max_rows` rows, fewer
    /// when the statement would bind more parameters than `dialect` allows, and never two rows
    /// with the same key in one statement (PostgreSQL refuses to upsert a row twice in one
    /// statement; split, the later row simply wins).
    pub fn chunks(&self, dialect: Dialect, key_columns: &[usize], max_rows: usize) -> Vec<Range<usize>> {
        let width = self.columns.len().max(1);
        let max_rows = max_rows.clamp(1, (dialect.max_params() / width).max(1));
        let key_of = |row: usize| {
            let values: Vec<&SqlValue> = key_columns.iter().map(|&c| &self.columns[c].values[row]).collect();
            format!("{values:?}")
        };
        let mut chunks = Vec::new();
        let mut start = 0;
        let mut keys: HashSet<String> = HashSet::new();
        for row in 0..self.rows {
            let key = (!key_columns.is_empty()).then(|| key_of(row));
            let full = row - start >= max_rows;
            let repeated = key.as_ref().is_some_and(|k| keys.contains(k));
            if full || repeated {
                chunks.push(start..row);
                start = row;
                keys.clear();
            }
            if let Some(key) = key {
                keys.insert(key);
            }
        }
        if start < self.rows {
            chunks.push(start..self.rows);
        }
        chunks
    }

    /// The parameters of the rows in `range`, row by row, in column order.
    pub fn params(&self, range: Range<usize>) -> impl Iterator<Item = &SqlValue> + '_ {
        range.flat_map(move |row| self.columns.iter().map(move |c| &c.values[row]))
    }
}

/// Why a column could not be converted.
enum Failure {
    /// The column's type cannot be written.
    Type(String),
    /// One value cannot be written: its row and why.
    Row(usize, String),
}

/// The values of one column.
fn column_values(field: &FieldRef, array: &ArrayRef) -> std::result::Result<Vec<SqlValue>, Failure> {
    let arrow = |e: datafusion::arrow::error::ArrowError| Failure::Type(e.to_string());
    let rows = array.len();
    let each = |f: &mut dyn FnMut(usize) -> std::result::Result<SqlValue, String>| {
        (0..rows)
            .map(|row| {
                if array.is_null(row) {
                    Ok(SqlValue::Null)
                } else {
                    f(row).map_err(|reason| Failure::Row(row, reason))
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()
    };
    use DataType::*;
    match array.data_type() {
        Null => Ok(vec![SqlValue::Null; rows]),
        Dictionary(_, value) => {
            let plain = cast(array, value).map_err(arrow)?;
            let field: FieldRef = Field::new(field.name(), value.as_ref().clone(), true).into();
            column_values(&field, &plain)
        }
        UInt64 => {
            let values = array.as_primitive::<UInt64Type>();
            each(&mut |row| {
                i64::try_from(values.value(row))
                    .map(SqlValue::Int)
                    .map_err(|_| format!("{} does not fit a signed 64-bit integer", values.value(row)))
            })
        }
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 => {
            let wide = cast(array, &Int64).map_err(arrow)?;
            let values = wide.as_primitive::<Int64Type>();
            each(&mut |row| Ok(SqlValue::Int(values.value(row))))
        }
        Float16 | Float32 | Float64 => {
            let wide = cast(array, &Float64).map_err(arrow)?;
            let values = wide.as_primitive::<Float64Type>();
            each(&mut |row| Ok(SqlValue::Float(values.value(row))))
        }
        Utf8 => {
            let values = array.as_string::<i32>();
            each(&mut |row| Ok(SqlValue::Text(values.value(row).to_string())))
        }
        LargeUtf8 => {
            let values = array.as_string::<i64>();
            each(&mut |row| Ok(SqlValue::Text(values.value(row).to_string())))
        }
        Utf8View => {
            let values = array.as_string_view();
            each(&mut |row| Ok(SqlValue::Text(values.value(row).to_string())))
        }
        Boolean => {
            let values = array.as_boolean();
            each(&mut |row| Ok(SqlValue::Bool(values.value(row))))
        }
        Timestamp(unit, _) => {
            let raw = cast(array, &Int64).map_err(arrow)?;
            let values = raw.as_primitive::<Int64Type>();
            let unit = *unit;
            each(&mut |row| Ok(SqlValue::Text(format_timestamp(values.value(row), unit))))
        }
        Date32 => {
            let days = cast(array, &Int32).map_err(arrow)?;
            let values = days.as_primitive::<Int32Type>();
            each(&mut |row| Ok(SqlValue::Text(format_date(i64::from(values.value(row))))))
        }
        Date64 => {
            let ms = cast(array, &Int64).map_err(arrow)?;
            let values = ms.as_primitive::<Int64Type>();
            each(&mut |row| Ok(SqlValue::Text(format_date(values.value(row).div_euclid(86_400_000)))))
        }
        Binary => {
            let values = array.as_binary::<i32>();
            each(&mut |row| Ok(SqlValue::Bytes(values.value(row).to_vec())))
        }
        LargeBinary => {
            let values = array.as_binary::<i64>();
            each(&mut |row| Ok(SqlValue::Bytes(values.value(row).to_vec())))
        }
        BinaryView => {
            let values = array.as_binary_view();
            each(&mut |row| Ok(SqlValue::Bytes(values.value(row).to_vec())))
        }
        FixedSizeBinary(_) => {
            let values = array.as_fixed_size_binary();
            each(&mut |row| Ok(SqlValue::Bytes(values.value(row).to_vec())))
        }
        Struct(_) | List(_) | LargeList(_) | FixedSizeList(_, _) | Map(_, _) => {
            let options = EncoderOptions::default().with_explicit_nulls(true);
            let mut encoder = make_encoder(field, array.as_ref(), &options).map_err(arrow)?;
            each(&mut |row| {
                let mut out = Vec::new();
                encoder.encode(row, &mut out);
                String::from_utf8(out)
                    .map(SqlValue::Text)
                    .map_err(|_| "the value did not encode as UTF-8 JSON".to_string())
            })
        }
        other => Err(Failure::Type(format!("type {other} cannot be written to SQL"))),
    }
}

/// `name` as a quoted identifier (double quotes, inner quotes doubled), for both dialects.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `CREATE TABLE IF NOT EXISTS` for `columns`, with a primary key on `key` (whose columns are
/// NOT NULL) when it is not empty. `table` is already quoted.
pub fn create_table_sql(dialect: Dialect, table: &str, columns: &[SqlColumn], key: &[String]) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| {
            let not_null = if key.contains(&c.name) { " NOT NULL" } else { "" };
            format!("{} {}{not_null}", quote_ident(&c.name), c.kind.column_type(dialect))
        })
        .collect();
    if !key.is_empty() {
        parts.push(format!("PRIMARY KEY ({})", quoted_list(key.iter())));
    }
    format!("CREATE TABLE IF NOT EXISTS {table} ({})", parts.join(", "))
}

/// `ALTER TABLE ... ADD COLUMN` for a nullable column. `table` is already quoted.
pub fn add_column_sql(dialect: Dialect, table: &str, column: &SqlColumn) -> String {
    let if_not_exists = match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => "IF NOT EXISTS ",
    };
    format!(
        "ALTER TABLE {table} ADD COLUMN {if_not_exists}{} {}",
        quote_ident(&column.name),
        column.kind.column_type(dialect)
    )
}

/// A multi-row INSERT of `rows` rows of `columns`; with a `key`, an upsert that updates every
/// other column of the rows (or does nothing when every column is in the key). `table` is
/// already quoted; `casts` holds, per column, what follows a PostgreSQL placeholder (the
/// kind's [`SqlKind::postgres_cast`] when missing; SQLite needs none).
pub fn insert_sql(
    dialect: Dialect,
    table: &str,
    columns: &[SqlColumn],
    casts: &[String],
    key: &[String],
    rows: usize,
) -> String {
    let mut sql = format!(
        "INSERT INTO {table} ({}) VALUES ",
        quoted_list(columns.iter().map(|c| &c.name))
    );
    let mut n = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            n += 1;
            let cast = casts.get(i).map_or(column.kind.postgres_cast(), String::as_str);
            sql.push_str(&dialect.param(n, cast));
        }
        sql.push(')');
    }
    if !key.is_empty() {
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| !key.contains(&c.name))
            .map(|c| format!("{0} = excluded.{0}", quote_ident(&c.name)))
            .collect();
        sql.push_str(&format!(" ON CONFLICT ({}) ", quoted_list(key.iter())));
        if updates.is_empty() {
            sql.push_str("DO NOTHING");
        } else {
            sql.push_str(&format!("DO UPDATE SET {}", updates.join(", ")));
        }
    }
    sql
}

/// Creates the offsets table, `offsets` being its quoted (and maybe qualified) name.
pub fn create_offsets_sql(offsets: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {offsets} (sink TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, \
         next_offset BIGINT NOT NULL, PRIMARY KEY (sink, topic, part))"
    )
}

/// Reads the offsets of one sink and topic: parameters sink, topic; columns part, next_offset.
pub fn select_offsets_sql(dialect: Dialect, offsets: &str) -> String {
    let (sink, topic) = match dialect {
        Dialect::Sqlite => ("?1", "?2"),
        Dialect::Postgres => ("$1::text", "$2::text"),
    };
    format!("SELECT part, next_offset FROM {offsets} WHERE sink = {sink} AND topic = {topic} ORDER BY part")
}

/// Stores one offset: parameters sink, topic, part (32-bit), next_offset (64-bit).
pub fn upsert_offset_sql(dialect: Dialect, offsets: &str) -> String {
    let params = match dialect {
        Dialect::Sqlite => "?1, ?2, ?3, ?4",
        Dialect::Postgres => "$1::text, $2::text, $3::int4, $4::int8",
    };
    format!(
        "INSERT INTO {offsets} (sink, topic, part, next_offset) VALUES ({params}) \
         ON CONFLICT (sink, topic, part) DO UPDATE SET next_offset = excluded.next_offset"
    )
}

/// Quoted identifiers separated by commas.
fn quoted_list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names.map(|n| quote_ident(n)).collect::<Vec<_>>().join(", ")
}

/// Checks the settings both sinks share: a table name, distinct non-empty key columns, and
/// `batch_rows` within 1..=[`MAX_BATCH_ROWS`].
pub fn check_target(connector: &'static str, table: &str, key: &[String], batch_rows: usize) -> Result<()> {
    if table.is_empty() {
        return Err(Error::config(connector, "table must not be empty"));
    }
    if key.iter().any(|k| k.is_empty()) {
        return Err(Error::config(connector, "key column names must not be empty"));
    }
    let distinct: HashSet<&String> = key.iter().collect();
    if distinct.len() != key.len() {
        return Err(Error::config(connector, "key names a column twice"));
    }
    if batch_rows == 0 || batch_rows > MAX_BATCH_ROWS {
        return Err(Error::config(
            connector,
            format!("batch_rows must be between 1 and {MAX_BATCH_ROWS}, not {batch_rows}"),
        ));
    }
    Ok(())
}

/// The positions of the key columns among the rows' columns, or a `Config` error naming the
/// first key column the rows lack.
pub fn key_positions(connector: &'static str, rows: &SqlRows, key: &[String]) -> Result<Vec<usize>> {
    key.iter()
        .map(|k| {
            rows.position(k).ok_or_else(|| {
                Error::config(
                    connector,
                    format!("key column {k:?} is not among the columns of the rows"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_the_row_bound_and_never_repeat_a_key() {
        let ids = [1, 2, 1, 3, 4, 5, 6];
        let rows = SqlRows {
            columns: vec![SqlColumn {
                name: "id".into(),
                kind: SqlKind::Integer,
                values: ids.iter().map(|&i| SqlValue::Int(i)).collect(),
            }],
            rows: ids.len(),
        };
        assert_eq!(rows.chunks(Dialect::Sqlite, &[], 3), vec![0..3, 3..6, 6..7]);
        assert_eq!(rows.chunks(Dialect::Sqlite, &[0], 3), vec![0..2, 2..5, 5..7]);
        assert_eq!(rows.chunks(Dialect::Postgres, &[0], 100), vec![0..2, 2..7]);
    }

    #[test]
    fn statements_quote_identifiers_and_cast_postgres_parameters() {
        let column = |name: &str, kind| SqlColumn {
            name: name.into(),
            kind,
            values: vec![],
        };
        let columns = [column("id", SqlKind::Integer), column("we\"ird", SqlKind::Timestamp)];
        let key = ["id".to_string()];
        assert_eq!(
            insert_sql(Dialect::Postgres, "\"t\"", &columns, &[], &key, 2),
            "INSERT INTO \"t\" (\"id\", \"we\"\"ird\") VALUES ($1::int8, $2::text::timestamptz), \
             ($3::int8, $4::text::timestamptz) ON CONFLICT (\"id\") DO UPDATE SET \"we\"\"ird\" = excluded.\"we\"\"ird\""
        );
        assert_eq!(
            insert_sql(Dialect::Sqlite, "\"t\"", &columns[..1], &[], &key, 1),
            "INSERT INTO \"t\" (\"id\") VALUES (?1) ON CONFLICT (\"id\") DO NOTHING"
        );
        assert_eq!(
            create_table_sql(Dialect::Sqlite, "\"t\"", &columns, &key),
            "CREATE TABLE IF NOT EXISTS \"t\" (\"id\" INTEGER NOT NULL, \"we\"\"ird\" TEXT, PRIMARY KEY (\"id\"))"
        );
    }
}

//! `POST /v1/statements`: runs one SQL statement and answers with its rows as JSON, bounded
//! in rows and in time, or with the message a DDL statement returns.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use brook_engine::sql::Output;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::json::writer::{JsonArray, WriterBuilder};
use datafusion::error::DataFusionError;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, ApiState};

/// The most rows one response holds; a query with more answers the first ones and
/// `"truncated": true`.
pub const MAX_RESPONSE_ROWS: usize = 10_000;
/// How long a statement may run by default before the rows so far are returned.
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 300_000;
/// The longest statement timeout a request may ask for.
pub const MAX_STATEMENT_TIMEOUT_MS: u64 = 3_600_000;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementRequest {
    /// The statement.
    sql: String,
    /// The most rows to return, at most [`MAX_RESPONSE_ROWS`].
    max_rows: Option<usize>,
    /// How long to wait for rows before answering with those so far (for unbounded queries
    /// such as `EMIT CHANGES`), at most [`MAX_STATEMENT_TIMEOUT_MS`].
    timeout_ms: Option<u64>,
}

/// Runs the statement in the body.
pub async fn post_statement(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                format!("request body is larger than {} bytes", super::MAX_REQUEST_BODY_BYTES),
            )
        } else {
            ApiError::new(status, rejection.body_text())
        }
    })?;
    let request: StatementRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("request body is not {{\"sql\": \"...\"}}: {e}"),
        )
    })?;
    let max_rows = request.max_rows.unwrap_or(MAX_RESPONSE_ROWS).min(MAX_RESPONSE_ROWS);
    let timeout = Duration::from_millis(
        request
            .timeout_ms
            .unwrap_or(DEFAULT_STATEMENT_TIMEOUT_MS)
            .min(MAX_STATEMENT_TIMEOUT_MS),
    );
    tracing::debug!(sql = %request.sql, "http statement");
    let deadline = tokio::time::Instant::now() + timeout;
    let output = match tokio::time::timeout_at(deadline, state.engine.execute(&request.sql)).await {
        Ok(result) => result.map_err(|e| engine_error(&e))?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the statement did not start within {} ms", timeout.as_millis()),
            ))
        }
    };
    match output {
        Output::Message(message) => Ok(Json(json!({ "message": message }))),
        Output::Batches(batches) => {
            let schema = batches.first().map(|b| b.schema());
            let mut rows = Rows::new(max_rows);
            for (i, batch) in batches.iter().enumerate() {
                if !rows.push(batch)? {
                    rows.truncated |= batches[i + 1..].iter().any(|b| b.num_rows() > 0);
                    break;
                }
            }
            Ok(Json(rows.finish(schema, false)))
        }
        Output::Stream(mut stream) => {
            let schema = stream.schema();
            let mut rows = Rows::new(max_rows);
            let mut timed_out = false;
            loop {
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(Some(Ok(batch))) => {
                        if !rows.push(&batch)? {
                            // A full page of a stream is reported truncated without reading
                            // further to find out, which could wait on an unbounded query.
                            rows.truncated = true;
                            break;
                        }
                    }
                    Ok(Some(Err(e))) => return Err(datafusion_error(&e)),
                    Ok(None) => break,
                    Err(_) => {
                        timed_out = true;
                        break;
                    }
                }
            }
            Ok(Json(rows.finish(Some(schema), timed_out)))
        }
    }
}

/// Rows gathered so far, at most `max_rows`.
struct Rows {
    rows: Vec<Value>,
    max_rows: usize,
    truncated: bool,
}

impl Rows {
    fn new(max_rows: usize) -> Rows {
        Rows {
            rows: Vec::new(),
            max_rows,
            truncated: false,
        }
    }

    /// Adds a batch's rows; false once the row limit is reached.
    fn push(&mut self, batch: &RecordBatch) -> Result<bool, ApiError> {
        let room = self.max_rows - self.rows.len();
        let batch = if batch.num_rows() > room {
            self.truncated = true;
            batch.slice(0, room)
        } else {
            batch.clone()
        };
        self.rows
            .extend(batch_rows(&batch).map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding rows as JSON: {e}"))
            })?);
        Ok(self.rows.len() < self.max_rows)
    }

    fn finish(self, schema: Option<SchemaRef>, timed_out: bool) -> Value {
        let (columns, types): (Vec<Value>, Vec<Value>) = schema
            .map(|s| {
                s.fields()
                    .iter()
                    .map(|f| (json!(f.name()), json!(f.data_type().to_string())))
                    .unzip()
            })
            .unwrap_or_default();
        let mut body = json!({ "columns": columns, "types": types, "rows": self.rows });
        if self.truncated || timed_out {
            body["truncated"] = json!(true);
        }
        body
    }
}

/// Encodes a batch as JSON arrays of values, one per row, in column order. Numbers stay
/// numbers, timestamps become RFC 3339 strings (UTC when the column has no time zone), binary
/// becomes hex, and nested structs become objects.
pub fn batch_rows(batch: &RecordBatch) -> Result<Vec<Value>, String> {
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    // Columns are renamed c0, c1, ... so that duplicate names (two `count(*)`) survive the
    // writer's objects; the values are then laid out in column order.
    let width = batch.num_columns();
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| Field::new(format!("c{i}"), f.data_type().clone(), true))
        .collect();
    let renamed =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), batch.columns().to_vec()).map_err(|e| e.to_string())?;
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .with_timestamp_format("%Y-%m-%dT%H:%M:%S%.fZ".to_string())
        .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%S%.f%:z".to_string())
        .build::<_, JsonArray>(Vec::new());
    writer.write(&renamed).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    let objects: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&writer.into_inner()).map_err(|e| e.to_string())?;
    let keys: Vec<String> = (0..width).map(|i| format!("c{i}")).collect();
    Ok(objects
        .into_iter()
        .map(|mut object| Value::Array(keys.iter().map(|k| object.remove(k).unwrap_or(Value::Null)).collect()))
        .collect())
}

/// An engine error as a response: 400 when the statement or its data is at fault (with the
/// position when known), 503 when retrying may help, 500 otherwise.
pub fn engine_error(e: &brook_engine::Error) -> ApiError {
    use brook_engine::Error as E;
    let status = match e {
        _ if e.is_retriable() => StatusCode::SERVICE_UNAVAILABLE,
        E::Query(inner) => return datafusion_error(inner),
        E::UnknownFormat { .. } | E::Decode { .. } | E::Schema(_) | E::InvalidStatement { .. } | E::Catalog(_) => {
            StatusCode::BAD_REQUEST
        }
        E::Broker(b) => return super::broker_error(b),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let (line, column) = match e {
        E::InvalidStatement { line, column, .. } => (*line, *column),
        _ => position_in(&e.to_string()),
    };
    ApiError {
        status,
        message: e.to_string(),
        line,
        column,
    }
}

/// A DataFusion error as a response: planning and SQL errors are the user's (400), errors
/// from Brook's own table providers keep their category, the rest are Brook's (500).
pub fn datafusion_error(e: &DataFusionError) -> ApiError {
    let root = e.find_root();
    if let DataFusionError::External(inner) = root {
        if let Some(engine) = inner.downcast_ref::<brook_engine::Error>() {
            return engine_error(engine);
        }
        if let Some(broker) = inner.downcast_ref::<brook_broker::Error>() {
            return super::broker_error(broker);
        }
    }
    let status = match root {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::ArrowError(..)
        // A division by zero or a failed cast in the data, or a query past the memory limit.
        | DataFusionError::Execution(_)
        | DataFusionError::ResourcesExhausted(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = root.message().into_owned();
    let (line, column) = position_in(&message);
    ApiError {
        status,
        message,
        line,
        column,
    }
}

/// The `Line: L, Column: C` position sqlparser puts in its messages, if any.
fn position_in(message: &str) -> (Option<u64>, Option<u64>) {
    let Some(at) = message.rfind("Line: ") else {
        return (None, None);
    };
    let rest = &message[at + "Line: ".len()..];
    let number = |s: &str| {
        s.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u64>()
            .ok()
    };
    let line = number(rest);
    let column = rest
        .find("Column: ")
        .and_then(|c| number(&rest[c + "Column: ".len()..]));
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BinaryArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::DataType;

    #[test]
    fn rows_keep_types_and_duplicate_names() {
        let schema = Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("n", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new(
                "ts",
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None),
                true,
            ),
            Field::new(
                "tz",
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new("b", DataType::Binary, true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(9_007_199_254_740_993), None])),
                Arc::new(Float64Array::from(vec![Some(1.5), Some(2.0)])),
                Arc::new(StringArray::from(vec![Some("a\"b"), None])),
                Arc::new(TimestampMillisecondArray::from(vec![Some(1_700_000_000_123), None])),
                Arc::new(TimestampMillisecondArray::from(vec![Some(0), None]).with_timezone("UTC")),
                Arc::new(BinaryArray::from(vec![Some(b"\x01\xff".as_slice()), None])),
            ],
        )
        .unwrap();
        let rows = batch_rows(&batch).unwrap();
        assert_eq!(
            rows[0],
            json!([
                9_007_199_254_740_993i64,
                1.5,
                "a\"b",
                "2023-11-14T22:13:20.123Z",
                "1970-01-01T00:00:00+00:00",
                "01ff"
            ])
        );
        assert_eq!(rows[1], json!([null, 2.0, null, null, null, null]));
    }

    #[test]
    fn positions_are_read_from_sqlparser_messages() {
        assert_eq!(
            position_in("sql parser error: Expected: end of statement, found: FORM at Line: 2, Column: 15"),
            (Some(2), Some(15))
        );
        assert_eq!(position_in("table 't' not found"), (None, None));
    }

    #[test]
    fn rows_are_bounded() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..10))]).unwrap();
        let mut rows = Rows::new(15);
        assert!(rows.push(&batch).unwrap());
        assert!(!rows.push(&batch).unwrap());
        let body = rows.finish(Some(schema), false);
        assert_eq!(body["rows"].as_array().unwrap().len(), 15);
        assert_eq!(body["truncated"], json!(true));
        assert_eq!(body["columns"], json!(["n"]));
    }
}

//! The HTTP API of `brook serve`: JSON endpoints to run SQL statements, to list, describe and
//! stop continuous query jobs, and to list topics. The CLI uses it when talking to a server.
//!
//! Endpoints (all JSON):
//! - `POST /v1/statements` `{"sql": "..."}`: runs one statement (see `statements.rs`).
//! - `GET /v1/queries`, `GET /v1/queries/{id}`, `DELETE /v1/queries/{id}`: query jobs.
//! - `GET /v1/topics`: topics with their partition counts.
//! - `POST /v1/pipelines/{pipeline}/sources/{source}`: records for an `http` source (`ingest.rs`).
//! - `GET /healthz`: `{"status": "ok"}` while the server runs.
//!
//! Every error is `{"error": "..."}` (plus `line` and `column` when a statement is at fault)
//! with 400 for user errors, 404 for unknown jobs and paths, 413 for oversize bodies, 503 when
//! retrying may help, and 500 when Brook itself is at fault.

mod ingest;
mod queries;
mod statements;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use brook_broker::access::TopicAccess;
use brook_engine::jobs::JobManager;
use brook_engine::sql::SqlEngine;
use serde_json::{json, Value};

/// The largest request body accepted, in bytes; larger ones get 413.
pub const MAX_REQUEST_BODY_BYTES: usize = 1024 * 1024;

/// What the handlers share: the SQL engine, the job manager and topic access.
#[derive(Clone)]
pub struct ApiState {
    /// Runs statements; continuous ones start jobs in `jobs`.
    pub engine: Arc<SqlEngine>,
    /// The continuous query jobs running in this server.
    pub jobs: Arc<JobManager>,
    /// Topics, through the same client API the engine uses.
    pub access: Arc<dyn TopicAccess>,
}

/// The API's routes over `state`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/statements", post(statements::post_statement))
        .route("/v1/queries", get(queries::list))
        .route("/v1/queries/{id}", get(queries::describe).delete(queries::stop))
        .route("/v1/topics", get(topics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .with_state(state)
        .merge(ingest::router())
}

/// Serves only the ingest route on `listener` (for `brook pipeline run`).
pub async fn serve_ingest(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, ingest::router()).await
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// An error response: a status and a JSON body `{"error": ..., "line"?, "column"?}`.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message, in prose.
    pub message: String,
    /// The 1-based line of the offending token in a statement, when known.
    pub line: Option<u64>,
    /// The 1-based column of the offending token in a statement, when known.
    pub column: Option<u64>,
}

impl ApiError {
    /// An error with no position.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(line) = self.line {
            body["line"] = json!(line);
        }
        if let Some(column) = self.column {
            body["column"] = json!(column);
        }
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "http request failed");
        }
        (self.status, Json(body)).into_response()
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn topics(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let topics = state.access.topics().await.map_err(|e| broker_error(&e))?;
    let topics: Vec<Value> = topics
        .into_iter()
        .map(|t| json!({ "name": t.name, "partitions": t.partitions, "internal": t.internal }))
        .collect();
    Ok(Json(json!({ "topics": topics })))
}

/// A broker error as a response: 503 when retrying may help, else 500.
fn broker_error(e: &brook_broker::Error) -> ApiError {
    let status = if e.is_retriable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    ApiError::new(status, e.to_string())
}

//! `/v1/queries`: lists, describes and stops the continuous query jobs running in this server.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use brook_engine::jobs::JobInfo;
use serde_json::{json, Value};

use super::statements::engine_error;
use super::{ApiError, ApiState};

/// A job as JSON.
fn job_json(job: &JobInfo) -> Value {
    json!({
        "id": job.id.to_string(),
        "name": job.name,
        "sql": job.sql,
        "state": job.state.to_string(),
        "records_in": job.records_in,
        "records_out": job.records_out,
        "records_dead": job.records_dead,
    })
}

/// The job with this id, or 404.
fn find(state: &ApiState, id: &str) -> Result<JobInfo, ApiError> {
    state
        .jobs
        .list()
        .into_iter()
        .find(|j| j.id == id || j.name == id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no query job {id:?}")))
}

/// `GET /v1/queries`: every job.
pub async fn list(State(state): State<ApiState>) -> Json<Value> {
    let jobs: Vec<Value> = state.jobs.list().iter().map(job_json).collect();
    Json(json!({ "queries": jobs }))
}

/// `GET /v1/queries/{id}`: one job, by id or name.
pub async fn describe(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(job_json(&find(&state, &id)?)))
}

/// `DELETE /v1/queries/{id}`: stops a job, by id or name, and answers with its last state.
pub async fn stop(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let job = find(&state, &id)?;
    state.jobs.stop(&job.id).await.map_err(|e| engine_error(&e))?;
    let job = find(&state, &id).unwrap_or(job);
    Ok(Json(job_json(&job)))
}

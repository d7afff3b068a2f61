//! `POST /v1/pipelines/{pipeline}/sources/{source}`: records for a pipeline's `http` source, as
//! one JSON object, a JSON array of objects or newline-delimited JSON. The answer comes once the
//! records are durable in the source's topic: 200 `{"records": n, "rejected": m}` (rejected
//! records went to the dead-letter topic), 404 for a source not running here, 413 for a body
//! over the source's `max_body_bytes`, 503 with `Retry-After` while its queue is full.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use brook_connectors::sources::http::{ingress, IngressError};
use serde_json::json;

use super::ApiError;

/// The largest body the route reads; each source applies its own, smaller or equal, bound.
const MAX_INGEST_BODY_BYTES: usize = 64 << 20;

/// The ingest route, servable on its own (by `brook pipeline run --http-listen`) or merged into
/// the server's API.
pub fn router() -> Router {
    Router::new().route(
        "/v1/pipelines/{pipeline}/sources/{source}",
        post(deliver).layer(DefaultBodyLimit::max(MAX_INGEST_BODY_BYTES)),
    )
}

async fn deliver(Path((pipeline, source)): Path<(String, String)>, body: Bytes) -> Response {
    let name = format!("{pipeline}.{source}");
    match ingress().deliver(&name, body).await {
        Ok(d) => Json(json!({ "records": d.records, "rejected": d.rejected })).into_response(),
        Err(e @ IngressError::NotFound(_)) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()).into_response(),
        Err(e @ IngressError::TooLarge { .. }) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response()
        }
        Err(e @ (IngressError::Busy | IngressError::Stopped)) => {
            let mut response = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
    }
}

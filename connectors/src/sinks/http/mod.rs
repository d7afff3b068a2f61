//! The `http` sink (a webhook): each batch POSTed to a URL as NDJSON or a JSON array, in
//! requests of at most `batch_rows` rows sent in order, retried with exponential backoff on
//! connection errors, 429 and 5xx. It stores no offsets: the runner commits them after each
//! write (at least once), so a receiver may see a request again after a crash.
//!
//! Only `http://` works: the workspace's reqwest is built without TLS.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::json::writer::JsonArray;
use datafusion::arrow::record_batch::RecordBatch;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::registry::{parse_config, Context};
use crate::sink::{Sink, SinkBatch};

/// The connector's type name.
const NAME: &str = "http";

/// At most this many rows per request, whatever the configuration says.
const MAX_BATCH_ROWS: usize = 100_000;
/// At most this many retries per request.
const MAX_RETRIES: u32 = 100;
/// How much of an error response's body is quoted in the error.
const ERROR_BODY_BYTES: usize = 200;

/// Configuration of the `http` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where batches are POSTed; `http://` only.
    pub url: String,
    /// The body: `ndjson` (one JSON object per line, the default) or `json_array`.
    #[serde(default)]
    pub format: HttpFormat,
    /// Extra request headers, e.g. `Authorization`; they override the default `Content-Type`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Rows per request at most (1 to 100000); a bigger batch becomes several requests, in order.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// How long one request may take, connecting included.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries of a request after a connection error, a timeout, 429 or 5xx (at most 100).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// The first retry's delay; each further retry doubles it.
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// The longest delay between retries (a `Retry-After` header is honoured up to it).
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn default_batch_rows() -> usize {
    500
}
fn default_timeout_ms() -> u64 {
    30_000
}
fn default_max_retries() -> u32 {
    5
}
fn default_retry_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

/// Request body formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFormat {
    /// Newline-delimited JSON objects, `application/x-ndjson`.
    #[default]
    Ndjson,
    /// One JSON array of objects, `application/json`.
    JsonArray,
}

/// Builds an `http` sink, checking the URL and headers without connecting.
pub fn build(_ctx: &Context, config: serde_json::Value) -> Result<Box<dyn Sink>> {
    let config: HttpSinkConfig = parse_config(NAME, config)?;
    Ok(Box::new(HttpSink::new(config)?))
}

/// POSTs batches to a URL.
struct HttpSink {
    /// The checked configuration.
    config: HttpSinkConfig,
    /// The parsed URL.
    url: Url,
    /// Every request's headers.
    headers: HeaderMap,
    /// The client, made by `open`.
    client: Option<reqwest::Client>,
}

impl HttpSink {
    /// Checks `config`.
    fn new(config: HttpSinkConfig) -> Result<HttpSink> {
        let url = Url::parse(&config.url).map_err(|e| Error::config(NAME, format!("url {:?}: {e}", config.url)))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(Error::config(
                    NAME,
                    format!(
                        "url {:?}: https is not supported because Brook's HTTP client is built without TLS; use \
                         http:// (for example through a local TLS-terminating proxy)",
                        config.url
                    ),
                ))
            }
            other => {
                return Err(Error::config(
                    NAME,
                    format!(
                        "url {:?}: the scheme {other:?} is not supported; use http://",
                        config.url
                    ),
                ))
            }
        }
        if !(1..=MAX_BATCH_ROWS).contains(&config.batch_rows) {
            return Err(Error::config(
                NAME,
                format!(
                    "batch_rows must be between 1 and {MAX_BATCH_ROWS}, not {}",
                    config.batch_rows
                ),
            ));
        }
        if config.timeout_ms == 0 {
            return Err(Error::config(NAME, "timeout_ms must be at least 1"));
        }
        if config.max_retries > MAX_RETRIES {
            return Err(Error::config(
                NAME,
                format!("max_retries must be at most {MAX_RETRIES}, not {}", config.max_retries),
            ));
        }
        if config.retry_backoff_ms > config.max_backoff_ms {
            return Err(Error::config(
                NAME,
                format!(
                    "retry_backoff_ms ({}) must not exceed max_backoff_ms ({})",
                    config.retry_backoff_ms, config.max_backoff_ms
                ),
            ));
        }
        let mut headers = HeaderMap::new();
        let content_type = match config.format {
            HttpFormat::Ndjson => "application/x-ndjson",
            HttpFormat::JsonArray => "application/json",
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| Error::config(NAME, format!("header name {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| Error::config(NAME, format!("the value of header {name}: {e}")))?;
            headers.insert(name, value);
        }
        Ok(HttpSink {
            config,
            url,
            headers,
            client: None,
        })
    }

    /// The body for `rows`.
    fn body(&self, rows: &RecordBatch) -> Result<Vec<u8>> {
        let fail = |e: datafusion::arrow::error::ArrowError| {
            Error::config(NAME, format!("cannot encode the rows as JSON: {e}"))
        };
        match self.config.format {
            HttpFormat::Ndjson => crate::sinks::json_lines(rows).map_err(fail),
            HttpFormat::JsonArray => {
                let mut writer = datafusion::arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(false)
                    .build::<_, JsonArray>(Vec::new());
                writer.write(rows).and_then(|()| writer.finish()).map_err(fail)?;
                Ok(writer.into_inner())
            }
        }
    }

    /// POSTs `body`, retrying what may succeed later.
    async fn post(&self, client: &reqwest::Client, body: bytes::Bytes, rows: usize) -> Result<()> {
        let mut backoff = self.config.retry_backoff_ms;
        let mut attempt = 0;
        loop {
            let sent = client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .body(body.clone())
                .send()
                .await;
            let (failure, retry_after_ms) = match sent {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response)
                    if response.status() == StatusCode::TOO_MANY_REQUESTS || response.status().is_server_error() =>
                {
                    let retry_after_ms = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| s.saturating_mul(1000));
                    (format!("status {}", response.status()), retry_after_ms)
                }
                Ok(response) => {
                    let status = response.status();
                    let body = error_body(response).await;
                    return Err(Error::External {
                        system: NAME,
                        message: format!("POST {} was refused with status {status}: {body}", self.url),
                        retriable: false,
                    });
                }
                Err(e) => (error_chain(&e), None),
            };
            if attempt >= self.config.max_retries {
                return Err(Error::External {
                    system: NAME,
                    message: format!(
                        "POST {} failed after {} attempts, last with {failure}",
                        self.url,
                        attempt + 1
                    ),
                    retriable: true,
                });
            }
            attempt += 1;
            let delay = retry_after_ms.unwrap_or(0).max(backoff).min(self.config.max_backoff_ms);
            tracing::warn!(url = %self.url, attempt, rows, delay_ms = delay, failure = %failure, "POST failed, retrying");
            tokio::time::sleep(Duration::from_millis(delay)).await;
            backoff = backoff.saturating_mul(2).min(self.config.max_backoff_ms);
        }
    }
}

/// The first [`ERROR_BODY_BYTES`] bytes of a response body, as text; reads no more than that.
async fn error_body(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(ERROR_BODY_BYTES);
    let text = String::from_utf8_lossy(&body).trim().to_string();
    if text.is_empty() {
        "(empty body)".to_string()
    } else {
        format!("{text:?}")
    }
}

/// A reqwest error with its causes, which say what actually failed (refused, timed out).
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait]
impl Sink for HttpSink {
    async fn open(&mut self, _topic: &str) -> Result<Option<Vec<(i32, i64)>>> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(self.config.timeout_ms))
            .build()
            .map_err(|e| Error::Internal(format!("building the HTTP client: {e}")))?;
        self.client = Some(client);
        Ok(None)
    }

    async fn write(&mut self, batch: SinkBatch<'_>) -> Result<()> {
        let client = self
            .client
            .clone()
            .ok_or_else(|| Error::Internal("the http sink was written before it was opened".into()))?;
        let total = batch.rows.num_rows();
        let mut start = 0;
        while start < total {
            let len = self.config.batch_rows.min(total - start);
            let body = self.body(&batch.rows.slice(start, len))?;
            self.post(&client, body.into(), len).await?;
            start += len;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

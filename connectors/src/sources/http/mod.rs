//! The `http` source: records POSTed to this process's HTTP API
//! (`POST /v1/pipelines/<pipeline>/sources/<source>`) as one JSON object, a JSON array of
//! objects, or newline-delimited JSON. A request is answered once its records are durable in the
//! source's topic: the runner writes what one poll returned before it polls again, so the
//! source acknowledges a request's records at the start of the poll after the one that
//! returned the last of them.

mod ingress;

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use brook_engine::format::{Format, FormatSpec};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

pub use ingress::{ingress, Delivered, Ingress, IngressError};

use crate::error::{Error, Result};
use crate::registry::{parse_config, Context};
use crate::source::{Position, Source, SourceItem, SourceRecord};

/// The `http` source's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// The largest request body accepted, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How many requests may wait for the source before new ones are refused with 503.
    #[serde(default = "default_queue_requests")]
    pub queue_requests: usize,
}

fn default_max_body_bytes() -> usize {
    10 << 20
}

fn default_queue_requests() -> usize {
    64
}

/// One request waiting to be read.
pub(crate) struct Request {
    /// The records, split from the body.
    pub records: Vec<std::result::Result<Bytes, (Bytes, String)>>,
    /// Answered once every record is durable.
    pub ack: oneshot::Sender<()>,
}

/// Builds an `http` source.
pub fn build(ctx: &Context, config: serde_json::Value) -> Result<Box<dyn Source>> {
    let config: HttpSourceConfig = parse_config("http", config)?;
    if config.queue_requests == 0 || config.max_body_bytes == 0 {
        return Err(Error::config(
            "http",
            "queue_requests and max_body_bytes must be at least 1",
        ));
    }
    Ok(Box::new(HttpSource {
        name: ctx.name.clone(),
        config,
        rx: None,
        current: VecDeque::new(),
        current_ack: None,
        acks_due: Vec::new(),
        stream: String::new(),
        seq: 0,
    }))
}

struct HttpSource {
    name: String,
    config: HttpSourceConfig,
    rx: Option<mpsc::Receiver<Request>>,
    /// Records of the request being read.
    current: VecDeque<std::result::Result<Bytes, (Bytes, String)>>,
    current_ack: Option<oneshot::Sender<()>>,
    /// Requests whose last record the previous poll returned.
    acks_due: Vec<oneshot::Sender<()>>,
    stream: String,
    seq: u64,
}

impl Drop for HttpSource {
    fn drop(&mut self) {
        if self.rx.is_some() {
            ingress().unregister(&self.name);
        }
    }
}

#[async_trait]
impl Source for HttpSource {
    fn format(&self) -> FormatSpec {
        FormatSpec::new(Format::Json)
    }

    async fn open(&mut self, _checkpoint: Option<serde_json::Value>) -> Result<()> {
        // Requests cannot be read again, so a run is its own stream; clients retry what was
        // not acknowledged.
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.stream = format!(
            "http:{}:{}-{}-{run}",
            self.name,
            std::process::id(),
            brook_broker::broker::now_ms()
        );
        self.rx = Some(ingress().register(&self.name, self.config.queue_requests, self.config.max_body_bytes));
        Ok(())
    }

    async fn poll(&mut self, max_records: usize, wait_ms: u64) -> Result<Option<Vec<SourceItem>>> {
        // Everything returned by the previous poll is durable now.
        for ack in self.acks_due.drain(..) {
            let _ = ack.send(());
        }
        let Some(rx) = self.rx.as_mut() else {
            return Err(Error::Internal(
                "the http source was polled before it was opened".into(),
            ));
        };
        let mut items = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        while items.len() < max_records.max(1) {
            if self.current.is_empty() {
                if let Some(ack) = self.current_ack.take() {
                    self.acks_due.push(ack);
                }
                let next = if items.is_empty() {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(next) => next,
                        Err(_) => break,
                    }
                } else {
                    match rx.try_recv() {
                        Ok(next) => Some(next),
                        Err(_) => break,
                    }
                };
                let Some(request) = next else {
                    return Ok(Some(items));
                };
                self.current = request.records.into();
                self.current_ack = Some(request.ack);
                continue;
            }
            let Some(record) = self.current.pop_front() else {
                continue;
            };
            let position = Position {
                stream: self.stream.clone(),
                start: self.seq,
                end: self.seq + 1,
            };
            self.seq += 1;
            items.push(match record {
                Ok(value) => SourceItem::Record(SourceRecord {
                    key: None,
                    value,
                    timestamp_ms: None,
                    headers: Vec::new(),
                    position,
                }),
                Err((raw, error)) => SourceItem::Bad { raw, error, position },
            });
        }
        if self.current.is_empty() {
            if let Some(ack) = self.current_ack.take() {
                self.acks_due.push(ack);
            }
        }
        Ok(Some(items))
    }

    fn checkpoint(&self) -> serde_json::Value {
        serde_json::json!({ "stream": self.stream, "next": self.seq })
    }
}

#[cfg(test)]
mod tests;

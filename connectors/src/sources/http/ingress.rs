//! The process-wide table of `http` sources by step name, which the HTTP API delivers request
//! bodies to. A table per process (rather than per pipeline) because the HTTP listener is the
//! process's one.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::Request;

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// No running `http` source has that name.
    #[error("no http source named {0} is running here")]
    NotFound(String),
    /// The body is larger than the source accepts.
    #[error("the body has {size} bytes; this source accepts at most {max}")]
    TooLarge {
        /// The body's size.
        size: usize,
        /// The source's `max_body_bytes`.
        max: usize,
    },
    /// The source's queue is full; retry later.
    #[error("the source is busy; retry later")]
    Busy,
    /// The source stopped before the records were durable.
    #[error("the source stopped before the records were written")]
    Stopped,
}

/// What a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Records accepted (written to the topic).
    pub records: usize,
    /// Records that were not JSON objects (sent to the dead-letter topic).
    pub rejected: usize,
}

struct Entry {
    tx: mpsc::Sender<Request>,
    max_body_bytes: usize,
}

/// Running `http` sources by step name (`<pipeline>.<source>`).
#[derive(Default)]
pub struct Ingress {
    sources: Mutex<HashMap<String, Entry>>,
}

/// The process's ingress table.
pub fn ingress() -> &'static Ingress {
    static INGRESS: OnceLock<Ingress> = OnceLock::new();
    INGRESS.get_or_init(Ingress::default)
}

impl Ingress {
    /// Registers source `name` with a queue of `queue_requests`; replaces an earlier one.
    pub(super) fn register(&self, name: &str, queue_requests: usize, max_body_bytes: usize) -> mpsc::Receiver<Request> {
        let (tx, rx) = mpsc::channel(queue_requests);
        self.lock().insert(name.to_string(), Entry { tx, max_body_bytes });
        rx
    }

    /// Forgets source `name`.
    pub(super) fn unregister(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivers a request body to source `name` and waits until its records are durable.
    pub async fn deliver(&self, name: &str, body: Bytes) -> Result<Delivered, IngressError> {
        let (tx, max) = {
            let sources = self.lock();
            let entry = sources
                .get(name)
                .ok_or_else(|| IngressError::NotFound(name.to_string()))?;
            (entry.tx.clone(), entry.max_body_bytes)
        };
        if body.len() > max {
            return Err(IngressError::TooLarge { size: body.len(), max });
        }
        let records = split(&body);
        let delivered = Delivered {
            records: records.iter().filter(|r| r.is_ok()).count(),
            rejected: records.iter().filter(|r| r.is_err()).count(),
        };
        let (ack, acked) = oneshot::channel();
        tx.try_send(Request { records, ack }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => IngressError::Busy,
            mpsc::error::TrySendError::Closed(_) => IngressError::Stopped,
        })?;
        acked.await.map_err(|_| IngressError::Stopped)?;
        Ok(delivered)
    }
}

/// Splits a body into JSON object values: one object, an array of objects, or one object per
/// line. Anything else is returned as a rejected record with why.
pub(crate) fn split(body: &Bytes) -> Vec<Result<Bytes, (Bytes, String)>> {
    let text = body.as_ref();
    let trimmed = text.trim_ascii();
    if trimmed.is_empty() {
        return Vec::new();
    }
    if trimmed.first() == Some(&b'[') {
        return match serde_json::from_slice::<Vec<serde_json::Value>>(trimmed) {
            Ok(values) => values.into_iter().map(object).collect(),
            Err(e) => vec![Err((body.clone(), format!("the body is not a JSON array: {e}")))],
        };
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(trimmed) {
        return vec![object(value)];
    }
    text.split(|b| *b == b'\n')
        .map(|line| line.trim_ascii())
        .filter(|line| !line.is_empty())
        .map(|line| match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(value) => object(value),
            Err(e) => Err((Bytes::copy_from_slice(line), format!("the line is not JSON: {e}"))),
        })
        .collect()
}

fn object(value: serde_json::Value) -> Result<Bytes, (Bytes, String)> {
    let bytes = Bytes::from(value.to_string());
    if value.is_object() {
        Ok(bytes)
    } else {
        Err((bytes, "a record must be a JSON object".to_string()))
    }
}

//! The [`Source`] trait: how a connector reads the outside world into records, and the positions
//! that let a restarted source resume exactly where its committed checkpoint says.

use async_trait::async_trait;
use brook_engine::format::FormatSpec;
use bytes::Bytes;

use crate::error::Result;

/// Where a record came from: a stream inside the source (one file, known by its identity) and
/// the record's range in it. Positions of one stream grow with every record, so that the runner
/// can tell records already written to the topic from new ones after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// The stream, e.g. a file's identity; stable across restarts, renames and rotations.
    pub stream: String,
    /// Where the record starts in the stream (a byte offset, or a sequence number).
    pub start: u64,
    /// Where the next record starts.
    pub end: u64,
}

/// One record read by a source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// The Kafka key, if the source gives one.
    pub key: Option<Bytes>,
    /// The value, in the source's [`Source::format`].
    pub value: Bytes,
    /// The record's event time in ms since the epoch, if known; else the produce time is used.
    pub timestamp_ms: Option<i64>,
    /// Extra headers (the runner adds the position headers itself).
    pub headers: Vec<(Bytes, Option<Bytes>)>,
    /// Where it was read.
    pub position: Position,
}

/// What a poll returns: records, and input that could not be parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    /// A record for the topic.
    Record(SourceRecord),
    /// Input that could not be parsed; by the error policy it goes to the dead-letter topic
    /// (with the error, the stage and the position in headers) or stops the pipeline.
    Bad {
        /// The input as read.
        raw: Bytes,
        /// Why it could not be parsed, in prose.
        error: String,
        /// Where it was read.
        position: Position,
    },
}

impl SourceItem {
    /// Where the item was read.
    pub fn position(&self) -> &Position {
        match self {
            SourceItem::Record(r) => &r.position,
            SourceItem::Bad { position, .. } => position,
        }
    }
}

/// A connector that reads records from outside Brook.
///
/// The runner calls `open` once, then `poll` in a loop; after the items of a poll are durable in
/// the topic it may call `checkpoint` and commit the value. A source built again and opened with
/// that value must resume right after the last item it had returned before the checkpoint.
#[async_trait]
pub trait Source: Send {
    /// The format of the values it emits, which readers of its topic decode them with.
    fn format(&self) -> FormatSpec;
    /// Restores the state saved by [`Source::checkpoint`] (None on a first run) and starts reading.
    async fn open(&mut self, checkpoint: Option<serde_json::Value>) -> Result<()>;
    /// Up to `max_records` items, waiting up to `wait_ms` for the first; `Ok(Some(vec![]))` when
    /// none came, `Ok(None)` once the source has ended for good (stdin at end of file).
    async fn poll(&mut self, max_records: usize, wait_ms: u64) -> Result<Option<Vec<SourceItem>>>;
    /// The state covering every item returned so far, as JSON.
    fn checkpoint(&self) -> serde_json::Value;
    /// Parses one line of input the way this source parses what it reads, for a pipeline's
    /// `tests:` block: the value it would emit, or why the line is bad. None when the source
    /// does not read lines.
    fn parse_line(&self, _line: &[u8]) -> Option<std::result::Result<Bytes, String>> {
        None
    }
}

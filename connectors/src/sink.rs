//! The [`Sink`] trait: how a connector writes records of a topic to the outside world, and how a
//! sink that can store its input offsets with its writes makes each record land once.

use async_trait::async_trait;
use brook_broker::access::ConsumerRecord;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::Result;

/// One batch for a sink: the records read from its input topic and their values decoded.
#[derive(Debug, Clone, Copy)]
pub struct SinkBatch<'a> {
    /// The input topic.
    pub topic: &'a str,
    /// The values as rows (value columns only), in record order. The schema can grow between
    /// batches (a new nullable column appears); columns never change type or disappear.
    pub rows: &'a RecordBatch,
    /// The record behind each row: `rows.num_rows() == records.len()`.
    pub records: &'a [ConsumerRecord],
    /// Per partition of this batch, the offset to read next once it is written; a sink that
    /// stores offsets stores these in the same transaction as the rows.
    pub next_offsets: &'a [(i32, i64)],
}

/// A connector that writes records out of Brook.
///
/// A sink that stores its input offsets with its writes (a database table in the same
/// transaction, a state file renamed with the data) returns them from `open` and writes each
/// record exactly once. One that cannot returns `None`; the runner then commits offsets to the
/// sink's consumer group after each `write` returns (at least once), so such a sink must have
/// made the batch durable before `write` returns.
#[async_trait]
pub trait Sink: Send {
    /// Opens the target (creating what is missing) and returns the input offsets stored with
    /// earlier writes, as (partition, next offset), or None if the sink stores none.
    async fn open(&mut self, topic: &str) -> Result<Option<Vec<(i32, i64)>>>;
    /// Writes one batch. `rows` may be empty (every record of the batch was dead-lettered): the
    /// offsets must still be stored. `Error::Rejected` names a record the target refuses for
    /// good, with nothing of the batch written; the runner dead-letters it and writes the
    /// others again.
    async fn write(&mut self, batch: SinkBatch<'_>) -> Result<()>;
    /// Called before shutting down: makes buffered writes durable and stores their offsets
    /// (closing open files).
    async fn flush(&mut self) -> Result<()>;
    /// Called while no records arrive: time-based work only, such as closing a file that
    /// reached its roll age.
    async fn tick(&mut self) -> Result<()> {
        Ok(())
    }
}

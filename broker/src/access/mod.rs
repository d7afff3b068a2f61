//! The one client API through which the engine, connectors and pipelines reach topics
//! (DESIGN section 1). Two implementations share its semantics and one test suite:
//! `embedded` calls the broker in this process (no sockets), `remote` speaks the Kafka
//! protocol to any cluster through `crate::client`.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

pub mod embedded;
mod embedded_member;
mod embedded_txn;
pub mod remote;
mod remote_txn;
#[cfg(test)]
mod suite;

use kafka_protocol::ResponseError;

pub use crate::client::{ConsumerGroupMetadata, ConsumerRecord, OffsetSpec, TimestampType};
use crate::error::{Error, Result};
pub use crate::log::Isolation;
pub use embedded::EmbeddedAccess;
pub use remote::RemoteAccess;

/// A boxed future, so that the API can be used as `Arc<dyn TopicAccess>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A topic as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic name.
    pub name: String,
    /// How many partitions it has.
    pub partitions: i32,
    /// Whether it is one of Kafka's internal topics.
    pub internal: bool,
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    /// The topic name.
    pub name: String,
    /// Partitions; -1 for the cluster default.
    pub partitions: i32,
    /// Topic configs by Kafka name.
    pub configs: Vec<(String, String)>,
}

/// A record to write. Records without a partition are placed by key as Kafka's Java client
/// does (murmur2), or spread when they have no key.
#[derive(Debug, Clone, Default)]
pub struct OutRecord {
    /// The partition, or None to place the record by key.
    pub partition: Option<i32>,
    /// The key.
    pub key: Option<Bytes>,
    /// The value; None is a tombstone.
    pub value: Option<Bytes>,
    /// Headers in order; duplicate keys allowed.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
    /// The timestamp in ms since the epoch; None for now.
    pub timestamp_ms: Option<i64>,
}

/// Where a written record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// What one fetch from one partition returned.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// Records at or after the requested offset, in offset order (control records skipped).
    pub records: Vec<ConsumerRecord>,
    /// The partition's high watermark when the fetch was served.
    pub high_watermark: i64,
    /// The partition's last stable offset when the fetch was served: read_committed readers see
    /// records below it. The high watermark when no transaction is open.
    pub last_stable_offset: i64,
    /// The partition's log start offset when the fetch was served.
    pub log_start_offset: i64,
}

/// The partitions a group member owns, as (topic, partition).
pub type Owned = Vec<(String, i32)>;

/// Membership in a consumer group, kept alive in the background until `leave`.
pub trait GroupMember: Send {
    /// The partitions this member owns now. Waits up to `wait_ms` for the first assignment or
    /// for a change; returns the current assignment either way.
    fn assignment(&mut self, wait_ms: u64) -> BoxFuture<'_, Result<Owned>>;
    /// Commits offsets for owned partitions (the next offset to read), fenced by membership.
    fn commit(&mut self, offsets: Vec<(String, i32, i64)>) -> BoxFuture<'_, Result<()>>;
    /// The member's identity for [`TxnProducer::send_offsets`] now: group, member epoch (or
    /// generation) and member id. Read it before the assignment it goes with: a partition lost
    /// after that moves the member to a new epoch, so offsets sent with this one are refused.
    fn group_metadata(&self) -> ConsumerGroupMetadata;
    /// Leaves the group so that its partitions move at once.
    fn leave(self: Box<Self>) -> BoxFuture<'static, Result<()>>;
}

/// What the engine, connectors and pipelines need from topics, on any Kafka cluster.
pub trait TopicAccess: Send + Sync {
    /// Every topic with its partition count.
    fn topics(&self) -> BoxFuture<'_, Result<Vec<TopicInfo>>>;
    /// Creates a topic; Error::TopicAlreadyExists if it exists.
    fn create_topic(&self, spec: TopicSpec) -> BoxFuture<'_, Result<()>>;
    /// One offset per partition of `topic` for `spec`, as (partition, offset), by partition.
    fn list_offsets(&self, topic: &str, spec: OffsetSpec) -> BoxFuture<'_, Result<Vec<(i32, i64)>>>;
    /// Reads from one partition starting at `offset`, up to about `max_bytes`, waiting up to
    /// `max_wait_ms` when nothing is there yet, as `isolation` (Kafka's `isolation.level`) allows:
    /// read_committed reads only records below the last stable offset, without the records of
    /// aborted transactions. Error::OffsetOutOfRange outside the log.
    fn fetch_isolated(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        max_wait_ms: u64,
        isolation: Isolation,
    ) -> BoxFuture<'_, Result<Fetched>>;
    /// [`fetch_isolated`](Self::fetch_isolated) read_uncommitted: every durable record.
    fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        max_wait_ms: u64,
    ) -> BoxFuture<'_, Result<Fetched>> {
        self.fetch_isolated(
            topic,
            partition,
            offset,
            max_bytes,
            max_wait_ms,
            Isolation::ReadUncommitted,
        )
    }
    /// [`fetch_isolated`](Self::fetch_isolated) read_committed.
    fn fetch_committed(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        max_wait_ms: u64,
    ) -> BoxFuture<'_, Result<Fetched>> {
        self.fetch_isolated(
            topic,
            partition,
            offset,
            max_bytes,
            max_wait_ms,
            Isolation::ReadCommitted,
        )
    }
    /// Writes records, durable and acknowledged (acks=all) when the future resolves, in order.
    fn produce(&self, topic: &str, records: Vec<OutRecord>) -> BoxFuture<'_, Result<Vec<Delivery>>>;
    /// The offsets a group committed, as (topic, partition, offset). While an open transaction
    /// holds a new offset for one of them, waits a little for it to end (Kafka's
    /// `require_stable`), then fails with UNSTABLE_OFFSET_COMMIT, which is retriable.
    fn committed(&self, group: &str) -> BoxFuture<'_, Result<Vec<(String, i32, i64)>>>;
    /// As [`committed`](Self::committed), for `partitions` only (those without an offset are
    /// left out), and a transaction holding the first offset of one of them counts too: what a
    /// new owner of the partitions reads before an exactly-once job starts on them.
    fn committed_partitions(
        &self,
        group: &str,
        partitions: Vec<(String, i32)>,
    ) -> BoxFuture<'_, Result<Vec<(String, i32, i64)>>>;
    /// Commits offsets for a group without membership (a "simple" commit, refused while the
    /// group has live members).
    fn commit(&self, group: &str, offsets: Vec<(String, i32, i64)>) -> BoxFuture<'_, Result<()>>;
    /// Joins `group` as a member subscribed to `topics`; partitions are balanced across members.
    fn join(&self, group: &str, topics: Vec<String>) -> BoxFuture<'_, Result<Box<dyn GroupMember>>>;
    /// A transactional producer for `transactional_id` (Kafka's `transactional.id`), initialised:
    /// any earlier producer with the same id is fenced and its open transaction aborted before
    /// this resolves. `timeout_ms` is its `transaction.timeout.ms`.
    fn transactional_producer(
        &self,
        transactional_id: &str,
        timeout_ms: u64,
    ) -> BoxFuture<'_, Result<Box<dyn TxnProducer>>>;
}

/// A transactional producer (KIP-98): records and consumed offsets written between `begin` and
/// `commit` become visible together, to read_committed readers and to `committed`, or never
/// (`abort`). After an error that [`is_fenced`] recognises the producer can do nothing more: a
/// newer producer with the same transactional id exists, or the coordinator aborted the
/// transaction past its timeout. After any other failure, `abort` and start again.
pub trait TxnProducer: Send {
    /// Opens a transaction.
    fn begin(&mut self) -> Result<()>;
    /// Writes records into the open transaction; resolves once they are acknowledged, in order.
    fn produce(&mut self, topic: &str, records: Vec<OutRecord>) -> BoxFuture<'_, Result<Vec<Delivery>>>;
    /// Adds consumed offsets (the next offsets to read) to the open transaction, committed for
    /// `group` if and only if the transaction commits; refused when `group` names a member
    /// that is no longer the group's current one (its epoch moved on).
    fn send_offsets(
        &mut self,
        offsets: Vec<(String, i32, i64)>,
        group: &ConsumerGroupMetadata,
    ) -> BoxFuture<'_, Result<()>>;
    /// Commits the open transaction; resolves once the decision is durable (markers follow).
    fn commit(&mut self) -> BoxFuture<'_, Result<()>>;
    /// Aborts the open transaction (allowed after a failed call); its records are never shown
    /// to read_committed readers and its offsets never committed.
    fn abort(&mut self) -> BoxFuture<'_, Result<()>>;
}

/// Whether `error` fenced a transactional producer (PRODUCER_FENCED or INVALID_PRODUCER_EPOCH):
/// another producer with its transactional id took over, so this one must stop.
pub fn is_fenced(error: &Error) -> bool {
    matches!(
        ResponseError::try_from_code(error.kafka_code()),
        Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch)
    )
}

/// Whether `error`, from a transactional call, means this transaction cannot commit but the
/// next one may: the consumer group moved on (a rebalance, a lost membership, a stale member
/// epoch) or the coordinator lost or refused the transaction's state. Abort, and read again
/// from the committed offsets.
pub fn is_abortable(error: &Error) -> bool {
    matches!(
        ResponseError::try_from_code(error.kafka_code()),
        Some(
            ResponseError::IllegalGeneration
                | ResponseError::UnknownMemberId
                | ResponseError::RebalanceInProgress
                | ResponseError::FencedInstanceId
                | ResponseError::FencedMemberEpoch
                | ResponseError::StaleMemberEpoch
                | ResponseError::TransactionAbortable
                | ResponseError::InvalidTxnState
                | ResponseError::UnknownProducerId
                | ResponseError::InvalidProducerIdMapping
                | ResponseError::OperationNotAttempted
        )
    )
}

//! The one client API through which the engine, connectors and pipelines reach topics
//! (DESIGN section 1). Two implementations share its semantics and one test suite:
//! `embedded` calls the broker in this process (no sockets), `remote` speaks the Kafka
//! protocol to any cluster through `crate::client`.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

pub mod embedded;
mod embedded_member;
pub mod remote;
#[cfg(test)]
mod suite;

pub use crate::client::{ConsumerRecord, OffsetSpec, TimestampType};
use crate::error::Result;
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
    /// `max_wait_ms` when nothing is there yet. Error::OffsetOutOfRange outside the log.
    fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        max_wait_ms: u64,
    ) -> BoxFuture<'_, Result<Fetched>>;
    /// Writes records, durable and acknowledged (acks=all) when the future resolves, in order.
    fn produce(&self, topic: &str, records: Vec<OutRecord>) -> BoxFuture<'_, Result<Vec<Delivery>>>;
    /// The offsets a group committed, as (topic, partition, offset).
    fn committed(&self, group: &str) -> BoxFuture<'_, Result<Vec<(String, i32, i64)>>>;
    /// Commits offsets for a group without membership (a "simple" commit, refused while the
    /// group has live members).
    fn commit(&self, group: &str, offsets: Vec<(String, i32, i64)>) -> BoxFuture<'_, Result<()>>;
    /// Joins `group` as a member subscribed to `topics`; partitions are balanced across members.
    fn join(&self, group: &str, topics: Vec<String>) -> BoxFuture<'_, Result<Box<dyn GroupMember>>>;
}

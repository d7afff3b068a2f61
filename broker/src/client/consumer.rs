//! The consumer of explicitly assigned partitions: resolves start offsets, fetches from each
//! partition's leader, resets out-of-range positions, and hands out records in offset order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::admin::{list_offsets, OffsetSpec};
use super::cluster::Cluster;
use super::connection::ResponseFuture;
use super::fetch_decode::decode_partition;
use super::group::GroupHandle;
use super::{check_code, is_stale_metadata, remote_error, ClientConfig};
use crate::error::{Error, Result};

/// One partition in a fetch: topic, partition, fetch offset.
type PartitionFetch = (String, i32, i64);

/// How the consumer fetches, and the bounds on what it buffers.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// How to reach the cluster.
    pub client: ClientConfig,
    /// How long the broker may hold a fetch waiting for `fetch_min_bytes`.
    pub fetch_max_wait_ms: u64,
    /// The broker answers once this many bytes are available (or the wait ends).
    pub fetch_min_bytes: i32,
    /// The most bytes one fetch response should hold.
    pub fetch_max_bytes: i32,
    /// The most bytes one partition contributes to a fetch response.
    pub max_partition_fetch_bytes: i32,
    /// 0 = read_uncommitted, 1 = read_committed (aborted transactions skipped).
    pub isolation_level: i8,
    /// What to do when a position is outside the log.
    pub auto_offset_reset: AutoOffsetReset,
    /// The most records one `poll` returns.
    pub max_poll_records: usize,
    /// The most bytes one compressed batch may decompress to.
    pub max_decompressed_bytes: usize,
}

impl ConsumerConfig {
    /// Kafka's defaults (500 ms max wait, 1 byte min, 50 MiB per fetch, 1 MiB per partition).
    pub fn new(client: ClientConfig) -> Self {
        ConsumerConfig {
            client,
            fetch_max_wait_ms: 500,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            isolation_level: 0,
            auto_offset_reset: AutoOffsetReset::Latest,
            max_poll_records: 500,
            max_decompressed_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Where a position outside the log moves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOffsetReset {
    /// The log start offset.
    Earliest,
    /// The log end offset.
    Latest,
    /// Nowhere: `poll` fails.
    None,
}

/// Where an assigned partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// The log start offset.
    Earliest,
    /// The log end offset: only new records.
    Latest,
    /// This offset.
    Offset(i64),
    /// The first record at or after this timestamp (ms since the epoch), else the end.
    Timestamp(i64),
}

/// One partition to consume and where to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Where to start.
    pub start: StartOffset,
}

/// What a record's timestamp means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    Create,
    /// Set by the broker when it appended the batch.
    LogAppend,
}

impl TimestampType {
    /// Kafka's name for it.
    pub fn name(self) -> &'static str {
        match self {
            TimestampType::Create => "CreateTime",
            TimestampType::LogAppend => "LogAppendTime",
        }
    }
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The timestamp in ms since the epoch.
    pub timestamp_ms: i64,
    /// What the timestamp means.
    pub timestamp_type: TimestampType,
    /// The key.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// Headers in order, duplicates kept.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// A consumer of explicitly assigned partitions (`assign`) or, after `subscribe`, of the
/// partitions its consumer group gives it (see `client::group`).
pub struct Consumer {
    pub(super) cluster: Arc<Cluster>,
    pub(super) config: ConsumerConfig,
    /// The next offset to fetch per assigned partition.
    pub(super) positions: BTreeMap<(String, i32), i64>,
    /// Records fetched but not yet returned; at most one fetch response's worth.
    pub(super) buffered: VecDeque<ConsumerRecord>,
    /// The group membership, after `subscribe`.
    pub(super) group: Option<GroupHandle>,
    /// The position after the last record returned per partition (what `commit` commits).
    pub(super) returned: BTreeMap<(String, i32), i64>,
}

impl Consumer {
    /// Connects to the cluster.
    pub async fn new(config: ConsumerConfig) -> Result<Consumer> {
        if config.fetch_max_bytes <= 0 || config.max_partition_fetch_bytes <= 0 || config.max_poll_records == 0 {
            return Err(Error::InvalidConfig {
                name: "fetch.max.bytes".to_string(),
                reason: "fetch sizes and max poll records must be positive".to_string(),
            });
        }
        if config.fetch_max_bytes as usize >= config.client.max_response_bytes {
            return Err(Error::InvalidConfig {
                name: "fetch.max.bytes".to_string(),
                reason: format!(
                    "must be below the client's max response size of {} bytes",
                    config.client.max_response_bytes
                ),
            });
        }
        let cluster = Cluster::connect(config.client.clone()).await?;
        Ok(Consumer {
            cluster,
            config,
            positions: BTreeMap::new(),
            buffered: VecDeque::new(),
            group: None,
            returned: BTreeMap::new(),
        })
    }

    /// The partition indexes of a topic.
    pub async fn partitions_for(&self, topic: &str) -> Result<Vec<i32>> {
        let names = [topic.to_string()];
        let metadata = self
            .cluster
            .retry(Some(topic), || self.cluster.metadata(Some(&names)))
            .await?;
        let found = metadata.topic(topic).ok_or_else(|| remote_error(3, Some(topic)))?;
        check_code(found.error_code, Some(topic))?;
        Ok(found.partitions.iter().map(|p| p.partition).collect())
    }

    /// Replaces the assignment, resolving each start to an offset; refused after `subscribe`.
    pub async fn assign(&mut self, assignments: Vec<Assignment>) -> Result<()> {
        if self.group.is_some() {
            return Err(Error::InvalidConfig {
                name: "assignment".to_string(),
                reason: "a subscribed consumer gets its partitions from the group".to_string(),
            });
        }
        let mut positions = BTreeMap::new();
        let mut lookups: BTreeMap<String, Vec<(i32, OffsetSpec)>> = BTreeMap::new();
        for a in &assignments {
            let spec = match a.start {
                StartOffset::Offset(offset) if offset >= 0 => {
                    positions.insert((a.topic.clone(), a.partition), offset);
                    continue;
                }
                StartOffset::Earliest => OffsetSpec::Earliest,
                StartOffset::Offset(-2) => OffsetSpec::Earliest,
                StartOffset::Latest | StartOffset::Offset(_) => OffsetSpec::Latest,
                StartOffset::Timestamp(ms) => OffsetSpec::Timestamp(ms),
            };
            lookups.entry(a.topic.clone()).or_default().push((a.partition, spec));
        }
        for (topic, specs) in lookups {
            for (partition, offset) in self.lookup_offsets(&topic, &specs).await? {
                positions.insert((topic.clone(), partition), offset);
            }
        }
        self.positions = positions;
        self.buffered.clear();
        Ok(())
    }

    /// Resolves specs to offsets; a timestamp past the last record resolves to the end.
    pub(super) async fn lookup_offsets(&self, topic: &str, specs: &[(i32, OffsetSpec)]) -> Result<Vec<(i32, i64)>> {
        let isolation = self.config.isolation_level;
        let cluster = &self.cluster;
        let found = cluster
            .retry(Some(topic), || list_offsets(cluster, topic, specs, isolation))
            .await?;
        let mut out = Vec::with_capacity(found.len());
        let mut past_end = Vec::new();
        for p in found {
            if p.offset < 0 {
                past_end.push((p.partition, OffsetSpec::Latest));
            } else {
                out.push((p.partition, p.offset));
            }
        }
        if !past_end.is_empty() {
            let ends = cluster
                .retry(Some(topic), || list_offsets(cluster, topic, &past_end, isolation))
                .await?;
            out.extend(ends.into_iter().map(|p| (p.partition, p.offset)));
        }
        Ok(out)
    }

    /// Waits up to `timeout` for records and returns at most `max_poll_records` of them.
    /// A group member first takes up partitions assigned and drops partitions revoked since the
    /// last call, and never returns a record of a partition it no longer owns.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.reconcile_group().await?;
            if !self.buffered.is_empty() {
                let n = self.buffered.len().min(self.config.max_poll_records);
                let drained: Vec<ConsumerRecord> = self.buffered.drain(..n).collect();
                let records = self.keep_owned(drained);
                if records.is_empty() {
                    continue;
                }
                return Ok(records);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            if self.positions.is_empty() {
                if self.group.is_none() {
                    return Ok(Vec::new());
                }
                self.wait_for_group(deadline - now).await;
                continue;
            }
            let wait_ms = (deadline - now)
                .as_millis()
                .min(u128::from(self.config.fetch_max_wait_ms)) as u64;
            self.fetch_once(wait_ms).await?;
        }
    }

    /// The next offset to be returned for a partition, if assigned.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        let buffered = self
            .buffered
            .iter()
            .find(|r| r.topic == topic && r.partition == partition);
        buffered
            .map(|r| r.offset)
            .or_else(|| self.positions.get(&(topic.to_string(), partition)).copied())
    }

    /// The log end offset (last stable offset with read_committed) of every assigned partition.
    pub async fn end_offsets(&self) -> Result<Vec<(String, i32, i64)>> {
        let mut by_topic: BTreeMap<String, Vec<(i32, OffsetSpec)>> = BTreeMap::new();
        for (topic, partition) in self.positions.keys() {
            by_topic
                .entry(topic.clone())
                .or_default()
                .push((*partition, OffsetSpec::Latest));
        }
        let mut out = Vec::new();
        for (topic, specs) in by_topic {
            for (partition, offset) in self.lookup_offsets(&topic, &specs).await? {
                out.push((topic.clone(), partition, offset));
            }
        }
        Ok(out)
    }

    /// One fetch round: one request per leader, responses decoded into the buffer.
    async fn fetch_once(&mut self, wait_ms: u64) -> Result<()> {
        let mut by_leader: BTreeMap<i32, Vec<PartitionFetch>> = BTreeMap::new();
        for ((topic, partition), offset) in &self.positions {
            match self.cluster.leader(topic, *partition).await {
                Ok(leader) => by_leader
                    .entry(leader)
                    .or_default()
                    .push((topic.clone(), *partition, *offset)),
                Err(e) if e.is_retriable() => {
                    tracing::debug!(topic = %topic, partition, error = %e, "no leader to fetch from yet");
                    self.cluster.invalidate(topic);
                }
                Err(e) => return Err(e),
            }
        }
        if by_leader.is_empty() {
            // Nothing can be fetched now; wait a little before the next metadata lookup.
            tokio::time::sleep(Duration::from_millis(wait_ms.min(100))).await;
            return Ok(());
        }
        let mut in_flight: Vec<(ResponseFuture<FetchResponse>, Vec<PartitionFetch>)> = Vec::new();
        for (leader, partitions) in by_leader {
            match self.submit_fetch(leader, &partitions, wait_ms).await {
                Ok(future) => in_flight.push((future, partitions)),
                Err(e) if e.is_retriable() => {
                    tracing::debug!(leader, error = %e, "fetch not sent");
                    for (topic, _, _) in &partitions {
                        self.cluster.invalidate(topic);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        for (future, partitions) in in_flight {
            match future.wait().await {
                Ok(response) => self.absorb(response, &partitions).await?,
                Err(e) if e.is_retriable() => {
                    tracing::debug!(error = %e, "fetch failed");
                    for (topic, _, _) in &partitions {
                        self.cluster.invalidate(topic);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn submit_fetch(
        &self,
        leader: i32,
        partitions: &[PartitionFetch],
        wait_ms: u64,
    ) -> Result<ResponseFuture<FetchResponse>> {
        let connection = self.cluster.broker(leader).await?;
        let version = connection.version(ApiKey::Fetch)?;
        let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
        for (topic, partition, offset) in partitions {
            let mut p = FetchPartition::default();
            p.partition = *partition;
            p.fetch_offset = *offset;
            p.partition_max_bytes = self.config.max_partition_fetch_bytes;
            topics.entry(topic).or_default().push(p);
        }
        let mut request = FetchRequest::default();
        request.max_wait_ms = i32::try_from(wait_ms).unwrap_or(i32::MAX);
        request.min_bytes = self.config.fetch_min_bytes;
        request.max_bytes = self.config.fetch_max_bytes;
        request.isolation_level = self.config.isolation_level;
        request.topics = topics
            .into_iter()
            .map(|(name, partitions)| {
                let mut topic = FetchTopic::default();
                topic.topic = TopicName(StrBytes::from_string(name.to_string()));
                topic.partitions = partitions;
                topic
            })
            .collect();
        let timeout_ms = self.config.client.request_timeout_ms + wait_ms;
        connection.submit(&request, version, timeout_ms).await
    }

    /// Decodes one fetch response into the buffer and moves positions forward.
    async fn absorb(&mut self, response: FetchResponse, asked: &[PartitionFetch]) -> Result<()> {
        check_code(response.error_code, None)?;
        for topic in response.responses {
            let name = topic.topic.0.to_string();
            for p in topic.partitions {
                let key = (name.clone(), p.partition_index);
                let Some(&fetch_offset) = asked
                    .iter()
                    .find(|(t, q, _)| *t == name && *q == p.partition_index)
                    .map(|(_, _, o)| o)
                else {
                    continue;
                };
                if self.positions.get(&key) != Some(&fetch_offset) {
                    // Reassigned or reset meanwhile: this data is for an old position.
                    continue;
                }
                if p.error_code == ResponseError::OffsetOutOfRange.code() {
                    self.reset_offset(&name, p.partition_index, fetch_offset).await?;
                    continue;
                }
                if p.error_code != 0 {
                    let e = remote_error(p.error_code, Some(&format!("{name}-{}", p.partition_index)));
                    if is_stale_metadata(&e) || e.is_retriable() {
                        tracing::debug!(topic = %name, partition = p.partition_index, error = %e, "fetch partition error");
                        self.cluster.invalidate(&name);
                        continue;
                    }
                    return Err(e);
                }
                let aborted: Vec<(i64, i64)> = p
                    .aborted_transactions
                    .iter()
                    .flatten()
                    .map(|a| (a.producer_id.0, a.first_offset))
                    .collect();
                let Some(data) = p.records.as_ref() else {
                    continue;
                };
                let decoded = decode_partition(
                    &name,
                    p.partition_index,
                    data,
                    fetch_offset,
                    &aborted,
                    self.config.max_decompressed_bytes,
                )?;
                self.positions.insert(key, decoded.next_offset);
                self.buffered.extend(decoded.records);
            }
        }
        Ok(())
    }

    async fn reset_offset(&mut self, topic: &str, partition: i32, offset: i64) -> Result<()> {
        let spec = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => OffsetSpec::Earliest,
            AutoOffsetReset::Latest => OffsetSpec::Latest,
            AutoOffsetReset::None => {
                return Err(remote_error(
                    1,
                    Some(&format!("{topic}-{partition} at offset {offset}")),
                ));
            }
        };
        for (p, new_offset) in self.lookup_offsets(topic, &[(partition, spec)]).await? {
            tracing::info!(topic = %topic, partition = p, from = offset, to = new_offset, "resetting offset");
            self.positions.insert((topic.to_string(), p), new_offset);
        }
        Ok(())
    }
}

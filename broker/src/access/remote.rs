//! The remote `TopicAccess`: the Kafka protocol to any cluster through `crate::client`, with
//! broker error codes turned into the same errors the embedded access returns.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::embedded::resolve_past_end;
use super::remote_txn::RemoteTxnProducer;
use super::{
    BoxFuture, ConsumerGroupMetadata, Delivery, Fetched, GroupMember, OffsetSpec, OutRecord, Owned, TopicAccess,
    TopicInfo, TopicSpec, TxnProducer,
};
use crate::api::fetch::{MAX_FETCH_RESPONSE_BYTES, MAX_FETCH_WAIT_MS};
use crate::client::{
    check_code, decode_partition, list_partition_offsets, Admin, ClientConfig, Cluster, Consumer, ConsumerConfig,
    GroupConfig, GroupProtocol, NewTopic, Producer, ProducerConfig, ProducerRecord,
};
use crate::error::{Error, Result};
use crate::log::{Isolation, MAX_DECODED_BATCH_BYTES};

/// Topics of any Kafka cluster, over the network.
pub struct RemoteAccess {
    config: ClientConfig,
    admin: Admin,
    producer: Producer,
    cluster: Arc<Cluster>,
}

impl RemoteAccess {
    /// Connects to the cluster: an admin client, an idempotent acks=all producer, and a
    /// connection set for fetches.
    pub async fn connect(config: ClientConfig) -> Result<RemoteAccess> {
        let admin = Admin::connect(config.clone()).await.map_err(normalize)?;
        let mut producer_config = ProducerConfig::new(config.clone());
        producer_config.acks = -1;
        producer_config.idempotent = true;
        let producer = Producer::new(producer_config).await.map_err(normalize)?;
        let cluster = Cluster::connect(config.clone()).await.map_err(normalize)?;
        Ok(RemoteAccess {
            config,
            admin,
            producer,
            cluster,
        })
    }

    async fn partition_count(&self, topic: &str) -> Result<i32> {
        self.cluster.partition_count(topic).await
    }

    async fn produce_records(&self, topic: &str, records: Vec<OutRecord>) -> Result<Vec<Delivery>> {
        send_all(&self.producer, &self.cluster, topic, records).await
    }

    async fn fetch_records(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        max_wait_ms: u64,
        isolation: Isolation,
    ) -> Result<Fetched> {
        let max_bytes = i32::try_from(max_bytes.clamp(1, MAX_FETCH_RESPONSE_BYTES)).unwrap_or(i32::MAX);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(max_wait_ms.min(MAX_FETCH_WAIT_MS));
        let mut at = offset;
        loop {
            let wait_ms = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .as_millis() as u64;
            let leader = self.cluster.leader(topic, partition).await?;
            let connection = self.cluster.broker(leader).await?;
            let version = connection.version(ApiKey::Fetch)?;
            let mut p = FetchPartition::default();
            p.partition = partition;
            p.fetch_offset = at;
            p.partition_max_bytes = max_bytes;
            let mut t = FetchTopic::default();
            t.topic = TopicName(StrBytes::from_string(topic.to_string()));
            t.partitions = vec![p];
            let mut request = FetchRequest::default();
            request.max_wait_ms = i32::try_from(wait_ms).unwrap_or(i32::MAX);
            request.min_bytes = 1;
            request.max_bytes = max_bytes;
            request.session_epoch = -1;
            request.isolation_level = if isolation == Isolation::ReadCommitted { 1 } else { 0 };
            request.topics = vec![t];
            let timeout_ms = self.config.request_timeout_ms + wait_ms;
            let response = connection.submit(&request, version, timeout_ms).await?.wait().await?;
            check_code(response.error_code, None)?;
            let data = response
                .responses
                .into_iter()
                .flat_map(|t| t.partitions)
                .find(|d| d.partition_index == partition)
                .ok_or_else(|| Error::Remote {
                    code: -1,
                    message: format!("the fetch response has no data for {topic}-{partition}"),
                })?;
            if data.error_code == ResponseError::OffsetOutOfRange.code() {
                return Err(Error::OffsetOutOfRange {
                    offset: at,
                    log_start_offset: data.log_start_offset,
                    log_end_offset: data.high_watermark,
                });
            }
            check_code(data.error_code, Some(&format!("{topic}-{partition}")))?;
            let bytes = data.records.unwrap_or_default();
            let aborted: Vec<(i64, i64)> = data
                .aborted_transactions
                .unwrap_or_default()
                .iter()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect();
            let decoded = decode_partition(topic, partition, &bytes, at, &aborted, MAX_DECODED_BATCH_BYTES)?;
            // Before Fetch v4 there is no last stable offset: everything is stable.
            let last_stable_offset = if data.last_stable_offset < 0 {
                data.high_watermark
            } else {
                data.last_stable_offset
            };
            let fetched = Fetched {
                records: decoded.records,
                high_watermark: data.high_watermark,
                last_stable_offset,
                log_start_offset: data.log_start_offset,
            };
            if !fetched.records.is_empty() {
                return Ok(fetched);
            }
            if !bytes.is_empty() && decoded.next_offset > at {
                // Only control batches or aborted records: look past them at once, as the
                // embedded access does.
                at = decoded.next_offset;
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(fetched);
            }
        }
    }

    async fn offsets_for(&self, topic: &str, spec: OffsetSpec) -> Result<Vec<(i32, i64)>> {
        let count = self.partition_count(topic).await?;
        let specs: Vec<(i32, OffsetSpec)> = (0..count).map(|p| (p, spec)).collect();
        let found = list_partition_offsets(&self.cluster, topic, &specs, 0).await?;
        let needs_latest = found.iter().any(|p| p.offset < 0);
        let latest = if needs_latest {
            let specs: Vec<(i32, OffsetSpec)> = (0..count).map(|p| (p, OffsetSpec::Latest)).collect();
            list_partition_offsets(&self.cluster, topic, &specs, 0).await?
        } else {
            Vec::new()
        };
        Ok(found
            .iter()
            .map(|p| {
                let end = latest
                    .iter()
                    .find(|l| l.partition == p.partition)
                    .map_or(-1, |l| l.offset);
                (p.partition, resolve_past_end(p.offset, end))
            })
            .collect())
    }
}

/// Sends records through `producer` and waits for every acknowledgement, in order.
pub(super) async fn send_all(
    producer: &Producer,
    cluster: &Cluster,
    topic: &str,
    records: Vec<OutRecord>,
) -> Result<Vec<Delivery>> {
    let count = cluster.partition_count(topic).await?;
    if let Some(p) = records
        .iter()
        .filter_map(|r| r.partition)
        .find(|p| !(0..count).contains(p))
    {
        return Err(Error::UnknownTopicOrPartition(format!("{topic}-{p}")));
    }
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        let record = ProducerRecord {
            topic: topic.to_string(),
            partition: r.partition,
            key: r.key,
            value: r.value,
            headers: r.headers,
            timestamp_ms: r.timestamp_ms,
        };
        pending.push(producer.send(record).await?);
    }
    producer.flush().await?;
    let mut deliveries = Vec::with_capacity(pending.len());
    for delivery in pending {
        let meta = delivery.await?;
        deliveries.push(Delivery {
            partition: meta.partition,
            offset: meta.offset,
        });
    }
    Ok(deliveries)
}

/// Turns broker error codes into the errors the embedded access gives for the same failure.
pub(super) fn normalize(e: Error) -> Error {
    let Error::Remote { code, message } = &e else {
        return e;
    };
    match ResponseError::try_from_code(*code) {
        Some(ResponseError::UnknownTopicOrPartition) => Error::UnknownTopicOrPartition(message.clone()),
        Some(ResponseError::TopicAlreadyExists) => Error::TopicAlreadyExists(message.clone()),
        _ => e,
    }
}

impl TopicAccess for RemoteAccess {
    fn topics(&self) -> BoxFuture<'_, Result<Vec<TopicInfo>>> {
        Box::pin(async move {
            let metadata = self.admin.metadata(None).await.map_err(normalize)?;
            let mut topics: Vec<TopicInfo> = metadata
                .topics
                .iter()
                .filter(|t| t.error_code == 0)
                .map(|t| TopicInfo {
                    name: t.name.clone(),
                    partitions: t.partitions.len() as i32,
                    internal: t.is_internal,
                })
                .collect();
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(topics)
        })
    }

    fn create_topic(&self, spec: TopicSpec) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let topic = NewTopic {
                name: spec.name,
                partitions: spec.partitions,
                replication_factor: -1,
                configs: spec.configs,
            };
            self.admin.create_topic(topic, false).await.map_err(normalize)
        })
    }

    fn list_offsets(&self, topic: &str, spec: OffsetSpec) -> BoxFuture<'_, Result<Vec<(i32, i64)>>> {
        let topic = topic.to_string();
        Box::pin(async move { self.offsets_for(&topic, spec).await.map_err(normalize) })
    }

    fn fetch_isolated(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        max_wait_ms: u64,
        isolation: Isolation,
    ) -> BoxFuture<'_, Result<Fetched>> {
        let topic = topic.to_string();
        Box::pin(async move {
            self.fetch_records(&topic, partition, offset, max_bytes, max_wait_ms, isolation)
                .await
                .map_err(normalize)
        })
    }

    fn produce(&self, topic: &str, records: Vec<OutRecord>) -> BoxFuture<'_, Result<Vec<Delivery>>> {
        let topic = topic.to_string();
        Box::pin(async move { self.produce_records(&topic, records).await.map_err(normalize) })
    }

    fn committed(&self, group: &str) -> BoxFuture<'_, Result<Vec<(String, i32, i64)>>> {
        let group = group.to_string();
        Box::pin(async move {
            let offsets = self.admin.fetch_offsets(&group).await.map_err(normalize)?;
            Ok(offsets
                .into_iter()
                .filter(|(_, o)| *o >= 0)
                .map(|((t, p), o)| (t, p, o))
                .collect())
        })
    }

    fn committed_partitions(
        &self,
        group: &str,
        partitions: Vec<(String, i32)>,
    ) -> BoxFuture<'_, Result<Vec<(String, i32, i64)>>> {
        let group = group.to_string();
        Box::pin(async move {
            // The client offers the group's whole set only, so a transaction holding the first
            // offset of a partition the group never committed goes unseen here (as it does in
            // Kafka's OffsetFetch of a whole group); the embedded access sees it.
            let offsets = self.admin.fetch_offsets(&group).await.map_err(normalize)?;
            Ok(offsets
                .into_iter()
                .filter(|((t, p), o)| *o >= 0 && partitions.iter().any(|(wt, wp)| wt == t && wp == p))
                .map(|((t, p), o)| (t, p, o))
                .collect())
        })
    }

    fn commit(&self, group: &str, offsets: Vec<(String, i32, i64)>) -> BoxFuture<'_, Result<()>> {
        let group = group.to_string();
        Box::pin(async move {
            if offsets.is_empty() {
                return Ok(());
            }
            self.admin.commit_offsets(&group, &offsets).await.map_err(normalize)
        })
    }

    fn join(&self, group: &str, topics: Vec<String>) -> BoxFuture<'_, Result<Box<dyn GroupMember>>> {
        let group = group.to_string();
        Box::pin(async move {
            let mut consumer = Consumer::new(ConsumerConfig::new(self.config.clone()))
                .await
                .map_err(normalize)?;
            let mut config = GroupConfig::new(group.clone());
            config.protocol = GroupProtocol::Consumer { server_assignor: None };
            config.auto_commit = false;
            consumer.subscribe(topics, config).await.map_err(normalize)?;
            Ok(Box::new(RemoteMember {
                consumer,
                group,
                seen: None,
            }) as Box<dyn GroupMember>)
        })
    }

    fn transactional_producer(
        &self,
        transactional_id: &str,
        timeout_ms: u64,
    ) -> BoxFuture<'_, Result<Box<dyn TxnProducer>>> {
        let id = transactional_id.to_string();
        Box::pin(async move {
            let producer = RemoteTxnProducer::init(self.config.clone(), self.cluster.clone(), id, timeout_ms)
                .await
                .map_err(normalize)?;
            Ok(Box::new(producer) as Box<dyn TxnProducer>)
        })
    }
}

/// A member of a KIP-848 group through Brook's Kafka client; its background task heartbeats.
struct RemoteMember {
    consumer: Consumer,
    /// The group id, for metadata before the member has joined.
    group: String,
    /// The assignment last returned by `assignment`.
    seen: Option<Owned>,
}

impl GroupMember for RemoteMember {
    fn assignment(&mut self, wait_ms: u64) -> BoxFuture<'_, Result<Owned>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
            loop {
                let mut current: Owned = self.consumer.assignment();
                current.sort();
                let news = match &self.seen {
                    None => !current.is_empty(),
                    Some(seen) => *seen != current,
                };
                let now = tokio::time::Instant::now();
                if news || now >= deadline {
                    self.seen = Some(current.clone());
                    return Ok(current);
                }
                self.consumer.wait_for_group(deadline - now).await;
            }
        })
    }

    fn commit(&mut self, offsets: Vec<(String, i32, i64)>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.consumer.commit_offsets(&offsets).await.map_err(normalize) })
    }

    fn group_metadata(&self) -> ConsumerGroupMetadata {
        self.consumer
            .group_metadata()
            .unwrap_or_else(|| ConsumerGroupMetadata::new(self.group.clone()))
    }

    fn leave(mut self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move { self.consumer.close().await.map_err(normalize) })
    }
}

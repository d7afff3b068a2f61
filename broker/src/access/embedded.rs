//! The embedded `TopicAccess`: calls the broker in this process (its topics, partition logs and
//! coordinators) with no sockets, keeping the semantics a Kafka client sees over the wire.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::embedded_member::EmbeddedMember;
use super::embedded_txn::EmbeddedTxnProducer;
use super::{
    BoxFuture, Delivery, Fetched, GroupMember, OffsetSpec, OutRecord, TopicAccess, TopicInfo, TopicSpec, TxnProducer,
};
use crate::api::fetch::{MAX_FETCH_RESPONSE_BYTES, MAX_FETCH_WAIT_MS};
use crate::broker::{now_ms, Broker};
use crate::client::{backoff_ms, decode_partition, partition_for_key, remote_error};
use crate::error::{Error, Result};
use crate::group::offsets::{membership, CommitEntry};
use crate::log::batch::{encode_batch, require_keys, validate_batches, EncodeOptions, NewRecord};
use crate::log::{AppendOptions, Isolation, PartitionLog, ProducerSnapshot, MAX_DECODED_BATCH_BYTES};

/// Most record bytes (keys, values, headers) put in one appended batch; larger writes are split.
const BATCH_BYTES: usize = 1 << 20;
/// Most records in one appended batch.
const BATCH_RECORDS: usize = 10_000;
/// What a record costs beyond its keys, values and headers, for splitting writes into batches.
const RECORD_OVERHEAD_BYTES: usize = 32;

/// Topics of a broker in this process, reached without the network.
pub struct EmbeddedAccess {
    broker: Arc<Broker>,
    /// Picks the partition of keyless records: one partition per `produce` call, round robin.
    next_keyless: AtomicU32,
}

impl EmbeddedAccess {
    /// Access to the topics of `broker`.
    pub fn new(broker: Arc<Broker>) -> EmbeddedAccess {
        EmbeddedAccess {
            broker,
            next_keyless: AtomicU32::new(0),
        }
    }

    fn topic_partitions(&self, topic: &str) -> Result<Vec<Arc<PartitionLog>>> {
        let t = self
            .broker
            .topics
            .get(topic)
            .ok_or_else(|| Error::UnknownTopicOrPartition(topic.to_string()))?;
        Ok(t.partitions())
    }

    async fn produce_records(&self, topic: &str, records: Vec<OutRecord>) -> Result<Vec<Delivery>> {
        let keyless = self.next_keyless.fetch_add(1, Ordering::Relaxed);
        let placed = place(&self.broker, topic, records, keyless)?;
        append_placed(&self.broker, topic, placed, None).await
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
        let log = self.broker.topics.log(topic, partition)?;
        let max_bytes = max_bytes.clamp(1, MAX_FETCH_RESPONSE_BYTES);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(max_wait_ms.min(MAX_FETCH_WAIT_MS));
        let mut signal = self.broker.signal.subscribe();
        let mut at = offset;
        loop {
            signal.borrow_and_update();
            let offsets = log.visible_offsets();
            let end = offsets.end(isolation);
            let bytes = log.read(at, max_bytes, end)?;
            // A read_committed reader drops the records of aborted transactions, as a Kafka
            // consumer does with the list a Fetch response carries.
            let aborted = if isolation == Isolation::ReadCommitted && !bytes.is_empty() {
                log.aborted_transactions(at, end)
            } else {
                Vec::new()
            };
            let decoded = decode_partition(topic, partition, &bytes, at, &aborted, MAX_DECODED_BATCH_BYTES)?;
            let fetched = Fetched {
                records: decoded.records,
                high_watermark: offsets.high_watermark,
                last_stable_offset: offsets.last_stable_offset,
                log_start_offset: offsets.log_start_offset,
            };
            if !fetched.records.is_empty() {
                return Ok(fetched);
            }
            if !bytes.is_empty() && decoded.next_offset > at {
                // Only control batches or aborted records: look past them at once, as a
                // consumer's next fetch would.
                at = decoded.next_offset;
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(fetched);
            }
            tokio::select! {
                changed = signal.changed() => if changed.is_err() { return Ok(fetched) },
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    fn offsets_for(&self, topic: &str, spec: OffsetSpec) -> Result<Vec<(i32, i64)>> {
        let mut out = Vec::new();
        for (p, log) in self.topic_partitions(topic)?.iter().enumerate() {
            let latest = log.high_watermark();
            let found = match spec {
                OffsetSpec::Earliest => Some(log.log_start_offset()),
                OffsetSpec::Latest => Some(latest),
                OffsetSpec::MaxTimestamp => log.max_timestamp()?.map(|(offset, _)| offset),
                OffsetSpec::Timestamp(ms) => log.offset_for_timestamp(ms)?.map(|(offset, _)| offset),
            };
            out.push((p as i32, resolve_past_end(found.unwrap_or(-1), latest)));
        }
        Ok(out)
    }

    async fn commit_simple(&self, group: &str, offsets: Vec<(String, i32, i64)>) -> Result<()> {
        commit_as(&self.broker, group, "", -1, offsets).await
    }

    /// The group's committed offsets (of `partitions`, else of every partition it committed)
    /// once no open transaction holds an offset of one of them: OffsetFetch with
    /// `require_stable`, retried as the remote client retries it.
    async fn committed_offsets(
        &self,
        group: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<(String, i32, i64)>> {
        let offsets = &self.broker.groups.offsets;
        let read = |partitions: &Option<Vec<(String, i32)>>| -> Vec<(String, i32, i64)> {
            match partitions {
                None => offsets
                    .fetch_all(group)
                    .into_iter()
                    .map(|(t, p, v)| (t, p, v.offset))
                    .collect(),
                Some(list) => list
                    .iter()
                    .filter_map(|(t, p)| offsets.fetch(group, t, *p).map(|v| (t.clone(), *p, v.offset)))
                    .collect(),
            }
        };
        let mut attempt = 0;
        loop {
            let checked: Vec<(String, i32)> = match &partitions {
                None => read(&None).into_iter().map(|(t, p, _)| (t, p)).collect(),
                Some(list) => list.clone(),
            };
            // Pending first, values after: a transaction that completes in between has applied
            // its offsets by the time they are read.
            let unstable = checked.into_iter().find(|(t, p)| offsets.has_pending_txn(group, t, *p));
            let Some((topic, partition)) = unstable else {
                return Ok(read(&partitions));
            };
            if attempt >= STABLE_OFFSET_RETRIES {
                return Err(remote_error(
                    UNSTABLE_OFFSET_COMMIT,
                    Some(&format!(
                        "an open transaction holds the offset of {topic}-{partition} in group {group}"
                    )),
                ));
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(backoff_ms(attempt))).await;
        }
    }
}

/// How many times `committed` looks again while a transaction holds a group's offsets (the
/// remote client's retries of UNSTABLE_OFFSET_COMMIT).
const STABLE_OFFSET_RETRIES: u32 = 5;
/// Kafka's UNSTABLE_OFFSET_COMMIT (retriable).
pub(super) const UNSTABLE_OFFSET_COMMIT: i16 = 88;
/// Kafka's INVALID_GROUP_ID.
pub(super) const INVALID_GROUP_ID: i16 = 24;

/// Places records on partitions of `topic` as the Java client does (explicit partition, else
/// murmur2 of the key, else the partition the round-robin counter `keyless` points at), keeping
/// each record's index in the call.
pub(super) fn place(
    broker: &Broker,
    topic: &str,
    records: Vec<OutRecord>,
    keyless: u32,
) -> Result<BTreeMap<i32, Vec<(usize, NewRecord)>>> {
    if crate::topics::is_internal_topic(topic) {
        return Err(Error::InvalidTopic {
            name: topic.to_string(),
            reason: "clients cannot write to an internal topic".to_string(),
        });
    }
    let count = broker
        .topics
        .get(topic)
        .ok_or_else(|| Error::UnknownTopicOrPartition(topic.to_string()))?
        .partition_count();
    let keyless = (keyless % count.max(1) as u32) as i32;
    let now = now_ms();
    let mut by_partition: BTreeMap<i32, Vec<(usize, NewRecord)>> = BTreeMap::new();
    for (i, r) in records.into_iter().enumerate() {
        let partition = match (r.partition, &r.key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => keyless,
        };
        if !(0..count).contains(&partition) {
            return Err(Error::UnknownTopicOrPartition(format!("{topic}-{partition}")));
        }
        let record = NewRecord {
            timestamp_ms: r.timestamp_ms.unwrap_or(now),
            key: r.key,
            value: r.value,
            headers: r.headers,
        };
        by_partition.entry(partition).or_default().push((i, record));
    }
    Ok(by_partition)
}

/// Appends placed records through the checks Produce applies, as plain batches or as
/// transactional batches of `producer` (id and epoch, sequences following what the partition
/// last saw of it), and resolves once they are durable.
pub(super) async fn append_placed(
    broker: &Broker,
    topic: &str,
    placed: BTreeMap<i32, Vec<(usize, NewRecord)>>,
    producer: Option<(i64, i16)>,
) -> Result<Vec<Delivery>> {
    let config = broker.config();
    let total = placed.values().map(Vec::len).sum();
    let mut deliveries = vec![
        Delivery {
            partition: -1,
            offset: -1
        };
        total
    ];
    let now = now_ms();
    let mut waits = Vec::new();
    for (partition, items) in placed {
        let (log, rules) = broker.topics.partition(&config, topic, partition)?;
        let mut end = 0;
        for chunk in split(items) {
            let (slots, batch): (Vec<usize>, Vec<NewRecord>) = chunk.into_iter().unzip();
            let options = match producer {
                None => EncodeOptions::default(),
                Some((producer_id, producer_epoch)) => EncodeOptions {
                    producer_id,
                    producer_epoch,
                    base_sequence: next_sequence(log.producer(producer_id), producer_epoch),
                    transactional: true,
                    ..EncodeOptions::default()
                },
            };
            let payload: BytesMut = encode_batch(&batch, &options)?;
            let headers = validate_batches(&payload)?;
            let size_bytes: usize = headers.iter().map(|h| h.total_bytes()).sum();
            if size_bytes > rules.max_message_bytes {
                return Err(Error::MessageTooLarge {
                    size_bytes,
                    max_bytes: rules.max_message_bytes,
                });
            }
            if rules.compacted {
                require_keys(&payload, MAX_DECODED_BATCH_BYTES)?;
            }
            let opts = AppendOptions {
                now_ms: now,
                log_append_time: rules.log_append_time,
                leader_epoch: 0,
            };
            let info = log.append(payload, &headers, &opts)?;
            for (n, slot) in slots.into_iter().enumerate() {
                deliveries[slot] = Delivery {
                    partition,
                    offset: info.base_offset + n as i64,
                };
            }
            end = info.last_offset + 1;
        }
        if log.flush_before_ack() {
            waits.push((log, end));
        }
    }
    for (log, end) in waits {
        log.wait_durable(end).await?;
    }
    Ok(deliveries)
}

/// The base sequence of a producer's next batch in a partition: one past the last sequence the
/// partition saw in the same epoch (wrapping after `i32::MAX` as Kafka does), else 0.
fn next_sequence(known: Option<ProducerSnapshot>, epoch: i16) -> i32 {
    match known {
        Some(s) if s.producer_epoch == epoch && s.last_sequence >= 0 => {
            if s.last_sequence == i32::MAX {
                0
            } else {
                s.last_sequence + 1
            }
        }
        _ => 0,
    }
}

/// A timestamp lookup that matches no record (-1 on the wire) resolves to the latest offset, in
/// both implementations, so that a scan from it reads nothing rather than failing.
pub(crate) fn resolve_past_end(offset: i64, latest: i64) -> i64 {
    if offset < 0 {
        latest
    } else {
        offset
    }
}

/// Splits one partition's records into batches bounded by [`BATCH_BYTES`] and [`BATCH_RECORDS`].
fn split(items: Vec<(usize, NewRecord)>) -> Vec<Vec<(usize, NewRecord)>> {
    let mut chunks: Vec<Vec<(usize, NewRecord)>> = Vec::new();
    let mut bytes = 0usize;
    for item in items {
        let r = &item.1;
        let size = RECORD_OVERHEAD_BYTES
            + r.key.as_ref().map_or(0, |k| k.len())
            + r.value.as_ref().map_or(0, |v| v.len())
            + r.headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()))
                .sum::<usize>();
        let full = chunks
            .last()
            .is_none_or(|c| c.len() >= BATCH_RECORDS || bytes + size > BATCH_BYTES);
        if full {
            chunks.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        chunks.last_mut().expect("pushed above").push(item);
    }
    chunks
}

/// Commits offsets for `group` as the member (`member_id`, `epoch`), or as a simple client with
/// epoch -1, under the same rules the OffsetCommit handler applies (OffsetCommit v9).
pub(super) async fn commit_as(
    broker: &Broker,
    group: &str,
    member_id: &str,
    epoch: i32,
    offsets: Vec<(String, i32, i64)>,
) -> Result<()> {
    if group.is_empty() {
        return Err(remote_error(INVALID_GROUP_ID, Some("the group id is empty")));
    }
    membership::validate_commit(&broker.groups, group, member_id, epoch, None, 9)
        .map_err(|code| remote_error(code, Some(group)))?;
    let entries = commit_entries(broker, offsets)?;
    if entries.is_empty() {
        return Ok(());
    }
    broker.groups.offsets.commit(group, entries).await
}

/// Offsets as the entries the offsets store commits; Error::UnknownTopicOrPartition for a
/// partition the broker does not have.
pub(super) fn commit_entries(broker: &Broker, offsets: Vec<(String, i32, i64)>) -> Result<Vec<CommitEntry>> {
    offsets
        .into_iter()
        .map(|(topic, partition, offset)| {
            broker.topics.log(&topic, partition)?;
            Ok(CommitEntry {
                topic,
                partition,
                offset,
                leader_epoch: -1,
                metadata: String::new(),
                expire_timestamp_ms: None,
            })
        })
        .collect()
}

impl TopicAccess for EmbeddedAccess {
    fn topics(&self) -> BoxFuture<'_, Result<Vec<TopicInfo>>> {
        Box::pin(async move {
            Ok(self
                .broker
                .topics
                .all()
                .iter()
                .map(|t| TopicInfo {
                    name: t.name.clone(),
                    partitions: t.partition_count(),
                    internal: t.is_internal(),
                })
                .collect())
        })
    }

    fn create_topic(&self, spec: TopicSpec) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let config = self.broker.config();
            let partitions = match spec.partitions {
                -1 => i32::try_from(config.long("num.partitions")).unwrap_or(i32::MAX),
                n => n,
            };
            let configs = spec.configs.into_iter().collect();
            let broker = self.broker.clone();
            // Creating a topic opens files and fsyncs directories: off the async threads.
            tokio::task::spawn_blocking(move || {
                broker
                    .topics
                    .create(&config, &spec.name, partitions, configs, false)
                    .map(|_| ())
            })
            .await
            .map_err(|_| Error::Shutdown("topic creation"))?
        })
    }

    fn list_offsets(&self, topic: &str, spec: OffsetSpec) -> BoxFuture<'_, Result<Vec<(i32, i64)>>> {
        let topic = topic.to_string();
        Box::pin(async move { self.offsets_for(&topic, spec) })
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
        })
    }

    fn produce(&self, topic: &str, records: Vec<OutRecord>) -> BoxFuture<'_, Result<Vec<Delivery>>> {
        let topic = topic.to_string();
        Box::pin(async move { self.produce_records(&topic, records).await })
    }

    fn committed(&self, group: &str) -> BoxFuture<'_, Result<Vec<(String, i32, i64)>>> {
        let group = group.to_string();
        Box::pin(async move { self.committed_offsets(&group, None).await })
    }

    fn committed_partitions(
        &self,
        group: &str,
        partitions: Vec<(String, i32)>,
    ) -> BoxFuture<'_, Result<Vec<(String, i32, i64)>>> {
        let group = group.to_string();
        Box::pin(async move {
            for (topic, partition) in &partitions {
                self.broker.topics.log(topic, *partition)?;
            }
            self.committed_offsets(&group, Some(partitions)).await
        })
    }

    fn commit(&self, group: &str, offsets: Vec<(String, i32, i64)>) -> BoxFuture<'_, Result<()>> {
        let group = group.to_string();
        Box::pin(async move { self.commit_simple(&group, offsets).await })
    }

    fn join(&self, group: &str, topics: Vec<String>) -> BoxFuture<'_, Result<Box<dyn GroupMember>>> {
        let group = group.to_string();
        Box::pin(async move {
            let member = EmbeddedMember::join(self.broker.clone(), group, topics)?;
            Ok(Box::new(member) as Box<dyn GroupMember>)
        })
    }

    fn transactional_producer(
        &self,
        transactional_id: &str,
        timeout_ms: u64,
    ) -> BoxFuture<'_, Result<Box<dyn TxnProducer>>> {
        let id = transactional_id.to_string();
        Box::pin(async move {
            let producer = EmbeddedTxnProducer::init(self.broker.clone(), id, timeout_ms).await?;
            Ok(Box::new(producer) as Box<dyn TxnProducer>)
        })
    }
}

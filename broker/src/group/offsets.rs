//! Committed offsets of every group, durable as records of the compacted internal topic
//! `__consumer_offsets` in Kafka's own schemas, loaded into memory when the broker opens.
//!
//! A group's records all go to one partition of the topic, chosen as Kafka chooses it, so one
//! group's commits are totally ordered by that partition's log. A write happens in two steps:
//! [`OffsetStore::begin_commit`] (and its siblings for deletes) appends one batch at once, in the
//! order requests arrive, and [`OffsetStore::finish`] waits for the batch to be fsync'd and only
//! then applies it to the in-memory map, so that a fetch never sees an offset that a crash could
//! lose. Appended but not yet durable changes wait in a per-partition queue in log order; whoever
//! finishes first applies every change up to its own batch, so the map always replays the log in
//! order even when fsync waits complete out of order.
//!
//! Transactional commits (TxnOffsetCommit, `txn.rs`) are appended as transactional records of
//! the producer and held aside until the transaction's marker lands in the same partition; each
//! committed offset remembers the log offset of its batch, so that a transactional offset
//! applied at its marker never replaces a plain commit appended after it, as in Kafka.
//!
//! Memory bound: the map holds exactly the live (compacted) state: one entry per group and
//! partition with a committed offset. Commits are accepted only for partitions that exist, so
//! entries are at most groups x partitions; each entry holds its group id (at most 32767 bytes,
//! the key schema's limit), a topic name (at most 249 bytes) and metadata of at most
//! `offset.metadata.max.bytes`. Expiry (`offsets.retention.minutes`) removes the entries of
//! empty groups, which bounds what abandoned groups cost over time.

pub(crate) mod internal_topic;
pub mod membership;
pub mod record;
#[cfg(test)]
mod tests;
mod txn;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use kafka_protocol::ResponseError;

use crate::broker::now_ms;
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::log::batch::{self, BatchHeader, EncodeOptions, NewRecord};
use crate::log::{txn::parse_marker, PartitionLog, MAX_DECODED_BATCH_BYTES};
use crate::topics::Topics;
use internal_topic::Batch;
pub use record::{partition_for, OffsetValue};
use txn::{Committed, OpenTxns};

/// The internal topic holding committed offsets, as Kafka names it.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Segment size of the offsets topic (Kafka's `offsets.topic.segment.bytes` default).
pub const OFFSETS_SEGMENT_BYTES: &str = "104857600";

/// One offset to commit for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitEntry {
    /// The topic name.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
    /// The committed offset.
    pub offset: i64,
    /// The leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// The client's metadata ("" when none).
    pub metadata: String,
    /// An explicit expiry time in milliseconds since the epoch (OffsetCommit v2-4), if any.
    pub expire_timestamp_ms: Option<i64>,
}

/// A batch appended to `__consumer_offsets` whose changes become visible once [`OffsetStore::finish`]
/// has seen it durable.
#[derive(Debug)]
#[must_use = "changes become visible only through OffsetStore::finish"]
pub struct Appended {
    partition: usize,
    /// The log end offset just after the batch; 0 when nothing was appended.
    end_offset: i64,
}

/// One change to the map: a committed offset, or its removal (a tombstone).
#[derive(Debug, Clone)]
struct Change {
    group: String,
    topic: String,
    partition: i32,
    value: Option<OffsetValue>,
}

/// Changes appended to one partition but not yet applied, with the log end offset after them and
/// the base offset of their batch.
struct Pending {
    end_offset: i64,
    batch_offset: i64,
    changes: Vec<Change>,
}

/// group -> (topic, partition) -> committed offset.
type Groups = HashMap<String, BTreeMap<(String, i32), Committed>>;

/// Every group's committed offsets. Send + Sync.
pub struct OffsetStore {
    /// The partitions of `__consumer_offsets`, in partition order.
    logs: Vec<Arc<PartitionLog>>,
    /// Per partition: appended, not yet applied changes in log order. The lock is held across the
    /// append, so queue order is log order.
    pending: Vec<Mutex<VecDeque<Pending>>>,
    /// The durable state.
    groups: RwLock<Groups>,
    /// Per partition: offsets of open transactions, applied or dropped when their marker lands.
    open_txns: Vec<Mutex<OpenTxns>>,
    /// `offset.metadata.max.bytes`.
    metadata_max_bytes: usize,
    /// `offsets.retention.minutes`, in milliseconds.
    retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    check_interval_ms: i64,
    /// The largest batch the offsets topic accepts (`max.message.bytes`).
    max_batch_bytes: usize,
    /// Broker time of the last expiry pass.
    last_expiry_ms: AtomicI64,
}

impl OffsetStore {
    /// Creates `__consumer_offsets` if absent (`offsets.topic.num.partitions` partitions, compacted)
    /// and loads every committed offset from it, replaying each partition from start to end.
    pub fn open(topics: &Topics, config: &BrokerConfig) -> Result<OffsetStore> {
        let topic = internal_topic::open_or_create(
            topics,
            config,
            OFFSETS_TOPIC,
            "offsets.topic.num.partitions",
            OFFSETS_SEGMENT_BYTES,
        )?;
        let logs = topic.partitions();
        let mut groups = Groups::new();
        let mut open_txns = Vec::with_capacity(logs.len());
        let mut records = 0usize;
        for (p, log) in logs.iter().enumerate() {
            let mut open = OpenTxns::default();
            records += load_partition(p, log, &mut groups, &mut open)?;
            open_txns.push(Mutex::new(open));
        }
        let store = OffsetStore {
            pending: logs.iter().map(|_| Mutex::new(VecDeque::new())).collect(),
            open_txns,
            logs,
            groups: RwLock::new(HashMap::new()),
            metadata_max_bytes: config
                .long("offset.metadata.max.bytes")
                .clamp(0, record::MAX_STRING_BYTES as i64) as usize,
            retention_ms: config.long("offsets.retention.minutes").saturating_mul(60_000),
            check_interval_ms: config.long("offsets.retention.check.interval.ms"),
            max_batch_bytes: config.topic_rules(&topic.configs()).max_message_bytes,
            last_expiry_ms: AtomicI64::new(now_ms()),
        };
        let entries: usize = groups.values().map(BTreeMap::len).sum();
        let open: usize = store.open_txns.iter().map(|o| lock(o).len()).sum();
        tracing::info!(
            partitions = store.logs.len(),
            records,
            groups = groups.len(),
            offsets = entries,
            open_transactional_offsets = open,
            "committed offsets loaded"
        );
        *store.groups.write().expect("offsets lock") = groups;
        Ok(store)
    }

    /// The number of partitions of `__consumer_offsets`.
    pub fn partition_count(&self) -> i32 {
        self.logs.len() as i32
    }

    /// The `__consumer_offsets` partition that holds a group's records.
    pub fn partition_of(&self, group: &str) -> usize {
        partition_for(group, self.partition_count()) as usize
    }

    /// Whether metadata is longer than `offset.metadata.max.bytes` (OFFSET_METADATA_TOO_LARGE).
    pub fn metadata_too_large(&self, metadata: &str) -> bool {
        metadata.len() > self.metadata_max_bytes
    }

    /// Commits offsets for a group: visible to fetches once durable. The caller checks that the
    /// partitions exist and that the committer may commit.
    pub async fn commit(&self, group: &str, entries: Vec<CommitEntry>) -> Result<()> {
        let appended = self.begin_commit(group, entries, now_ms())?;
        self.finish(appended).await
    }

    /// Appends a commit now (fixing its order among writes) without waiting for it to be durable;
    /// [`OffsetStore::finish`] waits and makes it visible.
    pub fn begin_commit(&self, group: &str, entries: Vec<CommitEntry>, now_ms: i64) -> Result<Appended> {
        let changes = self.changes(group, entries, now_ms)?;
        self.append(self.partition_of(group), changes, now_ms)
    }

    /// The changes a commit makes; metadata longer than `offset.metadata.max.bytes` is refused.
    fn changes(&self, group: &str, entries: Vec<CommitEntry>, now_ms: i64) -> Result<Vec<Change>> {
        entries
            .into_iter()
            .map(|e| {
                if self.metadata_too_large(&e.metadata) {
                    return Err(Error::OffsetMetadataTooLarge {
                        size_bytes: e.metadata.len(),
                        limit_bytes: self.metadata_max_bytes,
                    });
                }
                Ok(Change {
                    group: group.to_string(),
                    topic: e.topic,
                    partition: e.partition,
                    value: Some(OffsetValue {
                        offset: e.offset,
                        leader_epoch: e.leader_epoch,
                        metadata: e.metadata,
                        commit_timestamp_ms: now_ms,
                        expire_timestamp_ms: e.expire_timestamp_ms,
                    }),
                })
            })
            .collect()
    }

    /// Waits until an appended batch is durable, then applies it (and every earlier batch of its
    /// partition) to the map.
    pub async fn finish(&self, appended: Appended) -> Result<()> {
        if appended.end_offset == 0 {
            return Ok(());
        }
        self.logs[appended.partition].wait_durable(appended.end_offset).await?;
        let mut pending = self.pending(appended.partition);
        let mut groups = self.groups.write().expect("offsets lock");
        while pending.front().is_some_and(|p| p.end_offset <= appended.end_offset) {
            if let Some(done) = pending.pop_front() {
                for change in done.changes {
                    apply(&mut groups, change, done.batch_offset);
                }
            }
        }
        Ok(())
    }

    /// Appends a transactional commit (TxnOffsetCommit) of a producer now, as a transactional
    /// batch of that producer, and holds its offsets aside until the transaction's marker lands
    /// in this partition ([`OffsetStore::complete_txn`]). [`OffsetStore::finish`] waits for it
    /// to be durable. The caller checks the group, the partitions and the transaction; the
    /// entries carry no expiry (TxnOffsetCommit has none).
    pub fn begin_txn_commit(
        &self,
        group: &str,
        producer_id: i64,
        producer_epoch: i16,
        entries: Vec<CommitEntry>,
        now_ms: i64,
    ) -> Result<Appended> {
        let partition = self.partition_of(group);
        if entries.is_empty() {
            return Ok(Appended {
                partition,
                end_offset: 0,
            });
        }
        let changes = self.changes(group, entries, now_ms)?;
        let records = records(&changes, now_ms)?;
        let log = &self.logs[partition];
        // The queue lock orders this append among the partition's other writes.
        let _order = self.pending(partition);
        let mut open = lock(&self.open_txns[partition]);
        open.check_room(producer_id, changes.len())?;
        let known = log.producer(producer_id).map(|s| (s.producer_epoch, s.last_sequence));
        let options = EncodeOptions {
            producer_id,
            producer_epoch,
            base_sequence: txn::next_sequence(known, producer_epoch),
            transactional: true,
            ..EncodeOptions::default()
        };
        let info = Batch::encode(&records, &options, self.max_batch_bytes)?.append_to(log, now_ms)?;
        for change in changes {
            if let Some(value) = change.value {
                let committed = Committed {
                    value,
                    batch_offset: info.base_offset,
                };
                open.add(producer_id, change.group, change.topic, change.partition, committed);
            }
        }
        Ok(Appended {
            partition,
            end_offset: info.last_offset + 1,
        })
    }

    /// Applies (commit) or drops (abort) the offsets a producer's transaction holds in one
    /// partition of `__consumer_offsets`, once the transaction's marker there is durable. A
    /// transactional offset replaces a committed one only if its batch came later in the log.
    pub fn complete_txn(&self, partition: i32, producer_id: i64, commit: bool) {
        let Some(open) = usize::try_from(partition).ok().and_then(|p| self.open_txns.get(p)) else {
            return;
        };
        // The pending offsets stay locked until they are applied, so that a reader never sees
        // an offset neither pending nor committed (and reads the older one). Lock order: the
        // pending offsets, then the committed ones, as everywhere else.
        let mut pending = lock(open);
        let taken = pending.take(producer_id);
        if !commit || taken.is_empty() {
            return;
        }
        let mut groups = self.groups.write().expect("offsets lock");
        for ((group, topic, p), committed) in taken {
            apply_committed(&mut groups, group, (topic, p), committed);
        }
        drop(groups);
        drop(pending);
    }

    /// Whether an open transaction holds an offset for a group's partition: OffsetFetch with
    /// `require_stable` answers UNSTABLE_OFFSET_COMMIT for it.
    pub fn has_pending_txn(&self, group: &str, topic: &str, partition: i32) -> bool {
        lock(&self.open_txns[self.partition_of(group)]).is_pending(group, topic, partition)
    }

    /// A group's committed offset for one partition.
    pub fn fetch(&self, group: &str, topic: &str, partition: i32) -> Option<OffsetValue> {
        let groups = self.groups.read().expect("offsets lock");
        groups
            .get(group)?
            .get(&(topic.to_string(), partition))
            .map(|c| c.value.clone())
    }

    /// Every committed offset of a group, ordered by topic and partition.
    pub fn fetch_all(&self, group: &str) -> Vec<(String, i32, OffsetValue)> {
        let groups = self.groups.read().expect("offsets lock");
        groups
            .get(group)
            .map(|offsets| {
                offsets
                    .iter()
                    .map(|((t, p), c)| (t.clone(), *p, c.value.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every group with at least one committed offset, sorted.
    pub fn groups(&self) -> Vec<String> {
        let mut names: Vec<String> = self.groups.read().expect("offsets lock").keys().cloned().collect();
        names.sort();
        names
    }

    /// Whether a group has any committed offset.
    pub fn has_offsets(&self, group: &str) -> bool {
        self.groups.read().expect("offsets lock").contains_key(group)
    }

    /// Deletes every committed offset of a group (DeleteGroups), with tombstones.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let appended = self.begin_delete_group(group, now_ms())?;
        self.finish(appended).await
    }

    /// Appends tombstones for every offset of a group, committed or in flight.
    pub fn begin_delete_group(&self, group: &str, now_ms: i64) -> Result<Appended> {
        let p = self.partition_of(group);
        let mut keys: Vec<(String, i32)> = self
            .fetch_all(group)
            .into_iter()
            .map(|(t, partition, _)| (t, partition))
            .collect();
        for pending in self.pending(p).iter() {
            for c in pending.changes.iter().filter(|c| c.group == group) {
                keys.push((c.topic.clone(), c.partition));
            }
        }
        keys.sort();
        keys.dedup();
        self.append(p, tombstones(group, keys), now_ms)
    }

    /// Deletes a group's committed offsets for some partitions (OffsetDelete), with tombstones;
    /// partitions without an offset are skipped.
    pub async fn delete_offsets(&self, group: &str, partitions: &[(String, i32)]) -> Result<()> {
        let appended = self.begin_delete_offsets(group, partitions, now_ms())?;
        self.finish(appended).await
    }

    /// Appends tombstones for the partitions of a group that have a committed offset.
    pub fn begin_delete_offsets(&self, group: &str, partitions: &[(String, i32)], now_ms: i64) -> Result<Appended> {
        let mut keys: Vec<(String, i32)> = partitions
            .iter()
            .filter(|(t, p)| self.fetch(group, t, *p).is_some())
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        self.append(self.partition_of(group), tombstones(group, keys), now_ms)
    }

    /// Removes, with tombstones, the offsets of idle groups (`is_idle`: no live member in either
    /// protocol) that are past their expiry time or older than `offsets.retention.minutes`.
    /// Returns how many offsets expired.
    pub async fn expire(&self, now_ms: i64, is_idle: impl Fn(&str) -> bool) -> Result<usize> {
        // Candidates are collected first and `is_idle` asked without the map's lock held, so that
        // the membership engines may call into this store while holding their own locks.
        let candidates: Vec<(String, Vec<(String, i32)>)> = {
            let groups = self.groups.read().expect("offsets lock");
            groups
                .iter()
                .filter_map(|(group, offsets)| {
                    let expired: Vec<(String, i32)> = offsets
                        .iter()
                        .filter(|(_, c)| self.is_expired(&c.value, now_ms))
                        .map(|(k, _)| k.clone())
                        .collect();
                    (!expired.is_empty()).then(|| (group.clone(), expired))
                })
                .collect()
        };
        let mut by_partition: BTreeMap<usize, Vec<Change>> = BTreeMap::new();
        for (group, mut keys) in candidates {
            if !is_idle(&group) {
                continue;
            }
            // Offsets an open transaction is about to replace do not expire, as in Kafka.
            let open = lock(&self.open_txns[self.partition_of(&group)]).pending_of(&group);
            keys.retain(|k| !open.contains(k));
            if keys.is_empty() {
                continue;
            }
            tracing::info!(group = %group, offsets = keys.len(), "committed offsets expired");
            by_partition
                .entry(self.partition_of(&group))
                .or_default()
                .extend(tombstones(&group, keys));
        }
        let mut expired = 0;
        for (p, changes) in by_partition {
            expired += changes.len();
            let appended = self.append(p, changes, now_ms)?;
            self.finish(appended).await?;
        }
        Ok(expired)
    }

    /// Runs [`OffsetStore::expire`] when `offsets.retention.check.interval.ms` has passed since the
    /// last pass; called from the coordinator's timer tick. Failures are logged.
    pub async fn expire_if_due(&self, now_ms: i64, is_idle: impl Fn(&str) -> bool) {
        let last = self.last_expiry_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < self.check_interval_ms {
            return;
        }
        self.last_expiry_ms.store(now_ms, Ordering::Relaxed);
        if let Err(e) = self.expire(now_ms, is_idle).await {
            tracing::error!(error = %e, "expiring committed offsets failed");
        }
    }

    fn is_expired(&self, value: &OffsetValue, now_ms: i64) -> bool {
        match value.expire_timestamp_ms {
            Some(expire) => now_ms >= expire,
            None => now_ms.saturating_sub(value.commit_timestamp_ms) >= self.retention_ms,
        }
    }

    fn pending(&self, partition: usize) -> MutexGuard<'_, VecDeque<Pending>> {
        self.pending[partition]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Encodes changes as one uncompressed batch and appends it to a partition, queueing them.
    fn append(&self, partition: usize, changes: Vec<Change>, now_ms: i64) -> Result<Appended> {
        if changes.is_empty() {
            return Ok(Appended {
                partition,
                end_offset: 0,
            });
        }
        let batch = Batch::encode(
            &records(&changes, now_ms)?,
            &EncodeOptions::default(),
            self.max_batch_bytes,
        )?;
        let mut pending = self.pending(partition);
        let info = batch.append_to(&self.logs[partition], now_ms)?;
        let end_offset = info.last_offset + 1;
        pending.push_back(Pending {
            end_offset,
            batch_offset: info.base_offset,
            changes,
        });
        Ok(Appended { partition, end_offset })
    }
}

/// The error code a coordinator API answers for a failed write or read of `__consumer_offsets`,
/// normalised as Kafka's group coordinator does: storage trouble sends clients to find the
/// coordinator again, oversize writes are INVALID_COMMIT_OFFSET_SIZE.
pub fn coordinator_error_code(e: &Error) -> i16 {
    let code = e.kafka_code();
    match ResponseError::try_from_code(code) {
        Some(ResponseError::MessageTooLarge | ResponseError::RecordListTooLarge) => {
            ResponseError::InvalidCommitOffsetSize.code()
        }
        Some(
            ResponseError::UnknownTopicOrPartition | ResponseError::NotEnoughReplicas | ResponseError::RequestTimedOut,
        ) => ResponseError::CoordinatorNotAvailable.code(),
        Some(ResponseError::NotLeaderOrFollower | ResponseError::KafkaStorageError) => {
            ResponseError::NotCoordinator.code()
        }
        _ => code,
    }
}

/// The records of some changes, as a batch of the offsets topic holds them.
fn records(changes: &[Change], now_ms: i64) -> Result<Vec<NewRecord>> {
    changes
        .iter()
        .map(|c| {
            Ok(NewRecord {
                timestamp_ms: now_ms,
                key: Some(record::encode_offset_key(&c.group, &c.topic, c.partition)?),
                value: c.value.as_ref().map(record::encode_offset_value).transpose()?,
                headers: Vec::new(),
            })
        })
        .collect()
}

fn tombstones(group: &str, keys: Vec<(String, i32)>) -> Vec<Change> {
    keys.into_iter()
        .map(|(topic, partition)| Change {
            group: group.to_string(),
            topic,
            partition,
            value: None,
        })
        .collect()
}

/// Applies a change written by the batch at `batch_offset`; it never undoes a later batch's.
fn apply(groups: &mut Groups, change: Change, batch_offset: i64) {
    let key = (change.topic, change.partition);
    match change.value {
        Some(value) => apply_committed(groups, change.group, key, Committed { value, batch_offset }),
        None => {
            if let Some(offsets) = groups.get_mut(&change.group) {
                if offsets.get(&key).is_some_and(|c| c.batch_offset < batch_offset) {
                    offsets.remove(&key);
                }
                if offsets.is_empty() {
                    groups.remove(&change.group);
                }
            }
        }
    }
}

/// Stores a committed offset unless the current one was written by a later batch (Kafka's
/// `olderThan` check).
fn apply_committed(groups: &mut Groups, group: String, key: (String, i32), committed: Committed) {
    let offsets = groups.entry(group).or_default();
    if offsets
        .get(&key)
        .is_none_or(|c| c.batch_offset <= committed.batch_offset)
    {
        offsets.insert(key, committed);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Replays one partition of `__consumer_offsets` into `groups`; returns the records read.
/// Records that are not offsets (group metadata, KIP-848 records) and undecodable ones are
/// skipped with a log line. Transactional offsets are held in `open` until their producer's
/// marker: applied on commit, dropped on abort; those without a marker yet stay held.
fn load_partition(p: usize, log: &PartitionLog, groups: &mut Groups, open: &mut OpenTxns) -> Result<usize> {
    let mut count = 0;
    internal_topic::replay(log, "loading committed offsets", |header, bytes| {
        if header.is_control() {
            load_marker(p, header, bytes, groups, open);
            return Ok(());
        }
        for r in batch::decode_records(bytes, MAX_DECODED_BATCH_BYTES)? {
            count += 1;
            let Some(change) = load_record(p, r) else {
                continue;
            };
            if !header.is_transactional() {
                apply(groups, change, header.base_offset);
            } else if let Some(value) = change.value {
                let committed = Committed {
                    value,
                    batch_offset: header.base_offset,
                };
                open.add(
                    header.producer_id,
                    change.group,
                    change.topic,
                    change.partition,
                    committed,
                );
            }
        }
        Ok(())
    })?;
    Ok(count)
}

/// Applies (commit marker) or drops (abort marker) the offsets the marker's producer holds in
/// `open`; other control records and unreadable markers are skipped, the latter with a log line.
fn load_marker(p: usize, header: &BatchHeader, bytes: &[u8], groups: &mut Groups, open: &mut OpenTxns) {
    match parse_marker(bytes) {
        Ok(Some(marker)) if marker.commit => {
            for ((group, topic, partition), committed) in open.take(header.producer_id) {
                apply_committed(groups, group, (topic, partition), committed);
            }
        }
        Ok(Some(_)) => drop(open.take(header.producer_id)),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(partition = p, offset = header.base_offset, error = %e, "skipped a __consumer_offsets control batch")
        }
    }
}

/// The offset change a record holds; None for other record types and undecodable records.
fn load_record(p: usize, r: batch::Record) -> Option<Change> {
    let skip = |reason: String| {
        tracing::warn!(partition = p, offset = r.offset, reason = %reason, "skipped a __consumer_offsets record");
        None
    };
    let Some(key) = r.key.as_deref() else {
        return skip("the record has no key".to_string());
    };
    let (group, topic, partition) = match record::decode_key(key) {
        Ok(record::Key::Offset {
            group,
            topic,
            partition,
        }) => (group, topic, partition),
        Ok(record::Key::Other(_)) => return None,
        Err(e) => return skip(e.to_string()),
    };
    let value = match r.value.as_deref().map(record::decode_offset_value).transpose() {
        Ok(value) => value,
        Err(e) => return skip(e.to_string()),
    };
    Some(Change {
        group,
        topic,
        partition,
        value,
    })
}

//! The producer's per-partition queues: records gather into batches (bounded by bytes and linger),
//! sealed batches wait for their leader, and retried batches go back in sequence order.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::producer::RecordMetadata;
use crate::error::{Error, Result};
use crate::log::batch::NewRecord;

/// A topic and partition.
pub(crate) type TopicPartition = (String, i32);

/// The limits the accumulator enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// A batch is sealed once it holds this many bytes.
    pub(crate) batch_bytes: usize,
    /// A batch is sealed this long after its first record.
    pub(crate) linger: Duration,
    /// The most batches of one partition in flight at once.
    pub(crate) max_in_flight_per_partition: usize,
    /// The most batch bytes in one Produce request (a single larger batch still goes alone).
    pub(crate) max_request_bytes: usize,
    /// How long a record may wait for its acknowledgement, retries included.
    pub(crate) delivery_timeout: Duration,
    /// Whether batches carry producer sequence numbers.
    pub(crate) idempotent: bool,
}

/// Where one record's outcome is reported.
pub(crate) struct Completion {
    /// The waiting delivery future.
    pub(crate) tx: oneshot::Sender<Result<RecordMetadata>>,
    /// The record's create timestamp.
    pub(crate) timestamp_ms: i64,
}

/// A sealed batch of one partition, encoded on its first send and resent verbatim on retries.
pub(crate) struct SealedBatch {
    /// The topic.
    pub(crate) topic: String,
    /// The partition.
    pub(crate) partition: i32,
    /// The records, until the batch is encoded.
    pub(crate) records: Vec<NewRecord>,
    /// The encoded batch, once sent.
    pub(crate) data: Option<Bytes>,
    /// The first record's sequence number, -1 without idempotence.
    pub(crate) base_sequence: i32,
    /// One completion per record, in offset order.
    pub(crate) completions: Vec<Completion>,
    /// The estimated size, also the buffer permits it holds.
    pub(crate) bytes: usize,
    /// When the first record was appended.
    pub(crate) created: Instant,
    /// How many times it was retried.
    pub(crate) attempts: u32,
    /// Not to be resent before this instant.
    pub(crate) retry_at: Option<Instant>,
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<SealedBatch>,
    queued: VecDeque<SealedBatch>,
    /// Batches to resend, sorted by sequence number.
    retries: Vec<SealedBatch>,
    in_flight: usize,
    next_sequence: i32,
}

/// What one drain pass produced.
#[derive(Default)]
pub(crate) struct Drained {
    /// Batches to send now, grouped per leader node id; each group fits one request.
    pub(crate) requests: Vec<(i32, Vec<SealedBatch>)>,
    /// Batches whose delivery timeout passed before they were sent.
    pub(crate) expired: Vec<SealedBatch>,
    /// Topics with a partition whose leader is unknown.
    pub(crate) unknown_leaders: Vec<String>,
    /// When the next batch becomes ready by linger or retry backoff.
    pub(crate) next_wakeup: Option<Instant>,
}

/// All partitions' queues of one producer.
pub(crate) struct Accumulator {
    limits: Limits,
    partitions: HashMap<TopicPartition, PartitionQueue>,
    /// While non-zero, batches are sealed without waiting for linger.
    pub(crate) flushing: usize,
    /// Set when the producer closes: everything is sealed and sent, nothing new is accepted.
    pub(crate) closing: bool,
}

impl Accumulator {
    /// An empty accumulator.
    pub(crate) fn new(limits: Limits) -> Self {
        Accumulator {
            limits,
            partitions: HashMap::new(),
            flushing: 0,
            closing: false,
        }
    }

    /// Appends one record; returns whether the sender should look again (new or sealed batch).
    pub(crate) fn append(
        &mut self,
        topic: &str,
        partition: i32,
        record: NewRecord,
        completion: Completion,
        bytes: usize,
    ) -> bool {
        let now = Instant::now();
        let queue = self.partitions.entry((topic.to_string(), partition)).or_default();
        let mut wake = false;
        if queue
            .open
            .as_ref()
            .is_some_and(|open| open.bytes + bytes > self.limits.batch_bytes)
        {
            queue.queued.extend(queue.open.take());
            wake = true;
        }
        let open = queue.open.get_or_insert_with(|| {
            wake = true;
            SealedBatch {
                topic: topic.to_string(),
                partition,
                records: Vec::new(),
                data: None,
                base_sequence: -1,
                completions: Vec::new(),
                bytes: 0,
                created: now,
                attempts: 0,
                retry_at: None,
            }
        });
        open.records.push(record);
        open.completions.push(completion);
        open.bytes += bytes;
        if open.bytes >= self.limits.batch_bytes {
            queue.queued.extend(queue.open.take());
            wake = true;
        }
        wake
    }

    /// Whether nothing is buffered, queued or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.partitions
            .values()
            .all(|q| q.open.is_none() && q.queued.is_empty() && q.retries.is_empty() && q.in_flight == 0)
    }

    /// Takes the batches ready to send, given the known leaders; assigns sequence numbers.
    pub(crate) fn drain(&mut self, leader_of: impl Fn(&str, i32) -> Option<i32>) -> Drained {
        let now = Instant::now();
        let limits = self.limits;
        let seal_all = self.flushing > 0 || self.closing;
        let mut drained = Drained::default();
        let mut groups: HashMap<i32, (usize, Vec<SealedBatch>)> = HashMap::new();
        let mut more = false;
        let wakeup = |at: Instant, drained: &mut Drained| {
            drained.next_wakeup = Some(drained.next_wakeup.map_or(at, |w| w.min(at)));
        };
        for ((topic, partition), queue) in &mut self.partitions {
            if let Some(open) = &queue.open {
                if seal_all || now >= open.created + limits.linger {
                    queue.queued.extend(queue.open.take());
                } else {
                    wakeup(open.created + limits.linger, &mut drained);
                }
            }
            // Batches never sent can expire without breaking sequence order.
            while queue
                .queued
                .front()
                .is_some_and(|b| now >= b.created + limits.delivery_timeout)
            {
                drained.expired.extend(queue.queued.pop_front());
            }
            if queue.retries.is_empty() && queue.queued.is_empty() {
                continue;
            }
            let Some(leader) = leader_of(topic, *partition) else {
                if !drained.unknown_leaders.contains(topic) {
                    drained.unknown_leaders.push(topic.clone());
                }
                continue;
            };
            let (group_bytes, group) = groups.entry(leader).or_default();
            let batch = if !queue.retries.is_empty() {
                // Retries wait until nothing of the partition is in flight, then go in sequence order.
                let retry_at = queue.retries[0].retry_at;
                match retry_at {
                    _ if queue.in_flight > 0 => continue,
                    Some(at) if at > now => {
                        wakeup(at, &mut drained);
                        continue;
                    }
                    _ => queue.retries.remove(0),
                }
            } else if queue.in_flight < limits.max_in_flight_per_partition {
                let Some(mut batch) = queue.queued.pop_front() else {
                    continue;
                };
                if limits.idempotent {
                    batch.base_sequence = queue.next_sequence;
                    queue.next_sequence = queue.next_sequence.wrapping_add(batch.records.len() as i32) & i32::MAX;
                }
                batch
            } else {
                continue;
            };
            *group_bytes += batch.bytes;
            queue.in_flight += 1;
            group.push(batch);
            if !queue.queued.is_empty()
                && queue.retries.is_empty()
                && queue.in_flight < limits.max_in_flight_per_partition
            {
                more = true;
            }
            if *group_bytes >= limits.max_request_bytes {
                let full = std::mem::take(group);
                *group_bytes = 0;
                drained.requests.push((leader, full));
            }
        }
        drained.requests.extend(
            groups
                .into_iter()
                .filter(|(_, (_, g))| !g.is_empty())
                .map(|(l, (_, g))| (l, g)),
        );
        // A partition with more ready batches than one request carries asks for another pass.
        if more {
            wakeup(now, &mut drained);
        }
        drained
    }

    /// Puts a batch that failed retriably back, to be resent after `backoff` in sequence order.
    pub(crate) fn requeue(&mut self, mut batch: SealedBatch, backoff: Duration) {
        batch.attempts += 1;
        batch.retry_at = Some(Instant::now() + backoff);
        let queue = self
            .partitions
            .entry((batch.topic.clone(), batch.partition))
            .or_default();
        queue.in_flight = queue.in_flight.saturating_sub(1);
        let at = queue
            .retries
            .partition_point(|b| b.base_sequence <= batch.base_sequence);
        queue.retries.insert(at, batch);
    }

    /// Records that an in-flight batch of this partition finished (delivered or failed for good).
    pub(crate) fn finished(&mut self, topic: &str, partition: i32) {
        if let Some(queue) = self.partitions.get_mut(&(topic.to_string(), partition)) {
            queue.in_flight = queue.in_flight.saturating_sub(1);
        }
    }
}

/// A copy of an error for each record of a failed batch (errors are not `Clone`).
pub(crate) fn copy_error(error: &Error) -> Error {
    match error {
        Error::Remote { code, message } => Error::Remote {
            code: *code,
            message: message.clone(),
        },
        Error::Connection { addr, reason } => Error::Connection {
            addr: addr.clone(),
            reason: reason.clone(),
        },
        Error::Timeout { what, ms } => Error::Timeout {
            what: what.clone(),
            ms: *ms,
        },
        Error::Shutdown(what) => Error::Shutdown(what),
        other => Error::Remote {
            code: other.kafka_code(),
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(linger: Duration, idempotent: bool) -> Limits {
        Limits {
            batch_bytes: 100,
            linger,
            max_in_flight_per_partition: 2,
            max_request_bytes: 1_000,
            delivery_timeout: Duration::from_secs(3_600),
            idempotent,
        }
    }

    fn push(acc: &mut Accumulator, partition: i32, bytes: usize) -> oneshot::Receiver<Result<RecordMetadata>> {
        let (tx, rx) = oneshot::channel();
        let record = NewRecord {
            timestamp_ms: 1,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
        };
        acc.append("t", partition, record, Completion { tx, timestamp_ms: 1 }, bytes);
        rx
    }

    fn leader(_: &str, _: i32) -> Option<i32> {
        Some(7)
    }

    #[test]
    fn batches_wait_for_linger_unless_full_or_flushing() {
        let mut acc = Accumulator::new(limits(Duration::from_secs(3_600), false));
        let _a = push(&mut acc, 0, 40);
        let drained = acc.drain(leader);
        assert!(drained.requests.is_empty());
        assert!(drained.next_wakeup.is_some());
        // Two more records overflow the 100-byte batch: the first two records go as one batch.
        let _b = push(&mut acc, 0, 40);
        let _c = push(&mut acc, 0, 40);
        let drained = acc.drain(leader);
        assert_eq!(drained.requests.len(), 1);
        assert_eq!(drained.requests[0].1[0].records.len(), 2);
        acc.flushing += 1;
        let drained = acc.drain(leader);
        assert_eq!(drained.requests[0].1[0].records.len(), 1);
    }

    #[test]
    fn sequences_follow_records_and_retries_resend_in_order_one_at_a_time() {
        let mut acc = Accumulator::new(limits(Duration::ZERO, true));
        for _ in 0..3 {
            drop(push(&mut acc, 0, 100));
        }
        let first = acc.drain(leader).requests.remove(0).1.remove(0);
        let second = acc.drain(leader).requests.remove(0).1.remove(0);
        assert_eq!((first.base_sequence, second.base_sequence), (0, 1));
        // Two in flight is the limit: the third waits.
        assert!(acc.drain(leader).requests.is_empty());
        // The second fails first (out of order), then the first: both go back, sorted by sequence.
        acc.requeue(second, Duration::ZERO);
        assert!(
            acc.drain(leader).requests.is_empty(),
            "a retry waits while the first is in flight"
        );
        acc.requeue(first, Duration::ZERO);
        // Retries go one at a time, so a failed retry cannot overtake the next one.
        let resent = acc.drain(leader).requests.remove(0).1.remove(0);
        assert_eq!(resent.base_sequence, 0);
        assert!(acc.drain(leader).requests.is_empty());
        acc.finished("t", 0);
        let resent = acc.drain(leader).requests.remove(0).1.remove(0);
        assert_eq!(resent.base_sequence, 1);
        acc.finished("t", 0);
        let third = acc.drain(leader).requests.remove(0).1.remove(0);
        assert_eq!(third.base_sequence, 2);
        acc.finished("t", 0);
        assert!(acc.is_idle());
    }

    #[test]
    fn unknown_leaders_are_reported_and_nothing_is_sent() {
        let mut acc = Accumulator::new(limits(Duration::ZERO, false));
        drop(push(&mut acc, 3, 10));
        let drained = acc.drain(|_, _| None);
        assert!(drained.requests.is_empty());
        assert_eq!(drained.unknown_leaders, vec!["t".to_string()]);
        assert!(!acc.is_idle());
    }
}

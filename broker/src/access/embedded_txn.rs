//! The embedded access's transactional producer: the calls a Kafka client's transactional
//! producer makes (InitProducerId, AddPartitionsToTxn, Produce, AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn), made on the broker in this process through the coordinator and the
//! same checks the handlers apply, so that a transaction written here is one the broker, its
//! markers and every read_committed reader treat as any client's.
//!
//! Records are appended at once, so nothing is ever in flight when the transaction ends: an
//! abort needs no new epoch, and sequences follow what each partition last saw of the producer.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::embedded::{append_placed, commit_entries, place, INVALID_GROUP_ID};
use super::{BoxFuture, ConsumerGroupMetadata, Delivery, OutRecord, TxnProducer};
use crate::broker::{now_ms, Broker};
use crate::client::{remote_error, MAX_TRANSACTION_OFFSETS};
use crate::error::{Error, Result};
use crate::group::offsets::{membership, OFFSETS_TOPIC};
use crate::txn::TopicPartition;

/// How long a call keeps retrying while the coordinator completes the previous transaction or
/// aborts a fenced one (the remote client's default `max.block.ms`).
const MAX_BLOCK_MS: u64 = 60_000;
/// The longest pause between retries of a coordinator that stays busy after it settled.
const MAX_QUICK_BACKOFF_MS: u64 = 100;
/// Kafka's INVALID_TXN_STATE, for calls the producer's state does not allow.
const INVALID_TXN_STATE: i16 = 48;

/// Where the producer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No transaction open.
    Ready,
    /// Between `begin` and `commit` or `abort`.
    InTransaction,
    /// Fenced: every call fails with the error that fenced it.
    Fenced,
}

/// A transactional producer on the broker in this process.
pub(super) struct EmbeddedTxnProducer {
    broker: Arc<Broker>,
    transactional_id: String,
    producer_id: i64,
    epoch: i16,
    phase: Phase,
    /// The error that fenced the producer, repeated to every later call.
    fenced: Option<(i16, String)>,
    /// Partitions the coordinator has added to the open transaction, offsets partitions included.
    partitions: BTreeSet<TopicPartition>,
    /// Picks the partition of keyless records: one partition per `produce` call, round robin.
    next_keyless: u32,
}

impl EmbeddedTxnProducer {
    /// Registers the transactional id with the coordinator and gets its producer id and a new
    /// epoch, fencing earlier producers and aborting their open transaction first.
    pub(super) async fn init(broker: Arc<Broker>, transactional_id: String, timeout_ms: u64) -> Result<Self> {
        let timeout = i32::try_from(timeout_ms).unwrap_or(i32::MAX);
        let (producer_id, epoch) = blocking(&broker, &transactional_id, || {
            broker
                .txns
                .init_producer_id(&broker, &transactional_id, timeout, None, now_ms())
        })
        .await?;
        tracing::info!(transactional_id = %transactional_id, producer_id, epoch, "embedded transactional producer initialised");
        Ok(EmbeddedTxnProducer {
            broker,
            transactional_id,
            producer_id,
            epoch,
            phase: Phase::Ready,
            fenced: None,
            partitions: BTreeSet::new(),
            next_keyless: 0,
        })
    }

    /// Fails unless a transaction is open (or with the fencing error once fenced).
    fn check_open(&self, call: &str) -> Result<()> {
        match self.phase {
            Phase::InTransaction => Ok(()),
            Phase::Fenced => Err(self.fenced_error()),
            Phase::Ready => Err(remote_error(
                INVALID_TXN_STATE,
                Some(&format!(
                    "{call} needs an open transaction: call begin first (transactional id {})",
                    self.transactional_id
                )),
            )),
        }
    }

    fn fenced_error(&self) -> Error {
        let (code, message) = self
            .fenced
            .clone()
            .unwrap_or((kafka_protocol::ResponseError::ProducerFenced.code(), String::new()));
        remote_error(code, Some(&message))
    }

    /// Notes a fencing error, after which the producer refuses everything.
    fn observe(&mut self, error: Error) -> Error {
        if super::is_fenced(&error) {
            tracing::warn!(transactional_id = %self.transactional_id, producer_id = self.producer_id,
                epoch = self.epoch, error = %error, "transactional producer fenced");
            self.phase = Phase::Fenced;
            self.fenced = Some((error.kafka_code(), error.to_string()));
            self.partitions.clear();
        }
        error
    }

    /// Adds the partitions not yet in the open transaction (AddPartitionsToTxn).
    async fn add(&mut self, wanted: BTreeSet<TopicPartition>) -> Result<()> {
        let new: BTreeSet<TopicPartition> = wanted.difference(&self.partitions).cloned().collect();
        if new.is_empty() {
            return Ok(());
        }
        let broker = &self.broker;
        let (id, pid, epoch) = (&self.transactional_id, self.producer_id, self.epoch);
        blocking(broker, id, || {
            broker
                .txns
                .add_partitions(broker, id, pid, epoch, new.clone(), now_ms())
        })
        .await?;
        self.partitions.extend(new);
        Ok(())
    }

    async fn produce_records(&mut self, topic: &str, records: Vec<OutRecord>) -> Result<Vec<Delivery>> {
        self.check_open("produce")?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let keyless = self.next_keyless;
        self.next_keyless = self.next_keyless.wrapping_add(1);
        let placed = place(&self.broker, topic, records, keyless)?;
        let partitions = placed.keys().map(|p| (topic.to_string(), *p)).collect();
        self.add(partitions).await?;
        append_placed(&self.broker, topic, placed, Some((self.producer_id, self.epoch))).await
    }

    async fn send_offsets_now(
        &mut self,
        offsets: Vec<(String, i32, i64)>,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        self.check_open("send_offsets")?;
        if offsets.len() > MAX_TRANSACTION_OFFSETS {
            return Err(Error::TooLarge {
                what: "transaction offsets",
                size_bytes: offsets.len(),
                limit_bytes: MAX_TRANSACTION_OFFSETS,
            });
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let group_id = group.group_id.as_str();
        if group_id.is_empty() {
            return Err(remote_error(INVALID_GROUP_ID, Some("the group id is empty")));
        }
        // AddOffsetsToTxn: the group's partition of __consumer_offsets joins the transaction.
        let index = self.broker.groups.offsets.partition_of(group_id);
        let offsets_partition = (OFFSETS_TOPIC.to_string(), index as i32);
        self.add(BTreeSet::from([offsets_partition.clone()])).await?;
        let store = &self.broker.groups.offsets;
        // TxnOffsetCommit: the handler's checks, in its order.
        membership::validate_txn_commit(
            &self.broker.groups,
            group_id,
            &group.member_id,
            group.generation_id,
            group.group_instance_id.as_deref(),
        )
        .map_err(|code| remote_error(code, Some(group_id)))?;
        let entries = commit_entries(&self.broker, offsets)?;
        let (pid, epoch) = (self.producer_id, self.epoch);
        let appended =
            self.broker
                .txns
                .with_verified(&self.transactional_id, pid, epoch, &offsets_partition, || {
                    store.begin_txn_commit(group_id, pid, epoch, entries, now_ms())
                })??;
        store.finish(appended).await
    }

    /// EndTxn, when the coordinator knows of the transaction (an empty one ends here).
    async fn end(&mut self, commit: bool) -> Result<()> {
        if self.phase == Phase::Fenced {
            return Err(self.fenced_error());
        }
        if self.phase == Phase::Ready {
            if commit {
                return Err(remote_error(
                    INVALID_TXN_STATE,
                    Some("commit needs an open transaction: call begin first"),
                ));
            }
            // Aborting with nothing open (after a failed begin, say) has nothing to do.
            return Ok(());
        }
        if !self.partitions.is_empty() {
            let broker = &self.broker;
            let (id, pid, epoch) = (&self.transactional_id, self.producer_id, self.epoch);
            blocking(broker, id, || {
                broker.txns.end_txn(broker, id, pid, epoch, commit, now_ms())
            })
            .await?;
        }
        tracing::debug!(transactional_id = %self.transactional_id, commit, partitions = self.partitions.len(), "transaction ended");
        self.partitions.clear();
        self.phase = Phase::Ready;
        Ok(())
    }
}

/// Runs a coordinator call until it is not busy with an earlier change of the transactional id
/// (CONCURRENT_TRANSACTIONS: the previous transaction's markers, or the abort a new epoch
/// started), waiting for that change rather than polling, for at most [`MAX_BLOCK_MS`].
async fn blocking<T, F>(broker: &Broker, transactional_id: &str, mut call: F) -> Result<T>
where
    F: FnMut() -> Result<crate::txn::Waiting<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_millis(MAX_BLOCK_MS);
    let mut attempt = 0u32;
    loop {
        let outcome = match call() {
            Ok(waiting) => waiting.await,
            Err(e) => Err(e),
        };
        match outcome {
            Err(Error::ConcurrentTransactions { .. }) if tokio::time::Instant::now() < deadline => {
                let settled = broker.txns.settled(transactional_id);
                if tokio::time::timeout_at(deadline, settled).await.is_err() {
                    return Err(Error::Timeout {
                        what: format!("the coordinator completing transactional id {transactional_id}"),
                        ms: MAX_BLOCK_MS,
                    });
                }
                // Settled yet still busy (a completion that failed and waits for the timer,
                // say): pause a little, as the remote client does, rather than spin.
                if attempt > 0 {
                    let pause_ms = (5u64 << (attempt - 1).min(5)).min(MAX_QUICK_BACKOFF_MS);
                    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                }
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Boxes a future borrowing the producer.
fn boxed<'a, T>(f: impl Future<Output = Result<T>> + Send + 'a) -> BoxFuture<'a, Result<T>> {
    Box::pin(f)
}

impl TxnProducer for EmbeddedTxnProducer {
    fn begin(&mut self) -> Result<()> {
        match self.phase {
            Phase::Ready => {
                self.phase = Phase::InTransaction;
                Ok(())
            }
            Phase::Fenced => Err(self.fenced_error()),
            Phase::InTransaction => Err(remote_error(
                INVALID_TXN_STATE,
                Some("a transaction is already open: commit or abort it first"),
            )),
        }
    }

    fn produce(&mut self, topic: &str, records: Vec<OutRecord>) -> BoxFuture<'_, Result<Vec<Delivery>>> {
        let topic = topic.to_string();
        boxed(async move {
            let outcome = self.produce_records(&topic, records).await;
            outcome.map_err(|e| self.observe(e))
        })
    }

    fn send_offsets(
        &mut self,
        offsets: Vec<(String, i32, i64)>,
        group: &ConsumerGroupMetadata,
    ) -> BoxFuture<'_, Result<()>> {
        let group = group.clone();
        boxed(async move {
            let outcome = self.send_offsets_now(offsets, &group).await;
            outcome.map_err(|e| self.observe(e))
        })
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<()>> {
        boxed(async move {
            let outcome = self.end(true).await;
            outcome.map_err(|e| self.observe(e))
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        boxed(async move {
            let outcome = self.end(false).await;
            outcome.map_err(|e| self.observe(e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::embedded::UNSTABLE_OFFSET_COMMIT;
    use crate::access::suite::{spec, Harness};

    #[tokio::test]
    async fn a_transaction_holding_a_first_offset_keeps_committed_partitions_waiting() {
        let h = Harness::embedded();
        let access = h.access.as_ref();
        access.create_topic(spec("in", 1)).await.expect("created");
        let mut p = access.transactional_producer("tx", 60_000).await.expect("producer");
        p.begin().expect("begin");
        let outside = ConsumerGroupMetadata::new("g");
        p.send_offsets(vec![("in".to_string(), 0, 3)], &outside)
            .await
            .expect("offsets sent");
        let wanted = vec![("in".to_string(), 0)];
        let unstable = access.committed_partitions("g", wanted.clone()).await;
        let error = unstable.expect_err("the partition's first offset is held by the transaction");
        assert_eq!(error.kafka_code(), UNSTABLE_OFFSET_COMMIT, "{error}");
        assert!(error.is_retriable());
        // The whole group's committed set has no such partition yet, as Kafka answers it.
        assert_eq!(access.committed("g").await.expect("committed"), vec![]);
        p.commit().await.expect("committed");
        h.broker.txns.settled("tx").await;
        let stable = access.committed_partitions("g", wanted).await.expect("stable");
        assert_eq!(stable, vec![("in".to_string(), 0, 3)]);
    }
}

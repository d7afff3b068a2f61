//! Transactions for the producer, as Kafka's Java producer offers them (KIP-98):
//! `init_transactions`, `begin_transaction`, `send_offsets_to_transaction`, `commit_transaction`
//! and `abort_transaction`, with the coordinator found and retried here and the states in
//! `txn_state.rs`. Records sent inside a transaction are held by the sender until their
//! partition is in the transaction (see `producer.rs`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::accumulator::Accumulator;
use super::backoff_ms;
use super::connection::Connection;
use super::consumer::Consumer;
use super::consumer_protocol::TopicPartition;
use super::offsets::{coordinator as group_coordinator, find_coordinator};
use super::producer::{Inner, Producer};
use super::txn_protocol::{
    add_offsets, add_partitions, end_txn, init_producer_id, txn_offset_commit, ProducerIdentity, KEY_TYPE_TRANSACTION,
};
use super::txn_state::{disposition, state_error, Disposition, TxnState};
use crate::error::{Error, Result};

/// The most offsets one `send_offsets_to_transaction` call carries.
pub const MAX_TRANSACTION_OFFSETS: usize = 10_000;
/// The longest pause between retries of a coordinator busy finishing the previous transaction.
const MAX_QUICK_BACKOFF_MS: u64 = 100;

/// Who consumed the offsets a transaction commits: the consumer's group, generation and member
/// id, which the group coordinator checks as it does for OffsetCommit (Kafka's
/// `ConsumerGroupMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// The group id.
    pub group_id: String,
    /// The generation (classic protocol) or member epoch (KIP-848); -1 from outside the group.
    pub generation_id: i32,
    /// The member id; empty from outside the group.
    pub member_id: String,
    /// The static member id, if any.
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// Metadata for committing a group's offsets from outside the group (no generation, no member).
    pub fn new(group_id: impl Into<String>) -> ConsumerGroupMetadata {
        ConsumerGroupMetadata {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

impl Consumer {
    /// This member's group identity for `Producer::send_offsets_to_transaction`; `None` unless
    /// subscribed. Generation -1 and no member id while the member has not joined yet.
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        let group = self.group.as_ref()?;
        let committer = group.lock().committer.clone();
        Some(ConsumerGroupMetadata {
            group_id: group.config.group_id.clone(),
            generation_id: committer.as_ref().map_or(-1, |c| c.generation_or_epoch),
            member_id: committer.map(|c| c.member_id).unwrap_or_default(),
            group_instance_id: group.config.group_instance_id.clone(),
        })
    }
}

impl Producer {
    /// Registers the `transactional_id` with its coordinator and gets the producer id and epoch:
    /// fences any earlier producer with the same id and aborts (or completes) its open
    /// transaction. Call once, before the first `begin_transaction`; safe to call again after
    /// it failed with a timeout.
    pub async fn init_transactions(&self) -> Result<()> {
        let inner = &self.inner;
        let _op = inner.txn_ops.lock().await;
        inner.with_txn(|t| t.check_init())?;
        let timeout_ms = i32::try_from(inner.config.transaction_timeout_ms).unwrap_or(i32::MAX);
        let id = inner.transactional_id()?;
        let producer = inner
            .retrying("InitProducerId", |_| {
                let id = id.clone();
                async move {
                    let connection = inner.txn_coordinator().await?;
                    init_producer_id(&connection, &id, timeout_ms, None).await
                }
            })
            .await
            .map_err(|e| inner.failed(e))?;
        let mut state = inner.lock();
        state.producer_id = producer.id;
        state.producer_epoch = producer.epoch;
        if let Some(txn) = state.txn.as_mut() {
            txn.initialized();
        }
        tracing::info!(transactional_id = %id, producer_id = producer.id, producer_epoch = producer.epoch, "transactions initialised");
        Ok(())
    }

    /// Opens a transaction; records sent until `commit_transaction` or `abort_transaction` belong to it.
    pub fn begin_transaction(&self) -> Result<()> {
        self.inner.with_txn(TxnState::begin)
    }

    /// Adds consumed offsets to the open transaction: they are committed for the group if and
    /// only if the transaction commits (consume-transform-produce, exactly once). `offsets` are
    /// the next offsets to read, as `(topic, partition, offset)`.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &[(String, i32, i64)],
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let inner = &self.inner;
        if offsets.len() > MAX_TRANSACTION_OFFSETS {
            return Err(Error::TooLarge {
                what: "transaction offsets",
                size_bytes: offsets.len(),
                limit_bytes: MAX_TRANSACTION_OFFSETS,
            });
        }
        let _op = inner.txn_ops.lock().await;
        inner.with_txn(|t| t.check_send("send_offsets_to_transaction"))?;
        if offsets.is_empty() {
            return Ok(());
        }
        let id = inner.transactional_id()?;
        let known = inner.with_txn(|t| Ok(t.has_group(&group.group_id)))?;
        if !known {
            inner
                .retrying("AddOffsetsToTxn", |producer| {
                    let id = id.clone();
                    async move {
                        let connection = inner.txn_coordinator().await?;
                        add_offsets(&connection, &id, producer, &group.group_id).await
                    }
                })
                .await
                .map_err(|e| inner.failed(e))?;
            inner.with_txn(|t| t.group_added(&group.group_id))?;
        }
        inner
            .retrying("TxnOffsetCommit", |producer| {
                let id = id.clone();
                async move {
                    let connection = group_coordinator(&inner.cluster, &group.group_id).await?;
                    txn_offset_commit(&connection, &id, producer, group, offsets).await
                }
            })
            .await
            .map_err(|e| inner.failed(e))
    }

    /// Sends every record of the transaction, then commits it. If a record failed, the
    /// transaction cannot commit: the error is returned and `abort_transaction` must follow.
    /// After a timeout, calling it again retries the commit.
    pub async fn commit_transaction(&self) -> Result<()> {
        let inner = &self.inner;
        let _op = inner.txn_ops.lock().await;
        inner.with_txn(TxnState::start_commit)?;
        inner.flush().await;
        // A record that failed while flushing moved the transaction to AbortableError.
        inner.with_txn(TxnState::start_commit)?;
        inner.end_transaction(true).await?;
        inner.with_txn(|t| {
            t.completed();
            Ok(())
        })
    }

    /// Aborts the open transaction: records not sent yet are dropped (their futures fail),
    /// records written are never shown to read_committed consumers. Allowed after a failure.
    pub async fn abort_transaction(&self) -> Result<()> {
        let inner = &self.inner;
        let _op = inner.txn_ops.lock().await;
        inner.with_txn(TxnState::start_abort)?;
        inner.flush().await;
        inner.with_txn(TxnState::start_abort)?;
        match inner.end_transaction(false).await {
            Ok(()) => {}
            // The coordinator lost the producer: a new epoch aborts the transaction as well.
            Err(e) if matches!(disposition(&e), Disposition::Abortable { .. }) => {
                inner.with_txn(|t| {
                    t.require_epoch_bump();
                    Ok(())
                })?;
            }
            Err(e) => return Err(e),
        }
        if inner.with_txn(|t| Ok(t.needs_epoch_bump()))? {
            inner.bump_epoch().await?;
        }
        inner.with_txn(|t| {
            t.completed();
            Ok(())
        })
    }
}

impl Inner {
    /// Runs `f` on the transaction state; fails when the producer has no `transactional_id`.
    pub(super) fn with_txn<T>(&self, f: impl FnOnce(&mut TxnState) -> Result<T>) -> Result<T> {
        match self.lock().txn.as_mut() {
            Some(txn) => f(txn),
            None => Err(Error::InvalidConfig {
                name: "transactional.id".to_string(),
                reason: "transactions need a producer configured with a transactional.id".to_string(),
            }),
        }
    }

    fn transactional_id(&self) -> Result<String> {
        self.with_txn(|t| Ok(t.transactional_id.clone()))
    }

    /// Applies an error of a transactional call to the state and returns what the caller sees.
    fn failed(&self, error: Error) -> Error {
        let d = disposition(&error);
        match self.lock().txn.as_mut() {
            Some(txn) => txn.fail(error, d),
            None => error,
        }
    }

    /// A connection to the transaction coordinator, found with FindCoordinator when not known.
    async fn txn_coordinator(&self) -> Result<Arc<Connection>> {
        let (id, known) = self.with_txn(|t| Ok((t.transactional_id.clone(), t.coordinator)))?;
        let node = match known {
            Some(node) => node,
            None => {
                let node = find_coordinator(&self.cluster, KEY_TYPE_TRANSACTION, &id).await?;
                self.with_txn(|t| {
                    t.coordinator = Some(node);
                    Ok(())
                })?;
                node
            }
        };
        self.cluster.broker(node).await
    }

    /// Runs one coordinator request (which finds its coordinator itself), retrying what Kafka
    /// retries (coordinator moved or loading, the previous transaction still completing, lost
    /// connections) until `max.block.ms` has passed.
    async fn retrying<T, F, Fut>(&self, what: &'static str, mut op: F) -> Result<T>
    where
        F: FnMut(ProducerIdentity) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + Duration::from_millis(self.config.max_block_ms);
        let mut attempt = 0u32;
        loop {
            let producer = {
                let state = self.lock();
                ProducerIdentity {
                    id: state.producer_id,
                    epoch: state.producer_epoch,
                }
            };
            let error = match op(producer).await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let Disposition::Retry {
                refresh_coordinator,
                quick,
            } = disposition(&error)
            else {
                return Err(error);
            };
            attempt += 1;
            if refresh_coordinator {
                self.with_txn(|t| {
                    t.coordinator = None;
                    Ok(())
                })?;
            }
            let backoff_ms = if quick {
                (5u64 << (attempt - 1).min(5)).min(MAX_QUICK_BACKOFF_MS)
            } else {
                backoff_ms(attempt)
            };
            let backoff = Duration::from_millis(backoff_ms);
            if Instant::now() + backoff >= deadline {
                return Err(Error::Timeout {
                    what: format!("{what} (last error: {error})"),
                    ms: self.config.max_block_ms,
                });
            }
            tracing::debug!(request = what, error = %error, attempt, "retrying transactional request");
            tokio::time::sleep(backoff).await;
        }
    }

    /// Adds partitions to the open transaction (the sender's step before their batches go out);
    /// a failure fails the transaction, so the batches waiting for it are failed, not sent.
    pub(super) async fn add_to_transaction(&self, partitions: Vec<TopicPartition>) {
        let outcome = match self.transactional_id() {
            Ok(id) => {
                self.retrying("AddPartitionsToTxn", |producer| {
                    let (id, partitions) = (id.clone(), &partitions);
                    async move {
                        let connection = self.txn_coordinator().await?;
                        add_partitions(&connection, &id, producer, partitions).await
                    }
                })
                .await
            }
            Err(e) => Err(e),
        };
        if let Some(txn) = self.lock().txn.as_mut() {
            match outcome {
                Ok(()) => txn.added(&partitions),
                Err(e) => {
                    let d = match disposition(&e) {
                        Disposition::Retry { .. } => Disposition::Abortable { bump_epoch: false },
                        d => d,
                    };
                    txn.fail(e, d);
                }
            }
        }
        self.wake.notify_one();
    }

    /// Sends EndTxn when the coordinator knows of the transaction (an empty one ends locally).
    async fn end_transaction(&self, commit: bool) -> Result<()> {
        if !self.with_txn(|t| Ok(t.needs_end_txn()))? {
            return Ok(());
        }
        let id = self.transactional_id()?;
        self.retrying("EndTxn", |producer| {
            let id = id.clone();
            async move {
                let connection = self.txn_coordinator().await?;
                end_txn(&connection, &id, producer, commit).await
            }
        })
        .await
        .map_err(|e| self.failed(e))?;
        tracing::debug!(transactional_id = %id, commit, "transaction ended");
        Ok(())
    }

    /// Gets a new epoch for the producer's own id after an abort that lost sequence numbers,
    /// and starts its sequences afresh (the accumulator is idle after the abort's flush).
    async fn bump_epoch(&self) -> Result<()> {
        let id = self.transactional_id()?;
        let current = {
            let state = self.lock();
            ProducerIdentity {
                id: state.producer_id,
                epoch: state.producer_epoch,
            }
        };
        let timeout_ms = i32::try_from(self.config.transaction_timeout_ms).unwrap_or(i32::MAX);
        let producer = self
            .retrying("InitProducerId", |_| {
                let id = id.clone();
                async move {
                    let connection = self.txn_coordinator().await?;
                    init_producer_id(&connection, &id, timeout_ms, Some(current)).await
                }
            })
            .await
            .map_err(|e| self.failed(e))?;
        let mut state = self.lock();
        if !state.accumulator.is_idle() {
            return Err(state_error(
                "records are still in flight after the abort; abort_transaction again".to_string(),
            ));
        }
        state.accumulator = Accumulator::new(self.limits);
        state.producer_id = producer.id;
        state.producer_epoch = producer.epoch;
        tracing::info!(transactional_id = %id, producer_id = producer.id, producer_epoch = producer.epoch, "new producer epoch after an aborted transaction");
        Ok(())
    }
}

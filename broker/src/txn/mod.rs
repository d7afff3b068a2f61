//! The transaction coordinator (KIP-98): one node coordinates every transactional id. It keeps
//! each id's state in memory, makes every change durable in `__transaction_state` before acting
//! on it or answering, writes the commit or abort markers into the partitions of a transaction,
//! aborts transactions that outlive their timeout, and forgets idle transactional ids.
//!
//! A change happens in two steps, as in the group offsets store: the handler validates and
//! appends the new state at once (so requests take effect in arrival order), marks the id
//! pending so that no other change interleaves, and the returned future waits for fsync and only
//! then applies the state. Ending a transaction answers once PrepareCommit (or PrepareAbort) is
//! durable; a background task then writes the markers and the Complete state. A task that fails
//! is retried by the timer, and a broker restart finishes what a crash interrupted.
//!
//! Memory bound: at most `transaction.max.transactional.ids` ids, each with at most
//! `transaction.max.partitions` partitions and an id of at most 32767 bytes.

pub mod record;
pub mod state;
mod store;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::api::Reply;
use crate::broker::{now_ms, Broker};
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::group::offsets::OFFSETS_TOPIC;
use crate::topics::Topics;
pub use state::{TopicPartition, TxnMetadata, TxnState};
pub use store::TXN_TOPIC;

/// The coordinator epoch written into markers: a single node never changes coordinator.
pub const COORDINATOR_EPOCH: i32 = 0;
/// The first version of AddPartitionsToTxn, AddOffsetsToTxn and EndTxn whose clients understand
/// PRODUCER_FENCED (KIP-588; InitProducerId's is 4).
pub const PRODUCER_FENCED_VERSION: i16 = 2;

/// A future that resolves once a change is durable (and what it answers).
pub type Waiting<T> = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

/// The coordinator's limits and clocks, read from the broker config when it opens.
#[derive(Debug, Clone, Copy)]
struct Settings {
    /// `transaction.max.timeout.ms`.
    max_timeout_ms: i64,
    /// `transactional.id.expiration.ms`.
    expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    abort_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    expire_interval_ms: i64,
    /// `transaction.max.transactional.ids`.
    max_ids: usize,
    /// `transaction.max.partitions`.
    max_partitions: usize,
}

impl Settings {
    fn from_config(config: &BrokerConfig) -> Settings {
        let count = |name: &str| usize::try_from(config.long(name)).unwrap_or(usize::MAX);
        Settings {
            max_timeout_ms: config.long("transaction.max.timeout.ms"),
            expiration_ms: config.long("transactional.id.expiration.ms"),
            abort_interval_ms: config.long("transaction.abort.timed.out.transaction.cleanup.interval.ms"),
            expire_interval_ms: config.long("transaction.remove.expired.transaction.cleanup.interval.ms"),
            max_ids: count("transaction.max.transactional.ids"),
            max_partitions: count("transaction.max.partitions"),
        }
    }
}

/// One transactional id.
#[derive(Debug, Clone)]
struct Entry {
    /// The durable state.
    meta: TxnMetadata,
    /// The state a change being written moves to (Kafka's `pendingState`); in PrepareCommit and
    /// PrepareAbort it is the Complete state the markers lead to.
    pending: Option<TxnState>,
    /// Whether a task is writing this id's markers now.
    completing: bool,
}

impl Entry {
    fn loaded(meta: TxnMetadata) -> Entry {
        Entry {
            pending: complete_target(meta.state),
            meta,
            completing: false,
        }
    }
}

/// The Complete state a Prepare state leads to.
fn complete_target(state: TxnState) -> Option<TxnState> {
    match state {
        TxnState::PrepareCommit => Some(TxnState::CompleteCommit),
        TxnState::PrepareAbort => Some(TxnState::CompleteAbort),
        _ => None,
    }
}

type Txns = HashMap<String, Entry>;

/// Every transactional id of the broker. Send + Sync.
pub struct TransactionCoordinator {
    txns: Mutex<Txns>,
    log: store::TxnLog,
    settings: Settings,
    /// Bumped whenever a state change becomes durable, so that waiters need no polling.
    changes: tokio::sync::watch::Sender<u64>,
}

impl TransactionCoordinator {
    /// Loads every transactional id from `__transaction_state` when the topic exists. Ids found
    /// in PrepareCommit or PrepareAbort are completed by the timer (markers written again).
    pub fn open(topics: &Topics, config: &BrokerConfig) -> Result<TransactionCoordinator> {
        let (log, loaded) = store::TxnLog::open(topics, config)?;
        let unfinished = loaded.values().filter(|m| m.state.is_prepare()).count();
        if unfinished > 0 {
            tracing::info!(transactions = unfinished, "transactions to complete after restart");
        }
        let txns = loaded.into_iter().map(|(id, meta)| (id, Entry::loaded(meta))).collect();
        Ok(TransactionCoordinator {
            txns: Mutex::new(txns),
            log,
            settings: Settings::from_config(config),
            changes: tokio::sync::watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Txns> {
        self.txns.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The partition of `__transaction_state` holding a transactional id, once the topic exists.
    pub fn partition_of(&self, transactional_id: &str) -> Option<i32> {
        self.log.partition_of(transactional_id)
    }

    /// InitProducerId with a transactional id: the producer id and epoch to use. The first call
    /// allocates a producer id (epoch 0); later ones bump the epoch, fencing older producers, or
    /// rotate the id when the epoch is exhausted. An ongoing transaction is aborted first and
    /// the answer is CONCURRENT_TRANSACTIONS, so that the client retries.
    pub fn init_producer_id(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
    ) -> Result<Waiting<(i64, i16)>> {
        check_id(transactional_id)?;
        if timeout_ms <= 0 || i64::from(timeout_ms) > self.settings.max_timeout_ms {
            return Err(Error::InvalidTransactionTimeout {
                timeout_ms,
                max_ms: self.settings.max_timeout_ms,
            });
        }
        self.log.ensure(&broker.topics, &broker.config())?;
        let mut txns = self.lock();
        if !txns.contains_key(transactional_id) {
            if txns.len() >= self.settings.max_ids {
                return Err(Error::LimitExceeded {
                    what: "transactional ids",
                    config: "transaction.max.transactional.ids",
                    limit: self.settings.max_ids,
                });
            }
            let producer_id = broker.next_producer_id()?;
            let meta = TxnMetadata::new(producer_id, timeout_ms, now_ms);
            txns.insert(transactional_id.to_string(), Entry::loaded(meta));
        }
        let entry = txns
            .get(transactional_id)
            .ok_or(Error::Shutdown("transaction coordinator"))?;
        let step = state::init_producer_id(
            transactional_id,
            &entry.meta,
            entry.pending,
            timeout_ms,
            expected,
            || broker.next_producer_id(),
            now_ms,
        );
        let step = match step {
            Ok(step) => step,
            Err(e) => {
                self.restart_stalled(broker, &mut txns, transactional_id);
                return Err(e);
            }
        };
        let (next, fence) = match step {
            state::InitStep::Ready(next) => (next, false),
            state::InitStep::FenceAndAbort(next) => (next, true),
        };
        let written = self.begin(&mut txns, transactional_id, &next, now_ms)?;
        drop(txns);
        if fence {
            tracing::info!(
                transactional_id,
                producer_id = next.producer_id,
                epoch = next.producer_epoch,
                "aborting the ongoing transaction of a re-initialised producer"
            );
        }
        let broker = broker.clone();
        let id = transactional_id.to_string();
        Ok(Box::pin(async move {
            let coordinator = &broker.txns;
            coordinator.finish(&id, next.clone(), written, None).await?;
            if fence {
                coordinator.start_completion(&broker, &id);
                return Err(Error::ConcurrentTransactions { transactional_id: id });
            }
            tracing::info!(transactional_id = %id, producer_id = next.producer_id, epoch = next.producer_epoch,
                "transactional producer initialised");
            Ok((next.producer_id, next.producer_epoch))
        }))
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn with the group's `__consumer_offsets` partition):
    /// the partitions join the transaction, which starts if none was open.
    pub fn add_partitions(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: BTreeSet<TopicPartition>,
        now_ms: i64,
    ) -> Result<Waiting<()>> {
        check_id(transactional_id)?;
        let mut txns = self.lock();
        let entry = known(&txns, transactional_id, producer_id)?;
        let step = state::add_partitions(
            transactional_id,
            &entry.meta,
            entry.pending,
            (producer_id, producer_epoch),
            &partitions,
            self.settings.max_partitions,
            now_ms,
        );
        let Some((next, written)) = self.begin_step(broker, &mut txns, transactional_id, step, now_ms)? else {
            return Ok(Box::pin(async { Ok(()) }));
        };
        drop(txns);
        let broker = broker.clone();
        let id = transactional_id.to_string();
        Ok(Box::pin(
            async move { broker.txns.finish(&id, next, written, None).await },
        ))
    }

    /// EndTxn: answers once PrepareCommit (or PrepareAbort) is durable; the markers and the
    /// Complete state follow in the background. A retry of a completed end succeeds at once.
    pub fn end_txn(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<Waiting<()>> {
        check_id(transactional_id)?;
        let mut txns = self.lock();
        let entry = known(&txns, transactional_id, producer_id)?;
        let step = state::end_txn(
            transactional_id,
            &entry.meta,
            entry.pending,
            (producer_id, producer_epoch),
            commit,
            now_ms,
        );
        let Some((next, written)) = self.begin_step(broker, &mut txns, transactional_id, step, now_ms)? else {
            return Ok(Box::pin(async { Ok(()) }));
        };
        drop(txns);
        let broker = broker.clone();
        let id = transactional_id.to_string();
        Ok(Box::pin(async move {
            broker.txns.finish(&id, next, written, None).await?;
            broker.txns.start_completion(&broker, &id);
            Ok(())
        }))
    }

    /// Runs `write` if the producer is the transactional id's current one and `partition` is in
    /// its ongoing transaction (TxnOffsetCommit's check), holding the coordinator's lock so that
    /// the transaction cannot end between the check and the write.
    pub fn with_verified<R>(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partition: &TopicPartition,
        write: impl FnOnce() -> R,
    ) -> Result<R> {
        let txns = self.lock();
        let entry = known(&txns, transactional_id, producer_id)?;
        state::check_in_transaction(
            transactional_id,
            &entry.meta,
            entry.pending,
            (producer_id, producer_epoch),
            partition,
        )?;
        Ok(write())
    }

    /// The state of a transactional id, for DescribeTransactions; TRANSACTIONAL_ID_NOT_FOUND for
    /// unknown ids and ids being removed.
    pub fn describe(&self, transactional_id: &str) -> Result<TxnMetadata> {
        let txns = self.lock();
        match txns.get(transactional_id) {
            Some(entry) if entry.pending != Some(TxnState::Dead) => Ok(entry.meta.clone()),
            _ => Err(Error::TransactionalIdNotFound(transactional_id.to_string())),
        }
    }

    /// Every transactional id not being removed, with its state, sorted by id.
    pub fn list(&self) -> Vec<(String, TxnMetadata)> {
        let txns = self.lock();
        let mut out: Vec<(String, TxnMetadata)> = txns
            .iter()
            .filter(|(_, e)| e.pending != Some(TxnState::Dead))
            .map(|(id, e)| (id.clone(), e.meta.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Resolves once no change of the transactional id is in flight (markers included).
    pub async fn settled(&self, transactional_id: &str) {
        let mut changes = self.changes.subscribe();
        loop {
            let busy = self.lock().get(transactional_id).is_some_and(|e| e.pending.is_some());
            if !busy || changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Aborts timed-out transactions, completes stalled ones and expires idle transactional ids
    /// until `shutdown` turns true. Its first tick runs at once, which completes transactions a
    /// crash left in PrepareCommit or PrepareAbort.
    pub async fn run_timers(broker: Arc<Broker>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let settings = broker.txns.settings;
        let period = Duration::from_millis(settings.abort_interval_ms.max(1) as u64);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_expiry = now_ms();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = now_ms();
            broker.txns.complete_stalled(&broker);
            broker.txns.abort_timed_out(&broker, now).await;
            if now.saturating_sub(last_expiry) >= settings.expire_interval_ms {
                last_expiry = now;
                broker.txns.expire(now).await;
            }
        }
    }

    /// Starts completion of every transaction in PrepareCommit or PrepareAbort whose markers are
    /// not being written (loaded after a crash, or a failed attempt). Returns how many started.
    pub fn complete_stalled(&self, broker: &Arc<Broker>) -> usize {
        let stalled: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.meta.state.is_prepare() && !e.completing)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stalled {
            self.start_completion(broker, id);
        }
        stalled.len()
    }

    /// Aborts, with an epoch bump that fences the producer, every Ongoing transaction older
    /// than its timeout; waits until each PrepareAbort is durable (markers follow in the
    /// background). Returns how many were aborted.
    pub async fn abort_timed_out(&self, broker: &Arc<Broker>, now_ms: i64) -> usize {
        let mut begun = Vec::new();
        {
            let mut txns = self.lock();
            let due: Vec<String> = txns
                .iter()
                .filter(|(_, e)| e.pending.is_none() && e.meta.timed_out(now_ms))
                .map(|(id, _)| id.clone())
                .collect();
            for id in due {
                let Some(entry) = txns.get(&id) else { continue };
                let next = state::fence(&entry.meta, now_ms);
                match self.begin(&mut txns, &id, &next, now_ms) {
                    Ok(written) => begun.push((id, next, written)),
                    Err(e) => {
                        tracing::error!(transactional_id = %id, error = %e, "aborting a timed-out transaction failed")
                    }
                }
            }
        }
        let mut aborted = 0;
        for (id, next, written) in begun {
            match self.finish(&id, next.clone(), written, None).await {
                Ok(()) => {
                    aborted += 1;
                    tracing::info!(transactional_id = %id, producer_id = next.producer_id, epoch = next.producer_epoch,
                        timeout_ms = next.timeout_ms, "aborting a transaction past its timeout");
                    self.start_completion(broker, &id);
                }
                Err(e) => {
                    tracing::error!(transactional_id = %id, error = %e, "aborting a timed-out transaction failed")
                }
            }
        }
        aborted
    }

    /// Forgets (with a tombstone) every transactional id without an open transaction that was
    /// not used for `transactional.id.expiration.ms`. Returns how many were removed.
    pub async fn expire(&self, now_ms: i64) -> usize {
        let mut begun = Vec::new();
        {
            let mut txns = self.lock();
            let due: Vec<String> = txns
                .iter()
                .filter(|(_, e)| state::expired(&e.meta, e.pending, now_ms, self.settings.expiration_ms))
                .map(|(id, _)| id.clone())
                .collect();
            for id in due {
                match self.log.append(&id, None, now_ms) {
                    Ok(written) => {
                        if let Some(entry) = txns.get_mut(&id) {
                            entry.pending = Some(TxnState::Dead);
                            begun.push((id, entry.meta.clone(), written));
                        }
                    }
                    Err(e) => tracing::error!(transactional_id = %id, error = %e, "expiring a transactional id failed"),
                }
            }
        }
        let mut removed = 0;
        for (id, meta, written) in begun {
            let dead = TxnMetadata {
                state: TxnState::Dead,
                ..meta
            };
            match self.finish(&id, dead, written, None).await {
                Ok(()) => {
                    removed += 1;
                    tracing::info!(transactional_id = %id, "transactional id expired");
                }
                Err(e) => tracing::error!(transactional_id = %id, error = %e, "expiring a transactional id failed"),
            }
        }
        removed
    }

    /// Appends `next` for an id and marks the id pending; the caller holds the lock.
    fn begin(
        &self,
        txns: &mut Txns,
        transactional_id: &str,
        next: &TxnMetadata,
        now_ms: i64,
    ) -> Result<store::Written> {
        let written = self.log.append(transactional_id, Some(next), now_ms)?;
        if let Some(entry) = txns.get_mut(transactional_id) {
            entry.pending = Some(next.state);
        }
        Ok(written)
    }

    /// Begins the change a request's step asks for (None: the request changes nothing); when the
    /// step is refused, restarts a completion the request found stalled. The caller holds the lock.
    fn begin_step(
        &self,
        broker: &Arc<Broker>,
        txns: &mut Txns,
        transactional_id: &str,
        step: Result<Option<TxnMetadata>>,
        now_ms: i64,
    ) -> Result<Option<(TxnMetadata, store::Written)>> {
        let next = match step {
            Ok(Some(next)) => next,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.restart_stalled(broker, txns, transactional_id);
                return Err(e);
            }
        };
        let written = self.begin(txns, transactional_id, &next, now_ms)?;
        Ok(Some((next, written)))
    }

    /// Waits until a begun change is durable and applies it: a Prepare state stays pending until
    /// its markers are written, Dead removes the id. On failure the durable state stays and the
    /// id's pending state becomes `on_failure`.
    async fn finish(
        &self,
        transactional_id: &str,
        next: TxnMetadata,
        written: store::Written,
        on_failure: Option<TxnState>,
    ) -> Result<()> {
        let outcome = self.log.wait(written).await;
        {
            let mut txns = self.lock();
            match &outcome {
                Ok(()) if next.state == TxnState::Dead => {
                    txns.remove(transactional_id);
                }
                Ok(()) => {
                    if let Some(entry) = txns.get_mut(transactional_id) {
                        entry.pending = complete_target(next.state);
                        entry.meta = next;
                    }
                }
                Err(e) => {
                    tracing::error!(transactional_id, error = %e, "a transaction state change is not durable");
                    if let Some(entry) = txns.get_mut(transactional_id) {
                        entry.pending = on_failure;
                    }
                }
            }
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        outcome
    }

    /// Restarts the completion of a transaction left in a Prepare state when a request finds it
    /// stalled (outside a runtime, the timer does it).
    fn restart_stalled(&self, broker: &Arc<Broker>, txns: &mut Txns, transactional_id: &str) {
        let stalled = txns
            .get(transactional_id)
            .is_some_and(|e| e.meta.state.is_prepare() && !e.completing);
        if stalled && tokio::runtime::Handle::try_current().is_ok() {
            if let Some(entry) = txns.get_mut(transactional_id) {
                entry.completing = true;
            }
            spawn_completion(broker, transactional_id);
        }
    }

    /// Starts writing a Prepare state's markers in the background unless that runs already.
    fn start_completion(&self, broker: &Arc<Broker>, transactional_id: &str) {
        {
            let mut txns = self.lock();
            match txns.get_mut(transactional_id) {
                Some(entry) if entry.meta.state.is_prepare() && !entry.completing => entry.completing = true,
                _ => return,
            }
        }
        spawn_completion(broker, transactional_id);
    }

    /// Writes the markers of a transaction in a Prepare state, then makes its Complete state
    /// durable. On failure the transaction stays in its Prepare state for the timer to retry.
    async fn complete(&self, broker: &Arc<Broker>, transactional_id: &str) {
        let meta = match self.lock().get(transactional_id) {
            Some(entry) if entry.meta.state.is_prepare() => entry.meta.clone(),
            _ => return,
        };
        let commit = meta.state == TxnState::PrepareCommit;
        let outcome = async {
            write_markers(broker, &meta, commit).await?;
            let now = now_ms();
            let next = state::complete(&meta, now).ok_or(Error::Shutdown("transaction coordinator"))?;
            let written = self.log.append(transactional_id, Some(&next), now)?;
            self.finish(transactional_id, next, written, complete_target(meta.state))
                .await
        }
        .await;
        if let Some(entry) = self.lock().get_mut(transactional_id) {
            entry.completing = false;
        }
        match outcome {
            Ok(()) => tracing::debug!(
                transactional_id,
                commit,
                partitions = meta.partitions.len(),
                "transaction completed"
            ),
            Err(e) => {
                tracing::warn!(transactional_id, commit, error = %e, "completing a transaction failed; the timer retries");
                self.changes.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}

/// Spawns the completion task of a transactional id (its entry is already marked completing).
fn spawn_completion(broker: &Arc<Broker>, transactional_id: &str) {
    let broker = broker.clone();
    let id = transactional_id.to_string();
    tokio::spawn(async move { broker.txns.complete(&broker, &id).await });
}

/// Writes one marker per partition of a transaction, all at once, each returning when durable;
/// a marker in `__consumer_offsets` also commits or drops the transaction's offsets there.
/// Partitions of deleted topics are skipped, as Kafka skips them.
async fn write_markers(broker: &Arc<Broker>, meta: &TxnMetadata, commit: bool) -> Result<()> {
    let mut writes = tokio::task::JoinSet::new();
    for (topic, partition) in &meta.partitions {
        let log = match broker.topics.log(topic, *partition) {
            Ok(log) => log,
            Err(_) => {
                tracing::info!(topic = %topic, partition, "skipping the marker of a partition that no longer exists");
                continue;
            }
        };
        let broker = broker.clone();
        let (topic, partition) = (topic.clone(), *partition);
        let (producer_id, epoch) = (meta.producer_id, meta.producer_epoch);
        writes.spawn(async move {
            match log.append_marker(producer_id, epoch, commit, COORDINATOR_EPOCH).await {
                Ok(_) => {
                    if topic == OFFSETS_TOPIC {
                        broker.groups.offsets.complete_txn(partition, producer_id, commit);
                    }
                    Ok(())
                }
                Err(Error::InvalidProducerEpoch { current, got, .. }) => {
                    // The partition knows a newer epoch: this marker is stale and changes nothing.
                    tracing::warn!(topic = %topic, partition, producer_id, current, got, "skipped a stale transaction marker");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        });
    }
    let mut first_error = None;
    while let Some(joined) = writes.join_next().await {
        let outcome =
            joined.unwrap_or_else(|e| Err(Error::Shutdown(if e.is_panic() { "marker task" } else { "runtime" })));
        if let Err(e) = outcome {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Kafka refuses an empty transactional id with INVALID_REQUEST.
fn check_id(transactional_id: &str) -> Result<()> {
    if transactional_id.is_empty() {
        return Err(Error::MalformedRequest("the transactional id is empty".to_string()));
    }
    Ok(())
}

/// The entry of a transactional id a producer names; INVALID_PRODUCER_ID_MAPPING when unknown.
fn known<'a>(txns: &'a Txns, transactional_id: &str, producer_id: i64) -> Result<&'a Entry> {
    txns.get(transactional_id)
        .ok_or_else(|| Error::InvalidProducerIdMapping {
            transactional_id: transactional_id.to_string(),
            producer_id,
        })
}

/// Answers a transactional request whose answer is one error code: at once when the
/// coordinator refused it, else once its change is durable.
pub fn reply_with_code(
    waiting: Result<Waiting<()>>,
    knows_producer_fenced: bool,
    answer: impl FnOnce(i16) -> kafka_protocol::messages::ResponseKind + Send + 'static,
) -> Reply {
    match waiting {
        Err(e) => Reply::Now(Box::new(answer(error_code(&e, knows_producer_fenced)))),
        Ok(waiting) => Reply::Later(Box::pin(async move {
            let code = match waiting.await {
                Ok(()) => 0,
                Err(e) => error_code(&e, knows_producer_fenced),
            };
            Some(answer(code))
        })),
    }
}

/// The error code a transactional API answers for `e`. PRODUCER_FENCED becomes
/// INVALID_PRODUCER_EPOCH for request versions that predate it (KIP-588), and trouble writing
/// `__transaction_state` is normalised as Kafka's coordinator does: unavailable storage sends the
/// client to find the coordinator again, an oversize state is UNKNOWN_SERVER_ERROR.
pub fn error_code(e: &Error, knows_producer_fenced: bool) -> i16 {
    use kafka_protocol::ResponseError as R;
    let code = e.kafka_code();
    match R::try_from_code(code) {
        Some(R::ProducerFenced) if !knows_producer_fenced => R::InvalidProducerEpoch.code(),
        Some(R::UnknownTopicOrPartition | R::NotEnoughReplicas | R::RequestTimedOut) => {
            R::CoordinatorNotAvailable.code()
        }
        Some(R::NotLeaderOrFollower | R::KafkaStorageError) => R::NotCoordinator.code(),
        Some(R::MessageTooLarge | R::RecordListTooLarge) => R::UnknownServerError.code(),
        _ => code,
    }
}

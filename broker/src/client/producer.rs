//! The producer: partitions records, gathers them into batches per partition, and sends them to
//! partition leaders with bounded memory, optional idempotence, and retries that keep order.
//! Transactions (KIP-98) are in `transaction.rs`; here the sender adds each partition to the
//! open transaction before any of its batches goes out.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{oneshot, Notify, Semaphore};
use tokio::task::JoinHandle;

use super::accumulator::{copy_error, Accumulator, Completion, Drained, Limits, SealedBatch};
use super::cluster::Cluster;
use super::consumer_protocol::TopicPartition;
use super::partitioner::{partition_for_key, StickyPartitioner};
use super::txn_state::{produce_disposition, TxnState};
use super::{backoff_ms, check_code, is_stale_metadata, remote_error, ClientConfig};
use crate::error::{Error, Result};
use crate::log::batch::{encode_batch, Compression, EncodeOptions, NewRecord};

/// Kafka's error code for a sequence number the broker has already written.
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
/// Kafka's error code for a gap in sequence numbers, retriable while an earlier batch is retried.
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
/// How many times a batch answered with OUT_OF_ORDER_SEQUENCE_NUMBER is retried.
const MAX_OUT_OF_ORDER_RETRIES: u32 = 5;
/// Bytes a record costs beyond its key, value and headers, for buffer accounting.
const RECORD_OVERHEAD_BYTES: usize = 24;

/// How the producer batches, bounds and acknowledges writes.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How to reach the cluster.
    pub client: ClientConfig,
    /// Acknowledgements: 0 (none, the broker sends no response), 1 (leader) or -1 (all in-sync replicas).
    pub acks: i16,
    /// The codec of every batch.
    pub compression: Compression,
    /// How long a batch waits for more records before it is sent.
    pub linger_ms: u64,
    /// A batch is sent once it holds this many bytes.
    pub batch_bytes: usize,
    /// Bytes of records held before acknowledgement; `send` waits while it is full.
    pub buffer_bytes: usize,
    /// The most batch bytes in one Produce request, and the largest record accepted.
    pub max_request_bytes: usize,
    /// The most batches of one partition in flight (at most 5 with idempotence).
    pub max_in_flight_per_partition: usize,
    /// Sequence numbers per partition so retries cannot duplicate or reorder (needs acks=-1).
    pub idempotent: bool,
    /// How many times a batch is retried after a retriable error.
    pub retries: u32,
    /// How long a record may wait for its acknowledgement, retries included.
    pub delivery_timeout_ms: u64,
    /// Kafka's `transactional.id`: makes the producer transactional (needs idempotence), and
    /// fences any earlier producer with the same id when `init_transactions` runs.
    pub transactional_id: Option<String>,
    /// Kafka's `transaction.timeout.ms`: the coordinator aborts a transaction open this long.
    pub transaction_timeout_ms: u64,
    /// Kafka's `max.block.ms`: how long `init_transactions`, `commit_transaction`,
    /// `abort_transaction` and `send_offsets_to_transaction` keep retrying the coordinator.
    pub max_block_ms: u64,
}

impl ProducerConfig {
    /// Kafka's defaults: acks=all, idempotent, linger 5 ms, 16 KiB batches, 32 MiB buffer.
    pub fn new(client: ClientConfig) -> Self {
        ProducerConfig {
            client,
            acks: -1,
            compression: Compression::None,
            linger_ms: 5,
            batch_bytes: 16 * 1024,
            buffer_bytes: 32 * 1024 * 1024,
            max_request_bytes: 1024 * 1024,
            max_in_flight_per_partition: 5,
            idempotent: true,
            retries: u32::MAX,
            delivery_timeout_ms: 120_000,
            transactional_id: None,
            transaction_timeout_ms: 60_000,
            max_block_ms: 60_000,
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// The topic.
    pub topic: String,
    /// The partition; `None` picks one from the key (murmur2) or the sticky partitioner.
    pub partition: Option<i32>,
    /// The key.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// Headers, duplicates kept in order.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
    /// The create timestamp; `None` for now.
    pub timestamp_ms: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and nothing else.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..Self::default()
        }
    }
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset, -1 when unknown (acks=0, or a duplicate the broker did not place).
    pub offset: i64,
    /// The record's timestamp: its create time, or the broker's log-append time.
    pub timestamp_ms: i64,
}

/// Resolves when the record is acknowledged or has failed for good.
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Shutdown("producer"))))
    }
}

/// A producer for one cluster; `send` may be called from many tasks at once.
pub struct Producer {
    pub(super) inner: Arc<Inner>,
    sender: Option<JoinHandle<()>>,
}

pub(super) struct Inner {
    pub(super) cluster: Arc<Cluster>,
    pub(super) config: ProducerConfig,
    state: Mutex<State>,
    /// Wakes the sender task.
    pub(super) wake: Notify,
    /// Signalled whenever batches finish, for `flush`.
    progress: Notify,
    /// One permit per buffered byte.
    buffer: Semaphore,
    /// The accumulator's limits, to start a fresh one when the producer gets a new epoch.
    pub(super) limits: Limits,
    /// Serialises the transactional calls (init, offsets, commit, abort) of one producer.
    pub(super) txn_ops: tokio::sync::Mutex<()>,
}

pub(super) struct State {
    pub(super) accumulator: Accumulator,
    sticky: StickyPartitioner,
    /// The producer id, -1 when not idempotent (or not initialised yet).
    pub(super) producer_id: i64,
    /// The producer epoch.
    pub(super) producer_epoch: i16,
    /// The transaction state of a transactional producer.
    pub(super) txn: Option<TxnState>,
}

impl Producer {
    /// Connects, obtains a producer id when idempotent, and starts the sender task.
    pub async fn new(config: ProducerConfig) -> Result<Producer> {
        validate(&config)?;
        let cluster = Cluster::connect_with(config.client.clone(), true).await?;
        // A transactional producer gets its id from `init_transactions`.
        let (producer_id, producer_epoch) = if config.idempotent && config.transactional_id.is_none() {
            init_producer_id(&cluster).await?
        } else {
            (-1, -1)
        };
        let limits = Limits {
            batch_bytes: config.batch_bytes,
            linger: Duration::from_millis(config.linger_ms),
            max_in_flight_per_partition: config.max_in_flight_per_partition,
            max_request_bytes: config.max_request_bytes,
            delivery_timeout: Duration::from_millis(config.delivery_timeout_ms),
            idempotent: config.idempotent,
        };
        let inner = Arc::new(Inner {
            cluster,
            buffer: Semaphore::new(config.buffer_bytes),
            state: Mutex::new(State {
                accumulator: Accumulator::new(limits),
                sticky: StickyPartitioner::default(),
                producer_id,
                producer_epoch,
                txn: config.transactional_id.clone().map(TxnState::new),
            }),
            config,
            wake: Notify::new(),
            progress: Notify::new(),
            limits,
            txn_ops: tokio::sync::Mutex::new(()),
        });
        let sender = tokio::spawn(run_sender(inner.clone()));
        Ok(Producer {
            inner,
            sender: Some(sender),
        })
    }

    /// Queues a record; waits while the buffer is full. The returned future reports delivery.
    /// A transactional producer sends only inside a transaction (after `begin_transaction`).
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let inner = &self.inner;
        if let Some(txn) = &inner.lock().txn {
            txn.check_send("send")?;
        }
        let bytes = record_bytes(&record);
        let limit = inner.config.max_request_bytes.min(inner.config.buffer_bytes);
        if bytes > limit {
            return Err(Error::TooLarge {
                what: "record",
                size_bytes: bytes,
                limit_bytes: limit,
            });
        }
        let partitions = inner.cluster.partition_count(&record.topic).await?;
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if p < 0 || p >= partitions => {
                return Err(remote_error(3, Some(&format!("{}-{p}", record.topic))));
            }
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => inner
                .lock()
                .sticky
                .partition(&record.topic, partitions, bytes, inner.config.batch_bytes),
        };
        let permits = inner
            .buffer
            .acquire_many(bytes as u32)
            .await
            .map_err(|_| Error::Shutdown("producer"))?;
        permits.forget();
        let timestamp_ms = record.timestamp_ms.unwrap_or_else(now_ms);
        let (tx, rx) = oneshot::channel();
        let new_record = NewRecord {
            timestamp_ms,
            key: record.key,
            value: record.value,
            headers: record.headers,
        };
        let wake = {
            let mut state = inner.lock();
            if state.accumulator.closing {
                drop(state);
                inner.buffer.add_permits(bytes);
                return Err(Error::Shutdown("producer"));
            }
            // The partition joins the transaction before any batch of it is sent.
            let new_in_transaction = match state.txn.as_mut().map(|t| t.register(&record.topic, partition)) {
                Some(Err(e)) => {
                    drop(state);
                    inner.buffer.add_permits(bytes);
                    return Err(e);
                }
                Some(Ok(new)) => new,
                None => false,
            };
            let appended = state.accumulator.append(
                &record.topic,
                partition,
                new_record,
                Completion { tx, timestamp_ms },
                bytes,
            );
            appended || new_in_transaction
        };
        if wake {
            inner.wake.notify_one();
        }
        Ok(DeliveryFuture { rx })
    }

    /// Sends everything buffered now and waits until every queued record is acknowledged or failed.
    pub async fn flush(&self) -> Result<()> {
        self.inner.flush().await;
        Ok(())
    }

    /// Sends everything buffered, waits for the outcomes, and stops the sender task.
    pub async fn close(mut self) -> Result<()> {
        self.inner.lock().accumulator.closing = true;
        self.inner.wake.notify_one();
        if let Some(sender) = self.sender.take() {
            sender.await.map_err(|_| Error::Shutdown("producer sender task"))?;
        }
        Ok(())
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The sender task finishes what is queued, then exits.
        self.inner.lock().accumulator.closing = true;
        self.inner.wake.notify_one();
    }
}

fn validate(config: &ProducerConfig) -> Result<()> {
    let invalid = |name: &str, reason: &str| {
        Err(Error::InvalidConfig {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if ![0, 1, -1].contains(&config.acks) {
        return invalid("acks", "must be 0, 1 or -1 (all)");
    }
    if config.idempotent && config.acks != -1 {
        return invalid("enable.idempotence", "an idempotent producer needs acks=all");
    }
    if config.transactional_id.is_some() && !config.idempotent {
        return invalid("enable.idempotence", "a transactional producer must be idempotent");
    }
    if config.transactional_id.as_deref().is_some_and(str::is_empty) {
        return invalid("transactional.id", "must not be empty");
    }
    if config.transaction_timeout_ms == 0 || config.transaction_timeout_ms > i32::MAX as u64 {
        return invalid("transaction.timeout.ms", "must be between 1 ms and 2^31-1 ms");
    }
    if config.idempotent && config.max_in_flight_per_partition > 5 {
        return invalid(
            "max.in.flight.requests.per.connection",
            "must be at most 5 with idempotence",
        );
    }
    if config.max_in_flight_per_partition == 0 || config.batch_bytes == 0 || config.max_request_bytes == 0 {
        return invalid(
            "batch.size",
            "batch size, request size and in-flight count must be positive",
        );
    }
    if config.buffer_bytes == 0 || config.buffer_bytes > u32::MAX as usize {
        return invalid("buffer.memory", "must be between 1 byte and 4 GiB");
    }
    Ok(())
}

async fn init_producer_id(cluster: &Cluster) -> Result<(i64, i16)> {
    cluster
        .retry(None, || async {
            let connection = cluster.any_connection().await?;
            let version = connection.version(ApiKey::InitProducerId)?;
            let mut request = InitProducerIdRequest::default();
            request.transactional_id = None;
            request.transaction_timeout_ms = -1;
            let response = connection.request(&request, version).await?;
            check_code(response.error_code, None)?;
            Ok((response.producer_id.0, response.producer_epoch))
        })
        .await
}

fn record_bytes(record: &ProducerRecord) -> usize {
    let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
    let headers: usize = record.headers.iter().map(|(k, v)| k.len() + len(v) + 8).sum();
    len(&record.key) + len(&record.value) + headers + RECORD_OVERHEAD_BYTES
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Inner {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends everything buffered now and waits until every queued record is acknowledged or failed.
    pub(super) async fn flush(&self) {
        self.lock().accumulator.flushing += 1;
        self.wake.notify_one();
        self.wait_idle().await;
        self.lock().accumulator.flushing -= 1;
    }

    /// Fails the open transaction after a batch failed for good.
    fn batch_failed(&self, error: &Error) {
        if let Some(txn) = self.lock().txn.as_mut() {
            txn.fail(copy_error(error), produce_disposition(error));
        }
    }

    async fn wait_idle(&self) {
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if self.lock().accumulator.is_idle() {
                return;
            }
            progress.await;
        }
    }

    /// Resolves every record of a batch and returns its buffer bytes.
    fn resolve(&self, batch: SealedBatch, outcome: std::result::Result<(i64, i64), &Error>) {
        for (i, completion) in batch.completions.into_iter().enumerate() {
            let result = match outcome {
                Ok((base_offset, log_append_time_ms)) => Ok(RecordMetadata {
                    topic: batch.topic.clone(),
                    partition: batch.partition,
                    offset: if base_offset < 0 { -1 } else { base_offset + i as i64 },
                    timestamp_ms: if log_append_time_ms >= 0 {
                        log_append_time_ms
                    } else {
                        completion.timestamp_ms
                    },
                }),
                Err(e) => Err(copy_error(e)),
            };
            let _ = completion.tx.send(result);
        }
        self.buffer.add_permits(batch.bytes);
    }

    /// Settles one sent batch after its response (or the failure of its request).
    fn settle(&self, batch: SealedBatch, outcome: Result<(i64, i64)>) {
        let (topic, partition) = (batch.topic.clone(), batch.partition);
        match outcome {
            Ok(placed) => {
                self.lock().accumulator.finished(&topic, partition);
                self.resolve(batch, Ok(placed));
            }
            Err(e) => {
                // An out-of-order sequence is expected while an earlier batch is being retried;
                // it is retried a few times only, since a lasting gap (an earlier batch failed for
                // good) cannot heal without a new producer epoch.
                let out_of_order = matches!(
                    e,
                    Error::Remote {
                        code: OUT_OF_ORDER_SEQUENCE_NUMBER,
                        ..
                    }
                );
                let retriable = e.is_retriable()
                    || (self.config.idempotent && out_of_order && batch.attempts < MAX_OUT_OF_ORDER_RETRIES);
                let deadline = batch.created + Duration::from_millis(self.config.delivery_timeout_ms);
                if retriable && batch.attempts < self.config.retries && Instant::now() < deadline {
                    tracing::debug!(topic = %topic, partition, error = %e, attempt = batch.attempts + 1, "retrying produce");
                    if is_stale_metadata(&e) {
                        self.cluster.invalidate(&topic);
                    }
                    let backoff = Duration::from_millis(backoff_ms(batch.attempts + 1));
                    self.lock().accumulator.requeue(batch, backoff);
                } else {
                    tracing::warn!(topic = %topic, partition, error = %e, "produce failed");
                    self.lock().accumulator.finished(&topic, partition);
                    self.batch_failed(&e);
                    self.resolve(batch, Err(&e));
                }
            }
        }
        self.progress.notify_waiters();
        self.wake.notify_one();
    }

    /// Encodes (first send only) and sends one request's batches to a leader.
    async fn send_to_leader(self: &Arc<Self>, leader: i32, mut batches: Vec<SealedBatch>) {
        let connection = match self.cluster.broker(leader).await {
            Ok(c) => c,
            Err(e) => {
                for batch in batches {
                    self.settle(batch, Err(copy_error(&e)));
                }
                return;
            }
        };
        let version = match connection.version(ApiKey::Produce) {
            Ok(v) => v,
            Err(e) => {
                for batch in batches {
                    self.settle(batch, Err(copy_error(&e)));
                }
                return;
            }
        };
        let mut topics: BTreeMap<String, Vec<PartitionProduceData>> = BTreeMap::new();
        let mut failed = Vec::new();
        let mut kept = Vec::with_capacity(batches.len());
        let (producer_id, producer_epoch) = {
            let state = self.lock();
            (state.producer_id, state.producer_epoch)
        };
        for mut batch in batches.drain(..) {
            if batch.data.is_none() {
                let options = EncodeOptions {
                    base_offset: 0,
                    compression: self.config.compression,
                    producer_id,
                    producer_epoch,
                    base_sequence: batch.base_sequence,
                    transactional: self.config.transactional_id.is_some(),
                    partition_leader_epoch: -1,
                };
                match encode_batch(&batch.records, &options) {
                    Ok(data) => {
                        batch.data = Some(data.freeze());
                        batch.records = Vec::new();
                    }
                    Err(e) => {
                        failed.push((batch, e));
                        continue;
                    }
                }
            }
            let mut data = PartitionProduceData::default();
            data.index = batch.partition;
            data.records = batch.data.clone();
            topics.entry(batch.topic.clone()).or_default().push(data);
            kept.push(batch);
        }
        for (batch, e) in failed {
            self.lock().accumulator.finished(&batch.topic, batch.partition);
            self.batch_failed(&e);
            self.resolve(batch, Err(&e));
            self.progress.notify_waiters();
        }
        if kept.is_empty() {
            return;
        }
        let mut request = ProduceRequest::default();
        request.transactional_id = self
            .config
            .transactional_id
            .as_deref()
            .map(|id| TransactionalId(StrBytes::from_string(id.to_string())));
        request.acks = self.config.acks;
        request.timeout_ms = i32::try_from(self.config.client.request_timeout_ms).unwrap_or(i32::MAX);
        request.topic_data = topics
            .into_iter()
            .map(|(name, partitions)| {
                let mut topic = TopicProduceData::default();
                topic.name = TopicName(StrBytes::from_string(name));
                topic.partition_data = partitions;
                topic
            })
            .collect();
        if self.config.acks == 0 {
            let sent = connection.send_without_response(&request, version).await;
            for batch in kept {
                self.settle(batch, sent.as_ref().map(|()| (-1, -1)).map_err(copy_error));
            }
            return;
        }
        let timeout_ms = self.config.client.request_timeout_ms;
        match connection.submit(&request, version, timeout_ms).await {
            Ok(response) => {
                let inner = self.clone();
                tokio::spawn(async move {
                    let response = response.wait().await;
                    inner.settle_response(kept, response);
                });
            }
            Err(e) => {
                for batch in kept {
                    self.settle(batch, Err(copy_error(&e)));
                }
            }
        }
    }

    fn settle_response(&self, batches: Vec<SealedBatch>, response: Result<ProduceResponse>) {
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                for batch in batches {
                    self.settle(batch, Err(copy_error(&e)));
                }
                return;
            }
        };
        for batch in batches {
            let found = response
                .responses
                .iter()
                .filter(|t| t.name.0.as_str() == batch.topic)
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == batch.partition);
            let outcome = match found {
                None => Err(Error::Remote {
                    code: -1,
                    message: "UnknownServerError: the response lacks the partition".into(),
                }),
                Some(p) if p.error_code == 0 => Ok((p.base_offset, p.log_append_time_ms)),
                // The broker already holds this batch: a retry of a write whose ack was lost.
                Some(p) if p.error_code == DUPLICATE_SEQUENCE_NUMBER => Ok((p.base_offset, p.log_append_time_ms)),
                Some(p) => Err(remote_error(p.error_code, p.error_message.as_deref())),
            };
            self.settle(batch, outcome);
        }
    }
}

/// What the sender does next.
enum Step {
    /// Add these partitions to the open transaction before any batch is drained.
    AddPartitions(Vec<TopicPartition>),
    /// Send what was drained, or fail it with the error of a failed transaction.
    Drained(Drained, Option<Error>),
}

/// Picks the sender's next step; called with the state locked, so a record appended by `send`
/// is either drained here with its partition already in the transaction, or waits.
fn next_step(state: &mut State, cluster: &Cluster) -> Step {
    if let Some(error) = state.txn.as_ref().and_then(TxnState::unsendable) {
        // The batches of a failed transaction are failed here, never sent. Draining gave them
        // sequence numbers the broker will not see, so the producer needs a new epoch.
        let drained = state.accumulator.drain(|_, _| Some(-1));
        for (_, batches) in &drained.requests {
            for batch in batches {
                state.accumulator.finished(&batch.topic, batch.partition);
            }
        }
        if let (Some(txn), false) = (state.txn.as_mut(), drained.requests.is_empty()) {
            txn.require_epoch_bump();
        }
        return Step::Drained(drained, Some(error));
    }
    if let Some(pending) = state.txn.as_ref().map(TxnState::pending).filter(|p| !p.is_empty()) {
        return Step::AddPartitions(pending);
    }
    Step::Drained(
        state
            .accumulator
            .drain(|topic, partition| cluster.cached_leader(topic, partition)),
        None,
    )
}

/// The sender task: drains ready batches, sends them per leader, and sleeps until the next event.
async fn run_sender(inner: Arc<Inner>) {
    loop {
        let step = {
            let mut state = inner.lock();
            if state.accumulator.closing && state.accumulator.is_idle() {
                break;
            }
            next_step(&mut state, &inner.cluster)
        };
        let (drained, failing) = match step {
            Step::AddPartitions(partitions) => {
                inner.add_to_transaction(partitions).await;
                continue;
            }
            Step::Drained(drained, failing) => (drained, failing),
        };
        for batch in drained.expired {
            let e = Error::Timeout {
                what: format!("delivery to {}-{}", batch.topic, batch.partition),
                ms: inner.config.delivery_timeout_ms,
            };
            inner.batch_failed(&e);
            inner.resolve(batch, Err(&e));
            inner.progress.notify_waiters();
        }
        let mut next_wakeup = drained.next_wakeup;
        for topic in drained.unknown_leaders {
            if let Err(e) = inner.cluster.refresh_topic(&topic).await {
                tracing::debug!(topic = %topic, error = %e, "no leader known yet");
            }
            let retry_at = Instant::now() + Duration::from_millis(backoff_ms(1));
            next_wakeup = Some(next_wakeup.map_or(retry_at, |w| w.min(retry_at)));
        }
        for (leader, batches) in drained.requests {
            match &failing {
                Some(e) => {
                    for batch in batches {
                        inner.resolve(batch, Err(e));
                    }
                    inner.progress.notify_waiters();
                }
                None => inner.send_to_leader(leader, batches).await,
            }
        }
        let notified = inner.wake.notified();
        match next_wakeup {
            Some(at) => {
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep_until(at.into()) => {}
                }
            }
            None => notified.await,
        }
    }
    inner.progress.notify_waiters();
}

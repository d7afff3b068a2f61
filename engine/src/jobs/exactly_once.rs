//! The exactly-once loop of a continuous query job (`processing_guarantee = 'exactly_once'`),
//! Kafka Streams' `exactly_once_v2` design: the job reads its source read_committed, and each
//! micro-batch's outputs, dead letters and input offsets go into one Kafka transaction, so a
//! read_committed reader of the output sees each input's output once, whatever crashes.
//!
//! One transactional producer per job process, `brook-query-<id>-<worker name>`, the worker
//! name kept across restarts (the host name unless configured): a restarted process's producer
//! fences its predecessor and aborts the transaction it left open before the job reads its
//! offsets, so that the job starts from stable offsets at once rather than after
//! `transaction.timeout.ms`. Zombies among live processes are fenced by the consumer group:
//! the offsets go into the transaction with the member epoch read before the assignment, and
//! the group refuses them once the member lost a partition (its epoch moved on), so the zombie's
//! transaction aborts. A new owner reads offsets only once no transaction holds them.
//!
//! On a fenced producer the job leaves its group and starts over with a new producer and a new
//! membership; on any other failure it aborts and reads again from the committed offsets.
//! Records a topic refuses for good (too large, say) are found each in a transaction of its
//! own that is then aborted, and become dead letters in the next attempt.

use std::collections::BTreeMap;

use brook_broker::access::{is_abortable, is_fenced, ConsumerGroupMetadata, GroupMember, OutRecord, TxnProducer};

use super::job::{group_id, last_resort, refused_output, Halt, Job, Processed};
use super::output::OutputWriter;
use super::plan::QueryPlan;
use crate::dlq::dead_letter_topic;

/// The transactional id of query `query_id`'s job in the worker named `worker`.
pub fn transactional_id(query_id: &str, worker: &str) -> String {
    format!("brook-query-{query_id}-{worker}")
}

/// Why one attempt at a micro-batch's transaction failed.
enum Failure {
    /// Writing to `topic` failed.
    Produce {
        /// The topic written.
        topic: String,
        /// Why.
        error: brook_broker::Error,
    },
    /// Sending the offsets or committing failed.
    Other(brook_broker::Error),
}

impl Failure {
    fn error(&self) -> &brook_broker::Error {
        match self {
            Failure::Produce { error, .. } | Failure::Other(error) => error,
        }
    }
}

/// The job's transactional producer: created (and initialised) when first needed, dropped when
/// a failure leaves it unusable, so that the next use initialises a new one.
struct Producer {
    transactional_id: String,
    current: Option<Box<dyn TxnProducer>>,
}

/// One attempt: the writes in order, then the offsets, then the commit (the transaction is open).
async fn attempt(
    producer: &mut dyn TxnProducer,
    writes: [(&str, &[OutRecord]); 2],
    offsets: &[(String, i32, i64)],
    group: &ConsumerGroupMetadata,
) -> Result<(), Failure> {
    for (topic, records) in writes {
        if records.is_empty() {
            continue;
        }
        producer
            .produce(topic, records.to_vec())
            .await
            .map_err(|error| Failure::Produce {
                topic: topic.to_string(),
                error,
            })?;
    }
    producer
        .send_offsets(offsets.to_vec(), group)
        .await
        .map_err(Failure::Other)?;
    producer.commit().await.map_err(Failure::Other)
}

impl Job {
    /// Runs the query exactly once until stopped or failed.
    pub(super) async fn run_exactly_once(
        &mut self,
        plan: &QueryPlan,
        writer: &OutputWriter,
        target_topic: &str,
    ) -> Result<(), Halt> {
        let mut producer = Producer {
            transactional_id: transactional_id(&self.def.id, &self.settings.worker_name()),
            current: None,
        };
        loop {
            // The producer first: initialising it fences this worker's previous incarnation
            // and aborts the transaction it left open, so the offsets read next are stable.
            self.ensure_producer(&mut producer).await?;
            let mut member = self.join().await?;
            tracing::info!(query = %self.def.id, group = %group_id(&self.def.id), source = %self.def.source.topic,
                target = target_topic, transactional_id = %producer.transactional_id,
                "exactly-once continuous query started");
            let outcome = self
                .consume_exactly_once(member.as_mut(), &mut producer, plan, writer, target_topic)
                .await;
            self.leave(member).await;
            match outcome {
                Err(Halt::Fenced) => {
                    tracing::warn!(query = %self.def.id, transactional_id = %producer.transactional_id,
                        "the transactional producer was fenced; rejoining with a new producer");
                    producer.current = None;
                    self.backoff().await?;
                }
                other => return other,
            }
        }
    }

    /// The consume-transform-produce loop, one transaction per micro-batch.
    async fn consume_exactly_once(
        &mut self,
        member: &mut dyn GroupMember,
        producer: &mut Producer,
        plan: &QueryPlan,
        writer: &OutputWriter,
        target_topic: &str,
    ) -> Result<(), Halt> {
        let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
        loop {
            let (owned, metadata) = self.owned_with_metadata(member, self.wait_ms(&positions)).await?;
            let records = self.read_batch(&owned, &mut positions).await?;
            if records.is_empty() {
                continue;
            }
            let processed = self.process(plan, writer, &records).await?;
            let next = self.next_offsets(&records);
            match self
                .transact(producer, processed, target_topic, &next, &metadata)
                .await?
            {
                Some((n_out, n_dead)) => {
                    positions.extend(next.iter().map(|(_, p, o)| (*p, *o)));
                    self.count(records.len(), n_out, n_dead);
                }
                // Aborted: every partition starts again from the group's committed offsets.
                None => positions.clear(),
            }
        }
    }

    /// The member's assignment with the metadata its offsets are sent with, the metadata read
    /// before the assignment it goes with (see `GroupMember::group_metadata`).
    async fn owned_with_metadata(
        &self,
        member: &mut dyn GroupMember,
        wait_ms: u64,
    ) -> Result<(brook_broker::access::Owned, ConsumerGroupMetadata), Halt> {
        let mut wait_ms = wait_ms;
        loop {
            let before = self.assignment(member, wait_ms).await?;
            let metadata = member.group_metadata();
            let owned = self.assignment(member, 0).await?;
            if owned == before {
                return Ok((owned, metadata));
            }
            wait_ms = 0;
        }
    }

    /// Writes one micro-batch in one transaction: dead letters, outputs, input offsets. Some
    /// (outputs, dead letters) once committed; None once aborted for a reason that reading
    /// again from the committed offsets may cure.
    async fn transact(
        &self,
        producer: &mut Producer,
        processed: Processed,
        target_topic: &str,
        offsets: &[(String, i32, i64)],
        group: &ConsumerGroupMetadata,
    ) -> Result<Option<(u64, u64)>, Halt> {
        let source = &self.def.source.topic;
        let dlq = dead_letter_topic(source);
        let Processed { mut out, mut dead } = processed;
        loop {
            self.check_stop()?;
            let current = self.begin(producer).await?;
            let writes = [(dlq.as_str(), dead.as_slice()), (target_topic, out.as_slice())];
            let failure = match attempt(current, writes, offsets, group).await {
                Ok(()) => return Ok(Some((out.len() as u64, dead.len() as u64))),
                Err(failure) => failure,
            };
            if is_fenced(failure.error()) {
                return Err(Halt::Fenced);
            }
            self.abort(producer).await?;
            match failure {
                Failure::Produce {
                    topic,
                    error: brook_broker::Error::UnknownTopicOrPartition(_),
                } => self.create_topic(&topic).await?,
                // Refused for good, and not because the transaction or producer failed.
                Failure::Produce { topic, error } if !error.is_retriable() && !is_abortable(&error) => {
                    let to_dlq = topic == dlq;
                    let records = if to_dlq { dead.as_slice() } else { out.as_slice() };
                    let refused = self.probe(producer, &topic, records).await?;
                    if refused.is_empty() {
                        // The batch fails while each record alone passes: nothing to divert.
                        return Err(Halt::Failed(error.into()));
                    }
                    tracing::warn!(query = %self.def.id, topic, refused = refused.len(), error = %error,
                        "records refused for good; diverting them");
                    for (i, e) in refused.into_iter().rev() {
                        if to_dlq {
                            let record = dead.remove(i);
                            match last_resort(record, &e) {
                                Some(stripped) => dead.push(stripped),
                                None => {
                                    tracing::error!(query = %self.def.id, topic = %dlq, error = %e,
                                        "a dead letter could not be written; dropping it")
                                }
                            }
                        } else {
                            dead.push(refused_output(source, target_topic, out.remove(i), &e));
                        }
                    }
                }
                failure => {
                    let error = failure.error();
                    if !error.is_retriable() && !is_abortable(error) {
                        return Err(Halt::Failed(failure_into(failure)));
                    }
                    tracing::warn!(query = %self.def.id, error = %error,
                        "transaction aborted; reading again from the committed offsets");
                    self.backoff().await?;
                    return Ok(None);
                }
            }
        }
    }

    /// Finds the records `topic` refuses for good, each written alone in a transaction that is
    /// then aborted; returns their indexes (ascending) with the errors.
    async fn probe(
        &self,
        producer: &mut Producer,
        topic: &str,
        records: &[OutRecord],
    ) -> Result<Vec<(usize, brook_broker::Error)>, Halt> {
        let mut refused = Vec::new();
        for (i, record) in records.iter().enumerate() {
            loop {
                let current = self.begin(producer).await?;
                let outcome = current.produce(topic, vec![record.clone()]).await;
                match outcome {
                    Err(e) if is_fenced(&e) => return Err(Halt::Fenced),
                    outcome => {
                        self.abort(producer).await?;
                        match outcome {
                            Ok(_) => break,
                            Err(e) if e.is_retriable() || is_abortable(&e) => self.backoff().await?,
                            Err(e) => {
                                refused.push((i, e));
                                break;
                            }
                        }
                    }
                }
            }
        }
        Ok(refused)
    }

    /// Initialises the producer when there is none.
    async fn ensure_producer(&self, producer: &mut Producer) -> Result<(), Halt> {
        if producer.current.is_none() {
            producer.current = Some(self.new_producer(&producer.transactional_id).await?);
        }
        Ok(())
    }

    /// A new initialised producer for `transactional_id`, retrying what may pass.
    async fn new_producer(&self, transactional_id: &str) -> Result<Box<dyn TxnProducer>, Halt> {
        let timeout_ms = self.settings.transaction_timeout_ms;
        self.retrying(|| self.access.transactional_producer(transactional_id, timeout_ms))
            .await
    }

    /// Opens a transaction, with a new producer if the current one cannot.
    async fn begin<'a>(&self, producer: &'a mut Producer) -> Result<&'a mut dyn TxnProducer, Halt> {
        loop {
            let mut current = match producer.current.take() {
                Some(current) => current,
                None => self.new_producer(&producer.transactional_id).await?,
            };
            match current.begin() {
                Ok(()) => return Ok(producer.current.insert(current).as_mut()),
                Err(e) if is_fenced(&e) => return Err(Halt::Fenced),
                Err(e) => {
                    tracing::warn!(query = %self.def.id, error = %e, "the producer cannot begin a transaction; starting a new one");
                }
            }
        }
    }

    /// Aborts the open transaction; a producer that cannot abort is dropped (a new one aborts
    /// what it left open when it initialises).
    async fn abort(&self, producer: &mut Producer) -> Result<(), Halt> {
        let Some(current) = producer.current.as_mut() else {
            return Ok(());
        };
        match current.abort().await {
            Ok(()) => Ok(()),
            Err(e) if is_fenced(&e) => Err(Halt::Fenced),
            Err(e) => {
                tracing::warn!(query = %self.def.id, error = %e, "aborting failed; a new producer takes over");
                producer.current = None;
                Ok(())
            }
        }
    }
}

fn failure_into(failure: Failure) -> crate::error::Error {
    match failure {
        Failure::Produce { error, .. } | Failure::Other(error) => error.into(),
    }
}

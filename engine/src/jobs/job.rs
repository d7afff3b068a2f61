//! One continuous query job: a member of consumer group `brook-query-<id>` over the source
//! topic that turns each micro-batch of its partitions into records of the target stream.
//!
//! The loop: fetch from the owned partitions (at the committed offset, or the earliest, when a
//! partition is newly assigned), decode (records that do not decode become dead letters), run
//! the planned SELECT, encode, produce to the target topic, and only once that write (and the
//! dead letters) is acknowledged commit the input offsets: at least once. A rebalance drops
//! the positions of revoked partitions. A batch whose evaluation fails is retried row by row so
//! that one bad row becomes a dead letter instead of stopping the query. Exactly-once jobs run
//! the loop of `exactly_once.rs` over the same steps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use brook_broker::access::{
    ConsumerRecord, GroupMember, Isolation, OffsetSpec, OutRecord, Owned, TopicAccess, TopicSpec,
};
use bytes::Bytes;
use tokio::sync::watch;

use super::fetch::fetch_round_as;
use super::output::OutputWriter;
use super::plan::QueryPlan;
use super::{JobSettings, JobState, JobStatus};
use crate::catalog::{Catalog, ProcessingGuarantee, QueryDef};
use crate::dlq::{dead_letter, dead_letter_topic};
use crate::error::{Error, Result};

/// The header a dead letter gets when the dead-letter topic refused it and it is written again
/// without key and value.
const LAST_RESORT_HEADER: &str = "brook.dlq.error";

/// The consumer group a query's job members join.
pub fn group_id(query_id: &str) -> String {
    format!("brook-query-{query_id}")
}

/// Why a step ended early.
pub(super) enum Halt {
    /// The job was asked to stop.
    Stopped,
    /// A non-retriable error: the job fails.
    Failed(Error),
    /// The job's transactional producer was fenced (exactly once): another producer with its
    /// transactional id took over, so the job starts over with a new producer and membership.
    Fenced,
}

impl From<Error> for Halt {
    fn from(e: Error) -> Self {
        Halt::Failed(e)
    }
}

/// A running query: its definition, the plan, the writer and where it reads.
pub(super) struct Job {
    pub def: QueryDef,
    pub access: Arc<dyn TopicAccess>,
    pub catalog: Arc<Catalog>,
    pub settings: JobSettings,
    pub status: Arc<JobStatus>,
    pub stop: watch::Receiver<bool>,
}

/// What a micro-batch turned into.
pub(super) struct Processed {
    /// Records for the target stream.
    pub out: Vec<OutRecord>,
    /// Dead letters for the source's dead-letter topic.
    pub dead: Vec<OutRecord>,
}

impl Job {
    /// Runs until stopped or failed, and records how it ended in the status.
    pub async fn run(mut self) {
        let id = self.def.id.clone();
        let end = match self.run_inner().await {
            Ok(()) | Err(Halt::Stopped) => JobState::Stopped,
            Err(Halt::Failed(e)) => {
                tracing::error!(query = %id, error = %e, "continuous query failed");
                JobState::Failed(e.to_string())
            }
            // The exactly-once loop starts over after a fencing; reaching here is a bug.
            Err(Halt::Fenced) => JobState::Failed("the transactional producer was fenced".to_string()),
        };
        self.status.set_state(end);
    }

    async fn run_inner(&mut self) -> Result<(), Halt> {
        let target = self
            .catalog
            .get(&self.def.target)
            .ok_or_else(|| Error::Catalog(format!("the target stream {} does not exist", self.def.target)))?;
        let plan = QueryPlan::new(&self.def.select, &self.def.source).await?;
        let writer = OutputWriter::new(&target, &plan.output_schema())?;
        if self.def.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
            return self.run_exactly_once(&plan, &writer, &target.topic).await;
        }
        let mut member = self.join().await?;
        tracing::info!(query = %self.def.id, group = %group_id(&self.def.id), source = %self.def.source.topic,
            target = %target.topic, "continuous query started");
        let result = self.consume(member.as_mut(), &plan, &writer, &target.topic).await;
        self.leave(member).await;
        result
    }

    /// Joins the query's group (subscribed to the source topic), retrying what may pass, and
    /// marks the job running.
    pub(super) async fn join(&self) -> Result<Box<dyn GroupMember>, Halt> {
        let group = group_id(&self.def.id);
        let source = &self.def.source.topic;
        let member = self.retrying(|| self.access.join(&group, vec![source.clone()])).await?;
        self.status.set_state(JobState::Running);
        Ok(member)
    }

    /// Leaves the query's group, so that its partitions move at once.
    pub(super) async fn leave(&self, member: Box<dyn GroupMember>) {
        if let Err(e) = member.leave().await {
            tracing::warn!(query = %self.def.id, error = %e, "leaving the query's group failed");
        }
    }

    /// The consume-transform-produce loop.
    async fn consume(
        &mut self,
        member: &mut dyn GroupMember,
        plan: &QueryPlan,
        writer: &OutputWriter,
        target_topic: &str,
    ) -> Result<(), Halt> {
        let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
        loop {
            let owned = self.assignment(member, self.wait_ms(&positions)).await?;
            let records = self.read_batch(&owned, &mut positions).await?;
            if records.is_empty() {
                continue;
            }
            let processed = self.process(plan, writer, &records).await?;
            let (n_out, n_dead) = self.write(processed, target_topic).await?;
            let next = self.next_offsets(&records);
            positions.extend(next.iter().map(|(_, p, o)| (*p, *o)));
            if let Err(e) = member.commit(next).await {
                // A rebalance fenced the commit: the new owner re-reads from the last commit.
                tracing::warn!(query = %self.def.id, error = %e, "committing input offsets failed");
            }
            self.count(records.len(), n_out, n_dead);
        }
    }

    /// Writes a micro-batch's dead letters, then its outputs, each acknowledged; an output
    /// record the target refuses for good (too large, say) becomes a dead letter instead of
    /// stopping the query. The outputs and dead letters written.
    async fn write(&self, processed: Processed, target_topic: &str) -> Result<(u64, u64), Halt> {
        let source = &self.def.source.topic;
        let dlq = dead_letter_topic(source);
        let (mut n_out, mut n_dead) = (processed.out.len() as u64, processed.dead.len() as u64);
        if !processed.dead.is_empty() {
            let refused = self.produce_or_divert(&dlq, processed.dead).await?;
            self.write_last_resort(&dlq, refused).await?;
        }
        if !processed.out.is_empty() {
            let refused = self.produce_or_divert(target_topic, processed.out).await?;
            if !refused.is_empty() {
                n_out -= refused.len() as u64;
                n_dead += refused.len() as u64;
                let letters = refused
                    .into_iter()
                    .map(|(record, e)| refused_output(source, target_topic, record, &e))
                    .collect();
                let refused = self.produce_or_divert(&dlq, letters).await?;
                self.write_last_resort(&dlq, refused).await?;
            }
        }
        Ok((n_out, n_dead))
    }

    /// How long the next assignment check may wait: while the job reads nothing, as long as a
    /// fetch would; else not at all.
    pub(super) fn wait_ms(&self, positions: &BTreeMap<i32, i64>) -> u64 {
        if positions.is_empty() {
            self.settings.fetch_wait_ms
        } else {
            0
        }
    }

    /// Follows the assignment `owned` and reads the next micro-batch from the owned partitions;
    /// empty when there was nothing to read.
    pub(super) async fn read_batch(
        &self,
        owned: &Owned,
        positions: &mut BTreeMap<i32, i64>,
    ) -> Result<Vec<ConsumerRecord>, Halt> {
        self.follow_assignment(owned, positions).await?;
        if positions.is_empty() {
            self.check_stop()?;
            return Ok(Vec::new());
        }
        self.fetch(positions).await
    }

    /// The offsets to commit after `records`: per partition, one past the last record read.
    pub(super) fn next_offsets(&self, records: &[ConsumerRecord]) -> Vec<(String, i32, i64)> {
        let next: BTreeMap<i32, i64> = records.iter().map(|r| (r.partition, r.offset + 1)).collect();
        let source = &self.def.source.topic;
        next.into_iter().map(|(p, o)| (source.clone(), p, o)).collect()
    }

    /// Counts a micro-batch done: inputs read, outputs and dead letters written.
    pub(super) fn count(&self, n_in: usize, n_out: u64, n_dead: u64) {
        self.status.records_in.fetch_add(n_in as u64, Ordering::Relaxed);
        self.status.records_out.fetch_add(n_out, Ordering::Relaxed);
        self.status.records_dead.fetch_add(n_dead, Ordering::Relaxed);
    }

    /// The member's assignment, waiting up to `wait_ms` for a change; retriable errors retried.
    pub(super) async fn assignment(&self, member: &mut dyn GroupMember, wait_ms: u64) -> Result<Owned, Halt> {
        loop {
            self.check_stop()?;
            match member.assignment(wait_ms).await {
                Ok(owned) => return Ok(owned),
                Err(e) if e.is_retriable() => {
                    tracing::warn!(query = %self.def.id, error = %e, "reading the assignment failed, retrying");
                    self.backoff().await?;
                }
                Err(e) => return Err(Halt::Failed(e.into())),
            }
        }
    }

    /// Drops the positions of partitions no longer owned and starts newly owned ones at the
    /// group's committed offsets.
    async fn follow_assignment(&self, owned: &Owned, positions: &mut BTreeMap<i32, i64>) -> Result<(), Halt> {
        let source = &self.def.source.topic;
        let owned: BTreeSet<i32> = owned.iter().filter(|(t, _)| t == source).map(|(_, p)| *p).collect();
        positions.retain(|p, _| owned.contains(p));
        let new: Vec<i32> = owned.iter().copied().filter(|p| !positions.contains_key(p)).collect();
        if !new.is_empty() {
            let starts = self.start_offsets().await?;
            for p in new {
                positions.insert(p, starts.get(&p).copied().unwrap_or(0));
            }
            tracing::info!(query = %self.def.id, partitions = ?positions.keys().collect::<Vec<_>>(), "assigned");
        }
        Ok(())
    }

    /// Where newly assigned partitions start: the group's committed offset, else the earliest.
    /// An exactly-once job asks for the source's partitions by name, so that it also waits
    /// for a transaction holding the first offset of a partition.
    async fn start_offsets(&self) -> Result<BTreeMap<i32, i64>, Halt> {
        let group = &group_id(&self.def.id);
        let source = &self.def.source.topic;
        let mut starts: BTreeMap<i32, i64> = self
            .retrying(|| self.access.list_offsets(source, OffsetSpec::Earliest))
            .await?
            .into_iter()
            .collect();
        let committed = if self.def.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
            let partitions: Vec<(String, i32)> = starts.keys().map(|p| (source.to_string(), *p)).collect();
            self.retrying(|| self.access.committed_partitions(group, partitions.clone()))
                .await?
        } else {
            self.retrying(|| self.access.committed(group)).await?
        };
        for (t, p, o) in committed {
            if t == *source && o >= 0 {
                starts.insert(p, o);
            }
        }
        Ok(starts)
    }

    /// One micro-batch from the owned partitions, bounded to `max_batch_records` in all;
    /// read_committed for an exactly-once job.
    async fn fetch(&self, positions: &mut BTreeMap<i32, i64>) -> Result<Vec<ConsumerRecord>, Halt> {
        let source = &self.def.source.topic;
        let isolation = match self.def.processing_guarantee {
            ProcessingGuarantee::AtLeastOnce => Isolation::ReadUncommitted,
            ProcessingGuarantee::ExactlyOnce => Isolation::ReadCommitted,
        };
        let s = &self.settings;
        let round = {
            let mut stop = self.stop.clone();
            let fetching = fetch_round_as(
                self.access.as_ref(),
                source,
                positions,
                s.max_batch_records,
                s.fetch_max_bytes,
                s.fetch_wait_ms,
                isolation,
            );
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return Err(Halt::Stopped),
                round = fetching => round,
            }
        };
        for (p, from, e) in round.errors {
            match e {
                brook_broker::Error::OffsetOutOfRange { .. } => {
                    let earliest = self
                        .retrying(|| self.access.list_offsets(source, OffsetSpec::Earliest))
                        .await?;
                    let start = earliest.into_iter().find(|(q, _)| *q == p).map(|(_, o)| o).unwrap_or(0);
                    tracing::warn!(query = %self.def.id, partition = p, from, start, "offset out of range, reading from the earliest");
                    positions.insert(p, start);
                }
                e if e.is_retriable() => {
                    tracing::warn!(query = %self.def.id, partition = p, error = %e, "fetch failed, retrying");
                    self.backoff().await?;
                }
                e => return Err(Halt::Failed(e.into())),
            }
        }
        Ok(round.records)
    }

    /// Decodes, evaluates and encodes one micro-batch; bad records and rows become dead letters.
    pub(super) async fn process(
        &self,
        plan: &QueryPlan,
        writer: &OutputWriter,
        records: &[ConsumerRecord],
    ) -> Result<Processed> {
        let source = &self.def.source.topic;
        let letter = |i: usize, error: &str, stage: &str| {
            let r = &records[i];
            dead_letter(
                source,
                r.partition,
                r.offset,
                r.key.clone(),
                r.value.clone(),
                error,
                stage,
            )
        };
        let decoded = match plan.decode(records) {
            Ok(d) => d,
            Err(e) => {
                let dead = (0..records.len())
                    .map(|i| letter(i, &e.to_string(), "decode"))
                    .collect();
                return Ok(Processed { out: Vec::new(), dead });
            }
        };
        let mut dead: Vec<OutRecord> = decoded.failed.iter().map(|(i, e)| letter(*i, e, "decode")).collect();
        match evaluate(plan, writer, decoded.batch.clone()).await {
            Ok(out) => Ok(Processed { out, dead }),
            Err(_) => {
                // Find the rows at fault one by one; the others still flow, in order.
                let mut out = Vec::new();
                for (row, &i) in decoded.rows.iter().enumerate() {
                    match evaluate(plan, writer, decoded.batch.slice(row, 1)).await {
                        Ok(records) => out.extend(records),
                        Err(e) => dead.push(letter(i, &e.to_string(), "eval")),
                    }
                }
                Ok(Processed { out, dead })
            }
        }
    }

    /// Writes records; a batch refused for good is retried one record at a time, and the records
    /// still refused are returned with their error, so one bad record never stops the query.
    async fn produce_or_divert(&self, topic: &str, records: Vec<OutRecord>) -> Result<Vec<(OutRecord, Error)>, Halt> {
        match self.produce_creating(topic, &records).await {
            Ok(()) => return Ok(Vec::new()),
            Err(Halt::Failed(e)) => {
                tracing::warn!(query = %self.def.id, topic, error = %e, "batch refused; writing record by record")
            }
            Err(stop) => return Err(stop),
        }
        let mut refused = Vec::new();
        for record in records {
            match self.produce_creating(topic, std::slice::from_ref(&record)).await {
                Ok(()) => {}
                Err(Halt::Failed(e)) => refused.push((record, e)),
                Err(stop) => return Err(stop),
            }
        }
        Ok(refused)
    }

    /// Dead letters the dead-letter topic itself refused: written once more without key and
    /// value (the headers still name the error and the source), else logged and dropped.
    async fn write_last_resort(&self, dlq: &str, refused: Vec<(OutRecord, Error)>) -> Result<(), Halt> {
        for (record, e) in refused {
            // Never stripped before: these are the first writes of their dead letters.
            let Some(stripped) = last_resort(record, &e) else {
                continue;
            };
            if let Err(Halt::Failed(e2)) = self.produce_creating(dlq, &[stripped]).await {
                tracing::error!(query = %self.def.id, topic = dlq, error = %e2, "a dead letter could not be written; dropping it");
            }
        }
        Ok(())
    }

    /// Produces to `topic`, creating it (cluster defaults) the first time it is missing.
    async fn produce_creating(&self, topic: &str, records: &[OutRecord]) -> Result<(), Halt> {
        match self.access.produce(topic, records.to_vec()).await {
            Ok(_) => return Ok(()),
            Err(brook_broker::Error::UnknownTopicOrPartition(_)) => self.create_topic(topic).await?,
            Err(e) if e.is_retriable() => {}
            Err(e) => return Err(Halt::Failed(e.into())),
        }
        self.retrying(|| self.access.produce(topic, records.to_vec())).await?;
        Ok(())
    }

    /// Creates `topic` with the cluster's defaults unless it exists.
    pub(super) async fn create_topic(&self, topic: &str) -> Result<(), Halt> {
        let spec = TopicSpec {
            name: topic.to_string(),
            partitions: -1,
            configs: Vec::new(),
        };
        match self.access.create_topic(spec).await {
            Ok(()) | Err(brook_broker::Error::TopicAlreadyExists(_)) => Ok(()),
            Err(e) if e.is_retriable() => {
                tracing::warn!(query = %self.def.id, topic, error = %e, "creating a topic failed, retrying");
                self.backoff().await
            }
            Err(e) => Err(Halt::Failed(e.into())),
        }
    }

    /// Runs `op` until it succeeds, backing off after retriable errors; stops when asked.
    pub(super) async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T, Halt>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = brook_broker::Result<T>>,
    {
        loop {
            self.check_stop()?;
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retriable() => {
                    tracing::warn!(query = %self.def.id, error = %e, "retrying");
                    self.backoff().await?;
                }
                Err(e) => return Err(Halt::Failed(e.into())),
            }
        }
    }

    /// Waits `retry_backoff_ms`; ends early with Halt::Stopped when the job is asked to stop.
    pub(super) async fn backoff(&self) -> Result<(), Halt> {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => Err(Halt::Stopped),
            _ = tokio::time::sleep(Duration::from_millis(self.settings.retry_backoff_ms)) => Ok(()),
        }
    }

    /// Halt::Stopped once the job is asked to stop.
    pub(super) fn check_stop(&self) -> Result<(), Halt> {
        if *self.stop.borrow() {
            Err(Halt::Stopped)
        } else {
            Ok(())
        }
    }
}

/// The dead letter of an output record `target_topic` refused for good with `error`.
pub(super) fn refused_output(
    source: &str,
    target_topic: &str,
    record: OutRecord,
    error: &impl std::fmt::Display,
) -> OutRecord {
    let why = format!("output could not be written to {target_topic}: {error}");
    dead_letter(source, -1, -1, record.key, record.value, &why, "produce")
}

/// A dead letter the dead-letter topic refused, stripped of key and value with the error in the
/// [`LAST_RESORT_HEADER`] header (the other headers still name the error and the source); None
/// when it was stripped already.
pub(super) fn last_resort(mut record: OutRecord, error: &impl std::fmt::Display) -> Option<OutRecord> {
    if record
        .headers
        .iter()
        .any(|(k, _)| k.as_ref() == LAST_RESORT_HEADER.as_bytes())
    {
        return None;
    }
    record.key = None;
    record.value = None;
    record.headers.push((
        Bytes::from_static(LAST_RESORT_HEADER.as_bytes()),
        Some(error.to_string().into()),
    ));
    Some(record)
}

/// Runs the query over `batch` and encodes the result.
async fn evaluate(
    plan: &QueryPlan,
    writer: &OutputWriter,
    batch: datafusion::arrow::record_batch::RecordBatch,
) -> Result<Vec<OutRecord>> {
    let mut out = Vec::new();
    for result in plan.run(batch).await? {
        out.extend(writer.records(&result)?);
    }
    Ok(out)
}

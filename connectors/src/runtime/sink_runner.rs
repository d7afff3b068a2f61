//! The sink runner: reads a sink's input topic from where the sink (or its consumer group) says
//! it stopped, decodes values into rows, writes them, and stores or commits the offsets after.
//!
//! Records that do not decode and records the target refuses go to the dead-letter topic (or
//! stop the step, by its error policy); the others flow. A schema that is not declared is
//! inferred from each batch and only ever grows: new fields become new nullable columns.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use brook_broker::access::{ConsumerRecord, OffsetSpec, OutRecord, TopicAccess};
use brook_engine::format::{decoder, FormatSpec};
use brook_engine::jobs::fetch_round;
use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;

use super::input::{grow_schema, letter, recover_fetch_errors};
use super::produce::write_dead_letters;
use super::{retrying, ErrorPolicy, Halt, RunnerSettings, StepState, StepStatus, Stop};
use crate::error::{Error, Result};
use crate::sink::{Sink, SinkBatch};

/// Runs one sink of a pipeline.
pub struct SinkRunner {
    /// The step's name, `<pipeline>.<sink>`; its consumer group is `brook-sink-<name>`.
    pub name: String,
    /// The connector, behind a lock only so that the runner can be shared across awaits (it is
    /// never contended).
    pub sink: tokio::sync::Mutex<Box<dyn Sink>>,
    /// The cluster.
    pub access: Arc<dyn TopicAccess>,
    /// The input topic (it must exist).
    pub topic: String,
    /// How the input's values are encoded; without a schema, it is inferred batch by batch.
    pub format: FormatSpec,
    /// What happens to records that do not decode or that the target refuses.
    pub on_error: ErrorPolicy,
    /// Bounds and pacing.
    pub settings: RunnerSettings,
    /// Stops the runner.
    pub stop: Stop,
    /// State and counters.
    pub status: Arc<StepStatus>,
}

/// The consumer group of a sink that stores no offsets itself.
pub fn sink_group(name: &str) -> String {
    format!("brook-sink-{name}")
}

impl SinkRunner {
    /// Runs until stopped or an error retrying cannot fix; the outcome is also recorded in the
    /// status.
    pub async fn run(mut self) -> Result<()> {
        let result = self.run_inner().await;
        let flushed = self.sink.get_mut().flush().await;
        let outcome = match (result, flushed) {
            (Err(Halt::Failed(e)), _) | (_, Err(e)) => Err(Halt::Failed(e)),
            (Ok(()) | Err(Halt::Stopped), Ok(())) => Ok(()),
        };
        self.status.finish(&self.name, "sink", outcome, StepState::Stopped)
    }

    async fn run_inner(&mut self) -> Result<(), Halt> {
        let stored = loop {
            self.stop.check()?;
            match self.sink.get_mut().open(&self.topic).await {
                Ok(stored) => break stored,
                Err(e) if e.is_retriable() => {
                    tracing::warn!(step = %self.name, error = %e, "opening the sink failed, retrying");
                    self.stop.sleep(self.settings.retry_backoff_ms).await?;
                }
                Err(e) => return Err(Halt::Failed(e)),
            }
        };
        let group = sink_group(&self.name);
        let stores_offsets = stored.is_some();
        let mut positions = self.start_positions(stored, &group).await?;
        self.status.set_state(StepState::Running);
        tracing::info!(step = %self.name, topic = %self.topic, stores_offsets, "sink started");
        let mut schema: Option<SchemaRef> = self.format.schema.clone();
        loop {
            self.stop.check()?;
            let round = tokio::select! {
                _ = self.stop.wait() => return Err(Halt::Stopped),
                round = fetch_round(
                    self.access.as_ref(),
                    &self.topic,
                    &positions,
                    self.settings.max_batch_records,
                    self.settings.fetch_max_bytes,
                    self.settings.poll_wait_ms,
                ) => round,
            };
            recover_fetch_errors(
                self.access.as_ref(),
                &self.topic,
                &self.name,
                round.errors,
                &mut positions,
                &self.settings,
                &self.stop,
            )
            .await?;
            if round.records.is_empty() {
                self.status.note_empty_round();
                self.sink.get_mut().tick().await.map_err(Halt::Failed)?;
                continue;
            }
            let records = round.records;
            let mut next: BTreeMap<i32, i64> = BTreeMap::new();
            for r in &records {
                next.insert(r.partition, r.offset + 1);
            }
            self.deliver(&records, &next, &mut schema).await?;
            if !stores_offsets {
                let commits: Vec<_> = next.iter().map(|(p, o)| (self.topic.clone(), *p, *o)).collect();
                retrying(&self.settings, &self.stop, "committing offsets", || {
                    self.access.commit(&group, commits.clone())
                })
                .await?;
            }
            positions.extend(next);
        }
    }

    /// Where each partition starts: stored offsets, else the group's committed ones, else the
    /// earliest.
    async fn start_positions(&self, stored: Option<Vec<(i32, i64)>>, group: &str) -> Result<BTreeMap<i32, i64>, Halt> {
        let mut positions = self.offsets(OffsetSpec::Earliest).await?;
        let earliest = positions.clone();
        let resume: Vec<(i32, i64)> = match stored {
            Some(stored) => stored,
            None => retrying(&self.settings, &self.stop, "reading committed offsets", || {
                self.access.committed(group)
            })
            .await?
            .into_iter()
            .filter(|(t, _, o)| *t == self.topic && *o >= 0)
            .map(|(_, p, o)| (p, o))
            .collect(),
        };
        let latest = self.offsets(OffsetSpec::Latest).await?;
        for (p, o) in resume {
            let floor = earliest.get(&p).copied().unwrap_or(0);
            match latest.get(&p) {
                Some(end) if o > *end => {
                    // The topic holds less than the target says it wrote: it was deleted and
                    // made again (a new data directory, say). Reading it all again may write
                    // rows twice; skipping would lose its records.
                    tracing::warn!(step = %self.name, topic = %self.topic, partition = p, stored = o, end, "stored offset is past the end of the topic, which must have been recreated; reading it from the earliest");
                    positions.insert(p, floor);
                }
                _ => {
                    positions.insert(p, o.max(floor));
                }
            }
        }
        Ok(positions)
    }

    async fn offsets(&self, spec: OffsetSpec) -> Result<BTreeMap<i32, i64>, Halt> {
        Ok(retrying(&self.settings, &self.stop, "listing offsets", || {
            self.access.list_offsets(&self.topic, spec)
        })
        .await?
        .into_iter()
        .collect())
    }

    /// Decodes `records` and writes them; dead-letters what does not decode or is refused.
    async fn deliver(
        &mut self,
        records: &[ConsumerRecord],
        next: &BTreeMap<i32, i64>,
        schema: &mut Option<SchemaRef>,
    ) -> Result<(), Halt> {
        let values: Vec<Option<&[u8]>> = records.iter().map(|r| r.value.as_deref()).collect();
        let spec = self.spec_for(&values, schema)?;
        let decoded = decoder(&spec).and_then(|d| d.decode(&values)).map_err(Error::from)?;
        let mut letters = Vec::new();
        for (i, why) in &decoded.failed {
            letters.push(self.letter(&records[*i], &format!("the value did not decode: {why}"), "decode")?);
        }
        let mut rows = decoded.batch;
        // The records behind the rows: all of them unless some did not decode or are refused.
        let mut kept: Cow<'_, [ConsumerRecord]> = if decoded.failed.is_empty() {
            Cow::Borrowed(records)
        } else {
            Cow::Owned(decoded.rows.iter().map(|i| records[*i].clone()).collect())
        };
        let next: Vec<(i32, i64)> = next.iter().map(|(p, o)| (*p, *o)).collect();
        let mut backoff = self.settings.retry_backoff_ms;
        loop {
            self.stop.check()?;
            let batch = SinkBatch {
                topic: &self.topic,
                rows: &rows,
                records: &kept,
                next_offsets: &next,
            };
            let written = self.sink.get_mut().write(batch).await;
            match written {
                Ok(()) => break,
                Err(Error::Rejected { index, reason }) if index < kept.len() => {
                    letters.push(self.letter(
                        &kept[index],
                        &format!("the sink refused the record: {reason}"),
                        "sink",
                    )?);
                    let mask = BooleanArray::from((0..kept.len()).map(|i| i != index).collect::<Vec<_>>());
                    rows =
                        filter_record_batch(&rows, &mask).map_err(|e| Halt::Failed(Error::Internal(e.to_string())))?;
                    kept.to_mut().remove(index);
                }
                Err(e) if e.is_retriable() => {
                    tracing::warn!(step = %self.name, error = %e, backoff_ms = backoff, "writing to the sink failed, retrying");
                    self.stop.sleep(backoff).await?;
                    backoff = (backoff * 2).min(self.settings.max_backoff_ms);
                }
                Err(e) => return Err(Halt::Failed(e)),
            }
        }
        let n_dead = letters.len() as u64;
        if let Some(topic) = self.on_error.dead_letter_topic() {
            write_dead_letters(self.access.as_ref(), topic, letters, &self.settings, &self.stop).await?;
        }
        self.status.count(records.len() as u64, kept.len() as u64, n_dead);
        Ok(())
    }

    /// The format spec for this batch: the declared schema, or the inferred one grown by what
    /// this batch has that earlier ones did not.
    fn spec_for(&self, values: &[Option<&[u8]>], schema: &mut Option<SchemaRef>) -> Result<FormatSpec, Halt> {
        grow_schema(&self.format, values.iter().flatten().copied(), schema)?;
        Ok(match schema.as_ref() {
            Some(grown) if self.format.schema.is_none() => self.format.clone().with_schema(grown.clone()),
            _ => self.format.clone(),
        })
    }

    /// A dead letter for `record`; under `Fail` the step stops instead.
    fn letter(&self, record: &ConsumerRecord, why: &str, stage: &str) -> Result<OutRecord, Halt> {
        letter(&self.on_error, &self.name, record, why, stage)
    }
}

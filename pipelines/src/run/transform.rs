//! The transform runner: reads a transform's input topic, runs its SQL over each micro-batch,
//! and writes the rows to its topic, exactly once across crashes.
//!
//! Each output record carries its input record (topic, partition and offset) as provenance, and
//! a checkpoint stores the input positions with the output topic's end offsets. After a crash the
//! runner collects the provenances written after the checkpoint and skips those inputs when it
//! reads them again. This holds because a transform is stateless and gives at most one row per
//! input record (the plan is traced: see `brook_engine::jobs::trace`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use brook_broker::access::{ConsumerRecord, OffsetSpec, OutRecord, TopicAccess};
use brook_connectors::runtime::checkpoints::CheckpointStore;
use brook_connectors::runtime::input::{grow_schema, letter, recover_fetch_errors};
use brook_connectors::runtime::produce::{produce_or_return, write_dead_letters};
use brook_connectors::runtime::provenance;
use brook_connectors::runtime::{retrying, ErrorPolicy, Halt, Progress, RunnerSettings, StepState, StepStatus, Stop};
use brook_connectors::{Error, Result};
use brook_engine::catalog::StreamDef;
use brook_engine::dlq::dead_letter;
use brook_engine::format::{Format, FormatSpec};
use brook_engine::jobs::{fetch_round, OutputWriter, QueryPlan};
use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

/// Runs one transform of a pipeline.
pub struct TransformRunner {
    /// The step's name, `<pipeline>.<transform>`: the checkpoint key.
    pub name: String,
    /// The input step's name, which the SQL reads as a table.
    pub input: String,
    /// The input topic.
    pub input_topic: String,
    /// How the input's values are encoded; without a schema it is inferred and grows.
    pub input_format: FormatSpec,
    /// The SELECT.
    pub sql: String,
    /// The topic rows go to, as JSON objects.
    pub topic: String,
    /// What happens to records that do not decode, evaluate or write.
    pub on_error: ErrorPolicy,
    /// The cluster.
    pub access: Arc<dyn TopicAccess>,
    /// Where checkpoints are kept.
    pub checkpoints: Arc<CheckpointStore>,
    /// Bounds and pacing.
    pub settings: RunnerSettings,
    /// Stops the runner.
    pub stop: Stop,
    /// State and counters.
    pub status: Arc<StepStatus>,
}

/// A transform's own checkpoint state.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    /// Per input partition, the next offset to read.
    offsets: Vec<(i32, i64)>,
}

/// The planned SQL over one input schema.
struct Planned {
    plan: QueryPlan,
    writer: OutputWriter,
    /// The result columns written: all but the Kafka metadata columns a `*` carries along
    /// (`_key` stays: the writer makes it the record key).
    kept: Vec<usize>,
}

/// Metadata columns left out of a transform's output unless renamed (`SELECT _offset AS pos`).
const DROPPED_METADATA: [&str; 4] = ["_partition", "_offset", "_timestamp", "_headers"];

impl TransformRunner {
    /// Runs until stopped or an error retrying cannot fix; the outcome is also in the status.
    pub async fn run(mut self) -> Result<()> {
        let outcome = self.run_inner().await;
        self.status.finish(&self.name, "transform", outcome, StepState::Stopped)
    }

    async fn run_inner(&mut self) -> Result<(), Halt> {
        let mut progress = Progress::new(&self.name, &self.topic, self.access.clone(), self.checkpoints.clone());
        let saved = progress.saved().await?;
        let mut positions: BTreeMap<i32, i64> = retrying(&self.settings, &self.stop, "listing offsets", || {
            self.access.list_offsets(&self.input_topic, OffsetSpec::Earliest)
        })
        .await?
        .into_iter()
        .collect();
        if let Some(cp) = saved.as_ref().filter(|c| c.output_topic == self.topic) {
            let state = State::deserialize(&cp.state)
                .map_err(|e| Error::Internal(format!("the checkpoint of {} does not parse: {e}", self.name)))?;
            for (p, o) in state.offsets {
                let floor = positions.get(&p).copied().unwrap_or(0);
                positions.insert(p, o.max(floor));
            }
        }
        progress.recover(saved, &self.settings, &self.stop).await?;
        let mut schema = self.input_format.schema.clone();
        let mut planned: Option<Planned> = None;
        let mut streams = Streams::default();
        self.status.set_state(StepState::Running);
        tracing::info!(step = %self.name, input = %self.input_topic, topic = %self.topic, "transform started");
        let interval = Duration::from_millis(self.settings.checkpoint_interval_ms);
        loop {
            let round = tokio::select! {
                _ = self.stop.wait() => None,
                round = fetch_round(
                    self.access.as_ref(),
                    &self.input_topic,
                    &positions,
                    self.settings.max_batch_records,
                    self.settings.fetch_max_bytes,
                    self.settings.poll_wait_ms,
                ) => Some(round),
            };
            let Some(round) = round else {
                self.save(&mut progress, &positions, &Stop::never()).await?;
                return Err(Halt::Stopped);
            };
            recover_fetch_errors(
                self.access.as_ref(),
                &self.input_topic,
                &self.name,
                round.errors,
                &mut positions,
                &self.settings,
                &self.stop,
            )
            .await?;
            if round.records.is_empty() {
                self.status.note_empty_round();
            } else {
                if self.grow_schema(&round.records, &mut schema)? {
                    planned = None;
                }
                let current = match planned {
                    Some(ref current) => current,
                    None => planned.insert(self.plan(schema.clone()).await?),
                };
                self.process(current, &round.records, &mut progress, &mut streams)
                    .await?;
                for r in &round.records {
                    positions.insert(r.partition, r.offset + 1);
                }
                progress.moved();
            }
            if progress.due(interval) {
                let stop = self.stop.clone();
                self.save(&mut progress, &positions, &stop).await?;
            }
        }
    }

    /// Grows an inferred schema by the fields of `records` it lacks; true when it changed.
    fn grow_schema(&self, records: &[ConsumerRecord], schema: &mut Option<SchemaRef>) -> Result<bool, Halt> {
        grow_schema(
            &self.input_format,
            records.iter().filter_map(|r| r.value.as_deref()),
            schema,
        )
    }

    async fn plan(&self, schema: Option<SchemaRef>) -> Result<Planned, Halt> {
        let mut format = self.input_format.clone();
        format.schema = schema;
        let source = StreamDef {
            name: self.input.clone(),
            topic: self.input_topic.clone(),
            format,
            key_column: None,
        };
        let plan = QueryPlan::new_traced(&self.sql, &source).await.map_err(|e| {
            Halt::Failed(Error::Config {
                connector: "transform",
                message: format!(
                    "{}: the SQL does not plan over the input's columns ({e}); when the input's schema is \
                     inferred from its records, declare it with `schema:` on the source",
                    self.name
                ),
            })
        })?;
        let target = StreamDef {
            name: self.name.clone(),
            topic: self.topic.clone(),
            format: FormatSpec::new(Format::Json),
            key_column: None,
        };
        let schema = plan.output_schema();
        let kept: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !DROPPED_METADATA.contains(&schema.field(*i).name().as_str()))
            .collect();
        let written = Arc::new(schema.project(&kept).map_err(|e| Error::Internal(e.to_string()))?);
        let writer = OutputWriter::new(&target, &written).map_err(Error::from)?;
        Ok(Planned { plan, writer, kept })
    }

    /// Decodes, evaluates and writes one micro-batch.
    async fn process(
        &self,
        planned: &Planned,
        records: &[ConsumerRecord],
        progress: &mut Progress,
        streams: &mut Streams,
    ) -> Result<(), Halt> {
        let by_origin: HashMap<(i32, i64), &ConsumerRecord> =
            records.iter().map(|r| ((r.partition, r.offset), r)).collect();
        let mut letters = Vec::new();
        let decoded = planned.plan.decode(records).map_err(Error::from)?;
        for (i, why) in &decoded.failed {
            letters.push(self.letter(&records[*i], &format!("the value did not decode: {why}"), "decode")?);
        }
        let results = match planned.plan.run_traced(decoded.batch.clone()).await {
            Ok(results) => results,
            Err(_) => {
                // Find the rows at fault one by one; the others still flow, in order.
                let mut results = Vec::new();
                for (row, &i) in decoded.rows.iter().enumerate() {
                    match planned.plan.run_traced(decoded.batch.slice(row, 1)).await {
                        Ok(r) => results.extend(r),
                        Err(e) => letters.push(self.letter(&records[i], &e.to_string(), "eval")?),
                    }
                }
                results
            }
        };
        let mut out = Vec::new();
        for result in &results {
            self.encode(planned, result, &by_origin, progress, streams, &mut out)?;
        }
        let n_out = out.len() as u64;
        let refused = produce_or_return(self.access.as_ref(), &self.topic, out, &self.settings, &self.stop).await?;
        let n_refused = refused.len() as u64;
        for (record, e) in refused {
            if matches!(self.on_error, ErrorPolicy::Fail) {
                return Err(Halt::Failed(Error::External {
                    system: "transform",
                    message: format!("{}: a row could not be written (on_error is fail): {e}", self.name),
                    retriable: false,
                }));
            }
            let mut letter = dead_letter(
                &self.input_topic,
                -1,
                -1,
                record.key,
                record.value,
                &format!("the row could not be written to {}: {e}", self.topic),
                "produce",
            );
            letter.headers.extend(record.headers);
            letters.push(letter);
        }
        let n_dead = letters.len() as u64;
        if let Some(topic) = self.on_error.dead_letter_topic() {
            write_dead_letters(self.access.as_ref(), topic, letters, &self.settings, &self.stop).await?;
        }
        self.status.count(records.len() as u64, n_out - n_refused, n_dead);
        Ok(())
    }

    /// Encodes result rows (with the input partition and offset of each) as records with their
    /// provenance, skipping those already written.
    fn encode(
        &self,
        planned: &Planned,
        (rows, origins): &(RecordBatch, Vec<(i32, i64)>),
        by_origin: &HashMap<(i32, i64), &ConsumerRecord>,
        progress: &mut Progress,
        streams: &mut Streams,
        out: &mut Vec<OutRecord>,
    ) -> Result<(), Halt> {
        let rows = rows
            .project(&planned.kept)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let encoded = planned.writer.records(&rows).map_err(Error::from)?;
        for (mut record, (p, o)) in encoded.into_iter().zip(origins.iter().copied()) {
            let (stream, stream_bytes) = streams.of(&self.input_topic, p);
            if progress.already_written(stream, o as u64) {
                continue;
            }
            if let Some(input) = by_origin.get(&(p, o)) {
                if record.key.is_none() {
                    record.key = input.key.clone();
                }
                record.timestamp_ms = Some(input.timestamp_ms);
            }
            record
                .headers
                .extend(provenance::headers_in(stream_bytes, o as u64, o as u64 + 1));
            out.push(record);
        }
        Ok(())
    }

    /// A dead letter for `record`; under `Fail` the step stops instead.
    fn letter(&self, record: &ConsumerRecord, why: &str, stage: &str) -> Result<OutRecord, Halt> {
        letter(&self.on_error, &self.name, record, why, stage)
    }

    /// Saves the input positions; a remembered provenance is forgotten once its partition is read
    /// past it.
    async fn save(&self, progress: &mut Progress, positions: &BTreeMap<i32, i64>, stop: &Stop) -> Result<(), Halt> {
        let state = State {
            offsets: positions.iter().map(|(p, o)| (*p, *o)).collect(),
        };
        let state = serde_json::to_value(&state).map_err(|e| Error::Internal(e.to_string()))?;
        let passed = |stream: &str, start: u64| {
            let partition = stream
                .strip_prefix(self.input_topic.as_str())
                .and_then(|s| s.strip_prefix(':'))
                .and_then(|p| p.parse::<i32>().ok());
            partition
                .and_then(|p| positions.get(&p))
                .is_some_and(|next| (start as i64) < *next)
        };
        progress.save(state, passed, &self.settings, stop).await
    }
}

/// The provenance stream of each input partition, `<input topic>:<partition>`, made once.
#[derive(Default)]
struct Streams(BTreeMap<i32, (String, Bytes)>);

impl Streams {
    /// The stream of partition `p` of `input_topic`, as text and as header bytes.
    fn of(&mut self, input_topic: &str, p: i32) -> (&str, &Bytes) {
        let (name, bytes) = self.0.entry(p).or_insert_with(|| {
            let name = format!("{input_topic}:{p}");
            let bytes = Bytes::from(name.clone());
            (name, bytes)
        });
        (name, bytes)
    }
}

//! The source runner: polls a source, writes its records (with their positions as provenance
//! headers) to the source's topic, sends what did not parse to the dead-letter topic, and
//! checkpoints the source's state with the topic's end offsets.
//!
//! After a crash it reads the topic from the checkpoint's offsets, collects the positions already
//! written, and drops those records when the source, reopened from the checkpoint, reads them
//! again: each input record lands in the topic once. A remembered position is forgotten once the
//! source has read past it; while some are still remembered, checkpoints keep the older offsets
//! so that a second crash still finds them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brook_broker::access::{OffsetSpec, OutRecord, TopicAccess};
use brook_engine::dlq::dead_letter;

use super::checkpoints::{Checkpoint, CheckpointStore};
use super::produce::{produce_or_return, write_dead_letters};
use super::provenance::{self, written_since};
use super::{retrying, ErrorPolicy, Halt, RunnerSettings, StepState, StepStatus, Stop};
use crate::error::{Error, Result};
use crate::source::{Source, SourceItem};

/// Runs one source of a pipeline.
pub struct SourceRunner {
    /// The step's name, `<pipeline>.<source>`: the checkpoint key.
    pub name: String,
    /// The connector.
    pub source: Box<dyn Source>,
    /// The cluster.
    pub access: Arc<dyn TopicAccess>,
    /// Where checkpoints are kept.
    pub checkpoints: Arc<CheckpointStore>,
    /// The topic records go to (it must exist).
    pub topic: String,
    /// What happens to input that does not parse or that the topic refuses.
    pub on_error: ErrorPolicy,
    /// Bounds and pacing.
    pub settings: RunnerSettings,
    /// Stops the runner.
    pub stop: Stop,
    /// State and counters.
    pub status: Arc<StepStatus>,
}

/// What the runner knows about its progress.
struct Progress {
    /// Positions written after the last checkpoint and not yet read again.
    seen: HashSet<(String, u64)>,
    /// Per stream, where the last item the source returned ended.
    read_to: HashMap<String, u64>,
    /// The output offsets of the last checkpoint.
    from: Vec<(i32, i64)>,
    /// Whether records were written since the last checkpoint.
    dirty: bool,
    last_saved: Instant,
}

impl SourceRunner {
    /// Runs until stopped, the source ends, or an error retrying cannot fix; the outcome is also
    /// recorded in the status.
    pub async fn run(mut self) -> Result<()> {
        let result = self.run_inner().await;
        let (state, result) = match result {
            Ok(()) => (StepState::Finished, Ok(())),
            Err(Halt::Stopped) => (StepState::Stopped, Ok(())),
            Err(Halt::Failed(e)) => {
                tracing::error!(step = %self.name, error = %e, "source failed");
                (StepState::Failed(e.to_string()), Err(e))
            }
        };
        self.status.set_state(state);
        result
    }

    async fn run_inner(&mut self) -> Result<(), Halt> {
        let saved = self.checkpoints.get(&self.name).await?;
        let state = saved.as_ref().map(|c| c.state.clone());
        let from = saved
            .filter(|c| c.output_topic == self.topic)
            .map(|c| c.output_offsets)
            .unwrap_or_default();
        self.open(state).await?;
        let seen = written_since(self.access.as_ref(), &self.topic, &from, &self.settings, &self.stop).await?;
        if !seen.is_empty() {
            tracing::info!(step = %self.name, records = seen.len(), "records written after the last checkpoint will not be written again");
        }
        let mut progress = Progress {
            seen,
            read_to: HashMap::new(),
            from,
            dirty: false,
            last_saved: Instant::now(),
        };
        self.status.set_state(StepState::Running);
        tracing::info!(step = %self.name, topic = %self.topic, "source started");
        let interval = Duration::from_millis(self.settings.checkpoint_interval_ms);
        loop {
            let polled = tokio::select! {
                _ = self.stop.wait() => None,
                polled = self.source.poll(self.settings.max_batch_records, self.settings.poll_wait_ms) => Some(polled),
            };
            let items = match polled {
                None => {
                    self.save(&mut progress, &Stop::never()).await?;
                    return Err(Halt::Stopped);
                }
                Some(Ok(Some(items))) => items,
                Some(Ok(None)) => {
                    progress.dirty = true;
                    self.save(&mut progress, &Stop::never()).await?;
                    tracing::info!(step = %self.name, "source ended");
                    return Ok(());
                }
                Some(Err(e)) if e.is_retriable() => {
                    tracing::warn!(step = %self.name, error = %e, "reading the source failed, retrying");
                    self.stop.sleep(self.settings.retry_backoff_ms).await?;
                    continue;
                }
                Some(Err(e)) => return Err(Halt::Failed(e)),
            };
            if !items.is_empty() {
                self.write(items, &mut progress).await?;
                progress.dirty = true;
            }
            if progress.dirty && progress.last_saved.elapsed() >= interval {
                let stop = self.stop.clone();
                self.save(&mut progress, &stop).await?;
            }
        }
    }

    async fn open(&mut self, state: Option<serde_json::Value>) -> Result<(), Halt> {
        let mut backoff = self.settings.retry_backoff_ms;
        loop {
            self.stop.check()?;
            match self.source.open(state.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retriable() => {
                    tracing::warn!(step = %self.name, error = %e, "opening the source failed, retrying");
                    self.stop.sleep(backoff).await?;
                    backoff = (backoff * 2).min(self.settings.max_backoff_ms);
                }
                Err(e) => return Err(Halt::Failed(e)),
            }
        }
    }

    /// Writes one poll's items: records to the topic, bad input by the error policy.
    async fn write(&mut self, items: Vec<SourceItem>, progress: &mut Progress) -> Result<(), Halt> {
        let n_in = items.len() as u64;
        let mut records = Vec::with_capacity(items.len());
        let mut letters = Vec::new();
        for item in items {
            let p = item.position().clone();
            let read_to = progress.read_to.entry(p.stream.clone()).or_insert(0);
            *read_to = (*read_to).max(p.end);
            if !progress.seen.is_empty() && progress.seen.remove(&(p.stream.clone(), p.start)) {
                continue;
            }
            match item {
                SourceItem::Record(r) => {
                    let mut headers = r.headers;
                    headers.extend(provenance::headers(&p));
                    records.push(OutRecord {
                        partition: None,
                        key: r.key,
                        value: Some(r.value),
                        headers,
                        timestamp_ms: r.timestamp_ms,
                    });
                }
                SourceItem::Bad { raw, error, position } => {
                    let why = format!("input at {}:{} did not parse: {error}", position.stream, position.start);
                    letters.push(self.letter(Some(raw), &why, "parse", &position)?);
                }
            }
        }
        let n_records = records.len() as u64;
        let refused = produce_or_return(self.access.as_ref(), &self.topic, records, &self.settings, &self.stop).await?;
        let n_refused = refused.len() as u64;
        for (record, e) in refused {
            let position = crate::source::Position {
                stream: String::new(),
                start: 0,
                end: 0,
            };
            let why = format!("the record could not be written to {}: {e}", self.topic);
            let mut letter = self.letter(record.value, &why, "produce", &position)?;
            letter.headers.extend(record.headers);
            letters.push(letter);
        }
        let n_dead = letters.len() as u64;
        if let ErrorPolicy::DeadLetter { topic } = &self.on_error {
            write_dead_letters(self.access.as_ref(), topic, letters, &self.settings, &self.stop).await?;
        }
        self.status.count(n_in, n_records - n_refused, n_dead);
        Ok(())
    }

    /// A dead letter for input the step could not write; under `Fail` the step stops instead.
    fn letter(
        &self,
        value: Option<bytes::Bytes>,
        why: &str,
        stage: &str,
        position: &crate::source::Position,
    ) -> Result<OutRecord, Halt> {
        match &self.on_error {
            ErrorPolicy::Fail => Err(Halt::Failed(Error::External {
                system: "source",
                message: format!("{} (on_error is fail)", why),
                retriable: false,
            })),
            ErrorPolicy::DeadLetter { .. } => {
                let mut letter = dead_letter(&self.name, -1, -1, None, value, why, stage);
                if !position.stream.is_empty() {
                    letter.headers.extend(provenance::headers(position));
                }
                Ok(letter)
            }
        }
    }

    /// Saves the source's state with the output offsets that bound what was written after it.
    async fn save(&mut self, progress: &mut Progress, stop: &Stop) -> Result<(), Halt> {
        if !progress.dirty {
            return Ok(());
        }
        let read_to = &progress.read_to;
        progress
            .seen
            .retain(|(stream, start)| read_to.get(stream).is_none_or(|to| *start >= *to));
        if progress.seen.is_empty() {
            progress.from = retrying(&self.settings, stop, "listing offsets", || {
                self.access.list_offsets(&self.topic, OffsetSpec::Latest)
            })
            .await?;
        }
        let checkpoint = Checkpoint {
            state: self.source.checkpoint(),
            output_topic: self.topic.clone(),
            output_offsets: progress.from.clone(),
            saved_ms: now_ms(),
        };
        retrying(&self.settings, stop, "saving a checkpoint", || {
            self.checkpoints.save(&self.name, &checkpoint)
        })
        .await?;
        progress.dirty = false;
        progress.last_saved = Instant::now();
        Ok(())
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

//! The source runner: polls a source, writes its records (with their positions as provenance
//! headers) to the source's topic, sends what did not parse to the dead-letter topic, and
//! checkpoints the source's state with the topic's end offsets.
//!
//! After a crash it reads the topic from the checkpoint's offsets, collects the positions already
//! written, and drops those records when the source, reopened from the checkpoint, reads them
//! again: each input record lands in the topic once. A remembered position is forgotten once the
//! source has read past it; while some are still remembered, checkpoints keep the older offsets
//! so that a second crash still finds them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use brook_broker::access::{OutRecord, TopicAccess};
use brook_engine::dlq::dead_letter;

use super::checkpoints::CheckpointStore;
use super::produce::{produce_or_return, write_dead_letters};
use super::progress::Progress;
use super::provenance;
use super::{ErrorPolicy, Halt, RunnerSettings, StepState, StepStatus, Stop};
use crate::error::{Error, Result};
use crate::source::{Position, Source, SourceItem};

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

/// Per stream, where the last item the source returned ended.
type ReadTo = HashMap<String, u64>;

impl SourceRunner {
    /// Runs until stopped, the source ends, or an error retrying cannot fix; the outcome is also
    /// recorded in the status.
    pub async fn run(mut self) -> Result<()> {
        let outcome = self.run_inner().await;
        self.status.finish(&self.name, "source", outcome, StepState::Finished)
    }

    async fn run_inner(&mut self) -> Result<(), Halt> {
        let mut progress = Progress::new(&self.name, &self.topic, self.access.clone(), self.checkpoints.clone());
        let saved = progress.saved().await?;
        self.open(saved.as_ref().map(|c| c.state.clone())).await?;
        progress.recover(saved, &self.settings, &self.stop).await?;
        let mut read_to = ReadTo::new();
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
                    self.save(&mut progress, &read_to, &Stop::never()).await?;
                    return Err(Halt::Stopped);
                }
                Some(Ok(Some(items))) => items,
                Some(Ok(None)) => {
                    progress.moved();
                    self.save(&mut progress, &read_to, &Stop::never()).await?;
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
                self.write(items, &mut progress, &mut read_to).await?;
                progress.moved();
            }
            if progress.due(interval) {
                let stop = self.stop.clone();
                self.save(&mut progress, &read_to, &stop).await?;
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
    async fn write(
        &mut self,
        items: Vec<SourceItem>,
        progress: &mut Progress,
        read_to: &mut ReadTo,
    ) -> Result<(), Halt> {
        let n_in = items.len() as u64;
        let mut records = Vec::with_capacity(items.len());
        let mut letters = Vec::new();
        for item in items {
            let p = item.position();
            match read_to.get_mut(&p.stream) {
                Some(end) => *end = (*end).max(p.end),
                None => {
                    read_to.insert(p.stream.clone(), p.end);
                }
            }
            if progress.already_written(&p.stream, p.start) {
                continue;
            }
            match item {
                SourceItem::Record(r) => {
                    let mut headers = r.headers;
                    headers.extend(provenance::headers(&r.position));
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
                    letters.push(self.letter(Some(raw), &why, "parse", Some(&position))?);
                }
            }
        }
        let n_records = records.len() as u64;
        let refused = produce_or_return(self.access.as_ref(), &self.topic, records, &self.settings, &self.stop).await?;
        let n_refused = refused.len() as u64;
        for (record, e) in refused {
            let why = format!("the record could not be written to {}: {e}", self.topic);
            let mut letter = self.letter(record.value, &why, "produce", None)?;
            letter.headers.extend(record.headers);
            letters.push(letter);
        }
        let n_dead = letters.len() as u64;
        if let Some(topic) = self.on_error.dead_letter_topic() {
            write_dead_letters(self.access.as_ref(), topic, letters, &self.settings, &self.stop).await?;
        }
        self.status.count(n_in, n_records - n_refused, n_dead);
        Ok(())
    }

    /// A dead letter for input the step could not write (with the provenance of `position`,
    /// when it was read from one); under `Fail` the step stops instead.
    fn letter(
        &self,
        value: Option<bytes::Bytes>,
        why: &str,
        stage: &str,
        position: Option<&Position>,
    ) -> Result<OutRecord, Halt> {
        match &self.on_error {
            ErrorPolicy::Fail => Err(Halt::Failed(Error::External {
                system: "source",
                message: format!("{why} (on_error is fail)"),
                retriable: false,
            })),
            ErrorPolicy::DeadLetter { .. } => {
                let mut letter = dead_letter(&self.name, -1, -1, None, value, why, stage);
                if let Some(position) = position {
                    letter.headers.extend(provenance::headers(position));
                }
                Ok(letter)
            }
        }
    }

    /// Saves the source's state; a remembered position is forgotten once the source has read
    /// past it.
    async fn save(&mut self, progress: &mut Progress, read_to: &ReadTo, stop: &Stop) -> Result<(), Halt> {
        let passed = |stream: &str, start: u64| read_to.get(stream).is_some_and(|to| start < *to);
        let state = self.source.checkpoint();
        progress.save(state, passed, &self.settings, stop).await
    }
}

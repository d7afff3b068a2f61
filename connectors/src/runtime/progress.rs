//! The exactly-once bookkeeping shared by the runners that write a topic without transactions (a
//! source's runner, a pipeline transform's): the step's last checkpoint, the records it wrote
//! after that checkpoint (collected from the output topic after a crash, and skipped when the
//! input returns them again), and saving the next checkpoint with the output's end offsets.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brook_broker::access::{OffsetSpec, TopicAccess};
use brook_broker::broker::now_ms;

use super::checkpoints::{Checkpoint, CheckpointStore};
use super::provenance::written_since;
use super::{retrying, Halt, RunnerSettings, Stop};

/// A step's progress between checkpoints.
pub struct Progress {
    /// The step's name: the checkpoint key.
    name: String,
    /// The topic the step writes.
    topic: String,
    /// The cluster.
    access: Arc<dyn TopicAccess>,
    /// Where checkpoints are kept.
    checkpoints: Arc<CheckpointStore>,
    /// Provenances written after the last checkpoint and not yet read again.
    seen: HashSet<(String, u64)>,
    /// The output offsets of the last checkpoint.
    from: Vec<(i32, i64)>,
    /// Whether the step moved since the last checkpoint.
    dirty: bool,
    /// When the last checkpoint was saved.
    last_saved: Instant,
}

impl Progress {
    /// The progress of step `name` writing `topic`; nothing is read until [`Progress::saved`].
    pub fn new(name: &str, topic: &str, access: Arc<dyn TopicAccess>, checkpoints: Arc<CheckpointStore>) -> Progress {
        Progress {
            name: name.to_string(),
            topic: topic.to_string(),
            access,
            checkpoints,
            seen: HashSet::new(),
            from: Vec::new(),
            dirty: false,
            last_saved: Instant::now(),
        }
    }

    /// The step's last checkpoint, if it has one.
    pub async fn saved(&self) -> Result<Option<Checkpoint>, Halt> {
        Ok(self.checkpoints.get(&self.name).await?)
    }

    /// Collects the provenances of what the step wrote after `saved` (its whole output when it
    /// has no checkpoint for this topic), so that [`Progress::already_written`] recognises them.
    pub async fn recover(
        &mut self,
        saved: Option<Checkpoint>,
        settings: &RunnerSettings,
        stop: &Stop,
    ) -> Result<(), Halt> {
        self.from = saved
            .filter(|c| c.output_topic == self.topic)
            .map(|c| c.output_offsets)
            .unwrap_or_default();
        self.seen = written_since(self.access.as_ref(), &self.topic, &self.from, settings, stop).await?;
        if !self.seen.is_empty() {
            tracing::info!(step = %self.name, records = self.seen.len(), "records written after the last checkpoint will not be written again");
        }
        self.last_saved = Instant::now();
        Ok(())
    }

    /// Whether the input at `start` of `stream` was written before a crash; true once for each.
    pub fn already_written(&mut self, stream: &str, start: u64) -> bool {
        !self.seen.is_empty() && self.seen.remove(&(stream.to_string(), start))
    }

    /// Notes that the step moved, so that the next [`Progress::save`] saves.
    pub fn moved(&mut self) {
        self.dirty = true;
    }

    /// Whether the step moved and the last checkpoint is at least `interval` old.
    pub fn due(&self, interval: Duration) -> bool {
        self.dirty && self.last_saved.elapsed() >= interval
    }

    /// Saves the step's `state` (taken after its last write) with the output offsets that bound
    /// what was written after it, unless the step has not moved. Provenances the input has read past (`passed`: stream,
    /// start) are forgotten first; while some remain, the older output offsets are kept so that
    /// a second crash still finds them.
    pub async fn save(
        &mut self,
        state: serde_json::Value,
        passed: impl Fn(&str, u64) -> bool,
        settings: &RunnerSettings,
        stop: &Stop,
    ) -> Result<(), Halt> {
        if !self.dirty {
            return Ok(());
        }
        self.seen.retain(|(stream, start)| !passed(stream, *start));
        if self.seen.is_empty() {
            self.from = retrying(settings, stop, "listing offsets", || {
                self.access.list_offsets(&self.topic, OffsetSpec::Latest)
            })
            .await?;
        }
        let checkpoint = Checkpoint {
            state,
            output_topic: self.topic.clone(),
            output_offsets: self.from.clone(),
            saved_ms: now_ms(),
        };
        retrying(settings, stop, "saving a checkpoint", || {
            self.checkpoints.save(&self.name, &checkpoint)
        })
        .await?;
        self.dirty = false;
        self.last_saved = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use brook_broker::access::{EmbeddedAccess, OutRecord};
    use brook_broker::{Broker, BrokerConfig};
    use serde_json::json;

    use super::*;
    use crate::runtime::produce::ensure_topic;
    use crate::runtime::provenance;
    use crate::source::Position;

    /// Writes one record read from `start..end` of stream `f` to `out`, as a step does.
    async fn write(access: &dyn TopicAccess, start: u64, end: u64) {
        let position = Position {
            stream: "f".into(),
            start,
            end,
        };
        let record = OutRecord {
            partition: None,
            key: None,
            value: Some(bytes::Bytes::from_static(b"{}")),
            headers: provenance::headers(&position).to_vec(),
            timestamp_ms: None,
        };
        access.produce("out", vec![record]).await.expect("produced");
    }

    /// The output offsets of the checkpoint a restarted step would read.
    async fn saved_offsets(access: &Arc<dyn TopicAccess>) -> Vec<(i32, i64)> {
        let store = CheckpointStore::new(access.clone());
        store
            .get("p.s")
            .await
            .expect("read")
            .expect("a checkpoint")
            .output_offsets
    }

    #[tokio::test]
    async fn what_was_written_after_a_checkpoint_is_skipped_once_and_keeps_that_checkpoint() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = BrokerConfig::new(dir.path().to_path_buf());
        config.set("offsets.topic.num.partitions", "1").expect("a valid config");
        let broker = Broker::open(config).expect("broker opens");
        let access: Arc<dyn TopicAccess> = Arc::new(EmbeddedAccess::new(broker.clone()));
        ensure_topic(access.as_ref(), "out", 1).await.expect("topic");
        let (settings, stop) = (RunnerSettings::default(), Stop::never());
        let none_passed = |_: &str, _: u64| false;

        // A first run writes one record and checkpoints, then writes two more and crashes.
        let checkpoints = Arc::new(CheckpointStore::new(access.clone()));
        let mut first = Progress::new("p.s", "out", access.clone(), checkpoints);
        let saved = first.saved().await.expect("read");
        assert!(saved.is_none(), "a first run has no checkpoint");
        first.recover(saved, &settings, &stop).await.expect("recovered");
        write(access.as_ref(), 0, 5).await;
        first
            .save(json!({"at": 5}), none_passed, &settings, &stop)
            .await
            .expect("saved");
        assert!(
            CheckpointStore::new(access.clone())
                .get("p.s")
                .await
                .expect("read")
                .is_none(),
            "a step that has not moved saves nothing"
        );
        first.moved();
        first
            .save(json!({"at": 5}), none_passed, &settings, &stop)
            .await
            .expect("saved");
        assert_eq!(saved_offsets(&access).await, vec![(0, 1)]);
        write(access.as_ref(), 5, 10).await;
        write(access.as_ref(), 10, 15).await;
        drop(first);

        // The restarted run recognises each record written after the checkpoint, once.
        let checkpoints = Arc::new(CheckpointStore::new(access.clone()));
        let mut again = Progress::new("p.s", "out", access.clone(), checkpoints);
        let saved = again.saved().await.expect("read").expect("a checkpoint");
        assert_eq!(saved.state, json!({"at": 5}));
        again.recover(Some(saved), &settings, &stop).await.expect("recovered");
        assert!(!again.already_written("f", 0), "written before the checkpoint");
        assert!(again.already_written("f", 5));
        assert!(!again.already_written("f", 5), "recognised once");

        // While the input has not come back to 10, a save keeps the checkpoint's offsets, so
        // that a second crash still finds that record; once it has, the save moves to the end.
        again.moved();
        let passed_10 = |stream: &str, start: u64| stream == "f" && start < 10;
        again
            .save(json!({"at": 10}), passed_10, &settings, &stop)
            .await
            .expect("saved");
        assert_eq!(saved_offsets(&access).await, vec![(0, 1)]);
        again.moved();
        let passed_15 = |stream: &str, start: u64| stream == "f" && start < 15;
        again
            .save(json!({"at": 15}), passed_15, &settings, &stop)
            .await
            .expect("saved");
        assert_eq!(saved_offsets(&access).await, vec![(0, 3)]);
        assert!(!again.already_written("f", 10), "forgotten once read past");
        broker.close().expect("closed");
    }
}

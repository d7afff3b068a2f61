//! Step checkpoints in the compacted topic `_brook_checkpoints`: a step's state (a source's
//! position, a transform's input offsets) and the end offsets of its output topic when the state
//! was taken, keyed by the step's name. Keeping them in a topic makes a pipeline restartable on
//! any machine that reaches the cluster, the way Kafka Connect keeps source offsets.

use std::collections::HashMap;
use std::sync::Arc;

use brook_broker::access::{OffsetSpec, OutRecord, TopicAccess, TopicSpec};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::error::{Error, Result};

/// The topic holding every step's checkpoints.
pub const CHECKPOINTS_TOPIC: &str = "_brook_checkpoints";

/// The most bytes one fetch asks for while loading checkpoints.
const LOAD_FETCH_BYTES: usize = 1 << 20;

/// One step's committed position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The step's own state: a source's checkpoint, or a transform's input offsets.
    pub state: serde_json::Value,
    /// The topic the step writes.
    pub output_topic: String,
    /// Per partition of the output topic, its end offset when the state was taken: every record
    /// the step wrote after the state was taken is at or after these offsets.
    pub output_offsets: Vec<(i32, i64)>,
    /// When it was saved, in ms since the epoch.
    pub saved_ms: i64,
}

/// Reads and writes checkpoints; loads the topic once and then serves from memory.
pub struct CheckpointStore {
    access: Arc<dyn TopicAccess>,
    loaded: Mutex<Option<HashMap<String, Checkpoint>>>,
}

impl CheckpointStore {
    /// A store over `access`; nothing is read until the first [`CheckpointStore::get`].
    pub fn new(access: Arc<dyn TopicAccess>) -> CheckpointStore {
        CheckpointStore {
            access,
            loaded: Mutex::new(None),
        }
    }

    /// The last checkpoint saved under `name`, if any.
    pub async fn get(&self, name: &str) -> Result<Option<Checkpoint>> {
        let mut loaded = self.loaded.lock().await;
        if loaded.is_none() {
            *loaded = Some(self.load().await?);
        }
        Ok(loaded.as_ref().and_then(|all| all.get(name).cloned()))
    }

    /// Saves `checkpoint` under `name`, durably, once the call returns.
    pub async fn save(&self, name: &str, checkpoint: &Checkpoint) -> Result<()> {
        let value =
            serde_json::to_vec(checkpoint).map_err(|e| Error::Internal(format!("encoding a checkpoint: {e}")))?;
        let record = OutRecord {
            partition: Some(0),
            key: Some(Bytes::copy_from_slice(name.as_bytes())),
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp_ms: None,
        };
        match self.access.produce(CHECKPOINTS_TOPIC, vec![record.clone()]).await {
            Err(brook_broker::Error::UnknownTopicOrPartition(_)) => {
                self.create().await?;
                self.access.produce(CHECKPOINTS_TOPIC, vec![record]).await?;
            }
            other => {
                other?;
            }
        }
        if let Some(all) = self.loaded.lock().await.as_mut() {
            all.insert(name.to_string(), checkpoint.clone());
        }
        Ok(())
    }

    async fn create(&self) -> Result<()> {
        let spec = TopicSpec {
            name: CHECKPOINTS_TOPIC.to_string(),
            partitions: 1,
            configs: vec![
                ("cleanup.policy".into(), "compact".into()),
                ("segment.bytes".into(), (16 << 20).to_string()),
                ("segment.ms".into(), (3_600_000).to_string()),
            ],
        };
        match self.access.create_topic(spec).await {
            Ok(()) | Err(brook_broker::Error::TopicAlreadyExists(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the whole topic; the last value of each key wins.
    async fn load(&self) -> Result<HashMap<String, Checkpoint>> {
        let mut all = HashMap::new();
        let end = match self.access.list_offsets(CHECKPOINTS_TOPIC, OffsetSpec::Latest).await {
            Ok(offsets) => offsets.first().map(|(_, o)| *o).unwrap_or(0),
            Err(brook_broker::Error::UnknownTopicOrPartition(_)) => return Ok(all),
            Err(e) => return Err(e.into()),
        };
        let mut next = self
            .access
            .list_offsets(CHECKPOINTS_TOPIC, OffsetSpec::Earliest)
            .await?
            .first()
            .map(|(_, o)| *o)
            .unwrap_or(0);
        while next < end {
            let fetched = self
                .access
                .fetch(CHECKPOINTS_TOPIC, 0, next, LOAD_FETCH_BYTES, 0)
                .await?;
            if fetched.records.is_empty() {
                // Compaction can leave a gap below the end; never spin on it.
                if fetched.high_watermark <= next {
                    break;
                }
                next = fetched.log_start_offset.max(next + 1);
                continue;
            }
            let from = next;
            for r in fetched.records.into_iter().filter(|r| r.offset >= from) {
                next = r.offset + 1;
                let Some(key) = r.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()) else {
                    continue;
                };
                match r.value.as_deref().map(serde_json::from_slice::<Checkpoint>) {
                    Some(Ok(cp)) => {
                        all.insert(key, cp);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(step = %key, offset = r.offset, error = %e, "skipping an unreadable checkpoint")
                    }
                    None => {
                        all.remove(&key);
                    }
                }
            }
        }
        Ok(all)
    }
}

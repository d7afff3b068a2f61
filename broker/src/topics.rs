//! The topics a broker holds: names, ids, partition logs and per-topic configs, persisted as
//! one small properties file per topic so that they survive restarts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use crate::config::{validate_topic_config, BrokerConfig, TopicRules};
use crate::error::{Error, Result};
use crate::log::{AppendSignal, PartitionLog};

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_CHARS: usize = 249;
/// Most partitions one topic may have; a bound on files and memory.
pub const MAX_PARTITIONS: i32 = 10_000;

/// Checks a topic name against Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidTopic {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("the name is empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if name.len() > MAX_TOPIC_NAME_CHARS {
        return bad("the name is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Kafka's internal topics, written only by the broker's coordinators.
pub const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

/// Whether a topic is one of Kafka's internal topics.
pub fn is_internal_topic(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

/// A topic: its identity, partition logs and config overrides.
pub struct Topic {
    /// The topic's name.
    pub name: String,
    /// The topic id reported in Metadata v10+.
    pub id: Uuid,
    state: RwLock<TopicState>,
}

struct TopicState {
    partitions: Vec<Arc<PartitionLog>>,
    configs: BTreeMap<String, String>,
}

impl Topic {
    /// The partition logs, in partition order.
    pub fn partitions(&self) -> Vec<Arc<PartitionLog>> {
        self.state.read().expect("topic lock").partitions.clone()
    }

    /// The number of partitions.
    pub fn partition_count(&self) -> i32 {
        self.state.read().expect("topic lock").partitions.len() as i32
    }

    /// One partition's log.
    pub fn partition(&self, index: i32) -> Option<Arc<PartitionLog>> {
        let state = self.state.read().expect("topic lock");
        usize::try_from(index)
            .ok()
            .and_then(|i| state.partitions.get(i).cloned())
    }

    /// The topic's own config overrides.
    pub fn configs(&self) -> BTreeMap<String, String> {
        self.state.read().expect("topic lock").configs.clone()
    }

    /// Whether this is one of Kafka's internal topics.
    pub fn is_internal(&self) -> bool {
        is_internal_topic(&self.name)
    }
}

/// Every topic of the broker, loaded from and saved to the data directory.
pub struct Topics {
    data_dir: PathBuf,
    meta_dir: PathBuf,
    /// Partition directories being removed are renamed here first (one atomic step), so a crash
    /// mid-removal leaves nothing under a partition's name.
    trash_dir: PathBuf,
    signal: AppendSignal,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises create, delete and alter so that files and memory change together.
    admin: std::sync::Mutex<()>,
}

impl Topics {
    /// Loads every topic recorded in `data_dir`, recovering each partition's log.
    pub fn open(broker: &BrokerConfig, signal: AppendSignal) -> Result<Topics> {
        let data_dir = broker.data_dir.clone();
        let meta_dir = data_dir.join(".brook-meta").join("topics");
        std::fs::create_dir_all(&meta_dir).map_err(|e| Error::io(format!("creating {}", meta_dir.display()), e))?;
        let trash_dir = data_dir.join(".brook-meta").join("trash");
        // Whatever a crash left in the trash is removed now; the directory itself must exist.
        let _ = std::fs::remove_dir_all(&trash_dir);
        std::fs::create_dir_all(&trash_dir).map_err(|e| Error::io(format!("creating {}", trash_dir.display()), e))?;
        let topics = Topics {
            data_dir,
            meta_dir: meta_dir.clone(),
            trash_dir,
            signal,
            topics: RwLock::new(BTreeMap::new()),
            admin: Default::default(),
        };
        let entries =
            std::fs::read_dir(&meta_dir).map_err(|e| Error::io(format!("reading {}", meta_dir.display()), e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io("listing topic metadata", e))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("properties") {
                continue;
            }
            let (name, id, count, configs) = read_topic_file(&path)?;
            let mut partitions = Vec::with_capacity(count as usize);
            for p in 0..count {
                let log = PartitionLog::open(
                    &topics.partition_dir(&name, p),
                    broker.log_config(&configs),
                    topics.signal.clone(),
                )?;
                partitions.push(Arc::new(log));
            }
            tracing::info!(topic = %name, partitions = count, "topic loaded");
            let topic = Topic {
                name: name.clone(),
                id,
                state: RwLock::new(TopicState { partitions, configs }),
            };
            topics
                .topics
                .write()
                .expect("topics lock")
                .insert(name, Arc::new(topic));
        }
        Ok(topics)
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{partition}"))
    }

    /// A topic by name.
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().expect("topics lock").get(name).cloned()
    }

    /// Every topic, by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.topics.read().expect("topics lock").values().cloned().collect()
    }

    /// One partition's log and the topic's produce rules.
    pub fn partition(
        &self,
        broker: &BrokerConfig,
        topic: &str,
        partition: i32,
    ) -> Result<(Arc<PartitionLog>, TopicRules)> {
        let t = self
            .get(topic)
            .ok_or_else(|| Error::UnknownTopicOrPartition(topic.to_string()))?;
        Ok((Self::log_of(&t, partition)?, broker.topic_rules(&t.configs())))
    }

    /// One partition's log, for paths that need no topic configs (fetch, offsets lookups):
    /// cheaper than `partition`, which derives the produce rules from the topic's configs.
    pub fn log(&self, topic: &str, partition: i32) -> Result<Arc<PartitionLog>> {
        let t = self
            .get(topic)
            .ok_or_else(|| Error::UnknownTopicOrPartition(topic.to_string()))?;
        Self::log_of(&t, partition)
    }

    fn log_of(topic: &Topic, partition: i32) -> Result<Arc<PartitionLog>> {
        topic
            .partition(partition)
            .ok_or_else(|| Error::UnknownTopicOrPartition(format!("{}-{partition}", topic.name)))
    }

    /// Creates a topic; with `validate_only`, only checks that it could be created.
    pub fn create(
        &self,
        broker: &BrokerConfig,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>> {
        validate_topic_name(name)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(Error::InvalidPartitions(format!(
                "{partitions} partitions requested; a topic has 1 to {MAX_PARTITIONS}"
            )));
        }
        for (k, v) in &configs {
            validate_topic_config(k, v)?;
        }
        let _admin = self.admin.lock().expect("admin lock");
        if let Some(existing) = self.get(name) {
            if validate_only {
                return Err(Error::TopicAlreadyExists(name.to_string()));
            }
            return Err(Error::TopicAlreadyExists(existing.name.clone()));
        }
        let colliding = self
            .topics
            .read()
            .expect("topics lock")
            .keys()
            .find(|k| k.replace('.', "_") == name.replace('.', "_"))
            .cloned();
        if let Some(other) = colliding {
            return Err(Error::InvalidTopic {
                name: name.to_string(),
                reason: format!(
                    "it collides with topic {other} because '.' and '_' are interchangeable in metric names"
                ),
            });
        }
        let id = Uuid::new_v4();
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id,
            state: RwLock::new(TopicState {
                partitions: Vec::new(),
                configs,
            }),
        });
        if validate_only {
            return Ok(topic);
        }
        let configs = topic.configs();
        let mut logs = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            // A directory without a topic file is left from a crash during create or delete: its
            // data belongs to no topic, and a new topic must never inherit it.
            self.remove_partition_dir(name, p);
            logs.push(Arc::new(PartitionLog::open(
                &self.partition_dir(name, p),
                broker.log_config(&configs),
                self.signal.clone(),
            )?));
        }
        topic.state.write().expect("topic lock").partitions = logs;
        if let Err(e) = self.save(&topic) {
            for p in 0..partitions {
                self.remove_partition_dir(name, p);
            }
            return Err(e);
        }
        self.topics
            .write()
            .expect("topics lock")
            .insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "topic created");
        Ok(topic)
    }

    /// Deletes a topic and its data.
    pub fn delete(&self, name: &str) -> Result<()> {
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self
            .topics
            .write()
            .expect("topics lock")
            .remove(name)
            .ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string()))?;
        let file = self.topic_file(&topic);
        std::fs::remove_file(&file).map_err(|e| Error::io(format!("removing {}", file.display()), e))?;
        sync_dir(&self.meta_dir)?;
        for (p, log) in topic.partitions().iter().enumerate() {
            // Closing first makes an append racing with the delete fail instead of being
            // acknowledged into a file about to disappear.
            if let Err(e) = log.close() {
                tracing::warn!(topic = name, partition = p, error = %e, "closing a deleted partition failed");
            }
            self.remove_partition_dir(name, p as i32);
        }
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Grows a topic to `total` partitions.
    pub fn create_partitions(&self, broker: &BrokerConfig, name: &str, total: i32, validate_only: bool) -> Result<()> {
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self
            .get(name)
            .ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string()))?;
        if topic.is_internal() {
            return Err(Error::InvalidTopic {
                name: name.to_string(),
                reason: "the partitions of an internal topic cannot change: groups would map to other partitions"
                    .to_string(),
            });
        }
        let current = topic.partition_count();
        if total <= current {
            return Err(Error::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the new count {total} must be larger"
            )));
        }
        if total > MAX_PARTITIONS {
            return Err(Error::InvalidPartitions(format!(
                "{total} partitions requested; a topic has at most {MAX_PARTITIONS}"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let configs = topic.configs();
        let mut added = Vec::new();
        for p in current..total {
            self.remove_partition_dir(name, p);
            added.push(Arc::new(PartitionLog::open(
                &self.partition_dir(name, p),
                broker.log_config(&configs),
                self.signal.clone(),
            )?));
        }
        topic.state.write().expect("topic lock").partitions.extend(added);
        self.save(&topic)?;
        tracing::info!(topic = name, partitions = total, "partitions added");
        Ok(())
    }

    /// Replaces a topic's config overrides after validating every entry, and applies them to its logs.
    pub fn set_configs(
        &self,
        broker: &BrokerConfig,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<()> {
        for (k, v) in &configs {
            validate_topic_config(k, v)?;
        }
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self
            .get(name)
            .ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string()))?;
        if validate_only {
            return Ok(());
        }
        let log_config = broker.log_config(&configs);
        topic.state.write().expect("topic lock").configs = configs;
        self.save(&topic)?;
        for log in topic.partitions() {
            log.set_config(log_config.clone());
        }
        Ok(())
    }

    /// Re-applies broker defaults to every log after a broker config change.
    pub fn refresh_log_configs(&self, broker: &BrokerConfig) {
        for topic in self.all() {
            let config = broker.log_config(&topic.configs());
            for log in topic.partitions() {
                log.set_config(config.clone());
            }
        }
    }

    /// Moves a partition directory aside and removes it, if it exists.
    fn remove_partition_dir(&self, topic: &str, partition: i32) {
        let dir = self.partition_dir(topic, partition);
        if !dir.exists() {
            return;
        }
        let doomed = self.trash_dir.join(Uuid::new_v4().simple().to_string());
        if let Err(e) = std::fs::rename(&dir, &doomed) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not move a partition directory aside");
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&doomed) {
            tracing::warn!(dir = %doomed.display(), error = %e, "could not remove a partition directory");
        }
    }

    /// The file holding a topic's name, id, partition count and overrides. It is named by the topic
    /// id: a 249-character topic name plus a suffix would pass the file system's 255-byte limit.
    fn topic_file(&self, topic: &Topic) -> PathBuf {
        self.meta_dir.join(format!("{}.properties", topic.id.simple()))
    }

    fn save(&self, topic: &Topic) -> Result<()> {
        let state = topic.state.read().expect("topic lock");
        let mut text = format!(
            "topic.name={}\ntopic.id={}\npartitions={}\n",
            topic.name,
            topic.id,
            state.partitions.len()
        );
        for (k, v) in &state.configs {
            text.push_str(&format!("config.{k}={v}\n"));
        }
        write_atomically(&self.topic_file(topic), text.as_bytes())
    }
}

fn read_topic_file(path: &Path) -> Result<(String, Uuid, i32, BTreeMap<String, String>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let corrupt = |reason: String| Error::CorruptLog {
        path: path.display().to_string(),
        reason,
    };
    let (mut name, mut id, mut count, mut configs) = (None, None, None, BTreeMap::new());
    for (n, line) in text.lines().enumerate() {
        let Some((k, v)) = line.split_once('=') else { continue };
        match k {
            "topic.name" => name = Some(v.to_string()),
            "topic.id" => {
                id = Some(Uuid::parse_str(v).map_err(|e| corrupt(format!("line {}: bad topic id: {e}", n + 1)))?)
            }
            "partitions" => {
                count = Some(
                    v.parse::<i32>()
                        .map_err(|e| corrupt(format!("line {}: bad partition count: {e}", n + 1)))?,
                )
            }
            _ => {
                if let Some(c) = k.strip_prefix("config.") {
                    configs.insert(c.to_string(), v.to_string());
                }
            }
        }
    }
    match (name, id, count) {
        (Some(name), Some(id), Some(count)) => Ok((name, id, count, configs)),
        _ => Err(corrupt("missing topic.name, topic.id or partitions".to_string())),
    }
}

/// Writes a file so that a crash leaves either the old or the new content: temp file, fsync, rename, fsync dir.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("creating", e))?;
    f.write_all(bytes).map_err(|e| io("writing", e))?;
    f.sync_all().map_err(|e| io("syncing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("renaming", e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_topic_never_inherits_a_leftover_partition_directory() {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerConfig::new(dir.path().to_path_buf());
        // A partition directory with a segment but no topic file, as a crash mid-delete leaves.
        let orphan = dir.path().join("t-0");
        std::fs::create_dir_all(&orphan).unwrap();
        std::fs::write(orphan.join("00000000000000000000.log"), b"leftover bytes").unwrap();
        let topics = Topics::open(&broker, AppendSignal::default()).unwrap();
        let topic = topics.create(&broker, "t", 1, BTreeMap::new(), false).unwrap();
        let log = topic.partition(0).unwrap();
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset(), log.size_bytes()),
            (0, 0, 0)
        );
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "my-topic_1.v2", &"x".repeat(249)] {
            validate_topic_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "has space", "slash/", &"x".repeat(250), "ünïcode"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} should be refused");
        }
    }
}

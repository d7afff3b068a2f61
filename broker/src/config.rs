//! Broker and topic configuration under Kafka's names, defined once in a table so that
//! parsing, validation, defaults and DescribeConfigs all read the same source.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::log::LogConfig;

/// The type and range of a config value.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A 64-bit integer at least `min`.
    Long {
        /// Smallest accepted value.
        min: i64,
    },
    /// A boolean, `true` or `false`.
    Bool,
    /// One of a fixed list of words.
    Enum(&'static [&'static str]),
    /// A comma-separated list drawn from a fixed list of words.
    List(&'static [&'static str]),
}

/// One topic config: its Kafka name, the broker config that supplies its default, and its type.
#[derive(Debug)]
pub struct TopicConfigDef {
    /// The topic-level name, e.g. `retention.ms`.
    pub name: &'static str,
    /// The broker-level name whose value is the default, e.g. `log.retention.ms`.
    pub broker_name: &'static str,
    /// Type and bounds.
    pub kind: Kind,
    /// Brook's default when neither topic nor broker sets it.
    pub default: &'static str,
    /// One line for `topics describe` and DescribeConfigs documentation.
    pub doc: &'static str,
}

const DAY_MS: &str = "604800000";

/// Every topic config Brook accepts, alphabetical.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        kind: Kind::List(&["delete", "compact"]),
        default: "delete",
        doc: "delete old segments, compact by key, or both",
    },
    TopicConfigDef {
        name: "compression.type",
        broker_name: "compression.type",
        kind: Kind::Enum(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        default: "producer",
        doc: "batches are stored as the producer compressed them (only producer is supported)",
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        broker_name: "log.cleaner.delete.retention.ms",
        kind: Kind::Long { min: 0 },
        default: "86400000",
        doc: "how long tombstones are kept on compacted topics",
    },
    TopicConfigDef {
        name: "file.delete.delay.ms",
        broker_name: "log.segment.delete.delay.ms",
        kind: Kind::Long { min: 0 },
        default: "60000",
        doc: "accepted for compatibility; segments are deleted at once",
    },
    TopicConfigDef {
        name: "flush.messages",
        broker_name: "log.flush.interval.messages",
        kind: Kind::Long { min: 1 },
        default: "1",
        doc: "1 = fsync before acknowledging (group commit); N = fsync every N messages, acks do not wait",
    },
    TopicConfigDef {
        name: "flush.ms",
        broker_name: "log.flush.interval.ms",
        kind: Kind::Long { min: 0 },
        default: "9223372036854775807",
        doc: "fsync at least this often when flush.messages > 1",
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        broker_name: "log.index.interval.bytes",
        kind: Kind::Long { min: 0 },
        default: "4096",
        doc: "bytes of log between offset index entries",
    },
    TopicConfigDef {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        kind: Kind::Long { min: 0 },
        default: "1048588",
        doc: "largest record batch accepted",
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        kind: Kind::Enum(&["CreateTime", "LogAppendTime"]),
        default: "CreateTime",
        doc: "keep the producer's timestamps or stamp the append time",
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        broker_name: "log.cleaner.min.compaction.lag.ms",
        kind: Kind::Long { min: 0 },
        default: "0",
        doc: "accepted for compatibility",
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        broker_name: "min.insync.replicas",
        kind: Kind::Long { min: 1 },
        default: "1",
        doc: "a single node is always in sync with itself",
    },
    TopicConfigDef {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        kind: Kind::Long { min: -1 },
        default: "-1",
        doc: "delete old segments past this size per partition, -1 = unlimited",
    },
    TopicConfigDef {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        kind: Kind::Long { min: -1 },
        default: DAY_MS,
        doc: "delete segments older than this, -1 = unlimited",
    },
    TopicConfigDef {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        kind: Kind::Long { min: 14 },
        default: "1073741824",
        doc: "roll to a new segment at this size",
    },
    TopicConfigDef {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        kind: Kind::Long { min: 1 },
        default: DAY_MS,
        doc: "roll to a new segment after this long",
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        broker_name: "unclean.leader.election.enable",
        kind: Kind::Bool,
        default: "false",
        doc: "accepted for compatibility; a single node has no replicas",
    },
];

/// One broker-only config (not a topic default).
#[derive(Debug)]
pub struct BrokerConfigDef {
    /// Kafka's name.
    pub name: &'static str,
    /// Type and bounds.
    pub kind: Kind,
    /// Brook's default.
    pub default: &'static str,
    /// Whether AlterConfigs may change it while running.
    pub dynamic: bool,
    /// One line of documentation.
    pub doc: &'static str,
}

/// Broker configs that are not topic defaults, alphabetical.
pub const BROKER_CONFIGS: &[BrokerConfigDef] = &[
    BrokerConfigDef {
        name: "auto.create.topics.enable",
        kind: Kind::Bool,
        default: "true",
        dynamic: true,
        doc: "create a topic when a client asks for its metadata",
    },
    BrokerConfigDef {
        name: "connections.max.idle.ms",
        kind: Kind::Long { min: 1 },
        default: "600000",
        dynamic: false,
        doc: "close connections idle this long",
    },
    BrokerConfigDef {
        name: "default.replication.factor",
        kind: Kind::Long { min: 1 },
        default: "1",
        dynamic: false,
        doc: "a single node holds one replica",
    },
    BrokerConfigDef {
        name: "group.consumer.heartbeat.interval.ms",
        kind: Kind::Long { min: 1 },
        default: "5000",
        dynamic: true,
        doc: "how often KIP-848 consumer group members are asked to heartbeat",
    },
    BrokerConfigDef {
        name: "group.consumer.max.size",
        kind: Kind::Long { min: 1 },
        default: "1000",
        dynamic: true,
        doc: "most members in one KIP-848 consumer group (Kafka's default is unbounded)",
    },
    BrokerConfigDef {
        name: "group.consumer.session.timeout.ms",
        kind: Kind::Long { min: 1 },
        default: "45000",
        dynamic: true,
        doc: "a KIP-848 consumer group member that does not heartbeat this long is removed",
    },
    BrokerConfigDef {
        name: "group.initial.rebalance.delay.ms",
        kind: Kind::Long { min: 0 },
        default: "3000",
        dynamic: false,
        doc: "how long the first rebalance of an empty classic group waits for more members to join",
    },
    BrokerConfigDef {
        name: "group.max.session.timeout.ms",
        kind: Kind::Long { min: 1 },
        default: "1800000",
        dynamic: false,
        doc: "largest session timeout a classic group member may ask for",
    },
    BrokerConfigDef {
        name: "group.max.size",
        kind: Kind::Long { min: 1 },
        default: "2147483647",
        dynamic: false,
        doc: "most members in one classic group",
    },
    BrokerConfigDef {
        name: "group.min.session.timeout.ms",
        kind: Kind::Long { min: 1 },
        default: "6000",
        dynamic: false,
        doc: "smallest session timeout a classic group member may ask for",
    },
    BrokerConfigDef {
        name: "log.retention.check.interval.ms",
        kind: Kind::Long { min: 1 },
        default: "300000",
        dynamic: false,
        doc: "how often retention runs",
    },
    BrokerConfigDef {
        name: "max.incremental.fetch.session.cache.slots",
        kind: Kind::Long { min: 0 },
        default: "1000",
        dynamic: false,
        doc: "incremental fetch sessions kept at once; 0 turns them off",
    },
    BrokerConfigDef {
        name: "max.connections",
        kind: Kind::Long { min: 1 },
        default: "4096",
        dynamic: false,
        doc: "connections accepted at once; more are closed",
    },
    BrokerConfigDef {
        name: "num.partitions",
        kind: Kind::Long { min: 1 },
        default: "1",
        dynamic: true,
        doc: "partitions of an auto-created topic or of one created without a count",
    },
    BrokerConfigDef {
        name: "offset.metadata.max.bytes",
        kind: Kind::Long { min: 0 },
        default: "4096",
        dynamic: false,
        doc: "longest metadata string an offset commit may carry",
    },
    BrokerConfigDef {
        name: "offsets.retention.check.interval.ms",
        kind: Kind::Long { min: 1 },
        default: "600000",
        dynamic: false,
        doc: "how often committed offsets of empty groups are checked for expiry",
    },
    BrokerConfigDef {
        name: "offsets.retention.minutes",
        kind: Kind::Long { min: 1 },
        default: "10080",
        dynamic: false,
        doc: "committed offsets of an empty group expire this long after their commit",
    },
    BrokerConfigDef {
        name: "offsets.topic.num.partitions",
        kind: Kind::Long { min: 1 },
        default: "50",
        dynamic: false,
        doc: "partitions of __consumer_offsets when it is created",
    },
    BrokerConfigDef {
        name: "queued.max.requests",
        kind: Kind::Long { min: 1 },
        default: "32",
        dynamic: false,
        doc: "requests in flight per connection before reading pauses; bounds the responses a connection holds",
    },
    BrokerConfigDef {
        name: "socket.request.max.bytes",
        kind: Kind::Long { min: 1024 },
        default: "104857600",
        dynamic: false,
        doc: "largest request frame; a larger one closes the connection",
    },
    BrokerConfigDef {
        name: "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        kind: Kind::Long { min: 1 },
        default: "10000",
        dynamic: false,
        doc: "how often transactions open longer than their timeout are looked for and aborted",
    },
    BrokerConfigDef {
        name: "transaction.max.partitions",
        kind: Kind::Long { min: 1 },
        default: "1000",
        dynamic: false,
        doc: "most partitions one transaction may add (Brook only; Kafka has no bound)",
    },
    BrokerConfigDef {
        name: "transaction.max.timeout.ms",
        kind: Kind::Long { min: 1 },
        default: "900000",
        dynamic: false,
        doc: "largest transaction timeout a producer may ask for",
    },
    BrokerConfigDef {
        name: "transaction.max.transactional.ids",
        kind: Kind::Long { min: 1 },
        default: "100000",
        dynamic: false,
        doc: "most transactional ids the coordinator keeps at once (Brook only; Kafka has no bound)",
    },
    BrokerConfigDef {
        name: "transaction.remove.expired.transaction.cleanup.interval.ms",
        kind: Kind::Long { min: 1 },
        default: "3600000",
        dynamic: false,
        doc: "how often transactional ids idle past transactional.id.expiration.ms are removed",
    },
    BrokerConfigDef {
        name: "transaction.state.log.num.partitions",
        kind: Kind::Long { min: 1 },
        default: "50",
        dynamic: false,
        doc: "partitions of __transaction_state when it is created",
    },
    BrokerConfigDef {
        name: "transactional.id.expiration.ms",
        kind: Kind::Long { min: 1 },
        default: "604800000",
        dynamic: false,
        doc: "a transactional id without a transaction is forgotten after this long without use",
    },
];

/// Checks one value against its kind, naming the config in the error.
fn validate(name: &str, kind: Kind, value: &str) -> Result<()> {
    let bad = |reason: String| Error::InvalidConfig {
        name: name.to_string(),
        reason,
    };
    match kind {
        Kind::Long { min } => {
            let v: i64 = value
                .parse()
                .map_err(|_| bad(format!("{value:?} is not a whole number")))?;
            if v < min {
                return Err(bad(format!("{v} is below the minimum {min}")));
            }
        }
        Kind::Bool => {
            if !matches!(value, "true" | "false") {
                return Err(bad(format!("{value:?} is not true or false")));
            }
        }
        Kind::Enum(words) => {
            if !words.contains(&value) {
                return Err(bad(format!("{value:?} is not one of {}", words.join(", "))));
            }
        }
        Kind::List(words) => {
            for item in value.split(',').map(str::trim) {
                if !words.contains(&item) {
                    return Err(bad(format!("{item:?} is not one of {}", words.join(", "))));
                }
            }
        }
    }
    Ok(())
}

/// Validates a topic-level config name and value.
pub fn validate_topic_config(name: &str, value: &str) -> Result<()> {
    let def = TOPIC_CONFIGS
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| Error::InvalidConfig {
            name: name.to_string(),
            reason: "not a topic config Brook knows".to_string(),
        })?;
    validate(name, def.kind, value)
}

/// Where a config's value comes from, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    Topic,
    /// Set on the broker (command line or AlterConfigs).
    Broker,
    /// Brook's default.
    Default,
}

/// The broker's settings: its identity, listeners, and every config by Kafka name.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// This node's id, reported in Metadata.
    pub node_id: i32,
    /// Where topics live.
    pub data_dir: PathBuf,
    /// Host name clients are told to connect to.
    pub advertised_host: String,
    /// Port clients are told to connect to (the bound port when listening on port 0).
    pub advertised_port: i32,
    /// Configs set explicitly, by Kafka name; everything else takes its default.
    overrides: BTreeMap<String, String>,
}

impl BrokerConfig {
    /// A config for `data_dir` with every value at its default.
    pub fn new(data_dir: PathBuf) -> Self {
        BrokerConfig {
            node_id: 0,
            data_dir,
            advertised_host: "127.0.0.1".to_string(),
            advertised_port: 9092,
            overrides: BTreeMap::new(),
        }
    }

    /// Sets a broker config (a broker-only name or a topic default such as `log.retention.ms`).
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let kind = if let Some(def) = BROKER_CONFIGS.iter().find(|d| d.name == name) {
            def.kind
        } else if let Some(def) = TOPIC_CONFIGS.iter().find(|d| d.broker_name == name) {
            def.kind
        } else {
            return Err(Error::InvalidConfig {
                name: name.to_string(),
                reason: "not a broker config Brook knows".to_string(),
            });
        };
        validate(name, kind, value)?;
        self.overrides.insert(name.to_string(), value.to_string());
        Ok(())
    }

    /// Removes an explicitly set broker config, returning it to its default.
    pub fn unset(&mut self, name: &str) {
        self.overrides.remove(name);
    }

    /// A broker config's value (explicit or default) and where it comes from; None for unknown names.
    pub fn get(&self, name: &str) -> Option<(String, ConfigSource)> {
        if let Some(v) = self.overrides.get(name) {
            return Some((v.clone(), ConfigSource::Broker));
        }
        let default = BROKER_CONFIGS
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.default)
            .or_else(|| TOPIC_CONFIGS.iter().find(|d| d.broker_name == name).map(|d| d.default))?;
        Some((default.to_string(), ConfigSource::Default))
    }

    /// Every broker config name, broker-only ones first, then topic defaults.
    pub fn names() -> impl Iterator<Item = &'static str> {
        BROKER_CONFIGS
            .iter()
            .map(|d| d.name)
            .chain(TOPIC_CONFIGS.iter().map(|d| d.broker_name))
    }

    /// A numeric broker config; the table guarantees it parses.
    pub fn long(&self, name: &str) -> i64 {
        self.get(name)
            .and_then(|(v, _)| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} is a numeric broker config"))
    }

    /// A boolean broker config.
    pub fn bool(&self, name: &str) -> bool {
        self.get(name).is_some_and(|(v, _)| v == "true")
    }

    /// The effective value of a topic config given the topic's own settings.
    pub fn topic_value(&self, topic: &BTreeMap<String, String>, name: &str) -> Option<(String, ConfigSource)> {
        if let Some(v) = topic.get(name) {
            return Some((v.clone(), ConfigSource::Topic));
        }
        let def = TOPIC_CONFIGS.iter().find(|d| d.name == name)?;
        self.get(def.broker_name)
    }

    /// The storage settings a topic's partitions use.
    pub fn log_config(&self, topic: &BTreeMap<String, String>) -> LogConfig {
        let long = |name: &str| -> i64 {
            self.topic_value(topic, name)
                .and_then(|(v, _)| v.parse().ok())
                .unwrap_or(0)
        };
        LogConfig {
            segment_bytes: long("segment.bytes").max(14) as u64,
            segment_ms: long("segment.ms"),
            retention_ms: long("retention.ms"),
            retention_bytes: long("retention.bytes"),
            index_interval_bytes: long("index.interval.bytes").clamp(0, u32::MAX as i64) as u32,
            flush_messages: long("flush.messages"),
            flush_ms: long("flush.ms"),
            cleanup_delete: self.has_cleanup_policy(topic, "delete"),
            cleanup_compact: self.has_cleanup_policy(topic, "compact"),
            delete_retention_ms: long("delete.retention.ms"),
            min_compaction_lag_ms: long("min.compaction.lag.ms"),
            cleaner_dedupe_buffer_bytes: crate::log::config::DEFAULT_DEDUPE_BUFFER_BYTES,
        }
    }

    /// Whether a topic's `cleanup.policy` list holds `policy`.
    fn has_cleanup_policy(&self, topic: &BTreeMap<String, String>, policy: &str) -> bool {
        self.topic_value(topic, "cleanup.policy")
            .is_some_and(|(v, _)| v.split(',').any(|p| p.trim() == policy))
    }

    /// The produce-time rules of a topic.
    pub fn topic_rules(&self, topic: &BTreeMap<String, String>) -> TopicRules {
        let value = |name: &str| self.topic_value(topic, name).map(|(v, _)| v).unwrap_or_default();
        TopicRules {
            max_message_bytes: value("max.message.bytes").parse().unwrap_or(1_048_588),
            log_append_time: value("message.timestamp.type") == "LogAppendTime",
            compacted: value("cleanup.policy").split(',').any(|p| p.trim() == "compact"),
        }
    }
}

/// What the produce path checks for a topic, derived from its configs.
#[derive(Debug, Clone, Copy)]
pub struct TopicRules {
    /// Largest batch accepted.
    pub max_message_bytes: usize,
    /// Stamp batches with the append time.
    pub log_append_time: bool,
    /// Every record needs a key.
    pub compacted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_configs_fall_back_to_broker_then_default() {
        let mut broker = BrokerConfig::new(PathBuf::from("/nonexistent"));
        let mut topic = BTreeMap::new();
        assert_eq!(
            broker.topic_value(&topic, "retention.ms").unwrap(),
            (DAY_MS.to_string(), ConfigSource::Default)
        );
        broker.set("log.retention.ms", "1000").unwrap();
        assert_eq!(
            broker.topic_value(&topic, "retention.ms").unwrap(),
            ("1000".to_string(), ConfigSource::Broker)
        );
        topic.insert("retention.ms".to_string(), "5".to_string());
        assert_eq!(broker.log_config(&topic).retention_ms, 5);
    }

    #[test]
    fn bad_values_are_refused_with_the_name() {
        for (name, value) in [
            ("retention.ms", "soon"),
            ("retention.ms", "-2"),
            ("retention.ms", " 5"),
            ("cleanup.policy", "delete,shred"),
            ("nope", "1"),
        ] {
            let err = validate_topic_config(name, value).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        validate_topic_config("cleanup.policy", "compact,delete").unwrap();
        let mut broker = BrokerConfig::new(PathBuf::from("/nonexistent"));
        assert!(broker.set("num.partitions", "0").is_err());
        broker.set("num.partitions", "4").unwrap();
        assert_eq!(broker.long("num.partitions"), 4);
    }

    #[test]
    fn every_default_is_valid() {
        for d in TOPIC_CONFIGS {
            validate(d.name, d.kind, d.default).unwrap();
        }
        for d in BROKER_CONFIGS {
            validate(d.name, d.kind, d.default).unwrap();
        }
    }
}

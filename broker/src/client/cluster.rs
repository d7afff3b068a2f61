//! The client's view of one cluster: bootstrap, a metadata cache of partition leaders, one
//! connection per broker node id, and the retry loop shared by admin, producer and consumer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::connection::Connection;
use super::metadata::ClusterMetadata;
use super::{backoff_ms, is_stale_metadata, remote_error, ClientConfig};
use crate::error::{Error, Result};

/// How many times a retriable failure is retried by [`Cluster::retry`].
const MAX_RETRIES: u32 = 5;

/// Shared state for every client object talking to one cluster.
pub(crate) struct Cluster {
    /// The configuration the client was built with.
    pub(crate) config: ClientConfig,
    /// Whether metadata requests ask the broker to create unknown topics, as Kafka's producer
    /// does (the broker's `auto.create.topics.enable` decides); admin and consumers do not.
    auto_create_topics: bool,
    cache: Mutex<Cache>,
    connections: tokio::sync::Mutex<Connections>,
}

#[derive(Default)]
struct Cache {
    /// Node id to `host:port`.
    brokers: HashMap<i32, String>,
    topics: HashMap<String, CachedTopic>,
}

struct CachedTopic {
    /// Leader node id per partition index, -1 when there is none.
    leaders: Vec<i32>,
    /// Set when a request failed in a way that suggests leadership moved.
    stale: bool,
}

#[derive(Default)]
struct Connections {
    by_node: HashMap<i32, Arc<Connection>>,
    bootstrap: Option<Arc<Connection>>,
}

impl Cluster {
    /// Connects to the first reachable bootstrap server.
    pub(crate) async fn connect(config: ClientConfig) -> Result<Arc<Cluster>> {
        Self::connect_with(config, false).await
    }

    /// Connects a cluster view whose metadata requests may auto-create topics (producers).
    pub(crate) async fn connect_with(config: ClientConfig, auto_create_topics: bool) -> Result<Arc<Cluster>> {
        let cluster = Arc::new(Cluster {
            config,
            auto_create_topics,
            cache: Mutex::new(Cache::default()),
            connections: tokio::sync::Mutex::new(Connections::default()),
        });
        cluster.any_connection().await?;
        Ok(cluster)
    }

    /// A live connection to any broker, for requests that any broker may answer.
    pub(crate) async fn any_connection(&self) -> Result<Arc<Connection>> {
        let mut connections = self.connections.lock().await;
        if let Some(c) = connections.by_node.values().find(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        if let Some(c) = connections.bootstrap.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let mut addrs: Vec<String> = self.lock_cache().brokers.values().cloned().collect();
        addrs.extend(self.config.bootstrap_servers.iter().cloned());
        let mut last_error = None;
        for addr in addrs {
            match Connection::connect(&addr, &self.config).await {
                Ok(c) => {
                    let c = Arc::new(c);
                    connections.bootstrap = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => {
                    tracing::debug!(addr = %addr, error = %e, "kafka client cannot reach broker");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Connection {
            addr: "(none)".to_string(),
            reason: "no bootstrap servers configured".to_string(),
        }))
    }

    /// A live connection to the broker with this node id, at its advertised address.
    pub(crate) async fn broker(&self, node_id: i32) -> Result<Arc<Connection>> {
        let mut addr = self.lock_cache().brokers.get(&node_id).cloned();
        if addr.is_none() {
            self.metadata(Some(&[])).await?;
            addr = self.lock_cache().brokers.get(&node_id).cloned();
        }
        let addr = addr.ok_or_else(|| Error::Connection {
            addr: format!("node {node_id}"),
            reason: "the node is not in the cluster metadata".to_string(),
        })?;
        let mut connections = self.connections.lock().await;
        if let Some(c) = connections.by_node.get(&node_id).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = Arc::new(Connection::connect(&addr, &self.config).await?);
        connections.by_node.insert(node_id, c.clone());
        Ok(c)
    }

    /// Fetches metadata for some topics (`None` means all) and refreshes the cache with it.
    pub(crate) async fn metadata(&self, topics: Option<&[String]>) -> Result<ClusterMetadata> {
        let connection = self.any_connection().await?;
        let version = connection.version(ApiKey::Metadata)?;
        let mut request = MetadataRequest::default();
        request.topics = topics.map(|names| {
            names
                .iter()
                .map(|name| {
                    let mut topic = MetadataRequestTopic::default();
                    topic.name = Some(TopicName(StrBytes::from_string(name.clone())));
                    topic
                })
                .collect()
        });
        request.allow_auto_topic_creation = self.auto_create_topics;
        let metadata = ClusterMetadata::from_response(connection.request(&request, version).await?);
        self.update_cache(&metadata);
        Ok(metadata)
    }

    fn update_cache(&self, metadata: &ClusterMetadata) {
        let mut cache = self.lock_cache();
        if !metadata.brokers.is_empty() {
            cache.brokers = metadata.brokers.iter().map(|b| (b.node_id, b.addr())).collect();
        }
        for topic in &metadata.topics {
            if topic.error_code != 0 {
                cache.topics.remove(&topic.name);
                continue;
            }
            let count = topic
                .partitions
                .iter()
                .map(|p| p.partition + 1)
                .max()
                .unwrap_or(0)
                .max(0) as usize;
            let mut leaders = vec![-1; count];
            for p in &topic.partitions {
                if p.partition >= 0 && p.error_code == 0 {
                    leaders[p.partition as usize] = p.leader;
                }
            }
            cache
                .topics
                .insert(topic.name.clone(), CachedTopic { leaders, stale: false });
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached leader of a partition, if known and not marked stale.
    pub(crate) fn cached_leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let cache = self.lock_cache();
        let cached = cache.topics.get(topic).filter(|t| !t.stale)?;
        cached
            .leaders
            .get(usize::try_from(partition).ok()?)
            .copied()
            .filter(|l| *l >= 0)
    }

    /// The cached partition count of a topic, if known.
    pub(crate) fn cached_partition_count(&self, topic: &str) -> Option<i32> {
        self.lock_cache().topics.get(topic).map(|t| t.leaders.len() as i32)
    }

    /// Marks a topic's leaders as stale so the next lookup refreshes them.
    pub(crate) fn invalidate(&self, topic: &str) {
        if let Some(t) = self.lock_cache().topics.get_mut(topic) {
            t.stale = true;
        }
    }

    /// Refreshes metadata for one topic, failing with the topic's error code if it has one.
    pub(crate) async fn refresh_topic(&self, topic: &str) -> Result<()> {
        let metadata = self.metadata(Some(&[topic.to_string()])).await?;
        match metadata.topic(topic) {
            Some(t) if t.error_code != 0 => Err(remote_error(t.error_code, Some(topic))),
            Some(_) => Ok(()),
            None => Err(remote_error(3, Some(topic))),
        }
    }

    /// The number of partitions of a topic, from the cache or a metadata request.
    pub(crate) async fn partition_count(&self, topic: &str) -> Result<i32> {
        if let Some(count) = self.cached_partition_count(topic) {
            return Ok(count);
        }
        self.refresh_topic(topic).await?;
        self.cached_partition_count(topic)
            .ok_or_else(|| remote_error(3, Some(topic)))
    }

    /// The leader of a partition, from the cache or a metadata request.
    pub(crate) async fn leader(&self, topic: &str, partition: i32) -> Result<i32> {
        if let Some(leader) = self.cached_leader(topic, partition) {
            return Ok(leader);
        }
        self.refresh_topic(topic).await?;
        if self
            .cached_partition_count(topic)
            .is_some_and(|n| partition >= n || partition < 0)
        {
            return Err(remote_error(3, Some(&format!("{topic}-{partition}"))));
        }
        self.cached_leader(topic, partition)
            .ok_or_else(|| remote_error(5, Some(&format!("{topic}-{partition}"))))
    }

    /// Runs `op` until it succeeds, fails with a non-retriable error, or has been retried
    /// [`MAX_RETRIES`] times; metadata for `topic` is invalidated when leadership may have moved.
    pub(crate) async fn retry<T, F, Fut>(&self, topic: Option<&str>, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(e) if attempt < MAX_RETRIES && e.is_retriable() => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "kafka client retrying");
                    if let (Some(topic), true) = (topic, is_stale_metadata(&e)) {
                        self.invalidate(topic);
                    }
                    tokio::time::sleep(Duration::from_millis(backoff_ms(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

//! The broker's shared state: its config, its topics, the append signal that wakes fetches,
//! the producer id allocator, the coordinators, and the background retention loop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::fetch_session::FetchSessions;
use crate::group::GroupCoordinator;
use crate::log::AppendSignal;
use crate::topics::{write_atomically, Topics};
use crate::txn::TransactionCoordinator;

/// Producer ids are handed out from blocks of this size; only block boundaries touch the disk.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Everything a request handler can reach.
pub struct Broker {
    /// Swapped whole on change, so a request clones a pointer, not the config.
    config: RwLock<Arc<BrokerConfig>>,
    /// The topics and their logs.
    pub topics: Topics,
    /// Wakes long-polling fetches when data becomes visible.
    pub signal: AppendSignal,
    /// The cluster id reported in Metadata and DescribeCluster, stable across restarts.
    pub cluster_id: String,
    /// Consumer groups and committed offsets.
    pub groups: Arc<GroupCoordinator>,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: FetchSessions,
    /// Transactional ids and their transactions (KIP-98), durable in `__transaction_state`.
    pub txns: TransactionCoordinator,
    producer_ids: Mutex<ProducerIdBlock>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

struct ProducerIdBlock {
    next: AtomicI64,
    end: i64,
    file: PathBuf,
}

impl Broker {
    /// Opens the data directory, recovering every topic.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>> {
        let meta = config.data_dir.join(".brook-meta");
        std::fs::create_dir_all(&meta).map_err(|e| Error::io(format!("creating {}", meta.display()), e))?;
        let cluster_id = load_or_create(&meta.join("cluster-id"), || uuid::Uuid::new_v4().simple().to_string())?;
        let pid_file = meta.join("producer-id-block");
        let next: i64 = load_or_create(&pid_file, || "0".to_string())?
            .parse()
            .map_err(|_| Error::CorruptLog {
                path: pid_file.display().to_string(),
                reason: "the next producer id block is not a number".to_string(),
            })?;
        let signal = AppendSignal::default();
        let topics = Topics::open(&config, signal.clone())?;
        let groups = Arc::new(GroupCoordinator::open(&topics, &config)?);
        let txns = TransactionCoordinator::open(&topics, &config)?;
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let fetch_sessions = FetchSessions::new(config.long("max.incremental.fetch.session.cache.slots") as usize);
        Ok(Arc::new(Broker {
            fetch_sessions,
            groups,
            txns,
            config: RwLock::new(Arc::new(config)),
            topics,
            signal,
            cluster_id,
            producer_ids: Mutex::new(ProducerIdBlock {
                next: AtomicI64::new(next),
                end: next,
                file: pid_file,
            }),
            shutdown,
        }))
    }

    /// A snapshot of the broker config.
    pub fn config(&self) -> Arc<BrokerConfig> {
        self.config.read().expect("config lock").clone()
    }

    /// Changes broker configs (validated all together, applied only if all are valid).
    pub fn alter_config(&self, set: &[(String, Option<String>)], validate_only: bool) -> Result<()> {
        // The write lock is held from read to swap so that concurrent changes are not lost.
        let mut current = self.config.write().expect("config lock");
        let mut next = BrokerConfig::clone(&current);
        for (name, value) in set {
            match value {
                Some(v) => next.set(name, v)?,
                None => next.unset(name),
            }
        }
        if !validate_only {
            self.topics.refresh_log_configs(&next);
            *current = Arc::new(next);
        }
        Ok(())
    }

    /// A fresh producer id for an idempotent producer; ids are never reused across restarts.
    pub fn next_producer_id(&self) -> Result<i64> {
        let mut block = self.producer_ids.lock().expect("producer id lock");
        let id = block.next.load(Ordering::Relaxed);
        if id >= block.end {
            let end = id + PRODUCER_ID_BLOCK;
            write_atomically(&block.file, end.to_string().as_bytes())?;
            block.end = end;
        }
        block.next.store(id + 1, Ordering::Relaxed);
        Ok(id)
    }

    /// A receiver that turns true when the broker starts shutting down.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Flushes and closes every log; called once on clean shutdown.
    pub fn close(&self) -> Result<()> {
        let _ = self.shutdown.send(true);
        for topic in self.topics.all() {
            for log in topic.partitions() {
                log.close()?;
            }
        }
        Ok(())
    }

    /// Runs retention, age-based rolls and time-based flushes for every partition until shutdown,
    /// and beside it the transaction coordinator's timers (timeouts, completion of transactions a
    /// crash interrupted, expiry), so that every process that serves a broker runs both.
    pub async fn retention_loop(self: Arc<Self>) {
        let mut shutdown = self.shutdown_signal();
        tokio::spawn(TransactionCoordinator::run_timers(self.clone(), self.shutdown_signal()));
        loop {
            let interval_ms = self.config().long("log.retention.check.interval.ms").max(1) as u64;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(interval_ms)) => {}
                _ = shutdown.changed() => return,
            }
            let broker = self.clone();
            let outcome = tokio::task::spawn_blocking(move || broker.enforce_retention(now_ms())).await;
            if let Err(e) = outcome {
                tracing::error!(error = %e, "retention task failed");
            }
        }
    }

    /// One pass of retention over every partition.
    pub fn enforce_retention(&self, now_ms: i64) {
        for topic in self.topics.all() {
            for (p, log) in topic.partitions().iter().enumerate() {
                match log.enforce_retention(now_ms) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(topic = %topic.name, partition = p, segments_deleted = n, "retention"),
                    Err(e) => tracing::error!(topic = %topic.name, partition = p, error = %e, "retention failed"),
                }
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn load_or_create(path: &std::path::Path, make: impl FnOnce() -> String) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let value = make();
            write_atomically(path, value.as_bytes())?;
            Ok(value)
        }
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

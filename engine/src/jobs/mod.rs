//! Continuous query jobs: the [`JobManager`] runs one job per query definition in the catalog,
//! starts them when it starts, and follows the catalog topic so that a query created or
//! terminated by any client (`brook sql` against a remote cluster, another worker) starts or
//! stops in every `brook serve` attached to that cluster. Jobs of one query share the consumer
//! group `brook-query-<id>`, so its partitions are spread over the processes running it.
//! A query runs at least once by default, or exactly once (`exactly_once.rs`) with
//! `processing_guarantee = 'exactly_once'`.

mod emit;
mod exactly_once;
mod fetch;
mod job;
mod output;
mod plan;
pub mod statements;
pub mod trace;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use brook_broker::access::TopicAccess;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catalog::{Catalog, QueryDef};
use crate::error::{Error, Result};

pub use emit::emit_changes;
pub use exactly_once::transactional_id;
pub use fetch::{fetch_round, Round};
pub use job::group_id;
pub use output::{stream_schema, OutputWriter, KEY_COLUMN};
pub use plan::{first_stateful, QueryPlan};

/// Bounds and pacing of the jobs.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// The most records one micro-batch holds.
    pub max_batch_records: usize,
    /// The most bytes one fetch round asks for, over all partitions.
    pub fetch_max_bytes: usize,
    /// How long a fetch waits for records when there are none.
    pub fetch_wait_ms: u64,
    /// How long to wait after a retriable error before retrying.
    pub retry_backoff_ms: u64,
    /// How long one wait for catalog changes lasts before it is renewed.
    pub catalog_poll_ms: u64,
    /// Kafka's `transaction.timeout.ms` for exactly-once jobs: the coordinator aborts (and
    /// fences) a micro-batch's transaction open longer, e.g. one a crashed process left.
    pub transaction_timeout_ms: u64,
    /// This process's name in the transactional ids of exactly-once jobs
    /// (`brook-query-<id>-<worker_name>`). It must be kept across restarts, so that a restarted
    /// process fences its predecessor and aborts the transaction it left open at once, and be
    /// distinct among the processes running the same queries on one cluster. None: the host
    /// name, which `brook serve` satisfies: its jobs run on its own embedded broker.
    pub worker_name: Option<String>,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            max_batch_records: 1000,
            fetch_max_bytes: 4 << 20,
            fetch_wait_ms: 500,
            retry_backoff_ms: 500,
            catalog_poll_ms: 1000,
            // Kafka Streams' default under exactly-once.
            transaction_timeout_ms: 10_000,
            worker_name: None,
        }
    }
}

impl JobSettings {
    /// The worker name in effect: the configured one, else the host name, else `brook`.
    pub fn worker_name(&self) -> String {
        if let Some(name) = &self.worker_name {
            return name.clone();
        }
        let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string());
        from_kernel
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "brook".to_string())
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum JobState {
    /// Planning and joining its group.
    Starting,
    /// Consuming and producing.
    Running,
    /// Ended by an error that retrying does not fix.
    Failed(String),
    /// Stopped on request.
    Stopped,
    /// Defined in the catalog but not run by this process (a client, or a server not started).
    NotRunningHere,
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobState::Starting => f.write_str("starting"),
            JobState::Running => f.write_str("running"),
            JobState::Failed(reason) => write!(f, "failed: {reason}"),
            JobState::Stopped => f.write_str("stopped"),
            JobState::NotRunningHere => f.write_str("not running here"),
        }
    }
}

/// A job as `SHOW QUERIES` and the HTTP API list it.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    /// The query's id.
    pub id: String,
    /// The stream it writes.
    pub name: String,
    /// The statement that created it.
    pub sql: String,
    /// Its state in this process.
    pub state: JobState,
    /// Input records read and committed by this process.
    pub records_in: u64,
    /// Output records written by this process.
    pub records_out: u64,
    /// Input records sent to the dead-letter topic by this process.
    pub records_dead: u64,
}

/// A job's state and counters, shared between the job and the manager.
#[derive(Debug)]
pub(crate) struct JobStatus {
    state: Mutex<JobState>,
    records_in: AtomicU64,
    records_out: AtomicU64,
    records_dead: AtomicU64,
}

impl JobStatus {
    fn new() -> Self {
        JobStatus {
            state: Mutex::new(JobState::Starting),
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            records_dead: AtomicU64::new(0),
        }
    }

    fn set_state(&self, state: JobState) {
        *self.state.lock().expect("job state lock") = state;
    }

    fn state(&self) -> JobState {
        self.state.lock().expect("job state lock").clone()
    }
}

/// A job started by this process.
struct Running {
    def: QueryDef,
    status: Arc<JobStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Runs the catalog's continuous queries in this process.
pub struct JobManager {
    access: Arc<dyn TopicAccess>,
    catalog: Arc<Catalog>,
    settings: JobSettings,
    jobs: Mutex<BTreeMap<String, Running>>,
    /// Whether this process runs jobs (`start` was called and `shutdown` was not).
    active: watch::Sender<bool>,
    /// Held while jobs are started or stopped to match the catalog.
    reconciling: tokio::sync::Mutex<()>,
}

impl JobManager {
    /// A manager over `catalog` that runs nothing until [`JobManager::start`]; a client uses
    /// it as is to create, list and terminate queries that servers run.
    pub fn new(access: Arc<dyn TopicAccess>, catalog: Arc<Catalog>, settings: JobSettings) -> Arc<JobManager> {
        Arc::new(JobManager {
            access,
            catalog,
            settings,
            jobs: Mutex::new(BTreeMap::new()),
            active: watch::channel(false).0,
            reconciling: tokio::sync::Mutex::new(()),
        })
    }

    /// The topic access jobs use.
    pub fn access(&self) -> &Arc<dyn TopicAccess> {
        &self.access
    }

    /// The catalog the jobs come from.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Starts a job for every query in the catalog and follows the catalog in the background,
    /// starting and stopping jobs as definitions come and go.
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        self.active.send_replace(true);
        self.reconcile().await?;
        let manager = Arc::downgrade(self);
        let mut active = self.active.subscribe();
        let poll_ms = self.settings.catalog_poll_ms;
        tokio::spawn(async move {
            loop {
                let Some(m) = manager.upgrade() else { return };
                if !*active.borrow_and_update() {
                    return;
                }
                let changed = tokio::select! {
                    _ = active.changed() => continue,
                    changed = m.catalog.wait_for_change(poll_ms) => changed,
                };
                let outcome = match changed {
                    Ok(true) => m.reconcile().await,
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "following the catalog failed; retrying");
                    tokio::select! {
                        _ = active.changed() => {}
                        _ = tokio::time::sleep(std::time::Duration::from_millis(poll_ms)) => {}
                    }
                }
            }
        });
        Ok(())
    }

    /// Every query in the catalog, with its state and counters in this process.
    pub fn list(&self) -> Vec<JobInfo> {
        let jobs = self.jobs.lock().expect("jobs lock");
        self.catalog
            .queries()
            .into_iter()
            .map(|def| {
                let running = jobs.get(&def.id).filter(|r| r.def == def);
                let (state, records_in, records_out, records_dead) = match running {
                    Some(r) => (
                        r.status.state(),
                        r.status.records_in.load(Ordering::Relaxed),
                        r.status.records_out.load(Ordering::Relaxed),
                        r.status.records_dead.load(Ordering::Relaxed),
                    ),
                    None => (JobState::NotRunningHere, 0, 0, 0),
                };
                JobInfo {
                    id: def.id,
                    name: def.target,
                    sql: def.statement,
                    state,
                    records_in,
                    records_out,
                    records_dead,
                }
            })
            .collect()
    }

    /// Records a new query in the catalog and, when this process runs jobs, starts it now.
    pub async fn create(&self, def: QueryDef) -> Result<()> {
        self.catalog.put_query(&def).await?;
        self.reconcile().await
    }

    /// Terminates query `id` for good: removes its definition, so every process stops it.
    pub async fn stop(&self, id: &str) -> Result<()> {
        let known = self.catalog.query(id).is_some() || self.jobs.lock().expect("jobs lock").contains_key(id);
        if !known {
            return Err(Error::Catalog(format!(
                "there is no query {id}; SHOW QUERIES lists them"
            )));
        }
        self.catalog.remove_query(id).await?;
        self.reconcile().await
    }

    /// Stops every job of this process (they leave their groups), keeping the definitions.
    pub async fn shutdown(&self) {
        self.active.send_replace(false);
        let _guard = self.reconciling.lock().await;
        let all: Vec<Running> = std::mem::take(&mut *self.jobs.lock().expect("jobs lock"))
            .into_values()
            .collect();
        stop_all(all).await;
    }

    /// Starts the jobs the catalog defines and this process does not run, and stops those it
    /// runs whose definition is gone or changed.
    pub async fn reconcile(&self) -> Result<()> {
        let _guard = self.reconciling.lock().await;
        if !*self.active.borrow() {
            return Ok(());
        }
        let defs: BTreeMap<String, QueryDef> = self.catalog.queries().into_iter().map(|d| (d.id.clone(), d)).collect();
        let stale: Vec<Running> = {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            let gone: Vec<String> = jobs
                .iter()
                .filter(|(id, r)| defs.get(*id) != Some(&r.def))
                .map(|(id, _)| id.clone())
                .collect();
            gone.into_iter().filter_map(|id| jobs.remove(&id)).collect()
        };
        stop_all(stale).await;
        let mut jobs = self.jobs.lock().expect("jobs lock");
        for (id, def) in defs {
            if jobs.contains_key(&id) {
                continue;
            }
            let status = Arc::new(JobStatus::new());
            let (stop, stopped) = watch::channel(false);
            let job = job::Job {
                def: def.clone(),
                access: self.access.clone(),
                catalog: self.catalog.clone(),
                settings: self.settings.clone(),
                status: status.clone(),
                stop: stopped,
            };
            tracing::info!(query = %id, "starting continuous query");
            let task = tokio::spawn(job.run());
            jobs.insert(
                id,
                Running {
                    def,
                    status,
                    stop,
                    task,
                },
            );
        }
        Ok(())
    }
}

/// Asks every job to stop, then waits for each to leave its group.
async fn stop_all(jobs: Vec<Running>) {
    for r in &jobs {
        r.stop.send_replace(true);
    }
    for r in jobs {
        if let Err(e) = r.task.await {
            tracing::warn!(query = %r.def.id, error = %e, "a continuous query task ended abnormally");
        }
    }
}

#[cfg(test)]
mod exactly_once_tests;
#[cfg(test)]
mod tests;

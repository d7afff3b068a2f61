//! The runners that move records between connectors and topics: a source runner writes what a
//! source reads into its topic, a sink runner feeds a sink from its input topic. Both commit
//! where they are, retry what the outside world fails at, and send what cannot be processed to a
//! dead-letter topic (or stop, by the step's error policy).
//!
//! Exactly once into topics without transactions: every record a runner writes carries its
//! provenance (the source position, or the input partition and offset) in headers, and a
//! checkpoint in the `_brook_checkpoints` topic stores the step's state together with the
//! output topic's end offsets. After a crash the runner reads its output from those offsets,
//! collects the provenances already written, and skips them when the input is read again.

pub mod checkpoints;
pub mod input;
pub mod produce;
pub mod progress;
pub mod provenance;
pub mod sink_runner;
pub mod source_runner;
mod status;

use std::time::Duration;

use tokio::sync::watch;

pub use checkpoints::{Checkpoint, CheckpointStore, CHECKPOINTS_TOPIC};
pub use progress::Progress;
pub use sink_runner::SinkRunner;
pub use source_runner::SourceRunner;
pub use status::{StepState, StepStatus};

use crate::error::{Error, Result};

/// What a step does with a record it cannot process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Write it to this topic, with headers naming the error, the stage and where it came from,
    /// and go on.
    DeadLetter {
        /// The dead-letter topic.
        topic: String,
    },
    /// Stop the step with the error.
    Fail,
}

impl ErrorPolicy {
    /// The dead-letter topic, if records go to one.
    pub fn dead_letter_topic(&self) -> Option<&str> {
        match self {
            ErrorPolicy::DeadLetter { topic } => Some(topic),
            ErrorPolicy::Fail => None,
        }
    }
}

/// Bounds and pacing shared by the runners.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// The most records one batch holds (one poll of a source, one write to a sink).
    pub max_batch_records: usize,
    /// The most bytes one fetch round asks for, over all partitions.
    pub fetch_max_bytes: usize,
    /// How long a poll or fetch waits for records when there are none.
    pub poll_wait_ms: u64,
    /// How often a step's position is committed while records flow.
    pub checkpoint_interval_ms: u64,
    /// The first wait after a retriable error; doubled after each failure in a row.
    pub retry_backoff_ms: u64,
    /// The longest wait between retries.
    pub max_backoff_ms: u64,
    /// The most provenances remembered while recovering from a crash; more than this many
    /// records written after the last checkpoint cannot be told apart and fail the step.
    pub max_recovery_records: usize,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            max_batch_records: 1000,
            fetch_max_bytes: 4 << 20,
            poll_wait_ms: 500,
            checkpoint_interval_ms: 1000,
            retry_backoff_ms: 200,
            max_backoff_ms: 10_000,
            max_recovery_records: 1_000_000,
        }
    }
}

/// A request to stop, shared by every runner of a pipeline.
#[derive(Clone)]
pub struct Stop(Option<watch::Receiver<bool>>);

impl Stop {
    /// A stop signal and its sender; sending `true` stops every runner holding a clone.
    pub fn new() -> (watch::Sender<bool>, Stop) {
        let (tx, rx) = watch::channel(false);
        (tx, Stop(Some(rx)))
    }

    /// A signal that never fires, for work that must finish even while stopping (the last
    /// checkpoint of a step).
    pub fn never() -> Stop {
        Stop(None)
    }

    /// Whether stopping was requested.
    pub fn requested(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves once stopping is requested (or the sender is gone).
    pub async fn wait(&self) {
        match &self.0 {
            Some(rx) => {
                let mut rx = rx.clone();
                let _ = rx.wait_for(|s| *s).await;
            }
            None => std::future::pending().await,
        }
    }

    /// `Err(Halt::Stopped)` when stopping was requested.
    pub fn check(&self) -> Result<(), Halt> {
        if self.requested() {
            Err(Halt::Stopped)
        } else {
            Ok(())
        }
    }

    /// Sleeps `ms`, ending early with [`Halt::Stopped`] when stopping is requested.
    pub async fn sleep(&self, ms: u64) -> Result<(), Halt> {
        tokio::select! {
            _ = self.wait() => Err(Halt::Stopped),
            _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
        }
    }
}

/// Why a runner's step ended early.
#[derive(Debug)]
pub enum Halt {
    /// Stopping was requested.
    Stopped,
    /// An error that retrying does not fix.
    Failed(Error),
}

impl From<Error> for Halt {
    fn from(e: Error) -> Self {
        Halt::Failed(e)
    }
}

impl From<brook_broker::Error> for Halt {
    fn from(e: brook_broker::Error) -> Self {
        Halt::Failed(e.into())
    }
}

/// Runs `op` until it succeeds, backing off exponentially after retriable errors; stops when
/// asked. `what` names the operation in logs.
pub async fn retrying<T, E, F, Fut>(settings: &RunnerSettings, stop: &Stop, what: &str, mut op: F) -> Result<T, Halt>
where
    E: Into<Error>,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let mut backoff = settings.retry_backoff_ms.max(1);
    loop {
        stop.check()?;
        match op().await.map_err(Into::into) {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retriable() => {
                tracing::warn!(operation = what, error = %e, backoff_ms = backoff, "retrying");
                stop.sleep(backoff).await?;
                backoff = (backoff * 2).min(settings.max_backoff_ms.max(1));
            }
            Err(e) => return Err(Halt::Failed(e)),
        }
    }
}

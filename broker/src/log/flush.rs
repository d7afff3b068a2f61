//! Group commit: fsyncs that run without the partition lock, one at a time, each covering every
//! append made before it started, so that concurrent producers waiting for durability share fsyncs.
//!
//! An fsync failure is sticky, as in Kafka and PostgreSQL: after it the page cache state is unknown,
//! so every later append and wait fails until the partition is reopened (and recovered).

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::checkpoint::{self, CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE};
use super::partition::{PartitionLog, Shared};
use crate::error::{Error, Result};

/// The durable offset and who is fsyncing.
pub(super) struct GroupCommit {
    state: Mutex<CommitState>,
    /// Every offset below this value is fsync'd. Also rung, unchanged, when an fsync fails or is
    /// abandoned, so that waiters re-check.
    durable: watch::Sender<i64>,
}

#[derive(Default)]
struct CommitState {
    running: bool,
    /// Someone asked for an fsync while one was running: the running one goes round again.
    dirty: bool,
    failure: Option<String>,
}

impl GroupCommit {
    pub(super) fn new(durable_offset: i64) -> Self {
        GroupCommit {
            state: Mutex::new(CommitState::default()),
            durable: watch::channel(durable_offset).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CommitState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every offset below this is fsync'd.
    pub(super) fn durable_offset(&self) -> i64 {
        *self.durable.borrow()
    }

    /// Fails once an fsync failed.
    pub(super) fn check_failed(&self) -> Result<()> {
        match &self.state().failure {
            Some(reason) => Err(sticky_failure(reason)),
            None => Ok(()),
        }
    }

    /// Marks offsets below `offset` durable, e.g. after a synchronous fsync on close.
    pub(super) fn mark_durable(&self, offset: i64) {
        self.durable.send_modify(|durable| *durable = (*durable).max(offset));
    }

    /// Claims the right to run the next fsync; false when one is running, which then runs once
    /// more after it ends so that appends made during it become durable without a new caller.
    fn try_claim(&self) -> Result<bool> {
        let mut state = self.state();
        if let Some(reason) = &state.failure {
            return Err(sticky_failure(reason));
        }
        if state.running {
            state.dirty = true;
            return Ok(false);
        }
        state.running = true;
        Ok(true)
    }

    /// After a successful fsync: true when another was asked for meanwhile (the claim is kept
    /// and the dirty mark cleared), false when the claim is released.
    fn finish_or_continue(&self, end_offset: i64) -> bool {
        let mut state = self.state();
        self.mark_durable(end_offset);
        if state.dirty {
            state.dirty = false;
            return true;
        }
        state.running = false;
        false
    }

    /// Ends the running fsync with its outcome (None when abandoned) and wakes the waiters.
    fn release(&self, outcome: Option<Result<i64>>) {
        let mut state = self.state();
        state.running = false;
        state.dirty = false;
        match outcome {
            Some(Ok(end_offset)) => self.mark_durable(end_offset),
            Some(Err(error)) => {
                tracing::error!(%error, "fsync failed; the partition refuses writes until it is reopened");
                state.failure = Some(error.to_string());
                self.durable.send_modify(|_| {});
            }
            None => self.durable.send_modify(|_| {}),
        }
    }
}

fn sticky_failure(reason: &str) -> Error {
    Error::io(
        "an earlier fsync of this partition failed",
        std::io::Error::other(reason.to_string()),
    )
}

/// The right to run one fsync. Dropping it unused (say, the runtime shut down before the blocking
/// task ran) releases the claim so that waiters try again.
pub(super) struct FlushTicket {
    shared: Arc<Shared>,
    used: bool,
}

impl FlushTicket {
    /// Claims the next fsync, or None when one is running.
    fn claim(shared: &Arc<Shared>) -> Result<Option<FlushTicket>> {
        Ok(shared.commit.try_claim()?.then(|| FlushTicket {
            shared: Arc::clone(shared),
            used: false,
        }))
    }

    /// Fsyncs everything appended so far (blocking) and publishes the new durable offset.
    /// Runs again while appends asked for more during the previous round (continuous group commit).
    fn run(mut self) -> Result<()> {
        self.used = true;
        loop {
            match self.shared.sync_appended() {
                Ok(end_offset) => {
                    if !self.shared.commit.finish_or_continue(end_offset) {
                        return Ok(());
                    }
                }
                Err(e) => {
                    let error = sticky_failure(&e.to_string());
                    self.shared.commit.release(Some(Err(e)));
                    return Err(error);
                }
            }
        }
    }
}

impl Drop for FlushTicket {
    fn drop(&mut self) {
        if !self.used {
            self.shared.commit.release(None);
        }
    }
}

impl Shared {
    /// Fsyncs the segments holding unsynced appends; returns the offset now durable. Blocking.
    fn sync_appended(&self) -> Result<i64> {
        let (end_offset, active_base, active_file, pending) = {
            let inner = self.lock();
            (
                inner.log_end_offset(),
                inner.active().base_offset,
                inner.active().file(),
                inner.pending_sync.clone(),
            )
        };
        for (base_offset, file) in &pending {
            file.sync_data()
                .map_err(|e| Error::io(format!("fsyncing segment {base_offset} of {}", self.dir.display()), e))?;
        }
        active_file
            .sync_data()
            .map_err(|e| Error::io(format!("fsyncing segment {active_base} of {}", self.dir.display()), e))?;
        // Every segment below the active one is now on disk: recovery may skip their CRC scan.
        let write_recovery_point = self.lock().recovery_point < active_base;
        if write_recovery_point {
            checkpoint::write_offset(&self.dir, RECOVERY_POINT_FILE, active_base)?;
        }
        let mut inner = self.lock();
        inner
            .pending_sync
            .retain(|(base, _)| !pending.iter().any(|(synced, _)| synced == base));
        inner.recovery_point = inner.recovery_point.max(active_base);
        if inner.config.flush_before_ack() && inner.advance_high_watermark(end_offset) {
            self.signal.notify();
        }
        Ok(end_offset)
    }

    /// Runs an fsync now on this thread unless one is running.
    pub(super) fn flush_now(shared: &Arc<Shared>) -> Result<()> {
        match FlushTicket::claim(shared)? {
            Some(ticket) => ticket.run(),
            None => Ok(()),
        }
    }

    /// Starts an fsync on tokio's blocking pool (or on this thread outside a runtime) unless one is running.
    pub(super) fn flush_in_background(shared: &Arc<Shared>) -> Result<()> {
        let Some(ticket) = FlushTicket::claim(shared)? else {
            return Ok(());
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || ticket.run());
                Ok(())
            }
            Err(_) => ticket.run(),
        }
    }
}

impl PartitionLog {
    /// Group commit: resolves once every offset below `end_offset` (capped at the log end offset) is
    /// fsync'd. Concurrent callers share one fsync; appends made while it runs join the next one.
    pub async fn wait_durable(&self, end_offset: i64) -> Result<()> {
        let target = end_offset.min(self.log_end_offset());
        let mut durable = self.shared.commit.durable.subscribe();
        loop {
            if *durable.borrow_and_update() >= target {
                return Ok(());
            }
            if let Some(ticket) = FlushTicket::claim(&self.shared)? {
                // The fsync runs to completion even if this future is dropped.
                tokio::task::spawn_blocking(move || ticket.run());
            }
            durable.changed().await.map_err(|_| Error::Shutdown("partition log"))?;
        }
    }

    /// Flushes everything and writes a clean-shutdown marker so the next open skips the CRC scan.
    /// Later appends fail.
    pub fn close(&self) -> Result<()> {
        self.shared.commit.check_failed()?;
        let mut inner = self.lock();
        if inner.closed {
            return Ok(());
        }
        for segment in &inner.segments {
            segment.sync_all()?;
        }
        inner.pending_sync.clear();
        let end_offset = inner.log_end_offset();
        inner.closed = true;
        self.shared.commit.mark_durable(end_offset);
        if inner.advance_high_watermark(end_offset) {
            self.shared.signal.notify();
        }
        checkpoint::write_offset(&self.shared.dir, CLEAN_SHUTDOWN_FILE, end_offset)
    }
}

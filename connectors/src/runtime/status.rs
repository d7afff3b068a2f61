//! A step's state and counters, shared between its runner and whoever reports on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::Halt;
use crate::error::Result;

/// Where a step is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum StepState {
    /// Opening its connector and recovering its position.
    Starting,
    /// Moving records.
    Running,
    /// Its input ended (stdin at end of file, a generator's count) and everything was written.
    Finished,
    /// Ended by an error that retrying does not fix.
    Failed(String),
    /// Stopped on request.
    Stopped,
}

/// A step's state and counters.
#[derive(Debug)]
pub struct StepStatus {
    state: Mutex<StepState>,
    /// Records read (from the outside world or the input topic).
    pub records_in: AtomicU64,
    /// Records written (to the topic or the outside world).
    pub records_out: AtomicU64,
    /// Records sent to the dead-letter topic.
    pub records_dead: AtomicU64,
    /// Reads of the input that found nothing new (the step was caught up at that moment).
    pub empty_rounds: AtomicU64,
}

impl Default for StepStatus {
    fn default() -> Self {
        StepStatus {
            state: Mutex::new(StepState::Starting),
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            records_dead: AtomicU64::new(0),
            empty_rounds: AtomicU64::new(0),
        }
    }
}

impl StepStatus {
    /// Sets the state.
    pub fn set_state(&self, state: StepState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// The state.
    pub fn state(&self) -> StepState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records how the runner of step `step` (a "source", "transform" or "sink": `kind`) ended:
    /// `ended` when it returned, stopped when asked to, failed (logged) with an error retrying
    /// could not fix, which is returned.
    pub fn finish(&self, step: &str, kind: &str, outcome: Result<(), Halt>, ended: StepState) -> Result<()> {
        let (state, result) = match outcome {
            Ok(()) => (ended, Ok(())),
            Err(Halt::Stopped) => (StepState::Stopped, Ok(())),
            Err(Halt::Failed(e)) => {
                tracing::error!(step, error = %e, "{kind} failed");
                (StepState::Failed(e.to_string()), Err(e))
            }
        };
        self.set_state(state);
        result
    }

    /// Adds to the counters.
    pub fn count(&self, records_in: u64, records_out: u64, records_dead: u64) {
        self.records_in.fetch_add(records_in, Ordering::Relaxed);
        self.records_out.fetch_add(records_out, Ordering::Relaxed);
        self.records_dead.fetch_add(records_dead, Ordering::Relaxed);
    }

    /// Notes a read of the input that found nothing new.
    pub fn note_empty_round(&self) {
        self.empty_rounds.fetch_add(1, Ordering::Relaxed);
    }

    /// How many reads found nothing new so far.
    pub fn empty_rounds(&self) -> u64 {
        self.empty_rounds.load(Ordering::Relaxed)
    }

    /// (in, out, dead) so far.
    pub fn counters(&self) -> (u64, u64, u64) {
        (
            self.records_in.load(Ordering::Relaxed),
            self.records_out.load(Ordering::Relaxed),
            self.records_dead.load(Ordering::Relaxed),
        )
    }
}

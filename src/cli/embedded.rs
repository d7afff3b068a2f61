//! The background work an embedded broker needs wherever the binary runs one (`serve`,
//! `pipeline run`): retention (which also drives the transaction coordinator's timers) and the
//! group coordinator's timers.

use std::sync::Arc;

use brook_broker::Broker;
use tokio::task::JoinHandle;

/// Background tasks of a running broker; aborted when dropped.
pub struct Background(Vec<JoinHandle<()>>);

impl Background {
    /// No tasks yet (a pipeline on a remote cluster still runs its HTTP listener here).
    pub fn none() -> Background {
        Background(Vec::new())
    }

    /// Starts the retention loop and the group timers of `broker`.
    pub fn start(broker: &Arc<Broker>) -> Background {
        Background(vec![
            tokio::spawn(broker.clone().retention_loop()),
            tokio::spawn(broker.groups.clone().run_timers(broker.shutdown_signal())),
        ])
    }

    /// Also runs `task` until this is dropped.
    pub fn push(&mut self, task: JoinHandle<()>) {
        self.0.push(task);
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

//! A broker-wide wake-up for long-polling fetches, rung whenever a partition's high watermark moves.

use std::sync::Arc;

use tokio::sync::watch;

/// Wakes long-polling fetches when any partition's high watermark moves. Shared by all partitions of a broker.
#[derive(Clone)]
pub struct AppendSignal(Arc<watch::Sender<u64>>);

impl Default for AppendSignal {
    fn default() -> Self {
        let (sender, _receiver) = watch::channel(0);
        AppendSignal(Arc::new(sender))
    }
}

impl std::fmt::Debug for AppendSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AppendSignal").field(&*self.0.borrow()).finish()
    }
}

impl AppendSignal {
    /// Tells every subscriber that some high watermark moved.
    pub fn notify(&self) {
        self.0
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// A receiver that sees a change after every later `notify`.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

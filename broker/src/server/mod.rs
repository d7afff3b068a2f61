//! The Kafka protocol server: accepts connections, bounds how many are open, and hands each to
//! its own task.

mod connection;
#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod golden_tests;
pub mod versions;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::broker::Broker;

/// Accepts connections until the broker shuts down. Each connection runs in its own task.
pub async fn serve(broker: Arc<Broker>, listener: TcpListener) {
    let limit = broker.config().long("max.connections").max(1) as usize;
    let slots = Arc::new(Semaphore::new(limit));
    let mut shutdown = broker.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Running out of file descriptors must not end the server: pause and go on.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %peer, max_connections = limit, "connection refused: too many connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        tokio::spawn(async move {
            connection::run(broker, stream, peer).await;
            drop(permit);
        });
    }
}

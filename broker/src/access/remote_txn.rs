//! The remote access's transactional producer: Brook's Kafka client producer with a
//! `transactional.id` (`client/transaction.rs`), with errors turned into those the embedded
//! access gives for the same failure.

use std::sync::Arc;

use super::remote::{normalize, send_all};
use super::{BoxFuture, ConsumerGroupMetadata, Delivery, OutRecord, TxnProducer};
use crate::client::{ClientConfig, Cluster, Producer, ProducerConfig};
use crate::error::Result;

/// Kafka's default `linger.ms` is kept short: every call flushes what it sent anyway.
const LINGER_MS: u64 = 1;

/// A transactional producer over the Kafka protocol.
pub(super) struct RemoteTxnProducer {
    producer: Producer,
    /// The access's cluster view, for partition counts.
    cluster: Arc<Cluster>,
}

impl RemoteTxnProducer {
    /// Connects an idempotent acks=all producer with `transactional_id` and runs
    /// `init_transactions`, which fences earlier producers with the same id.
    pub(super) async fn init(
        client: ClientConfig,
        cluster: Arc<Cluster>,
        transactional_id: String,
        timeout_ms: u64,
    ) -> Result<RemoteTxnProducer> {
        let mut config = ProducerConfig::new(client);
        config.acks = -1;
        config.idempotent = true;
        config.linger_ms = LINGER_MS;
        config.transactional_id = Some(transactional_id);
        config.transaction_timeout_ms = timeout_ms;
        let producer = Producer::new(config).await?;
        producer.init_transactions().await?;
        Ok(RemoteTxnProducer { producer, cluster })
    }
}

impl TxnProducer for RemoteTxnProducer {
    fn begin(&mut self) -> Result<()> {
        self.producer.begin_transaction().map_err(normalize)
    }

    fn produce(&mut self, topic: &str, records: Vec<OutRecord>) -> BoxFuture<'_, Result<Vec<Delivery>>> {
        let topic = topic.to_string();
        Box::pin(async move {
            send_all(&self.producer, &self.cluster, &topic, records)
                .await
                .map_err(normalize)
        })
    }

    fn send_offsets(
        &mut self,
        offsets: Vec<(String, i32, i64)>,
        group: &ConsumerGroupMetadata,
    ) -> BoxFuture<'_, Result<()>> {
        let group = group.clone();
        Box::pin(async move {
            self.producer
                .send_offsets_to_transaction(&offsets, &group)
                .await
                .map_err(normalize)
        })
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.producer.commit_transaction().await.map_err(normalize) })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.producer.abort_transaction().await.map_err(normalize) })
    }
}

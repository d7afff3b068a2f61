//! `SELECT ... EMIT CHANGES`: the rows a stateless query produces from records that arrive
//! after it starts, as an endless stream that ends when the client drops it.
//!
//! It reads every partition of the source from its end offsets at the start, without a consumer
//! group (nothing is committed: a tail is a view, not a job), one bounded micro-batch at a time.
//! Records that do not decode are skipped and counted in the log, not dead-lettered: a tail must
//! not write to the cluster.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use brook_broker::access::{OffsetSpec, TopicAccess};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::SendableRecordBatchStream;

use super::fetch::fetch_round;
use super::plan::QueryPlan;
use super::JobSettings;
use crate::catalog::StreamDef;
use crate::error::{Error, Result};

/// What the tail carries from one poll to the next.
struct Tail {
    access: Arc<dyn TopicAccess>,
    plan: QueryPlan,
    topic: String,
    positions: BTreeMap<i32, i64>,
    pending: VecDeque<RecordBatch>,
    settings: JobSettings,
}

/// Starts tailing `source` through `select` from the current end of its topic.
pub async fn emit_changes(
    access: Arc<dyn TopicAccess>,
    source: StreamDef,
    select: &str,
    settings: JobSettings,
) -> Result<SendableRecordBatchStream> {
    let plan = QueryPlan::new(select, &source).await?;
    let schema = plan.output_schema();
    let positions = access
        .list_offsets(&source.topic, OffsetSpec::Latest)
        .await?
        .into_iter()
        .collect();
    let tail = Tail {
        access,
        plan,
        topic: source.topic,
        positions,
        pending: VecDeque::new(),
        settings,
    };
    let stream = futures::stream::unfold(tail, |mut tail| async move {
        loop {
            if let Some(batch) = tail.pending.pop_front() {
                return Some((Ok(batch), tail));
            }
            if let Err(e) = tail.poll().await {
                return Some((Err(DataFusionError::External(Box::new(e))), tail));
            }
        }
    });
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
}

impl Tail {
    /// Fetches one micro-batch from every partition and queues the query's non-empty results.
    async fn poll(&mut self) -> Result<()> {
        if self.positions.is_empty() {
            return Err(Error::Catalog(format!("topic {} has no partitions", self.topic)));
        }
        let s = &self.settings;
        let round = fetch_round(
            self.access.as_ref(),
            &self.topic,
            &self.positions,
            s.max_batch_records,
            s.fetch_max_bytes,
            s.fetch_wait_ms,
        )
        .await;
        for (p, from, e) in round.errors {
            match e {
                brook_broker::Error::OffsetOutOfRange { .. } => {
                    let latest = self.access.list_offsets(&self.topic, OffsetSpec::Latest).await?;
                    let end = latest
                        .into_iter()
                        .find(|(q, _)| *q == p)
                        .map(|(_, o)| o)
                        .unwrap_or(from);
                    self.positions.insert(p, end);
                }
                e if e.is_retriable() => {
                    tracing::debug!(topic = %self.topic, partition = p, error = %e, "tail fetch failed, retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(s.retry_backoff_ms)).await;
                }
                e => return Err(e.into()),
            }
        }
        let records = round.records;
        for r in &records {
            self.positions.insert(r.partition, r.offset + 1);
        }
        if records.is_empty() {
            return Ok(());
        }
        let decoded = self.plan.decode(&records)?;
        if !decoded.failed.is_empty() {
            tracing::info!(topic = %self.topic, skipped = decoded.failed.len(), first_error = %decoded.failed[0].1, "skipping records that do not decode");
        }
        for batch in self.plan.run(decoded.batch).await? {
            if batch.num_rows() > 0 {
                self.pending.push_back(batch);
            }
        }
        Ok(())
    }
}

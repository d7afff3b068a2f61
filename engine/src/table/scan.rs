//! `TopicScanExec`: the DataFusion plan node that reads a topic's partitions in parallel, one
//! output partition per topic partition, each a stream of bounded batches fetched in chunks from
//! a start offset to the end offset captured when the query started.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use brook_broker::access::ConsumerRecord;
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};

use super::columns::Meta;
use super::Source;
use crate::dlq;
use crate::error::Error;
use crate::format::{self, RecordDecoder};

/// The offsets `[start, end)` of one topic partition that a scan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRange {
    /// The topic partition.
    pub partition: i32,
    /// The first offset read.
    pub start: i64,
    /// The end offset captured when the query started (exclusive).
    pub end: i64,
}

/// Reads ranges of a topic's partitions as Arrow batches.
#[derive(Debug)]
pub struct TopicScanExec {
    source: Arc<Source>,
    /// Indexes into the table's schema of the columns produced.
    projection: Vec<usize>,
    schema: SchemaRef,
    /// One output partition per entry; an empty entry produces nothing.
    ranges: Vec<Option<PartitionRange>>,
    /// Rows each output partition may stop after (DataFusion still applies the limit above).
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl TopicScanExec {
    /// A scan of `ranges` producing the table columns `projection` (all when None).
    pub(super) fn new(
        source: Arc<Source>,
        projection: Option<&Vec<usize>>,
        ranges: Vec<PartitionRange>,
        limit: Option<usize>,
    ) -> DfResult<Self> {
        let projection = projection
            .cloned()
            .unwrap_or_else(|| (0..source.schema.fields().len()).collect());
        let schema = Arc::new(source.schema.project(&projection)?);
        let ranges: Vec<Option<PartitionRange>> = if ranges.is_empty() {
            vec![None]
        } else {
            ranges.into_iter().map(Some).collect()
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(ranges.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(TopicScanExec {
            source,
            projection,
            schema,
            ranges,
            limit,
            properties: Arc::new(properties),
        })
    }

    /// The ranges read, one per output partition.
    pub fn ranges(&self) -> Vec<PartitionRange> {
        self.ranges.iter().flatten().copied().collect()
    }
}

impl DisplayAs for TopicScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "TopicScanExec: topic={}, ranges=[", self.source.topic)?;
        for (i, r) in self.ranges().iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{}:{}..{}", r.partition, r.start, r.end)?;
        }
        write!(f, "]")?;
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for TopicScanExec {
    fn name(&self) -> &str {
        "TopicScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let range = *self
            .ranges
            .get(partition)
            .ok_or_else(|| DataFusionError::Internal(format!("TopicScanExec has no output partition {partition}")))?;
        let reader = PartitionReader {
            decoder: format::decoder(&self.source.spec).map_err(external)?,
            source: self.source.clone(),
            projection: self.projection.clone(),
            schema: self.schema.clone(),
            next: range.map_or(0, |r| r.start),
            range,
            pending: VecDeque::new(),
            exhausted: range.is_none(),
            remaining: self.limit,
        };
        let stream = futures::stream::try_unfold(reader, |mut reader| async move {
            Ok(reader.next_batch().await?.map(|batch| (batch, reader)))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream)))
    }
}

/// The state of one output partition's stream.
struct PartitionReader {
    source: Arc<Source>,
    decoder: Box<dyn RecordDecoder>,
    projection: Vec<usize>,
    schema: SchemaRef,
    range: Option<PartitionRange>,
    /// The next offset to fetch.
    next: i64,
    /// Fetched records not yet decoded (at most one fetch's worth).
    pending: VecDeque<ConsumerRecord>,
    /// Whether every record of the range has been fetched.
    exhausted: bool,
    /// Rows still wanted under a pushed-down limit.
    remaining: Option<usize>,
}

impl PartitionReader {
    /// The next non-empty batch, or None at the end of the range.
    async fn next_batch(&mut self) -> DfResult<Option<RecordBatch>> {
        loop {
            if self.remaining == Some(0) {
                return Ok(None);
            }
            if self.pending.is_empty() {
                if self.exhausted {
                    return Ok(None);
                }
                self.fetch().await?;
                continue;
            }
            let take = self.pending.len().min(self.source.limits.batch_rows);
            let records: Vec<ConsumerRecord> = self.pending.drain(..take).collect();
            let batch = self.decode(&records)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let batch = match &mut self.remaining {
                Some(remaining) => {
                    let keep = batch.num_rows().min(*remaining);
                    *remaining -= keep;
                    batch.slice(0, keep)
                }
                None => batch,
            };
            return Ok(Some(batch));
        }
    }

    /// Fetches the next chunk of the range into `pending`.
    async fn fetch(&mut self) -> DfResult<()> {
        let Some(range) = self.range else {
            self.exhausted = true;
            return Ok(());
        };
        if self.next >= range.end {
            self.exhausted = true;
            return Ok(());
        }
        let source = &self.source;
        let fetched = match source
            .access
            .fetch(
                &source.topic,
                range.partition,
                self.next,
                source.limits.fetch_max_bytes,
                0,
            )
            .await
        {
            Ok(f) => f,
            // Retention deleted records since the scan was planned: carry on from what is left.
            Err(brook_broker::Error::OffsetOutOfRange { log_start_offset, .. }) if log_start_offset > self.next => {
                self.next = log_start_offset;
                return Ok(());
            }
            Err(e) => return Err(external(Error::Broker(e))),
        };
        if fetched.records.is_empty() {
            // Nothing visible is left below the end offset (transaction markers, compacted gaps).
            self.exhausted = true;
            return Ok(());
        }
        for record in fetched.records {
            if record.offset < self.next {
                continue;
            }
            if record.offset >= range.end {
                self.exhausted = true;
                break;
            }
            self.next = record.offset + 1;
            self.pending.push_back(record);
        }
        Ok(())
    }

    /// Decodes `records` into a batch of the projected columns; records that do not decode are
    /// counted and sent to the dead-letter sink.
    fn decode(&self, records: &[ConsumerRecord]) -> DfResult<RecordBatch> {
        let values: Vec<Option<&[u8]>> = records.iter().map(|r| r.value.as_deref()).collect();
        let decoded = self.decoder.decode(&values).map_err(external)?;
        self.source.report_failures(records, &decoded.failed);
        let rows = decoded.rows.len();
        self.source.counters.add_decoded(rows as u64);
        let value_columns = self.source.value_columns.len();
        let columns: Vec<ArrayRef> = self
            .projection
            .iter()
            .map(|&i| match i.checked_sub(value_columns) {
                None => decoded.batch.column(self.source.value_columns[i]).clone(),
                Some(m) => Meta::ALL[m].build(records, &decoded.rows),
            })
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }
}

impl Source {
    /// Counts records that did not decode and hands each to the dead-letter sink, if any.
    fn report_failures(&self, records: &[ConsumerRecord], failed: &[(usize, String)]) {
        for (i, reason) in failed {
            let r = &records[*i];
            self.counters.add_skipped(1);
            tracing::debug!(topic = %self.topic, partition = r.partition, offset = r.offset, error = %reason, "record skipped");
            if let Some(sink) = &self.dead_letters {
                sink(dlq::dead_letter(
                    &self.topic,
                    r.partition,
                    r.offset,
                    r.key.clone(),
                    r.value.clone(),
                    reason,
                    "decode",
                ));
            }
        }
    }
}

/// An engine error as DataFusion carries it.
pub(crate) fn external(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

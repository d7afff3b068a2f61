//! A topic as a DataFusion table: [`TopicTable`] implements `TableProvider` with the value
//! columns of the topic's format followed by the Kafka metadata columns, and plans a bounded,
//! parallel scan ([`TopicScanExec`]) that reads only the partitions and offsets the filters on
//! the metadata columns allow.

pub mod columns;
mod pushdown;
mod sample;
mod scan;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use brook_broker::access::{OffsetSpec, OutRecord, TopicAccess};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

pub use columns::{timestamp_type, Meta};
pub use pushdown::Bounds;
pub use sample::{infer_format, sample_values, SAMPLE_MAX_RECORDS};
pub use scan::{PartitionRange, TopicScanExec};

use crate::error::Result;
use crate::format::{self, FormatSpec};

/// Receives each record that did not decode, as a dead letter (see `crate::dlq`). It must not
/// block: a caller that writes dead letters to a topic hands them to a bounded channel.
pub type DeadLetterSink = Arc<dyn Fn(OutRecord) + Send + Sync>;

/// The most rows in one batch a scan produces, by default.
pub const DEFAULT_BATCH_ROWS: usize = 8192;
/// The most bytes one fetch asks a partition for, by default.
pub const DEFAULT_FETCH_MAX_BYTES: usize = 1 << 20;

/// Bounds on what a scan holds in memory per partition: one fetch and one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// The most rows in one batch.
    pub batch_rows: usize,
    /// The most bytes one fetch asks for (a larger single record batch is still returned whole).
    pub fetch_max_bytes: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            batch_rows: DEFAULT_BATCH_ROWS,
            fetch_max_bytes: DEFAULT_FETCH_MAX_BYTES,
        }
    }
}

/// What the scans of one table have done so far.
#[derive(Debug, Default)]
pub struct ScanCounters {
    decoded: AtomicU64,
    skipped: AtomicU64,
}

impl ScanCounters {
    /// Records decoded into rows.
    pub fn decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }

    /// Records skipped because they did not decode.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    fn add_decoded(&self, n: u64) {
        self.decoded.fetch_add(n, Ordering::Relaxed);
    }

    fn add_skipped(&self, n: u64) {
        self.skipped.fetch_add(n, Ordering::Relaxed);
    }
}

/// Everything a scan needs to read and decode the topic, shared by its partitions' streams.
#[derive(Clone)]
struct Source {
    access: Arc<dyn TopicAccess>,
    topic: String,
    spec: FormatSpec,
    /// Indexes into the decoder's schema of the value columns kept (a value column named like a
    /// metadata column is hidden by it).
    value_columns: Vec<usize>,
    /// The table's schema: kept value columns, then the metadata columns.
    schema: SchemaRef,
    dead_letters: Option<DeadLetterSink>,
    limits: ScanLimits,
    counters: Arc<ScanCounters>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("topic", &self.topic)
            .field("format", &self.spec.format.name())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A topic as a table.
#[derive(Debug)]
pub struct TopicTable {
    source: Source,
}

impl TopicTable {
    /// A table over `topic` whose values are in `spec`'s format; json and csv need
    /// `spec.schema` (declared, or from [`infer_format`]).
    pub fn new(access: Arc<dyn TopicAccess>, topic: impl Into<String>, spec: FormatSpec) -> Result<TopicTable> {
        let value_schema = format::decoder(&spec)?.schema();
        let value_columns: Vec<usize> = (0..value_schema.fields().len())
            .filter(|&i| Meta::by_name(value_schema.field(i).name()).is_none())
            .collect();
        let fields: Vec<Field> = value_columns
            .iter()
            .map(|&i| value_schema.field(i).clone())
            .chain(Meta::ALL.iter().map(|m| m.field()))
            .collect();
        Ok(TopicTable {
            source: Source {
                access,
                topic: topic.into(),
                spec,
                value_columns,
                schema: Arc::new(Schema::new(fields)),
                dead_letters: None,
                limits: ScanLimits::default(),
                counters: Arc::default(),
            },
        })
    }

    /// The same table, handing records that do not decode to `sink`.
    pub fn with_dead_letters(mut self, sink: DeadLetterSink) -> TopicTable {
        self.source.dead_letters = Some(sink);
        self
    }

    /// The same table, counting into `counters` (shared with other tables, say).
    pub fn with_counters(mut self, counters: Arc<ScanCounters>) -> TopicTable {
        self.source.counters = counters;
        self
    }

    /// The same table with other scan bounds.
    pub fn with_limits(mut self, limits: ScanLimits) -> TopicTable {
        self.source.limits = limits;
        self
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.source.topic
    }

    /// The format its values are decoded with.
    pub fn format(&self) -> &FormatSpec {
        &self.source.spec
    }

    /// What this table's scans have decoded and skipped so far.
    pub fn counters(&self) -> Arc<ScanCounters> {
        self.source.counters.clone()
    }

    /// The ranges a scan with `bounds` reads: the allowed partitions, each from the latest of its
    /// log start, the offset bound and the first offset at the timestamp bound, to the earlier of
    /// its end offset now and the offset bound. Empty ranges are left out.
    pub async fn plan_ranges(&self, bounds: &Bounds) -> Result<Vec<PartitionRange>> {
        let access = &self.source.access;
        let topic = &self.source.topic;
        let earliest = access.list_offsets(topic, OffsetSpec::Earliest).await?;
        let latest = access.list_offsets(topic, OffsetSpec::Latest).await?;
        let by_time = match bounds.first_timestamp_ms() {
            Some(ms) => Some(access.list_offsets(topic, OffsetSpec::Timestamp(ms)).await?),
            None => None,
        };
        let mut ranges = Vec::new();
        for (partition, end_now) in latest {
            if !bounds.allows_partition(partition) {
                continue;
            }
            let log_start = lookup(&earliest, partition).unwrap_or(0);
            let (mut start, end) = bounds.offset_range(log_start, end_now);
            if let Some(by_time) = &by_time {
                // -1 (or nothing) means no record is at or after the time.
                let first = lookup(by_time, partition).filter(|o| *o >= 0).unwrap_or(end_now);
                start = start.max(first);
            }
            if start < end {
                ranges.push(PartitionRange { partition, start, end });
            }
        }
        Ok(ranges)
    }
}

fn lookup(offsets: &[(i32, i64)], partition: i32) -> Option<i64> {
    offsets.iter().find(|(p, _)| *p == partition).map(|(_, o)| *o)
}

#[async_trait]
impl TableProvider for TopicTable {
    fn schema(&self) -> SchemaRef {
        self.source.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters.iter().map(|f| pushdown::support(f)).collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let bounds = Bounds::from_filters(filters);
        let ranges = self.plan_ranges(&bounds).await.map_err(scan::external)?;
        tracing::debug!(topic = %self.source.topic, ?ranges, ?limit, "planned topic scan");
        let exec = TopicScanExec::new(Arc::new(self.source.clone()), projection, ranges, limit)?;
        Ok(Arc::new(exec))
    }
}

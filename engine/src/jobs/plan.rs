//! A continuous query's SELECT, planned once over its source stream and run over each
//! micro-batch of decoded records: the DataFusion side of a job and of `EMIT CHANGES`.
//!
//! The source is a `MemTable` named like the stream, with the stream's value columns followed
//! by the Kafka metadata columns (`_partition`, `_offset`, `_timestamp`, `_key`, `_headers`)
//! unless a value column already has that name. Each micro-batch replaces the table's one
//! partition and the planned query runs over it. Only stateless plans are accepted (filters,
//! projections, scalar functions), because a micro-batch sees a slice of the stream: an
//! aggregate, a sort or a limit over it would answer a question nobody asked.

use std::sync::Arc;

use brook_broker::access::ConsumerRecord;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::Dialect;
use datafusion::datasource::memory::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use tokio::sync::RwLock;

use crate::catalog::StreamDef;
use crate::error::{Error, Result};
use crate::format::{decoder, RecordDecoder};
use crate::table::columns::Meta;

/// A SELECT planned over one source stream.
pub struct QueryPlan {
    ctx: SessionContext,
    /// The source table's one partition, replaced by each micro-batch.
    input: Arc<RwLock<Vec<RecordBatch>>>,
    plan: LogicalPlan,
    decoder: Box<dyn RecordDecoder>,
    metas: Vec<Meta>,
    input_schema: SchemaRef,
    output_schema: SchemaRef,
    /// Whether the plan carries each row's input partition and offset (see [`super::trace`]).
    traced: bool,
}

/// A micro-batch decoded: the rows, which input record each row is, and the records that failed.
pub struct DecodedBatch {
    /// Value and metadata columns.
    pub batch: RecordBatch,
    /// For each row, the index of its record.
    pub rows: Vec<usize>,
    /// Records that did not decode: index and error in prose.
    pub failed: Vec<(usize, String)>,
}

impl QueryPlan {
    /// Plans `select`, which must read `source` (by its name) and nothing else.
    pub async fn new(select: &str, source: &StreamDef) -> Result<QueryPlan> {
        Self::build(select, source, false).await
    }

    /// Plans `select` like [`QueryPlan::new`], for [`QueryPlan::run_traced`]: each output row
    /// also says which input record it came from.
    pub async fn new_traced(select: &str, source: &StreamDef) -> Result<QueryPlan> {
        Self::build(select, source, true).await
    }

    async fn build(select: &str, source: &StreamDef, traced: bool) -> Result<QueryPlan> {
        let decoder = decoder(&source.format)?;
        let values = decoder.schema();
        let metas: Vec<Meta> = Meta::ALL
            .into_iter()
            .filter(|m| values.field_with_name(m.name()).is_err())
            .collect();
        let mut fields: Vec<_> = values.fields().iter().cloned().collect();
        fields.extend(metas.iter().map(|m| Arc::new(m.field())));
        let input_schema = Arc::new(Schema::new(fields));

        let config = SessionConfig::new().with_target_partitions(1);
        let ctx = SessionContext::new_with_config(config);
        for udf in crate::sql::udf::all() {
            ctx.register_udf(udf);
        }
        let statement = ctx.state().sql_to_statement(select, &Dialect::Generic)?;
        let tables = ctx.state().resolve_table_references(&statement)?;
        match tables.as_slice() {
            [t] if t.table() == source.name => {}
            [t] => {
                return Err(Error::Catalog(format!(
                    "the query reads {t}, but its source stream is {}",
                    source.name
                )))
            }
            [] => {
                return Err(Error::Catalog(
                    "a continuous query must read a stream: add FROM <stream>".into(),
                ))
            }
            _ => {
                return Err(Error::Catalog(format!(
                    "a continuous query reads one stream, this one reads {}",
                    tables.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
                )))
            }
        }
        let table = MemTable::try_new(input_schema.clone(), vec![vec![]])?;
        let input = table.batches[0].clone();
        ctx.register_table(
            datafusion::common::TableReference::bare(source.name.clone()),
            Arc::new(table),
        )?;
        let plan = ctx.state().statement_to_plan(statement).await?;
        check_stateless(&plan)?;
        let output_schema = Arc::new(plan.schema().as_arrow().clone());
        let plan = if traced { super::trace::trace(plan)? } else { plan };
        Ok(QueryPlan {
            traced,
            ctx,
            input,
            plan,
            decoder,
            metas,
            input_schema,
            output_schema,
        })
    }

    /// The schema of the rows the query produces.
    pub fn output_schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    /// Decodes `records` into one batch of value and metadata columns.
    pub fn decode(&self, records: &[ConsumerRecord]) -> Result<DecodedBatch> {
        let values: Vec<Option<&[u8]>> = records.iter().map(|r| r.value.as_deref()).collect();
        let decoded = self.decoder.decode(&values)?;
        let mut columns: Vec<ArrayRef> = decoded.batch.columns().to_vec();
        columns.extend(self.metas.iter().map(|m| m.build(records, &decoded.rows)));
        let batch = RecordBatch::try_new(self.input_schema.clone(), columns)?;
        Ok(DecodedBatch {
            batch,
            rows: decoded.rows,
            failed: decoded.failed,
        })
    }

    /// Runs a plan made by [`QueryPlan::new_traced`] over one batch: the rows with the output
    /// schema, and for each row the (partition, offset) of the input record it came from.
    pub async fn run_traced(&self, batch: RecordBatch) -> Result<Vec<(RecordBatch, Vec<(i32, i64)>)>> {
        if !self.traced {
            return Err(Error::Catalog("the plan was not made to be traced".into()));
        }
        let width = self.output_schema.fields().len();
        let mut out = Vec::new();
        for result in self.run(batch).await? {
            let column = |name: &str| result.column_by_name(name).cloned();
            let (Some(partitions), Some(offsets)) = (
                column(super::trace::TRACE_PARTITION),
                column(super::trace::TRACE_OFFSET),
            ) else {
                return Err(Error::Catalog("a traced plan lost its provenance columns".into()));
            };
            let partitions =
                datafusion::arrow::compute::cast(&partitions, &datafusion::arrow::datatypes::DataType::Int32)?;
            let offsets = datafusion::arrow::compute::cast(&offsets, &datafusion::arrow::datatypes::DataType::Int64)?;
            let partitions =
                datafusion::arrow::array::AsArray::as_primitive::<datafusion::arrow::datatypes::Int32Type>(&partitions);
            let offsets =
                datafusion::arrow::array::AsArray::as_primitive::<datafusion::arrow::datatypes::Int64Type>(&offsets);
            let origins = (0..result.num_rows())
                .map(|i| (partitions.value(i), offsets.value(i)))
                .collect();
            let rows = RecordBatch::try_new(self.output_schema.clone(), result.columns()[..width].to_vec())?;
            out.push((rows, origins));
        }
        Ok(out)
    }

    /// Runs the query over one batch with the input schema.
    pub async fn run(&self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        *self.input.write().await = vec![batch];
        let out = DataFrame::new(self.ctx.state(), self.plan.clone()).collect().await;
        self.input.write().await.clear();
        Ok(out?)
    }
}

/// The first operator of `plan` (top down) that needs state across micro-batches, if any: only
/// projections, filters, aliases, unnests and the scan can run batch by batch. Pipelines use it
/// too, so that a transform and a continuous query accept the same SQL.
pub fn first_stateful(plan: &LogicalPlan) -> Option<&LogicalPlan> {
    let allowed = matches!(
        plan,
        LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::TableScan(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Unnest(_)
    );
    if !allowed {
        return Some(plan);
    }
    plan.inputs().into_iter().find_map(first_stateful)
}

/// Refuses plans that need state across micro-batches.
fn check_stateless(plan: &LogicalPlan) -> Result<()> {
    match first_stateful(plan) {
        None => Ok(()),
        Some(op) => Err(Error::Catalog(format!(
            "continuous queries are stateless for now: {} is not supported (filters, projections and \
             scalar functions are)",
            op.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Format, FormatSpec};
    use brook_broker::access::TimestampType;
    use bytes::Bytes;
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::arrow::util::pretty::pretty_format_batches;

    fn stream() -> StreamDef {
        let schema = Arc::new(Schema::new(vec![
            Field::new("status", DataType::Int64, true),
            Field::new("path", DataType::Utf8, true),
        ]));
        StreamDef {
            name: "access".into(),
            topic: "access".into(),
            format: FormatSpec::new(Format::Json).with_schema(schema),
            key_column: None,
        }
    }

    fn record(offset: i64, value: &str) -> ConsumerRecord {
        ConsumerRecord {
            topic: "access".into(),
            partition: 0,
            offset,
            timestamp_ms: 1000 + offset,
            timestamp_type: TimestampType::Create,
            key: Some(Bytes::from(format!("k{offset}"))),
            value: Some(Bytes::from(value.to_string())),
            headers: vec![],
        }
    }

    #[tokio::test]
    async fn filters_and_projects_a_micro_batch_with_metadata_columns() {
        let plan = QueryPlan::new(
            "SELECT _key, upper(path) AS p, _offset FROM access WHERE status >= 500",
            &stream(),
        )
        .await
        .unwrap();
        let records = vec![
            record(0, r#"{"status": 200, "path": "/a"}"#),
            record(1, r#"{"status": 503, "path": "/b"}"#),
            record(2, r#"{"status": "#),
            record(3, r#"{"status": 500, "path": "/c"}"#),
        ];
        let decoded = plan.decode(&records).unwrap();
        assert_eq!(decoded.rows, vec![0, 1, 3]);
        assert_eq!(decoded.failed.iter().map(|f| f.0).collect::<Vec<_>>(), vec![2]);
        let out = plan.run(decoded.batch).await.unwrap();
        let text = pretty_format_batches(&out).unwrap().to_string();
        assert!(text.contains("| k1   | /B | 1       |"), "{text}");
        assert!(text.contains("| k3   | /C | 3       |"), "{text}");
        assert!(!text.contains("k0"), "{text}");
    }

    #[tokio::test]
    async fn a_traced_plan_says_which_record_each_row_came_from() {
        for sql in [
            "SELECT upper(path) AS p FROM access WHERE status >= 500",
            "SELECT p FROM (SELECT upper(path) AS p, status FROM access) t WHERE status >= 500",
            "SELECT * FROM access WHERE status >= 500",
        ] {
            let plan = QueryPlan::new_traced(sql, &stream()).await.unwrap();
            let records = vec![
                record(7, r#"{"status": 200, "path": "/a"}"#),
                record(8, r#"{"status": 503, "path": "/b"}"#),
                record(9, r#"{"status": 500, "path": "/c"}"#),
            ];
            let decoded = plan.decode(&records).unwrap();
            let out = plan.run_traced(decoded.batch).await.unwrap();
            let origins: Vec<_> = out.iter().flat_map(|(_, o)| o.clone()).collect();
            assert_eq!(origins, vec![(0, 8), (0, 9)], "{sql}");
            for (rows, _) in &out {
                assert_eq!(rows.schema(), plan.output_schema(), "{sql}");
            }
        }
        let err = QueryPlan::new_traced("SELECT unnest([1, 2]) FROM access", &stream())
            .await
            .err();
        assert!(err.is_some_and(|e| e.to_string().contains("UNNEST")));
    }

    #[tokio::test]
    async fn stateful_or_foreign_queries_are_refused() {
        for (sql, expect) in [
            ("SELECT count(*) FROM access", "stateless"),
            ("SELECT * FROM access ORDER BY status", "stateless"),
            ("SELECT * FROM access LIMIT 3", "stateless"),
            ("SELECT * FROM other", "reads other"),
            (
                "SELECT * FROM access a JOIN access b ON a.status = b.status",
                "stateless",
            ),
        ] {
            let err = QueryPlan::new(sql, &stream()).await.err().expect(sql).to_string();
            assert!(err.contains(expect), "{sql}: {err}");
        }
    }
}

//! Row provenance through a stateless plan: rewrites a continuous query's plan so that every
//! output row also carries the partition and offset of the input record it came from, which is
//! what lets a pipeline transform write each input's output exactly once after a crash.

use datafusion::common::Column;
use datafusion::logical_expr::{col, Expr, LogicalPlan, LogicalPlanBuilder};

use crate::error::{Error, Result};

/// The trailing output column with the input record's partition.
pub const TRACE_PARTITION: &str = "__brook_partition";
/// The trailing output column with the input record's offset.
pub const TRACE_OFFSET: &str = "__brook_offset";

/// `plan` with [`TRACE_PARTITION`] and [`TRACE_OFFSET`] appended to its output. Only plans made
/// of projections, filters, aliases and the scan can be traced: one input row gives at most one
/// output row there, so a row's origin is unambiguous.
pub fn trace(plan: LogicalPlan) -> Result<LogicalPlan> {
    let carried = || {
        [
            Expr::Column(Column::from_name(TRACE_PARTITION)),
            Expr::Column(Column::from_name(TRACE_OFFSET)),
        ]
    };
    let unsupported = |what: &str| {
        Error::Catalog(format!(
            "a pipeline transform can only filter and project ({what} can turn one record into several)"
        ))
    };
    Ok(match plan {
        LogicalPlan::TableScan(_) => {
            let mut exprs: Vec<Expr> = plan.schema().columns().into_iter().map(Expr::Column).collect();
            exprs.push(col("_partition").alias(TRACE_PARTITION));
            exprs.push(col("_offset").alias(TRACE_OFFSET));
            LogicalPlanBuilder::from(plan).project(exprs)?.build()?
        }
        LogicalPlan::Filter(filter) => {
            let input = trace(std::sync::Arc::unwrap_or_clone(filter.input))?;
            LogicalPlanBuilder::from(input).filter(filter.predicate)?.build()?
        }
        LogicalPlan::Projection(projection) => {
            let input = trace(std::sync::Arc::unwrap_or_clone(projection.input))?;
            let mut exprs = projection.expr;
            exprs.extend(carried());
            LogicalPlanBuilder::from(input).project(exprs)?.build()?
        }
        LogicalPlan::SubqueryAlias(alias) => {
            let input = trace(std::sync::Arc::unwrap_or_clone(alias.input))?;
            LogicalPlanBuilder::from(input).alias(alias.alias)?.build()?
        }
        LogicalPlan::Unnest(_) => return Err(unsupported("UNNEST")),
        other => return Err(unsupported(other.display().to_string().as_str())),
    })
}

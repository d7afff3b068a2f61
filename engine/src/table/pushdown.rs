//! Which filters on the metadata columns a topic scan can use to read less of the log, and the
//! bounds they imply: partitions to read, an offset range, and a first timestamp.
//!
//! Every filter the scan uses is reported to DataFusion as Inexact, so DataFusion still applies
//! it to the rows: bounds here only need to keep every row the filter keeps (a superset), never
//! exactly the rows. That lets one analysis serve `=`, `IN`, `BETWEEN`, comparisons, `AND` and
//! `OR` of one column without edge cases deciding correctness.
//!
//! A timestamp filter only bounds where reading starts: ListOffsets by time finds the first
//! offset whose timestamp is at or after a time, which is exact for a lower bound, but records
//! after a later offset may still carry earlier timestamps (producers set them), so an upper
//! bound on `_timestamp` cannot stop a scan early without missing rows.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};

use super::columns::Meta;

/// A set of values as sorted, disjoint half-open ranges `[lo, hi)`.
type Ranges = Vec<(i64, i64)>;

/// What the filters allow of the metadata columns; each None is "anything".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bounds {
    /// Partitions that may hold matching rows.
    pub partitions: Option<Ranges>,
    /// Offsets that may hold matching rows.
    pub offsets: Option<Ranges>,
    /// Timestamps (ms) that matching rows may carry.
    pub timestamps: Option<Ranges>,
}

impl Bounds {
    /// The bounds implied by filters that all hold (a conjunction).
    pub fn from_filters(filters: &[Expr]) -> Bounds {
        let mut bounds = Bounds::default();
        for filter in filters {
            if let Some((meta, ranges)) = analyze(filter) {
                let slot = match meta {
                    Meta::Partition => &mut bounds.partitions,
                    Meta::Offset => &mut bounds.offsets,
                    Meta::Timestamp => &mut bounds.timestamps,
                    Meta::Key | Meta::Headers => continue,
                };
                *slot = Some(match slot.take() {
                    Some(prev) => intersect(&prev, &ranges),
                    None => ranges,
                });
            }
        }
        bounds
    }

    /// Whether partition `p` may hold matching rows.
    pub fn allows_partition(&self, p: i32) -> bool {
        contains(&self.partitions, p as i64)
    }

    /// The offsets to read as `[start, end)` within `[earliest, latest)`; empty when none match.
    pub fn offset_range(&self, earliest: i64, latest: i64) -> (i64, i64) {
        match hull(&self.offsets) {
            Some((lo, hi)) => (earliest.max(lo), latest.min(hi)),
            None => (earliest, latest),
        }
    }

    /// The earliest timestamp (ms) a matching row may carry, if the filters bound it.
    pub fn first_timestamp_ms(&self) -> Option<i64> {
        match &self.timestamps {
            Some(r) if r.is_empty() => Some(i64::MAX),
            // A bound at or before the epoch bounds nothing, and ListOffsets would read -1..-5 as
            // Kafka's special positions (latest, earliest, ...).
            Some(r) => Some(r[0].0).filter(|lo| *lo > 0),
            None => None,
        }
    }
}

/// Inexact when the scan can use `filter` to read less, else Unsupported.
pub fn support(filter: &Expr) -> TableProviderFilterPushDown {
    match analyze(filter) {
        Some((Meta::Partition | Meta::Offset | Meta::Timestamp, _)) => TableProviderFilterPushDown::Inexact,
        _ => TableProviderFilterPushDown::Unsupported,
    }
}

/// The metadata column `expr` constrains and the values it allows, when it is a predicate on one
/// of `_partition`, `_offset`, `_timestamp` alone.
fn analyze(expr: &Expr) -> Option<(Meta, Ranges)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            let (a, b) = (analyze(left), analyze(right));
            match (a, b) {
                (Some((ma, ra)), Some((mb, rb))) if ma == mb => Some((ma, intersect(&ra, &rb))),
                (Some(one), _) | (_, Some(one)) => Some(one),
                _ => None,
            }
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let (ma, ra) = analyze(left)?;
            let (mb, rb) = analyze(right)?;
            (ma == mb).then(|| (ma, union(ra, rb)))
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if let (Some(meta), Some(v)) = (column(left), literal(right)) {
                compare(meta, *op, v)
            } else if let (Some(v), Some(meta)) = (literal(left), column(right)) {
                compare(meta, op.swap()?, v)
            } else {
                None
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let meta = column(expr)?;
            let (lo, hi) = (literal(low)?, literal(high)?);
            let (_, a) = compare(meta, Operator::GtEq, lo)?;
            let (_, b) = compare(meta, Operator::LtEq, hi)?;
            Some((meta, intersect(&a, &b)))
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => {
            let meta = column(expr)?;
            let mut ranges = Vec::new();
            for item in list {
                let (_, r) = compare(meta, Operator::Eq, literal(item)?)?;
                ranges = union(ranges, r);
            }
            Some((meta, ranges))
        }
        _ => None,
    }
}

/// The values of `meta` for which `meta op v` may hold.
fn compare(meta: Meta, op: Operator, v: i64) -> Option<(Meta, Ranges)> {
    // Timestamp literals were rounded down to ms, so `>` keeps `v` itself (a superset).
    let exact = meta != Meta::Timestamp;
    let range = match op {
        Operator::Eq => (v, v.saturating_add(1)),
        Operator::Lt if exact => (i64::MIN, v),
        Operator::Lt | Operator::LtEq => (i64::MIN, v.saturating_add(1)),
        Operator::Gt if exact => (v.saturating_add(1), i64::MAX),
        Operator::Gt | Operator::GtEq => (v, i64::MAX),
        _ => return None,
    };
    Some((meta, vec![range].into_iter().filter(|(lo, hi)| lo < hi).collect()))
}

/// The metadata column `expr` reads, looking through casts that keep its values' order.
fn column(expr: &Expr) -> Option<Meta> {
    match expr {
        Expr::Column(c) => {
            Meta::by_name(&c.name).filter(|m| matches!(m, Meta::Partition | Meta::Offset | Meta::Timestamp))
        }
        Expr::Cast(c) => column(&c.expr).filter(|m| same_units(*m, c.field.data_type())),
        Expr::TryCast(c) => column(&c.expr).filter(|m| same_units(*m, c.field.data_type())),
        _ => None,
    }
}

/// Whether casting metadata column `m` to `to` keeps both its order and its units: integer
/// widening for offsets and partitions, a millisecond timestamp for `_timestamp`. Other casts
/// (an offset read as a timestamp, a timestamp narrowed to Int32) are not pushed down.
fn same_units(m: Meta, to: &DataType) -> bool {
    match m {
        Meta::Partition => matches!(to, DataType::Int32 | DataType::Int64),
        Meta::Offset => matches!(to, DataType::Int64),
        Meta::Timestamp => matches!(to, DataType::Timestamp(TimeUnit::Millisecond, _)),
        _ => false,
    }
}

/// An integer literal, or a time literal as ms since the epoch (rounded down).
fn literal(expr: &Expr) -> Option<i64> {
    let value = match expr {
        Expr::Literal(v, _) => v,
        // A cast literal is left alone: its units may differ from the raw value's (constant
        // folding turns the common cases into plain literals before pushdown anyway).
        _ => return None,
    };
    match value {
        ScalarValue::Int8(Some(v)) => Some(*v as i64),
        ScalarValue::Int16(Some(v)) => Some(*v as i64),
        ScalarValue::Int32(Some(v)) => Some(*v as i64),
        ScalarValue::Int64(Some(v)) => Some(*v),
        ScalarValue::UInt8(Some(v)) => Some(*v as i64),
        ScalarValue::UInt16(Some(v)) => Some(*v as i64),
        ScalarValue::UInt32(Some(v)) => Some(*v as i64),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok(),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1000),
        ScalarValue::TimestampMillisecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(v.div_euclid(1000)),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000_000)),
        ScalarValue::Date32(Some(d)) => Some(*d as i64 * 86_400_000),
        ScalarValue::Date64(Some(ms)) => Some(*ms),
        _ => None,
    }
}

fn contains(ranges: &Option<Ranges>, v: i64) -> bool {
    match ranges {
        Some(r) => r.iter().any(|(lo, hi)| *lo <= v && v < *hi),
        None => true,
    }
}

fn hull(ranges: &Option<Ranges>) -> Option<(i64, i64)> {
    let r = ranges.as_ref()?;
    Some(match (r.first(), r.last()) {
        (Some(first), Some(last)) => (first.0, last.1),
        _ => (0, 0),
    })
}

fn union(mut a: Ranges, b: Ranges) -> Ranges {
    a.extend(b);
    a.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(a.len());
    for (lo, hi) in a {
        match out.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn intersect(a: &Ranges, b: &Ranges) -> Ranges {
    let mut out = Vec::new();
    for &(alo, ahi) in a {
        for &(blo, bhi) in b {
            let (lo, hi) = (alo.max(blo), ahi.min(bhi));
            if lo < hi {
                out.push((lo, hi));
            }
        }
    }
    union(out, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    fn ts(ms: i64) -> Expr {
        lit(ScalarValue::TimestampMillisecond(Some(ms), Some("UTC".into())))
    }

    #[test]
    fn partition_predicates_pick_partitions() {
        let b = Bounds::from_filters(&[col("_partition").in_list(vec![lit(1), lit(3)], false)]);
        assert!(!b.allows_partition(0) && b.allows_partition(1) && !b.allows_partition(2) && b.allows_partition(3));
        let b = Bounds::from_filters(&[col("_partition").eq(lit(0)).or(col("_partition").eq(lit(2)))]);
        assert!(b.allows_partition(0) && !b.allows_partition(1) && b.allows_partition(2));
        let b = Bounds::from_filters(&[lit(2).lt_eq(col("_partition"))]);
        assert!(!b.allows_partition(1) && b.allows_partition(2) && b.allows_partition(9));
    }

    #[test]
    fn offset_predicates_narrow_the_range_and_intersect() {
        let b = Bounds::from_filters(&[col("_offset").gt(lit(10i64)), col("_offset").lt_eq(lit(20i64))]);
        assert_eq!(b.offset_range(0, 100), (11, 21));
        assert_eq!(b.offset_range(15, 18), (15, 18));
        let b = Bounds::from_filters(&[col("_offset").between(lit(5i64), lit(7i64))]);
        assert_eq!(b.offset_range(0, 100), (5, 8));
        let b = Bounds::from_filters(&[col("_offset").eq(lit(5i64)), col("_offset").eq(lit(6i64))]);
        let (start, end) = b.offset_range(0, 100);
        assert!(start >= end, "contradictory filters read nothing");
    }

    #[test]
    fn timestamps_bound_only_the_start() {
        let b = Bounds::from_filters(&[col("_timestamp").gt_eq(ts(1_000)), col("_timestamp").lt(ts(2_000))]);
        assert_eq!(b.first_timestamp_ms(), Some(1_000));
        let b = Bounds::from_filters(&[col("_timestamp").lt(ts(2_000))]);
        assert_eq!(b.first_timestamp_ms(), None);
        let nanos = lit(ScalarValue::TimestampNanosecond(Some(1_500_000), None));
        let b = Bounds::from_filters(&[col("_timestamp").gt(nanos)]);
        assert_eq!(
            b.first_timestamp_ms(),
            Some(1),
            "rounded down, never past a matching row"
        );
    }

    #[test]
    fn unit_changing_casts_and_pre_epoch_bounds_are_not_pushed() {
        use datafusion::logical_expr::cast;
        // An offset read as a timestamp must not become an offset range.
        let as_time = cast(col("_offset"), DataType::Timestamp(TimeUnit::Millisecond, None));
        let b = Bounds::from_filters(&[as_time.lt(ts(1))]);
        assert_eq!(b.offset_range(0, 100), (0, 100));
        assert_eq!(b.first_timestamp_ms(), None);
        // Widening keeps units and is pushed.
        let b = Bounds::from_filters(&[cast(col("_partition"), DataType::Int64).eq(lit(1i64))]);
        assert!(!b.allows_partition(0) && b.allows_partition(1));
        // A lower bound at or before the epoch bounds nothing (Kafka reads -1..-5 as positions).
        let b = Bounds::from_filters(&[col("_timestamp").gt_eq(ts(-1))]);
        assert_eq!(b.first_timestamp_ms(), None);
    }

    #[test]
    fn other_predicates_are_not_pushed() {
        assert_eq!(
            support(&col("status").eq(lit(500))),
            TableProviderFilterPushDown::Unsupported
        );
        assert_eq!(
            support(&col("_offset").not_eq(lit(1i64))),
            TableProviderFilterPushDown::Unsupported
        );
        let mixed = col("_offset").eq(lit(1i64)).or(col("_partition").eq(lit(1)));
        assert_eq!(support(&mixed), TableProviderFilterPushDown::Unsupported);
        assert_eq!(
            support(&col("_offset").gt(lit(1i64))),
            TableProviderFilterPushDown::Inexact
        );
    }
}

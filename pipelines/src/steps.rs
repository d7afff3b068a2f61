//! A transform's `steps:` (filter, select, drop, rename) compiled into the one SELECT that the
//! runtime plans, so that steps and `sql:` transforms run the same way.
//!
//! Steps apply in order. Consecutive steps share one SELECT while that keeps their meaning (a
//! filter followed by a projection); otherwise the query so far becomes a subquery aliased
//! `_step<n>`. Column names are always quoted, so they match the records' keys exactly; filter and
//! select expressions are SQL, inserted in parentheses after the validator has parsed each as one
//! expression. When the input's columns are known, `*` is written as the explicit column list
//! (so metadata columns such as `_offset` never leak into the output) and a rename keeps the
//! column order; when they are not, drop uses `* EXCLUDE (...)` and a rename moves the renamed
//! columns to the end.

/// One step of a transform's `steps:` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `filter: <condition>`: keeps the rows for which the SQL condition is true.
    Filter(String),
    /// `select: [a, b]`: keeps these columns, in this order.
    Select(Vec<String>),
    /// `select: {out: <expr>, ...}`: computes these columns, in this order.
    Compute(Vec<(String, String)>),
    /// `drop: [a, b]`: removes these columns.
    Drop(Vec<String>),
    /// `rename: {old: new, ...}`: renames columns.
    Rename(Vec<(String, String)>),
}

/// `name` as an SQL identifier: in double quotes, with inner quotes doubled.
pub use brook_connectors::sinks::sql_types::quote_ident;

/// The SELECT being built: its projection (None for every column), source and conditions.
struct Query {
    projection: Option<Vec<String>>,
    from: String,
    filters: Vec<String>,
}

impl Query {
    fn render(&self, columns: Option<&[String]>) -> String {
        let projection = match (&self.projection, columns) {
            (Some(items), _) => items.join(", "),
            (None, Some(columns)) if !columns.is_empty() => quoted_list(columns),
            (None, _) => "*".to_string(),
        };
        let mut sql = format!("SELECT {projection} FROM {}", self.from);
        if !self.filters.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.filters.join(" AND "));
        }
        sql
    }
}

fn quoted_list(names: &[String]) -> String {
    names.iter().map(|n| quote_ident(n)).collect::<Vec<_>>().join(", ")
}

/// Compiles `steps` over the table `input` into one SELECT. `columns` are the input's value
/// columns when known.
pub fn compile(input: &str, steps: &[Step], columns: Option<&[String]>) -> String {
    let mut query = Query {
        projection: None,
        from: quote_ident(input),
        filters: Vec::new(),
    };
    // The columns of the query so far, when known.
    let mut known: Option<Vec<String>> = columns.map(<[String]>::to_vec);
    for (n, step) in steps.iter().enumerate() {
        // A step after a projection reads its output: a filter may name computed columns, and
        // two projections do not compose in one SELECT.
        if query.projection.is_some() {
            query = Query {
                from: format!(
                    "({}) AS {}",
                    query.render(known.as_deref()),
                    quote_ident(&format!("_step{n}"))
                ),
                projection: None,
                filters: Vec::new(),
            };
        }
        match step {
            Step::Filter(condition) => query.filters.push(format!("({condition})")),
            Step::Select(names) => {
                query.projection = Some(names.iter().map(|n| quote_ident(n)).collect());
                known = Some(names.clone());
            }
            Step::Compute(items) => {
                let rendered = items
                    .iter()
                    .map(|(name, expr)| format!("({expr}) AS {}", quote_ident(name)))
                    .collect();
                query.projection = Some(rendered);
                known = Some(items.iter().map(|(name, _)| name.clone()).collect());
            }
            Step::Drop(names) => match &known {
                Some(columns) => {
                    let kept: Vec<String> = columns.iter().filter(|c| !names.contains(c)).cloned().collect();
                    query.projection = Some(kept.iter().map(|c| quote_ident(c)).collect());
                    known = Some(kept);
                }
                None => query.projection = Some(vec![format!("* EXCLUDE ({})", quoted_list(names))]),
            },
            Step::Rename(pairs) => {
                let new_name = |c: &String| pairs.iter().find(|(old, _)| old == c).map(|(_, new)| new);
                match &known {
                    Some(columns) => {
                        query.projection = Some(
                            columns
                                .iter()
                                .map(|c| match new_name(c) {
                                    Some(new) => format!("{} AS {}", quote_ident(c), quote_ident(new)),
                                    None => quote_ident(c),
                                })
                                .collect(),
                        );
                        known = Some(columns.iter().map(|c| new_name(c).unwrap_or(c).clone()).collect());
                    }
                    None => {
                        let olds: Vec<String> = pairs.iter().map(|(old, _)| old.clone()).collect();
                        let mut items = vec![format!("* EXCLUDE ({})", quoted_list(&olds))];
                        items.extend(
                            pairs
                                .iter()
                                .map(|(old, new)| format!("{} AS {}", quote_ident(old), quote_ident(new))),
                        );
                        query.projection = Some(items);
                    }
                }
            }
        }
    }
    query.render(known.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn identifiers_are_quoted_with_inner_quotes_doubled() {
        assert_eq!(quote_ident("ts"), "\"ts\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_ident("Web-Logs"), "\"Web-Logs\"");
    }

    #[test]
    fn no_steps_read_everything() {
        assert_eq!(compile("access", &[], None), "SELECT * FROM \"access\"");
        let columns = names(&["a", "b"]);
        assert_eq!(
            compile("access", &[], Some(&columns)),
            "SELECT \"a\", \"b\" FROM \"access\""
        );
    }

    #[test]
    fn filters_then_a_projection_share_one_select() {
        let steps = [
            Step::Filter("status >= 500".into()),
            Step::Filter("host <> 'x'".into()),
            Step::Select(names(&["ts", "host"])),
        ];
        assert_eq!(
            compile("access", &steps, None),
            "SELECT \"ts\", \"host\" FROM \"access\" WHERE (status >= 500) AND (host <> 'x')"
        );
    }

    #[test]
    fn a_filter_after_a_projection_reads_a_subquery() {
        let steps = [
            Step::Compute(vec![("code".into(), "status / 100".into())]),
            Step::Filter("code = 5".into()),
        ];
        assert_eq!(
            compile("access", &steps, None),
            "SELECT \"code\" FROM (SELECT (status / 100) AS \"code\" FROM \"access\") AS \"_step1\" WHERE (code = 5)"
        );
    }

    #[test]
    fn drop_and_rename_without_columns_use_exclude() {
        let steps = [
            Step::Drop(names(&["path"])),
            Step::Rename(vec![("host".into(), "server".into())]),
        ];
        assert_eq!(
            compile("access", &steps, None),
            "SELECT * EXCLUDE (\"host\"), \"host\" AS \"server\" FROM (SELECT * EXCLUDE (\"path\") FROM \"access\") AS \"_step1\""
        );
    }

    #[test]
    fn drop_and_rename_with_columns_keep_the_order() {
        let columns = names(&["ts", "host", "path"]);
        let steps = [
            Step::Drop(names(&["path"])),
            Step::Rename(vec![("ts".into(), "time".into())]),
        ];
        assert_eq!(
            compile("access", &steps, Some(&columns)),
            "SELECT \"ts\" AS \"time\", \"host\" FROM (SELECT \"ts\", \"host\" FROM \"access\") AS \"_step1\""
        );
    }

    #[test]
    fn every_compiled_form_plans_in_datafusion() {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Utf8, true),
            Field::new("host", DataType::Utf8, true),
            Field::new("path", DataType::Utf8, true),
        ]));
        let steps = [
            Step::Filter("host <> 'a'".into()),
            Step::Drop(names(&["path"])),
            Step::Rename(vec![("host".into(), "server".into())]),
            Step::Compute(vec![("up".into(), "upper(server)".into()), ("ts".into(), "ts".into())]),
        ];
        let planner = crate::sql::Planner::new();
        for columns in [None, Some(names(&["ts", "host", "path"]))] {
            let sql = compile("web-logs", &steps, columns.as_deref());
            let parsed = crate::sql::parse_select(&sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            let out = planner
                .plan(parsed.statement, &sql, "web-logs", &schema)
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            let out: Vec<_> = out.fields().iter().map(|f| f.name().clone()).collect();
            assert_eq!(out, ["up", "ts"], "{sql}");
        }
    }

    #[test]
    fn a_select_makes_the_columns_known_to_later_steps() {
        let steps = [
            Step::Select(names(&["a", "b"])),
            Step::Rename(vec![("a".into(), "x".into())]),
        ];
        assert_eq!(
            compile("t", &steps, None),
            "SELECT \"a\" AS \"x\", \"b\" FROM (SELECT \"a\", \"b\" FROM \"t\") AS \"_step1\""
        );
    }
}

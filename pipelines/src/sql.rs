//! SQL in pipeline files: a transform's SELECT parsed with DataFusion's parser (generic dialect),
//! the tables it reads with their positions, step expressions, declared column types, and
//! planning over an empty table of the input's columns to catch unknown columns and type errors.
//!
//! Planning is synchronous although DataFusion's API is async: the only table is an in-memory
//! one, so the planning future never waits, and it is driven with `futures::executor::block_on`
//! (no runtime needed, safe to call from inside one).

use std::ops::ControlFlow;
use std::sync::Arc;

use brook_engine::table::Meta;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::config::Dialect;
use datafusion::common::TableReference;
use datafusion::datasource::memory::MemTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{visit_relations, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

/// The column types a `schema:` may declare, as users write them (case-insensitive).
pub const SQL_TYPES: &[&str] = &[
    "BIGINT",
    "INT",
    "DOUBLE",
    "FLOAT",
    "TEXT",
    "VARCHAR",
    "BOOLEAN",
    "TIMESTAMP",
    "DATE",
];

/// The Arrow type of a declared column type, as DataFusion's `CREATE TABLE` maps it.
pub fn sql_type(name: &str) -> Option<DataType> {
    Some(match name.trim().to_ascii_uppercase().as_str() {
        "BIGINT" => DataType::Int64,
        "INT" | "INTEGER" => DataType::Int32,
        "DOUBLE" => DataType::Float64,
        "FLOAT" => DataType::Float32,
        "TEXT" | "VARCHAR" | "STRING" => DataType::Utf8,
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Nanosecond, None),
        "DATE" => DataType::Date32,
        _ => return None,
    })
}

/// An SQL error with the position the parser or planner gave, inside the SQL text (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// What is wrong.
    pub message: String,
    /// The line inside the SQL, if known.
    pub line: Option<usize>,
    /// The column inside the SQL, if known.
    pub column: Option<usize>,
    /// How to fix it, when there is something to suggest.
    pub hint: Option<String>,
    /// The column the SQL names that does not exist, when that is the error.
    pub unknown_column: Option<String>,
}

impl SqlError {
    fn new(message: impl Into<String>) -> SqlError {
        SqlError {
            message: message.into(),
            line: None,
            column: None,
            hint: None,
            unknown_column: None,
        }
    }

    /// A DataFusion error, with the position of the offending token when it is known; a
    /// statement that ends too early points just past its end.
    pub fn from_datafusion(e: DataFusionError, sql: &str) -> SqlError {
        let error = match brook_engine::sql::from_datafusion(e) {
            brook_engine::Error::InvalidStatement { message, line, column } => SqlError {
                message: strip_position(&message),
                line: line.map(|l| l as usize),
                column: column.map(|c| c as usize),
                hint: None,
                unknown_column: None,
            },
            other => SqlError::new(other.to_string()),
        };
        error.at_end_if_truncated(sql).unknown_column(sql)
    }

    /// DataFusion's "No field named x. Valid fields are t.a, t.b." as a short message pointing
    /// at the column in the SQL, with the columns there are as the hint.
    fn unknown_column(self, sql: &str) -> SqlError {
        let Some(rest) = self.message.split("No field named ").nth(1) else {
            return self;
        };
        // The name runs to the next blank (or closing quote) and may be qualified: `a.status`.
        let qualified = match rest.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or_default(),
            None => rest.split_whitespace().next().unwrap_or_default().trim_end_matches('.'),
        };
        let column = qualified.rsplit('.').next().unwrap_or(qualified).to_string();
        let valid: Vec<String> = rest
            .split("Valid fields are ")
            .nth(1)
            .map(|list| {
                list.trim_end()
                    .trim_end_matches('.')
                    .split(", ")
                    .map(|f| f.rsplit('.').next().unwrap_or(f).trim_matches('"').to_string())
                    .collect()
            })
            .unwrap_or_default();
        let hint = match crate::diagnostic::closest(&column, valid.iter().map(String::as_str)) {
            Some(best) => Some(format!("did you mean \"{best}\"? columns: {}", valid.join(", "))),
            None if valid.is_empty() => None,
            None => Some(format!("columns: {}", valid.join(", "))),
        };
        let at = self.line.zip(self.column).or_else(|| find_word(sql, &column));
        SqlError {
            message: format!("unknown column \"{column}\""),
            line: at.map(|(l, _)| l),
            column: at.map(|(_, c)| c),
            hint,
            unknown_column: Some(column),
        }
    }

    fn from_parser(e: ParserError, sql: &str) -> SqlError {
        SqlError::from_datafusion(DataFusionError::SQL(Box::new(e), None), sql)
    }

    fn at_end_if_truncated(self, sql: &str) -> SqlError {
        if self.line.is_some() || !self.message.ends_with("found: EOF") {
            return self;
        }
        let text = sql.trim_end().trim_end_matches(';').trim_end();
        SqlError {
            line: Some(text.lines().count().max(1)),
            column: Some(text.lines().last().map_or(0, |l| l.chars().count()) + 1),
            ..self
        }
    }
}

/// `message` without the " at Line: x, Column: y" sqlparser ends it with.
fn strip_position(message: &str) -> String {
    match message.rfind(" at Line: ") {
        Some(i) if message[i..].contains(", Column: ") => message[..i].to_string(),
        _ => message.to_string(),
    }
}

/// Where `word` first appears in `sql` as a whole identifier (ignoring case, as unquoted SQL
/// names do), as a 1-based line and column.
pub fn find_word(sql: &str, word: &str) -> Option<(usize, usize)> {
    if word.is_empty() {
        return None;
    }
    let lower = sql.to_ascii_lowercase();
    let target = word.to_ascii_lowercase();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = lower.get(from..).and_then(|rest| rest.find(&target)).map(|i| i + from) {
        let before = lower[..i].chars().next_back();
        let after = lower[i + target.len()..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            let line_start = lower[..i].rfind('\n').map_or(0, |n| n + 1);
            return Some((
                lower[..i].matches('\n').count() + 1,
                lower[line_start..i].chars().count() + 1,
            ));
        }
        from = i + target.len();
    }
    None
}

/// A table a statement reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRead {
    /// The name as DataFusion resolves it (unquoted names lower-cased), for messages.
    pub name: String,
    /// The table name when it is unqualified: what a step name must equal.
    pub bare: Option<String>,
    /// Where the name is in the SQL (line, column), when known.
    pub at: Option<(usize, usize)>,
}

/// A parsed SELECT and the tables it reads.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The statement, for planning.
    pub statement: DfStatement,
    /// The tables, in the order DataFusion resolves them.
    pub tables: Vec<TableRead>,
}

/// Parses `sql`, which must be one SELECT.
pub fn parse_select(sql: &str) -> Result<Parsed, SqlError> {
    let state = SessionContext::new().state();
    let statement = state
        .sql_to_statement(sql, &Dialect::Generic)
        .map_err(|e| SqlError::from_datafusion(e, sql))?;
    let DfStatement::Statement(inner) = &statement else {
        return Err(SqlError::new("a transform's sql is one SELECT statement"));
    };
    if !matches!(inner.as_ref(), Statement::Query(_)) {
        return Err(SqlError::new("a transform's sql is one SELECT statement"));
    }
    let references = state
        .resolve_table_references(&statement)
        .map_err(|e| SqlError::from_datafusion(e, sql))?;
    let tables = references
        .iter()
        .map(|r| {
            let bare = match r {
                TableReference::Bare { table } => Some(table.to_string()),
                _ => None,
            };
            TableRead {
                name: r.to_string(),
                at: position_of(inner, r.table()),
                bare,
            }
        })
        .collect();
    Ok(Parsed { statement, tables })
}

/// Where the first relation named `table` (as DataFusion normalizes names) is in `statement`.
fn position_of(statement: &Statement, table: &str) -> Option<(usize, usize)> {
    let found = visit_relations(statement, |name| {
        let last = name.0.last().and_then(|part| part.as_ident());
        if let Some(ident) = last {
            let normalized = match ident.quote_style {
                Some(_) => ident.value.clone(),
                None => ident.value.to_lowercase(),
            };
            if normalized == table && ident.span.start.line > 0 {
                return ControlFlow::Break((ident.span.start.line as usize, ident.span.start.column as usize));
            }
        }
        ControlFlow::Continue(())
    });
    match found {
        ControlFlow::Break(at) => Some(at),
        ControlFlow::Continue(()) => None,
    }
}

/// Checks that `expr` is exactly one SQL expression (so that it cannot close a parenthesis and
/// smuggle in more SQL when steps are compiled).
pub fn check_expr(expr: &str) -> Result<(), SqlError> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(expr)
        .map_err(|e| SqlError::from_parser(e, expr))?;
    parser.parse_expr().map_err(|e| SqlError::from_parser(e, expr))?;
    parser.expect_token(&Token::EOF).map_err(|e| {
        let e = SqlError::from_parser(e, expr);
        SqlError {
            message: e.message.replacen("Expected: EOF", "Expected: end of expression", 1),
            ..e
        }
    })?;
    Ok(())
}

/// Plans statements over empty in-memory tables to find what only planning finds.
pub struct Planner {
    ctx: SessionContext,
}

impl Default for Planner {
    fn default() -> Self {
        Planner::new()
    }
}

impl Planner {
    /// A planner with Brook's SQL functions registered.
    pub fn new() -> Planner {
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        for udf in brook_engine::sql::udf::all() {
            ctx.register_udf(udf);
        }
        Planner { ctx }
    }

    /// Plans `statement` (the text `sql`) over a table named `input` holding the value columns
    /// `values` and the metadata columns (`_partition`, `_offset`, ...) they do not shadow, as a
    /// continuous query sees its source. Returns the value columns of the output: metadata
    /// columns that pass through unrenamed are left out.
    pub fn plan(
        &self,
        statement: DfStatement,
        sql: &str,
        input: &str,
        values: &SchemaRef,
    ) -> Result<SchemaRef, SqlError> {
        let metas: Vec<Meta> = Meta::ALL
            .into_iter()
            .filter(|m| values.field_with_name(m.name()).is_err())
            .collect();
        let mut fields: Vec<_> = values.fields().iter().cloned().collect();
        fields.extend(metas.iter().map(|m| Arc::new(m.field())));
        let schema = Arc::new(Schema::new(fields));
        let table = MemTable::try_new(schema, vec![vec![]]).map_err(|e| SqlError::from_datafusion(e, sql))?;
        let name = TableReference::bare(input.to_string());
        let _ = self.ctx.deregister_table(name.clone());
        self.ctx
            .register_table(name, Arc::new(table))
            .map_err(|e| SqlError::from_datafusion(e, sql))?;

        let state = self.ctx.state();
        let plan = futures::executor::block_on(state.statement_to_plan(statement))
            .map_err(|e| SqlError::from_datafusion(e, sql))?;
        check_stateless(&plan)?;
        // The analyzer coerces types, which is where type errors surface.
        state.optimize(&plan).map_err(|e| SqlError::from_datafusion(e, sql))?;
        let output = plan.schema().as_arrow();
        let kept: Vec<Field> = output
            .fields()
            .iter()
            .filter(|f| !metas.iter().any(|m| m.name() == f.name()))
            .map(|f| f.as_ref().clone())
            .collect();
        Ok(Arc::new(Schema::new(kept)))
    }
}

/// Refuses plans that need state across records (aggregates, sorts, limits, joins): a transform
/// runs over micro-batches, as the engine's continuous queries do.
fn check_stateless(plan: &LogicalPlan) -> Result<(), SqlError> {
    match brook_engine::jobs::first_stateful(plan) {
        None => Ok(()),
        Some(op) => {
            let what = op.display().to_string();
            let what = what.split(':').next().unwrap_or("this operator").to_string();
            Err(SqlError::new(format!(
                "transforms are stateless for now: {what} is not supported (filters, projections and scalar functions are)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Utf8, true),
            Field::new("status", DataType::Int64, true),
        ]))
    }

    fn plan(sql: &str) -> Result<SchemaRef, SqlError> {
        let parsed = parse_select(sql)?;
        Planner::new().plan(parsed.statement, sql, "access", &access())
    }

    #[test]
    fn declared_types_map_case_insensitively() {
        assert_eq!(sql_type("bigint"), Some(DataType::Int64));
        assert_eq!(sql_type("Text"), Some(DataType::Utf8));
        assert_eq!(sql_type("blob"), None);
        for t in SQL_TYPES {
            assert!(sql_type(t).is_some(), "{t}");
        }
    }

    #[test]
    fn tables_read_are_found_with_positions() {
        let parsed = parse_select("SELECT a\nFROM  access WHERE b > 1").expect("parses");
        assert_eq!(
            parsed.tables,
            vec![TableRead {
                name: "access".into(),
                bare: Some("access".into()),
                at: Some((2, 7))
            }]
        );
        let parsed = parse_select("SELECT * FROM \"Web-Logs\" a JOIN other b ON a.x = b.x").expect("parses");
        let names: Vec<_> = parsed.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["Web-Logs", "other"]);
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let e = parse_select("SELECT a FROM t WHERE").expect_err("truncated");
        assert_eq!((e.line, e.column), (Some(1), Some(22)), "{}", e.message);
        let e = parse_select("SELECT a\nFROM t WHER x").expect_err("bad");
        assert_eq!(e.line, Some(2), "{}", e.message);
        let e = parse_select("DELETE FROM t").expect_err("not a select");
        assert!(e.message.contains("SELECT"), "{}", e.message);
    }

    #[test]
    fn expressions_must_be_whole() {
        assert!(check_expr("status >= 500 AND host <> 'a'").is_ok());
        let e = check_expr("status >= 500) UNION SELECT 1 --").expect_err("smuggled");
        assert_eq!((e.line, e.column), (Some(1), Some(14)), "{}", e.message);
    }

    #[test]
    fn planning_finds_unknown_columns_and_derives_the_output() {
        let out = plan("SELECT ts, status * 2 AS double FROM access WHERE _offset > 3").expect("plans");
        let names: Vec<_> = out.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["ts", "double"]);
        let e = plan("SELECT ts,\n statusx FROM access").expect_err("unknown column");
        assert!(e.message.contains("statusx"), "{}", e.message);
        let out = plan("SELECT * FROM access").expect("plans");
        assert_eq!(out.fields().len(), 2, "metadata columns are left out");
    }

    #[test]
    fn planning_finds_type_errors_and_stateful_queries() {
        let e = plan("SELECT ts FROM access WHERE ts - 1 > status").expect_err("type error");
        assert!(!e.message.is_empty());
        let e = plan("SELECT count(*) FROM access").expect_err("aggregate");
        assert!(e.message.contains("stateless"), "{}", e.message);
    }
}

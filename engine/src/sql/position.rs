//! DataFusion's errors as the engine's, with the line and column of the offending token when
//! sqlparser or DataFusion's diagnostics know it, so that a user sees where a statement is wrong.

use datafusion::error::DataFusionError;

use crate::error::Error;

/// `e`, raised while planning or running a statement, as an engine error: parse and planning
/// errors become [`Error::InvalidStatement`] (with a position when known), engine errors raised
/// inside DataFusion come back as themselves, and the rest stay [`Error::Query`].
pub fn from_datafusion(e: DataFusionError) -> Error {
    if let Some(diagnostic) = e.diagnostic() {
        if let Some(span) = diagnostic.span.filter(|s| s.start.line > 0) {
            return Error::InvalidStatement {
                message: diagnostic.message.clone(),
                line: Some(span.start.line),
                column: Some(span.start.column),
            };
        }
    }
    match e {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => from_datafusion(*inner),
        DataFusionError::SQL(parser, _) => super::ddl::parser_error(*parser),
        DataFusionError::External(inner) => match inner.downcast::<Error>() {
            Ok(engine) => *engine,
            Err(other) => Error::Query(DataFusionError::External(other)),
        },
        DataFusionError::Plan(message) => Error::InvalidStatement {
            message: strip_backtrace(&message),
            line: None,
            column: None,
        },
        e @ DataFusionError::SchemaError(..) => Error::InvalidStatement {
            message: e.strip_backtrace(),
            line: None,
            column: None,
        },
        other => Error::Query(other),
    }
}

/// `e` with a position at the end of `sql` when it is a statement error without one that says
/// the statement ended too early (sqlparser reports those as "found: EOF" without a position).
pub fn at_end_if_truncated(e: Error, sql: &str) -> Error {
    match e {
        Error::InvalidStatement {
            message,
            line: None,
            column: None,
        } if message.ends_with("found: EOF") => {
            let text = sql.trim_end().trim_end_matches(';').trim_end();
            let line = text.lines().count().max(1);
            let column = text.lines().last().map_or(0, |l| l.chars().count()) + 1;
            Error::InvalidStatement {
                message,
                line: Some(line as u64),
                column: Some(column as u64),
            }
        }
        other => other,
    }
}

fn strip_backtrace(message: &str) -> String {
    message.split("\n\nbacktrace").next().unwrap_or(message).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_statement_points_past_its_end() {
        let e = Error::InvalidStatement {
            message: "Expected: an expression, found: EOF".into(),
            line: None,
            column: None,
        };
        let e = at_end_if_truncated(e, "SELECT a\nFROM t WHERE ;\n");
        assert_eq!(
            e.to_string(),
            "Expected: an expression, found: EOF at line 2, column 13"
        );
    }
}

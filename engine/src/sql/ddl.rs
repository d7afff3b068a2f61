//! Brook's streaming statements, which DataFusion's SQL does not know: `CREATE STREAM`,
//! `INSERT INTO stream SELECT`, `SHOW QUERIES`, `DROP STREAM`, `TERMINATE` and
//! `SELECT ... EMIT CHANGES`. Parsed here on sqlparser's tokenizer and parser, so that every
//! error points at a line and column of the statement.

use datafusion::sql::sqlparser::ast::{ColumnDef, Ident, ObjectName, ObjectNamePart};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::error::{Error, Result};

/// The longest statement parsed, in bytes (a bound on what a client can make us tokenize).
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;

/// The `WITH (...)` option names a `CREATE STREAM` accepts (`processing_guarantee` only with
/// `AS SELECT`).
pub const KNOWN_OPTIONS: &[&str] = &[
    "topic",
    "format",
    "key",
    "partitions",
    "avro_schema",
    "avro_schema_file",
    "delimiter",
    "header",
    PROCESSING_GUARANTEE,
];

/// The option choosing at-least-once or exactly-once processing for a continuous query.
pub const PROCESSING_GUARANTEE: &str = "processing_guarantee";

/// The `WITH (...)` option names an `INSERT INTO` accepts.
pub const INSERT_OPTIONS: &[&str] = &[PROCESSING_GUARANTEE];

/// One of Brook's streaming statements.
#[derive(Debug, Clone, PartialEq)]
pub enum DdlStatement {
    /// `CREATE STREAM name [(columns)] WITH (...) [AS SELECT ...]`.
    CreateStream(CreateStream),
    /// `INSERT INTO name [WITH (...)] SELECT ...`: a continuous query into an existing stream.
    InsertInto {
        /// The target stream.
        target: String,
        /// The `WITH (...)` options in the order written, names lower-cased.
        options: Vec<WithOption>,
        /// The query's text, as written.
        select: String,
    },
    /// `SHOW QUERIES`: the continuous queries and their state.
    ShowQueries,
    /// `DROP STREAM [IF EXISTS] name`: removes a stream and terminates the queries writing it.
    DropStream {
        /// The stream.
        name: String,
        /// Whether a missing stream is not an error.
        if_exists: bool,
    },
    /// `TERMINATE query_id`: stops a continuous query for good.
    Terminate {
        /// The query's id, as `SHOW QUERIES` lists it.
        query_id: String,
    },
    /// `SELECT ... EMIT CHANGES`: rows as they arrive, from now on, until the client stops.
    EmitChanges {
        /// The query's text without `EMIT CHANGES`.
        select: String,
    },
}

/// A `CREATE STREAM` statement.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateStream {
    /// The stream's name (lower-cased unless quoted).
    pub name: String,
    /// `IF NOT EXISTS` was given.
    pub if_not_exists: bool,
    /// The declared columns; empty when the schema is to be inferred or comes from the query.
    pub columns: Vec<ColumnDef>,
    /// The `WITH (...)` options in the order written, names lower-cased.
    pub options: Vec<WithOption>,
    /// The text of the `AS SELECT ...` query, when given.
    pub select: Option<String>,
}

impl CreateStream {
    /// The value of option `name`, if given.
    pub fn option(&self, name: &str) -> Option<&str> {
        option(&self.options, name)
    }

    /// An error about option `name`, pointing at it when it was given.
    pub fn option_error(&self, name: &str, message: String) -> Error {
        option_error(&self.options, name, message)
    }
}

/// The value of option `name` among `options`, if given.
pub fn option<'a>(options: &'a [WithOption], name: &str) -> Option<&'a str> {
    options.iter().find(|o| o.name == name).map(|o| o.value.as_str())
}

/// An error about option `name`, pointing at it when it is among `options`.
pub fn option_error(options: &[WithOption], name: &str, message: String) -> Error {
    let at = options.iter().find(|o| o.name == name);
    Error::InvalidStatement {
        message,
        line: at.map(|o| o.line),
        column: at.map(|o| o.column),
    }
}

/// One `name = value` of a `WITH (...)` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithOption {
    /// The option's name, lower-cased.
    pub name: String,
    /// Its value: the string literal's content, or the number or word as written.
    pub value: String,
    /// The line of the name (1-based).
    pub line: u64,
    /// The column of the name (1-based).
    pub column: u64,
}

/// Parses `sql` as one of Brook's streaming statements; Ok(None) when it is none of them (so
/// that the caller hands it to DataFusion).
pub fn parse(sql: &str) -> Result<Option<DdlStatement>> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(invalid(
            format!("the statement is longer than {MAX_STATEMENT_BYTES} bytes"),
            None,
        ));
    }
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| Error::InvalidStatement {
            message: e.message.clone(),
            line: Some(e.location.line),
            column: Some(e.location.column),
        })?;
    let words: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let first = match words.first() {
        Some(t) => keyword(t),
        None => return Ok(None),
    };
    let second = words.get(1).map(|t| keyword(t));
    let mut p = Parser::new(&dialect).with_tokens_with_locations(tokens.clone());
    let statement = match (first, second) {
        (Some(Keyword::CREATE), Some(Some(Keyword::STREAM))) => {
            p.next_token();
            p.next_token();
            DdlStatement::CreateStream(create_stream(&mut p, sql)?)
        }
        (Some(Keyword::INSERT), Some(Some(Keyword::INTO))) if inserts_a_query(&words) => {
            p.next_token();
            p.next_token();
            let target = single_name(&mut p)?;
            // `WITH (` starts options; `WITH name AS (...)` is the query's own CTE.
            let options =
                if keyword(&p.peek_token()) == Some(Keyword::WITH) && p.peek_nth_token(1).token == Token::LParen {
                    p.next_token();
                    with_options(&mut p, INSERT_OPTIONS)?
                } else {
                    Vec::new()
                };
            let select = rest_as_query(&mut p, sql)?;
            DdlStatement::InsertInto {
                target,
                options,
                select,
            }
        }
        (Some(Keyword::SHOW), Some(Some(Keyword::QUERIES))) => {
            p.next_token();
            p.next_token();
            end(&mut p)?;
            DdlStatement::ShowQueries
        }
        (Some(Keyword::DROP), Some(Some(Keyword::STREAM))) => {
            p.next_token();
            p.next_token();
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = single_name(&mut p)?;
            end(&mut p)?;
            DdlStatement::DropStream { name, if_exists }
        }
        (Some(Keyword::NoKeyword), _) if is_word(words[0], "terminate") => {
            p.next_token();
            let query_id = p.parse_identifier().map_err(parser_error)?.value;
            end(&mut p)?;
            DdlStatement::Terminate { query_id }
        }
        (Some(Keyword::SELECT | Keyword::WITH), _) | (None, _) => match emit_clause(&words) {
            Some((emit, kind)) if kind == "changes" => {
                let select = sql[..byte_offset(sql, emit.span.start)].trim_end().to_string();
                let mut q = Parser::new(&dialect).try_with_sql(&select).map_err(parser_error)?;
                q.parse_query().map_err(parser_error)?;
                end(&mut q)?;
                DdlStatement::EmitChanges { select }
            }
            Some((emit, _)) => {
                return Err(invalid(
                    "EMIT FINAL needs a windowed aggregation, which continuous queries do not support yet; \
                     use EMIT CHANGES"
                        .to_string(),
                    Some(emit.span.start),
                ))
            }
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    Ok(Some(statement))
}

/// `name [(columns)] WITH (options) [AS query]`, after `CREATE STREAM`.
fn create_stream(p: &mut Parser, sql: &str) -> Result<CreateStream> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = single_name(p)?;
    let mut columns = Vec::new();
    if p.peek_token_ref().token == Token::LParen {
        let at = p.peek_token_ref().span.start;
        let (cols, constraints) = p.parse_columns().map_err(parser_error)?;
        if !constraints.is_empty() {
            return Err(invalid("a stream's columns take no constraints".to_string(), Some(at)));
        }
        if cols.is_empty() {
            return Err(invalid(
                "the column list is empty; omit it to infer the schema".to_string(),
                Some(at),
            ));
        }
        for (i, c) in cols.iter().enumerate() {
            let name = normalize(&c.name);
            if cols[..i].iter().any(|o| normalize(&o.name) == name) {
                return Err(invalid(
                    format!("column {name:?} is declared twice"),
                    Some(c.name.span.start),
                ));
            }
        }
        columns = cols;
    }
    let with = p.peek_token();
    if !p.parse_keyword(Keyword::WITH) {
        return Err(invalid(
            format!("expected WITH (topic = '...', format = '...'), found {}", with.token),
            Some(with.span.start),
        ));
    }
    let options = with_options(p, KNOWN_OPTIONS)?;
    let select = if p.parse_keyword(Keyword::AS) {
        if !columns.is_empty() {
            return Err(invalid(
                "a stream created AS SELECT takes its columns from the query; drop the column list".to_string(),
                Some(with.span.start),
            ));
        }
        Some(rest_as_query(p, sql)?)
    } else {
        end(p)?;
        None
    };
    if !options.iter().any(|o| o.name == "topic") && select.is_none() {
        return Err(invalid(
            "a stream over an existing topic needs WITH (topic = '...')".to_string(),
            Some(with.span.start),
        ));
    }
    Ok(CreateStream {
        name,
        if_not_exists,
        columns,
        options,
        select,
    })
}

/// `(name = value, ...)`, after `WITH`, each name one of `known`.
fn with_options(p: &mut Parser, known: &[&str]) -> Result<Vec<WithOption>> {
    p.expect_token(&Token::LParen).map_err(parser_error)?;
    let mut options: Vec<WithOption> = Vec::new();
    loop {
        let at = p.next_token();
        let name = match &at.token {
            Token::Word(w) => w.value.to_lowercase(),
            Token::SingleQuotedString(s) => s.to_lowercase(),
            other => {
                return Err(invalid(
                    format!("expected an option name, found {other}"),
                    Some(at.span.start),
                ))
            }
        };
        if !known.contains(&name.as_str()) {
            return Err(invalid(
                format!("unknown option {name:?}: expected one of {}", known.join(", ")),
                Some(at.span.start),
            ));
        }
        if options.iter().any(|o| o.name == name) {
            return Err(invalid(format!("option {name:?} is given twice"), Some(at.span.start)));
        }
        p.expect_token(&Token::Eq).map_err(parser_error)?;
        let v = p.next_token();
        let value = match &v.token {
            Token::SingleQuotedString(s) => s.clone(),
            Token::Number(n, _) => n.clone(),
            Token::Word(w) => w.value.clone(),
            other => {
                return Err(invalid(
                    format!("expected a value for option {name:?} (a quoted string), found {other}"),
                    Some(v.span.start),
                ))
            }
        };
        options.push(WithOption {
            name,
            value,
            line: at.span.start.line,
            column: at.span.start.column,
        });
        let sep = p.next_token();
        match sep.token {
            Token::Comma => continue,
            Token::RParen => break,
            other => {
                return Err(invalid(
                    format!("expected , or ) in WITH, found {other}"),
                    Some(sep.span.start),
                ))
            }
        }
    }
    Ok(options)
}

/// The rest of the statement as a query: checked to parse, returned as written.
fn rest_as_query(p: &mut Parser, sql: &str) -> Result<String> {
    let start = p.peek_token();
    if !matches!(keyword(&start), Some(Keyword::SELECT | Keyword::WITH)) && start.token != Token::LParen {
        return Err(invalid(
            format!("expected SELECT, found {}", start.token),
            Some(start.span.start),
        ));
    }
    p.parse_query().map_err(parser_error)?;
    let stop = p.peek_token();
    end(p)?;
    let from = byte_offset(sql, start.span.start);
    let to = if stop.token == Token::EOF {
        sql.len()
    } else {
        byte_offset(sql, stop.span.start)
    };
    Ok(sql[from..to].trim().to_string())
}

/// A one-part name, lower-cased unless quoted.
fn single_name(p: &mut Parser) -> Result<String> {
    let at = p.peek_token();
    let name: ObjectName = p.parse_object_name(false).map_err(parser_error)?;
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Ok(normalize(ident)),
        _ => Err(invalid(
            format!("expected a stream name without a schema, found {name}"),
            Some(at.span.start),
        )),
    }
}

/// Requires the end of the statement (an optional semicolon, then nothing).
fn end(p: &mut Parser) -> Result<()> {
    let _ = p.consume_token(&Token::SemiColon);
    let t = p.peek_token();
    if t.token == Token::EOF {
        Ok(())
    } else {
        Err(invalid(
            format!("expected the end of the statement, found {}", t.token),
            Some(t.span.start),
        ))
    }
}

/// Whether `INSERT INTO name` is followed by a query (ours) rather than VALUES (DataFusion's).
fn inserts_a_query(words: &[&TokenWithSpan]) -> bool {
    words.get(3).map(|t| keyword(t)) != Some(Some(Keyword::VALUES))
}

/// The `EMIT` token and the lower-cased word after it when a statement ends `EMIT <word>`.
fn emit_clause<'a>(words: &[&'a TokenWithSpan]) -> Option<(&'a TokenWithSpan, String)> {
    let mut n = words.len();
    while n > 0 && matches!(words[n - 1].token, Token::SemiColon | Token::EOF) {
        n -= 1;
    }
    if n < 2 || !is_word(words[n - 2], "emit") {
        return None;
    }
    match &words[n - 1].token {
        Token::Word(w) => Some((words[n - 2], w.value.to_lowercase())),
        _ => None,
    }
}

/// The token's keyword; None when it is not a word.
fn keyword(t: &TokenWithSpan) -> Option<Keyword> {
    match &t.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    }
}

fn is_word(t: &TokenWithSpan, word: &str) -> bool {
    matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// An identifier as SQL compares it: lower-cased unless quoted.
pub fn normalize(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The byte offset in `sql` of a 1-based line and column (columns count characters).
fn byte_offset(sql: &str, at: Location) -> usize {
    let mut line = 1;
    let mut column = 1;
    for (i, c) in sql.char_indices() {
        if line == at.line && column == at.column {
            return i;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    sql.len()
}

fn invalid(message: String, at: Option<Location>) -> Error {
    Error::InvalidStatement {
        message,
        line: at.map(|l| l.line),
        column: at.map(|l| l.column),
    }
}

/// A sqlparser error as ours, with the position it names moved into fields.
pub fn parser_error(e: ParserError) -> Error {
    let text = match e {
        ParserError::TokenizerError(s) | ParserError::ParserError(s) => s,
        ParserError::RecursionLimitExceeded => "the statement nests too deeply".to_string(),
    };
    if let Some((message, at)) = text.rsplit_once(" at Line: ") {
        if let Some((l, c)) = at.split_once(", Column: ") {
            if let (Ok(line), Ok(column)) = (l.trim().parse(), c.trim().parse()) {
                return Error::InvalidStatement {
                    message: message.to_string(),
                    line: Some(line),
                    column: Some(column),
                };
            }
        }
    }
    Error::InvalidStatement {
        message: text,
        line: None,
        column: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sql: &str) -> DdlStatement {
        match parse(sql) {
            Ok(Some(s)) => s,
            other => panic!("{sql}: expected a statement, got {other:?}"),
        }
    }

    fn err(sql: &str) -> (String, Option<u64>, Option<u64>) {
        match parse(sql) {
            Err(Error::InvalidStatement { message, line, column }) => (message, line, column),
            other => panic!("{sql}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn create_stream_with_columns_and_options() {
        let DdlStatement::CreateStream(c) = ok("CREATE STREAM Clicks (user_id BIGINT, url TEXT, \"Ts\" TIMESTAMP) \
             WITH (topic = 'clicks', format = 'json', key = 'user_id', partitions = 3);")
        else {
            panic!()
        };
        assert_eq!(c.name, "clicks");
        assert!(!c.if_not_exists && c.select.is_none());
        let cols: Vec<String> = c.columns.iter().map(|c| normalize(&c.name)).collect();
        assert_eq!(cols, ["user_id", "url", "Ts"]);
        assert_eq!(c.option("topic"), Some("clicks"));
        assert_eq!(c.option("format"), Some("json"));
        assert_eq!(c.option("key"), Some("user_id"));
        assert_eq!(c.option("partitions"), Some("3"));
        assert_eq!((c.options[0].line, c.options[0].column), (1, 71));
    }

    #[test]
    fn create_stream_as_select_keeps_the_query_text() {
        let sql = "create stream if not exists errors with (topic = 'errors', format = json)\n  AS SELECT status, \
                   upper(path) AS p FROM access WHERE status >= 500 ;";
        let DdlStatement::CreateStream(c) = ok(sql) else {
            panic!()
        };
        assert!(c.if_not_exists);
        assert!(c.columns.is_empty());
        assert_eq!(c.option("format"), Some("json"));
        assert_eq!(
            c.select.as_deref(),
            Some("SELECT status, upper(path) AS p FROM access WHERE status >= 500")
        );
    }

    #[test]
    fn the_other_statements() {
        assert_eq!(
            ok("INSERT INTO errors SELECT * FROM access WHERE status = 503"),
            DdlStatement::InsertInto {
                target: "errors".into(),
                options: vec![],
                select: "SELECT * FROM access WHERE status = 503".into()
            }
        );
        assert_eq!(ok("show queries;"), DdlStatement::ShowQueries);
        assert_eq!(
            ok("DROP STREAM errors"),
            DdlStatement::DropStream {
                name: "errors".into(),
                if_exists: false
            }
        );
        assert_eq!(
            ok("drop stream if exists \"Errors\""),
            DdlStatement::DropStream {
                name: "Errors".into(),
                if_exists: true
            }
        );
        assert_eq!(
            ok("TERMINATE csas_errors"),
            DdlStatement::Terminate {
                query_id: "csas_errors".into()
            }
        );
        assert_eq!(
            ok("SELECT a, b FROM t WHERE a > 1\nEMIT CHANGES;"),
            DdlStatement::EmitChanges {
                select: "SELECT a, b FROM t WHERE a > 1".into()
            }
        );
    }

    #[test]
    fn statements_that_are_not_ours_pass_through() {
        for sql in [
            "SELECT * FROM t",
            "CREATE TABLE t (a INT)",
            "INSERT INTO t VALUES (1)",
            "SHOW TABLES",
            "DROP TABLE t",
            "",
            "  ",
        ] {
            assert_eq!(parse(sql).unwrap(), None, "{sql}");
        }
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let (m, l, c) = err("CREATE STREAM s WITH (topic = 't', colour = 'red')");
        assert!(
            m.contains("unknown option \"colour\"") && m.contains("topic, format"),
            "{m}"
        );
        assert_eq!((l, c), (Some(1), Some(36)));

        let (m, l, c) = err("CREATE STREAM s (a INT)\nWITH (topic = 't', topic = 'u')");
        assert!(m.contains("given twice"), "{m}");
        assert_eq!((l, c), (Some(2), Some(20)));

        let (m, l, c) = err("CREATE STREAM s (a INT) AS SELECT 1");
        assert!(m.contains("expected WITH"), "{m}");
        assert_eq!((l, c), (Some(1), Some(25)));

        let (m, l, c) = err("CREATE STREAM s WITH (topic = 't')\nAS SELECT (a FROM t");
        assert_eq!((l, c), (Some(2), Some(14)), "{m}");

        let (m, l, c) = err("CREATE STREAM s (a INT, A TEXT) WITH (topic = 't')");
        assert!(m.contains("declared twice"), "{m}");
        assert_eq!((l, c), (Some(1), Some(25)));

        let (m, _, _) = err("CREATE STREAM s WITH (format = 'json')");
        assert!(m.contains("topic"), "{m}");

        let (m, l, c) = err("DROP STREAM a.b");
        assert!(m.contains("without a schema"), "{m}");
        assert_eq!((l, c), (Some(1), Some(13)));

        let (m, l, c) = err("SHOW QUERIES now");
        assert!(m.contains("end of the statement"), "{m}");
        assert_eq!((l, c), (Some(1), Some(14)));

        let (m, l, c) = err("SELECT * FROM t EMIT FINAL");
        assert!(m.contains("EMIT CHANGES"), "{m}");
        assert_eq!((l, c), (Some(1), Some(17)));

        let (m, l, c) = err("CREATE STREAM s WITH (topic = 'unterminated)");
        assert!(l.is_some() && c.is_some(), "{m}");
    }

    #[test]
    fn processing_guarantee_is_an_option_of_queries() {
        let sql = "CREATE STREAM big WITH (topic = 'big', processing_guarantee = 'exactly_once') AS SELECT n FROM t";
        let DdlStatement::CreateStream(c) = ok(sql) else {
            panic!()
        };
        assert_eq!(c.option(PROCESSING_GUARANTEE), Some("exactly_once"));
        let DdlStatement::InsertInto {
            target,
            options,
            select,
        } = ok("INSERT INTO big WITH (processing_guarantee = 'exactly_once') SELECT n FROM t")
        else {
            panic!()
        };
        assert_eq!((target.as_str(), select.as_str()), ("big", "SELECT n FROM t"));
        assert_eq!(option(&options, PROCESSING_GUARANTEE), Some("exactly_once"));
        assert_eq!((options[0].line, options[0].column), (1, 23));
        // WITH followed by a name is the query's CTE, not options.
        let DdlStatement::InsertInto { options, select, .. } =
            ok("INSERT INTO big WITH x AS (SELECT n FROM t) SELECT n FROM x")
        else {
            panic!()
        };
        assert!(options.is_empty());
        assert_eq!(select, "WITH x AS (SELECT n FROM t) SELECT n FROM x");
        // INSERT INTO takes no stream options.
        let (m, l, c) = err("INSERT INTO big WITH (topic = 'x') SELECT n FROM t");
        assert!(
            m.contains("unknown option \"topic\": expected one of processing_guarantee"),
            "{m}"
        );
        assert_eq!((l, c), (Some(1), Some(23)));
    }
}

//! The compiled parser settings and the conversion of one record's text into its value.

use std::sync::Arc;

use brook_engine::format::FormatSpec;
use bytes::Bytes;
use serde_json::Value;

use super::stream::StreamParser;
use super::types;
use super::{config_error, csv, LineFormat, ParseConfig};
use crate::error::Result;

/// The largest `max_line_bytes` accepted (64 MiB): a line is held in memory whole.
const MAX_MAX_LINE_BYTES: usize = 64 << 20;

/// The largest `multiline.max_lines` accepted.
const MAX_MAX_LINES: usize = 100_000;

/// The CSV settings, checked.
#[derive(Debug, Clone)]
struct CsvSettings {
    header: bool,
    columns: Option<Vec<String>>,
    delimiter: u8,
}

/// Checked and compiled parser settings, shared by every stream of a source.
#[derive(Debug)]
pub struct Parser {
    config: ParseConfig,
    csv: Option<CsvSettings>,
    pattern: Option<regex::Regex>,
    start_pattern: Option<regex::bytes::Regex>,
}

impl Parser {
    /// Checks `config` and compiles it; errors are configuration errors of `connector`.
    pub(super) fn new(config: &ParseConfig, connector: &'static str) -> Result<Parser> {
        let err = |m: String| config_error(connector, m);
        let format = config.format;
        if config.max_line_bytes == 0 || config.max_line_bytes > MAX_MAX_LINE_BYTES {
            return Err(err(format!(
                "max_line_bytes must be between 1 and {MAX_MAX_LINE_BYTES}, not {}",
                config.max_line_bytes
            )));
        }
        if config.csv.is_some() && format != LineFormat::Csv {
            return Err(err("csv options are only for format: csv".into()));
        }
        if config.pattern.is_some() && format != LineFormat::Regex {
            return Err(err("pattern is only for format: regex".into()));
        }
        if !config.types.is_empty() && !matches!(format, LineFormat::Csv | LineFormat::Regex) {
            return Err(err("types are only for format: csv and format: regex".into()));
        }
        let csv = match format {
            LineFormat::Csv => Some(csv_settings(config, &err)?),
            _ => None,
        };
        let pattern = match (format, &config.pattern) {
            (LineFormat::Regex, None) => return Err(err("format: regex needs a pattern".into())),
            (LineFormat::Regex, Some(p)) => {
                let re =
                    regex::Regex::new(p).map_err(|e| err(format!("pattern is not a valid regular expression: {e}")))?;
                let names: Vec<&str> = re.capture_names().flatten().collect();
                if names.is_empty() {
                    return Err(err("pattern has no named group such as (?P<level>\\w+)".into()));
                }
                if let Some(field) = config.types.keys().find(|f| !names.contains(&f.as_str())) {
                    return Err(err(format!(
                        "types names {field:?}, which is not a named group of pattern"
                    )));
                }
                Some(re)
            }
            _ => None,
        };
        let start_pattern = match &config.multiline {
            None => None,
            Some(m) => {
                if m.max_lines == 0 || m.max_lines > MAX_MAX_LINES {
                    return Err(err(format!(
                        "multiline.max_lines must be between 1 and {MAX_MAX_LINES}, not {}",
                        m.max_lines
                    )));
                }
                Some(regex::bytes::Regex::new(&m.start_pattern).map_err(|e| {
                    err(format!(
                        "multiline.start_pattern is not a valid regular expression: {e}"
                    ))
                })?)
            }
        };
        Ok(Parser {
            config: config.clone(),
            csv,
            pattern,
            start_pattern,
        })
    }

    /// The format of the values this parser emits.
    pub fn format_spec(&self) -> FormatSpec {
        self.config.format_spec()
    }

    /// The settings this parser was compiled from.
    pub fn config(&self) -> &ParseConfig {
        &self.config
    }

    /// A parser for one stream whose next byte is at stream offset `offset`.
    pub fn stream(self: &Arc<Self>, offset: u64) -> StreamParser {
        let multiline = match (&self.start_pattern, &self.config.multiline) {
            (Some(re), Some(m)) => Some(super::multiline::Multiline::new(re.clone(), m.max_lines, m.timeout_ms)),
            _ => None,
        };
        StreamParser::new(Arc::clone(self), offset, multiline)
    }

    /// Whether the first line of each stream is a CSV header.
    pub fn has_header(&self) -> bool {
        self.csv.as_ref().is_some_and(|c| c.header)
    }

    /// The columns a header line names, or None when `columns` were given (the header is then
    /// only skipped).
    pub(super) fn header_columns(&self, line: &[u8]) -> Result<Option<Vec<String>>, String> {
        let Some(csv) = &self.csv else { return Ok(None) };
        if csv.columns.is_some() {
            return Ok(None);
        }
        let text = utf8(line)?;
        let names = csv::split(text, csv.delimiter).map_err(|e| format!("the CSV header does not parse: {e}"))?;
        Ok(Some(
            names
                .into_iter()
                .enumerate()
                .map(|(i, n)| match n.trim() {
                    "" => format!("c{}", i + 1),
                    n => n.to_string(),
                })
                .collect(),
        ))
    }

    /// The value of one record's text (for lines and JSON, the text itself, shared); `header`
    /// holds the columns a CSV header named.
    pub fn parse(&self, text: &Bytes, header: Option<&[String]>) -> Result<Bytes, String> {
        match self.config.format {
            LineFormat::Lines => utf8(text).map(|_| text.clone()),
            LineFormat::Json => match serde_json::from_slice::<Value>(text) {
                Ok(Value::Object(_)) => Ok(text.clone()),
                Ok(other) => Err(format!("the line is JSON but not an object: it is {}", kind(&other))),
                Err(e) => Err(format!("the line is not JSON: {e}")),
            },
            LineFormat::Csv => self.parse_csv(utf8(text)?, header),
            LineFormat::Regex => self.parse_regex(utf8(text)?),
        }
    }

    fn parse_csv(&self, text: &str, header: Option<&[String]>) -> Result<Bytes, String> {
        let Some(csv) = &self.csv else {
            return Err("the CSV settings are missing".into());
        };
        let columns = csv
            .columns
            .as_deref()
            .or(header)
            .ok_or("the CSV header has not been read")?;
        let fields = csv::split(text, csv.delimiter)?;
        if fields.len() > columns.len() {
            return Err(format!(
                "the row has {} fields but there are {} columns",
                fields.len(),
                columns.len()
            ));
        }
        let mut out = JsonObject::default();
        for (i, name) in columns.iter().enumerate() {
            let value = match (fields.get(i), self.config.types.get(name)) {
                (None, _) => Value::Null,
                (Some(f), Some(ty)) => types::convert(f, *ty).map_err(|e| format!("column {name:?}: {e}"))?,
                (Some(f), None) => types::sniff(f),
            };
            out.field(name, &value);
        }
        Ok(out.finish())
    }

    fn parse_regex(&self, text: &str) -> Result<Bytes, String> {
        let Some(re) = &self.pattern else {
            return Err("the pattern is missing".into());
        };
        let caps = re.captures(text).ok_or("the line does not match the pattern")?;
        let mut out = JsonObject::default();
        for name in re.capture_names().flatten() {
            let value = match (caps.name(name), self.config.types.get(name)) {
                (None, _) => Value::Null,
                (Some(m), Some(ty)) => types::convert(m.as_str(), *ty).map_err(|e| format!("group {name:?}: {e}"))?,
                (Some(m), None) => Value::String(m.as_str().to_string()),
            };
            out.field(name, &value);
        }
        Ok(out.finish())
    }
}

/// Checks the CSV settings of `config`.
fn csv_settings(config: &ParseConfig, err: &dyn Fn(String) -> crate::Error) -> Result<CsvSettings> {
    let c = config.csv.clone().unwrap_or_default();
    let delimiter = match c.delimiter.as_bytes() {
        [d] if d.is_ascii() && !matches!(d, b'"' | b'\n' | b'\r') => *d,
        _ => {
            return Err(err(format!(
                "csv.delimiter must be one ASCII character other than a quote or a newline, not {:?}",
                c.delimiter
            )))
        }
    };
    if !c.header && c.columns.is_empty() {
        return Err(err("format: csv needs csv.columns or csv.header: true".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = c.columns.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(err(format!("csv.columns names {dup:?} twice")));
    }
    if !c.columns.is_empty() {
        if let Some(field) = config.types.keys().find(|f| !c.columns.contains(f)) {
            return Err(err(format!("types names {field:?}, which is not in csv.columns")));
        }
    }
    Ok(CsvSettings {
        header: c.header,
        columns: (!c.columns.is_empty()).then_some(c.columns),
        delimiter,
    })
}

/// `bytes` as UTF-8, or why not.
fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("the line is not valid UTF-8 (at byte {})", e.valid_up_to()))
}

/// What kind of JSON value `v` is, in prose.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object written field by field, keeping the fields in the order given (serde_json's
/// `Map` would sort them, and schema inference takes columns in first-seen order).
#[derive(Default)]
struct JsonObject {
    out: Vec<u8>,
}

impl JsonObject {
    fn field(&mut self, name: &str, value: &Value) {
        self.out.push(if self.out.is_empty() { b'{' } else { b',' });
        // Writing strings and values to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.out, name);
        self.out.push(b':');
        let _ = serde_json::to_writer(&mut self.out, value);
    }

    fn finish(mut self) -> Bytes {
        if self.out.is_empty() {
            self.out.push(b'{');
        }
        self.out.push(b'}');
        Bytes::from(self.out)
    }
}

//! Line parsers shared by the sources that read text (file, stdin): how lines become records.
//!
//! A source feeds the bytes it reads to a [`StreamParser`] (one per input stream), which frames
//! them into lines (`framer.rs`), optionally joins multi-line records (`multiline.rs`) and turns
//! each record into a value in the configured [`LineFormat`] (`record.rs`). A line that does not
//! parse becomes a bad item with a prose error; it never stops reading.

mod csv;
mod framer;
mod multiline;
mod record;
mod stream;
#[cfg(test)]
mod tests;
mod types;

use std::collections::BTreeMap;

use brook_engine::format::{Format, FormatSpec};
use serde::Deserialize;

use crate::error::{Error, Result};

pub use record::Parser;
pub use stream::{Parsed, StreamParser};
pub use types::FieldType;

/// The default bound on one line, in bytes (1 MiB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// How each line (or multi-line record) is turned into a record value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// The value is the line itself; the topic's format is `lines`.
    #[default]
    Lines,
    /// Each line is a JSON object, emitted as is; the topic's format is `json`.
    Json,
    /// Each line is a CSV row, emitted as a JSON object of column to value.
    Csv,
    /// Each line is matched by `pattern`, emitted as a JSON object of its named groups.
    Regex,
}

/// The CSV options of `format: csv`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// Whether the first line of each stream is a header: it names the columns unless `columns`
    /// is given, and is never emitted.
    #[serde(default)]
    pub header: bool,
    /// The column names; required unless `header` is true.
    #[serde(default)]
    pub columns: Vec<String>,
    /// The field delimiter, one ASCII character (default ",").
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
}

impl Default for CsvConfig {
    fn default() -> Self {
        CsvConfig {
            header: false,
            columns: Vec::new(),
            delimiter: default_delimiter(),
        }
    }
}

fn default_delimiter() -> String {
    ",".to_string()
}

/// How lines are joined into multi-line records (stack traces, wrapped log messages).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A regular expression matching the first line of a record; the following lines that do not
    /// match belong to it.
    pub start_pattern: String,
    /// The most lines one record takes (default 500); a record that reaches it is emitted and the
    /// next line starts a new one.
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
    /// How long an open record waits for more lines before it is emitted, in ms (default 1000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_max_lines() -> usize {
    500
}

fn default_timeout_ms() -> u64 {
    1000
}

/// The parser settings every text source has, given as the same explicit fields of each
/// source's configuration (serde cannot flatten into a struct that denies unknown fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseConfig {
    /// How lines become values.
    pub format: LineFormat,
    /// CSV options; only with `format: csv`.
    pub csv: Option<CsvConfig>,
    /// The regular expression with named groups; required with `format: regex`, refused otherwise.
    pub pattern: Option<String>,
    /// Conversions of fields of csv and regex records.
    pub types: BTreeMap<String, FieldType>,
    /// Multi-line records; None for one record per line.
    pub multiline: Option<MultilineConfig>,
    /// The longest line read, in bytes, not counting its newline; a longer line becomes a bad
    /// item and reading continues after it.
    pub max_line_bytes: usize,
}

impl Default for ParseConfig {
    fn default() -> Self {
        ParseConfig {
            format: LineFormat::Lines,
            csv: None,
            pattern: None,
            types: BTreeMap::new(),
            multiline: None,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

impl ParseConfig {
    /// Checks the settings and compiles their regular expressions; errors name `connector`.
    pub fn compile(&self, connector: &'static str) -> Result<Parser> {
        Parser::new(self, connector)
    }

    /// The format of the values the parser emits.
    pub fn format_spec(&self) -> FormatSpec {
        match self.format {
            LineFormat::Lines => FormatSpec::new(Format::Lines),
            LineFormat::Json | LineFormat::Csv | LineFormat::Regex => FormatSpec::new(Format::Json),
        }
    }
}

/// The default of `max_line_bytes`, for serde.
pub fn default_max_line_bytes() -> usize {
    DEFAULT_MAX_LINE_BYTES
}

/// A configuration error of `connector`.
fn config_error(connector: &'static str, message: impl Into<String>) -> Error {
    Error::config(connector, message)
}

//! The one table of connector types: a connector is one folder and one line here.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::sink::Sink;
use crate::source::Source;

/// Whether a connector reads into topics or writes out of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Reads from the outside world into a topic.
    Source,
    /// Writes from a topic to the outside world.
    Sink,
}

impl Direction {
    /// "source" or "sink".
    pub fn name(self) -> &'static str {
        match self {
            Direction::Source => "source",
            Direction::Sink => "sink",
        }
    }
}

/// What a connector is built with besides its own configuration.
#[derive(Debug, Clone)]
pub struct Context {
    /// The connector instance's name, `<pipeline>.<step>`; used in logs, state keys and files.
    pub name: String,
    /// The directory relative paths in the configuration are resolved against (the pipeline
    /// file's directory).
    pub base_dir: PathBuf,
}

impl Context {
    /// `path` resolved against [`Context::base_dir`] when relative.
    pub fn resolve(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }
}

/// How a connector instance is built from its configuration (the step's keys other than the
/// pipeline's own: `type`, `topic`, `input`, `on_error`, `schema`). Building only parses and
/// checks the configuration; it touches nothing outside, so `brook pipeline validate` builds
/// every connector of a file.
#[derive(Clone, Copy)]
pub enum Build {
    /// Builds a source.
    Source(fn(&Context, serde_json::Value) -> Result<Box<dyn Source>>),
    /// Builds a sink.
    Sink(fn(&Context, serde_json::Value) -> Result<Box<dyn Sink>>),
}

/// One registered connector type.
pub struct ConnectorType {
    /// The `type:` users write.
    pub name: &'static str,
    /// One line saying what it does, for `--help` and errors.
    pub summary: &'static str,
    /// Its builder, which also says its direction.
    pub build: Build,
}

impl ConnectorType {
    /// Source or sink.
    pub fn direction(&self) -> Direction {
        match self.build {
            Build::Source(_) => Direction::Source,
            Build::Sink(_) => Direction::Sink,
        }
    }
}

/// The one table of connector types, sorted by name then direction; one line per connector.
#[rustfmt::skip]
pub const CONNECTORS: &[ConnectorType] = &[
    ConnectorType { name: "file", summary: "writes rows to JSON-lines, CSV or Parquet files exactly once, appending or rolling", build: Build::Sink(crate::sinks::file::build) },
    ConnectorType { name: "file", summary: "tails log files matched by a path or glob, through rotation", build: Build::Source(crate::sources::file::build) },
    ConnectorType { name: "generator", summary: "makes synthetic JSON records at a given rate, repeatably from a seed", build: Build::Source(crate::sources::generator::build) },
    ConnectorType { name: "http", summary: "POSTs rows to a webhook as NDJSON or a JSON array, retrying failures", build: Build::Sink(crate::sinks::http::build) },
    ConnectorType { name: "http", summary: "takes JSON records POSTed to the HTTP API, answering once they are durable", build: Build::Source(crate::sources::http::build) },
    ConnectorType { name: "postgres", summary: "writes rows to a PostgreSQL table exactly once, upserting by key", build: Build::Sink(crate::sinks::postgres::build) },
    ConnectorType { name: "sqlite", summary: "writes rows to a SQLite table exactly once, upserting by key", build: Build::Sink(crate::sinks::sqlite::build) },
    ConnectorType { name: "stdin", summary: "reads lines from standard input until its end", build: Build::Source(crate::sources::stdin::build) },
    ConnectorType { name: "stdout", summary: "prints rows to standard output as JSON lines or raw values", build: Build::Sink(crate::sinks::stdout::build) },
];

/// Looks a connector type up by name and direction.
pub fn find(name: &str, direction: Direction) -> Result<&'static ConnectorType> {
    let of_direction = || CONNECTORS.iter().filter(move |c| c.direction() == direction);
    of_direction()
        .find(|c| c.name == name)
        .ok_or_else(|| Error::UnknownType {
            name: name.to_string(),
            direction: direction.name(),
            known: of_direction().map(|c| c.name).collect::<Vec<_>>().join(", "),
        })
}

/// Builds a source of type `name`.
pub fn build_source(name: &str, ctx: &Context, config: serde_json::Value) -> Result<Box<dyn Source>> {
    match find(name, Direction::Source)?.build {
        Build::Source(build) => build(ctx, config),
        Build::Sink(_) => Err(Error::Internal(format!("{name} is registered as a sink"))),
    }
}

/// Builds a sink of type `name`.
pub fn build_sink(name: &str, ctx: &Context, config: serde_json::Value) -> Result<Box<dyn Sink>> {
    match find(name, Direction::Sink)?.build {
        Build::Sink(build) => build(ctx, config),
        Build::Source(_) => Err(Error::Internal(format!("{name} is registered as a source"))),
    }
}

/// Parses a connector's configuration into its typed struct (which denies unknown fields), with
/// serde's message (naming the field) as the error.
pub fn parse_config<T: DeserializeOwned>(connector: &'static str, config: serde_json::Value) -> Result<T> {
    let config = if config.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        config
    };
    serde_json::from_value(config).map_err(|e| Error::config(connector, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_unique() {
        let keys: Vec<_> = CONNECTORS.iter().map(|c| (c.name, c.direction().name())).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn unknown_types_are_refused_by_name() {
        let err = find("nope", Direction::Sink).err().expect("unknown").to_string();
        assert!(err.contains("\"nope\""), "{err}");
    }
}

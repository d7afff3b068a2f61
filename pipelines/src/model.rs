//! The validated pipeline: what a pipeline file means once every name, topic, connector and SQL
//! statement in it has been checked. The runtime and the `tests:` runner consume only this.

use std::collections::BTreeMap;
use std::path::PathBuf;

use datafusion::arrow::datatypes::SchemaRef;

/// A validated pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The pipeline's name; it prefixes derived topic names and connector instance names.
    pub name: String,
    /// What the pipeline is for, as the file says.
    pub description: Option<String>,
    /// The file it was loaded from (as given; a label such as `<stdin>` for text).
    pub file: PathBuf,
    /// The directory relative paths in connector configurations resolve against.
    pub base_dir: PathBuf,
    /// The sources, in file order.
    pub sources: Vec<SourceSpec>,
    /// The transforms in topological order: a transform comes after the transform it reads.
    pub transforms: Vec<TransformSpec>,
    /// The sinks, in file order.
    pub sinks: Vec<SinkSpec>,
    /// The test cases of the `tests:` block, in file order.
    pub tests: Vec<TestCase>,
    /// The value columns of every source and transform whose columns are known: declared with
    /// `schema:`, or derived by planning a transform's SQL over its input's columns (metadata
    /// columns such as `_offset` left out). Read it through [`Pipeline::schema_of`].
    pub schemas: BTreeMap<String, SchemaRef>,
}

/// What a step does with a record it cannot process (one that does not decode, or whose
/// evaluation or write fails for good): the runners' own policy.
pub use brook_connectors::runtime::ErrorPolicy;

/// A source: a connector reading the outside world into a topic.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// The step name, unique among the pipeline's sources, transforms and sinks.
    pub name: String,
    /// The connector type (`type:`), registered in `brook_connectors::CONNECTORS`.
    pub connector: String,
    /// The topic it writes.
    pub topic: String,
    /// How many partitions the topic is created with.
    pub partitions: i32,
    /// The value columns declared with `schema:` (records are then JSON objects); None to use
    /// the connector's format as it is.
    pub schema: Option<SchemaRef>,
    /// What happens to input the connector cannot parse.
    pub on_error: ErrorPolicy,
    /// The connector's own configuration (every key but the pipeline's), as given to
    /// `brook_connectors::build_source`; always an object.
    pub config: serde_json::Value,
    /// Where the step is named in the file.
    pub at: Location,
}

/// A transform: SQL over one source's or transform's topic, written to a topic of its own.
#[derive(Debug, Clone)]
pub struct TransformSpec {
    /// The step name.
    pub name: String,
    /// The step it reads (a source or a transform).
    pub input: String,
    /// The topic of that step.
    pub input_topic: String,
    /// One SELECT reading the table named like [`TransformSpec::input`]; `steps:` are compiled
    /// into it.
    pub sql: String,
    /// The topic it writes.
    pub topic: String,
    /// How many partitions that topic is created with.
    pub partitions: i32,
    /// What happens to a record that does not decode or whose evaluation fails.
    pub on_error: ErrorPolicy,
    /// Where the step is named in the file.
    pub at: Location,
}

/// A sink: a connector writing a source's or transform's topic to the outside world.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// The step name.
    pub name: String,
    /// The connector type (`type:`).
    pub connector: String,
    /// The step it reads (a source or a transform).
    pub input: String,
    /// The topic of that step.
    pub input_topic: String,
    /// What happens to a record the target refuses for good.
    pub on_error: ErrorPolicy,
    /// The connector's own configuration, as given to `brook_connectors::build_sink`; always an
    /// object.
    pub config: serde_json::Value,
    /// Where the step is named in the file.
    pub at: Location,
}

/// One case of the `tests:` block: records fed to sources, and what steps must see.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// The case's name.
    pub name: String,
    /// Per source, the records fed to it in order: JSON objects, or strings for raw values.
    pub input: Vec<(String, Vec<serde_json::Value>)>,
    /// Per step (a source, transform or sink), the rows it must see, in order.
    pub expect: Vec<(String, Vec<serde_json::Value>)>,
    /// Per step, how many records it must send to its dead-letter topic.
    pub expect_dead_letters: Vec<(String, u64)>,
    /// Where the case starts in the file.
    pub at: Location,
}

/// A position in a pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Location {
    /// The 1-based line.
    pub line: usize,
    /// The 1-based column, in characters.
    pub column: usize,
}

impl Pipeline {
    /// The topic a source or transform writes; None for sinks and unknown names.
    pub fn step_topic(&self, name: &str) -> Option<&str> {
        let source = self.sources.iter().find(|s| s.name == name).map(|s| s.topic.as_str());
        source.or_else(|| {
            self.transforms
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.topic.as_str())
        })
    }

    /// The value columns of a source or transform: declared, or derived from the input's.
    pub fn schema_of(&self, name: &str) -> Option<SchemaRef> {
        self.schemas.get(name).cloned()
    }

    /// The error policy of any step.
    pub fn on_error_of(&self, name: &str) -> Option<&ErrorPolicy> {
        let source = self.sources.iter().find(|s| s.name == name).map(|s| &s.on_error);
        let transform = || self.transforms.iter().find(|t| t.name == name).map(|t| &t.on_error);
        let sink = || self.sinks.iter().find(|s| s.name == name).map(|s| &s.on_error);
        source.or_else(transform).or_else(sink)
    }
}

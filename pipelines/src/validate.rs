//! Validation of a parsed pipeline file: every key, name, topic, connector configuration and
//! reference between steps is checked, every problem is collected with its position, and a
//! file without problems becomes the [`Pipeline`] model.
//!
//! This file holds the shared checking helpers, the top level, sources, sinks, topics and the
//! graph between steps; transforms (SQL and steps) are in `transforms.rs` and the `tests:` block
//! in `cases.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use brook_connectors::{Context, Direction, CONNECTORS};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};

use crate::cases;
use crate::diagnostic::suggest;
use crate::model::{ErrorPolicy, Location, Pipeline, SinkSpec, SourceSpec};
use crate::sql::{sql_type, SqlError, SQL_TYPES};
use crate::transforms::{self, TransformDraft};
use crate::yaml::{position_in_scalar, Key, Node, Value};

/// The most partitions a pipeline topic may be created with: what a topic may have.
pub const MAX_PARTITIONS: i64 = brook_broker::topics::MAX_PARTITIONS as i64;

const TOP_KEYS: &[&str] = &["name", "description", "sources", "transforms", "sinks", "tests"];
const SOURCE_KEYS: &[&str] = &["type", "topic", "partitions", "schema", "on_error", "dead_letter_topic"];
const SINK_KEYS: &[&str] = &["type", "input", "on_error", "dead_letter_topic"];

/// One problem, before it is tied to a file name.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Where it is.
    pub at: Location,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// What kind of step a name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A source.
    Source,
    /// A transform.
    Transform,
    /// A sink.
    Sink,
}

impl Kind {
    /// "source", "transform" or "sink".
    pub fn name(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Transform => "transform",
            Kind::Sink => "sink",
        }
    }
}

/// Collects problems while walking the file.
pub struct Checker<'a> {
    /// The file's text, to map positions inside scalars.
    pub text: &'a str,
    /// What was found so far.
    pub problems: Vec<Problem>,
}

impl Checker<'_> {
    /// Records a problem.
    pub fn error(&mut self, at: Location, message: impl Into<String>, hint: Option<String>) {
        self.problems.push(Problem {
            at,
            message: message.into(),
            hint,
        });
    }

    /// The entries of `node` when it is a mapping (nothing counts as an empty one); else a
    /// problem naming `what`.
    pub fn mapping<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Key, Node)]> {
        match &node.value {
            Value::Map(entries) => Some(entries),
            Value::Null => Some(&[]),
            _ => {
                self.error(
                    node.at.location(),
                    format!("{what} must be a mapping, found {}", node.kind()),
                    None,
                );
                None
            }
        }
    }

    /// The items of `node` when it is a list; else a problem naming `what`.
    pub fn list<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            Value::Null => Some(&[]),
            _ => {
                self.error(
                    node.at.location(),
                    format!("{what} must be a list, found {}", node.kind()),
                    None,
                );
                None
            }
        }
    }

    /// The string `node` holds; else a problem naming `what`.
    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.error(
                    node.at.location(),
                    format!("{what} must be a string, found {}", node.kind()),
                    None,
                );
                None
            }
        }
    }

    /// The text of a scalar (strings as they are, numbers and booleans written out), for SQL
    /// expressions that YAML may have read as numbers; else a problem naming `what`.
    pub fn scalar_text(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::UInt(u) => Some(u.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                self.error(
                    node.at.location(),
                    format!("{what} must be SQL text, found {}", node.kind()),
                    None,
                );
                None
            }
        }
    }

    /// Reports every key of `entries` not in `known`, suggesting the closest known one.
    pub fn unknown_keys(&mut self, entries: &[(Key, Node)], known: &[&str], what: &str) {
        for (key, _) in entries {
            if !known.contains(&key.name.as_str()) {
                self.error(
                    key.at.location(),
                    format!("unknown key \"{}\" in {what}", key.name),
                    suggest(&key.name, "keys", known.iter().copied()),
                );
            }
        }
    }

    /// The key `name` of `entries`, or a problem at `owner` saying it is missing.
    pub fn required<'n>(
        &mut self,
        entries: &'n [(Key, Node)],
        name: &str,
        owner: Location,
        what: &str,
    ) -> Option<&'n Node> {
        let found = get(entries, name);
        if found.is_none() {
            self.error(owner, format!("missing key \"{name}\" in {what}"), None);
        }
        found.map(|(_, v)| v)
    }

    /// Checks a step or pipeline name at `at`.
    pub fn name(&mut self, name: &str, at: Location) -> bool {
        match crate::validate_name(name) {
            Ok(()) => true,
            Err(crate::Error::InvalidName { reason, .. }) => {
                self.error(at, format!("invalid name \"{name}\": {reason}"), None);
                false
            }
            Err(other) => {
                self.error(at, other.to_string(), None);
                false
            }
        }
    }

    /// Reports an SQL error found in the scalar `node` holding `sql`, at the position inside
    /// the SQL the error names when it has one.
    pub fn sql_error(&mut self, node: &Node, sql: &str, e: SqlError, hint: Option<String>) {
        let at = match (e.line, e.column) {
            (Some(line), Some(column)) => position_in_scalar(self.text, node, sql, line, column),
            _ => node.at.location(),
        };
        self.error(at, e.message, hint.or(e.hint));
    }

    /// An optional `topic:`, checked against Kafka's topic rules.
    pub fn topic(&mut self, entries: &[(Key, Node)], key: &str) -> Option<(String, Location)> {
        let (_, node) = get(entries, key)?;
        let topic = self.string(node, &format!("\"{key}\""))?;
        if let Err(reason) = check_topic(&topic) {
            self.error(
                node.at.location(),
                format!("invalid topic name \"{topic}\": {reason}"),
                None,
            );
            return None;
        }
        Some((topic, node.at.location()))
    }

    /// An optional `partitions:`, 1 by default.
    pub fn partitions(&mut self, entries: &[(Key, Node)]) -> i32 {
        let Some((_, node)) = get(entries, "partitions") else {
            return 1;
        };
        match node.value {
            Value::Int(n) if (1..=MAX_PARTITIONS).contains(&n) => n as i32,
            Value::Int(_) | Value::UInt(_) => {
                let message = format!("\"partitions\" must be between 1 and {MAX_PARTITIONS}");
                self.error(node.at.location(), message, None);
                1
            }
            _ => {
                let message = format!("\"partitions\" must be an integer, found {}", node.kind());
                self.error(node.at.location(), message, None);
                1
            }
        }
    }

    /// `on_error:` and `dead_letter_topic:`; dead letters go to `<base_topic>.dlq` by default.
    pub fn error_policy(&mut self, entries: &[(Key, Node)], base_topic: &str) -> ErrorPolicy {
        let dead_letter_topic = self.topic(entries, "dead_letter_topic");
        let fail = match get(entries, "on_error") {
            None => false,
            Some((_, node)) => match self.string(node, "\"on_error\"").as_deref() {
                Some("dead_letter") | None => false,
                Some("fail") => true,
                Some(other) => {
                    let hint = suggest(other, "policies", ["dead_letter", "fail"]);
                    let message = format!("unknown error policy \"{other}\": use dead_letter or fail");
                    self.error(node.at.location(), message, hint);
                    false
                }
            },
        };
        match (fail, dead_letter_topic) {
            (true, Some((_, at))) => {
                let message = "a dead-letter topic is set but on_error is fail";
                self.error(
                    at,
                    message,
                    Some("remove dead_letter_topic, or use on_error: dead_letter".into()),
                );
                ErrorPolicy::Fail
            }
            (true, None) => ErrorPolicy::Fail,
            (false, Some((topic, _))) => ErrorPolicy::DeadLetter { topic },
            (false, None) => ErrorPolicy::DeadLetter {
                topic: brook_engine::dlq::dead_letter_topic(base_topic),
            },
        }
    }
}

/// The entry `name` of a mapping.
pub fn get<'n>(entries: &'n [(Key, Node)], name: &str) -> Option<(&'n Key, &'n Node)> {
    entries.iter().find(|(k, _)| k.name == name).map(|(k, v)| (k, v))
}

/// Kafka's rules for topic names, as the broker checks them: the rule a name breaks.
pub fn check_topic(topic: &str) -> Result<(), String> {
    match brook_broker::topics::validate_topic_name(topic) {
        Ok(()) => Ok(()),
        Err(brook_broker::Error::InvalidTopic { reason, .. }) => Err(reason),
        Err(other) => Err(other.to_string()),
    }
}

/// A source as read from the file, before references are resolved.
struct SourceDraft {
    spec: SourceSpec,
    topic_at: Location,
}

/// A sink as read from the file.
struct SinkDraft {
    name: String,
    at: Location,
    connector: String,
    input: Option<(String, Location)>,
    on_error: ErrorPolicy,
    config: serde_json::Value,
}

/// Validates the located tree of a pipeline file.
pub fn validate(root: &Node, text: &str, file: &Path, base_dir: &Path) -> Result<Pipeline, Vec<Problem>> {
    let mut c = Checker {
        text,
        problems: Vec::new(),
    };
    let top = Location { line: 1, column: 1 };
    if matches!(root.value, Value::Null) {
        let hint = Some("a pipeline has a name, sources and sinks".to_string());
        c.error(top, "the file is empty", hint);
        return Err(c.problems);
    }
    let Some(entries) = c.mapping(root, "a pipeline file") else {
        return Err(c.problems);
    };
    c.unknown_keys(entries, TOP_KEYS, "the pipeline");

    let name = match c.required(entries, "name", top, "the pipeline") {
        Some(node) => match c.string(node, "\"name\"") {
            Some(name) => {
                c.name(&name, node.at.location());
                name
            }
            None => String::new(),
        },
        None => String::new(),
    };
    let description = get(entries, "description").and_then(|(_, node)| c.string(node, "\"description\""));
    let ctx = |step: &str| Context {
        name: format!("{name}.{step}"),
        base_dir: base_dir.to_path_buf(),
    };

    // Step names share one namespace across sections.
    let mut names: BTreeMap<String, (Kind, Location)> = BTreeMap::new();
    let mut section = |c: &mut Checker, key: &str, kind: Kind, required: bool| -> Vec<(Key, Node)> {
        let Some((section_key, node)) = get(entries, key) else {
            if required {
                let hint = format!("a pipeline needs at least one {}", kind.name());
                c.error(top, format!("missing key \"{key}\" in the pipeline"), Some(hint));
            }
            return Vec::new();
        };
        let Some(steps) = c.mapping(node, &format!("\"{key}\"")) else {
            return Vec::new();
        };
        if steps.is_empty() && required {
            let message = format!("a pipeline needs at least one {}", kind.name());
            c.error(section_key.at.location(), message, None);
        }
        for (step, _) in steps {
            c.name(&step.name, step.at.location());
            if let Some((other, at)) = names.get(&step.name) {
                let message = format!(
                    "the name \"{}\" is already used by the {} at line {}",
                    step.name,
                    other.name(),
                    at.line
                );
                let hint = "sources, transforms and sinks share one namespace".to_string();
                c.error(step.at.location(), message, Some(hint));
            } else {
                names.insert(step.name.clone(), (kind, step.at.location()));
            }
        }
        steps.to_vec()
    };
    let source_nodes = section(&mut c, "sources", Kind::Source, true);
    let transform_nodes = section(&mut c, "transforms", Kind::Transform, false);
    let sink_nodes = section(&mut c, "sinks", Kind::Sink, true);
    let kinds: BTreeMap<String, Kind> = names.iter().map(|(n, (k, _))| (n.clone(), *k)).collect();

    let sources: Vec<SourceDraft> = source_nodes
        .iter()
        .filter_map(|(key, node)| source(&mut c, &name, key, node, &ctx(&key.name)))
        .collect();
    let mut drafts: Vec<TransformDraft> = transform_nodes
        .iter()
        .filter_map(|(key, node)| transforms::draft(&mut c, &name, key, node))
        .collect();
    let sinks: Vec<SinkDraft> = sink_nodes
        .iter()
        .filter_map(|(key, node)| sink(&mut c, &name, key, node, &ctx(&key.name)))
        .collect();

    // Topics: each written by one step.
    let mut topics: BTreeMap<String, String> = BTreeMap::new();
    let mut writes = |c: &mut Checker, topic: &str, step: &str, at: Location| {
        if let Some(other) = topics.get(topic) {
            let message = format!("the topic \"{topic}\" is also written by \"{other}\"");
            c.error(at, message, Some("give one of them another topic".into()));
        } else {
            topics.insert(topic.to_string(), step.to_string());
        }
    };
    for s in &sources {
        writes(&mut c, &s.spec.topic, &s.spec.name, s.topic_at);
    }
    for t in &drafts {
        writes(&mut c, &t.topic, &t.name, t.topic_at);
    }
    let mut step_topics: BTreeMap<String, String> = BTreeMap::new();
    step_topics.extend(sources.iter().map(|s| (s.spec.name.clone(), s.spec.topic.clone())));
    step_topics.extend(drafts.iter().map(|t| (t.name.clone(), t.topic.clone())));

    let mut schemas: BTreeMap<String, SchemaRef> = BTreeMap::new();
    schemas.extend(
        sources
            .iter()
            .filter_map(|s| Some((s.spec.name.clone(), s.spec.schema.clone()?))),
    );
    transforms::resolve(&mut c, &mut drafts, &kinds, &mut schemas);
    let transforms = transforms::finish(drafts, &step_topics);

    let mut sink_specs = Vec::new();
    for s in sinks {
        let Some((input, at)) = s.input else { continue };
        if !check_input(&mut c, &input, at, &kinds, Kind::Sink, false) {
            continue;
        }
        let Some(input_topic) = step_topics.get(&input).cloned() else {
            continue;
        };
        sink_specs.push(SinkSpec {
            name: s.name,
            connector: s.connector,
            input,
            input_topic,
            on_error: s.on_error,
            config: s.config,
            at: s.at,
        });
    }

    let tests = match get(entries, "tests") {
        Some((_, node)) => cases::cases(&mut c, node, &kinds),
        None => Vec::new(),
    };

    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    Ok(Pipeline {
        name,
        description,
        file: file.to_path_buf(),
        base_dir: base_dir.to_path_buf(),
        sources: sources.into_iter().map(|s| s.spec).collect(),
        transforms,
        sinks: sink_specs,
        tests,
        schemas,
    })
}

/// Checks that `input`, read by a step of kind `reader`, names a source or transform.
/// `from_sql` says the name came from an SQL FROM clause, where unquoted names are lower-cased.
pub fn check_input(
    c: &mut Checker,
    input: &str,
    at: Location,
    kinds: &BTreeMap<String, Kind>,
    reader: Kind,
    from_sql: bool,
) -> bool {
    match kinds.get(input) {
        Some(Kind::Source | Kind::Transform) => true,
        Some(Kind::Sink) => {
            let message = format!(
                "\"{input}\" is a sink, which writes no topic: a {} reads a source or a transform",
                reader.name()
            );
            c.error(at, message, None);
            false
        }
        None => {
            let readable = kinds.iter().filter(|(_, k)| **k != Kind::Sink).map(|(n, _)| n.as_str());
            let mut hint = suggest(input, "sources and transforms", readable.clone());
            let differs_in_case = |n: &&str| n.to_lowercase() == input.to_lowercase() && *n != input;
            if let Some(exact) = readable.clone().find(differs_in_case).filter(|_| from_sql) {
                hint = Some(format!(
                    "write \"{exact}\" in double quotes: SQL lower-cases unquoted names"
                ));
            }
            c.error(at, format!("unknown input \"{input}\""), hint);
            false
        }
    }
}

/// The connector's own configuration: every key of the step but the pipeline's.
fn connector_config(c: &mut Checker, entries: &[(Key, Node)], own: &[&str]) -> serde_json::Value {
    let mut config = serde_json::Map::new();
    for (key, node) in entries.iter().filter(|(k, _)| !own.contains(&k.name.as_str())) {
        match node.to_json() {
            Ok(value) => {
                config.insert(key.name.clone(), value);
            }
            Err((at, message)) => c.error(at.location(), message, None),
        }
    }
    serde_json::Value::Object(config)
}

/// The registered connector type of `type:`, or a problem listing the known ones.
fn connector_type(
    c: &mut Checker,
    entries: &[(Key, Node)],
    owner: Location,
    what: &str,
    direction: Direction,
) -> Option<String> {
    let node = c.required(entries, "type", owner, what)?;
    let connector = c.string(node, "\"type\"")?;
    if brook_connectors::find(&connector, direction).is_ok() {
        return Some(connector);
    }
    let known = CONNECTORS.iter().filter(|t| t.direction() == direction).map(|t| t.name);
    let other = if direction == Direction::Source {
        Direction::Sink
    } else {
        Direction::Source
    };
    let hint = if brook_connectors::find(&connector, other).is_ok() {
        Some(format!(
            "\"{connector}\" is a {} type, not a {} type",
            other.name(),
            direction.name()
        ))
    } else if known.clone().next().is_none() {
        Some(format!("no {} types are registered", direction.name()))
    } else {
        suggest(&connector, &format!("{} types", direction.name()), known)
    };
    let message = format!("unknown {} type \"{connector}\"", direction.name());
    c.error(node.at.location(), message, hint);
    None
}

/// Reports a connector's refusal of its configuration at the key it names, else at `type:`.
fn connector_error(
    c: &mut Checker,
    e: brook_connectors::Error,
    entries: &[(Key, Node)],
    own: &[&str],
    direction: Direction,
) {
    let type_at = get(entries, "type").map_or(Location::default(), |(k, _)| k.at.location());
    let (connector, message) = match e {
        brook_connectors::Error::Config { connector, message } => (connector.to_string(), message),
        other => (String::new(), other.to_string()),
    };
    // serde names fields in backticks: "unknown field `pathx`, expected one of `path`, `format`".
    let named: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if let Some(unknown) = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split('`').next())
    {
        if let Some((key, _)) = get(entries, unknown) {
            let known: Vec<&str> = named.iter().skip(1).copied().chain(own.iter().copied()).collect();
            let message = format!("unknown key \"{unknown}\" for a {connector} {}", direction.name());
            c.error(
                key.at.location(),
                message,
                suggest(unknown, "keys", known.iter().copied()),
            );
            return;
        }
    }
    let quoted: Vec<&str> = message.split('"').skip(1).step_by(2).collect();
    let at = named
        .iter()
        .chain(quoted.iter())
        .find_map(|n| get(entries, n))
        .map_or(type_at, |(k, _)| k.at.location());
    let prefix = if connector.is_empty() {
        String::new()
    } else {
        format!("{connector} {}: ", direction.name())
    };
    c.error(at, format!("{prefix}{message}"), None);
}

/// A declared `schema:`: column name -> SQL type.
fn declared_schema(c: &mut Checker, node: &Node) -> Option<SchemaRef> {
    let entries = c.mapping(node, "\"schema\"")?;
    if entries.is_empty() {
        c.error(node.at.location(), "a schema declares at least one column", None);
        return None;
    }
    let mut fields = Vec::new();
    let mut ok = true;
    for (column, type_node) in entries {
        let Some(name) = c.string(type_node, &format!("the type of \"{}\"", column.name)) else {
            ok = false;
            continue;
        };
        match sql_type(&name) {
            Some(data_type) => fields.push(Field::new(column.name.clone(), data_type, true)),
            None => {
                let hint = Some(format!("known types: {}", SQL_TYPES.join(", ")));
                c.error(type_node.at.location(), format!("unknown column type \"{name}\""), hint);
                ok = false;
            }
        }
    }
    ok.then(|| std::sync::Arc::new(Schema::new(fields)))
}

fn source(c: &mut Checker, pipeline: &str, key: &Key, node: &Node, ctx: &Context) -> Option<SourceDraft> {
    let what = format!("the source \"{}\"", key.name);
    let entries = c.mapping(node, &what)?;
    let at = key.at.location();
    let connector = connector_type(c, entries, at, &what, Direction::Source);
    let (topic, topic_at) = c
        .topic(entries, "topic")
        .unwrap_or_else(|| (format!("{pipeline}.{}", key.name), at));
    let partitions = c.partitions(entries);
    let schema = get(entries, "schema").and_then(|(_, n)| declared_schema(c, n));
    let on_error = c.error_policy(entries, &topic);
    let config = connector_config(c, entries, SOURCE_KEYS);
    let connector = connector?;
    if let Err(e) = brook_connectors::build_source(&connector, ctx, config.clone()) {
        connector_error(c, e, entries, SOURCE_KEYS, Direction::Source);
    }
    Some(SourceDraft {
        spec: SourceSpec {
            name: key.name.clone(),
            connector,
            topic,
            partitions,
            schema,
            on_error,
            config,
            at,
        },
        topic_at,
    })
}

fn sink(c: &mut Checker, pipeline: &str, key: &Key, node: &Node, ctx: &Context) -> Option<SinkDraft> {
    let what = format!("the sink \"{}\"", key.name);
    let entries = c.mapping(node, &what)?;
    let at = key.at.location();
    let connector = connector_type(c, entries, at, &what, Direction::Sink);
    let input = c
        .required(entries, "input", at, &what)
        .and_then(|n| Some((c.string(n, "\"input\"")?, n.at.location())));
    let on_error = c.error_policy(entries, &format!("{pipeline}.{}", key.name));
    let config = connector_config(c, entries, SINK_KEYS);
    let connector = connector?;
    if let Err(e) = brook_connectors::build_sink(&connector, ctx, config.clone()) {
        connector_error(c, e, entries, SINK_KEYS, Direction::Sink);
    }
    Some(SinkDraft {
        name: key.name.clone(),
        at,
        connector,
        input,
        on_error,
        config,
    })
}

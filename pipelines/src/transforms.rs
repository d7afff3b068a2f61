//! Validation of transforms: `sql:` or `input:` with `steps:`, the table each reads, cycles
//! between them, their topological order, and planning each over its input's columns when known.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::SchemaRef;

use crate::diagnostic::suggest;
use crate::model::{ErrorPolicy, Location, TransformSpec};
use crate::sql::{check_expr, find_word, parse_select, Parsed, Planner};
use crate::steps::{compile, Step};
use crate::validate::{check_input, get, Checker, Kind};
use crate::yaml::{position_in_scalar, Key, Node, Value};

const TRANSFORM_KEYS: &[&str] = &[
    "sql",
    "input",
    "steps",
    "topic",
    "partitions",
    "on_error",
    "dead_letter_topic",
];
const STEP_KINDS: &[&str] = &["filter", "select", "drop", "rename"];
/// The most steps one transform may have.
pub const MAX_STEPS: usize = 100;

/// A transform as read from the file, completed by [`resolve`].
pub struct TransformDraft {
    /// The step name.
    pub name: String,
    /// Where it is named.
    pub at: Location,
    /// The topic it writes.
    pub topic: String,
    /// Where the topic is set (the name's position when derived).
    pub topic_at: Location,
    partitions: i32,
    on_error: ErrorPolicy,
    body: Body,
    input: Option<String>,
    sql: Option<String>,
}

enum Body {
    /// `sql:`, with its node for positions and the parsed statement when it parsed.
    Sql {
        node: Node,
        text: String,
        parsed: Option<Box<Parsed>>,
    },
    /// `input:` with `steps:`, each step with the node it was written as.
    Steps {
        input: String,
        input_at: Location,
        steps: Vec<(Step, Node)>,
    },
}

/// Reads one transform's keys; None when it is too broken to go on with.
pub fn draft(c: &mut Checker, pipeline: &str, key: &Key, node: &Node) -> Option<TransformDraft> {
    let what = format!("the transform \"{}\"", key.name);
    let entries = c.mapping(node, &what)?;
    let at = key.at.location();
    c.unknown_keys(entries, TRANSFORM_KEYS, &what);
    let (topic, topic_at) = c
        .topic(entries, "topic")
        .unwrap_or_else(|| (format!("{pipeline}.{}", key.name), at));
    let partitions = c.partitions(entries);
    let on_error = c.error_policy(entries, &topic);

    let sql = get(entries, "sql");
    let input = get(entries, "input");
    let steps = get(entries, "steps");
    let body = match (sql, input, steps) {
        (Some((_, sql_node)), None, None) => {
            let text = c.string(sql_node, "\"sql\"")?;
            let parsed = match parse_select(&text) {
                Ok(parsed) => Some(Box::new(parsed)),
                Err(e) => {
                    c.sql_error(sql_node, &text, e, None);
                    None
                }
            };
            Body::Sql {
                node: sql_node.clone(),
                text,
                parsed,
            }
        }
        (Some(_), Some((input_key, _)), _) => {
            let message = "a transform with sql reads the table its FROM clause names";
            c.error(
                input_key.at.location(),
                message,
                Some("remove input, or replace sql with steps".into()),
            );
            return None;
        }
        (Some(_), None, Some((steps_key, _))) => {
            let message = "a transform has either sql, or input with steps";
            c.error(steps_key.at.location(), message, None);
            return None;
        }
        (None, Some((_, input_node)), steps) => {
            let input = c.string(input_node, "\"input\"")?;
            let steps = match steps {
                Some((_, steps_node)) => parse_steps(c, steps_node)?,
                None => Vec::new(),
            };
            Body::Steps {
                input,
                input_at: input_node.at.location(),
                steps,
            }
        }
        (None, None, _) => {
            let hint = Some("a transform needs sql, or input with steps".to_string());
            c.error(at, format!("missing key \"sql\" in {what}"), hint);
            return None;
        }
    };
    Some(TransformDraft {
        name: key.name.clone(),
        at,
        topic,
        topic_at,
        partitions,
        on_error,
        body,
        input: None,
        sql: None,
    })
}

/// Reads `steps:`, checking every expression parses on its own.
fn parse_steps(c: &mut Checker, node: &Node) -> Option<Vec<(Step, Node)>> {
    let items = c.list(node, "\"steps\"")?;
    if items.len() > MAX_STEPS {
        c.error(
            node.at.location(),
            format!("a transform has at most {MAX_STEPS} steps"),
            None,
        );
        return None;
    }
    let mut steps = Vec::new();
    let mut ok = true;
    for item in items {
        match parse_step(c, item) {
            Some(step) => steps.push((step, item.clone())),
            None => ok = false,
        }
    }
    ok.then_some(steps)
}

fn parse_step(c: &mut Checker, item: &Node) -> Option<Step> {
    let hint =
        || Some("a step is one of {filter: <condition>}, {select: [...]}, {drop: [...]}, {rename: {old: new}}".into());
    let entries = match &item.value {
        Value::Map(entries) if entries.len() == 1 => entries,
        Value::Map(entries) if entries.len() > 1 => {
            c.error(
                entries[1].0.at.location(),
                "a step has one key: put each step in its own list item",
                hint(),
            );
            return None;
        }
        _ => {
            c.error(
                item.at.location(),
                format!("a step must be a mapping, found {}", item.kind()),
                hint(),
            );
            return None;
        }
    };
    let (key, value) = &entries[0];
    match key.name.as_str() {
        "filter" => {
            let condition = c.scalar_text(value, "\"filter\"")?;
            expression(c, value, &condition)?;
            Some(Step::Filter(condition))
        }
        "select" => match &value.value {
            Value::Map(items) => {
                let mut computed = Vec::new();
                for (name, expr_node) in items {
                    let expr = c.scalar_text(expr_node, &format!("the expression of \"{}\"", name.name))?;
                    expression(c, expr_node, &expr)?;
                    computed.push((name.name.clone(), expr));
                }
                non_empty(c, value, computed, "select").map(Step::Compute)
            }
            _ => columns(c, value, "select").map(Step::Select),
        },
        "drop" => columns(c, value, "drop").map(Step::Drop),
        "rename" => {
            let items = c.mapping(value, "\"rename\"")?;
            let mut pairs = Vec::new();
            for (old, new_node) in items {
                let new = c.string(new_node, &format!("the new name of \"{}\"", old.name))?;
                pairs.push((old.name.clone(), new));
            }
            non_empty(c, value, pairs, "rename").map(Step::Rename)
        }
        other => {
            let message = format!("unknown step \"{other}\"");
            c.error(
                key.at.location(),
                message,
                suggest(other, "steps", STEP_KINDS.iter().copied()),
            );
            None
        }
    }
}

fn non_empty<T>(c: &mut Checker, node: &Node, items: Vec<T>, step: &str) -> Option<Vec<T>> {
    if items.is_empty() {
        c.error(
            node.at.location(),
            format!("\"{step}\" names at least one column"),
            None,
        );
        return None;
    }
    Some(items)
}

/// A list of column names.
fn columns(c: &mut Checker, node: &Node, step: &str) -> Option<Vec<String>> {
    let items = c.list(node, &format!("\"{step}\""))?;
    let names = items
        .iter()
        .map(|n| c.string(n, "a column name"))
        .collect::<Option<Vec<_>>>()?;
    non_empty(c, node, names, step)
}

/// Checks one SQL expression, reporting a syntax error where it is.
fn expression(c: &mut Checker, node: &Node, expr: &str) -> Option<()> {
    match check_expr(expr) {
        Ok(()) => Some(()),
        Err(e) => {
            c.sql_error(node, expr, e, None);
            None
        }
    }
}

/// Resolves inputs, refuses cycles, sorts `drafts` in topological order and plans each whose
/// input's columns are known, adding the columns it derives to `schemas`.
pub fn resolve(
    c: &mut Checker,
    drafts: &mut Vec<TransformDraft>,
    kinds: &BTreeMap<String, Kind>,
    schemas: &mut BTreeMap<String, SchemaRef>,
) {
    for d in drafts.iter_mut() {
        d.input = input_of(c, d, kinds);
    }
    let inputs: BTreeMap<String, String> = drafts
        .iter()
        .filter_map(|d| Some((d.name.clone(), d.input.clone()?)))
        .collect();

    // Each transform reads one step, so following inputs from any transform either reaches a
    // source or loops: the loop is a cycle, reported once, at its first transform in the file.
    let mut depth: BTreeMap<String, usize> = BTreeMap::new();
    let mut reported: Vec<String> = Vec::new();
    for d in drafts.iter() {
        let mut chain = vec![d.name.clone()];
        let mut current = d.name.clone();
        while let Some(next) = inputs.get(&current) {
            if let Some(i) = chain.iter().position(|n| n == next) {
                // Reported from the walk that starts on the cycle, at its first transform.
                let cycle = &chain[i..];
                if i == 0 && !cycle.iter().any(|n| reported.contains(n)) {
                    reported.extend(cycle.iter().cloned());
                    let mut names = cycle.to_vec();
                    names.push(next.clone());
                    c.error(d.at, format!("transforms form a cycle: {}", names.join(" -> ")), None);
                }
                break;
            }
            chain.push(next.clone());
            current = next.clone();
        }
        depth.insert(d.name.clone(), chain.len());
    }
    drafts.retain(|d| !reported.contains(&d.name));
    drafts.sort_by_key(|d| depth.get(&d.name).copied().unwrap_or(0));

    let planner = Planner::new();
    for d in drafts.iter_mut() {
        let Some(input) = d.input.clone() else { continue };
        let columns = schemas.get(&input).cloned();
        match &d.body {
            Body::Sql { node, text, parsed } => {
                d.sql = Some(text.clone());
                let (Some(parsed), Some(columns)) = (parsed, columns) else {
                    continue;
                };
                match planner.plan(parsed.statement.clone(), text, &input, &columns) {
                    Ok(output) => {
                        schemas.insert(d.name.clone(), output);
                    }
                    Err(e) => c.sql_error(node, text, e, None),
                }
            }
            Body::Steps { steps, .. } => {
                let names: Option<Vec<String>> = columns
                    .as_ref()
                    .map(|s| s.fields().iter().map(|f| f.name().clone()).collect());
                let list: Vec<Step> = steps.iter().map(|(s, _)| s.clone()).collect();
                d.sql = Some(compile(&input, &list, names.as_deref()));
                let Some(columns) = columns else { continue };
                // Plan each prefix of the steps, so that an error points at the step causing it.
                let mut output = None;
                for k in 1..=list.len().max(1) {
                    let sql = compile(&input, &list[..k.min(list.len())], names.as_deref());
                    let planned = parse_select(&sql).and_then(|p| planner.plan(p.statement, &sql, &input, &columns));
                    match planned {
                        Ok(schema) => output = Some(schema),
                        Err(e) => {
                            let at = steps.get(k - 1).map_or(d.at, |(_, n)| step_position(c, n, &e));
                            c.error(at, e.message, e.hint);
                            output = None;
                            break;
                        }
                    }
                }
                if let Some(output) = output {
                    schemas.insert(d.name.clone(), output);
                }
            }
        }
    }
}

/// Where a planning error of the step written as `item` is: at the unknown column inside the
/// step's expression or list when it names one there, else at the step.
fn step_position(c: &Checker, item: &Node, e: &crate::sql::SqlError) -> Location {
    let Some(column) = &e.unknown_column else {
        return item.at.location();
    };
    let Some((_, value)) = item.as_map().and_then(|m| m.first()) else {
        return item.at.location();
    };
    let scalars: Vec<&Node> = match &value.value {
        Value::Str(_) => vec![value],
        Value::Seq(items) => items.iter().collect(),
        Value::Map(entries) => entries.iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    scalars
        .into_iter()
        .find_map(|node| {
            let text = node.as_str()?;
            let (line, col) = find_word(text, column)?;
            Some(position_in_scalar(c.text, node, text, line, col))
        })
        .unwrap_or(item.at.location())
}

/// The step a transform reads, checked to exist and to be a source or a transform.
fn input_of(c: &mut Checker, d: &TransformDraft, kinds: &BTreeMap<String, Kind>) -> Option<String> {
    match &d.body {
        Body::Steps { input, input_at, .. } => {
            check_input(c, input, *input_at, kinds, Kind::Transform, false).then(|| input.clone())
        }
        Body::Sql { node, text, parsed } => {
            let parsed = parsed.as_ref()?;
            let at = |c: &Checker, t: &crate::sql::TableRead| match t.at {
                Some((line, column)) => position_in_scalar(c.text, node, text, line, column),
                None => node.at.location(),
            };
            match parsed.tables.as_slice() {
                [] => {
                    let hint = Some("add FROM <source or transform>".to_string());
                    c.error(node.at.location(), "the SQL reads no table", hint);
                    None
                }
                [table] => {
                    let Some(name) = &table.bare else {
                        let message = format!(
                            "unknown table \"{}\": a transform reads a source or a transform by its name",
                            table.name
                        );
                        c.error(at(c, table), message, None);
                        return None;
                    };
                    let position = at(c, table);
                    check_input(c, name, position, kinds, Kind::Transform, true).then(|| name.clone())
                }
                [_, second, ..] => {
                    let names: Vec<&str> = parsed.tables.iter().map(|t| t.name.as_str()).collect();
                    let message = format!("a transform reads one table, this one reads {}", names.join(", "));
                    c.error(at(c, second), message, Some("joins are not supported yet".into()));
                    None
                }
            }
        }
    }
}

/// The transforms of a valid file as the model has them.
pub fn finish(drafts: Vec<TransformDraft>, step_topics: &BTreeMap<String, String>) -> Vec<TransformSpec> {
    drafts
        .into_iter()
        .filter_map(|d| {
            let input = d.input?;
            Some(TransformSpec {
                input_topic: step_topics.get(&input)?.clone(),
                input,
                name: d.name,
                sql: d.sql?,
                topic: d.topic,
                partitions: d.partitions,
                on_error: d.on_error,
                at: d.at,
            })
        })
        .collect()
}

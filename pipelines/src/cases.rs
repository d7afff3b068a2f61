//! Validation of the `tests:` block: each case feeds records to sources and says what steps must
//! see; every name it uses must be a step of the pipeline.

use std::collections::BTreeMap;

use crate::diagnostic::suggest;
use crate::model::{Location, TestCase};
use crate::validate::{get, Checker, Kind};
use crate::yaml::{Key, Node, Value};

const CASE_KEYS: &[&str] = &["name", "input", "expect", "expect_dead_letters"];
/// The most records one case may feed or expect per step.
pub const MAX_CASE_RECORDS: usize = 10_000;

/// Reads the `tests:` list.
pub fn cases(c: &mut Checker, node: &Node, kinds: &BTreeMap<String, Kind>) -> Vec<TestCase> {
    let Some(items) = c.list(node, "\"tests\"") else {
        return Vec::new();
    };
    let mut seen: BTreeMap<String, Location> = BTreeMap::new();
    let mut cases = Vec::new();
    for item in items {
        let Some(case) = case(c, item, kinds) else { continue };
        if let Some(first) = seen.get(&case.name) {
            let message = format!("a test named \"{}\" is already at line {}", case.name, first.line);
            c.error(case.at, message, None);
            continue;
        }
        seen.insert(case.name.clone(), case.at);
        cases.push(case);
    }
    cases
}

fn case(c: &mut Checker, item: &Node, kinds: &BTreeMap<String, Kind>) -> Option<TestCase> {
    let entries = c.mapping(item, "a test")?;
    let at = item.at.location();
    c.unknown_keys(entries, CASE_KEYS, "a test");
    let name = c
        .required(entries, "name", at, "a test")
        .and_then(|n| c.string(n, "\"name\""));
    let sources = kinds
        .iter()
        .filter(|(_, k)| **k == Kind::Source)
        .map(|(n, _)| n.as_str());

    let mut input = Vec::new();
    if let Some(node) = c.required(entries, "input", at, "a test") {
        for (key, records) in c.mapping(node, "\"input\"").unwrap_or_default() {
            match kinds.get(&key.name) {
                Some(Kind::Source) => {}
                Some(kind) => {
                    let message = format!("tests feed sources, and \"{}\" is a {}", key.name, kind.name());
                    c.error(key.at.location(), message, None);
                    continue;
                }
                None => {
                    let hint = suggest(&key.name, "sources", sources.clone());
                    c.error(key.at.location(), format!("unknown source \"{}\"", key.name), hint);
                    continue;
                }
            }
            if let Some(records) = records_of(c, key, records) {
                input.push((key.name.clone(), records));
            }
        }
    }

    let steps = kinds.keys().map(String::as_str);
    let mut expect = Vec::new();
    if let Some((_, node)) = get(entries, "expect") {
        for (key, rows) in c.mapping(node, "\"expect\"").unwrap_or_default() {
            if !known_step(c, key, kinds, steps.clone()) {
                continue;
            }
            if let Some(rows) = records_of(c, key, rows) {
                expect.push((key.name.clone(), rows));
            }
        }
    }

    let mut expect_dead_letters = Vec::new();
    if let Some((_, node)) = get(entries, "expect_dead_letters") {
        for (key, count) in c.mapping(node, "\"expect_dead_letters\"").unwrap_or_default() {
            if !known_step(c, key, kinds, steps.clone()) {
                continue;
            }
            match count.value {
                Value::Int(n) if n >= 0 => expect_dead_letters.push((key.name.clone(), n as u64)),
                Value::Int(_) => c.error(count.at.location(), "a dead-letter count cannot be negative", None),
                _ => {
                    let message = format!("a dead-letter count is a non-negative integer, found {}", count.kind());
                    c.error(count.at.location(), message, None);
                }
            }
        }
    }
    if get(entries, "expect").is_none() && get(entries, "expect_dead_letters").is_none() {
        let hint = Some("add expect or expect_dead_letters".to_string());
        c.error(at, "a test expects nothing", hint);
    }
    Some(TestCase {
        name: name?,
        input,
        expect,
        expect_dead_letters,
        at,
    })
}

fn known_step<'a>(
    c: &mut Checker,
    key: &Key,
    kinds: &BTreeMap<String, Kind>,
    steps: impl IntoIterator<Item = &'a str> + Clone,
) -> bool {
    if kinds.contains_key(&key.name) {
        return true;
    }
    let hint = suggest(&key.name, "steps", steps);
    c.error(key.at.location(), format!("unknown step \"{}\"", key.name), hint);
    false
}

/// A list of records as JSON: mappings become objects, strings stay strings (raw values).
fn records_of(c: &mut Checker, key: &Key, node: &Node) -> Option<Vec<serde_json::Value>> {
    let items = c.list(node, &format!("the records of \"{}\"", key.name))?;
    if items.len() > MAX_CASE_RECORDS {
        let message = format!("a test has at most {MAX_CASE_RECORDS} records per step");
        c.error(node.at.location(), message, None);
        return None;
    }
    let mut records = Vec::new();
    for item in items {
        match item.to_json() {
            Ok(value) => records.push(value),
            Err((at, message)) => {
                c.error(at.location(), message, None);
                return None;
            }
        }
    }
    Some(records)
}

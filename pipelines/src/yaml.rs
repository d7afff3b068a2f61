//! A pipeline file as a tree of YAML nodes, each with the line and column it was written at, so
//! that validation can point at the exact key or value that is wrong.
//!
//! serde-saphyr does the parsing: its `Spanned<T>` wrapper records where a value (and, used for
//! map keys, where a key) starts, and its errors carry a location. A small recursive `Raw` type
//! deserialized through `Spanned` gives the whole located tree in one pass, keeping key order;
//! nothing is re-scanned by hand. Booleans are YAML 1.2's (`true`/`false` only) so that `NO`
//! stays a string, and duplicate keys are refused by the parser. The parser's default budget
//! bounds nesting (64 levels), node count and scalar bytes, so recursion over the tree is bounded.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::model::Location;

/// Where a node starts in the text, and the extent of its source when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// The 1-based line.
    pub line: usize,
    /// The 1-based column, in characters.
    pub column: usize,
    /// The byte offset of the node's source text, when the parser knows it.
    pub byte_offset: Option<usize>,
    /// The byte length of the node's source text, when the parser knows it.
    pub byte_len: Option<usize>,
}

impl Pos {
    /// The line and column only.
    pub fn location(self) -> Location {
        Location {
            line: self.line,
            column: self.column,
        }
    }
}

/// A YAML node with its position.
#[derive(Debug, Clone)]
pub struct Node {
    /// Where it starts.
    pub at: Pos,
    /// What it holds.
    pub value: Value,
}

/// A mapping key with its position.
#[derive(Debug, Clone)]
pub struct Key {
    /// The key's text.
    pub name: String,
    /// Where it starts.
    pub at: Pos,
}

/// The value of a YAML node.
#[derive(Debug, Clone)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer that fits in an i64.
    Int(i64),
    /// A positive integer above i64's range.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in the file's order.
    Map(Vec<(Key, Node)>),
}

impl Node {
    /// What kind of value this is, for messages: "a string", "a mapping"...
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::UInt(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key`, if this is a mapping holding it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    /// The node as JSON: mappings become objects, sequences arrays, scalars themselves.
    pub fn to_json(&self) -> Result<serde_json::Value, (Pos, String)> {
        Ok(match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::UInt(u) => serde_json::Value::from(*u),
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => serde_json::Value::Number(n),
                None => return Err((self.at, format!("{f} is not a finite number, which JSON cannot hold"))),
            },
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => serde_json::Value::Array(items.iter().map(Node::to_json).collect::<Result<_, _>>()?),
            Value::Map(entries) => {
                let mut object = serde_json::Map::new();
                for (k, v) in entries {
                    object.insert(k.name.clone(), v.to_json()?);
                }
                serde_json::Value::Object(object)
            }
        })
    }
}

/// Parses `text` into a located tree; on a syntax error, where it is and what is wrong.
pub fn parse(text: &str) -> Result<Node, (Pos, String)> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Spanned<Raw>>(text, options) {
        Ok(raw) => Ok(convert(raw)),
        Err(e) => {
            let at = e.location().map(pos).unwrap_or(Pos {
                line: 1,
                column: 1,
                ..Pos::default()
            });
            let message = match &e {
                serde_saphyr::Error::DuplicateMappingKey { key, .. } => match key {
                    Some(key) => format!("duplicate key \"{key}\""),
                    None => "duplicate key".to_string(),
                },
                other => strip_location(&other.to_string()),
            };
            Err((at, message))
        }
    }
}

/// The message of a parser error without the " at line L, column C" it ends with.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(", column ") => message[..i].to_string(),
        _ => message.to_string(),
    }
}

fn pos(l: serde_saphyr::Location) -> Pos {
    let span = l.span();
    let known = |v: Option<u64>| v.filter(|v| *v < u64::from(u32::MAX)).map(|v| v as usize);
    Pos {
        line: l.line() as usize,
        column: l.column() as usize,
        byte_offset: known(span.byte_offset()),
        byte_len: known(span.byte_len()),
    }
}

/// The parsed tree before conversion: what serde-saphyr fills in.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
}

fn convert(raw: Spanned<Raw>) -> Node {
    let at = pos(raw.referenced);
    let value = match raw.value {
        Raw::Null => Value::Null,
        Raw::Bool(b) => Value::Bool(b),
        Raw::Int(i) => Value::Int(i),
        Raw::UInt(u) => Value::UInt(u),
        Raw::Float(f) => Value::Float(f),
        Raw::Str(s) => Value::Str(s),
        Raw::Seq(items) => Value::Seq(items.into_iter().map(convert).collect()),
        Raw::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = Key {
                        name: k.value,
                        at: pos(k.referenced),
                    };
                    (key, convert(v))
                })
                .collect(),
        ),
    };
    Node { at, value }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Raw, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Raw, D::Error> {
        Raw::deserialize(deserializer)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(i64::try_from(v).map_or(Raw::UInt(v), Raw::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Raw::Map(entries))
    }
}

/// The position in the file of a character inside a scalar: `node` holds `value`, and `line` and
/// `column` (1-based) are a position inside `value`, e.g. where an SQL parser stopped.
///
/// The scalar's source text may differ from its value (quotes, block indentation, folded line
/// breaks), so the value's characters are matched in order against the source, skipping source
/// characters that the value does not have. A character the source lacks (an escape sequence)
/// leaves the match where it was.
pub fn position_in_scalar(text: &str, node: &Node, value: &str, line: usize, column: usize) -> Location {
    let start = node.at.location();
    let Some(offset) = node
        .at
        .byte_offset
        .filter(|o| *o <= text.len() && text.is_char_boundary(*o))
    else {
        return start;
    };
    let end = node
        .at
        .byte_len
        .map_or(text.len(), |len| (offset + len).min(text.len()));
    let end = (end..=text.len())
        .find(|e| text.is_char_boundary(*e))
        .unwrap_or(text.len());
    let source: Vec<(usize, char)> = text[offset..end].char_indices().collect();

    // The character index in `value` that the position names.
    let target = value
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(|l| l.chars().count())
        .sum::<usize>()
        + column.saturating_sub(1);

    let mut cursor = 0;
    let mut found = 0;
    for (i, c) in value.chars().enumerate() {
        let next = source[cursor.min(source.len())..].iter().position(|(_, s)| *s == c);
        let at = next.map(|n| cursor + n);
        if i == target {
            found = at.unwrap_or(cursor);
            return location_of(text, offset + source.get(found).map_or(end - offset, |(b, _)| *b));
        }
        if let Some(at) = at {
            cursor = at + 1;
            found = at;
        }
    }
    // Past the value's end: just after its last matched character.
    let byte = source.get(found + 1).map_or(end - offset, |(b, _)| *b);
    location_of(text, offset + byte)
}

/// The line and column (1-based, characters) of byte `offset` in `text`.
pub fn location_of(text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let before = &text[..(0..=offset).rev().find(|o| text.is_char_boundary(*o)).unwrap_or(0)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line,
        column: before[line_start..].chars().count() + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_node(text: &str) -> Node {
        parse(text).expect("parses").get("sql").expect("sql").clone()
    }

    fn map(text: &str, line: usize, column: usize) -> (usize, usize) {
        let node = sql_node(text);
        let value = node.as_str().expect("string").to_string();
        let at = position_in_scalar(text, &node, &value, line, column);
        (at.line, at.column)
    }

    #[test]
    fn keys_and_values_carry_their_positions() {
        let text = "name: x\nsources:\n  access:\n    type: file\n    n: NO\n";
        let root = parse(text).expect("parses");
        let access = root.get("sources").and_then(|s| s.as_map()).expect("map");
        assert_eq!((access[0].0.at.line, access[0].0.at.column), (3, 3));
        let step = &access[0].1;
        let (key, value) = &step.as_map().expect("map")[1];
        assert_eq!((key.name.as_str(), key.at.line, key.at.column), ("n", 5, 5));
        assert_eq!(value.as_str(), Some("NO"));
    }

    #[test]
    fn syntax_errors_and_duplicate_keys_have_positions() {
        let (at, message) = parse("a: 1\nb: [1, 2\nc: 3\n").expect_err("bad");
        assert_eq!(at.line, 3, "{message}");
        assert!(!message.contains(" at line "), "{message}");
        let (at, message) = parse("a:\n  x: 1\n  x: 2\n").expect_err("duplicate");
        assert_eq!((at.line, at.column, message.as_str()), (3, 3, "duplicate key \"x\""));
    }

    #[test]
    fn positions_inside_plain_scalars_map_to_the_file() {
        assert_eq!(map("sql: SELECT x FROM t\n", 1, 8), (1, 13));
        assert_eq!(map("sql: \"SELECT x\"\n", 1, 8), (1, 14));
    }

    #[test]
    fn positions_inside_block_scalars_map_to_the_file() {
        let text = "a: 1\nsql: |\n  SELECT x\n    FROM t\n";
        assert_eq!(map(text, 1, 1), (3, 3));
        assert_eq!(map(text, 2, 3), (4, 5));
        let folded = "sql: SELECT x,\n  y FROM t\n";
        assert_eq!(map(folded, 1, 11), (2, 3));
    }

    #[test]
    fn json_conversion_keeps_types() {
        let root = parse("a: {b: [1, 2.5, true, ~, x]}\n").expect("parses");
        assert_eq!(
            root.to_json().expect("json"),
            serde_json::json!({"a": {"b": [1, 2.5, true, null, "x"]}})
        );
    }
}

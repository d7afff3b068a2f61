//! Tests of the line parsers through [`StreamParser`], the way sources use them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

fn parser(config: serde_json::Value) -> Arc<Parser> {
    Arc::new(parse_config(config).compile("test").unwrap_or_else(|e| panic!("{e}")))
}

/// A [`ParseConfig`] from the same JSON a source's configuration holds.
fn parse_config(config: serde_json::Value) -> ParseConfig {
    let get = |k: &str| config.get(k).cloned();
    ParseConfig {
        format: get("format").map_or(LineFormat::Lines, |v| serde_json::from_value(v).unwrap()),
        csv: get("csv").map(|v| serde_json::from_value(v).unwrap()),
        pattern: get("pattern").map(|v| serde_json::from_value(v).unwrap()),
        types: get("types").map_or_else(Default::default, |v| serde_json::from_value(v).unwrap()),
        multiline: get("multiline").map(|v| serde_json::from_value(v).unwrap()),
        max_line_bytes: get("max_line_bytes").map_or(DEFAULT_MAX_LINE_BYTES, |v| serde_json::from_value(v).unwrap()),
    }
}

fn refused(config: serde_json::Value) -> String {
    parse_config(config).compile("test").expect_err("refused").to_string()
}

/// Everything `input` parses into, as JSON values or `bad: <error>` strings.
fn run(parser: &Arc<Parser>, input: &str) -> Vec<String> {
    let mut stream = parser.stream(0);
    let mut out = Vec::new();
    stream.push(input.as_bytes(), Instant::now(), &mut out);
    stream.finish(Instant::now(), &mut out);
    out.into_iter()
        .map(|p| match p {
            Parsed::Record { value, .. } => String::from_utf8(value.to_vec()).unwrap(),
            Parsed::Bad { error, .. } => format!("bad: {error}"),
        })
        .collect()
}

#[test]
fn lines_are_values_as_they_are_and_empty_lines_are_skipped() {
    let p = parser(json!({}));
    assert_eq!(p.format_spec().format, brook_engine::format::Format::Lines);
    assert_eq!(run(&p, "\u{feff}a\r\n\nb c\n"), ["a", "b c"]);
    let mut stream = p.stream(0);
    let mut out = Vec::new();
    stream.push(b"ok\n\xff\xfe\n", Instant::now(), &mut out);
    assert_eq!(
        out[0],
        Parsed::Record {
            value: "ok".into(),
            start: 0,
            end: 3
        }
    );
    assert!(matches!(&out[1], Parsed::Bad { error, start: 3, end: 6, .. } if error.contains("not valid UTF-8")));
}

#[test]
fn json_lines_must_be_objects_and_are_kept_byte_for_byte() {
    let p = parser(json!({"format": "json"}));
    assert_eq!(p.format_spec().format, brook_engine::format::Format::Json);
    let got = run(&p, "{\"b\": 1, \"a\": 2}\n[1]\n{oops\n");
    assert_eq!(got[0], "{\"b\": 1, \"a\": 2}");
    assert_eq!(got[1], "bad: the line is JSON but not an object: it is an array");
    assert!(got[2].starts_with("bad: the line is not JSON: "), "{}", got[2]);
}

#[test]
fn csv_rows_become_objects_typed_by_sniffing_or_declared_types() {
    let p = parser(
        json!({"format": "csv", "csv": {"columns": ["id", "name", "score", "when"]},
        "types": {"name": "string", "when": "timestamp"}}),
    );
    let got = run(
        &p,
        "1,007,2.5,2024-01-02 03:04:05\n2,\"a, b\",,\n3,x,y,z,extra\n4\n5,x,1,never\n",
    );
    assert_eq!(
        got[0],
        r#"{"id":1,"name":"007","score":2.5,"when":"2024-01-02T03:04:05.000Z"}"#
    );
    assert_eq!(got[1], r#"{"id":2,"name":"a, b","score":null,"when":null}"#);
    assert_eq!(got[2], "bad: the row has 5 fields but there are 4 columns");
    assert_eq!(got[3], r#"{"id":4,"name":null,"score":null,"when":null}"#);
    assert_eq!(got[4], r#"bad: column "when": "never" is not a timestamp"#);
}

#[test]
fn a_csv_header_names_the_columns_of_its_stream_and_is_not_emitted() {
    let p = parser(json!({"format": "csv", "csv": {"header": true, "delimiter": ";"}}));
    assert_eq!(run(&p, "\u{feff}id; name\r\n1;true\n"), [r#"{"id":1,"name":true}"#]);
    // A stream opened past its header is given the header line apart.
    let mut stream = p.stream(13);
    assert!(stream.needs_header());
    stream.set_header_line(b"id;name\r");
    let mut out = Vec::new();
    stream.push(b"2;x\n", Instant::now(), &mut out);
    assert_eq!(
        out,
        [Parsed::Record {
            value: r#"{"id":2,"name":"x"}"#.into(),
            start: 13,
            end: 17
        }]
    );
    // Given columns win over the header, which is skipped.
    let p = parser(json!({"format": "csv", "csv": {"header": true, "columns": ["a", "b"]}}));
    assert_eq!(run(&p, "x,y\n1,2\n"), [r#"{"a":1,"b":2}"#]);
}

#[test]
fn regex_groups_become_fields_and_unmatched_lines_are_bad() {
    let p = parser(json!({"format": "regex",
        "pattern": r"^(?P<level>[A-Z]+) (?P<code>\d+)(?: (?P<rest>.*))?$", "types": {"code": "int"}}));
    let got = run(&p, "INFO 200 all good\nWARN 404\nnonsense\n");
    assert_eq!(got[0], r#"{"level":"INFO","code":200,"rest":"all good"}"#);
    assert_eq!(got[1], r#"{"level":"WARN","code":404,"rest":null}"#);
    assert_eq!(got[2], "bad: the line does not match the pattern");
}

#[test]
fn multiline_records_join_continuations_and_flush_on_quiet() {
    let p = parser(json!({"format": "lines", "multiline": {"start_pattern": r"^\d{4}-", "timeout_ms": 50}}));
    let t0 = Instant::now();
    let mut stream = p.stream(0);
    let mut out = Vec::new();
    stream.push(b"2024-01-01 boom\n  at x\n\n  at y\n2024-01-02 next\n", t0, &mut out);
    assert_eq!(
        out,
        [Parsed::Record {
            value: "2024-01-01 boom\n  at x\n\n  at y".into(),
            start: 0,
            end: 31
        }]
    );
    assert!(stream.is_holding());
    assert_eq!(stream.deadline(), Some(t0 + Duration::from_millis(50)));
    stream.flush_due(t0 + Duration::from_millis(49), &mut out);
    assert_eq!(out.len(), 1);
    stream.flush_due(t0 + Duration::from_millis(50), &mut out);
    assert_eq!(
        out[1],
        Parsed::Record {
            value: "2024-01-02 next".into(),
            start: 31,
            end: 47
        }
    );
    assert!(!stream.is_holding());
}

#[test]
fn an_over_long_line_is_bad_and_reading_goes_on_after_it() {
    let p = parser(json!({"format": "json", "max_line_bytes": 8}));
    let mut stream = p.stream(0);
    let mut out = Vec::new();
    stream.push(b"{\"a\":1}\n{\"long\": 12345}\n{\"b\":2}\n", Instant::now(), &mut out);
    assert_eq!(out.len(), 3);
    match &out[1] {
        Parsed::Bad {
            raw,
            error,
            start: 8,
            end: 24,
        } => {
            assert_eq!(&raw[..], b"{\"long\":");
            assert_eq!(
                error,
                "the line is 15 bytes long, more than max_line_bytes (8); its first 8 bytes are kept"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        out[2],
        Parsed::Record {
            value: "{\"b\":2}".into(),
            start: 24,
            end: 32
        }
    );
}

#[test]
fn an_unterminated_last_line_waits_for_finish() {
    let p = parser(json!({}));
    let mut stream = p.stream(5);
    let mut out = Vec::new();
    stream.push(b"tail", Instant::now(), &mut out);
    assert!(out.is_empty() && stream.is_holding());
    stream.finish(Instant::now(), &mut out);
    assert_eq!(
        out,
        [Parsed::Record {
            value: "tail".into(),
            start: 5,
            end: 9
        }]
    );
}

#[test]
fn bad_settings_are_refused_with_the_reason() {
    assert_eq!(
        refused(json!({"format": "regex"})),
        "test: format: regex needs a pattern"
    );
    assert!(refused(json!({"format": "regex", "pattern": "(x"})).contains("not a valid regular expression"));
    assert!(refused(json!({"format": "regex", "pattern": "x+"})).contains("no named group"));
    assert!(refused(json!({"format": "regex", "pattern": "(?P<a>x)", "types": {"b": "int"}})).contains("\"b\""));
    assert_eq!(
        refused(json!({"format": "csv"})),
        "test: format: csv needs csv.columns or csv.header: true"
    );
    assert!(refused(json!({"format": "csv", "csv": {"columns": ["a"], "delimiter": ",,"}})).contains("delimiter"));
    assert!(refused(json!({"format": "csv", "csv": {"columns": ["a", "a"]}})).contains("twice"));
    assert_eq!(
        refused(json!({"format": "json", "pattern": "x"})),
        "test: pattern is only for format: regex"
    );
    assert_eq!(
        refused(json!({"csv": {"header": true}})),
        "test: csv options are only for format: csv"
    );
    assert!(refused(json!({"types": {"a": "int"}})).contains("types are only"));
    assert!(refused(json!({"max_line_bytes": 0})).contains("max_line_bytes"));
    assert!(refused(json!({"multiline": {"start_pattern": "("}})).contains("start_pattern"));
    assert!(refused(json!({"multiline": {"start_pattern": "x", "max_lines": 0}})).contains("max_lines"));
}

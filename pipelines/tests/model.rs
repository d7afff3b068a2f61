//! The validated model that the runtime consumes: what the example files in `tests/valid/` become,
//! field by field, and how diagnostics of a broken file read.

use std::path::{Path, PathBuf};

use brook_pipelines::{load, load_str, ErrorPolicy, Location, Pipeline};
use serde_json::json;

fn valid(name: &str) -> Pipeline {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valid").join(name);
    load(&path).unwrap_or_else(|d| panic!("{name} should load:\n{d}"))
}

fn column_names(p: &Pipeline, step: &str) -> Vec<String> {
    let schema = p.schema_of(step).unwrap_or_else(|| panic!("{step} has a schema"));
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

#[test]
fn web_errors_becomes_sources_transforms_and_sinks_with_derived_topics() {
    let p = valid("web-errors.yaml");
    assert_eq!(p.name, "web-errors");
    assert_eq!(p.description, None);
    assert!(
        p.base_dir.is_absolute() && p.base_dir.ends_with("tests/valid"),
        "{}",
        p.base_dir.display()
    );

    let [access] = p.sources.as_slice() else {
        panic!("one source")
    };
    assert_eq!(access.name, "access");
    assert_eq!(access.connector, "file");
    assert_eq!(access.topic, "web-errors.access");
    assert_eq!(access.partitions, 1);
    assert!(access.schema.is_none());
    assert_eq!(
        access.on_error,
        ErrorPolicy::DeadLetter {
            topic: "web-errors.access.dlq".into()
        }
    );
    assert_eq!(
        access.config,
        json!({"path": "./logs/access*.log", "format": "json", "start": "beginning"})
    );
    assert_eq!(access.at, Location { line: 3, column: 3 });

    let [errors] = p.transforms.as_slice() else {
        panic!("one transform")
    };
    assert_eq!(
        (errors.input.as_str(), errors.input_topic.as_str()),
        ("access", "web-errors.access")
    );
    assert_eq!(
        errors.sql,
        "SELECT ts, host, path, status FROM access WHERE status >= 500"
    );
    assert_eq!(errors.topic, "web-errors.errors");
    assert_eq!(
        errors.on_error,
        ErrorPolicy::DeadLetter {
            topic: "web-errors.errors.dlq".into()
        }
    );

    let names: Vec<_> = p
        .sinks
        .iter()
        .map(|s| (s.name.as_str(), s.connector.as_str()))
        .collect();
    assert_eq!(names, [("db", "sqlite"), ("archive", "file")]);
    let db = &p.sinks[0];
    assert_eq!(
        (db.input.as_str(), db.input_topic.as_str()),
        ("errors", "web-errors.errors")
    );
    assert_eq!(db.config, json!({"path": "./out/errors.db", "table": "errors"}));
    assert_eq!(
        db.on_error,
        ErrorPolicy::DeadLetter {
            topic: "web-errors.db.dlq".into()
        }
    );

    assert_eq!(p.step_topic("errors"), Some("web-errors.errors"));
    assert_eq!(p.step_topic("db"), None);
    assert!(p.schema_of("access").is_none(), "no schema is declared or derivable");
    assert!(p.tests.is_empty());
}

#[test]
fn steps_compile_to_sql_and_derive_schemas_and_tests_are_read() {
    let p = valid("steps.yaml");
    assert_eq!(
        p.description.as_deref(),
        Some("Slow checkouts, renamed for the dashboard")
    );
    let orders = &p.sources[0];
    assert_eq!((orders.topic.as_str(), orders.partitions), ("shop.orders", 3));
    assert_eq!(orders.on_error, ErrorPolicy::Fail);
    assert_eq!(
        column_names(&p, "orders"),
        ["order_id", "customer", "total", "latency_ms", "placed"]
    );

    let slow = &p.transforms[0];
    assert_eq!(slow.name, "slow");
    assert_eq!(slow.input_topic, "shop.orders");
    assert_eq!(
        slow.sql,
        "SELECT \"order_id\", \"customer\", \"latency_ms\" AS \"wait_ms\" FROM (SELECT \"order_id\", \"customer\", \
         \"latency_ms\" FROM \"orders\" WHERE (latency_ms > 2000)) AS \"_step2\""
    );
    assert_eq!(
        slow.on_error,
        ErrorPolicy::DeadLetter {
            topic: "shop.slow.errors".into()
        }
    );
    assert_eq!(column_names(&p, "slow"), ["order_id", "customer", "wait_ms"]);
    assert_eq!(column_names(&p, "cents"), ["wait_s"]);
    assert_eq!(p.sinks[0].on_error, ErrorPolicy::Fail);

    let [case] = p.tests.as_slice() else { panic!("one test") };
    assert_eq!(case.name, "slow orders pass, renamed");
    let (source, records) = &case.input[0];
    assert_eq!(source, "orders");
    assert_eq!(records[0]["latency_ms"], json!(2500));
    assert_eq!(records[2], json!("not json"));
    let expected: Vec<_> = case
        .expect
        .iter()
        .map(|(step, rows)| (step.as_str(), rows.len()))
        .collect();
    assert_eq!(expected, [("slow", 1), ("out", 1)]);
    assert_eq!(case.expect_dead_letters, [("slow".to_string(), 0)]);
}

#[test]
fn transforms_come_in_topological_order_with_quoted_names_kept() {
    let p = valid("chain.yaml");
    let order: Vec<_> = p.transforms.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(order, ["typed", "totals"], "typed is read by totals, so it comes first");
    assert_eq!(p.transforms[0].input, "Raw-Events");
    assert_eq!(p.transforms[0].partitions, 2);
    assert_eq!(p.transforms[1].input_topic, "chain.typed");
    assert_eq!(column_names(&p, "totals"), ["kind", "doubled"]);
}

#[test]
fn diagnostics_name_the_file_and_show_the_line() {
    let text = "name: x\nsources:\n  a:\n    type: file\n    path: ./a.log\n    partitons: 2\nsinks: {}\n";
    let d = load_str(text, "p.yaml", Path::new("/tmp")).expect_err("invalid");
    let rendered = d.to_string();
    assert!(
        rendered.contains("p.yaml:6:5: error: unknown key \"partitons\" for a file source"),
        "{rendered}"
    );
    assert!(
        rendered.contains("6 |     partitons: 2\n  |     ^^^^^^^^^"),
        "{rendered}"
    );
    assert!(rendered.contains("= hint: did you mean \"partitions\"?"), "{rendered}");
    assert!(
        rendered.contains("p.yaml:7:1: error: a pipeline needs at least one sink"),
        "{rendered}"
    );
    assert!(rendered.ends_with("2 errors"), "{rendered}");
}

#[test]
fn an_unreadable_file_is_one_diagnostic_without_a_position() {
    let missing = PathBuf::from("/nonexistent/brook/pipeline.yaml");
    let d = load(&missing).expect_err("missing");
    assert_eq!(d.items.len(), 1);
    assert_eq!((d.items[0].line, d.items[0].column), (0, 0));
    assert!(
        d.to_string()
            .starts_with("/nonexistent/brook/pipeline.yaml: error: cannot read the file"),
        "{d}"
    );
}

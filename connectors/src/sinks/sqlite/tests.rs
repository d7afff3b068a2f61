//! Tests of the `sqlite` sink over real database files in temporary directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, Int64Builder, Int8Array, LargeStringArray, ListArray, MapBuilder, NullArray, StringArray,
    StringBuilder, StructArray, TimestampMicrosecondArray, TimestampMillisecondArray, UInt64Array, UInt8Array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, TimeUnit};
use proptest::prelude::*;
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde_json::{json, Map, Value};

use super::build;
use crate::compliance::{check_sink, SinkUnderTest};
use crate::dates::{format_date, format_timestamp};
use crate::error::Error;
use crate::registry::Context;
use crate::sink::Sink;
use crate::sinks::test_support::{batch, with_extra, write};

/// A context whose relative paths resolve in `dir`, with the sink name `name`.
fn ctx(dir: &Path, name: &str) -> Context {
    Context {
        name: name.to_string(),
        base_dir: dir.to_path_buf(),
    }
}

/// A sink named `name` writing table `t` of `dir/db/out.sqlite`, with `extra` settings.
fn sink(dir: &Path, name: &str, extra: Value) -> Box<dyn Sink> {
    let config = with_extra(json!({"path": "db/out.sqlite", "table": "t"}), extra);
    build(&ctx(dir, name), config).expect("a valid configuration")
}

/// The database file the sinks above write.
fn db_path(dir: &Path) -> PathBuf {
    dir.join("db/out.sqlite")
}

/// A SQLite value as JSON: integers and reals as numbers, text as strings, blobs as hex text.
fn to_json(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) => json!(f),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(b.iter().map(|b| format!("{b:02x}")).collect()),
    }
}

/// Every row of `sql` over the database at `path`, as JSON objects.
fn query(path: &Path, sql: &str) -> Vec<Map<String, Value>> {
    let conn = Connection::open(path).expect("opening the database");
    let mut stmt = conn.prepare(sql).expect("a valid query");
    let names: Vec<String> = stmt.column_names().map(|n| n.to_string()).collect();
    stmt.query_map([], |row| {
        Ok(names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), to_json(row.get_ref_unwrap(i))))
            .collect())
    })
    .expect("running the query")
    .collect::<rusqlite::Result<_>>()
    .expect("reading rows")
}

#[tokio::test]
async fn build_checks_the_configuration_without_touching_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let refused = [
        json!({"path": "a.db"}),
        json!({"path": "a.db", "table": "t", "colour": "red"}),
        json!({"path": "a.db", "table": "t", "batch_rows": 0}),
        json!({"path": "a.db", "table": "t", "key": ["id", "id"]}),
        json!({"path": "", "table": "t"}),
        json!({"path": "a.db", "table": "t", "busy_timeout_ms": 86_400_000}),
    ];
    for config in refused {
        let err = build(&ctx(dir.path(), "p.s"), config.clone()).err();
        assert!(matches!(err, Some(Error::Config { .. })), "{config} gave {err:?}");
    }
    build(
        &ctx(dir.path(), "p.s"),
        json!({"path": "sub/a.db", "table": "t", "key": ["id"]}),
    )
    .expect("valid");
    assert!(!dir.path().join("sub").exists(), "build must not create anything");
}

#[tokio::test]
async fn arrow_types_map_to_sqlite_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = sink(dir.path(), "p.types", json!({}));
    assert_eq!(sink.open("in").await.expect("open"), Some(vec![]));

    let object = StructArray::try_new(
        vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]
        .into(),
        vec![
            Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
            Arc::new(StringArray::from(vec![Some("x"), None])),
        ],
        Some(NullBuffer::from(vec![true, false])),
    )
    .expect("a struct array");
    let mut map = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
    map.keys().append_value("k");
    map.values().append_value(7);
    map.append(true).expect("a map entry");
    map.append(false).expect("a null map");
    let rows = batch(vec![
        ("i8", Arc::new(Int8Array::from(vec![Some(-8), None]))),
        ("i16", Arc::new(Int16Array::from(vec![Some(-16), None]))),
        ("i32", Arc::new(Int32Array::from(vec![Some(-32), None]))),
        ("i64", Arc::new(Int64Array::from(vec![Some(i64::MIN), None]))),
        ("u8", Arc::new(UInt8Array::from(vec![Some(255), None]))),
        ("u64", Arc::new(UInt64Array::from(vec![Some(i64::MAX as u64), None]))),
        ("f32", Arc::new(Float32Array::from(vec![Some(1.5), None]))),
        ("f64", Arc::new(Float64Array::from(vec![Some(-0.25), None]))),
        ("text", Arc::new(StringArray::from(vec![Some("héllo \"q\""), None]))),
        ("large", Arc::new(LargeStringArray::from(vec![Some("big"), None]))),
        ("flag", Arc::new(BooleanArray::from(vec![Some(true), Some(false)]))),
        (
            "ts",
            Arc::new(TimestampMillisecondArray::from(vec![Some(1_709_210_096_123), None])),
        ),
        (
            "ts_utc",
            Arc::new(TimestampMicrosecondArray::from(vec![Some(-1), None]).with_timezone("+00:00")),
        ),
        ("day", Arc::new(Date32Array::from(vec![Some(19_782), None]))),
        ("obj", Arc::new(object)),
        (
            "list",
            Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
                Some(vec![Some(1), None]),
                None,
            ])),
        ),
        ("map", Arc::new(map.finish())),
        ("bin", Arc::new(BinaryArray::from(vec![Some(&[0u8, 255][..]), None]))),
        ("nothing", Arc::new(NullArray::new(2))),
        ("Select \"x\"", Arc::new(Int64Array::from(vec![1, 2]))),
    ]);
    write(sink.as_mut(), &rows, 0, 0).await.expect("write");

    let declared: Vec<(String, String)> = query(&db_path(dir.path()), "SELECT name, type FROM pragma_table_info('t')")
        .into_iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or("").to_string(),
                r["type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected = [
        ("i8", "INTEGER"),
        ("i16", "INTEGER"),
        ("i32", "INTEGER"),
        ("i64", "INTEGER"),
        ("u8", "INTEGER"),
        ("u64", "INTEGER"),
        ("f32", "REAL"),
        ("f64", "REAL"),
        ("text", "TEXT"),
        ("large", "TEXT"),
        ("flag", "INTEGER"),
        ("ts", "TEXT"),
        ("ts_utc", "TEXT"),
        ("day", "TEXT"),
        ("obj", "TEXT"),
        ("list", "TEXT"),
        ("map", "TEXT"),
        ("bin", "BLOB"),
        ("nothing", "TEXT"),
        ("Select \"x\"", "INTEGER"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
    assert_eq!(declared, expected);

    let got = query(&db_path(dir.path()), "SELECT * FROM t ORDER BY \"Select \"\"x\"\"\"");
    assert_eq!(
        Value::Object(got[0].clone()),
        json!({
            "i8": -8, "i16": -16, "i32": -32, "i64": i64::MIN, "u8": 255, "u64": i64::MAX,
            "f32": 1.5, "f64": -0.25, "text": "héllo \"q\"", "large": "big", "flag": 1,
            "ts": "2024-02-29T12:34:56.123Z", "ts_utc": "1969-12-31T23:59:59.999999Z", "day": "2024-02-29",
            "obj": "{\"a\":1,\"b\":\"x\"}", "list": "[1,null]", "map": "{\"k\":7}", "bin": "00ff",
            "nothing": null, "Select \"x\"": 1
        })
    );
    let second = &got[1];
    assert_eq!(second["flag"], json!(0));
    let nulls: Vec<&String> = second.iter().filter(|(_, v)| v.is_null()).map(|(k, _)| k).collect();
    assert_eq!(
        nulls.len(),
        18,
        "every other value of the second row is NULL: {second:?}"
    );
}

#[tokio::test]
async fn unsupported_types_and_missing_tables_are_config_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = sink(dir.path(), "p.bad", json!({}));
    sink.open("in").await.expect("open");
    let decimal = Decimal128Array::from(vec![1_i128])
        .with_precision_and_scale(10, 2)
        .expect("a decimal");
    let rows = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1]))),
        ("price", Arc::new(decimal)),
    ]);
    match write(sink.as_mut(), &rows, 0, 0).await {
        Err(Error::Config { message, .. }) => {
            assert!(
                message.contains("\"price\"") && message.contains("Decimal128(10, 2)"),
                "{message}"
            );
        }
        other => panic!("expected a Config error, got {other:?}"),
    }

    let mut sink = super::build(
        &ctx(dir.path(), "p.bad"),
        json!({"path": "db/out.sqlite", "table": "absent", "create_table": false}),
    )
    .expect("valid");
    sink.open("in")
        .await
        .expect("_brook_offsets exists since the first sink opened");
    let rows = batch(vec![("id", Arc::new(Int64Array::from(vec![1])))]);
    match write(sink.as_mut(), &rows, 0, 0).await {
        Err(Error::Config { message, .. }) => assert!(message.contains("\"absent\""), "{message}"),
        other => panic!("expected a Config error, got {other:?}"),
    }

    // A key needs a unique index on an existing table to upsert against.
    Connection::open(db_path(dir.path()))
        .and_then(|c| c.execute("CREATE TABLE plain (id INTEGER, name TEXT)", []))
        .expect("creating the table");
    let mut sink = super::build(
        &ctx(dir.path(), "p.bad"),
        json!({"path": "db/out.sqlite", "table": "plain", "key": ["id"]}),
    )
    .expect("valid");
    sink.open("in").await.expect("open");
    match write(sink.as_mut(), &rows, 0, 0).await {
        Err(Error::Config { message, .. }) => assert!(message.contains("ON CONFLICT"), "{message}"),
        other => panic!("expected a Config error, got {other:?}"),
    }

    let other = tempfile::tempdir().expect("tempdir");
    let mut sink = super::build(
        &ctx(other.path(), "p.bad"),
        json!({"path": "x.sqlite", "table": "t", "create_table": false}),
    )
    .expect("valid");
    match sink.open("in").await {
        Err(Error::Config { message, .. }) => assert!(message.contains("_brook_offsets"), "{message}"),
        other => panic!("expected a Config error, got {other:?}"),
    }
}

#[tokio::test]
async fn existing_tables_are_used_as_they_are_and_new_columns_added() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("db")).expect("mkdir");
    Connection::open(db_path(dir.path()))
        .and_then(|c| c.execute("CREATE TABLE t (id INTEGER, note TEXT DEFAULT 'n/a', NAME TEXT)", []))
        .expect("creating the table");
    let mut sink = sink(dir.path(), "p.evolve", json!({}));
    sink.open("in").await.expect("open");
    let first = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2]))),
        ("name", Arc::new(StringArray::from(vec!["a", "b"]))),
    ]);
    write(sink.as_mut(), &first, 0, 0).await.expect("first write");
    let second = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![3]))),
        ("name", Arc::new(StringArray::from(vec!["c"]))),
        ("extra", Arc::new(StringArray::from(vec!["new"]))),
    ]);
    write(sink.as_mut(), &second, 0, 2).await.expect("second write");
    let got = query(&db_path(dir.path()), "SELECT * FROM t ORDER BY id");
    let got: Vec<Value> = got.into_iter().map(Value::Object).collect();
    assert_eq!(
        got,
        vec![
            json!({"id": 1, "note": "n/a", "NAME": "a", "extra": null}),
            json!({"id": 2, "note": "n/a", "NAME": "b", "extra": null}),
            json!({"id": 3, "note": "n/a", "NAME": "c", "extra": "new"}),
        ]
    );
}

#[tokio::test]
async fn a_key_makes_writes_upserts_within_and_across_statements() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = sink(dir.path(), "p.upsert", json!({"key": ["id"], "batch_rows": 2}));
    sink.open("in").await.expect("open");
    let first = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 1, 3, 4]))),
        ("name", Arc::new(StringArray::from(vec!["a", "b", "c", "d", "e"]))),
    ]);
    write(sink.as_mut(), &first, 0, 0).await.expect("first write");
    let second = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![2, 5]))),
        ("name", Arc::new(StringArray::from(vec![None, Some("f")]))),
        ("n", Arc::new(Int64Array::from(vec![20, 50]))),
    ]);
    write(sink.as_mut(), &second, 0, 5).await.expect("second write");
    let got: Vec<Value> = query(&db_path(dir.path()), "SELECT * FROM t ORDER BY id")
        .into_iter()
        .map(Value::Object)
        .collect();
    assert_eq!(
        got,
        vec![
            json!({"id": 1, "name": "c", "n": null}),
            json!({"id": 2, "name": null, "n": 20}),
            json!({"id": 3, "name": "d", "n": null}),
            json!({"id": 4, "name": "e", "n": null}),
            json!({"id": 5, "name": "f", "n": 50}),
        ]
    );
    let pk = query(
        &db_path(dir.path()),
        "SELECT name FROM pragma_table_info('t') WHERE pk = 1",
    );
    assert_eq!(pk, vec![json!({"name": "id"}).as_object().cloned().unwrap_or_default()]);
}

#[tokio::test]
async fn offsets_are_stored_with_the_rows_and_returned_after_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = sink(dir.path(), "p.offsets", json!({}));
    assert_eq!(first.open("in").await.expect("open"), Some(vec![]));
    let rows = batch(vec![("id", Arc::new(Int64Array::from(vec![1, 2, 3])))]);
    write(first.as_mut(), &rows, 0, 0).await.expect("write p0");
    write(first.as_mut(), &rows, 2, 100).await.expect("write p2");
    write(first.as_mut(), &rows, 0, 3).await.expect("write p0 again");
    let empty = batch(vec![("id", Arc::new(Int64Array::from(Vec::<i64>::new())))]);
    write(first.as_mut(), &empty, 1, 7)
        .await
        .expect("an empty batch still stores its offsets");
    drop(first);

    let mut again = sink(dir.path(), "p.offsets", json!({}));
    assert_eq!(
        again.open("in").await.expect("reopen"),
        Some(vec![(0, 6), (1, 7), (2, 103)])
    );
    assert_eq!(again.open("other").await.expect("another topic"), Some(vec![]));
    let mut stranger = sink(dir.path(), "p.stranger", json!({}));
    assert_eq!(stranger.open("in").await.expect("another sink"), Some(vec![]));
    let count = query(&db_path(dir.path()), "SELECT count(*) AS n FROM t");
    assert_eq!(count[0]["n"], json!(9));
}

#[tokio::test]
async fn a_refused_row_is_named_and_nothing_of_its_batch_is_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("db")).expect("mkdir");
    Connection::open(db_path(dir.path()))
        .and_then(|c| c.execute("CREATE TABLE t (id INTEGER, name TEXT NOT NULL)", []))
        .expect("creating the table");
    let mut sink = sink(dir.path(), "p.refuse", json!({"batch_rows": 3}));
    sink.open("in").await.expect("open");
    let good = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2]))),
        ("name", Arc::new(StringArray::from(vec!["a", "b"]))),
    ]);
    write(sink.as_mut(), &good, 0, 0).await.expect("a good batch");

    let names = vec![Some("c"), Some("d"), Some("e"), Some("f"), Some("g"), None, Some("i")];
    let bad = batch(vec![
        ("id", Arc::new(Int64Array::from((3..10).collect::<Vec<i64>>()))),
        ("name", Arc::new(StringArray::from(names))),
    ]);
    match write(sink.as_mut(), &bad, 0, 2).await {
        Err(Error::Rejected { index, reason }) => {
            assert_eq!(index, 5);
            assert!(reason.contains("NOT NULL"), "{reason}");
        }
        other => panic!("expected a rejected row, got {other:?}"),
    }
    let too_big = batch(vec![
        ("id", Arc::new(UInt64Array::from(vec![10, u64::MAX]))),
        ("name", Arc::new(StringArray::from(vec!["j", "k"]))),
    ]);
    match write(sink.as_mut(), &too_big, 0, 2).await {
        Err(Error::Rejected { index, reason }) => assert!(index == 1 && reason.contains("\"id\""), "{reason}"),
        other => panic!("expected a rejected row, got {other:?}"),
    }
    let count = query(&db_path(dir.path()), "SELECT count(*) AS n FROM t");
    assert_eq!(
        count[0]["n"],
        json!(2),
        "nothing of the refused batches is in the table"
    );
    drop(sink);
    let mut sink = super::build(
        &ctx(dir.path(), "p.refuse"),
        json!({"path": "db/out.sqlite", "table": "t"}),
    )
    .expect("valid");
    assert_eq!(sink.open("in").await.expect("reopen"), Some(vec![(0, 2)]));
}

#[tokio::test]
async fn the_sqlite_sink_passes_the_compliance_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().to_path_buf();
    let path = db_path(&base);
    check_sink(SinkUnderTest {
        make: Box::new(move || sink(&base, "p.compliance", json!({"batch_rows": 4}))),
        read: Box::new(move || {
            let path = path.clone();
            Box::pin(async move {
                tokio::task::spawn_blocking(move || query(&path, "SELECT * FROM t"))
                    .await
                    .expect("the query task")
            })
        }),
    })
    .await;
}

proptest! {
    /// Brook's own date arithmetic agrees with SQLite's over SQLite's whole range of years.
    #[test]
    fn dates_and_timestamps_agree_with_sqlite(seconds in -62_167_219_200_i64..253_402_300_800, millis in 0_i64..1000) {
        let conn = Connection::open_in_memory().expect("an in-memory database");
        let (date, time): (String, String) = conn
            .query_row(
                "SELECT date(?1, 'unixepoch'), strftime('%Y-%m-%dT%H:%M:%S', ?1, 'unixepoch')",
                [seconds],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("sqlite's date functions");
        prop_assert_eq!(format_date(seconds.div_euclid(86_400)), date);
        prop_assert_eq!(format_timestamp(seconds, TimeUnit::Second), format!("{time}Z"));
        prop_assert_eq!(
            format_timestamp(seconds * 1000 + millis, TimeUnit::Millisecond),
            format!("{time}.{millis:03}Z")
        );
    }
}

//! Tests of the `postgres` sink against the real server on 127.0.0.1:5432 (user postgres,
//! database test). When it is unreachable they print why and pass, except under CI=true.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int32Array, Int64Array, ListArray,
    NullArray, StringArray, StructArray, TimestampMicrosecondArray, TimestampMillisecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type};
use serde_json::{json, Map, Value};
use tokio_postgres::{Client, NoTls};

use super::build;
use crate::compliance::{check_sink, SinkUnderTest};
use crate::error::Error;
use crate::registry::Context;
use crate::sink::Sink;
use crate::sinks::test_support::{batch, with_extra, write};

/// The test server.
const URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5";

/// A connection for setting up and checking, or None (after saying why) when the server is
/// unreachable outside CI.
async fn admin() -> Option<Client> {
    match tokio_postgres::connect(URL, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
                .batch_execute("SET TIME ZONE 'UTC'")
                .await
                .expect("setting the time zone");
            Some(client)
        }
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PostgreSQL at 127.0.0.1:5432 is unreachable and CI=true: {e}")
        }
        Err(e) => {
            println!("skipping: PostgreSQL at 127.0.0.1:5432 is unreachable: {e}");
            None
        }
    }
}

/// A name no other test (or test process) uses: `prefix`, the process id and a counter.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A sink named `name` writing `table`, with `extra` settings.
fn sink(name: &str, table: &str, extra: Value) -> Box<dyn Sink> {
    let ctx = Context {
        name: name.to_string(),
        base_dir: std::env::temp_dir(),
    };
    build(&ctx, with_extra(json!({"url": URL, "table": table}), extra)).expect("a valid configuration")
}

/// Every row of `table` as a JSON object (PostgreSQL's own `row_to_json`).
async fn rows_of(client: &Client, table: &str) -> Vec<Map<String, Value>> {
    let sql = format!("SELECT row_to_json(t)::text FROM {table} t");
    client
        .query(&sql, &[])
        .await
        .expect("reading the table")
        .iter()
        .map(|row| match serde_json::from_str(&row.get::<_, String>(0)) {
            Ok(Value::Object(map)) => map,
            other => panic!("row_to_json gave {other:?}"),
        })
        .collect()
}

/// Rows of `table` ordered by `order`, as JSON values.
async fn sorted_rows(client: &Client, table: &str, order: &str) -> Vec<Value> {
    let sql = format!("SELECT row_to_json(t)::text FROM (SELECT * FROM {table} ORDER BY {order}) t");
    client
        .query(&sql, &[])
        .await
        .expect("reading the table")
        .iter()
        .map(|row| serde_json::from_str(&row.get::<_, String>(0)).expect("JSON"))
        .collect()
}

/// Drops `table` and forgets the offsets of `sinks`.
async fn clean(client: &Client, table: &str, sinks: &[&str]) {
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await
        .expect("dropping the table");
    for sink in sinks {
        client
            .execute("DELETE FROM _brook_offsets WHERE sink = $1", &[sink])
            .await
            .expect("forgetting offsets");
    }
}

#[test]
fn build_checks_the_configuration_without_connecting() {
    let ctx = Context {
        name: "p.s".to_string(),
        base_dir: std::env::temp_dir(),
    };
    let refused = [
        json!({"url": URL}),
        json!({"url": URL, "table": "t", "colour": "red"}),
        json!({"url": "host=127.0.0.1 port=notaport", "table": "t"}),
        json!({"url": URL, "table": "t", "batch_rows": 0}),
        json!({"url": URL, "table": "t", "connect_timeout_ms": 0}),
        json!({"url": URL, "table": "t", "schema": ""}),
        json!({"url": URL, "table": "t", "key": [""]}),
    ];
    for config in refused {
        let err = build(&ctx, config.clone()).err();
        assert!(matches!(err, Some(Error::Config { .. })), "{config} gave {err:?}");
    }
    // An unreachable server is only noticed by `open`.
    build(&ctx, json!({"url": "postgres://nobody@192.0.2.1:1/none", "table": "t"})).expect("valid");
}

#[tokio::test]
async fn arrow_types_map_to_postgres_columns() {
    let Some(admin) = admin().await else { return };
    let (table, name) = (unique("brook_types"), unique("p.types"));
    let mut sink = sink(&name, &table, json!({}));
    assert_eq!(sink.open("in").await.expect("open"), Some(vec![]));
    let object = StructArray::from(vec![(
        Arc::new(Field::new("a", DataType::Int64, true)),
        Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
    )]);
    let rows = batch(vec![
        ("id", Arc::new(Int32Array::from(vec![1, 2]))),
        ("u64", Arc::new(UInt64Array::from(vec![Some(i64::MAX as u64), None]))),
        ("f32", Arc::new(Float32Array::from(vec![Some(1.5), None]))),
        ("f64", Arc::new(Float64Array::from(vec![Some(-0.25), None]))),
        ("text", Arc::new(StringArray::from(vec![Some("héllo \"q\""), None]))),
        ("flag", Arc::new(BooleanArray::from(vec![Some(true), None]))),
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
        ("bin", Arc::new(BinaryArray::from(vec![Some(&[0u8, 255][..]), None]))),
        ("nothing", Arc::new(NullArray::new(2))),
        ("Mixed Case", Arc::new(Int64Array::from(vec![7, 8]))),
    ]);
    write(sink.as_mut(), &rows, 0, 0).await.expect("write");

    let declared: Vec<(String, String)> = admin
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .expect("reading the columns")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected = [
        ("id", "bigint"),
        ("u64", "bigint"),
        ("f32", "double precision"),
        ("f64", "double precision"),
        ("text", "text"),
        ("flag", "boolean"),
        ("ts", "timestamp with time zone"),
        ("ts_utc", "timestamp with time zone"),
        ("day", "date"),
        ("obj", "jsonb"),
        ("list", "jsonb"),
        ("bin", "bytea"),
        ("nothing", "text"),
        ("Mixed Case", "bigint"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
    assert_eq!(declared, expected);
    let got = sorted_rows(&admin, &table, "id").await;
    assert_eq!(
        got,
        vec![
            json!({
                "id": 1, "u64": i64::MAX, "f32": 1.5, "f64": -0.25, "text": "héllo \"q\"", "flag": true,
                "ts": "2024-02-29T12:34:56.123+00:00", "ts_utc": "1969-12-31T23:59:59.999999+00:00",
                "day": "2024-02-29", "obj": {"a": 1}, "list": [1, null], "bin": "\\x00ff", "nothing": null,
                "Mixed Case": 7
            }),
            json!({
                "id": 2, "u64": null, "f32": null, "f64": null, "text": null, "flag": null, "ts": null,
                "ts_utc": null, "day": null, "obj": {"a": null}, "list": null, "bin": null, "nothing": null,
                "Mixed Case": 8
            }),
        ]
    );
    clean(&admin, &table, &[&name]).await;
}

#[tokio::test]
async fn existing_tables_in_a_schema_are_used_as_they_are_and_new_columns_added() {
    let Some(admin) = admin().await else { return };
    let (schema, name) = (unique("brook_schema"), unique("p.evolve"));
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id INTEGER, note TEXT DEFAULT 'n/a', name VARCHAR(3), \
             at TIMESTAMPTZ, doc JSONB)"
        ))
        .await
        .expect("creating the table");
    let mut sink = sink(&name, "t", json!({"schema": schema}));
    sink.open("in").await.expect("open");
    // Text reaches the TIMESTAMPTZ and JSONB columns through casts from text.
    let first = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2]))),
        ("name", Arc::new(StringArray::from(vec!["a", "b"]))),
        (
            "at",
            Arc::new(StringArray::from(vec![Some("2024-01-02T03:04:05Z"), None])),
        ),
        ("doc", Arc::new(StringArray::from(vec![Some("{\"k\": [1]}"), None]))),
    ]);
    write(sink.as_mut(), &first, 0, 0).await.expect("first write");
    let second = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![3]))),
        ("name", Arc::new(StringArray::from(vec!["c"]))),
        ("extra", Arc::new(StringArray::from(vec!["new"]))),
    ]);
    write(sink.as_mut(), &second, 0, 2).await.expect("second write");
    let table = format!("{schema}.t");
    assert_eq!(
        sorted_rows(&admin, &table, "id").await,
        vec![
            json!({"id": 1, "note": "n/a", "name": "a", "at": "2024-01-02T03:04:05+00:00", "doc": {"k": [1]}, "extra": null}),
            json!({"id": 2, "note": "n/a", "name": "b", "at": null, "doc": null, "extra": null}),
            json!({"id": 3, "note": "n/a", "name": "c", "at": null, "doc": null, "extra": "new"}),
        ]
    );
    // VARCHAR(3) refuses a longer value instead of truncating it.
    let long = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![4, 5]))),
        ("name", Arc::new(StringArray::from(vec!["d", "toolong"]))),
    ]);
    match write(sink.as_mut(), &long, 0, 3).await {
        Err(Error::Rejected { index, .. }) => assert_eq!(index, 1),
        other => panic!("expected a rejected row, got {other:?}"),
    }
    assert_eq!(sink.open("in").await.expect("reopen"), Some(vec![(0, 3)]));
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .expect("dropping the schema");
}

#[tokio::test]
async fn a_key_makes_writes_upserts_within_and_across_statements() {
    let Some(admin) = admin().await else { return };
    let (table, name) = (unique("brook_upsert"), unique("p.upsert"));
    let mut sink = sink(&name, &table, json!({"key": ["id"], "batch_rows": 2}));
    sink.open("in").await.expect("open");
    let first = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 1, 3, 4]))),
        ("name", Arc::new(StringArray::from(vec!["a", "b", "c", "d", "e"]))),
    ]);
    write(sink.as_mut(), &first, 0, 0).await.expect("first write");
    let second = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![2, 5, 2]))),
        ("name", Arc::new(StringArray::from(vec![Some("x"), Some("f"), None]))),
        ("n", Arc::new(Int64Array::from(vec![20, 50, 21]))),
    ]);
    write(sink.as_mut(), &second, 0, 5).await.expect("second write");
    assert_eq!(
        sorted_rows(&admin, &table, "id").await,
        vec![
            json!({"id": 1, "name": "c", "n": null}),
            json!({"id": 2, "name": null, "n": 21}),
            json!({"id": 3, "name": "d", "n": null}),
            json!({"id": 4, "name": "e", "n": null}),
            json!({"id": 5, "name": "f", "n": 50}),
        ]
    );
    let pk: Vec<String> = admin
        .query(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
             AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass($1::text) AND i.indisprimary",
            &[&table],
        )
        .await
        .expect("reading the primary key")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pk, vec!["id".to_string()]);
    clean(&admin, &table, &[&name]).await;
}

#[tokio::test]
async fn offsets_are_stored_with_the_rows_and_returned_after_reopening() {
    let Some(admin) = admin().await else { return };
    let (table, name, stranger) = (unique("brook_offsets"), unique("p.offsets"), unique("p.stranger"));
    let mut first = sink(&name, &table, json!({}));
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

    let mut again = sink(&name, &table, json!({}));
    assert_eq!(
        again.open("in").await.expect("reopen"),
        Some(vec![(0, 6), (1, 7), (2, 103)])
    );
    assert_eq!(again.open("other").await.expect("another topic"), Some(vec![]));
    let mut other = sink(&stranger, &table, json!({}));
    assert_eq!(other.open("in").await.expect("another sink"), Some(vec![]));
    assert_eq!(rows_of(&admin, &table).await.len(), 9);
    clean(&admin, &table, &[&name, &stranger]).await;
}

#[tokio::test]
async fn a_refused_row_is_named_and_nothing_of_its_batch_is_committed() {
    let Some(admin) = admin().await else { return };
    let (table, name) = (unique("brook_refuse"), unique("p.refuse"));
    admin
        .batch_execute(&format!("CREATE TABLE {table} (id BIGINT, name TEXT NOT NULL)"))
        .await
        .expect("creating the table");
    let mut sink = sink(&name, &table, json!({"batch_rows": 3}));
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
            assert!(reason.contains("not-null"), "{reason}");
        }
        other => panic!("expected a rejected row, got {other:?}"),
    }
    // PostgreSQL text cannot hold a NUL character: a type refusal, named the same way.
    let nul = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![10, 11]))),
        ("name", Arc::new(StringArray::from(vec!["ok", "a\0b"]))),
    ]);
    match write(sink.as_mut(), &nul, 0, 2).await {
        Err(Error::Rejected { index, .. }) => assert_eq!(index, 1),
        other => panic!("expected a rejected row, got {other:?}"),
    }
    assert_eq!(
        rows_of(&admin, &table).await.len(),
        2,
        "nothing of the refused batches is in the table"
    );
    assert_eq!(sink.open("in").await.expect("reopen"), Some(vec![(0, 2)]));
    // The sink goes on after a refusal.
    write(sink.as_mut(), &good, 0, 2)
        .await
        .expect("a good batch after refusals");
    assert_eq!(rows_of(&admin, &table).await.len(), 4);
    clean(&admin, &table, &[&name]).await;
}

#[tokio::test]
async fn a_lost_connection_is_retriable_and_the_next_call_reconnects() {
    let Some(admin) = admin().await else { return };
    let (table, name) = (unique("brook_reconnect"), unique("p.reconnect"));
    let app = unique("brook_test_app");
    let url = format!("{URL} application_name={app}");
    let mut sink = sink(&name, &table, json!({"url": url}));
    sink.open("in").await.expect("open");
    let rows = batch(vec![("id", Arc::new(Int64Array::from(vec![1, 2])))]);
    write(sink.as_mut(), &rows, 0, 0).await.expect("first write");
    let killed = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("terminating the sink's connection");
    assert_eq!(killed, 1, "the sink's one connection was terminated");
    // The sink either notices the loss first and reconnects at once, or fails the call with a
    // retriable error and reconnects on the next one.
    if let Err(e) = write(sink.as_mut(), &rows, 0, 2).await {
        assert!(e.is_retriable(), "a lost connection must be retriable: {e}");
        write(sink.as_mut(), &rows, 0, 2)
            .await
            .expect("the write after reconnecting");
    }
    assert_eq!(sink.open("in").await.expect("reopen"), Some(vec![(0, 4)]));
    assert_eq!(rows_of(&admin, &table).await.len(), 4);
    clean(&admin, &table, &[&name]).await;
}

#[tokio::test]
async fn the_postgres_sink_passes_the_compliance_checks() {
    let Some(admin) = admin().await else { return };
    let admin = Arc::new(admin);
    let (table, name) = (unique("brook_compliance"), unique("p.compliance"));
    let (make_table, make_name) = (table.clone(), name.clone());
    let reader = admin.clone();
    let read_table = table.clone();
    check_sink(SinkUnderTest {
        make: Box::new(move || sink(&make_name, &make_table, json!({"batch_rows": 4}))),
        read: Box::new(move || {
            let (client, table) = (reader.clone(), read_table.clone());
            Box::pin(async move { rows_of(&client, &table).await })
        }),
    })
    .await;
    clean(&admin, &table, &[&name]).await;
}

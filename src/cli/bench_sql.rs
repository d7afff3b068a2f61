//! `brook bench sql`: records/s of SQL over JSON records in a topic (a filter with a projection,
//! and a GROUP BY scan), beside DataFusion reading the same records from a local NDJSON file,
//! which is the ceiling to approach.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use brook_broker::access::remote::RemoteAccess;
use brook_broker::access::TopicAccess;
use brook_broker::client::{Admin, ClientConfig, NewTopic, OffsetSpec, Producer, ProducerRecord};
use brook_engine::format::{Format, FormatSpec};
use brook_engine::sql::{Output, SqlEngine};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{JsonReadOptions, SessionContext};
use futures::StreamExt;
use serde_json::json;

use super::produce::producer_config;

/// Kafka's error code when a topic exists already.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Paths the generated records request.
const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/login",
    "/logout",
    "/api/v1/users",
    "/api/v1/orders",
    "/api/v1/items",
    "/static/app.js",
    "/static/app.css",
    "/images/logo.png",
];
/// Generated timestamps start here (2026-11-21T00:00:00Z), one record per millisecond.
const BASE_TS_MS: i64 = 1_795_132_800_000;

/// `bench sql`.
#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// The topic; it is created and filled with generated JSON records unless it holds enough.
    #[arg(long, default_value = "bench_sql")]
    pub topic: String,
    /// How many records the queries read.
    #[arg(long, default_value_t = 1_000_000)]
    pub num_records: u64,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// The NDJSON file (named *.json) holding the same records for the DataFusion ceiling
    /// (written if missing).
    #[arg(long)]
    pub ndjson_file: Option<PathBuf>,
    /// Also run the queries inside a server through its HTTP API, e.g. http://127.0.0.1:8080
    /// (the filter is wrapped in count(*) there, since responses are bounded in rows).
    #[arg(long)]
    pub server: Option<String>,
    /// Print one JSON object per measurement.
    #[arg(long)]
    pub json: bool,
}

/// The generated record number `i`; the same `i` always gives the same record.
fn record(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let status = match x % 100 {
        0..=79 => 200,
        80..=84 => 304,
        85..=89 => 404,
        90..=94 => 500,
        95..=97 => 502,
        _ => 503,
    };
    let value = json!({
        "ts": BASE_TS_MS + i as i64,
        "host": format!("web-{:02}", (x >> 8) % 32),
        "path": PATHS[((x >> 16) % PATHS.len() as u64) as usize],
        "status": status,
        "bytes": (x >> 24) % 100_000,
    });
    serde_json::to_vec(&value).expect("a JSON value encodes")
}

/// One measurement: what ran, over what, and how fast.
struct Measurement {
    name: &'static str,
    source: &'static str,
    records: u64,
    rows_out: u64,
    seconds: f64,
}

impl Measurement {
    fn print(&self, as_json: bool) {
        let rate = self.records as f64 / self.seconds.max(1e-9);
        if as_json {
            let value = json!({
                "query": self.name,
                "source": self.source,
                "records": self.records,
                "rows_out": self.rows_out,
                "seconds": self.seconds,
                "records_per_sec": rate,
            });
            println!("{value}");
        } else {
            println!(
                "{:<18} {:<30} {} records in {:.3} s, {:.0} records/s, {} rows out",
                self.name, self.source, self.records, self.seconds, rate, self.rows_out
            );
        }
    }
}

/// The two queries, over table `t`.
fn queries(t: &str) -> [(&'static str, String); 2] {
    [
        (
            "filter+projection",
            format!("SELECT host, path FROM {t} WHERE status >= 500"),
        ),
        ("group-by", format!("SELECT status, count(*) FROM {t} GROUP BY status")),
    ]
}

/// Runs the benchmark.
pub async fn run(bootstrap_server: &str, args: SqlArgs) -> anyhow::Result<()> {
    let n = args.num_records;
    let file = args
        .ndjson_file
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("brook-bench-sql-{}-{n}.json", args.topic)));
    fill_topic(bootstrap_server, &args).await?;
    write_ndjson(&file, n)?;

    // (a) and (b): Brook's SqlEngine in this process, reading the topic over the Kafka protocol.
    let client = ClientConfig::new(bootstrap_server.split(',').map(str::trim));
    let access: Arc<dyn TopicAccess> = Arc::new(RemoteAccess::connect(client).await.context("connecting")?);
    let engine = SqlEngine::new(access);
    let t = quote_ident(&args.topic);
    declare_stream(&engine, &args.topic);
    for (name, sql) in queries(&t) {
        let started = Instant::now();
        let rows_out = match engine.execute(&sql).await.with_context(|| format!("running {sql}"))? {
            Output::Batches(batches) => batches.iter().map(|b| b.num_rows() as u64).sum(),
            Output::Stream(stream) => drain(stream).await?,
            Output::Message(m) => bail!("{sql} answered a message, not rows: {m}"),
        };
        let m = Measurement {
            name,
            source: "topic (kafka protocol)",
            records: n,
            rows_out,
            seconds: started.elapsed().as_secs_f64(),
        };
        m.print(args.json);
    }

    // The same queries inside the server (embedded access), through the HTTP API.
    if let Some(server) = &args.server {
        super::sql_remote::execute(server, &create_stream_sql(&args.topic))
            .await
            .or_else(ignore_exists)?;
        for (name, sql) in queries(&t) {
            let sql = if name == "filter+projection" {
                format!("SELECT count(*) FROM ({sql}) AS q")
            } else {
                sql
            };
            let started = Instant::now();
            let answer = super::sql_remote::execute(server, &sql)
                .await
                .with_context(|| format!("running {sql} on {server}"))?;
            let m = Measurement {
                name,
                source: "topic (server, embedded)",
                records: n,
                rows_out: answer["rows"].as_array().map_or(0, |r| r.len() as u64),
                seconds: started.elapsed().as_secs_f64(),
            };
            m.print(args.json);
        }
    }

    // (c) The ceiling: DataFusion alone over the same records in a local NDJSON file.
    let ctx = SessionContext::new();
    ctx.register_json(
        "t",
        file.to_str().context("the NDJSON path is not UTF-8")?,
        JsonReadOptions::default(),
    )
    .await?;
    for (name, sql) in queries("t") {
        let started = Instant::now();
        let stream = ctx.sql(&sql).await?.execute_stream().await?;
        let rows_out = drain(stream).await?;
        let m = Measurement {
            name,
            source: "ndjson file (datafusion)",
            records: n,
            rows_out,
            seconds: started.elapsed().as_secs_f64(),
        };
        m.print(args.json);
    }
    Ok(())
}

/// Reads a stream to its end; returns the rows.
async fn drain(mut stream: SendableRecordBatchStream) -> anyhow::Result<u64> {
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        rows += batch?.num_rows() as u64;
    }
    Ok(rows)
}

/// A SQL identifier for a topic name, quoted when it is not a plain lowercase identifier.
fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn create_stream_sql(topic: &str) -> String {
    format!(
        "CREATE STREAM {} (ts BIGINT, host TEXT, path TEXT, status INT, bytes BIGINT) \
         WITH (topic = '{}', format = 'json')",
        quote_ident(topic),
        topic.replace('\'', "''")
    )
}

/// A stream that exists already is fine: the catalog is persistent and shared.
fn ignore_exists<T: Default>(e: anyhow::Error) -> anyhow::Result<T> {
    if format!("{e:#}").contains("exist") {
        Ok(T::default())
    } else {
        Err(e)
    }
}

/// Declares the topic's schema in this engine only, so that no inference sample is read
/// inside the measurement and no shared catalog changes.
fn declare_stream(engine: &SqlEngine, topic: &str) {
    let schema = Schema::new(vec![
        Field::new("ts", DataType::Int64, true),
        Field::new("host", DataType::Utf8, true),
        Field::new("path", DataType::Utf8, true),
        Field::new("status", DataType::Int32, true),
        Field::new("bytes", DataType::Int64, true),
    ]);
    engine.declare(
        topic,
        topic,
        FormatSpec::new(Format::Json).with_schema(Arc::new(schema)),
    );
}

/// Creates the topic and produces records until it holds `num_records` (records `i` for every
/// `i` not there yet, so a rerun reads the same data).
async fn fill_topic(bootstrap_server: &str, args: &SqlArgs) -> anyhow::Result<()> {
    let config = producer_config(bootstrap_server, "1", "none", 5, 256 * 1024)?;
    let admin = Admin::connect(config.client.clone()).await.context("connecting")?;
    let topic = NewTopic {
        name: args.topic.clone(),
        partitions: args.partitions,
        replication_factor: -1,
        configs: vec![],
    };
    match admin.create_topic(topic, false).await {
        Ok(())
        | Err(brook_broker::Error::Remote {
            code: TOPIC_ALREADY_EXISTS,
            ..
        }) => {}
        Err(e) => return Err(e).with_context(|| format!("creating topic {}", args.topic)),
    }
    let metadata = admin.metadata(Some(std::slice::from_ref(&args.topic))).await?;
    let partitions: Vec<i32> = metadata
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.partition))
        .collect();
    let end: i64 = admin
        .list_offsets(&args.topic, &partitions, OffsetSpec::Latest)
        .await?
        .iter()
        .map(|p| p.offset)
        .sum();
    let start: i64 = admin
        .list_offsets(&args.topic, &partitions, OffsetSpec::Earliest)
        .await?
        .iter()
        .map(|p| p.offset)
        .sum();
    let have = (end - start).max(0) as u64;
    if have > args.num_records {
        bail!(
            "topic {} holds {have} records, more than --num-records {}: use another topic",
            args.topic,
            args.num_records
        );
    }
    if have == args.num_records {
        return Ok(());
    }
    eprintln!("producing {} records to {}", args.num_records - have, args.topic);
    let producer = Producer::new(config).await?;
    let mut pending = Vec::new();
    for i in have..args.num_records {
        pending.push(
            producer
                .send(ProducerRecord::new(args.topic.clone(), record(i)))
                .await?,
        );
        if pending.len() >= 50_000 {
            for delivery in pending.drain(..) {
                delivery.await?;
            }
        }
    }
    for delivery in pending {
        delivery.await?;
    }
    producer.close().await?;
    Ok(())
}

/// Writes records 0..n to `path` as NDJSON unless a file with n lines is there.
fn write_ndjson(path: &Path, n: u64) -> anyhow::Result<()> {
    if let Ok(text) = std::fs::read(path) {
        if text.iter().filter(|b| **b == b'\n').count() as u64 == n {
            return Ok(());
        }
    }
    let mut out = BufWriter::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?);
    for i in 0..n {
        out.write_all(&record(i))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_deterministic_json() {
        assert_eq!(record(7), record(7));
        let v: serde_json::Value = serde_json::from_slice(&record(0)).unwrap();
        assert_eq!(v["ts"], json!(BASE_TS_MS));
        assert!(v["status"].as_u64().is_some());
        let errors = (0..10_000).filter(|i| {
            let v: serde_json::Value = serde_json::from_slice(&record(*i)).unwrap();
            v["status"].as_u64().unwrap() >= 500
        });
        assert!(errors.count() > 0);
    }
}

//! `brook consume`: prints records of a topic as text or JSON lines, like kafka-console-consumer.sh.
//!
//! JSON output writes keys, values and headers as UTF-8 strings, replacing invalid sequences
//! with U+FFFD (lossy): it is for reading, not for byte-exact copies.
//!
//! With `--group G` it consumes as a member of consumer group G (cooperative-sticky by default,
//! `--group-protocol consumer` for KIP-848): the group decides which partitions it reads, reading
//! resumes at the group's committed offsets (else at the start with `--from-beginning`, else at the
//! end), offsets are committed automatically every 5 s and on exit, and on exit (the stop conditions
//! or Ctrl-C) it leaves the group so that the others take its partitions at once.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use brook_broker::client::{
    Assignment, AutoOffsetReset, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, GroupConfig, GroupProtocol,
    StartOffset,
};
use bytes::Bytes;
use serde_json::json;

/// How long one poll waits at most, so `--timeout-ms` is checked often enough.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Read records from a topic.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// The topic to read.
    #[arg(long)]
    pub topic: String,
    /// Start at the earliest offset (default: only new records).
    #[arg(long)]
    pub from_beginning: bool,
    /// Start offset: a number, `earliest` or `latest`.
    #[arg(long)]
    pub offset: Option<String>,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Exit after this many records.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Exit after no record arrived for this long.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Exit once the end offsets seen at start are reached.
    #[arg(long)]
    pub exit_at_end: bool,
    /// Output: `text` (value per line) or `json` (one object per line).
    #[arg(long, default_value = "text")]
    pub format: String,
    /// In text output, print the key before the value.
    #[arg(long)]
    pub print_key: bool,
    /// The separator between key and value in text output.
    #[arg(long, default_value = "\t")]
    pub key_separator: String,
    /// Consume as a member of this consumer group, committing offsets automatically.
    #[arg(long, conflicts_with_all = ["partition", "offset", "exit_at_end"])]
    pub group: Option<String>,
    /// With `--group`: `classic` (JoinGroup/SyncGroup) or `consumer` (KIP-848).
    #[arg(long, default_value = "classic", requires = "group")]
    pub group_protocol: String,
    /// With `--group --group-protocol classic`: `cooperative-sticky` or `range`; with
    /// `--group-protocol consumer`: the server-side assignor (`uniform`, `range`).
    #[arg(long, requires = "group")]
    pub assignor: Option<String>,
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// Consumes until a stop condition, printing records to stdout and a total to stderr.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let format = match args.format.as_str() {
        "text" => Format::Text,
        "json" => Format::Json,
        other => bail!("--format must be text or json, not {other:?}"),
    };
    let start = match (args.offset.as_deref(), args.from_beginning) {
        (Some("earliest"), _) | (None, true) => StartOffset::Earliest,
        (Some("latest"), _) | (None, false) => StartOffset::Latest,
        (Some(n), _) => StartOffset::Offset(
            n.parse()
                .with_context(|| format!("--offset {n:?} is not a number, earliest or latest"))?,
        ),
    };
    let mut config = ConsumerConfig::new(ClientConfig::new(args.bootstrap_server.split(',').map(str::trim)));
    config.auto_offset_reset = if args.from_beginning {
        AutoOffsetReset::Earliest
    } else {
        AutoOffsetReset::Latest
    };
    let mut consumer = Consumer::new(config).await.context("connecting to the cluster")?;
    if let Some(group_id) = &args.group {
        let mut group = GroupConfig::new(group_id.clone());
        group.protocol = match args.group_protocol.as_str() {
            "classic" => GroupProtocol::Classic {
                assignor: args
                    .assignor
                    .clone()
                    .unwrap_or_else(|| "cooperative-sticky".to_string()),
            },
            "consumer" => GroupProtocol::Consumer {
                server_assignor: args.assignor.clone(),
            },
            other => bail!("--group-protocol must be classic or consumer, not {other:?}"),
        };
        consumer
            .subscribe(vec![args.topic.clone()], group)
            .await
            .with_context(|| format!("joining group {group_id}"))?;
        return consume_loop(consumer, &args, format, None).await;
    }
    let partitions = match args.partition {
        Some(p) => vec![p],
        None => consumer
            .partitions_for(&args.topic)
            .await
            .with_context(|| format!("describing topic {}", args.topic))?,
    };
    let assignments = partitions
        .iter()
        .map(|p| Assignment {
            topic: args.topic.clone(),
            partition: *p,
            start,
        })
        .collect();
    consumer.assign(assignments).await?;
    let ends = if args.exit_at_end {
        Some(consumer.end_offsets().await?)
    } else {
        None
    };
    consume_loop(consumer, &args, format, ends).await
}

/// Polls and prints until a stop condition or Ctrl-C, then closes the consumer (leaving its group).
async fn consume_loop(
    mut consumer: Consumer,
    args: &Args,
    format: Format,
    ends: Option<Vec<(String, i32, i64)>>,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut count = 0u64;
    let mut last_record = Instant::now();
    let result: anyhow::Result<()> = async {
        loop {
            if args.max_messages.is_some_and(|max| count >= max) {
                return Ok(());
            }
            if let Some(ends) = &ends {
                let done = ends
                    .iter()
                    .all(|(t, p, end)| consumer.position(t, *p).is_some_and(|pos| pos >= *end));
                if done {
                    return Ok(());
                }
            }
            let mut wait = POLL_INTERVAL;
            if let Some(timeout_ms) = args.timeout_ms {
                let left = Duration::from_millis(timeout_ms).saturating_sub(last_record.elapsed());
                if left.is_zero() {
                    return Ok(());
                }
                wait = wait.min(left);
            }
            let records = tokio::select! {
                records = consumer.poll(wait) => records?,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            if !records.is_empty() {
                last_record = Instant::now();
            }
            for record in records {
                if args.max_messages.is_some_and(|max| count >= max) {
                    break;
                }
                write_record(&mut out, &record, format, args.print_key, &args.key_separator)?;
                count += 1;
            }
            out.flush()?;
        }
    }
    .await;
    let _ = out.flush();
    eprintln!("Processed a total of {count} messages");
    let closed = consumer.close().await.context("leaving the consumer group");
    match result {
        // A closed stdout (e.g. `| head`) is a normal way to stop reading.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other.and(closed),
    }
}

fn lossy(bytes: &Option<Bytes>) -> serde_json::Value {
    match bytes {
        Some(b) => serde_json::Value::String(String::from_utf8_lossy(b).into_owned()),
        None => serde_json::Value::Null,
    }
}

fn write_record(
    out: &mut impl Write,
    record: &ConsumerRecord,
    format: Format,
    print_key: bool,
    separator: &str,
) -> std::io::Result<()> {
    match format {
        Format::Text => {
            if print_key {
                out.write_all(record.key.as_deref().unwrap_or(b"null"))?;
                out.write_all(separator.as_bytes())?;
            }
            out.write_all(record.value.as_deref().unwrap_or(b"null"))?;
            out.write_all(b"\n")
        }
        Format::Json => {
            let headers: Vec<serde_json::Value> = record
                .headers
                .iter()
                .map(|(k, v)| json!([String::from_utf8_lossy(k), lossy(v)]))
                .collect();
            let value = json!({
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "timestamp": record.timestamp_ms,
                "timestamp_type": record.timestamp_type.name(),
                "key": lossy(&record.key),
                "value": lossy(&record.value),
                "headers": headers,
            });
            writeln!(out, "{value}")
        }
    }
}

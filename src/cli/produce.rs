//! `brook produce`: writes one record per line of stdin or a file, like kafka-console-producer.sh.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use brook_broker::client::{ClientConfig, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use brook_broker::log::batch::Compression;
use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

/// Delivery outcomes awaited concurrently with reading; bounds memory on huge inputs.
const MAX_PENDING_DELIVERIES: usize = 100_000;
/// The longest line accepted, a bound on memory per record.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Write records from stdin or a file to a topic, one per line.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// The topic to write to.
    #[arg(long)]
    pub topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Split each line into key and value at the first SEP (a tab when given without a value).
    #[arg(long, value_name = "SEP", num_args = 0..=1, default_missing_value = "\t")]
    pub key_separator: Option<String>,
    /// A header added to every record, `KEY=VALUE`; repeatable.
    #[arg(long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// Write every record to this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Batch compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// How long a batch waits for more records.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Batch size in bytes.
    #[arg(long = "batch-size", default_value_t = 16384)]
    pub batch_bytes: usize,
}

/// Parses `0`, `1`, `-1` or `all`.
pub fn parse_acks(acks: &str) -> anyhow::Result<i16> {
    match acks {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        other => bail!("--acks must be 0, 1 or all, not {other:?}"),
    }
}

/// Parses a codec name.
pub fn parse_compression(name: &str) -> anyhow::Result<Compression> {
    Compression::from_name(name)
        .with_context(|| format!("unknown compression {name:?}: use none, gzip, snappy, lz4 or zstd"))
}

/// A producer config from the flags shared by `produce` and `bench produce`.
pub fn producer_config(
    bootstrap_server: &str,
    acks: &str,
    compression: &str,
    linger_ms: u64,
    batch_bytes: usize,
) -> anyhow::Result<ProducerConfig> {
    let mut config = ProducerConfig::new(ClientConfig::new(bootstrap_server.split(',').map(str::trim)));
    config.acks = parse_acks(acks)?;
    config.idempotent = config.acks == -1;
    config.compression = parse_compression(compression)?;
    config.linger_ms = linger_ms;
    config.batch_bytes = batch_bytes;
    Ok(config)
}

/// What the delivery task counted.
#[derive(Debug, Default)]
struct Outcome {
    delivered: u64,
    failed: u64,
    first_error: Option<String>,
}

/// Reads lines, sends them, and reports a summary; fails if any record failed.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = producer_config(
        &args.bootstrap_server,
        &args.acks,
        &args.compression,
        args.linger_ms,
        args.batch_bytes,
    )?;
    let headers: Vec<(Bytes, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--header {kv:?} is not KEY=VALUE"))?;
            Ok((
                Bytes::copy_from_slice(k.as_bytes()),
                Some(Bytes::copy_from_slice(v.as_bytes())),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let producer = Producer::new(config).await.context("connecting to the cluster")?;

    let (reader, progress): (Box<dyn AsyncBufRead + Unpin + Send>, Option<indicatif::ProgressBar>) = match &args.file {
        Some(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?;
            let total = file.metadata().await.map(|m| m.len()).unwrap_or(0);
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar
            });
            (Box::new(BufReader::new(file)), bar)
        }
        None => (Box::new(BufReader::new(tokio::io::stdin())), None),
    };

    let (tx, mut rx) = mpsc::channel::<DeliveryFuture>(MAX_PENDING_DELIVERIES);
    let deliveries = tokio::spawn(async move {
        let mut outcome = Outcome::default();
        while let Some(delivery) = rx.recv().await {
            match delivery.await {
                Ok(_) => outcome.delivered += 1,
                Err(e) => {
                    outcome.failed += 1;
                    outcome.first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        outcome
    });

    let started = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut reader = reader;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if read == 0 {
            break;
        }
        if line.len() > MAX_LINE_BYTES {
            bail!("line {} is longer than {MAX_LINE_BYTES} bytes", records + 1);
        }
        if let Some(bar) = &progress {
            bar.inc(read as u64);
        }
        let mut content = &line[..];
        content = content.strip_suffix(b"\n").unwrap_or(content);
        content = content.strip_suffix(b"\r").unwrap_or(content);
        let (key, value) = match &args.key_separator {
            Some(sep) => {
                let at = find(content, sep.as_bytes())
                    .with_context(|| format!("line {} has no key separator {sep:?}", records + 1))?;
                (Some(Bytes::copy_from_slice(&content[..at])), &content[at + sep.len()..])
            }
            None => (None, content),
        };
        bytes += (value.len() + key.as_ref().map_or(0, Bytes::len)) as u64;
        let record = ProducerRecord {
            topic: args.topic.clone(),
            partition: args.partition,
            key,
            value: Some(Bytes::copy_from_slice(value)),
            headers: headers.clone(),
            timestamp_ms: None,
        };
        let delivery = producer
            .send(record)
            .await
            .with_context(|| format!("sending line {}", records + 1))?;
        records += 1;
        if tx.send(delivery).await.is_err() {
            bail!("the delivery task stopped early");
        }
    }
    drop(tx);
    producer.close().await?;
    let outcome = deliveries.await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {} of {records} records ({bytes} bytes) to {} in {seconds:.2} s",
        outcome.delivered, args.topic
    );
    if outcome.failed > 0 {
        bail!(
            "{} records failed; the first error: {}",
            outcome.failed,
            outcome.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

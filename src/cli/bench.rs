//! `brook bench`: producer and consumer throughput tests shaped like Kafka's
//! kafka-producer-perf-test.sh and kafka-consumer-perf-test.sh.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use brook_broker::client::{
    Admin, Assignment, ClientConfig, Consumer, ConsumerConfig, DeliveryFuture, NewTopic, Producer, ProducerRecord,
    StartOffset,
};
use brook_broker::Error;
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::produce::producer_config;

/// Kafka's error code when a topic exists already.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Sent records whose delivery is awaited concurrently; the producer's buffer bounds it too.
const MAX_PENDING_DELIVERIES: usize = 100_000;
/// How often the producer test prints a progress line, as Kafka's does.
const REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// The largest latency the histogram holds, in microseconds (one hour).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Measure produce and consume throughput and latency.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap_server: String,
    /// The benchmark.
    #[command(subcommand)]
    pub command: Command,
}

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Send records as fast as allowed and report throughput and send-to-ack latency.
    Produce(ProduceArgs),
    /// Read records from the beginning and report throughput.
    Consume(ConsumeArgs),
    /// Records/s of SQL over JSON records in a topic, beside DataFusion over a local file.
    Sql(super::bench_sql::SqlArgs),
    /// Lines/s from a growing log file into a topic and on to SQLite, PostgreSQL or a file.
    Ingest(super::bench_ingest::IngestArgs),
}

/// `bench produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// How many records to send.
    #[arg(long)]
    pub num_records: u64,
    /// The value size of each record in bytes.
    #[arg(long = "record-size")]
    pub record_bytes: usize,
    /// The most records per second, -1 for unlimited.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub throughput: i64,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Batch compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long)]
    pub partitions: Option<i32>,
    /// How long a batch waits for more records.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Batch size in bytes.
    #[arg(long = "batch-size", default_value_t = 16384)]
    pub batch_bytes: usize,
    /// Send inside transactions with this `transactional.id` (needs acks=all), to compare
    /// transactional with idempotent throughput.
    #[arg(long)]
    pub transactional_id: Option<String>,
    /// Records per transaction with `--transactional-id`: commit, then begin the next.
    #[arg(long, default_value_t = 1000, requires = "transactional_id")]
    pub transaction_records: u64,
    /// Print the final result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `bench consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// How many records to read.
    #[arg(long)]
    pub messages: u64,
    /// Give up after no record arrived for this long.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs a benchmark.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Produce(a) => produce(&args.bootstrap_server, a).await,
        Command::Consume(a) => consume(&args.bootstrap_server, a).await,
        Command::Sql(a) => super::bench_sql::run(&args.bootstrap_server, a).await,
        Command::Ingest(a) => super::bench_ingest::run(a).await,
    }
}

/// Latency and throughput over a window (or the whole run).
struct Stats {
    started: Instant,
    records: u64,
    bytes: u64,
    failed: u64,
    first_error: Option<String>,
    latencies_us: Histogram<u64>,
}

impl Stats {
    fn new() -> anyhow::Result<Self> {
        Ok(Stats {
            started: Instant::now(),
            records: 0,
            bytes: 0,
            failed: 0,
            first_error: None,
            latencies_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?,
        })
    }

    fn record(&mut self, latency: Duration, bytes: usize) {
        self.records += 1;
        self.bytes += bytes as u64;
        let _ = self
            .latencies_us
            .record((latency.as_micros() as u64).clamp(1, MAX_LATENCY_US));
    }

    fn rates(&self) -> (f64, f64) {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        (
            self.records as f64 / seconds,
            self.bytes as f64 / seconds / (1024.0 * 1024.0),
        )
    }

    fn ms(us: u64) -> f64 {
        us as f64 / 1000.0
    }

    /// Kafka's periodic line.
    fn window_line(&self) -> String {
        let (rps, mbps) = self.rates();
        format!(
            "{} records sent, {rps:.1} records/sec ({mbps:.2} MB/sec), {:.1} ms avg latency, {:.1} ms max latency.",
            self.records,
            self.latencies_us.mean() / 1000.0,
            Self::ms(self.latencies_us.max())
        )
    }

    /// Kafka's final line, with percentiles.
    fn final_line(&self) -> String {
        let (rps, mbps) = self.rates();
        let h = &self.latencies_us;
        format!(
            "{} records sent, {rps:.1} records/sec ({mbps:.2} MB/sec), {:.2} ms avg latency, {:.2} ms max latency, {:.2} ms 50th, {:.2} ms 95th, {:.2} ms 99th, {:.2} ms 99.9th.",
            self.records,
            h.mean() / 1000.0,
            Self::ms(h.max()),
            Self::ms(h.value_at_quantile(0.50)),
            Self::ms(h.value_at_quantile(0.95)),
            Self::ms(h.value_at_quantile(0.99)),
            Self::ms(h.value_at_quantile(0.999))
        )
    }

    fn final_json(&self) -> serde_json::Value {
        let (rps, mbps) = self.rates();
        let h = &self.latencies_us;
        json!({
            "records": self.records,
            "failed": self.failed,
            "bytes": self.bytes,
            "seconds": self.started.elapsed().as_secs_f64(),
            "records_per_sec": rps,
            "mb_per_sec": mbps,
            "latency_avg_ms": h.mean() / 1000.0,
            "latency_max_ms": Self::ms(h.max()),
            "latency_p50_ms": Self::ms(h.value_at_quantile(0.50)),
            "latency_p95_ms": Self::ms(h.value_at_quantile(0.95)),
            "latency_p99_ms": Self::ms(h.value_at_quantile(0.99)),
            "latency_p999_ms": Self::ms(h.value_at_quantile(0.999)),
        })
    }
}

async fn produce(bootstrap_server: &str, args: ProduceArgs) -> anyhow::Result<()> {
    let mut config = producer_config(
        bootstrap_server,
        &args.acks,
        &args.compression,
        args.linger_ms,
        args.batch_bytes,
    )?;
    config.transactional_id = args.transactional_id.clone();
    if args.transaction_records == 0 {
        bail!("--transaction-records must be at least 1");
    }
    if let Some(partitions) = args.partitions {
        let admin = Admin::connect(config.client.clone())
            .await
            .context("connecting to the cluster")?;
        let topic = NewTopic {
            name: args.topic.clone(),
            partitions,
            replication_factor: -1,
            configs: vec![],
        };
        match admin.create_topic(topic, false).await {
            Ok(())
            | Err(Error::Remote {
                code: TOPIC_ALREADY_EXISTS,
                ..
            }) => {}
            Err(e) => return Err(e).with_context(|| format!("creating topic {}", args.topic)),
        }
    }
    let producer = Producer::new(config).await.context("connecting to the cluster")?;
    let transactional = args.transactional_id.is_some();
    if transactional {
        producer
            .init_transactions()
            .await
            .context("initialising transactions")?;
    }
    let mut transactions = 0u64;
    // Kafka's test sends random uppercase letters; one payload is reused for every record.
    let mut rng = rand::thread_rng();
    let payload: Bytes = (0..args.record_bytes)
        .map(|_| rng.gen_range(b'A'..=b'Z'))
        .collect::<Vec<u8>>()
        .into();
    let record_bytes = args.record_bytes;
    let quiet = args.json;

    let (tx, mut rx) = mpsc::channel::<(Instant, DeliveryFuture)>(MAX_PENDING_DELIVERIES);
    let collector = tokio::spawn(async move {
        let mut total = Stats::new()?;
        let mut window = Stats::new()?;
        let mut waiting = JoinSet::new();
        let mut open = true;
        while open || !waiting.is_empty() {
            tokio::select! {
                item = rx.recv(), if open => match item {
                    Some((sent, delivery)) => {
                        waiting.spawn(async move { (delivery.await, sent.elapsed()) });
                    }
                    None => open = false,
                },
                Some(done) = waiting.join_next() => {
                    let (outcome, latency) = done?;
                    match outcome {
                        Ok(_) => {
                            total.record(latency, record_bytes);
                            window.record(latency, record_bytes);
                        }
                        Err(e) => {
                            total.failed += 1;
                            total.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                    if window.started.elapsed() >= REPORT_INTERVAL {
                        if !quiet {
                            println!("{}", window.window_line());
                        }
                        window = Stats::new()?;
                    }
                }
            }
        }
        anyhow::Ok(total)
    });

    let started = Instant::now();
    for i in 0..args.num_records {
        if args.throughput > 0 {
            // Throttle as Kafka's ThroughputThrottler: never ahead of i / throughput seconds.
            let due = started + Duration::from_secs_f64(i as f64 / args.throughput as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        if transactional && i % args.transaction_records == 0 {
            if i > 0 {
                producer
                    .commit_transaction()
                    .await
                    .context("committing a transaction")?;
                transactions += 1;
            }
            producer.begin_transaction().context("beginning a transaction")?;
        }
        let record = ProducerRecord::new(args.topic.clone(), payload.clone());
        let sent = Instant::now();
        let delivery = producer.send(record).await.context("sending a record")?;
        if tx.send((sent, delivery)).await.is_err() {
            bail!("the delivery task stopped early");
        }
    }
    if transactional && args.num_records > 0 {
        producer
            .commit_transaction()
            .await
            .context("committing a transaction")?;
        transactions += 1;
    }
    drop(tx);
    producer.close().await?;
    let total = collector.await??;
    if args.json {
        let mut value = total.final_json();
        if transactional {
            value["transactions"] = json!(transactions);
        }
        println!("{value}");
    } else {
        println!("{}", total.final_line());
        if transactional {
            println!("{transactions} transactions committed.");
        }
    }
    if total.failed > 0 {
        bail!(
            "{} records failed; the first error: {}",
            total.failed,
            total.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

async fn consume(bootstrap_server: &str, args: ConsumeArgs) -> anyhow::Result<()> {
    let config = ConsumerConfig::new(ClientConfig::new(bootstrap_server.split(',').map(str::trim)));
    let mut consumer = Consumer::new(config).await.context("connecting to the cluster")?;
    let partitions = consumer.partitions_for(&args.topic).await?;
    let assignments = partitions
        .into_iter()
        .map(|partition| Assignment {
            topic: args.topic.clone(),
            partition,
            start: StartOffset::Earliest,
        })
        .collect();
    consumer.assign(assignments).await?;
    let started = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut last_record = Instant::now();
    let timeout = Duration::from_millis(args.timeout_ms);
    while records < args.messages {
        let left = timeout.saturating_sub(last_record.elapsed());
        if left.is_zero() {
            eprintln!(
                "WARNING: exiting before consuming the expected number of messages: timeout ({} ms) exceeded",
                args.timeout_ms
            );
            break;
        }
        let batch = consumer.poll(left.min(Duration::from_millis(500))).await?;
        if !batch.is_empty() {
            last_record = Instant::now();
        }
        for record in batch.into_iter().take((args.messages - records) as usize) {
            records += 1;
            bytes += (record.value.as_ref().map_or(0, Bytes::len) + record.key.as_ref().map_or(0, Bytes::len)) as u64;
        }
    }
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    let mb = bytes as f64 / (1024.0 * 1024.0);
    if args.json {
        let value = json!({
            "records": records,
            "bytes": bytes,
            "seconds": seconds,
            "mb_per_sec": mb / seconds,
            "records_per_sec": records as f64 / seconds,
        });
        println!("{value}");
    } else {
        println!("elapsed.sec, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec");
        println!(
            "{seconds:.3}, {mb:.4}, {:.4}, {records}, {:.4}",
            mb / seconds,
            records as f64 / seconds
        );
    }
    Ok(())
}

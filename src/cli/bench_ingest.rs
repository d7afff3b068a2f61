//! `brook bench ingest`: lines/s and MB/s from a growing log file into a topic and on to a sink
//! (SQLite, PostgreSQL or a JSON-lines file), through the real pipeline runtime on an embedded
//! broker, beside reading the same file once with `cat` (the ceiling).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use brook_broker::access::{EmbeddedAccess, TopicAccess};
use brook_broker::{Broker, BrokerConfig};
use brook_connectors::runtime::RunnerSettings;
use brook_pipelines::run::{self, Parts};

/// `bench ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// How many log lines to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub num_lines: u64,
    /// Where the lines go after the topic: sqlite, postgres or file.
    #[arg(long, default_value = "sqlite")]
    pub sink: String,
    /// The PostgreSQL connection for `--sink postgres`.
    #[arg(long, default_value = "host=127.0.0.1 user=postgres dbname=test")]
    pub postgres_url: String,
    /// Lines appended to the file per write while the pipeline tails it.
    #[arg(long, default_value_t = 10_000)]
    pub lines_per_write: u64,
}

/// Access log line `i`, about 110 bytes of JSON.
fn line(i: u64) -> String {
    format!(
        "{{\"ts\":\"2026-11-21T10:{:02}:{:02}Z\",\"host\":\"web-{}\",\"path\":\"/item/{i}\",\"status\":{},\"bytes\":{}}}\n",
        (i / 60) % 60,
        i % 60,
        i % 16,
        [200, 200, 304, 404, 503][(i % 5) as usize],
        (i * 37) % 100_000
    )
}

/// The pipeline file for `sink`.
fn pipeline_yaml(sink: &str, postgres_url: &str, table: &str) -> anyhow::Result<String> {
    let sink_block = match sink {
        "sqlite" => {
            format!("  out:\n    type: sqlite\n    input: access\n    path: ./out/bench.db\n    table: {table}\n")
        }
        "postgres" => {
            format!("  out:\n    type: postgres\n    input: access\n    url: {postgres_url}\n    table: {table}\n")
        }
        "file" => "  out:\n    type: file\n    input: access\n    path: ./out/bench.jsonl\n".to_string(),
        other => bail!("--sink must be sqlite, postgres or file, not {other:?}"),
    };
    Ok(format!(
        "name: bench-ingest\nsources:\n  access:\n    type: file\n    path: ./logs/access.log\n    format: json\n    schema: {{ts: TEXT, host: TEXT, path: TEXT, status: BIGINT, bytes: BIGINT}}\nsinks:\n{sink_block}"
    ))
}

/// Runs the benchmark and prints one line per stage.
pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("brook-bench-ingest-").tempdir()?;
    let root = dir.path();
    std::fs::create_dir_all(root.join("logs"))?;
    // The ceiling: the same bytes written to a file and read back by `cat`.
    let reference = root.join("reference.log");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&reference)?);
        for i in 0..args.num_lines {
            f.write_all(line(i).as_bytes())?;
        }
        f.flush()?;
    }
    let bytes = std::fs::metadata(&reference)?.len();
    let started = Instant::now();
    let status = std::process::Command::new("cat")
        .arg(&reference)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running cat")?;
    let cat_secs = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("cat failed: {status}");
    }
    report("cat (page cache, the ceiling)", args.num_lines, bytes, cat_secs);

    let table = format!("bench_ingest_{}", std::process::id());
    let yaml = pipeline_yaml(&args.sink, &args.postgres_url, &table)?;
    let file = root.join("bench.yaml");
    std::fs::write(&file, yaml)?;
    let pipeline = brook_pipelines::load(&file).map_err(|d| anyhow::anyhow!("{d}"))?;
    let mut config = BrokerConfig::new(root.join("brook-data"));
    config.set("offsets.topic.num.partitions", "1")?;
    let broker = tokio::task::spawn_blocking(move || Broker::open(config)).await??;
    let access: Arc<dyn TopicAccess> = Arc::new(EmbeddedAccess::new(broker.clone()));
    let log = root.join("logs/access.log");
    std::fs::File::create(&log)?;
    let running = run::start(&pipeline, access, RunnerSettings::default(), Parts::ALL).await?;
    let started = Instant::now();
    let writer = {
        let log = log.clone();
        let (n, per) = (args.num_lines, args.lines_per_write.max(1));
        tokio::task::spawn_blocking(move || append_lines(&log, n, per))
    };
    let source = running.status("access").context("the source step")?;
    let sink = running.status("out").context("the sink step")?;
    let mut topic_secs = None;
    loop {
        if let Some((step, why)) = running.failure() {
            bail!("step {step} failed: {why}");
        }
        let (_, in_topic, _) = source.counters();
        let (_, in_sink, _) = sink.counters();
        if topic_secs.is_none() && in_topic >= args.num_lines {
            topic_secs = Some(started.elapsed().as_secs_f64());
        }
        if in_sink >= args.num_lines {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sink_secs = started.elapsed().as_secs_f64();
    writer.await??;
    report(
        "file -> topic (fsync'd acks)",
        args.num_lines,
        bytes,
        topic_secs.unwrap_or(sink_secs),
    );
    report(
        &format!("file -> topic -> {}", args.sink),
        args.num_lines,
        bytes,
        sink_secs,
    );
    running.stop().await?;
    tokio::task::spawn_blocking(move || broker.close()).await??;
    if args.sink == "postgres" {
        eprintln!("note: the table {table} was left in PostgreSQL; drop it when done");
    }
    Ok(())
}

fn append_lines(log: &Path, n: u64, per_write: u64) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().append(true).open(log)?;
    let mut i = 0;
    while i < n {
        let end = (i + per_write).min(n);
        let chunk: String = (i..end).map(line).collect();
        f.write_all(chunk.as_bytes())?;
        i = end;
    }
    Ok(())
}

fn report(stage: &str, lines: u64, bytes: u64, secs: f64) {
    let secs = secs.max(1e-9);
    println!(
        "{stage:<40} {lines} lines in {secs:.2} s: {:.0} lines/s, {:.1} MB/s",
        lines as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

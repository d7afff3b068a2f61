//! `brook pipeline run|validate|test|explain`: declarative pipeline files from the command line.
//! `run` uses an embedded broker with its data in `--data-dir` unless `--bootstrap-server` names
//! a cluster, so one command takes a log file to a database on a laptop and the same file runs
//! unchanged against Kafka.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use brook_broker::access::{EmbeddedAccess, RemoteAccess, TopicAccess};
use brook_broker::client::ClientConfig;
use brook_broker::{Broker, BrokerConfig};
use brook_connectors::runtime::RunnerSettings;
use brook_pipelines::run::{self, Parts};
use brook_pipelines::Pipeline;

use super::embedded::Background;
use clap::Subcommand;

/// `brook pipeline`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: PipelineCommand,
}

/// The pipeline subcommands.
#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Run a pipeline until interrupted.
    Run(RunArgs),
    /// Check pipeline files; every problem is reported with its file, line and column.
    Validate {
        /// The pipeline files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the `tests:` block of pipeline files offline (no outside systems are touched).
    Test {
        /// The pipeline files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Describe what a pipeline does: its steps, topics and dead-letter topics.
    Explain {
        /// The pipeline file.
        file: PathBuf,
        /// Print a Mermaid graph instead of text.
        #[arg(long)]
        mermaid: bool,
    },
}

/// `brook pipeline run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pipeline file.
    pub file: PathBuf,
    /// Kafka bootstrap servers; without it the pipeline runs on an embedded broker.
    #[arg(long)]
    pub bootstrap_server: Option<String>,
    /// The embedded broker's data directory.
    #[arg(long, default_value = "./brook-data")]
    pub data_dir: PathBuf,
    /// Also serve the embedded broker over the Kafka protocol on this address, so that other
    /// clients can read the pipeline's topics while it runs.
    #[arg(long)]
    pub kafka_listen: Option<String>,
    /// Serve the HTTP ingest endpoint for `http` sources on this address.
    #[arg(long)]
    pub http_listen: Option<String>,
    /// How often progress is logged, in seconds (0: never).
    #[arg(long, default_value_t = 10)]
    pub progress_interval_secs: u64,
}

/// Runs one pipeline subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        PipelineCommand::Run(args) => run_pipeline(args).await,
        PipelineCommand::Validate { files } => {
            let mut bad = 0;
            for file in &files {
                match load(file) {
                    Ok(p) => println!(
                        "{}: ok ({} sources, {} transforms, {} sinks, {} tests)",
                        file.display(),
                        p.sources.len(),
                        p.transforms.len(),
                        p.sinks.len(),
                        p.tests.len()
                    ),
                    Err(e) => {
                        bad += 1;
                        eprintln!("{e}");
                    }
                }
            }
            if bad > 0 {
                bail!("{bad} of {} pipeline files are invalid", files.len());
            }
            Ok(())
        }
        PipelineCommand::Test { files } => {
            let (mut passed, mut failed) = (0, 0);
            for file in &files {
                let pipeline = load(file)?;
                if pipeline.tests.is_empty() {
                    println!("{}: no tests", file.display());
                }
                for outcome in brook_pipelines::testing::run_tests(&pipeline).await? {
                    if outcome.passed() {
                        passed += 1;
                        println!("ok    {} :: {}", file.display(), outcome.name);
                    } else {
                        failed += 1;
                        println!("FAIL  {} :: {}", file.display(), outcome.name);
                        for f in &outcome.failures {
                            println!("      {f}");
                        }
                    }
                }
            }
            println!("{passed} passed, {failed} failed");
            if failed > 0 {
                bail!("{failed} pipeline tests failed");
            }
            Ok(())
        }
        PipelineCommand::Explain { file, mermaid } => {
            let pipeline = load(&file)?;
            let text = if mermaid {
                brook_pipelines::explain_mermaid(&pipeline)
            } else {
                brook_pipelines::explain_text(&pipeline)
            };
            println!("{}", text.trim_end());
            Ok(())
        }
    }
}

/// Loads and validates a pipeline file; the error lists every diagnostic.
pub fn load(file: &Path) -> anyhow::Result<Pipeline> {
    brook_pipelines::load(file).map_err(|d| anyhow::anyhow!("{d}"))
}

async fn run_pipeline(args: RunArgs) -> anyhow::Result<()> {
    let pipeline = load(&args.file)?;
    let mut embedded: Option<Arc<Broker>> = None;
    let mut background = Background::none();
    let access: Arc<dyn TopicAccess> = match &args.bootstrap_server {
        Some(servers) => {
            let config = ClientConfig::new(servers.split(',').map(str::trim));
            Arc::new(
                RemoteAccess::connect(config)
                    .await
                    .with_context(|| format!("connecting to {servers}"))?,
            )
        }
        None => {
            std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
            let mut config = BrokerConfig::new(args.data_dir.clone());
            let listener = match &args.kafka_listen {
                Some(addr) => {
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("binding the Kafka listener on {addr}"))?;
                    let bound = listener.local_addr()?;
                    config.advertised_host = bound.ip().to_string();
                    config.advertised_port = bound.port() as i32;
                    println!("listening kafka={bound}");
                    Some(listener)
                }
                None => None,
            };
            let broker = tokio::task::spawn_blocking(move || Broker::open(config))
                .await?
                .with_context(|| format!("opening the embedded broker in {}", args.data_dir.display()))?;
            background = Background::start(&broker);
            if let Some(listener) = listener {
                background.push(tokio::spawn(brook_broker::server::serve(broker.clone(), listener)));
            }
            embedded = Some(broker.clone());
            Arc::new(EmbeddedAccess::new(broker))
        }
    };
    if let Some(addr) = &args.http_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the HTTP listener on {addr}"))?;
        println!("listening http={}", listener.local_addr()?);
        background.push(tokio::spawn(async move {
            if let Err(e) = crate::http::serve_ingest(listener).await {
                tracing::error!(error = %e, "the HTTP listener failed");
            }
        }));
    }
    let running = run::start(&pipeline, access, RunnerSettings::default(), Parts::ALL).await?;
    tokio::select! {
        _ = running.started() => {}
        (step, why) = running.failed() => bail!("pipeline {} did not start: step {step} failed: {why}", pipeline.name),
    }
    println!("pipeline {} running ({})", pipeline.name, pipeline.file.display());
    use std::io::Write;
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut progress = tokio::time::interval(Duration::from_secs(args.progress_interval_secs.max(1)));
    progress.tick().await;
    let failure = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break None,
            _ = term.recv() => break None,
            failed = running.failed() => break Some(failed),
            _ = running.drained() => {
                tracing::info!(pipeline = %pipeline.name, "every source ended and everything was written; stopping");
                break None;
            }
            _ = progress.tick(), if args.progress_interval_secs > 0 => {
                for step in running.report() {
                    tracing::info!(pipeline = %pipeline.name, step = %step.name, kind = step.kind, state = ?step.state, records_in = step.records_in, records_out = step.records_out, records_dead = step.records_dead, "progress");
                }
            }
        }
    };
    tracing::info!(pipeline = %pipeline.name, "stopping");
    let stopped = running.stop().await;
    if let Some(broker) = embedded {
        tokio::task::spawn_blocking(move || broker.close()).await??;
    }
    drop(background);
    if let Some((step, why)) = failure {
        bail!("pipeline {} stopped: step {step} failed: {why}", pipeline.name);
    }
    stopped?;
    Ok(())
}

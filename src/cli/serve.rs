//! `brook serve`: runs the broker until SIGINT or SIGTERM, then shuts down cleanly.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::embedded::Background;
use brook_broker::access::{embedded::EmbeddedAccess, TopicAccess};
use brook_broker::{Broker, BrokerConfig};
use brook_engine::catalog::Catalog;
use brook_engine::jobs::{JobManager, JobSettings};

/// Run the broker.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory holding topics and metadata.
    #[arg(long, default_value = "./brook-data")]
    pub data_dir: PathBuf,
    /// Address the Kafka listener binds; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub kafka_listen: String,
    /// Address the HTTP API binds; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_listen: String,
    /// Host name advertised to clients (default: the listen host).
    #[arg(long)]
    pub advertised_host: Option<String>,
    /// A broker config by its Kafka name, e.g. `num.partitions=4`; repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub configs: Vec<String>,
    /// Run every pipeline file (`*.yaml`, `*.yml`) in this folder, following changes.
    #[arg(long)]
    pub pipelines: Option<PathBuf>,
}

/// Opens the data directory, binds the listener, prints `listening kafka=HOST:PORT` on stdout,
/// and serves until a signal arrives.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = BrokerConfig::new(args.data_dir.clone());
    for kv in &args.configs {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--config {kv:?} is not KEY=VALUE"))?;
        config.set(k.trim(), v.trim())?;
    }
    let listener = tokio::net::TcpListener::bind(&args.kafka_listen)
        .await
        .with_context(|| format!("binding the Kafka listener on {}", args.kafka_listen))?;
    let bound = listener.local_addr()?;
    let http_listener = tokio::net::TcpListener::bind(&args.http_listen)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", args.http_listen))?;
    let http_bound = http_listener.local_addr()?;
    config.advertised_host = args.advertised_host.clone().unwrap_or_else(|| bound.ip().to_string());
    config.advertised_port = bound.port() as i32;
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let broker = tokio::task::spawn_blocking(move || Broker::open(config)).await??;
    tracing::info!(data_dir = %args.data_dir.display(), listen = %bound, advertised = %format!("{}:{}", broker.config().advertised_host, bound.port()), "broker started");
    println!("listening kafka={bound}");
    println!("listening http={http_bound}");
    use std::io::Write;
    std::io::stdout().flush()?;

    let mut background = Background::start(&broker);
    background.push(tokio::spawn(brook_broker::server::serve(broker.clone(), listener)));
    // Continuous queries run here on the embedded access, and follow the catalog topic so that
    // queries created by any client of this cluster start here too.
    let access: Arc<dyn TopicAccess> = Arc::new(EmbeddedAccess::new(broker.clone()));
    let catalog = Catalog::open(access.clone())
        .await
        .context("opening the stream catalog")?;
    let jobs = JobManager::new(access, catalog, JobSettings::default());
    jobs.start().await.context("starting continuous queries")?;
    let engine = brook_engine::sql::SqlEngine::new(jobs.access().clone()).with_jobs(jobs.clone());
    let api = crate::http::ApiState {
        engine: Arc::new(engine),
        jobs: jobs.clone(),
        access: jobs.access().clone(),
    };
    let (stop_pipelines, pipelines_stop) = brook_connectors::runtime::Stop::new();
    let pipelines = args.pipelines.clone().map(|dir| {
        tokio::spawn(brook_pipelines::folder::watch(
            dir,
            jobs.access().clone(),
            brook_connectors::runtime::RunnerSettings::default(),
            pipelines_stop,
        ))
    });
    let http = tokio::spawn(crate::http::serve(http_listener, api, std::future::pending()));
    tracing::info!(listen = %http_bound, "http api started");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    let _ = stop_pipelines.send(true);
    if let Some(pipelines) = pipelines {
        let _ = pipelines.await;
    }
    jobs.shutdown().await;
    let closing = broker.clone();
    tokio::task::spawn_blocking(move || closing.close()).await??;
    drop(background);
    http.abort();
    tracing::info!("broker stopped cleanly");
    Ok(())
}

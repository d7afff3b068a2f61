//! The command line: one subcommand per module, shaped like Kafka's own tools.

use clap::{Parser, Subcommand};

mod bench;
mod bench_ingest;
mod bench_sql;
mod consume;
mod embedded;
mod groups;
mod pipeline;
mod produce;
mod serve;
mod sql;
pub(crate) mod sql_remote;
mod topics;
mod transactions;

/// Brook: a Kafka-compatible streaming platform in one binary.
#[derive(Debug, Parser)]
#[command(name = "brook", version, about)]
pub struct Cli {
    /// Print logs as JSON lines instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    Serve(serve::Args),
    /// Create, list, describe, alter and delete topics.
    Topics(topics::Args),
    /// Write records from stdin or a file to a topic.
    Produce(produce::Args),
    /// Read records from a topic.
    Consume(consume::Args),
    /// List, describe and delete consumer groups, and reset their offsets.
    Groups(groups::Args),
    /// Measure produce and consume throughput and latency.
    Bench(bench::Args),
    /// Run SQL over topics: one statement, or an interactive shell.
    Sql(sql::Args),
    /// Run, validate, test and explain declarative pipeline files.
    Pipeline(pipeline::Args),
    /// List and describe transactions and the producers of a partition.
    Transactions(transactions::Args),
}

/// Runs one command to completion.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Bench(args) => bench::run(args).await,
        Command::Consume(args) => consume::run(args).await,
        Command::Groups(args) => groups::run(args).await,
        Command::Pipeline(args) => pipeline::run(args).await,
        Command::Produce(args) => produce::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Sql(args) => sql::run(args).await,
        Command::Topics(args) => topics::run(args).await,
        Command::Transactions(args) => transactions::run(args).await,
    }
}

/// Sets up structured logging to stderr; `RUST_LOG` filters (default `info`).
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

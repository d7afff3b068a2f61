//! `brook transactions`: list and describe transactions and the producers of a partition,
//! shaped like kafka-transactions.sh, whose column names it keeps.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use brook_broker::client::{
    Admin, ClientConfig, PartitionProducers, TransactionDescription, TransactionListing, TRANSACTION_STATES,
};
use serde_json::json;

/// List and describe transactions, and the producers a partition knows.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap_server: String,
    /// Output: a table (as kafka-transactions.sh prints it) or JSON.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,
    /// The transactions command.
    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns with a header line.
    Table,
    /// One JSON array (list, describe-producers) or object (describe).
    Json,
}

/// The transactions subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the transactional ids every broker coordinates, with their state.
    List(ListArgs),
    /// Describe one transactional id: producer, state, timeout and the partitions of its transaction.
    Describe(DescribeArgs),
    /// Describe the producers a partition knows and the transactions they have open there.
    DescribeProducers(DescribeProducersArgs),
}

/// `transactions list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only transactions in this state (`Ongoing`, `PrepareCommit`, `CompleteCommit`...); repeatable.
    #[arg(long = "state")]
    pub states: Vec<String>,
    /// Only transactions of this producer id; repeatable.
    #[arg(long = "producer-id")]
    pub producer_ids: Vec<i64>,
    /// Only transactions open for at least this long.
    #[arg(long)]
    pub duration_filter_ms: Option<i64>,
}

/// `transactions describe`.
#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// The transactional id.
    pub transactional_id: String,
}

/// `transactions describe-producers`.
#[derive(Debug, clap::Args)]
pub struct DescribeProducersArgs {
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// The partition (default: every partition).
    #[arg(long)]
    pub partition: Option<i32>,
}

/// Runs a transactions subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = ClientConfig::new(args.bootstrap_server.split(',').map(str::trim));
    let admin = Admin::connect(config).await.context("connecting to the cluster")?;
    match args.command {
        Command::List(a) => list(&admin, a, args.format).await,
        Command::Describe(a) => describe(&admin, a, args.format).await,
        Command::DescribeProducers(a) => describe_producers(&admin, a, args.format).await,
    }
}

/// Prints rows under a header, each column as wide as its widest cell, as Kafka's tools do.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

async fn list(admin: &Admin, args: ListArgs, format: Format) -> anyhow::Result<()> {
    // Kafka's state names are case-sensitive on the wire; accept any case here.
    let states: Vec<String> = args
        .states
        .iter()
        .map(|s| {
            TRANSACTION_STATES
                .iter()
                .find(|known| known.eq_ignore_ascii_case(s))
                .map_or_else(|| s.clone(), |known| known.to_string())
        })
        .collect();
    let listed: Vec<TransactionListing> = admin
        .list_transactions(&states, &args.producer_ids, args.duration_filter_ms)
        .await
        .context("listing transactions")?;
    if format == Format::Json {
        let out: Vec<_> = listed
            .iter()
            .map(|t| {
                json!({
                    "transactional_id": t.transactional_id,
                    "coordinator": t.coordinator_id,
                    "producer_id": t.producer_id,
                    "state": t.state,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|t| {
            vec![
                t.transactional_id.clone(),
                t.coordinator_id.to_string(),
                t.producer_id.to_string(),
                t.state.clone(),
            ]
        })
        .collect();
    print_table(
        &["TransactionalId", "Coordinator", "ProducerId", "TransactionState"],
        &rows,
    );
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How long the open transaction has run, as kafka-transactions.sh computes it; -1 when none.
fn duration_ms(d: &TransactionDescription, now_ms: i64) -> i64 {
    if d.transaction_start_time_ms < 0 {
        -1
    } else {
        (now_ms - d.transaction_start_time_ms).max(0)
    }
}

async fn describe(admin: &Admin, args: DescribeArgs, format: Format) -> anyhow::Result<()> {
    let described = admin
        .describe_transactions(std::slice::from_ref(&args.transactional_id))
        .await
        .with_context(|| format!("describing transactional id {}", args.transactional_id))?;
    let now = now_ms();
    for d in &described {
        let partitions: Vec<String> = d.partitions.iter().map(|(t, p)| format!("{t}-{p}")).collect();
        if format == Format::Json {
            let value = json!({
                "coordinator_id": d.coordinator_id,
                "transactional_id": d.transactional_id,
                "producer_id": d.producer_id,
                "producer_epoch": d.producer_epoch,
                "state": d.state,
                "transaction_timeout_ms": d.transaction_timeout_ms,
                "transaction_start_time_ms": d.transaction_start_time_ms,
                "transaction_duration_ms": duration_ms(d, now),
                "topic_partitions": partitions,
            });
            println!("{value}");
            continue;
        }
        let start = if d.transaction_start_time_ms < 0 {
            "None".to_string()
        } else {
            d.transaction_start_time_ms.to_string()
        };
        let duration = match duration_ms(d, now) {
            -1 => "None".to_string(),
            ms => ms.to_string(),
        };
        print_table(
            &[
                "CoordinatorId",
                "TransactionalId",
                "ProducerId",
                "ProducerEpoch",
                "TransactionState",
                "TransactionTimeoutMs",
                "CurrentTransactionStartTimeMs",
                "TransactionDurationMs",
                "TopicPartitions",
            ],
            &[vec![
                d.coordinator_id.to_string(),
                d.transactional_id.clone(),
                d.producer_id.to_string(),
                d.producer_epoch.to_string(),
                d.state.clone(),
                d.transaction_timeout_ms.to_string(),
                start,
                duration,
                partitions.join(","),
            ]],
        );
    }
    Ok(())
}

async fn describe_producers(admin: &Admin, args: DescribeProducersArgs, format: Format) -> anyhow::Result<()> {
    let partitions = match args.partition {
        Some(p) => vec![p],
        None => {
            let names = [args.topic.clone()];
            let metadata = admin.metadata(Some(&names)).await?;
            let topic = metadata
                .topic(&args.topic)
                .with_context(|| format!("topic {} is not in the cluster metadata", args.topic))?;
            if topic.error_code != 0 {
                anyhow::bail!(
                    "describing topic {}: {}",
                    args.topic,
                    brook_broker::Error::Remote {
                        code: topic.error_code,
                        message: format!("topic {}", args.topic),
                    }
                );
            }
            topic.partitions.iter().map(|p| p.partition).collect()
        }
    };
    let described: Vec<PartitionProducers> = admin
        .describe_producers(&args.topic, &partitions)
        .await
        .with_context(|| format!("describing the producers of {}", args.topic))?;
    if format == Format::Json {
        let out: Vec<_> = described
            .iter()
            .flat_map(|p| {
                p.producers.iter().map(|s| {
                    json!({
                        "partition": p.partition,
                        "producer_id": s.producer_id,
                        "producer_epoch": s.producer_epoch,
                        "latest_coordinator_epoch": s.coordinator_epoch,
                        "last_sequence": s.last_sequence,
                        "last_timestamp": s.last_timestamp_ms,
                        "current_transaction_start_offset": s.current_txn_start_offset,
                    })
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = described
        .iter()
        .flat_map(|p| {
            p.producers.iter().map(|s| {
                vec![
                    p.partition.to_string(),
                    s.producer_id.to_string(),
                    s.producer_epoch.to_string(),
                    s.coordinator_epoch.to_string(),
                    s.last_sequence.to_string(),
                    s.last_timestamp_ms.to_string(),
                    if s.current_txn_start_offset < 0 {
                        "None".to_string()
                    } else {
                        s.current_txn_start_offset.to_string()
                    },
                ]
            })
        })
        .collect();
    print_table(
        &[
            "Partition",
            "ProducerId",
            "ProducerEpoch",
            "LatestCoordinatorEpoch",
            "LastSequence",
            "LastTimestamp",
            "CurrentTransactionStartOffset",
        ],
        &rows,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_transaction_lasts_since_its_start_and_none_is_minus_one() {
        let mut d = TransactionDescription {
            transactional_id: "t".to_string(),
            coordinator_id: 0,
            state: "Ongoing".to_string(),
            producer_id: 1,
            producer_epoch: 0,
            transaction_timeout_ms: 60_000,
            transaction_start_time_ms: 1_000,
            partitions: vec![],
        };
        assert_eq!(duration_ms(&d, 4_500), 3_500);
        assert_eq!(
            duration_ms(&d, 500),
            0,
            "a clock behind the coordinator's never goes negative"
        );
        d.transaction_start_time_ms = -1;
        assert_eq!(duration_ms(&d, 4_500), -1);
    }
}

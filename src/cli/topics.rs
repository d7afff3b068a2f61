//! `brook topics`: create, list, describe, alter and delete topics, shaped like kafka-topics.sh;
//! `describe` also shows each partition's open transactions (DescribeProducers) when the
//! cluster supports it.

use anyhow::{bail, Context};
use brook_broker::client::{
    ActiveProducer, Admin, ClientConfig, ClusterMetadata, NewTopic, OffsetSpec, PartitionProducers, TopicMetadata,
};
use brook_broker::Error;
use serde_json::json;

/// Kafka's error code when a topic exists already.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Kafka's error code for an API or version the broker does not support.
const UNSUPPORTED_VERSION: i16 = 35;

/// Create, list, describe, alter and delete topics.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap_server: String,
    /// The topics command.
    #[command(subcommand)]
    pub command: Command,
}

/// The topics subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names.
    List(ListArgs),
    /// Describe partitions (leader, replicas, ISR, offsets, open transactions) and non-default configs.
    Describe(DescribeArgs),
    /// Delete topics.
    Delete(DeleteArgs),
    /// Add partitions or change configs.
    Alter(AlterArgs),
}

/// `topics create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The topic name.
    pub name: String,
    /// The partition count (default: the broker's `num.partitions`).
    #[arg(long)]
    pub partitions: Option<i32>,
    /// The replication factor (default: the broker's).
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// A topic config, e.g. `retention.ms=60000`; repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub configs: Vec<String>,
    /// Succeed quietly if the topic exists.
    #[arg(long)]
    pub if_not_exists: bool,
    /// Check the request without creating the topic.
    #[arg(long)]
    pub validate_only: bool,
}

/// `topics list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// `topics describe`.
#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// The topic (default: all topics).
    pub name: Option<String>,
    /// Print one JSON object per topic.
    #[arg(long)]
    pub json: bool,
}

/// `topics delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The topics to delete.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `topics alter`.
#[derive(Debug, clap::Args)]
pub struct AlterArgs {
    /// The topic name.
    pub name: String,
    /// The new, larger, partition count.
    #[arg(long)]
    pub partitions: Option<i32>,
    /// A topic config to set, e.g. `retention.ms=60000`; repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub configs: Vec<String>,
    /// A topic config to revert to its default; repeatable.
    #[arg(long = "delete-config", value_name = "KEY")]
    pub delete_configs: Vec<String>,
}

/// Runs a topics subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = ClientConfig::new(args.bootstrap_server.split(',').map(str::trim));
    let admin = Admin::connect(config).await.context("connecting to the cluster")?;
    match args.command {
        Command::Create(a) => create(&admin, a).await,
        Command::List(a) => list(&admin, a).await,
        Command::Describe(a) => describe(&admin, a).await,
        Command::Delete(a) => delete(&admin, a).await,
        Command::Alter(a) => alter(&admin, a).await,
    }
}

fn parse_configs(configs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    configs
        .iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--config {kv:?} is not KEY=VALUE"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

async fn create(admin: &Admin, args: CreateArgs) -> anyhow::Result<()> {
    let topic = NewTopic {
        name: args.name.clone(),
        partitions: args.partitions.unwrap_or(-1),
        replication_factor: args.replication_factor.unwrap_or(-1),
        configs: parse_configs(&args.configs)?,
    };
    match admin.create_topic(topic, args.validate_only).await {
        Ok(()) if args.validate_only => println!("Topic {} is valid.", args.name),
        Ok(()) => println!("Created topic {}.", args.name),
        Err(Error::Remote {
            code: TOPIC_ALREADY_EXISTS,
            ..
        }) if args.if_not_exists => {}
        Err(e) => return Err(e).with_context(|| format!("creating topic {}", args.name)),
    }
    Ok(())
}

async fn list(admin: &Admin, args: ListArgs) -> anyhow::Result<()> {
    let metadata = admin.metadata(None).await?;
    let mut names: Vec<&str> = metadata.topics.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    if args.json {
        println!("{}", serde_json::to_string(&names)?);
    } else {
        for name in names {
            println!("{name}");
        }
    }
    Ok(())
}

async fn describe(admin: &Admin, args: DescribeArgs) -> anyhow::Result<()> {
    let names = args.name.clone().map(|n| vec![n]);
    let metadata: ClusterMetadata = admin.metadata(names.as_deref()).await?;
    let mut topics: Vec<&TopicMetadata> = metadata.topics.iter().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for topic in topics {
        if topic.error_code != 0 {
            let e = brook_broker::Error::Remote {
                code: topic.error_code,
                message: format!("topic {}", topic.name),
            };
            if args.name.is_some() {
                bail!("describing topic {}: {e}", topic.name);
            }
            eprintln!("skipping topic {}: {e}", topic.name);
            continue;
        }
        let partitions: Vec<i32> = topic.partitions.iter().map(|p| p.partition).collect();
        let starts = admin
            .list_offsets(&topic.name, &partitions, OffsetSpec::Earliest)
            .await?;
        let ends = admin.list_offsets(&topic.name, &partitions, OffsetSpec::Latest).await?;
        let offset_of = |list: &[brook_broker::client::PartitionOffset], p: i32| {
            list.iter().find(|o| o.partition == p).map_or(-1, |o| o.offset)
        };
        let configs: Vec<(String, String)> = admin
            .describe_topic_configs(&topic.name)
            .await?
            .into_iter()
            .filter(|c| !c.is_default)
            .map(|c| {
                (
                    c.name,
                    if c.is_sensitive {
                        "<sensitive>".to_string()
                    } else {
                        c.value.unwrap_or_default()
                    },
                )
            })
            .collect();
        let replication_factor = topic.partitions.first().map_or(0, |p| p.replicas.len());
        let producers = open_transactions(admin, &topic.name, &partitions).await;
        let open_of = |p: i32| -> Option<Vec<&ActiveProducer>> {
            producers.as_ref().map(|list| {
                list.iter()
                    .find(|x| x.partition == p)
                    .map(PartitionProducers::open_transactions)
                    .unwrap_or_default()
            })
        };
        if args.json {
            let parts: Vec<serde_json::Value> = topic
                .partitions
                .iter()
                .map(|p| {
                    json!({
                        "partition": p.partition,
                        "leader": p.leader,
                        "replicas": p.replicas,
                        "isr": p.isr,
                        "log_start_offset": offset_of(&starts, p.partition),
                        "log_end_offset": offset_of(&ends, p.partition),
                        "open_transactions": open_of(p.partition).map(|open| {
                            open.iter()
                                .map(|o| json!({
                                    "producer_id": o.producer_id,
                                    "producer_epoch": o.producer_epoch,
                                    "start_offset": o.current_txn_start_offset,
                                }))
                                .collect::<Vec<_>>()
                        }),
                    })
                })
                .collect();
            let configs: serde_json::Map<String, serde_json::Value> = configs
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            let value = json!({
                "topic": topic.name,
                "topic_id": topic.topic_id_string(),
                "is_internal": topic.is_internal,
                "partition_count": topic.partitions.len(),
                "replication_factor": replication_factor,
                "configs": configs,
                "partitions": parts,
            });
            println!("{value}");
            continue;
        }
        let configs: Vec<String> = configs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
            topic.name,
            topic.topic_id_string(),
            topic.partitions.len(),
            replication_factor,
            configs.join(",")
        );
        let join = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        for p in &topic.partitions {
            let open = open_of(p.partition).map_or_else(String::new, |open| format_open(&open));
            println!(
                "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\tLogStartOffset: {}\tLogEndOffset: {}{open}",
                topic.name,
                p.partition,
                p.leader,
                join(&p.replicas),
                join(&p.isr),
                offset_of(&starts, p.partition),
                offset_of(&ends, p.partition)
            );
        }
    }
    Ok(())
}

/// The producers of each partition, for their open transactions; `None` when the cluster cannot
/// tell (a broker without DescribeProducers), so that describe works against any cluster.
async fn open_transactions(admin: &Admin, topic: &str, partitions: &[i32]) -> Option<Vec<PartitionProducers>> {
    match admin.describe_producers(topic, partitions).await {
        Ok(found) => Some(found),
        Err(Error::Remote {
            code: UNSUPPORTED_VERSION,
            ..
        }) => None,
        Err(e) => {
            eprintln!("cannot show the open transactions of topic {topic}: {e}");
            None
        }
    }
}

/// The text column for a partition's open transactions, oldest first.
fn format_open(open: &[&ActiveProducer]) -> String {
    if open.is_empty() {
        return "\tOpenTransactions: 0".to_string();
    }
    let each: Vec<String> = open
        .iter()
        .map(|o| format!("producer {} from offset {}", o.producer_id, o.current_txn_start_offset))
        .collect();
    format!("\tOpenTransactions: {} ({})", open.len(), each.join(", "))
}

async fn delete(admin: &Admin, args: DeleteArgs) -> anyhow::Result<()> {
    admin
        .delete_topics(&args.names)
        .await
        .with_context(|| format!("deleting {}", args.names.join(", ")))?;
    for name in &args.names {
        println!("Deleted topic {name}.");
    }
    Ok(())
}

async fn alter(admin: &Admin, args: AlterArgs) -> anyhow::Result<()> {
    let set = parse_configs(&args.configs)?;
    if args.partitions.is_none() && set.is_empty() && args.delete_configs.is_empty() {
        bail!("nothing to alter: give --partitions, --config or --delete-config");
    }
    if let Some(count) = args.partitions {
        admin
            .create_partitions(&args.name, count)
            .await
            .with_context(|| format!("growing {} to {count} partitions", args.name))?;
        println!("Topic {} now has {count} partitions.", args.name);
    }
    if !set.is_empty() || !args.delete_configs.is_empty() {
        admin
            .alter_topic_configs(&args.name, &set, &args.delete_configs)
            .await
            .with_context(|| format!("altering configs of {}", args.name))?;
        println!("Updated configs of topic {}.", args.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer(producer_id: i64, start: i64) -> ActiveProducer {
        ActiveProducer {
            producer_id,
            producer_epoch: 0,
            last_sequence: 0,
            last_timestamp_ms: 0,
            coordinator_epoch: 0,
            current_txn_start_offset: start,
        }
    }

    #[test]
    fn open_transactions_are_counted_and_named_oldest_first() {
        assert_eq!(format_open(&[]), "\tOpenTransactions: 0");
        let (a, b) = (producer(1000, 12), producer(1001, 15));
        assert_eq!(
            format_open(&[&a, &b]),
            "\tOpenTransactions: 2 (producer 1000 from offset 12, producer 1001 from offset 15)"
        );
    }
}

//! `brook groups`: list, describe (with LAG), delete consumer groups and reset their offsets,
//! shaped like kafka-consumer-groups.sh, whose column layout and messages it keeps.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use brook_broker::client::{Admin, ClientConfig, GroupDescription, OffsetSpec, TopicPartition};
use serde_json::json;

/// List, describe and delete consumer groups, and reset their offsets.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap_server: String,
    /// The groups command.
    #[command(subcommand)]
    pub command: Command,
}

/// The groups subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List group ids (with `--state`, also their states).
    List(ListArgs),
    /// Show each partition's committed offset, log end offset, lag and owner.
    Describe(DescribeArgs),
    /// Delete groups; only groups without live members can be deleted.
    Delete(DeleteArgs),
    /// Compute new committed offsets for an inactive group; `--execute` commits them.
    ResetOffsets(ResetArgs),
}

/// `groups list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only groups in this state (`Stable`, `Empty`, `PreparingRebalance`...); repeatable.
    #[arg(long = "state")]
    pub states: Vec<String>,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// `groups describe`.
#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// The groups to describe.
    #[arg(required = true)]
    pub groups: Vec<String>,
    /// Print one JSON object per group.
    #[arg(long)]
    pub json: bool,
}

/// `groups delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The groups to delete.
    #[arg(required = true)]
    pub groups: Vec<String>,
}

/// `groups reset-offsets`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["topics", "all_topics"])))]
#[command(group(clap::ArgGroup::new("to").required(true)
    .args(["to_earliest", "to_latest", "to_datetime", "shift_by", "to_offset"])))]
pub struct ResetArgs {
    /// The group.
    #[arg(long)]
    pub group: String,
    /// A topic, optionally with partitions: `t` or `t:0,2`; repeatable.
    #[arg(long = "topic", value_name = "TOPIC[:P,P]")]
    pub topics: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    pub all_topics: bool,
    /// To the log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// To the log end offset.
    #[arg(long)]
    pub to_latest: bool,
    /// To the first offset at or after a time: `YYYY-MM-DDTHH:mm:SS[.sss][Z|+HH:MM]` (UTC if no zone).
    #[arg(long, value_name = "ISO8601")]
    pub to_datetime: Option<String>,
    /// Move each committed offset by N (negative moves back), kept within the log.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// To this offset, kept within the log.
    #[arg(long, value_name = "N")]
    pub to_offset: Option<i64>,
    /// Only print the new offsets (the default).
    #[arg(long, conflicts_with = "execute")]
    pub dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    pub execute: bool,
}

/// Runs a groups subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = ClientConfig::new(args.bootstrap_server.split(',').map(str::trim));
    let admin = Admin::connect(config).await.context("connecting to the cluster")?;
    match args.command {
        Command::List(a) => list(&admin, a).await,
        Command::Describe(a) => describe(&admin, a).await,
        Command::Delete(a) => delete(&admin, a).await,
        Command::ResetOffsets(a) => reset_offsets(&admin, a).await,
    }
}

async fn list(admin: &Admin, args: ListArgs) -> anyhow::Result<()> {
    let groups = admin.list_groups(&args.states).await.context("listing groups")?;
    if args.json {
        let out: Vec<_> = groups
            .iter()
            .map(|g| json!({"group": g.group_id, "state": g.state, "protocol_type": g.protocol_type, "type": g.group_type}))
            .collect();
        println!("{}", serde_json::to_string(&out)?);
    } else if args.states.is_empty() {
        for g in &groups {
            println!("{}", g.group_id);
        }
    } else {
        let width = groups.iter().map(|g| g.group_id.len()).max().unwrap_or(0).max(5);
        println!("{:<width$} STATE", "GROUP");
        for g in &groups {
            println!("{:<width$} {}", g.group_id, g.state);
        }
    }
    Ok(())
}

/// One line of `describe`: a partition (with or without an owner) or a member without partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    topic: Option<String>,
    partition: Option<i32>,
    current: Option<i64>,
    log_end: Option<i64>,
    consumer_id: Option<String>,
    host: Option<String>,
    client_id: Option<String>,
}

impl Row {
    fn lag(&self) -> Option<i64> {
        Some((self.log_end? - self.current?).max(0))
    }
}

fn dash<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), T::to_string)
}

/// Log end offsets of some partitions, one ListOffsets per topic; unknown partitions are left out.
async fn log_ends(admin: &Admin, partitions: &BTreeSet<TopicPartition>) -> BTreeMap<TopicPartition, i64> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let mut out = BTreeMap::new();
    for (topic, parts) in by_topic {
        match admin.list_offsets(topic, &parts, OffsetSpec::Latest).await {
            Ok(found) => out.extend(found.into_iter().map(|p| ((topic.to_string(), p.partition), p.offset))),
            Err(e) => tracing::warn!(topic = %topic, error = %e, "cannot look up log end offsets"),
        }
    }
    out
}

/// The rows kafka-consumer-groups.sh --describe prints for one group.
async fn describe_rows(admin: &Admin, group: &GroupDescription) -> anyhow::Result<Vec<Row>> {
    let committed = admin
        .fetch_offsets(&group.group_id)
        .await
        .with_context(|| format!("fetching committed offsets of group {}", group.group_id))?;
    let mut owners: BTreeMap<TopicPartition, usize> = BTreeMap::new();
    for (i, m) in group.members.iter().enumerate() {
        for tp in &m.assignment {
            owners.insert(tp.clone(), i);
        }
    }
    let partitions: BTreeSet<TopicPartition> = committed.keys().chain(owners.keys()).cloned().collect();
    let ends = log_ends(admin, &partitions).await;
    let mut rows: Vec<Row> = partitions
        .iter()
        .map(|tp| {
            let member = owners.get(tp).map(|&i| &group.members[i]);
            Row {
                topic: Some(tp.0.clone()),
                partition: Some(tp.1),
                current: committed.get(tp).copied(),
                log_end: ends.get(tp).copied(),
                consumer_id: member.map(|m| m.member_id.clone()),
                host: member.map(|m| m.host.clone()),
                client_id: member.map(|m| m.client_id.clone()),
            }
        })
        .collect();
    rows.sort_by_key(|r| {
        (
            r.consumer_id.is_none(),
            r.consumer_id.clone(),
            r.topic.clone(),
            r.partition,
        )
    });
    for m in group.members.iter().filter(|m| m.assignment.is_empty()) {
        rows.push(Row {
            topic: None,
            partition: None,
            current: None,
            log_end: None,
            consumer_id: Some(m.member_id.clone()),
            host: Some(m.host.clone()),
            client_id: Some(m.client_id.clone()),
        });
    }
    Ok(rows)
}

/// Formats rows with kafka-consumer-groups.sh's layout: variable-width GROUP, TOPIC, CONSUMER-ID
/// and HOST columns, fixed 10 and 15 wide number columns.
fn format_rows(group: &str, rows: &[Row]) -> String {
    let width =
        |header: &str, f: &dyn Fn(&Row) -> String| rows.iter().map(|r| f(r).len()).max().unwrap_or(0).max(header.len());
    let group_w = group.len().max("GROUP".len());
    let topic_w = width("TOPIC", &|r| dash(&r.topic));
    let consumer_w = width("CONSUMER-ID", &|r| dash(&r.consumer_id));
    let host_w = width("HOST", &|r| dash(&r.host));
    let line = |cols: [&str; 9]| {
        format!(
            "{:<group_w$} {:<topic_w$} {:<10} {:<15} {:<15} {:<15} {:<consumer_w$} {:<host_w$} {}",
            cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8]
        )
    };
    let mut out = line([
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    for r in rows {
        out.push('\n');
        out.push_str(&line([
            group,
            &dash(&r.topic),
            &dash(&r.partition),
            &dash(&r.current),
            &dash(&r.log_end),
            &dash(&r.lag()),
            &dash(&r.consumer_id),
            &dash(&r.host),
            &dash(&r.client_id),
        ]));
    }
    out
}

async fn describe(admin: &Admin, args: DescribeArgs) -> anyhow::Result<()> {
    let groups = admin.describe_groups(&args.groups).await.context("describing groups")?;
    for group in &groups {
        let rows = if group.state == "Dead" {
            Vec::new()
        } else {
            describe_rows(admin, group).await?
        };
        if args.json {
            let partitions: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "topic": r.topic, "partition": r.partition, "current_offset": r.current,
                        "log_end_offset": r.log_end, "lag": r.lag(), "consumer_id": r.consumer_id,
                        "host": r.host, "client_id": r.client_id,
                    })
                })
                .collect();
            let out = json!({
                "group": group.group_id, "state": group.state, "protocol_type": group.protocol_type,
                "assignor": group.assignor, "consumer_protocol": group.is_consumer_protocol,
                "members": group.members.len(), "partitions": partitions,
            });
            println!("{out}");
            continue;
        }
        match group.state.as_str() {
            "Dead" => {
                eprintln!("Error: Consumer group '{}' does not exist.", group.group_id);
                continue;
            }
            "PreparingRebalance" | "CompletingRebalance" | "Assigning" | "Reconciling" => {
                eprintln!("\nWarning: Consumer group '{}' is rebalancing.", group.group_id);
            }
            _ => {}
        }
        if group.members.is_empty() {
            println!("\nConsumer group '{}' has no active members.", group.group_id);
        }
        println!("\n{}", format_rows(&group.group_id, &rows));
    }
    Ok(())
}

async fn delete(admin: &Admin, args: DeleteArgs) -> anyhow::Result<()> {
    let results = admin.delete_groups(&args.groups).await?;
    let mut failed = Vec::new();
    for (group, result) in results {
        match result {
            Ok(()) => println!("Deletion of requested consumer groups ('{group}') was successful."),
            Err(e) => {
                eprintln!("Error: Deletion of consumer group '{group}' failed: {e}");
                failed.push(group);
            }
        }
    }
    if !failed.is_empty() {
        bail!("{} group(s) not deleted: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// `t` or `t:0,2` into the topic and its explicit partitions.
fn parse_topic(spec: &str) -> anyhow::Result<(String, Option<Vec<i32>>)> {
    match spec.split_once(':') {
        None => Ok((spec.to_string(), None)),
        Some((topic, parts)) => {
            let parts = parts
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<i32>()
                        .with_context(|| format!("--topic {spec:?}: {p:?} is not a partition"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((topic.to_string(), Some(parts)))
        }
    }
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:mm:SS[.sss][Z|+HH:MM|-HH:MM]`, UTC when no zone.
fn parse_datetime(s: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("--to-datetime {s:?} is not YYYY-MM-DDTHH:mm:SS[.sss][Z|+HH:MM]");
    let (date, time) = s.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<anyhow::Result<_>>()?;
    let [year, month, day] = d[..] else { return Err(bad()) };
    let (clock, offset_min) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, zone) = time.split_at(i);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':').unwrap_or((&zone[1..], "0"));
        let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        (c, sign * (h * 60 + m))
    } else {
        (time, 0)
    };
    let (hms, millis) = clock.split_once('.').unwrap_or((clock, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<anyhow::Result<_>>()?;
    let [hour, minute, second] = t[..] else {
        return Err(bad());
    };
    let millis: i64 = format!("{millis:0<3}")[..3].parse().map_err(|_| bad())?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 24 + hour) * 60 + minute - offset_min) * 60_000 + second * 1000 + millis)
}

async fn reset_offsets(admin: &Admin, args: ResetArgs) -> anyhow::Result<()> {
    let group = admin
        .describe_groups(std::slice::from_ref(&args.group))
        .await
        .context("describing the group")?
        .pop()
        .context("the coordinator did not describe the group")?;
    if !group.members.is_empty() || !matches!(group.state.as_str(), "Empty" | "Dead") {
        bail!(
            "Assignments can only be reset if the group '{}' is inactive, but the current state is {}.",
            args.group,
            group.state
        );
    }
    let committed = admin
        .fetch_offsets(&args.group)
        .await
        .context("fetching committed offsets")?;
    let mut partitions: BTreeSet<TopicPartition> = BTreeSet::new();
    if args.all_topics {
        partitions.extend(committed.keys().cloned());
    }
    for spec in &args.topics {
        let (topic, parts) = parse_topic(spec)?;
        let parts = match parts {
            Some(p) => p,
            None => {
                let metadata = admin.metadata(Some(std::slice::from_ref(&topic))).await?;
                let t = metadata
                    .topic(&topic)
                    .with_context(|| format!("topic {topic} does not exist"))?;
                if t.error_code != 0 {
                    bail!("topic {topic} cannot be described (error {})", t.error_code);
                }
                t.partitions.iter().map(|p| p.partition).collect()
            }
        };
        partitions.extend(parts.into_iter().map(|p| (topic.clone(), p)));
    }
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in &partitions {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    let mut new_offsets: Vec<(String, i32, i64)> = Vec::new();
    for (topic, parts) in by_topic {
        let bound = |spec| admin.list_offsets(&topic, &parts, spec);
        let earliest: BTreeMap<i32, i64> = bound(OffsetSpec::Earliest)
            .await?
            .into_iter()
            .map(|p| (p.partition, p.offset))
            .collect();
        let latest: BTreeMap<i32, i64> = bound(OffsetSpec::Latest)
            .await?
            .into_iter()
            .map(|p| (p.partition, p.offset))
            .collect();
        let at_time: BTreeMap<i32, i64> = match &args.to_datetime {
            Some(s) => bound(OffsetSpec::Timestamp(parse_datetime(s)?))
                .await?
                .into_iter()
                .map(|p| (p.partition, p.offset))
                .collect(),
            None => BTreeMap::new(),
        };
        for p in parts {
            let (lo, hi) = (
                earliest.get(&p).copied().unwrap_or(0),
                latest.get(&p).copied().unwrap_or(0),
            );
            let current = committed.get(&(topic.clone(), p)).copied();
            let target = if args.to_earliest {
                lo
            } else if args.to_latest {
                hi
            } else if args.to_datetime.is_some() {
                at_time.get(&p).copied().filter(|o| *o >= 0).unwrap_or(hi)
            } else if let Some(n) = args.shift_by {
                let current = current.with_context(|| {
                    format!("cannot shift the offset of {topic}-{p}: the group has no committed offset for it")
                })?;
                current.saturating_add(n)
            } else {
                args.to_offset.unwrap_or(lo)
            };
            new_offsets.push((topic.clone(), p, target.clamp(lo, hi.max(lo))));
        }
    }
    println!(
        "\n{:<30} {:<30} {:<10} {:<15}",
        "GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"
    );
    for (t, p, o) in &new_offsets {
        println!("{:<30} {:<30} {:<10} {:<15}", args.group, t, p, o);
    }
    if args.execute {
        admin
            .commit_offsets(&args.group, &new_offsets)
            .await
            .with_context(|| format!("committing the new offsets of group {}", args.group))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_like_kafka_accepts_them() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00.000").unwrap(), 0);
        assert_eq!(parse_datetime("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(
            parse_datetime("2024-03-01T12:30:00.5+01:00").unwrap(),
            1_709_292_600_500
        );
        assert_eq!(parse_datetime("2000-02-29T00:00:00-00:30").unwrap(), 951_784_200_000);
        assert!(parse_datetime("2024-13-01T00:00:00").is_err());
        assert!(parse_datetime("yesterday").is_err());
    }

    #[test]
    fn topic_specs_parse() {
        assert_eq!(parse_topic("t").unwrap(), ("t".to_string(), None));
        assert_eq!(parse_topic("t:0,2").unwrap(), ("t".to_string(), Some(vec![0, 2])));
        assert!(parse_topic("t:x").is_err());
    }

    #[test]
    fn rows_print_in_kafkas_columns_with_dashes_and_lag() {
        let rows = vec![
            Row {
                topic: Some("t".into()),
                partition: Some(0),
                current: Some(3),
                log_end: Some(5),
                consumer_id: Some("m-1".into()),
                host: Some("/127.0.0.1".into()),
                client_id: Some("brook".into()),
            },
            Row {
                topic: Some("t".into()),
                partition: Some(1),
                current: None,
                log_end: Some(2),
                consumer_id: None,
                host: None,
                client_id: None,
            },
        ];
        let out = format_rows("g", &rows);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "GROUP TOPIC PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG             CONSUMER-ID HOST       CLIENT-ID"
        );
        assert_eq!(
            lines[1],
            "g     t     0          3               5               2               m-1         /127.0.0.1 brook"
        );
        assert_eq!(
            lines[2],
            "g     t     1          -               2               -               -           -          -"
        );
    }
}

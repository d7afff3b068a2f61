//! Brook's own client as a consumer group member against a real `brook serve`: two members split
//! a 6-partition topic, the survivor of a close takes everything, committed offsets are resumed
//! by a new member, and `brook groups describe` / `reset-offsets` behave like Kafka's tool.
//!
//! Every wait polls a condition against a deadline (a hang guard, not a threshold).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use brook_broker::client::{
    AutoOffsetReset, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, GroupConfig, GroupProtocol,
    RebalanceEvent, TopicPartition,
};
use common::{run_with_stdin, Broker, TestDir};

/// How long a group may take to reach an expected state before the test fails.
const GROUP_DEADLINE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(200);

fn produce(broker: &Broker, dir: &TestDir, topic: &str, from: u32, to: u32) {
    let file = dir.file(&format!("records-{from}-{to}.txt"));
    let lines: String = (from..to).map(|i| format!("k{i}:v{i}\n")).collect();
    std::fs::write(&file, lines).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook"));
    cmd.args([
        "produce",
        "--topic",
        topic,
        "--key-separator",
        ":",
        "--bootstrap-server",
        &broker.addr,
    ]);
    let out = run_with_stdin(cmd, Some(&file), "brook produce");
    assert!(out.status.success(), "produce failed: {}", out.stderr);
}

async fn member(broker: &Broker, group: &str, topic: &str, protocol: GroupProtocol) -> Consumer {
    let mut config = ConsumerConfig::new(ClientConfig::new([broker.addr.clone()]));
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.fetch_max_wait_ms = 100;
    let mut consumer = Consumer::new(config).await.expect("connect consumer");
    let mut group = GroupConfig::new(group);
    group.session_timeout_ms = 10_000;
    group.heartbeat_interval_ms = 200;
    group.rebalance_timeout_ms = 30_000;
    group.auto_commit = false;
    group.protocol = protocol;
    consumer
        .subscribe(vec![topic.to_string()], group)
        .await
        .expect("subscribe");
    consumer
}

/// Polls every consumer until `done` holds, keeping every record each one returned.
async fn poll_until(
    consumers: &mut [&mut Consumer],
    seen: &mut [Vec<ConsumerRecord>],
    what: &str,
    mut done: impl FnMut(&[&mut Consumer], &[Vec<ConsumerRecord>]) -> bool,
) {
    let end = Instant::now() + GROUP_DEADLINE;
    loop {
        for (c, s) in consumers.iter_mut().zip(seen.iter_mut()) {
            s.extend(c.poll(POLL).await.expect("poll"));
        }
        if done(consumers, seen) {
            return;
        }
        let state: Vec<Vec<TopicPartition>> = consumers.iter().map(|c| c.assignment()).collect();
        assert!(
            Instant::now() < end,
            "{what}: not reached within {GROUP_DEADLINE:?}; assignments {state:?}"
        );
    }
}

fn set(c: &Consumer) -> BTreeSet<TopicPartition> {
    c.assignment().into_iter().collect()
}

/// The last offset of each partition among records read.
fn last_offsets(seen: &[ConsumerRecord]) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    for r in seen {
        let last = out.entry(r.partition).or_insert(r.offset);
        *last = (*last).max(r.offset);
    }
    out
}

/// Whether every consumer has read up to `last` on each partition it owns.
fn caught_up(consumers: &[&mut Consumer], seen: &[Vec<ConsumerRecord>], last: &BTreeMap<i32, i64>) -> bool {
    consumers.iter().zip(seen).all(|(c, s)| {
        c.assignment().iter().all(|(_, p)| {
            last.get(p)
                .is_none_or(|end| s.iter().any(|r| r.partition == *p && r.offset == *end))
        })
    })
}

/// The rows of `brook groups describe` for a group: TOPIC, PARTITION, CURRENT-OFFSET, LEO, LAG, CONSUMER-ID.
fn describe_rows(broker: &Broker, group: &str) -> (String, Vec<Vec<String>>) {
    let out = broker.run_cli(&["groups", "describe", group]);
    assert!(out.status.success(), "describe failed: {}", out.stderr);
    let rows = out
        .stdout
        .lines()
        .filter(|l| l.starts_with(&format!("{group} ")))
        .map(|l| l.split_whitespace().skip(1).map(str::to_string).collect())
        .collect();
    (out.stdout, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_members_split_hand_over_and_resume_committed_offsets() {
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    broker.create_topic("orders", 6, &[]);
    const TOTAL: usize = 60;
    produce(&broker, &dir, "orders", 0, 60);
    let protocol = || GroupProtocol::Classic {
        assignor: "cooperative-sticky".into(),
    };

    // One member gets everything; a second one joins and the two split the topic 3 and 3.
    let mut a = member(&broker, "g", "orders", protocol()).await;
    let mut seen = vec![Vec::new(), Vec::new()];
    poll_until(
        &mut [&mut a],
        &mut seen[..1],
        "first member owns 6 and reads all",
        |c, s| c[0].assignment().len() == 6 && s[0].len() >= TOTAL,
    )
    .await;
    let last = last_offsets(&seen[0]);
    let mut b = member(&broker, "g", "orders", protocol()).await;
    poll_until(
        &mut [&mut a, &mut b],
        &mut seen,
        "two members split 3/3 and catch up",
        |c, s| {
            let (sa, sb) = (set(c[0]), set(c[1]));
            sa.len() == 3 && sb.len() == 3 && sa.is_disjoint(&sb) && caught_up(c, s, &last)
        },
    )
    .await;
    // Each record once per partition owner; a partition read by both was handed over in between.
    let unique: BTreeSet<(i32, i64)> = seen.iter().flatten().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(unique.len(), TOTAL, "every record was read");
    let a_events = a.events();
    assert!(
        matches!(a_events.first(), Some(RebalanceEvent::Assigned(p)) if p.len() == 6),
        "{a_events:?}"
    );
    assert!(
        a_events
            .iter()
            .any(|e| matches!(e, RebalanceEvent::Revoked(p) if p.len() == 3)),
        "cooperative: a revokes only the 3 partitions that move: {a_events:?}"
    );
    a.commit().await.expect("commit a");
    b.commit().await.expect("commit b");

    // b leaves: a gets all 6 again.
    let b_owned = b.assignment();
    b.close().await.expect("close b");
    let b_events = b.events();
    assert_eq!(b_events.last(), Some(&RebalanceEvent::Revoked(b_owned)), "{b_events:?}");
    let mut rest = vec![Vec::new()];
    poll_until(&mut [&mut a], &mut rest, "survivor owns 6", |c, _| {
        c[0].assignment().len() == 6
    })
    .await;
    assert!(
        rest[0].is_empty(),
        "b's partitions resume at b's commits: {:?}",
        rest[0].len()
    );

    // With a live member, reset-offsets is refused with Kafka's message.
    let out = broker.run_cli(&[
        "groups",
        "reset-offsets",
        "--group",
        "g",
        "--all-topics",
        "--to-earliest",
        "--execute",
    ]);
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("Assignments can only be reset if the group 'g' is inactive, but the current state is Stable."),
        "{}",
        out.stderr
    );
    // describe shows every partition owned by a with LAG 0.
    let (text, rows) = describe_rows(&broker, "g");
    assert_eq!(rows.len(), 6, "{text}");
    for row in &rows {
        assert_eq!(row[2], row[3], "CURRENT-OFFSET equals LOG-END-OFFSET: {text}");
        assert_eq!(row[4], "0", "LAG 0: {text}");
        assert_ne!(row[5], "-", "owned by a member: {text}");
    }
    a.close().await.expect("close a");

    // A new member resumes at the committed offsets: it reads exactly the 12 records produced now.
    produce(&broker, &dir, "orders", 60, 72);
    let mut c = member(&broker, "g", "orders", protocol()).await;
    let mut fresh = vec![Vec::new()];
    poll_until(
        &mut [&mut c],
        &mut fresh,
        "new member reads the 12 new records",
        |_, s| s[0].len() >= 12,
    )
    .await;
    let values: BTreeSet<String> = fresh[0]
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"")).into_owned())
        .collect();
    let expected: BTreeSet<String> = (60..72).map(|i| format!("v{i}")).collect();
    assert_eq!(values, expected);
    c.commit().await.expect("commit c");
    c.close().await.expect("close c");

    // Inactive now: the group has no active members, LAG 0, and reset --to-earliest works.
    let (text, _) = describe_rows(&broker, "g");
    assert!(text.contains("Consumer group 'g' has no active members."), "{text}");
    let out = broker.run_cli(&[
        "groups",
        "reset-offsets",
        "--group",
        "g",
        "--topic",
        "orders",
        "--to-earliest",
        "--execute",
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("NEW-OFFSET"), "{}", out.stdout);
    let (text, rows) = describe_rows(&broker, "g");
    let lag: i64 = rows.iter().map(|r| r[4].parse::<i64>().unwrap()).sum();
    assert!(rows.iter().all(|r| r[2] == "0"), "CURRENT-OFFSET 0: {text}");
    assert_eq!(lag, 72, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_members_split_and_hand_over() {
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    broker.create_topic("events", 6, &[]);
    const TOTAL: usize = 30;
    produce(&broker, &dir, "events", 0, 30);
    let protocol = || GroupProtocol::Consumer { server_assignor: None };
    let mut a = member(&broker, "k", "events", protocol()).await;
    let mut seen = vec![Vec::new(), Vec::new()];
    poll_until(
        &mut [&mut a],
        &mut seen[..1],
        "first member owns 6 and reads all",
        |c, s| c[0].assignment().len() == 6 && s[0].len() >= TOTAL,
    )
    .await;
    let last = last_offsets(&seen[0]);
    let mut b = member(&broker, "k", "events", protocol()).await;
    poll_until(
        &mut [&mut a, &mut b],
        &mut seen,
        "two members split 3/3 and catch up",
        |c, s| {
            let (sa, sb) = (set(c[0]), set(c[1]));
            sa.len() == 3 && sb.len() == 3 && sa.is_disjoint(&sb) && caught_up(c, s, &last)
        },
    )
    .await;
    let mut per_partition: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for r in seen.iter().flatten() {
        per_partition.entry(r.partition).or_default().insert(r.offset);
    }
    assert_eq!(per_partition.values().map(BTreeSet::len).sum::<usize>(), TOTAL);
    a.commit().await.expect("commit a");
    b.commit().await.expect("commit b");
    b.close().await.expect("close b");
    let mut rest = vec![Vec::new()];
    poll_until(&mut [&mut a], &mut rest, "survivor owns 6", |c, _| {
        c[0].assignment().len() == 6
    })
    .await;
    a.close().await.expect("close a");
    let (text, rows) = describe_rows(&broker, "k");
    assert_eq!(rows.len(), 6, "{text}");
    assert!(rows.iter().all(|r| r[4] == "0"), "{text}");
}

//! Consumer groups end to end with real third-party clients against `brook serve`: confluent-kafka
//! members joining, leaving and dying (SIGKILL, session timeout) with every message processed and
//! no partition held by two live members; committed offsets across SIGTERM and SIGKILL restarts;
//! kafka-python and aiokafka groups; static membership; cooperative-sticky; the KIP-848 consumer
//! protocol; `brook groups describe|list|delete`; and bad input answered with Kafka's error codes.
//!
//! The Python scripts in tests/clients/groups_*.py drive the clients, check the histories and
//! print one JSON summary line that we assert on. Every wait polls a condition against a deadline.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{require_python, run_python, Broker, TestDir};
use serde_json::Value;

/// Broker configs of every test: no 3 s wait before the first rebalance of a new group, and
/// KIP-848 members asked to heartbeat often so that assignments move without idling.
const BROKER_CONFIGS: [(&str, &str); 2] = [
    ("group.initial.rebalance.delay.ms", "0"),
    ("group.consumer.heartbeat.interval.ms", "500"),
];

/// The column headers of `brook groups describe`, as kafka-consumer-groups.sh prints them.
const DESCRIBE_COLUMNS: [&str; 9] = [
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
];

/// One row of `brook groups describe`, by column name.
type Row = BTreeMap<&'static str, String>;

/// Parses `brook groups describe` text: checks the header and returns the rows of `group`.
fn parse_describe(text: &str, group: &str) -> Vec<Row> {
    let header = text
        .lines()
        .find(|l| l.starts_with("GROUP "))
        .unwrap_or_else(|| panic!("no header line in describe output:\n{text}"));
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        DESCRIBE_COLUMNS,
        "describe header:\n{text}"
    );
    text.lines()
        .filter(|l| l.starts_with(&format!("{group} ")))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols.len(), DESCRIBE_COLUMNS.len(), "describe row {l:?}:\n{text}");
            DESCRIBE_COLUMNS
                .iter()
                .copied()
                .zip(cols.iter().map(|c| c.to_string()))
                .collect()
        })
        .collect()
}

fn num(row: &Row, col: &str) -> i64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} is not a number in {row:?}"))
}

/// Asserts rows cover partitions 0..n of `topic`, each committed at its log end (LAG 0).
fn assert_caught_up(rows: &[Row], topic: &str, partitions: i64, text: &str) {
    let parts: Vec<i64> = rows.iter().map(|r| num(r, "PARTITION")).collect();
    assert_eq!(
        parts,
        (0..partitions).collect::<Vec<_>>(),
        "one row per partition:\n{text}"
    );
    for r in rows {
        assert_eq!(r["TOPIC"], topic, "{text}");
        assert_eq!(num(r, "CURRENT-OFFSET"), num(r, "LOG-END-OFFSET"), "{text}");
        assert_eq!(r["LAG"], "0", "{text}");
    }
}

/// The partitions of a JSON array of numbers.
fn parts(v: &Value) -> BTreeSet<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect()
}

/// A JSON object {partition: offset} as a map.
fn offsets(v: &Value) -> BTreeMap<i64, i64> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.as_i64().unwrap()))
        .collect()
}

/// Three confluent-kafka members in one group on 6 partitions while members join, leave cleanly
/// and die (SIGKILL; the 6 s session timeout expires it): every acknowledged message processed,
/// no partition held by two live members at once, and `brook groups describe` reaching LAG 0.
#[test]
fn confluent_members_join_leave_and_die() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let mut broker = dir.start_broker(&BROKER_CONFIGS);
    broker.create_topic("members", 6, &[]);
    let s = run_python(
        &broker,
        "groups_confluent_members.py",
        &["run", &broker.addr, "members", "gm", env!("CARGO_BIN_EXE_brook"), "300"],
    );
    assert_eq!(s["produced"], 1500, "{s}");
    assert_eq!(s["unprocessed"], 0, "{s}");
    assert_eq!(s["processed_distinct"], 1500, "{s}");
    let phases: Vec<(String, usize)> = s["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["phase"].as_str().unwrap().to_string(),
                p["ownership"].as_object().unwrap().len(),
            )
        })
        .collect();
    let expected: Vec<(String, usize)> = [
        ("a alone", 1),
        ("b and c joined", 3),
        ("b left", 2),
        ("c died", 1),
        ("d joined", 2),
    ]
    .iter()
    .map(|(p, n)| (p.to_string(), *n))
    .collect();
    assert_eq!(phases, expected, "{s}");

    // `brook groups describe` while a and d were live: every partition owned, LAG 0, owners right.
    let text = s["describe"].as_str().unwrap();
    let rows = parse_describe(text, "gm");
    assert_caught_up(&rows, "members", 6, text);
    let log_ends: i64 = rows.iter().map(|r| num(r, "LOG-END-OFFSET")).sum();
    assert_eq!(log_ends, 1500, "{text}");
    for r in &rows {
        let client = &r["CLIENT-ID"];
        let member = client.strip_prefix("member-").expect("client id member-X");
        assert!(
            r["CONSUMER-ID"].starts_with(&format!("{client}-")),
            "librdkafka's member ids start with the client id: {text}"
        );
        assert_eq!(r["HOST"], "/127.0.0.1", "{text}");
        let owned = parts(&s["owners_at_describe"][member]);
        assert!(
            owned.contains(&num(r, "PARTITION")),
            "describe shows owner {member} as the client saw it: {text}\n{s}"
        );
    }

    // Everyone has left: the group is Empty, its offsets stay, LAG 0.
    let out = broker.run_cli(&["groups", "describe", "gm"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("Consumer group 'gm' has no active members."),
        "{}",
        out.stdout
    );
    let rows = parse_describe(&out.stdout, "gm");
    assert_caught_up(&rows, "members", 6, &out.stdout);
    assert!(rows
        .iter()
        .all(|r| r["CONSUMER-ID"] == "-" && r["HOST"] == "-" && r["CLIENT-ID"] == "-"));

    let out = broker.run_cli(&["groups", "list"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.lines().any(|l| l == "gm"), "{}", out.stdout);
    let out = broker.run_cli(&["groups", "list", "--state", "Empty"]);
    assert!(out.status.success(), "{}", out.stderr);
    let lines: Vec<Vec<&str>> = out.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines.first(), Some(&vec!["GROUP", "STATE"]), "{}", out.stdout);
    assert!(lines.contains(&vec!["gm", "Empty"]), "{}", out.stdout);
    let out = broker.run_cli(&["groups", "list", "--state", "Stable"]);
    assert!(!out.stdout.contains("gm"), "{}", out.stdout);
    broker.assert_running("the group tests");
}

/// Runs one `groups_confluent.py step`: checks the committed offsets against `expected`, reads at
/// least `min` records (or `all`), commits synchronously; returns the summary.
fn step(broker: &Broker, expected: Option<&Value>, min: &str) -> Value {
    let expected = expected.map_or_else(|| "-".to_string(), Value::to_string);
    run_python(
        broker,
        "groups_confluent.py",
        &["step", &broker.addr, "resume", "gr", &expected, min],
    )
}

/// Offsets committed synchronously survive a clean restart (SIGTERM) and a crash (SIGKILL): a
/// new member's committed() returns them and its first record on each partition is at them.
#[test]
fn committed_offsets_survive_sigterm_and_sigkill() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let mut broker = dir.start_broker(&BROKER_CONFIGS);
    broker.create_topic("resume", 3, &[]);
    let s = run_python(
        &broker,
        "groups_confluent.py",
        &["produce", &broker.addr, "resume", "0", "600"],
    );
    assert_eq!(s["acked"], 600, "{s}");

    let s1 = step(&broker, None, "200");
    assert!(s1["before"].as_object().unwrap().values().all(|v| v == -1001), "{s1}");
    let after1 = s1["after"].clone();
    assert!(
        offsets(&after1).values().map(|o| (*o).max(0)).sum::<i64>() >= 200,
        "{s1}"
    );

    broker.stop_clean();
    broker = dir.start_broker(&BROKER_CONFIGS);
    let s2 = step(&broker, Some(&after1), "200");
    assert_eq!(s2["before"], after1, "committed offsets after SIGTERM: {s2}");
    for (p, o) in offsets(&s2["first"]) {
        let committed = offsets(&after1)[&p];
        assert_eq!(o, committed.max(0), "first record of partition {p} after SIGTERM: {s2}");
    }
    let after2 = s2["after"].clone();

    broker.kill();
    broker = dir.start_broker(&BROKER_CONFIGS);
    let s3 = step(&broker, Some(&after2), "all");
    assert_eq!(s3["before"], after2, "committed offsets after SIGKILL: {s3}");
    for (p, o) in offsets(&s3["first"]) {
        let committed = offsets(&after2)[&p];
        assert_eq!(o, committed.max(0), "first record of partition {p} after SIGKILL: {s3}");
    }
    let resumed_from: i64 = offsets(&after2).values().map(|o| (*o).max(0)).sum();
    assert_eq!(s3["consumed"], 600 - resumed_from, "{s3}");
    assert_eq!(s3["after"], s3["ends"], "{s3}");

    let out = broker.run_cli(&["groups", "describe", "gr"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("Consumer group 'gr' has no active members."),
        "{}",
        out.stdout
    );
    assert_caught_up(&parse_describe(&out.stdout, "gr"), "resume", 3, &out.stdout);
}

/// Asserts the summary of a two-member Python client group: a 3/3 split, every message consumed,
/// commits equal to the log end offsets.
fn assert_python_group(s: &Value, count: u64) {
    assert_eq!(s["consumed"], count, "{s}");
    let (a, b) = (parts(&s["split"]["a"]), parts(&s["split"]["b"]));
    assert_eq!((a.len(), b.len()), (3, 3), "{s}");
    assert!(a.is_disjoint(&b), "{s}");
    assert!(s["per_member"]["a"].as_u64().unwrap() > 0, "{s}");
    assert!(s["per_member"]["b"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["committed"], s["ends"], "{s}");
    assert_eq!(offsets(&s["ends"]).values().sum::<i64>(), count as i64, "{s}");
}

/// kafka-python: two members (a thread each) split the topic 3/3, every message is consumed by its
/// partition's owner, and the offsets committed equal the log end offsets.
#[test]
fn kafka_python_group_splits_and_commits() {
    if !require_python(&["kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&BROKER_CONFIGS);
    broker.create_topic("kp", 6, &[]);
    let s = run_python(&broker, "groups_kafka_python.py", &[&broker.addr, "kp", "gkp", "1000"]);
    assert_python_group(&s, 1000);
}

/// aiokafka: two members (a task each) split the topic 3/3, every message is consumed by its
/// partition's owner, and the offsets committed equal the log end offsets.
#[test]
fn aiokafka_group_splits_and_commits() {
    if !require_python(&["aiokafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&BROKER_CONFIGS);
    broker.create_topic("aio", 6, &[]);
    let s = run_python(&broker, "groups_aiokafka.py", &[&broker.addr, "aio", "gaio", "1000"]);
    assert_python_group(&s, 1000);
}

/// A static member (group.instance.id) closed without LeaveGroup and restarted rejoins without a
/// rebalance: the other member gets no callbacks; the new instance gets the same partitions and
/// resumes at the committed offsets.
#[test]
fn static_member_rejoins_without_rebalance() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&BROKER_CONFIGS);
    broker.create_topic("static", 6, &[]);
    let s = run_python(
        &broker,
        "groups_confluent.py",
        &["static", &broker.addr, "static", "gs"],
    );
    assert_eq!(parts(&s["a_partitions"]).len(), 3, "{s}");
    assert_eq!(
        s["a2_partitions"], s["a_partitions"],
        "same partitions after the restart: {s}"
    );
    assert_eq!(
        s["b_callbacks_during_restart"],
        serde_json::json!([]),
        "no rebalance for the other member: {s}"
    );
    assert_eq!(
        s["a2_callbacks"],
        serde_json::json!([["assign", s["a_partitions"]]]),
        "{s}"
    );
    assert_eq!(s["resumed_at_commit"], true, "{s}");
}

/// cooperative-sticky: when a second member joins, the first revokes only the partitions that
/// move to it, never all of them.
#[test]
fn cooperative_sticky_revokes_only_moving_partitions() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&BROKER_CONFIGS);
    broker.create_topic("coop", 6, &[]);
    let s = run_python(
        &broker,
        "groups_confluent.py",
        &["cooperative", &broker.addr, "coop", "gc"],
    );
    assert_eq!(s["consumed"], 600, "{s}");
    let (a, b) = (parts(&s["a_partitions"]), parts(&s["b_partitions"]));
    assert_eq!((a.len(), b.len()), (3, 3), "{s}");
    let mut revoked = BTreeSet::new();
    let mut assigned_a = BTreeSet::new();
    for cb in s["a_callbacks"].as_array().unwrap() {
        let ps = parts(&cb[1]);
        match cb[0].as_str().unwrap() {
            "revoke" => {
                assert!(ps.len() < 6, "a revoked everything: {s}");
                revoked.extend(ps);
            }
            "assign" => assigned_a.extend(ps),
            other => panic!("unexpected callback {other}: {s}"),
        }
    }
    assert_eq!(revoked, b, "a revoked exactly what moved to b: {s}");
    assert_eq!(assigned_a, (0..6).collect(), "a's first assignment was everything: {s}");
    let b_assigned: BTreeSet<i64> = s["b_callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|cb| assert_eq!(cb[0], "assign", "{s}"))
        .flat_map(|cb| parts(&cb[1]))
        .collect();
    assert_eq!(b_assigned, b, "{s}");
}

/// group.protocol=consumer (KIP-848) with librdkafka: two members split the topic, every message
/// is consumed.
#[test]
fn consumer_protocol_group_splits() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&BROKER_CONFIGS);
    broker.create_topic("k848", 6, &[]);
    let s = run_python(
        &broker,
        "groups_confluent.py",
        &["consumer-protocol", &broker.addr, "k848", "gk"],
    );
    assert_eq!(s["consumed"], 600, "{s}");
    let (a, b) = (parts(&s["a_partitions"]), parts(&s["b_partitions"]));
    assert_eq!((a.len(), b.len()), (3, 3), "{s}");
    assert!(a.is_disjoint(&b), "{s}");
    assert!(s["b_consumed_new"].as_u64().unwrap() > 0, "{s}");
    let out = broker.run_cli(&["groups", "describe", "gk"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_caught_up(&parse_describe(&out.stdout, "gk"), "k848", 6, &out.stdout);
}

/// Stale generations, unknown members and groups, bad joins and deleting a group with members get
/// Kafka's error codes, and a refused commit or delete loses no committed offset.
#[test]
fn bad_group_requests_get_kafka_error_codes() {
    if !require_python(&["socket"]) {
        return;
    }
    let dir = TestDir::new();
    let mut broker = dir.start_broker(&BROKER_CONFIGS);
    broker.create_topic("bad", 2, &[]);
    let s = run_python(&broker, "groups_bad_input.py", &[&broker.addr, "gbad", "bad"]);
    let expect = |field: &str, want: Value| assert_eq!(s[field], want, "{field}: {s}");
    expect("generations", serde_json::json!([1, 2, 2]));
    expect("commit_current", 0.into());
    expect("commit_stale_generation", 22.into()); // ILLEGAL_GENERATION
    expect("commit_unknown_member", 25.into()); // UNKNOWN_MEMBER_ID
    expect("heartbeat_stale_generation", 22.into());
    expect("heartbeat_current", 0.into());
    expect("offset_after_rejected_commits", serde_json::json!([5, 0]));
    expect("commit_new_generation", 0.into());
    expect("offset_after_commit", serde_json::json!([7, 0]));
    expect("join_low_session_timeout", 26.into()); // INVALID_SESSION_TIMEOUT
    expect("join_no_protocols", 23.into()); // INCONSISTENT_GROUP_PROTOCOL
    expect("join_other_protocol_type", 23.into());
    expect("delete_non_empty", 68.into()); // NON_EMPTY_GROUP
    expect("delete_unknown", 69.into()); // GROUP_ID_NOT_FOUND
    expect("offset_after_refused_delete", serde_json::json!([7, 0]));
    expect("leave", serde_json::json!([0, 0]));
    expect("delete_empty", 0.into());
    expect("offset_after_delete", serde_json::json!([-1, 0]));
    for (field, state, members) in [
        ("describe_unknown", "Dead", 0),
        ("describe_group", "Stable", 2),
        ("describe_after_leave", "Empty", 0),
        ("describe_after_delete", "Dead", 0),
    ] {
        assert_eq!(s[field]["error"], 0, "{field}: {s}");
        assert_eq!(s[field]["state"], state, "{field}: {s}");
        assert_eq!(s[field]["members"], members, "{field}: {s}");
    }

    // The CLI says what kafka-consumer-groups.sh says about an unknown group.
    let out = broker.run_cli(&["groups", "describe", "no-such-group"]);
    assert!(
        out.stderr.contains("Consumer group 'no-such-group' does not exist."),
        "{}",
        out.stderr
    );
    broker.assert_running("bad group requests");
}

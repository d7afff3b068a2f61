//! End-to-end tests of Kafka transactions (KIP-98) against `brook serve`: confluent-kafka
//! commits and aborts across partitions and fences a zombie producer; a consume-transform-produce
//! worker is killed with SIGKILL again and again and still writes every input exactly once; the
//! broker itself is killed mid-transaction and during a commit; and Brook's own transactional
//! producer, `brook transactions` and `brook topics describe` are checked against the same broker.
//! Records are read back by confluent-kafka (tests/clients/txn_read.py) with both isolation levels.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brook_broker::client::{
    Assignment, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, StartOffset,
};
use common::{parse_summary, python_cmd, require_python, run_python, Broker, Streaming, TestDir};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Partitions of every test topic.
const PARTITIONS: u32 = 3;
/// A hang guard for conditions polled against the broker (a deadline, not a threshold).
const SETTLE_DEADLINE: Duration = Duration::from_secs(300);
/// Input records of the consume-transform-produce test.
const CTP_RECORDS: usize = 4_000;
/// How many times the consume-transform-produce worker is killed.
const CTP_KILLS: usize = 8;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn brook_json(broker: &Broker, args: &[&str]) -> Value {
    let out = broker.cli_ok(args);
    parse_summary(&out.stdout, &args.join(" "))
}

/// Every value of a topic as confluent-kafka reads it with `isolation`, after `min_count` records.
fn read(broker: &Broker, topic: &str, isolation: &str, min_count: usize) -> Vec<String> {
    let s = run_python(
        broker,
        "txn_read.py",
        &[&broker.addr, topic, isolation, &min_count.to_string()],
    );
    let values: Vec<String> = s["values"]
        .as_array()
        .unwrap_or_else(|| panic!("no values in {s}"))
        .iter()
        .map(|v| v.as_str().unwrap_or("<null>").to_string())
        .collect();
    assert_eq!(s["count"], values.len(), "{s}");
    values
}

/// Asserts that `values` holds each of `expected` exactly once and nothing else.
fn assert_exactly_once(values: &[String], expected: &[String], what: &str) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        duplicated.is_empty(),
        "{what}: values read more than once: {duplicated:?}"
    );
    let missing: Vec<_> = expected
        .iter()
        .filter(|e| !counts.contains_key(e.as_str()))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} values missing, e.g. {missing:?}",
        expected.iter().filter(|e| !counts.contains_key(e.as_str())).count(),
        expected.len()
    );
    assert_eq!(values.len(), expected.len(), "{what}: unexpected extra values");
}

fn named(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn txn_config(addr: &str, transactional_id: &str) -> ProducerConfig {
    let mut config = ProducerConfig::new(ClientConfig::new([addr.to_string()]));
    config.transactional_id = Some(transactional_id.to_string());
    config.max_block_ms = 120_000;
    config
}

async fn send_all(producer: &Producer, topic: &str, prefix: &str, n: usize) {
    for i in 0..n {
        let record = ProducerRecord {
            partition: Some((i % PARTITIONS as usize) as i32),
            ..ProducerRecord::new(topic, format!("{prefix}-{i}"))
        };
        producer.send(record).await.expect("send");
    }
}

/// Polls `brook topics describe --json` until no partition of `topic` has an open transaction.
fn wait_until_no_open_transactions(broker: &Broker, topic: &str) {
    let end = Instant::now() + SETTLE_DEADLINE;
    loop {
        let d = brook_json(broker, &["topics", "describe", topic, "--json"]);
        let parts = d["partitions"].as_array().expect("partitions").clone();
        let open: usize = parts
            .iter()
            .map(|p| p["open_transactions"].as_array().map_or(usize::MAX, Vec::len))
            .sum();
        if open == 0 {
            return;
        }
        assert!(
            Instant::now() < end,
            "{topic} still has open transactions after {SETTLE_DEADLINE:?}: {d}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until every partition's last stable offset reaches its high watermark: the markers
/// of every ended transaction are durable, so read_committed shows the final outcome.
fn wait_until_stable(rt: &tokio::runtime::Runtime, addr: &str, topic: &str) {
    rt.block_on(async {
        let mut consumers = Vec::new();
        for isolation_level in [0, 1] {
            let mut config = ConsumerConfig::new(ClientConfig::new([addr.to_string()]));
            config.isolation_level = isolation_level;
            let mut consumer = Consumer::new(config).await.expect("consumer");
            consumer.assign(assignments(topic)).await.expect("assign");
            consumers.push(consumer);
        }
        let end = Instant::now() + SETTLE_DEADLINE;
        loop {
            let high = consumers[0].end_offsets().await.expect("high watermarks");
            let stable = consumers[1].end_offsets().await.expect("last stable offsets");
            if high == stable {
                return;
            }
            assert!(
                Instant::now() < end,
                "{topic} is not stable: {stable:?} against {high:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

fn assignments(topic: &str) -> Vec<Assignment> {
    (0..PARTITIONS as i32)
        .map(|partition| Assignment {
            topic: topic.to_string(),
            partition,
            start: StartOffset::Earliest,
        })
        .collect()
}

#[test]
fn confluent_commits_are_visible_and_aborts_only_to_read_uncommitted() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    broker.create_topic("txn-basic", PARTITIONS, &[]);
    let s = run_python(&broker, "txn_basic.py", &[&broker.addr, "txn-basic", "3", "300"]);
    assert_eq!(s["read_committed"], 600, "{s}");
    assert_eq!(s["read_uncommitted"], 900, "{s}");
    assert_eq!(s["partitions"], PARTITIONS, "{s}");
    // Three transactions end with a marker in each of the three partitions; the last markers
    // come after the last record, so at least the first two of each partition show as gaps.
    assert!(
        s["marker_offsets"].as_u64().unwrap() >= 2 * u64::from(PARTITIONS),
        "{s}"
    );
}

#[test]
fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    broker.create_topic("txn-fence", PARTITIONS, &[]);
    let s = run_python(&broker, "txn_fencing.py", &[&broker.addr, "txn-fence", "3", "30"]);
    assert_eq!(s["commit_fatal"], true, "a fencing error is fatal: {s}");
    assert_eq!(s["read_committed"], 30, "{s}");
    assert_eq!(s["read_uncommitted"], 60, "{s}");
}

/// Runs the worker until `kill_at` matches a stderr line, kills it with SIGKILL, and returns
/// its whole stderr.
fn run_worker_until(broker: &Broker, hold_at: usize, kill_at: &str) -> Vec<String> {
    let hold = hold_at.to_string();
    let args = [
        broker.addr.as_str(),
        "ctp-in",
        "ctp-out",
        "ctp-group",
        "ctp-worker",
        "40",
        hold.as_str(),
    ];
    let mut worker = Streaming::spawn(python_cmd("txn_ctp.py", &args), "txn_ctp.py");
    worker.wait_for_line(SETTLE_DEADLINE, kill_at, |line| {
        line == kill_at || line.starts_with(&format!("{kill_at} "))
    });
    if let Some(child) = worker.guard.0.as_mut() {
        child.kill().expect("SIGKILL the worker");
    }
    let out = worker.finish("txn_ctp.py after SIGKILL");
    out.stderr.lines().map(str::to_string).collect()
}

/// Whether the last transaction a worker began was not committed when it died.
fn died_mid_transaction(stderr: &[String]) -> bool {
    let Some(last) = stderr.iter().rev().find_map(|l| l.strip_prefix("begin ")) else {
        return false;
    };
    !stderr.iter().any(|l| l.starts_with(&format!("committed {last} ")))
}

#[test]
fn consume_transform_produce_killed_again_and_again_writes_each_input_exactly_once() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    broker.create_topic("ctp-in", PARTITIONS, &[]);
    broker.create_topic("ctp-out", PARTITIONS, &[]);
    let input = dir.file("input.txt");
    let lines: Vec<String> = named("in", CTP_RECORDS);
    std::fs::write(&input, lines.join("\n") + "\n").expect("write input");
    broker.cli_ok(&["produce", "--topic", "ctp-in", "--file", input.to_str().unwrap()]);

    let seed: u64 = rand::random();
    eprintln!("consume-transform-produce kill points from seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Holds are kills inside a transaction by construction (records flushed, not committed);
    // the others land wherever the worker happens to be.
    let mut phases = vec![
        "holding",
        "holding",
        "holding",
        "begin",
        "begin",
        "produced",
        "committed",
        "committed",
    ];
    phases.truncate(CTP_KILLS);
    phases.shuffle(&mut rng);
    let mut mid_transaction = 0;
    for phase in &phases {
        let k: usize = rng.gen_range(1..=5);
        let hold_at = if *phase == "holding" { k } else { 0 };
        let stderr = run_worker_until(&broker, hold_at, &format!("{phase} {k}"));
        if died_mid_transaction(&stderr) {
            mid_transaction += 1;
        }
    }
    eprintln!("{mid_transaction} of {CTP_KILLS} kills landed mid-transaction");
    assert!(mid_transaction >= 3, "every hold is a kill mid-transaction");

    let s = run_python(
        &broker,
        "txn_ctp.py",
        &[&broker.addr, "ctp-in", "ctp-out", "ctp-group", "ctp-worker", "40", "0"],
    );
    assert!(s["records"].as_u64().unwrap() > 0, "the last run had work left: {s}");
    let out = read(&broker, "ctp-out", "read_committed", CTP_RECORDS);
    let expected: Vec<String> = lines.iter().map(|l| format!("out-{l}")).collect();
    assert_exactly_once(&out, &expected, "ctp-out read_committed");
    // Aborted attempts are in the log: read_uncommitted sees more than the input.
    let all = read(&broker, "ctp-out", "read_uncommitted", CTP_RECORDS);
    assert!(all.len() >= CTP_RECORDS, "{} records read uncommitted", all.len());
}

#[test]
fn brook_producer_commits_are_visible_aborts_are_not_and_the_cli_shows_open_transactions() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    broker.create_topic("brook-txn", PARTITIONS, &[]);
    let rt = runtime();
    let producer = rt.block_on(async {
        let producer = Producer::new(txn_config(&broker.addr, "brook-tx"))
            .await
            .expect("producer");
        producer.init_transactions().await.expect("init_transactions");
        producer.begin_transaction().expect("begin");
        send_all(&producer, "brook-txn", "commit", 30).await;
        producer.commit_transaction().await.expect("commit");
        producer.begin_transaction().expect("begin");
        send_all(&producer, "brook-txn", "abort", 30).await;
        producer.flush().await.expect("flush");
        producer
    });

    // The open transaction as the CLI shows it.
    let listed = brook_json(&broker, &["transactions", "list", "--format", "json"]);
    let entry = listed
        .as_array()
        .and_then(|l| l.iter().find(|t| t["transactional_id"] == "brook-tx"))
        .unwrap_or_else(|| panic!("brook-tx not listed: {listed}"))
        .clone();
    assert_eq!(entry["state"], "Ongoing", "{listed}");
    let ongoing = brook_json(
        &broker,
        &["transactions", "list", "--state", "ongoing", "--format", "json"],
    );
    assert_eq!(ongoing.as_array().map(Vec::len), Some(1), "{ongoing}");
    let described = brook_json(&broker, &["transactions", "describe", "brook-tx", "--format", "json"]);
    assert_eq!(described["state"], "Ongoing", "{described}");
    assert_eq!(described["producer_id"], entry["producer_id"], "{described}");
    let partitions: Vec<&str> = described["topic_partitions"]
        .as_array()
        .expect("topic_partitions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        partitions,
        vec!["brook-txn-0", "brook-txn-1", "brook-txn-2"],
        "{described}"
    );
    let table = broker.cli_ok(&["transactions", "describe", "brook-tx"]).stdout;
    assert!(table.starts_with("CoordinatorId"), "{table}");
    assert!(table.contains("Ongoing"), "{table}");
    let topic = broker.cli_ok(&["topics", "describe", "brook-txn"]).stdout;
    assert_eq!(topic.matches("OpenTransactions: 1 (producer ").count(), 3, "{topic}");
    let producers = brook_json(
        &broker,
        &[
            "transactions",
            "describe-producers",
            "--topic",
            "brook-txn",
            "--format",
            "json",
        ],
    );
    let open_starts: Vec<i64> = producers
        .as_array()
        .expect("producers")
        .iter()
        .filter_map(|p| p["current_transaction_start_offset"].as_i64())
        .filter(|o| *o >= 0)
        .collect();
    assert_eq!(open_starts.len(), 3, "one open transaction per partition: {producers}");
    // A read_committed reader stops at the open transaction: only the first transaction shows.
    assert_exactly_once(
        &read(&broker, "brook-txn", "read_committed", 30),
        &named("commit", 30),
        "read_committed while open",
    );

    rt.block_on(producer.abort_transaction()).expect("abort");
    wait_until_no_open_transactions(&broker, "brook-txn");
    let end = Instant::now() + SETTLE_DEADLINE;
    while brook_json(&broker, &["transactions", "describe", "brook-tx", "--format", "json"])["state"] != "CompleteAbort"
    {
        assert!(Instant::now() < end, "brook-tx never reached CompleteAbort");
        std::thread::sleep(Duration::from_millis(100));
    }
    let topic = broker.cli_ok(&["topics", "describe", "brook-txn"]).stdout;
    assert_eq!(topic.matches("OpenTransactions: 0").count(), 3, "{topic}");

    rt.block_on(async {
        producer.begin_transaction().expect("begin");
        send_all(&producer, "brook-txn", "after", 30).await;
        producer.commit_transaction().await.expect("commit");
    });
    let committed = [named("commit", 30), named("after", 30)].concat();
    assert_exactly_once(
        &read(&broker, "brook-txn", "read_committed", 60),
        &committed,
        "read_committed",
    );
    assert_exactly_once(
        &read(&broker, "brook-txn", "read_uncommitted", 90),
        &[committed.clone(), named("abort", 30)].concat(),
        "read_uncommitted",
    );
    // Brook's own consumer skips the aborted transaction the same way.
    let brook_read = rt.block_on(read_committed_with_brook(&broker.addr, "brook-txn", 60));
    assert_exactly_once(&brook_read, &committed, "Brook's read_committed consumer");
    rt.block_on(producer.close()).expect("close");
}

/// Reads a topic with Brook's consumer at read_committed until `n` records arrived.
async fn read_committed_with_brook(addr: &str, topic: &str, n: usize) -> Vec<String> {
    let mut config = ConsumerConfig::new(ClientConfig::new([addr.to_string()]));
    config.isolation_level = 1;
    let mut consumer = Consumer::new(config).await.expect("consumer");
    consumer.assign(assignments(topic)).await.expect("assign");
    let mut out = Vec::new();
    let end = Instant::now() + SETTLE_DEADLINE;
    while out.len() < n {
        assert!(Instant::now() < end, "only {} of {n} records read", out.len());
        for r in consumer.poll(Duration::from_millis(500)).await.expect("poll") {
            out.push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned());
        }
    }
    out
}

#[test]
fn a_broker_killed_mid_transaction_aborts_it_when_the_producer_comes_back() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let mut broker = dir.start_broker(&[]);
    broker.create_topic("crash-txn", PARTITIONS, &[]);
    let rt = runtime();
    rt.block_on(async {
        let producer = Producer::new(txn_config(&broker.addr, "crash-tx"))
            .await
            .expect("producer");
        producer.init_transactions().await.expect("init");
        producer.begin_transaction().expect("begin");
        send_all(&producer, "crash-txn", "lost", 30).await;
        producer.flush().await.expect("flush");
    });
    broker.kill();
    let broker = Broker::start(&dir.data_dir(), dir.path(), &[]);
    // The open transaction survived the crash: nothing of it is committed.
    assert!(read(&broker, "crash-txn", "read_committed", 0).is_empty());
    rt.block_on(async {
        let producer = Producer::new(txn_config(&broker.addr, "crash-tx"))
            .await
            .expect("producer");
        producer
            .init_transactions()
            .await
            .expect("init fences and aborts the old transaction");
        producer.begin_transaction().expect("begin");
        send_all(&producer, "crash-txn", "after", 6).await;
        producer.commit_transaction().await.expect("commit");
    });
    assert_exactly_once(
        &read(&broker, "crash-txn", "read_committed", 6),
        &named("after", 6),
        "read_committed",
    );
    assert_exactly_once(
        &read(&broker, "crash-txn", "read_uncommitted", 36),
        &[named("lost", 30), named("after", 6)].concat(),
        "read_uncommitted",
    );
}

#[test]
fn a_broker_killed_mid_transaction_aborts_it_when_it_times_out() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let mut broker = dir.start_broker(&[]);
    broker.create_topic("timeout-txn", PARTITIONS, &[]);
    let rt = runtime();
    rt.block_on(async {
        let mut config = txn_config(&broker.addr, "timeout-tx");
        config.transaction_timeout_ms = 2_000;
        let producer = Producer::new(config).await.expect("producer");
        producer.init_transactions().await.expect("init");
        producer.begin_transaction().expect("begin");
        send_all(&producer, "timeout-txn", "lost", 30).await;
        producer.flush().await.expect("flush");
    });
    broker.kill();
    // Look for timed-out transactions often, so that the abort comes soon after the timeout.
    let broker = Broker::start(
        &dir.data_dir(),
        dir.path(),
        &[("transaction.abort.timed.out.transaction.cleanup.interval.ms", "200")],
    );
    // Nobody comes back for the transaction: the coordinator aborts it once it times out.
    wait_until_no_open_transactions(&broker, "timeout-txn");
    let input = dir.file("later.txt");
    std::fs::write(&input, "later-0\nlater-1\nlater-2\n").expect("write");
    broker.cli_ok(&["produce", "--topic", "timeout-txn", "--file", input.to_str().unwrap()]);
    assert_exactly_once(
        &read(&broker, "timeout-txn", "read_committed", 3),
        &named("later", 3),
        "read_committed",
    );
    let listed = brook_json(&broker, &["transactions", "list", "--format", "json"]);
    let state = listed
        .as_array()
        .and_then(|l| l.iter().find(|t| t["transactional_id"] == "timeout-tx"))
        .map(|t| t["state"].clone());
    assert_eq!(state, Some(Value::from("CompleteAbort")), "{listed}");
}

#[test]
fn a_broker_killed_during_a_commit_shows_all_of_the_transaction_or_none() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let mut broker = dir.start_broker(&[]);
    broker.create_topic("commit-crash", PARTITIONS, &[]);
    let rt = runtime();
    let producer = rt.block_on(async {
        let producer = Producer::new(txn_config(&broker.addr, "commit-crash-tx"))
            .await
            .expect("producer");
        producer.init_transactions().await.expect("init");
        producer.begin_transaction().expect("begin");
        send_all(&producer, "commit-crash", "maybe", 30).await;
        producer.flush().await.expect("flush");
        Arc::new(producer)
    });
    let committing = {
        let producer = producer.clone();
        rt.spawn(async move { producer.commit_transaction().await })
    };
    broker.kill();
    committing.abort();
    let broker = Broker::start(&dir.data_dir(), dir.path(), &[]);
    rt.block_on(async {
        let again = Producer::new(txn_config(&broker.addr, "commit-crash-tx"))
            .await
            .expect("producer");
        // Completes a commit the coordinator had logged, or aborts the transaction.
        again.init_transactions().await.expect("init");
    });
    wait_until_no_open_transactions(&broker, "commit-crash");
    wait_until_stable(&rt, &broker.addr, "commit-crash");
    let visible = read(&broker, "commit-crash", "read_committed", 0);
    eprintln!(
        "after the crash the transaction was {}",
        if visible.is_empty() { "aborted" } else { "committed" }
    );
    if !visible.is_empty() {
        assert_exactly_once(&visible, &named("maybe", 30), "a committed transaction");
    }
    assert_exactly_once(
        &read(&broker, "commit-crash", "read_uncommitted", 30),
        &named("maybe", 30),
        "read_uncommitted",
    );
}

#[test]
fn bench_produce_runs_in_transactions() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    let s = brook_json(
        &broker,
        &[
            "bench",
            "produce",
            "--topic",
            "bench-txn",
            "--partitions",
            "3",
            "--num-records",
            "2000",
            "--record-size",
            "50",
            "--transactional-id",
            "bench-tx",
            "--transaction-records",
            "500",
            "--json",
        ],
    );
    assert_eq!(s["records"], 2000, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    assert_eq!(s["transactions"], 4, "{s}");
    assert_eq!(read(&broker, "bench-txn", "read_committed", 2000).len(), 2000);
}

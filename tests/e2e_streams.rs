//! End-to-end tests of continuous queries: a `CREATE STREAM ... AS SELECT` issued with
//! `brook sql` against a running `brook serve` (it reaches the server's job manager through the
//! catalog topic), records produced with `brook produce`, a `kill -9` of the server in the middle
//! of the stream, a restart on the same data directory, more records; the output topic then holds
//! the output of every input (at least once), in order per key. With
//! `processing_guarantee = 'exactly_once'` the server is killed again and again at random
//! points, and confluent-kafka reading read_committed sees each input's output exactly once.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use brook_broker::client::{Admin, ClientConfig, OffsetSpec};
use common::{consume_json, require_python, run_python, run_with_stdin, Broker, ChildGuard, TestDir};
use rand::{Rng, SeedableRng};

/// How long the output may take to appear (a hang guard, not a threshold).
const OUTPUT_DEADLINE: Duration = Duration::from_secs(120);
/// Keys of the input records.
const KEYS: [&str; 3] = ["alice", "bob", "carol"];

fn sql(broker: &Broker, statement: &str) -> String {
    broker.cli_ok(&["sql", statement]).stdout
}

/// Writes the input records `from..to` into a file, one `key<TAB>value` line each: key
/// `KEYS[n % 3]`, value `{"n": n, "user": key}`.
fn input_file(dir: &TestDir, from: u64, to: u64) -> PathBuf {
    let path = dir.file(&format!("input-{from}-{to}.txt"));
    let lines: String = (from..to)
        .map(|n| {
            let key = KEYS[(n % 3) as usize];
            format!("{key}\t{{\"n\": {n}, \"user\": \"{key}\"}}\n")
        })
        .collect();
    std::fs::write(&path, lines).unwrap();
    path
}

/// `brook produce` of key-separated lines into `clicks`.
fn produce_command(broker: &Broker) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook"));
    cmd.args([
        "produce",
        "--bootstrap-server",
        &broker.addr,
        "--topic",
        "clicks",
        "--key-separator",
    ]);
    cmd
}

/// Produces records `from..to` (see [`input_file`]).
fn produce(dir: &TestDir, broker: &Broker, from: u64, to: u64) {
    let path = input_file(dir, from, to);
    let out = run_with_stdin(produce_command(broker), Some(&path), "brook produce");
    assert!(out.status.success(), "brook produce failed: {}", out.stderr);
}

/// The records of `topic` (read_uncommitted, with `brook consume`) as (key, value as JSON), in
/// offset order per partition.
fn records(broker: &Broker, topic: &str) -> Vec<(serde_json::Value, serde_json::Value)> {
    consume_json(&broker.addr, topic)
        .into_iter()
        .map(|record| {
            let value = serde_json::from_str(record["value"].as_str().expect("a text value")).expect("a JSON value");
            (record["key"].clone(), value)
        })
        .collect()
}

/// The output topic's records as (key, n), in offset order per partition.
fn output(broker: &Broker) -> Vec<(String, u64)> {
    records(broker, "big")
        .into_iter()
        .map(|(key, value)| {
            (
                key.as_str().expect("a key").to_string(),
                value["n"].as_u64().expect("n"),
            )
        })
        .collect()
}

/// The output expected for inputs `0..to`: those with n % 4 != 0, keyed by user.
fn expected(to: u64) -> Vec<(String, u64)> {
    (0..to)
        .filter(|n| n % 4 != 0)
        .map(|n| (KEYS[(n % 3) as usize].to_string(), n))
        .collect()
}

/// Polls the output until every expected record is in it, then returns it.
fn wait_for_output(broker: &mut Broker, to: u64) -> Vec<(String, u64)> {
    let want = expected(to);
    let end = Instant::now() + OUTPUT_DEADLINE;
    loop {
        broker.assert_running("waiting for the query's output");
        let got = output(broker);
        if want.iter().all(|w| got.contains(w)) {
            return got;
        }
        assert!(
            Instant::now() < end,
            "the output still lacks {:?} after {OUTPUT_DEADLINE:?}",
            want.iter().filter(|w| !got.contains(w)).take(10).collect::<Vec<_>>()
        );
    }
}

/// Polls the query's group until its committed offsets over `clicks` add up to `n`.
fn wait_committed(broker: &mut Broker, n: u64) {
    let end = Instant::now() + OUTPUT_DEADLINE;
    loop {
        broker.assert_running("waiting for the query's commits");
        let out = broker.cli_ok(&["groups", "describe", "brook-query-csas_big", "--json"]);
        let committed: u64 = out
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .flat_map(|g| g["partitions"].as_array().cloned().unwrap_or_default())
            .filter(|p| p["topic"] == "clicks")
            .filter_map(|p| p["current_offset"].as_u64())
            .sum();
        if committed >= n {
            return;
        }
        assert!(
            Instant::now() < end,
            "the query committed {committed} of {n} input offsets: {}",
            out.stdout
        );
    }
}

#[test]
fn a_continuous_query_survives_kill_9_and_resumes_without_losing_records() {
    let dir = TestDir::new();
    let mut broker = dir.start_broker(&[("offsets.topic.num.partitions", "1")]);
    broker.create_topic("clicks", 2, &[]);
    let created = sql(
        &broker,
        "CREATE STREAM clicks (n BIGINT, user TEXT) WITH (topic = 'clicks', format = 'json')",
    );
    assert!(created.contains("Created stream clicks"), "{created}");
    let created = sql(
        &broker,
        "CREATE STREAM big WITH (topic = 'big', format = 'json', key = 'user', partitions = 1) AS \
         SELECT user, n FROM clicks WHERE n % 4 <> 0",
    );
    assert!(created.contains("csas_big"), "{created}");

    produce(&dir, &broker, 0, 200);
    wait_for_output(&mut broker, 200);
    // The job commits input offsets only after its output is acknowledged: wait for the commit
    // of all 200, so that anything replayed after the kill comes from the next 200.
    wait_committed(&mut broker, 200);
    // More input, and the server dies while the query works through it.
    produce(&dir, &broker, 200, 400);
    broker.kill();

    let mut broker = Broker::start(&dir.data_dir(), dir.path(), &[("offsets.topic.num.partitions", "1")]);
    produce(&dir, &broker, 400, 600);
    let got = wait_for_output(&mut broker, 600);

    // Every input's output is there; per key, the first appearances are in input order, and any
    // duplicate is a replay of inputs after the last commit before the kill.
    let mut by_key: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (key, n) in &got {
        by_key.entry(key.as_str()).or_default().push(*n);
    }
    for (key, ns) in &by_key {
        let mut firsts = Vec::new();
        for n in ns {
            if !firsts.contains(n) {
                firsts.push(*n);
            }
        }
        assert!(
            firsts.windows(2).all(|w| w[0] < w[1]),
            "key {key} out of order: {firsts:?}"
        );
        let duplicates: Vec<u64> = ns
            .iter()
            .copied()
            .filter(|n| ns.iter().filter(|m| *m == n).count() > 1)
            .collect();
        assert!(
            duplicates.iter().all(|n| *n >= 200),
            "key {key} repeats output from before the kill: {duplicates:?}"
        );
    }
    assert_eq!(
        got.iter().filter(|(k, _)| !KEYS.contains(&k.as_str())).count(),
        0,
        "unexpected keys in {got:?}"
    );

    let distinct: std::collections::BTreeSet<&(String, u64)> = got.iter().collect();
    eprintln!(
        "output records: {} for {} inputs' outputs ({} replayed)",
        got.len(),
        distinct.len(),
        got.len() - distinct.len()
    );
    let queries = sql(&broker, "SHOW QUERIES");
    assert!(queries.contains("csas_big"), "{queries}");
    broker.stop_clean();
}

/// How many times the exactly-once test kills the server.
const EXACTLY_ONCE_KILLS: usize = 5;
/// Input records produced in each round of the exactly-once test: enough that the query is
/// still working through them when the server dies.
const EXACTLY_ONCE_CHUNK: u64 = 20_000;

/// Broker configs of the exactly-once test: one partition for each internal topic.
const EXACTLY_ONCE_CONFIGS: [(&str, &str); 2] = [
    ("offsets.topic.num.partitions", "1"),
    ("transaction.state.log.num.partitions", "1"),
];

/// Starts `brook produce` of records `from..to` into `clicks` in the background.
fn spawn_produce(dir: &TestDir, broker: &Broker, from: u64, to: u64) -> ChildGuard {
    let path = input_file(dir, from, to);
    let child = produce_command(broker)
        .stdin(std::fs::File::open(&path).expect("open the input file"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn brook produce");
    ChildGuard(Some(child))
}

/// The `n` of every record of `topic` (read_uncommitted, with `brook consume`).
fn inputs(broker: &Broker, topic: &str) -> Vec<u64> {
    records(broker, topic)
        .into_iter()
        .map(|(_, value)| value["n"].as_u64().expect("n"))
        .collect()
}

#[test]
fn an_exactly_once_query_killed_again_and_again_writes_each_output_exactly_once() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let mut broker = dir.start_broker(&EXACTLY_ONCE_CONFIGS);
    broker.create_topic("clicks", 2, &[]);
    sql(
        &broker,
        "CREATE STREAM clicks (n BIGINT, user TEXT) WITH (topic = 'clicks', format = 'json')",
    );
    let created = sql(
        &broker,
        "CREATE STREAM big WITH (topic = 'big', format = 'json', key = 'user', partitions = 2, \
         processing_guarantee = 'exactly_once') AS SELECT user, n FROM clicks WHERE n % 4 <> 0",
    );
    assert!(created.contains("csas_big (exactly once)"), "{created}");

    let seed: u64 = rand::random();
    eprintln!("exactly-once kill points from seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut next = 0;
    for _ in 0..EXACTLY_ONCE_KILLS {
        // Input flows while the query works through it; the server dies once the query has
        // written a random part of its output (watched in process, so that the kill lands while
        // the query is busy), or at once. Input the dying server never took is simply not
        // there: what counts is what the input topic holds afterwards.
        let admin = rt
            .block_on(Admin::connect(ClientConfig::new([broker.addr.clone()])))
            .expect("admin connects");
        // The output's end offsets; None while the restarted server cannot answer yet.
        let written = |admin: &Admin| -> Option<i64> {
            rt.block_on(admin.list_offsets("big", &[0, 1], OffsetSpec::Latest))
                .ok()
                .map(|ends| ends.iter().map(|p| p.offset).sum())
        };
        let end = Instant::now() + OUTPUT_DEADLINE;
        let before = loop {
            if let Some(before) = written(&admin) {
                break before;
            }
            assert!(Instant::now() < end, "the output's end offsets stay unknown");
        };
        let mut producer = spawn_produce(&dir, &broker, next, next + EXACTLY_ONCE_CHUNK);
        next += EXACTLY_ONCE_CHUNK;
        if rng.gen_bool(0.8) {
            // Three in four inputs have an output.
            let target = before + rng.gen_range(1..(EXACTLY_ONCE_CHUNK * 3 / 4) as i64);
            let end = Instant::now() + OUTPUT_DEADLINE;
            loop {
                broker.assert_running("waiting for the query's output");
                let now = written(&admin).unwrap_or(before);
                if now >= target {
                    break;
                }
                assert!(Instant::now() < end, "the query wrote {now} of {target} output offsets");
            }
        }
        broker.kill();
        if let Some(mut child) = producer.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(admin);
        broker = Broker::start(&dir.data_dir(), dir.path(), &EXACTLY_ONCE_CONFIGS);
    }
    produce(&dir, &broker, next, next + 100);
    let input = inputs(&broker, "clicks");
    let distinct: std::collections::BTreeSet<u64> = input.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        input.len(),
        "the idempotent producer wrote an input twice"
    );
    wait_committed(&mut broker, input.len() as u64);

    let mut want: Vec<(String, u64)> = input
        .iter()
        .filter(|n| *n % 4 != 0)
        .map(|n| (KEYS[(n % 3) as usize].to_string(), *n))
        .collect();
    want.sort();
    let s = run_python(
        &broker,
        "txn_read.py",
        &[&broker.addr, "big", "read_committed", &want.len().to_string()],
    );
    let mut got: Vec<(String, u64)> = s["values"]
        .as_array()
        .unwrap_or_else(|| panic!("no values in {s}"))
        .iter()
        .map(|v| {
            let value: serde_json::Value =
                serde_json::from_str(v.as_str().expect("a text value")).expect("a JSON value");
            (
                value["user"].as_str().expect("a user").to_string(),
                value["n"].as_u64().expect("n"),
            )
        })
        .collect();
    got.sort();
    let duplicates: Vec<&(String, u64)> = got.windows(2).filter(|w| w[0] == w[1]).map(|w| &w[0]).collect();
    assert!(duplicates.is_empty(), "outputs written twice: {duplicates:?}");
    assert_eq!(
        got.len(),
        want.len(),
        "read_committed sees {} outputs of {}",
        got.len(),
        want.len()
    );
    assert_eq!(got, want, "each input's output exactly once");
    let all = run_python(&broker, "txn_read.py", &[&broker.addr, "big", "read_uncommitted", "0"]);
    eprintln!(
        "inputs: {}; read_committed outputs: {}; read_uncommitted: {} (aborted transactions included)",
        input.len(),
        got.len(),
        all["count"]
    );
    broker.stop_clean();
}

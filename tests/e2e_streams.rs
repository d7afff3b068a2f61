//! End-to-end test of continuous queries: a `CREATE STREAM ... AS SELECT` issued with
//! `brook sql` against a running `brook serve` (it reaches the server's job manager through the
//! catalog topic), records produced with `brook produce`, a `kill -9` of the server in the middle
//! of the stream, a restart on the same data directory, more records; the output topic then holds
//! the output of every input (at least once), in order per key.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{run, run_with_stdin, Broker, TestDir};

/// How long the output may take to appear (a hang guard, not a threshold).
const OUTPUT_DEADLINE: Duration = Duration::from_secs(120);
/// Keys of the input records.
const KEYS: [&str; 3] = ["alice", "bob", "carol"];

fn brook(args: &[&str], what: &str) -> common::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook"));
    cmd.args(args);
    let out = run(cmd, what);
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout,
        out.stderr
    );
    out
}

fn sql(broker: &Broker, statement: &str) -> String {
    brook(&["sql", "--bootstrap-server", &broker.addr, statement], "brook sql").stdout
}

/// Produces records `from..to`: key `KEYS[n % 3]`, value `{"n": n, "user": key}`.
fn produce(dir: &TestDir, broker: &Broker, from: u64, to: u64) {
    let path = dir.file(&format!("input-{from}-{to}.txt"));
    let lines: String = (from..to)
        .map(|n| {
            let key = KEYS[(n % 3) as usize];
            format!("{key}\t{{\"n\": {n}, \"user\": \"{key}\"}}\n")
        })
        .collect();
    std::fs::write(&path, lines).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook"));
    cmd.args([
        "produce",
        "--bootstrap-server",
        &broker.addr,
        "--topic",
        "clicks",
        "--key-separator",
    ]);
    let out = run_with_stdin(cmd, Some(&path), "brook produce");
    assert!(out.status.success(), "brook produce failed: {}", out.stderr);
}

/// The output topic's records as (key, n), in offset order per partition.
fn output(broker: &Broker) -> Vec<(String, u64)> {
    let out = brook(
        &[
            "consume",
            "--bootstrap-server",
            &broker.addr,
            "--topic",
            "big",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "json",
        ],
        "brook consume",
    );
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let value: serde_json::Value =
                serde_json::from_str(record["value"].as_str().expect("a text value")).expect("a JSON value");
            (
                record["key"].as_str().expect("a key").to_string(),
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
        let out = brook(
            &[
                "groups",
                "--bootstrap-server",
                &broker.addr,
                "describe",
                "brook-query-csas_big",
                "--json",
            ],
            "brook groups describe",
        );
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

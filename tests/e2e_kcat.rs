//! End-to-end tests with Debian's kcat, which links librdkafka 2.0.2: an old client that probes
//! specific API versions and mis-skips default-only tagged fields, so it is our compatibility trap.
//! Metadata (-L), then 100k keyed messages per codec with duplicate-key headers produced with -P
//! and consumed back with -C -e, checked for count, per-partition order, keys and headers.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::Command;

use common::{assert_stored_codec, require_kcat, run, run_with_stdin, tail, TestDir};

const MESSAGES: usize = 100_000;
const PARTITIONS: u32 = 3;
const KEY_SPACE: usize = 37;
/// The headers kcat puts on every message: a duplicated key, in this order.
const HEADER_ARGS: [&str; 3] = ["h=1", "x=y", "h=2"];
const HEADERS_SHOWN: &str = "h=1,x=y,h=2";

#[test]
fn kcat_metadata() {
    let Some(kcat) = require_kcat() else { return };
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    broker.create_topic("meta-a", PARTITIONS, &[]);
    broker.create_topic("meta-b", 1, &[]);
    let mut cmd = Command::new(&kcat);
    cmd.args(["-b", &broker.addr, "-L", "-J", "-m", "30"]);
    let out = run(cmd, "kcat -L");
    assert!(out.status.success(), "kcat -L failed ({}): {}", out.status, out.stderr);
    let md: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("kcat -L -J output is not JSON ({e}): {}", out.stdout));
    let brokers = md["brokers"].as_array().expect("brokers");
    assert_eq!(brokers.len(), 1, "{md}");
    assert_eq!(
        brokers[0]["name"],
        broker.addr.as_str(),
        "advertised address should be the bound one: {md}"
    );
    let node = brokers[0]["id"].as_i64().expect("broker id");
    let topics = md["topics"].as_array().expect("topics");
    for (name, n) in [("meta-a", PARTITIONS as usize), ("meta-b", 1)] {
        let t = topics
            .iter()
            .find(|t| t["topic"] == name)
            .unwrap_or_else(|| panic!("topic {name} missing from {md}"));
        assert!(t.get("error").is_none(), "topic error: {t}");
        let parts = t["partitions"].as_array().expect("partitions");
        assert_eq!(parts.len(), n, "{t}");
        let mut ids: Vec<i64> = parts.iter().map(|p| p["partition"].as_i64().unwrap()).collect();
        ids.sort();
        assert_eq!(ids, (0..n as i64).collect::<Vec<_>>(), "{t}");
        for p in parts {
            assert!(p.get("error").is_none(), "partition error: {p}");
            assert_eq!(p["leader"].as_i64(), Some(node), "{p}");
        }
    }
}

fn kcat_roundtrip(codec: &str) {
    let Some(kcat) = require_kcat() else { return };
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    let topic = format!("kcat-{codec}");
    broker.create_topic(&topic, PARTITIONS, &[]);

    let input = dir.file("input.txt");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for i in 0..MESSAGES {
            writeln!(f, "k{}:value-{i}", i % KEY_SPACE).unwrap();
        }
    }
    let mut produce = Command::new(&kcat);
    produce.args(["-b", &broker.addr, "-t", &topic, "-P", "-K", ":", "-X", "acks=all"]);
    for h in HEADER_ARGS {
        produce.args(["-H", h]);
    }
    if codec != "none" {
        produce.args(["-z", codec]);
    }
    let out = run_with_stdin(produce, Some(&input), "kcat -P");
    assert!(
        out.status.success() && !out.stderr.contains("Delivery failed"),
        "kcat -P ({codec}) failed ({}):\n{}",
        out.status,
        tail(&out.stderr, 30)
    );

    let mut consume = Command::new(&kcat);
    consume.args([
        "-b",
        &broker.addr,
        "-t",
        &topic,
        "-C",
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%p|%o|%k|%h|%s\\n",
    ]);
    let out = run(consume, "kcat -C");
    assert!(
        out.status.success(),
        "kcat -C failed ({}):\n{}",
        out.status,
        tail(&out.stderr, 30)
    );

    let mut seen = vec![false; MESSAGES];
    let mut last: HashMap<u32, (i64, usize)> = HashMap::new();
    let mut key_partition: HashMap<String, u32> = HashMap::new();
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for line in out.stdout.lines() {
        let fields: Vec<&str> = line.splitn(5, '|').collect();
        assert_eq!(fields.len(), 5, "unparsable kcat line {line:?}");
        let p: u32 = fields[0]
            .parse()
            .unwrap_or_else(|_| panic!("bad partition in {line:?}"));
        let o: i64 = fields[1].parse().unwrap_or_else(|_| panic!("bad offset in {line:?}"));
        let i: usize = fields[4]
            .strip_prefix("value-")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad value in {line:?}"));
        assert!(i < MESSAGES, "index out of range in {line:?}");
        assert!(!seen[i], "message {i} consumed twice ({line:?})");
        seen[i] = true;
        assert_eq!(fields[2], format!("k{}", i % KEY_SPACE), "key of message {i}: {line:?}");
        assert_eq!(
            fields[3], HEADERS_SHOWN,
            "headers of message {i} (duplicate keys kept in order): {line:?}"
        );
        if let Some((lo, li)) = last.get(&p) {
            assert_eq!(o, lo + 1, "partition {p}: offset {o} follows {lo}: {line:?}");
            assert!(
                i > *li,
                "partition {p}: message {i} after message {li} (order broken): {line:?}"
            );
        } else {
            assert_eq!(o, 0, "partition {p} should start at offset 0: {line:?}");
        }
        last.insert(p, (o, i));
        let kp = *key_partition.entry(fields[2].to_string()).or_insert(p);
        assert_eq!(kp, p, "key {} found in partitions {kp} and {p}", fields[2]);
        *counts.entry(p).or_default() += 1;
    }
    let missing: Vec<usize> = (0..MESSAGES).filter(|i| !seen[*i]).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} of {MESSAGES} messages not consumed, e.g. {missing:?}; per partition {counts:?}",
        seen.iter().filter(|s| !**s).count()
    );
    assert_eq!(
        counts.len(),
        PARTITIONS as usize,
        "every partition should get messages: {counts:?}"
    );
    assert_stored_codec(&broker, &topic, PARTITIONS, codec);
}

#[test]
fn kcat_none() {
    kcat_roundtrip("none");
}

#[test]
fn kcat_gzip() {
    kcat_roundtrip("gzip");
}

#[test]
fn kcat_snappy() {
    kcat_roundtrip("snappy");
}

#[test]
fn kcat_lz4() {
    kcat_roundtrip("lz4");
}

#[test]
fn kcat_zstd() {
    kcat_roundtrip("zstd");
}

//! Durability and recovery end to end: acknowledged writes (acks=all) survive a crash (SIGKILL in
//! the middle of producing) and a clean restart (SIGTERM) at their acknowledged offsets; a damaged
//! tail (a truncated or corrupted last batch) is cut off on restart while every batch before it is
//! kept and served, and producing resumes at the next offset. confluent-kafka records every
//! acknowledgement in an acks file; tests/clients/confluent_log.py checks the log against it.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{python_cmd, require_python, run_python, scan_batches, segments, Broker, Streaming, TestDir};

/// Acknowledgements to wait for before the crash.
const ACKED_BEFORE_CRASH: u64 = 20_000;

/// Reads an acks file: (index, partition, offset) per line.
fn read_acks(path: &Path) -> Vec<(u64, i64, i64)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("bad ack line {l:?}: {e}"));
            (
                v["i"].as_u64().unwrap(),
                v["p"].as_i64().unwrap(),
                v["o"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Writes the acks of `acks` whose offset is below `end` to `path`; returns how many.
fn write_acks_below(acks: &[(u64, i64, i64)], end: i64, path: &Path) -> usize {
    let kept: Vec<String> = acks
        .iter()
        .filter(|(_, _, o)| *o < end)
        .map(|(i, p, o)| format!("{{\"i\":{i},\"p\":{p},\"o\":{o}}}"))
        .collect();
    std::fs::write(path, kept.join("\n") + "\n").unwrap();
    kept.len()
}

/// Produces `count` messages from index `start` in `rounds` flushed rounds; returns the summary.
fn produce(broker: &Broker, topic: &str, start: u64, count: u64, rounds: u64, acks: &Path) -> serde_json::Value {
    let s = run_python(
        broker,
        "confluent_log.py",
        &[
            "produce",
            &broker.addr,
            topic,
            &start.to_string(),
            &count.to_string(),
            &rounds.to_string(),
            acks.to_str().unwrap(),
        ],
    );
    assert_eq!(s["acked"], count, "{s}");
    s
}

/// Checks the topic against the acks files (`exact` or `atleast`); returns the summary.
fn verify(broker: &Broker, topic: &str, mode: &str, acks: &[&PathBuf]) -> serde_json::Value {
    let mut args = vec!["verify", broker.addr.as_str(), topic, mode];
    let paths: Vec<String> = acks.iter().map(|p| p.to_str().unwrap().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    run_python(broker, "confluent_log.py", &args)
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let mut broker = dir.start_broker(&[]);
    broker.create_topic("durable", 3, &[]);
    let acks = dir.file("acks.jsonl");
    let cmd = python_cmd(
        "confluent_log.py",
        &["produce-until-stopped", &broker.addr, "durable", acks.to_str().unwrap()],
    );
    let mut producer = Streaming::spawn(cmd, "confluent_log.py produce-until-stopped");
    producer.wait_for_line(
        Duration::from_secs(600),
        &format!("progress acked>={ACKED_BEFORE_CRASH}"),
        |l| {
            l.strip_prefix("progress acked=")
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n >= ACKED_BEFORE_CRASH)
        },
    );
    // Crash the broker while the producer is still sending, then stop the producer.
    broker.kill();
    producer.close_stdin();
    let out = producer.finish("confluent_log.py produce-until-stopped");
    assert!(
        out.status.success(),
        "producer failed ({}):\n{}",
        out.status,
        common::tail(&out.stderr, 30)
    );
    let summary = common::parse_summary(&out.stdout, "producer");
    let acked = summary["acked"].as_u64().expect("acked");
    assert!(acked >= ACKED_BEFORE_CRASH, "{summary}");
    assert_eq!(
        read_acks(&acks).len() as u64,
        acked,
        "acks file and summary disagree: {summary}"
    );

    let broker = Broker::start(&dir.data_dir(), dir.path(), &[]);
    let v = verify(&broker, "durable", "atleast", &[&acks]);
    println!("producer before the crash: {summary}\nafter restart: {v}");
    assert_eq!(
        v["acked_checked"], acked,
        "every acknowledged message should be found: {v}"
    );
    assert!(v["consumed"].as_u64().unwrap() >= acked, "{v}");
}

#[test]
fn clean_restart_keeps_everything_and_offsets_continue() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let mut broker = dir.start_broker(&[]);
    broker.create_topic("restart", 3, &[]);
    let first = dir.file("first.jsonl");
    let s1 = produce(&broker, "restart", 0, 5000, 5, &first);
    broker.stop_clean();

    let mut broker = Broker::start(&dir.data_dir(), dir.path(), &[]);
    let v = verify(&broker, "restart", "exact", &[&first]);
    assert_eq!(v["consumed"], 5000, "{v}");
    let second = dir.file("second.jsonl");
    let s2 = produce(&broker, "restart", 5000, 5000, 5, &second);
    for (p, stats) in s2["partitions"].as_object().unwrap() {
        let before = s1["partitions"][p]["max"].as_i64().map(|m| m + 1).unwrap_or(0);
        assert_eq!(
            stats["min"].as_i64().unwrap(),
            before,
            "partition {p}: offsets should continue after restart: {s1} {s2}"
        );
    }
    let v = verify(&broker, "restart", "exact", &[&first, &second]);
    assert_eq!(v["consumed"], 10000, "{v}");
    broker.stop_clean();
}

/// How the broker is stopped before its log is damaged.
#[derive(Clone, Copy)]
enum Stop {
    /// SIGTERM: a clean shutdown.
    Clean,
    /// SIGKILL: a crash.
    Crash,
}

/// Produces into a one-partition topic, stops the broker, damages the last batch of the last
/// segment with `damage(path, batch_position, batch_length)`, restarts, and checks that exactly
/// the batches before it are served and that producing continues at the damaged batch's offset.
fn damaged_tail(stop: Stop, damage: impl FnOnce(&Path, u64, u64)) {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let mut broker = dir.start_broker(&[]);
    broker.create_topic("damaged", 1, &[]);
    let acks_path = dir.file("acks.jsonl");
    produce(&broker, "damaged", 0, 2000, 20, &acks_path);
    match stop {
        Stop::Clean => broker.stop_clean(),
        Stop::Crash => broker.kill(),
    }

    let segs = segments(&broker.partition_dir("damaged", 0));
    let last_seg = segs
        .last()
        .unwrap_or_else(|| panic!("no .log segment in {}", broker.partition_dir("damaged", 0).display()));
    let batches = scan_batches(last_seg);
    assert!(
        batches.len() >= 2,
        "expected several batches in {}, found {batches:?}",
        last_seg.display()
    );
    let (pos, base, len, _) = *batches.last().unwrap();
    let file_len = std::fs::metadata(last_seg).unwrap().len();
    assert_eq!(
        pos + len,
        file_len,
        "{} should end with its last batch (no preallocation or trailing bytes)",
        last_seg.display()
    );
    damage(last_seg, pos, len);

    let kept_path = dir.file("kept.jsonl");
    let kept = write_acks_below(&read_acks(&acks_path), base, &kept_path);
    assert!(kept > 0 && kept < 2000, "{kept}");

    let broker = Broker::start(&dir.data_dir(), dir.path(), &[]);
    let v = verify(&broker, "damaged", "exact", &[&kept_path]);
    assert_eq!(
        v["consumed"], kept as u64,
        "every batch before the damage, and nothing else: {v}"
    );
    assert_eq!(
        v["ends"]["0"], base,
        "the log should end where the damaged batch began: {v}"
    );

    let more = dir.file("more.jsonl");
    let s = produce(&broker, "damaged", 2000, 100, 1, &more);
    assert_eq!(
        s["partitions"]["0"]["min"], base,
        "producing should continue at the damaged batch's offset: {s}"
    );
    let v = verify(&broker, "damaged", "exact", &[&kept_path, &more]);
    assert_eq!(v["consumed"], kept as u64 + 100, "{v}");
}

/// Cuts the last 5 bytes of the segment: the last batch is torn.
fn truncate(path: &Path, _pos: u64, _len: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 5).unwrap();
}

/// Flips a byte inside the records of the last batch: its CRC-32C no longer matches.
fn flip_byte(path: &Path, pos: u64, len: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = (pos + len - 3) as usize;
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn truncated_tail_after_clean_stop_is_cut_and_earlier_batches_kept() {
    damaged_tail(Stop::Clean, truncate);
}

#[test]
fn corrupted_last_batch_after_clean_stop_is_cut_and_earlier_batches_kept() {
    damaged_tail(Stop::Clean, flip_byte);
}

#[test]
fn truncated_tail_after_crash_is_cut_and_earlier_batches_kept() {
    damaged_tail(Stop::Crash, truncate);
}

#[test]
fn corrupted_last_batch_after_crash_is_cut_and_earlier_batches_kept() {
    damaged_tail(Stop::Crash, flip_byte);
}

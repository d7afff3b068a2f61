//! End-to-end tests with the Python Kafka clients (confluent-kafka, kafka-python, aiokafka):
//! 100k keyed messages with duplicate-key headers per codec, produced with acks=all and consumed
//! back with assign() (no consumer group), checked message by message against the acknowledged
//! partition and offset; plus ListOffsets (by time, earliest, latest) and out-of-range fetches.
//! The scripts in tests/clients/ do the checking and print a JSON summary that we assert on.

mod common;

use common::{assert_stored_codec, require_python, run_python, TestDir};

/// Messages per codec per client, as the issue requires.
const MESSAGES: usize = 100_000;
/// Partitions of each test topic, so that ordering is checked per partition.
const PARTITIONS: u32 = 3;

/// Asserts the common shape of a round-trip summary.
fn assert_roundtrip(summary: &serde_json::Value, codec: &str) {
    assert_eq!(summary["codec"], codec, "{summary}");
    assert_eq!(summary["produced"], MESSAGES, "{summary}");
    assert_eq!(summary["consumed"], MESSAGES, "{summary}");
    let parts = summary["partitions"].as_object().expect("partitions in summary");
    assert_eq!(parts.len(), PARTITIONS as usize, "{summary}");
    let total: u64 = parts.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, MESSAGES as u64, "{summary}");
    assert!(
        parts.values().all(|v| v.as_u64().unwrap() > 0),
        "every partition should get messages: {summary}"
    );
}

fn confluent(codec: &str, idempotence: bool) {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    let topic = format!("confluent-{codec}-{}", if idempotence { "idem" } else { "plain" });
    broker.create_topic(&topic, PARTITIONS, &[]);
    let n = MESSAGES.to_string();
    let idem = if idempotence { "true" } else { "false" };
    let s = run_python(
        &broker,
        "confluent_roundtrip.py",
        &[&broker.addr, &topic, codec, &n, idem],
    );
    assert_roundtrip(&s, codec);
    assert_stored_codec(&broker, &topic, PARTITIONS, codec);
    assert_eq!(s["idempotence"], idempotence, "{s}");
    assert_eq!(s["offsets_for_times_checked"], 4 * PARTITIONS, "{s}");
}

fn kafka_python(codec: &str) {
    if !require_python(&["kafka", "snappy", "lz4.frame", "zstandard"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    let topic = format!("kafka-python-{codec}");
    broker.create_topic(&topic, PARTITIONS, &[]);
    let s = run_python(
        &broker,
        "kafka_python_roundtrip.py",
        &[&broker.addr, &topic, codec, &MESSAGES.to_string()],
    );
    assert_roundtrip(&s, codec);
    assert_stored_codec(&broker, &topic, PARTITIONS, codec);
}

fn aiokafka(codec: &str) {
    if !require_python(&["aiokafka", "cramjam"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    let topic = format!("aiokafka-{codec}");
    broker.create_topic(&topic, PARTITIONS, &[]);
    let s = run_python(
        &broker,
        "aiokafka_roundtrip.py",
        &[&broker.addr, &topic, codec, &MESSAGES.to_string()],
    );
    assert_roundtrip(&s, codec);
    assert_stored_codec(&broker, &topic, PARTITIONS, codec);
}

macro_rules! codec_tests {
    ($($name:ident => $body:expr;)*) => {
        $(#[test] fn $name() { $body })*
    };
}

codec_tests! {
    confluent_none_idempotent => confluent("none", true);
    confluent_gzip_idempotent => confluent("gzip", true);
    confluent_snappy_idempotent => confluent("snappy", true);
    confluent_lz4_idempotent => confluent("lz4", true);
    confluent_zstd_idempotent => confluent("zstd", true);
    confluent_none_not_idempotent => confluent("none", false);
    confluent_gzip_not_idempotent => confluent("gzip", false);
    confluent_snappy_not_idempotent => confluent("snappy", false);
    confluent_lz4_not_idempotent => confluent("lz4", false);
    confluent_zstd_not_idempotent => confluent("zstd", false);
    kafka_python_none => kafka_python("none");
    kafka_python_gzip => kafka_python("gzip");
    kafka_python_snappy => kafka_python("snappy");
    kafka_python_lz4 => kafka_python("lz4");
    kafka_python_zstd => kafka_python("zstd");
    aiokafka_none => aiokafka("none");
    aiokafka_gzip => aiokafka("gzip");
    aiokafka_snappy => aiokafka("snappy");
    aiokafka_lz4 => aiokafka("lz4");
    aiokafka_zstd => aiokafka("zstd");
}

/// ListOffsets earliest/latest (latest = log end offset), fetch at the log end (EOF, no error),
/// fetch inside a batch, and a fetch past the log end (OFFSET_OUT_OF_RANGE).
#[test]
fn list_offsets_and_out_of_range_fetch() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    broker.create_topic("offsets", 2, &[]);
    let s = run_python(&broker, "confluent_offsets.py", &[&broker.addr, "offsets", "5000"]);
    let parts = s["partitions"].as_object().expect("partitions");
    assert_eq!(parts.len(), 2, "{s}");
    let total: u64 = parts.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(
        total, 5000,
        "log end offsets should add up to the messages produced: {s}"
    );
}

//! End-to-end tests of topic rules and administration with real clients against the real broker:
//! - the topic configs Kafka clients trip over: keyless records on a compacted topic
//!   (INVALID_RECORD), `message.timestamp.type=LogAppendTime` (the broker's clock replaces the
//!   producer's), `max.message.bytes` (MSG_SIZE_TOO_LARGE), through confluent-kafka with acks=all;
//! - confluent-kafka's AdminClient: CreateTopics (validate_only, errors), DescribeConfigs,
//!   IncrementalAlterConfigs, CreatePartitions, DeleteRecords, DescribeCluster, DeleteTopics;
//! - kafka-python's KafkaAdminClient, including the legacy AlterConfigs;
//! - the `brook` CLI itself: topics create/describe/list/delete, produce from stdin, consume as JSON.
//!
//! The Python scripts print what they observed as one JSON line; the exact Kafka behaviour is
//! asserted here, so every check fails when the broker answers differently.

mod common;

use common::{assert_stored_codec, require_python, run, run_python, run_with_stdin, TestDir};
use serde_json::{json, Value};

/// Asserts an observed Kafka error: `{"code": CODE, "name": NAME, ...}`.
fn assert_error(obs: &Value, code: i64, name: &str, what: &str, summary: &Value) {
    assert_eq!(
        obs["code"].as_i64(),
        Some(code),
        "{what}: expected Kafka error {name} ({code}), got {obs}\nsummary: {summary}"
    );
    assert_eq!(
        obs["name"], name,
        "{what}: expected Kafka error {name} ({code}), got {obs}\nsummary: {summary}"
    );
}

/// Asserts a step succeeded (observed error is null).
fn assert_ok(obs: &Value, what: &str, summary: &Value) {
    assert!(
        obs.is_null(),
        "{what} should succeed, got error {obs}\nsummary: {summary}"
    );
}

/// The topic rules with the compacted and LogAppendTime topics written with `codec` (the size
/// limit is always checked uncompressed: a compressible 10 KB record would fit in 2000 bytes).
fn confluent_topic_rules(codec: &str) {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    broker.create_topic("rules-compact", 1, &[("cleanup.policy", "compact")]);
    broker.create_topic("rules-lat", 1, &[("message.timestamp.type", "LogAppendTime")]);
    broker.create_topic("rules-small", 1, &[("max.message.bytes", "2000")]);
    let s = run_python(
        &broker,
        "confluent_admin.py",
        &[
            &broker.addr,
            "rules",
            codec,
            "rules-compact",
            "rules-lat",
            "rules-small",
        ],
    );
    assert_eq!(s["codec"], codec, "{s}");
    assert_stored_codec(&broker, "rules-compact", 1, codec);
    assert_stored_codec(&broker, "rules-lat", 1, codec);

    // cleanup.policy=compact: a keyless record is refused and takes no offset; keyed ones are stored.
    assert_error(
        &s["compact_keyless"],
        87,
        "INVALID_RECORD",
        "keyless record on a compacted topic",
        &s,
    );
    assert_eq!(
        s["compact_keyed"],
        json!([{"error": null, "offset": 0}, {"error": null, "offset": 1}, {"error": null, "offset": 2}]),
        "keyed records on a compacted topic should be stored from offset 0: {s}"
    );
    assert_eq!(
        s["compact_consumed"],
        json!([[0, "k0", "v0"], [1, "k1", "v1"], [2, "k2", "v2"]]),
        "{s}"
    );

    // LogAppendTime: the broker's clock between before and after, not the producer's old timestamp;
    // the produce response carries the same time (librdkafka puts it in the delivery report).
    let lat = &s["log_append"];
    let (before, after) = (lat["before"].as_i64().unwrap(), lat["after"].as_i64().unwrap());
    let consumed = lat["consumed"].as_array().expect("consumed");
    assert_eq!(consumed.len(), 3, "{s}");
    for (i, r) in consumed.iter().enumerate() {
        assert_eq!(r["offset"], i, "{s}");
        assert_eq!(r["value"], format!("lat-{i}"), "{s}");
        assert_eq!(r["type"], "LOG_APPEND_TIME", "record {i} timestamp type: {s}");
        let ts = r["ts"].as_i64().unwrap();
        assert!(
            before <= ts && ts <= after,
            "record {i}: timestamp {ts} should be the broker's append time, within [{before}, {after}] \
             (the producer sent {}): {s}",
            lat["producer_ts"]
        );
        let dr = &lat["delivery_reports"][i];
        assert_eq!(dr[0], "LOG_APPEND_TIME", "delivery report {i}: {s}");
        assert_eq!(dr[1].as_i64(), Some(ts), "delivery report {i} vs stored timestamp: {s}");
    }

    // max.message.bytes=2000: a 10 KB record is too large; small ones are stored from offset 0.
    assert_error(
        &s["too_large"],
        10,
        "MSG_SIZE_TOO_LARGE",
        "10 KB record with max.message.bytes=2000",
        &s,
    );
    assert_eq!(
        s["small"],
        json!([{"error": null, "offset": 0}, {"error": null, "offset": 1}, {"error": null, "offset": 2}]),
        "small records should be stored from offset 0: {s}"
    );
}

#[test]
fn confluent_topic_rules_none() {
    confluent_topic_rules("none");
}

#[test]
fn confluent_topic_rules_gzip() {
    confluent_topic_rules("gzip");
}

#[test]
fn confluent_topic_rules_snappy() {
    confluent_topic_rules("snappy");
}

#[test]
fn confluent_topic_rules_lz4() {
    confluent_topic_rules("lz4");
}

#[test]
fn confluent_topic_rules_zstd() {
    confluent_topic_rules("zstd");
}

#[test]
fn confluent_admin_client() {
    if !require_python(&["confluent_kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    let s = run_python(&broker, "confluent_admin.py", &[&broker.addr, "admin", "adm"]);

    // CreateTopics.
    assert_ok(&s["validate_only"], "create_topics validate_only", &s);
    assert!(
        s["validate_only_listed"].is_null(),
        "validate_only created the topic: {s}"
    );
    assert_ok(&s["create"], "create_topics", &s);
    assert_eq!(s["create_partitions_listed"], 2, "{s}");
    assert_error(
        &s["create_duplicate"],
        36,
        "TOPIC_ALREADY_EXISTS",
        "duplicate create",
        &s,
    );
    assert_error(
        &s["create_invalid_config"],
        40,
        "INVALID_CONFIG",
        "retention.ms=not-a-number",
        &s,
    );
    assert!(
        s["create_invalid_config_listed"].is_null(),
        "a refused topic was created: {s}"
    );
    assert_error(
        &s["create_unknown_config"],
        40,
        "INVALID_CONFIG",
        "unknown config name",
        &s,
    );
    // librdkafka names INVALID_TOPIC_EXCEPTION (17) TOPIC_EXCEPTION.
    assert_error(
        &s["create_invalid_name"],
        17,
        "TOPIC_EXCEPTION",
        "topic name `bad name!`",
        &s,
    );
    assert_error(
        &s["create_replication_factor_3"],
        38,
        "INVALID_REPLICATION_FACTOR",
        "replication factor 3 on one broker",
        &s,
    );

    // Topic names: `.` and `..`, over 249 characters, and a '.'/'_' collision are invalid.
    for (label, what) in [
        ("create_name_250", "a 250-character name"),
        ("create_name_dot", "the name `.`"),
        ("create_name_dotdot", "the name `..`"),
        ("create_name_collides", "adm_main next to adm.main"),
    ] {
        assert_error(&s[label], 17, "TOPIC_EXCEPTION", what, &s);
    }

    // DescribeConfigs: overrides are DYNAMIC_TOPIC_CONFIG, the rest Kafka's defaults.
    assert_eq!(
        s["describe"],
        json!({
            "retention.ms": ["123456", "DYNAMIC_TOPIC_CONFIG"],
            "cleanup.policy": ["compact", "DYNAMIC_TOPIC_CONFIG"],
            "max.message.bytes": ["1048588", "DEFAULT_CONFIG"],
            "error": null,
        }),
        "{s}"
    );
    assert_error(
        &s["describe_unknown_topic"],
        3,
        "UNKNOWN_TOPIC_OR_PART",
        "describe_configs of a missing topic",
        &s,
    );

    // IncrementalAlterConfigs: SET retention.ms, DELETE cleanup.policy (back to its default).
    assert_ok(&s["incremental_alter"], "incremental_alter_configs", &s);
    assert_eq!(
        s["describe_after_alter"],
        json!({
            "retention.ms": ["654321", "DYNAMIC_TOPIC_CONFIG"],
            "cleanup.policy": ["delete", "DEFAULT_CONFIG"],
            "error": null,
        }),
        "{s}"
    );
    assert_error(
        &s["incremental_alter_invalid"],
        40,
        "INVALID_CONFIG",
        "SET retention.ms=-5x",
        &s,
    );
    assert_eq!(
        s["describe_after_invalid_alter"],
        json!({"retention.ms": ["654321", "DYNAMIC_TOPIC_CONFIG"], "error": null}),
        "a refused alter changed the config: {s}"
    );

    // CreatePartitions: 2 -> 4, and no shrinking.
    assert_ok(&s["create_partitions"], "create_partitions to 4", &s);
    assert_eq!(s["partitions_after_grow"], 4, "{s}");
    assert_error(
        &s["create_partitions_shrink"],
        37,
        "INVALID_PARTITIONS",
        "create_partitions to 3",
        &s,
    );

    // DeleteRecords before offset 4 of 10: the low watermark is 4 everywhere.
    assert_eq!(s["delete_records_supported"], true, "{s}");
    assert_eq!(s["delete_records"], json!({"low_watermark": 4, "error": null}), "{s}");
    assert_eq!(s["earliest_after_delete_records"], 4, "ListOffsets earliest: {s}");
    assert_eq!(s["watermarks_after_delete_records"], json!([4, 10]), "{s}");
    assert_eq!(
        s["first_after_delete_records"],
        json!([4, "k4"]),
        "fetch from the beginning: {s}"
    );
    assert_error(
        &s["delete_records_past_end"],
        1,
        "OFFSET_OUT_OF_RANGE",
        "delete_records before offset 99",
        &s,
    );

    // DescribeCluster: this one node, which is also the controller.
    let cluster = &s["cluster"];
    let nodes = cluster["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{s}");
    assert_eq!(nodes[0][1], broker.addr.as_str(), "{s}");
    assert_eq!(cluster["controller"], nodes[0][0], "{s}");
    assert!(cluster["cluster_id"].as_str().is_some_and(|id| !id.is_empty()), "{s}");

    // DeleteTopics.
    assert_ok(&s["delete"], "delete_topics", &s);
    assert!(s["listed_after_delete"].is_null(), "{s}");
    assert_error(
        &s["delete_again"],
        3,
        "UNKNOWN_TOPIC_OR_PART",
        "deleting a deleted topic",
        &s,
    );

    // Last, so that it hides no other check while it fails: 249 characters is Kafka's longest legal
    // topic name, and creating one must succeed.
    assert_ok(&s["create_name_249"], "create_topics with a 249-character name", &s);
    assert_eq!(s["create_name_249_partitions"], 1, "{s}");
}

#[test]
fn kafka_python_admin_client() {
    if !require_python(&["kafka"]) {
        return;
    }
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    let s = run_python(&broker, "kafka_python_admin.py", &[&broker.addr, "admin"]);

    assert_ok(&s["create"], "create_topics", &s);
    assert_eq!(s["listed_after_create"], true, "{s}");
    assert_eq!(s["partitions"], 3, "{s}");
    assert_eq!(s["create_duplicate"]["name"], "TopicAlreadyExistsError", "{s}");
    assert_eq!(s["create_duplicate"]["code"], 36, "{s}");
    assert_eq!(s["create_invalid_config"]["name"], "InvalidConfigurationError", "{s}");
    assert_eq!(s["create_invalid_config"]["code"], 40, "{s}");
    assert_eq!(s["invalid_config_listed"], false, "{s}");

    assert_eq!(
        s["describe"],
        json!({
            "retention.ms": ["3600000", "DYNAMIC_TOPIC_CONFIG"],
            "max.message.bytes": ["5000", "DYNAMIC_TOPIC_CONFIG"],
            "cleanup.policy": ["delete", "DEFAULT_CONFIG"],
            "segment.bytes": ["1073741824", "DEFAULT_CONFIG"],
        }),
        "{s}"
    );

    // Legacy AlterConfigs, with kafka-python re-sending the other overrides.
    assert_eq!(s["alter"], "OK", "{s}");
    assert_eq!(
        s["describe_after_alter"],
        json!({
            "retention.ms": ["7200000", "DYNAMIC_TOPIC_CONFIG"],
            "max.message.bytes": ["5000", "DYNAMIC_TOPIC_CONFIG"],
            "cleanup.policy": ["delete", "DEFAULT_CONFIG"],
            "segment.bytes": ["1048576", "DYNAMIC_TOPIC_CONFIG"],
        }),
        "{s}"
    );
    assert!(
        s["alter_invalid"]
            .as_str()
            .unwrap_or("")
            .starts_with("[Error 40] InvalidConfigurationError"),
        "legacy AlterConfigs retention.ms=soon should fail with INVALID_CONFIG: {s}"
    );
    assert_eq!(
        s["describe_after_invalid_alter"],
        json!({"retention.ms": ["7200000", "DYNAMIC_TOPIC_CONFIG"]}),
        "a refused alter changed the config: {s}"
    );
    // A bare legacy AlterConfigs replaces every override: what it leaves out returns to the default.
    assert_eq!(s["alter_replace"], "OK", "{s}");
    assert_eq!(
        s["describe_after_replace"],
        json!({
            "retention.ms": ["1800000", "DYNAMIC_TOPIC_CONFIG"],
            "max.message.bytes": ["1048588", "DEFAULT_CONFIG"],
            "cleanup.policy": ["delete", "DEFAULT_CONFIG"],
            "segment.bytes": ["1073741824", "DEFAULT_CONFIG"],
        }),
        "{s}"
    );

    assert_ok(&s["delete"], "delete_topics", &s);
    assert_eq!(s["listed_after_delete"], false, "{s}");
    assert_eq!(s["delete_again"]["name"], "UnknownTopicOrPartitionError", "{s}");
    assert_eq!(s["delete_again"]["code"], 3, "{s}");
}

#[test]
fn brook_cli_topics_produce_consume() {
    let dir = TestDir::new();
    // Retention runs only hourly here, so retention.ms=1000 cannot delete records mid-test.
    let broker = dir.start_broker(&[("log.retention.check.interval.ms", "3600000")]);
    let topic = "cli-topic";

    broker.cli_ok(&[
        "topics",
        "create",
        topic,
        "--partitions",
        "3",
        "--config",
        "retention.ms=1000",
    ]);
    let again = run(broker.cli(&["topics", "create", topic, "--partitions", "3"]), "brook");
    assert!(
        !again.status.success(),
        "creating {topic} twice should fail: {}",
        again.stdout
    );

    let desc = broker.cli_ok(&["topics", "describe", topic]).stdout;
    assert!(desc.contains("PartitionCount: 3"), "describe output:\n{desc}");
    assert!(desc.contains("retention.ms=1000"), "describe output:\n{desc}");
    for p in 0..3 {
        assert!(
            desc.contains(&format!("Partition: {p}\t")),
            "partition {p} missing:\n{desc}"
        );
    }
    let json_desc = broker.cli_ok(&["topics", "describe", topic, "--json"]).stdout;
    let d: Value = serde_json::from_str(json_desc.trim()).unwrap_or_else(|e| panic!("{e}: {json_desc}"));
    assert_eq!(d["topic"], topic, "{d}");
    assert_eq!(d["partition_count"], 3, "{d}");
    assert_eq!(d["partitions"].as_array().map(Vec::len), Some(3), "{d}");
    assert_eq!(d["configs"], json!({"retention.ms": "1000"}), "{d}");

    let listed = broker.cli_ok(&["topics", "list"]).stdout;
    assert!(listed.lines().any(|l| l.trim() == topic), "topics list:\n{listed}");

    // Produce from stdin: key and value split at the first ':', two headers on every record.
    let input = dir.file("records.txt");
    std::fs::write(&input, "alpha:one\nbeta:two\ngamma:three:with:colons\ndelta:\n").unwrap();
    let out = run_with_stdin(
        broker.cli(&[
            "produce",
            "--topic",
            topic,
            "--key-separator",
            ":",
            "--header",
            "h=1",
            "--header",
            "src=e2e",
        ]),
        Some(&input),
        "brook produce",
    );
    assert!(
        out.status.success(),
        "brook produce failed ({}): {}",
        out.status,
        out.stderr
    );

    let out = broker.cli_ok(&[
        "consume",
        "--topic",
        topic,
        "--from-beginning",
        "--format",
        "json",
        "--exit-at-end",
    ]);
    let mut records: Vec<Value> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("consume line is not JSON ({e}): {l}")))
        .collect();
    assert_eq!(records.len(), 4, "consume output:\n{}", out.stdout);
    records.sort_by_key(|r| r["key"].as_str().unwrap_or("").to_string());
    let want = [
        ("alpha", "one"),
        ("beta", "two"),
        ("delta", ""),
        ("gamma", "three:with:colons"),
    ];
    for (r, (k, v)) in records.iter().zip(want) {
        assert_eq!(r["topic"], topic, "{r}");
        assert_eq!(r["key"], k, "{r}");
        assert_eq!(r["value"], v, "{r}");
        assert_eq!(r["headers"], json!([["h", "1"], ["src", "e2e"]]), "{r}");
        assert_eq!(r["timestamp_type"], "CreateTime", "{r}");
        let p = r["partition"].as_i64().expect("partition");
        assert!((0..3).contains(&p), "{r}");
    }
    // Per partition, offsets run 0, 1, ... with no gap.
    for p in 0..3 {
        let mut offs: Vec<i64> = records
            .iter()
            .filter(|r| r["partition"] == p)
            .map(|r| r["offset"].as_i64().unwrap())
            .collect();
        offs.sort();
        assert_eq!(
            offs,
            (0..offs.len() as i64).collect::<Vec<_>>(),
            "partition {p}: {records:?}"
        );
    }

    broker.cli_ok(&["topics", "delete", topic]);
    let listed = broker.cli_ok(&["topics", "list"]).stdout;
    assert!(
        !listed.lines().any(|l| l.trim() == topic),
        "deleted topic still listed:\n{listed}"
    );
    let gone = run(broker.cli(&["topics", "describe", topic]), "brook");
    assert!(
        !gone.status.success(),
        "describing a deleted topic should fail: {}",
        gone.stdout
    );
}

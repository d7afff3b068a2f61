//! Tests of the offset store on real partition logs in a temporary directory: durability across
//! reopen, tombstones, expiry, and the records' placement and schema.

use std::sync::Arc;

use super::*;
use crate::broker::Broker;
use crate::log::AppendOptions;

const MINUTE_MS: i64 = 60_000;
const DEFAULT_RETENTION_MS: i64 = 10_080 * MINUTE_MS;

fn entry(topic: &str, partition: i32, offset: i64) -> CommitEntry {
    CommitEntry {
        topic: topic.to_string(),
        partition,
        offset,
        leader_epoch: 2,
        metadata: format!("m{offset}"),
        expire_timestamp_ms: None,
    }
}

fn open(dir: &std::path::Path) -> Arc<Broker> {
    Broker::open(BrokerConfig::new(dir.to_path_buf())).expect("broker opens")
}

/// Closes a broker and opens it again on the same directory.
fn reopen(broker: Arc<Broker>, dir: &std::path::Path) -> Arc<Broker> {
    broker.close().unwrap();
    drop(broker);
    open(dir)
}

#[tokio::test]
async fn the_offsets_topic_is_created_as_kafka_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let topic = broker.topics.get(OFFSETS_TOPIC).unwrap();
    assert_eq!(topic.partition_count(), 50);
    let configs = topic.configs();
    assert_eq!(configs.get("cleanup.policy").map(String::as_str), Some("compact"));
    assert_eq!(configs.get("segment.bytes").map(String::as_str), Some("104857600"));
    assert_eq!(broker.groups.offsets.partition_count(), 50);
}

#[tokio::test]
async fn commits_survive_reopen_and_land_in_the_groups_partition() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let store = &broker.groups.offsets;
    store
        .commit("my-group", vec![entry("t", 0, 10), entry("t", 1, 11)])
        .await
        .unwrap();
    store.commit("my-group", vec![entry("t", 0, 20)]).await.unwrap();
    store.commit("group-1", vec![entry("u", 3, 7)]).await.unwrap();
    assert_eq!(store.fetch("my-group", "t", 0).unwrap().offset, 20);

    // Kafka puts "my-group" in partition 12 of 50: its records are there and nowhere else.
    let topic = broker.topics.get(OFFSETS_TOPIC).unwrap();
    assert_eq!(topic.partition(12).unwrap().log_end_offset(), 3);
    assert_eq!(topic.partition(49).unwrap().log_end_offset(), 1);
    let bytes = topic.partition(12).unwrap().read(0, 1 << 20, i64::MAX).unwrap();
    let records = batch::decode_records(&bytes, 1 << 20).unwrap();
    assert_eq!(
        record::decode_key(records[0].key.as_deref().unwrap()).unwrap(),
        record::Key::Offset {
            group: "my-group".into(),
            topic: "t".into(),
            partition: 0
        }
    );

    let broker = reopen(broker, dir.path());
    let store = &broker.groups.offsets;
    let v = store.fetch("my-group", "t", 0).unwrap();
    assert_eq!((v.offset, v.leader_epoch, v.metadata.as_str()), (20, 2, "m20"));
    let all: Vec<(String, i32, i64)> = store
        .fetch_all("my-group")
        .into_iter()
        .map(|(t, p, v)| (t, p, v.offset))
        .collect();
    assert_eq!(all, vec![("t".into(), 0, 20), ("t".into(), 1, 11)]);
    assert_eq!(store.groups(), vec!["group-1".to_string(), "my-group".to_string()]);
}

#[tokio::test]
async fn tombstones_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let store = &broker.groups.offsets;
    store
        .commit("a", vec![entry("t", 0, 1), entry("t", 1, 2), entry("t", 2, 3)])
        .await
        .unwrap();
    store.commit("b", vec![entry("t", 0, 4)]).await.unwrap();
    store
        .delete_offsets("a", &[("t".to_string(), 1), ("never".to_string(), 0)])
        .await
        .unwrap();
    store.delete_group("b").await.unwrap();
    assert!(!store.has_offsets("b"));

    let broker = reopen(broker, dir.path());
    let store = &broker.groups.offsets;
    assert!(store.fetch("a", "t", 1).is_none());
    assert_eq!(store.fetch("a", "t", 2).unwrap().offset, 3);
    assert!(!store.has_offsets("b"));
    assert_eq!(store.groups(), vec!["a".to_string()]);
}

#[tokio::test]
async fn offsets_of_idle_groups_expire_after_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let store = &broker.groups.offsets;
    let t0 = 1_000_000;
    let appended = store.begin_commit("old", vec![entry("t", 0, 1)], t0).unwrap();
    store.finish(appended).await.unwrap();
    let appended = store.begin_commit("live", vec![entry("t", 0, 1)], t0).unwrap();
    store.finish(appended).await.unwrap();
    let mut expiring = entry("t", 1, 1);
    expiring.expire_timestamp_ms = Some(t0 + MINUTE_MS);
    let appended = store.begin_commit("explicit", vec![expiring], t0).unwrap();
    store.finish(appended).await.unwrap();

    let idle = |g: &str| g != "live";
    assert_eq!(store.expire(t0 + MINUTE_MS - 1, idle).await.unwrap(), 0);
    assert_eq!(store.expire(t0 + MINUTE_MS, idle).await.unwrap(), 1);
    assert!(!store.has_offsets("explicit"));
    assert_eq!(store.expire(t0 + DEFAULT_RETENTION_MS - 1, idle).await.unwrap(), 0);
    assert_eq!(store.expire(t0 + DEFAULT_RETENTION_MS, idle).await.unwrap(), 1);
    assert_eq!(store.groups(), vec!["live".to_string()]);

    let broker = reopen(broker, dir.path());
    assert_eq!(broker.groups.offsets.groups(), vec!["live".to_string()]);
}

#[tokio::test]
async fn expiry_runs_only_once_per_check_interval() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let store = &broker.groups.offsets;
    let appended = store.begin_commit("g", vec![entry("t", 0, 1)], 0).unwrap();
    store.finish(appended).await.unwrap();
    let last = store.last_expiry_ms.load(Ordering::Relaxed);
    let far = last + DEFAULT_RETENTION_MS;
    // Before the interval has passed nothing is checked, however old the offsets are.
    store.last_expiry_ms.store(far, Ordering::Relaxed);
    store.expire_if_due(far + 600_000 - 1, |_| true).await;
    assert!(store.has_offsets("g"));
    store.expire_if_due(far + 600_000, |_| true).await;
    assert!(!store.has_offsets("g"));
}

#[tokio::test]
async fn commits_apply_in_log_order_whatever_order_they_finish_in() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let store = &broker.groups.offsets;
    let first = store.begin_commit("g", vec![entry("t", 0, 1)], 1).unwrap();
    let second = store.begin_commit("g", vec![entry("t", 0, 2)], 2).unwrap();
    // Nothing is visible before it is durable and finished.
    assert!(store.fetch("g", "t", 0).is_none());
    store.finish(second).await.unwrap();
    assert_eq!(store.fetch("g", "t", 0).unwrap().offset, 2);
    store.finish(first).await.unwrap();
    assert_eq!(store.fetch("g", "t", 0).unwrap().offset, 2);
}

#[tokio::test]
async fn metadata_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let store = &broker.groups.offsets;
    let mut big = entry("t", 0, 1);
    big.metadata = "x".repeat(4097);
    let err = store.commit("g", vec![big]).await.unwrap_err();
    assert_eq!(err.kafka_code(), ResponseError::OffsetMetadataTooLarge.code());
    assert!(!store.has_offsets("g"));
}

#[tokio::test]
async fn records_that_are_not_offsets_are_skipped_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.groups.offsets.commit("g", vec![entry("t", 0, 9)]).await.unwrap();
    let p = broker.groups.offsets.partition_of("g");
    let log = broker.topics.get(OFFSETS_TOPIC).unwrap().partition(p as i32).unwrap();
    let foreign = |key: &[u8], value: Option<&[u8]>| NewRecord {
        timestamp_ms: 0,
        key: Some(bytes::Bytes::copy_from_slice(key)),
        value: value.map(bytes::Bytes::copy_from_slice),
        headers: Vec::new(),
    };
    let records = [
        // A GroupMetadataKey (version 2) with some value, as Kafka writes for classic groups.
        foreign(&[0, 2, 0, 1, b'g'], Some(&[0, 3, 1, 2, 3])),
        // A key from the future and a truncated offset key.
        foreign(&[0, 99], Some(&[1])),
        foreign(&[0, 1, 0], Some(&[0, 3])),
        // A valid key with a damaged value.
        foreign(&record::encode_offset_key("g", "t", 1).unwrap(), Some(&[0, 3, 0])),
    ];
    let batch = batch::encode_batch(&records, &EncodeOptions::default()).unwrap();
    let headers = batch::validate_batches(&batch).unwrap();
    let options = AppendOptions {
        now_ms: 0,
        log_append_time: false,
        leader_epoch: 0,
    };
    log.append(batch, &headers, &options).unwrap();
    drop(log);

    let broker = reopen(broker, dir.path());
    let store = &broker.groups.offsets;
    assert_eq!(store.fetch("g", "t", 0).unwrap().offset, 9);
    assert!(store.fetch("g", "t", 1).is_none());
}

#[test]
fn storage_errors_become_coordinator_codes() {
    let too_large = Error::MessageTooLarge {
        size_bytes: 2,
        max_bytes: 1,
    };
    assert_eq!(
        coordinator_error_code(&too_large),
        ResponseError::InvalidCommitOffsetSize.code()
    );
    let io = Error::io("writing", std::io::Error::other("disk"));
    assert_eq!(coordinator_error_code(&io), ResponseError::NotCoordinator.code());
}

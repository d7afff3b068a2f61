//! Tests of the transaction coordinator on real logs in a temporary directory: the transaction
//! log's layout and placement, reload after restart (including a crash between PrepareCommit and
//! CompleteCommit), timeouts that fence, epoch exhaustion, expiry and bounds. The helpers also
//! drive the handlers with raw requests for the API tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, EndTxnRequest, ProducerId, ResponseKind, TopicName,
    TransactionalId,
};
use kafka_protocol::ResponseError;

use super::*;
use crate::api::create_topics::test_support::{encodes, s};
use crate::api::offset_commit::test_support::{resolve, roundtrip};
use crate::log::batch::{self, EncodeOptions, NewRecord};
use crate::log::{AppendOptions, PartitionLog};

/// The transaction timeout the helpers ask for.
pub(crate) const TIMEOUT_MS: i32 = 60_000;

/// A broker on a fresh directory with one offsets and one transaction log partition.
pub(crate) fn open_broker() -> (tempfile::TempDir, Arc<Broker>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let broker = open_at(dir.path(), &[]);
    (dir, broker)
}

/// A broker on `dir` with one offsets and one transaction log partition, and `configs`.
pub(crate) fn open_at(dir: &Path, configs: &[(&str, &str)]) -> Arc<Broker> {
    let mut config = BrokerConfig::new(dir.to_path_buf());
    config.set("offsets.topic.num.partitions", "1").expect("a valid config");
    config
        .set("transaction.state.log.num.partitions", "1")
        .expect("a valid config");
    for (k, v) in configs {
        config.set(k, v).expect("a valid config");
    }
    Broker::open(config).expect("broker opens")
}

/// Closes a broker cleanly and opens it again on the same directory.
fn reopen(broker: Arc<Broker>, dir: &Path, configs: &[(&str, &str)]) -> Arc<Broker> {
    broker.close().unwrap();
    drop(broker);
    open_at(dir, configs)
}

/// Creates a topic.
pub(crate) fn topic(broker: &Broker, name: &str, partitions: i32) {
    broker
        .topics
        .create(&broker.config(), name, partitions, BTreeMap::new(), false)
        .unwrap();
}

/// InitProducerId through the coordinator: the producer id and epoch.
pub(crate) async fn init(broker: &Arc<Broker>, id: &str) -> (i64, i16) {
    broker
        .txns
        .init_producer_id(broker, id, TIMEOUT_MS, None, now_ms())
        .unwrap()
        .await
        .unwrap()
}

/// AddPartitionsToTxn through its handler at `version`; every partition must exist.
pub(crate) async fn add_partitions(
    broker: &Arc<Broker>,
    id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: &[(&str, i32)],
    version: i16,
) -> AddPartitionsToTxnResponse {
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for &(name, p) in partitions {
        match topics.iter_mut().find(|t| t.name.0.as_str() == name) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(s(name)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(ProducerId(producer_id))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(topics);
    let request = roundtrip(&request, version);
    match resolve(crate::api::add_partitions_to_txn::handle(broker, request, version)).await {
        Some(ResponseKind::AddPartitionsToTxn(r)) => {
            encodes(&r, version..=version);
            r
        }
        _ => panic!("not an AddPartitionsToTxn response"),
    }
}

/// EndTxn through its handler at `version`: the error code.
pub(crate) async fn end_txn(
    broker: &Arc<Broker>,
    id: &str,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    version: i16,
) -> i16 {
    let request = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    match resolve(crate::api::end_txn::handle(
        broker,
        roundtrip(&request, version),
        version,
    ))
    .await
    {
        Some(ResponseKind::EndTxn(r)) => {
            encodes(&r, version..=version);
            r.error_code
        }
        _ => panic!("not an EndTxn response"),
    }
}

/// Appends one transactional record of a producer, as a transactional Produce would, and waits
/// until it is durable.
pub(crate) async fn produce(log: &PartitionLog, producer_id: i64, epoch: i16, sequence: i32, value: &str) {
    let record = NewRecord {
        timestamp_ms: now_ms(),
        key: Some(bytes::Bytes::from_static(b"k")),
        value: Some(bytes::Bytes::copy_from_slice(value.as_bytes())),
        headers: Vec::new(),
    };
    let options = EncodeOptions {
        producer_id,
        producer_epoch: epoch,
        base_sequence: sequence,
        transactional: true,
        ..EncodeOptions::default()
    };
    let batch = batch::encode_batch(&[record], &options).unwrap();
    let headers = batch::validate_batches(&batch).unwrap();
    let append = AppendOptions {
        now_ms: now_ms(),
        log_append_time: false,
        leader_epoch: 0,
    };
    let info = log.append(batch, &headers, &append).unwrap();
    log.wait_durable(info.last_offset + 1).await.unwrap();
}

/// The transaction markers of a partition, in log order: (producer id, epoch, commit).
pub(crate) fn markers(log: &PartitionLog) -> Vec<(i64, i16, bool)> {
    let bytes = log.read(log.log_start_offset(), 1 << 20, i64::MAX).unwrap();
    let mut out = Vec::new();
    for item in batch::scan_headers(&bytes) {
        let (position, header) = item.unwrap();
        if !header.is_control() {
            continue;
        }
        let records = batch::decode_records(&bytes[position..position + header.total_bytes()], 1 << 20).unwrap();
        let key = records[0].key.clone().unwrap();
        out.push((header.producer_id, header.producer_epoch, key[3] == 1));
    }
    out
}

/// The records of `__transaction_state` partition 0, decoded.
fn log_records(broker: &Broker) -> Vec<(String, Option<TxnMetadata>)> {
    let log = broker.topics.log(TXN_TOPIC, 0).unwrap();
    let bytes = log.read(0, 1 << 20, i64::MAX).unwrap();
    let mut out = Vec::new();
    for item in batch::scan_headers(&bytes) {
        let (position, header) = item.unwrap();
        for r in batch::decode_records(&bytes[position..position + header.total_bytes()], 1 << 20).unwrap() {
            let id = record::decode_key(r.key.as_deref().unwrap()).unwrap().unwrap();
            out.push((id, r.value.as_deref().map(|v| record::decode_value(v).unwrap())));
        }
    }
    out
}

#[tokio::test]
async fn the_transaction_log_is_created_on_first_use_where_kafka_puts_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path().to_path_buf());
    config.set("offsets.topic.num.partitions", "1").unwrap();
    let broker = Broker::open(config).unwrap();
    assert!(broker.topics.get(TXN_TOPIC).is_none());
    let (pid, epoch) = init(&broker, "my-group").await;
    assert_eq!(epoch, 0);
    let topic = broker.topics.get(TXN_TOPIC).unwrap();
    assert_eq!(topic.partition_count(), 50);
    assert_eq!(
        topic.configs().get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    // Kafka hashes transactional ids like group ids: "my-group" lands in partition 12 of 50.
    assert_eq!(broker.txns.partition_of("my-group"), Some(12));
    assert_eq!(topic.partition(12).unwrap().log_end_offset(), 1);
    let bytes = topic.partition(12).unwrap().read(0, 1 << 20, i64::MAX).unwrap();
    let r = &batch::decode_records(&bytes, 1 << 20).unwrap()[0];
    assert_eq!(
        record::decode_key(r.key.as_deref().unwrap()).unwrap().as_deref(),
        Some("my-group")
    );
    let value = record::decode_value(r.value.as_deref().unwrap()).unwrap();
    assert_eq!(
        (value.producer_id, value.producer_epoch, value.state, value.timeout_ms),
        (pid, 0, TxnState::Empty, TIMEOUT_MS)
    );
}

#[tokio::test]
async fn every_state_change_is_logged_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_at(dir.path(), &[]);
    topic(&broker, "t", 2);
    let (pid, epoch) = init(&broker, "tx").await;
    add_partitions(&broker, "tx", pid, epoch, &[("t", 0), ("t", 1)], 3).await;
    let log = broker.topics.log("t", 0).unwrap();
    produce(&log, pid, epoch, 0, "v").await;
    assert_eq!(end_txn(&broker, "tx", pid, epoch, true, 3).await, 0);
    broker.txns.settled("tx").await;
    let states: Vec<TxnState> = log_records(&broker)
        .into_iter()
        .map(|(_, m)| m.unwrap().state)
        .collect();
    assert_eq!(
        states,
        vec![
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::CompleteCommit
        ]
    );
    assert_eq!(markers(&log), vec![(pid, epoch, true)]);
    assert_eq!(markers(&broker.topics.log("t", 1).unwrap()), vec![(pid, epoch, true)]);
    let before = broker.txns.describe("tx").unwrap();

    let broker = reopen(broker, dir.path(), &[]);
    let after = broker.txns.describe("tx").unwrap();
    assert_eq!(
        after,
        TxnMetadata {
            last_producer_epoch: -1,
            ..before
        }
    );
    assert!(after.partitions.is_empty());
    // The next InitProducerId bumps the epoch it had.
    assert_eq!(init(&broker, "tx").await, (pid, epoch + 1));
}

#[tokio::test]
async fn a_crash_between_prepare_commit_and_complete_commit_is_finished_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_at(dir.path(), &[]);
    topic(&broker, "t", 1);
    let (pid, epoch) = init(&broker, "tx").await;
    add_partitions(&broker, "tx", pid, epoch, &[("t", 0)], 3).await;
    produce(&broker.topics.log("t", 0).unwrap(), pid, epoch, 0, "v").await;
    // The crash: PrepareCommit is durable, but no marker and no CompleteCommit were written.
    let ongoing = broker.txns.describe("tx").unwrap();
    let prepare = TxnMetadata {
        state: TxnState::PrepareCommit,
        ..ongoing.clone()
    };
    let written = broker.txns.log.append("tx", Some(&prepare), now_ms()).unwrap();
    broker.txns.log.wait(written).await.unwrap();
    let broker = reopen(broker, dir.path(), &[]);

    let log = broker.topics.log("t", 0).unwrap();
    assert!(markers(&log).is_empty());
    assert_eq!(broker.txns.describe("tx").unwrap().state, TxnState::PrepareCommit);
    assert_eq!(
        log.last_stable_offset(),
        0,
        "the open transaction holds back read_committed"
    );
    // Meanwhile the producer must wait: its retries are CONCURRENT_TRANSACTIONS.
    let concurrent = broker
        .txns
        .end_txn(&broker, "tx", pid, epoch, true, now_ms())
        .err()
        .unwrap();
    assert_eq!(concurrent.kafka_code(), ResponseError::ConcurrentTransactions.code());
    broker.txns.settled("tx").await;
    assert_eq!(broker.txns.describe("tx").unwrap().state, TxnState::CompleteCommit);
    assert_eq!(markers(&log), vec![(pid, epoch, true)]);
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    // The timer's pass finds nothing left to complete.
    assert_eq!(broker.txns.complete_stalled(&broker), 0);
}

#[tokio::test]
async fn a_transaction_past_its_timeout_is_aborted_with_an_epoch_bump() {
    let (_dir, broker) = open_broker();
    topic(&broker, "t", 1);
    let (pid, epoch) = init(&broker, "tx").await;
    add_partitions(&broker, "tx", pid, epoch, &[("t", 0)], 3).await;
    let log = broker.topics.log("t", 0).unwrap();
    produce(&log, pid, epoch, 0, "zombie").await;
    let started = broker.txns.describe("tx").unwrap().start_ms;
    assert_eq!(
        broker
            .txns
            .abort_timed_out(&broker, started + i64::from(TIMEOUT_MS))
            .await,
        0
    );
    assert_eq!(
        broker
            .txns
            .abort_timed_out(&broker, started + i64::from(TIMEOUT_MS) + 1)
            .await,
        1
    );
    broker.txns.settled("tx").await;
    let state = broker.txns.describe("tx").unwrap();
    assert_eq!(
        (state.state, state.producer_epoch),
        (TxnState::CompleteAbort, epoch + 1)
    );
    assert_eq!(markers(&log), vec![(pid, epoch + 1, false)]);
    // The zombie is fenced everywhere: at the coordinator and in the partition.
    assert_eq!(
        end_txn(&broker, "tx", pid, epoch, true, 4).await,
        ResponseError::ProducerFenced.code()
    );
    let r = add_partitions(&broker, "tx", pid, epoch, &[("t", 0)], 3).await;
    assert_eq!(
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        ResponseError::ProducerFenced.code()
    );
    assert_eq!(init(&broker, "tx").await, (pid, epoch + 2));
}

#[tokio::test]
async fn init_producer_id_aborts_an_open_transaction_first() {
    let (_dir, broker) = open_broker();
    topic(&broker, "t", 1);
    let (pid, epoch) = init(&broker, "tx").await;
    add_partitions(&broker, "tx", pid, epoch, &[("t", 0)], 3).await;
    let waiting = broker
        .txns
        .init_producer_id(&broker, "tx", TIMEOUT_MS, None, now_ms())
        .unwrap();
    let e = waiting.await.unwrap_err();
    assert_eq!(e.kafka_code(), ResponseError::ConcurrentTransactions.code());
    broker.txns.settled("tx").await;
    let log = broker.topics.log("t", 0).unwrap();
    assert_eq!(markers(&log), vec![(pid, epoch + 1, false)]);
    // The retry gets a second bump: the epoch of the fence is never handed out.
    assert_eq!(init(&broker, "tx").await, (pid, epoch + 2));
}

#[tokio::test]
async fn an_exhausted_epoch_rotates_the_producer_id() {
    let (_dir, broker) = open_broker();
    let (pid, _) = init(&broker, "tx").await;
    if let Some(entry) = broker.txns.lock().get_mut("tx") {
        entry.meta.producer_epoch = i16::MAX - 1;
    }
    let bump = || {
        broker
            .txns
            .init_producer_id(&broker, "tx", TIMEOUT_MS, Some((pid, i16::MAX - 1)), now_ms())
            .unwrap()
    };
    let (rotated, epoch) = bump().await.unwrap();
    assert_ne!(rotated, pid);
    assert_eq!(epoch, 0);
    // KIP-360: a retry naming the old id and its exhausted epoch gets the new id again.
    assert_eq!(bump().await.unwrap(), (rotated, 0));
    // Without a producer id, an exhausted epoch rotates too.
    if let Some(entry) = broker.txns.lock().get_mut("tx") {
        entry.meta.producer_epoch = i16::MAX - 1;
    }
    let (again, epoch) = init(&broker, "tx").await;
    assert!(again != rotated && again != pid);
    assert_eq!(epoch, 0);
}

#[tokio::test]
async fn idle_transactional_ids_expire_with_a_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_at(dir.path(), &[]);
    topic(&broker, "t", 1);
    init(&broker, "idle").await;
    let (pid, epoch) = init(&broker, "busy").await;
    add_partitions(&broker, "busy", pid, epoch, &[("t", 0)], 3).await;
    let later = now_ms() + 604_800_000 + 1;
    assert_eq!(broker.txns.expire(later).await, 1, "an open transaction keeps its id");
    assert!(broker.txns.describe("idle").is_err());
    assert_eq!(
        log_records(&broker).last().map(|(id, v)| (id.as_str(), v.is_none())),
        Some(("idle", true))
    );
    let broker = reopen(broker, dir.path(), &[]);
    let e = broker.txns.describe("idle").unwrap_err();
    assert_eq!(e.kafka_code(), ResponseError::TransactionalIdNotFound.code());
    assert_eq!(broker.txns.describe("busy").unwrap().state, TxnState::Ongoing);
}

#[tokio::test]
async fn bounds_on_ids_and_partitions_are_policy_violations() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_at(
        dir.path(),
        &[
            ("transaction.max.transactional.ids", "1"),
            ("transaction.max.partitions", "2"),
        ],
    );
    topic(&broker, "t", 3);
    let (pid, epoch) = init(&broker, "one").await;
    let e = broker
        .txns
        .init_producer_id(&broker, "two", TIMEOUT_MS, None, now_ms())
        .err()
        .unwrap();
    assert_eq!(e.kafka_code(), ResponseError::PolicyViolation.code());
    let r = add_partitions(&broker, "one", pid, epoch, &[("t", 0), ("t", 1), ("t", 2)], 3).await;
    let code = r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code;
    assert_eq!(code, ResponseError::PolicyViolation.code());
    assert_eq!(broker.txns.describe("one").unwrap().state, TxnState::Empty);
}

#[tokio::test]
async fn markers_for_deleted_topics_are_skipped() {
    let (_dir, broker) = open_broker();
    topic(&broker, "gone", 1);
    topic(&broker, "kept", 1);
    let (pid, epoch) = init(&broker, "tx").await;
    add_partitions(&broker, "tx", pid, epoch, &[("gone", 0), ("kept", 0)], 3).await;
    broker.topics.delete("gone").unwrap();
    assert_eq!(end_txn(&broker, "tx", pid, epoch, false, 4).await, 0);
    broker.txns.settled("tx").await;
    assert_eq!(broker.txns.describe("tx").unwrap().state, TxnState::CompleteAbort);
    assert_eq!(
        markers(&broker.topics.log("kept", 0).unwrap()),
        vec![(pid, epoch, false)]
    );
}

#[test]
fn storage_errors_send_clients_to_find_the_coordinator_and_fencing_follows_the_version() {
    let fenced = Error::ProducerFenced {
        transactional_id: "t".into(),
        producer_id: 1,
        current: 2,
        got: 1,
    };
    assert_eq!(error_code(&fenced, true), ResponseError::ProducerFenced.code());
    assert_eq!(error_code(&fenced, false), ResponseError::InvalidProducerEpoch.code());
    let io = Error::io("x", std::io::Error::other("disk"));
    assert_eq!(error_code(&io, true), ResponseError::NotCoordinator.code());
    assert_eq!(
        error_code(&Error::Shutdown("log"), true),
        ResponseError::NotCoordinator.code()
    );
    let busy = Error::ConcurrentTransactions {
        transactional_id: "t".into(),
    };
    assert!(busy.is_retriable());
}

#[tokio::test]
async fn transactional_offsets_reload_only_with_their_commit_marker() {
    use crate::group::offsets::{CommitEntry, OFFSETS_TOPIC};
    let dir = tempfile::tempdir().unwrap();
    let broker = open_at(dir.path(), &[]);
    topic(&broker, "t", 3);
    let offsets_partition = (
        OFFSETS_TOPIC.to_string(),
        broker.groups.offsets.partition_of("g") as i32,
    );
    // "a" commits, "b" aborts, "c" is still open when the broker stops.
    for (id, partition, offset, end) in [("a", 0, 10, Some(true)), ("b", 1, 20, Some(false)), ("c", 2, 30, None)] {
        let (pid, epoch) = init(&broker, id).await;
        let partitions = std::collections::BTreeSet::from([offsets_partition.clone()]);
        broker
            .txns
            .add_partitions(&broker, id, pid, epoch, partitions, now_ms())
            .unwrap()
            .await
            .unwrap();
        let entry = CommitEntry {
            topic: "t".to_string(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            expire_timestamp_ms: None,
        };
        let appended = broker
            .groups
            .offsets
            .begin_txn_commit("g", pid, epoch, vec![entry], now_ms())
            .unwrap();
        broker.groups.offsets.finish(appended).await.unwrap();
        if let Some(commit) = end {
            assert_eq!(end_txn(&broker, id, pid, epoch, commit, 4).await, 0);
            broker.txns.settled(id).await;
        }
    }
    let check = |broker: &Broker, c_pending: bool| {
        let offsets = &broker.groups.offsets;
        assert_eq!(offsets.fetch("g", "t", 0).map(|v| v.offset), Some(10));
        assert_eq!(offsets.fetch("g", "t", 1), None);
        assert_eq!(offsets.fetch("g", "t", 2), None);
        assert!(!offsets.has_pending_txn("g", "t", 1));
        assert_eq!(offsets.has_pending_txn("g", "t", 2), c_pending);
    };
    check(&broker, true);
    let broker = reopen(broker, dir.path(), &[]);
    check(&broker, true);
    // The open transaction times out: its offset is dropped, durably.
    let far = now_ms() + 10 * i64::from(TIMEOUT_MS);
    assert_eq!(broker.txns.abort_timed_out(&broker, far).await, 1);
    broker.txns.settled("c").await;
    check(&broker, false);
    let broker = reopen(broker, dir.path(), &[]);
    check(&broker, false);
}

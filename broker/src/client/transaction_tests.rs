//! Tests of the transactional producer against a scripted in-process coordinator (not a model
//! of Kafka): it answers every API the producer uses, fails requests with the error codes a test
//! queues, and logs what it received, so that the order of requests and the producer's reaction
//! to each error can be checked without a broker.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{ClientConfig, ConsumerGroupMetadata, Producer, ProducerConfig, ProducerRecord};
use crate::error::Error;
use crate::log::batch::BatchHeader;

/// The producer id the mock coordinator hands out.
const PRODUCER_ID: i64 = 7;

/// What the mock answers and what it saw.
#[derive(Default)]
struct Script {
    /// Error codes to answer, per API key, in order; an empty queue answers 0.
    errors: HashMap<i16, VecDeque<i16>>,
    /// One line per request received, e.g. `AddPartitionsToTxn t-0` or `Produce t-1 txn pid=7 epoch=0 seq=0`.
    log: Vec<String>,
    /// The epoch the next InitProducerId hands out.
    epoch: i16,
}

struct Mock {
    addr: String,
    script: Arc<Mutex<Script>>,
}

impl Mock {
    async fn start() -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let script = Arc::new(Mutex::new(Script::default()));
        let shared = script.clone();
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone(), i32::from(port)));
            }
        });
        Mock { addr, script }
    }

    fn fail_next(&self, api: ApiKey, codes: &[i16]) {
        let mut script = self.script.lock().unwrap();
        script.errors.entry(api as i16).or_default().extend(codes);
    }

    fn log(&self) -> Vec<String> {
        self.script.lock().unwrap().log.clone()
    }

    fn producer(&self, transactional: bool) -> ProducerConfig {
        let mut client = ClientConfig::new([self.addr.clone()]);
        client.request_timeout_ms = 10_000;
        let mut config = ProducerConfig::new(client);
        config.linger_ms = 0;
        config.transactional_id = transactional.then(|| "tx-1".to_string());
        config
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

async fn serve(mut stream: TcpStream, script: Arc<Mutex<Script>>, port: i32) {
    loop {
        let Ok(length) = stream.read_i32().await else {
            return;
        };
        let mut frame = BytesMut::zeroed(length as usize);
        if stream.read_exact(&mut frame).await.is_err() {
            return;
        }
        let mut frame = frame.freeze();
        let api = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]])).expect("known api");
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let header = RequestHeader::decode(&mut frame, api.request_header_version(version)).expect("header");
        let body = answer(api, version, frame, &script, port);
        let mut out = BytesMut::new();
        let mut response_header = ResponseHeader::default();
        response_header.correlation_id = header.correlation_id;
        response_header
            .encode(&mut out, api.response_header_version(version))
            .expect("encode header");
        out.put(body);
        let mut sized = BytesMut::new();
        sized.put_i32(out.len() as i32);
        sized.put(out);
        if stream.write_all(&sized).await.is_err() {
            return;
        }
    }
}

fn encode<T: Encodable>(response: &T, version: i16) -> Bytes {
    let mut out = BytesMut::new();
    response.encode(&mut out, version).expect("encode response");
    out.freeze()
}

fn answer(api: ApiKey, version: i16, mut body: Bytes, script: &Mutex<Script>, port: i32) -> Bytes {
    let mut script = script.lock().unwrap();
    let code = script
        .errors
        .get_mut(&(api as i16))
        .and_then(VecDeque::pop_front)
        .unwrap_or(0);
    match api {
        ApiKey::ApiVersions => {
            let mut response = ApiVersionsResponse::default();
            for (key, max) in [
                (ApiKey::ApiVersions, 3),
                (ApiKey::Metadata, 12),
                (ApiKey::Produce, 9),
                (ApiKey::FindCoordinator, 4),
                (ApiKey::InitProducerId, 4),
                (ApiKey::AddPartitionsToTxn, 3),
                (ApiKey::AddOffsetsToTxn, 4),
                (ApiKey::TxnOffsetCommit, 4),
                (ApiKey::EndTxn, 4),
            ] {
                let mut v = ApiVersion::default();
                v.api_key = key as i16;
                v.max_version = max;
                response.api_keys.push(v);
            }
            encode(&response, version)
        }
        ApiKey::Metadata => {
            let request = MetadataRequest::decode(&mut body, version).expect("metadata");
            let mut response = MetadataResponse::default();
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(0);
            broker.host = text("127.0.0.1");
            broker.port = port;
            response.brokers = vec![broker];
            for t in request.topics.unwrap_or_default() {
                let mut topic = MetadataResponseTopic::default();
                topic.name = t.name;
                topic.partitions = (0..2)
                    .map(|index| {
                        let mut p = MetadataResponsePartition::default();
                        p.partition_index = index;
                        p.leader_id = BrokerId(0);
                        p.replica_nodes = vec![BrokerId(0)];
                        p.isr_nodes = vec![BrokerId(0)];
                        p
                    })
                    .collect();
                response.topics.push(topic);
            }
            encode(&response, version)
        }
        ApiKey::FindCoordinator => {
            let request = FindCoordinatorRequest::decode(&mut body, version).expect("find coordinator");
            script.log.push(format!("FindCoordinator type={}", request.key_type));
            let mut response = FindCoordinatorResponse::default();
            for key in request.coordinator_keys {
                let mut c = Coordinator::default();
                c.key = key;
                c.node_id = BrokerId(0);
                c.host = text("127.0.0.1");
                c.port = port;
                response.coordinators.push(c);
            }
            if version < 4 {
                response.node_id = BrokerId(0);
                response.host = text("127.0.0.1");
                response.port = port;
            }
            encode(&response, version)
        }
        ApiKey::InitProducerId => {
            let request = InitProducerIdRequest::decode(&mut body, version).expect("init producer id");
            script.log.push(format!(
                "InitProducerId id={} current={}/{} timeout={}",
                request.transactional_id.as_ref().map_or("-", |t| t.0.as_str()),
                request.producer_id.0,
                request.producer_epoch,
                request.transaction_timeout_ms
            ));
            let mut response = InitProducerIdResponse::default();
            response.error_code = code;
            if code == 0 {
                response.producer_id = ProducerId(PRODUCER_ID);
                response.producer_epoch = script.epoch;
                script.epoch += 1;
            }
            encode(&response, version)
        }
        ApiKey::AddPartitionsToTxn => {
            let request = AddPartitionsToTxnRequest::decode(&mut body, version).expect("add partitions");
            let mut parts = Vec::new();
            let mut response = AddPartitionsToTxnResponse::default();
            for t in &request.v3_and_below_topics {
                let mut result = add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default();
                result.name = t.name.clone();
                for p in &t.partitions {
                    parts.push(format!("{}-{p}", t.name.0));
                    let mut r = add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default();
                    r.partition_index = *p;
                    r.partition_error_code = code;
                    result.results_by_partition.push(r);
                }
                response.results_by_topic_v3_and_below.push(result);
            }
            parts.sort();
            script.log.push(format!(
                "AddPartitionsToTxn epoch={} {}",
                request.v3_and_below_producer_epoch,
                parts.join(",")
            ));
            encode(&response, version)
        }
        ApiKey::Produce => {
            let request = ProduceRequest::decode(&mut body, version).expect("produce");
            let transactional_id = request.transactional_id.as_ref().map(|t| t.0.to_string());
            let mut response = ProduceResponse::default();
            for t in request.topic_data {
                let mut topic = TopicProduceResponse::default();
                topic.name = t.name.clone();
                for p in t.partition_data {
                    let data = p.records.clone().unwrap_or_default();
                    let header = BatchHeader::parse(&data).expect("batch header");
                    script.log.push(format!(
                        "Produce {}-{} txn={} epoch={} seq={}",
                        t.name.0,
                        p.index,
                        header.is_transactional(),
                        header.producer_epoch,
                        header.base_sequence
                    ));
                    assert_eq!(header.producer_id, PRODUCER_ID, "batches carry the producer id");
                    assert_eq!(
                        transactional_id.as_deref(),
                        header.is_transactional().then_some("tx-1"),
                        "transactional batches come in requests naming the transactional id"
                    );
                    let mut r = PartitionProduceResponse::default();
                    r.index = p.index;
                    r.error_code = code;
                    r.base_offset = if code == 0 { 0 } else { -1 };
                    r.log_append_time_ms = -1;
                    topic.partition_responses.push(r);
                }
                response.responses.push(topic);
            }
            encode(&response, version)
        }
        ApiKey::AddOffsetsToTxn => {
            let request = AddOffsetsToTxnRequest::decode(&mut body, version).expect("add offsets");
            script.log.push(format!("AddOffsetsToTxn group={}", request.group_id.0));
            let mut response = AddOffsetsToTxnResponse::default();
            response.error_code = code;
            encode(&response, version)
        }
        ApiKey::TxnOffsetCommit => {
            let request = TxnOffsetCommitRequest::decode(&mut body, version).expect("txn offset commit");
            let mut response = TxnOffsetCommitResponse::default();
            let mut offsets = Vec::new();
            for t in &request.topics {
                let mut topic = txn_offset_commit_response::TxnOffsetCommitResponseTopic::default();
                topic.name = t.name.clone();
                for p in &t.partitions {
                    offsets.push(format!("{}-{}@{}", t.name.0, p.partition_index, p.committed_offset));
                    let mut r = txn_offset_commit_response::TxnOffsetCommitResponsePartition::default();
                    r.partition_index = p.partition_index;
                    r.error_code = code;
                    topic.partitions.push(r);
                }
                response.topics.push(topic);
            }
            script.log.push(format!(
                "TxnOffsetCommit group={} generation={} member={} {}",
                request.group_id.0,
                request.generation_id,
                request.member_id,
                offsets.join(",")
            ));
            encode(&response, version)
        }
        ApiKey::EndTxn => {
            let request = EndTxnRequest::decode(&mut body, version).expect("end txn");
            script.log.push(format!(
                "EndTxn {} epoch={}",
                if request.committed { "commit" } else { "abort" },
                request.producer_epoch
            ));
            let mut response = EndTxnResponse::default();
            response.error_code = code;
            encode(&response, version)
        }
        other => panic!("the mock does not answer {other:?}"),
    }
}

fn record(partition: i32, value: &str) -> ProducerRecord {
    ProducerRecord {
        partition: Some(partition),
        ..ProducerRecord::new("t", value.to_string())
    }
}

/// The log lines that start with `prefix`.
fn lines(log: &[String], prefix: &str) -> Vec<String> {
    log.iter().filter(|l| l.starts_with(prefix)).cloned().collect()
}

fn position(log: &[String], prefix: &str) -> usize {
    log.iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {log:#?}"))
}

#[tokio::test]
async fn partitions_join_the_transaction_before_their_batches_and_busy_coordinators_are_retried() {
    let mock = Mock::start().await;
    mock.fail_next(ApiKey::InitProducerId, &[51, 14]);
    mock.fail_next(ApiKey::AddPartitionsToTxn, &[51]);
    mock.fail_next(ApiKey::EndTxn, &[51]);
    let producer = Producer::new(mock.producer(true)).await.unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    let a = producer.send(record(0, "a")).await.unwrap();
    let b = producer.send(record(1, "b")).await.unwrap();
    producer.commit_transaction().await.unwrap();
    a.await.unwrap();
    b.await.unwrap();
    let log = mock.log();
    assert_eq!(position(&log, "FindCoordinator type=1"), 0, "{log:#?}");
    let inits = lines(&log, "InitProducerId");
    assert_eq!(inits.len(), 3, "two retries then success: {log:#?}");
    assert!(inits[0].contains("id=tx-1 current=-1/-1 timeout=60000"), "{log:#?}");
    // Every produced partition was added, successfully, before its first batch went out.
    let produces = lines(&log, "Produce");
    assert_eq!(produces.len(), 2, "{log:#?}");
    for produce in &produces {
        assert!(produce.contains("txn=true epoch=0 seq=0"), "{produce}");
        let tp = produce.split(' ').nth(1).unwrap();
        let added = log
            .iter()
            .rposition(|l| l.starts_with("AddPartitionsToTxn") && l.contains(tp))
            .unwrap_or_else(|| panic!("{tp} never added: {log:#?}"));
        assert!(added < log.iter().position(|l| l == produce).unwrap(), "{log:#?}");
    }
    let ends = lines(&log, "EndTxn");
    assert_eq!(ends, vec!["EndTxn commit epoch=0"; 2], "{log:#?}");
    assert!(position(&log, "EndTxn") > log.iter().rposition(|l| l.starts_with("Produce")).unwrap());

    // The next transaction adds its partitions again; an empty one never reaches the coordinator.
    producer.begin_transaction().unwrap();
    producer.send(record(0, "c")).await.unwrap();
    producer.commit_transaction().await.unwrap();
    producer.begin_transaction().unwrap();
    producer.commit_transaction().await.unwrap();
    let log = mock.log();
    assert_eq!(
        lines(&log, "AddPartitionsToTxn").last().unwrap(),
        "AddPartitionsToTxn epoch=0 t-0"
    );
    assert_eq!(
        lines(&log, "Produce").last().unwrap(),
        "Produce t-0 txn=true epoch=0 seq=1"
    );
    assert_eq!(lines(&log, "EndTxn").len(), 3, "{log:#?}");
    producer.close().await.unwrap();
}

#[tokio::test]
async fn a_fenced_producer_fails_every_later_call_with_a_clear_error() {
    let mock = Mock::start().await;
    mock.fail_next(ApiKey::Produce, &[90]);
    let producer = Producer::new(mock.producer(true)).await.unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    let delivery = producer.send(record(0, "a")).await.unwrap();
    let failed = delivery.await.unwrap_err();
    assert_eq!(failed.kafka_code(), 90, "{failed}");
    let commit = producer.commit_transaction().await.unwrap_err();
    assert_eq!(commit.kafka_code(), 90, "{commit}");
    let message = commit.to_string();
    assert!(message.contains("fenced") && message.contains("close it"), "{message}");
    for e in [
        producer.abort_transaction().await.unwrap_err(),
        producer.begin_transaction().unwrap_err(),
        producer.send(record(0, "b")).await.err().unwrap(),
        producer.init_transactions().await.unwrap_err(),
    ] {
        assert_eq!(e.kafka_code(), 90, "{e}");
    }
    assert!(
        lines(&mock.log(), "EndTxn").is_empty(),
        "a fenced producer sends no EndTxn"
    );
}

#[tokio::test]
async fn an_epoch_fenced_by_the_coordinator_is_fatal_too() {
    let mock = Mock::start().await;
    mock.fail_next(ApiKey::EndTxn, &[47]);
    let producer = Producer::new(mock.producer(true)).await.unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    producer.send(record(0, "a")).await.unwrap();
    let e = producer.commit_transaction().await.unwrap_err();
    assert_eq!(e.kafka_code(), 47, "{e}");
    assert!(e.to_string().contains("cannot be used any more"), "{e}");
    assert_eq!(producer.begin_transaction().unwrap_err().kafka_code(), 47);
}

#[tokio::test]
async fn a_failed_batch_needs_an_abort_and_the_producer_comes_back_with_a_new_epoch() {
    let mock = Mock::start().await;
    mock.fail_next(ApiKey::Produce, &[87]);
    let producer = Producer::new(mock.producer(true)).await.unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    let lost = producer.send(record(0, "bad")).await.unwrap();
    assert_eq!(lost.await.unwrap_err().kafka_code(), 87);
    let commit = producer.commit_transaction().await.unwrap_err();
    assert_eq!(commit.kafka_code(), 87, "the transaction cannot commit: {commit}");
    let send = producer.send(record(0, "x")).await.err().unwrap();
    assert!(send.to_string().contains("abort_transaction"), "{send}");
    producer.abort_transaction().await.unwrap();
    let log = mock.log();
    assert_eq!(lines(&log, "EndTxn"), vec!["EndTxn abort epoch=0"], "{log:#?}");
    assert_eq!(
        lines(&log, "InitProducerId").last().unwrap(),
        &format!("InitProducerId id=tx-1 current={PRODUCER_ID}/0 timeout=60000"),
        "the bump names the producer's own id and epoch: {log:#?}"
    );
    // With the new epoch, sequences start again at 0.
    producer.begin_transaction().unwrap();
    producer.send(record(0, "good")).await.unwrap();
    producer.commit_transaction().await.unwrap();
    let log = mock.log();
    assert_eq!(
        lines(&log, "Produce").last().unwrap(),
        "Produce t-0 txn=true epoch=1 seq=0"
    );
    assert_eq!(lines(&log, "EndTxn").last().unwrap(), "EndTxn commit epoch=1");
}

#[tokio::test]
async fn records_of_a_partition_the_coordinator_refused_are_failed_without_being_sent() {
    let mock = Mock::start().await;
    // TOPIC_AUTHORIZATION_FAILED is abortable.
    mock.fail_next(ApiKey::AddPartitionsToTxn, &[29]);
    let producer = Producer::new(mock.producer(true)).await.unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    let delivery = producer.send(record(1, "a")).await.unwrap();
    let e = delivery.await.unwrap_err();
    assert_eq!(e.kafka_code(), 29, "{e}");
    assert_eq!(producer.commit_transaction().await.unwrap_err().kafka_code(), 29);
    producer.abort_transaction().await.unwrap();
    let log = mock.log();
    assert!(lines(&log, "Produce").is_empty(), "{log:#?}");
    assert!(
        lines(&log, "EndTxn").is_empty(),
        "nothing joined the transaction: {log:#?}"
    );
    producer.begin_transaction().unwrap();
    producer.send(record(1, "b")).await.unwrap().await.unwrap();
    producer.commit_transaction().await.unwrap();
}

#[tokio::test]
async fn offsets_join_the_transaction_then_go_to_the_group_coordinator() {
    let mock = Mock::start().await;
    mock.fail_next(ApiKey::TxnOffsetCommit, &[16]);
    let producer = Producer::new(mock.producer(true)).await.unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    let group = ConsumerGroupMetadata {
        group_id: "g".to_string(),
        generation_id: 3,
        member_id: "m-1".to_string(),
        group_instance_id: None,
    };
    let offsets = vec![("in".to_string(), 0, 42), ("in".to_string(), 1, 7)];
    producer.send_offsets_to_transaction(&offsets, &group).await.unwrap();
    producer.send_offsets_to_transaction(&offsets, &group).await.unwrap();
    producer.commit_transaction().await.unwrap();
    let log = mock.log();
    assert_eq!(
        lines(&log, "AddOffsetsToTxn"),
        vec!["AddOffsetsToTxn group=g"],
        "once per group: {log:#?}"
    );
    let commits = lines(&log, "TxnOffsetCommit");
    assert_eq!(commits.len(), 3, "NOT_COORDINATOR is retried: {log:#?}");
    assert_eq!(
        commits[2],
        "TxnOffsetCommit group=g generation=3 member=m-1 in-0@42,in-1@7"
    );
    assert_eq!(
        lines(&log, "EndTxn"),
        vec!["EndTxn commit epoch=0"],
        "offsets alone need EndTxn"
    );
    assert!(position(&log, "AddOffsetsToTxn") < position(&log, "TxnOffsetCommit"));
}

#[tokio::test]
async fn group_errors_fail_the_transaction_but_not_the_producer() {
    let mock = Mock::start().await;
    mock.fail_next(ApiKey::TxnOffsetCommit, &[22]);
    let producer = Producer::new(mock.producer(true)).await.unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    let e = producer
        .send_offsets_to_transaction(&[("in".to_string(), 0, 1)], &ConsumerGroupMetadata::new("g"))
        .await
        .unwrap_err();
    assert_eq!(e.kafka_code(), 22, "ILLEGAL_GENERATION: {e}");
    assert_eq!(producer.commit_transaction().await.unwrap_err().kafka_code(), 22);
    producer.abort_transaction().await.unwrap();
    assert_eq!(lines(&mock.log(), "EndTxn"), vec!["EndTxn abort epoch=0"]);
    assert_eq!(lines(&mock.log(), "InitProducerId").len(), 1, "no new epoch needed");
    producer.begin_transaction().unwrap();
}

#[tokio::test]
async fn transactional_calls_need_a_transactional_id_and_the_right_order() {
    let mock = Mock::start().await;
    let plain = Producer::new(mock.producer(false)).await.unwrap();
    match plain.begin_transaction() {
        Err(Error::InvalidConfig { name, .. }) => assert_eq!(name, "transactional.id"),
        other => panic!("unexpected {other:?}"),
    }
    let producer = Producer::new(mock.producer(true)).await.unwrap();
    let e = producer.send(record(0, "a")).await.err().unwrap();
    assert!(e.to_string().contains("init_transactions"), "{e}");
    producer.init_transactions().await.unwrap();
    let e = producer.send(record(0, "a")).await.err().unwrap();
    assert!(e.to_string().contains("begin_transaction"), "{e}");
    assert!(producer.commit_transaction().await.is_err());
    let mut config = mock.producer(true);
    config.idempotent = false;
    assert!(matches!(
        Producer::new(config).await,
        Err(Error::InvalidConfig { name, .. }) if name == "enable.idempotence"
    ));
}

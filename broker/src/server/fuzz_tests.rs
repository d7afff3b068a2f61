//! Property tests that throw random and mutated frames at request dispatch: every frame must
//! be answered or refused, never panic or abort the broker.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Encodable;
use proptest::prelude::*;

use super::connection::dispatch;
use super::versions::SUPPORTED;
use crate::{Broker, BrokerConfig};

/// A valid frame for every served API and decodable version, built from default requests.
fn valid_frames() -> Vec<Bytes> {
    let mut frames = Vec::new();
    for s in SUPPORTED {
        for v in s.min_decodable..=s.max_version {
            let mut buf = BytesMut::new();
            let header = RequestHeader::default()
                .with_request_api_key(s.key as i16)
                .with_request_api_version(v)
                .with_correlation_id(7);
            header.encode(&mut buf, s.key.request_header_version(v)).unwrap();
            let body = match s.key {
                ApiKey::Produce => RequestKind::Produce(ProduceRequest::default().with_acks(1)),
                ApiKey::Fetch => RequestKind::Fetch(FetchRequest::default()),
                ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
                ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
                ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
                ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default()),
                ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
                ApiKey::DeleteRecords => RequestKind::DeleteRecords(DeleteRecordsRequest::default()),
                ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
                ApiKey::OffsetForLeaderEpoch => {
                    RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default())
                }
                ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default()),
                ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default()),
                ApiKey::CreatePartitions => RequestKind::CreatePartitions(CreatePartitionsRequest::default()),
                ApiKey::IncrementalAlterConfigs => {
                    RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default())
                }
                ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
                ApiKey::FindCoordinator => RequestKind::FindCoordinator(FindCoordinatorRequest::default()),
                ApiKey::JoinGroup => RequestKind::JoinGroup(JoinGroupRequest::default()),
                ApiKey::Heartbeat => RequestKind::Heartbeat(HeartbeatRequest::default()),
                ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::default()),
                ApiKey::SyncGroup => RequestKind::SyncGroup(SyncGroupRequest::default()),
                ApiKey::DescribeGroups => RequestKind::DescribeGroups(DescribeGroupsRequest::default()),
                ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
                ApiKey::DeleteGroups => RequestKind::DeleteGroups(DeleteGroupsRequest::default()),
                ApiKey::OffsetCommit => RequestKind::OffsetCommit(OffsetCommitRequest::default()),
                ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
                ApiKey::OffsetDelete => RequestKind::OffsetDelete(OffsetDeleteRequest::default()),
                ApiKey::ConsumerGroupHeartbeat => {
                    RequestKind::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest::default())
                }
                ApiKey::ConsumerGroupDescribe => {
                    RequestKind::ConsumerGroupDescribe(ConsumerGroupDescribeRequest::default())
                }
                ApiKey::AddPartitionsToTxn => RequestKind::AddPartitionsToTxn(AddPartitionsToTxnRequest::default()),
                ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(AddOffsetsToTxnRequest::default()),
                ApiKey::EndTxn => RequestKind::EndTxn(EndTxnRequest::default()),
                ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(TxnOffsetCommitRequest::default()),
                ApiKey::DescribeProducers => RequestKind::DescribeProducers(DescribeProducersRequest::default()),
                ApiKey::DescribeTransactions => {
                    RequestKind::DescribeTransactions(DescribeTransactionsRequest::default())
                }
                ApiKey::ListTransactions => RequestKind::ListTransactions(ListTransactionsRequest::default()),
                other => panic!("no sample request for {other:?}"),
            };
            body.encode(&mut buf, v).unwrap();
            frames.push(buf.freeze());
        }
    }
    frames
}

fn with_broker(f: impl FnOnce(&std::sync::Arc<Broker>)) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path().to_path_buf());
    // One offsets partition instead of Kafka's 50 keeps thousands of broker opens fast, and so
    // does one transaction log partition when a mutated InitProducerId creates it.
    config.set("offsets.topic.num.partitions", "1").unwrap();
    config.set("transaction.state.log.num.partitions", "1").unwrap();
    let broker = Broker::open(config).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    f(&broker);
}

const PEER: &str = "127.0.0.1:1";

#[test]
fn every_valid_default_frame_is_answered() {
    with_broker(|broker| {
        for frame in valid_frames() {
            let key = i16::from_be_bytes([frame[0], frame[1]]);
            let outcome = dispatch(broker, frame, PEER.parse::<SocketAddr>().unwrap());
            assert!(outcome.is_ok(), "api {key}: {:?}", outcome.err());
        }
    });
}

#[test]
fn a_forged_array_length_is_refused_not_fatal() {
    with_broker(|broker| {
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::Metadata as i16);
        frame.put_i16(1);
        frame.put_i32(1);
        frame.put_i16(-1); // null client id
        frame.put_i32(i32::MAX); // topics array length
        assert!(dispatch(broker, frame.freeze(), PEER.parse().unwrap()).is_err());
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bodies_never_panic(api in 0usize..SUPPORTED.len(), version in 0i16..16, body in proptest::collection::vec(any::<u8>(), 0..256)) {
        with_broker(|broker| {
            let mut frame = BytesMut::new();
            frame.put_i16(SUPPORTED[api].key as i16);
            frame.put_i16(version);
            frame.put_i32(1);
            frame.put_slice(&body);
            let _ = dispatch(broker, frame.freeze(), PEER.parse().unwrap());
        });
    }

    #[test]
    fn mutated_valid_frames_never_panic(which in any::<prop::sample::Index>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in any::<prop::sample::Index>()) {
        let frames = valid_frames();
        let mut frame = frames[which.index(frames.len())].to_vec();
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        frame.truncate(cut.index(frame.len() + 1).max(4));
        with_broker(|broker| {
            let _ = dispatch(broker, Bytes::from(frame), PEER.parse().unwrap());
        });
    }
}

//! The one table of Kafka APIs and versions Brook serves. Never advertise the crate's
//! `valid_versions()` as is: it lists unstable versions whose structs do not encode.

use kafka_protocol::messages::ApiKey;

/// An API Brook serves, the versions it advertises, and the lowest version it can decode.
#[derive(Debug, Clone, Copy)]
pub struct Supported {
    /// The API.
    pub key: ApiKey,
    /// Lowest advertised version. Old librdkafka probes specific versions, so some ranges start
    /// below what the codec decodes; those versions are answered with UNSUPPORTED_VERSION.
    pub min_version: i16,
    /// Highest advertised version.
    pub max_version: i16,
    /// Lowest version actually decoded.
    pub min_decodable: i16,
}

const fn api(key: ApiKey, min_version: i16, max_version: i16, min_decodable: i16) -> Supported {
    Supported {
        key,
        min_version,
        max_version,
        min_decodable,
    }
}

/// Every API Brook serves, by API key number. Produce is capped at 11 until transactions V2
/// (KIP-890); Fetch stops at 12, the last version that names topics rather than topic ids.
/// AddPartitionsToTxn stops at 3 (4+ is broker-to-broker) and EndTxn at 4 (5 is transactions V2).
pub const SUPPORTED: &[Supported] = &[
    api(ApiKey::Produce, 0, 11, 3),
    api(ApiKey::Fetch, 4, 12, 4),
    api(ApiKey::ListOffsets, 1, 8, 1),
    api(ApiKey::Metadata, 0, 12, 0),
    api(ApiKey::OffsetCommit, 2, 9, 2),
    api(ApiKey::OffsetFetch, 1, 9, 1),
    api(ApiKey::FindCoordinator, 0, 4, 0),
    api(ApiKey::JoinGroup, 0, 9, 0),
    api(ApiKey::Heartbeat, 0, 4, 0),
    api(ApiKey::LeaveGroup, 0, 5, 0),
    api(ApiKey::SyncGroup, 0, 5, 0),
    api(ApiKey::DescribeGroups, 0, 6, 0),
    api(ApiKey::ListGroups, 0, 5, 0),
    api(ApiKey::ApiVersions, 0, 4, 0),
    api(ApiKey::CreateTopics, 2, 7, 2),
    api(ApiKey::DeleteTopics, 1, 6, 1),
    api(ApiKey::DeleteRecords, 0, 2, 0),
    api(ApiKey::InitProducerId, 0, 4, 0),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4, 2),
    api(ApiKey::AddPartitionsToTxn, 0, 3, 0),
    api(ApiKey::AddOffsetsToTxn, 0, 4, 0),
    api(ApiKey::EndTxn, 0, 4, 0),
    api(ApiKey::TxnOffsetCommit, 0, 4, 0),
    api(ApiKey::DescribeConfigs, 1, 4, 1),
    api(ApiKey::AlterConfigs, 0, 2, 0),
    api(ApiKey::CreatePartitions, 0, 3, 0),
    api(ApiKey::DeleteGroups, 0, 2, 0),
    api(ApiKey::IncrementalAlterConfigs, 0, 1, 0),
    api(ApiKey::OffsetDelete, 0, 0, 0),
    api(ApiKey::DescribeCluster, 0, 1, 0),
    api(ApiKey::DescribeProducers, 0, 0, 0),
    api(ApiKey::DescribeTransactions, 0, 0, 0),
    api(ApiKey::ListTransactions, 0, 1, 0),
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1, 0),
    api(ApiKey::ConsumerGroupDescribe, 0, 1, 0),
];

/// The entry for an API, if Brook serves it.
pub fn supported(key: ApiKey) -> Option<&'static Supported> {
    SUPPORTED.iter().find(|s| s.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Decodable, Encodable, Message};

    fn check<T: Message + Encodable + Decodable + Default>(key: ApiKey) {
        let s = supported(key).unwrap();
        assert!(
            s.min_decodable >= T::VERSIONS.min,
            "{key:?} decodes from {}",
            T::VERSIONS.min
        );
        assert!(s.max_version <= T::VERSIONS.max, "{key:?} advertises past the codec");
        for v in s.min_decodable..=s.max_version {
            let mut buf = bytes::BytesMut::new();
            T::default()
                .encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("{key:?} v{v} does not encode: {e}"));
        }
    }

    #[test]
    fn every_advertised_version_encodes_and_decodes() {
        check::<ProduceResponse>(ApiKey::Produce);
        check::<ProduceRequest>(ApiKey::Produce);
        check::<FetchResponse>(ApiKey::Fetch);
        check::<ListOffsetsResponse>(ApiKey::ListOffsets);
        check::<MetadataResponse>(ApiKey::Metadata);
        check::<ApiVersionsResponse>(ApiKey::ApiVersions);
        check::<CreateTopicsResponse>(ApiKey::CreateTopics);
        check::<DeleteTopicsResponse>(ApiKey::DeleteTopics);
        check::<DeleteRecordsResponse>(ApiKey::DeleteRecords);
        check::<InitProducerIdResponse>(ApiKey::InitProducerId);
        check::<OffsetForLeaderEpochResponse>(ApiKey::OffsetForLeaderEpoch);
        check::<DescribeConfigsResponse>(ApiKey::DescribeConfigs);
        check::<AlterConfigsResponse>(ApiKey::AlterConfigs);
        check::<CreatePartitionsResponse>(ApiKey::CreatePartitions);
        check::<IncrementalAlterConfigsResponse>(ApiKey::IncrementalAlterConfigs);
        check::<DescribeClusterResponse>(ApiKey::DescribeCluster);
        check::<FindCoordinatorResponse>(ApiKey::FindCoordinator);
        check::<JoinGroupResponse>(ApiKey::JoinGroup);
        check::<HeartbeatResponse>(ApiKey::Heartbeat);
        check::<LeaveGroupResponse>(ApiKey::LeaveGroup);
        check::<SyncGroupResponse>(ApiKey::SyncGroup);
        check::<DescribeGroupsResponse>(ApiKey::DescribeGroups);
        check::<ListGroupsResponse>(ApiKey::ListGroups);
        check::<DeleteGroupsResponse>(ApiKey::DeleteGroups);
        check::<OffsetCommitResponse>(ApiKey::OffsetCommit);
        check::<OffsetFetchResponse>(ApiKey::OffsetFetch);
        check::<OffsetDeleteResponse>(ApiKey::OffsetDelete);
        check::<ConsumerGroupHeartbeatResponse>(ApiKey::ConsumerGroupHeartbeat);
        check::<ConsumerGroupDescribeResponse>(ApiKey::ConsumerGroupDescribe);
        check::<AddPartitionsToTxnResponse>(ApiKey::AddPartitionsToTxn);
        check::<AddPartitionsToTxnRequest>(ApiKey::AddPartitionsToTxn);
        check::<AddOffsetsToTxnResponse>(ApiKey::AddOffsetsToTxn);
        check::<EndTxnResponse>(ApiKey::EndTxn);
        check::<TxnOffsetCommitResponse>(ApiKey::TxnOffsetCommit);
        check::<DescribeProducersResponse>(ApiKey::DescribeProducers);
        check::<DescribeTransactionsResponse>(ApiKey::DescribeTransactions);
        check::<ListTransactionsResponse>(ApiKey::ListTransactions);
        assert_eq!(SUPPORTED.len(), 35);
    }

    #[test]
    fn table_is_sorted_by_api_key() {
        let keys: Vec<i16> = SUPPORTED.iter().map(|s| s.key as i16).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}

//! The API versions this client speaks, and the choice of one version per API against a broker.

use std::collections::HashMap;

use kafka_protocol::messages::ApiKey;

use crate::error::{Error, Result};

/// The versions the client can encode and decode correctly, per API: (api, min, max).
///
/// Produce stops at v9 (flexible, no KIP-890), Fetch at v12 (the last with topic names),
/// Metadata starts at v4 (`allow_auto_topic_creation` exists from there). The group APIs stop where
/// Kafka 4.1 switches to topic ids (OffsetCommit v10, OffsetFetch v10) and FindCoordinator at v4
/// (batched keys; v5-6 only add share-group error codes). The transaction APIs stop before
/// transactions V2 (KIP-890 part 2: EndTxn v5, TxnOffsetCommit v5); AddPartitionsToTxn v4+ is
/// for brokers only.
pub(crate) const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 4, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::FindCoordinator, 1, 4),
    (ApiKey::JoinGroup, 2, 9),
    (ApiKey::SyncGroup, 1, 5),
    (ApiKey::Heartbeat, 1, 4),
    (ApiKey::LeaveGroup, 1, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
];

/// The version ranges one broker advertised in its ApiVersions response, keyed by API key.
#[derive(Debug, Clone, Default)]
pub(crate) struct BrokerVersions {
    ranges: HashMap<i16, (i16, i16)>,
}

impl BrokerVersions {
    /// Records the range the broker advertised for one API.
    pub(crate) fn insert(&mut self, api_key: i16, min: i16, max: i16) {
        self.ranges.insert(api_key, (min, max));
    }

    /// The highest version both sides support for `api`, or an error saying why there is none.
    pub(crate) fn pick(&self, api: ApiKey, addr: &str) -> Result<i16> {
        let (_, ours_min, ours_max) = CLIENT_VERSIONS
            .iter()
            .copied()
            .find(|(key, _, _)| *key == api)
            .ok_or_else(|| unsupported(api, addr, "the client does not implement it"))?;
        let (theirs_min, theirs_max) = *self
            .ranges
            .get(&(api as i16))
            .ok_or_else(|| unsupported(api, addr, "the broker does not offer it"))?;
        let version = ours_max.min(theirs_max);
        if version < ours_min.max(theirs_min) {
            return Err(unsupported(
                api,
                addr,
                &format!("the broker offers v{theirs_min}..=v{theirs_max}, the client v{ours_min}..=v{ours_max}"),
            ));
        }
        Ok(version)
    }
}

fn unsupported(api: ApiKey, addr: &str, why: &str) -> Error {
    Error::Remote {
        code: 35,
        message: format!("UnsupportedVersion: no common version of {api:?} with {addr}: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_lower_of_the_two_maxima() {
        let mut versions = BrokerVersions::default();
        versions.insert(ApiKey::Produce as i16, 0, 11);
        versions.insert(ApiKey::Fetch as i16, 0, 7);
        assert_eq!(versions.pick(ApiKey::Produce, "b").unwrap(), 9);
        assert_eq!(versions.pick(ApiKey::Fetch, "b").unwrap(), 7);
    }

    #[test]
    fn refuses_when_ranges_do_not_meet_or_the_api_is_missing() {
        let mut versions = BrokerVersions::default();
        versions.insert(ApiKey::Produce as i16, 10, 13);
        versions.insert(ApiKey::Metadata as i16, 0, 3);
        assert!(versions.pick(ApiKey::Produce, "b").is_err());
        assert!(versions.pick(ApiKey::Metadata, "b").is_err());
        assert!(versions.pick(ApiKey::Fetch, "b").is_err());
    }
}

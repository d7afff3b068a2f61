//! FindCoordinator: names the node that coordinates a group or transactional id. A single node
//! coordinates every group and every transactional id; other key types (share groups) are
//! refused with INVALID_REQUEST, as Kafka refuses a key type it does not know.
//!
//! librdkafka gates its LZ4 feature on FindCoordinator v0 being advertised, so this API is served
//! even before the group APIs are: without it librdkafka silently sends LZ4 batches uncompressed.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// Answers for one key (v0-3) or for every key of a batch (v4+).
pub fn handle(broker: &Arc<Broker>, request: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let config = broker.config();
    let host = StrBytes::from_string(config.advertised_host.clone());
    let answer = |key: StrBytes| {
        let coordinator = Coordinator::default().with_key(key);
        if request.key_type == GROUP || request.key_type == TRANSACTION {
            coordinator
                .with_node_id(BrokerId(config.node_id))
                .with_host(host.clone())
                .with_port(config.advertised_port)
        } else {
            coordinator
                .with_node_id(BrokerId(-1))
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "only group and transaction coordinators exist",
                )))
        }
    };
    if version >= 4 {
        return FindCoordinatorResponse::default()
            .with_coordinators(request.coordinator_keys.into_iter().map(answer).collect());
    }
    let c = answer(request.key);
    let response = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 {
        response.with_error_message(c.error_message)
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::create_topics::test_support;

    #[test]
    fn groups_and_transactions_are_coordinated_here_in_every_version() {
        let (_dir, broker) = test_support::open();
        // Key type 1 (transactions) exists from v1.
        for (key_type, versions) in [(GROUP, 0..=4), (TRANSACTION, 1..=4)] {
            for version in versions {
                let request = FindCoordinatorRequest::default().with_key_type(key_type);
                let request = if version >= 4 {
                    request.with_coordinator_keys(vec![StrBytes::from_static_str("g"), StrBytes::from_static_str("h")])
                } else {
                    request.with_key(StrBytes::from_static_str("g"))
                };
                let request = crate::api::offset_commit::test_support::roundtrip(&request, version);
                let response = handle(&broker, request, version);
                test_support::encodes(&response, version..=version);
                let answers: Vec<(i16, BrokerId, i32)> = if version >= 4 {
                    response
                        .coordinators
                        .iter()
                        .map(|c| (c.error_code, c.node_id, c.port))
                        .collect()
                } else {
                    vec![(response.error_code, response.node_id, response.port)]
                };
                let here = (0, BrokerId(broker.config().node_id), broker.config().advertised_port);
                assert!(!answers.is_empty());
                assert!(
                    answers.iter().all(|a| *a == here),
                    "key type {key_type} v{version}: {answers:?}"
                );
            }
        }
        let share = handle(&broker, FindCoordinatorRequest::default().with_key_type(2), 3);
        assert_eq!(share.error_code, ResponseError::InvalidRequest.code());
        // Finding the transaction coordinator creates nothing yet.
        assert!(broker.topics.get(crate::txn::TXN_TOPIC).is_none());
    }
}

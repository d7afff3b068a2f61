//! FindCoordinator: names the node that coordinates a group or transactional id. A single node
//! coordinates every group; the transaction coordinator does not exist yet.
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

/// Answers for one key (v0-3) or for every key of a batch (v4+).
pub fn handle(broker: &Arc<Broker>, request: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let config = broker.config();
    let host = StrBytes::from_string(config.advertised_host.clone());
    let answer = |key: StrBytes| {
        let coordinator = Coordinator::default().with_key(key);
        if request.key_type == GROUP {
            coordinator
                .with_node_id(BrokerId(config.node_id))
                .with_host(host.clone())
                .with_port(config.advertised_port)
        } else {
            coordinator
                .with_node_id(BrokerId(-1))
                .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                .with_error_message(Some(StrBytes::from_static_str("transactions are not supported yet")))
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
    fn groups_are_coordinated_here_in_every_version() {
        let (_dir, broker) = test_support::open();
        for version in 0..=4 {
            let request = FindCoordinatorRequest::default()
                .with_key(StrBytes::from_static_str("g"))
                .with_coordinator_keys(vec![StrBytes::from_static_str("g")]);
            let response = handle(&broker, request, version);
            test_support::encodes(&response, version..=version);
            let (code, node) = if version >= 4 {
                (response.coordinators[0].error_code, response.coordinators[0].node_id)
            } else {
                (response.error_code, response.node_id)
            };
            assert_eq!((code, node), (0, BrokerId(broker.config().node_id)), "v{version}");
        }
        let txn = handle(&broker, FindCoordinatorRequest::default().with_key_type(1), 3);
        assert_eq!(txn.error_code, ResponseError::CoordinatorNotAvailable.code());
    }
}

//! DescribeCluster (v0-1): the cluster id, the controller (this node) and the one broker.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;

/// Kafka's EndpointType id for brokers; controllers (2) are not served by a broker listener.
const ENDPOINT_BROKERS: i8 = 1;
const ENDPOINT_CONTROLLERS: i8 = 2;

/// Kafka's AclOperation ids that apply to the cluster resource: CREATE, ALTER, DESCRIBE,
/// CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE. Without an authorizer,
/// Kafka reports all of them as allowed.
const CLUSTER_OPERATIONS: &[u32] = &[5, 7, 8, 9, 10, 11, 12];

/// Answers with this node as the whole cluster.
pub fn handle(broker: &Arc<Broker>, request: DescribeClusterRequest, version: i16) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    // Version 0 has no endpoint type field, so Kafka answers a mismatch there with INVALID_REQUEST.
    let mismatch = |error: ResponseError| {
        if version == 0 {
            ResponseError::InvalidRequest.code()
        } else {
            error.code()
        }
    };
    match request.endpoint_type {
        ENDPOINT_BROKERS => {}
        ENDPOINT_CONTROLLERS => {
            response.error_code = mismatch(ResponseError::MismatchedEndpointType);
            response.error_message = Some(StrBytes::from_static_str(
                "the request was sent to a broker endpoint, but asked for controllers",
            ));
            return response;
        }
        other => {
            response.error_code = mismatch(ResponseError::UnsupportedEndpointType);
            response.error_message = Some(StrBytes::from_string(format!("unsupported endpoint type {other}")));
            return response;
        }
    }
    let config = broker.config();
    let mut node = DescribeClusterBroker::default();
    node.broker_id = BrokerId(config.node_id);
    node.host = StrBytes::from_string(config.advertised_host.clone());
    node.port = config.advertised_port;
    response.cluster_id = StrBytes::from_string(broker.cluster_id.clone());
    response.controller_id = BrokerId(config.node_id);
    response.brokers = vec![node];
    response.endpoint_type = ENDPOINT_BROKERS;
    if request.include_cluster_authorized_operations {
        response.cluster_authorized_operations =
            CLUSTER_OPERATIONS.iter().fold(0u32, |bits, op| bits | (1 << op)) as i32;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::super::create_topics::test_support::{encodes, open};
    use super::*;

    #[test]
    fn describes_this_node_as_the_cluster() {
        let (_dir, broker) = open();
        let response = handle(&broker, DescribeClusterRequest::default(), 1);
        encodes(&response, 0..=1);
        assert_eq!(response.error_code, 0);
        assert_eq!(response.error_message, None);
        assert_eq!(response.cluster_id.as_str(), broker.cluster_id);
        assert_eq!(response.controller_id, BrokerId(0));
        assert_eq!(response.brokers.len(), 1);
        assert_eq!(
            (response.brokers[0].host.as_str(), response.brokers[0].port),
            ("127.0.0.1", 9092)
        );
        assert_eq!(response.endpoint_type, 1);
        assert_eq!(
            response.cluster_authorized_operations,
            i32::MIN,
            "left at the schema default unless asked"
        );
        let mut asked = DescribeClusterRequest::default();
        asked.include_cluster_authorized_operations = true;
        assert_eq!(
            handle(&broker, asked, 0).cluster_authorized_operations,
            0b1_1111_1010_0000
        );
    }

    #[test]
    fn other_endpoint_types_are_refused() {
        let (_dir, broker) = open();
        let mut request = DescribeClusterRequest::default();
        request.endpoint_type = 2;
        assert_eq!(
            handle(&broker, request.clone(), 1).error_code,
            ResponseError::MismatchedEndpointType.code()
        );
        request.endpoint_type = 9;
        assert_eq!(
            handle(&broker, request, 1).error_code,
            ResponseError::UnsupportedEndpointType.code()
        );
    }
}

//! InitProducerId: hands idempotent producers a fresh producer id (transactions come later).

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

/// Answers InitProducerId for idempotent producers; transactional ids are refused until the
/// transaction coordinator exists.
pub fn handle(broker: &Arc<Broker>, request: InitProducerIdRequest, _version: i16) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if request.transactional_id.is_some() {
        return response
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(ProducerId(-1));
    }
    // Without a transactional id Kafka ignores any producer id and epoch sent (a client must not
    // be able to fence another's id) and hands out a fresh id.
    match broker.next_producer_id() {
        Ok(id) => response.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "could not allocate a producer id");
            response
                .with_error_code(e.kafka_code())
                .with_producer_id(ProducerId(-1))
        }
    }
}

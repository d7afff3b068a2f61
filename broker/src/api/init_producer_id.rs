//! InitProducerId (v0-4): hands idempotent producers a fresh producer id, and transactional
//! producers the id and epoch of their transactional id from the transaction coordinator.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind};
use kafka_protocol::ResponseError;

use super::Reply;
use crate::broker::{now_ms, Broker};
use crate::txn::{self, state::NO_PRODUCER_EPOCH, state::NO_PRODUCER_ID};

/// The first version whose clients understand PRODUCER_FENCED (KIP-588).
const PRODUCER_FENCED_VERSION: i16 = 4;
/// The first version that carries the producer's current id and epoch (KIP-360).
const EXPECTED_PRODUCER_VERSION: i16 = 3;

/// Answers InitProducerId: at once for idempotent producers, once the new epoch is durable for
/// transactional ones.
pub fn handle(broker: &Arc<Broker>, request: InitProducerIdRequest, version: i16) -> Reply {
    let Some(transactional_id) = request.transactional_id.as_ref() else {
        return now(idempotent(broker));
    };
    let expected = (version >= EXPECTED_PRODUCER_VERSION && request.producer_id.0 != NO_PRODUCER_ID)
        .then_some((request.producer_id.0, request.producer_epoch));
    if version >= EXPECTED_PRODUCER_VERSION
        && (request.producer_id.0 == NO_PRODUCER_ID) != (request.producer_epoch == NO_PRODUCER_EPOCH)
    {
        return now(failed(ResponseError::InvalidRequest.code()));
    }
    let knows_fenced = version >= PRODUCER_FENCED_VERSION;
    let waiting = broker.txns.init_producer_id(
        broker,
        transactional_id.0.as_str(),
        request.transaction_timeout_ms,
        expected,
        now_ms(),
    );
    match waiting {
        Err(e) => {
            tracing::debug!(transactional_id = %transactional_id.0, error = %e, "InitProducerId refused");
            now(failed(txn::error_code(&e, knows_fenced)))
        }
        Ok(waiting) => Reply::Later(Box::pin(async move {
            let response = match waiting.await {
                Ok((producer_id, epoch)) => InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(epoch),
                Err(e) => failed(txn::error_code(&e, knows_fenced)),
            };
            Some(ResponseKind::InitProducerId(response))
        })),
    }
}

/// Without a transactional id Kafka ignores any producer id and epoch sent (a client must not
/// be able to fence another's id) and hands out a fresh id.
fn idempotent(broker: &Broker) -> InitProducerIdResponse {
    match broker.next_producer_id() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "could not allocate a producer id");
            failed(e.kafka_code())
        }
    }
}

fn failed(code: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(NO_PRODUCER_ID))
        .with_producer_epoch(NO_PRODUCER_EPOCH)
}

fn now(response: InitProducerIdResponse) -> Reply {
    Reply::Now(Box::new(ResponseKind::InitProducerId(response)))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::TransactionalId;

    use super::*;
    use crate::api::create_topics::test_support::{encodes, s};
    use crate::api::offset_commit::test_support::{resolve, roundtrip};
    use crate::txn::tests::open_broker;

    async fn init(broker: &Arc<Broker>, request: InitProducerIdRequest, version: i16) -> InitProducerIdResponse {
        let request = roundtrip(&request, version);
        match resolve(handle(broker, request, version)).await {
            Some(ResponseKind::InitProducerId(r)) => {
                encodes(&r, version..=version);
                r
            }
            _ => panic!("not an InitProducerId response"),
        }
    }

    fn txn(id: &str, timeout_ms: i32) -> InitProducerIdRequest {
        InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(id))))
            .with_transaction_timeout_ms(timeout_ms)
    }

    fn answer(r: &InitProducerIdResponse) -> (i16, i64, i16) {
        (r.error_code, r.producer_id.0, r.producer_epoch)
    }

    #[tokio::test]
    async fn idempotent_producers_get_fresh_ids_at_every_version() {
        let (_dir, broker) = open_broker();
        let mut ids = Vec::new();
        for version in 0..=4 {
            let r = init(
                &broker,
                InitProducerIdRequest::default().with_transactional_id(None),
                version,
            )
            .await;
            assert_eq!((r.error_code, r.producer_epoch), (0, 0), "v{version}");
            ids.push(r.producer_id.0);
        }
        ids.dedup();
        assert_eq!(ids.len(), 5);
        assert!(
            broker.topics.get(txn::TXN_TOPIC).is_none(),
            "no transaction, no transaction log"
        );
    }

    #[tokio::test]
    async fn transactional_ids_get_an_id_then_bumped_epochs() {
        let (_dir, broker) = open_broker();
        let first = init(&broker, txn("t1", 60_000), 0).await;
        assert_eq!((first.error_code, first.producer_epoch), (0, 0));
        let again = init(&broker, txn("t1", 60_000), 2).await;
        assert_eq!(answer(&again), (0, first.producer_id.0, 1));
        // KIP-360: the current id and epoch bump it; a retry of that bump gets the same epoch.
        let bump = txn("t1", 60_000)
            .with_producer_id(first.producer_id)
            .with_producer_epoch(1);
        assert_eq!(
            answer(&init(&broker, bump.clone(), 3).await),
            (0, first.producer_id.0, 2)
        );
        assert_eq!(answer(&init(&broker, bump, 4).await), (0, first.producer_id.0, 2));
        // An older epoch is fenced: INVALID_PRODUCER_EPOCH before v4, PRODUCER_FENCED from v4.
        let stale = txn("t1", 60_000)
            .with_producer_id(first.producer_id)
            .with_producer_epoch(0);
        let fenced = ResponseError::ProducerFenced.code();
        let invalid = ResponseError::InvalidProducerEpoch.code();
        assert_eq!(answer(&init(&broker, stale.clone(), 4).await), (fenced, -1, -1));
        assert_eq!(answer(&init(&broker, stale, 3).await), (invalid, -1, -1));
        let other = init(&broker, txn("t2", 60_000), 4).await;
        assert_ne!(other.producer_id, first.producer_id);
    }

    #[tokio::test]
    async fn bad_requests_get_kafkas_codes() {
        let (_dir, broker) = open_broker();
        let timeout = ResponseError::InvalidTransactionTimeout.code();
        assert_eq!(init(&broker, txn("t", 900_001), 4).await.error_code, timeout);
        assert_eq!(init(&broker, txn("t", 0), 4).await.error_code, timeout);
        assert_eq!(
            init(&broker, txn("", 1000), 4).await.error_code,
            ResponseError::InvalidRequest.code()
        );
        let half = txn("t", 1000).with_producer_id(ProducerId(5));
        assert_eq!(
            init(&broker, half, 3).await.error_code,
            ResponseError::InvalidRequest.code()
        );
    }
}

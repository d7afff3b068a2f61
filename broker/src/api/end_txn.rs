//! EndTxn (v0-4): commits or aborts a producer's transaction. The answer comes once the
//! decision (PrepareCommit or PrepareAbort) is durable; the coordinator then writes the markers
//! in the background. Version 5 (transactions V2, an epoch bump per transaction) is not served.

use std::sync::Arc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ResponseKind};

use super::Reply;
use crate::broker::{now_ms, Broker};
use crate::txn;

/// Ends the transaction; answers once the decision is durable.
pub fn handle(broker: &Arc<Broker>, request: EndTxnRequest, version: i16) -> Reply {
    let waiting = broker.txns.end_txn(
        broker,
        request.transactional_id.0.as_str(),
        request.producer_id.0,
        request.producer_epoch,
        request.committed,
        now_ms(),
    );
    if let Err(e) = &waiting {
        tracing::debug!(transactional_id = %request.transactional_id.0, error = %e, "EndTxn refused");
    }
    txn::reply_with_code(waiting, version >= txn::PRODUCER_FENCED_VERSION, |code| {
        ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(code))
    })
}

#[cfg(test)]
mod tests {
    use kafka_protocol::ResponseError;

    use crate::txn::tests::{add_partitions, end_txn, init, open_broker, topic};
    use crate::txn::TxnState;

    #[tokio::test]
    async fn commit_and_abort_at_every_version() {
        let (_dir, broker) = open_broker();
        topic(&broker, "t", 1);
        let (pid, epoch) = init(&broker, "tx").await;
        for version in 0..=4 {
            let commit = version % 2 == 0;
            add_partitions(&broker, "tx", pid, epoch, &[("t", 0)], 3).await;
            assert_eq!(
                end_txn(&broker, "tx", pid, epoch, commit, version).await,
                0,
                "v{version}"
            );
            broker.txns.settled("tx").await;
            let want = if commit {
                TxnState::CompleteCommit
            } else {
                TxnState::CompleteAbort
            };
            assert_eq!(broker.txns.describe("tx").unwrap().state, want, "v{version}");
            // A retry of the same end succeeds; the opposite end is INVALID_TXN_STATE.
            assert_eq!(end_txn(&broker, "tx", pid, epoch, commit, version).await, 0);
            assert_eq!(
                end_txn(&broker, "tx", pid, epoch, !commit, version).await,
                ResponseError::InvalidTxnState.code()
            );
        }
    }

    #[tokio::test]
    async fn kafkas_errors_for_ending_what_cannot_end() {
        let (_dir, broker) = open_broker();
        topic(&broker, "t", 1);
        let (pid, epoch) = init(&broker, "tx").await;
        let invalid_state = ResponseError::InvalidTxnState.code();
        assert_eq!(
            end_txn(&broker, "tx", pid, epoch, true, 4).await,
            invalid_state,
            "nothing to commit"
        );
        add_partitions(&broker, "tx", pid, epoch, &[("t", 0)], 3).await;
        assert_eq!(
            end_txn(&broker, "tx", pid, epoch + 1, true, 1).await,
            ResponseError::InvalidProducerEpoch.code()
        );
        assert_eq!(
            end_txn(&broker, "tx", pid, epoch + 1, true, 2).await,
            ResponseError::ProducerFenced.code()
        );
        assert_eq!(
            end_txn(&broker, "tx", pid + 1, epoch, true, 4).await,
            ResponseError::InvalidProducerIdMapping.code()
        );
        assert_eq!(
            end_txn(&broker, "", pid, epoch, true, 4).await,
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(end_txn(&broker, "tx", pid, epoch, true, 4).await, 0);
    }
}

//! ListTransactions (v0-1): the transactional ids this coordinator knows, filtered by state,
//! producer id and (v1, KIP-994) how long their transaction has been running, as
//! `kafka-transactions.sh list` and `find-hanging` use it.

use std::sync::Arc;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use crate::broker::{now_ms, Broker};
use crate::txn::state::{TxnState, STATE_NAMES};

/// Lists the transactional ids that pass every filter; state names Kafka does not know are
/// echoed in `unknown_state_filters`.
pub fn handle(broker: &Arc<Broker>, request: ListTransactionsRequest, version: i16) -> ListTransactionsResponse {
    let mut unknown = Vec::new();
    let mut states = Vec::new();
    // Whether any filter names a state Kafka knows: then only those states are listed. Unknown
    // names alone filter nothing, as in Kafka; PrepareEpochFence is known but never listed.
    let mut by_state = false;
    for name in &request.state_filters {
        if STATE_NAMES.contains(&name.as_str()) {
            by_state = true;
            states.extend(TxnState::from_name(name.as_str()));
        } else {
            unknown.push(name.clone());
        }
    }
    let duration_ms = if version >= 1 { request.duration_filter } else { -1 };
    let now = now_ms();
    let listed = broker
        .txns
        .list()
        .into_iter()
        .filter(|(_, meta)| {
            (!by_state || states.contains(&meta.state))
                && (request.producer_id_filters.is_empty()
                    || request.producer_id_filters.contains(&ProducerId(meta.producer_id)))
                && (duration_ms < 0 || now.saturating_sub(meta.start_ms) > duration_ms)
        })
        .map(|(id, meta)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                .with_producer_id(ProducerId(meta.producer_id))
                .with_transaction_state(StrBytes::from_static_str(meta.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::create_topics::test_support::{encodes, s};
    use crate::api::offset_commit::test_support::roundtrip;
    use crate::txn::tests::{add_partitions, init, open_broker, topic};

    fn ids(response: &ListTransactionsResponse) -> Vec<(String, String)> {
        response
            .transaction_states
            .iter()
            .map(|t| (t.transactional_id.0.to_string(), t.transaction_state.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn filters_by_state_producer_and_duration() {
        let (_dir, broker) = open_broker();
        topic(&broker, "t", 1);
        let (pid, epoch) = init(&broker, "busy").await;
        add_partitions(&broker, "busy", pid, epoch, &[("t", 0)], 3).await;
        let (idle_pid, _) = init(&broker, "idle").await;
        let pair = |id: &str, state: &str| (id.to_string(), state.to_string());
        for version in 0..=1 {
            let all = handle(
                &broker,
                roundtrip(&ListTransactionsRequest::default(), version),
                version,
            );
            encodes(&all, version..=version);
            assert_eq!(
                ids(&all),
                vec![pair("busy", "Ongoing"), pair("idle", "Empty")],
                "v{version}"
            );

            let request = ListTransactionsRequest::default().with_state_filters(vec![
                s("Ongoing"),
                s("Sleeping"),
                s("PrepareEpochFence"),
            ]);
            let filtered = handle(&broker, roundtrip(&request, version), version);
            assert_eq!(ids(&filtered), vec![pair("busy", "Ongoing")]);
            assert_eq!(filtered.unknown_state_filters, vec![s("Sleeping")]);

            let request = ListTransactionsRequest::default().with_producer_id_filters(vec![ProducerId(idle_pid)]);
            assert_eq!(ids(&handle(&broker, request, version)), vec![pair("idle", "Empty")]);

            let only_fence = ListTransactionsRequest::default().with_state_filters(vec![s("PrepareEpochFence")]);
            assert!(ids(&handle(&broker, only_fence, version)).is_empty());
            let only_unknown = ListTransactionsRequest::default().with_state_filters(vec![s("Sleeping")]);
            assert_eq!(ids(&handle(&broker, only_unknown, version)).len(), 2);
        }
        // v1: only transactions running longer than the filter; an hour excludes the new one,
        // while an Empty id (no start time) always passes, as in Kafka.
        let request = ListTransactionsRequest::default().with_duration_filter(3_600_000);
        assert_eq!(ids(&handle(&broker, request.clone(), 1)), vec![pair("idle", "Empty")]);
        assert_eq!(ids(&handle(&broker, request, 0)).len(), 2, "v0 has no duration filter");
    }
}

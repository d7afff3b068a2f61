//! AddOffsetsToTxn (v0-4): adds the `__consumer_offsets` partition of a group to a producer's
//! transaction, so that the TxnOffsetCommit that follows commits or aborts with it.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ResponseKind};

use super::Reply;
use crate::broker::{now_ms, Broker};
use crate::group::offsets::OFFSETS_TOPIC;
use crate::txn;

/// Adds the group's offsets partition to the transaction; answers once the change is durable.
pub fn handle(broker: &Arc<Broker>, request: AddOffsetsToTxnRequest, version: i16) -> Reply {
    let partition = broker.groups.offsets.partition_of(request.group_id.0.as_str()) as i32;
    let waiting = broker.txns.add_partitions(
        broker,
        request.transactional_id.0.as_str(),
        request.producer_id.0,
        request.producer_epoch,
        BTreeSet::from([(OFFSETS_TOPIC.to_string(), partition)]),
        now_ms(),
    );
    txn::reply_with_code(waiting, version >= txn::PRODUCER_FENCED_VERSION, |code| {
        ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
    })
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{GroupId, ProducerId, TransactionalId};
    use kafka_protocol::ResponseError;

    use super::*;
    use crate::api::create_topics::test_support::{encodes, s};
    use crate::api::offset_commit::test_support::{resolve, roundtrip};
    use crate::txn::tests::{init, open_broker};

    async fn add_offsets(broker: &Arc<Broker>, id: &str, pid: i64, epoch: i16, version: i16) -> i16 {
        let request = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(s("g")));
        match resolve(handle(broker, roundtrip(&request, version), version)).await {
            Some(ResponseKind::AddOffsetsToTxn(r)) => {
                encodes(&r, version..=version);
                r.error_code
            }
            _ => panic!("not an AddOffsetsToTxn response"),
        }
    }

    #[tokio::test]
    async fn the_groups_offsets_partition_joins_the_transaction() {
        let (_dir, broker) = open_broker();
        let (pid, epoch) = init(&broker, "tx").await;
        for version in 0..=4 {
            assert_eq!(add_offsets(&broker, "tx", pid, epoch, version).await, 0, "v{version}");
        }
        let partition = broker.groups.offsets.partition_of("g") as i32;
        let state = broker.txns.describe("tx").unwrap();
        assert_eq!(
            state.partitions.into_iter().collect::<Vec<_>>(),
            vec![(OFFSETS_TOPIC.to_string(), partition)]
        );
        assert_eq!(
            add_offsets(&broker, "tx", pid, epoch - 1, 1).await,
            ResponseError::InvalidProducerEpoch.code()
        );
        assert_eq!(
            add_offsets(&broker, "tx", pid, epoch - 1, 2).await,
            ResponseError::ProducerFenced.code()
        );
        assert_eq!(
            add_offsets(&broker, "other", pid, epoch, 4).await,
            ResponseError::InvalidProducerIdMapping.code()
        );
    }
}

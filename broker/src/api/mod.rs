//! Request handlers, one file per Kafka API, routed from one table below.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_producers;
pub mod describe_transactions;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub mod txn_offset_commit;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind};

use crate::broker::Broker;

/// What a handler gives back. Handlers do their ordered work (such as appending) before they
/// return, so that requests on one connection take effect in the order they arrived; only
/// waiting (for fsync, for data to fetch) happens in the returned future.
pub enum Reply {
    /// The response is ready (boxed: responses are large and replies move through channels).
    Now(Box<ResponseKind>),
    /// The response comes when the future completes; None sends nothing.
    Later(Pin<Box<dyn Future<Output = Option<ResponseKind>> + Send>>),
    /// No response at all (Produce with acks=0).
    Nothing,
}

/// Who sent a request, for the APIs that record it (JoinGroup: member ids and DescribeGroups).
pub struct Client<'a> {
    /// The request header's `client.id` (empty if null).
    pub id: &'a str,
    /// The peer's address.
    pub addr: std::net::SocketAddr,
}

/// Routes a decoded request to its handler; None for an API without one (the server only
/// decodes APIs listed in `server::versions::SUPPORTED`, and a test checks each has a handler).
pub fn handle(broker: &Arc<Broker>, request: RequestKind, version: i16, client: &Client) -> Option<Reply> {
    use RequestKind as R;
    use ResponseKind as K;
    let ready = match request {
        R::AddOffsetsToTxn(r) => return Some(add_offsets_to_txn::handle(broker, r, version)),
        R::AddPartitionsToTxn(r) => return Some(add_partitions_to_txn::handle(broker, r, version)),
        R::AlterConfigs(r) => K::AlterConfigs(alter_configs::handle(broker, r, version)),
        R::ApiVersions(r) => K::ApiVersions(api_versions::handle(r, version)),
        R::ConsumerGroupDescribe(r) => K::ConsumerGroupDescribe(consumer_group_describe::handle(broker, r, version)),
        R::ConsumerGroupHeartbeat(r) => {
            K::ConsumerGroupHeartbeat(consumer_group_heartbeat::handle(broker, r, version, client))
        }
        R::CreatePartitions(r) => K::CreatePartitions(create_partitions::handle(broker, r, version)),
        R::CreateTopics(r) => K::CreateTopics(create_topics::handle(broker, r, version)),
        R::DeleteGroups(r) => return Some(delete_groups::handle(broker, r, version)),
        R::DeleteRecords(r) => K::DeleteRecords(delete_records::handle(broker, r, version)),
        R::DeleteTopics(r) => K::DeleteTopics(delete_topics::handle(broker, r, version)),
        R::DescribeCluster(r) => K::DescribeCluster(describe_cluster::handle(broker, r, version)),
        R::DescribeConfigs(r) => K::DescribeConfigs(describe_configs::handle(broker, r, version)),
        R::DescribeGroups(r) => K::DescribeGroups(describe_groups::handle(broker, r, version)),
        R::DescribeProducers(r) => K::DescribeProducers(describe_producers::handle(broker, r, version)),
        R::DescribeTransactions(r) => K::DescribeTransactions(describe_transactions::handle(broker, r, version)),
        R::EndTxn(r) => return Some(end_txn::handle(broker, r, version)),
        R::Fetch(r) => return Some(fetch::handle(broker, r, version)),
        R::FindCoordinator(r) => K::FindCoordinator(find_coordinator::handle(broker, r, version)),
        R::Heartbeat(r) => K::Heartbeat(heartbeat::handle(broker, r, version)),
        R::IncrementalAlterConfigs(r) => {
            K::IncrementalAlterConfigs(incremental_alter_configs::handle(broker, r, version))
        }
        R::InitProducerId(r) => return Some(init_producer_id::handle(broker, r, version)),
        R::JoinGroup(r) => return Some(join_group::handle(broker, r, version, client)),
        R::LeaveGroup(r) => K::LeaveGroup(leave_group::handle(broker, r, version)),
        R::ListGroups(r) => K::ListGroups(list_groups::handle(broker, r, version)),
        R::ListOffsets(r) => K::ListOffsets(list_offsets::handle(broker, r, version)),
        R::ListTransactions(r) => K::ListTransactions(list_transactions::handle(broker, r, version)),
        R::Metadata(r) => K::Metadata(metadata::handle(broker, r, version)),
        R::OffsetCommit(r) => return Some(offset_commit::handle(broker, r, version)),
        R::OffsetDelete(r) => return Some(offset_delete::handle(broker, r, version)),
        R::OffsetFetch(r) => K::OffsetFetch(offset_fetch::handle(broker, r, version)),
        R::OffsetForLeaderEpoch(r) => K::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(broker, r, version)),
        R::Produce(r) => return Some(produce::handle(broker, r, version)),
        R::SyncGroup(r) => return Some(sync_group::handle(broker, r, version)),
        R::TxnOffsetCommit(r) => return Some(txn_offset_commit::handle(broker, r, version)),
        _ => return None,
    };
    Some(Reply::Now(Box::new(ready)))
}

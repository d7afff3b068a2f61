//! Finding a group's coordinator (FindCoordinator) and the committed-offset calls made to it
//! (OffsetFetch, OffsetCommit), shared by the admin client and group members.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::cluster::Cluster;
use super::connection::Connection;
use super::consumer_protocol::TopicPartition;
use super::{check_code, remote_error};
use crate::error::Result;

/// FindCoordinator's key type for consumer groups.
const KEY_TYPE_GROUP: i8 = 0;
/// The most partitions one OffsetCommit request carries; larger commits are split.
pub(crate) const MAX_COMMIT_PARTITIONS: usize = 10_000;

/// Who commits: the member identity an OffsetCommit carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committer {
    /// The generation (classic) or member epoch (consumer protocol); -1 for a simple commit.
    pub generation_or_epoch: i32,
    /// The member id, empty for a simple commit.
    pub member_id: String,
    /// The static member id, if any.
    pub group_instance_id: Option<String>,
}

impl Committer {
    /// A commit from outside the group (admin tools); Kafka accepts it only while the group is empty.
    pub(crate) fn simple() -> Committer {
        Committer {
            generation_or_epoch: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

pub(crate) fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub(crate) fn group_id(s: &str) -> GroupId {
    GroupId(text(s))
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(text(s))
}

/// Groups (topic, partition, value) triples by topic.
pub(crate) fn by_topic<V: Clone>(items: &[(String, i32, V)]) -> BTreeMap<&str, Vec<(i32, V)>> {
    let mut out: BTreeMap<&str, Vec<(i32, V)>> = BTreeMap::new();
    for (topic, partition, value) in items {
        out.entry(topic.as_str()).or_default().push((*partition, value.clone()));
    }
    out
}

/// The node id of the coordinator of `key`, a group or a transactional id by `key_type` (one
/// FindCoordinator round trip, no retry).
pub(crate) async fn find_coordinator(cluster: &Cluster, key_type: i8, key: &str) -> Result<i32> {
    let connection = cluster.any_connection().await?;
    let version = connection.version(ApiKey::FindCoordinator)?;
    let mut request = FindCoordinatorRequest::default();
    request.key_type = key_type;
    if version >= 4 {
        request.coordinator_keys = vec![text(key)];
    } else {
        request.key = text(key);
    }
    let response = connection.request(&request, version).await?;
    if version >= 4 {
        let found = response
            .coordinators
            .iter()
            .find(|c| c.key.as_str() == key)
            .ok_or_else(|| remote_error(15, Some(&format!("no coordinator for {key} in the response"))))?;
        check_code(found.error_code, found.error_message.as_deref())?;
        Ok(found.node_id.0)
    } else {
        check_code(response.error_code, response.error_message.as_deref())?;
        Ok(response.node_id.0)
    }
}

/// A connection to a group's coordinator, looked up afresh.
pub(crate) async fn coordinator(cluster: &Cluster, group: &str) -> Result<Arc<Connection>> {
    let node = find_coordinator(cluster, KEY_TYPE_GROUP, group).await?;
    cluster.broker(node).await
}

/// The committed offsets of a group: of `partitions`, or of every partition it has committed
/// (`None`). Partitions without a committed offset are left out.
pub(crate) async fn fetch_committed(
    cluster: &Cluster,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let connection = coordinator(cluster, group).await?;
    let version = connection.version(ApiKey::OffsetFetch)?;
    let wanted: Option<Vec<(String, i32, ())>> =
        partitions.map(|list| list.iter().map(|(t, p)| (t.clone(), *p, ())).collect());
    let grouped = wanted.as_deref().map(by_topic);
    let mut request = OffsetFetchRequest::default();
    request.require_stable = version >= 7;
    if version >= 8 {
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = group_id(group);
        g.member_id = None;
        g.member_epoch = -1;
        g.topics = grouped.map(|topics| {
            topics
                .into_iter()
                .map(|(topic, parts)| {
                    let mut t = OffsetFetchRequestTopics::default();
                    t.name = topic_name(topic);
                    t.partition_indexes = parts.into_iter().map(|(p, ())| p).collect();
                    t
                })
                .collect()
        });
        request.groups = vec![g];
    } else {
        request.group_id = group_id(group);
        request.topics = grouped.map(|topics| {
            topics
                .into_iter()
                .map(|(topic, parts)| {
                    let mut t = OffsetFetchRequestTopic::default();
                    t.name = topic_name(topic);
                    t.partition_indexes = parts.into_iter().map(|(p, ())| p).collect();
                    t
                })
                .collect()
        });
    }
    let response = connection.request(&request, version).await?;
    let mut out = BTreeMap::new();
    let mut keep = |topic: &str, partition: i32, offset: i64, code: i16| -> Result<()> {
        check_code(code, Some(&format!("{topic}-{partition}")))?;
        if offset >= 0 {
            out.insert((topic.to_string(), partition), offset);
        }
        Ok(())
    };
    if version >= 8 {
        for g in &response.groups {
            check_code(g.error_code, Some(group))?;
            for t in &g.topics {
                for p in &t.partitions {
                    keep(&t.name.0, p.partition_index, p.committed_offset, p.error_code)?;
                }
            }
        }
    } else {
        check_code(response.error_code, Some(group))?;
        for t in &response.topics {
            for p in &t.partitions {
                keep(&t.name.0, p.partition_index, p.committed_offset, p.error_code)?;
            }
        }
    }
    Ok(out)
}

/// Commits offsets for a group; fails with the first partition error the coordinator returns.
pub(crate) async fn commit(
    cluster: &Cluster,
    group: &str,
    committer: &Committer,
    offsets: &[(String, i32, i64)],
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let connection = coordinator(cluster, group).await?;
    let version = connection.version(ApiKey::OffsetCommit)?;
    for chunk in offsets.chunks(MAX_COMMIT_PARTITIONS) {
        let mut request = OffsetCommitRequest::default();
        request.group_id = group_id(group);
        request.generation_id_or_member_epoch = committer.generation_or_epoch;
        request.member_id = text(&committer.member_id);
        request.group_instance_id = committer.group_instance_id.as_deref().map(text);
        request.retention_time_ms = -1;
        request.topics = by_topic(chunk)
            .into_iter()
            .map(|(topic, parts)| {
                let mut t = OffsetCommitRequestTopic::default();
                t.name = topic_name(topic);
                t.partitions = parts
                    .into_iter()
                    .map(|(partition, offset)| {
                        let mut p = OffsetCommitRequestPartition::default();
                        p.partition_index = partition;
                        p.committed_offset = offset;
                        p.committed_leader_epoch = -1;
                        p.committed_metadata = Some(StrBytes::default());
                        p
                    })
                    .collect();
                t
            })
            .collect();
        let response = connection.request(&request, version).await?;
        for t in &response.topics {
            for p in &t.partitions {
                check_code(
                    p.error_code,
                    Some(&format!("{}-{} in group {group}", t.name.0, p.partition_index)),
                )?;
            }
        }
    }
    Ok(())
}

//! Consumer group administration in [`Admin`]: list, describe and delete groups, and fetch,
//! commit (as an outsider) and delete their committed offsets, each sent to the group's
//! coordinator found with FindCoordinator.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest,
    OffsetDeleteRequest,
};
use kafka_protocol::ResponseError;

use super::admin::Admin;
use super::consumer_protocol::{decode_assignment, TopicPartition};
use super::offsets::{self, by_topic, coordinator, group_id, text, topic_name, Committer};
use super::{check_code, remote_error};
use crate::error::{Error, Result};

/// One group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// The protocol type, `consumer` for consumer groups.
    pub protocol_type: String,
    /// The state (`Stable`, `Empty`, ...), empty when the broker does not say (ListGroups < v4).
    pub state: String,
    /// The group type (`classic`, `consumer`), empty when the broker does not say (< v5).
    pub group_type: String,
}

/// A group as DescribeGroups or ConsumerGroupDescribe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// The state: `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`, `Dead` for
    /// classic groups; `Empty`, `Assigning`, `Reconciling`, `Stable`, `Dead` for consumer groups.
    pub state: String,
    /// The protocol type (`consumer` for consumer groups; empty for a group that does not exist).
    pub protocol_type: String,
    /// The assignor chosen for the current generation.
    pub assignor: String,
    /// Whether the group uses the KIP-848 consumer protocol (ConsumerGroupHeartbeat).
    pub is_consumer_protocol: bool,
    /// The live members.
    pub members: Vec<GroupMember>,
}

/// One live member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The member id.
    pub member_id: String,
    /// The static member id, if any.
    pub group_instance_id: Option<String>,
    /// The client id the member's requests carry.
    pub client_id: String,
    /// The member's host as the coordinator saw it, e.g. `/127.0.0.1`.
    pub host: String,
    /// The partitions assigned to it (empty for non-consumer protocol types).
    pub assignment: Vec<TopicPartition>,
}

fn is_code(e: &Error, code: ResponseError) -> bool {
    matches!(e, Error::Remote { code: c, .. } if *c == code.code())
}

impl Admin {
    /// Lists the groups of every broker, optionally only those in some states (e.g. `Stable`).
    pub async fn list_groups(&self, states: &[String]) -> Result<Vec<GroupListing>> {
        let metadata = self.metadata(Some(&[])).await?;
        let mut out: BTreeMap<String, GroupListing> = BTreeMap::new();
        for broker in &metadata.brokers {
            let connection = self.cluster.broker(broker.node_id).await?;
            let version = connection.version(ApiKey::ListGroups)?;
            let mut request = ListGroupsRequest::default();
            if version >= 4 {
                request.states_filter = states.iter().map(|s| text(s)).collect();
            }
            let response = connection.request(&request, version).await?;
            check_code(response.error_code, None)?;
            for g in response.groups {
                let listing = GroupListing {
                    group_id: g.group_id.0.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state: g.group_state.to_string(),
                    group_type: g.group_type.to_string(),
                };
                // Before v4 the broker cannot filter; a state it does not report cannot match.
                if states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(&listing.state)) {
                    out.insert(listing.group_id.clone(), listing);
                }
            }
        }
        Ok(out.into_values().collect())
    }

    /// Describes groups; a group that does not exist is described with state `Dead` and no members.
    pub async fn describe_groups(&self, groups: &[String]) -> Result<Vec<GroupDescription>> {
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            let described = self
                .cluster
                .retry(None, || async {
                    match self.describe_consumer_group(group).await {
                        Ok(Some(d)) => Ok(d),
                        Ok(None) => self.describe_classic_group(group).await,
                        Err(e) => Err(e),
                    }
                })
                .await?;
            out.push(described);
        }
        Ok(out)
    }

    /// ConsumerGroupDescribe; `None` when the coordinator lacks it or the group is not a consumer group.
    async fn describe_consumer_group(&self, group: &str) -> Result<Option<GroupDescription>> {
        let connection = coordinator(&self.cluster, group).await?;
        let Ok(version) = connection.version(ApiKey::ConsumerGroupDescribe) else {
            return Ok(None);
        };
        let mut request = ConsumerGroupDescribeRequest::default();
        request.group_ids = vec![group_id(group)];
        let response = connection.request(&request, version).await?;
        let Some(g) = response.groups.into_iter().find(|g| g.group_id.0.as_str() == group) else {
            return Ok(None);
        };
        if let Err(e) = check_code(g.error_code, g.error_message.as_deref()) {
            return if is_code(&e, ResponseError::GroupIdNotFound) {
                Ok(None)
            } else {
                Err(e)
            };
        }
        let members = g
            .members
            .into_iter()
            .map(|m| GroupMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.instance_id.map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment: m
                    .assignment
                    .topic_partitions
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| (t.topic_name.0.to_string(), *p)))
                    .collect(),
            })
            .collect();
        Ok(Some(GroupDescription {
            group_id: group.to_string(),
            state: g.group_state.to_string(),
            protocol_type: "consumer".to_string(),
            assignor: g.assignor_name.to_string(),
            is_consumer_protocol: true,
            members,
        }))
    }

    async fn describe_classic_group(&self, group: &str) -> Result<GroupDescription> {
        let connection = coordinator(&self.cluster, group).await?;
        let version = connection.version(ApiKey::DescribeGroups)?;
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![group_id(group)];
        let response = connection.request(&request, version).await?;
        let g = response
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| remote_error(69, Some(group)))?;
        check_code(g.error_code, g.error_message.as_deref())?;
        let is_consumer = g.protocol_type.as_str() == "consumer";
        let mut members = Vec::with_capacity(g.members.len());
        for m in g.members {
            let assignment = if is_consumer {
                decode_assignment(m.member_assignment)
                    .map(|a| a.partitions)
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            members.push(GroupMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment,
            });
        }
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            assignor: g.protocol_data.to_string(),
            is_consumer_protocol: false,
            members,
        })
    }

    /// Deletes groups (only empty ones can go); returns each group's outcome in request order.
    pub async fn delete_groups(&self, groups: &[String]) -> Result<Vec<(String, Result<()>)>> {
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            let result = self
                .cluster
                .retry(None, || async {
                    let connection = coordinator(&self.cluster, group).await?;
                    let version = connection.version(ApiKey::DeleteGroups)?;
                    let mut request = DeleteGroupsRequest::default();
                    request.groups_names = vec![group_id(group)];
                    let response = connection.request(&request, version).await?;
                    let r = response
                        .results
                        .iter()
                        .find(|r| r.group_id.0.as_str() == group)
                        .ok_or_else(|| remote_error(69, Some(group)))?;
                    check_code(r.error_code, Some(group))
                })
                .await;
            out.push((group.clone(), result));
        }
        Ok(out)
    }

    /// Every committed offset of a group, by topic and partition.
    pub async fn fetch_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, i64>> {
        self.cluster
            .retry(None, || offsets::fetch_committed(&self.cluster, group, None))
            .await
    }

    /// Commits offsets for a group from outside it (generation -1, no member id), as
    /// kafka-consumer-groups.sh does for reset-offsets; the coordinator refuses while the group
    /// has live members.
    pub async fn commit_offsets(&self, group: &str, offsets: &[(String, i32, i64)]) -> Result<()> {
        let committer = Committer::simple();
        self.cluster
            .retry(None, || offsets::commit(&self.cluster, group, &committer, offsets))
            .await
    }

    /// Deletes committed offsets of some partitions of a group (OffsetDelete); the coordinator
    /// refuses partitions of topics the group is subscribed to.
    pub async fn delete_offsets(&self, group: &str, partitions: &[TopicPartition]) -> Result<()> {
        let items: Vec<(String, i32, ())> = partitions.iter().map(|(t, p)| (t.clone(), *p, ())).collect();
        self.cluster
            .retry(None, || async {
                let connection = coordinator(&self.cluster, group).await?;
                let version = connection.version(ApiKey::OffsetDelete)?;
                let mut request = OffsetDeleteRequest::default();
                request.group_id = group_id(group);
                request.topics = by_topic(&items)
                    .into_iter()
                    .map(|(topic, parts)| {
                        let mut t = OffsetDeleteRequestTopic::default();
                        t.name = topic_name(topic);
                        t.partitions = parts
                            .into_iter()
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .map(|(p, ())| {
                                let mut q = OffsetDeleteRequestPartition::default();
                                q.partition_index = p;
                                q
                            })
                            .collect();
                        t
                    })
                    .collect();
                let response = connection.request(&request, version).await?;
                check_code(response.error_code, Some(group))?;
                for t in &response.topics {
                    for p in &t.partitions {
                        check_code(p.error_code, Some(&format!("{}-{}", t.name.0, p.partition_index)))?;
                    }
                }
                Ok(())
            })
            .await
    }
}

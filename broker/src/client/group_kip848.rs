//! The KIP-848 consumer protocol's membership loop (`group.protocol=consumer`): one
//! ConsumerGroupHeartbeat at the coordinator's interval carries the subscription (on join and
//! after errors) and the owned partitions (every time); the coordinator assigns. A new target
//! assignment is applied at once: what is no longer assigned is revoked (committed first), what
//! is new is assigned, and the next heartbeat, sent without waiting, acknowledges it by reporting
//! the owned partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{ApiKey, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use uuid::Uuid;

use super::connection::Connection;
use super::consumer_protocol::TopicPartition;
use super::group::{coordinator_gone, Member};
use super::offsets::{coordinator, group_id, text, topic_name};
use super::{backoff_ms, remote_error};
use crate::error::{Error, Result};

/// The member epoch a leaving dynamic member sends.
const LEAVE_EPOCH: i32 = -1;
/// The member epoch a leaving static member sends (it keeps its place for a restart).
const LEAVE_STATIC_EPOCH: i32 = -2;

struct Kip848 {
    member: Member,
    server_assignor: Option<String>,
    member_id: String,
    epoch: i32,
    coordinator: Option<Arc<Connection>>,
    /// Topic ids of the subscribed topics, both ways.
    names: BTreeMap<Uuid, String>,
    ids: BTreeMap<String, Uuid>,
}

/// Runs the membership until close (then leaves) or a fatal error.
pub(crate) async fn run(member: Member, server_assignor: Option<String>) {
    let mut m = Kip848 {
        member,
        server_assignor,
        // Since Kafka 4.0 the member chooses its id (ConsumerGroupHeartbeat v1).
        member_id: Uuid::new_v4().simple().to_string(),
        epoch: 0,
        coordinator: None,
        names: BTreeMap::new(),
        ids: BTreeMap::new(),
    };
    let mut interval_ms = m.member.config.heartbeat_interval_ms.max(1) as u64;
    let mut failures = 0u32;
    let commit_every_ms = m.member.config.auto_commit_interval_ms;
    let mut since_commit_ms = 0u64;
    loop {
        if m.member.closing.is_some() {
            break;
        }
        let epoch = m.epoch;
        let response = match m.heartbeat(epoch).await {
            Ok(r) => r,
            Err(e) => {
                failures = failures.saturating_add(1);
                if coordinator_gone(&e) {
                    m.coordinator = None;
                }
                if e.is_retriable() || coordinator_gone(&e) {
                    tracing::debug!(group = %m.member.config.group_id, error = %e, "consumer group heartbeat failed");
                    if !m.member.pause(backoff_ms(failures)).await {
                        break;
                    }
                    continue;
                }
                m.member.lose_all().await;
                m.member.fail(e);
                break;
            }
        };
        match response.error_code {
            0 => failures = 0,
            // Fenced or forgotten: everything owned is lost; join again from epoch 0 at once.
            25 | 110 => {
                m.member.lose_all().await;
                m.epoch = 0;
                continue;
            }
            code => {
                let e = remote_error(code, response.error_message.as_deref());
                if coordinator_gone(&e) || e.is_retriable() || code == 111 {
                    failures = failures.saturating_add(1);
                    m.coordinator = None;
                    if !m.member.pause(backoff_ms(failures)).await {
                        break;
                    }
                    continue;
                }
                m.member.lose_all().await;
                m.member.fail(e);
                break;
            }
        }
        if let Some(id) = response.member_id.as_ref().filter(|id| !id.is_empty()) {
            m.member_id = id.to_string();
        }
        m.epoch = response.member_epoch;
        m.member.set_committer(m.epoch, &m.member_id);
        if response.heartbeat_interval_ms > 0 {
            interval_ms = response.heartbeat_interval_ms as u64;
        }
        let changed = match m.apply(&response).await {
            Ok(changed) => changed,
            Err(e) => {
                tracing::debug!(group = %m.member.config.group_id, error = %e, "assignment not applied yet");
                false
            }
        };
        if changed {
            // Acknowledge the new assignment now rather than at the next interval.
            continue;
        }
        if !m.member.pause(interval_ms).await {
            break;
        }
        since_commit_ms = since_commit_ms.saturating_add(interval_ms);
        if m.member.config.auto_commit && since_commit_ms >= commit_every_ms {
            since_commit_ms = 0;
            if let Err(e) = m.member.commit_consumed(None).await {
                tracing::debug!(group = %m.member.config.group_id, error = %e, "auto commit failed");
            }
        }
    }
    m.leave().await;
    m.member.closed();
}

impl Kip848 {
    async fn coordinator(&mut self) -> Result<Arc<Connection>> {
        if let Some(c) = self.coordinator.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = coordinator(&self.member.cluster, &self.member.config.group_id).await?;
        self.coordinator = Some(c.clone());
        Ok(c)
    }

    /// Learns the topic ids of the subscribed topics (Metadata v10+ carries them).
    async fn refresh_ids(&mut self) -> Result<()> {
        let cluster = &self.member.cluster;
        let topics = &self.member.topics;
        let metadata = cluster.retry(None, || cluster.metadata(Some(topics))).await?;
        for t in metadata.topics.iter().filter(|t| t.error_code == 0) {
            let id = Uuid::from_bytes(t.topic_id);
            if !id.is_nil() {
                self.names.insert(id, t.name.clone());
                self.ids.insert(t.name.clone(), id);
            }
        }
        Ok(())
    }

    async fn heartbeat(&mut self, epoch: i32) -> Result<ConsumerGroupHeartbeatResponse> {
        let owned = self.member.owned();
        if owned.iter().any(|(t, _)| !self.ids.contains_key(t)) {
            self.refresh_ids().await?;
        }
        let connection = self.coordinator().await?;
        let version = connection.version(ApiKey::ConsumerGroupHeartbeat)?;
        let config = &self.member.config;
        let joining = epoch == 0;
        let mut request = ConsumerGroupHeartbeatRequest::default();
        request.group_id = group_id(&config.group_id);
        request.member_id = text(&self.member_id);
        request.member_epoch = epoch;
        request.instance_id = config.group_instance_id.as_deref().map(text);
        request.rebalance_timeout_ms = if joining { config.rebalance_timeout_ms } else { -1 };
        request.subscribed_topic_names = joining.then(|| self.member.topics.iter().map(|t| topic_name(t)).collect());
        request.server_assignor = if joining {
            self.server_assignor.as_deref().map(text)
        } else {
            None
        };
        request.topic_partitions = Some(self.owned_by_id(&owned));
        connection.request(&request, version).await
    }

    fn owned_by_id(&self, owned: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
        let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in owned {
            if let Some(id) = self.ids.get(topic) {
                by_topic.entry(*id).or_default().push(*partition);
            }
        }
        by_topic
            .into_iter()
            .map(|(id, partitions)| {
                let mut t = TopicPartitions::default();
                t.topic_id = id;
                t.partitions = partitions;
                t
            })
            .collect()
    }

    /// Applies a new target assignment, if the response has one; true when ownership changed.
    async fn apply(&mut self, response: &ConsumerGroupHeartbeatResponse) -> Result<bool> {
        let Some(assignment) = &response.assignment else {
            return Ok(false);
        };
        if assignment
            .topic_partitions
            .iter()
            .any(|t| !self.names.contains_key(&t.topic_id))
        {
            self.refresh_ids().await?;
        }
        let mut target = BTreeSet::new();
        for t in &assignment.topic_partitions {
            match self.names.get(&t.topic_id) {
                Some(name) => target.extend(t.partitions.iter().map(|p| (name.clone(), *p))),
                None => {
                    return Err(Error::Remote {
                        code: 100,
                        message: format!("UnknownTopicId: topic id {} in the assignment", t.topic_id),
                    })
                }
            }
        }
        let owned = self.member.owned();
        let revoked: BTreeSet<TopicPartition> = owned.difference(&target).cloned().collect();
        let added: BTreeSet<TopicPartition> = target.difference(&owned).cloned().collect();
        let changed = !revoked.is_empty() || !added.is_empty();
        self.member.revoke(revoked, true).await;
        self.member.assign(added);
        Ok(changed)
    }

    /// Commits, revokes everything, and sends the leaving heartbeat.
    async fn leave(&mut self) {
        let owned = self.member.owned();
        self.member.revoke(owned, true).await;
        if self.epoch <= 0 {
            return;
        }
        let epoch = if self.member.config.group_instance_id.is_some() {
            LEAVE_STATIC_EPOCH
        } else {
            LEAVE_EPOCH
        };
        match self.heartbeat(epoch).await {
            Ok(r) if r.error_code == 0 => {
                tracing::info!(group = %self.member.config.group_id, member = %self.member_id, "left group")
            }
            Ok(r) => {
                tracing::warn!(group = %self.member.config.group_id, code = r.error_code, "leaving the group failed")
            }
            Err(e) => tracing::warn!(group = %self.member.config.group_id, error = %e, "leaving the group failed"),
        }
    }
}

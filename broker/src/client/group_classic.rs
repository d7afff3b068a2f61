//! The classic group protocol's membership loop, as Java's ConsumerCoordinator runs it:
//! JoinGroup (rejoining with the id MEMBER_ID_REQUIRED hands out), the leader's client-side
//! assignment, SyncGroup, then heartbeats and auto commits until a rebalance, an error or close.
//! Eager assignors revoke everything before joining; cooperative ones revoke only what the new
//! assignment takes away and then rejoin at once, so the next generation can hand it on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{ApiKey, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest};

use super::assignor::{Assignor, MemberSubscription};
use super::connection::Connection;
use super::consumer_protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription, MemberAssignment, Subscription,
    TopicPartition, HIGHEST_VERSION,
};
use super::group::{coordinator_gone, Member};
use super::offsets::{coordinator, group_id, text};
use super::{backoff_ms, remote_error};
use crate::error::{Error, Result};

/// The protocol type of consumer groups.
const PROTOCOL_TYPE: &str = "consumer";
/// How many MEMBER_ID_REQUIRED answers one join accepts before it counts as a failure.
const MAX_MEMBER_ID_ROUNDS: usize = 3;

/// What to do after a step of the protocol failed or ended.
enum Step {
    /// Join again now (a rebalance is under way, or partitions were just revoked).
    Rejoin,
    /// The generation is gone: lose every partition, forget the generation (and the member id),
    /// then join again.
    Reset { forget_member_id: bool },
    /// A retriable failure: wait, look the coordinator up again, and join again.
    Retry(Error),
    /// An error the member cannot get past: it stops and `poll` reports it.
    Fatal(Error),
    /// Close was asked for.
    Closed,
}

/// The loop's own state next to the shared [`Member`].
struct Classic {
    member: Member,
    assignor: Assignor,
    member_id: String,
    generation: i32,
    coordinator: Option<Arc<Connection>>,
}

/// Runs the membership until close (then leaves the group) or a fatal error.
pub(crate) async fn run(member: Member, assignor: Assignor) {
    let mut c = Classic {
        member,
        assignor,
        member_id: String::new(),
        generation: -1,
        coordinator: None,
    };
    let mut failures = 0u32;
    loop {
        let step = c.round().await;
        match step {
            Step::Rejoin => failures = 0,
            Step::Reset { forget_member_id } => {
                c.member.lose_all().await;
                c.generation = -1;
                if forget_member_id {
                    c.member_id.clear();
                }
            }
            Step::Retry(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!(group = %c.member.config.group_id, error = %e, "group join failed, retrying");
                if coordinator_gone(&e) {
                    c.coordinator = None;
                }
                if !c.member.pause(backoff_ms(failures)).await {
                    break;
                }
            }
            Step::Fatal(e) => {
                c.member.lose_all().await;
                c.member.fail(e);
                break;
            }
            Step::Closed => break,
        }
    }
    c.leave().await;
    c.member.closed();
}

fn classify(e: Error) -> Step {
    if e.is_retriable() || coordinator_gone(&e) {
        Step::Retry(e)
    } else {
        Step::Fatal(e)
    }
}

impl Classic {
    async fn coordinator(&mut self) -> Result<Arc<Connection>> {
        if let Some(c) = self.coordinator.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = coordinator(&self.member.cluster, &self.member.config.group_id).await?;
        self.coordinator = Some(c.clone());
        Ok(c)
    }

    /// One generation: revoke (eager), join, sync, apply the assignment, then heartbeat.
    async fn round(&mut self) -> Step {
        if self.member.closing.is_some() {
            return Step::Closed;
        }
        if !self.assignor.is_cooperative() {
            let owned = self.member.owned();
            self.member.revoke(owned, true).await;
        }
        let assigned = match self.join_and_sync().await {
            Ok(assigned) => assigned,
            Err(step) => return step,
        };
        self.member.set_committer(self.generation, &self.member_id);
        let owned = self.member.owned();
        let revoked: BTreeSet<TopicPartition> = owned.difference(&assigned).cloned().collect();
        let added: BTreeSet<TopicPartition> = assigned.difference(&owned).cloned().collect();
        let must_rejoin = !revoked.is_empty() && self.assignor.is_cooperative();
        self.member.revoke(revoked, true).await;
        self.member.assign(added);
        if must_rejoin {
            // Java's ConsumerCoordinator: revoked partitions are handed on in the next generation.
            return Step::Rejoin;
        }
        self.heartbeat_loop().await
    }

    async fn join_and_sync(&mut self) -> Result<BTreeSet<TopicPartition>, Step> {
        let connection = self.coordinator().await.map_err(classify)?;
        let join_version = connection.version(ApiKey::JoinGroup).map_err(Step::Fatal)?;
        let config = self.member.config.clone();
        let subscription = Subscription {
            topics: self.member.topics.clone(),
            user_data: None,
            owned: if self.assignor.is_cooperative() {
                self.member.owned().into_iter().collect()
            } else {
                Vec::new()
            },
            generation_id: self.generation,
            rack_id: None,
        };
        let metadata = encode_subscription(&subscription, HIGHEST_VERSION).map_err(Step::Fatal)?;
        let timeout_ms =
            (config.rebalance_timeout_ms as u64).saturating_add(self.member.cluster.config.request_timeout_ms);
        let mut rounds = 0;
        let joined = loop {
            let mut protocol = JoinGroupRequestProtocol::default();
            protocol.name = text(self.assignor.name());
            protocol.metadata = metadata.clone();
            let mut request = JoinGroupRequest::default();
            request.group_id = group_id(&config.group_id);
            request.session_timeout_ms = config.session_timeout_ms;
            request.rebalance_timeout_ms = config.rebalance_timeout_ms;
            request.member_id = text(&self.member_id);
            request.group_instance_id = config.group_instance_id.as_deref().map(text);
            request.protocol_type = text(PROTOCOL_TYPE);
            request.protocols = vec![protocol];
            let sent = async {
                connection
                    .submit(&request, join_version, timeout_ms)
                    .await?
                    .wait()
                    .await
            };
            let response = match self.member.unless_closed(sent).await {
                None => return Err(Step::Closed),
                Some(r) => r.map_err(classify)?,
            };
            match response.error_code {
                0 => break response,
                79 if rounds < MAX_MEMBER_ID_ROUNDS => {
                    // KIP-394: the coordinator hands out the member id; join again with it.
                    rounds += 1;
                    self.member_id = response.member_id.to_string();
                }
                25 => return Err(Step::Reset { forget_member_id: true }),
                22 => {
                    return Err(Step::Reset {
                        forget_member_id: false,
                    })
                }
                27 => return Err(Step::Rejoin),
                code => return Err(classify(remote_error(code, Some(&config.group_id)))),
            }
        };
        self.generation = joined.generation_id;
        self.member_id = joined.member_id.to_string();
        let protocol_name = joined
            .protocol_name
            .clone()
            .unwrap_or_else(|| text(self.assignor.name()));
        tracing::debug!(group = %config.group_id, generation = self.generation, member = %self.member_id, leader = %joined.leader, "joined group");
        let assignments = if joined.leader.as_str() == self.member_id {
            self.assign_as_leader(&joined.members).await?
        } else {
            Vec::new()
        };
        let sync_version = connection.version(ApiKey::SyncGroup).map_err(Step::Fatal)?;
        let mut request = SyncGroupRequest::default();
        request.group_id = group_id(&config.group_id);
        request.generation_id = self.generation;
        request.member_id = text(&self.member_id);
        request.group_instance_id = config.group_instance_id.as_deref().map(text);
        request.protocol_type = Some(text(PROTOCOL_TYPE));
        request.protocol_name = Some(protocol_name);
        request.assignments = assignments;
        let sent = async {
            connection
                .submit(&request, sync_version, timeout_ms)
                .await?
                .wait()
                .await
        };
        let response = match self.member.unless_closed(sent).await {
            None => return Err(Step::Closed),
            Some(r) => r.map_err(classify)?,
        };
        match response.error_code {
            0 => {}
            27 => return Err(Step::Rejoin),
            25 => return Err(Step::Reset { forget_member_id: true }),
            22 => {
                return Err(Step::Reset {
                    forget_member_id: false,
                })
            }
            code => return Err(classify(remote_error(code, Some(&config.group_id)))),
        }
        let assignment = decode_assignment(response.assignment).map_err(Step::Fatal)?;
        Ok(assignment
            .partitions
            .into_iter()
            .filter(|(topic, _)| self.member.topics.contains(topic))
            .collect())
    }

    /// The leader's work: decode every member's subscription, look up partition counts, assign.
    async fn assign_as_leader(
        &self,
        members: &[JoinGroupResponseMember],
    ) -> Result<Vec<SyncGroupRequestAssignment>, Step> {
        let mut subscriptions = Vec::with_capacity(members.len());
        for m in members {
            let subscription = decode_subscription(m.metadata.clone()).unwrap_or_else(|e| {
                tracing::warn!(member = %m.member_id, error = %e, "member metadata does not decode; it gets nothing");
                Subscription::default()
            });
            subscriptions.push(MemberSubscription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                topics: subscription.topics,
                owned: subscription.owned,
                generation_id: subscription.generation_id,
            });
        }
        let topics: Vec<String> = subscriptions
            .iter()
            .flat_map(|s| s.topics.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let cluster = &self.member.cluster;
        let metadata = cluster
            .retry(None, || cluster.metadata(Some(&topics)))
            .await
            .map_err(classify)?;
        let counts: BTreeMap<String, i32> = metadata
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .map(|t| (t.name.clone(), t.partitions.len() as i32))
            .collect();
        let plan = self.assignor.assign(&subscriptions, &counts);
        let mut out = Vec::with_capacity(plan.len());
        for (member_id, partitions) in plan {
            let bytes = encode_assignment(
                &MemberAssignment {
                    partitions,
                    user_data: None,
                },
                HIGHEST_VERSION,
            )
            .map_err(Step::Fatal)?;
            let mut a = SyncGroupRequestAssignment::default();
            a.member_id = text(&member_id);
            a.assignment = bytes;
            out.push(a);
        }
        tracing::debug!(group = %self.member.config.group_id, members = members.len(), "assigned as leader");
        Ok(out)
    }

    /// Heartbeats and auto commits until the generation ends.
    async fn heartbeat_loop(&mut self) -> Step {
        let interval_ms = self.member.config.heartbeat_interval_ms as u64;
        let commit_every = self.member.config.auto_commit_interval_ms.div_ceil(interval_ms).max(1);
        let mut beats = 0u64;
        loop {
            if !self.member.pause(interval_ms).await {
                return Step::Closed;
            }
            beats += 1;
            if self.member.config.auto_commit && beats >= commit_every {
                beats = 0;
                match self.member.commit_consumed(None).await {
                    Ok(()) => {}
                    Err(Error::Remote { code: 27, .. }) => return Step::Rejoin,
                    Err(Error::Remote { code: 25, .. }) => return Step::Reset { forget_member_id: true },
                    Err(Error::Remote { code: 22, .. }) => {
                        return Step::Reset {
                            forget_member_id: false,
                        }
                    }
                    Err(e) => tracing::debug!(group = %self.member.config.group_id, error = %e, "auto commit failed"),
                }
            }
            match self.heartbeat().await {
                Ok(0) => {}
                Ok(27) => return Step::Rejoin,
                Ok(25) => return Step::Reset { forget_member_id: true },
                Ok(22) => {
                    return Step::Reset {
                        forget_member_id: false,
                    }
                }
                Ok(code) => {
                    let e = remote_error(code, Some(&self.member.config.group_id));
                    if coordinator_gone(&e) || e.is_retriable() {
                        self.coordinator = None;
                    } else {
                        return Step::Fatal(e);
                    }
                }
                Err(e) => {
                    tracing::debug!(group = %self.member.config.group_id, error = %e, "heartbeat failed");
                    self.coordinator = None;
                }
            }
        }
    }

    async fn heartbeat(&mut self) -> Result<i16> {
        let connection = self.coordinator().await?;
        let version = connection.version(ApiKey::Heartbeat)?;
        let mut request = HeartbeatRequest::default();
        request.group_id = group_id(&self.member.config.group_id);
        request.generation_id = self.generation;
        request.member_id = text(&self.member_id);
        request.group_instance_id = self.member.config.group_instance_id.as_deref().map(text);
        Ok(connection.request(&request, version).await?.error_code)
    }

    /// Commits, revokes everything, and leaves (dynamic members only: a static member keeps its
    /// place for a restart within the session timeout, as in Java).
    async fn leave(&mut self) {
        let owned = self.member.owned();
        self.member.revoke(owned, true).await;
        if self.member_id.is_empty() || self.member.config.group_instance_id.is_some() {
            return;
        }
        let result: Result<()> = async {
            let connection = self.coordinator().await?;
            let version = connection.version(ApiKey::LeaveGroup)?;
            let mut request = LeaveGroupRequest::default();
            request.group_id = group_id(&self.member.config.group_id);
            if version >= 3 {
                let mut identity = MemberIdentity::default();
                identity.member_id = text(&self.member_id);
                identity.reason = (version >= 5).then(|| text("the consumer is being closed"));
                request.members = vec![identity];
            } else {
                request.member_id = text(&self.member_id);
            }
            let response = connection.request(&request, version).await?;
            super::check_code(response.error_code, None)?;
            for m in &response.members {
                super::check_code(m.error_code, None)?;
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => tracing::info!(group = %self.member.config.group_id, member = %self.member_id, "left group"),
            Err(e) => tracing::warn!(group = %self.member.config.group_id, error = %e, "leaving the group failed"),
        }
    }
}

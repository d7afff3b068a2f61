//! One KIP-848 consumer group: its members, group epoch, target assignment and the heartbeat
//! that joins, updates, reconciles and leaves, following Kafka's GroupMetadataManager.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::assignor::{Assignment, MemberSpec, ServerAssignor, TopicInfo, ASSIGNORS};
use super::member::{flatten, reconcile, Member, MemberState};
use super::{ConsumerGroupError, Heartbeat, HeartbeatReply, Settings};

/// The member epoch a member sends to leave.
pub const LEAVE_EPOCH: i32 = -1;
/// The member epoch a static member sends to leave, meaning it will come back.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// A consumer group's state, under Kafka 4's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// The group epoch moved past the target assignment, which is being computed.
    Assigning,
    /// Some member has not reached the target assignment yet.
    Reconciling,
    /// Every member holds its target assignment at the assignment epoch.
    Stable,
}

impl GroupState {
    /// The name Kafka reports in ListGroups and ConsumerGroupDescribe.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::Assigning => "Assigning",
            GroupState::Reconciling => "Reconciling",
            GroupState::Stable => "Stable",
        }
    }
}

/// A KIP-848 consumer group.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group id.
    pub id: String,
    /// Bumped whenever membership, subscriptions or the subscribed topics' metadata change.
    pub epoch: i32,
    /// The group epoch at which the target assignment was computed.
    pub assignment_epoch: i32,
    /// The members, by member id.
    pub members: BTreeMap<String, Member>,
    /// Each member's target assignment, by member id.
    pub target: BTreeMap<String, Assignment>,
    /// The subscribed topics' ids and partition counts, by name, as of the last check.
    pub topics: BTreeMap<String, TopicInfo>,
    /// The assignor that computed the target assignment.
    pub assignor: ServerAssignor,
}

impl Group {
    /// A group without members at epoch 0.
    pub fn new(id: String) -> Group {
        Group {
            id,
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            topics: BTreeMap::new(),
            assignor: ASSIGNORS[0],
        }
    }

    /// The group's state, derived as Kafka derives it.
    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.epoch > self.assignment_epoch {
            GroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.progress.epoch != self.assignment_epoch || m.progress.state != MemberState::Stable)
        {
            GroupState::Reconciling
        } else {
            GroupState::Stable
        }
    }

    fn bump(&mut self) {
        self.epoch = self.epoch.saturating_add(1);
    }

    /// Handles one validated heartbeat (not a leave).
    pub fn heartbeat(
        &mut self,
        hb: &Heartbeat,
        assignor: Option<ServerAssignor>,
        settings: &Settings,
        now_ms: i64,
        resolve: &dyn Fn(&str) -> Option<TopicInfo>,
    ) -> Result<HeartbeatReply, ConsumerGroupError> {
        let joining = hb.member_epoch == 0;
        let member_id = if hb.member_id.is_empty() {
            Uuid::new_v4().simple().to_string()
        } else {
            hb.member_id.clone()
        };
        let mut changed = false;
        if joining {
            changed |= self.join(&member_id, hb.instance_id.as_deref(), settings, now_ms)?;
        } else {
            self.check_epoch(&member_id, hb)?;
        }
        let member = self
            .members
            .get_mut(&member_id)
            .ok_or_else(|| ConsumerGroupError::UnknownMember(member_id.clone()))?;
        member.session_deadline_ms = now_ms.saturating_add(settings.session_timeout_ms);
        if let Some(names) = &hb.subscribed_topic_names {
            let names: BTreeSet<String> = names.iter().cloned().collect();
            if names != member.subscribed {
                member.subscribed = names;
                changed = true;
            }
        }
        if assignor.is_some() && assignor != member.assignor {
            member.assignor = assignor;
            changed = true;
        }
        if hb.instance_id.is_some() {
            member.instance_id = hb.instance_id.clone();
        }
        if hb.rack_id.is_some() {
            member.rack_id = hb.rack_id.clone();
        }
        member.client_id.clone_from(&hb.client_id);
        member.client_host.clone_from(&hb.client_host);
        if hb.rebalance_timeout_ms != -1 {
            member.rebalance_timeout_ms = hb.rebalance_timeout_ms;
        }
        // One bump covers a membership or subscription change and the topic metadata it brings.
        if self.refresh_topics(resolve) || changed {
            self.bump();
        }
        self.assign_if_needed();
        let assignment_changed = self.reconcile_member(&member_id, hb.owned.as_ref(), now_ms);
        let member = &self.members[&member_id];
        let full = hb.rebalance_timeout_ms != -1 && hb.subscribed_topic_names.is_some() && hb.owned.is_some();
        Ok(HeartbeatReply {
            member_id,
            member_epoch: member.progress.epoch,
            heartbeat_interval_ms: settings.heartbeat_interval_ms,
            assignment: (joining || full || assignment_changed).then(|| member.progress.assigned.clone()),
        })
    }

    /// Adds a joining member (or lets a static member take its place back); true when the group
    /// epoch must move.
    fn join(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        settings: &Settings,
        now_ms: i64,
    ) -> Result<bool, ConsumerGroupError> {
        if let Some(instance) = instance_id {
            let previous = self
                .members
                .values()
                .find(|m| m.instance_id.as_deref() == Some(instance) && m.id != member_id)
                .map(|m| (m.id.clone(), m.progress.epoch));
            if let Some((old_id, old_epoch)) = previous {
                if old_epoch != STATIC_LEAVE_EPOCH {
                    return Err(ConsumerGroupError::UnreleasedInstanceId(instance.to_string()));
                }
                // The static member comes back under a new member id and takes its old place:
                // same partitions, same target, no rebalance.
                let mut member = self.members.remove(&old_id).expect("found above");
                member.id = member_id.to_string();
                member.progress.epoch = 0;
                member.session_deadline_ms = now_ms.saturating_add(settings.session_timeout_ms);
                self.members.insert(member_id.to_string(), member);
                if let Some(target) = self.target.remove(&old_id) {
                    self.target.insert(member_id.to_string(), target);
                }
                return Ok(false);
            }
        }
        if self.members.contains_key(member_id) {
            // A rejoin (after fencing, say) with the same member id keeps its place.
            return Ok(false);
        }
        if self.members.len() >= settings.max_size {
            return Err(ConsumerGroupError::GroupMaxSize(settings.max_size));
        }
        let member = Member::new(member_id.to_string(), now_ms, settings.session_timeout_ms);
        self.members.insert(member_id.to_string(), member);
        Ok(true)
    }

    /// Kafka's member epoch rules for a heartbeat from a known member.
    fn check_epoch(&self, member_id: &str, hb: &Heartbeat) -> Result<(), ConsumerGroupError> {
        let member = self
            .members
            .get(member_id)
            .ok_or_else(|| ConsumerGroupError::UnknownMember(member_id.to_string()))?;
        if let Some(instance) = &hb.instance_id {
            if member.instance_id.as_ref().is_some_and(|known| known != instance) {
                return Err(ConsumerGroupError::FencedInstanceId(instance.clone()));
            }
        }
        let expected = member.progress.epoch;
        let received = hb.member_epoch;
        let lost_response = received == member.previous_epoch
            && hb.owned.as_ref().is_some_and(|owned| {
                flatten(owned).all(|(t, p)| member.progress.assigned.get(&t).is_some_and(|ps| ps.contains(&p)))
            });
        if received > expected || (received < expected && !lost_response) {
            return Err(ConsumerGroupError::FencedMemberEpoch { received, expected });
        }
        Ok(())
    }

    /// Removes a member; its partitions become free. True if it was there.
    pub fn remove_member(&mut self, member_id: &str) -> bool {
        if self.members.remove(member_id).is_none() {
            return false;
        }
        self.target.remove(member_id);
        self.bump();
        let subscribed: BTreeSet<&String> = self.members.values().flat_map(|m| &m.subscribed).collect();
        self.topics.retain(|name, _| subscribed.contains(name));
        self.assign_if_needed();
        true
    }

    /// A static member leaves for now: it keeps its partitions until its session ends.
    pub fn static_leave(&mut self, member_id: &str) -> bool {
        let Some(member) = self.members.get_mut(member_id) else {
            return false;
        };
        member.progress.epoch = STATIC_LEAVE_EPOCH;
        true
    }

    /// Re-reads the subscribed topics' ids and partition counts; true if they changed, which
    /// the caller answers with a group epoch bump.
    pub fn refresh_topics(&mut self, resolve: &dyn Fn(&str) -> Option<TopicInfo>) -> bool {
        let names: BTreeSet<&String> = self.members.values().flat_map(|m| &m.subscribed).collect();
        let topics: BTreeMap<String, TopicInfo> = names
            .into_iter()
            .filter_map(|name| resolve(name).map(|info| (name.clone(), info)))
            .collect();
        if topics == self.topics {
            return false;
        }
        self.topics = topics;
        true
    }

    /// The assignor most members ask for (ties go to the one listed first), or the default.
    fn preferred_assignor(&self) -> ServerAssignor {
        let mut votes: BTreeMap<ServerAssignor, usize> = BTreeMap::new();
        for a in self.members.values().filter_map(|m| m.assignor) {
            *votes.entry(a).or_default() += 1;
        }
        ASSIGNORS
            .iter()
            .copied()
            .max_by_key(|a| (votes.get(a).copied().unwrap_or(0), std::cmp::Reverse(*a)))
            .unwrap_or(ServerAssignor::Uniform)
    }

    /// Computes a new target assignment if the group epoch moved past the last one.
    pub fn assign_if_needed(&mut self) {
        if self.epoch <= self.assignment_epoch {
            return;
        }
        self.assignor = self.preferred_assignor();
        let empty = Assignment::new();
        let specs: BTreeMap<String, MemberSpec<'_>> = self
            .members
            .iter()
            .map(|(id, m)| {
                let previous = self.target.get(id).unwrap_or(&empty);
                (
                    id.clone(),
                    MemberSpec {
                        subscribed: &m.subscribed,
                        previous,
                    },
                )
            })
            .collect();
        self.target = self.assignor.assign(&specs, &self.topics);
        self.assignment_epoch = self.epoch;
    }

    /// Moves one member a step towards its target; true if its assigned partitions changed.
    fn reconcile_member(&mut self, member_id: &str, owned: Option<&Assignment>, now_ms: i64) -> bool {
        let held_by_others: BTreeSet<(Uuid, i32)> = self
            .members
            .values()
            .filter(|m| m.id != member_id)
            .flat_map(|m| m.held())
            .collect();
        let empty = Assignment::new();
        let target = self.target.get(member_id).unwrap_or(&empty);
        let member = self.members.get_mut(member_id).expect("the caller checked the member");
        let next = reconcile(&member.progress, target, self.assignment_epoch, owned, |t, p| {
            held_by_others.contains(&(t, p))
        });
        let changed = next.assigned != member.progress.assigned;
        if next.state == MemberState::UnrevokedPartitions {
            if member.progress.state != MemberState::UnrevokedPartitions || member.rebalance_deadline_ms.is_none() {
                let timeout_ms = i64::from(member.rebalance_timeout_ms.max(0));
                member.rebalance_deadline_ms = Some(now_ms.saturating_add(timeout_ms));
            }
        } else {
            member.rebalance_deadline_ms = None;
        }
        if next.epoch != member.progress.epoch {
            member.previous_epoch = member.progress.epoch;
        }
        member.progress = next;
        changed
    }

    /// Removes members whose session ended or who did not revoke in time; true if any went.
    pub fn expire(&mut self, now_ms: i64) -> bool {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.session_deadline_ms <= now_ms
                    || (m.progress.state == MemberState::UnrevokedPartitions
                        && m.rebalance_deadline_ms.is_some_and(|d| d <= now_ms))
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "consumer group member expired");
            self.remove_member(id);
        }
        !expired.is_empty()
    }
}

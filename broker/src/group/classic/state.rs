//! One classic group's state machine, as Kafka's GroupCoordinator runs it: a pure struct driven
//! by requests and an explicit clock (`now_ms`), with no tasks or channels inside. Requests that
//! must wait (JoinGroup during a rebalance, a follower's SyncGroup) answer `Answer::Wait`, and
//! the events that release them return [`Effect`]s for the registry to deliver.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::member::Member;
use super::types::*;

/// The timer of the join phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinTimer {
    /// No join phase.
    Off,
    /// The first rebalance of an empty group (Kafka's InitialDelayedJoin): always waits
    /// `deadline_ms`, extended while new members keep arriving, up to the rebalance timeout.
    Initial { deadline_ms: i64, remaining_ms: i64 },
    /// A rebalance (Kafka's DelayedJoin): ends when every member rejoined, or at `deadline_ms`.
    Rebalance { deadline_ms: i64 },
}

/// One classic group.
#[derive(Debug, Clone)]
pub struct Group {
    pub(super) state: GroupState,
    pub(super) generation_id: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol_name: Option<String>,
    pub(super) leader: Option<String>,
    pub(super) members: HashMap<String, Member>,
    /// Static members: instance id to member id.
    instances: HashMap<String, String>,
    /// Member ids handed out by MEMBER_ID_REQUIRED, with the time they expire.
    pending: HashMap<String, i64>,
    /// Members that have not sent SyncGroup since the join phase ended.
    pending_sync: HashSet<String>,
    /// When members still in `pending_sync` are removed.
    sync_deadline_ms: Option<i64>,
    join_timer: JoinTimer,
    /// A member joined during the initial delay (extends it, as Kafka does).
    new_member_added: bool,
    next_seq: u64,
    /// When the group last became Empty.
    empty_since_ms: i64,
    limits: Limits,
    effects: Vec<Effect>,
    /// Every state transition, for tests.
    #[cfg(test)]
    pub transitions: Vec<(GroupState, GroupState)>,
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

impl Group {
    /// A new Empty group.
    pub fn new(limits: Limits, now_ms: i64) -> Self {
        Group {
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: HashMap::new(),
            instances: HashMap::new(),
            pending: HashMap::new(),
            pending_sync: HashSet::new(),
            sync_deadline_ms: None,
            join_timer: JoinTimer::Off,
            new_member_added: false,
            next_seq: 0,
            empty_since_ms: now_ms,
            limits,
            effects: Vec::new(),
            #[cfg(test)]
            transitions: Vec::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// The current generation.
    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    /// The protocol type, set by the first member.
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The selected protocol of the current generation.
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    /// The leader's member id.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// The members, in no particular order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The member with this id.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.get(id)
    }

    /// Whether the group has neither members nor member ids waiting to be used.
    pub fn is_vacant(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// Since when the group has been Empty (meaningful only while it is).
    pub fn empty_since_ms(&self) -> i64 {
        self.empty_since_ms
    }

    /// Whether a SyncGroup of this member is waiting.
    pub fn is_awaiting_sync(&self, id: &str) -> bool {
        self.members.get(id).is_some_and(|m| m.awaiting_sync)
    }

    /// Whether a JoinGroup of this member is waiting.
    pub fn is_awaiting_join(&self, id: &str) -> bool {
        self.members.get(id).is_some_and(|m| m.awaiting_join)
    }

    fn transition(&mut self, to: GroupState, now_ms: i64) {
        debug_assert!(to.may_follow(self.state), "{:?} -> {to:?}", self.state);
        #[cfg(test)]
        self.transitions.push((self.state, to));
        if to == GroupState::Empty {
            self.empty_since_ms = now_ms;
        }
        self.state = to;
    }

    fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Marks the group Dead (it is being deleted); only an Empty group may be deleted.
    pub fn kill(&mut self, now_ms: i64) {
        self.transition(GroupState::Dead, now_ms);
        self.pending.clear();
    }

    // ---- JoinGroup ----

    /// Handles a JoinGroup. `Wait` means the member waits for the join phase to end.
    pub fn join(&mut self, mut req: JoinRequest, now_ms: i64) -> (Answer<JoinResult>, Vec<Effect>) {
        let answer = self.join_inner(&mut req, now_ms);
        (answer, self.take_effects())
    }

    fn join_inner(&mut self, req: &mut JoinRequest, now_ms: i64) -> Answer<JoinResult> {
        let timeout = req.session_timeout_ms as i64;
        if timeout < self.limits.min_session_timeout_ms || timeout > self.limits.max_session_timeout_ms {
            return Answer::Now(JoinResult::error(ResponseError::InvalidSessionTimeout, &req.member_id));
        }
        if req.protocols.len() > MAX_PROTOCOLS || req.protocols.iter().any(|p| p.metadata.len() > MAX_METADATA_BYTES) {
            return Answer::Now(JoinResult::error(ResponseError::InvalidRequest, &req.member_id));
        }
        // A protocol named twice counts once, with its first metadata.
        let mut seen = HashSet::new();
        req.protocols.retain(|p| seen.insert(p.name.clone()));
        if !self.accepts_joining_member(&req.member_id) {
            if self.members.contains_key(&req.member_id) {
                self.remove_member(&req.member_id.clone(), now_ms);
            }
            return Answer::Now(JoinResult::error(ResponseError::GroupMaxSizeReached, ""));
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return Answer::Now(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                &req.member_id,
            ));
        }
        if self.state == GroupState::Dead {
            return Answer::Now(JoinResult::error(
                ResponseError::CoordinatorNotAvailable,
                &req.member_id,
            ));
        }
        if req.member_id.is_empty() {
            self.join_new_member(req, now_ms)
        } else {
            self.join_known_member(req, now_ms)
        }
    }

    fn accepts_joining_member(&self, member_id: &str) -> bool {
        let max = self.limits.max_size;
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                self.members.get(member_id).is_some_and(|m| m.awaiting_join)
                    || self.members.values().filter(|m| m.awaiting_join).count() < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < max
            }
        }
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty type and protocol list;
    /// otherwise the type must match and one offered protocol must be supported by every member.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.values().all(|m| m.supports(&p.name)))
    }

    fn join_new_member(&mut self, req: &JoinRequest, now_ms: i64) -> Answer<JoinResult> {
        let member_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
        if let Some(instance) = &req.instance_id {
            if let Some(old_id) = self.instances.get(instance).cloned() {
                return self.replace_static_member(req, &old_id, member_id, now_ms);
            }
            return self.add_member_and_rebalance(req, member_id, now_ms);
        }
        if req.require_known_member_id {
            if self.pending.len() >= MAX_PENDING_MEMBERS {
                if let Some(oldest) = self.pending.iter().min_by_key(|(_, d)| **d).map(|(id, _)| id.clone()) {
                    self.pending.remove(&oldest);
                }
            }
            self.pending
                .insert(member_id.clone(), now_ms + req.session_timeout_ms as i64);
            return Answer::Now(JoinResult::error(ResponseError::MemberIdRequired, &member_id));
        }
        self.add_member_and_rebalance(req, member_id, now_ms)
    }

    fn join_known_member(&mut self, req: &JoinRequest, now_ms: i64) -> Answer<JoinResult> {
        let id = req.member_id.clone();
        if self.pending.contains_key(&id) {
            return self.add_member_and_rebalance(req, id, now_ms);
        }
        if let Err(e) = self.validate_member(&id, req.instance_id.as_deref()) {
            return Answer::Now(JoinResult::error(e, &id));
        }
        let member = &self.members[&id];
        let unchanged = member.protocols == req.protocols;
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(req, &id, now_ms),
            GroupState::CompletingRebalance if unchanged => {
                // The member missed its JoinGroup response: send the current generation again.
                self.touch(&id, now_ms);
                Answer::Now(self.current_join_result(&id, is_leader, false))
            }
            GroupState::Stable if unchanged && !is_leader => {
                self.touch(&id, now_ms);
                Answer::Now(self.current_join_result(&id, false, false))
            }
            GroupState::CompletingRebalance | GroupState::Stable => self.update_member_and_rebalance(req, &id, now_ms),
            GroupState::Empty | GroupState::Dead => Answer::Now(JoinResult::error(ResponseError::UnknownMemberId, &id)),
        }
    }

    /// A static member rejoining under a new member id (a restarted client, KIP-345): it takes
    /// the old member's place. In a Stable group with unchanged protocols there is no rebalance
    /// and the member gets its assignment back through SyncGroup.
    fn replace_static_member(
        &mut self,
        req: &JoinRequest,
        old_id: &str,
        new_id: String,
        now_ms: i64,
    ) -> Answer<JoinResult> {
        let Some(mut member) = self.members.remove(old_id) else {
            return Answer::Now(JoinResult::error(ResponseError::UnknownMemberId, ""));
        };
        if member.awaiting_join {
            let fenced = JoinResult::error(ResponseError::FencedInstanceId, old_id);
            self.effects.push(Effect::Join(old_id.to_string(), fenced));
            member.awaiting_join = false;
        }
        if member.awaiting_sync {
            let fenced = SyncResult::error(ResponseError::FencedInstanceId);
            self.effects.push(Effect::Sync(old_id.to_string(), fenced));
            member.awaiting_sync = false;
        }
        let unchanged = member.protocols == req.protocols;
        member.id = new_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        self.members.insert(new_id.clone(), member);
        if let Some(instance) = &req.instance_id {
            self.instances.insert(instance.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        if self.state == GroupState::Stable && unchanged {
            let member = self.members.get_mut(&new_id).expect("just inserted");
            member.session_timeout_ms = req.session_timeout_ms;
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
            self.touch(&new_id, now_ms);
            let is_leader = self.leader.as_deref() == Some(new_id.as_str());
            // KIP-814: a static leader gets the members to compute its metadata from, but must not
            // reassign (v9+); older leaders get the members too, and their SyncGroup in a Stable
            // group only fetches the current assignment.
            return Answer::Now(self.current_join_result(
                &new_id,
                is_leader,
                is_leader && req.supports_skip_assignment,
            ));
        }
        self.update_member_and_rebalance(req, &new_id, now_ms)
    }

    fn current_join_result(&self, id: &str, with_members: bool, skip_assignment: bool) -> JoinResult {
        JoinResult {
            error: 0,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment,
            member_id: id.to_string(),
            members: if with_members {
                self.member_metadata()
            } else {
                Vec::new()
            },
        }
    }

    fn member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.seq);
        members
            .into_iter()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata_for(&protocol),
            })
            .collect()
    }

    fn add_member_and_rebalance(&mut self, req: &JoinRequest, id: String, now_ms: i64) -> Answer<JoinResult> {
        self.pending.remove(&id);
        if self.state == GroupState::PreparingRebalance && self.generation_id == 0 {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        if let Some(instance) = &req.instance_id {
            self.instances.insert(instance.clone(), id.clone());
        }
        let member = Member {
            id: id.clone(),
            instance_id: req.instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            seq: self.next_seq,
            awaiting_join: true,
            awaiting_sync: false,
            is_new: true,
            deadline_ms: now_ms + NEW_MEMBER_JOIN_TIMEOUT_MS,
        };
        self.next_seq += 1;
        self.members.insert(id.clone(), member);
        self.maybe_prepare_rebalance(now_ms);
        self.try_complete_join(now_ms);
        Answer::Wait(id)
    }

    fn update_member_and_rebalance(&mut self, req: &JoinRequest, id: &str, now_ms: i64) -> Answer<JoinResult> {
        if let Some(member) = self.members.get_mut(id) {
            member.protocols = req.protocols.clone();
            member.session_timeout_ms = req.session_timeout_ms;
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
            member.awaiting_join = true;
        }
        self.maybe_prepare_rebalance(now_ms);
        self.try_complete_join(now_ms);
        Answer::Wait(id.to_string())
    }

    fn maybe_prepare_rebalance(&mut self, now_ms: i64) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(now_ms);
        }
    }

    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0)
            .max(0)
    }

    fn prepare_rebalance(&mut self, now_ms: i64) {
        if self.state == GroupState::CompletingRebalance {
            // Members waiting for an assignment that will never come rejoin instead.
            let mut waiting: Vec<String> = Vec::new();
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if member.awaiting_sync {
                    member.awaiting_sync = false;
                    waiting.push(member.id.clone());
                }
            }
            for id in waiting {
                self.effects
                    .push(Effect::Sync(id, SyncResult::error(ResponseError::RebalanceInProgress)));
            }
        }
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        let timeout = self.rebalance_timeout_ms();
        self.join_timer = if self.state == GroupState::Empty {
            let delay = self.limits.initial_rebalance_delay_ms;
            JoinTimer::Initial {
                deadline_ms: now_ms + delay,
                remaining_ms: (timeout - delay).max(0),
            }
        } else {
            JoinTimer::Rebalance {
                deadline_ms: now_ms + timeout,
            }
        };
        self.transition(GroupState::PreparingRebalance, now_ms);
        self.try_complete_join(now_ms);
    }

    /// Ends the join phase if every member has rejoined (not during the initial delay).
    fn try_complete_join(&mut self, now_ms: i64) {
        if self.state == GroupState::PreparingRebalance
            && matches!(self.join_timer, JoinTimer::Rebalance { .. })
            && self.pending.is_empty()
            && self.members.values().all(|m| m.awaiting_join)
        {
            self.complete_join(now_ms);
        }
    }

    fn complete_join(&mut self, now_ms: i64) {
        self.join_timer = JoinTimer::Off;
        // Dynamic members that did not rejoin in time are out; static ones keep their place
        // until their session expires.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.forget_member(&id);
        }
        if !self.members.is_empty() && !self.elect_joined_leader() {
            // No member rejoined (all are static and silent): wait another rebalance timeout.
            self.join_timer = JoinTimer::Rebalance {
                deadline_ms: now_ms + self.rebalance_timeout_ms(),
            };
            return;
        }
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupState::Empty, now_ms);
            return;
        }
        self.protocol_name = self.select_protocol();
        self.transition(GroupState::CompletingRebalance, now_ms);
        let leader = self.leader.clone().unwrap_or_default();
        let mut answered = Vec::new();
        for member in self.members.values_mut() {
            member.deadline_ms = now_ms + member.session_timeout_ms as i64;
            member.is_new = false;
            if member.awaiting_join {
                member.awaiting_join = false;
                answered.push(member.id.clone());
            }
        }
        for id in answered {
            let result = self.current_join_result(&id, id == leader, false);
            self.effects.push(Effect::Join(id, result));
        }
        self.pending_sync = self.members.keys().cloned().collect();
        self.sync_deadline_ms = Some(now_ms + self.rebalance_timeout_ms());
    }

    /// Kafka's `maybeElectNewJoinedLeader`: keeps a leader that rejoined, else picks the oldest
    /// member that did; false if none did.
    fn elect_joined_leader(&mut self) -> bool {
        if let Some(leader) = self.leader.as_ref().and_then(|l| self.members.get(l)) {
            if leader.awaiting_join {
                return true;
            }
        }
        match self.members.values().filter(|m| m.awaiting_join).min_by_key(|m| m.seq) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    /// Chooses the protocol by vote among those every member supports: each member votes for
    /// its most preferred candidate; ties go to the leader's preference.
    fn select_protocol(&self) -> Option<String> {
        let leader = self.leader.as_ref().and_then(|l| self.members.get(l))?;
        let candidates: Vec<&str> = leader
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some(p) = member.protocols.iter().find(|p| candidates.contains(&p.name.as_str())) {
                *votes.entry(p.name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for name in candidates {
            let n = votes.get(name).copied().unwrap_or(0);
            if best.is_none_or(|(_, b)| n > b) {
                best = Some((name, n));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    // ---- SyncGroup ----

    /// Handles a SyncGroup. `Wait` means the member waits for the leader's assignment.
    pub fn sync(&mut self, req: SyncRequest, now_ms: i64) -> (Answer<SyncResult>, Vec<Effect>) {
        let answer = self.sync_inner(req, now_ms);
        (answer, self.take_effects())
    }

    fn sync_inner(&mut self, req: SyncRequest, now_ms: i64) -> Answer<SyncResult> {
        if self.state == GroupState::Dead {
            return Answer::Now(SyncResult::error(ResponseError::CoordinatorNotAvailable));
        }
        if let Err(e) = self.validate_member(&req.member_id, req.instance_id.as_deref()) {
            return Answer::Now(SyncResult::error(e));
        }
        if req.generation_id != self.generation_id {
            return Answer::Now(SyncResult::error(ResponseError::IllegalGeneration));
        }
        let type_differs = req.protocol_type.is_some() && req.protocol_type != self.protocol_type;
        let name_differs = req.protocol_name.is_some() && req.protocol_name != self.protocol_name;
        if type_differs || name_differs {
            return Answer::Now(SyncResult::error(ResponseError::InconsistentGroupProtocol));
        }
        if req.assignments.iter().any(|(_, a)| a.len() > MAX_METADATA_BYTES) {
            return Answer::Now(SyncResult::error(ResponseError::InvalidRequest));
        }
        let id = req.member_id;
        match self.state {
            GroupState::Empty | GroupState::Dead => Answer::Now(SyncResult::error(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => Answer::Now(SyncResult::error(ResponseError::RebalanceInProgress)),
            GroupState::CompletingRebalance => {
                self.members.get_mut(&id).expect("validated").awaiting_sync = true;
                self.leave_pending_sync(&id);
                if self.leader.as_deref() == Some(id.as_str()) {
                    let mut assignments: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                    for member in self.members.values_mut() {
                        member.assignment = assignments.remove(&member.id).unwrap_or_default();
                    }
                    self.propagate_assignment(now_ms);
                    self.transition(GroupState::Stable, now_ms);
                }
                Answer::Wait(id)
            }
            GroupState::Stable => {
                self.leave_pending_sync(&id);
                self.touch(&id, now_ms);
                let assignment = self.members[&id].assignment.clone();
                Answer::Now(self.sync_ok(assignment))
            }
        }
    }

    fn sync_ok(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            error: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    fn propagate_assignment(&mut self, now_ms: i64) {
        let mut answers = Vec::new();
        for member in self.members.values_mut() {
            if member.awaiting_sync {
                member.awaiting_sync = false;
                member.deadline_ms = now_ms + member.session_timeout_ms as i64;
                answers.push((member.id.clone(), member.assignment.clone()));
            }
        }
        for (id, assignment) in answers {
            let result = self.sync_ok(assignment);
            self.effects.push(Effect::Sync(id, result));
        }
    }

    fn leave_pending_sync(&mut self, id: &str) {
        self.pending_sync.remove(id);
        if self.pending_sync.is_empty() {
            self.sync_deadline_ms = None;
        }
    }

    // ---- Heartbeat, LeaveGroup ----

    /// Handles a Heartbeat; returns the Kafka error code.
    pub fn heartbeat(&mut self, member_id: &str, instance_id: Option<&str>, generation_id: i32, now_ms: i64) -> i16 {
        if self.state == GroupState::Dead {
            return code(ResponseError::CoordinatorNotAvailable);
        }
        if let Err(e) = self.validate_member(member_id, instance_id) {
            return code(e);
        }
        if generation_id != self.generation_id {
            return code(ResponseError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => code(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                self.touch(member_id, now_ms);
                code(ResponseError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.touch(member_id, now_ms);
                0
            }
        }
    }

    /// Handles a LeaveGroup: per member, the Kafka error code; Err for a group-level error.
    pub fn leave(&mut self, leaving: &[Leaving], now_ms: i64) -> (Result<Vec<i16>, i16>, Vec<Effect>) {
        if self.state == GroupState::Dead {
            return (Err(code(ResponseError::CoordinatorNotAvailable)), Vec::new());
        }
        let mut errors = Vec::with_capacity(leaving.len());
        for l in leaving {
            let error = if l.member_id.is_empty() {
                // An administrator removes a static member by instance id alone.
                match l.instance_id.as_ref().and_then(|i| self.instances.get(i)).cloned() {
                    Some(id) => {
                        self.remove_member(&id, now_ms);
                        0
                    }
                    None => code(ResponseError::UnknownMemberId),
                }
            } else if self.pending.remove(&l.member_id).is_some() {
                self.try_complete_join(now_ms);
                0
            } else {
                match self.validate_member(&l.member_id, l.instance_id.as_deref()) {
                    Err(e) => code(e),
                    Ok(()) => {
                        self.remove_member(&l.member_id.clone(), now_ms);
                        0
                    }
                }
            };
            errors.push(error);
        }
        (Ok(errors), self.take_effects())
    }

    // ---- Timers ----

    /// Expires pending member ids and silent members, and ends join and sync phases whose time
    /// is up.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Effect> {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, d)| **d <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                self.pending.remove(id);
            }
            self.try_complete_join(now_ms);
        }
        let mut dead: Vec<&Member> = self.members.values().filter(|m| !m.alive(now_ms)).collect();
        dead.sort_by_key(|m| m.seq);
        let dead: Vec<String> = dead.into_iter().map(|m| m.id.clone()).collect();
        for id in dead {
            // An earlier removal may have completed a join and refreshed this member.
            if self.members.get(&id).is_some_and(|m| !m.alive(now_ms)) {
                self.remove_member(&id, now_ms);
            }
        }
        match self.join_timer {
            JoinTimer::Initial {
                deadline_ms,
                remaining_ms,
            } if deadline_ms <= now_ms => {
                if self.new_member_added && remaining_ms != 0 {
                    self.new_member_added = false;
                    let delay = self.limits.initial_rebalance_delay_ms.min(remaining_ms);
                    self.join_timer = JoinTimer::Initial {
                        deadline_ms: now_ms + delay,
                        remaining_ms: (remaining_ms - self.limits.initial_rebalance_delay_ms).max(0),
                    };
                } else {
                    self.complete_join(now_ms);
                }
            }
            JoinTimer::Rebalance { deadline_ms } if deadline_ms <= now_ms => self.complete_join(now_ms),
            _ => {}
        }
        if self.sync_deadline_ms.is_some_and(|d| d <= now_ms) {
            self.sync_deadline_ms = None;
            if matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable)
                && !self.pending_sync.is_empty()
            {
                let mut silent: Vec<String> = self.pending_sync.drain().collect();
                silent.sort();
                for id in silent {
                    self.forget_member(&id);
                }
                self.prepare_rebalance(now_ms);
            }
        }
        self.take_effects()
    }

    // ---- Shared ----

    /// Kafka's `validateCurrentMember`.
    pub(super) fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
        match instance_id {
            Some(instance) => match self.instances.get(instance) {
                None => Err(ResponseError::UnknownMemberId),
                Some(id) if id != member_id => Err(ResponseError::FencedInstanceId),
                Some(_) => Ok(()),
            },
            None if !self.members.contains_key(member_id) => Err(ResponseError::UnknownMemberId),
            None => Ok(()),
        }
    }

    fn touch(&mut self, id: &str, now_ms: i64) {
        if let Some(m) = self.members.get_mut(id) {
            m.deadline_ms = now_ms + m.session_timeout_ms as i64;
        }
    }

    /// Removes a member without rebalancing: answers its waiting requests with
    /// UNKNOWN_MEMBER_ID and hands leadership to the oldest remaining member.
    fn forget_member(&mut self, id: &str) {
        let Some(member) = self.members.remove(id) else {
            return;
        };
        if member.awaiting_join {
            let result = JoinResult::error(ResponseError::UnknownMemberId, "");
            self.effects.push(Effect::Join(id.to_string(), result));
        }
        if member.awaiting_sync {
            self.effects.push(Effect::Sync(
                id.to_string(),
                SyncResult::error(ResponseError::UnknownMemberId),
            ));
        }
        if let Some(instance) = &member.instance_id {
            if self.instances.get(instance).map(String::as_str) == Some(id) {
                self.instances.remove(instance);
            }
        }
        self.pending_sync.remove(id);
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.values().min_by_key(|m| m.seq).map(|m| m.id.clone());
        }
    }

    /// Kafka's `removeMemberAndUpdateGroup`: removes a member and rebalances.
    fn remove_member(&mut self, id: &str, now_ms: i64) {
        self.forget_member(id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.maybe_prepare_rebalance(now_ms),
            GroupState::PreparingRebalance => self.try_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }
}

//! Classic consumer groups (JoinGroup, SyncGroup, Heartbeat, LeaveGroup): the registry of every
//! group's state machine, which delivers the answers of waiting requests through oneshot
//! channels. The state machine itself (`state.rs`) is pure and knows nothing of tasks.

mod member;
mod state;
mod types;
mod views;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Mutex;

use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

pub use member::Member;
pub use state::Group;
pub use types::*;

use super::GroupListing;
use crate::config::BrokerConfig;

/// Most classic groups held at once. Kafka has no bound; past this one a JoinGroup that would
/// create a group gets COORDINATOR_NOT_AVAILABLE (retriable) until Empty groups age out.
pub const MAX_GROUPS: usize = 100_000;

/// How long an Empty group without pending member ids is kept before it is forgotten (its
/// committed offsets stay; the group then lists through them). Kafka forgets such groups at its
/// offset-expiration pass, every `offsets.retention.check.interval.ms` (10 minutes by default).
pub const EMPTY_GROUP_RETENTION_MS: i64 = 600_000;

/// An answer that is ready or that comes later through a channel.
pub enum Pending<T> {
    /// Ready now.
    Now(T),
    /// Comes when the group releases the request; a closed channel means the request was
    /// superseded by a newer one of the same member.
    Later(oneshot::Receiver<T>),
}

/// A group with the channels of its waiting requests.
struct Slot {
    group: Group,
    joins: HashMap<String, oneshot::Sender<JoinResult>>,
    syncs: HashMap<String, oneshot::Sender<SyncResult>>,
}

impl Slot {
    fn deliver(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Join(id, result) => {
                    if let Some(tx) = self.joins.remove(&id) {
                        let _ = tx.send(result);
                    }
                }
                Effect::Sync(id, result) => {
                    if let Some(tx) = self.syncs.remove(&id) {
                        let _ = tx.send(result);
                    }
                }
            }
        }
    }

    /// A channel for the request the member now waits on; an older one of the same member is
    /// dropped (its future answers REBALANCE_IN_PROGRESS, so the client rejoins).
    fn wait<T>(map: &mut HashMap<String, oneshot::Sender<T>>, id: &str) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        map.insert(id.to_string(), tx);
        rx
    }
}

/// The classic groups of the broker.
pub struct ClassicGroups {
    limits: Limits,
    groups: Mutex<HashMap<String, Slot>>,
}

impl ClassicGroups {
    /// No groups yet; limits come from the broker config.
    pub fn new(config: &BrokerConfig) -> Self {
        let limits = Limits {
            initial_rebalance_delay_ms: config.long("group.initial.rebalance.delay.ms"),
            min_session_timeout_ms: config.long("group.min.session.timeout.ms"),
            max_session_timeout_ms: config.long("group.max.session.timeout.ms"),
            max_size: usize::try_from(config.long("group.max.size")).unwrap_or(usize::MAX),
        };
        Self::with_limits(limits)
    }

    /// No groups yet, with explicit limits.
    pub fn with_limits(limits: Limits) -> Self {
        ClassicGroups {
            limits,
            groups: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding the lock leaves consistent groups: every mutation is a whole request.
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// JoinGroup. An unknown member (empty id) creates the group if needed; a known member id
    /// for a group that does not exist gets UNKNOWN_MEMBER_ID.
    pub fn join(&self, group_id: &str, req: JoinRequest, now_ms: i64) -> Pending<JoinResult> {
        if group_id.is_empty() {
            return Pending::Now(JoinResult::error(ResponseError::InvalidGroupId, &req.member_id));
        }
        let mut groups = self.lock();
        if !groups.contains_key(group_id) {
            if !req.member_id.is_empty() {
                return Pending::Now(JoinResult::error(ResponseError::UnknownMemberId, &req.member_id));
            }
            if groups.len() >= MAX_GROUPS {
                return Pending::Now(JoinResult::error(ResponseError::CoordinatorNotAvailable, ""));
            }
        }
        let created = !groups.contains_key(group_id);
        let slot = groups.entry(group_id.to_string()).or_insert_with(|| Slot {
            group: Group::new(self.limits, now_ms),
            joins: HashMap::new(),
            syncs: HashMap::new(),
        });
        let (answer, effects) = slot.group.join(req, now_ms);
        let pending = match answer {
            Answer::Now(result) => Pending::Now(result),
            Answer::Wait(id) => Pending::Later(Slot::wait(&mut slot.joins, &id)),
        };
        slot.deliver(effects);
        if created && slot.group.is_vacant() && slot.group.state() == GroupState::Empty {
            groups.remove(group_id);
        }
        pending
    }

    /// SyncGroup.
    pub fn sync(&self, group_id: &str, req: SyncRequest, now_ms: i64) -> Pending<SyncResult> {
        if group_id.is_empty() {
            return Pending::Now(SyncResult::error(ResponseError::InvalidGroupId));
        }
        let mut groups = self.lock();
        let Some(slot) = groups.get_mut(group_id) else {
            return Pending::Now(SyncResult::error(ResponseError::UnknownMemberId));
        };
        let (answer, effects) = slot.group.sync(req, now_ms);
        let pending = match answer {
            Answer::Now(result) => Pending::Now(result),
            Answer::Wait(id) => Pending::Later(Slot::wait(&mut slot.syncs, &id)),
        };
        slot.deliver(effects);
        pending
    }

    /// Heartbeat; returns the Kafka error code.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> i16 {
        if group_id.is_empty() {
            return ResponseError::InvalidGroupId.code();
        }
        match self.lock().get_mut(group_id) {
            Some(slot) => slot.group.heartbeat(member_id, instance_id, generation_id, now_ms),
            None => ResponseError::UnknownMemberId.code(),
        }
    }

    /// LeaveGroup: per member, the Kafka error code; Err for a group-level error.
    pub fn leave(&self, group_id: &str, leaving: &[Leaving], now_ms: i64) -> Result<Vec<i16>, i16> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId.code());
        }
        let mut groups = self.lock();
        let Some(slot) = groups.get_mut(group_id) else {
            return Ok(vec![ResponseError::UnknownMemberId.code(); leaving.len()]);
        };
        let (result, effects) = slot.group.leave(leaving, now_ms);
        slot.deliver(effects);
        result
    }

    /// Kafka's OffsetCommit checks: a commit with generation -1 (and no member, or any member)
    /// to an Empty or unknown group is a "simple" consumer's and is allowed; otherwise the
    /// member must belong to the current generation (UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID,
    /// ILLEGAL_GENERATION), and not while the group waits for its assignment
    /// (REBALANCE_IN_PROGRESS).
    pub fn validate_commit(
        &self,
        group: &str,
        member_id: &str,
        generation_id: i32,
        group_instance_id: Option<&str>,
    ) -> Result<(), i16> {
        match self.lock().get(group) {
            Some(slot) => slot.group.validate_commit(member_id, generation_id, group_instance_id),
            None if generation_id < 0 => Ok(()),
            None => Err(ResponseError::IllegalGeneration.code()),
        }
    }

    /// Every classic group with its protocol type and state.
    pub fn list(&self) -> Vec<GroupListing> {
        let mut out: Vec<GroupListing> = self
            .lock()
            .iter()
            .map(|(id, slot)| GroupListing {
                group_id: id.clone(),
                protocol_type: slot.group.protocol_type().unwrap_or_default().to_string(),
                state: slot.group.state().name().to_string(),
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// A group as DescribeGroups shows it; None if there is no such classic group.
    pub fn describe(&self, group: &str) -> Option<GroupDescription> {
        self.lock().get(group).map(|slot| slot.group.describe())
    }

    /// Whether the group has no members (or does not exist as a classic group).
    pub fn is_empty_or_absent(&self, group: &str) -> bool {
        self.lock()
            .get(group)
            .is_none_or(|slot| slot.group.state() == GroupState::Empty)
    }

    /// Deletes an Empty group: GROUP_ID_NOT_FOUND if there is no such classic group,
    /// NON_EMPTY_GROUP if it has members. Committed offsets are the caller's to delete.
    pub fn delete(&self, group: &str) -> Result<(), i16> {
        let mut groups = self.lock();
        let Some(slot) = groups.get_mut(group) else {
            return Err(ResponseError::GroupIdNotFound.code());
        };
        if slot.group.state() != GroupState::Empty {
            return Err(ResponseError::NonEmptyGroup.code());
        }
        slot.group.kill(crate::broker::now_ms());
        groups.remove(group);
        Ok(())
    }

    /// Runs membership timers: session timeouts, join and sync phase deadlines, pending member
    /// ids; forgets groups that have been Empty and vacant for `EMPTY_GROUP_RETENTION_MS`.
    pub fn tick(&self, now_ms: i64) {
        let mut groups = self.lock();
        groups.retain(|group_id, slot| {
            let effects = slot.group.tick(now_ms);
            slot.deliver(effects);
            // Channels of requests whose client went away are dropped with them.
            slot.joins.retain(|_, tx| !tx.is_closed());
            slot.syncs.retain(|_, tx| !tx.is_closed());
            let stale = slot.group.state() == GroupState::Empty
                && slot.group.is_vacant()
                && now_ms - slot.group.empty_since_ms() >= EMPTY_GROUP_RETENTION_MS;
            if stale {
                tracing::debug!(group = %group_id, "forgetting empty classic group");
            }
            !stale
        });
    }

    /// The state machine of one group, for tests.
    #[cfg(test)]
    pub fn with_group<R>(&self, group: &str, f: impl FnOnce(&Group) -> R) -> Option<R> {
        self.lock().get(group).map(|slot| f(&slot.group))
    }
}

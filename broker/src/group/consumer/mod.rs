//! KIP-848 consumer groups (ConsumerGroupHeartbeat, ConsumerGroupDescribe): the registry of
//! groups, request validation, and the API the rest of the coordinator uses (offset commit
//! fencing, listing, deletion, timers).
//!
//! Subscriptions are by topic name only: `subscribed_topic_regex` (v1) is refused with
//! INVALID_REQUEST, since Brook has no regular expression engine. Groups live in memory; after a
//! restart members get UNKNOWN_MEMBER_ID and rejoin.

pub mod assignor;
pub mod group;
pub mod member;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Mutex;

use kafka_protocol::ResponseError;

use crate::config::BrokerConfig;
use crate::group::GroupListing;
use assignor::{Assignment, ServerAssignor, TopicInfo};
use group::{Group, LEAVE_EPOCH, STATIC_LEAVE_EPOCH};

/// Most groups the coordinator keeps; at the limit, groups without members are forgotten first.
pub const MAX_GROUPS: usize = 10_000;
/// Longest member, instance or rack id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 255;
/// Most topic names one member may subscribe to.
pub const MAX_SUBSCRIBED_TOPICS: usize = 10_000;
/// Longest valid topic name, as in Kafka.
const MAX_TOPIC_NAME_BYTES: usize = 249;

/// The broker configs that govern KIP-848 groups, read for each heartbeat.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `group.consumer.heartbeat.interval.ms`: how often members are asked to heartbeat.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.session.timeout.ms`: a silent member is removed after this long.
    pub session_timeout_ms: i64,
    /// `group.consumer.max.size`: most members in one group.
    pub max_size: usize,
}

impl Settings {
    /// Reads the settings from the broker config.
    pub fn from_config(config: &BrokerConfig) -> Settings {
        Settings {
            heartbeat_interval_ms: config
                .long("group.consumer.heartbeat.interval.ms")
                .clamp(1, i64::from(i32::MAX)) as i32,
            session_timeout_ms: config.long("group.consumer.session.timeout.ms"),
            max_size: usize::try_from(config.long("group.consumer.max.size")).unwrap_or(usize::MAX),
        }
    }
}

/// A ConsumerGroupHeartbeat request, in the coordinator's terms.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// The request version (v1 requires a client-generated member id).
    pub version: i16,
    /// The group id.
    pub group_id: String,
    /// The member id; empty on a v0 join, in which case Brook generates one.
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member leaving for now, else the current epoch.
    pub member_epoch: i32,
    /// The static member id, if given.
    pub instance_id: Option<String>,
    /// The rack id, if given.
    pub rack_id: Option<String>,
    /// The request header's client id.
    pub client_id: String,
    /// The client's address, as describe shows it.
    pub client_host: String,
    /// The rebalance timeout, -1 if unchanged.
    pub rebalance_timeout_ms: i32,
    /// The subscribed topic names, None if unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// The subscribed topic regex, None if unchanged; not supported.
    pub subscribed_topic_regex: Option<String>,
    /// The server assignor, None if unchanged or not chosen.
    pub server_assignor: Option<String>,
    /// The partitions the member owns, None if unchanged.
    pub owned: Option<Assignment>,
}

/// What the coordinator answers to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The member id (generated when the member sent none).
    pub member_id: String,
    /// The member epoch.
    pub member_epoch: i32,
    /// How long until the next heartbeat.
    pub heartbeat_interval_ms: i32,
    /// The partitions the member may own, only when they changed (or on join).
    pub assignment: Option<Assignment>,
}

/// Why a heartbeat is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumerGroupError {
    /// The request breaks the protocol's rules (the client is at fault).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The client asked for an assignor Brook does not have.
    #[error("server assignor {0} is not supported; Brook has uniform and range")]
    UnsupportedAssignor(String),
    /// The member is not in the group (it expired, was fenced, or the broker restarted).
    #[error("member {0} is not in the group")]
    UnknownMember(String),
    /// The member's epoch is not the coordinator's; it must give up its partitions and rejoin.
    #[error("member epoch {received} is fenced, the coordinator expects {expected}")]
    FencedMemberEpoch {
        /// The epoch the member sent.
        received: i32,
        /// The epoch the coordinator holds.
        expected: i32,
    },
    /// The group is full.
    #[error("the group has reached group.consumer.max.size of {0} members")]
    GroupMaxSize(usize),
    /// Another live member uses this static instance id.
    #[error("instance id {0} is still used by another member")]
    UnreleasedInstanceId(String),
    /// The instance id belongs to another member id.
    #[error("instance id {0} is registered with another member id")]
    FencedInstanceId(String),
    /// The coordinator holds as many groups as it may (retrying later may help).
    #[error("the coordinator already holds {0} consumer groups")]
    TooManyGroups(usize),
}

impl ConsumerGroupError {
    /// The Kafka error code.
    pub fn code(&self) -> i16 {
        let e = match self {
            ConsumerGroupError::InvalidRequest(_) => ResponseError::InvalidRequest,
            ConsumerGroupError::UnsupportedAssignor(_) => ResponseError::UnsupportedAssignor,
            ConsumerGroupError::UnknownMember(_) => ResponseError::UnknownMemberId,
            ConsumerGroupError::FencedMemberEpoch { .. } => ResponseError::FencedMemberEpoch,
            ConsumerGroupError::GroupMaxSize(_) => ResponseError::GroupMaxSizeReached,
            ConsumerGroupError::UnreleasedInstanceId(_) => ResponseError::UnreleasedInstanceId,
            ConsumerGroupError::FencedInstanceId(_) => ResponseError::FencedInstanceId,
            ConsumerGroupError::TooManyGroups(_) => ResponseError::CoordinatorNotAvailable,
        };
        e.code()
    }
}

/// One member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    /// The member id.
    pub member_id: String,
    /// The static instance id.
    pub instance_id: Option<String>,
    /// The rack id.
    pub rack_id: Option<String>,
    /// The client id the member last sent.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// The member epoch.
    pub member_epoch: i32,
    /// The subscribed topic names.
    pub subscribed_topic_names: Vec<String>,
    /// The partitions the member may own now.
    pub assignment: Assignment,
    /// The partitions the member is heading to.
    pub target_assignment: Assignment,
}

/// A group as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// The state's Kafka name.
    pub state: &'static str,
    /// The group epoch.
    pub group_epoch: i32,
    /// The epoch of the target assignment.
    pub assignment_epoch: i32,
    /// The assignor in use.
    pub assignor: &'static str,
    /// The members, by member id.
    pub members: Vec<MemberDescription>,
}

/// Every KIP-848 group of the broker.
pub struct ConsumerGroups {
    groups: Mutex<BTreeMap<String, Group>>,
}

impl ConsumerGroups {
    /// No groups yet; settings are read from the broker config for each heartbeat.
    pub fn new(_config: &BrokerConfig) -> Self {
        ConsumerGroups {
            groups: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Group>> {
        // A panic while holding the lock cannot leave a group half-updated in a way that
        // matters more than losing the broker, so a poisoned lock is used as it is.
        self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Handles a ConsumerGroupHeartbeat: join, heartbeat, or leave. `resolve` gives a topic's
    /// id and partition count by name.
    pub fn heartbeat(
        &self,
        hb: &Heartbeat,
        settings: &Settings,
        now_ms: i64,
        resolve: &dyn Fn(&str) -> Option<TopicInfo>,
    ) -> Result<HeartbeatReply, ConsumerGroupError> {
        let assignor = validate(hb)?;
        let mut groups = self.lock();
        if hb.member_epoch == LEAVE_EPOCH || hb.member_epoch == STATIC_LEAVE_EPOCH {
            let unknown = || ConsumerGroupError::UnknownMember(hb.member_id.clone());
            let group = groups.get_mut(&hb.group_id).ok_or_else(unknown)?;
            if hb.member_epoch == STATIC_LEAVE_EPOCH {
                let member = group.members.get(&hb.member_id).ok_or_else(unknown)?;
                if member.instance_id.as_ref() != hb.instance_id.as_ref() {
                    let instance = hb.instance_id.clone().unwrap_or_default();
                    return Err(ConsumerGroupError::FencedInstanceId(instance));
                }
            }
            let left = if hb.member_epoch == STATIC_LEAVE_EPOCH {
                group.static_leave(&hb.member_id)
            } else {
                group.remove_member(&hb.member_id)
            };
            if !left {
                return Err(unknown());
            }
            return Ok(HeartbeatReply {
                member_id: hb.member_id.clone(),
                member_epoch: hb.member_epoch,
                heartbeat_interval_ms: 0,
                assignment: None,
            });
        }
        if !groups.contains_key(&hb.group_id) {
            if hb.member_epoch != 0 {
                return Err(ConsumerGroupError::UnknownMember(hb.member_id.clone()));
            }
            if groups.len() >= MAX_GROUPS {
                groups.retain(|_, g| !g.members.is_empty());
                if groups.len() >= MAX_GROUPS {
                    return Err(ConsumerGroupError::TooManyGroups(MAX_GROUPS));
                }
            }
            groups.insert(hb.group_id.clone(), Group::new(hb.group_id.clone()));
        }
        let group = groups.get_mut(&hb.group_id).expect("inserted above");
        group.heartbeat(hb, assignor, settings, now_ms, resolve)
    }

    /// The group as ConsumerGroupDescribe shows it, None if there is no such group.
    pub fn describe(&self, group: &str) -> Option<GroupDescription> {
        let groups = self.lock();
        let g = groups.get(group)?;
        let members = g
            .members
            .values()
            .map(|m| MemberDescription {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                member_epoch: m.progress.epoch,
                subscribed_topic_names: m.subscribed.iter().cloned().collect(),
                assignment: m.progress.assigned.clone(),
                target_assignment: g.target.get(&m.id).cloned().unwrap_or_default(),
            })
            .collect();
        Some(GroupDescription {
            state: g.state().name(),
            group_epoch: g.epoch,
            assignment_epoch: g.assignment_epoch,
            assignor: g.assignor.name(),
            members,
        })
    }

    /// Kafka's OffsetCommit (v9+) rules for consumer groups: a commit with a negative member
    /// epoch is allowed only while the group has no members (or does not exist); otherwise the
    /// member must exist (UNKNOWN_MEMBER_ID) and send its current epoch (STALE_MEMBER_EPOCH).
    pub fn validate_commit(&self, group: &str, member_id: &str, member_epoch: i32) -> Result<(), i16> {
        let groups = self.lock();
        let Some(g) = groups.get(group) else {
            return if member_epoch < 0 {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId.code())
            };
        };
        if member_epoch < 0 && g.members.is_empty() {
            return Ok(());
        }
        let member = g.members.get(member_id).ok_or(ResponseError::UnknownMemberId.code())?;
        if member.progress.epoch != member_epoch {
            return Err(ResponseError::StaleMemberEpoch.code());
        }
        Ok(())
    }

    /// Every group, for ListGroups (protocol type `consumer`).
    pub fn list(&self) -> Vec<GroupListing> {
        self.lock()
            .values()
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: "consumer".to_string(),
                state: g.state().name().to_string(),
            })
            .collect()
    }

    /// Whether the group has no members (or is not a KIP-848 group at all).
    pub fn is_empty_or_absent(&self, group: &str) -> bool {
        self.lock().get(group).is_none_or(|g| g.members.is_empty())
    }

    /// Whether a KIP-848 group with this id exists, with or without members.
    pub fn exists(&self, group: &str) -> bool {
        self.lock().contains_key(group)
    }

    /// Deletes a group without members: GROUP_ID_NOT_FOUND if absent, NON_EMPTY_GROUP if it has
    /// members.
    pub fn delete(&self, group: &str) -> Result<(), i16> {
        let mut groups = self.lock();
        match groups.get(group) {
            None => Err(ResponseError::GroupIdNotFound.code()),
            Some(g) if !g.members.is_empty() => Err(ResponseError::NonEmptyGroup.code()),
            Some(_) => {
                groups.remove(group);
                Ok(())
            }
        }
    }

    /// Removes members whose session expired or who did not revoke within their rebalance
    /// timeout, bumping their groups' epochs.
    pub fn tick(&self, now_ms: i64) {
        for group in self.lock().values_mut() {
            group.expire(now_ms);
        }
    }
}

/// Kafka's checks on a heartbeat before it touches any group; gives the named assignor.
fn validate(hb: &Heartbeat) -> Result<Option<ServerAssignor>, ConsumerGroupError> {
    let invalid = |why: &str| Err(ConsumerGroupError::InvalidRequest(why.to_string()));
    if hb.group_id.is_empty() {
        return invalid("the group id is empty");
    }
    if hb.instance_id.as_deref() == Some("") {
        return invalid("the instance id is empty");
    }
    if hb.rack_id.as_deref() == Some("") {
        return invalid("the rack id is empty");
    }
    let ids = [Some(&hb.member_id), hb.instance_id.as_ref(), hb.rack_id.as_ref()];
    if ids.into_iter().flatten().any(|id| id.len() > MAX_ID_BYTES) {
        return invalid("a member, instance or rack id is longer than 255 bytes");
    }
    if hb.member_id.is_empty() && (hb.version >= 1 || hb.member_epoch != 0) {
        return invalid("the member id is empty");
    }
    if let Some(names) = &hb.subscribed_topic_names {
        if names.len() > MAX_SUBSCRIBED_TOPICS {
            return invalid("more than 10000 subscribed topic names");
        }
        if names.iter().any(|n| n.len() > MAX_TOPIC_NAME_BYTES) {
            return invalid("a subscribed topic name is longer than 249 bytes");
        }
    }
    if hb.subscribed_topic_regex.is_some() {
        return invalid("Brook does not support subscribed_topic_regex; subscribe by topic names");
    }
    match hb.member_epoch {
        0 => {
            if hb.rebalance_timeout_ms == -1 {
                return invalid("the rebalance timeout must be given when joining");
            }
            if hb.owned.as_ref().is_none_or(|owned| !owned.is_empty()) {
                return invalid("owned topic partitions must be empty when joining");
            }
            if hb.subscribed_topic_names.is_none() {
                return invalid("subscribed topic names must be given when joining");
            }
        }
        STATIC_LEAVE_EPOCH if hb.instance_id.is_none() => {
            return invalid("a static member leaving must give its instance id");
        }
        e if e < STATIC_LEAVE_EPOCH => return invalid("the member epoch is negative"),
        _ => {}
    }
    match &hb.server_assignor {
        None => Ok(None),
        Some(name) => ServerAssignor::from_name(name)
            .map(Some)
            .ok_or_else(|| ConsumerGroupError::UnsupportedAssignor(name.clone())),
    }
}

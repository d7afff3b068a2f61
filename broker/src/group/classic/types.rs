//! The values the classic group state machine takes and gives: its states, limits, members,
//! requests, results and the effects that answer requests waiting elsewhere.

use bytes::Bytes;
use kafka_protocol::ResponseError;

/// A classic group's state, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members; the group may still have committed offsets.
    Empty,
    /// Members are (re)joining; the join phase ends when all have rejoined or the rebalance
    /// timeout passes.
    PreparingRebalance,
    /// The join phase is over; waiting for the leader's assignment in SyncGroup.
    CompletingRebalance,
    /// The leader's assignment is in force.
    Stable,
    /// The group was deleted.
    Dead,
}

impl GroupState {
    /// Kafka's name for the state, as ListGroups and DescribeGroups report it.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Whether Kafka allows a transition from `previous` to this state (GroupMetadata's
    /// `validPreviousStates`).
    pub fn may_follow(self, previous: GroupState) -> bool {
        use GroupState::*;
        match self {
            PreparingRebalance => matches!(previous, Stable | CompletingRebalance | Empty),
            CompletingRebalance => previous == PreparingRebalance,
            Stable => previous == CompletingRebalance,
            Empty => previous == PreparingRebalance,
            Dead => true,
        }
    }
}

/// Broker-wide bounds and delays of classic groups, from the broker config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `group.initial.rebalance.delay.ms`: how long an empty group's first rebalance waits.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i64,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i64,
    /// `group.max.size`: most members in one group.
    pub max_size: usize,
}

impl Default for Limits {
    /// Kafka's defaults.
    fn default() -> Self {
        Limits {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_size: i32::MAX as usize,
        }
    }
}

/// Most bytes of one protocol's metadata in JoinGroup, or of one member's assignment in
/// SyncGroup. Kafka has no such bound; a consumer's subscription or assignment of tens of
/// thousands of partitions stays well below it. Larger ones get INVALID_REQUEST.
pub const MAX_METADATA_BYTES: usize = 1 << 20;

/// Most protocols one member may offer in JoinGroup (Kafka has no bound; clients offer a few
/// assignors). More get INVALID_REQUEST.
pub const MAX_PROTOCOLS: usize = 64;

/// Most member ids handed out by MEMBER_ID_REQUIRED (KIP-394) and not yet used, per group. Kafka
/// has no bound; past this one the oldest pending id is forgotten (its holder gets
/// UNKNOWN_MEMBER_ID on rejoin and starts over).
pub const MAX_PENDING_MEMBERS: usize = 1000;

/// How long a member that joined during a rebalance may wait for the join phase to end before it
/// is expired, as Kafka's `NewMemberJoinTimeoutMs`.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;

/// One protocol (for consumers: an assignor) a member supports, with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// The protocol's name, e.g. "range" or "cooperative-sticky".
    pub name: String,
    /// Opaque metadata (for consumers: the subscription).
    pub metadata: Bytes,
}

/// A JoinGroup request, decoupled from the wire version.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    /// The member id; empty for a member joining for the first time.
    pub member_id: String,
    /// The static member's `group.instance.id` (KIP-345).
    pub instance_id: Option<String>,
    /// The client's `client.id`, the prefix of generated member ids.
    pub client_id: String,
    /// The client's address as Kafka shows it, e.g. "/127.0.0.1".
    pub client_host: String,
    /// The member is removed when it does not heartbeat for this long.
    pub session_timeout_ms: i32,
    /// How long the member may take to rejoin during a rebalance.
    pub rebalance_timeout_ms: i32,
    /// The protocol type, "consumer" for consumers.
    pub protocol_type: String,
    /// The protocols the member supports, most preferred first.
    pub protocols: Vec<Protocol>,
    /// Whether an unknown member must first get a member id (JoinGroup v4+, KIP-394).
    pub require_known_member_id: bool,
    /// Whether a static leader may be told to skip the assignment (JoinGroup v9+, KIP-814).
    pub supports_skip_assignment: bool,
}

/// A member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// The member id.
    pub member_id: String,
    /// Its `group.instance.id`.
    pub instance_id: Option<String>,
    /// Its metadata for the selected protocol.
    pub metadata: Bytes,
}

/// The answer to a JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinResult {
    /// The Kafka error code.
    pub error: i16,
    /// The generation the member joined, or -1.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// Whether the leader must not compute a new assignment (KIP-814).
    pub skip_assignment: bool,
    /// The member's id (also the id to rejoin with after MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// Every member with its metadata, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    /// An error answer naming `member_id`.
    pub fn error(error: ResponseError, member_id: &str) -> Self {
        JoinResult {
            error: error.code(),
            generation_id: -1,
            member_id: member_id.to_string(),
            ..JoinResult::default()
        }
    }
}

/// A SyncGroup request, decoupled from the wire version.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// The member id.
    pub member_id: String,
    /// The static member's `group.instance.id`.
    pub instance_id: Option<String>,
    /// The generation the member believes in.
    pub generation_id: i32,
    /// The protocol type the member expects (v5+).
    pub protocol_type: Option<String>,
    /// The protocol name the member expects (v5+).
    pub protocol_name: Option<String>,
    /// The leader's assignment: member id and its opaque assignment.
    pub assignments: Vec<(String, Bytes)>,
}

/// The answer to a SyncGroup request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncResult {
    /// The Kafka error code.
    pub error: i16,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

impl SyncResult {
    /// An error answer.
    pub fn error(error: ResponseError) -> Self {
        SyncResult {
            error: error.code(),
            ..SyncResult::default()
        }
    }
}

/// Whether a request is answered at once or waits for other members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// The answer is ready.
    Now(T),
    /// The requesting member, under this member id, waits; its answer comes later as an
    /// [`Effect`] (possibly among the effects of the same call).
    Wait(String),
}

/// An answer to a request that was waiting, produced by some later event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Answers the JoinGroup the member with this id is waiting on.
    Join(String, JoinResult),
    /// Answers the SyncGroup the member with this id is waiting on.
    Sync(String, SyncResult),
}

/// One member of a LeaveGroup request.
#[derive(Debug, Clone, Default)]
pub struct Leaving {
    /// The member id; may be empty when the instance id names a static member.
    pub member_id: String,
    /// The static member's `group.instance.id`.
    pub instance_id: Option<String>,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Kafka's state name.
    pub state: &'static str,
    /// The protocol type, empty if none.
    pub protocol_type: String,
    /// The selected protocol while Stable, else empty.
    pub protocol_data: String,
    /// The members.
    pub members: Vec<MemberDescription>,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id.
    pub member_id: String,
    /// Its `group.instance.id`.
    pub instance_id: Option<String>,
    /// Its `client.id`.
    pub client_id: String,
    /// Its address.
    pub client_host: String,
    /// Its metadata for the selected protocol (Stable only, else empty).
    pub metadata: Bytes,
    /// Its assignment (Stable only, else empty).
    pub assignment: Bytes,
}

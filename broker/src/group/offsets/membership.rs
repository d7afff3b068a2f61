//! How the offset APIs (OffsetCommit, TxnOffsetCommit, OffsetFetch, OffsetDelete) and offset
//! expiry see group membership: Kafka's rules for who may commit, asked of the classic and
//! KIP-848 engines.

use kafka_protocol::ResponseError;

use crate::group::GroupCoordinator;

/// Whether a group has no live member in either protocol: its offsets may expire and be deleted.
pub fn is_idle(groups: &GroupCoordinator, group: &str) -> bool {
    groups.classic.is_empty_or_absent(group) && groups.consumer.is_empty_or_absent(group)
}

/// Kafka's `validateOffsetCommit` for one OffsetCommit request. A generation (or member epoch)
/// below 0 commits as a "simple" client (admin tools, manual assignment), accepted while the
/// group has no live member. As Kafka routes by group type, a KIP-848 group checks the member
/// epoch, and only from v9 (an older version gets UNSUPPORTED_VERSION, as Kafka answers members
/// of the new protocol, unless the member is unknown); every other commit is checked by the
/// classic engine. For a group that does not exist the classic engine answers
/// ILLEGAL_GENERATION, Kafka's answer below v9 (v9 would say GROUP_ID_NOT_FOUND).
pub fn validate_commit(
    groups: &GroupCoordinator,
    group: &str,
    member_id: &str,
    generation_or_epoch: i32,
    group_instance_id: Option<&str>,
    version: i16,
) -> Result<(), i16> {
    if generation_or_epoch < 0 && is_idle(groups, group) {
        return Ok(());
    }
    if groups.consumer.exists(group) {
        let outcome = groups.consumer.validate_commit(group, member_id, generation_or_epoch);
        if version >= 9 {
            return outcome;
        }
        return match outcome {
            Err(code) if code == ResponseError::UnknownMemberId.code() => Err(code),
            _ => Err(ResponseError::UnsupportedVersion.code()),
        };
    }
    groups
        .classic
        .validate_commit(group, member_id, generation_or_epoch, group_instance_id)
}

/// Kafka's `validateOffsetFetch` (OffsetFetch v9): a request naming a member of a KIP-848 group
/// must carry its current epoch; requests with neither member id nor epoch (admin tools, classic
/// clients) are always answered.
pub fn validate_fetch(
    groups: &GroupCoordinator,
    group: &str,
    member_id: Option<&str>,
    member_epoch: i32,
) -> Result<(), i16> {
    if (member_id.is_none() && member_epoch < 0) || !groups.consumer.exists(group) {
        return Ok(());
    }
    groups
        .consumer
        .validate_commit(group, member_id.unwrap_or_default(), member_epoch)
}

/// Kafka's `validateOffsetCommit` for TxnOffsetCommit. A commit without member id, generation
/// and instance id (v0-2, or the producer API without group metadata) is accepted whatever the
/// group's state, unlike a plain commit; one that names a member must come from the current
/// member and generation. A KIP-848 member's stale epoch is ILLEGAL_GENERATION here, as Kafka
/// answers transactional commits.
pub fn validate_txn_commit(
    groups: &GroupCoordinator,
    group: &str,
    member_id: &str,
    generation_id: i32,
    group_instance_id: Option<&str>,
) -> Result<(), i16> {
    if generation_id < 0 && member_id.is_empty() && group_instance_id.is_none() {
        return Ok(());
    }
    if groups.consumer.exists(group) {
        return groups
            .consumer
            .validate_commit(group, member_id, generation_id)
            .map_err(|code| {
                if code == ResponseError::StaleMemberEpoch.code() {
                    ResponseError::IllegalGeneration.code()
                } else {
                    code
                }
            });
    }
    // A group without members has no member to match.
    if groups.classic.is_empty_or_absent(group) {
        return Err(ResponseError::UnknownMemberId.code());
    }
    groups
        .classic
        .validate_commit(group, member_id, generation_id, group_instance_id)
}

//! What the rest of the broker reads from a classic group: whether an offset commit may proceed
//! (Kafka's OffsetCommit membership checks) and the group as DescribeGroups shows it.

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::member::Member;
use super::state::Group;
use super::types::*;

fn code(e: ResponseError) -> i16 {
    e.code()
}

impl Group {
    /// Kafka's OffsetCommit checks for a group member (see `ClassicGroups::validate_commit`).
    pub fn validate_commit(&self, member_id: &str, generation_id: i32, instance_id: Option<&str>) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(code(ResponseError::CoordinatorNotAvailable));
        }
        if generation_id < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.validate_member(member_id, instance_id).map_err(code)?;
            if generation_id != self.generation_id {
                return Err(code(ResponseError::IllegalGeneration));
            }
        } else if self.state != GroupState::Empty {
            // The commit comes from outside the group while the group has members.
            return Err(code(ResponseError::UnknownMemberId));
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(code(ResponseError::RebalanceInProgress));
        }
        Ok(())
    }

    /// The group as DescribeGroups shows it: member metadata and assignments only when Stable.
    pub fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.seq);
        GroupDescription {
            state: self.state.name(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable { protocol.clone() } else { String::new() },
            members: members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable { m.assignment.clone() } else { Bytes::new() },
                })
                .collect(),
        }
    }
}

//! The consumer protocol's bytes inside JoinGroup and SyncGroup (ConsumerProtocolSubscription and
//! ConsumerProtocolAssignment v0-v3): an int16 version, then the schema's fields, as Java's
//! `ConsumerProtocol` writes them. A newer version than we know is read with our highest version,
//! as Java does: those schemas only append fields.
//!
//! The `kafka-protocol` crate has both schemas (without the version prefix), so the fields go
//! through it; the golden-byte tests below are written by hand from the JSON schemas.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::error::{Error, Result};

/// The highest version of both schemas this client knows and writes, as Java's client does.
pub(crate) const HIGHEST_VERSION: i16 = 3;
/// The largest member metadata or assignment accepted for decoding.
pub(crate) const MAX_PROTOCOL_BYTES: usize = 1024 * 1024;

/// A topic and partition.
pub type TopicPartition = (String, i32);

/// What a member of a classic consumer group tells the leader in JoinGroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// The topics the member wants to consume.
    pub topics: Vec<String>,
    /// Opaque assignor data.
    pub user_data: Option<Bytes>,
    /// The partitions the member owns now (v1+; cooperative rebalancing relies on it).
    pub owned: Vec<TopicPartition>,
    /// The generation in which the member owned them (v2+), -1 when unknown.
    pub generation_id: i32,
    /// The member's rack (v3+).
    pub rack_id: Option<String>,
}

/// What the leader gives a member in SyncGroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MemberAssignment {
    /// The assigned partitions.
    pub partitions: Vec<TopicPartition>,
    /// Opaque assignor data.
    pub user_data: Option<Bytes>,
}

/// Groups partitions by topic, both sorted, as the schemas' nested arrays want them.
fn by_topic(partitions: &[TopicPartition]) -> BTreeMap<&str, Vec<i32>> {
    let mut out: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        out.entry(topic.as_str()).or_default().push(*partition);
    }
    for list in out.values_mut() {
        list.sort_unstable();
        list.dedup();
    }
    out
}

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn encode_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::MalformedRequest(format!("cannot encode {what}: {e}"))
}

fn decode_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Remote {
        code: 2,
        message: format!("CorruptMessage: cannot decode {what}: {e}"),
    }
}

/// Reads the version prefix, refusing oversize input, and picks the version to read the rest with.
fn read_version(bytes: &mut Bytes, what: &str) -> Result<i16> {
    if bytes.len() > MAX_PROTOCOL_BYTES {
        return Err(decode_error(
            what,
            format!("{} bytes exceed the limit of {MAX_PROTOCOL_BYTES}", bytes.len()),
        ));
    }
    if bytes.len() < 2 {
        return Err(decode_error(what, "shorter than its version"));
    }
    let version = bytes.get_i16();
    if version < 0 {
        return Err(decode_error(what, format!("version {version}")));
    }
    Ok(version.min(HIGHEST_VERSION))
}

/// Encodes a subscription at `version` (0..=3).
pub(crate) fn encode_subscription(subscription: &Subscription, version: i16) -> Result<Bytes> {
    let mut message = ConsumerProtocolSubscription::default();
    message.topics = subscription.topics.iter().map(|t| name(t)).collect();
    message.user_data = subscription.user_data.clone();
    if version >= 1 {
        message.owned_partitions = by_topic(&subscription.owned)
            .into_iter()
            .map(|(topic, partitions)| {
                let mut owned = OwnedTopic::default();
                owned.topic = TopicName(name(topic));
                owned.partitions = partitions;
                owned
            })
            .collect();
    }
    message.generation_id = subscription.generation_id;
    message.rack_id = subscription.rack_id.as_deref().map(name);
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(version);
    message
        .encode(&mut buf, version)
        .map_err(|e| encode_error("consumer protocol subscription", e))?;
    Ok(buf.freeze())
}

/// Decodes a subscription; a version above 3 is read as v3.
pub(crate) fn decode_subscription(mut bytes: Bytes) -> Result<Subscription> {
    const WHAT: &str = "consumer protocol subscription";
    let version = read_version(&mut bytes, WHAT)?;
    let message = ConsumerProtocolSubscription::decode(&mut bytes, version).map_err(|e| decode_error(WHAT, e))?;
    let mut owned = Vec::new();
    for topic in message.owned_partitions {
        for partition in topic.partitions {
            owned.push((topic.topic.0.to_string(), partition));
        }
    }
    Ok(Subscription {
        topics: message.topics.iter().map(|t| t.to_string()).collect(),
        user_data: message.user_data,
        owned,
        generation_id: if version >= 2 { message.generation_id } else { -1 },
        rack_id: message.rack_id.map(|r| r.to_string()),
    })
}

/// Encodes an assignment at `version` (0..=3; the fields are the same in all of them).
pub(crate) fn encode_assignment(assignment: &MemberAssignment, version: i16) -> Result<Bytes> {
    let mut message = ConsumerProtocolAssignment::default();
    message.assigned_partitions = by_topic(&assignment.partitions)
        .into_iter()
        .map(|(topic, partitions)| {
            let mut assigned = AssignedTopic::default();
            assigned.topic = TopicName(name(topic));
            assigned.partitions = partitions;
            assigned
        })
        .collect();
    message.user_data = assignment.user_data.clone();
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(version);
    message
        .encode(&mut buf, version)
        .map_err(|e| encode_error("consumer protocol assignment", e))?;
    Ok(buf.freeze())
}

/// Decodes an assignment; empty bytes (a member the leader gave nothing) are an empty assignment.
pub(crate) fn decode_assignment(mut bytes: Bytes) -> Result<MemberAssignment> {
    const WHAT: &str = "consumer protocol assignment";
    if bytes.is_empty() {
        return Ok(MemberAssignment::default());
    }
    let version = read_version(&mut bytes, WHAT)?;
    let message = ConsumerProtocolAssignment::decode(&mut bytes, version).map_err(|e| decode_error(WHAT, e))?;
    let mut partitions = Vec::new();
    for topic in message.assigned_partitions {
        for partition in topic.partitions {
            partitions.push((topic.topic.0.to_string(), partition));
        }
    }
    Ok(MemberAssignment {
        partitions,
        user_data: message.user_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        (t.to_string(), p)
    }

    /// Golden bytes written by hand from ConsumerProtocolSubscription.json: version int16, topics
    /// []string, user_data nullable bytes, owned []{topic string, partitions []int32} (v1+),
    /// generation_id int32 (v2+), rack_id nullable string (v3+). Not flexible in any version.
    #[test]
    fn subscription_golden_bytes_for_every_version() {
        let subscription = Subscription {
            topics: vec!["ab".into(), "c".into()],
            user_data: None,
            owned: vec![tp("ab", 1), tp("ab", 0)],
            generation_id: 7,
            rack_id: Some("r".into()),
        };
        let v0: &[u8] = &[
            0, 0, // version 0
            0, 0, 0, 2, 0, 2, b'a', b'b', 0, 1, b'c', // topics
            0xff, 0xff, 0xff, 0xff, // user_data null
        ];
        let owned: &[u8] = &[0, 0, 0, 1, 0, 2, b'a', b'b', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1];
        let mut v1 = v0.to_vec();
        v1[1] = 1;
        v1.extend_from_slice(owned);
        let mut v2 = v1.clone();
        v2[1] = 2;
        v2.extend_from_slice(&[0, 0, 0, 7]);
        let mut v3 = v2.clone();
        v3[1] = 3;
        v3.extend_from_slice(&[0, 1, b'r']);
        for (version, golden) in [(0, v0.to_vec()), (1, v1), (2, v2), (3, v3)] {
            let encoded = encode_subscription(&subscription, version).unwrap();
            assert_eq!(&encoded[..], &golden[..], "v{version}");
            let decoded = decode_subscription(Bytes::from(golden)).unwrap();
            assert_eq!(decoded.topics, subscription.topics);
            if version >= 1 {
                assert_eq!(decoded.owned, vec![tp("ab", 0), tp("ab", 1)]);
            }
            assert_eq!(decoded.generation_id, if version >= 2 { 7 } else { -1 });
            assert_eq!(decoded.rack_id.is_some(), version >= 3);
        }
    }

    #[test]
    fn a_newer_subscription_version_is_read_with_the_highest_known() {
        let mut bytes = encode_subscription(&Subscription::default(), 3).unwrap().to_vec();
        bytes[1] = 9;
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        let decoded = decode_subscription(Bytes::from(bytes)).unwrap();
        assert!(decoded.topics.is_empty());
    }

    /// Golden bytes from ConsumerProtocolAssignment.json: version int16, assigned
    /// []{topic string, partitions []int32}, user_data nullable bytes; the same in v0-v3.
    #[test]
    fn assignment_golden_bytes() {
        let assignment = MemberAssignment {
            partitions: vec![tp("t", 2), tp("t", 0), tp("u", 5)],
            user_data: Some(Bytes::from_static(b"x")),
        };
        let golden: &[u8] = &[
            0, 3, // version 3
            0, 0, 0, 2, // two topics
            0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, // t: [0, 2]
            0, 1, b'u', 0, 0, 0, 1, 0, 0, 0, 5, // u: [5]
            0, 0, 0, 1, b'x', // user_data
        ];
        assert_eq!(&encode_assignment(&assignment, 3).unwrap()[..], golden);
        let decoded = decode_assignment(Bytes::from_static(golden)).unwrap();
        assert_eq!(decoded.partitions, vec![tp("t", 0), tp("t", 2), tp("u", 5)]);
        assert_eq!(decoded.user_data.as_deref(), Some(&b"x"[..]));
        let mut v0 = golden.to_vec();
        v0[1] = 0;
        assert_eq!(&encode_assignment(&assignment, 0).unwrap()[..], &v0[..]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(decode_assignment(Bytes::new()).unwrap().partitions.is_empty());
        assert!(decode_assignment(Bytes::from_static(&[0])).is_err());
        assert!(decode_subscription(Bytes::from_static(&[0xff, 0xff])).is_err());
        assert!(decode_subscription(Bytes::from_static(&[0, 0, 0x7f, 0xff, 0xff, 0xff])).is_err());
        assert!(decode_assignment(Bytes::from(vec![0u8; MAX_PROTOCOL_BYTES + 1])).is_err());
    }
}

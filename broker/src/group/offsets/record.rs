//! The records of `__consumer_offsets` in Kafka's own schemas (OffsetCommitKey, OffsetCommitValue),
//! so that Kafka tooling can read Brook's offsets topic, and the group-to-partition mapping Kafka uses.
//!
//! Every key and value starts with a big-endian int16 version. Keys: versions 0 and 1 are
//! OffsetCommitKey (group string, topic string, partition int32); version 2 is GroupMetadataKey and
//! later versions are KIP-848 records, which this module reports as [`Key::Other`]. Values of
//! OffsetCommitValue: v0 and v2 (offset, metadata, commitTimestamp), v1 (plus expireTimestamp), v3
//! (offset, leaderEpoch, metadata, commitTimestamp), v4 (v3 in the flexible encoding). Brook writes
//! key version 1 and value version 3, or value version 1 when the commit carries an expiry, as Kafka.

use bytes::{BufMut, Bytes, BytesMut};

pub use super::internal_topic::MAX_STRING_BYTES;
use super::internal_topic::{put_string, Reader};
use crate::error::{Error, Result};

/// Key version Brook writes for an OffsetCommitKey (Kafka's record type id).
pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// Value version Brook writes for a commit without an explicit expiry.
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// Value version Brook writes for a commit with an expiry (OffsetCommit v2-4 `retention_time_ms`).
pub const OFFSET_COMMIT_VALUE_EXPIRING_VERSION: i16 = 1;

/// The key of one `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// An OffsetCommitKey: the committed offset of one group for one partition.
    Offset {
        /// The consumer group id.
        group: String,
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
    },
    /// Any other record type (group metadata, KIP-848 records): not an offset.
    Other(i16),
}

/// An OffsetCommitValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The committed offset.
    pub offset: i64,
    /// The leader epoch of the last consumed record, or -1 when unknown.
    pub leader_epoch: i32,
    /// The client's metadata string ("" when none).
    pub metadata: String,
    /// When the commit was made, in milliseconds since the epoch.
    pub commit_timestamp_ms: i64,
    /// An explicit expiry time (OffsetCommit v2-4 `retention_time_ms`), if any.
    pub expire_timestamp_ms: Option<i64>,
}

/// Kafka's group-to-partition mapping: `Utils.abs(groupId.hashCode()) % partitions`, where
/// `hashCode` is Java's `String.hashCode` over UTF-16 code units and `Utils.abs` maps
/// `Integer.MIN_VALUE` to 0. `partitions` must be at least 1.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = java_string_hash(group);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// Java's `String.hashCode`: `h = 31 * h + c` over UTF-16 code units, wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32))
}

/// Encodes an OffsetCommitKey (version 1). Strings longer than [`MAX_STRING_BYTES`] are refused.
pub fn encode_offset_key(group: &str, topic: &str, partition: i32) -> Result<Bytes> {
    let mut out = BytesMut::with_capacity(2 + 2 + group.len() + 2 + topic.len() + 4);
    out.put_i16(OFFSET_COMMIT_KEY_VERSION);
    put_string(&mut out, "group id", group)?;
    put_string(&mut out, "topic name", topic)?;
    out.put_i32(partition);
    Ok(out.freeze())
}

/// Encodes an OffsetCommitValue: version 3, or version 1 when it has an expiry.
pub fn encode_offset_value(value: &OffsetValue) -> Result<Bytes> {
    let mut out = BytesMut::with_capacity(2 + 8 + 4 + 2 + value.metadata.len() + 8 + 8);
    match value.expire_timestamp_ms {
        None => {
            out.put_i16(OFFSET_COMMIT_VALUE_VERSION);
            out.put_i64(value.offset);
            out.put_i32(value.leader_epoch);
            put_string(&mut out, "offset metadata", &value.metadata)?;
            out.put_i64(value.commit_timestamp_ms);
        }
        Some(expire) => {
            out.put_i16(OFFSET_COMMIT_VALUE_EXPIRING_VERSION);
            out.put_i64(value.offset);
            put_string(&mut out, "offset metadata", &value.metadata)?;
            out.put_i64(value.commit_timestamp_ms);
            out.put_i64(expire);
        }
    }
    Ok(out.freeze())
}

/// Decodes a record key; unknown versions are [`Key::Other`], truncated ones an error.
pub fn decode_key(bytes: &[u8]) -> Result<Key> {
    let mut r = Reader::new(bytes, "__consumer_offsets record key");
    let version = r.i16()?;
    match version {
        0 | 1 => {
            let group = r.string()?;
            let topic = r.string()?;
            let partition = r.i32()?;
            Ok(Key::Offset {
                group,
                topic,
                partition,
            })
        }
        other => Ok(Key::Other(other)),
    }
}

/// Decodes an OffsetCommitValue of any version Kafka has written (0 to 4).
pub fn decode_offset_value(bytes: &[u8]) -> Result<OffsetValue> {
    let mut r = Reader::new(bytes, "__consumer_offsets record value");
    let version = r.i16()?;
    let offset = r.i64()?;
    let (leader_epoch, metadata, commit_timestamp_ms, expire_timestamp_ms) = match version {
        0 | 2 => (-1, r.string()?, r.i64()?, None),
        1 => {
            let metadata = r.string()?;
            let commit = r.i64()?;
            let expire = r.i64()?;
            (-1, metadata, commit, (expire >= 0).then_some(expire))
        }
        3 => (r.i32()?, r.string()?, r.i64()?, None),
        4 => {
            let epoch = r.i32()?;
            let metadata = r.compact_string()?;
            let commit = r.i64()?;
            r.skip_tagged_fields()?;
            (epoch, metadata, commit, None)
        }
        other => {
            return Err(Error::CorruptBatch(format!(
                "offset commit value version {other} is not one Kafka has defined"
            )))
        }
    };
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_key_golden_bytes() {
        let bytes = encode_offset_key("g1", "t", 7).unwrap();
        let expected: &[u8] = &[
            0x00, 0x01, // version 1
            0x00, 0x02, b'g', b'1', // group
            0x00, 0x01, b't', // topic
            0x00, 0x00, 0x00, 0x07, // partition
        ];
        assert_eq!(&bytes[..], expected);
        assert_eq!(
            decode_key(expected).unwrap(),
            Key::Offset {
                group: "g1".into(),
                topic: "t".into(),
                partition: 7
            }
        );
        // Version 0 has the same layout; version 2 (GroupMetadataKey) is not an offset.
        let mut v0 = expected.to_vec();
        v0[1] = 0;
        assert!(matches!(decode_key(&v0).unwrap(), Key::Offset { partition: 7, .. }));
        assert_eq!(decode_key(&[0x00, 0x02, 0x00, 0x01, b'g']).unwrap(), Key::Other(2));
    }

    #[test]
    fn offset_value_golden_bytes() {
        let value = OffsetValue {
            offset: 42,
            leader_epoch: 5,
            metadata: "m".into(),
            commit_timestamp_ms: 0x0102,
            expire_timestamp_ms: None,
        };
        let expected: &[u8] = &[
            0x00, 0x03, // version 3
            0, 0, 0, 0, 0, 0, 0, 42, // offset
            0, 0, 0, 5, // leader epoch
            0x00, 0x01, b'm', // metadata
            0, 0, 0, 0, 0, 0, 0x01, 0x02, // commit timestamp
        ];
        assert_eq!(&encode_offset_value(&value).unwrap()[..], expected);
        assert_eq!(decode_offset_value(expected).unwrap(), value);
    }

    #[test]
    fn expiring_values_use_version_1() {
        let value = OffsetValue {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 10,
            expire_timestamp_ms: Some(20),
        };
        let expected: &[u8] = &[
            0x00, 0x01, // version 1
            0, 0, 0, 0, 0, 0, 0, 1, // offset
            0x00, 0x00, // metadata ""
            0, 0, 0, 0, 0, 0, 0, 10, // commit timestamp
            0, 0, 0, 0, 0, 0, 0, 20, // expire timestamp
        ];
        assert_eq!(&encode_offset_value(&value).unwrap()[..], expected);
        assert_eq!(decode_offset_value(expected).unwrap(), value);
    }

    #[test]
    fn older_and_flexible_value_versions_decode() {
        let v0: &[u8] = &[0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
        let d = decode_offset_value(v0).unwrap();
        assert_eq!(
            (d.offset, d.leader_epoch, d.metadata.as_str(), d.commit_timestamp_ms),
            (9, -1, "", 3)
        );
        // Version 4: offset, epoch, compact string "ab", timestamp, one tagged field of 2 bytes.
        let v4: &[u8] = &[
            0, 4, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 2, 3, b'a', b'b', 0, 0, 0, 0, 0, 0, 0, 6, 1, 0, 2, 0xaa, 0xbb,
        ];
        let d = decode_offset_value(v4).unwrap();
        assert_eq!(
            (d.offset, d.leader_epoch, d.metadata.as_str(), d.commit_timestamp_ms),
            (8, 2, "ab", 6)
        );
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let good = encode_offset_value(&OffsetValue {
            offset: 1,
            leader_epoch: 1,
            metadata: "meta".into(),
            commit_timestamp_ms: 1,
            expire_timestamp_ms: None,
        })
        .unwrap();
        for cut in 0..good.len() {
            assert!(decode_offset_value(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_offset_value(&[0, 9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(decode_key(&[0, 1, 0xff, 0xff]).is_err());
        assert!(decode_key(&[0]).is_err());
        assert!(encode_offset_key(&"g".repeat(MAX_STRING_BYTES + 1), "t", 0).is_err());
    }

    #[test]
    fn partitions_match_kafka_for_known_group_names() {
        // Expected values computed with Java's String.hashCode semantics (UTF-16 code units).
        for (group, hash, partition) in [
            ("", 0, 0),
            ("my-group", -1_906_497_762, 12),
            ("console-consumer-12345", 158_455_506, 6),
            ("group-1", 293_427_299, 49),
            ("ü-gruppe", 1_147_213_612, 12),
            ("😀", 1_772_899, 49),
            // The classic string whose hashCode is Integer.MIN_VALUE: Utils.abs maps it to 0.
            ("polygenelubricants", i32::MIN, 0),
        ] {
            assert_eq!(java_string_hash(group), hash, "{group:?}");
            assert_eq!(partition_for(group, 50), partition, "{group:?}");
        }
    }
}

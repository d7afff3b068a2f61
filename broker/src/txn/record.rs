//! The records of `__transaction_state` in Kafka's own schemas (TransactionLogKey,
//! TransactionLogValue), so that Kafka tooling can read Brook's transaction log and Brook can
//! read one Kafka wrote.
//!
//! Key: int16 record type 0 (TransactionLog), then the transactional id as an int16-length
//! string. Value version 0: producer_id int64, producer_epoch int16, transaction_timeout_ms int32,
//! transaction_status int8, transaction_partitions (nullable array of topic string and int32
//! array of partition ids), transaction_last_update_timestamp_ms int64,
//! transaction_start_timestamp_ms int64. Version 1 is the same fields in the flexible encoding
//! with tagged fields (previous and next producer id, client transaction version), which Brook
//! reads but does not write. A null value is a tombstone: the transactional id expired.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};

use super::state::{TopicPartition, TxnMetadata, TxnState, NO_PRODUCER_EPOCH, NO_PRODUCER_ID};
use crate::error::{Error, Result};
pub use crate::group::offsets::internal_topic::MAX_STRING_BYTES;
use crate::group::offsets::internal_topic::{put_string, Reader};

/// The key's record type (Kafka's CoordinatorRecordType for TransactionLog).
pub const KEY_VERSION: i16 = 0;
/// The value version Brook writes (Kafka's, while transactions V2 is off).
pub const VALUE_VERSION: i16 = 0;
/// What the reader's errors name.
const RECORD: &str = "__transaction_state record";

/// Encodes a TransactionLogKey.
pub fn encode_key(transactional_id: &str) -> Result<Bytes> {
    let mut out = BytesMut::with_capacity(4 + transactional_id.len());
    out.put_i16(KEY_VERSION);
    put_string(&mut out, "transactional id", transactional_id)?;
    Ok(out.freeze())
}

/// Decodes a TransactionLogKey; None for another record type, an error when truncated.
pub fn decode_key(bytes: &[u8]) -> Result<Option<String>> {
    let mut r = Reader::new(bytes, RECORD);
    if r.i16()? != KEY_VERSION {
        return Ok(None);
    }
    Ok(Some(r.string()?))
}

/// Encodes a TransactionLogValue (version 0). Partitions are written as a null array in Empty,
/// as Kafka writes them.
pub fn encode_value(meta: &TxnMetadata) -> Result<Bytes> {
    let mut out = BytesMut::with_capacity(64 + meta.partitions.len() * 8);
    out.put_i16(VALUE_VERSION);
    out.put_i64(meta.producer_id);
    out.put_i16(meta.producer_epoch);
    out.put_i32(meta.timeout_ms);
    out.put_i8(meta.state.id());
    if meta.state == TxnState::Empty {
        out.put_i32(-1);
    } else {
        let topics = by_topic(&meta.partitions);
        out.put_i32(topics.len() as i32);
        for (topic, partitions) in topics {
            put_string(&mut out, "topic name", topic)?;
            out.put_i32(partitions.len() as i32);
            for p in partitions {
                out.put_i32(p);
            }
        }
    }
    out.put_i64(meta.update_ms);
    out.put_i64(meta.start_ms);
    Ok(out.freeze())
}

/// Decodes a TransactionLogValue of version 0 or 1.
pub fn decode_value(bytes: &[u8]) -> Result<TxnMetadata> {
    let mut r = Reader::new(bytes, RECORD);
    let version = r.i16()?;
    let flexible = match version {
        0 => false,
        1 => true,
        other => return Err(corrupt(format!("value version {other} is not one Kafka has defined"))),
    };
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let status = r.i8()?;
    let state = TxnState::from_id(status)
        .ok_or_else(|| corrupt(format!("transaction status {status} is not a state Kafka persists")))?;
    let mut partitions = BTreeSet::new();
    let topics = if flexible { r.compact_len()? } else { r.len32()? };
    for _ in 0..topics.unwrap_or(0) {
        let topic = if flexible { r.compact_string()? } else { r.string()? };
        let count = if flexible { r.compact_len()? } else { r.len32()? };
        for _ in 0..count.unwrap_or(0) {
            partitions.insert((topic.clone(), r.i32()?));
        }
        if flexible {
            r.skip_tagged_fields()?;
        }
    }
    let update_ms = r.i64()?;
    let start_ms = r.i64()?;
    let mut last_producer_id = NO_PRODUCER_ID;
    if flexible {
        // Tag 0 is the previous producer id; the others (next producer id, client transaction
        // version) only matter to transactions V2.
        for (tag, data) in r.tagged_fields()? {
            if tag == 0 && data.len() == 8 {
                last_producer_id = i64::from_be_bytes(data.try_into().unwrap_or([0xff; 8]));
            }
        }
    }
    if state == TxnState::Empty {
        partitions.clear();
    }
    Ok(TxnMetadata {
        producer_id,
        last_producer_id,
        producer_epoch,
        last_producer_epoch: NO_PRODUCER_EPOCH,
        timeout_ms,
        state,
        partitions,
        start_ms,
        update_ms,
    })
}

/// Partitions grouped by topic, in order.
fn by_topic(partitions: &BTreeSet<TopicPartition>) -> Vec<(&str, Vec<i32>)> {
    let mut out: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, p) in partitions {
        match out.last_mut() {
            Some((t, ps)) if *t == topic.as_str() => ps.push(*p),
            _ => out.push((topic.as_str(), vec![*p])),
        }
    }
    out
}

fn corrupt(reason: String) -> Error {
    Error::CorruptBatch(format!("{RECORD}: {reason}"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn meta(state: TxnState, partitions: &[(&str, i32)]) -> TxnMetadata {
        TxnMetadata {
            producer_id: 7,
            last_producer_id: NO_PRODUCER_ID,
            producer_epoch: 3,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: 60_000,
            state,
            partitions: partitions.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
            start_ms: 100,
            update_ms: 200,
        }
    }

    #[test]
    fn key_golden_bytes() {
        let bytes = encode_key("tx").unwrap();
        assert_eq!(&bytes[..], &[0, 0, 0, 2, b't', b'x']);
        assert_eq!(decode_key(&bytes).unwrap().as_deref(), Some("tx"));
        assert_eq!(decode_key(&[0, 1, 0, 0]).unwrap(), None);
        assert!(decode_key(&[0, 0, 0, 5, b'a']).is_err());
    }

    #[test]
    fn value_golden_bytes() {
        let m = meta(TxnState::Ongoing, &[("b", 1), ("a", 0), ("b", 0)]);
        let expected: &[u8] = &[
            0, 0, // version 0
            0, 0, 0, 0, 0, 0, 0, 7, // producer id
            0, 3, // epoch
            0, 0, 0xea, 0x60, // timeout 60000
            1,    // Ongoing
            0, 0, 0, 2, // two topics
            0, 1, b'a', 0, 0, 0, 1, 0, 0, 0, 0, // a: [0]
            0, 1, b'b', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, // b: [0, 1]
            0, 0, 0, 0, 0, 0, 0, 200, // last update
            0, 0, 0, 0, 0, 0, 0, 100, // start
        ];
        assert_eq!(&encode_value(&m).unwrap()[..], expected);
        assert_eq!(decode_value(expected).unwrap(), m);
        // Empty writes a null partition array.
        let empty = encode_value(&meta(TxnState::Empty, &[])).unwrap();
        assert_eq!(&empty[17..21], &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decode_value(&empty).unwrap(), meta(TxnState::Empty, &[]));
    }

    #[test]
    fn flexible_version_1_decodes_with_its_tagged_fields() {
        let mut v1 = vec![0, 1];
        v1.extend_from_slice(&9i64.to_be_bytes());
        v1.extend_from_slice(&2i16.to_be_bytes());
        v1.extend_from_slice(&1000i32.to_be_bytes());
        v1.push(2); // PrepareCommit
        v1.push(2); // one topic (compact length + 1)
        v1.extend_from_slice(&[2, b't']); // compact string "t"
        v1.push(2); // one partition
        v1.extend_from_slice(&4i32.to_be_bytes());
        v1.push(0); // no tagged fields in the topic entry
        v1.extend_from_slice(&5i64.to_be_bytes());
        v1.extend_from_slice(&6i64.to_be_bytes());
        v1.push(2); // two tagged fields
        v1.extend_from_slice(&[0, 8]);
        v1.extend_from_slice(&8i64.to_be_bytes());
        v1.extend_from_slice(&[2, 2, 0, 2]);
        let m = decode_value(&v1).unwrap();
        assert_eq!(
            (
                m.producer_id,
                m.producer_epoch,
                m.timeout_ms,
                m.state,
                m.update_ms,
                m.start_ms
            ),
            (9, 2, 1000, TxnState::PrepareCommit, 5, 6)
        );
        assert_eq!(m.last_producer_id, 8);
        assert_eq!(m.partitions, BTreeSet::from([("t".to_string(), 4)]));
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let good = encode_value(&meta(TxnState::PrepareAbort, &[("t", 1)])).unwrap();
        for cut in 0..good.len() {
            assert!(decode_value(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut fence = good.to_vec();
        fence[16] = 7; // PrepareEpochFence is never persisted
        assert!(decode_value(&fence).is_err());
        let mut huge = good.to_vec();
        huge[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_value(&huge).is_err());
        assert!(decode_value(&[0, 2]).is_err());
    }

    fn any_state() -> impl Strategy<Value = TxnState> {
        prop::sample::select(TxnState::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn values_round_trip(
            state in any_state(),
            producer_id in any::<i64>(),
            epoch in any::<i16>(),
            timeout_ms in any::<i32>(),
            parts in proptest::collection::btree_set(("[a-z]{1,4}", 0i32..8), 0..6),
            start_ms in any::<i64>(),
            update_ms in any::<i64>(),
        ) {
            let m = TxnMetadata {
                producer_id,
                last_producer_id: NO_PRODUCER_ID,
                producer_epoch: epoch,
                last_producer_epoch: NO_PRODUCER_EPOCH,
                timeout_ms,
                state,
                partitions: if state == TxnState::Empty { BTreeSet::new() } else { parts },
                start_ms,
                update_ms,
            };
            prop_assert_eq!(decode_value(&encode_value(&m).unwrap()).unwrap(), m);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_value(&bytes);
            let _ = decode_key(&bytes);
        }
    }
}

//! Turns the record bytes of one partition in a Fetch response into consumer records: complete
//! batches only, control batches and aborted transactions skipped, records below the fetch offset dropped.

use std::collections::HashSet;

use bytes::Bytes;

use super::consumer::{ConsumerRecord, TimestampType};
use crate::error::{Error, Result};
use crate::log::batch::{decode_records, BatchHeader, HEADER_BYTES};

/// The records decoded from one partition's fetched bytes, and the offset to fetch next.
pub(crate) struct DecodedPartition {
    /// Records at or after the fetch offset, in offset order.
    pub(crate) records: Vec<ConsumerRecord>,
    /// The offset after the last complete batch seen (the fetch offset when there was none).
    pub(crate) next_offset: i64,
}

/// Decodes the record batches fetched for one partition.
///
/// `aborted` lists `(producer_id, first_offset)` of aborted transactions (read_committed only).
pub(crate) fn decode_partition(
    topic: &str,
    partition: i32,
    data: &Bytes,
    fetch_offset: i64,
    aborted: &[(i64, i64)],
    max_decompressed_bytes: usize,
) -> Result<DecodedPartition> {
    let mut records = Vec::new();
    let mut next_offset = fetch_offset;
    let mut aborted: Vec<(i64, i64)> = aborted.to_vec();
    aborted.sort_unstable_by_key(|(_, first)| *first);
    let mut aborted = aborted.into_iter().peekable();
    let mut aborting: HashSet<i64> = HashSet::new();
    let mut at = 0;
    while data.len() - at >= HEADER_BYTES {
        let header = BatchHeader::parse(&data[at..])?;
        let total = header.total_bytes();
        if total < HEADER_BYTES {
            return Err(Error::CorruptBatch(format!(
                "batch at offset {} claims {total} bytes",
                header.base_offset
            )));
        }
        if total > data.len() - at {
            // A fetch response may end with a partial batch: the next fetch starts at it.
            break;
        }
        let batch = &data[at..at + total];
        at += total;
        while let Some((producer_id, _)) = aborted.next_if(|(_, first)| *first <= header.last_offset()) {
            aborting.insert(producer_id);
        }
        if header.last_offset() < fetch_offset {
            continue;
        }
        next_offset = next_offset.max(header.last_offset() + 1);
        if header.is_control() {
            // The marker ends the producer's transaction, aborted or not.
            aborting.remove(&header.producer_id);
            continue;
        }
        if header.is_transactional() && aborting.contains(&header.producer_id) {
            continue;
        }
        let timestamp_type = if header.is_log_append_time() {
            TimestampType::LogAppend
        } else {
            TimestampType::Create
        };
        for record in decode_records(batch, max_decompressed_bytes)? {
            if record.offset < fetch_offset {
                continue;
            }
            records.push(ConsumerRecord {
                topic: topic.to_string(),
                partition,
                offset: record.offset,
                timestamp_ms: record.timestamp,
                timestamp_type,
                key: record.key,
                value: record.value,
                headers: record.headers,
            });
        }
    }
    Ok(DecodedPartition { records, next_offset })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{encode_batch, Compression, EncodeOptions, NewRecord};

    fn batch(base_offset: i64, values: &[&str], compression: Compression) -> Vec<u8> {
        let records: Vec<NewRecord> = values
            .iter()
            .map(|v| NewRecord {
                timestamp_ms: 1_000,
                key: None,
                value: Some(Bytes::copy_from_slice(v.as_bytes())),
                headers: vec![],
            })
            .collect();
        let options = EncodeOptions {
            base_offset,
            compression,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            partition_leader_epoch: -1,
        };
        encode_batch(&records, &options).unwrap().to_vec()
    }

    #[test]
    fn skips_records_below_the_fetch_offset_and_a_partial_tail() {
        let mut data = batch(10, &["a", "b", "c"], Compression::None);
        data.extend(batch(13, &["d", "e"], Compression::Gzip));
        let partial = batch(15, &["f"], Compression::None);
        data.extend(&partial[..partial.len() - 3]);
        let decoded = decode_partition("t", 0, &Bytes::from(data), 11, &[], 1 << 20).unwrap();
        let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![11, 12, 13, 14]);
        assert_eq!(decoded.next_offset, 15);
        assert_eq!(decoded.records[2].value.as_deref(), Some(&b"d"[..]));
    }

    #[test]
    fn an_empty_or_truncated_response_keeps_the_offset() {
        let decoded = decode_partition("t", 0, &Bytes::new(), 7, &[], 1 << 20).unwrap();
        assert!(decoded.records.is_empty());
        assert_eq!(decoded.next_offset, 7);
        let whole = batch(7, &["x"], Compression::None);
        let decoded =
            decode_partition("t", 0, &Bytes::copy_from_slice(&whole[..HEADER_BYTES]), 7, &[], 1 << 20).unwrap();
        assert!(decoded.records.is_empty());
        assert_eq!(decoded.next_offset, 7);
    }
}

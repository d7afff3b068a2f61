//! Re-encoding a stored v2 batch with a subset of its records, for the log cleaner: as Kafka's
//! `MemoryRecords.filterTo`, the batch keeps its base offset, last offset delta, producer id,
//! epoch and base sequence, so that no offset moves and producer state rebuilt from batch headers
//! stays right; every kept record keeps its absolute offset, timestamp, key, value and headers.

use super::batch::{
    put_nullable_bytes, put_varint, put_varlong, BatchHeader, Compression, Record, ATTRIBUTES_AT, COMPRESSION_MASK,
    CRC_AT, HEADER_BYTES, LOG_OVERHEAD_BYTES,
};
use super::codec;
use crate::error::{Error, Result};

/// What filtering did to one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Filtered {
    /// Every record is kept: the stored bytes stay as they are.
    Unchanged,
    /// No record is kept and nothing needs the batch: it disappears.
    Dropped,
    /// The new bytes of the batch: the kept records, or none when an empty batch must stay.
    Rewritten(Vec<u8>),
}

/// Filters the decoded `records` of the batch with `header` by `keep` (one flag per record). An
/// emptied batch is `Dropped` unless `retain_empty`, in which case it becomes an empty batch
/// (record count 0, uncompressed, `baseTimestamp` = `maxTimestamp` = the original maximum), as
/// Kafka keeps the last batch of each producer to preserve its sequence state.
///
/// Kept records are recompressed with the batch's own codec, as Kafka does: a compacted batch
/// stays as small as the producer made it, at the cost of one compression per rewritten batch.
pub(super) fn filter_batch(
    header: &BatchHeader,
    records: &[Record],
    keep: &[bool],
    retain_empty: bool,
) -> Result<Filtered> {
    debug_assert_eq!(records.len(), keep.len());
    if records.is_empty() {
        // An empty batch left by an earlier pass stays only while its producer needs it.
        return Ok(if retain_empty {
            Filtered::Unchanged
        } else {
            Filtered::Dropped
        });
    }
    let kept: Vec<&Record> = records.iter().zip(keep).filter(|(_, k)| **k).map(|(r, _)| r).collect();
    if kept.len() == records.len() {
        return Ok(Filtered::Unchanged);
    }
    if kept.is_empty() && !retain_empty {
        return Ok(Filtered::Dropped);
    }
    let compression = if kept.is_empty() {
        Compression::None
    } else {
        header.compression()?
    };
    let base_timestamp = kept.first().map_or(header.max_timestamp, |r| r.timestamp);
    // In a LogAppendTime batch every record reads as the batch's maxTimestamp, which stays.
    let max_timestamp = if header.is_log_append_time() || kept.is_empty() {
        header.max_timestamp
    } else {
        kept.iter().map(|r| r.timestamp).max().unwrap_or(base_timestamp)
    };
    let mut section = Vec::new();
    let mut body = Vec::new();
    for record in &kept {
        body.clear();
        body.push(0); // Record attributes are unused in v2.
        put_varlong(&mut body, record.timestamp.wrapping_sub(base_timestamp));
        let offset_delta = i32::try_from(record.offset - header.base_offset)
            .map_err(|_| Error::CorruptBatch(format!("record offset {} lies outside its batch", record.offset)))?;
        put_varint(&mut body, offset_delta);
        put_nullable_bytes(&mut body, record.key.as_deref())?;
        put_nullable_bytes(&mut body, record.value.as_deref())?;
        put_varint(&mut body, count_i32(record.headers.len())?);
        for (key, value) in &record.headers {
            put_nullable_bytes(&mut body, Some(key))?;
            put_nullable_bytes(&mut body, value.as_deref())?;
        }
        put_varint(&mut section, count_i32(body.len())?);
        section.extend_from_slice(&body);
    }
    let section = codec::compress(compression, &section)?;
    let total = HEADER_BYTES + section.len();
    let rewritten = BatchHeader {
        batch_length: count_i32(total - LOG_OVERHEAD_BYTES)?,
        crc: 0,
        attributes: (header.attributes & !COMPRESSION_MASK) | compression.id(),
        base_timestamp,
        max_timestamp,
        record_count: count_i32(kept.len())?,
        ..*header
    };
    let mut out = vec![0u8; HEADER_BYTES];
    rewritten.write(&mut out);
    out.extend_from_slice(&section);
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
    Ok(Filtered::Rewritten(out))
}

fn count_i32(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| Error::TooLarge {
        what: "rewritten record batch",
        size_bytes: n,
        limit_bytes: i32::MAX as usize,
    })
}

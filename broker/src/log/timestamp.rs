//! ListOffsets by timestamp: the first record at or after a timestamp, and the record with the
//! largest timestamp (KIP-734), found through the time index and a bounded decode of one batch at a time.

use super::batch::{self, BatchHeader};
use super::partition::{Isolation, PartitionLog};
use super::segment::SegmentView;
use crate::error::Result;

/// Largest decompressed batch decoded to answer a timestamp lookup.
pub const MAX_DECODED_BATCH_BYTES: usize = 64 * 1024 * 1024;

impl PartitionLog {
    /// The first record (offset, timestamp) whose timestamp is at least `timestamp_ms`, among the
    /// records in [log start offset, high watermark); None if there is none.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        self.offset_for_timestamp_in(timestamp_ms, Isolation::ReadUncommitted)
    }

    /// [`offset_for_timestamp`](Self::offset_for_timestamp) among the records `isolation` sees:
    /// below the high watermark, or below the last stable offset for read_committed.
    pub fn offset_for_timestamp_in(&self, timestamp_ms: i64, isolation: Isolation) -> Result<Option<(i64, i64)>> {
        let (candidates, log_start_offset, visible_end) = {
            let inner = self.lock();
            let candidates: Vec<(SegmentView, u64)> = inner
                .segments
                .iter()
                .filter(|s| s.stats.max_timestamp.is_some_and(|(max, _)| max >= timestamp_ms))
                .map(|s| (s.view(), s.position_for_timestamp(timestamp_ms)))
                .collect();
            (
                candidates,
                inner.log_start_offset,
                inner.visible_offsets().end(isolation),
            )
        };
        for (view, start) in candidates {
            let mut position = start;
            while position < view.size_bytes {
                let header = view.header_at(position)?;
                if header.base_offset >= visible_end {
                    return Ok(None);
                }
                if header.max_timestamp >= timestamp_ms && header.last_offset() >= log_start_offset {
                    let found = first_record(&view, position, &header, |offset, ts| {
                        offset >= log_start_offset && offset < visible_end && ts >= timestamp_ms
                    })?;
                    if found.is_some() {
                        return Ok(found);
                    }
                }
                position += header.total_bytes() as u64;
            }
        }
        Ok(None)
    }

    /// The record (offset, timestamp) with the largest timestamp, the first one on ties (ListOffsets
    /// -3, KIP-734); None when the log is empty, or when that record lies outside [log start offset,
    /// high watermark).
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>> {
        self.max_timestamp_in(Isolation::ReadUncommitted)
    }

    /// [`max_timestamp`](Self::max_timestamp), None when that record lies at or past the end
    /// `isolation` sees (the last stable offset for read_committed), as Kafka filters it.
    pub fn max_timestamp_in(&self, isolation: Isolation) -> Result<Option<(i64, i64)>> {
        let (view, start, max_timestamp_ms, batch_last_offset, log_start_offset, visible_end) = {
            let inner = self.lock();
            let mut best: Option<(usize, i64, i64)> = None;
            for (i, segment) in inner.segments.iter().enumerate() {
                if let Some((ts, offset)) = segment.stats.max_timestamp {
                    if best.is_none_or(|(_, best_ts, _)| ts > best_ts) {
                        best = Some((i, ts, offset));
                    }
                }
            }
            let Some((i, ts, offset)) = best else {
                return Ok(None);
            };
            let segment = &inner.segments[i];
            (
                segment.view(),
                segment.position_for_offset(offset),
                ts,
                offset,
                inner.log_start_offset,
                inner.visible_offsets().end(isolation),
            )
        };
        let mut position = start;
        while position < view.size_bytes {
            let header = view.header_at(position)?;
            if header.last_offset() >= batch_last_offset {
                if header.last_offset() != batch_last_offset {
                    return Ok(None);
                }
                return first_record(&view, position, &header, |offset, ts| {
                    ts == max_timestamp_ms && offset >= log_start_offset && offset < visible_end
                });
            }
            position += header.total_bytes() as u64;
        }
        Ok(None)
    }
}

/// Decodes the batch at `position` and returns the first record for which `wanted(offset, timestamp)`.
fn first_record(
    view: &SegmentView,
    position: u64,
    header: &BatchHeader,
    wanted: impl Fn(i64, i64) -> bool,
) -> Result<Option<(i64, i64)>> {
    let bytes = view.read_at(position, header.total_bytes())?;
    let records = batch::decode_records(&bytes, MAX_DECODED_BATCH_BYTES)?;
    Ok(records
        .iter()
        .find(|r| wanted(r.offset, r.timestamp))
        .map(|r| (r.offset, r.timestamp)))
}

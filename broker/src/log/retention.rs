//! Removing old data: DeleteRecords (a persisted log start offset) and retention by time and size,
//! which delete whole segments, oldest first, never the active one; plus the periodic duties
//! (`segment.ms` rolls, `flush.ms` fsyncs, compaction of `cleanup.policy=compact` logs) that ride
//! on the same timer.

use super::checkpoint::{self, LOG_START_OFFSET_FILE};
use super::partition::{Inner, PartitionLog, Shared};
use crate::error::Result;

impl PartitionLog {
    /// DeleteRecords: raises the log start offset to `offset` (-1 = high watermark) and deletes the
    /// segments wholly below it. The new start offset is persisted before anything is deleted.
    /// Returns the new log start offset.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let mut inner = self.lock();
        let target = if offset == -1 { inner.high_watermark } else { offset };
        if target < 0 || target > inner.high_watermark {
            return Err(inner.out_of_range(offset));
        }
        if target <= inner.log_start_offset {
            return Ok(inner.log_start_offset);
        }
        checkpoint::write_offset(&self.shared.dir, LOG_START_OFFSET_FILE, target)?;
        inner.log_start_offset = target;
        inner.producers.truncate_before(target);
        self.delete_oldest_while(&mut inner, |inner, _| {
            inner.segments[1].base_offset <= inner.log_start_offset
        })?;
        Ok(inner.log_start_offset)
    }

    /// Retention by time and size (when `cleanup.policy` holds `delete`), `segment.ms` rolls,
    /// `flush.ms` fsyncs and compaction (when it holds `compact`), at broker time `now_ms`.
    /// Returns the number of segments deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize> {
        let mut inner = self.lock();
        let config = inner.config.clone();
        let active = inner.active();
        let roll_due = !active.is_empty()
            && active
                .stats
                .roll_basis_ms
                .is_some_and(|basis| now_ms.saturating_sub(basis) > config.segment_ms);
        if roll_due {
            inner.roll(&self.shared.dir)?;
        }

        let mut deleted = 0;
        // Time and size retention belong to `cleanup.policy=delete`; a compact-only log keeps
        // every segment and relies on the cleaner.
        if config.cleanup_delete && config.retention_ms >= 0 {
            deleted += self.delete_oldest_while(&mut inner, |_, segment| {
                segment
                    .stats
                    .max_timestamp
                    .is_none_or(|(ts, _)| now_ms.saturating_sub(ts) > config.retention_ms)
            })?;
        }
        if config.cleanup_delete && config.retention_bytes >= 0 {
            // As Kafka: delete the oldest segment while the log stays at least retention.bytes without it.
            let total_bytes: u64 = inner.segments.iter().map(|s| s.size_bytes).sum();
            let mut excess_bytes = total_bytes.saturating_sub(config.retention_bytes as u64);
            deleted += self.delete_oldest_while(&mut inner, |_, segment| {
                let deletable = segment.size_bytes <= excess_bytes;
                if deletable {
                    excess_bytes -= segment.size_bytes;
                }
                deletable
            })?;
        }

        let durable_offset = self.shared.commit.durable_offset();
        let last_flush_ms = *inner.last_flush_ms.get_or_insert(now_ms);
        let flush_due = !config.flush_before_ack()
            && inner.log_end_offset() > durable_offset
            && now_ms.saturating_sub(last_flush_ms) >= config.flush_ms;
        if flush_due {
            inner.last_flush_ms = Some(now_ms);
        }
        drop(inner);
        if flush_due {
            Shared::flush_now(&self.shared)?;
        }
        if config.cleanup_compact {
            self.compact(now_ms)?;
        }
        Ok(deleted)
    }

    /// Deletes the oldest segment while more than one is left, it lies wholly below the high
    /// watermark, and `deletable` agrees; then raises the log start offset to the first one left.
    fn delete_oldest_while(
        &self,
        inner: &mut Inner,
        mut deletable: impl FnMut(&Inner, &super::segment::Segment) -> bool,
    ) -> Result<usize> {
        let mut deleted = 0;
        while inner.segments.len() > 1
            && inner.segments[0].stats.next_offset <= inner.high_watermark
            && deletable(inner, &inner.segments[0])
        {
            let segment = inner.segments.remove(0);
            inner.pending_sync.retain(|(base, _)| *base != segment.base_offset);
            let result = segment.delete_files();
            inner.log_start_offset = inner.log_start_offset.max(inner.segments[0].base_offset);
            deleted += 1;
            tracing::info!(path = %segment.log_path().display(), log_start_offset = inner.log_start_offset, "deleted segment");
            result?;
        }
        if deleted > 0 {
            inner.producers.truncate_before(inner.log_start_offset);
            checkpoint::sync_dir(&self.shared.dir)?;
        }
        Ok(deleted)
    }
}

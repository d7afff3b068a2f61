//! The durable log of one topic-partition: appends with offset assignment, idempotence and
//! transactions, reads of stored batches, and the offsets (start, end, high watermark, last
//! stable offset) the protocol handlers serve.
//!
//! Locking: one `Mutex<Inner>` guards the segment list and offsets. Appends write under it; reads,
//! timestamp lookups and fsyncs take only cheap snapshots under it (stored bytes below a segment's
//! size never change while the log is open) and do their file I/O without it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader};
use super::checkpoint;
use super::cleaner::CleanerState;
use super::config::LogConfig;
use super::flush::GroupCommit;
use super::producer_state::{ProducerStateTable, SequenceCheck};
use super::segment::{Segment, SegmentView};
use super::signal::AppendSignal;
use super::txn::{self, EndMarker};
use crate::error::{Error, Result};

pub use super::producer_state::ProducerSnapshot;

/// Which records a reader may see (Kafka's `isolation_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Every durable record, below the high watermark (isolation level 0).
    ReadUncommitted,
    /// Only records below the last stable offset, where every transaction is decided (level 1).
    ReadCommitted,
}

impl Isolation {
    /// The isolation of a request's `isolation_level` field: 1 is read_committed, anything else
    /// read_uncommitted, as Kafka reads it.
    pub fn from_level(level: i8) -> Isolation {
        if level == 1 {
            Isolation::ReadCommitted
        } else {
            Isolation::ReadUncommitted
        }
    }
}

/// The offsets a fetch answers with, taken together under the partition lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisibleOffsets {
    /// The first offset still held.
    pub log_start_offset: i64,
    /// The durable end: read_uncommitted readers see records below it.
    pub high_watermark: i64,
    /// The first offset of the earliest undecided transaction, else the high watermark:
    /// read_committed readers see records below it.
    pub last_stable_offset: i64,
}

impl VisibleOffsets {
    /// The end of what a reader with `isolation` may see.
    pub fn end(&self, isolation: Isolation) -> i64 {
        match isolation {
            Isolation::ReadUncommitted => self.high_watermark,
            Isolation::ReadCommitted => self.last_stable_offset,
        }
    }
}

/// How one produce payload is appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOptions {
    /// The broker clock, in milliseconds since the epoch.
    pub now_ms: i64,
    /// Whether the topic uses LogAppendTime: batches get `now_ms` as their timestamp.
    pub log_append_time: bool,
    /// The leader epoch stamped into every batch.
    pub leader_epoch: i32,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record written (or first written earlier, for a duplicate).
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The timestamp given to the batches under LogAppendTime, else -1.
    pub log_append_time_ms: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// True when an idempotent producer resent batches already in the log: nothing was written.
    pub duplicate: bool,
}

/// The durable log of one partition. Send + Sync; used behind an `Arc`.
pub struct PartitionLog {
    pub(super) shared: Arc<Shared>,
}

/// State shared with background fsyncs.
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) signal: AppendSignal,
    pub(super) inner: Mutex<Inner>,
    pub(super) commit: GroupCommit,
}

/// Everything the partition lock guards.
pub(super) struct Inner {
    pub(super) config: LogConfig,
    /// Ordered by base offset, never empty; the last one is the active segment.
    pub(super) segments: Vec<Segment>,
    pub(super) log_start_offset: i64,
    pub(super) high_watermark: i64,
    pub(super) producers: ProducerStateTable,
    /// Rolled segments whose `.log` was not fsync'd since, by base offset.
    pub(super) pending_sync: Vec<(i64, Arc<File>)>,
    /// The recovery point last written to its checkpoint.
    pub(super) recovery_point: i64,
    /// The broker clock at the last periodic flush.
    pub(super) last_flush_ms: Option<i64>,
    /// Where the log cleaner left off.
    pub(super) cleaner: CleanerState,
    pub(super) closed: bool,
}

impl Inner {
    pub(super) fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a partition log always has an active segment")
    }

    pub(super) fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a partition log always has an active segment")
    }

    pub(super) fn log_end_offset(&self) -> i64 {
        self.active().stats.next_offset
    }

    pub(super) fn out_of_range(&self, offset: i64) -> Error {
        Error::OffsetOutOfRange {
            offset,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset(),
        }
    }

    /// Raises the high watermark to `offset` (never lowers it); returns whether it moved. The last
    /// stable offset moves with it when transaction markers become durable.
    pub(super) fn advance_high_watermark(&mut self, offset: i64) -> bool {
        let offset = offset.min(self.log_end_offset());
        if offset > self.high_watermark {
            self.high_watermark = offset;
            self.producers.on_high_watermark(offset);
            true
        } else {
            false
        }
    }

    /// The log start offset, high watermark and last stable offset, taken together.
    pub(super) fn visible_offsets(&self) -> VisibleOffsets {
        VisibleOffsets {
            log_start_offset: self.log_start_offset,
            high_watermark: self.high_watermark,
            last_stable_offset: self.last_stable_offset(),
        }
    }

    /// The first offset of the earliest open transaction (or one whose marker is not durable yet),
    /// else the high watermark; never below the log start offset.
    pub(super) fn last_stable_offset(&self) -> i64 {
        let lso = self
            .producers
            .first_unstable_offset()
            .map_or(self.high_watermark, |first| first.min(self.high_watermark));
        lso.max(self.log_start_offset)
    }

    /// Starts a new active segment at the log end offset and fsyncs the directory.
    pub(super) fn roll(&mut self, dir: &Path) -> Result<()> {
        let base_offset = self.log_end_offset();
        let segment = Segment::create(dir, base_offset)?;
        checkpoint::sync_dir(dir)?;
        let old = self.active();
        self.pending_sync.push((old.base_offset, old.file()));
        tracing::debug!(dir = %dir.display(), base_offset, "rolled a new segment");
        self.segments.push(segment);
        Ok(())
    }

    /// The index of the segment holding `offset`, which must be at least the first base offset.
    pub(super) fn segment_index_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl PartitionLog {
    /// Opens (creating if absent) and recovers the log in `dir`.
    pub fn open(dir: &Path, config: LogConfig, signal: AppendSignal) -> Result<PartitionLog> {
        super::recovery::open(dir, config, signal)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    /// Appends one produce payload of validated v2 batches, given with their parsed headers.
    ///
    /// Idempotent batches are deduplicated and sequence-checked; a batch with a producer id but
    /// no sequence (-1) is a coordinator's write (TxnOffsetCommit records), checked only by epoch.
    /// A transactional batch opens its producer's transaction here; a control batch must be a
    /// transaction marker (see [`append_marker`](Self::append_marker)) and ends it.
    pub fn append(&self, mut payload: BytesMut, headers: &[BatchHeader], opts: &AppendOptions) -> Result<AppendInfo> {
        let payload_bytes: usize = headers.iter().map(BatchHeader::total_bytes).sum();
        if headers.is_empty() || payload_bytes != payload.len() {
            return Err(Error::CorruptBatch(format!(
                "{} batch headers cover {payload_bytes} bytes of a {}-byte payload",
                headers.len(),
                payload.len()
            )));
        }
        // The markers of control batches, read before anything is written. Only `append_marker`
        // writes control batches (clients may not), so a produce payload allocates nothing here.
        let markers = if headers.iter().any(BatchHeader::is_control) {
            read_markers(&payload, headers)?
        } else {
            Vec::new()
        };
        self.shared.commit.check_failed()?;
        let mut inner = self.lock();
        if inner.closed {
            return Err(Error::Shutdown("partition log"));
        }
        let idempotent = headers[0].producer_id >= 0;
        if idempotent {
            if let SequenceCheck::Duplicate {
                base_offset,
                last_offset,
            } = inner.producers.check(&headers[0])?
            {
                return Ok(AppendInfo {
                    base_offset,
                    last_offset,
                    log_append_time_ms: -1,
                    log_start_offset: inner.log_start_offset,
                    duplicate: true,
                });
            }
        }

        let base_offset = inner.log_end_offset();
        let mut placed = Vec::with_capacity(headers.len());
        let mut next_offset = base_offset;
        for header in headers {
            let mut header = *header;
            header.base_offset = next_offset;
            header.partition_leader_epoch = opts.leader_epoch;
            if opts.log_append_time {
                header.max_timestamp = opts.now_ms;
            }
            next_offset = header.last_offset() + 1;
            placed.push(header);
        }
        let last_offset = next_offset - 1;

        let config = inner.config.clone();
        let must_roll = inner.active().must_roll(
            payload.len() as u64,
            last_offset,
            opts.now_ms,
            config.effective_segment_bytes(),
            config.segment_ms,
        );
        if must_roll {
            inner.roll(&self.shared.dir)?;
        }

        let mut position = 0;
        for header in &placed {
            let batch = &mut payload[position..position + header.total_bytes()];
            batch::set_base_offset(batch, header.base_offset);
            batch::set_partition_leader_epoch(batch, opts.leader_epoch);
            if opts.log_append_time {
                batch::set_log_append_time(batch, opts.now_ms);
            }
            position += header.total_bytes();
        }

        let active = inner.active_mut();
        let start_bytes = active.size_bytes;
        active.write(&payload)?;
        active.stats.roll_basis_ms.get_or_insert(opts.now_ms);
        let mut position = start_bytes;
        for header in &placed {
            active.track_append(header, position, header.max_timestamp, config.index_interval_bytes);
            position += header.total_bytes() as u64;
        }
        if idempotent {
            for (i, header) in placed.iter().enumerate() {
                match markers.get(i).copied().flatten() {
                    Some(marker) => {
                        inner.producers.record_marker(header, marker);
                    }
                    None => inner.producers.record(header),
                }
            }
        }

        let flush_before_ack = config.flush_before_ack();
        if !flush_before_ack && inner.advance_high_watermark(next_offset) {
            self.shared.signal.notify();
        }
        // With fsync before the ack, every append starts (or extends) a background group commit, so
        // that records become visible even when nobody waits for them (acks=0). Outside a tokio
        // runtime (offline tools, the model test) durability comes from wait_durable or close.
        let flush_due = if flush_before_ack {
            tokio::runtime::Handle::try_current().is_ok()
        } else {
            next_offset - self.shared.commit.durable_offset() >= config.flush_messages
        };
        let info = AppendInfo {
            base_offset,
            last_offset,
            log_append_time_ms: if opts.log_append_time { opts.now_ms } else { -1 },
            log_start_offset: inner.log_start_offset,
            duplicate: false,
        };
        drop(inner);
        if flush_due {
            Shared::flush_in_background(&self.shared)?;
        }
        Ok(info)
    }

    /// Appends a transaction marker (a control batch: attributes control | transactional, one
    /// record with key `[version: i16 = 0][type: i16, 0 = abort, 1 = commit]` and value
    /// `[version: i16 = 0][coordinator_epoch: i32]`, producer id and epoch set, base sequence -1)
    /// that ends `producer_id`'s open transaction in this partition; returns once the marker is
    /// durable (fsync'd), with its offset. It goes through [`append`](Self::append) and the group
    /// commit like any produce, so ordering and durability hold. A marker for a producer with no
    /// open transaction here is still appended (retries after a coordinator crash do this) and
    /// changes nothing else. A marker whose epoch is older than the producer's current epoch here
    /// is refused with [`Error::InvalidProducerEpoch`]; a newer epoch becomes the current one.
    pub async fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<i64> {
        let now_ms = crate::broker::now_ms();
        let info = self.append_marker_at(producer_id, producer_epoch, commit, coordinator_epoch, now_ms)?;
        self.wait_durable(info.last_offset + 1).await?;
        Ok(info.base_offset)
    }

    /// The ordered half of [`append_marker`](Self::append_marker) at broker time `now_ms`: appends
    /// the marker without waiting for durability.
    pub fn append_marker_at(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        if producer_id < 0 {
            return Err(Error::InvalidRecord(format!(
                "a transaction marker needs a producer id, not {producer_id}"
            )));
        }
        let marker = EndMarker {
            commit,
            coordinator_epoch,
        };
        let payload = txn::encode_marker(producer_id, producer_epoch, marker, now_ms)?;
        let header = BatchHeader::parse(&payload)?;
        let opts = AppendOptions {
            now_ms,
            log_append_time: false,
            leader_epoch: 0,
        };
        let info = self.append(payload, &[header], &opts)?;
        tracing::debug!(
            dir = %self.shared.dir.display(),
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            offset = info.base_offset,
            "appended a transaction marker"
        );
        Ok(info)
    }

    /// The last stable offset: the first offset of the earliest open transaction (or of one whose
    /// marker is not durable yet), else the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        self.lock().last_stable_offset()
    }

    /// The log start offset, high watermark and last stable offset, taken together.
    pub fn visible_offsets(&self) -> VisibleOffsets {
        self.lock().visible_offsets()
    }

    /// Aborted transactions overlapping `[from, upto)` as (producer id, first offset), for Fetch's
    /// `aborted_transactions`: a read_committed client drops the producer's records from the first
    /// offset until it meets the abort marker.
    pub fn aborted_transactions(&self, from: i64, upto: i64) -> Vec<(i64, i64)> {
        self.lock()
            .producers
            .aborted_overlapping(from, upto)
            .into_iter()
            .map(|t| (t.producer_id, t.first_offset))
            .collect()
    }

    /// Every producer this partition knows, for DescribeProducers, in producer id order.
    pub fn producers(&self) -> Vec<ProducerSnapshot> {
        self.lock().producers.snapshots()
    }

    /// What this partition knows of one producer (cheaper than [`producers`](Self::producers)).
    pub fn producer(&self, producer_id: i64) -> Option<ProducerSnapshot> {
        self.lock().producers.snapshot(producer_id)
    }

    /// True when acks must wait for fsync (flush_messages <= 1).
    pub fn flush_before_ack(&self) -> bool {
        self.lock().config.flush_before_ack()
    }

    /// Reads whole stored batches starting with the one that holds `offset`, up to `max_bytes` but
    /// always at least one whole batch if any starts below `limit_offset`; batches whose base offset
    /// is at or above `limit_offset` are never returned. Empty at the end of the log.
    pub fn read(&self, offset: i64, max_bytes: usize, limit_offset: i64) -> Result<Bytes> {
        let (views, start_position) = {
            let inner = self.lock();
            if offset < inner.log_start_offset || offset > inner.log_end_offset() {
                return Err(inner.out_of_range(offset));
            }
            if offset >= limit_offset || offset == inner.log_end_offset() {
                return Ok(Bytes::new());
            }
            let first = inner.segment_index_for(offset);
            let views: Vec<SegmentView> = inner.segments[first..].iter().map(Segment::view).collect();
            (views, inner.segments[first].position_for_offset(offset))
        };

        // Plan contiguous byte ranges per segment, then read each with one pread.
        let mut ranges: Vec<(usize, u64, u64)> = Vec::new();
        let mut planned_bytes = 0usize;
        'segments: for (i, view) in views.iter().enumerate() {
            let mut position = if i == 0 { start_position } else { 0 };
            while position < view.size_bytes {
                let header = view.header_at(position)?;
                let len = header.total_bytes();
                if header.last_offset() < offset {
                    position += len as u64;
                    continue;
                }
                if header.base_offset >= limit_offset || (planned_bytes > 0 && planned_bytes + len > max_bytes) {
                    break 'segments;
                }
                match ranges.last_mut() {
                    Some((segment, _, end)) if *segment == i => *end += len as u64,
                    _ => ranges.push((i, position, position + len as u64)),
                }
                planned_bytes += len;
                position += len as u64;
            }
        }
        let mut out = BytesMut::with_capacity(planned_bytes);
        for (segment, start, end) in ranges {
            out.extend_from_slice(&views[segment].read_at(start, (end - start) as usize)?);
        }
        Ok(out.freeze())
    }

    /// The storage error that took this partition offline (a failed fsync), if any: it refuses
    /// writes until the broker restarts and recovers it.
    pub fn storage_failure(&self) -> Option<crate::Error> {
        self.shared.commit.check_failed().err()
    }

    /// The first offset still held.
    pub fn log_start_offset(&self) -> i64 {
        self.lock().log_start_offset
    }

    /// The next offset to be written.
    pub fn log_end_offset(&self) -> i64 {
        self.lock().log_end_offset()
    }

    /// The offset below which records are visible to consumers: the durable end when acks wait for
    /// fsync, else the log end. It never moves backwards.
    pub fn high_watermark(&self) -> i64 {
        self.lock().high_watermark
    }

    /// Replaces the storage settings; they apply from the next append or retention pass.
    pub fn set_config(&self, config: LogConfig) {
        self.lock().config = config;
    }

    /// The storage settings in force.
    pub fn config(&self) -> LogConfig {
        self.lock().config.clone()
    }

    /// Bytes held in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.lock().segments.iter().map(|s| s.size_bytes).sum()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the offsets as they were before the failed step,
        // because each step publishes its result last.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The transaction marker of each control batch in `payload` (None for data batches and other
/// control records), by the position of its header in `headers`.
fn read_markers(payload: &[u8], headers: &[BatchHeader]) -> Result<Vec<Option<EndMarker>>> {
    let mut position = 0;
    headers
        .iter()
        .map(|header| {
            let bytes = &payload[position..position + header.total_bytes()];
            position += header.total_bytes();
            if header.is_control() {
                txn::parse_marker(bytes)
            } else {
                Ok(None)
            }
        })
        .collect()
}

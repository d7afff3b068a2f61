//! Log compaction for `cleanup.policy=compact`, Kafka's `LogCleaner` simplified: closed segments
//! are rewritten so that only the latest record of each key survives, at its original offset.
//!
//! One pass at broker time `now_ms`:
//! 1. Under the partition lock, snapshot the closed segments (never the active one) and the
//!    aborted transactions. The *cleanable* segments are the leading closed segments wholly below
//!    the last stable offset (so every transaction in them is decided) whose largest timestamp is
//!    at least `min.compaction.lag.ms` old (Kafka's first uncleanable offset).
//! 2. Without the lock, build a key -> latest offset map over every closed segment from the first
//!    dirty offset (where the previous pass stopped) to the active segment or the last stable
//!    offset, whichever comes first: a record of an undecided transaction never supersedes
//!    anything. Records of aborted transactions are not mapped. The map is bounded by
//!    `log.cleaner.dedupe.buffer.size` (key bytes plus [`MAP_ENTRY_OVERHEAD_BYTES`] per key); when
//!    the dirty section holds more keys, the map stops at a batch boundary and only the prefix it
//!    covers is cleaned this pass; the next pass starts its map there, as Kafka's cleaner does.
//!    One batch is always taken, so the bound may be exceeded by one decoded batch.
//! 3. Each cleanable segment below the end of the map is filtered batch by batch into
//!    `<base>.log.cleaned`. A record stays iff it lies beyond the map, or it has a key and no later
//!    offset of that key is in the map, and it is not a tombstone past its delete horizon.
//!    Keyless records are removed, as Kafka counts them invalid in a compacted log. Every record
//!    of an aborted transaction is removed, so that it can never stand in for committed data (a
//!    compacted `__consumer_offsets` never resurrects an aborted offset); committed transactional
//!    records are compacted like any other. Control batches (transaction markers) are kept
//!    verbatim, forever: Kafka removes them after `delete.retention.ms`, which Brook does not yet.
//!    Batches are rewritten by
//!    `batch_filter` keeping their offsets and producer fields; emptied batches are dropped, except
//!    those the producer state table still remembers, which stay as empty batches so that recovery
//!    rebuilds the same sequence state (Kafka keeps only each producer's last batch; Brook keeps all
//!    five it remembers so that duplicate detection of in-flight retries is not weakened either).
//!    A segment may end up empty; it stays (merging small segments is not done).
//! 4. The cleaned file is fsync'd, then, under the lock, renamed over `<base>.log` (atomic), its
//!    indexes rewritten and the `Segment` replaced; then the directory is fsync'd. A crash leaves
//!    either the old or the new `.log`; recovery deletes leftover `.cleaned` files and rebuilds
//!    indexes from the log. Fetches that took a view before the swap keep reading the old inode.
//!
//! Delete horizon: a tombstone is removed once `now_ms >= segment largest timestamp +
//! delete.retention.ms`. Kafka uses the last modified time of the files, but a rewrite changes
//! that, and the largest timestamp is deterministic, survives restarts, and is never smaller than
//! the tombstone's own timestamp, so every tombstone lives at least `delete.retention.ms` after its
//! timestamp. Tombstones are only removed in segments whose older records were cleaned by the
//! same or an earlier pass, so a removed tombstone never resurrects an older value.
//!
//! The first dirty offset lives in memory only: after a restart the first pass maps the log from
//! its start again, which is correct and merely costs one full pass.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::batch::{self, BatchHeader, Record};
use super::batch_filter::{filter_batch, Filtered};
use super::checkpoint;
use super::index::OffsetEntry;
use super::partition::{PartitionLog, Shared};
use super::segment::{segment_path, Segment, SegmentStats, SegmentView, LOG_SUFFIX};
use super::time_index::TimeEntry;
use super::timestamp::MAX_DECODED_BATCH_BYTES;
use super::txn::AbortedTxn;
use crate::error::{Error, Result};

/// Suffix of a segment being rewritten by the cleaner; leftovers are deleted on open.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// What one offset map entry costs beyond its key bytes: the hash table slot, the key's heap
/// allocation and the offset, rounded up.
pub const MAP_ENTRY_OVERHEAD_BYTES: u64 = 64;
/// Write buffer of a cleaned segment.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Segments replaced by a cleaned copy.
    pub segments_rewritten: usize,
    /// Records removed: superseded by a later record of their key, expired tombstones, keyless, or
    /// of an aborted transaction.
    pub records_removed: u64,
    /// Bytes of the rewritten segments before the pass.
    pub bytes_before: u64,
    /// Bytes of the rewritten segments after the pass.
    pub bytes_after: u64,
    /// Every key appears at most once below this offset (the first dirty offset); 0 before any pass.
    pub cleaned_up_to_offset: i64,
}

/// Where the cleaner left off, kept under the partition lock.
#[derive(Debug, Default)]
pub(super) struct CleanerState {
    /// Below this offset, no key appears twice; the next map starts here.
    first_dirty_offset: i64,
    /// The earliest time a kept tombstone in the clean section passes its delete horizon.
    tombstones_due_ms: Option<i64>,
    /// A pass is running; a second one returns at once.
    running: bool,
}

/// Where a test stops a pass, as if the broker crashed there.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CrashPoint {
    /// After the first `.cleaned` file is written and fsync'd, before its rename.
    BeforeRename,
    /// After the first rename, before the in-memory segment is replaced.
    AfterRename,
}

/// A closed segment as the pass saw it under the lock.
struct SegmentPlan {
    view: SegmentView,
    /// The base offset of the next segment: every offset of this one lies below it.
    end_offset: i64,
    max_timestamp_ms: Option<i64>,
}

impl PartitionLog {
    /// Compacts the closed segments at broker time `now_ms` (see the module docs). Appends go on
    /// meanwhile; the partition lock is held only to plan and to swap each segment.
    pub fn compact(&self, now_ms: i64) -> Result<CompactStats> {
        self.compact_until(now_ms, None)
    }

    /// [`compact`](Self::compact), stopping at `crash` as if the process died there.
    pub(super) fn compact_until(&self, now_ms: i64, crash: Option<CrashPoint>) -> Result<CompactStats> {
        let (config, closed, cleanable, first_dirty, remembered, aborted, map_end) = {
            let mut inner = self.lock();
            if inner.closed {
                return Err(Error::Shutdown("partition log"));
            }
            let first_dirty = inner.cleaner.first_dirty_offset.max(inner.segments[0].base_offset);
            let idle = CompactStats {
                cleaned_up_to_offset: inner.cleaner.first_dirty_offset,
                ..CompactStats::default()
            };
            if inner.cleaner.running {
                return Ok(idle);
            }
            let config = inner.config.clone();
            let active = inner.segments.len() - 1;
            let closed: Vec<SegmentPlan> = (0..active)
                .map(|i| SegmentPlan {
                    view: inner.segments[i].view(),
                    end_offset: inner.segments[i + 1].base_offset,
                    max_timestamp_ms: inner.segments[i].stats.max_timestamp.map(|(ts, _)| ts),
                })
                .collect();
            let lag_horizon_ms = now_ms.saturating_sub(config.min_compaction_lag_ms);
            let last_stable_offset = inner.last_stable_offset();
            let cleanable = closed
                .iter()
                .take_while(|s| {
                    s.end_offset <= last_stable_offset && s.max_timestamp_ms.is_none_or(|ts| ts <= lag_horizon_ms)
                })
                .count();
            let cleanable_end = cleanable.checked_sub(1).map_or(i64::MIN, |i| closed[i].end_offset);
            let tombstones_due = inner.cleaner.tombstones_due_ms.is_some_and(|due| now_ms >= due);
            if cleanable == 0 || (first_dirty >= cleanable_end && !tombstones_due) {
                return Ok(idle);
            }
            inner.cleaner.running = true;
            let remembered = inner.producers.remembered_batch_last_offsets();
            let aborted = Aborted::new(
                inner
                    .producers
                    .aborted_overlapping(inner.segments[0].base_offset, last_stable_offset),
            );
            let active_base = closed.last().map_or(first_dirty, |s| s.end_offset);
            let map_end = active_base.min(last_stable_offset);
            (config, closed, cleanable, first_dirty, remembered, aborted, map_end)
        };
        let _running = RunningGuard(&self.shared);

        let map = OffsetMap::build(
            &closed,
            first_dirty,
            map_end,
            config.cleaner_dedupe_buffer_bytes,
            &aborted,
        )?;
        let clean_end = map.end_offset.min(closed[cleanable - 1].end_offset);
        let mut stats = CompactStats::default();
        let mut tombstones_due_ms: Option<i64> = None;
        for plan in closed[..cleanable].iter().filter(|s| s.view.base_offset < clean_end) {
            let tombstones_expire = plan
                .max_timestamp_ms
                .is_none_or(|ts| ts.saturating_add(config.delete_retention_ms) <= now_ms);
            let outcome = clean_segment(
                &self.shared.dir,
                plan,
                &Rules {
                    map: &map,
                    clean_end,
                    tombstones_expire,
                    remembered: &remembered,
                    aborted: &aborted,
                },
                config.index_interval_bytes,
            )?;
            stats.records_removed += outcome.records_removed;
            let mut max_timestamp_ms = plan.max_timestamp_ms;
            if let Some(cleaned) = outcome.cleaned {
                if crash == Some(CrashPoint::BeforeRename) {
                    return Ok(stats);
                }
                let (before, after) = (plan.view.size_bytes, cleaned.size_bytes);
                max_timestamp_ms = cleaned.stats.max_timestamp.map(|(ts, _)| ts);
                if self.install(cleaned, crash)? {
                    stats.segments_rewritten += 1;
                    stats.bytes_before += before;
                    stats.bytes_after += after;
                }
                if crash == Some(CrashPoint::AfterRename) {
                    return Ok(stats);
                }
            }
            if outcome.tombstones_kept {
                let due = max_timestamp_ms.map_or(now_ms, |ts| ts.saturating_add(config.delete_retention_ms));
                tombstones_due_ms = Some(tombstones_due_ms.map_or(due, |d| d.min(due)));
            }
        }

        let mut inner = self.lock();
        inner.cleaner.first_dirty_offset = inner.cleaner.first_dirty_offset.max(clean_end);
        inner.cleaner.tombstones_due_ms = tombstones_due_ms;
        stats.cleaned_up_to_offset = inner.cleaner.first_dirty_offset;
        drop(inner);
        if stats.segments_rewritten > 0 {
            tracing::info!(
                dir = %self.shared.dir.display(),
                segments_rewritten = stats.segments_rewritten,
                records_removed = stats.records_removed,
                bytes_before = stats.bytes_before,
                bytes_after = stats.bytes_after,
                cleaned_up_to_offset = stats.cleaned_up_to_offset,
                "compacted"
            );
        }
        Ok(stats)
    }

    /// Swaps a cleaned segment in: rename over the original, replace the in-memory segment, fsync
    /// the directory. Returns false (and deletes the cleaned file) when the original is gone or
    /// changed meanwhile (retention, DeleteRecords, close).
    fn install(&self, cleaned: CleanedSegment, crash: Option<CrashPoint>) -> Result<bool> {
        let dir = &self.shared.dir;
        let base_offset = cleaned.base_offset;
        let mut inner = self.lock();
        let active = inner.segments.len() - 1;
        let found = inner
            .segments
            .binary_search_by_key(&base_offset, |s| s.base_offset)
            .ok()
            .filter(|&i| i < active && inner.segments[i].size_bytes == cleaned.source_size_bytes);
        let Some(i) = found.filter(|_| !inner.closed) else {
            drop(inner);
            remove_file(&cleaned.path)?;
            return Ok(false);
        };
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        if let Err(e) = fs::rename(&cleaned.path, &log_path) {
            drop(inner);
            remove_file(&cleaned.path)?;
            return Err(Error::io(
                format!("renaming {} over the original", cleaned.path.display()),
                e,
            ));
        }
        if crash == Some(CrashPoint::AfterRename) {
            return Ok(true);
        }
        let segment = Segment::install_cleaned(
            dir,
            base_offset,
            cleaned.file,
            cleaned.size_bytes,
            cleaned.stats,
            cleaned.offset_entries,
            cleaned.time_entries,
        )?;
        let old = std::mem::replace(&mut inner.segments[i], segment);
        // The cleaned file was fsync'd before the rename.
        inner.pending_sync.retain(|(base, _)| *base != base_offset);
        drop(inner);
        drop(old);
        checkpoint::sync_dir(dir)?;
        Ok(true)
    }
}

/// Clears the running mark when a pass ends, however it ends.
struct RunningGuard<'a>(&'a Shared);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().cleaner.running = false;
    }
}

/// The latest offset of each key in the mapped range `[first dirty offset, end_offset)`.
struct OffsetMap {
    latest: HashMap<Box<[u8]>, i64>,
    used_bytes: u64,
    /// Records at or above this offset were not mapped.
    end_offset: i64,
}

/// The aborted transactions of the cleaned range, by producer id: (first offset, marker offset),
/// in marker order. A producer has one transaction open at a time, so its spans never overlap and
/// both ends ascend.
struct Aborted(HashMap<i64, Vec<(i64, i64)>>);

impl Aborted {
    fn new(list: Vec<AbortedTxn>) -> Aborted {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for t in list {
            by_producer
                .entry(t.producer_id)
                .or_default()
                .push((t.first_offset, t.last_offset));
        }
        Aborted(by_producer)
    }

    /// Whether the batch belongs to an aborted transaction: the first of its producer's spans
    /// that does not end before the batch must start at or before it.
    fn holds(&self, header: &BatchHeader) -> bool {
        header.is_transactional()
            && self.0.get(&header.producer_id).is_some_and(|spans| {
                let at = spans.partition_point(|&(_, last)| last < header.base_offset);
                spans.get(at).is_some_and(|&(first, _)| first <= header.base_offset)
            })
    }
}

impl OffsetMap {
    /// Maps the keyed records of data batches from `first_dirty` up to `end` (the active segment
    /// or the last stable offset), skipping aborted transactions, within `budget_bytes` (but
    /// always at least one batch).
    fn build(
        closed: &[SegmentPlan],
        first_dirty: i64,
        end: i64,
        budget_bytes: u64,
        aborted: &Aborted,
    ) -> Result<OffsetMap> {
        let mut map = OffsetMap {
            latest: HashMap::new(),
            used_bytes: 0,
            end_offset: end,
        };
        for plan in closed.iter().filter(|s| s.end_offset > first_dirty) {
            let view = &plan.view;
            let mut position = 0;
            while position < view.size_bytes {
                let header = view.header_at(position)?;
                position += header.total_bytes() as u64;
                if header.base_offset >= end {
                    return Ok(map);
                }
                if header.last_offset() < first_dirty || header.is_control() || aborted.holds(&header) {
                    continue;
                }
                let records = decode(view, position - header.total_bytes() as u64, &header)?;
                let mapped = || records.iter().filter(|r| r.offset >= first_dirty);
                let cost: u64 = mapped()
                    .filter_map(|r| r.key.as_ref())
                    .map(|k| k.len() as u64 + MAP_ENTRY_OVERHEAD_BYTES)
                    .sum();
                if !map.latest.is_empty() && map.used_bytes + cost > budget_bytes {
                    map.end_offset = header.base_offset;
                    return Ok(map);
                }
                for record in mapped() {
                    let Some(key) = &record.key else { continue };
                    match map.latest.get_mut(key.as_ref()) {
                        Some(offset) => *offset = (*offset).max(record.offset),
                        None => {
                            map.used_bytes += key.len() as u64 + MAP_ENTRY_OVERHEAD_BYTES;
                            map.latest.insert(key.to_vec().into_boxed_slice(), record.offset);
                        }
                    }
                }
            }
        }
        Ok(map)
    }

    /// Whether a later offset of the record's key is mapped.
    fn superseded(&self, record: &Record, key: &[u8]) -> bool {
        self.latest.get(key).is_some_and(|&latest| latest > record.offset)
    }
}

fn decode(view: &SegmentView, position: u64, header: &BatchHeader) -> Result<Vec<Record>> {
    let bytes = view.read_at(position, header.total_bytes())?;
    batch::decode_records(&bytes, MAX_DECODED_BATCH_BYTES)
}

/// A rewritten segment waiting to be swapped in.
struct CleanedSegment {
    base_offset: i64,
    path: PathBuf,
    file: File,
    size_bytes: u64,
    /// The size of the original when it was read; a different size means it is not the same file.
    source_size_bytes: u64,
    stats: SegmentStats,
    offset_entries: Vec<OffsetEntry>,
    time_entries: Vec<TimeEntry>,
}

/// What filtering one segment found.
struct SegmentOutcome {
    /// None when every batch stays as it is.
    cleaned: Option<CleanedSegment>,
    records_removed: u64,
    /// Whether tombstones below the clean end stay, to be removed once past their horizon.
    tombstones_kept: bool,
}

/// What decides which records of a cleanable segment stay.
struct Rules<'a> {
    /// The latest offset of each key.
    map: &'a OffsetMap,
    /// Batches at or past this offset stay as they are.
    clean_end: i64,
    /// Whether the segment's tombstones are past their delete horizon.
    tombstones_expire: bool,
    /// The last offsets of the batches the producer state remembers: kept, emptied if need be.
    remembered: &'a HashSet<i64>,
    /// Aborted transactions, whose records all go.
    aborted: &'a Aborted,
}

/// Filters one cleanable segment into `<base>.log.cleaned` (only once something changes), fsync'd.
fn clean_segment(
    dir: &Path,
    plan: &SegmentPlan,
    rules: &Rules<'_>,
    index_interval_bytes: u32,
) -> Result<SegmentOutcome> {
    let Rules {
        map,
        clean_end,
        tombstones_expire,
        remembered,
        aborted,
    } = *rules;
    let view = &plan.view;
    let mut outcome = SegmentOutcome {
        cleaned: None,
        records_removed: 0,
        tombstones_kept: false,
    };
    let mut writer: Option<CleanedWriter> = None;
    let mut position = 0;
    while position < view.size_bytes {
        let header = view.header_at(position)?;
        let bytes = view.read_at(position, header.total_bytes())?;
        let filtered = if header.is_control() || header.base_offset >= clean_end {
            Filtered::Unchanged
        } else {
            let records = batch::decode_records(&bytes, MAX_DECODED_BATCH_BYTES)?;
            let aborted_batch = aborted.holds(&header);
            let keep: Vec<bool> = records
                .iter()
                .map(|record| {
                    let keep = !aborted_batch
                        && record.key.as_ref().is_some_and(|key| {
                            !map.superseded(record, key) && (record.value.is_some() || !tombstones_expire)
                        });
                    if !keep {
                        outcome.records_removed += 1;
                    } else if record.value.is_none() {
                        outcome.tombstones_kept = true;
                    }
                    keep
                })
                .collect();
            let retain_empty = header.producer_id >= 0 && remembered.contains(&header.last_offset());
            filter_batch(&header, &records, &keep, retain_empty)?
        };
        match filtered {
            Filtered::Unchanged => {
                if let Some(w) = writer.as_mut() {
                    w.append(&bytes)?;
                }
            }
            changed => {
                if writer.is_none() {
                    writer = Some(CleanedWriter::start(dir, view, position, index_interval_bytes)?);
                }
                if let (Filtered::Rewritten(new_bytes), Some(w)) = (changed, writer.as_mut()) {
                    w.append(&new_bytes)?;
                }
            }
        }
        position += header.total_bytes() as u64;
    }
    if let Some(w) = writer {
        outcome.cleaned = Some(w.finish(view.size_bytes)?);
    }
    Ok(outcome)
}

/// Writes a cleaned segment and accounts for its batches as recovery would.
struct CleanedWriter {
    base_offset: i64,
    path: PathBuf,
    out: BufWriter<File>,
    size_bytes: u64,
    stats: SegmentStats,
    offset_entries: Vec<OffsetEntry>,
    time_entries: Vec<TimeEntry>,
    index_interval_bytes: u32,
}

impl CleanedWriter {
    /// Creates `<base>.log.cleaned` and copies the unchanged batches before `position` into it.
    fn start(dir: &Path, view: &SegmentView, position: u64, index_interval_bytes: u32) -> Result<CleanedWriter> {
        let base_offset = view.base_offset;
        let path = dir.join(format!("{base_offset:020}{LOG_SUFFIX}{CLEANED_SUFFIX}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let mut writer = CleanedWriter {
            base_offset,
            path,
            out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            size_bytes: 0,
            stats: SegmentStats::empty(base_offset),
            offset_entries: Vec::new(),
            time_entries: Vec::new(),
            index_interval_bytes,
        };
        let mut copied = 0;
        while copied < position {
            let header = view.header_at(copied)?;
            writer.append(&view.read_at(copied, header.total_bytes())?)?;
            copied += header.total_bytes() as u64;
        }
        Ok(writer)
    }

    /// Appends one whole batch.
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let header = BatchHeader::parse(bytes)?;
        let (offset_entry, time_entry) = self.stats.observe(
            self.base_offset,
            &header,
            self.size_bytes,
            header.max_timestamp,
            self.index_interval_bytes,
        );
        self.offset_entries.extend(offset_entry);
        if let Some(entry) = time_entry {
            if self
                .time_entries
                .last()
                .is_none_or(|last| entry.timestamp_ms > last.timestamp_ms)
            {
                self.time_entries.push(entry);
            }
        }
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))?;
        self.size_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Flushes and fsyncs the file.
    fn finish(self, source_size_bytes: u64) -> Result<CleanedSegment> {
        let context = format!("fsyncing {}", self.path.display());
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(context.clone(), e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(context, e))?;
        Ok(CleanedSegment {
            base_offset: self.base_offset,
            path: self.path,
            file,
            size_bytes: self.size_bytes,
            source_size_bytes,
            stats: self.stats,
            offset_entries: self.offset_entries,
            time_entries: self.time_entries,
        })
    }
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("deleting {}", path.display()), e)),
    }
}

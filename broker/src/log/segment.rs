//! One segment of a partition log: a `.log` file of verbatim batches named by its 20-digit base
//! offset, with its offset and time indexes and the metadata that rolls and retention need.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{BatchHeader, HEADER_BYTES, LOG_OVERHEAD_BYTES};
use super::index::{OffsetEntry, OffsetIndex};
use super::time_index::{TimeEntry, TimeIndex};
use crate::error::{Error, Result};

/// Extension of segment data files.
pub const LOG_SUFFIX: &str = ".log";
/// Extension of offset index files.
pub const INDEX_SUFFIX: &str = ".index";
/// Extension of time index files.
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// `dir/<20-digit base offset><suffix>`, as Kafka names segment files.
pub fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

/// The base offset in a file name such as `00000000000000000042.log`, or None if it is not one.
pub fn parse_base_offset(file_name: &str, suffix: &str) -> Option<i64> {
    let stem = file_name.strip_suffix(suffix)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// What a segment knows about the batches it holds, updated batch by batch on append and on recovery.
#[derive(Debug, Clone)]
pub struct SegmentStats {
    /// Last offset of the last batch plus one, or the base offset when empty.
    pub next_offset: i64,
    /// The largest batch max timestamp and the last offset of the batch that carried it.
    pub max_timestamp: Option<(i64, i64)>,
    /// When the segment started, for `segment.ms`: the broker clock at its first append, or after
    /// recovery the first batch's max timestamp, as Kafka does.
    pub roll_basis_ms: Option<i64>,
    /// Bytes appended since the last offset index entry.
    bytes_since_index_entry: u64,
}

impl SegmentStats {
    /// The stats of a segment without batches.
    pub fn empty(base_offset: i64) -> Self {
        SegmentStats {
            next_offset: base_offset,
            max_timestamp: None,
            roll_basis_ms: None,
            bytes_since_index_entry: 0,
        }
    }

    /// Accounts for one batch at `position` with its final offsets and max timestamp, and returns
    /// the index entries Kafka would write for it.
    pub fn observe(
        &mut self,
        base_offset: i64,
        header: &BatchHeader,
        position: u64,
        max_timestamp_ms: i64,
        index_interval_bytes: u32,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        let last_offset = header.last_offset();
        if self.max_timestamp.is_none_or(|(ts, _)| max_timestamp_ms > ts) {
            self.max_timestamp = Some((max_timestamp_ms, last_offset));
        }
        self.roll_basis_ms.get_or_insert(max_timestamp_ms);
        let mut entries = (None, None);
        if self.bytes_since_index_entry > u64::from(index_interval_bytes) {
            let relative = |offset: i64| (offset - base_offset) as u32;
            entries.0 = Some(OffsetEntry {
                relative_offset: relative(last_offset),
                position: position as u32,
            });
            entries.1 = self.max_timestamp.map(|(timestamp_ms, offset)| TimeEntry {
                timestamp_ms,
                relative_offset: relative(offset),
            });
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += header.total_bytes() as u64;
        self.next_offset = last_offset + 1;
        entries
    }
}

/// A cheap, lock-free view of a segment for reads: stored bytes below `size_bytes` never change.
#[derive(Debug, Clone)]
pub struct SegmentView {
    /// The segment's base offset.
    pub base_offset: i64,
    /// The `.log` file.
    pub file: Arc<File>,
    /// The `.log` path, for error messages.
    pub path: Arc<PathBuf>,
    /// Bytes written when the view was taken.
    pub size_bytes: u64,
}

impl SegmentView {
    /// Reads and sanity-checks the header of the batch at `position`.
    pub fn header_at(&self, position: u64) -> Result<BatchHeader> {
        let corrupt = |reason: String| Error::CorruptLog {
            path: self.path.display().to_string(),
            reason,
        };
        if position + HEADER_BYTES as u64 > self.size_bytes {
            return Err(corrupt(format!(
                "batch header at position {position} runs past the end"
            )));
        }
        let mut buf = [0u8; HEADER_BYTES];
        self.file
            .read_exact_at(&mut buf, position)
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        let header =
            BatchHeader::parse(&buf).map_err(|e| corrupt(format!("bad batch header at position {position}: {e}")))?;
        if header.batch_length < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32
            || position + header.total_bytes() as u64 > self.size_bytes
        {
            return Err(corrupt(format!(
                "batch at position {position} has a bad length {}",
                header.batch_length
            )));
        }
        Ok(header)
    }

    /// Reads `len` bytes at `position`.
    pub fn read_at(&self, position: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, position)
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        Ok(buf)
    }
}

/// One segment: its files, its size and what it holds.
#[derive(Debug)]
pub struct Segment {
    /// Offset of the segment's first batch; the number in its file names.
    pub base_offset: i64,
    /// Bytes of valid batches in the `.log` file.
    pub size_bytes: u64,
    /// What the segment holds.
    pub stats: SegmentStats,
    /// The `.index` file.
    pub index: OffsetIndex,
    /// The `.timeindex` file.
    pub time_index: TimeIndex,
    log_path: Arc<PathBuf>,
    file: Arc<File>,
}

impl Segment {
    /// Creates an empty segment at `base_offset`, replacing any files of that name. The caller
    /// fsyncs the directory.
    pub fn create(dir: &Path, base_offset: i64) -> Result<Segment> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let file = open_log(&log_path)?;
        file.set_len(0)
            .map_err(|e| Error::io(format!("truncating segment {}", log_path.display()), e))?;
        Ok(Segment {
            base_offset,
            size_bytes: 0,
            stats: SegmentStats::empty(base_offset),
            index: OffsetIndex::create(&segment_path(dir, base_offset, INDEX_SUFFIX))?,
            time_index: TimeIndex::create(&segment_path(dir, base_offset, TIME_INDEX_SUFFIX))?,
            log_path: Arc::new(log_path),
            file: Arc::new(file),
        })
    }

    /// Opens an existing segment whose batches recovery will account for through `stats`.
    pub fn open(dir: &Path, base_offset: i64) -> Result<Segment> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let file = open_log(&log_path)?;
        let size_bytes = file
            .metadata()
            .map_err(|e| Error::io(format!("inspecting segment {}", log_path.display()), e))?
            .len();
        Ok(Segment {
            base_offset,
            size_bytes,
            stats: SegmentStats::empty(base_offset),
            index: OffsetIndex::open(&segment_path(dir, base_offset, INDEX_SUFFIX))?,
            time_index: TimeIndex::open(&segment_path(dir, base_offset, TIME_INDEX_SUFFIX))?,
            log_path: Arc::new(log_path),
            file: Arc::new(file),
        })
    }

    /// Installs a segment rewritten by the log cleaner: `file` is the new `.log` (already renamed to
    /// its final name and fsync'd), described by `stats`, whose indexes are replaced by the given
    /// entries. The caller holds the partition lock.
    pub fn install_cleaned(
        dir: &Path,
        base_offset: i64,
        file: File,
        size_bytes: u64,
        stats: SegmentStats,
        offset_entries: Vec<OffsetEntry>,
        time_entries: Vec<TimeEntry>,
    ) -> Result<Segment> {
        let mut index = OffsetIndex::open(&segment_path(dir, base_offset, INDEX_SUFFIX))?;
        index.replace_all(offset_entries)?;
        let mut time_index = TimeIndex::open(&segment_path(dir, base_offset, TIME_INDEX_SUFFIX))?;
        time_index.replace_all(time_entries)?;
        Ok(Segment {
            base_offset,
            size_bytes,
            stats,
            index,
            time_index,
            log_path: Arc::new(segment_path(dir, base_offset, LOG_SUFFIX)),
            file: Arc::new(file),
        })
    }

    /// The `.log` path.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// A shared handle on the `.log` file, e.g. to fsync it without the partition lock.
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// A lock-free view of the bytes written so far.
    pub fn view(&self) -> SegmentView {
        SegmentView {
            base_offset: self.base_offset,
            file: Arc::clone(&self.file),
            path: Arc::clone(&self.log_path),
            size_bytes: self.size_bytes,
        }
    }

    /// Whether the segment holds no batch.
    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    /// Writes batches (already carrying their final offsets) at the end of the file. On failure
    /// the file is cut back to its previous size so that no partial batch stays behind.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Err(e) = self.file.write_all_at(bytes, self.size_bytes) {
            let _ = self.file.set_len(self.size_bytes);
            return Err(Error::io(format!("writing segment {}", self.log_path.display()), e));
        }
        Ok(())
    }

    /// Accounts for one batch written at `position` and appends its index entries. An index write
    /// that fails is only logged: indexes are sparse hints that recovery rebuilds from the log.
    pub fn track_append(
        &mut self,
        header: &BatchHeader,
        position: u64,
        max_timestamp_ms: i64,
        index_interval_bytes: u32,
    ) {
        let (offset_entry, time_entry) = self.stats.observe(
            self.base_offset,
            header,
            position,
            max_timestamp_ms,
            index_interval_bytes,
        );
        self.size_bytes = position + header.total_bytes() as u64;
        let written = offset_entry
            .map_or(Ok(()), |entry| self.index.append(entry))
            .and_then(|()| time_entry.map_or(Ok(()), |entry| self.time_index.maybe_append(entry)));
        if let Err(error) = written {
            tracing::warn!(path = %self.log_path.display(), %error, "index entry not written; recovery will rebuild the index");
        }
    }

    /// A position at or before the batch holding `offset`.
    pub fn position_for_offset(&self, offset: i64) -> u64 {
        let relative = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        self.index.lookup(relative).map_or(0, |e| u64::from(e.position))
    }

    /// A position at or before the first batch that may hold a record with timestamp >= `timestamp_ms`.
    pub fn position_for_timestamp(&self, timestamp_ms: i64) -> u64 {
        match self.time_index.lookup(timestamp_ms) {
            Some(entry) => self.position_for_offset(self.base_offset + i64::from(entry.relative_offset)),
            None => 0,
        }
    }

    /// Whether an append of `bytes` holding offsets up to `last_offset` must go to a new segment.
    pub fn must_roll(&self, bytes: u64, last_offset: i64, now_ms: i64, segment_bytes: u64, segment_ms: i64) -> bool {
        if self.is_empty() {
            return false;
        }
        let too_big = self.size_bytes + bytes > segment_bytes;
        let too_old = self
            .stats
            .roll_basis_ms
            .is_some_and(|basis| now_ms.saturating_sub(basis) > segment_ms);
        let offsets_overflow = last_offset - self.base_offset > i64::from(i32::MAX);
        too_big || too_old || offsets_overflow || self.index.is_full() || self.time_index.is_full()
    }

    /// Cuts the `.log` file at `size_bytes`.
    pub fn truncate_to(&mut self, size_bytes: u64) -> Result<()> {
        self.file
            .set_len(size_bytes)
            .map_err(|e| Error::io(format!("truncating segment {}", self.log_path.display()), e))?;
        self.size_bytes = size_bytes;
        Ok(())
    }

    /// Fsyncs the `.log` file.
    pub fn sync_log(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("fsyncing segment {}", self.log_path.display()), e))
    }

    /// Fsyncs the `.log` file and both indexes.
    pub fn sync_all(&self) -> Result<()> {
        self.sync_log()?;
        self.index.sync()?;
        self.time_index.sync()
    }

    /// Deletes the segment's files, `.log` first so that a crash leaves only orphan indexes, which
    /// recovery removes. The caller fsyncs the directory.
    pub fn delete_files(&self) -> Result<()> {
        for path in [self.log_path.as_path(), self.index.path(), self.time_index.path()] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("deleting {}", path.display()), e)),
            }
        }
        Ok(())
    }
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(format!("opening segment {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_reject_strangers() {
        let path = segment_path(Path::new("/d"), 42, LOG_SUFFIX);
        assert_eq!(path, Path::new("/d/00000000000000000042.log"));
        assert_eq!(parse_base_offset("00000000000000000042.log", LOG_SUFFIX), Some(42));
        assert_eq!(parse_base_offset("42.log", LOG_SUFFIX), None);
        assert_eq!(parse_base_offset("0000000000000000004x.log", LOG_SUFFIX), None);
        assert_eq!(parse_base_offset("00000000000000000042.index", LOG_SUFFIX), None);
    }
}

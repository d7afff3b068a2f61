//! Opening a partition directory: lists segments, checks batches (every CRC in segments that may
//! hold unsynced writes), truncates a torn tail, rebuilds indexes and producer state (transactions
//! included: the same scan reads every transaction marker, so no `.txnindex` is kept; see
//! `txn.rs`), and restores the log start offset, so that the log is consistent before the first append.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::batch::{BatchHeader, HEADER_BYTES, LOG_OVERHEAD_BYTES};
use super::checkpoint::{self, CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE, TMP_SUFFIX};
use super::cleaner::{CleanerState, CLEANED_SUFFIX};
use super::config::LogConfig;
use super::flush::GroupCommit;
use super::index::OffsetEntry;
use super::partition::{Inner, PartitionLog, Shared};
use super::producer_state::ProducerStateTable;
use super::segment::{parse_base_offset, segment_path, Segment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
use super::signal::AppendSignal;
use super::time_index::TimeEntry;
use super::txn::{self, EndMarker, MAX_CONTROL_BATCH_BYTES};
use crate::error::{Error, Result};

/// Read buffer of the recovery scan.
const SCAN_BUFFER_BYTES: usize = 64 * 1024;
/// Offset of the first CRC-covered byte (`attributes`) in a v2 batch.
const CRC_START_BYTES: usize = 21;

/// Opens (creating if absent) and recovers the log in `dir`.
pub(super) fn open(dir: &Path, config: LogConfig, signal: AppendSignal) -> Result<PartitionLog> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        if let Some(parent) = dir.parent() {
            checkpoint::sync_dir(parent)?;
        }
    }
    // The marker goes first: a crash from here on must lead to a full recovery.
    let clean = checkpoint::remove(dir, CLEAN_SHUTDOWN_FILE)?;
    let recovery_point = if clean {
        i64::MAX
    } else {
        checkpoint::read_offset(dir, RECOVERY_POINT_FILE)
            .unwrap_or_else(|error| {
                tracing::warn!(dir = %dir.display(), %error, "ignoring the recovery point: every segment is checked");
                None
            })
            .unwrap_or(i64::MIN)
    };
    let checkpointed_start = checkpoint::read_offset(dir, LOG_START_OFFSET_FILE)?;

    let bases = list_segments(dir)?;
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    let mut producers = ProducerStateTable::default();
    let mut next_offset = i64::MIN;
    let mut verified: Vec<i64> = Vec::new();
    for (i, &base_offset) in bases.iter().enumerate() {
        if base_offset < next_offset {
            return Err(Error::CorruptLog {
                path: segment_path(dir, base_offset, LOG_SUFFIX).display().to_string(),
                reason: format!("segment starts below the previous segment's end offset {next_offset}"),
            });
        }
        let mut segment = Segment::open(dir, base_offset)?;
        let is_last = i + 1 == bases.len();
        // The last segment is checked on every start, even after a clean shutdown: it is where a
        // torn or damaged write would be, and checking it costs at most one segment read.
        let verify_crc = is_last || (!clean && base_offset >= recovery_point);
        let scan = scan_segment(&mut segment, verify_crc, &config, &mut producers)?;
        if verify_crc {
            verified.push(base_offset);
        }
        segment.index.replace_all(scan.offset_entries)?;
        segment.time_index.replace_all(scan.time_entries)?;
        let problem = scan.problem;
        let file_bytes = segment.size_bytes;
        next_offset = segment.stats.next_offset;
        segments.push(segment);
        if let Some(reason) = problem {
            let later: Vec<i64> = bases[i + 1..].to_vec();
            let later_bytes: u64 = later
                .iter()
                .map(|&b| fs::metadata(segment_path(dir, b, LOG_SUFFIX)).map_or(0, |m| m.len()))
                .sum();
            let segment = segments.last_mut().expect("just pushed");
            let bytes_dropped = file_bytes - scan.valid_bytes + later_bytes;
            let path = segment.log_path().display().to_string();
            if is_last {
                tracing::warn!(
                    path,
                    position = scan.valid_bytes,
                    bytes_dropped,
                    reason,
                    "truncating a torn tail"
                );
            } else {
                tracing::error!(
                    path,
                    position = scan.valid_bytes,
                    bytes_dropped,
                    segments_dropped = later.len(),
                    reason,
                    "corrupt batch before the last segment: truncating it and deleting every later segment, as Kafka does"
                );
            }
            segment.truncate_to(scan.valid_bytes)?;
            segment.sync_log()?;
            for base in later {
                for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                    remove_if_present(&segment_path(dir, base, suffix))?;
                }
            }
            checkpoint::sync_dir(dir)?;
            break;
        }
    }

    let mut log_start_offset = match (checkpointed_start, segments.first()) {
        (Some(start), Some(first)) => start.max(first.base_offset),
        (None, Some(first)) => first.base_offset,
        (start, None) => start.unwrap_or(0),
    };
    let log_end_offset = segments.last().map(|s| s.stats.next_offset);
    if log_end_offset.is_some_and(|end| end < log_start_offset) {
        // The tail lost in the crash held the start offset: start afresh there so that no offset
        // below it is ever reused.
        tracing::warn!(dir = %dir.display(), log_start_offset, ?log_end_offset, "log ends below its start offset; starting empty at the start offset");
        for segment in segments.drain(..) {
            segment.delete_files()?;
        }
        checkpoint::sync_dir(dir)?;
    }
    if segments.is_empty() {
        segments.push(Segment::create(dir, log_start_offset)?);
        checkpoint::sync_dir(dir)?;
    }
    log_start_offset = log_start_offset.max(segments[0].base_offset);
    producers.truncate_before(log_start_offset);
    // Everything kept is made durable below, so no marker holds the last stable offset any more.
    producers.on_high_watermark(segments.last().map_or(0, |s| s.stats.next_offset));

    // Whatever recovery kept is now made durable, so the high watermark starts at the log end.
    for segment in segments.iter().filter(|s| verified.contains(&s.base_offset)) {
        segment.sync_log()?;
    }
    let active_base = segments.last().map_or(0, |s| s.base_offset);
    checkpoint::write_offset(dir, RECOVERY_POINT_FILE, active_base)?;
    let log_end_offset = segments.last().map_or(0, |s| s.stats.next_offset);
    tracing::info!(dir = %dir.display(), clean, log_start_offset, log_end_offset, segments = segments.len(), "opened partition log");

    let inner = Inner {
        config,
        segments,
        log_start_offset,
        high_watermark: log_end_offset,
        producers,
        pending_sync: Vec::new(),
        recovery_point: active_base,
        last_flush_ms: None,
        cleaner: CleanerState::default(),
        closed: false,
    };
    let shared = Shared {
        dir: dir.to_path_buf(),
        signal,
        inner: Mutex::new(inner),
        commit: GroupCommit::new(log_end_offset),
    };
    Ok(PartitionLog {
        shared: Arc::new(shared),
    })
}

/// The base offsets of the segments in `dir`, ascending. Removes leftover checkpoint tmp files and
/// indexes without a `.log`; ignores, with a warning, files it does not recognise.
fn list_segments(dir: &Path) -> Result<Vec<i64>> {
    let mut logs = BTreeSet::new();
    let mut indexes = Vec::new();
    let mut removed = false;
    let entries = fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = parse_base_offset(&name, LOG_SUFFIX) {
            logs.insert(base);
        } else if let Some(base) =
            parse_base_offset(&name, INDEX_SUFFIX).or_else(|| parse_base_offset(&name, TIME_INDEX_SUFFIX))
        {
            indexes.push((base, entry.path()));
        } else if name.ends_with(TMP_SUFFIX) || name.ends_with(CLEANED_SUFFIX) {
            // A checkpoint or a cleaned segment whose rename never happened: the original stands.
            remove_if_present(&entry.path())?;
            removed = true;
        } else if ![LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE, CLEAN_SHUTDOWN_FILE].contains(&name.as_str()) {
            tracing::warn!(path = %entry.path().display(), "ignoring an unknown file in a partition directory");
        }
    }
    for (base, path) in indexes {
        if !logs.contains(&base) {
            tracing::warn!(path = %path.display(), "deleting an index without a segment");
            remove_if_present(&path)?;
            removed = true;
        }
    }
    if removed {
        checkpoint::sync_dir(dir)?;
    }
    Ok(logs.into_iter().collect())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("deleting {}", path.display()), e)),
    }
}

/// What a scan of one segment found.
struct Scan {
    /// Bytes of whole, sane batches from the start of the file.
    valid_bytes: u64,
    /// Why the scan stopped before the end of the file, if it did.
    problem: Option<String>,
    offset_entries: Vec<OffsetEntry>,
    time_entries: Vec<TimeEntry>,
}

/// Walks the batches of `segment` from its start, checking header sanity (and every CRC when
/// `verify_crc`), feeding its stats, its rebuilt indexes and the producer state.
fn scan_segment(
    segment: &mut Segment,
    verify_crc: bool,
    config: &LogConfig,
    producers: &mut ProducerStateTable,
) -> Result<Scan> {
    let file_bytes = segment.size_bytes;
    let base_offset = segment.base_offset;
    let path = segment.log_path().to_path_buf();
    let io_error = |e| Error::io(format!("recovering segment {}", path.display()), e);
    let file: Arc<File> = segment.file();
    let mut reader = BufReader::with_capacity(SCAN_BUFFER_BYTES, &*file);
    let mut scan = Scan {
        valid_bytes: 0,
        problem: None,
        offset_entries: Vec::new(),
        time_entries: Vec::new(),
    };
    let mut chunk = vec![0u8; SCAN_BUFFER_BYTES];
    let mut header_bytes = [0u8; HEADER_BYTES];
    let mut position = 0u64;
    while position < file_bytes {
        let remaining = file_bytes - position;
        if remaining < HEADER_BYTES as u64 {
            scan.problem = Some(format!("{remaining} bytes at the end are too short for a batch header"));
            break;
        }
        reader.read_exact(&mut header_bytes).map_err(io_error)?;
        let header = match check_header(&header_bytes, remaining, base_offset, segment.stats.next_offset) {
            Ok(header) => header,
            Err(reason) => {
                scan.problem = Some(reason);
                break;
            }
        };
        let body_bytes = header.total_bytes() - HEADER_BYTES;
        let mut marker: Option<EndMarker> = None;
        if header.is_control() {
            // Markers are read whole, checked or not: the transaction state needs their type.
            if header.total_bytes() > MAX_CONTROL_BATCH_BYTES {
                scan.problem = Some(format!(
                    "control batch at offset {} takes {} bytes, more than a marker may ({MAX_CONTROL_BATCH_BYTES})",
                    header.base_offset,
                    header.total_bytes()
                ));
                break;
            }
            let mut bytes = vec![0u8; header.total_bytes()];
            bytes[..HEADER_BYTES].copy_from_slice(&header_bytes);
            reader.read_exact(&mut bytes[HEADER_BYTES..]).map_err(io_error)?;
            match check_marker(&bytes, &header, verify_crc) {
                Ok(found) => marker = found,
                Err(reason) => {
                    scan.problem = Some(reason);
                    break;
                }
            }
        } else if verify_crc {
            let mut crc = crc32c::crc32c(&header_bytes[CRC_START_BYTES..]);
            let mut left = body_bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                reader.read_exact(&mut chunk[..n]).map_err(io_error)?;
                crc = crc32c::crc32c_append(crc, &chunk[..n]);
                left -= n;
            }
            if crc != header.crc {
                scan.problem = Some(format!("CRC mismatch in the batch at offset {}", header.base_offset));
                break;
            }
        } else {
            reader.seek_relative(body_bytes as i64).map_err(io_error)?;
        }
        let (offset_entry, time_entry) = segment.stats.observe(
            base_offset,
            &header,
            position,
            header.max_timestamp,
            config.index_interval_bytes,
        );
        scan.offset_entries.extend(offset_entry);
        if let Some(entry) = time_entry {
            if scan
                .time_entries
                .last()
                .is_none_or(|last| entry.timestamp_ms > last.timestamp_ms)
            {
                scan.time_entries.push(entry);
            }
        }
        match marker {
            Some(marker) => {
                producers.record_marker(&header, marker);
            }
            None => producers.record(&header),
        }
        position += header.total_bytes() as u64;
        scan.valid_bytes = position;
    }
    segment.size_bytes = scan.valid_bytes;
    Ok(scan)
}

/// Checks the CRC of a whole control batch when asked and returns its transaction marker (None
/// for another control type); the reason is prose for the recovery log.
fn check_marker(bytes: &[u8], header: &BatchHeader, verify_crc: bool) -> Result<Option<EndMarker>, String> {
    if verify_crc && crc32c::crc32c(&bytes[CRC_START_BYTES..]) != header.crc {
        return Err(format!("CRC mismatch in the batch at offset {}", header.base_offset));
    }
    txn::parse_marker(bytes).map_err(|e| format!("unreadable transaction marker: {e}"))
}

/// Parses and sanity-checks a stored batch header; the reason is prose for the recovery log.
fn check_header(buf: &[u8], remaining_bytes: u64, base_offset: i64, next_offset: i64) -> Result<BatchHeader, String> {
    let header = BatchHeader::parse(buf).map_err(|e| format!("unreadable batch header: {e}"))?;
    if header.magic != 2 {
        return Err(format!("batch has magic {}, not 2", header.magic));
    }
    if header.batch_length < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
        return Err(format!("batch length {} is shorter than a header", header.batch_length));
    }
    if header.total_bytes() as u64 > remaining_bytes {
        return Err(format!(
            "batch of {} bytes runs past the end of the file ({remaining_bytes} left)",
            header.total_bytes()
        ));
    }
    let expected = next_offset.max(base_offset);
    if header.last_offset_delta < 0 || header.base_offset < expected {
        return Err(format!(
            "batch at offset {} goes backwards (expected at least {expected})",
            header.base_offset
        ));
    }
    let last_offset = header.base_offset.checked_add(i64::from(header.last_offset_delta));
    if last_offset.is_none_or(|last| last - base_offset > i64::from(i32::MAX)) {
        return Err(format!(
            "batch at offset {} is too far from the segment base {base_offset}",
            header.base_offset
        ));
    }
    Ok(header)
}

//! Small crash-safe files in a partition directory: the log start offset, the recovery point and the
//! clean-shutdown marker, each written atomically (tmp file, fsync, rename, fsync of the directory).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Holds the log start offset raised by DeleteRecords; survives restarts.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";
/// Holds the offset below which every segment was fsync'd, so recovery can skip their CRC scan.
pub const RECOVERY_POINT_FILE: &str = "recovery-point-offset";
/// Present only between a clean `close` and the next `open`.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Suffix of a checkpoint being written; leftovers are deleted on open.
pub const TMP_SUFFIX: &str = ".tmp";

/// The format version written on the first line of every checkpoint.
const VERSION: &str = "0";
/// Checkpoints are a couple of lines; anything longer is not one of ours.
const MAX_CHECKPOINT_BYTES: u64 = 256;

/// Fsyncs a directory so that files created, renamed or deleted in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsyncing directory {}", dir.display()), e))
}

/// Replaces `dir/name` with `value` atomically and durably.
pub fn write_offset(dir: &Path, name: &str, value: i64) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let context = || format!("writing checkpoint {}", tmp.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io(context(), e))?;
    file.write_all(format!("{VERSION}\n{value}\n").as_bytes())
        .map_err(|e| Error::io(context(), e))?;
    file.sync_all().map_err(|e| Error::io(context(), e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| Error::io(format!("renaming checkpoint to {}", path.display()), e))?;
    sync_dir(dir)
}

/// Reads `dir/name`, or None when it does not exist. A damaged file is a `CorruptLog` error.
pub fn read_offset(dir: &Path, name: &str) -> Result<Option<i64>> {
    let path = dir.join(name);
    let corrupt = |reason: &str| Error::CorruptLog {
        path: path.display().to_string(),
        reason: reason.to_string(),
    };
    match fs::metadata(&path) {
        Ok(meta) if meta.len() > MAX_CHECKPOINT_BYTES => return Err(corrupt("checkpoint file is too large")),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading checkpoint {}", path.display()), e)),
    }
    let text = fs::read_to_string(&path).map_err(|e| Error::io(format!("reading checkpoint {}", path.display()), e))?;
    let mut lines = text.lines();
    if lines.next() != Some(VERSION) {
        return Err(corrupt("unknown checkpoint version"));
    }
    let value = lines.next().and_then(|line| line.trim().parse::<i64>().ok());
    match (value, lines.next()) {
        (Some(value), None) => Ok(Some(value)),
        _ => Err(corrupt("checkpoint does not hold exactly one offset")),
    }
}

/// Deletes `dir/name` if present and fsyncs the directory. Returns whether it existed.
pub fn remove(dir: &Path, name: &str) -> Result<bool> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("deleting {}", path.display()), e)),
    }
}

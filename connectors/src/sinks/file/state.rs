//! Durable, atomic state files for the file sink: a state file is replaced by writing a temp file,
//! fsyncing it, renaming it over the old one and fsyncing the directory, so a crash leaves either
//! the old state or the new one.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Reads the state at `path`, None when there is none.
pub(super) fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::Internal(format!(
            "the state file {} does not parse ({e}); it is written only by Brook",
            path.display()
        ))
    })
}

/// Replaces the state at `path` with `state`, atomically and durably.
pub(super) fn write<T: Serialize>(path: &Path, state: &T) -> Result<()> {
    let bytes = serde_json::to_vec(state).map_err(|e| Error::Internal(format!("encoding a state file: {e}")))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = fs::File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| Error::io(format!("renaming {} to {}", tmp.display(), path.display()), e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Fsyncs a directory, so that renames and new files in it survive a crash.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing the directory {}", dir.display()), e))
}

/// Creates `dir` and its parents, fsyncing the parent of each directory created.
pub(super) fn create_dirs(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::io(format!("creating the directory {}", dir.display()), e)),
    }
    sync_dir(dir.parent().unwrap_or(Path::new(".")))
}

/// Offsets as stored: a list of (partition, next offset) pairs.
pub(super) fn offsets_vec(offsets: &BTreeMap<i32, i64>) -> Vec<(i32, i64)> {
    offsets.iter().map(|(p, o)| (*p, *o)).collect()
}

/// Raises each partition's offset in `offsets` to the one given in `next`.
pub(super) fn advance(offsets: &mut BTreeMap<i32, i64>, next: &[(i32, i64)]) {
    for (p, o) in next {
        let entry = offsets.entry(*p).or_insert(*o);
        *entry = (*entry).max(*o);
    }
}

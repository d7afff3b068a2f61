//! Sparse index files of a segment (`.index`, and the generic file behind `.timeindex`): the
//! entries live in memory as a Vec (bounded like Kafka's `segment.index.bytes`) and are appended to
//! the file without fsync, because indexes are derived data that recovery rebuilds from the log.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Largest index file, as Kafka's default `segment.index.bytes`: a full index rolls the segment.
pub const MAX_INDEX_FILE_BYTES: usize = 10 * 1024 * 1024;

/// One fixed-size entry of an index file.
pub trait IndexEntry: Copy + Eq + std::fmt::Debug {
    /// Size of the entry on disk.
    const BYTES: usize;
    /// Writes the entry big-endian into `out`, which is `BYTES` long.
    fn encode(&self, out: &mut [u8]);
    /// Reads an entry from `buf`, which is `BYTES` long.
    fn decode(buf: &[u8]) -> Self;
}

/// An offset index entry: the last offset of a batch (relative to the segment's base offset) and the
/// batch's byte position in the `.log` file, as Kafka writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Batch last offset minus segment base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment.
    pub position: u32,
}

impl IndexEntry for OffsetEntry {
    const BYTES: usize = 8;

    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
    }

    fn decode(buf: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]),
            position: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        }
    }
}

/// An index file and its entries, held in memory in file order.
#[derive(Debug)]
pub struct IndexFile<E: IndexEntry> {
    path: PathBuf,
    file: File,
    entries: Vec<E>,
}

impl<E: IndexEntry> IndexFile<E> {
    /// The most entries one file holds.
    pub const MAX_ENTRIES: usize = MAX_INDEX_FILE_BYTES / E::BYTES;

    /// Opens or creates the file; its entries stay unknown (empty) until `replace_all`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(format!("opening index {}", path.display()), e))?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            file,
            entries: Vec::new(),
        })
    }

    /// Creates the file empty, discarding any previous content.
    pub fn create(path: &Path) -> Result<Self> {
        let index = Self::open(path)?;
        index
            .file
            .set_len(0)
            .map_err(|e| Error::io(format!("truncating index {}", path.display()), e))?;
        Ok(index)
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    /// The last entry, if any.
    pub fn last(&self) -> Option<E> {
        self.entries.last().copied()
    }

    /// Whether the file reached its bound.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= Self::MAX_ENTRIES
    }

    /// Appends one entry to memory and to the file (not fsync'd). Ignored when full.
    pub fn append(&mut self, entry: E) -> Result<()> {
        if self.is_full() {
            return Ok(());
        }
        let mut buf = [0u8; 16];
        entry.encode(&mut buf[..E::BYTES]);
        let position = (self.entries.len() * E::BYTES) as u64;
        self.file
            .write_all_at(&buf[..E::BYTES], position)
            .map_err(|e| Error::io(format!("writing index {}", self.path.display()), e))?;
        self.entries.push(entry);
        Ok(())
    }

    /// Installs entries rebuilt from the log; rewrites the file only when it differs. Returns whether
    /// the file was rewritten.
    pub fn replace_all(&mut self, mut entries: Vec<E>) -> Result<bool> {
        entries.truncate(Self::MAX_ENTRIES);
        let mut expected = vec![0u8; entries.len() * E::BYTES];
        for (entry, out) in entries.iter().zip(expected.chunks_exact_mut(E::BYTES)) {
            entry.encode(out);
        }
        let context = |what: &str| format!("{what} index {}", self.path.display());
        let on_disk_bytes = self
            .file
            .metadata()
            .map_err(|e| Error::io(context("inspecting"), e))?
            .len();
        let mut same = on_disk_bytes == expected.len() as u64;
        if same && !expected.is_empty() {
            let mut actual = vec![0u8; expected.len()];
            self.file
                .read_exact_at(&mut actual, 0)
                .map_err(|e| Error::io(context("reading"), e))?;
            same = actual == expected;
        }
        if !same {
            self.file.set_len(0).map_err(|e| Error::io(context("truncating"), e))?;
            self.file
                .write_all_at(&expected, 0)
                .map_err(|e| Error::io(context("writing"), e))?;
        }
        self.entries = entries;
        Ok(!same)
    }

    /// Fsyncs the file.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| Error::io(format!("fsyncing index {}", self.path.display()), e))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The offset index of a segment.
pub type OffsetIndex = IndexFile<OffsetEntry>;

impl OffsetIndex {
    /// The last entry whose relative offset is at most `relative_offset`: a batch position at or before
    /// the batch holding that offset.
    pub fn lookup(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let after = self.entries.partition_point(|e| e.relative_offset <= relative_offset);
        after.checked_sub(1).map(|i| self.entries[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_the_last_entry_at_or_before_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = OffsetIndex::create(&dir.path().join("0.index")).unwrap();
        for (relative_offset, position) in [(4, 100), (9, 250), (20, 900)] {
            index
                .append(OffsetEntry {
                    relative_offset,
                    position,
                })
                .unwrap();
        }
        assert_eq!(index.lookup(0), None);
        assert_eq!(index.lookup(3), None);
        assert_eq!(index.lookup(4).unwrap().position, 100);
        assert_eq!(index.lookup(8).unwrap().position, 100);
        assert_eq!(index.lookup(9).unwrap().position, 250);
        assert_eq!(index.lookup(19).unwrap().position, 250);
        assert_eq!(index.lookup(u32::MAX).unwrap().position, 900);
    }

    #[test]
    fn replace_all_rewrites_only_a_differing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let entries = vec![
            OffsetEntry {
                relative_offset: 1,
                position: 0,
            },
            OffsetEntry {
                relative_offset: 5,
                position: 80,
            },
        ];
        let mut index = OffsetIndex::create(&path).unwrap();
        for entry in &entries {
            index.append(*entry).unwrap();
        }
        let mut reopened = OffsetIndex::open(&path).unwrap();
        assert!(!reopened.replace_all(entries.clone()).unwrap());
        assert_eq!(reopened.entries(), &entries[..]);
        assert!(reopened.replace_all(entries[..1].to_vec()).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
    }
}

//! How the tailer knows a file: its device and inode, a fingerprint of its first bytes, and a
//! generation counting the times that identity started over (truncation), which together name
//! the file's position stream.
//!
//! The fingerprint is the CRC-32C of the file's first line including its `\n`, or of its first
//! `fingerprint_bytes` bytes when the first line is longer. It is assigned only once those bytes
//! are all there (a `\n` was seen, or the file holds `fingerprint_bytes` bytes), so it never
//! changes while the file grows; a file too short for it is not read yet (nothing in it is a
//! complete line anyway) unless it is being finished (rotated away or deleted), when what it
//! holds is fingerprinted. A gzip file is complete when read: its fingerprint covers its first
//! `fingerprint_bytes` compressed bytes, or all of them.
//!
//! A [`Tail`] checks the other end: the bytes just before the offset read so far. A file
//! truncated and written again past that offset keeps its length story consistent, but not
//! those bytes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

/// A file's device and inode: unique among the files that exist at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    /// The device number.
    pub dev: u64,
    /// The inode number.
    pub ino: u64,
}

impl FileKey {
    /// The key of a file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt;
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The identity of one position stream: a file's key, its fingerprint and its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ident {
    /// The CRC-32C fingerprint.
    pub crc: u32,
    /// How many earlier streams of the same key and fingerprint the tailer remembers.
    pub gen: u32,
}

/// The most bytes before an offset that a [`Tail`] covers.
pub const TAIL_BYTES: usize = 64;

/// A check of the bytes just before an offset: if they changed, the file was truncated and
/// written again (even past that offset), which its length alone cannot tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tail {
    /// The CRC-32C of the bytes.
    pub crc: u32,
    /// How many bytes end at the offset (at most [`TAIL_BYTES`]; fewer only near the start).
    pub len: u32,
}

impl Tail {
    /// The tail of the input ending at `end`, if `window` (the bytes from stream offset
    /// `window_start`) holds it whole.
    pub fn within(window: &[u8], window_start: u64, end: u64) -> Option<Tail> {
        let from = end.saturating_sub(TAIL_BYTES as u64);
        if end == 0 || from < window_start || end > window_start + window.len() as u64 {
            return None;
        }
        let bytes = &window[(from - window_start) as usize..(end - window_start) as usize];
        Some(Tail {
            crc: crc32c::crc32c(bytes),
            len: bytes.len() as u32,
        })
    }

    /// Whether `file` still holds these bytes before `end`.
    pub fn holds(&self, file: &File, end: u64) -> io::Result<bool> {
        let Some(from) = end.checked_sub(u64::from(self.len)) else {
            return Ok(false);
        };
        let mut buf = vec![0; self.len as usize];
        Ok(read_full_at(file, &mut buf, from)? == buf.len() && crc32c::crc32c(&buf) == self.crc)
    }
}

/// Reads into `buf` from `offset` until it is full or the file ends; the count read.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The `Position.stream` of a file's stream: stable across restarts, renames and rotations.
pub fn stream_name(key: FileKey, ident: Ident) -> String {
    format!("file:{:x}:{:x}:{:08x}:{}", key.dev, key.ino, ident.crc, ident.gen)
}

/// How a fingerprint is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A growing text file: its first line, or its first `fingerprint_bytes`; None until there.
    Growing,
    /// A text file that will not grow any more: as `Growing`, else what it holds.
    Finished,
    /// A gzip file: its first `fingerprint_bytes` bytes, or all of them.
    Gzip,
}

/// The fingerprint of `file`, of length `len`, by `rule`; None if it cannot be taken yet.
pub fn fingerprint(file: &File, len: u64, fingerprint_bytes: usize, rule: Rule) -> io::Result<Option<u32>> {
    let mut buf = vec![0; len.min(fingerprint_bytes as u64) as usize];
    let got = read_full_at(file, &mut buf, 0)?;
    buf.truncate(got);
    Ok(fingerprint_of(&buf, fingerprint_bytes, rule))
}

/// The fingerprint of a file whose first bytes are `head` (at most `fingerprint_bytes`).
pub fn fingerprint_of(head: &[u8], fingerprint_bytes: usize, rule: Rule) -> Option<u32> {
    if rule != Rule::Gzip {
        if let Some(nl) = head.iter().position(|b| *b == b'\n') {
            return Some(crc32c::crc32c(&head[..=nl]));
        }
    }
    if head.len() >= fingerprint_bytes || (rule != Rule::Growing && !head.is_empty()) {
        return Some(crc32c::crc32c(head));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growing_file_is_fingerprinted_once_its_first_line_or_bound_is_there() {
        let g = Rule::Growing;
        assert_eq!(fingerprint_of(b"abc", 8, g), None);
        let first = fingerprint_of(b"abc\n", 8, g);
        assert_eq!(first, Some(crc32c::crc32c(b"abc\n")));
        assert_eq!(fingerprint_of(b"abc\ndef", 8, g), first);
        assert_eq!(fingerprint_of(b"abcdefgh", 8, g), Some(crc32c::crc32c(b"abcdefgh")));
        assert_eq!(fingerprint_of(b"", 8, Rule::Finished), None);
        assert_eq!(fingerprint_of(b"ab", 8, Rule::Finished), Some(crc32c::crc32c(b"ab")));
        assert_eq!(fingerprint_of(b"a\nb", 8, Rule::Finished), Some(crc32c::crc32c(b"a\n")));
        assert_eq!(fingerprint_of(b"a\nb", 8, Rule::Gzip), Some(crc32c::crc32c(b"a\nb")));
        let name = stream_name(FileKey { dev: 2049, ino: 77 }, Ident { crc: 0xab, gen: 1 });
        assert_eq!(name, "file:801:4d:000000ab:1");
    }

    #[test]
    fn a_tail_covers_the_bytes_before_an_offset_when_the_window_holds_them() {
        let near_start = b"0123456789";
        assert_eq!(
            Tail::within(near_start, 0, 5),
            Some(Tail {
                crc: crc32c::crc32c(b"01234"),
                len: 5
            })
        );
        assert_eq!(Tail::within(near_start, 0, 11), None);
        assert_eq!(Tail::within(near_start, 0, 0), None);
        let window: Vec<u8> = (0..100).collect();
        let tail = Tail::within(&window, 1000, 1080).unwrap();
        assert_eq!(
            tail,
            Tail {
                crc: crc32c::crc32c(&window[16..80]),
                len: 64
            }
        );
        assert_eq!(Tail::within(&window, 1000, 1050), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [&[9u8; 1000][..], &window].concat()).unwrap();
        let file = File::open(&path).unwrap();
        assert!(tail.holds(&file, 1080).unwrap());
        assert!(!tail.holds(&file, 1081).unwrap());
    }
}

//! The file source's checkpoint (per file: identity, last path, offset after the last returned
//! record) and the bounded memory of identities that ended, which keeps stream names unique
//! when an inode is reused and keeps finished gzip files from being read twice.

use serde::{Deserialize, Serialize};

use super::identity::{FileKey, Ident, Tail};

/// The checkpoint format's version.
pub const VERSION: u32 = 1;

/// How long an ended identity is remembered (7 days).
pub const KEEP_ENDED_MS: u64 = 7 * 24 * 3600 * 1000;

/// The most ended identities remembered; the oldest are forgotten first.
pub const MAX_ENDED: usize = 4096;

/// The most finished gzip files remembered; the longest unseen are forgotten first.
pub const MAX_GZIP_DONE: usize = 4096;

/// The checkpoint as JSON. Unknown fields are ignored, so that a newer Brook's checkpoint
/// still resumes an older one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The format's version, [`VERSION`].
    pub version: u32,
    /// The files being read.
    pub files: Vec<FileEntry>,
    /// Identities whose streams ended (the file was dropped or started over).
    #[serde(default)]
    pub ended: Vec<Ended>,
    /// Gzip files read to their end.
    #[serde(default)]
    pub gzip_done: Vec<GzipDone>,
}

/// One file being read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its key.
    #[serde(flatten)]
    pub key: FileKey,
    /// Its fingerprint; None when it has none yet, and is then read from its start.
    pub crc: Option<u32>,
    /// Its generation.
    pub gen: u32,
    /// Where it was last seen (lossy UTF-8).
    pub path: String,
    /// The stream offset after the last returned item (decompressed, for gzip).
    pub offset: u64,
    /// The check of the bytes before `offset`, for text files when known.
    #[serde(default)]
    pub tail: Option<Tail>,
    /// Whether it is a gzip file.
    #[serde(default)]
    pub gzip: bool,
}

/// An identity whose stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    /// The file's key.
    #[serde(flatten)]
    pub key: FileKey,
    /// Its fingerprint.
    pub crc: u32,
    /// Its generation.
    pub gen: u32,
    /// When it ended, in ms since the epoch.
    pub at_ms: u64,
}

/// A gzip file read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GzipDone {
    /// Its key.
    #[serde(flatten)]
    pub key: FileKey,
    /// Its fingerprint.
    pub crc: u32,
    /// Its length in bytes.
    pub len: u64,
    /// When a scan last saw it, in ms since the epoch.
    pub seen_ms: u64,
}

/// What the tailer remembers of streams that ended and gzip files it finished.
#[derive(Debug, Default)]
pub struct History {
    /// Ended identities, oldest first.
    pub ended: Vec<Ended>,
    /// Finished gzip files.
    pub gzip_done: Vec<GzipDone>,
}

impl History {
    /// The generation a new stream of `key` and fingerprint `crc` takes: one past the highest
    /// remembered, so that its name was never used.
    pub fn next_gen(&self, key: FileKey, crc: u32) -> u32 {
        self.ended
            .iter()
            .filter(|e| e.key == key && e.crc == crc)
            .map(|e| e.gen.saturating_add(1))
            .max()
            .unwrap_or(0)
    }

    /// Remembers that the stream of `key` and `ident` ended at `now_ms`.
    pub fn end(&mut self, key: FileKey, ident: Ident, now_ms: u64) {
        self.ended.push(Ended {
            key,
            crc: ident.crc,
            gen: ident.gen,
            at_ms: now_ms,
        });
        if self.ended.len() > MAX_ENDED {
            let excess = self.ended.len() - MAX_ENDED;
            self.ended.drain(..excess);
        }
    }

    /// Whether the gzip file of `key` and length `len` was finished; notes that it was seen.
    pub fn gzip_is_done(&mut self, key: FileKey, len: u64, now_ms: u64) -> bool {
        match self.gzip_done.iter_mut().find(|g| g.key == key && g.len == len) {
            Some(g) => {
                g.seen_ms = now_ms;
                true
            }
            None => false,
        }
    }

    /// Remembers a finished gzip file.
    pub fn gzip_finished(&mut self, key: FileKey, crc: u32, len: u64, now_ms: u64) {
        self.gzip_done.retain(|g| g.key != key);
        self.gzip_done.push(GzipDone {
            key,
            crc,
            len,
            seen_ms: now_ms,
        });
        if self.gzip_done.len() > MAX_GZIP_DONE {
            self.gzip_done.sort_by_key(|g| std::cmp::Reverse(g.seen_ms));
            self.gzip_done.truncate(MAX_GZIP_DONE);
        }
    }

    /// Forgets what ended, or was last seen, longer than [`KEEP_ENDED_MS`] before `now_ms`.
    pub fn prune(&mut self, now_ms: u64) {
        let cutoff = now_ms.saturating_sub(KEEP_ENDED_MS);
        self.ended.retain(|e| e.at_ms >= cutoff);
        self.gzip_done.retain(|g| g.seen_ms >= cutoff);
    }
}

/// Now, in ms since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_grow_past_every_remembered_stream_and_old_ones_are_forgotten() {
        let key = FileKey { dev: 1, ino: 2 };
        let mut h = History::default();
        assert_eq!(h.next_gen(key, 7), 0);
        h.end(key, Ident { crc: 7, gen: 0 }, 1000);
        h.end(key, Ident { crc: 7, gen: 3 }, 2000);
        h.end(key, Ident { crc: 8, gen: 9 }, 2000);
        assert_eq!(h.next_gen(key, 7), 4);
        h.prune(1500 + KEEP_ENDED_MS);
        assert_eq!(h.ended.len(), 2);
        for i in 0..MAX_ENDED as u32 {
            h.end(FileKey { dev: 9, ino: 9 }, Ident { crc: 1, gen: i }, 3000);
        }
        assert_eq!(h.ended.len(), MAX_ENDED);
        assert_eq!(h.next_gen(key, 7), 0);
    }

    #[test]
    fn the_checkpoint_round_trips_through_json() {
        let cp = Checkpoint {
            version: VERSION,
            files: vec![FileEntry {
                key: FileKey { dev: 1, ino: 2 },
                crc: Some(3),
                gen: 0,
                path: "/var/log/a.log".into(),
                offset: 42,
                tail: Some(Tail { crc: 9, len: 10 }),
                gzip: false,
            }],
            ended: vec![],
            gzip_done: vec![GzipDone {
                key: FileKey { dev: 1, ino: 5 },
                crc: 6,
                len: 7,
                seen_ms: 8,
            }],
        };
        let json = serde_json::to_value(&cp).unwrap();
        assert_eq!(json["files"][0]["ino"], 2);
        assert_eq!(serde_json::from_value::<Checkpoint>(json).unwrap(), cp);
    }
}

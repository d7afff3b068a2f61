//! The tailer: follows the files a glob matches through growth, rotation, truncation and
//! deletion, and turns their lines into items with positions a checkpoint can resume from.
//!
//! It is a plain blocking component driven by its caller with an explicit clock: `fill` does the
//! file I/O (a glob rescan at most every poll interval unless forced, then one bounded read per
//! file), `take` hands out parsed items without I/O. The file source runs `fill` on tokio's
//! blocking pool; tests drive it directly.
//!
//! - Rename-and-create rotation: the renamed file keeps its identity; if it left the glob it is
//!   read to its end through its handle, finished once quiet for a poll interval (its last line
//!   then counts even without a newline) and dropped. The new file is picked up by the rescan.
//! - Truncation (copytruncate included): a file shorter than the offset read is read again from
//!   0 as a new stream (a new fingerprint, or the same one with the next generation), so the
//!   positions of one stream never go back. Lines written between the copy and the truncation,
//!   or enough lines to pass the old offset before the tailer looks, are lost: that is the race
//!   copytruncate has by design.
//! - Deletion: what is left is read through the open handle, then the file is dropped.
//! - `*.gz` files matching the glob are read once, whole and decompressed, when their size held
//!   still across two rescans, and remembered as done.
//! - At most `max_open_files` handles are open: when more files match, files that were read to
//!   their end are closed (least recently read first) and opened again when they grow. A closed file that is rotated
//!   away is found again in its directory by its inode; one deleted while closed loses what was
//!   written to it after it was closed.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checkpoint::{self, Checkpoint, History};
use super::identity::{fingerprint, FileKey, Ident, Rule};
use super::tracked::{Env, Tracked};
use crate::error::{Error, Result};
use crate::parse::Parser;
use crate::source::SourceItem;

/// Where files found at the first start (without a checkpoint) are read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// From their first line.
    #[default]
    Beginning,
    /// From their end (after their last complete line); what is appended afterwards is read.
    End,
}

/// The tailer's settings.
#[derive(Debug, Clone)]
pub struct TailerOptions {
    /// The absolute glob pattern of the files to read.
    pub pattern: String,
    /// Where files found at the first start are read from.
    pub start: StartAt,
    /// The rescan interval, also how long a file that left the glob must be quiet to finish.
    pub poll_interval: Duration,
    /// The bound on a fingerprint, in bytes.
    pub fingerprint_bytes: usize,
    /// The bound on open files.
    pub max_open_files: usize,
    /// The bound on one read, in bytes.
    pub read_batch_bytes: usize,
}

/// Follows the files of a glob.
pub struct Tailer {
    options: TailerOptions,
    parser: Arc<Parser>,
    files: Vec<Tracked>,
    history: History,
    /// Gzip files waiting for their size to hold still: key to the length last seen.
    gzip_seen: HashMap<FileKey, u64>,
    last_scan: Option<Instant>,
    /// Where the next fill and take start among the files, so that none starves.
    cursor: usize,
    tick: u64,
}

impl Tailer {
    /// A tailer resuming from `checkpoint` (None on a first run); scans the glob (blocking I/O).
    pub fn open(
        options: TailerOptions,
        parser: Arc<Parser>,
        checkpoint: Option<&serde_json::Value>,
        now: Instant,
    ) -> Result<Tailer> {
        let mut tailer = Tailer {
            options,
            parser,
            files: Vec::new(),
            history: History::default(),
            gzip_seen: HashMap::new(),
            last_scan: None,
            cursor: 0,
            tick: 0,
        };
        match checkpoint.filter(|c| !c.is_null()) {
            None => tailer.scan(now, true)?,
            Some(value) => {
                let cp: Checkpoint = serde_json::from_value(value.clone())
                    .map_err(|e| Error::Internal(format!("the file source's checkpoint does not parse: {e}")))?;
                if cp.version != checkpoint::VERSION {
                    return Err(Error::Internal(format!(
                        "the file source's checkpoint has version {}, this Brook reads version {}",
                        cp.version,
                        checkpoint::VERSION
                    )));
                }
                tailer.restore(cp, now)?;
                tailer.scan(now, false)?;
            }
        }
        Ok(tailer)
    }

    /// Rescans the glob when due (or when `force`), then reads one bounded chunk of each file
    /// until `max_items` items are pending.
    pub fn fill(&mut self, now: Instant, max_items: usize, force: bool) -> Result<()> {
        let due = self
            .last_scan
            .is_none_or(|t| now.duration_since(t) >= self.options.poll_interval);
        if force || due {
            self.scan(now, false)?;
        }
        self.read(now, max_items.max(1));
        self.reap();
        Ok(())
    }

    /// Up to `max_items` parsed items, without I/O; the checkpoint covers them afterwards.
    pub fn take(&mut self, max_items: usize) -> Vec<SourceItem> {
        let mut out = Vec::new();
        let n = self.files.len();
        for k in 0..n {
            if out.len() >= max_items {
                break;
            }
            self.files[(self.cursor + k) % n].take_into(max_items, &mut out);
        }
        self.reap();
        out
    }

    /// `fill` with a forced rescan, then `take`.
    pub fn poll(&mut self, now: Instant, max_items: usize) -> Result<Vec<SourceItem>> {
        self.fill(now, max_items, true)?;
        Ok(self.take(max_items))
    }

    /// The state covering every item taken so far.
    pub fn checkpoint(&self) -> serde_json::Value {
        let cp = Checkpoint {
            version: checkpoint::VERSION,
            files: self.files.iter().map(Tracked::entry).collect(),
            ended: self.history.ended.clone(),
            gzip_done: self.history.gzip_done.clone(),
        };
        serde_json::to_value(cp).unwrap_or(serde_json::Value::Null)
    }

    /// The earliest time an open multi-line record times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.files.iter().filter_map(Tracked::deadline).min()
    }

    /// The directory to watch for changes, and whether to watch it recursively (when the
    /// glob has wildcards above the file name).
    pub fn watch_root(&self) -> (PathBuf, bool) {
        watch_root(&self.options.pattern)
    }

    /// How many files are followed, and how many of them are open.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.files.len(),
            self.files.iter().filter(|t| t.handle.is_some()).count(),
        )
    }

    fn env(&mut self, now: Instant) -> (&mut Vec<Tracked>, Env<'_>) {
        (
            &mut self.files,
            Env {
                parser: &self.parser,
                history: &mut self.history,
                fingerprint_bytes: self.options.fingerprint_bytes,
                read_batch_bytes: self.options.read_batch_bytes,
                quiet: self.options.poll_interval,
                now,
                now_ms: checkpoint::now_ms(),
            },
        )
    }

    /// Picks up the files of a checkpoint wherever they are now.
    fn restore(&mut self, cp: Checkpoint, now: Instant) -> Result<()> {
        self.history.ended = cp.ended;
        self.history.gzip_done = cp.gzip_done;
        self.history.prune(checkpoint::now_ms());
        let matches = self.glob();
        for entry in &cp.files {
            match locate(entry.key, Path::new(&entry.path), &matches) {
                Some((path, in_glob)) => {
                    let mut t = Tracked::restored(entry, path, &self.parser);
                    if !in_glob {
                        t.orphan_since = Some(now);
                    }
                    self.files.push(t);
                }
                None => {
                    tracing::info!(path = %entry.path, offset = entry.offset, "a file of the checkpoint is gone");
                    if let Some(crc) = entry.crc {
                        let ident = Ident { crc, gen: entry.gen };
                        self.history.end(entry.key, ident, checkpoint::now_ms());
                    }
                }
            }
        }
        Ok(())
    }

    /// Matches the glob: follows new files, notes files that left it.
    fn scan(&mut self, now: Instant, initial: bool) -> Result<()> {
        self.last_scan = Some(now);
        let matches = self.glob();
        let now_ms = checkpoint::now_ms();
        let mut by_key: HashMap<FileKey, usize> = HashMap::new();
        for (i, (_, meta)) in matches.iter().enumerate() {
            by_key.entry(FileKey::of(meta)).or_insert(i);
        }
        for t in self.files.iter_mut().filter(|t| !t.done) {
            if let Some(&i) = by_key.get(&t.key) {
                t.path.clone_from(&matches[i].0);
                if t.orphan_since.take().is_some() {
                    tracing::info!(path = %t.path.display(), "file is back in the glob");
                }
                continue;
            }
            if t.orphan_since.is_some() {
                continue;
            }
            if t.handle.is_some() {
                tracing::info!(path = %t.path.display(), "file left the glob (rotated or deleted), reading it to its end");
                t.orphan_since = Some(now);
                continue;
            }
            match locate(t.key, &t.path, &[]) {
                Some((path, _)) => {
                    tracing::info!(from = %t.path.display(), to = %path.display(), "closed file was rotated, reading it to its end");
                    t.path = path;
                    t.orphan_since = Some(now);
                }
                None => {
                    tracing::warn!(path = %t.path.display(), offset = t.returned, len = t.len,
                        "closed file is gone; what was written after it was closed is lost");
                    t.finish(now);
                }
            }
        }
        let known: std::collections::HashSet<FileKey> = self.files.iter().map(|t| t.key).collect();
        let mut gzip_seen = HashMap::new();
        for (path, meta) in &matches {
            let key = FileKey::of(meta);
            if known.contains(&key) || by_key.get(&key).is_some_and(|&i| matches[i].0 != *path) {
                continue;
            }
            if is_gzip(path) {
                if self.history.gzip_is_done(key, meta.len(), now_ms) {
                    continue;
                }
                if initial && self.options.start == StartAt::End {
                    self.skip_gzip(key, path, meta.len(), now_ms);
                    continue;
                }
                if self.gzip_seen.get(&key) == Some(&meta.len()) {
                    tracing::info!(path = %path.display(), "reading gzip file");
                    let t = Tracked::new(key, path.clone(), true, &self.parser, 0, None);
                    self.files.push(with_len(t, meta.len()));
                } else {
                    gzip_seen.insert(key, meta.len());
                }
                continue;
            }
            let (offset, ident, before) = if initial && self.options.start == StartAt::End {
                match self.end_of(key, path, meta.len()) {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot read file");
                        (0, None, Vec::new())
                    }
                }
            } else {
                (0, None, Vec::new())
            };
            tracing::info!(path = %path.display(), offset, "following file");
            let t = Tracked::new(key, path.clone(), false, &self.parser, offset, ident);
            self.files.push(if offset > 0 { t.at_end(&before) } else { t });
        }
        self.gzip_seen = gzip_seen;
        self.history.prune(now_ms);
        Ok(())
    }

    /// Where a file found at the first start with `start: end` is read from: after its last
    /// complete line (within the last `max_line_bytes`), with its identity and the bytes read
    /// before that offset.
    fn end_of(&mut self, key: FileKey, path: &Path, len: u64) -> io::Result<(u64, Option<Ident>, Vec<u8>)> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open(path)?;
        let tail_len = len.min(self.parser.config().max_line_bytes as u64 + 1);
        let mut tail = vec![0; tail_len as usize];
        file.read_exact_at(&mut tail, len - tail_len)?;
        let offset = match tail.iter().rposition(|b| *b == b'\n') {
            Some(nl) => len - tail_len + nl as u64 + 1,
            None if tail_len == len => 0,
            None => len,
        };
        let crc = fingerprint(&file, len, self.options.fingerprint_bytes, Rule::Growing)?;
        tail.truncate((offset - (len - tail_len)) as usize);
        match crc {
            Some(crc) if offset > 0 => Ok((
                offset,
                Some(Ident {
                    crc,
                    gen: self.history.next_gen(key, crc),
                }),
                tail,
            )),
            _ => Ok((0, None, Vec::new())),
        }
    }

    /// Marks a gzip file found at the first start with `start: end` as done without reading it.
    fn skip_gzip(&mut self, key: FileKey, path: &Path, len: u64, now_ms: u64) {
        let crc = std::fs::File::open(path)
            .and_then(|f| fingerprint(&f, len, self.options.fingerprint_bytes, Rule::Gzip))
            .ok()
            .flatten();
        self.history.gzip_finished(key, crc.unwrap_or(0), len, now_ms);
    }

    /// One bounded read of each file with nothing pending, until `max_items` are pending.
    fn read(&mut self, now: Instant, max_items: usize) {
        self.tick += 1;
        let tick = self.tick;
        let max_open = self.options.max_open_files;
        let n = self.files.len();
        let start = self.cursor;
        self.cursor = if n == 0 { 0 } else { (self.cursor + 1) % n };
        let (files, mut env) = self.env(now);
        for t in files.iter_mut() {
            t.flush_due(now);
        }
        let mut pending: usize = files.iter().map(|t| t.pending.len()).sum();
        for k in 0..n {
            if pending >= max_items {
                break;
            }
            let i = (start + k) % n;
            if !files[i].pending.is_empty() || files[i].done {
                continue;
            }
            if files[i].handle.is_none() {
                // A file is held open while there is room, so that it can be read to its end
                // if it is deleted; without room, only a file with news is opened, in place of
                // one that was read to its end.
                let open = files.iter().filter(|t| t.handle.is_some()).count();
                if open >= max_open && (!needs_open(&files[i]) || !evict(files, i)) {
                    continue;
                }
                let t = &mut files[i];
                match t.open(&mut env) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        warn_once(t, "cannot open file", &e);
                        continue;
                    }
                }
            }
            let t = &mut files[i];
            t.last_used = tick;
            match t.step(&mut env) {
                Ok(()) => t.warned = false,
                Err(e) => warn_once(t, "cannot read file", &e),
            }
            pending += t.pending.len();
        }
    }

    /// Drops finished files whose items were all taken, remembering their identities.
    fn reap(&mut self) {
        let now_ms = checkpoint::now_ms();
        let history = &mut self.history;
        self.files.retain(|t| {
            if !(t.done && t.pending.is_empty()) {
                return true;
            }
            if let Some(id) = t.ident {
                history.end(t.key, id, now_ms);
                if t.gzip {
                    history.gzip_finished(t.key, id.crc, t.len, now_ms);
                }
            }
            tracing::info!(path = %t.path.display(), offset = t.returned, "file finished");
            false
        });
        if self.cursor >= self.files.len() {
            self.cursor = 0;
        }
    }

    /// The files matching the glob, with their metadata (regular files only).
    fn glob(&self) -> Vec<(PathBuf, std::fs::Metadata)> {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let Ok(paths) = glob::glob_with(&self.options.pattern, options) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in paths {
            match entry {
                Ok(path) => match std::fs::metadata(&path) {
                    Ok(meta) if meta.is_file() => out.push((path, meta)),
                    _ => {}
                },
                Err(e) => tracing::debug!(error = %e, "glob skipped a path"),
            }
        }
        out
    }
}

/// `t` with its length noted.
fn with_len(mut t: Tracked, len: u64) -> Tracked {
    t.len = len;
    t
}

/// Whether a closed file must be opened: it left the glob, or it may hold news.
fn needs_open(t: &Tracked) -> bool {
    if t.orphan_since.is_some() {
        return true;
    }
    match std::fs::metadata(&t.path) {
        Ok(meta) => FileKey::of(&meta) == t.key && (t.gzip || t.has_news(meta.len(), meta.modified().ok())),
        Err(_) => false,
    }
}

/// Closes the least recently read open file that can be opened again later (a text file in
/// the glob, read to its end, nothing pending), other than `keep`; false if there is none.
fn evict(files: &mut [Tracked], keep: usize) -> bool {
    let victim = files
        .iter()
        .enumerate()
        .filter(|(i, t)| {
            *i != keep
                && t.handle.is_some()
                && !t.gzip
                && t.orphan_since.is_none()
                && t.caught_up
                && t.pending.is_empty()
                && !t.done
        })
        .min_by_key(|(_, t)| t.last_used)
        .map(|(i, _)| i);
    match victim {
        Some(i) => {
            files[i].handle = None;
            true
        }
        None => false,
    }
}

/// Logs a failure to reach a file once until it works again.
fn warn_once(t: &mut Tracked, what: &str, e: &io::Error) {
    if !t.warned {
        tracing::warn!(path = %t.path.display(), error = %e, "{what}");
        t.warned = true;
    }
}

/// Where the file `key` is now: a glob match (true), else an entry of its last directory that
/// is outside the glob (false).
fn locate(key: FileKey, last_path: &Path, matches: &[(PathBuf, std::fs::Metadata)]) -> Option<(PathBuf, bool)> {
    if let Some((path, _)) = matches.iter().find(|(_, m)| FileKey::of(m) == key) {
        return Some((path.clone(), true));
    }
    if let Ok(meta) = std::fs::metadata(last_path) {
        if FileKey::of(&meta) == key && meta.is_file() {
            return Some((last_path.to_path_buf(), false));
        }
    }
    let dir = last_path.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| e.metadata().is_ok_and(|m| m.is_file() && FileKey::of(&m) == key))
        .map(|e| (e.path(), false))
}

/// Whether `path` names a gzip file.
fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// The directory to watch for a glob pattern and whether recursively.
pub fn watch_root(pattern: &str) -> (PathBuf, bool) {
    let path = Path::new(pattern);
    let mut root = PathBuf::new();
    let components: Vec<_> = path.components().collect();
    for (i, c) in components.iter().enumerate() {
        let text = c.as_os_str().to_string_lossy();
        if text.contains(['*', '?', '[']) {
            if root.as_os_str().is_empty() {
                root.push(".");
            }
            return (root, i + 1 < components.len());
        }
        root.push(c);
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => (dir.to_path_buf(), false),
        _ => (PathBuf::from("."), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_root_is_the_glob_s_literal_prefix() {
        assert_eq!(watch_root("/var/log/app.log"), (PathBuf::from("/var/log"), false));
        assert_eq!(watch_root("/var/log/*.log"), (PathBuf::from("/var/log"), false));
        assert_eq!(watch_root("/var/log/*/x.log"), (PathBuf::from("/var/log"), true));
        assert_eq!(watch_root("/var/l?g/**/x.log"), (PathBuf::from("/var"), true));
    }
}

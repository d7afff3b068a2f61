//! One file the tailer follows: its handle, identity and parser state, the items parsed from it
//! and not yet returned, and the step that reads its next bounded chunk.
//!
//! A step runs only when the file's pending items were all returned, so that a file's stream
//! switches (truncation) and ends (rotation, deletion) only once everything before was handed
//! out, and the checkpoint never skips items of the stream that ended.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;

use super::checkpoint::{FileEntry, History};
use super::identity::{fingerprint, read_full_at, stream_name, FileKey, Ident, Rule, Tail, TAIL_BYTES};
use crate::parse::{Parsed, Parser, StreamParser};
use crate::source::SourceItem;

/// A reader over a file through positional reads, so that it has its own offset.
#[derive(Debug)]
pub struct AtReader {
    file: File,
    pos: u64,
}

impl Read for AtReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// An open file.
pub enum Handle {
    /// A text file, read with positional reads.
    Plain(File),
    /// A gzip file, decompressed as it is read.
    Gzip(Box<MultiGzDecoder<BufReader<AtReader>>>),
}

/// What a step needs besides the file.
pub struct Env<'a> {
    /// The parser settings.
    pub parser: &'a Arc<Parser>,
    /// Ended identities and finished gzip files.
    pub history: &'a mut History,
    /// The bound on a fingerprint.
    pub fingerprint_bytes: usize,
    /// The bound on one read.
    pub read_batch_bytes: usize,
    /// How long a rotated-away or deleted file must stay quiet before it is finished.
    pub quiet: Duration,
    /// Now, on the monotonic clock.
    pub now: Instant,
    /// Now, in ms since the epoch.
    pub now_ms: u64,
}

/// One followed file.
pub struct Tracked {
    /// Its device and inode.
    pub key: FileKey,
    /// Where it was last seen.
    pub path: PathBuf,
    /// Whether it is read as gzip.
    pub gzip: bool,
    /// Its handle while open.
    pub handle: Option<Handle>,
    /// Its stream's identity, once fingerprinted.
    pub ident: Option<Ident>,
    /// The stream offset after the last returned item.
    pub returned: u64,
    /// The check of the bytes before `returned`, when known.
    returned_tail: Option<Tail>,
    /// The last bytes (at most [`TAIL_BYTES`]) before the stream offset read so far, to check
    /// before reading on that the file was not truncated and written again past it.
    carry: Vec<u8>,
    /// Items that start before this offset were returned before a restart (gzip files are
    /// parsed again from their start when resumed).
    skip_until: u64,
    stream: StreamParser,
    /// Items parsed and not yet returned, in stream order, with the check of their last bytes.
    pub pending: VecDeque<(SourceItem, Option<Tail>)>,
    /// Set once the file left the glob (renamed away or deleted): since when it gave no bytes.
    pub orphan_since: Option<Instant>,
    /// The file at the handle is not the one the identity names: start over.
    replaced: bool,
    /// Whether the last step read to the file's end.
    pub caught_up: bool,
    /// The tailer's tick when the file was last read, for closing the least recently used.
    pub last_used: u64,
    /// Whether the file is finished: dropped once its pending items are returned.
    pub done: bool,
    /// The file's length when last looked at.
    pub len: u64,
    /// The file's modification time when last looked at.
    pub mtime: Option<std::time::SystemTime>,
    /// Whether a failure to read it was logged since it last worked.
    pub warned: bool,
}

impl Tracked {
    /// A file first seen, to be read from stream offset `offset` with identity `ident`.
    pub fn new(
        key: FileKey,
        path: PathBuf,
        gzip: bool,
        parser: &Arc<Parser>,
        offset: u64,
        ident: Option<Ident>,
    ) -> Self {
        Tracked {
            key,
            path,
            gzip,
            handle: None,
            ident,
            returned: offset,
            returned_tail: None,
            carry: Vec::new(),
            skip_until: 0,
            stream: parser.stream(offset),
            pending: VecDeque::new(),
            orphan_since: None,
            replaced: false,
            caught_up: false,
            last_used: 0,
            done: false,
            len: 0,
            mtime: None,
            warned: false,
        }
    }

    /// A file of a checkpoint, found at `path`.
    pub fn restored(entry: &FileEntry, path: PathBuf, parser: &Arc<Parser>) -> Self {
        let ident = entry.crc.map(|crc| Ident { crc, gen: entry.gen });
        let offset = if ident.is_some() { entry.offset } else { 0 };
        let mut t = if entry.gzip {
            Tracked::new(entry.key, path, true, parser, 0, ident)
        } else {
            Tracked::new(entry.key, path, false, parser, offset, ident)
        };
        t.returned = offset;
        t.returned_tail = entry.tail.filter(|_| ident.is_some());
        if entry.gzip {
            t.skip_until = offset;
        }
        t
    }

    /// A file first seen with `start: end`, read from `offset`; `before` holds the bytes just
    /// before it.
    pub fn at_end(mut self, before: &[u8]) -> Self {
        let keep = &before[before.len().saturating_sub(TAIL_BYTES)..];
        self.returned_tail = Tail::within(keep, self.returned - keep.len() as u64, self.returned);
        self.carry = keep.to_vec();
        self
    }

    /// Its checkpoint entry.
    pub fn entry(&self) -> FileEntry {
        FileEntry {
            key: self.key,
            crc: self.ident.map(|i| i.crc),
            gen: self.ident.map_or(0, |i| i.gen),
            path: self.path.to_string_lossy().into_owned(),
            offset: if self.ident.is_some() { self.returned } else { 0 },
            tail: self.returned_tail.filter(|_| self.ident.is_some() && !self.gzip),
            gzip: self.gzip,
        }
    }

    /// Whether a file of length `len` modified at `mtime` may hold news: its length is not the
    /// offset read so far, or it was written to since it was last looked at.
    pub fn has_news(&self, len: u64, mtime: Option<std::time::SystemTime>) -> bool {
        len != self.stream.pos() || mtime != self.mtime
    }

    /// Opens the file at its path; false if the path now holds another file. A file with an
    /// identity is checked against it: another file under the same inode starts over.
    pub fn open(&mut self, env: &mut Env<'_>) -> io::Result<bool> {
        let file = File::open(&self.path)?;
        let meta = file.metadata()?;
        if FileKey::of(&meta) != self.key {
            return Ok(false);
        }
        self.len = meta.len();
        if self.gzip {
            if let Some(id) = self.ident {
                if fingerprint(&file, self.len, env.fingerprint_bytes, Rule::Gzip)? != Some(id.crc) {
                    env.history.end(self.key, id, env.now_ms);
                    self.ident = None;
                    self.returned = 0;
                    self.skip_until = 0;
                    self.stream = env.parser.stream(0);
                }
            }
            let reader = BufReader::with_capacity(64 * 1024, AtReader { file, pos: 0 });
            self.handle = Some(Handle::Gzip(Box::new(MultiGzDecoder::new(reader))));
        } else {
            if let Some(id) = self.ident {
                if fingerprint(&file, self.len, env.fingerprint_bytes, Rule::Growing)? != Some(id.crc) {
                    self.replaced = true;
                }
                // Resumed from a checkpoint: the bytes before the offset must still be there.
                if let (Some(tail), true) = (self.returned_tail, self.carry.is_empty()) {
                    if !tail.holds(&file, self.returned)? {
                        self.replaced = true;
                    }
                }
            }
            self.handle = Some(Handle::Plain(file));
        }
        Ok(true)
    }

    /// Reads the next chunk (at most `read_batch_bytes`) into pending items. Call it only when
    /// no items are pending.
    pub fn step(&mut self, env: &mut Env<'_>) -> io::Result<()> {
        match self.handle {
            Some(Handle::Plain(_)) => self.step_plain(env),
            Some(Handle::Gzip(_)) => self.step_gzip(env),
            None => Ok(()),
        }
    }

    fn step_plain(&mut self, env: &mut Env<'_>) -> io::Result<()> {
        let Some(Handle::Plain(file)) = &self.handle else {
            return Ok(());
        };
        let meta = file.metadata()?;
        let len = meta.len();
        self.len = len;
        let touched = meta.modified().ok() != self.mtime;
        self.mtime = meta.modified().ok();
        let pos = self.stream.pos();
        let want = pos.min(TAIL_BYTES as u64) as usize;
        if !self.replaced && pos > 0 && self.carry.len() >= want && (len > pos || touched) {
            // Written to: check that the bytes before the offset are still those read.
            let mut before = vec![0; self.carry.len()];
            let got = read_full_at(file, &mut before, pos - self.carry.len() as u64)?;
            self.replaced = got < before.len() || before != self.carry;
        } else if !self.replaced && len > pos && self.carry.len() < want {
            // Resumed without the bytes before the offset (they were checked against the
            // checkpoint's tail when opened): load them.
            let mut before = vec![0; want];
            let got = read_full_at(file, &mut before, pos - want as u64)?;
            before.truncate(got);
            self.carry = before;
        }
        if self.replaced || len < pos {
            // Truncated (or another file under the inode): the old stream ends with what it
            // held, and once that is returned the file is read again from 0 as a new stream.
            let mut out = Vec::new();
            self.stream.finish(env.now, &mut out);
            if !out.is_empty() {
                self.enqueue(out);
                return Ok(());
            }
            if let Some(id) = self.ident.take() {
                tracing::info!(path = %self.path.display(), stream = %stream_name(self.key, id), len,
                    "file truncated, reading it again from its start as a new stream");
                env.history.end(self.key, id, env.now_ms);
            }
            self.stream = env.parser.stream(0);
            self.returned = 0;
            self.returned_tail = None;
            self.carry.clear();
            self.replaced = false;
        }
        if self.ident.is_none() {
            let rule = if self.orphan_since.is_some() {
                Rule::Finished
            } else {
                Rule::Growing
            };
            match fingerprint(file, len, env.fingerprint_bytes, rule)? {
                Some(crc) => {
                    self.ident = Some(Ident {
                        crc,
                        gen: env.history.next_gen(self.key, crc),
                    })
                }
                None => {
                    self.caught_up = true;
                    self.done = self.orphan_since.is_some();
                    return Ok(());
                }
            }
        }
        if self.stream.needs_header() {
            let line = read_first_line(file, env.parser.config().max_line_bytes)?;
            self.stream.set_header_line(&line);
        }
        let pos = self.stream.pos();
        let mut got = 0;
        let mut out = Vec::new();
        if len > pos {
            // The window is the carried bytes and the new ones, so that items ending early in
            // this read still get their tail.
            let mut window = std::mem::take(&mut self.carry);
            let window_start = pos - window.len() as u64;
            let carried = window.len();
            window.resize(carried + (len - pos).min(env.read_batch_bytes as u64) as usize, 0);
            got = read_full_at(file, &mut window[carried..], pos)?;
            window.truncate(carried + got);
            self.stream.push(&window[carried..], env.now, &mut out);
            self.enqueue_in(out, &window, window_start);
            out = Vec::new();
            window.drain(..window.len().saturating_sub(TAIL_BYTES));
            self.carry = window;
        }
        self.caught_up = self.stream.pos() >= len;
        if let Some(since) = &mut self.orphan_since {
            if got > 0 {
                *since = env.now;
            } else if env.now.duration_since(*since) >= env.quiet {
                // Left the glob and quiet for a poll interval: its last line is complete.
                self.stream.finish(env.now, &mut out);
                self.done = true;
            }
        }
        self.enqueue(out);
        Ok(())
    }

    fn step_gzip(&mut self, env: &mut Env<'_>) -> io::Result<()> {
        let Some(Handle::Gzip(decoder)) = &mut self.handle else {
            return Ok(());
        };
        if self.ident.is_none() {
            let file = &decoder.get_ref().get_ref().file;
            match fingerprint(file, self.len, env.fingerprint_bytes, Rule::Gzip)? {
                Some(crc) => {
                    self.ident = Some(Ident {
                        crc,
                        gen: env.history.next_gen(self.key, crc),
                    })
                }
                None => {
                    self.done = true;
                    return Ok(());
                }
            }
        }
        let mut buf = vec![0; env.read_batch_bytes];
        let mut out = Vec::new();
        match decoder.read(&mut buf) {
            Ok(0) => {
                self.stream.finish(env.now, &mut out);
                self.done = true;
            }
            Ok(n) => self.stream.push(&buf[..n], env.now, &mut out),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                self.stream.finish(env.now, &mut out);
                let at = self.stream.pos();
                tracing::warn!(path = %self.path.display(), offset = at, error = %e, "gzip file is corrupt");
                out.push(Parsed::Bad {
                    raw: bytes::Bytes::new(),
                    error: format!(
                        "the gzip data of {} is corrupt after {at} decompressed bytes: {e}",
                        self.path.display()
                    ),
                    start: at,
                    end: at,
                });
                self.done = true;
            }
        }
        self.enqueue(out);
        Ok(())
    }

    /// Ends the file's stream for good (it is gone): what the parser holds becomes items.
    pub fn finish(&mut self, now: Instant) {
        let mut out = Vec::new();
        self.stream.finish(now, &mut out);
        self.enqueue(out);
        self.done = true;
    }

    /// Emits the open multi-line record if it timed out.
    pub fn flush_due(&mut self, now: Instant) {
        let mut out = Vec::new();
        self.stream.flush_due(now, &mut out);
        self.enqueue(out);
    }

    /// When the open multi-line record times out, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.stream.deadline()
    }

    /// Moves up to `max` pending items to `out`, noting the offset after the last.
    pub fn take_into(&mut self, max: usize, out: &mut Vec<SourceItem>) {
        while out.len() < max {
            let Some((item, tail)) = self.pending.pop_front() else {
                break;
            };
            self.returned = item.position().end;
            self.returned_tail = tail;
            out.push(item);
        }
    }

    /// Queues parsed items; their tails come from the carried bytes.
    fn enqueue(&mut self, parsed: Vec<Parsed>) {
        let carry = std::mem::take(&mut self.carry);
        let start = self.stream.pos() - carry.len() as u64;
        self.enqueue_in(parsed, &carry, start);
        self.carry = carry;
    }

    /// Queues parsed items, with tails from `window` (the bytes from stream offset `start`).
    fn enqueue_in(&mut self, parsed: Vec<Parsed>, window: &[u8], start: u64) {
        if parsed.is_empty() {
            return;
        }
        // Items are parsed only after the file was fingerprinted, so the identity is there.
        let name = stream_name(self.key, self.ident.unwrap_or(Ident { crc: 0, gen: 0 }));
        for p in parsed {
            if p.start() >= self.skip_until {
                let tail = Tail::within(window, start, p.end());
                self.pending.push_back((p.into_item(&name), tail));
            }
        }
    }
}

/// The first line of `file` (at most `max_line_bytes` of it), without its newline.
fn read_first_line(file: &File, max_line_bytes: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut chunk = vec![0; 4096];
    while line.len() <= max_line_bytes {
        let n = match file.read_at(&mut chunk, line.len() as u64) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        if let Some(nl) = chunk[..n].iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&chunk[..nl]);
            return Ok(line);
        }
        line.extend_from_slice(&chunk[..n]);
    }
    Ok(line)
}

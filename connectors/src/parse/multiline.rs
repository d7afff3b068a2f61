//! Joining lines into multi-line records: a record starts at a line matching the start pattern
//! and takes the following lines that do not match, joined with `\n`.
//!
//! Lines that come before any start line (at the beginning of a stream, or after a record was
//! cut at `max_lines`) open a record of their own, which the following non-matching lines join.
//! An open record is emitted when the next start line arrives, when it reaches `max_lines`, when
//! no line came for `timeout_ms`, and when the stream ends.

use std::time::{Duration, Instant};

use bytes::Bytes;
use regex::bytes::Regex;

/// A joined record and its stream offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The lines, joined with `\n`.
    pub bytes: Bytes,
    /// The stream offset of its first line.
    pub start: u64,
    /// The stream offset after its last line.
    pub end: u64,
}

/// The record being collected.
#[derive(Debug)]
struct Open {
    text: Vec<u8>,
    lines: usize,
    start: u64,
    end: u64,
    last_at: Instant,
}

/// Collects lines into records.
#[derive(Debug)]
pub struct Multiline {
    start_pattern: Regex,
    max_lines: usize,
    timeout: Duration,
    open: Option<Open>,
}

impl Multiline {
    /// A joiner with a compiled start pattern; `max_lines` is at least 1.
    pub fn new(start_pattern: Regex, max_lines: usize, timeout_ms: u64) -> Self {
        Multiline {
            start_pattern,
            max_lines: max_lines.max(1),
            timeout: Duration::from_millis(timeout_ms),
            open: None,
        }
    }

    /// Adds one line read at `now`; records it completes go to `out`.
    pub fn push(&mut self, line: &[u8], start: u64, end: u64, now: Instant, out: &mut Vec<Joined>) {
        if self.start_pattern.is_match(line) {
            self.finish(out);
        }
        match &mut self.open {
            Some(open) => {
                open.text.push(b'\n');
                open.text.extend_from_slice(line);
                open.lines += 1;
                open.end = end;
                open.last_at = now;
            }
            None => {
                self.open = Some(Open {
                    text: line.to_vec(),
                    lines: 1,
                    start,
                    end,
                    last_at: now,
                })
            }
        }
        if self.open.as_ref().is_some_and(|o| o.lines >= self.max_lines) {
            self.finish(out);
        }
    }

    /// Emits the open record if no line came for the timeout by `now`.
    pub fn flush_due(&mut self, now: Instant, out: &mut Vec<Joined>) {
        if self.deadline().is_some_and(|d| d <= now) {
            self.finish(out);
        }
    }

    /// When the open record times out, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.last_at + self.timeout)
    }

    /// Emits the open record, if any.
    pub fn finish(&mut self, out: &mut Vec<Joined>) {
        if let Some(open) = self.open.take() {
            out.push(Joined {
                bytes: Bytes::from(open.text),
                start: open.start,
                end: open.end,
            });
        }
    }

    /// Whether a record is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(text: &str, start: u64, end: u64) -> Joined {
        Joined {
            bytes: Bytes::copy_from_slice(text.as_bytes()),
            start,
            end,
        }
    }

    #[test]
    fn continuation_lines_join_the_record_their_start_line_opened() {
        let mut m = Multiline::new(Regex::new(r"^\d").unwrap(), 3, 1000);
        let now = Instant::now();
        let mut out = Vec::new();
        let lines = ["orphan", "1 first", "  at a", "  at b", "  at c", "2 second"];
        let mut pos = 0;
        for l in lines {
            m.push(l.as_bytes(), pos, pos + l.len() as u64 + 1, now, &mut out);
            pos += l.len() as u64 + 1;
        }
        assert_eq!(
            out,
            [
                joined("orphan", 0, 7),
                joined("1 first\n  at a\n  at b", 7, 29),
                joined("  at c", 29, 36)
            ]
        );
        assert!(m.is_open());
        m.flush_due(now + Duration::from_millis(999), &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(m.deadline(), Some(now + Duration::from_millis(1000)));
        m.flush_due(now + Duration::from_millis(1000), &mut out);
        assert_eq!(out[3], joined("2 second", 36, 45));
        assert!(!m.is_open());
    }
}

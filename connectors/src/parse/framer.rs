//! Framing a byte stream into lines at `\n`, with a bound on a line's length and the stream
//! offsets of each line, so that positions can say where every record starts and ends.

use bytes::Bytes;

/// The most bytes of an over-long line kept in its bad item (so that a dead letter stays well
/// under Kafka's default 1 MiB message limit).
pub const MAX_KEPT_BYTES: usize = 64 * 1024;

/// One framed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A line, without its `\n` and a trailing `\r`.
    Line {
        /// The line's bytes.
        bytes: Bytes,
        /// The stream offset of its first byte.
        start: u64,
        /// The stream offset after its `\n` (or after its last byte at the end of a stream).
        end: u64,
    },
    /// A line longer than the bound, skipped but for its first bytes.
    Overlong {
        /// Its first bytes.
        kept: Bytes,
        /// Its length in bytes, without the `\n`.
        len: u64,
        /// The stream offset of its first byte.
        start: u64,
        /// The stream offset after its `\n`.
        end: u64,
    },
}

/// An over-long line being skipped.
#[derive(Debug)]
struct Skipping {
    start: u64,
    kept: Vec<u8>,
    len: u64,
}

/// Splits pushed bytes into lines; holds at most one partial line of up to `max_line_bytes`.
#[derive(Debug)]
pub struct Framer {
    max_line_bytes: usize,
    /// The stream offset after the last pushed byte.
    pos: u64,
    /// The unterminated tail of the pushed bytes: stream offsets `pos - buf.len()..pos`.
    buf: Vec<u8>,
    skipping: Option<Skipping>,
}

impl Framer {
    /// A framer whose first pushed byte is at stream offset `offset`.
    pub fn new(offset: u64, max_line_bytes: usize) -> Self {
        Framer {
            max_line_bytes,
            pos: offset,
            buf: Vec::new(),
            skipping: None,
        }
    }

    /// The stream offset after the last pushed byte.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Whether bytes of an unterminated line are held.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.skipping.is_some()
    }

    /// Frames `data`, which follows the bytes pushed before; complete lines go to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Frame>) {
        if let Some(skip) = &mut self.skipping {
            match data.iter().position(|b| *b == b'\n') {
                None => {
                    keep(&mut skip.kept, data, self.max_line_bytes);
                    skip.len += data.len() as u64;
                    self.pos += data.len() as u64;
                    return;
                }
                Some(p) => {
                    keep(&mut skip.kept, &data[..p], self.max_line_bytes);
                    skip.len += p as u64;
                    self.pos += p as u64 + 1;
                    out.push(Frame::Overlong {
                        kept: Bytes::from(std::mem::take(&mut skip.kept)),
                        len: skip.len,
                        start: skip.start,
                        end: self.pos,
                    });
                    self.skipping = None;
                    data = &data[p + 1..];
                }
            }
        }
        let scanned = self.buf.len();
        self.buf.extend_from_slice(data);
        let base = self.pos - scanned as u64;
        self.pos += data.len() as u64;
        let mut line_start = 0;
        let mut from = scanned;
        while let Some(p) = self.buf[from..].iter().position(|b| *b == b'\n') {
            let nl = from + p;
            let (start, end) = (base + line_start as u64, base + nl as u64 + 1);
            out.push(self.frame(line_start, nl, start, end));
            line_start = nl + 1;
            from = line_start;
        }
        self.buf.drain(..line_start);
        if self.buf.len() > self.max_line_bytes {
            let mut kept = Vec::new();
            keep(&mut kept, &self.buf, self.max_line_bytes);
            self.skipping = Some(Skipping {
                start: self.pos - self.buf.len() as u64,
                kept,
                len: self.buf.len() as u64,
            });
            self.buf = Vec::new();
        }
    }

    /// Ends the stream: the unterminated last line, if any, goes to `out`.
    pub fn finish(&mut self, out: &mut Vec<Frame>) {
        if let Some(skip) = self.skipping.take() {
            out.push(Frame::Overlong {
                kept: Bytes::from(skip.kept),
                len: skip.len,
                start: skip.start,
                end: self.pos,
            });
        } else if !self.buf.is_empty() {
            let start = self.pos - self.buf.len() as u64;
            let len = self.buf.len();
            out.push(self.frame(0, len, start, self.pos));
            self.buf.clear();
        }
    }

    /// The frame of `buf[from..to]`.
    fn frame(&self, from: usize, to: usize, start: u64, end: u64) -> Frame {
        let line = &self.buf[from..to];
        if line.len() > self.max_line_bytes {
            let mut kept = Vec::new();
            keep(&mut kept, line, self.max_line_bytes);
            return Frame::Overlong {
                kept: Bytes::from(kept),
                len: line.len() as u64,
                start,
                end,
            };
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Frame::Line {
            bytes: Bytes::copy_from_slice(line),
            start,
            end,
        }
    }
}

/// Appends to `kept` what fits of `data` under the bound on kept bytes.
fn keep(kept: &mut Vec<u8>, data: &[u8], max_line_bytes: usize) {
    let room = max_line_bytes.min(MAX_KEPT_BYTES).saturating_sub(kept.len());
    kept.extend_from_slice(&data[..room.min(data.len())]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(text: &str, start: u64, end: u64) -> Frame {
        Frame::Line {
            bytes: Bytes::copy_from_slice(text.as_bytes()),
            start,
            end,
        }
    }

    #[test]
    fn lines_carry_their_offsets_and_lose_a_trailing_cr() {
        let mut f = Framer::new(100, 10);
        let mut out = Vec::new();
        f.push(b"ab\r\ncd", &mut out);
        f.push(b"e\n\nx", &mut out);
        assert_eq!(out, [line("ab", 100, 104), line("cde", 104, 108), line("", 108, 109)]);
        assert!(f.has_partial());
        out.clear();
        f.finish(&mut out);
        assert_eq!(out, [line("x", 109, 110)]);
        assert_eq!(f.pos(), 110);
    }

    #[test]
    fn an_over_long_line_is_skipped_to_its_newline_keeping_its_first_bytes() {
        let mut f = Framer::new(0, 4);
        let mut out = Vec::new();
        f.push(b"ok\n0123", &mut out);
        f.push(b"456", &mut out);
        f.push(b"789\nfine\n", &mut out);
        f.push(b"abcdefgh\n", &mut out);
        let long = |start, len, end| Frame::Overlong {
            kept: Bytes::from_static(b"0123"),
            len,
            start,
            end,
        };
        assert_eq!(out[0], line("ok", 0, 3));
        assert_eq!(out[1], long(3, 10, 14));
        assert_eq!(out[2], line("fine", 14, 19));
        assert!(matches!(&out[3], Frame::Overlong { kept, len: 8, start: 19, end: 28 } if kept == "abcd"));
        assert!(!f.has_partial());
    }

    proptest! {
        /// However the input is cut into pushes, the frames are the same.
        #[test]
        fn framing_does_not_depend_on_how_bytes_arrive(
            text in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'\n'), Just(b'\r')], 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..10),
            max in 1usize..8,
        ) {
            let mut whole = Framer::new(7, max);
            let mut expected = Vec::new();
            whole.push(&text, &mut expected);
            whole.finish(&mut expected);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).collect();
            cuts.sort();
            let mut pieces = Framer::new(7, max);
            let mut got = Vec::new();
            let mut last = 0;
            for c in cuts.into_iter().chain([text.len()]) {
                pieces.push(&text[last..c], &mut got);
                last = c;
            }
            pieces.finish(&mut got);
            prop_assert_eq!(got, expected);
        }
    }
}

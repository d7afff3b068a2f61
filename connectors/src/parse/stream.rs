//! The parser of one input stream: framing, the CSV header, multi-line joining and parsing,
//! turning the bytes a source reads into records and bad items with their stream offsets.
//!
//! Empty lines are skipped (inside an open multi-line record they join it). A UTF-8 byte order
//! mark at offset 0 is dropped. Only complete lines are parsed: the unterminated last line is
//! held until [`StreamParser::finish`], which a source calls once the stream can no longer grow.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::framer::{Frame, Framer};
use super::multiline::{Joined, Multiline};
use super::record::Parser;
use crate::source::{Position, SourceItem, SourceRecord};

/// What parsing produced, with the stream offsets of the input it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A value in the parser's format.
    Record {
        /// The value.
        value: Bytes,
        /// Where its text starts.
        start: u64,
        /// Where the next input starts.
        end: u64,
    },
    /// Input that could not be parsed.
    Bad {
        /// The input (for an over-long line, its first bytes).
        raw: Bytes,
        /// Why, in prose.
        error: String,
        /// Where it starts.
        start: u64,
        /// Where the next input starts.
        end: u64,
    },
}

impl Parsed {
    /// Where its input starts.
    pub fn start(&self) -> u64 {
        match self {
            Parsed::Record { start, .. } | Parsed::Bad { start, .. } => *start,
        }
    }

    /// Where the next input starts.
    pub fn end(&self) -> u64 {
        match self {
            Parsed::Record { end, .. } | Parsed::Bad { end, .. } => *end,
        }
    }

    /// The source item of this input, read from position stream `stream`.
    pub fn into_item(self, stream: &str) -> SourceItem {
        let position = |start, end| Position {
            stream: stream.to_string(),
            start,
            end,
        };
        match self {
            Parsed::Record { value, start, end } => SourceItem::Record(SourceRecord {
                key: None,
                value,
                timestamp_ms: None,
                headers: Vec::new(),
                position: position(start, end),
            }),
            Parsed::Bad { raw, error, start, end } => SourceItem::Bad {
                raw,
                error,
                position: position(start, end),
            },
        }
    }
}

/// Where the CSV header of the stream stands.
#[derive(Debug)]
enum Header {
    /// The format has no header line.
    None,
    /// The header line has not been seen yet.
    Pending,
    /// The header was read; the columns it names, if `columns` were not given.
    Read(Option<Vec<String>>),
}

/// The parser of one stream.
#[derive(Debug)]
pub struct StreamParser {
    parser: Arc<Parser>,
    framer: Framer,
    multiline: Option<Multiline>,
    header: Header,
    /// The offset the stream was opened at.
    opened_at: u64,
    frames: Vec<Frame>,
    joined: Vec<Joined>,
}

impl StreamParser {
    /// A stream parser whose first pushed byte is at `offset`.
    pub(super) fn new(parser: Arc<Parser>, offset: u64, multiline: Option<Multiline>) -> Self {
        let header = if parser.has_header() {
            Header::Pending
        } else {
            Header::None
        };
        let max_line_bytes = parser.config().max_line_bytes;
        StreamParser {
            parser,
            framer: Framer::new(offset, max_line_bytes),
            multiline,
            header,
            opened_at: offset,
            frames: Vec::new(),
            joined: Vec::new(),
        }
    }

    /// The stream offset after the last pushed byte.
    pub fn pos(&self) -> u64 {
        self.framer.pos()
    }

    /// Whether input is held that no record covers yet (an unterminated line, an open
    /// multi-line record).
    pub fn is_holding(&self) -> bool {
        self.framer.has_partial() || self.multiline.as_ref().is_some_and(Multiline::is_open)
    }

    /// Whether the stream was opened past its start and its CSV header must be given with
    /// [`StreamParser::set_header_line`] before rows can be parsed.
    pub fn needs_header(&self) -> bool {
        matches!(self.header, Header::Pending) && self.opened_at > 0
    }

    /// Gives the stream's first line (read apart) as its CSV header.
    pub fn set_header_line(&mut self, line: &[u8]) {
        let line = strip_bom(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.header = Header::Read(self.parser.header_columns(line).unwrap_or(None));
    }

    /// Parses `data`, read at `now`, which follows the bytes pushed before.
    pub fn push(&mut self, data: &[u8], now: Instant, out: &mut Vec<Parsed>) {
        let mut frames = std::mem::take(&mut self.frames);
        self.framer.push(data, &mut frames);
        for frame in frames.drain(..) {
            self.frame(frame, now, out);
        }
        self.frames = frames;
    }

    /// Ends the stream: the unterminated last line and the open record are parsed.
    pub fn finish(&mut self, now: Instant, out: &mut Vec<Parsed>) {
        let mut frames = std::mem::take(&mut self.frames);
        self.framer.finish(&mut frames);
        for frame in frames.drain(..) {
            self.frame(frame, now, out);
        }
        self.frames = frames;
        if let Some(m) = &mut self.multiline {
            m.finish(&mut self.joined);
        }
        self.parse_joined(out);
    }

    /// Emits the open multi-line record if it timed out by `now`.
    pub fn flush_due(&mut self, now: Instant, out: &mut Vec<Parsed>) {
        if let Some(m) = &mut self.multiline {
            m.flush_due(now, &mut self.joined);
        }
        self.parse_joined(out);
    }

    /// When the open multi-line record times out, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.multiline.as_ref().and_then(Multiline::deadline)
    }

    fn frame(&mut self, frame: Frame, now: Instant, out: &mut Vec<Parsed>) {
        match frame {
            Frame::Line { bytes, start, end } => {
                let line = if start == 0 {
                    bytes.slice_ref(strip_bom(&bytes))
                } else {
                    bytes.clone()
                };
                if start == 0 && matches!(self.header, Header::Pending) {
                    self.header = Header::Read(match self.parser.header_columns(&line) {
                        Ok(columns) => columns,
                        Err(error) => {
                            out.push(Parsed::Bad {
                                raw: bytes.clone(),
                                error,
                                start,
                                end,
                            });
                            None
                        }
                    });
                    return;
                }
                match &mut self.multiline {
                    Some(m) if !line.is_empty() || m.is_open() => {
                        m.push(&line, start, end, now, &mut self.joined);
                        self.parse_joined(out);
                    }
                    _ if line.is_empty() => {}
                    _ => {
                        let item = self.parse(&line, start, end);
                        out.push(item);
                    }
                }
            }
            Frame::Overlong { kept, len, start, end } => {
                if let Some(m) = &mut self.multiline {
                    m.finish(&mut self.joined);
                    self.parse_joined(out);
                }
                if start == 0 && matches!(self.header, Header::Pending) {
                    self.header = Header::Read(None);
                }
                out.push(Parsed::Bad {
                    error: format!(
                        "the line is {len} bytes long, more than max_line_bytes ({}); its first {} bytes are kept",
                        self.parser.config().max_line_bytes,
                        kept.len()
                    ),
                    raw: kept,
                    start,
                    end,
                });
            }
        }
    }

    fn parse_joined(&mut self, out: &mut Vec<Parsed>) {
        for j in std::mem::take(&mut self.joined) {
            let item = self.parse(&j.bytes, j.start, j.end);
            out.push(item);
        }
    }

    fn parse(&self, text: &Bytes, start: u64, end: u64) -> Parsed {
        let header = match &self.header {
            Header::Read(Some(columns)) => Some(&columns[..]),
            _ => None,
        };
        match self.parser.parse(text, header) {
            Ok(value) => Parsed::Record { value, start, end },
            Err(error) => Parsed::Bad {
                raw: text.clone(),
                error,
                start,
                end,
            },
        }
    }
}

/// `line` without a leading UTF-8 byte order mark.
fn strip_bom(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
}

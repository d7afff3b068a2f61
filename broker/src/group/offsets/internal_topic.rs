//! What Brook's two compacted internal topics share: `__consumer_offsets` (the offsets store)
//! and `__transaction_state` (`txn/store.rs`) are created the same way, take batches of Brook's
//! own records written in Kafka's schemas (the string writer and reader here), and are replayed
//! from start to end when the broker opens.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::log::batch::{self, BatchHeader, EncodeOptions, NewRecord};
use crate::log::{AppendInfo, AppendOptions, PartitionLog};
use crate::topics::{Topic, Topics, MAX_PARTITIONS};

/// Bytes read from the log at a time while replaying.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// The internal topic `name`; unless it exists, it is created compacted, with `segment_bytes`
/// segments and as many partitions as the broker config `partitions_config` says.
pub(crate) fn open_or_create(
    topics: &Topics,
    config: &BrokerConfig,
    name: &str,
    partitions_config: &str,
    segment_bytes: &str,
) -> Result<Arc<Topic>> {
    if let Some(topic) = topics.get(name) {
        return Ok(topic);
    }
    let count = config.long(partitions_config).clamp(1, i64::from(MAX_PARTITIONS)) as i32;
    let configs = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), segment_bytes.to_string()),
    ]);
    topics.create(config, name, count, configs, false)
}

/// One batch of Brook's own records, encoded and validated, ready to append.
pub(crate) struct Batch {
    bytes: BytesMut,
    headers: Vec<BatchHeader>,
}

impl Batch {
    /// Encodes `records` as one batch; one larger than `max_batch_bytes` (the topic's
    /// `max.message.bytes`) is refused.
    pub(crate) fn encode(records: &[NewRecord], options: &EncodeOptions, max_batch_bytes: usize) -> Result<Batch> {
        let bytes = batch::encode_batch(records, options)?;
        if bytes.len() > max_batch_bytes {
            return Err(Error::MessageTooLarge {
                size_bytes: bytes.len(),
                max_bytes: max_batch_bytes,
            });
        }
        let headers = batch::validate_batches(&bytes)?;
        Ok(Batch { bytes, headers })
    }

    /// Appends the batch to `log` now; it is durable once the log's durable end passes it.
    pub(crate) fn append_to(self, log: &PartitionLog, now_ms: i64) -> Result<AppendInfo> {
        let options = AppendOptions {
            now_ms,
            log_append_time: false,
            leader_epoch: 0,
        };
        log.append(self.bytes, &self.headers, &options)
    }
}

/// Reads a partition from its start to its end offset as of the call, handing `each` every batch
/// with its bytes; `what` (e.g. "loading transactions") names the replay when the log stops
/// yielding whole batches.
pub(crate) fn replay(
    log: &PartitionLog,
    what: &str,
    mut each: impl FnMut(&BatchHeader, &[u8]) -> Result<()>,
) -> Result<()> {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    while offset < end {
        let chunk = log.read(offset, REPLAY_READ_BYTES, end)?;
        let before = offset;
        for item in batch::scan_headers(&chunk) {
            let (position, header) = item?;
            offset = offset.max(header.last_offset() + 1);
            each(&header, &chunk[position..position + header.total_bytes()])?;
        }
        if offset == before {
            return Err(Error::CorruptLog {
                path: log.dir().display().to_string(),
                reason: format!("no complete batch could be read at offset {offset} while {what}"),
            });
        }
    }
    Ok(())
}

/// Longest string a non-flexible Kafka schema can hold (int16 length).
pub const MAX_STRING_BYTES: usize = i16::MAX as usize;

/// Writes an int16-length string of Kafka's schemas; one longer than [`MAX_STRING_BYTES`] is
/// refused, naming `what`.
pub(crate) fn put_string(out: &mut BytesMut, what: &'static str, s: &str) -> Result<()> {
    if s.len() > MAX_STRING_BYTES {
        return Err(Error::TooLarge {
            what,
            size_bytes: s.len(),
            limit_bytes: MAX_STRING_BYTES,
        });
    }
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
    Ok(())
}

/// A bounds-checked big-endian reader of the records' Kafka schemas; every shortfall is an
/// error naming what is read (e.g. "__consumer_offsets record key").
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `bytes` from the start.
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { bytes, pos: 0, what }
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::CorruptBatch(format!("{} {reason}", self.what))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.corrupt(format!(
                "is truncated: {n} bytes needed at byte {}, {} present",
                self.pos,
                self.bytes.len()
            )));
        };
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn i8(&mut self) -> Result<i8> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    pub(crate) fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn utf8(&mut self, len: usize) -> Result<String> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.corrupt("holds a string that is not UTF-8".to_string()))
    }

    /// A non-nullable int16-length string; a negative length is refused.
    pub(crate) fn string(&mut self) -> Result<String> {
        let len = self.i16()?;
        let len =
            usize::try_from(len).map_err(|_| self.corrupt("holds a null where a string is required".to_string()))?;
        self.utf8(len)
    }

    /// An int32 array length; None for a null array. Lengths beyond the bytes left are refused
    /// before anything is allocated.
    pub(crate) fn len32(&mut self) -> Result<Option<usize>> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(None);
        }
        self.bounded(len as usize)
    }

    fn bounded(&self, len: usize) -> Result<Option<usize>> {
        let rest = self.bytes.len() - self.pos;
        if len > rest {
            return Err(self.corrupt(format!("holds an array that claims {len} entries in {rest} bytes")));
        }
        Ok(Some(len))
    }

    fn unsigned_varint(&mut self) -> Result<u32> {
        let mut value = 0u32;
        for shift in (0..35).step_by(7) {
            let byte = self.array::<1>()?[0];
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.corrupt("holds a varint longer than 5 bytes".to_string()))
    }

    /// A flexible-version array length: unsigned varint length + 1, 0 meaning null.
    pub(crate) fn compact_len(&mut self) -> Result<Option<usize>> {
        match self.unsigned_varint()?.checked_sub(1) {
            None => Ok(None),
            Some(len) => self.bounded(len as usize),
        }
    }

    /// A flexible-version string; null is refused.
    pub(crate) fn compact_string(&mut self) -> Result<String> {
        let len = self
            .compact_len()?
            .ok_or_else(|| self.corrupt("holds a null where a string is required".to_string()))?;
        self.utf8(len)
    }

    /// The tagged fields of a flexible-version structure, as (tag, data).
    pub(crate) fn tagged_fields(&mut self) -> Result<Vec<(u32, &'a [u8])>> {
        let count = self.unsigned_varint()?;
        let mut out = Vec::new();
        for _ in 0..count {
            let tag = self.unsigned_varint()?;
            let size = self.unsigned_varint()? as usize;
            out.push((tag, self.take(size)?));
        }
        Ok(out)
    }

    /// Skips the tagged fields of a flexible-version structure.
    pub(crate) fn skip_tagged_fields(&mut self) -> Result<()> {
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            let _tag = self.unsigned_varint()?;
            let size = self.unsigned_varint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

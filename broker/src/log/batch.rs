//! The Kafka v2 record batch format: header parsing, CRC-32C validation, in-place rewrites,
//! bounded decompression, and record encoding and decoding (duplicate header keys kept in order).
//!
//! Layout of the 61-byte header (big-endian):
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
//! attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
//! producerId i64 | producerEpoch i16 | baseSequence i32 | recordCount i32
//! The CRC covers everything from `attributes` to the end of the batch.

use bytes::{BufMut, Bytes, BytesMut};

pub use super::codec::decompress;
use crate::error::{Error, Result};

/// Size of the fixed v2 batch header.
pub const HEADER_BYTES: usize = 61;
/// Bytes before `batchLength` counts: baseOffset and batchLength themselves.
pub const LOG_OVERHEAD_BYTES: usize = 12;

/// Compression codec of a batch, from the low three bits of its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy (raw or xerial-framed, as Java and librdkafka write it).
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

/// The parsed fixed header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the batchLength field.
    pub batch_length: i32,
    /// Leader epoch stamped by the broker.
    pub partition_leader_epoch: i32,
    /// Format version; always 2 here.
    pub magic: i8,
    /// CRC-32C of attributes..end.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// Offset of the last record minus base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (the append time for LogAppendTime topics).
    pub max_timestamp: i64,
    /// Idempotent or transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

/// One record decoded from a batch, with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset (batch base offset + offset delta).
    pub offset: i64,
    /// Absolute timestamp (for LogAppendTime batches, the batch's max timestamp).
    pub timestamp: i64,
    /// Key, or None for a null key.
    pub key: Option<Bytes>,
    /// Value, or None for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in wire order; duplicate keys are kept.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// Smallest legal `batchLength`: the header after the length field, with no records.
const MIN_BATCH_LENGTH: i32 = (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
/// Byte position of `partitionLeaderEpoch`.
const PARTITION_LEADER_EPOCH_AT: usize = 12;
/// Byte position of `magic`.
const MAGIC_AT: usize = 16;
/// Byte position of `crc`.
pub(super) const CRC_AT: usize = 17;
/// Byte position of `attributes`, where the CRC's coverage starts.
pub(super) const ATTRIBUTES_AT: usize = 21;
/// Byte position of `maxTimestamp`.
const MAX_TIMESTAMP_AT: usize = 35;
/// The only batch format Brook stores.
const MAGIC_V2: i8 = 2;
/// Attribute bits 0-2: the compression codec.
pub(super) const COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit 3: timestamps are the broker's append time.
const LOG_APPEND_TIME_FLAG: i16 = 0x08;
/// Attribute bit 4: the batch belongs to a transaction.
const TRANSACTIONAL_FLAG: i16 = 0x10;
/// Attribute bit 5: the batch holds a transaction marker.
pub(super) const CONTROL_FLAG: i16 = 0x20;
/// Fewest bytes one encoded record takes: length, attributes, timestamp and offset deltas, key
/// and value lengths, header count, one byte each.
const MIN_RECORD_BYTES: usize = 7;

impl Compression {
    /// The codec named by the low three bits of a batch's attributes.
    pub fn from_attributes(attributes: i16) -> Result<Compression> {
        match attributes & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            id => Err(Error::CorruptBatch(format!("unknown compression codec id {id}"))),
        }
    }

    /// The codec's id in batch attributes.
    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec with Kafka's `compression.type` name, e.g. "zstd".
    pub fn from_name(name: &str) -> Option<Compression> {
        match name {
            "none" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "snappy" => Some(Compression::Snappy),
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Kafka's `compression.type` name of the codec.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl BatchHeader {
    /// Parses the fixed header from the start of `buf` (at least 61 bytes) without validating the
    /// CRC, the magic or the length: [`validate_batches`] and [`scan_headers`] do that.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader> {
        let Some(h) = buf.get(..HEADER_BYTES) else {
            return Err(Error::CorruptBatch(format!(
                "a batch header needs {HEADER_BYTES} bytes, only {} given",
                buf.len()
            )));
        };
        let i64_at = |at: usize| i64::from_be_bytes(h[at..at + 8].try_into().expect("8 bytes"));
        let i32_at = |at: usize| i32::from_be_bytes(h[at..at + 4].try_into().expect("4 bytes"));
        let i16_at = |at: usize| i16::from_be_bytes(h[at..at + 2].try_into().expect("2 bytes"));
        Ok(BatchHeader {
            base_offset: i64_at(0),
            batch_length: i32_at(8),
            partition_leader_epoch: i32_at(PARTITION_LEADER_EPOCH_AT),
            magic: h[MAGIC_AT] as i8,
            crc: i32_at(CRC_AT) as u32,
            attributes: i16_at(ATTRIBUTES_AT),
            last_offset_delta: i32_at(23),
            base_timestamp: i64_at(27),
            max_timestamp: i64_at(MAX_TIMESTAMP_AT),
            producer_id: i64_at(43),
            producer_epoch: i16_at(51),
            base_sequence: i32_at(53),
            record_count: i32_at(57),
        })
    }

    /// Bytes the whole batch takes: [`LOG_OVERHEAD_BYTES`] plus `batch_length` (a negative
    /// length counts as zero).
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length.max(0) as usize
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset.wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The batch's compression codec.
    pub fn compression(&self) -> Result<Compression> {
        Compression::from_attributes(self.attributes)
    }

    /// Whether the batch belongs to a transaction (attributes bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }

    /// Whether the batch holds a transaction marker (attributes bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }

    /// Whether timestamps are the broker's append time (attributes bit 3).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & LOG_APPEND_TIME_FLAG != 0
    }

    /// Sequence number of the last record, wrapping from `i32::MAX` to 0 as Kafka's
    /// `DefaultRecordBatch.incrementSequence` does; -1 when the batch has no sequence.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == -1 {
            return -1;
        }
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// Writes the header into the first 61 bytes of `out`.
    pub(super) fn write(&self, out: &mut [u8]) {
        let mut h = &mut out[..HEADER_BYTES];
        h.put_i64(self.base_offset);
        h.put_i32(self.batch_length);
        h.put_i32(self.partition_leader_epoch);
        h.put_i8(self.magic);
        h.put_u32(self.crc);
        h.put_i16(self.attributes);
        h.put_i32(self.last_offset_delta);
        h.put_i64(self.base_timestamp);
        h.put_i64(self.max_timestamp);
        h.put_i64(self.producer_id);
        h.put_i16(self.producer_epoch);
        h.put_i32(self.base_sequence);
        h.put_i32(self.record_count);
    }
}

/// `sequence + increment`, wrapping past `i32::MAX` to 0 (Kafka's `incrementSequence`).
pub(crate) fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX.wrapping_sub(increment) {
        increment.wrapping_sub(i32::MAX.wrapping_sub(sequence)).wrapping_sub(1)
    } else {
        sequence.wrapping_add(increment)
    }
}

/// Walks every batch in a produce request's record set and returns their headers in order.
///
/// Structural damage is [`Error::CorruptBatch`] (Kafka's retriable CORRUPT_MESSAGE): a batch
/// shorter than its 61-byte header, a `batchLength` below 49 or past the buffer, a magic other
/// than 2, a CRC-32C mismatch, an unknown codec, or trailing bytes after the last batch (Kafka
/// silently trims a partial trailing batch; Brook refuses it). The rules of Kafka's
/// `LogValidator.validateBatch` for client batches are [`Error::InvalidRecord`] (Kafka's
/// non-retriable INVALID_RECORD, so a client does not retry a batch that cannot succeed):
/// `recordCount` must be at least 1 and equal `lastOffsetDelta + 1`, clients may not write
/// control batches, a transactional batch needs a producer id, and an idempotent batch
/// (producer id >= 0) needs a base sequence >= 0.
/// An empty buffer gives no headers; Kafka's rule that a v3+ produce request holds exactly one
/// batch per partition is the caller's to apply. Records are not decoded.
pub fn validate_batches(buf: &[u8]) -> Result<Vec<BatchHeader>> {
    let mut headers = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest.len() < HEADER_BYTES {
            return Err(Error::CorruptBatch(format!(
                "batch at byte {pos} is truncated: {} bytes remain, a header needs {HEADER_BYTES}",
                rest.len()
            )));
        }
        let header = BatchHeader::parse(rest)?;
        if header.magic != MAGIC_V2 {
            return Err(Error::CorruptBatch(format!(
                "batch at byte {pos} has magic {}, only magic 2 is supported",
                header.magic
            )));
        }
        if header.batch_length < MIN_BATCH_LENGTH {
            return Err(Error::CorruptBatch(format!(
                "batch at byte {pos} has batchLength {}, below the minimum of {MIN_BATCH_LENGTH}",
                header.batch_length
            )));
        }
        let total = header.total_bytes();
        if total > rest.len() {
            return Err(Error::CorruptBatch(format!(
                "batch at byte {pos} declares {total} bytes, only {} remain",
                rest.len()
            )));
        }
        let computed = crc32c::crc32c(&rest[ATTRIBUTES_AT..total]);
        if computed != header.crc {
            return Err(Error::CorruptBatch(format!(
                "batch at byte {pos} has CRC {:#010x}, its contents give {computed:#010x}",
                header.crc
            )));
        }
        header.compression().map_err(|e| match e {
            Error::CorruptBatch(reason) => Error::CorruptBatch(format!("batch at byte {pos}: {reason}")),
            other => other,
        })?;
        check_client_rules(&header, pos)?;
        headers.push(header);
        pos += total;
    }
    Ok(headers)
}

/// Kafka's `LogValidator.validateBatch` rules for batches written by clients.
fn check_client_rules(header: &BatchHeader, pos: usize) -> Result<()> {
    if header.record_count < 1 {
        return Err(Error::InvalidRecord(format!(
            "batch at byte {pos} reports {} records, at least 1 is required",
            header.record_count
        )));
    }
    if i64::from(header.last_offset_delta) + 1 != i64::from(header.record_count) {
        return Err(Error::InvalidRecord(format!(
            "batch at byte {pos} has lastOffsetDelta {} inconsistent with its {} records",
            header.last_offset_delta, header.record_count
        )));
    }
    if header.is_control() {
        return Err(Error::InvalidRecord(format!(
            "batch at byte {pos} is a control batch, which clients may not write"
        )));
    }
    // Every record takes at least MIN_RECORD_BYTES: a count the batch could not hold would make
    // the log jump offsets (and roll segments) for nothing.
    let body_bytes = header.total_bytes().saturating_sub(HEADER_BYTES);
    let room = match header.compression() {
        Ok(Compression::None) => body_bytes,
        _ => crate::log::MAX_DECODED_BATCH_BYTES,
    };
    if header.record_count as usize > room / MIN_RECORD_BYTES {
        return Err(Error::InvalidRecord(format!(
            "batch at byte {pos} claims {} records, more than its {body_bytes} bytes can hold",
            header.record_count
        )));
    }
    if header.is_transactional() && header.producer_id < 0 {
        return Err(Error::InvalidRecord(format!(
            "batch at byte {pos} is transactional but has no producer id"
        )));
    }
    if header.producer_id >= 0 && header.base_sequence < 0 {
        return Err(Error::InvalidRecord(format!(
            "batch at byte {pos} has producer id {} but invalid base sequence {}",
            header.producer_id, header.base_sequence
        )));
    }
    Ok(())
}

/// Iterates the batches of stored log bytes without checking CRCs, yielding `(position, header)`.
///
/// A partial trailing batch (fewer bytes than its header or its `batchLength` says) ends the
/// iteration cleanly; a batch with a magic other than 2 or a `batchLength` below 49 yields one
/// `Err` and ends it. [`HeaderScan::position`] then tells where the scan stopped, which is where
/// recovery truncates a torn tail.
pub fn scan_headers(buf: &[u8]) -> HeaderScan<'_> {
    HeaderScan {
        buf,
        position: 0,
        done: false,
    }
}

/// The iterator of [`scan_headers`].
#[derive(Debug, Clone)]
pub struct HeaderScan<'a> {
    buf: &'a [u8],
    position: usize,
    done: bool,
}

impl HeaderScan<'_> {
    /// Byte position after the last batch yielded: where the scan stopped or goes on.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl Iterator for HeaderScan<'_> {
    type Item = Result<(usize, BatchHeader)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = &self.buf[self.position..];
        let Ok(header) = BatchHeader::parse(rest) else {
            self.done = true;
            return None;
        };
        let pos = self.position;
        if header.magic != MAGIC_V2 || header.batch_length < MIN_BATCH_LENGTH {
            self.done = true;
            return Some(Err(Error::CorruptBatch(format!(
                "batch at byte {pos} has magic {} and batchLength {}, expected magic 2 and at least {MIN_BATCH_LENGTH}",
                header.magic, header.batch_length
            ))));
        }
        if header.total_bytes() > rest.len() {
            self.done = true;
            return None;
        }
        self.position += header.total_bytes();
        Some(Ok((pos, header)))
    }
}

/// Whether the CRC of the complete batch starting at `batch[0]` matches its contents; false when
/// the slice is shorter than the batch's header or length says. Bytes after the batch are ignored.
pub fn crc_ok(batch: &[u8]) -> bool {
    let Ok(header) = BatchHeader::parse(batch) else {
        return false;
    };
    let total = header.total_bytes();
    header.batch_length >= MIN_BATCH_LENGTH
        && total <= batch.len()
        && crc32c::crc32c(&batch[ATTRIBUTES_AT..total]) == header.crc
}

/// Rewrites `baseOffset` in place; it lies outside the CRC.
///
/// # Panics
/// If `batch` is shorter than a batch header.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites `partitionLeaderEpoch` in place; it lies outside the CRC.
///
/// # Panics
/// If `batch` is shorter than a batch header.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH_AT..MAGIC_AT].copy_from_slice(&epoch.to_be_bytes());
}

/// Stamps a complete batch with the broker's append time, as Kafka's
/// `DefaultRecordBatch.setMaxTimestamp(LOG_APPEND_TIME, now)` does: it sets the timestamp-type
/// attribute bit and `maxTimestamp`, leaves `baseTimestamp` and the records alone (readers take
/// every record's timestamp from `maxTimestamp`), and recomputes the CRC. Nothing changes if the
/// batch already carries this append time.
///
/// # Panics
/// If `batch` is shorter than its header or its `batchLength` says.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    let header = BatchHeader::parse(batch).expect("set_log_append_time needs a complete batch");
    if header.is_log_append_time() && header.max_timestamp == timestamp_ms {
        return;
    }
    let total = header.total_bytes();
    assert!(
        total >= HEADER_BYTES && total <= batch.len(),
        "set_log_append_time needs a complete batch"
    );
    let attributes = header.attributes | LOG_APPEND_TIME_FLAG;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..total]);
    batch[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
}

/// Decodes all records of the complete batch at `batch[0]`, decompressing into at most
/// `max_decompressed_bytes`. Offsets and timestamps are absolute; in a LogAppendTime batch every
/// record's timestamp is the batch's `maxTimestamp`. Duplicate header keys are kept in order.
/// The CRC is not checked (see [`crc_ok`]); bytes after the batch are ignored. Control batches
/// decode like any other: their records' keys hold the marker type.
pub fn decode_records(batch: &[u8], max_decompressed_bytes: usize) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    for_each_record(batch, max_decompressed_bytes, |record| {
        records.push(record);
        Ok(())
    })?;
    Ok(records)
}

/// Checks that every record of the batch has a non-null key, as compacted topics require
/// (Kafka's `LogValidator.validateKey`): [`Error::InvalidRecord`] otherwise.
pub fn require_keys(batch: &[u8], max_decompressed_bytes: usize) -> Result<()> {
    for_each_record(batch, max_decompressed_bytes, |record| match record.key {
        Some(_) => Ok(()),
        None => Err(Error::InvalidRecord(format!(
            "record at offset {} has no key, which a compacted topic requires",
            record.offset
        ))),
    })
}

/// Decodes the records of one batch, handing each to `visit` in order.
fn for_each_record(
    batch: &[u8],
    max_decompressed_bytes: usize,
    mut visit: impl FnMut(Record) -> Result<()>,
) -> Result<()> {
    let header = BatchHeader::parse(batch)?;
    if header.magic != MAGIC_V2 {
        return Err(Error::CorruptBatch(format!(
            "batch has magic {}, only magic 2 is supported",
            header.magic
        )));
    }
    let total = header.total_bytes();
    if header.batch_length < MIN_BATCH_LENGTH || total > batch.len() {
        return Err(Error::CorruptBatch(format!(
            "batch declares batchLength {}, but {} bytes are given",
            header.batch_length,
            batch.len()
        )));
    }
    if header.record_count < 0 {
        return Err(Error::CorruptBatch(format!(
            "batch reports {} records",
            header.record_count
        )));
    }
    let section = &batch[HEADER_BYTES..total];
    let data = match header.compression()? {
        Compression::None => Bytes::copy_from_slice(section),
        compression => decompress(compression, section, max_decompressed_bytes)?,
    };
    if header.record_count as usize > data.len() / MIN_RECORD_BYTES {
        return Err(Error::CorruptBatch(format!(
            "batch reports {} records in {} bytes of records",
            header.record_count,
            data.len()
        )));
    }
    let log_append_time = header.is_log_append_time().then_some(header.max_timestamp);
    let mut reader = Reader {
        data: &data,
        pos: 0,
        end: data.len(),
    };
    for index in 0..header.record_count {
        let record = read_record(&mut reader, &header, log_append_time)
            .map_err(|reason| Error::CorruptBatch(format!("record {index} of the batch: {reason}")))?;
        visit(record)?;
    }
    if reader.pos != data.len() {
        return Err(Error::CorruptBatch(format!(
            "{} bytes follow the batch's last record (of {} declared)",
            data.len() - reader.pos,
            header.record_count
        )));
    }
    Ok(())
}

/// Decodes one length-prefixed record at the reader's position (Kafka's `DefaultRecord.readFrom`).
fn read_record(r: &mut Reader<'_>, header: &BatchHeader, log_append_time: Option<i64>) -> Result<Record, String> {
    let length = r.varint()?;
    let start = r.pos;
    let end = usize::try_from(length)
        .ok()
        .and_then(|n| start.checked_add(n))
        .filter(|&end| end <= r.end)
        .ok_or_else(|| format!("declares {length} bytes, only {} remain", r.end - start))?;
    let mut body = Reader {
        data: r.data,
        pos: start,
        end,
    };
    let _attributes = body.byte()?;
    let timestamp_delta = body.varlong()?;
    let offset_delta = body.varint()?;
    let key = body.nullable_bytes("key")?;
    let value = body.nullable_bytes("value")?;
    let header_count = body.varint()?;
    let header_count = usize::try_from(header_count)
        .ok()
        .filter(|&n| n <= body.end - body.pos)
        .ok_or_else(|| format!("declares {header_count} headers in {} bytes", body.end - body.pos))?;
    let mut headers = Vec::with_capacity(header_count);
    for _ in 0..header_count {
        let header_key = body.nullable_bytes("header key")?.ok_or("has a null header key")?;
        let header_value = body.nullable_bytes("header value")?;
        headers.push((header_key, header_value));
    }
    if body.pos != end {
        return Err(format!("has {} bytes after its headers", end - body.pos));
    }
    r.pos = end;
    Ok(Record {
        offset: header.base_offset.wrapping_add(i64::from(offset_delta)),
        timestamp: log_append_time.unwrap_or_else(|| header.base_timestamp.wrapping_add(timestamp_delta)),
        key,
        value,
        headers,
    })
}

/// A cursor over `data[pos..end]` reading Kafka's zigzag varints and length-prefixed bytes.
struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
    end: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        if self.pos >= self.end {
            return Err("ends early".to_string());
        }
        self.pos += 1;
        Ok(self.data[self.pos - 1])
    }

    /// A zigzag varint of at most 5 bytes (Kafka's `ByteUtils.readVarint`).
    fn varint(&mut self) -> Result<i32, String> {
        let raw = self.unsigned_varint(5)? as u32;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// A zigzag varlong of at most 10 bytes (Kafka's `ByteUtils.readVarlong`).
    fn varlong(&mut self) -> Result<i64, String> {
        let raw = self.unsigned_varint(10)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    fn unsigned_varint(&mut self, max_bytes: u32) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("has a varint longer than {max_bytes} bytes"))
    }

    /// Bytes prefixed by a varint length, where -1 means null.
    fn nullable_bytes(&mut self, what: &str) -> Result<Option<Bytes>, String> {
        let length = self.varint()?;
        if length == -1 {
            return Ok(None);
        }
        let start = self.pos;
        let end = usize::try_from(length)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&end| end <= self.end)
            .ok_or_else(|| format!("has a {what} of {length} bytes, only {} remain", self.end - start))?;
        self.pos = end;
        Ok(Some(self.data.slice(start..end)))
    }
}

/// A record to encode (client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// Create time in milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// Key, or None for a null key.
    pub key: Option<Bytes>,
    /// Value, or None for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order; keys may repeat.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// Options of an encoded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Offset of the first record (clients send 0; the broker rewrites it).
    pub base_offset: i64,
    /// Codec of the records section.
    pub compression: Compression,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Whether the batch belongs to a transaction.
    pub transactional: bool,
    /// Leader epoch, or -1 as clients send it.
    pub partition_leader_epoch: i32,
}

impl Default for EncodeOptions {
    /// An uncompressed batch from a plain (non-idempotent, non-transactional) producer.
    fn default() -> Self {
        EncodeOptions {
            base_offset: 0,
            compression: Compression::None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            partition_leader_epoch: -1,
        }
    }
}

/// Encodes records into one v2 CreateTime batch with its CRC, compressing the records section.
/// Offset deltas run 0..n, timestamp deltas are from the first record's timestamp and
/// `maxTimestamp` is the largest. Zero records is [`Error::InvalidRecord`] (Kafka never writes an
/// empty client batch); a batch past `i32::MAX` bytes is [`Error::TooLarge`].
pub fn encode_batch(records: &[NewRecord], options: &EncodeOptions) -> Result<BytesMut> {
    let Some(first) = records.first() else {
        return Err(Error::InvalidRecord(
            "cannot encode a batch of zero records".to_string(),
        ));
    };
    let record_count = i32::try_from(records.len()).map_err(|_| too_large(records.len()))?;
    let base_timestamp = first.timestamp_ms;
    let mut section = Vec::new();
    let mut body = Vec::new();
    for (delta, record) in records.iter().enumerate() {
        body.clear();
        body.push(0); // Record attributes are unused.
        put_varlong(&mut body, record.timestamp_ms.wrapping_sub(base_timestamp));
        put_varint(&mut body, delta as i32);
        put_nullable_bytes(&mut body, record.key.as_deref())?;
        put_nullable_bytes(&mut body, record.value.as_deref())?;
        put_varint(
            &mut body,
            i32::try_from(record.headers.len()).map_err(|_| too_large(record.headers.len()))?,
        );
        for (key, value) in &record.headers {
            put_nullable_bytes(&mut body, Some(key))?;
            put_nullable_bytes(&mut body, value.as_deref())?;
        }
        put_varint(
            &mut section,
            i32::try_from(body.len()).map_err(|_| too_large(body.len()))?,
        );
        section.extend_from_slice(&body);
    }
    let section = super::codec::compress(options.compression, &section)?;
    let total = HEADER_BYTES + section.len();
    let batch_length = i32::try_from(total - LOG_OVERHEAD_BYTES).map_err(|_| too_large(total))?;
    let mut attributes = options.compression.id();
    if options.transactional {
        attributes |= TRANSACTIONAL_FLAG;
    }
    let header = BatchHeader {
        base_offset: options.base_offset,
        batch_length,
        partition_leader_epoch: options.partition_leader_epoch,
        magic: MAGIC_V2,
        crc: 0,
        attributes,
        last_offset_delta: record_count - 1,
        base_timestamp,
        max_timestamp: records.iter().map(|r| r.timestamp_ms).max().unwrap_or(base_timestamp),
        producer_id: options.producer_id,
        producer_epoch: options.producer_epoch,
        base_sequence: options.base_sequence,
        record_count,
    };
    let mut out = BytesMut::zeroed(HEADER_BYTES);
    header.write(&mut out);
    out.extend_from_slice(&section);
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

fn too_large(size_bytes: usize) -> Error {
    Error::TooLarge {
        what: "encoded record batch",
        size_bytes,
        limit_bytes: i32::MAX as usize,
    }
}

/// Appends a zigzag varint (Kafka's `ByteUtils.writeVarint`).
pub(super) fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_unsigned_varint(out, ((value << 1) ^ (value >> 31)) as u32 as u64);
}

/// Appends a zigzag varlong (Kafka's `ByteUtils.writeVarlong`).
pub(super) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    put_unsigned_varint(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_unsigned_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends bytes prefixed by their varint length, or -1 for None.
pub(super) fn put_nullable_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) -> Result<()> {
    match bytes {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, i32::try_from(bytes.len()).map_err(|_| too_large(bytes.len()))?);
            out.extend_from_slice(bytes);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

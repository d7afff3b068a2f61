//! The storage settings of one partition, named after Kafka's topic configs.

/// Largest segment Brook writes: index positions are 32-bit, and Kafka caps `segment.bytes` at `i32::MAX`.
pub const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;

/// Kafka's default `log.cleaner.dedupe.buffer.size`.
pub const DEFAULT_DEDUPE_BUFFER_BYTES: u64 = 128 * 1024 * 1024;

/// Storage settings of one partition, set from topic configs by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: the active segment rolls before an append would make it larger than this.
    pub segment_bytes: u64,
    /// `segment.ms`: the active segment rolls once its first batch is older than this.
    pub segment_ms: i64,
    /// `retention.ms`: segments whose newest record is older than this are deleted; -1 is unlimited.
    pub retention_ms: i64,
    /// `retention.bytes`: the oldest segments are deleted while the log is larger; -1 is unlimited.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes of log between two sparse index entries.
    pub index_interval_bytes: u32,
    /// `flush.messages`: 1 fsyncs before the ack (Brook's default); N > 1 fsyncs after N messages or
    /// `flush_ms`, and acks do not wait.
    pub flush_messages: i64,
    /// `flush.ms`: the longest time unflushed messages wait for a periodic fsync when `flush_messages` > 1.
    pub flush_ms: i64,
    /// `cleanup.policy` holds `delete`: `retention_ms` and `retention_bytes` delete old segments.
    pub cleanup_delete: bool,
    /// `cleanup.policy` holds `compact`: the log cleaner keeps only the latest record of each key.
    pub cleanup_compact: bool,
    /// `delete.retention.ms`: how long a compacted segment keeps its tombstones (null values) after
    /// its largest timestamp, so that consumers reading from the start still see the deletes.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment whose largest timestamp is younger than this is not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `log.cleaner.dedupe.buffer.size`: the bound on the cleaner's key -> offset map, in bytes.
    pub cleaner_dedupe_buffer_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        const WEEK_MS: i64 = 7 * 24 * 60 * 60 * 1000;
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: WEEK_MS,
            retention_ms: WEEK_MS,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            flush_messages: 1,
            flush_ms: i64::MAX,
            cleanup_delete: true,
            cleanup_compact: false,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_compaction_lag_ms: 0,
            cleaner_dedupe_buffer_bytes: DEFAULT_DEDUPE_BUFFER_BYTES,
        }
    }
}

impl LogConfig {
    /// Whether acks must wait for fsync.
    pub fn flush_before_ack(&self) -> bool {
        self.flush_messages <= 1
    }

    /// The segment size in force, clamped to what 32-bit index positions can address.
    pub fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.min(MAX_SEGMENT_BYTES)
    }
}

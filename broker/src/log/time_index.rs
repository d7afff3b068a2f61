//! The time index of a segment (`.timeindex`): sparse (largest timestamp so far, its offset) pairs
//! that let ListOffsets by timestamp start scanning near the answer instead of at the segment start.

use super::index::{IndexEntry, IndexFile};

/// A time index entry: the largest timestamp seen so far in the segment and the (relative) last
/// offset of the batch that carried it, as Kafka writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest timestamp so far, in milliseconds.
    pub timestamp_ms: i64,
    /// Last offset of the batch holding it, minus the segment's base offset.
    pub relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const BYTES: usize = 12;

    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        out[8..12].copy_from_slice(&self.relative_offset.to_be_bytes());
    }

    fn decode(buf: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&buf[0..8]);
        TimeEntry {
            timestamp_ms: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        }
    }
}

/// The time index of a segment; entries have strictly increasing timestamps.
pub type TimeIndex = IndexFile<TimeEntry>;

impl TimeIndex {
    /// The last entry whose timestamp is at most `timestamp_ms`. Every record before the batch holding
    /// its offset has a smaller timestamp, so a search for `timestamp_ms` may start at that batch.
    pub fn lookup(&self, timestamp_ms: i64) -> Option<TimeEntry> {
        let entries = self.entries();
        let after = entries.partition_point(|e| e.timestamp_ms <= timestamp_ms);
        after.checked_sub(1).map(|i| entries[i])
    }

    /// Appends an entry only when its timestamp is larger than the last one's, as Kafka does.
    pub fn maybe_append(&mut self, entry: TimeEntry) -> crate::error::Result<()> {
        match self.last() {
            Some(last) if last.timestamp_ms >= entry.timestamp_ms => Ok(()),
            _ => self.append(entry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_maybe_append_keep_timestamps_increasing() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = TimeIndex::create(&dir.path().join("0.timeindex")).unwrap();
        index
            .maybe_append(TimeEntry {
                timestamp_ms: 100,
                relative_offset: 3,
            })
            .unwrap();
        index
            .maybe_append(TimeEntry {
                timestamp_ms: 100,
                relative_offset: 7,
            })
            .unwrap();
        index
            .maybe_append(TimeEntry {
                timestamp_ms: 90,
                relative_offset: 8,
            })
            .unwrap();
        index
            .maybe_append(TimeEntry {
                timestamp_ms: 300,
                relative_offset: 12,
            })
            .unwrap();
        assert_eq!(index.entries().len(), 2);
        assert_eq!(index.lookup(99), None);
        assert_eq!(index.lookup(100).unwrap().relative_offset, 3);
        assert_eq!(index.lookup(299).unwrap().relative_offset, 3);
        assert_eq!(index.lookup(i64::MAX).unwrap().relative_offset, 12);
    }
}

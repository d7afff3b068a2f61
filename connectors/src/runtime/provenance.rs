//! Provenance headers: every record a step writes names where it came from (a source position,
//! or an input topic partition and offset), so that after a crash the step can tell what it
//! already wrote from what it must still write, and so that any output record can be traced
//! back to its input.

use std::collections::{BTreeMap, HashSet};

use brook_broker::access::{ConsumerRecord, TopicAccess};
use bytes::Bytes;

use super::{Halt, RunnerSettings, Stop};
use crate::error::Error;
use crate::source::Position;

/// Header naming the stream a record came from (a file's identity, an input partition).
pub const HEADER_STREAM: &str = "brook.origin.stream";
/// Header with where the record started in that stream (a byte offset, an input offset).
pub const HEADER_START: &str = "brook.origin.start";
/// Header with where the next record starts.
pub const HEADER_END: &str = "brook.origin.end";

/// The bytes one recovery fetch asks for.
const SCAN_FETCH_BYTES: usize = 1 << 20;

/// The provenance headers of `position`.
pub fn headers(position: &Position) -> [(Bytes, Option<Bytes>); 3] {
    headers_in(&Bytes::from(position.stream.clone()), position.start, position.end)
}

/// The provenance headers of the record from `start` to `end` of `stream`, for a runner that
/// writes many records of one stream and keeps its name as shared bytes.
pub fn headers_in(stream: &Bytes, start: u64, end: u64) -> [(Bytes, Option<Bytes>); 3] {
    let h = |name: &'static str, value: Bytes| (Bytes::from_static(name.as_bytes()), Some(value));
    [
        h(HEADER_STREAM, stream.clone()),
        h(HEADER_START, start.to_string().into()),
        h(HEADER_END, end.to_string().into()),
    ]
}

/// The provenance of a record written by a step, if it carries one.
pub fn of(record: &ConsumerRecord) -> Option<(String, u64)> {
    let find = |name: &str| {
        record
            .headers
            .iter()
            .rev()
            .find(|(k, _)| k.as_ref() == name.as_bytes())
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let stream = find(HEADER_STREAM)?;
    let start = find(HEADER_START)?.parse().ok()?;
    Some((stream, start))
}

/// The provenances of the records in `topic` from `from` (partition to offset; partitions not
/// named are read from their earliest offset) to the current end: what the step wrote after its
/// last checkpoint.
pub async fn written_since(
    access: &dyn TopicAccess,
    topic: &str,
    from: &[(i32, i64)],
    settings: &RunnerSettings,
    stop: &Stop,
) -> Result<HashSet<(String, u64)>, Halt> {
    let from: BTreeMap<i32, i64> = from.iter().copied().collect();
    let ends = super::retrying(settings, stop, "listing offsets", || {
        access.list_offsets(topic, brook_broker::access::OffsetSpec::Latest)
    })
    .await?;
    let starts: BTreeMap<i32, i64> = super::retrying(settings, stop, "listing offsets", || {
        access.list_offsets(topic, brook_broker::access::OffsetSpec::Earliest)
    })
    .await?
    .into_iter()
    .collect();
    let mut seen = HashSet::new();
    for (partition, end) in ends {
        let earliest = starts.get(&partition).copied().unwrap_or(0);
        let mut next = from.get(&partition).copied().unwrap_or(earliest).max(earliest);
        while next < end {
            stop.check()?;
            let fetched = super::retrying(settings, stop, "reading the output back", || {
                access.fetch(topic, partition, next, SCAN_FETCH_BYTES, 0)
            })
            .await?;
            if fetched.records.is_empty() {
                if fetched.high_watermark <= next {
                    break;
                }
                next += 1;
                continue;
            }
            for r in fetched.records.iter().filter(|r| r.offset >= next && r.offset < end) {
                if let Some(p) = of(r) {
                    seen.insert(p);
                    if seen.len() > settings.max_recovery_records {
                        return Err(Halt::Failed(Error::Internal(format!(
                            "more than {} records of {topic} were written after the last checkpoint; \
                             cannot tell which inputs they came from",
                            settings.max_recovery_records
                        ))));
                    }
                }
            }
            next = fetched.records.last().map(|r| r.offset + 1).unwrap_or(next + 1);
        }
    }
    Ok(seen)
}

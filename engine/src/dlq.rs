//! Dead letters: a record that could not be processed, kept verbatim with headers saying why and
//! where it came from, so that one bad record never stops a query.
//!
//! A source topic `t` sends its dead letters to `t.dlq` ([`dead_letter_topic`]). The dead letter
//! keeps the original key and value (a tombstone stays a tombstone) and carries these headers,
//! all UTF-8 text:
//! - `brook.error`: what went wrong, in prose;
//! - `brook.stage`: where it went wrong, e.g. `decode`, `encode`, `eval`;
//! - `brook.source.topic`, `brook.source.partition`, `brook.source.offset`: the original record's
//!   position, partition and offset in decimal.

use brook_broker::access::OutRecord;
use bytes::Bytes;

/// The header naming the error.
pub const HEADER_ERROR: &str = "brook.error";
/// The header naming the stage that failed.
pub const HEADER_STAGE: &str = "brook.stage";
/// The header naming the source topic.
pub const HEADER_SOURCE_TOPIC: &str = "brook.source.topic";
/// The header naming the source partition.
pub const HEADER_SOURCE_PARTITION: &str = "brook.source.partition";
/// The header naming the source offset.
pub const HEADER_SOURCE_OFFSET: &str = "brook.source.offset";
/// What a source topic's name is suffixed with to name its dead-letter topic.
pub const DLQ_SUFFIX: &str = ".dlq";

/// The dead-letter topic of `source`: `<source>.dlq`.
pub fn dead_letter_topic(source: &str) -> String {
    format!("{source}{DLQ_SUFFIX}")
}

/// A dead letter for the record at `offset` of `source_topic`/`partition` that failed at `stage`
/// with `error`; it keeps the original key and value, and is placed by key in the DLQ topic.
pub fn dead_letter(
    source_topic: &str,
    partition: i32,
    offset: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    error: &str,
    stage: &str,
) -> OutRecord {
    let header = |name: &'static str, value: String| (Bytes::from_static(name.as_bytes()), Some(Bytes::from(value)));
    OutRecord {
        partition: None,
        key,
        value,
        headers: vec![
            header(HEADER_ERROR, error.to_string()),
            header(HEADER_STAGE, stage.to_string()),
            header(HEADER_SOURCE_TOPIC, source_topic.to_string()),
            header(HEADER_SOURCE_PARTITION, partition.to_string()),
            header(HEADER_SOURCE_OFFSET, offset.to_string()),
        ],
        timestamp_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_keeps_the_record_and_names_its_error_and_source() {
        assert_eq!(dead_letter_topic("clicks"), "clicks.dlq");
        let r = dead_letter(
            "clicks",
            3,
            42,
            Some(Bytes::from("k")),
            Some(Bytes::from("{bad")),
            "not valid JSON",
            "decode",
        );
        assert_eq!(
            (r.key.as_deref(), r.value.as_deref()),
            (Some(&b"k"[..]), Some(&b"{bad"[..]))
        );
        let headers: Vec<(&[u8], &[u8])> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_deref().unwrap_or_default()))
            .collect();
        let expected: Vec<(&[u8], &[u8])> = vec![
            (b"brook.error", b"not valid JSON"),
            (b"brook.stage", b"decode"),
            (b"brook.source.topic", b"clicks"),
            (b"brook.source.partition", b"3"),
            (b"brook.source.offset", b"42"),
        ];
        assert_eq!(headers, expected);
        let tombstone = dead_letter("t", 0, 0, None, None, "no value", "decode");
        assert!(tombstone.value.is_none() && tombstone.key.is_none());
    }
}

//! The format of a topic nobody declared, guessed from a bounded sample of its first records:
//! JSON when most values are JSON objects (with columns inferred from them), else lines.

use std::sync::Arc;

use brook_broker::access::{OffsetSpec, TopicAccess};
use bytes::Bytes;

use crate::error::Result;
use crate::format::{infer_schema, Format, FormatSpec};

/// The most values sampled from a topic to guess its format.
pub const SAMPLE_MAX_RECORDS: usize = 200;
/// The most bytes one sampling fetch asks a partition for.
const SAMPLE_FETCH_MAX_BYTES: usize = 256 * 1024;

/// Up to [`SAMPLE_MAX_RECORDS`] values (tombstones left out) from the start of `topic`'s
/// partitions, shared evenly between the partitions that hold records.
pub async fn sample_values(access: &Arc<dyn TopicAccess>, topic: &str) -> Result<Vec<Bytes>> {
    let earliest = access.list_offsets(topic, OffsetSpec::Earliest).await?;
    let latest = access.list_offsets(topic, OffsetSpec::Latest).await?;
    let filled: Vec<(i32, i64, i64)> = earliest
        .iter()
        .filter_map(|&(p, start)| {
            let end = latest.iter().find(|(q, _)| *q == p).map(|(_, o)| *o)?;
            (start < end).then_some((p, start, end))
        })
        .collect();
    let per_partition = SAMPLE_MAX_RECORDS / filled.len().max(1);
    let mut samples = Vec::new();
    for (partition, start, end) in filled {
        let fetched = access.fetch(topic, partition, start, SAMPLE_FETCH_MAX_BYTES, 0).await?;
        let values = fetched
            .records
            .into_iter()
            .filter(|r| r.offset >= start && r.offset < end);
        samples.extend(values.filter_map(|r| r.value).take(per_partition.max(1)));
    }
    samples.truncate(SAMPLE_MAX_RECORDS);
    Ok(samples)
}

/// The format of values like `samples`: json (with inferred columns) when at least half of them
/// are JSON objects, so that a few malformed records do not change how a topic reads; else lines.
pub fn infer_format(samples: &[Bytes]) -> Result<FormatSpec> {
    let objects: Vec<&[u8]> = samples
        .iter()
        .map(|s| s.as_ref())
        .filter(|s| is_json_object(s))
        .collect();
    if objects.is_empty() || objects.len() * 2 < samples.len() {
        return Ok(FormatSpec::new(Format::Lines));
    }
    let spec = FormatSpec::new(Format::Json);
    let schema = infer_schema(&spec, &objects)?;
    Ok(spec.with_schema(schema))
}

fn is_json_object(value: &[u8]) -> bool {
    let trimmed = value.trim_ascii_start();
    trimmed.first() == Some(&b'{')
        && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(items: &[&'static str]) -> Vec<Bytes> {
        items.iter().map(|s| Bytes::from_static(s.as_bytes())).collect()
    }

    #[test]
    fn mostly_json_objects_read_as_json_with_their_fields() {
        let spec = infer_format(&values(&[r#"{"a": 1}"#, r#"{"a": 2, "b": "x"}"#, "{broken"])).unwrap();
        assert_eq!(spec.format, Format::Json);
        let schema = spec.schema.unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn anything_else_reads_as_lines() {
        assert_eq!(
            infer_format(&values(&["GET /", "POST /x"])).unwrap().format,
            Format::Lines
        );
        assert_eq!(infer_format(&values(&["[1, 2]", "3"])).unwrap().format, Format::Lines);
        assert_eq!(infer_format(&[]).unwrap().format, Format::Lines);
    }
}

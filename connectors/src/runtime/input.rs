//! Reading a step's input topic, shared by the sink runner and the pipeline transform runner:
//! recovering from fetch errors, growing an inferred schema, and turning a record that cannot be
//! processed into a dead letter (or the error that stops the step).

use std::collections::BTreeMap;
use std::sync::Arc;

use brook_broker::access::{ConsumerRecord, OffsetSpec, OutRecord, TopicAccess};
use brook_engine::dlq::dead_letter;
use brook_engine::format::{infer_schema, Format, FormatSpec, MAX_INFER_SAMPLES};
use datafusion::arrow::datatypes::{Schema, SchemaRef};

use super::{retrying, ErrorPolicy, Halt, RunnerSettings, Stop};
use crate::error::Error;

/// Deals with the failed partitions of a fetch round: an offset out of range (retention went
/// past it) restarts the partition at its earliest offset, a retriable error waits a backoff,
/// anything else stops the step.
pub async fn recover_fetch_errors(
    access: &dyn TopicAccess,
    topic: &str,
    step: &str,
    errors: Vec<(i32, i64, brook_broker::Error)>,
    positions: &mut BTreeMap<i32, i64>,
    settings: &RunnerSettings,
    stop: &Stop,
) -> Result<(), Halt> {
    for (p, from, e) in errors {
        match e {
            brook_broker::Error::OffsetOutOfRange { .. } => {
                let earliest = retrying(settings, stop, "listing offsets", || {
                    access.list_offsets(topic, OffsetSpec::Earliest)
                })
                .await?;
                let start = earliest.into_iter().find(|(q, _)| *q == p).map(|(_, o)| o).unwrap_or(0);
                tracing::warn!(
                    step,
                    partition = p,
                    from,
                    start,
                    "offset out of range, reading from the earliest"
                );
                positions.insert(p, start);
            }
            e if e.is_retriable() => {
                tracing::warn!(step, partition = p, error = %e, "fetch failed, retrying");
                stop.sleep(settings.retry_backoff_ms).await?;
            }
            e => return Err(Halt::Failed(e.into())),
        }
    }
    Ok(())
}

/// Grows `schema`, inferred from JSON or CSV values, by the fields of `values` it lacks (new
/// fields are appended; a field never changes type). Does nothing for a declared schema or a
/// format with a fixed one. Returns whether the schema changed.
pub fn grow_schema<'a>(
    format: &FormatSpec,
    values: impl IntoIterator<Item = &'a [u8]>,
    schema: &mut Option<SchemaRef>,
) -> Result<bool, Halt> {
    if format.schema.is_some() || !matches!(format.format, Format::Json | Format::Csv) {
        return Ok(false);
    }
    let samples: Vec<&[u8]> = values.into_iter().take(MAX_INFER_SAMPLES).collect();
    let inferred = infer_schema(format, &samples).map_err(Error::from)?;
    let (merged, changed) = match schema.as_ref() {
        None => (inferred, true),
        Some(current) => {
            let added: Vec<_> = inferred
                .fields()
                .iter()
                .filter(|f| current.field_with_name(f.name()).is_err())
                .cloned()
                .collect();
            if added.is_empty() {
                (current.clone(), false)
            } else {
                let mut fields: Vec<_> = current.fields().iter().cloned().collect();
                fields.extend(added);
                (Arc::new(Schema::new(fields)), true)
            }
        }
    };
    *schema = Some(merged);
    Ok(changed)
}

/// A dead letter for input `record` that step `step` could not process at `stage`; under the
/// `Fail` policy, the error that stops the step instead.
pub fn letter(
    policy: &ErrorPolicy,
    step: &str,
    record: &ConsumerRecord,
    why: &str,
    stage: &str,
) -> Result<OutRecord, Halt> {
    match policy {
        ErrorPolicy::Fail => Err(Halt::Failed(Error::External {
            system: "pipeline",
            message: format!(
                "{step}: record {}/{}/{}: {why} (on_error is fail)",
                record.topic, record.partition, record.offset
            ),
            retriable: false,
        })),
        ErrorPolicy::DeadLetter { .. } => Ok(dead_letter(
            &record.topic,
            record.partition,
            record.offset,
            record.key.clone(),
            record.value.clone(),
            why,
            stage,
        )),
    }
}

//! The `tests:` block of a pipeline file, run offline: each case gets a fresh embedded broker in
//! a temporary directory, its input records are parsed the way each source parses what it reads
//! and written to the source topics, the transforms run for real, and what each named step
//! produced (for a sink: what it would receive) is compared with the expected rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use brook_broker::access::{EmbeddedAccess, OffsetSpec, OutRecord, TopicAccess};
use brook_broker::{Broker, BrokerConfig};
use brook_connectors::runtime::produce::ensure_topic;
use brook_connectors::runtime::RunnerSettings;
use brook_connectors::{build_source, Context, Error, Result};
use brook_engine::dlq::dead_letter;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::model::{Pipeline, TestCase};
use crate::run::{self, step_id, Parts};

/// How long a case may take before it is reported as stuck; a bound, not a performance target.
const CASE_DEADLINE: Duration = Duration::from_secs(60);

/// The bytes one read of a step's output asks for.
const READ_BYTES: usize = 4 << 20;

/// How one test case went.
#[derive(Debug, Clone, Serialize)]
pub struct TestOutcome {
    /// The case's name.
    pub name: String,
    /// What did not match, in prose; empty when the case passed.
    pub failures: Vec<String>,
}

impl TestOutcome {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every case of `pipeline.tests`.
pub async fn run_tests(pipeline: &Pipeline) -> Result<Vec<TestOutcome>> {
    let mut outcomes = Vec::new();
    for case in &pipeline.tests {
        outcomes.push(run_case(pipeline, case).await?);
    }
    Ok(outcomes)
}

/// A broker in a temporary directory, closed when dropped.
struct Scratch {
    _dir: tempfile::TempDir,
    broker: Arc<Broker>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.broker.close();
    }
}

async fn scratch() -> Result<Scratch> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("creating a temporary directory", e))?;
    let mut config = BrokerConfig::new(dir.path().to_path_buf());
    config.set("offsets.topic.num.partitions", "1")?;
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .map_err(|e| Error::Internal(format!("opening a test broker: {e}")))??;
    Ok(Scratch { _dir: dir, broker })
}

async fn run_case(pipeline: &Pipeline, case: &TestCase) -> Result<TestOutcome> {
    let scratch = scratch().await?;
    let access: Arc<dyn TopicAccess> = Arc::new(EmbeddedAccess::new(scratch.broker.clone()));
    let settings = RunnerSettings {
        poll_wait_ms: 50,
        checkpoint_interval_ms: 100,
        ..RunnerSettings::default()
    };
    let running = run::start(
        pipeline,
        access.clone(),
        settings,
        Parts {
            sources: false,
            sinks: false,
        },
    )
    .await?;
    let mut failures = Vec::new();
    feed(pipeline, case, access.as_ref()).await?;
    // Transforms run in topological order, so each one's input is complete when it is awaited.
    let deadline = Instant::now() + CASE_DEADLINE;
    for t in &pipeline.transforms {
        let total = count(access.as_ref(), &t.input_topic).await?;
        let Some(status) = running.status(&t.name) else {
            continue;
        };
        loop {
            let (records_in, _, _) = status.counters();
            if records_in >= total {
                break;
            }
            if let Some((step, why)) = running.failure() {
                failures.push(format!("step {step} failed: {why}"));
                break;
            }
            if Instant::now() > deadline {
                failures.push(format!(
                    "transform {} read {records_in} of {total} records in {CASE_DEADLINE:?}",
                    t.name
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for (step, expected) in &case.expect {
        let topic = pipeline.step_topic(step).or_else(|| {
            pipeline
                .sinks
                .iter()
                .find(|s| &s.name == step)
                .map(|s| s.input_topic.as_str())
        });
        let Some(topic) = topic else {
            failures.push(format!("{step} is not a step of the pipeline"));
            continue;
        };
        let actual = read_values(access.as_ref(), topic).await?;
        compare(step, expected, &actual, &mut failures);
    }
    for (step, expected) in &case.expect_dead_letters {
        match pipeline.on_error_of(step).and_then(|p| p.dead_letter_topic()) {
            Some(topic) => {
                let n = count(access.as_ref(), topic).await.unwrap_or(0);
                if n != *expected {
                    failures.push(format!("{step}: expected {expected} dead letters, found {n}"));
                }
            }
            None => failures.push(format!("{step} has no dead-letter topic (on_error is fail)")),
        }
    }
    running.stop().await?;
    Ok(TestOutcome {
        name: case.name.clone(),
        failures,
    })
}

/// Writes the case's input to the source topics, parsed as each source parses its input.
async fn feed(pipeline: &Pipeline, case: &TestCase, access: &dyn TopicAccess) -> Result<()> {
    for (name, values) in &case.input {
        let Some(spec) = pipeline.sources.iter().find(|s| &s.name == name) else {
            return Err(Error::Config {
                connector: "tests",
                message: format!("test {:?} feeds {name}, which is not a source", case.name),
            });
        };
        let ctx = Context {
            name: step_id(&pipeline.name, name),
            base_dir: pipeline.base_dir.clone(),
        };
        let source = build_source(&spec.connector, &ctx, spec.config.clone())?;
        let mut records = Vec::new();
        let mut letters = Vec::new();
        for value in values {
            let bytes = match value {
                Value::String(line) => match source.parse_line(line.as_bytes()) {
                    Some(Ok(parsed)) => parsed,
                    Some(Err(why)) => {
                        letters.push(dead_letter(
                            &ctx.name,
                            -1,
                            -1,
                            None,
                            Some(Bytes::from(line.clone())),
                            &format!("input did not parse: {why}"),
                            "parse",
                        ));
                        continue;
                    }
                    None => Bytes::from(line.clone()),
                },
                other => Bytes::from(other.to_string()),
            };
            records.push(OutRecord {
                partition: None,
                key: None,
                value: Some(bytes),
                headers: Vec::new(),
                timestamp_ms: None,
            });
        }
        access.produce(&spec.topic, records).await?;
        if let Some(dlq) = spec.on_error.dead_letter_topic() {
            if !letters.is_empty() {
                ensure_topic(access, dlq, 1).await?;
                access.produce(dlq, letters).await?;
            }
        }
    }
    Ok(())
}

/// How many records `topic` holds (0 when it does not exist).
async fn count(access: &dyn TopicAccess, topic: &str) -> Result<u64> {
    let latest = match access.list_offsets(topic, OffsetSpec::Latest).await {
        Ok(l) => l,
        Err(brook_broker::Error::UnknownTopicOrPartition(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let earliest = access.list_offsets(topic, OffsetSpec::Earliest).await?;
    Ok(latest
        .iter()
        .map(|(p, end)| {
            let start = earliest.iter().find(|(q, _)| q == p).map(|(_, o)| *o).unwrap_or(0);
            (end - start).max(0) as u64
        })
        .sum())
}

/// Every value of `topic`, by partition then offset, as JSON (text when it is not JSON).
async fn read_values(access: &dyn TopicAccess, topic: &str) -> Result<Vec<Value>> {
    let mut values = Vec::new();
    let latest = match access.list_offsets(topic, OffsetSpec::Latest).await {
        Ok(l) => l,
        Err(brook_broker::Error::UnknownTopicOrPartition(_)) => return Ok(values),
        Err(e) => return Err(e.into()),
    };
    let earliest = access.list_offsets(topic, OffsetSpec::Earliest).await?;
    for (p, end) in latest {
        let mut next = earliest.iter().find(|(q, _)| *q == p).map(|(_, o)| *o).unwrap_or(0);
        while next < end {
            let fetched = access.fetch(topic, p, next, READ_BYTES, 0).await?;
            if fetched.records.is_empty() {
                break;
            }
            let from = next;
            for r in fetched.records.iter().filter(|r| r.offset >= from) {
                let text = r.value.as_deref().unwrap_or_default();
                values.push(
                    serde_json::from_slice(text)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(text).into())),
                );
                next = r.offset + 1;
            }
        }
    }
    Ok(values)
}

/// Compares expected rows with actual ones, in order, and says what differs.
fn compare(step: &str, expected: &[Value], actual: &[Value], failures: &mut Vec<String>) {
    if expected.len() != actual.len() {
        failures.push(format!(
            "{step}: expected {} rows, got {}: {}",
            expected.len(),
            actual.len(),
            serde_json::to_string(actual).unwrap_or_default()
        ));
        return;
    }
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        if !same(e, a) {
            failures.push(format!("{step}: row {i}: expected {e}, got {a}"));
        }
    }
}

/// JSON equality where numbers compare by value (1 == 1.0) and a null field equals a missing one.
pub fn same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => match (e.as_f64(), a.as_f64()) {
            (Some(e), Some(a)) => e == a,
            _ => e == a,
        },
        (Value::Object(e), Value::Object(a)) => {
            let keys = e.keys().chain(a.keys());
            keys.into_iter()
                .all(|k| same(e.get(k).unwrap_or(&Value::Null), a.get(k).unwrap_or(&Value::Null)))
        }
        (Value::Array(e), Value::Array(a)) => e.len() == a.len() && e.iter().zip(a).all(|(e, a)| same(e, a)),
        (e, a) => e == a,
    }
}

#[cfg(test)]
mod tests {
    use super::same;
    use serde_json::json;

    #[test]
    fn rows_compare_by_value_with_null_as_missing() {
        assert!(same(&json!({"a": 1, "b": null}), &json!({"a": 1.0})));
        assert!(!same(&json!({"a": 1}), &json!({"a": 2})));
        assert!(!same(&json!({"a": "1"}), &json!({"a": 1})));
        assert!(!same(&json!({"a": 1}), &json!({"a": 1, "c": 3})));
    }
}

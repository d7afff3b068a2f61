//! The `generator` source: synthetic JSON records at a given rate, for demos, load tests and
//! pipeline tests. Record `n` is a pure function of (seed, n) but for its `timestamp` fields, and
//! the checkpoint is the next sequence number, so a restart regenerates exactly what follows.

mod bucket;
mod fields;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use brook_engine::format::{Format, FormatSpec};
use bytes::Bytes;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::registry::{parse_config, Context};
use crate::source::{Position, Source, SourceItem, SourceRecord};

use bucket::TokenBucket;
pub use fields::FieldSpec;

/// The connector's type name.
const NAME: &str = "generator";
/// The highest rate accepted, records per second.
const MAX_RATE_PER_SEC: f64 = 100_000_000.0;
/// The most fields a record may have.
const MAX_FIELDS: usize = 1000;

/// Configuration of the `generator` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Records per second (fractions allowed); 0 makes them as fast as polls take them.
    #[serde(default = "default_rate_per_sec")]
    pub rate_per_sec: f64,
    /// End after this many records; without it the source never ends.
    #[serde(default)]
    pub count: Option<u64>,
    /// Seeds every random value; the same seed gives the same records.
    #[serde(default)]
    pub seed: u64,
    /// Field name to spec: `sequence`, `timestamp`, `uuid`, `{int: [min, max]}`,
    /// `{float: [min, max]}`, `{choice: [..]}` or `{text: length}`. Objects list fields by name
    /// in alphabetical order. Default: `{id: sequence, ts: timestamp}`.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
}

/// The default rate: ten records a second.
fn default_rate_per_sec() -> f64 {
    10.0
}

/// What a generator checkpoint holds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Checkpoint {
    /// The sequence number of the next record.
    next_sequence: u64,
}

/// Builds a `generator` source from its configuration.
pub fn build(_ctx: &Context, config: serde_json::Value) -> Result<Box<dyn Source>> {
    let config: GeneratorConfig = parse_config(NAME, config)?;
    Ok(Box::new(Generator::new(config)?))
}

/// The source.
pub(crate) struct Generator {
    /// Rate, count and seed.
    config: GeneratorConfig,
    /// The fields in the order objects list them.
    fields: Vec<(String, FieldSpec)>,
    /// The stream name of every position: `generator:seed=<seed>`.
    stream: String,
    /// The next record's sequence number.
    next: u64,
    /// Paces records; None at rate 0.
    bucket: Option<TokenBucket>,
}

impl Generator {
    /// Checks `config`.
    pub(crate) fn new(config: GeneratorConfig) -> Result<Generator> {
        if !config.rate_per_sec.is_finite() || !(0.0..=MAX_RATE_PER_SEC).contains(&config.rate_per_sec) {
            return Err(Error::config(
                NAME,
                format!(
                    "rate_per_sec must be between 0 and {MAX_RATE_PER_SEC}, not {}",
                    config.rate_per_sec
                ),
            ));
        }
        if config.fields.len() > MAX_FIELDS {
            return Err(Error::config(NAME, format!("at most {MAX_FIELDS} fields are allowed")));
        }
        let fields: Vec<(String, FieldSpec)> = if config.fields.is_empty() {
            vec![("id".into(), FieldSpec::Sequence), ("ts".into(), FieldSpec::Timestamp)]
        } else {
            config.fields.iter().map(|(n, s)| (n.clone(), s.clone())).collect()
        };
        for (name, spec) in &fields {
            spec.check(name)?;
        }
        Ok(Generator {
            stream: format!("generator:seed={}", config.seed),
            config,
            fields,
            next: 0,
            bucket: None,
        })
    }

    /// Record `n`, made at `now_ms`.
    fn record(&self, n: u64, now_ms: i64) -> SourceRecord {
        let object: serde_json::Map<String, serde_json::Value> = self
            .fields
            .iter()
            .map(|(name, spec)| (name.clone(), spec.value(self.config.seed, name, n, now_ms)))
            .collect();
        SourceRecord {
            key: None,
            value: Bytes::from(serde_json::Value::Object(object).to_string()),
            timestamp_ms: Some(now_ms),
            headers: Vec::new(),
            position: Position {
                stream: self.stream.clone(),
                start: n,
                end: n + 1,
            },
        }
    }

    /// Records left before `count` is reached.
    fn remaining(&self) -> u64 {
        self.config.count.map_or(u64::MAX, |c| c.saturating_sub(self.next))
    }
}

#[async_trait]
impl Source for Generator {
    fn format(&self) -> FormatSpec {
        FormatSpec::new(Format::Json).with_schema(fields::schema(&self.fields))
    }

    async fn open(&mut self, checkpoint: Option<serde_json::Value>) -> Result<()> {
        self.next = match checkpoint {
            None => 0,
            Some(value) => {
                let checkpoint: Checkpoint = serde_json::from_value(value.clone()).map_err(|e| {
                    Error::Internal(format!(
                        "the generator checkpoint {value} is not one a generator wrote: {e}"
                    ))
                })?;
                checkpoint.next_sequence
            }
        };
        self.bucket =
            (self.config.rate_per_sec > 0.0).then(|| TokenBucket::new(self.config.rate_per_sec, Instant::now()));
        tracing::info!(stream = %self.stream, next = self.next, rate_per_sec = self.config.rate_per_sec, "generator opened");
        Ok(())
    }

    async fn poll(&mut self, max_records: usize, wait_ms: u64) -> Result<Option<Vec<SourceItem>>> {
        let remaining = self.remaining();
        if remaining == 0 {
            return Ok(None);
        }
        let want = usize::try_from(remaining).unwrap_or(usize::MAX).min(max_records);
        if want == 0 {
            return Ok(Some(Vec::new()));
        }
        let rate = self.config.rate_per_sec;
        if rate > 0.0 && self.bucket.is_none() {
            self.bucket = Some(TokenBucket::new(rate, Instant::now()));
        }
        let n = match self.bucket.as_mut() {
            None => want,
            Some(bucket) => {
                let deadline = Instant::now() + Duration::from_millis(wait_ms);
                loop {
                    let now = Instant::now();
                    match bucket.take(want, now) {
                        Ok(n) => break n,
                        Err(_) if now >= deadline => return Ok(Some(Vec::new())),
                        // Never sleeps past the poll's wait.
                        Err(until) => tokio::time::sleep(until.min(deadline - now)).await,
                    }
                }
            }
        };
        let now = brook_broker::broker::now_ms();
        let items = (self.next..self.next + n as u64)
            .map(|seq| SourceItem::Record(self.record(seq, now)))
            .collect();
        self.next += n as u64;
        Ok(Some(items))
    }

    fn checkpoint(&self) -> serde_json::Value {
        serde_json::json!({ "next_sequence": self.next })
    }
}

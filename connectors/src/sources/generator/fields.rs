//! The generator's field specs and the values they produce: every value of record `n` is a pure
//! function of (seed, field name, n), except `timestamp`, so a source restarted from a checkpoint
//! regenerates the same records.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::temporal_conversions::timestamp_ms_to_datetime;
use serde::Deserialize;
use serde_json::Value;

use super::NAME;
use crate::error::{Error, Result};

/// The longest `text` field, in characters.
const MAX_TEXT_LENGTH: usize = 1 << 20;
/// The most strings a `choice` may list.
const MAX_CHOICES: usize = 100_000;
/// The characters `text` fields are made of.
const TEXT_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// What one field holds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldSpec {
    /// The record's sequence number, 0, 1, 2, ...
    Sequence,
    /// The time the record was made, RFC 3339 in UTC with milliseconds.
    Timestamp,
    /// A random UUID (version 4 layout) from the seeded generator, as hex with dashes.
    Uuid,
    /// A uniform integer in `[min, max]`.
    Int([i64; 2]),
    /// A uniform float in `[min, max)`.
    Float([f64; 2]),
    /// One of the strings, uniformly.
    Choice(Vec<String>),
    /// Lowercase letters and digits, this many.
    Text(usize),
}

impl FieldSpec {
    /// Checks the spec's arguments; `name` is the field's.
    pub(super) fn check(&self, name: &str) -> Result<()> {
        let bad = |message: String| Err(Error::config(NAME, format!("field {name}: {message}")));
        match self {
            FieldSpec::Int([min, max]) if min > max => bad(format!("int min {min} exceeds max {max}")),
            FieldSpec::Float([min, max]) if !min.is_finite() || !max.is_finite() => {
                bad("float bounds must be finite".to_string())
            }
            FieldSpec::Float([min, max]) if min > max => bad(format!("float min {min} exceeds max {max}")),
            FieldSpec::Choice(options) if options.is_empty() => bad("choice needs at least one string".to_string()),
            FieldSpec::Choice(options) if options.len() > MAX_CHOICES => {
                bad(format!("choice may list at most {MAX_CHOICES} strings"))
            }
            FieldSpec::Text(length) if *length > MAX_TEXT_LENGTH => {
                bad(format!("text length may be at most {MAX_TEXT_LENGTH}"))
            }
            _ => Ok(()),
        }
    }

    /// The Arrow type readers decode the field as.
    fn data_type(&self) -> DataType {
        match self {
            FieldSpec::Sequence | FieldSpec::Int(_) => DataType::Int64,
            FieldSpec::Float(_) => DataType::Float64,
            FieldSpec::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            FieldSpec::Uuid | FieldSpec::Choice(_) | FieldSpec::Text(_) => DataType::Utf8,
        }
    }

    /// The value of the field in record `n`, made at `now_ms`.
    pub(super) fn value(&self, seed: u64, name: &str, n: u64, now_ms: i64) -> Value {
        let mut rng = Rng::for_value(seed, name, n);
        match self {
            FieldSpec::Sequence => Value::from(n),
            FieldSpec::Timestamp => Value::String(rfc3339_ms(now_ms)),
            FieldSpec::Uuid => {
                let (hi, lo) = (rng.next_u64(), rng.next_u64());
                // Version 4 and the RFC 4122 variant, as random UUIDs have them.
                let hi = (hi & !0xF000) | 0x4000;
                let lo = (lo & !(0b11 << 62)) | (0b10 << 62);
                Value::String(format!(
                    "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                    hi >> 32,
                    (hi >> 16) & 0xFFFF,
                    hi & 0xFFFF,
                    lo >> 48,
                    lo & 0xFFFF_FFFF_FFFF
                ))
            }
            FieldSpec::Int([min, max]) => {
                let span = (i128::from(*max) - i128::from(*min) + 1) as u128;
                let pick = (u128::from(rng.next_u64()) * span) >> 64;
                Value::from((i128::from(*min) + pick as i128) as i64)
            }
            FieldSpec::Float([min, max]) => {
                let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                Value::from(min + (max - min) * unit)
            }
            FieldSpec::Choice(options) => {
                let pick = ((u128::from(rng.next_u64()) * options.len() as u128) >> 64) as usize;
                Value::String(options[pick].clone())
            }
            FieldSpec::Text(length) => {
                let text = (0..*length)
                    .map(|_| {
                        let pick = ((u128::from(rng.next_u64()) * TEXT_ALPHABET.len() as u128) >> 64) as usize;
                        char::from(TEXT_ALPHABET[pick])
                    })
                    .collect();
                Value::String(text)
            }
        }
    }
}

/// The value columns of records with `fields`, in the order their JSON objects list them.
pub(super) fn schema(fields: &[(String, FieldSpec)]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|(name, spec)| Field::new(name, spec.data_type(), true))
            .collect::<Vec<_>>(),
    ))
}

/// `ms` since the epoch as RFC 3339 in UTC, with milliseconds.
pub(super) fn rfc3339_ms(ms: i64) -> String {
    timestamp_ms_to_datetime(ms).map_or_else(
        || "1970-01-01T00:00:00.000Z".to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
    )
}

/// SplitMix64's finaliser: scrambles a 64-bit value.
fn mix(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a field name, so that each field draws its own numbers.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// SplitMix64, seeded per (seed, field, record): small, fast and good enough for test data.
struct Rng(u64);

impl Rng {
    /// The generator for one field of one record.
    fn for_value(seed: u64, name: &str, n: u64) -> Rng {
        Rng(mix(mix(mix(seed) ^ name_hash(name)) ^ n))
    }

    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
}

//! Tests of the `generator` source: field specs, determinism across restarts, `count`, pacing,
//! the declared schema, configuration errors, and the source compliance check.

use brook_engine::format::decoder;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::compliance::{check_source, SourceUnderTest};

fn ctx() -> Context {
    Context {
        name: "p.gen".into(),
        base_dir: ".".into(),
    }
}

/// An opened generator over `config`.
async fn generator(config: Value, checkpoint: Option<Value>) -> Box<dyn Source> {
    let mut source = build(&ctx(), config).unwrap();
    source.open(checkpoint).await.unwrap();
    source
}

/// Polls `n` records (at rate 0 one poll is enough) as (record, parsed value).
async fn take(source: &mut dyn Source, n: usize) -> Vec<(SourceRecord, Value)> {
    let items = source.poll(n, 0).await.unwrap().expect("not ended");
    assert_eq!(items.len(), n);
    items
        .into_iter()
        .map(|item| match item {
            SourceItem::Record(r) => {
                let value = serde_json::from_slice(&r.value).unwrap();
                (r, value)
            }
            SourceItem::Bad { error, .. } => panic!("a bad item: {error}"),
        })
        .collect()
}

/// The values without their `timestamp` fields, which alone depend on the clock.
fn without(values: &[(SourceRecord, Value)], field: &str) -> Vec<Value> {
    values
        .iter()
        .map(|(_, v)| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove(field);
            v
        })
        .collect()
}

fn every_kind() -> Value {
    json!({
        "rate_per_sec": 0,
        "seed": 7,
        "fields": {
            "n": "sequence",
            "at": "timestamp",
            "key": "uuid",
            "dice": {"int": [1, 6]},
            "temp": {"float": [-5.0, 5.0]},
            "colour": {"choice": ["red", "green", "blue"]},
            "note": {"text": 12},
        }
    })
}

#[tokio::test]
async fn default_fields_are_a_sequence_and_a_timestamp() {
    let mut source = generator(json!({"rate_per_sec": 0}), None).await;
    let got = take(source.as_mut(), 3).await;
    for (i, (record, value)) in got.iter().enumerate() {
        assert_eq!(value["id"], json!(i));
        let ts = value["ts"].as_str().unwrap();
        assert!(ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        assert_eq!(
            record.position,
            Position {
                stream: "generator:seed=0".into(),
                start: i as u64,
                end: i as u64 + 1
            }
        );
        assert!(record.timestamp_ms.is_some() && record.key.is_none());
    }
}

#[tokio::test]
async fn every_field_kind_stays_in_its_range() {
    let mut source = generator(every_kind(), None).await;
    for (_, value) in take(source.as_mut(), 200).await {
        let dice = value["dice"].as_i64().unwrap();
        assert!((1..=6).contains(&dice), "{value}");
        let temp = value["temp"].as_f64().unwrap();
        assert!((-5.0..5.0).contains(&temp), "{value}");
        assert!(["red", "green", "blue"].contains(&value["colour"].as_str().unwrap()));
        let note = value["note"].as_str().unwrap();
        assert!(note.len() == 12 && note.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        let key = value["key"].as_str().unwrap();
        let groups: Vec<usize> = key.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12], "{key}");
        assert_eq!(&key[14..15], "4", "a version 4 layout: {key}");
        // Objects list fields by name.
        let names: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(names, ["at", "colour", "dice", "key", "n", "note", "temp"]);
    }
}

#[tokio::test]
async fn a_restart_from_a_checkpoint_regenerates_the_same_records() {
    let mut whole = generator(every_kind(), None).await;
    let all = take(whole.as_mut(), 20).await;

    let mut first = generator(every_kind(), None).await;
    let head = take(first.as_mut(), 8).await;
    let checkpoint = first.checkpoint();
    assert_eq!(checkpoint, json!({"next_sequence": 8}));
    let mut resumed = generator(every_kind(), Some(checkpoint)).await;
    let tail = take(resumed.as_mut(), 12).await;
    assert_eq!(tail[0].0.position.start, 8);

    let joined: Vec<_> = head.into_iter().chain(tail).collect();
    assert_eq!(without(&joined, "at"), without(&all, "at"));

    let mut other_seed = every_kind();
    other_seed["seed"] = json!(8);
    let mut other = generator(other_seed, None).await;
    let different = take(other.as_mut(), 20).await;
    assert_ne!(
        without(&different, "at"),
        without(&all, "at"),
        "the seed changes the values"
    );
    assert_eq!(different[0].0.position.stream, "generator:seed=8");
}

#[tokio::test]
async fn count_ends_the_source() {
    let mut source = generator(json!({"rate_per_sec": 0, "count": 5}), None).await;
    assert_eq!(take(source.as_mut(), 3).await.len(), 3);
    let rest = source.poll(100, 0).await.unwrap().expect("two more");
    assert_eq!(rest.len(), 2);
    assert_eq!(source.poll(100, 0).await.unwrap(), None);
    // A restart at the end stays ended.
    let mut resumed = generator(json!({"rate_per_sec": 0, "count": 5}), Some(source.checkpoint())).await;
    assert_eq!(resumed.poll(100, 0).await.unwrap(), None);
}

#[tokio::test]
async fn a_paced_poll_waits_no_longer_than_asked() {
    // One record a day: the first comes at once, the next not within a zero wait.
    let mut source = generator(json!({"rate_per_sec": 0.00001}), None).await;
    assert_eq!(source.poll(10, 0).await.unwrap().unwrap().len(), 1);
    assert_eq!(source.poll(10, 0).await.unwrap().unwrap().len(), 0);
    assert_eq!(source.poll(10, 5).await.unwrap().unwrap().len(), 0);
    assert_eq!(source.checkpoint(), json!({"next_sequence": 1}));
}

#[tokio::test]
async fn the_declared_schema_decodes_what_is_emitted() {
    let mut source = generator(every_kind(), None).await;
    let spec = source.format();
    let schema = spec.schema.clone().expect("a declared schema");
    assert_eq!(schema.field_with_name("n").unwrap().data_type(), &DataType::Int64);
    assert!(matches!(
        schema.field_with_name("at").unwrap().data_type(),
        DataType::Timestamp(_, _)
    ));
    let got = take(source.as_mut(), 5).await;
    let values: Vec<Option<&[u8]>> = got.iter().map(|(r, _)| Some(r.value.as_ref())).collect();
    let decoded = decoder(&spec).unwrap().decode(&values).unwrap();
    assert!(decoded.failed.is_empty(), "{:?}", decoded.failed);
    let n = decoded.batch.column_by_name("n").unwrap().as_primitive::<Int64Type>();
    assert_eq!(n.values().to_vec(), vec![0, 1, 2, 3, 4]);
    assert_eq!(decoded.batch.column_by_name("at").unwrap().null_count(), 0);
}

#[test]
fn the_configuration_is_checked() {
    let refused = |config: Value, needle: &str| {
        let err = build(&ctx(), config).err().expect("refused").to_string();
        assert!(err.contains(needle), "{err} should mention {needle}");
    };
    refused(json!({"rate_per_sec": -1}), "rate_per_sec");
    refused(json!({"fields": {"x": {"int": [5, 1]}}}), "field x");
    refused(json!({"fields": {"x": {"float": [1.0, 0.5]}}}), "field x");
    refused(json!({"fields": {"x": {"choice": []}}}), "choice");
    refused(json!({"fields": {"x": "colour"}}), "colour");
    refused(json!({"fields": {"x": {"int": [1]}}}), "x");
    refused(json!({"speed": 3}), "speed");
    assert!(build(&ctx(), Value::Null).is_ok());
}

proptest! {
    /// Integers stay in their bounds, whatever the bounds, even the whole i64 range.
    #[test]
    fn integers_stay_within_any_bounds(a in any::<i64>(), b in any::<i64>(), seed in any::<u64>(), n in any::<u64>()) {
        let (min, max) = (a.min(b), a.max(b));
        let v = FieldSpec::Int([min, max]).value(seed, "f", n, 0).as_i64().unwrap();
        prop_assert!(min <= v && v <= max);
        let again = FieldSpec::Int([min, max]).value(seed, "f", n, 0).as_i64().unwrap();
        prop_assert_eq!(v, again);
    }
}

#[tokio::test]
async fn the_generator_passes_the_source_compliance_check() {
    // Unbounded and unpaced: the check's polls bound what it takes, and `feed` has nothing to
    // do because the generator's input is its sequence.
    let config = json!({"rate_per_sec": 0, "seed": 3});
    check_source(SourceUnderTest {
        make: Box::new(move || build(&ctx(), config.clone()).unwrap()),
        feed: Box::new(|_, _| Box::pin(async {})),
        id_of: Box::new(|record| {
            let value: Value = serde_json::from_slice(&record.value).unwrap();
            value["id"].as_u64().unwrap()
        }),
    })
    .await;
}

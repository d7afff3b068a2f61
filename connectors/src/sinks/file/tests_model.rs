//! A model-based property test of the file sink: random writes, flushes and crashes over random
//! roll limits, formats and paths, checking after every reopen that the files hold exactly the
//! rows the stored offsets cover, each once, as the runner's replay relies on.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::tests::{ids, open, read_all, write};
use crate::sink::Sink;

/// One step of a run.
#[derive(Debug, Clone)]
enum Op {
    /// The runner sends the next `rows` rows of `partition`.
    Write { partition: i32, rows: i64 },
    /// The runner flushes.
    Flush,
    /// The process dies and the sink is opened again.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2i32, 1..6i64).prop_map(|(partition, rows)| Op::Write { partition, rows }),
        1 => Just(Op::Flush),
        2 => Just(Op::Crash),
    ]
}

/// A sink configuration: append or rolling, a format, a roll limit, placeholders or not.
fn config() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"path": "m/out.jsonl"})),
        Just(json!({"path": "m/out.csv", "format": "csv"})),
        (
            1..6u64,
            prop::sample::select(vec!["json", "csv", "parquet"]),
            any::<bool>()
        )
            .prop_map(|(records, format, by_partition)| {
                let ext = if format == "json" { "jsonl" } else { format };
                let stem = if by_partition { "p{partition}" } else { "out" };
                json!({"path": format!("m/{stem}.{ext}"), "format": format, "roll": {"records": records}})
            }),
    ]
}

/// The id of the row at `offset` of `partition`.
fn id(partition: i32, offset: i64) -> i64 {
    i64::from(partition) * 1000 + offset
}

/// Checks that the files hold exactly the rows below `stored`, each once.
fn check_files(dir: &std::path::Path, stored: &[(i32, i64)], when: &str) {
    let mut got = ids(&read_all(&dir.join("m")));
    got.sort();
    let mut expected: Vec<i64> = stored
        .iter()
        .flat_map(|(p, next)| (0..*next).map(move |o| id(*p, o)))
        .collect();
    expected.sort();
    assert_eq!(got, expected, "rows in the files {when}, stored offsets {stored:?}");
}

/// Runs `ops` against a sink over a fresh directory.
async fn run(config: Value, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, stored) = open(dir.path(), &config).await;
    assert_eq!(stored, vec![]);
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Write { partition, rows } => {
                let from = positions.get(&partition).copied().unwrap_or(0);
                let first = id(partition, from);
                write(sink.as_mut(), first..first + rows, partition, from, false).await;
                positions.insert(partition, from + rows);
            }
            Op::Flush => sink.flush().await.unwrap(),
            Op::Crash => {
                drop(sink);
                let (reopened, stored) = open(dir.path(), &config).await;
                sink = reopened;
                check_files(dir.path(), &stored, "after a crash");
                for (p, next) in &stored {
                    assert!(
                        positions.get(p).is_some_and(|sent| sent >= next),
                        "stored past what was sent"
                    );
                }
                // The runner resumes from the stored offsets.
                positions = stored.into_iter().collect();
            }
        }
    }
    sink.flush().await.unwrap();
    drop(sink);
    let (_sink, stored): (Box<dyn Sink>, _) = open(dir.path(), &config).await;
    assert_eq!(
        stored,
        positions.into_iter().collect::<Vec<_>>(),
        "after a flush every row is stored"
    );
    check_files(dir.path(), &stored, "at the end");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the writes, flushes and crashes, the files hold the stored rows exactly once.
    #[test]
    fn files_hold_exactly_the_rows_the_stored_offsets_cover(config in config(), ops in prop::collection::vec(op(), 1..24)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(config, ops));
    }
}

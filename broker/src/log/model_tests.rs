//! Model-based test of the partition log: random appends (plain and transactional), transaction
//! markers, rolls, retention, DeleteRecords, clean restarts and crashes (torn or corrupted tails)
//! against an in-memory list of acknowledged batches.
//!
//! Invariants checked after every step: every batch that was durable (wait_durable returned, or
//! fully written before the crash point) is still readable byte for byte unless retention or
//! DeleteRecords removed it; offsets are never reused for different data; reads return exactly
//! the model's batches; the start, end and high watermark offsets match the model; the last
//! stable offset, read_committed reads and the aborted transactions match a replay of the
//! model's batches (from the first segment the log last recovered, as the log rebuilds them).

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::segment::{parse_base_offset, segment_path, LOG_SUFFIX};
use super::tests::{encode, opts, payload, records, stored, NOW_MS};
use super::txn::{parse_marker, EndMarker};
use super::txn_tests::client_batch;
use super::{AppendSignal, LogConfig, PartitionLog};

/// Producer ids of the transactional producers are this plus 0, 1 or 2.
const FIRST_PRODUCER_ID: i64 = 100;

/// One step of a test run.
#[derive(Debug, Clone)]
enum Op {
    /// Appends one payload of batches, each (record count, value bytes); optionally waits for fsync.
    Append {
        batches: Vec<(usize, usize)>,
        wait_durable: bool,
    },
    /// Runs retention with this `retention.bytes`.
    Retention { retention_bytes: i64 },
    /// DeleteRecords at this fraction (per mille) of the way from the start to the high watermark.
    DeleteRecords { per_mille: i64 },
    /// Reads from this fraction of the way from the start to the high watermark, with this bound.
    Read { per_mille: i64, max_bytes: usize },
    /// Clean close, then open.
    Reopen,
    /// Drop without close, cut the active segment at this fraction of its unsynced tail, then open.
    CrashTruncate { per_mille: u64 },
    /// Drop without close, flip a byte of the tail batch if it is unsynced, then open.
    CrashFlip { at: usize },
    /// Appends one transactional batch of `count` records of a producer; optionally waits for fsync.
    TxnAppend {
        producer: i64,
        count: usize,
        wait_durable: bool,
    },
    /// Ends the producer's open transaction (if one is open) with a durable marker.
    EndTxn { producer: i64, commit: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec((1usize..5, 0usize..300), 1..4), any::<bool>())
            .prop_map(|(batches, wait_durable)| Op::Append { batches, wait_durable }),
        1 => (0i64..4000).prop_map(|retention_bytes| Op::Retention { retention_bytes }),
        1 => (0i64..=1000).prop_map(|per_mille| Op::DeleteRecords { per_mille }),
        2 => (0i64..=1000, 0usize..2000).prop_map(|(per_mille, max_bytes)| Op::Read { per_mille, max_bytes }),
        1 => Just(Op::Reopen),
        2 => (0u64..=1000).prop_map(|per_mille| Op::CrashTruncate { per_mille }),
        1 => any::<usize>().prop_map(|at| Op::CrashFlip { at }),
        3 => (0i64..3, 1usize..4, any::<bool>())
            .prop_map(|(producer, count, wait_durable)| Op::TxnAppend { producer, count, wait_durable }),
        2 => (0i64..3, any::<bool>()).prop_map(|(producer, commit)| Op::EndTxn { producer, commit }),
    ]
}

/// An aborted transaction: producer id, first offset, marker offset.
type Aborted = (i64, i64, i64);

/// What a model batch is, for the transaction replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A batch without a producer.
    Plain,
    /// A transactional batch of a producer, with its base sequence.
    Txn { producer_id: i64, base_sequence: i32 },
    /// A transaction marker of a producer.
    Marker { producer_id: i64, commit: bool },
}

/// A batch the model expects, with the bytes it must be stored as.
#[derive(Debug, Clone)]
struct Expected {
    base_offset: i64,
    last_offset: i64,
    bytes: Vec<u8>,
    durable: bool,
    kind: Kind,
}

/// What the log must look like. Batches below the start offset stay listed (they may still sit in
/// the active segment) but are not expected in reads.
#[derive(Debug, Default)]
struct Model {
    batches: Vec<Expected>,
    log_start_offset: i64,
    high_watermark: i64,
    /// The base offset of the first segment when the log was last opened: its transaction state
    /// is a replay of the batches from there.
    replay_from: i64,
}

impl Model {
    fn log_end_offset(&self) -> i64 {
        self.batches
            .last()
            .map_or(0, |b| b.last_offset + 1)
            .max(self.log_start_offset)
    }

    /// The bytes `read(offset, max_bytes, high watermark)` must return.
    fn read(&self, offset: i64, max_bytes: usize) -> Vec<u8> {
        self.read_below(offset, max_bytes, self.high_watermark)
    }

    /// The bytes `read(offset, max_bytes, limit)` must return: nothing from the limit on, even
    /// when it lies inside a batch (a last stable offset raised to a log start offset may).
    fn read_below(&self, offset: i64, max_bytes: usize, limit: i64) -> Vec<u8> {
        let mut out = Vec::new();
        if offset >= limit {
            return out;
        }
        for batch in self
            .batches
            .iter()
            .filter(|b| b.last_offset >= offset && b.base_offset < limit)
        {
            if !out.is_empty() && out.len() + batch.bytes.len() > max_bytes {
                break;
            }
            out.extend_from_slice(&batch.bytes);
        }
        out
    }

    fn offset_at(&self, per_mille: i64) -> i64 {
        self.log_start_offset + (self.high_watermark - self.log_start_offset) * per_mille / 1000
    }

    /// Replays the transactions: the first offset of each open one by producer, and the aborted
    /// ones as (producer id, first offset, marker offset) in marker order.
    fn transactions(&self) -> (BTreeMap<i64, i64>, Vec<Aborted>) {
        let mut open = BTreeMap::new();
        let mut aborted = Vec::new();
        for batch in self.batches.iter().filter(|b| b.base_offset >= self.replay_from) {
            match batch.kind {
                Kind::Plain => {}
                Kind::Txn { producer_id, .. } => {
                    open.entry(producer_id).or_insert(batch.base_offset);
                }
                Kind::Marker { producer_id, commit } => {
                    if let Some(first) = open.remove(&producer_id) {
                        if !commit {
                            aborted.push((producer_id, first, batch.base_offset));
                        }
                    }
                }
            }
        }
        (open, aborted)
    }

    fn last_stable_offset(&self) -> i64 {
        let first_open = self.transactions().0.into_values().min();
        first_open
            .map_or(self.high_watermark, |first| first.min(self.high_watermark))
            .max(self.log_start_offset)
    }

    /// What `aborted_transactions(log start offset, high watermark)` must return.
    fn aborted(&self) -> Vec<(i64, i64)> {
        self.transactions()
            .1
            .into_iter()
            .filter(|&(_, first, last)| last >= self.log_start_offset && first < self.high_watermark)
            .map(|(producer_id, first, _)| (producer_id, first))
            .collect()
    }

    /// The sequence a producer's next batch starts at.
    fn next_sequence(&self, producer_id: i64) -> i32 {
        self.batches
            .iter()
            .rev()
            .find_map(|b| match b.kind {
                Kind::Txn {
                    producer_id: id,
                    base_sequence,
                } if id == producer_id => Some(base_sequence + (b.last_offset - b.base_offset) as i32 + 1),
                _ => None,
            })
            .unwrap_or(0)
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        index_interval_bytes: 64,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> PartitionLog {
    PartitionLog::open(dir, config(), AppendSignal::default()).expect("open")
}

/// The base offset of the active (last) segment.
fn active_base(dir: &Path) -> i64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| parse_base_offset(&e.unwrap().file_name().to_string_lossy(), LOG_SUFFIX))
        .max()
        .expect("a segment")
}

/// The byte ranges of the model's batches in the active segment, in file order.
fn active_positions(model: &Model, base: i64) -> Vec<(usize, u64, u64)> {
    let mut position = 0u64;
    let mut out = Vec::new();
    for (i, batch) in model.batches.iter().enumerate().filter(|(_, b)| b.base_offset >= base) {
        out.push((i, position, position + batch.bytes.len() as u64));
        position += batch.bytes.len() as u64;
    }
    out
}

/// After a crash every surviving batch is on disk, so recovery makes it durable, and the
/// transactions are rebuilt from the segments on disk.
fn after_reopen(model: &mut Model, dir: &Path) {
    model.batches.iter_mut().for_each(|b| b.durable = true);
    model.high_watermark = model.log_end_offset();
    model.replay_from = first_base(dir);
}

/// The base offset of the first segment.
fn first_base(dir: &Path) -> i64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| parse_base_offset(&e.unwrap().file_name().to_string_lossy(), LOG_SUFFIX))
        .min()
        .expect("a segment")
}

fn check(log: &PartitionLog, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_start_offset(), model.log_start_offset);
    prop_assert_eq!(log.log_end_offset(), model.log_end_offset());
    prop_assert_eq!(log.high_watermark(), model.high_watermark);
    let all = log
        .read(model.log_start_offset, usize::MAX, model.high_watermark)
        .expect("read");
    prop_assert!(
        all.as_ref() == model.read(model.log_start_offset, usize::MAX).as_slice(),
        "full read differs"
    );
    let last_stable_offset = model.last_stable_offset();
    prop_assert_eq!(log.last_stable_offset(), last_stable_offset);
    let committed = log
        .read(model.log_start_offset, usize::MAX, last_stable_offset)
        .expect("read");
    prop_assert!(
        committed.as_ref()
            == model
                .read_below(model.log_start_offset, usize::MAX, last_stable_offset)
                .as_slice(),
        "read_committed read differs"
    );
    prop_assert_eq!(
        log.aborted_transactions(model.log_start_offset, model.high_watermark),
        model.aborted()
    );
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append { batches, wait_durable } => {
                let encoded: Vec<_> = batches
                    .iter()
                    .map(|&(count, value_bytes)| encode(&records(count, NOW_MS, value_bytes), None))
                    .collect();
                let (bytes, headers) = payload(&encoded);
                let info = log.append(bytes, &headers, &opts(NOW_MS)).expect("append");
                prop_assert_eq!(
                    info.base_offset,
                    model.log_end_offset(),
                    "offsets continue from the end"
                );
                let mut offset = info.base_offset;
                for (batch, header) in encoded.iter().zip(&headers) {
                    let last_offset = offset + i64::from(header.last_offset_delta);
                    model.batches.push(Expected {
                        base_offset: offset,
                        last_offset,
                        bytes: stored(batch, offset),
                        durable: false,
                        kind: Kind::Plain,
                    });
                    offset = last_offset + 1;
                }
                prop_assert_eq!(info.last_offset, offset - 1);
                if wait_durable {
                    runtime.block_on(log.wait_durable(offset)).expect("fsync");
                    model.batches.iter_mut().for_each(|b| b.durable = true);
                    model.high_watermark = model.log_end_offset();
                }
            }
            Op::Retention { retention_bytes } => {
                log.set_config(LogConfig {
                    retention_bytes,
                    ..config()
                });
                log.enforce_retention(NOW_MS).expect("retention");
                log.set_config(config());
                let start = log.log_start_offset();
                prop_assert!(start >= model.log_start_offset && start <= model.high_watermark);
                prop_assert!(log.segment_count() >= 1);
                model.log_start_offset = start;
            }
            Op::DeleteRecords { per_mille } => {
                let offset = model.offset_at(per_mille);
                let start = log.delete_records_before(offset).expect("delete records");
                prop_assert_eq!(start, offset.max(model.log_start_offset));
                model.log_start_offset = start;
                prop_assert!(log.delete_records_before(model.high_watermark + 1).is_err());
            }
            Op::Read { per_mille, max_bytes } => {
                let offset = model.offset_at(per_mille);
                let got = log.read(offset, max_bytes, model.high_watermark).expect("read");
                prop_assert!(
                    got.as_ref() == model.read(offset, max_bytes).as_slice(),
                    "read at {} differs",
                    offset
                );
                prop_assert!(log.read(model.log_end_offset() + 1, max_bytes, i64::MAX).is_err());
            }
            Op::Reopen => {
                log.close().expect("close");
                drop(log);
                log = open(dir.path());
                after_reopen(&mut model, dir.path());
            }
            Op::CrashTruncate { per_mille } => {
                drop(log);
                let base = active_base(dir.path());
                let positions = active_positions(&model, base);
                let durable_end = positions
                    .iter()
                    .filter(|(i, _, _)| model.batches[*i].durable)
                    .map(|p| p.2)
                    .max()
                    .unwrap_or(0);
                let path = segment_path(dir.path(), base, LOG_SUFFIX);
                let len = std::fs::metadata(&path).unwrap().len();
                prop_assert_eq!(len, positions.last().map_or(0, |p| p.2), "the model knows the file");
                let cut = durable_end + (len - durable_end) * per_mille / 1000;
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(cut)
                    .unwrap();
                if let Some(&(first_lost, _, _)) = positions.iter().find(|(_, _, end)| *end > cut) {
                    model.batches.truncate(first_lost);
                }
                log = open(dir.path());
                after_reopen(&mut model, dir.path());
            }
            Op::TxnAppend {
                producer,
                count,
                wait_durable,
            } => {
                let producer_id = FIRST_PRODUCER_ID + producer;
                let base_sequence = model.next_sequence(producer_id);
                let batch = client_batch(count, (producer_id, 0, base_sequence), true);
                let (bytes, headers) = payload(std::slice::from_ref(&batch));
                let info = log
                    .append(bytes, &headers, &opts(NOW_MS))
                    .expect("transactional append");
                prop_assert_eq!(info.base_offset, model.log_end_offset());
                model.batches.push(Expected {
                    base_offset: info.base_offset,
                    last_offset: info.last_offset,
                    bytes: stored(&batch, info.base_offset),
                    durable: false,
                    kind: Kind::Txn {
                        producer_id,
                        base_sequence,
                    },
                });
                if wait_durable {
                    runtime.block_on(log.wait_durable(info.last_offset + 1)).expect("fsync");
                    model.batches.iter_mut().for_each(|b| b.durable = true);
                    model.high_watermark = model.log_end_offset();
                }
            }
            Op::EndTxn { producer, commit } => {
                let producer_id = FIRST_PRODUCER_ID + producer;
                if model.transactions().0.contains_key(&producer_id) {
                    let offset = runtime
                        .block_on(log.append_marker(producer_id, 0, commit, 1))
                        .expect("marker");
                    prop_assert_eq!(offset, model.log_end_offset());
                    let bytes = log.read(offset, 1, offset + 1).expect("read the marker").to_vec();
                    prop_assert_eq!(
                        parse_marker(&bytes).expect("a marker"),
                        Some(EndMarker {
                            commit,
                            coordinator_epoch: 1
                        })
                    );
                    model.batches.push(Expected {
                        base_offset: offset,
                        last_offset: offset,
                        bytes,
                        durable: true,
                        kind: Kind::Marker { producer_id, commit },
                    });
                    model.batches.iter_mut().for_each(|b| b.durable = true);
                    model.high_watermark = model.log_end_offset();
                }
            }
            Op::CrashFlip { at } => {
                drop(log);
                let base = active_base(dir.path());
                let positions = active_positions(&model, base);
                if let Some(&(i, start, end)) = positions.last().filter(|(i, _, _)| !model.batches[*i].durable) {
                    // Any byte the CRC or the header checks cover: not baseOffset nor the leader epoch.
                    let len = (end - start) as usize;
                    let covered: Vec<usize> = (8..12).chain(16..len).collect();
                    let flip = start as usize + covered[at % covered.len()];
                    let path = segment_path(dir.path(), base, LOG_SUFFIX);
                    let mut bytes = std::fs::read(&path).unwrap();
                    bytes[flip] ^= 1 << (at % 8);
                    std::fs::write(&path, &bytes).unwrap();
                    model.batches.truncate(i);
                }
                log = open(dir.path());
                after_reopen(&mut model, dir.path());
            }
        }
        check(&log, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn the_log_agrees_with_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}

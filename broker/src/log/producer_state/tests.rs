//! Tests of the producer state table: sequences, epochs, retention, transactions, and a model test.

use proptest::prelude::*;

use super::*;

/// A header of producer `producer_id` as a client sends it, or as stored at `base_offset`.
fn batch(producer_id: i64, epoch: i16, base_sequence: i32, count: i32, base_offset: i64) -> BatchHeader {
    BatchHeader {
        base_offset,
        batch_length: 49,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: count - 1,
        base_timestamp: 0,
        max_timestamp: base_offset,
        producer_id,
        producer_epoch: epoch,
        base_sequence,
        record_count: count,
    }
}

fn marker(producer_id: i64, epoch: i16, offset: i64) -> BatchHeader {
    BatchHeader {
        attributes: 0x30,
        base_sequence: -1,
        ..batch(producer_id, epoch, -1, 1, offset)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Append,
    Duplicate(i64, i64),
    Fenced { current: i16, got: i16 },
    OutOfOrder { expected: i32, got: i32 },
}

fn outcome(result: Result<SequenceCheck>) -> Outcome {
    match result {
        Ok(SequenceCheck::Append) => Outcome::Append,
        Ok(SequenceCheck::Duplicate {
            base_offset,
            last_offset,
        }) => Outcome::Duplicate(base_offset, last_offset),
        Err(Error::InvalidProducerEpoch { current, got, .. }) => Outcome::Fenced { current, got },
        Err(Error::OutOfOrderSequence { expected, got, .. }) => Outcome::OutOfOrder { expected, got },
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn retries_get_their_original_offsets() {
    let mut table = ProducerStateTable::default();
    for (i, seq) in [0, 3, 5].into_iter().enumerate() {
        let count = [3, 2, 4][i];
        assert_eq!(
            table.check(&batch(7, 0, seq, count, -1)).unwrap(),
            SequenceCheck::Append
        );
        table.record(&batch(7, 0, seq, count, 100 + 10 * i as i64));
    }
    let dup = table.check(&batch(7, 0, 3, 2, -1)).unwrap();
    assert_eq!(
        dup,
        SequenceCheck::Duplicate {
            base_offset: 110,
            last_offset: 111
        }
    );
    // Same first sequence but another length is not the same batch.
    assert_eq!(
        outcome(table.check(&batch(7, 0, 3, 3, -1))),
        Outcome::OutOfOrder { expected: 9, got: 3 }
    );
    assert_eq!(
        outcome(table.check(&batch(7, 0, 10, 1, -1))),
        Outcome::OutOfOrder { expected: 9, got: 10 }
    );
    assert_eq!(table.len(), 1);
}

#[test]
fn only_five_batches_are_remembered() {
    let mut table = ProducerStateTable::default();
    for seq in 0..6 {
        table.record(&batch(1, 0, seq, 1, i64::from(seq)));
    }
    assert_eq!(
        outcome(table.check(&batch(1, 0, 0, 1, -1))),
        Outcome::OutOfOrder { expected: 6, got: 0 }
    );
    assert_eq!(outcome(table.check(&batch(1, 0, 1, 1, -1))), Outcome::Duplicate(1, 1));
}

#[test]
fn epochs_fence_and_restart_sequences() {
    let mut table = ProducerStateTable::default();
    table.record(&batch(1, 5, 0, 10, 0));
    let err = table.check(&batch(1, 4, 10, 1, -1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "producer 1 used epoch 4, older than the current epoch 5"
    );
    let err = table.check(&batch(1, 6, 10, 1, -1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "out of order sequence number for producer 1: expected 0, got 10"
    );
    assert_eq!(table.check(&batch(1, 6, 0, 1, -1)).unwrap(), SequenceCheck::Append);
    // A transaction marker with a bumped epoch forgets the old batches: sequences restart at 0.
    table.record(&marker(1, 7, 10));
    assert_eq!(table.producer_epoch(1), Some(7));
    assert_eq!(
        outcome(table.check(&batch(1, 7, 10, 1, -1))),
        Outcome::OutOfOrder { expected: 0, got: 10 }
    );
    assert_eq!(outcome(table.check(&batch(1, 7, 0, 1, -1))), Outcome::Append);
}

#[test]
fn unknown_producers_and_non_idempotent_batches_append() {
    let table = ProducerStateTable::default();
    assert_eq!(table.check(&batch(9, 3, 12345, 2, -1)).unwrap(), SequenceCheck::Append);
    assert_eq!(table.check(&batch(-1, -1, -1, 2, -1)).unwrap(), SequenceCheck::Append);
    let mut table = table;
    table.record(&batch(-1, -1, -1, 2, 0));
    assert!(table.is_empty());
}

#[test]
fn sequences_wrap_from_max_to_zero() {
    let mut table = ProducerStateTable::default();
    table.record(&batch(1, 0, i32::MAX - 1, 2, 0));
    assert_eq!(table.check(&batch(1, 0, 0, 1, -1)).unwrap(), SequenceCheck::Append);
    table.record(&batch(1, 0, i32::MAX - 2, 4, 10));
    assert_eq!(
        outcome(table.check(&batch(1, 0, 0, 1, -1))),
        Outcome::OutOfOrder { expected: 1, got: 0 }
    );
    assert_eq!(
        outcome(table.check(&batch(1, 0, i32::MAX - 2, 4, -1))),
        Outcome::Duplicate(10, 13)
    );
}

#[test]
fn retention_and_expiration_forget_producers() {
    let mut table = ProducerStateTable::default();
    table.record(&batch(1, 0, 0, 5, 0)); // offsets 0..=4
    table.record(&batch(2, 0, 0, 5, 5)); // offsets 5..=9
    table.record(&marker(3, 0, 10));
    table.truncate_before(5);
    assert_eq!(
        (table.len(), table.producer_epoch(1), table.producer_epoch(2)),
        (1, None, Some(0))
    );
    table.remove_expired(5 + 1000, 1000);
    assert!(table.is_empty());
    table.record(&batch(4, 0, 0, 1, 0));
    table.clear();
    assert!(table.is_empty());
}

/// A client's view of one producer id.
#[derive(Debug, Clone, Default)]
struct Client {
    epoch: i16,
    next_seq: i32,
    sent: Vec<(i16, i32, i32)>,
}

#[derive(Debug, Clone)]
enum Op {
    /// Send the next batch of `count` records.
    Next { producer: usize, count: i32 },
    /// Resend one of the last sent batches.
    Retry { producer: usize, back: usize },
    /// Send past a gap.
    Skip { producer: usize, gap: i32 },
    /// Bump the epoch, restarting at sequence 0.
    Bump { producer: usize },
    /// Send with an epoch below the client's.
    Stale { producer: usize },
    /// Jump near the sequence wrap.
    NearWrap { producer: usize },
    /// The coordinator writes a transaction marker with the client's epoch.
    Marker { producer: usize },
    /// Retention moves the log start offset to this fraction of the log end.
    Retention { per_255: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0usize..3;
    prop_oneof![
        6 => (p.clone(), 1i32..4).prop_map(|(producer, count)| Op::Next { producer, count }),
        4 => (p.clone(), 0usize..8).prop_map(|(producer, back)| Op::Retry { producer, back }),
        1 => (p.clone(), 1i32..3).prop_map(|(producer, gap)| Op::Skip { producer, gap }),
        1 => p.clone().prop_map(|producer| Op::Bump { producer }),
        1 => p.clone().prop_map(|producer| Op::Stale { producer }),
        1 => p.clone().prop_map(|producer| Op::NearWrap { producer }),
        1 => p.prop_map(|producer| Op::Marker { producer }),
        1 => any::<u8>().prop_map(|per_255| Op::Retention { per_255 }),
    ]
}

/// An appended batch or marker: epoch, first and last sequence (-1 for markers), offsets.
type Appended = (i16, i32, i32, i64, i64);
/// A data batch of the current epoch: first and last sequence, base and last offset.
type Recent = (i32, i32, i64, i64);

/// The rules written over the full history of each producer instead of a five-batch cache.
#[derive(Debug, Default)]
struct Model {
    /// Every batch and marker appended, per producer id: (epoch, first, last, base, last offset).
    history: HashMap<i64, Vec<Appended>>,
}

impl Model {
    /// The current epoch and the last five data batches appended under it.
    fn current(&self, producer_id: i64) -> Option<(i16, Vec<Recent>)> {
        let history = self.history.get(&producer_id)?;
        let epoch = history.last()?.0;
        let run: Vec<_> = history
            .iter()
            .rev()
            .take_while(|b| b.0 == epoch)
            .filter(|b| b.1 >= 0)
            .collect();
        Some((epoch, run.iter().take(5).rev().map(|b| (b.1, b.2, b.3, b.4)).collect()))
    }

    fn check(&self, h: &BatchHeader) -> Outcome {
        let Some((epoch, batches)) = self.current(h.producer_id) else {
            return Outcome::Append;
        };
        let (first, last) = (h.base_sequence, h.last_sequence());
        if let Some(b) = batches
            .iter()
            .find(|b| h.producer_epoch == epoch && b.0 == first && b.1 == last)
        {
            return Outcome::Duplicate(b.2, b.3);
        }
        if h.producer_epoch < epoch {
            return Outcome::Fenced {
                current: epoch,
                got: h.producer_epoch,
            };
        }
        let expected = match batches.last() {
            _ if h.producer_epoch > epoch => 0,
            Some(&(_, i32::MAX, _, _)) | None => 0,
            Some(b) => b.1 + 1,
        };
        if first == expected {
            Outcome::Append
        } else {
            Outcome::OutOfOrder { expected, got: first }
        }
    }

    fn record(&mut self, h: &BatchHeader) {
        let first = if h.is_control() { -1 } else { h.base_sequence };
        let entry = (
            h.producer_epoch,
            first,
            h.last_sequence(),
            h.base_offset,
            h.last_offset(),
        );
        self.history.entry(h.producer_id).or_default().push(entry);
    }

    fn truncate_before(&mut self, log_start_offset: i64) {
        let gone: Vec<i64> = self
            .history
            .keys()
            .copied()
            .filter(|&id| {
                self.current(id)
                    .unwrap()
                    .1
                    .last()
                    .is_none_or(|b| b.3 < log_start_offset)
            })
            .collect();
        for id in gone {
            self.history.remove(&id);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn table_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut table = ProducerStateTable::default();
        let mut model = Model::default();
        let mut clients = vec![Client::default(); 3];
        let mut log_end = 0i64;
        for op in ops {
            let send = match op {
                Op::Next { producer, count } => {
                    let c = &mut clients[producer];
                    let sent = (c.epoch, c.next_seq, count);
                    c.next_seq = increment(c.next_seq, count);
                    Some((producer, sent))
                }
                Op::Retry { producer, back } => {
                    let sent = &clients[producer].sent;
                    sent.len().checked_sub(back + 1).map(|i| (producer, sent[i]))
                }
                Op::Skip { producer, gap } => {
                    let c = &mut clients[producer];
                    c.next_seq = increment(c.next_seq, gap);
                    Some((producer, (c.epoch, c.next_seq, 1)))
                }
                Op::Bump { producer } => {
                    let c = &mut clients[producer];
                    c.epoch += 1;
                    c.next_seq = 0;
                    None
                }
                Op::Stale { producer } => {
                    let c = &clients[producer];
                    (c.epoch > 0).then_some((producer, (c.epoch - 1, c.next_seq, 1)))
                }
                Op::NearWrap { producer } => {
                    clients[producer].next_seq = i32::MAX - 1;
                    None
                }
                Op::Marker { producer } => {
                    let m = marker(producer as i64, clients[producer].epoch, log_end);
                    table.record(&m);
                    model.record(&m);
                    log_end += 1;
                    None
                }
                Op::Retention { per_255 } => {
                    let start = log_end * i64::from(per_255) / 255;
                    table.truncate_before(start);
                    model.truncate_before(start);
                    None
                }
            };
            if let Some((producer, (epoch, seq, count))) = send {
                clients[producer].sent.push((epoch, seq, count));
                let incoming = batch(producer as i64, epoch, seq, count, -1);
                let got = outcome(table.check(&incoming));
                prop_assert_eq!(&got, &model.check(&incoming), "{:?}", incoming);
                if got == Outcome::Append {
                    let stored = batch(producer as i64, epoch, seq, count, log_end);
                    table.record(&stored);
                    model.record(&stored);
                    log_end += i64::from(count);
                }
            }
            prop_assert_eq!(table.len(), model.history.len());
        }
    }
}

fn increment(seq: i32, by: i32) -> i32 {
    crate::log::batch::increment_sequence(seq, by)
}

/// A transactional batch header of `producer_id`.
fn txn_batch(producer_id: i64, epoch: i16, base_sequence: i32, count: i32, base_offset: i64) -> BatchHeader {
    BatchHeader {
        attributes: 0x10,
        ..batch(producer_id, epoch, base_sequence, count, base_offset)
    }
}

fn end(commit: bool) -> EndMarker {
    EndMarker {
        commit,
        coordinator_epoch: 4,
    }
}

#[test]
fn a_transaction_opens_at_its_first_batch_and_a_commit_ends_it() {
    let mut table = ProducerStateTable::default();
    table.record(&batch(9, 0, 0, 2, 0)); // offsets 0..=1, not transactional
    assert_eq!(table.first_unstable_offset(), None);
    table.record(&txn_batch(1, 0, 0, 3, 2)); // 2..=4
    table.record(&txn_batch(2, 0, 0, 1, 5)); // 5
    table.record(&txn_batch(1, 0, 3, 1, 6)); // 6: the transaction stays open from 2
    assert_eq!(table.open_transaction(1), Some(2));
    assert_eq!(table.first_unstable_offset(), Some(2));

    assert_eq!(table.record_marker(&marker(1, 0, 7), end(true)), Some(2));
    assert_eq!(table.open_transaction(1), None);
    // The marker at 7 is not durable yet: the transaction still holds the stable offset.
    assert_eq!(table.first_unstable_offset(), Some(2));
    table.on_high_watermark(8);
    assert_eq!(table.first_unstable_offset(), Some(5));
    assert!(table.aborted_overlapping(0, 100).is_empty(), "a commit is not an abort");

    // Sequences go on across a transaction boundary; the next transaction opens anew.
    assert_eq!(table.check(&txn_batch(1, 0, 4, 1, -1)).unwrap(), SequenceCheck::Append);
    table.record(&txn_batch(1, 0, 4, 1, 8));
    assert_eq!(table.open_transaction(1), Some(8));
}

#[test]
fn an_abort_is_remembered_until_retention_passes_its_marker() {
    let mut table = ProducerStateTable::default();
    table.record(&txn_batch(1, 0, 0, 2, 10));
    table.record(&txn_batch(2, 0, 0, 2, 12));
    assert_eq!(table.record_marker(&marker(1, 0, 14), end(false)), Some(10));
    table.on_high_watermark(15);
    let aborted = table.aborted_overlapping(0, 15);
    assert_eq!(
        aborted,
        vec![AbortedTxn {
            producer_id: 1,
            first_offset: 10,
            last_offset: 14
        }]
    );
    assert_eq!(table.first_unstable_offset(), Some(12));
    assert!(table.aborted_overlapping(15, 20).is_empty());
    assert!(table.aborted_overlapping(0, 10).is_empty());

    // Retention past every batch keeps producer 2 (its transaction is open) and the abort until
    // the start passes its marker.
    table.truncate_before(14);
    assert_eq!((table.producer_epoch(1), table.producer_epoch(2)), (None, Some(0)));
    assert_eq!(table.aborted_overlapping(0, 20).len(), 1);
    table.truncate_before(15);
    assert!(table.aborted_overlapping(0, 20).is_empty());
    assert_eq!(table.open_transaction(2), Some(12));
    table.remove_expired(i64::MAX, 1);
    assert_eq!(table.open_transaction(2), Some(12), "an open transaction never expires");
}

#[test]
fn markers_are_fenced_by_epoch_and_a_newer_epoch_is_taken() {
    let mut table = ProducerStateTable::default();
    table.record(&txn_batch(1, 3, 0, 2, 0));
    assert_eq!(
        outcome(table.check(&marker(1, 2, -1))),
        Outcome::Fenced { current: 3, got: 2 }
    );
    assert_eq!(
        outcome(table.check(&txn_batch(1, 2, 2, 1, -1))),
        Outcome::Fenced { current: 3, got: 2 }
    );
    // The coordinator aborts with a bumped epoch (KIP-360): the epoch moves, sequences restart.
    assert_eq!(outcome(table.check(&marker(1, 4, -1))), Outcome::Append);
    assert_eq!(table.record_marker(&marker(1, 4, 2), end(false)), Some(0));
    assert_eq!(table.producer_epoch(1), Some(4));
    assert_eq!(
        outcome(table.check(&txn_batch(1, 3, 2, 1, -1))),
        Outcome::Fenced { current: 4, got: 3 }
    );
    assert_eq!(outcome(table.check(&txn_batch(1, 4, 0, 1, -1))), Outcome::Append);
}

#[test]
fn a_marker_without_a_transaction_changes_nothing_else() {
    let mut table = ProducerStateTable::default();
    table.record(&batch(1, 0, 0, 2, 0));
    assert_eq!(table.record_marker(&marker(1, 0, 2), end(true)), None);
    assert_eq!(table.record_marker(&marker(1, 0, 3), end(false)), None);
    assert_eq!(table.record_marker(&marker(5, 0, 4), end(false)), None);
    table.on_high_watermark(5);
    assert_eq!(table.first_unstable_offset(), None);
    assert!(table.aborted_overlapping(0, 10).is_empty());
    assert_eq!(outcome(table.check(&batch(1, 0, 2, 1, -1))), Outcome::Append);
    assert_eq!(outcome(table.check(&batch(1, 0, 0, 2, -1))), Outcome::Duplicate(0, 1));
}

#[test]
fn a_non_transactional_batch_cannot_join_an_open_transaction() {
    let mut table = ProducerStateTable::default();
    table.record(&txn_batch(1, 0, 0, 1, 0));
    let err = table.check(&batch(1, 0, 1, 1, -1)).unwrap_err();
    assert!(matches!(err, Error::InvalidRecord(_)), "{err}");
    assert_eq!(table.check(&txn_batch(1, 0, 1, 1, -1)).unwrap(), SequenceCheck::Append);
    table.record_marker(&marker(1, 0, 1), end(true));
    assert_eq!(table.check(&batch(1, 0, 1, 1, -1)).unwrap(), SequenceCheck::Append);
}

#[test]
fn coordinator_writes_without_sequence_are_fenced_but_not_sequenced() {
    let mut table = ProducerStateTable::default();
    table.record(&batch(1, 2, 0, 3, 0));
    // TxnOffsetCommit records: producer id and epoch, no sequence, transactional.
    let offsets = txn_batch(1, 2, -1, 2, -1);
    assert_eq!(table.check(&offsets).unwrap(), SequenceCheck::Append);
    table.record(&txn_batch(1, 2, -1, 2, 3));
    assert_eq!(table.open_transaction(1), Some(3));
    assert_eq!(
        outcome(table.check(&txn_batch(1, 1, -1, 1, -1))),
        Outcome::Fenced { current: 2, got: 1 }
    );
    // The client's own sequence is untouched by the coordinator's batches.
    assert_eq!(table.check(&txn_batch(1, 2, 3, 1, -1)).unwrap(), SequenceCheck::Append);
    assert_eq!(table.snapshots()[0].last_sequence, 2);
}

#[test]
fn snapshots_describe_every_producer() {
    let mut table = ProducerStateTable::default();
    table.record(&batch(7, 1, 0, 5, 0));
    table.record(&txn_batch(3, 2, 10, 2, 5));
    table.record_marker(&marker(7, 1, 7), end(true));
    assert_eq!(
        table.snapshots(),
        vec![
            ProducerSnapshot {
                producer_id: 3,
                producer_epoch: 2,
                last_sequence: 11,
                last_timestamp_ms: 5,
                coordinator_epoch: -1,
                current_txn_start_offset: 5,
            },
            ProducerSnapshot {
                producer_id: 7,
                producer_epoch: 1,
                last_sequence: 4,
                last_timestamp_ms: 7,
                coordinator_epoch: 4,
                current_txn_start_offset: -1,
            },
        ]
    );
    table.clear();
    assert!(table.snapshots().is_empty());
    assert_eq!(table.first_unstable_offset(), None);
}

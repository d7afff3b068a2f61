//! Model-based property test of the transaction state machine: random InitProducerId (with and
//! without KIP-360's current id and epoch), AddPartitionsToTxn, EndTxn, timeouts, marker
//! completion and expiry by a current or a stale producer, checked after every step against a
//! reference of Kafka's answers and against invariants: states change only along Kafka's edges,
//! a producer id's epoch never goes back, a new producer id starts at epoch 0, partitions exist
//! exactly while a transaction is open, and a fenced producer can change nothing.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use proptest::prelude::*;

use super::state::{self, InitStep, TxnMetadata, TxnState};
use crate::error::Error;

const MAX_PARTITIONS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// InitProducerId; with `kip360` the client sends its id and epoch (current or stale).
    Init { kip360: bool, stale: bool },
    /// AddPartitionsToTxn of some of four partitions, by the current or a stale producer.
    Add { partitions: Vec<i32>, stale: bool },
    /// EndTxn.
    End { commit: bool, stale: bool },
    /// The clock passes the timeout and the coordinator aborts.
    Timeout,
    /// The markers of a Prepare state are written.
    Complete,
    /// The expiry check runs far in the future.
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(kip360, stale)| Op::Init { kip360, stale }),
        4 => (proptest::collection::vec(0i32..4, 1..3), prop::bool::weighted(0.2))
            .prop_map(|(partitions, stale)| Op::Add { partitions, stale }),
        3 => (any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(commit, stale)| Op::End { commit, stale }),
        1 => Just(Op::Timeout),
        3 => Just(Op::Complete),
        1 => Just(Op::Expire),
    ]
}

/// One transactional id: its durable state and what a well-behaved client last heard.
struct Harness {
    meta: TxnMetadata,
    /// Kafka's pending state: the Complete state while markers are written.
    pending: Option<TxnState>,
    now_ms: i64,
    next_producer_id: i64,
    /// Every (producer id, epoch) ever handed out, to check epochs only move forward.
    handed_out: Vec<(i64, i16)>,
}

fn code(e: &Error) -> ResponseError {
    ResponseError::try_from_code(e.kafka_code()).expect("a Kafka error code")
}

impl Harness {
    fn new(start_epoch: i16) -> Harness {
        let mut meta = TxnMetadata::new(1, 1_000, 0);
        meta.producer_epoch = start_epoch;
        Harness {
            meta,
            pending: None,
            now_ms: 0,
            next_producer_id: 2,
            handed_out: vec![(1, start_epoch)],
        }
    }

    /// The epoch a current producer sends, or one a stale (or confused) producer sends.
    fn epoch(&self, stale: bool) -> i16 {
        match (stale, self.meta.producer_epoch) {
            (false, epoch) => epoch,
            (true, 0) => 1,
            (true, epoch) => epoch - 1,
        }
    }

    /// Applies a durable transition and checks it.
    fn apply(&mut self, next: TxnMetadata) -> Result<(), TestCaseError> {
        let prev = &self.meta;
        prop_assert!(
            next.state.can_follow(prev.state),
            "{:?} -> {:?} is not an edge",
            prev.state,
            next.state
        );
        if next.producer_id == prev.producer_id {
            prop_assert!(next.producer_epoch >= prev.producer_epoch, "epoch went back");
        } else {
            prop_assert_eq!(next.producer_epoch, 0, "a new producer id starts at epoch 0");
            prop_assert!(prev.epoch_exhausted(), "the id rotated before its epochs ran out");
        }
        let open = matches!(
            next.state,
            TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
        );
        prop_assert_eq!(open, !next.partitions.is_empty(), "partitions in {:?}", next.state);
        prop_assert!(next.partitions.len() <= MAX_PARTITIONS);
        if open {
            prop_assert!(next.start_ms >= 0 && next.start_ms <= next.update_ms);
        }
        self.pending = match next.state {
            TxnState::PrepareCommit => Some(TxnState::CompleteCommit),
            TxnState::PrepareAbort => Some(TxnState::CompleteAbort),
            _ => None,
        };
        self.meta = next;
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.now_ms += 10;
        let now = self.now_ms;
        let before = self.meta.clone();
        match op {
            Op::Init { kip360, stale } => {
                let expected = kip360.then(|| (self.meta.producer_id, self.epoch(*stale)));
                let mut allocated = None;
                let result = state::init_producer_id(
                    "tx",
                    &self.meta,
                    self.pending,
                    1_000,
                    expected,
                    || {
                        allocated = Some(self.next_producer_id);
                        Ok(self.next_producer_id)
                    },
                    now,
                );
                let stale_epoch = self.epoch(true);
                match result {
                    Err(e) if self.pending.is_some() || before.state.is_prepare() => {
                        prop_assert_eq!(code(&e), ResponseError::ConcurrentTransactions)
                    }
                    Err(e) => {
                        prop_assert!(*kip360 && *stale, "unexpected {e}");
                        prop_assert!(before.last_producer_epoch != stale_epoch);
                        prop_assert_eq!(code(&e), ResponseError::ProducerFenced);
                    }
                    Ok(InitStep::FenceAndAbort(next)) => {
                        prop_assert_eq!(before.state, TxnState::Ongoing);
                        prop_assert_eq!(next.state, TxnState::PrepareAbort);
                        prop_assert!(next.producer_epoch > before.producer_epoch || before.producer_epoch == i16::MAX);
                        self.apply(next)?;
                    }
                    Ok(InitStep::Ready(next)) => {
                        prop_assert!(self.pending.is_none() && !before.state.is_prepare());
                        prop_assert!(before.state != TxnState::Ongoing);
                        prop_assert_eq!(next.state, TxnState::Empty);
                        if let Some(id) = allocated {
                            prop_assert!(!(*kip360 && *stale));
                            prop_assert_eq!(next.producer_id, id);
                            self.next_producer_id += 1;
                        } else if *kip360 && *stale {
                            // A retried bump: the epoch it already handed out.
                            prop_assert_eq!(before.last_producer_epoch, stale_epoch);
                            prop_assert_eq!(next.producer_epoch, before.producer_epoch);
                        } else {
                            prop_assert_eq!(next.producer_epoch, before.producer_epoch + 1);
                        }
                        self.handed_out.push((next.producer_id, next.producer_epoch));
                        self.apply(next)?;
                    }
                }
            }
            Op::Add { partitions, stale } => {
                let set: BTreeSet<(String, i32)> = partitions.iter().map(|p| ("t".to_string(), *p)).collect();
                let epoch = self.epoch(*stale);
                let result = state::add_partitions(
                    "tx",
                    &self.meta,
                    self.pending,
                    (self.meta.producer_id, epoch),
                    &set,
                    MAX_PARTITIONS,
                    now,
                );
                match result {
                    Err(e) if epoch != before.producer_epoch => {
                        prop_assert_eq!(code(&e), ResponseError::ProducerFenced)
                    }
                    Err(e) if self.pending.is_some() => {
                        prop_assert_eq!(code(&e), ResponseError::ConcurrentTransactions)
                    }
                    Err(e) => {
                        prop_assert_eq!(code(&e), ResponseError::PolicyViolation);
                        prop_assert_eq!(before.state, TxnState::Ongoing);
                        prop_assert!(before.partitions.union(&set).count() > MAX_PARTITIONS);
                    }
                    Ok(None) => {
                        prop_assert_eq!(before.state, TxnState::Ongoing);
                        prop_assert!(set.is_subset(&before.partitions));
                    }
                    Ok(Some(next)) => {
                        prop_assert!(epoch == before.producer_epoch && self.pending.is_none());
                        prop_assert!(set.is_subset(&next.partitions));
                        self.apply(next)?;
                    }
                }
            }
            Op::End { commit, stale } => {
                let epoch = self.epoch(*stale);
                let result = state::end_txn(
                    "tx",
                    &self.meta,
                    self.pending,
                    (self.meta.producer_id, epoch),
                    *commit,
                    now,
                );
                use TxnState::*;
                let want = if epoch != before.producer_epoch {
                    Err(ResponseError::ProducerFenced)
                } else {
                    match (before.state, *commit) {
                        (PrepareCommit | PrepareAbort, _) => Err(ResponseError::ConcurrentTransactions),
                        (Ongoing, _) => Ok(true),
                        (CompleteCommit, true) | (CompleteAbort, false) => Ok(false),
                        _ => Err(ResponseError::InvalidTxnState),
                    }
                };
                match (result, want) {
                    (Err(e), Err(want)) => prop_assert_eq!(code(&e), want),
                    (Ok(None), Ok(false)) => {}
                    (Ok(Some(next)), Ok(true)) => {
                        prop_assert_eq!(next.state, if *commit { PrepareCommit } else { PrepareAbort });
                        self.apply(next)?;
                    }
                    (got, want) => prop_assert!(false, "EndTxn answered {got:?}, Kafka {want:?}"),
                }
            }
            Op::Timeout => {
                let later = now + i64::from(self.meta.timeout_ms) + 1;
                self.now_ms = later;
                if self.pending.is_none() && self.meta.timed_out(later) {
                    let next = state::fence(&self.meta, later);
                    prop_assert_eq!(next.state, TxnState::PrepareAbort);
                    self.apply(next)?;
                } else {
                    prop_assert!(before.state != TxnState::Ongoing || self.pending.is_some());
                }
            }
            Op::Complete => match state::complete(&self.meta, now) {
                Some(next) => {
                    prop_assert_eq!(Some(next.state), self.pending);
                    self.apply(next)?;
                }
                None => prop_assert!(!before.state.is_prepare()),
            },
            Op::Expire => {
                let later = now + 10_000;
                let expired = state::expired(&self.meta, self.pending, later, 5_000);
                let idle = matches!(
                    before.state,
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                );
                prop_assert_eq!(expired, idle && self.pending.is_none());
            }
        }
        // A refused operation changes nothing.
        if self.meta == before {
            return Ok(());
        }
        for (pid, epoch) in &self.handed_out {
            if *pid == self.meta.producer_id {
                prop_assert!(
                    self.meta.producer_epoch >= *epoch,
                    "an epoch went back below one handed out"
                );
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn transitions_follow_kafkas_state_machine(
        near_exhaustion in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let mut harness = Harness::new(if near_exhaustion { i16::MAX - 3 } else { 0 });
        for op in &ops {
            harness.step(op)?;
        }
    }
}

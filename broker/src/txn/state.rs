//! The transaction state machine of one transactional id, as Kafka's `TransactionMetadata` and
//! `TransactionCoordinator` define it, as pure functions of the current state and an explicit
//! clock: each operation either refuses with Kafka's error or returns the next state, which the
//! coordinator makes durable before it acts on it or answers.
//!
//! States and their edges: Empty -> Ongoing (first AddPartitionsToTxn) -> PrepareCommit or
//! PrepareAbort (EndTxn, or a timeout) -> CompleteCommit or CompleteAbort (markers written) ->
//! Ongoing (next transaction) or Empty (InitProducerId); Empty and Complete* -> Dead (expiry).
//! Kafka's transient PrepareEpochFence never reaches the log: fencing an ongoing transaction is
//! one step to PrepareAbort with the epoch bumped.

use std::collections::BTreeSet;

use crate::error::{Error, Result};

/// The producer id of no producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// The epoch of no producer.
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// A partition in a transaction: topic name and partition index.
pub type TopicPartition = (String, i32);

/// Where a transaction stands, with Kafka's ids (TransactionLogValue `TransactionStatus`) and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    /// No transaction: just initialised, or bumped by InitProducerId.
    Empty,
    /// A transaction is open: partitions have been added.
    Ongoing,
    /// EndTxn(commit) is durable; commit markers are being written.
    PrepareCommit,
    /// EndTxn(abort) or a fence is durable; abort markers are being written.
    PrepareAbort,
    /// Every commit marker is written.
    CompleteCommit,
    /// Every abort marker is written.
    CompleteAbort,
    /// The transactional id expired; its tombstone is being written.
    Dead,
}

/// Every state name Kafka knows, for ListTransactions filters (PrepareEpochFence never appears).
pub const STATE_NAMES: &[&str] = &[
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

impl TxnState {
    /// Every state, in id order.
    pub const ALL: [TxnState; 7] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
    ];

    /// Kafka's id of the state in `__transaction_state`.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
        }
    }

    /// The state with a Kafka id; None for PrepareEpochFence (7, never persisted) and unknown ids.
    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// Kafka's name of the state, as DescribeTransactions and ListTransactions report it.
    pub fn name(self) -> &'static str {
        STATE_NAMES[self.id() as usize]
    }

    /// The state with a Kafka name; None for unknown names and for PrepareEpochFence.
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether a transition from `prev` to this state is one of Kafka's allowed edges.
    pub fn can_follow(self, prev: TxnState) -> bool {
        use TxnState::*;
        match self {
            Empty => matches!(prev, Empty | CompleteCommit | CompleteAbort),
            Ongoing => matches!(prev, Ongoing | Empty | CompleteCommit | CompleteAbort),
            PrepareCommit => prev == Ongoing,
            PrepareAbort => prev == Ongoing,
            CompleteCommit => prev == PrepareCommit,
            CompleteAbort => prev == PrepareAbort,
            Dead => matches!(prev, Empty | CompleteCommit | CompleteAbort),
        }
    }

    /// PrepareCommit or PrepareAbort: markers remain to be written.
    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// The coordinator's view of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    /// The producer id in use.
    pub producer_id: i64,
    /// The producer id before the last rotation (epoch exhaustion), in memory only.
    pub last_producer_id: i64,
    /// The current epoch; -1 until the first InitProducerId is durable.
    pub producer_epoch: i16,
    /// The epoch before the last bump by InitProducerId, to recognise a retried bump (KIP-360);
    /// in memory only, as in Kafka.
    pub last_producer_epoch: i16,
    /// The transaction timeout the producer asked for.
    pub timeout_ms: i32,
    /// Where the transaction stands.
    pub state: TxnState,
    /// The partitions in the transaction (empty in Empty and Complete*).
    pub partitions: BTreeSet<TopicPartition>,
    /// When the current (or last) transaction started, -1 if none has.
    pub start_ms: i64,
    /// When the state last changed.
    pub update_ms: i64,
}

impl TxnMetadata {
    /// The state of a transactional id seen for the first time, before its first epoch.
    pub fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            producer_id,
            last_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            update_ms: now_ms,
        }
    }

    /// Whether the epoch cannot be bumped again for this producer id (Kafka leaves one value
    /// spare for the fence of a last ongoing transaction).
    pub fn epoch_exhausted(&self) -> bool {
        is_epoch_exhausted(self.producer_epoch)
    }

    /// Whether an Ongoing transaction is older than its timeout at `now_ms`.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing && self.start_ms.saturating_add(i64::from(self.timeout_ms)) < now_ms
    }

    fn with(&self, state: TxnState, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            state,
            update_ms: now_ms,
            ..self.clone()
        }
    }
}

/// Kafka's `isEpochExhausted`: epochs stop at `i16::MAX - 1` so that a fence still has room.
pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// What InitProducerId does for a transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitStep {
    /// Make this Empty state durable, then answer with its producer id and epoch.
    Ready(TxnMetadata),
    /// An ongoing transaction must be aborted first: make this PrepareAbort (epoch bumped, so the
    /// old producer is fenced) durable, write the abort markers, and answer CONCURRENT_TRANSACTIONS
    /// so that the client retries and gets the next epoch.
    FenceAndAbort(TxnMetadata),
}

/// InitProducerId for a transactional id (Kafka's `prepareInitProducerIdTransit`). `expected` is
/// the producer id and epoch the client sent (v3+, KIP-360), None when it sent -1; `pending` is
/// the state a change still being written moves to; `new_producer_id` allocates an id on epoch
/// exhaustion.
pub fn init_producer_id(
    txn_id: &str,
    current: &TxnMetadata,
    pending: Option<TxnState>,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    new_producer_id: impl FnOnce() -> Result<i64>,
    now_ms: i64,
) -> Result<InitStep> {
    if pending.is_some() {
        return Err(concurrent(txn_id));
    }
    if let Some((producer_id, epoch)) = expected {
        // Kafka's isValidProducerId: a just-created id, the current id, or the previous id with an
        // exhausted epoch (a retry after a rotation whose answer was lost).
        let valid = current.producer_epoch == NO_PRODUCER_EPOCH
            || producer_id == current.producer_id
            || (producer_id == current.last_producer_id && is_epoch_exhausted(epoch));
        if !valid {
            return Err(fenced(txn_id, current, epoch));
        }
    }
    match current.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::Dead => Err(concurrent(txn_id)),
        TxnState::Ongoing => Ok(InitStep::FenceAndAbort(fence(current, now_ms))),
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            let mut next = current.with(TxnState::Empty, now_ms);
            next.timeout_ms = timeout_ms;
            next.partitions.clear();
            next.start_ms = -1;
            if current.epoch_exhausted() && expected.is_none_or(|(_, epoch)| epoch == current.producer_epoch) {
                // A new producer id with epoch 0; the old id is kept to recognise a retry.
                next.last_producer_id = current.producer_id;
                next.producer_id = new_producer_id()?;
                next.producer_epoch = 0;
                next.last_producer_epoch = if expected.is_some() {
                    current.producer_epoch
                } else {
                    NO_PRODUCER_EPOCH
                };
                return Ok(InitStep::Ready(next));
            }
            // Kafka's prepareIncrementProducerEpoch.
            let bumped = current.producer_epoch.saturating_add(1);
            match expected {
                None => {
                    next.producer_epoch = bumped;
                    next.last_producer_epoch = NO_PRODUCER_EPOCH;
                }
                Some((_, epoch)) if current.producer_epoch == NO_PRODUCER_EPOCH || epoch == current.producer_epoch => {
                    next.producer_epoch = bumped;
                    next.last_producer_epoch = current.producer_epoch;
                }
                // A retry of a bump whose answer was lost: answer the current epoch again.
                Some((_, epoch)) if epoch == current.last_producer_epoch => {}
                Some((_, epoch)) => return Err(fenced(txn_id, current, epoch)),
            }
            Ok(InitStep::Ready(next))
        }
    }
}

/// AddPartitionsToTxn (and AddOffsetsToTxn): the next state, or None when every partition is
/// already in the ongoing transaction (answered at once). `max_partitions` bounds a transaction.
pub fn add_partitions(
    txn_id: &str,
    current: &TxnMetadata,
    pending: Option<TxnState>,
    (producer_id, producer_epoch): (i64, i16),
    partitions: &BTreeSet<TopicPartition>,
    max_partitions: usize,
    now_ms: i64,
) -> Result<Option<TxnMetadata>> {
    check_producer(txn_id, current, producer_id, producer_epoch)?;
    if pending.is_some() || current.state.is_prepare() {
        return Err(concurrent(txn_id));
    }
    match current.state {
        TxnState::Ongoing if partitions.is_subset(&current.partitions) => return Ok(None),
        TxnState::Ongoing => {}
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {}
        other => return Err(invalid_state(txn_id, other, "add partitions")),
    }
    let mut next = current.with(TxnState::Ongoing, now_ms);
    if current.state != TxnState::Ongoing {
        next.partitions.clear();
        next.start_ms = now_ms;
    }
    next.partitions.extend(partitions.iter().cloned());
    if next.partitions.len() > max_partitions {
        return Err(Error::LimitExceeded {
            what: "partitions in one transaction",
            config: "transaction.max.partitions",
            limit: max_partitions,
        });
    }
    Ok(Some(next))
}

/// EndTxn from a client (Kafka's `endTransaction` with `isFromClient`): the PrepareCommit or
/// PrepareAbort state to make durable, or None when the same end already completed (a retry,
/// answered with success at once).
pub fn end_txn(
    txn_id: &str,
    current: &TxnMetadata,
    pending: Option<TxnState>,
    (producer_id, producer_epoch): (i64, i16),
    commit: bool,
    now_ms: i64,
) -> Result<Option<TxnMetadata>> {
    check_producer(txn_id, current, producer_id, producer_epoch)?;
    let operation = if commit { "commit" } else { "abort" };
    use TxnState::*;
    match (current.state, commit) {
        // A retried EndTxn while its markers are still being written.
        (PrepareCommit, true) | (PrepareAbort, false) => Err(concurrent(txn_id)),
        _ if pending.is_some() => Err(concurrent(txn_id)),
        (Ongoing, _) => Ok(Some(
            current.with(if commit { PrepareCommit } else { PrepareAbort }, now_ms),
        )),
        (CompleteCommit, true) | (CompleteAbort, false) => Ok(None),
        (state, _) => Err(invalid_state(txn_id, state, operation)),
    }
}

/// The coordinator's own abort of an Ongoing transaction (its timeout passed, or InitProducerId
/// found it open): PrepareAbort with the epoch bumped so that the old producer is fenced; at
/// `i16::MAX` the epoch cannot move and the abort keeps it, as Kafka does.
pub fn fence(current: &TxnMetadata, now_ms: i64) -> TxnMetadata {
    let mut next = current.with(TxnState::PrepareAbort, now_ms);
    if current.producer_epoch < i16::MAX {
        next.producer_epoch = current.producer_epoch + 1;
    }
    next.last_producer_epoch = NO_PRODUCER_EPOCH;
    next
}

/// PrepareCommit -> CompleteCommit and PrepareAbort -> CompleteAbort once every marker is
/// written; the partitions are cleared and the start time kept. None from any other state.
pub fn complete(current: &TxnMetadata, now_ms: i64) -> Option<TxnMetadata> {
    let state = match current.state {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        TxnState::PrepareAbort => TxnState::CompleteAbort,
        _ => return None,
    };
    let mut next = current.with(state, now_ms);
    next.partitions.clear();
    Some(next)
}

/// Whether a transactional id may be forgotten: no transaction open and unused for
/// `transactional.id.expiration.ms` (Kafka's expiration check).
pub fn expired(current: &TxnMetadata, pending: Option<TxnState>, now_ms: i64, expiration_ms: i64) -> bool {
    pending.is_none()
        && matches!(
            current.state,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
        && current.update_ms <= now_ms.saturating_sub(expiration_ms)
}

/// The check that a transactional write (TxnOffsetCommit) comes from the current producer and
/// goes to a partition of its ongoing transaction (KIP-890's verification: AddOffsetsToTxn came
/// first). Adding more partitions may be in flight; ending the transaction may not.
pub fn check_in_transaction(
    txn_id: &str,
    current: &TxnMetadata,
    pending: Option<TxnState>,
    (producer_id, producer_epoch): (i64, i16),
    partition: &TopicPartition,
) -> Result<()> {
    check_producer(txn_id, current, producer_id, producer_epoch)?;
    if current.state.is_prepare() || pending.is_some_and(|p| p != TxnState::Ongoing) {
        return Err(concurrent(txn_id));
    }
    if current.state != TxnState::Ongoing || !current.partitions.contains(partition) {
        return Err(invalid_state(
            txn_id,
            current.state,
            "commit offsets outside the transaction",
        ));
    }
    Ok(())
}

/// The producer id must be the transactional id's, and the epoch its current one.
fn check_producer(txn_id: &str, current: &TxnMetadata, producer_id: i64, producer_epoch: i16) -> Result<()> {
    if current.producer_id != producer_id {
        return Err(Error::InvalidProducerIdMapping {
            transactional_id: txn_id.to_string(),
            producer_id,
        });
    }
    if current.producer_epoch != producer_epoch {
        return Err(fenced(txn_id, current, producer_epoch));
    }
    Ok(())
}

fn fenced(txn_id: &str, current: &TxnMetadata, got: i16) -> Error {
    Error::ProducerFenced {
        transactional_id: txn_id.to_string(),
        producer_id: current.producer_id,
        current: current.producer_epoch,
        got,
    }
}

fn concurrent(txn_id: &str) -> Error {
    Error::ConcurrentTransactions {
        transactional_id: txn_id.to_string(),
    }
}

fn invalid_state(txn_id: &str, state: TxnState, operation: &'static str) -> Error {
    Error::InvalidTxnState {
        transactional_id: txn_id.to_string(),
        state: state.name(),
        operation,
    }
}

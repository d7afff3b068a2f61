//! The transactional producer's state machine, kept free of I/O so that every transition can be
//! tested: which calls each state allows, which partitions and groups the open transaction holds,
//! and how an error moves the producer (retry, abortable error, or fatal, e.g. when fenced).

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;

use super::accumulator::copy_error;
use super::consumer_protocol::TopicPartition;
use crate::error::{Error, Result};

/// The most partitions one transaction may span; a bound on what the caller can make us track.
pub(crate) const MAX_TRANSACTION_PARTITIONS: usize = 100_000;
/// The most consumer groups whose offsets one transaction may carry.
pub(crate) const MAX_TRANSACTION_GROUPS: usize = 1_000;

/// Where a transactional producer is in its life (the states of Kafka's TransactionManager).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before `init_transactions` succeeded.
    Uninitialized,
    /// Initialised, no transaction open.
    Ready,
    /// Between `begin_transaction` and `commit_transaction` or `abort_transaction`.
    InTransaction,
    /// `commit_transaction` started; calling it again retries.
    Committing,
    /// `abort_transaction` started; calling it again retries.
    Aborting,
    /// A transaction failed; only `abort_transaction` is allowed.
    AbortableError,
    /// Fenced or refused for good; the producer can only be closed.
    Fatal,
}

impl Phase {
    fn describe(self) -> &'static str {
        match self {
            Phase::Uninitialized => "not initialised (call init_transactions first)",
            Phase::Ready => "not in a transaction (call begin_transaction first)",
            Phase::InTransaction => "in a transaction",
            Phase::Committing => "committing a transaction (retry commit_transaction)",
            Phase::Aborting => "aborting a transaction (retry abort_transaction)",
            Phase::AbortableError => "in a failed transaction (call abort_transaction)",
            Phase::Fatal => "unusable after a fatal error",
        }
    }
}

/// What an error from a transactional request means for the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Try again; `refresh_coordinator` when the coordinator may have moved, `quick` when the
    /// coordinator is only finishing the previous transaction (CONCURRENT_TRANSACTIONS).
    Retry {
        /// Look the coordinator up again before the next attempt.
        refresh_coordinator: bool,
        /// Retry after a short pause rather than the usual backoff.
        quick: bool,
    },
    /// The transaction cannot commit; the caller must abort it. `bump_epoch` when the producer
    /// needs a new epoch afterwards (its sequence numbers can no longer be trusted).
    Abortable {
        /// Whether a new epoch is needed after the abort.
        bump_epoch: bool,
    },
    /// The producer cannot go on (fenced, refused, or the broker lacks transactions).
    Fatal,
}

fn code(error: &Error) -> Option<i16> {
    match error {
        Error::Remote { code, .. } => Some(*code),
        _ => None,
    }
}

/// How an error answered to a coordinator request (or a failed connection) is handled.
pub(crate) fn disposition(error: &Error) -> Disposition {
    let retry = |refresh_coordinator, quick| Disposition::Retry {
        refresh_coordinator,
        quick,
    };
    let Some(code) = code(error) else {
        return match error {
            Error::Connection { .. } | Error::Timeout { .. } => retry(true, false),
            _ => Disposition::Fatal,
        };
    };
    match ResponseError::try_from_code(code) {
        Some(
            ResponseError::CoordinatorNotAvailable
            | ResponseError::NotCoordinator
            | ResponseError::RequestTimedOut
            | ResponseError::NetworkException,
        ) => retry(true, false),
        Some(
            ResponseError::CoordinatorLoadInProgress
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::NotLeaderOrFollower
            | ResponseError::LeaderNotAvailable,
        ) => retry(false, false),
        Some(ResponseError::ConcurrentTransactions) => retry(false, true),
        Some(ResponseError::UnknownProducerId | ResponseError::InvalidProducerIdMapping) => {
            Disposition::Abortable { bump_epoch: true }
        }
        Some(
            ResponseError::TransactionAbortable
            | ResponseError::IllegalGeneration
            | ResponseError::UnknownMemberId
            | ResponseError::RebalanceInProgress
            | ResponseError::FencedInstanceId
            | ResponseError::GroupAuthorizationFailed
            | ResponseError::TopicAuthorizationFailed
            | ResponseError::OperationNotAttempted,
        ) => Disposition::Abortable { bump_epoch: false },
        _ => Disposition::Fatal,
    }
}

/// How a batch that failed for good is handled: fencing is fatal, anything else makes the
/// transaction abortable with a new epoch (the batch's sequence numbers are lost).
pub(crate) fn produce_disposition(error: &Error) -> Disposition {
    match code(error).and_then(ResponseError::try_from_code) {
        Some(
            ResponseError::InvalidProducerEpoch
            | ResponseError::ProducerFenced
            | ResponseError::TransactionalIdAuthorizationFailed,
        ) => Disposition::Fatal,
        _ => Disposition::Abortable { bump_epoch: true },
    }
}

/// A misuse of the transactional API, e.g. `commit_transaction` without `begin_transaction`.
pub(crate) fn state_error(message: String) -> Error {
    Error::Remote {
        code: ResponseError::InvalidTxnState.code(),
        message: format!("InvalidTxnState: {message}"),
    }
}

/// The transaction state of one transactional producer.
pub(crate) struct TxnState {
    /// The producer's `transactional.id`.
    pub(crate) transactional_id: String,
    /// The transaction coordinator's node id, once found.
    pub(crate) coordinator: Option<i32>,
    phase: Phase,
    /// The error that moved the producer to AbortableError or Fatal (kept while aborting).
    error: Option<Error>,
    /// Partitions the coordinator has added to the open transaction.
    partitions: BTreeSet<TopicPartition>,
    /// Partitions with records waiting to be added before any of their batches is sent.
    pending: BTreeSet<TopicPartition>,
    /// Groups whose offsets partition the coordinator has added.
    groups: BTreeSet<String>,
    /// Whether the producer needs a new epoch once the transaction is aborted.
    needs_epoch_bump: bool,
}

impl TxnState {
    /// A producer that has not called `init_transactions` yet.
    pub(crate) fn new(transactional_id: String) -> TxnState {
        TxnState {
            transactional_id,
            coordinator: None,
            phase: Phase::Uninitialized,
            error: None,
            partitions: BTreeSet::new(),
            pending: BTreeSet::new(),
            groups: BTreeSet::new(),
            needs_epoch_bump: false,
        }
    }

    /// The current phase.
    #[cfg(test)]
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    fn misuse(&self, call: &str) -> Error {
        match (&self.error, self.phase) {
            (Some(e), Phase::Fatal) => copy_error(e),
            _ => state_error(format!(
                "{call} is not allowed: the producer with transactional.id {} is {}",
                self.transactional_id,
                self.phase.describe()
            )),
        }
    }

    /// A copy of the error that failed the transaction, if any.
    pub(crate) fn error(&self) -> Option<Error> {
        self.error.as_ref().map(copy_error)
    }

    /// Checks that `init_transactions` may run.
    pub(crate) fn check_init(&self) -> Result<()> {
        match self.phase {
            Phase::Uninitialized => Ok(()),
            _ => Err(self.misuse("init_transactions")),
        }
    }

    /// Records a successful `init_transactions`.
    pub(crate) fn initialized(&mut self) {
        self.phase = Phase::Ready;
    }

    /// Opens a transaction.
    pub(crate) fn begin(&mut self) -> Result<()> {
        match self.phase {
            Phase::Ready => {
                self.phase = Phase::InTransaction;
                Ok(())
            }
            _ => Err(self.misuse("begin_transaction")),
        }
    }

    /// Checks that records or offsets may be added to the transaction now.
    pub(crate) fn check_send(&self, call: &str) -> Result<()> {
        match self.phase {
            Phase::InTransaction => Ok(()),
            _ => Err(self.refusal(call)),
        }
    }

    /// Why `call` is refused now: the earlier failure in AbortableError, else the phase.
    fn refusal(&self, call: &str) -> Error {
        match (self.phase, &self.error) {
            (Phase::AbortableError, Some(e)) => Error::Remote {
                code: e.kafka_code(),
                message: format!("the transaction failed earlier ({e}); call abort_transaction before {call}"),
            },
            _ => self.misuse(call),
        }
    }

    /// Notes a partition a record goes to; true when it is new to the transaction and must be
    /// added (the sender holds every batch back while any partition is pending).
    pub(crate) fn register(&mut self, topic: &str, partition: i32) -> Result<bool> {
        self.check_send("send")?;
        let tp = (topic.to_string(), partition);
        if self.partitions.contains(&tp) || self.pending.contains(&tp) {
            return Ok(false);
        }
        if self.partitions.len() + self.pending.len() >= MAX_TRANSACTION_PARTITIONS {
            return Err(Error::TooLarge {
                what: "transaction (partitions)",
                size_bytes: MAX_TRANSACTION_PARTITIONS + 1,
                limit_bytes: MAX_TRANSACTION_PARTITIONS,
            });
        }
        self.pending.insert(tp);
        Ok(true)
    }

    /// Partitions waiting to be added to the transaction.
    pub(crate) fn pending(&self) -> Vec<TopicPartition> {
        self.pending.iter().cloned().collect()
    }

    /// Records partitions the coordinator added.
    pub(crate) fn added(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.pending.remove(tp);
            self.partitions.insert(tp.clone());
        }
    }

    /// Whether the group's offsets partition is in the transaction already.
    pub(crate) fn has_group(&self, group: &str) -> bool {
        self.groups.contains(group)
    }

    /// Records that the coordinator added a group's offsets partition.
    pub(crate) fn group_added(&mut self, group: &str) -> Result<()> {
        if self.groups.len() >= MAX_TRANSACTION_GROUPS && !self.groups.contains(group) {
            return Err(Error::TooLarge {
                what: "transaction (consumer groups)",
                size_bytes: MAX_TRANSACTION_GROUPS + 1,
                limit_bytes: MAX_TRANSACTION_GROUPS,
            });
        }
        self.groups.insert(group.to_string());
        Ok(())
    }

    /// Starts (or retries) a commit.
    pub(crate) fn start_commit(&mut self) -> Result<()> {
        match self.phase {
            Phase::InTransaction | Phase::Committing => {
                self.phase = Phase::Committing;
                Ok(())
            }
            _ => Err(self.refusal("commit_transaction")),
        }
    }

    /// Starts (or retries) an abort.
    pub(crate) fn start_abort(&mut self) -> Result<()> {
        match self.phase {
            Phase::InTransaction | Phase::AbortableError | Phase::Aborting => {
                self.phase = Phase::Aborting;
                Ok(())
            }
            _ => Err(self.misuse("abort_transaction")),
        }
    }

    /// Whether the coordinator knows of this transaction, so that EndTxn must be sent.
    pub(crate) fn needs_end_txn(&self) -> bool {
        !self.partitions.is_empty() || !self.groups.is_empty()
    }

    /// Whether a new epoch must be obtained once the transaction is aborted.
    pub(crate) fn needs_epoch_bump(&self) -> bool {
        self.needs_epoch_bump
    }

    /// Records that sequence numbers were lost (batches failed without being written).
    pub(crate) fn require_epoch_bump(&mut self) {
        self.needs_epoch_bump = true;
    }

    /// Ends the transaction (committed or aborted): back to Ready.
    pub(crate) fn completed(&mut self) {
        self.phase = Phase::Ready;
        self.error = None;
        self.partitions.clear();
        self.pending.clear();
        self.groups.clear();
        self.needs_epoch_bump = false;
    }

    /// The error every batch not yet sent must fail with, while the transaction cannot commit.
    pub(crate) fn unsendable(&self) -> Option<Error> {
        match self.phase {
            Phase::AbortableError | Phase::Fatal | Phase::Aborting => self.error(),
            _ => None,
        }
    }

    /// Applies a failure and returns the error to give the caller: fatal errors make the
    /// producer unusable, abortable ones fail the transaction (retries that ran out of time
    /// leave the state as it is, so the call can be made again).
    pub(crate) fn fail(&mut self, error: Error, disposition: Disposition) -> Error {
        match disposition {
            Disposition::Fatal => {
                if self.phase == Phase::Fatal {
                    return self.misuse("this call");
                }
                let fenced = matches!(
                    ResponseError::try_from_code(error.kafka_code()),
                    Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch)
                );
                let why = if fenced {
                    format!(
                        "fenced: another producer with transactional.id {} has started",
                        self.transactional_id
                    )
                } else {
                    format!("transactional.id {}", self.transactional_id)
                };
                let fatal = Error::Remote {
                    code: error.kafka_code(),
                    message: format!(
                        "{error}; {why}; this producer cannot be used any more: close it and create a new one"
                    ),
                };
                tracing::error!(transactional_id = %self.transactional_id, error = %error, "transactional producer failed for good");
                self.phase = Phase::Fatal;
                self.error = Some(copy_error(&fatal));
                fatal
            }
            Disposition::Abortable { bump_epoch } => {
                self.needs_epoch_bump |= bump_epoch;
                match self.phase {
                    Phase::Fatal => self.misuse("this call"),
                    Phase::Uninitialized | Phase::Ready => error,
                    phase => {
                        tracing::warn!(transactional_id = %self.transactional_id, error = %error, "transaction must be aborted");
                        if self.error.is_none() {
                            self.error = Some(copy_error(&error));
                        }
                        if phase != Phase::Aborting {
                            self.phase = Phase::AbortableError;
                        }
                        error
                    }
                }
            }
            Disposition::Retry { .. } => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(code: i16) -> Error {
        Error::Remote {
            code,
            message: format!("code {code}"),
        }
    }

    fn ready() -> TxnState {
        let mut t = TxnState::new("tx".to_string());
        t.check_init().unwrap();
        t.initialized();
        t
    }

    fn code_of(e: Error) -> i16 {
        e.kafka_code()
    }

    #[test]
    fn calls_are_allowed_only_in_their_phase() {
        let mut t = TxnState::new("tx".to_string());
        assert_eq!(code_of(t.begin().unwrap_err()), 48);
        assert_eq!(code_of(t.register("a", 0).unwrap_err()), 48);
        assert_eq!(code_of(t.start_commit().unwrap_err()), 48);
        t.initialized();
        assert!(t.check_init().is_err(), "init twice");
        assert!(t.register("a", 0).is_err(), "send outside a transaction");
        assert!(t.start_abort().is_err(), "abort outside a transaction");
        t.begin().unwrap();
        assert!(t.begin().is_err(), "nested begin");
        assert!(t.register("a", 0).unwrap());
        assert!(!t.register("a", 0).unwrap(), "a pending partition is not added twice");
        t.added(&[("a".to_string(), 0)]);
        assert!(!t.register("a", 0).unwrap(), "an added partition is not added twice");
        assert!(t.pending().is_empty());
        assert!(t.needs_end_txn());
        t.start_commit().unwrap();
        assert!(t.register("a", 1).is_err(), "no sends while committing");
        t.start_commit().unwrap();
        assert!(t.start_abort().is_err(), "no abort while a commit is under way");
        t.completed();
        assert_eq!(t.phase(), Phase::Ready);
        assert!(!t.needs_end_txn());
        t.begin().unwrap();
        assert!(!t.needs_end_txn(), "an empty transaction needs no EndTxn");
    }

    #[test]
    fn an_abortable_error_allows_only_abort_then_ready_again() {
        let mut t = ready();
        t.begin().unwrap();
        t.register("a", 0).unwrap();
        let e = t.fail(remote(25), disposition(&remote(25)));
        assert_eq!(code_of(e), 25);
        assert_eq!(t.phase(), Phase::AbortableError);
        assert_eq!(code_of(t.register("b", 0).unwrap_err()), 25);
        assert_eq!(code_of(t.start_commit().unwrap_err()), 25);
        assert!(t.unsendable().is_some());
        assert!(!t.needs_epoch_bump());
        t.start_abort().unwrap();
        assert_eq!(t.phase(), Phase::Aborting);
        assert!(t.unsendable().is_some(), "batches of a failed transaction are not sent");
        t.completed();
        assert!(t.unsendable().is_none());
        t.begin().unwrap();
    }

    #[test]
    fn a_lost_batch_needs_a_new_epoch_and_fencing_is_fatal_for_good() {
        let mut t = ready();
        t.begin().unwrap();
        t.fail(remote(87), produce_disposition(&remote(87)));
        assert!(t.needs_epoch_bump());
        assert_eq!(t.phase(), Phase::AbortableError);
        let fenced = t.fail(remote(90), produce_disposition(&remote(90)));
        assert_eq!(fenced.kafka_code(), 90);
        assert!(fenced.to_string().contains("fenced"), "{fenced}");
        assert!(fenced.to_string().contains("close it"), "{fenced}");
        assert_eq!(t.phase(), Phase::Fatal);
        for e in [
            t.begin().unwrap_err(),
            t.start_abort().unwrap_err(),
            t.start_commit().unwrap_err(),
            t.register("a", 0).unwrap_err(),
        ] {
            assert_eq!(e.kafka_code(), 90, "{e}");
        }
        // A later abortable error does not bring a fatal producer back.
        t.fail(remote(25), Disposition::Abortable { bump_epoch: false });
        assert_eq!(t.phase(), Phase::Fatal);
    }

    #[test]
    fn errors_are_classified_as_kafka_does() {
        let retry = |refresh_coordinator, quick| Disposition::Retry {
            refresh_coordinator,
            quick,
        };
        assert_eq!(disposition(&remote(16)), retry(true, false));
        assert_eq!(disposition(&remote(15)), retry(true, false));
        assert_eq!(disposition(&remote(14)), retry(false, false));
        assert_eq!(disposition(&remote(51)), retry(false, true));
        assert_eq!(disposition(&remote(47)), Disposition::Fatal);
        assert_eq!(disposition(&remote(90)), Disposition::Fatal);
        assert_eq!(disposition(&remote(48)), Disposition::Fatal);
        assert_eq!(disposition(&remote(59)), Disposition::Abortable { bump_epoch: true });
        assert_eq!(disposition(&remote(22)), Disposition::Abortable { bump_epoch: false });
        let gone = Error::Connection {
            addr: "a".to_string(),
            reason: "reset".to_string(),
        };
        assert_eq!(disposition(&gone), retry(true, false));
        assert_eq!(produce_disposition(&remote(47)), Disposition::Fatal);
        assert_eq!(
            produce_disposition(&remote(10)),
            Disposition::Abortable { bump_epoch: true }
        );
    }

    #[test]
    fn a_retry_that_ran_out_leaves_the_phase_alone() {
        let mut t = ready();
        t.begin().unwrap();
        t.start_commit().unwrap();
        let e = t.fail(remote(15), disposition(&remote(15)));
        assert_eq!(e.kafka_code(), 15);
        assert_eq!(t.phase(), Phase::Committing, "commit_transaction can be called again");
    }

    #[test]
    fn the_partitions_of_a_transaction_are_bounded() {
        let mut t = ready();
        t.begin().unwrap();
        for p in 0..MAX_TRANSACTION_PARTITIONS as i32 {
            t.register("t", p).unwrap();
        }
        assert!(matches!(t.register("t", -1), Err(Error::TooLarge { .. })));
    }
}

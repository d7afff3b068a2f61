//! The broker crate's one error type, and the one place where errors become Kafka error codes.

use kafka_protocol::ResponseError;

/// Result with the broker's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside the broker, grouped by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on the data directory failed (Brook or the machine is at fault).
    #[error("{context}: {source}")]
    Io {
        /// What Brook was doing, e.g. "opening segment /data/t-0/00000000000000000000.log".
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A record batch failed validation: bad CRC, bad length, bad magic (the client is at fault).
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// A record is valid on the wire but breaks a rule of the topic, e.g. no key on a compacted topic.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A batch is larger than the topic's `max.message.bytes`.
    #[error("record batch of {size_bytes} bytes exceeds max.message.bytes of {max_bytes}")]
    MessageTooLarge {
        /// The size of the rejected batch.
        size_bytes: usize,
        /// The limit in force.
        max_bytes: usize,
    },
    /// An offset outside [log start offset, log end offset] was asked for.
    #[error("offset {offset} is outside the log's range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: i64,
        /// The first offset still held.
        log_start_offset: i64,
        /// The next offset to be written.
        log_end_offset: i64,
    },
    /// An idempotent producer sent a sequence number that does not follow the last one.
    #[error("out of order sequence number for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// The sequence number the broker expected next.
        expected: i32,
        /// The sequence number received.
        got: i32,
    },
    /// An idempotent producer used an epoch older than the partition has seen.
    #[error("producer {producer_id} used epoch {got}, older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// The producer id.
        producer_id: i64,
        /// The epoch the partition knows.
        current: i16,
        /// The epoch received.
        got: i16,
    },
    /// The topic or partition does not exist.
    #[error("unknown topic or partition: {0}")]
    UnknownTopicOrPartition(String),
    /// A topic with this name exists already.
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    /// A topic name breaks Kafka's naming rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic {
        /// The name given.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A configuration name or value is not accepted (the user is at fault).
    #[error("invalid config {name}: {reason}")]
    InvalidConfig {
        /// The config's Kafka name.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// A partition count or replication factor is not accepted.
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    /// A request cannot be decoded or breaks the protocol (the client is at fault).
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    /// A request or response exceeds a configured bound.
    #[error("{what} of {size_bytes} bytes exceeds the limit of {limit_bytes}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size_bytes: usize,
        /// The bound in force.
        limit_bytes: usize,
    },
    /// The log on disk is damaged in a way recovery must not repair silently (Brook or the disk is at fault).
    #[error("corrupt log {path}: {reason}")]
    CorruptLog {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A remote broker answered with an error code (an external system is at fault).
    #[error("broker returned {code}: {message}")]
    Remote {
        /// The Kafka error code.
        code: i16,
        /// The error's text, from the code or the broker's message.
        message: String,
    },
    /// The connection to a remote broker failed or closed (an external system is at fault).
    #[error("connection to {addr} failed: {reason}")]
    Connection {
        /// The address.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// An operation took longer than its deadline.
    #[error("timed out after {ms} ms: {what}")]
    Timeout {
        /// What timed out.
        what: String,
        /// The deadline in milliseconds.
        ms: u64,
    },
    /// The broker is shutting down or the component was closed.
    #[error("{0} is shut down")]
    Shutdown(&'static str),
    /// An offset commit carries metadata longer than `offset.metadata.max.bytes` (the client is at fault).
    #[error("offset metadata of {size_bytes} bytes exceeds offset.metadata.max.bytes of {limit_bytes}")]
    OffsetMetadataTooLarge {
        /// The metadata's size.
        size_bytes: usize,
        /// The limit in force.
        limit_bytes: usize,
    },
    /// A transactional request carries an epoch older than its transactional id's current one: a
    /// newer producer with the same transactional id has fenced this one (the client is at fault).
    #[error("producer {producer_id} of transactional id {transactional_id:?} used epoch {got}, but the current epoch is {current}")]
    ProducerFenced {
        /// The transactional id.
        transactional_id: String,
        /// The producer id.
        producer_id: i64,
        /// The transactional id's current epoch.
        current: i16,
        /// The epoch received.
        got: i16,
    },
    /// A transactional request names a transactional id that is unknown or holds another producer id.
    #[error("producer id {producer_id} is not the one assigned to transactional id {transactional_id:?}")]
    InvalidProducerIdMapping {
        /// The transactional id.
        transactional_id: String,
        /// The producer id received.
        producer_id: i64,
    },
    /// A transactional operation is not allowed in the transaction's current state.
    #[error("transactional id {transactional_id:?} cannot {operation} in state {state}")]
    InvalidTxnState {
        /// The transactional id.
        transactional_id: String,
        /// The transaction's state under Kafka's name, e.g. `Empty`.
        state: &'static str,
        /// What was asked, e.g. "commit".
        operation: &'static str,
    },
    /// Another change to the same transaction is still being written; retrying later succeeds.
    #[error("transactional id {transactional_id:?} is busy completing an earlier change")]
    ConcurrentTransactions {
        /// The transactional id.
        transactional_id: String,
    },
    /// A transaction timeout is not positive or exceeds `transaction.max.timeout.ms` (the client is at fault).
    #[error("transaction timeout of {timeout_ms} ms is not within 1 to transaction.max.timeout.ms = {max_ms}")]
    InvalidTransactionTimeout {
        /// The timeout asked for.
        timeout_ms: i32,
        /// The limit in force.
        max_ms: i64,
    },
    /// No transaction state exists for a transactional id (DescribeTransactions).
    #[error("transactional id {0:?} is not known")]
    TransactionalIdNotFound(String),
    /// A count that clients can grow has reached its configured bound (the client is at fault).
    #[error("{what} would exceed {config} = {limit}")]
    LimitExceeded {
        /// What is counted, e.g. "transactional ids".
        what: &'static str,
        /// The config that sets the bound.
        config: &'static str,
        /// The bound in force.
        limit: usize,
    },
}

impl Error {
    /// Wraps an I/O error with what Brook was doing when it happened.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The Kafka error code a client receives for this error: the one mapping in Brook.
    pub fn kafka_code(&self) -> i16 {
        let e = match self {
            Error::Io { .. } | Error::CorruptLog { .. } => ResponseError::KafkaStorageError,
            Error::CorruptBatch(_) => ResponseError::CorruptMessage,
            Error::InvalidRecord(_) => ResponseError::InvalidRecord,
            Error::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
            Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            Error::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            Error::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
            Error::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
            Error::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            Error::InvalidTopic { .. } => ResponseError::InvalidTopicException,
            Error::InvalidConfig { .. } => ResponseError::InvalidConfig,
            Error::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            Error::MalformedRequest(_) => ResponseError::InvalidRequest,
            Error::TooLarge { .. } => ResponseError::RecordListTooLarge,
            Error::Remote { code, .. } => return *code,
            Error::Connection { .. } => ResponseError::NetworkException,
            Error::Timeout { .. } => ResponseError::RequestTimedOut,
            Error::Shutdown(_) => ResponseError::NotLeaderOrFollower,
            Error::OffsetMetadataTooLarge { .. } => ResponseError::OffsetMetadataTooLarge,
            Error::ProducerFenced { .. } => ResponseError::ProducerFenced,
            Error::InvalidProducerIdMapping { .. } => ResponseError::InvalidProducerIdMapping,
            Error::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
            Error::ConcurrentTransactions { .. } => ResponseError::ConcurrentTransactions,
            Error::InvalidTransactionTimeout { .. } => ResponseError::InvalidTransactionTimeout,
            Error::TransactionalIdNotFound(_) => ResponseError::TransactionalIdNotFound,
            Error::LimitExceeded { .. } => ResponseError::PolicyViolation,
        };
        e.code()
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Remote { code, .. } => ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable()),
            // Kafka's code for it is not flagged retriable, yet clients retry it after a backoff.
            Error::Connection { .. }
            | Error::Timeout { .. }
            | Error::Shutdown(_)
            | Error::ConcurrentTransactions { .. } => true,
            other => ResponseError::try_from_code(other.kafka_code()).is_some_and(|e| e.is_retriable()),
        }
    }
}

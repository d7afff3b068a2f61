//! The engine crate's one error type: categories a user, an external system or Brook itself is
//! at fault for, with whether retrying may help.

/// Result with the engine's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A format name is not one the engine knows (the user is at fault).
    #[error("unknown format {name:?}: expected one of {expected}")]
    UnknownFormat {
        /// The name given.
        name: String,
        /// The names accepted.
        expected: String,
    },
    /// A record value does not decode in its declared format (the data is at fault).
    #[error("{format} record does not decode: {reason}")]
    Decode {
        /// The format's name.
        format: &'static str,
        /// What is wrong with the record.
        reason: String,
    },
    /// A schema is missing, malformed or cannot be inferred (the user is at fault).
    #[error("schema error: {0}")]
    Schema(String),
    /// A statement is not valid SQL or not valid Brook DDL; `line` and `column` point at the
    /// offending token when known (1-based).
    #[error("{message}{}", position_suffix(*line, *column))]
    InvalidStatement {
        /// What is wrong.
        message: String,
        /// The line of the offending token, if known.
        line: Option<u64>,
        /// The column of the offending token, if known.
        column: Option<u64>,
    },
    /// DataFusion refused or failed a query.
    #[error("query failed: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// Arrow failed to build or convert data.
    #[error("arrow error: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// A topic operation failed (the broker or the network may be at fault).
    #[error(transparent)]
    Broker(#[from] brook_broker::Error),
    /// A stream, query or job named in a statement does not exist, or already does.
    #[error("{0}")]
    Catalog(String),
    /// A continuous query job failed or was stopped.
    #[error("job {name}: {reason}")]
    Job {
        /// The job's name.
        name: String,
        /// What happened.
        reason: String,
    },
}

fn position_suffix(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

impl Error {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Broker(e) => e.is_retriable(),
            _ => false,
        }
    }
}

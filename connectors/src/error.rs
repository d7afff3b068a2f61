//! The connectors' one error type: what went wrong, whose fault it is and whether retrying helps.

/// Who is at fault for an error, which decides what a user is told and whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The pipeline file or connector configuration is wrong: retrying cannot help.
    User,
    /// A system outside Brook (a disk, a database, a web server) failed.
    External,
    /// Brook itself is wrong.
    Internal,
}

/// Errors of the connectors crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pipeline or REST call named a connector type that is not registered.
    #[error("unknown {direction} type {name:?}: known types are {known}")]
    UnknownType {
        /// The type given.
        name: String,
        /// "source" or "sink".
        direction: &'static str,
        /// The registered types of that direction.
        known: String,
    },
    /// A connector's configuration is invalid.
    #[error("{connector}: {message}")]
    Config {
        /// The connector type.
        connector: &'static str,
        /// What is wrong, in prose.
        message: String,
    },
    /// A file system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An outside system (a database, a web server) failed.
    #[error("{system}: {message}")]
    External {
        /// Which system, e.g. "postgres".
        system: &'static str,
        /// What it said.
        message: String,
        /// Whether retrying the same call may succeed.
        retriable: bool,
    },
    /// The target refused one record of a batch for good (a constraint, a type it cannot hold);
    /// the runner sends that record to the dead-letter topic and writes the others.
    #[error("record {index} of the batch was refused: {reason}")]
    Rejected {
        /// The record's index in the batch.
        index: usize,
        /// Why, in prose.
        reason: String,
    },
    /// Reading or writing a topic failed.
    #[error(transparent)]
    Broker(#[from] brook_broker::Error),
    /// Decoding, encoding or evaluating records failed.
    #[error(transparent)]
    Engine(#[from] brook_engine::Error),
    /// A bug in Brook.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with the connectors' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// A configuration error of `connector`.
    pub fn config(connector: &'static str, message: impl Into<String>) -> Error {
        Error::Config {
            connector,
            message: message.into(),
        }
    }

    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Error::UnknownType { .. } | Error::Config { .. } => Fault::User,
            Error::Io { .. } | Error::External { .. } | Error::Rejected { .. } | Error::Broker(_) => Fault::External,
            Error::Engine(_) => Fault::User,
            Error::Internal(_) => Fault::Internal,
        }
    }

    /// Whether the same call may succeed if retried after a backoff.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::InvalidInput
            ),
            Error::External { retriable, .. } => *retriable,
            Error::Broker(e) => e.is_retriable(),
            Error::Engine(e) => e.is_retriable(),
            _ => false,
        }
    }
}

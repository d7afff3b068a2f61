//! Brook's streams engine: today the record formats it will decode topics with; SQL over topics
//! (DataFusion) and the streams runtime arrive with later issues.

pub mod format;

/// Errors of the engine crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A format name is not one the engine knows.
    #[error("unknown format {name:?}: expected one of {expected}")]
    UnknownFormat {
        /// The name given.
        name: String,
        /// The names accepted.
        expected: String,
    },
}

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

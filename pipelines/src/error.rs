//! The pipelines crate's one error type, so that callers can `?` a naming or a validation failure.

use crate::diagnostic::Diagnostics;

/// Errors of the pipelines crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pipeline or step name breaks the naming rules.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A pipeline file is invalid; each diagnostic points at a line and column of the file.
    #[error("{0}")]
    Invalid(#[from] Diagnostics),
}

/// Result with the pipelines' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

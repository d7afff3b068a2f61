//! Brook's streams engine: topics as SQL tables over DataFusion and Arrow, record formats,
//! and continuous queries that run inside `brook serve` or against any Kafka cluster.

pub mod dlq;
pub mod error;
pub mod format;

pub use error::{Error, Result};

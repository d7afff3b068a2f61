//! Brook's streams engine: topics as SQL tables over DataFusion and Arrow, record formats,
//! and continuous queries that run inside `brook serve` or against any Kafka cluster.

pub mod catalog;
pub mod dlq;
pub mod error;
pub mod format;
pub mod jobs;
pub mod sql;
pub mod table;

pub use error::{Error, Result};

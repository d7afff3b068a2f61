//! Durable per-partition storage: a segmented log of verbatim v2 record batches.

pub mod batch;
mod batch_filter;
pub mod checkpoint;
mod cleaner;
#[cfg(test)]
mod cleaner_tests;
#[cfg(test)]
mod cleaner_txn_tests;
pub mod codec;
pub mod config;
mod flush;
pub mod index;
pub mod partition;
pub mod producer_state;
mod recovery;
mod retention;
pub mod segment;
pub mod signal;
pub mod time_index;
mod timestamp;
pub mod txn;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;

pub use cleaner::CompactStats;
pub use config::LogConfig;
pub use partition::{AppendInfo, AppendOptions, Isolation, PartitionLog, ProducerSnapshot, VisibleOffsets};
pub use signal::AppendSignal;
pub use timestamp::MAX_DECODED_BATCH_BYTES;

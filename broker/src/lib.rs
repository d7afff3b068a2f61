//! Brook's Kafka-compatible broker: the wire protocol server, the log storage, the coordinators,
//! and a Kafka client that speaks the same protocol to any cluster.

pub mod access;
pub mod api;
pub mod broker;
pub mod client;
pub mod config;
pub mod error;
pub mod fetch_session;
pub mod group;
pub mod log;
pub mod server;
pub mod topics;
pub mod txn;

pub use broker::Broker;
pub use config::BrokerConfig;
pub use error::{Error, Result};

//! Sink connectors, one folder each.
pub mod file;
pub mod http;
pub mod postgres;
pub mod sql_types;
pub mod sqlite;
pub mod stdout;

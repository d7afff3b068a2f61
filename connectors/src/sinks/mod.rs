//! Sink connectors, one folder each.
pub mod sql_types;
pub mod sqlite;

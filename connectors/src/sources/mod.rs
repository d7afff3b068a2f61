//! Source connectors, one folder each.
pub mod file;
pub mod generator;
pub mod http;
pub mod stdin;

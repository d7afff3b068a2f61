//! Brook's connectors: Connect-style sources and sinks that move data between topics and files,
//! databases and HTTP. A connector is one folder under `sources/` or `sinks/` and one line in
//! [`registry::CONNECTORS`]; the runners in `runtime/` move records between connectors and topics,
//! commit positions and offsets, and send what cannot be processed to dead-letter topics.

pub mod compliance;
pub mod dates;
pub mod error;
pub mod parse;
pub mod registry;
pub mod runtime;
pub mod sink;
pub mod sinks;
pub mod source;
pub mod sources;

pub use error::{Error, Fault, Result};
pub use registry::{build_sink, build_source, find, Context, Direction, CONNECTORS};
pub use sink::{Sink, SinkBatch};
pub use source::{Position, Source, SourceItem, SourceRecord};

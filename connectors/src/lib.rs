//! Brook's connectors: Connect-style sources and sinks that move data between topics and files,
//! databases and HTTP. Today only the registry of connector types exists; each connector arrives
//! as one folder with one line in [`CONNECTORS`].

/// Errors of the connectors crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pipeline or REST call named a connector type that is not registered.
    #[error("unknown connector type {name:?}: known types are {known}")]
    UnknownType {
        /// The type given.
        name: String,
        /// The registered types.
        known: String,
    },
}

/// Result with the connectors' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether a connector reads into topics or writes out of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Reads from the outside world into a topic.
    Source,
    /// Writes from a topic to the outside world.
    Sink,
}

/// One registered connector type.
#[derive(Debug)]
pub struct ConnectorType {
    /// The `type:` users write.
    pub name: &'static str,
    /// Source or sink.
    pub direction: Direction,
}

/// The one table of connector types, alphabetical; empty until the first connector lands.
pub const CONNECTORS: &[ConnectorType] = &[];

/// Looks a connector type up by name.
pub fn find(name: &str) -> Result<&'static ConnectorType> {
    CONNECTORS
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| Error::UnknownType {
            name: name.to_string(),
            known: if CONNECTORS.is_empty() {
                "none yet".to_string()
            } else {
                CONNECTORS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
            },
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_types_are_refused_by_name() {
        let err = super::find("file").unwrap_err().to_string();
        assert!(err.contains("\"file\""), "{err}");
    }
}

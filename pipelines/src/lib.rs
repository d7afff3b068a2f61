//! Brook's declarative pipelines: YAML files wiring sources, transforms and sinks. Today only the
//! naming rules shared by pipelines and the topics they derive exist; the file model arrives
//! with the log-ingestion issue.

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
}

/// Result with the pipelines' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest pipeline or step name; a derived topic `<pipeline>.<step>` stays under Kafka's 249.
pub const MAX_NAME_CHARS: usize = 120;

/// Checks a pipeline or step name: it becomes part of a topic name, so it follows topic rules
/// minus '.', which separates pipeline from step.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("a name cannot be empty");
    }
    if name.len() > MAX_NAME_CHARS {
        return bad("a name has at most 120 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad("use ASCII letters, digits, '_' and '-'");
    }
    Ok(())
}

/// The topic a pipeline step writes to when the file does not name one.
pub fn derived_topic(pipeline: &str, step: &str) -> Result<String> {
    validate_name(pipeline)?;
    validate_name(step)?;
    Ok(format!("{pipeline}.{step}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_topics_join_valid_names() {
        assert_eq!(derived_topic("web-errors", "access").unwrap(), "web-errors.access");
        assert!(derived_topic("web errors", "access").is_err());
        assert!(derived_topic("a", "b.c").is_err());
        assert!(derived_topic(&"x".repeat(121), "a").is_err());
    }
}

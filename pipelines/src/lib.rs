//! Brook's declarative pipelines: YAML files wiring sources, transforms and sinks. A file is
//! parsed with positions (`yaml`), validated with every problem reported at its line and column
//! (`validate`, `transforms`, `cases`, `sql`, `steps`), and becomes the [`Pipeline`] model
//! (`model`) that the runtime runs and `explain` describes.

mod cases;
pub mod diagnostic;
pub mod error;
pub mod explain;
pub mod folder;
pub mod load;
pub mod model;
pub mod run;
pub mod sql;
pub mod steps;
pub mod testing;
mod transforms;
pub mod validate;
pub mod yaml;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use error::{Error, Result};
pub use explain::{explain_mermaid, explain_text};
pub use load::{load, load_str};
pub use model::{ErrorPolicy, Location, Pipeline, SinkSpec, SourceSpec, TestCase, TransformSpec};

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

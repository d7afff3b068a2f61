//! `brook pipeline explain`: what a validated pipeline will do, as text for a terminal and as a
//! Mermaid flowchart for documentation.

use std::fmt::Write;

use crate::model::{ErrorPolicy, Pipeline};

/// The pipeline step by step: each source with its connector and topic, each transform with its
/// SQL and topics, each sink with its input, and where errors go.
pub fn explain_text(p: &Pipeline) -> String {
    let mut out = String::new();
    let _ = write!(out, "pipeline {}", p.name);
    if let Some(description) = &p.description {
        let _ = write!(out, ": {description}");
    }
    out.push('\n');

    out.push_str("\nsources\n");
    for s in &p.sources {
        let _ = writeln!(
            out,
            "  {} ({}) -> topic {} ({} partition{})",
            s.name,
            s.connector,
            s.topic,
            s.partitions,
            if s.partitions == 1 { "" } else { "s" }
        );
        if let Some(schema) = &s.schema {
            let columns: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect();
            let _ = writeln!(out, "    columns: {}", columns.join(", "));
        }
        let _ = writeln!(out, "    {}", policy(&s.on_error));
    }

    if !p.transforms.is_empty() {
        out.push_str("\ntransforms\n");
    }
    for t in &p.transforms {
        let _ = writeln!(
            out,
            "  {}: {} (topic {}) -> topic {} ({} partition{})",
            t.name,
            t.input,
            t.input_topic,
            t.topic,
            t.partitions,
            if t.partitions == 1 { "" } else { "s" }
        );
        for line in t.sql.trim_end().lines() {
            let _ = writeln!(out, "    | {line}");
        }
        let _ = writeln!(out, "    {}", policy(&t.on_error));
    }

    out.push_str("\nsinks\n");
    for s in &p.sinks {
        let _ = writeln!(
            out,
            "  {} ({}) <- {} (topic {})",
            s.name, s.connector, s.input, s.input_topic
        );
        let _ = writeln!(out, "    {}", policy(&s.on_error));
    }

    if !p.tests.is_empty() {
        let _ = writeln!(out, "\ntests: {}", p.tests.len());
    }
    out
}

fn policy(p: &ErrorPolicy) -> String {
    match p {
        ErrorPolicy::DeadLetter { topic } => format!("on error: dead letters to topic {topic}"),
        ErrorPolicy::Fail => "on error: fail".to_string(),
    }
}

/// The pipeline as a Mermaid flowchart (`graph LR`): sources as stadiums, transforms as
/// rectangles, sinks as cylinders, dead-letter topics as subroutines; edges carry topic names.
/// Node ids are generated (`source0`, `transform0`...), so any step name is safe.
pub fn explain_mermaid(p: &Pipeline) -> String {
    let mut out = String::from("graph LR\n");
    let id_of = |name: &str| -> Option<String> {
        let source = p
            .sources
            .iter()
            .position(|s| s.name == name)
            .map(|i| format!("source{i}"));
        source.or_else(|| {
            p.transforms
                .iter()
                .position(|t| t.name == name)
                .map(|i| format!("transform{i}"))
        })
    };
    let mut dead_letters = 0;
    let mut dead_letter = |out: &mut String, from: &str, policy: &ErrorPolicy| {
        if let ErrorPolicy::DeadLetter { topic } = policy {
            let _ = writeln!(
                out,
                "  {from} -.->|dead letters| dlq{dead_letters}[[\"{}\"]]",
                label(topic)
            );
            dead_letters += 1;
        }
    };
    for (i, s) in p.sources.iter().enumerate() {
        let _ = writeln!(out, "  source{i}([\"{}<br/>{}\"])", label(&s.name), label(&s.connector));
        dead_letter(&mut out, &format!("source{i}"), &s.on_error);
    }
    for (i, t) in p.transforms.iter().enumerate() {
        let _ = writeln!(out, "  transform{i}[\"{}\"]", label(&t.name));
        if let Some(from) = id_of(&t.input) {
            let _ = writeln!(out, "  {from} -->|\"{}\"| transform{i}", label(&t.input_topic));
        }
        dead_letter(&mut out, &format!("transform{i}"), &t.on_error);
    }
    for (i, s) in p.sinks.iter().enumerate() {
        let _ = writeln!(out, "  sink{i}[(\"{}<br/>{}\")]", label(&s.name), label(&s.connector));
        if let Some(from) = id_of(&s.input) {
            let _ = writeln!(out, "  {from} -->|\"{}\"| sink{i}", label(&s.input_topic));
        }
        dead_letter(&mut out, &format!("sink{i}"), &s.on_error);
    }
    out
}

/// Text for inside a quoted Mermaid label: quotes and angle brackets as entities.
fn label(text: &str) -> String {
    text.replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;")
}

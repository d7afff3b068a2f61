//! The record formats a topic's values can be read as, named as users write them in SQL and
//! pipeline files (`format = 'json'`).

use crate::{Error, Result};

/// How a topic's record values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per record.
    Json,
    /// One CSV row per record.
    Csv,
    /// Avro with a given schema.
    Avro,
    /// The value as one UTF-8 line.
    Lines,
    /// The value as opaque bytes.
    Bytes,
}

impl Format {
    /// Every format, in the order they are documented.
    pub const ALL: [Format; 5] = [Format::Json, Format::Csv, Format::Avro, Format::Lines, Format::Bytes];

    /// The name users write.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Avro => "avro",
            Format::Lines => "lines",
            Format::Bytes => "bytes",
        }
    }

    /// Parses a format name, case-insensitively.
    pub fn parse(name: &str) -> Result<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| Error::UnknownFormat {
                name: name.to_string(),
                expected: Format::ALL.map(Format::name).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for f in Format::ALL {
            assert_eq!(Format::parse(&f.name().to_uppercase()).unwrap(), f);
        }
        let err = Format::parse("xml").unwrap_err().to_string();
        assert!(err.contains("xml") && err.contains("json, csv"), "{err}");
    }
}

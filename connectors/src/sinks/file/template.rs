//! The file sink's path template: placeholders (`{topic}`, `{partition}`, `{date}`, `{hour}`)
//! resolved per row, and the names derived from it: final and in-progress file names, the state
//! file, and the glob that finds in-progress files left by a crash.

use std::path::{Path, PathBuf};

use datafusion::arrow::temporal_conversions::timestamp_ms_to_datetime;

use super::NAME;
use crate::error::{Error, Result};

/// The placeholders a path may hold.
const PLACEHOLDERS: &str = "{topic}, {partition}, {date}, {hour}";

/// Digits of the sequence number in final file names, so that names sort by sequence.
const SEQ_DIGITS: usize = 10;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Text kept as is.
    Literal(String),
    /// The input topic.
    Topic,
    /// The input partition.
    Partition,
    /// The record's UTC date, `YYYY-MM-DD`.
    Date,
    /// The record's UTC hour, `00`-`23`.
    Hour,
}

/// A parsed, resolved (absolute or base-relative) path with placeholders.
#[derive(Debug, Clone)]
pub(super) struct PathTemplate {
    /// The path as given, after resolving against the base directory.
    raw: String,
    /// The directory part (everything before the last `/`), parsed.
    dir: Vec<Part>,
    /// The file name's stem: everything before the extension, parsed.
    stem: Vec<Part>,
    /// The extension (after the file name's last `.`), when it holds no placeholder.
    ext: Option<String>,
    /// The longest directory prefix without placeholders: the state file lives there.
    base_dir: PathBuf,
}

/// Parses `text` into parts, refusing unknown or unclosed placeholders.
fn parse_parts(text: &str) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Literal(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| Error::config(NAME, format!("path {text:?} has an unclosed {{")))?;
        let part = match &rest[open + 1..open + close] {
            "topic" => Part::Topic,
            "partition" => Part::Partition,
            "date" => Part::Date,
            "hour" => Part::Hour,
            other => {
                return Err(Error::config(
                    NAME,
                    format!("path has an unknown placeholder {{{other}}}: the known ones are {PLACEHOLDERS}"),
                ))
            }
        };
        parts.push(part);
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_string()));
    }
    Ok(parts)
}

/// Whether `parts` hold a placeholder.
fn has_placeholder(parts: &[Part]) -> bool {
    parts.iter().any(|p| !matches!(p, Part::Literal(_)))
}

/// The values placeholders take for one row.
pub(super) struct RowValues<'a> {
    /// The input topic.
    pub(super) topic: &'a str,
    /// The input partition.
    pub(super) partition: i32,
    /// The record timestamp in ms since the epoch.
    pub(super) timestamp_ms: i64,
}

/// Writes `parts` resolved for `row` into `out`.
fn resolve_into(parts: &[Part], row: &RowValues<'_>, out: &mut String) {
    let when = || timestamp_ms_to_datetime(row.timestamp_ms);
    for part in parts {
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::Topic => out.push_str(row.topic),
            Part::Partition => out.push_str(&row.partition.to_string()),
            Part::Date => {
                out.push_str(&when().map_or_else(|| "invalid-date".into(), |t| t.format("%Y-%m-%d").to_string()))
            }
            Part::Hour => out.push_str(&when().map_or_else(|| "invalid-hour".into(), |t| t.format("%H").to_string())),
        }
    }
}

/// Writes `parts` as a glob pattern into `out`: literals escaped, placeholders as `*`.
fn glob_into(parts: &[Part], out: &mut String) {
    for part in parts {
        match part {
            Part::Literal(text) => out.push_str(&glob::Pattern::escape(text)),
            _ => out.push('*'),
        }
    }
}

impl PathTemplate {
    /// Parses a resolved path.
    pub(super) fn parse(path: &Path) -> Result<PathTemplate> {
        let raw = path
            .to_str()
            .ok_or_else(|| Error::config(NAME, format!("path {} is not valid UTF-8", path.display())))?
            .to_string();
        let (dir_text, name) = match raw.rfind('/') {
            Some(i) => (&raw[..i], &raw[i + 1..]),
            None => ("", raw.as_str()),
        };
        if name.is_empty() || name == "." || name == ".." {
            return Err(Error::config(NAME, format!("path {raw:?} does not name a file")));
        }
        let (stem_text, ext) = match name.rfind('.') {
            Some(i) if i > 0 && !name[i + 1..].contains('{') && !name[i + 1..].contains('}') => {
                (&name[..i], Some(name[i + 1..].to_string()))
            }
            _ => (name, None),
        };
        let dir = parse_parts(dir_text)?;
        let stem = parse_parts(stem_text)?;
        let mut base_dir = PathBuf::new();
        if dir_text.is_empty() && raw.starts_with('/') {
            base_dir.push("/");
        }
        for component in Path::new(dir_text).components() {
            let text = component.as_os_str().to_string_lossy();
            if text.contains('{') {
                break;
            }
            base_dir.push(component);
        }
        if base_dir.as_os_str().is_empty() {
            base_dir.push(".");
        }
        Ok(PathTemplate {
            raw: raw.clone(),
            dir,
            stem,
            ext,
            base_dir,
        })
    }

    /// Whether any placeholder appears.
    pub(super) fn has_placeholders(&self) -> bool {
        has_placeholder(&self.dir) || has_placeholder(&self.stem)
    }

    /// The path as written (for templates without placeholders: the file itself).
    pub(super) fn literal(&self) -> &str {
        &self.raw
    }

    /// The directory holding the state file: the part of the path before any placeholder.
    pub(super) fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The rolling mode's state file: `<base dir>/.<template file name>.brook-rolling-state`.
    pub(super) fn state_path(&self) -> PathBuf {
        self.base_dir.join(format!(".{}.brook-rolling-state", self.file_name()))
    }

    /// The template's file name, placeholders as written.
    pub(super) fn file_name(&self) -> &str {
        self.raw.rsplit('/').next().unwrap_or(&self.raw)
    }

    /// Where the row's file goes, as (directory, stem): the key files are kept open by.
    pub(super) fn target(&self, row: &RowValues<'_>) -> (String, String) {
        let mut dir = String::new();
        resolve_into(&self.dir, row, &mut dir);
        let mut stem = String::new();
        resolve_into(&self.stem, row, &mut stem);
        (dir, stem)
    }

    /// The final and in-progress paths of file number `seq` of target `(dir, stem)`:
    /// `<dir>/<stem>-<seq>.<ext>` and `<dir>/.<stem>-<seq>.<ext>.inprogress`.
    pub(super) fn file_paths(&self, target: &(String, String), seq: u64) -> (PathBuf, PathBuf) {
        let (dir, stem) = target;
        let name = match &self.ext {
            Some(ext) => format!("{stem}-{seq:0SEQ_DIGITS$}.{ext}"),
            None => format!("{stem}-{seq:0SEQ_DIGITS$}"),
        };
        let dir = if dir.is_empty() && !self.raw.starts_with('/') {
            PathBuf::from(".")
        } else if dir.is_empty() {
            PathBuf::from("/")
        } else {
            PathBuf::from(dir)
        };
        (dir.join(&name), dir.join(format!(".{name}.inprogress")))
    }

    /// A glob matching every in-progress file this template can produce.
    pub(super) fn inprogress_glob(&self) -> String {
        let mut out = String::new();
        glob_into(&self.dir, &mut out);
        if out.is_empty() && !self.raw.starts_with('/') {
            out.push('.');
        }
        out.push_str("/.");
        glob_into(&self.stem, &mut out);
        out.push('-');
        out.push_str(&"[0-9]".repeat(SEQ_DIGITS));
        if let Some(ext) = &self.ext {
            out.push('.');
            out.push_str(&glob::Pattern::escape(ext));
        }
        out.push_str(".inprogress");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(topic: &str, partition: i32, timestamp_ms: i64) -> RowValues<'_> {
        RowValues {
            topic,
            partition,
            timestamp_ms,
        }
    }

    #[test]
    fn placeholders_resolve_per_row() {
        let t = PathTemplate::parse(Path::new("/data/{topic}/{date}/h{hour}-p{partition}.jsonl")).unwrap();
        assert!(t.has_placeholders());
        assert_eq!(t.base_dir(), Path::new("/data"));
        // 2023-11-14T22:13:20Z.
        let target = t.target(&row("clicks", 3, 1_700_000_000_000));
        assert_eq!(target, ("/data/clicks/2023-11-14".to_string(), "h22-p3".to_string()));
        let (done, inprogress) = t.file_paths(&target, 7);
        assert_eq!(done, Path::new("/data/clicks/2023-11-14/h22-p3-0000000007.jsonl"));
        assert_eq!(
            inprogress,
            Path::new("/data/clicks/2023-11-14/.h22-p3-0000000007.jsonl.inprogress")
        );
        let pattern = glob::Pattern::new(&t.inprogress_glob()).unwrap();
        assert!(pattern.matches_path(&inprogress));
        assert!(!pattern.matches_path(&done));
        assert_eq!(
            t.state_path(),
            Path::new("/data/.h{hour}-p{partition}.jsonl.brook-rolling-state")
        );
    }

    #[test]
    fn literal_paths_have_no_placeholders_and_glob_only_their_own_files() {
        let t = PathTemplate::parse(Path::new("/out/[x] events.csv")).unwrap();
        assert!(!t.has_placeholders());
        let (_, inprogress) = t.file_paths(&t.target(&row("t", 0, 0)), 1);
        let pattern = glob::Pattern::new(&t.inprogress_glob()).unwrap();
        assert!(pattern.matches_path(&inprogress));
        assert!(!pattern.matches_path(Path::new("/out/.other-0000000001.csv.inprogress")));
    }

    #[test]
    fn unknown_and_unclosed_placeholders_are_refused() {
        let err = PathTemplate::parse(Path::new("/out/{day}.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("{day}") && err.contains("{topic}"), "{err}");
        let err = PathTemplate::parse(Path::new("/out/{topic.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unclosed"), "{err}");
        assert!(PathTemplate::parse(Path::new("/out/")).is_err());
    }
}

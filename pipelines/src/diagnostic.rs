//! What validation tells a user about a pipeline file: every problem at once, each pointing at a
//! line and column, rendered like a compiler's errors with the offending line and a caret.

use std::fmt;
use std::sync::Arc;

/// One problem found in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it.
    pub file: String,
    /// The 1-based line of the offending key or value; 0 when the problem has no position (the
    /// file could not be read).
    pub line: usize,
    /// The 1-based column, counted in characters; 0 when the problem has no position.
    pub column: usize,
    /// What is wrong, in prose.
    pub message: String,
    /// How to fix it, when there is something to suggest.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// `file:line:column: error: message`, without the hint.
    pub fn headline(&self) -> String {
        if self.line == 0 {
            format!("{}: error: {}", self.file, self.message)
        } else {
            format!("{}:{}:{}: error: {}", self.file, self.line, self.column, self.message)
        }
    }

    /// The diagnostic with the offending line of `source` and a caret under the column when the
    /// line exists, then the hint.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = self.headline();
        let line_text = source
            .filter(|_| self.line > 0)
            .and_then(|s| s.lines().nth(self.line - 1));
        if let Some(text) = line_text {
            let number = self.line.to_string();
            let pad = " ".repeat(number.len());
            let text = text.trim_end();
            let before = self.column.saturating_sub(1);
            let width = token_width(text, before);
            let indent: String = text
                .chars()
                .take(before)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!(
                "\n{pad} |\n{number} | {text}\n{pad} | {indent}{}",
                "^".repeat(width)
            ));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("\n  = hint: {hint}"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(None))
    }
}

/// How many characters a caret underlines at character `start` of `line`: the token there
/// (up to a space, a ':' or a ','), at least one.
fn token_width(line: &str, start: usize) -> usize {
    let rest = line.chars().skip(start);
    let mut width = 0;
    let mut quote = None;
    for c in rest {
        match quote {
            Some(q) if c == q => {
                width += 1;
                break;
            }
            Some(_) => {}
            None if width == 0 && (c == '"' || c == '\'') => quote = Some(c),
            None if c.is_whitespace() || c == ':' || c == ',' || c == ']' || c == '}' => break,
            None => {}
        }
        width += 1;
    }
    width.max(1)
}

/// Every problem found in one pipeline file, in the order of the file.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    /// The problems, sorted by line and column.
    pub items: Vec<Diagnostic>,
    /// The file's text, to show the offending lines; None when it could not be read.
    pub source: Option<Arc<str>>,
}

impl Diagnostics {
    /// An empty list for a file with `source` as text.
    pub fn new(source: Option<Arc<str>>) -> Diagnostics {
        Diagnostics {
            items: Vec::new(),
            source,
        }
    }

    /// Whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Sorts the problems by position, keeping the order of those at the same place, and drops
    /// exact repeats.
    pub fn sort(&mut self) {
        self.items.sort_by_key(|d| (d.line, d.column));
        self.items.dedup();
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            f.write_str(&d.render(self.source.as_deref()))?;
        }
        if self.items.len() > 1 {
            write!(f, "\n\n{} errors", self.items.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The candidate closest to `word` by edit distance, when it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A hint for an unknown `word` among `candidates`: the closest one, else the whole list.
pub fn suggest<'a>(word: &str, what: &str, candidates: impl IntoIterator<Item = &'a str> + Clone) -> Option<String> {
    if let Some(best) = closest(word, candidates.clone()) {
        return Some(format!("did you mean \"{best}\"?"));
    }
    let all: Vec<&str> = candidates.into_iter().collect();
    if all.is_empty() {
        None
    } else {
        Some(format!("known {what}: {}", all.join(", ")))
    }
}

/// The Levenshtein distance between `a` and `b`, in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("path", "path"), 0);
        assert_eq!(edit_distance("pathx", "path"), 1);
        assert_eq!(edit_distance("tpye", "type"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn closest_keys_are_suggested_and_far_ones_listed() {
        assert_eq!(closest("pathx", ["path", "format"]), Some("path"));
        assert_eq!(closest("zzzzzzzz", ["path", "format"]), None);
        assert_eq!(
            suggest("zzzzzz", "keys", ["path", "format"]).as_deref(),
            Some("known keys: path, format")
        );
    }

    #[test]
    fn a_diagnostic_shows_its_line_with_a_caret_and_its_hint() {
        let d = Diagnostic {
            file: "p.yaml".into(),
            line: 2,
            column: 3,
            message: "unknown key \"pathx\"".into(),
            hint: Some("did you mean \"path\"?".into()),
        };
        let text = d.render(Some("a:\n  pathx: 1\n"));
        assert_eq!(
            text,
            "p.yaml:2:3: error: unknown key \"pathx\"\n  |\n2 |   pathx: 1\n  |   ^^^^^\n  = hint: did you mean \"path\"?"
        );
    }
}

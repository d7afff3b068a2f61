//! Pipeline files as test data: every file in `tests/invalid/` states the diagnostics it must
//! produce in its leading comments, and every file in `tests/valid/` must load (and match its
//! golden `explain` outputs when they exist; set BROOK_BLESS=1 to write them).
//!
//! In an invalid file, each `# expect: LINE:COLUMN: text` line is one diagnostic, in order:
//! its position must match and its message contain `text`; a `# hint: text` line right after
//! says the hint must contain `text`. The file must produce exactly these diagnostics.

use std::path::{Path, PathBuf};

use brook_pipelines::{explain_mermaid, explain_text, load, Diagnostics};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the test folder exists")
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no files in {}", dir.display());
    files
}

struct Expected {
    line: usize,
    column: usize,
    text: String,
    hint: Option<String>,
}

fn expectations(path: &Path) -> Vec<Expected> {
    let text = std::fs::read_to_string(path).expect("readable");
    let mut expected: Vec<Expected> = Vec::new();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(rest) = line.strip_prefix("# expect: ") {
            let mut parts = rest.splitn(3, ':');
            let mut number = || {
                parts
                    .next()
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or_else(|| panic!("{}: bad expect line {line:?}", path.display()))
            };
            let (line_no, column) = (number(), number());
            let text = parts.next().unwrap_or_default().trim().to_string();
            expected.push(Expected {
                line: line_no,
                column,
                text,
                hint: None,
            });
        } else if let Some(hint) = line.strip_prefix("# hint: ") {
            let last = expected.last_mut().expect("a hint follows an expect line");
            last.hint = Some(hint.trim().to_string());
        }
    }
    assert!(!expected.is_empty(), "{}: no # expect: line", path.display());
    expected
}

fn check_invalid(path: &Path) -> Result<(), String> {
    let expected = expectations(path);
    let diagnostics: Diagnostics = match load(path) {
        Ok(_) => return Err("loaded, but it should not".into()),
        Err(d) => d,
    };
    let got = &diagnostics.items;
    let mismatch = |why: String| Err(format!("{why}\n--- diagnostics:\n{diagnostics}"));
    if got.len() != expected.len() {
        return mismatch(format!("{} diagnostics, expected {}", got.len(), expected.len()));
    }
    for (d, e) in got.iter().zip(&expected) {
        if (d.line, d.column) != (e.line, e.column) || !d.message.contains(&e.text) {
            return mismatch(format!(
                "expected {}:{}: {}, got {}:{}: {}",
                e.line, e.column, e.text, d.line, d.column, d.message
            ));
        }
        if let Some(hint) = &e.hint {
            if !d.hint.as_deref().is_some_and(|h| h.contains(hint.as_str())) {
                return mismatch(format!("expected the hint {hint:?}, got {:?}", d.hint));
            }
        }
    }
    Ok(())
}

#[test]
fn invalid_files_report_what_their_comments_expect() {
    let failures: Vec<String> = files("invalid")
        .iter()
        .filter_map(|path| check_invalid(path).err().map(|e| format!("{}: {e}", path.display())))
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

fn golden(path: &Path, suffix: &str, actual: &str) -> Result<(), String> {
    let golden = path.with_extension(suffix);
    if std::env::var("BROOK_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&golden, actual).map_err(|e| e.to_string())?;
        return Ok(());
    }
    match std::fs::read_to_string(&golden) {
        Ok(expected) if expected == actual => Ok(()),
        Ok(expected) => Err(format!(
            "{} differs:\n--- expected\n{expected}\n--- actual\n{actual}",
            golden.display()
        )),
        Err(_) => Ok(()),
    }
}

#[test]
fn valid_files_load_and_explain_as_their_golden_files_say() {
    let mut failures = Vec::new();
    for path in files("valid") {
        match load(&path) {
            Ok(p) => {
                for (suffix, text) in [("explain.txt", explain_text(&p)), ("mmd", explain_mermaid(&p))] {
                    if let Err(e) = golden(&path, suffix, &text) {
                        failures.push(e);
                    }
                }
            }
            Err(d) => failures.push(format!("{}:\n{d}", path.display())),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

//! Loading a pipeline file: read, parse with positions, validate, and turn every problem into a
//! diagnostic naming the file, line and column.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::Pipeline;
use crate::validate::{validate, Problem};

/// The largest pipeline file read, a bound on what validation holds in memory.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Loads and validates the pipeline file at `path`; relative paths in it resolve against the
/// file's directory.
pub fn load(path: &Path) -> Result<Pipeline, Diagnostics> {
    let file = path.display().to_string();
    let fail = |message: String| {
        let mut diagnostics = Diagnostics::new(None);
        diagnostics.items.push(Diagnostic {
            file: file.clone(),
            line: 0,
            column: 0,
            message,
            hint: None,
        });
        diagnostics
    };
    let size = std::fs::metadata(path)
        .map_err(|e| fail(format!("cannot read the file: {e}")))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(fail(format!(
            "the file has {size} bytes, more than the {MAX_FILE_BYTES} a pipeline file may have"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base_dir = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
    load_at(&text, &file, path.to_path_buf(), &base_dir)
}

/// Validates pipeline `text` read from `file` (a name for messages); relative paths in it
/// resolve against `base_dir`.
pub fn load_str(text: &str, file: &str, base_dir: &Path) -> Result<Pipeline, Diagnostics> {
    load_at(text, file, PathBuf::from(file), base_dir)
}

fn load_at(text: &str, file: &str, path: PathBuf, base_dir: &Path) -> Result<Pipeline, Diagnostics> {
    let source: Arc<str> = Arc::from(text);
    let problems = match crate::yaml::parse(text) {
        Ok(root) => match validate(&root, text, &path, base_dir) {
            Ok(pipeline) => return Ok(pipeline),
            Err(problems) => problems,
        },
        Err((at, message)) => vec![Problem {
            at: at.location(),
            message,
            hint: None,
        }],
    };
    let mut diagnostics = Diagnostics::new(Some(source));
    diagnostics.items = problems
        .into_iter()
        .map(|p| Diagnostic {
            file: file.to_string(),
            line: p.at.line,
            column: p.at.column,
            message: p.message,
            hint: p.hint,
        })
        .collect();
    diagnostics.sort();
    Err(diagnostics)
}

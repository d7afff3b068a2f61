//! The file sink's append mode: one growing JSON-lines or CSV file that `tail -f` can follow.
//!
//! Each write appends at the committed length, fsyncs, then atomically replaces the state file
//! beside the data file (`.<name>.brook-state`: the committed length, the input offsets and the
//! CSV header's columns). The state is the commit point: `open` truncates the file to the
//! committed length, dropping a torn or uncommitted tail, and returns the committed offsets.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::encode::{encode_text, fresh_rows, offsets_after};
use super::state::{self, offsets_vec};
use super::{FileFormat, OwnedBatch, NAME};
use crate::error::{Error, Result};

/// What the state file beside the data file holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendState {
    /// The data file's length covering every committed write.
    committed_bytes: u64,
    /// The input offsets covered, as (partition, next offset).
    offsets: Vec<(i32, i64)>,
    /// The columns of the CSV header, once written.
    #[serde(default)]
    columns: Option<Vec<String>>,
}

/// Appends rows to one file, committing each write.
pub(super) struct AppendWriter {
    /// The data file.
    path: PathBuf,
    /// The state file beside it.
    state_path: PathBuf,
    /// json or csv.
    format: FileFormat,
    /// The open data file.
    file: Option<File>,
    /// The committed length.
    committed_bytes: u64,
    /// The committed input offsets.
    offsets: BTreeMap<i32, i64>,
    /// The CSV header's columns, once written.
    columns: Option<Vec<String>>,
    /// Whether a failed write may have left bytes past the committed length.
    dirty: bool,
}

impl AppendWriter {
    /// A writer of `path`; nothing is touched before `open`.
    pub(super) fn new(path: PathBuf, format: FileFormat) -> AppendWriter {
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let state_path = path.with_file_name(format!(".{name}.brook-state"));
        AppendWriter {
            path,
            state_path,
            format,
            file: None,
            committed_bytes: 0,
            offsets: BTreeMap::new(),
            columns: None,
            dirty: false,
        }
    }

    /// The state as it would be stored.
    fn state(&self, committed_bytes: u64, offsets: &BTreeMap<i32, i64>, columns: &Option<Vec<String>>) -> AppendState {
        AppendState {
            committed_bytes,
            offsets: offsets_vec(offsets),
            columns: columns.clone(),
        }
    }

    /// Opens (or creates) the data file, drops any uncommitted tail and returns the committed
    /// offsets.
    pub(super) fn open(&mut self) -> Result<Vec<(i32, i64)>> {
        let dir = self
            .path
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        state::create_dirs(&dir)?;
        let name = self.path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let rolling_state = dir.join(format!(".{name}.brook-rolling-state"));
        if rolling_state.exists() {
            return Err(Error::config(
                NAME,
                format!(
                    "{} was written in rolling mode (see {}); use a new path for append mode",
                    self.path.display(),
                    rolling_state.display()
                ),
            ));
        }
        let stored: Option<AppendState> = state::read(&self.state_path)?;
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(|e| Error::io(format!("opening {}", self.path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("reading the length of {}", self.path.display()), e))?
            .len();
        match stored {
            Some(stored) => {
                if len < stored.committed_bytes {
                    return Err(Error::External {
                        system: NAME,
                        message: format!(
                            "{} holds {len} bytes but {} were committed: it was truncated or replaced outside \
                             Brook; move it away and delete {} to start over",
                            self.path.display(),
                            stored.committed_bytes,
                            self.state_path.display()
                        ),
                        retriable: false,
                    });
                }
                if len > stored.committed_bytes {
                    tracing::info!(path = %self.path.display(), committed = stored.committed_bytes, dropped = len - stored.committed_bytes, "dropping an uncommitted tail");
                    file.set_len(stored.committed_bytes)
                        .and_then(|()| file.sync_all())
                        .map_err(|e| Error::io(format!("truncating {}", self.path.display()), e))?;
                }
                self.committed_bytes = stored.committed_bytes;
                self.offsets = stored.offsets.into_iter().collect();
                self.columns = stored.columns;
            }
            None => {
                if self.format == FileFormat::Csv && len > 0 {
                    return Err(Error::config(
                        NAME,
                        format!(
                            "{} already holds data Brook did not write, and its CSV header is unknown; move it away \
                             or choose another path",
                            self.path.display()
                        ),
                    ));
                }
                // Data already there is kept: rows are appended after it. The state is written
                // now, so that a crash during the first write drops only what that write added.
                self.committed_bytes = len;
                self.offsets.clear();
                self.columns = None;
                state::write(&self.state_path, &self.state(len, &self.offsets, &None))?;
            }
        }
        tracing::info!(path = %self.path.display(), committed_bytes = self.committed_bytes, "file sink opened in append mode");
        self.file = Some(file);
        self.dirty = false;
        Ok(offsets_vec(&self.offsets))
    }

    /// Appends a batch and commits it.
    pub(super) fn write(&mut self, batch: &OwnedBatch) -> Result<()> {
        let fresh = fresh_rows(&batch.rows, &batch.meta, &self.offsets)?;
        let offsets = offsets_after(&self.offsets, &fresh.meta, &batch.next_offsets);
        let mut columns = self.columns.clone();
        let encoded = if fresh.rows.num_rows() == 0 {
            Vec::new()
        } else {
            match self.format {
                FileFormat::Csv => {
                    let (rows, header) = csv_rows(&fresh.rows, &fresh.index, &mut columns)?;
                    encode_text(self.format, &rows, header)?
                }
                _ => encode_text(self.format, &fresh.rows, false)?,
            }
        };
        if encoded.is_empty() && offsets == self.offsets {
            return Ok(());
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::Internal("the file sink was written before it was opened".into()))?;
        let what = || format!("appending to {}", self.path.display());
        if self.dirty {
            // A failed write may have left bytes past the committed length: drop them first.
            file.set_len(self.committed_bytes).map_err(|e| Error::io(what(), e))?;
        }
        if !encoded.is_empty() {
            self.dirty = true;
            file.seek(SeekFrom::Start(self.committed_bytes))
                .and_then(|_| file.write_all(&encoded))
                .and_then(|()| file.sync_data())
                .map_err(|e| Error::io(what(), e))?;
        }
        let committed_bytes = self.committed_bytes + encoded.len() as u64;
        state::write(&self.state_path, &self.state(committed_bytes, &offsets, &columns))?;
        self.committed_bytes = committed_bytes;
        self.offsets = offsets;
        self.columns = columns;
        self.dirty = false;
        Ok(())
    }
}

/// The rows to write to a CSV file whose header is `columns` (set to the rows' columns when no
/// header is written yet), and whether the header line must come first. Rows gaining a column
/// the header lacks are written without it when it is null; a row with a value there is refused
/// (by its index in the batch given, through `index`), since the header cannot change.
fn csv_rows(rows: &RecordBatch, index: &[usize], columns: &mut Option<Vec<String>>) -> Result<(RecordBatch, bool)> {
    let schema = rows.schema();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let Some(header) = columns.as_ref() else {
        *columns = Some(names);
        return Ok((rows.clone(), true));
    };
    if *header == names {
        return Ok((rows.clone(), false));
    }
    for (i, field) in schema.fields().iter().enumerate() {
        if header.contains(field.name()) {
            continue;
        }
        let column = rows.column(i);
        if let Some(row) = (0..rows.num_rows()).find(|r| column.is_valid(*r)) {
            return Err(Error::Rejected {
                index: index[row],
                reason: format!(
                    "it has a value in column {} but the CSV file's header was written without it; roll files (set \
                     roll) so that a new header can start a new file",
                    field.name()
                ),
            });
        }
    }
    let mut fields = Vec::with_capacity(header.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(header.len());
    for name in header {
        match schema.index_of(name) {
            Ok(i) => {
                fields.push(schema.field(i).clone());
                arrays.push(rows.column(i).clone());
            }
            Err(_) => {
                fields.push(Field::new(name, DataType::Utf8, true));
                arrays.push(new_null_array(&DataType::Utf8, rows.num_rows()));
            }
        }
    }
    let projected = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| Error::Internal(format!("projecting rows onto the CSV header: {e}")))?;
    Ok((projected, false))
}

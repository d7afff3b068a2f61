//! The file sink's rolling mode: rows go to hidden in-progress files, one per target path (the
//! template resolved per row), which are finished and renamed to sortable final names together
//! when a roll limit is reached, when the schema changes (csv, parquet) or on `flush`.
//!
//! The commit protocol makes a crash at any point neither duplicate nor lose a row:
//! 1. every open file is finished (the parquet footer) and fsynced;
//! 2. the state file gets a `pending` entry naming each in-progress file, its final name and the
//!    input offsets covered once they are renamed (atomic replace, see `state.rs`);
//! 3. the files are renamed and their directories fsynced;
//! 4. the state is replaced by the committed one (the pending offsets, no pending entry).
//!
//! `open` rolls a pending entry forward (its files were complete before it was written), deletes
//! in-progress files left over, and returns the committed offsets; rows that were only in
//! in-progress files are not covered by them, so the runner sends them again. Every open file is
//! finished at each commit, so the committed offsets always cover exactly the rows in final files.
//!
//! Final names are `<stem>-<seq>.<ext>` with a 10-digit sequence number shared by all targets and
//! kept in the state, so names never repeat and sort in the order the files were started.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use super::encode::{fresh_rows, FileWriter};
use super::state::{self, advance, offsets_vec};
use super::template::{PathTemplate, RowValues};
use super::{FileFormat, OwnedBatch, ParquetCompression, RollLimits, NAME};
use crate::error::{Error, Result};

/// The rolling mode's state file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollingState {
    /// The input offsets covered by final files, as (partition, next offset).
    offsets: Vec<(i32, i64)>,
    /// The sequence number the next file gets.
    next_seq: u64,
    /// A commit whose files may not all be renamed yet.
    #[serde(default)]
    pending: Option<Pending>,
}

/// A commit in flight: its files are complete and fsynced, the renames may not have happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pending {
    /// The offsets covered once every file is renamed.
    offsets: Vec<(i32, i64)>,
    /// The sequence number the next file gets after this commit.
    next_seq: u64,
    /// (in-progress, final) paths, relative to the state file's directory.
    files: Vec<(String, String)>,
}

/// An in-progress file.
struct OpenFile {
    /// Its final name.
    final_path: PathBuf,
    /// Its hidden in-progress name.
    inprogress: PathBuf,
    /// The writer.
    writer: FileWriter,
    /// Rows written.
    records: u64,
    /// When its first row was written.
    opened: Instant,
}

/// Writes rows to rolled files.
pub(super) struct RollingWriter {
    /// The path template.
    template: PathTemplate,
    /// The format of every file.
    format: FileFormat,
    /// Parquet's codec.
    compression: ParquetCompression,
    /// When files are finished.
    limits: RollLimits,
    /// The state file.
    state_path: PathBuf,
    /// Offsets covered by final files.
    committed: BTreeMap<i32, i64>,
    /// Offsets covered by final and in-progress files.
    written: BTreeMap<i32, i64>,
    /// The next file's sequence number.
    next_seq: u64,
    /// In-progress files by target (directory, stem).
    open: BTreeMap<(String, String), OpenFile>,
    /// The columns of the open files (they all share them).
    schema: Option<SchemaRef>,
    /// Set when a failure dropped rows that were not committed: the sink must be opened again.
    poisoned: Option<String>,
    /// Whether `open` succeeded.
    opened: bool,
}

impl RollingWriter {
    /// A writer for `template`; nothing is touched before `open`.
    pub(super) fn new(
        template: PathTemplate,
        format: FileFormat,
        compression: ParquetCompression,
        limits: RollLimits,
    ) -> RollingWriter {
        RollingWriter {
            state_path: template.state_path(),
            template,
            format,
            compression,
            limits,
            committed: BTreeMap::new(),
            written: BTreeMap::new(),
            next_seq: 0,
            open: BTreeMap::new(),
            schema: None,
            poisoned: None,
            opened: false,
        }
    }

    /// Recovers from whatever a crash left and returns the committed offsets.
    pub(super) fn open(&mut self, topic: &str) -> Result<Vec<(i32, i64)>> {
        self.recover()?;
        tracing::info!(
            path = %self.template.literal(),
            topic,
            format = self.format.name(),
            next_seq = self.next_seq,
            "file sink opened in rolling mode"
        );
        Ok(offsets_vec(&self.committed))
    }

    /// Writes a batch, rolling files as limits are reached.
    pub(super) fn write(&mut self, batch: &OwnedBatch) -> Result<()> {
        self.usable()?;
        let before = self.written.clone();
        match self.write_inner(batch) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.after_failure(e, &before)),
        }
    }

    /// Finishes every open file and commits, so that every row written so far is durable.
    pub(super) fn flush(&mut self) -> Result<()> {
        self.usable()?;
        let before = self.written.clone();
        match self.commit() {
            Ok(()) => Ok(()),
            Err(e) => Err(self.after_failure(e, &before)),
        }
    }

    /// An error when the writer cannot be used before it is opened again.
    fn usable(&self) -> Result<()> {
        if !self.opened {
            return Err(Error::Internal("the file sink was used before it was opened".into()));
        }
        match &self.poisoned {
            Some(why) => Err(Error::External {
                system: NAME,
                message: format!("an earlier write failed ({why}); the sink must be opened again"),
                retriable: false,
            }),
            None => Ok(()),
        }
    }

    /// After a failed write or flush the open files are in an unknown state: start again from
    /// the disk's committed state. If that covers everything written before the failed call,
    /// the caller may send the same batch again (rows already committed are skipped); otherwise
    /// rows were dropped that only a replay from the committed offsets can bring back.
    fn after_failure(&mut self, error: Error, before: &BTreeMap<i32, i64>) -> Error {
        tracing::warn!(path = %self.template.literal(), error = %error, "file sink write failed, recovering");
        if let Err(e) = self.recover() {
            let why = format!("{error}; recovering failed too: {e}");
            self.poisoned = Some(why.clone());
            return Error::External {
                system: NAME,
                message: why,
                retriable: false,
            };
        }
        let covered = before
            .iter()
            .all(|(p, o)| self.committed.get(p).is_some_and(|c| c >= o));
        if covered {
            return error;
        }
        let why = format!(
            "{error}; rows written since the last commit were dropped, so the step must restart and replay them \
             from the committed offsets"
        );
        self.poisoned = Some(why.clone());
        Error::External {
            system: NAME,
            message: why,
            retriable: false,
        }
    }

    /// Writes a batch: see [`RollingWriter::write`].
    fn write_inner(&mut self, batch: &OwnedBatch) -> Result<()> {
        // A file past its age is finished before it gets more rows.
        if self.aged() {
            self.commit()?;
        }
        let fresh = fresh_rows(&batch.rows, &batch.meta, &self.written)?;
        let rows = fresh.rows;
        let n = rows.num_rows();
        if n > 0 && self.format != FileFormat::Json {
            if let Some(schema) = &self.schema {
                if schema.fields() != rows.schema_ref().fields() {
                    // A CSV header and a parquet schema are fixed per file.
                    self.commit()?;
                }
            }
        }
        let targets: Vec<(String, String)> = fresh
            .meta
            .iter()
            .map(|m| {
                self.template.target(&RowValues {
                    topic: &batch.topic,
                    partition: m.partition,
                    timestamp_ms: m.timestamp_ms,
                })
            })
            .collect();
        let limits = self.limits;
        let mut start = 0;
        while start < n {
            let target = &targets[start];
            let end = (start..n).find(|i| targets[*i] != *target).unwrap_or(n);
            let mut at = start;
            while at < end {
                let file = self.file_for(target, rows.schema())?;
                let room = limits.records.saturating_sub(file.records).max(1);
                let take = (end - at).min(usize::try_from(room).unwrap_or(usize::MAX));
                let first = file.records == 0;
                file.writer.write(&file.inprogress, &rows.slice(at, take), first)?;
                file.records += take as u64;
                let full = file.records >= limits.records || file.writer.bytes() >= limits.bytes;
                let done: Vec<(i32, i64)> = fresh.meta[at..at + take]
                    .iter()
                    .map(|m| (m.partition, m.offset + 1))
                    .collect();
                advance(&mut self.written, &done);
                at += take;
                if at == n {
                    advance(&mut self.written, &batch.next_offsets);
                }
                if full {
                    self.commit()?;
                }
            }
            start = end;
        }
        if n == 0 {
            advance(&mut self.written, &batch.next_offsets);
        }
        if self.aged() || (self.open.is_empty() && self.written != self.committed) {
            self.commit()?;
        }
        Ok(())
    }

    /// Finishes the open files when one has reached the roll age.
    pub fn tick(&mut self) -> Result<()> {
        if self.aged() {
            self.commit()?;
        }
        Ok(())
    }

    /// Whether an open file has reached the roll age.
    fn aged(&self) -> bool {
        let age = Duration::from_millis(self.limits.age_ms);
        self.open.values().any(|f| f.opened.elapsed() >= age)
    }

    /// The open file of `target`, started when there is none.
    fn file_for(&mut self, target: &(String, String), schema: SchemaRef) -> Result<&mut OpenFile> {
        if !self.open.contains_key(target) {
            let seq = self.next_seq;
            let (final_path, inprogress) = self.template.file_paths(target, seq);
            if let Some(dir) = inprogress.parent() {
                state::create_dirs(dir)?;
            }
            let writer = FileWriter::create(&inprogress, self.format, self.compression, schema.clone())?;
            self.next_seq += 1;
            if self.open.is_empty() {
                self.schema = Some(schema);
            }
            tracing::debug!(path = %inprogress.display(), seq, "started a file");
            self.open.insert(
                target.clone(),
                OpenFile {
                    final_path,
                    inprogress,
                    writer,
                    records: 0,
                    opened: Instant::now(),
                },
            );
        }
        self.open
            .get_mut(target)
            .ok_or_else(|| Error::Internal("an open file vanished".into()))
    }

    /// A path relative to the state file's directory, as stored.
    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(self.template.base_dir())
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Finishes every open file, renames them to their final names and commits the offsets
    /// written (the protocol in the module comment). With no open file, commits offsets only.
    fn commit(&mut self) -> Result<()> {
        let written = offsets_vec(&self.written);
        if self.open.is_empty() {
            if self.written != self.committed {
                let committed = RollingState {
                    offsets: written,
                    next_seq: self.next_seq,
                    pending: None,
                };
                state::write(&self.state_path, &committed)?;
                self.committed = self.written.clone();
            }
            return Ok(());
        }
        let files = std::mem::take(&mut self.open);
        self.schema = None;
        let mut renames = Vec::with_capacity(files.len());
        let mut rows = 0;
        for file in files.into_values() {
            file.writer.finish(&file.inprogress)?;
            rows += file.records;
            renames.push((file.inprogress, file.final_path));
        }
        let pending = Pending {
            offsets: written.clone(),
            next_seq: self.next_seq,
            files: renames
                .iter()
                .map(|(from, to)| (self.relative(from), self.relative(to)))
                .collect(),
        };
        let in_flight = RollingState {
            offsets: offsets_vec(&self.committed),
            next_seq: self.next_seq,
            pending: Some(pending),
        };
        state::write(&self.state_path, &in_flight)?;
        let mut dirs = BTreeSet::new();
        for (from, to) in &renames {
            fs::rename(from, to)
                .map_err(|e| Error::io(format!("renaming {} to {}", from.display(), to.display()), e))?;
            dirs.insert(to.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")));
        }
        for dir in &dirs {
            state::sync_dir(dir)?;
        }
        let committed = RollingState {
            offsets: written,
            next_seq: self.next_seq,
            pending: None,
        };
        state::write(&self.state_path, &committed)?;
        self.committed = self.written.clone();
        tracing::info!(path = %self.template.literal(), files = renames.len(), rows, "files finished");
        Ok(())
    }

    /// Brings memory in line with the disk: rolls a pending commit forward, deletes in-progress
    /// files and reloads the committed state.
    fn recover(&mut self) -> Result<()> {
        self.opened = false;
        self.open.clear();
        self.schema = None;
        let base = self.template.base_dir().to_path_buf();
        state::create_dirs(&base)?;
        if !self.template.has_placeholders() {
            let append_state = Path::new(self.template.literal())
                .with_file_name(format!(".{}.brook-state", self.template.file_name()));
            if append_state.exists() {
                return Err(Error::config(
                    NAME,
                    format!(
                        "{} was written in append mode (see {}); use a new path for rolling mode",
                        self.template.literal(),
                        append_state.display()
                    ),
                ));
            }
        }
        let mut stored: RollingState = state::read(&self.state_path)?.unwrap_or_default();
        if let Some(pending) = stored.pending.take() {
            let mut dirs = BTreeSet::new();
            for (from, to) in &pending.files {
                let (from, to) = (base.join(from), base.join(to));
                if from.exists() {
                    fs::rename(&from, &to)
                        .map_err(|e| Error::io(format!("renaming {} to {}", from.display(), to.display()), e))?;
                } else if !to.exists() {
                    return Err(Error::External {
                        system: NAME,
                        message: format!(
                            "the state file {} names {} as finished, but neither it nor its in-progress file exists: \
                             files were removed outside Brook",
                            self.state_path.display(),
                            to.display()
                        ),
                        retriable: false,
                    });
                }
                dirs.insert(to.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")));
            }
            for dir in &dirs {
                state::sync_dir(dir)?;
            }
            stored = RollingState {
                offsets: pending.offsets,
                next_seq: pending.next_seq,
                pending: None,
            };
            state::write(&self.state_path, &stored)?;
            tracing::info!(state = %self.state_path.display(), files = pending.files.len(), "completed a commit interrupted by a crash");
        }
        let pattern = self.template.inprogress_glob();
        let leftovers =
            glob::glob(&pattern).map_err(|e| Error::Internal(format!("the in-progress pattern {pattern:?}: {e}")))?;
        for path in leftovers.flatten() {
            tracing::info!(path = %path.display(), "deleting an uncommitted in-progress file");
            fs::remove_file(&path).map_err(|e| Error::io(format!("deleting {}", path.display()), e))?;
        }
        self.committed = stored.offsets.into_iter().collect();
        self.written = self.committed.clone();
        self.next_seq = stored.next_seq;
        self.poisoned = None;
        self.opened = true;
        Ok(())
    }
}

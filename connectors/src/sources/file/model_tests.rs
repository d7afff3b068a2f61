//! A model-based test of the tailer: random appends, rotations, truncations, deletions, new
//! files and restarts from the last checkpoint, after which every line written must have been
//! emitted exactly once (in the committed stream), in order per file, with positions that grow
//! per stream.
//!
//! Ops that lose lines by design are performed so that they cannot: copytruncate and plain
//! truncation happen only after the reader caught up (in real life, lines written between the
//! copy and the truncation, or past the old offset before the tailer looks, are lost), and a file
//! is deleted only while the tailer holds it open (a file deleted while closed loses what it was
//! not read of). A restart drops what was emitted after the last checkpoint, as a crash would.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::json;

use super::tests::{append, options, parser, texts, Driver};
use crate::source::SourceItem;

#[derive(Debug, Clone)]
enum Op {
    /// Appends lines to a live file.
    Append { file: usize, lines: usize },
    /// Appends a line without its newline to a live file (the next append completes it).
    AppendPartial { file: usize },
    /// Renames a live file away (out of the glob), writes one more line and one without its
    /// newline to it as a writer that has not reopened yet would, and creates a new file at its
    /// path.
    Rotate { file: usize },
    /// Copies a live file out of the glob and truncates it.
    CopyTruncate { file: usize },
    /// Truncates a live file.
    Truncate { file: usize },
    /// Appends lines to a live file and deletes it.
    Delete { file: usize, lines: usize },
    /// Creates a new matching file with some lines.
    Create { lines: usize },
    /// Polls once for up to `max` items.
    Poll { max: usize },
    /// Commits: what was emitted so far is durable, and the checkpoint is kept.
    Checkpoint,
    /// Drops the tailer and builds it again from the last checkpoint.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (any::<usize>(), 1usize..5).prop_map(|(file, lines)| Op::Append { file, lines }),
        1 => any::<usize>().prop_map(|file| Op::AppendPartial { file }),
        1 => any::<usize>().prop_map(|file| Op::Rotate { file }),
        1 => any::<usize>().prop_map(|file| Op::CopyTruncate { file }),
        1 => any::<usize>().prop_map(|file| Op::Truncate { file }),
        1 => (any::<usize>(), 0usize..3).prop_map(|(file, lines)| Op::Delete { file, lines }),
        1 => (0usize..3).prop_map(|lines| Op::Create { lines }),
        3 => (1usize..20).prop_map(|max| Op::Poll { max }),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Restart),
    ]
}

/// The world: files on disk, what was written, what the tailer emitted.
struct Model {
    dir: PathBuf,
    options: super::TailerOptions,
    driver: Driver,
    /// Live files at glob paths: (path, tag).
    live: Vec<(PathBuf, u64)>,
    next_tag: u64,
    next_id: u64,
    /// Every line written, as (tag, id).
    written: Vec<(u64, u64)>,
    committed: Vec<SourceItem>,
    uncommitted: Vec<SourceItem>,
    checkpoint: Option<serde_json::Value>,
    renames: u64,
    /// Files whose last line has no newline yet, with that line's id.
    partial: BTreeMap<PathBuf, u64>,
}

impl Model {
    fn new(dir: &Path, fingerprint_bytes: usize, read_batch_bytes: usize, max_open_files: usize) -> Model {
        let mut options = options(dir, "*.log");
        options.fingerprint_bytes = fingerprint_bytes;
        options.read_batch_bytes = read_batch_bytes;
        options.max_open_files = max_open_files;
        let driver = Driver::open(options.clone(), parser(json!({})), None);
        Model {
            dir: dir.to_path_buf(),
            options,
            driver,
            live: Vec::new(),
            next_tag: 0,
            next_id: 0,
            written: Vec::new(),
            committed: Vec::new(),
            uncommitted: Vec::new(),
            checkpoint: None,
            renames: 0,
            partial: Default::default(),
        }
    }

    fn write_lines(&mut self, path: &Path, tag: u64, n: usize) {
        let mut text = String::new();
        if n > 0 && self.partial.remove(path).is_some() {
            text.push('\n');
        }
        for _ in 0..n {
            text.push_str(&format!("t{tag} {}\n", self.next_id));
            self.written.push((tag, self.next_id));
            self.next_id += 1;
        }
        append(path, &text);
    }

    /// Writes one line without its newline.
    fn write_partial(&mut self, path: &Path, tag: u64) {
        let mut text = String::new();
        if self.partial.insert(path.to_path_buf(), self.next_id).is_some() {
            text.push('\n');
        }
        text.push_str(&format!("t{tag} {}", self.next_id));
        self.written.push((tag, self.next_id));
        self.next_id += 1;
        append(path, &text);
    }

    fn create(&mut self, lines: usize) -> usize {
        let tag = self.next_tag;
        self.next_tag += 1;
        let path = self.dir.join(format!("f{tag}.log"));
        append(&path, "");
        self.write_lines(&path, tag, lines);
        self.live.push((path, tag));
        self.live.len() - 1
    }

    /// The live file `file` picks (creating one if there is none).
    fn pick(&mut self, file: usize) -> usize {
        if self.live.is_empty() {
            self.create(0)
        } else {
            file % self.live.len()
        }
    }

    fn poll(&mut self, max: usize) {
        let items = self.driver.poll(max);
        self.uncommitted.extend(items);
    }

    fn drain(&mut self) {
        let items = self.driver.drain();
        self.uncommitted.extend(items);
    }

    fn commit(&mut self) {
        self.committed.append(&mut self.uncommitted);
        self.checkpoint = Some(self.driver.tailer.checkpoint());
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Append { file, lines } => {
                let i = self.pick(file);
                let (path, tag) = self.live[i].clone();
                self.write_lines(&path, tag, lines);
            }
            Op::AppendPartial { file } => {
                let i = self.pick(file);
                let (path, tag) = self.live[i].clone();
                self.write_partial(&path, tag);
            }
            Op::Rotate { file } => {
                let i = self.pick(file);
                // The tailer must know the file (it is in the checkpoint) before it leaves the
                // glob, or nothing could find it again after a restart.
                self.poll(1000);
                self.commit();
                let (path, tag) = self.live[i].clone();
                self.renames += 1;
                let rotated = path.with_extension(format!("log.rot{}", self.renames));
                fs::rename(&path, &rotated).unwrap();
                if let Some(id) = self.partial.remove(&path) {
                    self.partial.insert(rotated.clone(), id);
                }
                self.write_lines(&rotated, tag, 1);
                self.write_partial(&rotated, tag);
                append(&path, "");
                self.live[i].1 = self.next_tag;
                self.next_tag += 1;
            }
            Op::CopyTruncate { file } | Op::Truncate { file } => {
                let i = self.pick(file);
                let (path, _) = self.live[i].clone();
                // A line without its newline is emitted when the truncation is noticed, which a
                // restart before the next checkpoint would undo: complete it first.
                if self.partial.remove(&path).is_some() {
                    append(&path, "\n");
                }
                self.drain();
                self.commit();
                let (path, _) = self.live[i].clone();
                if matches!(op, Op::CopyTruncate { .. }) {
                    self.renames += 1;
                    fs::copy(&path, path.with_extension(format!("log.copy{}", self.renames))).unwrap();
                }
                OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
                // The tailer must see the file shorter than its offset before it grows past it.
                self.poll(1000);
            }
            Op::Delete { file, lines } => {
                let i = self.pick(file);
                self.drain();
                let (path, tag) = self.live[i].clone();
                // Lines written after the tailer closed a file it had read to its end are lost
                // when the file is deleted: only write more while it may not close files.
                if self.options.max_open_files > 64 {
                    self.write_lines(&path, tag, lines);
                }
                fs::remove_file(&path).unwrap();
                self.partial.remove(&path);
                self.live.remove(i);
                self.drain();
                self.commit();
            }
            Op::Create { lines } => {
                self.create(lines);
            }
            Op::Poll { max } => self.poll(max),
            Op::Checkpoint => self.commit(),
            Op::Restart => {
                self.uncommitted.clear();
                self.driver = Driver::open(self.options.clone(), parser(json!({})), self.checkpoint.clone());
            }
        }
    }

    /// Checks the committed stream against what was written.
    fn check(&mut self) -> Result<(), TestCaseError> {
        self.drain();
        self.commit();
        let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
        let mut last_per_tag: BTreeMap<u64, u64> = BTreeMap::new();
        for text in texts(&self.committed) {
            let (tag, id) = text
                .strip_prefix('t')
                .and_then(|t| t.split_once(' '))
                .and_then(|(t, i)| Some((t.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
                .ok_or_else(|| TestCaseError::fail(format!("unexpected record {text:?}")))?;
            prop_assert!(seen.insert(id, tag).is_none(), "line {id} of t{tag} was emitted twice");
            if let Some(prev) = last_per_tag.insert(tag, id) {
                prop_assert!(prev < id, "t{tag}: line {id} came after line {prev}");
            }
        }
        // The last line of a live file has no newline yet: it may still grow, so it is not read.
        let unfinished: Vec<u64> = self
            .partial
            .iter()
            .filter(|(path, _)| self.live.iter().any(|(p, _)| p == *path))
            .map(|(_, id)| *id)
            .collect();
        let written: BTreeMap<u64, u64> = self
            .written
            .iter()
            .filter(|(_, i)| !unfinished.contains(i))
            .map(|(t, i)| (*i, *t))
            .collect();
        let missing: Vec<_> = written.keys().filter(|i| !seen.contains_key(i)).collect();
        prop_assert!(missing.is_empty(), "lines never emitted: {missing:?}");
        prop_assert_eq!(seen, written);
        let mut ends: BTreeMap<&str, u64> = BTreeMap::new();
        for item in &self.committed {
            let p = item.position();
            if let Some(end) = ends.insert(&p.stream, p.end) {
                prop_assert!(p.start >= end, "positions of {} went back: {:?}", p.stream, p);
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn every_line_is_emitted_once_through_rotations_truncations_and_restarts(
        ops in proptest::collection::vec(op(), 10..40),
        fingerprint_bytes in prop_oneof![Just(4usize), Just(256)],
        read_batch_bytes in prop_oneof![Just(7usize), Just(4096)],
        max_open_files in prop_oneof![Just(2usize), Just(1000)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new(dir.path(), fingerprint_bytes, read_batch_bytes, max_open_files);
        for op in ops {
            model.apply(op);
        }
        model.check()?;
    }
}

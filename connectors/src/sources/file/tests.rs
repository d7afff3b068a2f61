//! Tests of the file tailer, one per behaviour, on real files in temporary directories, and of
//! the `file` source around it (events, configuration, the compliance check).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::compliance::{check_source, SourceUnderTest};
use crate::parse::ParseConfig;
use crate::source::SourceItem;
pub(super) use crate::sources::texts;

/// The poll interval of tailers under test.
pub(super) const POLL: Duration = Duration::from_millis(10);

/// A tailer's settings over `pattern` inside `dir`.
pub(super) fn options(dir: &Path, pattern: &str) -> TailerOptions {
    TailerOptions {
        pattern: dir.join(pattern).to_string_lossy().into_owned(),
        start: StartAt::Beginning,
        poll_interval: POLL,
        fingerprint_bytes: 256,
        max_open_files: 16,
        read_batch_bytes: 4096,
    }
}

/// A lines parser, or one with `config` (a source configuration's parser fields).
pub(super) fn parser(config: serde_json::Value) -> Arc<Parser> {
    let mut all = json!({"path": "x"});
    if let (Some(all), serde_json::Value::Object(fields)) = (all.as_object_mut(), config) {
        all.extend(fields);
    }
    let c: FileConfig = serde_json::from_value(all).unwrap();
    Arc::new(c.parse_config().compile("file").unwrap())
}

/// A tailer driven by a clock the test moves.
pub(super) struct Driver {
    pub tailer: Tailer,
    pub now: Instant,
}

impl Driver {
    pub fn open(options: TailerOptions, parser: Arc<Parser>, checkpoint: Option<serde_json::Value>) -> Driver {
        let now = Instant::now();
        let tailer = Tailer::open(options, parser, checkpoint.as_ref(), now).unwrap();
        Driver { tailer, now }
    }

    /// One poll, a poll interval after the previous one.
    pub fn poll(&mut self, max: usize) -> Vec<SourceItem> {
        self.now += POLL;
        self.tailer.poll(self.now, max).unwrap()
    }

    /// Polls until three polls in a row return nothing (the last lines of files that left the
    /// glob need a quiet poll interval first).
    pub fn drain(&mut self) -> Vec<SourceItem> {
        let mut out = Vec::new();
        let mut empty = 0;
        while empty < 3 {
            let items = self.poll(7);
            empty = if items.is_empty() { empty + 1 } else { 0 };
            out.extend(items);
        }
        out
    }
}

/// The distinct position streams of `items`, in first-seen order.
fn streams(items: &[SourceItem]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i.position().stream) {
            out.push(i.position().stream.clone());
        }
    }
    out
}

pub(super) fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn truncate(path: &Path) {
    OpenOptions::new().write(true).open(path).unwrap().set_len(0).unwrap();
}

fn gzip(path: &Path, text: &str) {
    let mut enc = flate2::write::GzEncoder::new(File::create(path).unwrap(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
}

#[test]
fn lines_are_read_as_the_file_grows_and_a_partial_line_waits() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "a\nb");
    let mut d = Driver::open(options(dir.path(), "app.log"), parser(json!({})), None);
    let first = d.drain();
    assert_eq!(texts(&first), ["a"]);
    append(&log, "\r\nc\n");
    let next = d.drain();
    assert_eq!(texts(&next), ["b", "c"]);
    let p: Vec<_> = first
        .iter()
        .chain(&next)
        .map(|i| (i.position().start, i.position().end))
        .collect();
    assert_eq!(p, [(0, 2), (2, 5), (5, 7)]);
    assert_eq!(streams(&next), streams(&first));
}

#[test]
fn rename_and_create_rotation_reads_the_old_file_to_its_end_then_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "1\n2\n");
    let mut d = Driver::open(options(dir.path(), "app.log"), parser(json!({})), None);
    assert_eq!(texts(&d.poll(100)), ["1", "2"]);
    append(&log, "3\n");
    fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    // The writer still holds the old file for a moment.
    append(&dir.path().join("app.log.1"), "4\nunterminated");
    append(&log, "new 1\n");
    let items = d.drain();
    let by_stream = |s: &str| -> Vec<String> {
        texts(
            &items
                .iter()
                .filter(|i| i.position().stream == s)
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let old = &items
        .iter()
        .find(|i| texts(&[(*i).clone()]) == ["3"])
        .unwrap()
        .position()
        .stream;
    let new = &items
        .iter()
        .find(|i| texts(&[(*i).clone()]) == ["new 1"])
        .unwrap()
        .position()
        .stream;
    assert_ne!(old, new);
    assert_eq!(streams(&items).len(), 2);
    assert_eq!(by_stream(old), ["3", "4", "unterminated"]);
    assert_eq!(by_stream(new), ["new 1"]);
    assert_eq!(d.tailer.counts(), (1, 1));
}

#[test]
fn copytruncate_starts_a_new_stream_whose_positions_start_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "one\ntwo\n");
    let mut d = Driver::open(options(dir.path(), "app.log"), parser(json!({})), None);
    let before = d.drain();
    fs::copy(&log, dir.path().join("app.log.1")).unwrap();
    truncate(&log);
    assert!(d.poll(10).is_empty());
    append(&log, "three\n");
    let after = d.drain();
    assert_eq!(texts(&after), ["three"]);
    assert_ne!(streams(&after), streams(&before));
    assert_eq!(after[0].position().start, 0);
}

#[test]
fn a_truncated_file_with_the_same_first_line_takes_the_next_generation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("data.csv");
    append(&log, "id\n1\n2\n");
    let mut d = Driver::open(options(dir.path(), "*.csv"), parser(json!({})), None);
    let before = d.drain();
    truncate(&log);
    d.poll(10);
    append(&log, "id\n3\n");
    let after = d.drain();
    assert_eq!(texts(&after), ["id", "3"]);
    let (old, new) = (&streams(&before)[0], &streams(&after)[0]);
    assert!(old.ends_with(":0") && new.ends_with(":1"), "{old} then {new}");
    assert_eq!(old[..old.len() - 2], new[..new.len() - 2]);
}

#[test]
fn a_deleted_file_is_read_to_its_end_through_its_handle() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "a\n");
    let mut d = Driver::open(options(dir.path(), "*.log"), parser(json!({})), None);
    assert_eq!(texts(&d.poll(10)), ["a"]);
    append(&log, &"x".repeat(5000));
    append(&log, "\nlast");
    fs::remove_file(&log).unwrap();
    let items = d.drain();
    assert_eq!(texts(&items), [&"x".repeat(5000)[..], "last"]);
    assert_eq!(d.tailer.counts(), (0, 0));
}

#[test]
fn new_files_matching_the_glob_are_picked_up_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Driver::open(options(dir.path(), "*/[ab]?.log"), parser(json!({})), None);
    fs::create_dir(dir.path().join("x")).unwrap();
    append(&dir.path().join("x/a1.log"), "a1\n");
    append(&dir.path().join("x/c1.log"), "c1\n");
    append(&dir.path().join("x/b22.log"), "b22\n");
    append(&dir.path().join("top.log"), "top\n");
    fs::create_dir(dir.path().join("y")).unwrap();
    append(&dir.path().join("y/b2.log"), "b2\n");
    let mut got = texts(&d.drain());
    got.sort();
    assert_eq!(got, ["a1", "b2"]);
}

#[test]
fn gzip_files_are_read_once_whole_and_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..500).map(|i| format!("line {i}\n")).collect();
    gzip(&dir.path().join("app.log.2.gz"), &text);
    let mut d = Driver::open(options(dir.path(), "app.log*"), parser(json!({})), None);
    let items = d.drain();
    assert_eq!(items.len(), 500);
    assert_eq!(texts(&items)[499], "line 499");
    assert_eq!(items[499].position().end, text.len() as u64);
    assert_eq!(d.tailer.counts(), (0, 0));
    let cp = d.tailer.checkpoint();
    assert!(d.drain().is_empty());
    let mut again = Driver::open(options(dir.path(), "app.log*"), parser(json!({})), Some(cp));
    assert!(again.drain().is_empty());
}

#[test]
fn a_gzip_file_resumes_mid_way_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..50).map(|i| format!("{i}\n")).collect();
    gzip(&dir.path().join("old.gz"), &text);
    let mut d = Driver::open(options(dir.path(), "*.gz"), parser(json!({})), None);
    let mut first = Vec::new();
    while first.len() < 20 {
        first.extend(d.poll(20 - first.len()));
    }
    let mut d = Driver::open(
        options(dir.path(), "*.gz"),
        parser(json!({})),
        Some(d.tailer.checkpoint()),
    );
    let rest = d.drain();
    let all: Vec<String> = texts(&first).into_iter().chain(texts(&rest)).collect();
    assert_eq!(all, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(streams(&rest), streams(&first));
}

#[test]
fn a_corrupt_gzip_file_is_a_bad_item_after_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gz");
    gzip(
        &path,
        &(0..2000)
            .map(|i| format!("line {}\n", i * 7919 % 10007))
            .collect::<String>(),
    );
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let mut d = Driver::open(options(dir.path(), "*.gz"), parser(json!({})), None);
    let items = d.drain();
    let last = texts(&items).pop().unwrap();
    assert!(
        last.starts_with("bad: the gzip data of ") && last.contains("is corrupt after"),
        "{last}"
    );
    assert!(items.len() > 1);
}

#[test]
fn start_at_end_skips_what_files_held_at_the_first_start_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "old 1\nold 2\npart");
    gzip(&dir.path().join("app.log.1.gz"), "archived\n");
    let mut opts = options(dir.path(), "app.log*");
    opts.start = StartAt::End;
    let mut d = Driver::open(opts.clone(), parser(json!({})), None);
    assert!(d.drain().is_empty());
    append(&log, "ial\nnew\n");
    append(&dir.path().join("app.log.later"), "later\n");
    let mut got = texts(&d.drain());
    got.sort();
    assert_eq!(got, ["later", "new", "partial"]);
    // With a checkpoint, `start` no longer applies: a file unknown to it is read whole.
    let cp = d.tailer.checkpoint();
    append(&dir.path().join("app.log.other"), "other\n");
    let mut d = Driver::open(opts, parser(json!({})), Some(cp));
    assert_eq!(texts(&d.drain()), ["other"]);
}

#[test]
fn the_checkpoint_resumes_each_file_after_its_last_taken_item() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a.log", "b.log"] {
        append(
            &dir.path().join(name),
            &(0..30).map(|i| format!("{name} {i}\n")).collect::<String>(),
        );
    }
    let mut d = Driver::open(options(dir.path(), "*.log"), parser(json!({})), None);
    let first = d.poll(5);
    assert_eq!(first.len(), 5);
    let mut d = Driver::open(
        options(dir.path(), "*.log"),
        parser(json!({})),
        Some(d.tailer.checkpoint()),
    );
    let rest = d.drain();
    let mut all = texts(&first);
    all.extend(texts(&rest));
    all.sort();
    let mut expected: Vec<String> = ["a.log", "b.log"]
        .iter()
        .flat_map(|n| (0..30).map(move |i| format!("{n} {i}")))
        .collect();
    expected.sort();
    assert_eq!(all, expected);
}

#[test]
fn a_restart_finds_a_file_rotated_while_down_and_reads_its_rest() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "1\n");
    let mut d = Driver::open(options(dir.path(), "app.log"), parser(json!({})), None);
    let first = d.drain();
    let cp = d.tailer.checkpoint();
    drop(d);
    append(&log, "2\n");
    fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, "new\n");
    let mut d = Driver::open(options(dir.path(), "app.log"), parser(json!({})), Some(cp));
    let rest = d.drain();
    let mut got = texts(&rest);
    got.sort();
    assert_eq!(got, ["2", "new"]);
    let two = rest.iter().find(|i| texts(&[(*i).clone()]) == ["2"]).unwrap();
    assert_eq!(two.position().stream, first[0].position().stream);
}

#[test]
fn a_file_replaced_at_its_path_while_down_is_read_as_new() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "first file\n");
    let mut d = Driver::open(options(dir.path(), "app.log"), parser(json!({})), None);
    d.drain();
    let cp = d.tailer.checkpoint();
    fs::remove_file(&log).unwrap();
    append(&log, "second file, longer than the first\n");
    let mut d = Driver::open(options(dir.path(), "app.log"), parser(json!({})), Some(cp));
    let items = d.drain();
    assert_eq!(texts(&items), ["second file, longer than the first"]);
    assert_eq!(items[0].position().start, 0);
}

#[test]
fn open_files_stay_within_the_bound_and_every_file_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), "*.log");
    opts.max_open_files = 2;
    let mut d = Driver::open(opts, parser(json!({})), None);
    let mut expected = Vec::new();
    let mut got = Vec::new();
    for round in 0..4 {
        for f in 0..5 {
            let line = format!("{f}-{round}");
            append(&dir.path().join(format!("{f}.log")), &format!("{line}\n"));
            expected.push(line);
        }
        for _ in 0..20 {
            got.extend(texts(&d.poll(3)));
            assert!(d.tailer.counts().1 <= 2, "{:?}", d.tailer.counts());
        }
    }
    got.extend(texts(&d.drain()));
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn a_csv_header_is_read_again_when_resuming_mid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    append(&path, "id,name\n1,a\n");
    let p = || parser(json!({"format": "csv", "csv": {"header": true}}));
    let mut d = Driver::open(options(dir.path(), "*.csv"), p(), None);
    assert_eq!(texts(&d.drain()), [r#"{"id":1,"name":"a"}"#]);
    let mut d = Driver::open(options(dir.path(), "*.csv"), p(), Some(d.tailer.checkpoint()));
    append(&path, "2,b\n");
    assert_eq!(texts(&d.drain()), [r#"{"id":2,"name":"b"}"#]);
}

#[test]
fn a_multi_line_record_is_emitted_after_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "E boom\n  at a\n");
    let p = parser(json!({"multiline": {"start_pattern": "^E", "timeout_ms": 1000}}));
    let mut d = Driver::open(options(dir.path(), "*.log"), p, None);
    assert!(d.poll(10).is_empty());
    assert_eq!(d.tailer.next_deadline(), Some(d.now + Duration::from_millis(1000)));
    d.now += Duration::from_millis(1000);
    assert_eq!(texts(&d.poll(10)), ["E boom\n  at a"]);
}

/// A `file` source over `dir/pattern`, built from its configuration.
fn source(dir: &Path, pattern: &str, extra: serde_json::Value) -> Box<dyn Source> {
    let ctx = Context {
        name: "test.file".into(),
        base_dir: dir.to_path_buf(),
    };
    let mut config = json!({"path": pattern, "poll_interval_ms": 10});
    if let serde_json::Value::Object(fields) = extra {
        for (k, v) in fields {
            config[k] = v;
        }
    }
    build(&ctx, config).unwrap()
}

#[tokio::test]
async fn a_new_file_is_found_by_its_event_without_waiting_for_the_rescan() {
    let dir = tempfile::tempdir().unwrap();
    // A rescan once an hour: only the file system event can make the source look in time.
    let mut s = source(dir.path(), "*.log", json!({"poll_interval_ms": 3_600_000}));
    s.open(None).await.unwrap();
    assert_eq!(s.poll(10, 0).await.unwrap(), Some(vec![]));
    append(&dir.path().join("new.log"), "hello\n");
    let items = s.poll(10, 60_000).await.unwrap().unwrap();
    assert_eq!(texts(&items), ["hello"]);
}

#[tokio::test]
async fn files_under_a_directory_created_later_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = source(dir.path(), "later/*.log", json!({"format": "json"}));
    s.open(None).await.unwrap();
    assert_eq!(s.poll(10, 0).await.unwrap(), Some(vec![]));
    fs::create_dir(dir.path().join("later")).unwrap();
    append(&dir.path().join("later/x.log"), "{\"a\": 1}\n");
    let items = s.poll(10, 60_000).await.unwrap().unwrap();
    assert_eq!(texts(&items), ["{\"a\": 1}"]);
    assert_eq!(s.format().format, brook_engine::format::Format::Json);
}

#[test]
fn bad_settings_are_refused_when_building() {
    let ctx = Context {
        name: "t".into(),
        base_dir: PathBuf::from("/tmp"),
    };
    let err = |config: serde_json::Value| build(&ctx, config).err().expect("refused").to_string();
    assert!(err(json!({"path": "x", "poll_interval_ms": 5})).contains("poll_interval_ms must be between 10"));
    assert!(err(json!({"path": "x", "colour": "red"})).contains("unknown field `colour`"));
    assert!(err(json!({"path": "x/[a"})).contains("not a valid glob"));
    assert!(err(json!({"path": "x", "format": "regex"})).contains("needs a pattern"));
    assert!(err(json!({"path": "x", "start": "middle"})).contains("unknown variant"));
    assert!(err(json!({})).contains("missing field `path`"));
}

#[test]
fn a_relative_path_is_resolved_against_a_literal_base_directory() {
    let ctx = Context {
        name: "t".into(),
        base_dir: PathBuf::from("/srv/[pipelines]"),
    };
    let config: FileConfig = serde_json::from_value(json!({"path": "logs/*.log"})).unwrap();
    let options = config.tailer_options(&ctx).unwrap();
    assert_eq!(options.pattern, "/srv/[[]pipelines[]]/logs/*.log");
    let pattern = glob::Pattern::new(&options.pattern).unwrap();
    assert!(pattern.matches("/srv/[pipelines]/logs/a.log"));
}

#[tokio::test]
async fn the_file_source_passes_the_compliance_check() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let path = base.join("events.log");
    check_source(SourceUnderTest {
        make: Box::new(move || source(&base, "events.log", json!({"format": "json"}))),
        feed: Box::new(move |first, n| {
            let path = path.clone();
            Box::pin(async move {
                let text: String = (first..first + n as u64)
                    .map(|i| format!("{{\"id\": {i}}}\n"))
                    .collect();
                append(&path, &text);
            })
        }),
        id_of: Box::new(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
            v["id"].as_u64().unwrap()
        }),
    })
    .await;
}

#[test]
fn the_parse_settings_reach_the_parser() {
    let config: FileConfig =
        serde_json::from_value(json!({"path": "x", "format": "csv", "csv": {"columns": ["a"]}, "max_line_bytes": 9}))
            .unwrap();
    let expected = ParseConfig {
        format: crate::parse::LineFormat::Csv,
        csv: Some(crate::parse::CsvConfig {
            header: false,
            columns: vec!["a".into()],
            delimiter: ",".into(),
        }),
        max_line_bytes: 9,
        ..ParseConfig::default()
    };
    assert_eq!(config.parse_config(), expected);
}

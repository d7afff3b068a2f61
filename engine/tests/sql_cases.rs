//! The data-driven SQL tests: every `tests/sql/*.sql` file is a case (input topics with
//! records, statements, and the rows or error each must give), run once against the broker in
//! this process (EmbeddedAccess) and once over the Kafka protocol (RemoteAccess).
//!
//! A case file is made of directives, each a line starting with `-- ` and a keyword; other
//! `--` lines are comments.
//! - `-- topic: NAME [partitions=N] [format=csv|json|lines|bytes] [schema=col:Type,...]`, then
//!   one record value per line. A line may start with `[p=P key=K ts=MS hdr=NAME:VALUE]` (any of
//!   them, `hdr` repeated) to set the record's partition (default 0), key (default none),
//!   timestamp (default 1700000000000 + 1000 * its line number in the topic) and headers. Without `format`, the engine guesses
//!   the format as it does for any topic; with it, the topic is declared in that format (types
//!   are Arrow's names: Int64, Float64, Utf8, Boolean...).
//! - `-- statement:` then the SQL, up to the next directive.
//! - `-- expect: rows` (in any order) or `-- expect: rows in order`, then the table as
//!   `datafusion::arrow::util::pretty` prints it, up to a blank line or directive.
//! - `-- expect: error TEXT`: the statement fails with an error whose text contains TEXT.
//! - `-- plan: TEXT`: the physical plan of the statement (EXPLAIN) contains TEXT.
//! - `-- dead letters: N`: running the statement sent N records to the dead-letter sink.
//!
//! `BROOK_BLESS=1 cargo test -p brook-engine --test sql_cases` rewrites the expected tables of
//! every file with what the embedded run produced.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use brook_broker::access::{EmbeddedAccess, OutRecord, RemoteAccess, TopicAccess, TopicSpec};
use brook_broker::client::ClientConfig;
use brook_broker::{Broker, BrokerConfig};
use brook_engine::format::{Format, FormatSpec};
use brook_engine::sql::{Output, SqlEngine};
use bytes::Bytes;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

/// The timestamp of a topic's first record when its lines give none.
const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;

#[derive(Debug, Default)]
struct Topic {
    name: String,
    partitions: i32,
    format: Option<Format>,
    schema: Option<Vec<Field>>,
    records: Vec<OutRecord>,
}

#[derive(Debug)]
enum Expect {
    Rows {
        ordered: bool,
        table: Vec<String>,
        lines: (usize, usize),
    },
    Error(String),
}

#[derive(Debug)]
struct Step {
    sql: String,
    line: usize,
    expect: Option<Expect>,
    plan: Vec<String>,
    dead_letters: Option<usize>,
}

#[derive(Debug, Default)]
struct Case {
    topics: Vec<Topic>,
    steps: Vec<Step>,
}

fn parse(text: &str) -> Result<Case, String> {
    #[derive(PartialEq)]
    enum In {
        Nothing,
        Records,
        Statement,
        Table,
    }
    let mut case = Case::default();
    let mut state = In::Nothing;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if let Some(directive) = line.strip_prefix("-- ") {
            let (word, rest) = directive.split_once(':').unwrap_or((directive, ""));
            let rest = rest.trim();
            match word.trim() {
                "topic" => {
                    case.topics
                        .push(topic_header(rest).map_err(|e| format!("line {}: {e}", n + 1))?);
                    state = In::Records;
                }
                "statement" => {
                    case.steps.push(Step {
                        sql: String::new(),
                        line: n + 2,
                        expect: None,
                        plan: vec![],
                        dead_letters: None,
                    });
                    state = In::Statement;
                }
                "expect" => {
                    let step = case
                        .steps
                        .last_mut()
                        .ok_or(format!("line {}: expect before a statement", n + 1))?;
                    step.expect = Some(if let Some(text) = rest.strip_prefix("error") {
                        state = In::Nothing;
                        Expect::Error(text.trim().to_string())
                    } else {
                        state = In::Table;
                        let ordered = rest == "rows in order";
                        if !ordered && rest != "rows" {
                            return Err(format!("line {}: expect rows, rows in order or error TEXT", n + 1));
                        }
                        Expect::Rows {
                            ordered,
                            table: vec![],
                            lines: (n + 1, n + 1),
                        }
                    });
                }
                "plan" => {
                    let step = case
                        .steps
                        .last_mut()
                        .ok_or(format!("line {}: plan before a statement", n + 1))?;
                    step.plan.push(rest.to_string());
                    state = In::Nothing;
                }
                "dead letters" => {
                    let step = case
                        .steps
                        .last_mut()
                        .ok_or(format!("line {}: dead letters before a statement", n + 1))?;
                    step.dead_letters = Some(rest.parse().map_err(|_| format!("line {}: not a count", n + 1))?);
                    state = In::Nothing;
                }
                _ => {
                    if state == In::Statement {
                        push_sql(&mut case, raw);
                    } else if state == In::Table {
                        state = In::Nothing;
                    }
                }
            }
            continue;
        }
        match state {
            In::Records if !line.is_empty() => {
                let topic = case.topics.last_mut().expect("records follow a topic");
                let index = topic.records.len() as i64;
                topic.records.push(record(line, index));
            }
            In::Statement => push_sql(&mut case, raw),
            In::Table if line.is_empty() => state = In::Nothing,
            In::Table => {
                if let Some(Expect::Rows { table, lines, .. }) = case.steps.last_mut().and_then(|s| s.expect.as_mut()) {
                    table.push(line.to_string());
                    lines.1 = n + 1;
                }
            }
            _ => {}
        }
    }
    Ok(case)
}

fn push_sql(case: &mut Case, line: &str) {
    let step = case.steps.last_mut().expect("a statement");
    step.sql.push_str(line);
    step.sql.push('\n');
}

fn topic_header(rest: &str) -> Result<Topic, String> {
    let mut words = rest.split_whitespace();
    let mut topic = Topic {
        name: words.next().ok_or("a topic needs a name")?.to_string(),
        partitions: 1,
        ..Topic::default()
    };
    for word in words {
        let (k, v) = word.split_once('=').ok_or(format!("{word:?} is not key=value"))?;
        match k {
            "partitions" => topic.partitions = v.parse().map_err(|_| format!("bad partitions {v:?}"))?,
            "format" => topic.format = Some(Format::parse(v).map_err(|e| e.to_string())?),
            "schema" => {
                let mut fields = Vec::new();
                for column in v.split(',') {
                    let (name, ty) = column.split_once(':').ok_or(format!("{column:?} is not name:Type"))?;
                    let ty: DataType = ty.parse().map_err(|e| format!("bad type {ty:?}: {e}"))?;
                    fields.push(Field::new(name, ty, true));
                }
                topic.schema = Some(fields);
            }
            _ => return Err(format!("unknown topic option {k:?}")),
        }
    }
    Ok(topic)
}

fn record(line: &str, index: i64) -> OutRecord {
    let mut out = OutRecord {
        partition: Some(0),
        timestamp_ms: Some(BASE_TIMESTAMP_MS + 1000 * index),
        value: Some(Bytes::copy_from_slice(line.as_bytes())),
        ..OutRecord::default()
    };
    if let Some((attrs, value)) = line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
        let pairs: Option<Vec<(&str, &str)>> = attrs.split_whitespace().map(|a| a.split_once('=')).collect();
        if let Some(pairs) = pairs.filter(|p| p.iter().all(|(k, _)| matches!(*k, "p" | "key" | "ts" | "hdr"))) {
            for (k, v) in pairs {
                match k {
                    "p" => out.partition = Some(v.parse().expect("a partition number")),
                    "key" => out.key = Some(Bytes::copy_from_slice(v.as_bytes())),
                    "hdr" => {
                        let (name, value) = v.split_once(':').expect("hdr=NAME:VALUE");
                        let value = Some(Bytes::copy_from_slice(value.as_bytes()));
                        out.headers.push((Bytes::copy_from_slice(name.as_bytes()), value));
                    }
                    _ => out.timestamp_ms = Some(v.parse().expect("a timestamp in ms")),
                }
            }
            out.value = Some(Bytes::copy_from_slice(value.as_bytes()));
        }
    }
    out
}

/// A broker on a temporary directory, reached embedded or over a socket.
struct Harness {
    _dir: tempfile::TempDir,
    broker: Arc<Broker>,
    access: Arc<dyn TopicAccess>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    async fn open(remote: bool) -> Harness {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("bound").port();
        let mut config = BrokerConfig::new(dir.path().to_path_buf());
        config.advertised_host = "127.0.0.1".to_string();
        config.advertised_port = i32::from(port);
        let broker = Broker::open(config).expect("the broker opens");
        let (access, server): (Arc<dyn TopicAccess>, _) = if remote {
            let server = tokio::spawn(brook_broker::server::serve(broker.clone(), listener));
            let config = ClientConfig::new([format!("127.0.0.1:{port}")]);
            (
                Arc::new(RemoteAccess::connect(config).await.expect("remote access connects")),
                Some(server),
            )
        } else {
            (Arc::new(EmbeddedAccess::new(broker.clone())), None)
        };
        Harness {
            _dir: dir,
            broker,
            access,
            server,
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
        let _ = self.broker.close();
    }
}

/// The rows of `output` as a pretty table (an empty one, with its header, when there are none).
async fn table(output: Output) -> Result<Vec<String>, String> {
    let batches = match output {
        Output::Batches(batches) => batches,
        Output::Stream(stream) => {
            let schema = stream.schema();
            let mut batches = datafusion::physical_plan::common::collect(stream)
                .await
                .map_err(|e| e.to_string())?;
            if batches.is_empty() {
                batches.push(RecordBatch::new_empty(schema));
            }
            batches
        }
        Output::Message(m) => return Ok(vec![m]),
    };
    let text = pretty_format_batches(&batches).map_err(|e| e.to_string())?.to_string();
    Ok(text.lines().map(str::to_string).collect())
}

/// The table with its data rows sorted, for comparisons that ignore order.
fn sorted(mut table: Vec<String>) -> Vec<String> {
    if table.len() > 4 {
        let end = table.len() - 1;
        table[3..end].sort();
    }
    table
}

/// Runs one case file; returns the failures (empty when it passes) and the tables produced.
async fn run_case(path: &Path, remote: bool) -> (Vec<String>, Vec<Option<Vec<String>>>) {
    let text = std::fs::read_to_string(path).expect("a readable case file");
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let kind = if remote { "remote" } else { "embedded" };
    let case = match parse(&text) {
        Ok(case) => case,
        Err(e) => return (vec![format!("{name}: {e}")], vec![]),
    };
    let harness = Harness::open(remote).await;
    let engine = SqlEngine::new(harness.access.clone());
    let dead = Arc::new(AtomicUsize::new(0));
    let counter = dead.clone();
    engine.set_dead_letters(Some(Arc::new(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    })));
    for topic in &case.topics {
        let spec = TopicSpec {
            name: topic.name.clone(),
            partitions: topic.partitions,
            configs: vec![],
        };
        harness.access.create_topic(spec).await.expect("the topic is created");
        harness
            .access
            .produce(&topic.name, topic.records.clone())
            .await
            .expect("the records are written");
        if let Some(format) = topic.format {
            let mut spec = FormatSpec::new(format);
            if let Some(fields) = &topic.schema {
                spec = spec.with_schema(Arc::new(Schema::new(fields.clone())));
            }
            engine.declare(&topic.name, &topic.name, spec);
        }
    }
    let mut failures = Vec::new();
    let mut produced = Vec::new();
    for step in &case.steps {
        let at = format!("{name}:{} ({kind})", step.line);
        let before = dead.load(Ordering::Relaxed);
        let result = match engine.execute(&step.sql).await {
            Ok(output) => table(output).await,
            Err(e) => Err(e.to_string()),
        };
        produced.push(result.as_ref().ok().cloned());
        match (&step.expect, &result) {
            (
                Some(Expect::Rows {
                    ordered,
                    table: expected,
                    ..
                }),
                Ok(actual),
            ) => {
                let same = if *ordered {
                    actual == expected
                } else {
                    sorted(actual.clone()) == sorted(expected.clone())
                };
                if !same {
                    failures.push(format!(
                        "{at}: expected\n{}\ngot\n{}",
                        expected.join("\n"),
                        actual.join("\n")
                    ));
                }
            }
            (Some(Expect::Error(text)), Err(e)) if e.contains(text.as_str()) => {}
            (Some(Expect::Error(text)), Err(e)) => {
                failures.push(format!("{at}: expected an error with {text:?}, got {e:?}"))
            }
            (Some(Expect::Error(text)), Ok(t)) => {
                failures.push(format!("{at}: expected an error with {text:?}, got\n{}", t.join("\n")))
            }
            (Some(Expect::Rows { .. }) | None, Err(e)) => failures.push(format!("{at}: failed: {e}")),
            (None, Ok(_)) => {}
        }
        if let Some(n) = step.dead_letters {
            let got = dead.load(Ordering::Relaxed) - before;
            if got != n {
                failures.push(format!("{at}: expected {n} dead letters, got {got}"));
            }
        }
        for wanted in &step.plan {
            let explain = format!("EXPLAIN {}", step.sql);
            let plan = match engine.execute(&explain).await {
                Ok(output) => table(output).await.map(|t| t.join("\n")),
                Err(e) => Err(e.to_string()),
            };
            match plan {
                Ok(plan) if plan.contains(wanted.as_str()) => {}
                Ok(plan) => failures.push(format!("{at}: the plan lacks {wanted:?}:\n{plan}")),
                Err(e) => failures.push(format!("{at}: EXPLAIN failed: {e}")),
            }
        }
    }
    (failures, produced)
}

/// Rewrites the expected tables of `path` with `produced`.
fn bless(path: &Path, produced: &[Option<Vec<String>>]) {
    let text = std::fs::read_to_string(path).expect("a readable case file");
    let case = parse(&text).expect("a valid case file");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Replace from the end so that earlier line numbers stay valid.
    for (step, actual) in case.steps.iter().zip(produced).rev() {
        if let (
            Some(Expect::Rows {
                lines: (header, last), ..
            }),
            Some(actual),
        ) = (&step.expect, actual)
        {
            let mut replacement = actual.clone();
            if lines.get(*last).is_some_and(|next| !next.trim().is_empty()) {
                replacement.push(String::new());
            }
            lines.splice(*header..*last, replacement);
        }
    }
    std::fs::write(path, lines.join("\n") + "\n").expect("the case file is rewritten");
}

fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/sql exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no case files in {}", dir.display());
    files
}

async fn run_all(remote: bool) {
    let blessing = !remote && std::env::var_os("BROOK_BLESS").is_some();
    let mut failures = Vec::new();
    for path in case_files() {
        let (failed, produced) = run_case(&path, remote).await;
        if blessing {
            bless(&path, &produced);
        }
        failures.extend(failed);
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_cases_embedded() {
    run_all(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_cases_remote() {
    run_all(true).await;
}

//! Pipelines end to end through the `brook` binary: the web-errors file from the README as it
//! stands, with log rotation, new files and bad lines while it runs; `kill -9` in the middle of
//! ingestion and a restart, after which the database holds each line exactly once; and the nginx
//! example into the real PostgreSQL server.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::pipeline::{wait_until, PipelineRun};
use common::TestDir;

/// A hang guard for waits on the pipeline (generous on purpose; not a performance threshold).
const DEADLINE: Duration = Duration::from_secs(120);

/// The pipeline file of the issue and the README, byte for byte.
const WEB_ERRORS: &str = r#"name: web-errors
sources:
  access:
    type: file
    path: ./logs/access*.log
    format: json
    start: beginning
transforms:
  errors:
    sql: SELECT ts, host, path, status FROM access WHERE status >= 500
sinks:
  db:
    type: sqlite
    input: errors
    path: ./out/errors.db
    table: errors
  archive:
    type: file
    input: errors
    path: ./out/errors.jsonl
    format: json
"#;

/// Access log line `i`: every third request is a server error, odd others are not found.
fn access_line(i: u64) -> String {
    let status = if i.is_multiple_of(3) {
        500 + i % 4
    } else {
        [200, 404][(i % 2) as usize]
    };
    format!(
        "{{\"ts\": \"2026-11-21T10:{:02}:{:02}Z\", \"host\": \"web-{}\", \"path\": \"/p/{i}\", \"status\": {status}}}\n",
        (i / 60) % 60,
        i % 60,
        i % 5
    )
}

/// The paths the errors table must hold for lines `range`.
fn expected_errors(range: std::ops::Range<u64>) -> Vec<String> {
    let mut paths: Vec<String> = range
        .filter(|i| i.is_multiple_of(3))
        .map(|i| format!("/p/{i}"))
        .collect();
    paths.sort();
    paths
}

fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    for line in lines {
        f.write_all(line.as_bytes()).expect("append");
    }
    f.sync_all().expect("sync log");
}

/// Every `path` in the SQLite errors table, sorted, duplicates kept (empty before it exists).
fn db_paths(db: &Path) -> Vec<String> {
    let Ok(conn) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare("SELECT path FROM errors") else {
        return Vec::new();
    };
    let mut paths: Vec<String> = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .map(|rows| rows.flatten().collect())
        .unwrap_or_default();
    paths.sort();
    paths
}

/// Every `path` in the JSON-lines archive, sorted, duplicates kept.
fn archive_paths(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut paths: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("archive line {l:?}: {e}"));
            v["path"].as_str().expect("a path").to_string()
        })
        .collect();
    paths.sort();
    paths
}

/// Lists duplicated entries of a sorted list.
fn duplicates(sorted: &[String]) -> Vec<&String> {
    sorted.windows(2).filter(|w| w[0] == w[1]).map(|w| &w[0]).collect()
}

#[test]
fn the_web_errors_file_runs_through_rotation_new_files_and_bad_lines() {
    let dir = TestDir::new();
    let root = dir.path();
    std::fs::create_dir_all(root.join("logs")).unwrap();
    std::fs::write(root.join("app.yaml"), WEB_ERRORS).unwrap();
    let log = root.join("logs/access-1.log");
    append(&log, (0..300).map(access_line));
    append(&log, ["this is not json\n".to_string(), "{\"broken\": \n".to_string()]);
    let db = root.join("out/errors.db");
    let archive = root.join("out/errors.jsonl");

    let mut run = PipelineRun::start(root, "app.yaml", 0);
    wait_until(&mut run, DEADLINE, "the first 300 lines in SQLite", || {
        db_paths(&db) == expected_errors(0..300)
    });

    // Rotation by rename while lines are still being written: the last lines go to the old file
    // just before it is renamed away (out of the glob), the next ones to a new file.
    append(&log, (300..350).map(access_line));
    std::fs::rename(&log, root.join("logs/access-1.log.1")).unwrap();
    append(&log, (350..450).map(access_line));
    // A new file matching the glob.
    append(&root.join("logs/access-2.log"), (450..600).map(access_line));
    wait_until(&mut run, DEADLINE, "every error line in SQLite after rotation", || {
        db_paths(&db) == expected_errors(0..600)
    });
    wait_until(&mut run, DEADLINE, "every error line in the archive", || {
        archive_paths(&archive) == expected_errors(0..600)
    });

    // The two bad lines are dead letters naming their error; the rest flowed.
    let letters = common::consume_json(&run.kafka_addr, "web-errors.access.dlq");
    assert_eq!(letters.len(), 2, "dead letters: {letters:?}");
    let text = serde_json::to_string(&letters).unwrap();
    assert!(text.contains("brook.error"), "dead letters name their error: {text}");

    // A clean stop and a restart carry on where they were.
    let status = run.terminate();
    assert!(status.success(), "brook pipeline run exited with {status}");
    append(&root.join("logs/access-2.log"), (600..700).map(access_line));
    let mut run = PipelineRun::start(root, "app.yaml", 1);
    wait_until(&mut run, DEADLINE, "lines written while stopped", || {
        db_paths(&db) == expected_errors(0..700)
    });
    wait_until(&mut run, DEADLINE, "the archive after the restart", || {
        archive_paths(&archive) == expected_errors(0..700)
    });
    let status = run.terminate();
    assert!(status.success(), "brook pipeline run exited with {status}");
}

#[test]
fn kill_9_during_ingestion_then_restart_leaves_each_line_once() {
    let dir = TestDir::new();
    let root = dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("logs")).unwrap();
    std::fs::write(root.join("app.yaml"), WEB_ERRORS).unwrap();
    let log = root.join("logs/access.log");
    let db = root.join("out/errors.db");
    let archive = root.join("out/errors.jsonl");
    const TOTAL: u64 = 6000;
    // A writer appends in small chunks so that each kill lands while lines are still arriving.
    let writer_log = log.clone();
    let writer = std::thread::spawn(move || {
        for chunk in (0..TOTAL).step_by(30) {
            append(&writer_log, (chunk..(chunk + 30).min(TOTAL)).map(access_line));
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let mut kills = BTreeMap::new();
    for round in 0..3 {
        let mut run = PipelineRun::start(&root, "app.yaml", round);
        let before = db_paths(&db).len();
        wait_until(&mut run, DEADLINE, "new rows before the kill", || {
            db_paths(&db).len() > before + 20
        });
        run.kill9();
        kills.insert(round, db_paths(&db).len());
    }
    let mut run = PipelineRun::start(&root, "app.yaml", 3);
    writer.join().unwrap();
    let expected = expected_errors(0..TOTAL);
    wait_until(&mut run, DEADLINE, "every error line after the kills", || {
        db_paths(&db).len() >= expected.len()
    });
    let rows = db_paths(&db);
    assert_eq!(
        duplicates(&rows),
        Vec::<&String>::new(),
        "rows written twice (rows at each kill: {kills:?})"
    );
    assert_eq!(rows, expected, "rows at each kill: {kills:?}");
    wait_until(&mut run, DEADLINE, "the archive after the kills", || {
        archive_paths(&archive).len() >= expected.len()
    });
    let lines = archive_paths(&archive);
    assert_eq!(duplicates(&lines), Vec::<&String>::new(), "archive lines written twice");
    assert_eq!(lines, expected);
    // The kills landed in the middle of ingestion, not after it.
    assert!(
        kills.values().any(|n| *n < expected.len()),
        "every kill came after ingestion ended: {kills:?}"
    );
    let status = run.terminate();
    assert!(status.success(), "brook pipeline run exited with {status}");
}

/// A PostgreSQL client for the test, or None (skip) when the server is unreachable outside CI.
fn postgres() -> Option<(tokio::runtime::Runtime, tokio_postgres::Client)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connected = rt.block_on(tokio_postgres::connect(
        "host=127.0.0.1 user=postgres dbname=test connect_timeout=5",
        tokio_postgres::NoTls,
    ));
    match connected {
        Ok((client, connection)) => {
            rt.spawn(connection);
            Some((rt, client))
        }
        Err(e) if common::in_ci() => panic!("PostgreSQL is required under CI=true: {e}"),
        Err(e) => {
            eprintln!("skipping: PostgreSQL at 127.0.0.1:5432 is unreachable ({e})");
            None
        }
    }
}

fn nginx_line(i: u64) -> String {
    let status = [200, 200, 304, 404, 503][(i % 5) as usize];
    format!(
        "203.0.113.{} - - [21/Nov/2026:10:{:02}:{:02} +0000] \"GET /item/{i} HTTP/1.1\" {status} {} \"-\" \"curl/8.5.0\"\n",
        i % 250,
        (i / 60) % 60,
        i % 60,
        i * 7 % 5000
    )
}

#[test]
fn the_nginx_example_fills_postgres_and_parquet_with_rotated_and_gzipped_logs() {
    let Some((rt, pg)) = postgres() else {
        return;
    };
    let table = format!("nginx_requests_e2e_{}", std::process::id());
    rt.block_on(pg.execute(&format!("DROP TABLE IF EXISTS {table}"), &[]))
        .unwrap();
    let dir = TestDir::new();
    let root = dir.path();
    let example = std::fs::read_to_string(common::repo_root().join("pipelines/examples/nginx.yaml")).unwrap();
    assert!(example.contains("table: nginx_requests\n"));
    // A pipeline name of its own: the sink stores its offsets in the database under it.
    let name = format!("nginx-e2e-{}", std::process::id());
    let file = example
        .replace("table: nginx_requests\n", &format!("table: {table}\n"))
        .replace("name: nginx\n", &format!("name: {name}\n"));
    std::fs::write(root.join("nginx.yaml"), file).unwrap();
    let logs = root.join("logs/nginx");
    std::fs::create_dir_all(&logs).unwrap();
    // An old rotated file, gzip'd, read once; a plain rotated one; the live one with a bad line.
    let gz = std::fs::File::create(logs.join("access.log.2.gz")).unwrap();
    let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::default());
    for i in 0..100 {
        enc.write_all(nginx_line(i).as_bytes()).unwrap();
    }
    enc.finish().unwrap().sync_all().unwrap();
    append(&logs.join("access.log.1"), (100..200).map(nginx_line));
    append(&logs.join("access.log"), (200..300).map(nginx_line));
    append(
        &logs.join("access.log"),
        ["garbage that is not a log line\n".to_string()],
    );

    let mut run = PipelineRun::start(root, "nginx.yaml", 0);
    let count = |pg: &tokio_postgres::Client| -> i64 {
        rt.block_on(pg.query_one(&format!("SELECT count(*) FROM {table}"), &[]))
            .map(|r| r.get(0))
            .unwrap_or(0)
    };
    wait_until(&mut run, DEADLINE, "300 rows in PostgreSQL", || count(&pg) >= 300);
    append(&logs.join("access.log"), (300..350).map(nginx_line));
    wait_until(&mut run, DEADLINE, "350 rows in PostgreSQL", || count(&pg) >= 350);
    assert_eq!(count(&pg), 350);
    let row = rt
        .block_on(pg.query_one(
            &format!("SELECT status, bytes_sent, server_error, method FROM {table} WHERE path = '/item/4'"),
            &[],
        ))
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 503);
    assert_eq!(row.get::<_, i64>(1), 28);
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, String>(3), "GET");
    let letters = common::consume_json(&run.kafka_addr, &format!("{name}.access.dlq"));
    assert_eq!(letters.len(), 1, "dead letters: {letters:?}");
    // Stopping closes the open Parquet file under its final name.
    let status = run.terminate();
    assert!(status.success(), "brook pipeline run exited with {status}");
    let parquet: Vec<_> = walk(&root.join("out/nginx"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!parquet.is_empty(), "no parquet file under out/nginx");
    rt.block_on(pg.execute(&format!("DROP TABLE IF EXISTS {table}"), &[]))
        .unwrap();
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_stdin_pipeline_ends_when_its_input_does_with_everything_written() {
    let dir = TestDir::new();
    let root = dir.path();
    std::fs::write(
        root.join("stdin.yaml"),
        "name: from-stdin\nsources:\n  lines:\n    type: stdin\n    format: json\ntransforms:\n  errors:\n    sql: SELECT path, status FROM lines WHERE status >= 500\nsinks:\n  db:\n    type: sqlite\n    input: errors\n    path: ./out/errors.db\n    table: errors\n",
    )
    .unwrap();
    let input = root.join("input.log");
    append(&input, (0..500).map(access_line));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook"));
    cmd.current_dir(root)
        .args(["pipeline", "run", "stdin.yaml", "--progress-interval-secs", "0"]);
    let out = common::run_with_stdin(cmd, Some(&input), "brook pipeline run with stdin");
    assert!(out.status.success(), "exit {}: {}", out.status, out.stderr);
    assert_eq!(db_paths(&root.join("out/errors.db")), expected_errors(0..500));
}

#[test]
fn serve_runs_a_pipelines_folder_and_restarts_a_changed_file() {
    let dir = TestDir::new();
    let root = dir.path();
    let folder = root.join("pipelines");
    std::fs::create_dir_all(root.join("logs")).unwrap();
    std::fs::create_dir_all(&folder).unwrap();
    let folder_arg = folder.to_str().unwrap().to_string();
    let mut broker = common::Broker::start_with(&dir.data_dir(), root, &[], &["--pipelines", &folder_arg]);
    // Paths in a pipeline file are relative to the file's folder.
    let file = WEB_ERRORS.replace("./logs/", "../logs/").replace("./out/", "../out/");
    append(&root.join("logs/access.log"), (0..90).map(access_line));
    std::fs::write(folder.join("web.yaml"), &file).unwrap();
    let db = root.join("out/errors.db");
    let end = std::time::Instant::now() + DEADLINE;
    while db_paths(&db) != expected_errors(0..90) {
        broker.assert_running("while the folder's pipeline runs");
        assert!(
            std::time::Instant::now() < end,
            "the folder's pipeline wrote nothing:\n{}",
            broker.log_tail(60)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // An invalid edit is reported and the running version keeps going.
    std::fs::write(
        folder.join("web.yaml"),
        file.replace("format: json\n    start", "format: jsn\n    start"),
    )
    .unwrap();
    append(&root.join("logs/access.log"), (90..120).map(access_line));
    while db_paths(&db) != expected_errors(0..120) {
        assert!(
            std::time::Instant::now() < end,
            "the old version stopped:\n{}",
            broker.log_tail(60)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A valid change restarts the pipeline: now 4xx lines are kept too, from where it was.
    std::fs::write(folder.join("web.yaml"), file.replace("status >= 500", "status >= 400")).unwrap();
    // Lines written before the restart may still go through the old version: wait for it.
    while !broker.log_tail(400).contains("pipeline file changed; restarting it") {
        assert!(
            std::time::Instant::now() < end,
            "the change was not picked up:\n{}",
            broker.log_tail(60)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    append(&root.join("logs/access.log"), (120..180).map(access_line));
    let wanted = |paths: &[String]| {
        (120..180u64)
            .filter(|i| i.is_multiple_of(3) || i % 2 == 1)
            .all(|i| paths.contains(&format!("/p/{i}")))
    };
    while !wanted(&db_paths(&db)) {
        assert!(
            std::time::Instant::now() < end,
            "the changed pipeline did not run:\n{}",
            broker.log_tail(80)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rows = db_paths(&db);
    assert_eq!(duplicates(&rows), Vec::<&String>::new());
    broker.stop_clean();
}

/// POSTs `body` to `path` on `addr` with a hand-written HTTP/1.1 request; returns status and body.
fn post(addr: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the HTTP listener");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

#[test]
fn an_http_source_answers_once_records_are_durable_and_they_reach_sqlite() {
    let dir = TestDir::new();
    let root = dir.path();
    std::fs::write(
        root.join("hook.yaml"),
        "name: hook\nsources:\n  events:\n    type: http\ntransforms:\n  errors:\n    sql: SELECT path, status FROM events WHERE status >= 500\nsinks:\n  db:\n    type: sqlite\n    input: errors\n    path: ./out/errors.db\n    table: errors\n",
    )
    .unwrap();
    let mut run = PipelineRun::start_with(root, "hook.yaml", 0, &["--http-listen", "127.0.0.1:0"]);
    assert!(!run.http_addr.is_empty(), "no listening http line");
    let body: String = (0..60).map(access_line).collect::<String>() + "not json\n";
    let (status, answer) = post(&run.http_addr, "/v1/pipelines/hook/sources/events", &body);
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["records"], 60, "{answer}");
    assert_eq!(answer["rejected"], 1, "{answer}");
    // The answer came once the records were durable in the source topic.
    let events = common::consume_json(&run.kafka_addr, "hook.events");
    assert_eq!(events.len(), 60);
    let db = root.join("out/errors.db");
    wait_until(&mut run, DEADLINE, "the posted errors in SQLite", || {
        db_paths(&db) == expected_errors(0..60)
    });
    let (status, _) = post(&run.http_addr, "/v1/pipelines/hook/sources/nope", "{}");
    assert_eq!(status, 404);
    let letters = common::consume_json(&run.kafka_addr, "hook.events.dlq");
    assert_eq!(letters.len(), 1);
    let status = run.terminate();
    assert!(status.success(), "brook pipeline run exited with {status}");
}

#[test]
fn validate_test_and_explain_from_the_command_line() {
    let dir = TestDir::new();
    let root = dir.path();
    std::fs::write(
        root.join("bad.yaml"),
        "name: web\nsources:\n  access:\n    type: file\n    pathx: ./a.log\n    format: json\nsinks:\n  db:\n    type: sqlit\n    input: access\n",
    )
    .unwrap();
    let brook = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook"));
        cmd.current_dir(root).args(args);
        common::run(cmd, "brook pipeline")
    };
    let out = brook(&["pipeline", "validate", "bad.yaml"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("bad.yaml:5:5: error: unknown key \"pathx\""),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("did you mean \"path\"?"), "{}", out.stderr);
    assert!(
        out.stderr.contains("bad.yaml:9:11: error: unknown sink type \"sqlit\""),
        "{}",
        out.stderr
    );

    let examples = common::repo_root().join("pipelines/examples");
    let web = examples.join("web-errors.yaml");
    let out = brook(&["pipeline", "test", web.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("2 passed, 0 failed"), "{}", out.stdout);
    let out = brook(&["pipeline", "explain", "--mermaid", web.to_str().unwrap()]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.starts_with("graph LR"), "{}", out.stdout);
    assert!(out.stdout.contains("web-errors.errors"), "{}", out.stdout);
}

#[test]
fn a_pipeline_runs_unchanged_against_a_cluster_over_the_kafka_protocol() {
    let dir = TestDir::new();
    let root = dir.path();
    let broker = dir.start_broker(&[]);
    std::fs::write(
        root.join("stdin.yaml"),
        "name: remote\nsources:\n  lines:\n    type: stdin\n    format: json\ntransforms:\n  errors:\n    sql: SELECT path, status FROM lines WHERE status >= 500\nsinks:\n  db:\n    type: sqlite\n    input: errors\n    path: ./out/errors.db\n    table: errors\n",
    )
    .unwrap();
    let input = root.join("input.log");
    append(&input, (0..300).map(access_line));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook"));
    cmd.current_dir(root).args([
        "pipeline",
        "run",
        "stdin.yaml",
        "--bootstrap-server",
        &broker.addr,
        "--progress-interval-secs",
        "0",
    ]);
    let out = common::run_with_stdin(cmd, Some(&input), "brook pipeline run --bootstrap-server");
    assert!(out.status.success(), "exit {}: {}", out.status, out.stderr);
    assert_eq!(db_paths(&root.join("out/errors.db")), expected_errors(0..300));
    assert!(
        !root.join("brook-data").exists(),
        "no embedded broker when a cluster is given"
    );
    // The steps' topics are on the cluster.
    let errors = common::consume_json(&broker.addr, "remote.errors");
    assert_eq!(errors.len(), expected_errors(0..300).len());
}

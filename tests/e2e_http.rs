//! End-to-end tests of the HTTP API of `brook serve`: statements run and answer rows or
//! messages, errors are 400 with a position, query jobs are listed and stopped, topics are
//! listed, and oversize bodies get 413; `brook sql --server` goes through the same API.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{run, run_with_stdin, TestDir, CLIENT_DEADLINE};
use serde_json::{json, Value};

/// The largest request body the server accepts (its `MAX_REQUEST_BODY_BYTES`).
const MAX_REQUEST_BODY_BYTES: usize = 1024 * 1024;

/// Sends one HTTP/1.1 request with `Connection: close` and returns the status and JSON body.
fn http(addr: &str, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(CLIENT_DEADLINE)).unwrap();
    let body = body.unwrap_or(b"");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading all of an oversize body; that is fine.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: reading the response: {e}"));
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!(
            "{method} {path}: no end of headers in {:?}",
            String::from_utf8_lossy(&raw)
        )
    });
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "JSON answers carry a Content-Length: {head}"
    );
    let body = &raw[end + 4..];
    let value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    });
    (status, value)
}

/// Runs a statement through `POST /v1/statements`.
fn statement(addr: &str, sql: &str) -> (u16, Value) {
    let body = json!({ "sql": sql }).to_string();
    http(addr, "POST", "/v1/statements", Some(body.as_bytes()))
}

/// Runs a statement that must succeed and returns its answer.
fn ok(addr: &str, sql: &str) -> Value {
    let (status, body) = statement(addr, sql);
    assert_eq!(status, 200, "{sql}: {body}");
    body
}

/// Writes JSON access-log records to `topic` with `brook produce`.
fn produce(dir: &TestDir, broker_addr: &str, topic: &str, records: &[Value]) {
    let file = dir.file(&format!("{topic}.ndjson"));
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook"));
    cmd.args(["produce", "--bootstrap-server", broker_addr, "--topic", topic]);
    let out = run_with_stdin(cmd, Some(&file), "brook produce");
    assert!(out.status.success(), "brook produce: {}", out.stderr);
}

fn access_records() -> Vec<Value> {
    (0..20)
        .map(|i| {
            let status = [200, 200, 404, 500, 503][i % 5];
            json!({ "host": format!("web-{}", i % 2), "path": format!("/p{i}"), "status": status, "bytes": i * 10 })
        })
        .collect()
}

/// Polls `GET /v1/queries` until `pred` holds for the job named `name` (a deadline turns a
/// hang into a failure; it is no timing threshold).
fn wait_for_job(addr: &str, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + CLIENT_DEADLINE;
    loop {
        let (status, body) = http(addr, "GET", "/v1/queries", None);
        assert_eq!(status, 200, "{body}");
        let job = body["queries"]
            .as_array()
            .expect("queries array")
            .iter()
            .find(|j| j["name"] == json!(name))
            .cloned();
        if let Some(job) = job {
            if pred(&job) {
                return job;
            }
        }
        assert!(
            Instant::now() < end,
            "job {name}: {what} did not happen; last list: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn statements_errors_queries_and_limits() {
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    let addr = broker.http_addr.clone();

    let (status, body) = http(&addr, "GET", "/healthz", None);
    assert_eq!((status, body), (200, json!({ "status": "ok" })));

    broker.create_topic("access", 2, &[]);
    produce(&dir, &broker.addr, "access", &access_records());
    let created = ok(
        &addr,
        "CREATE STREAM access (host TEXT, path TEXT, status INT, bytes BIGINT) WITH (topic = 'access', format = 'json')",
    );
    assert!(created["message"].is_string(), "DDL answers a message: {created}");

    // A bounded query answers its rows with faithful types.
    let answer = ok(
        &addr,
        "SELECT status, count(*) AS n FROM access GROUP BY status ORDER BY status",
    );
    assert_eq!(answer["columns"], json!(["status", "n"]), "{answer}");
    assert_eq!(
        answer["rows"],
        json!([[200, 8], [404, 4], [500, 4], [503, 4]]),
        "{answer}"
    );
    assert!(answer.get("truncated").is_none(), "{answer}");

    // Rows are bounded: a smaller page is asked for and reported truncated.
    let body = json!({ "sql": "SELECT path FROM access", "max_rows": 3 }).to_string();
    let (status, page) = http(&addr, "POST", "/v1/statements", Some(body.as_bytes()));
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["rows"].as_array().unwrap().len(), 3, "{page}");
    assert_eq!(page["truncated"], json!(true), "{page}");

    // A syntax error is the user's: 400 with the position of the offending token.
    let (status, error) = statement(&addr, "SELECT status\nFROM access WHERE status >>= 500");
    assert_eq!(status, 400, "{error}");
    assert!(error["error"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
    assert_eq!(error["line"], json!(2), "{error}");
    assert!(error["column"].as_u64().is_some_and(|c| c > 1), "{error}");
    // So is an unknown table, and a body that is not a statement.
    let (status, error) = statement(&addr, "SELECT * FROM no_such_stream");
    assert_eq!(status, 400, "{error}");
    let (status, error) = http(&addr, "POST", "/v1/statements", Some(b"{\"query\": 1}"));
    assert_eq!(status, 400, "{error}");

    // A continuous query runs inside the server, is listed, described and stopped.
    ok(
        &addr,
        "CREATE STREAM errors WITH (topic = 'errors', format = 'json') AS SELECT host, status FROM access WHERE status >= 500",
    );
    let job = wait_for_job(&addr, "errors", "8 records out", |j| {
        j["records_out"].as_u64() == Some(8)
    });
    assert_eq!(job["records_in"], json!(20), "{job}");
    let id = job["id"].as_str().expect("job id").to_string();
    let (status, described) = http(&addr, "GET", &format!("/v1/queries/{id}"), None);
    assert_eq!(status, 200, "{described}");
    assert_eq!(described["id"], json!(id));
    assert!(
        described["sql"].as_str().is_some_and(|s| s.contains("status >= 500")),
        "{described}"
    );
    let (status, stopped) = http(&addr, "DELETE", &format!("/v1/queries/{id}"), None);
    assert_eq!(status, 200, "{stopped}");
    let (status, after) = http(&addr, "GET", &format!("/v1/queries/{id}"), None);
    assert!(
        status == 404 || (status == 200 && after["state"] != json!("running")),
        "a stopped job is gone or not running: {status} {after}"
    );
    let (status, missing) = http(&addr, "GET", "/v1/queries/no-such-job", None);
    assert_eq!(status, 404, "{missing}");

    // Topics are listed.
    let (status, topics) = http(&addr, "GET", "/v1/topics", None);
    assert_eq!(status, 200, "{topics}");
    let names: Vec<&str> = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"access") && names.contains(&"errors"), "{topics}");

    // An oversize body is refused with 413 and a JSON error; the server keeps serving.
    let sql = format!("SELECT '{}'", "x".repeat(MAX_REQUEST_BODY_BYTES));
    let (status, error) = statement(&addr, &sql);
    assert_eq!(status, 413, "{error}");
    assert!(
        error["error"].as_str().is_some_and(|m| m.contains("larger than")),
        "{error}"
    );
    let (status, _) = http(&addr, "GET", "/healthz", None);
    assert_eq!(status, 200);

    // Unknown paths are 404 with a JSON error.
    let (status, error) = http(&addr, "GET", "/v1/nothing", None);
    assert_eq!(status, 404, "{error}");
}

#[test]
fn cli_sql_talks_to_the_server() {
    let dir = TestDir::new();
    let broker = dir.start_broker(&[]);
    broker.create_topic("access", 1, &[]);
    produce(&dir, &broker.addr, "access", &access_records());
    let server = format!("http://{}", broker.http_addr);
    let brook = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook"));
        cmd.arg("sql").arg("--server").arg(&server).args(args);
        run(cmd, "brook sql --server")
    };
    let out = brook(&[
        "CREATE STREAM access (host TEXT, path TEXT, status INT, bytes BIGINT) WITH (topic = 'access', format = 'json')",
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    let out = brook(&[
        "--format",
        "json",
        "SELECT status, count(*) AS n FROM access WHERE status >= 500 GROUP BY status ORDER BY status",
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "{\"status\":500,\"n\":4}\n{\"status\":503,\"n\":4}\n");
    // The stream was declared in the server: the statement ran there, not in the CLI.
    let (status, _) = statement(&broker.http_addr, "SELECT count(*) FROM access");
    assert_eq!(status, 200);
    let out = brook(&["SELECT FROM WHERE"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("400"), "{}", out.stderr);
}

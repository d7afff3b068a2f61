//! Tests of the `http` sink against a real HTTP/1.1 server written here on a tokio TcpListener,
//! which can fail its first requests with 503 or refuse every request with a given status.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::compliance::{check_sink, SinkUnderTest};
use crate::sinks::test_support::{self, with_extra};

/// Bytes of request head the server reads at most.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// One request the server answered.
#[derive(Debug, Clone)]
struct Received {
    /// The request line, e.g. `POST /hook HTTP/1.1`.
    line: String,
    /// Headers, names lowercased.
    headers: Vec<(String, String)>,
    /// The body.
    body: Vec<u8>,
    /// The status answered.
    status: u16,
}

/// The test server's behaviour and what it saw.
#[derive(Default)]
struct Server {
    /// Requests in arrival order.
    received: Mutex<Vec<Received>>,
    /// How many of the next requests get 503.
    fail_next: AtomicUsize,
    /// When set, every request gets this status and body.
    refuse: Mutex<Option<(u16, String)>>,
}

impl Server {
    /// Starts a server; returns it and its base URL.
    async fn start() -> (Arc<Server>, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = Arc::new(Server::default());
        let accepting = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = accepting.clone();
                tokio::spawn(async move { server.serve(stream).await });
            }
        });
        (server, url)
    }

    /// Answers requests on one connection until the client closes it.
    async fn serve(&self, stream: TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        loop {
            let mut head = Vec::new();
            let mut line = String::new();
            loop {
                line.clear();
                match read.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
                assert!(
                    head.iter().map(String::len).sum::<usize>() < MAX_HEAD_BYTES,
                    "request head too big"
                );
            }
            let request_line = head.first().cloned().unwrap_or_default();
            let headers: Vec<(String, String)> = head[1..]
                .iter()
                .filter_map(|h| h.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let length = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            if read.read_exact(&mut body).await.is_err() {
                return;
            }
            let refuse = self.refuse.lock().unwrap().clone();
            let (status, reply) = match refuse {
                Some((status, reply)) => (status, reply),
                None if self
                    .fail_next
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok() =>
                {
                    (503, "busy".to_string())
                }
                None => (200, String::new()),
            };
            self.received.lock().unwrap().push(Received {
                line: request_line,
                headers,
                body,
                status,
            });
            let response = format!(
                "HTTP/1.1 {status} Status\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{reply}",
                reply.len()
            );
            if write.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    /// Requests received so far.
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The rows of every request answered 200, in order, from NDJSON bodies.
    fn rows(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        self.received()
            .iter()
            .filter(|r| r.status == 200)
            .flat_map(|r| {
                String::from_utf8(r.body.clone())
                    .unwrap()
                    .lines()
                    .map(|l| match serde_json::from_str(l) {
                        Ok(serde_json::Value::Object(row)) => row,
                        other => panic!("not a JSON object line: {l:?} ({other:?})"),
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn ctx() -> Context {
    Context {
        name: "p.hook".into(),
        base_dir: ".".into(),
    }
}

/// A sink over `url` with fast retries and `extra` configuration.
async fn sink(url: &str, extra: serde_json::Value) -> Box<dyn Sink> {
    let config = with_extra(
        serde_json::json!({"url": url, "retry_backoff_ms": 1, "max_backoff_ms": 4}),
        extra,
    );
    let mut sink = build(&ctx(), config).unwrap();
    assert_eq!(sink.open("t").await.unwrap(), None, "the http sink stores no offsets");
    sink
}

/// Writes rows with ids `ids` (at offsets equal to the ids).
async fn write(sink: &mut dyn Sink, ids: std::ops::Range<i64>) -> Result<()> {
    let first = ids.start;
    let ids: Vec<i64> = ids.collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(StringArray::from_iter(
            ids.iter().map(|i| (i % 3 != 0).then(|| format!("n{i}"))),
        )),
    ];
    let rows = RecordBatch::try_new(schema, columns).unwrap();
    test_support::write(sink, &rows, 0, first).await
}

fn ids(rows: &[serde_json::Map<String, serde_json::Value>]) -> Vec<i64> {
    rows.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn batches_arrive_as_ndjson_in_order_split_by_batch_rows() {
    let (server, url) = Server::start().await;
    let mut sink = sink(
        &url,
        serde_json::json!({"batch_rows": 3, "headers": {"X-Token": "s3cret"}}),
    )
    .await;
    write(sink.as_mut(), 0..10).await.unwrap();
    write(sink.as_mut(), 10..12).await.unwrap();
    let received = server.received();
    let sizes: Vec<usize> = received
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).lines().count())
        .collect();
    assert_eq!(sizes, vec![3, 3, 3, 1, 2]);
    assert_eq!(ids(&server.rows()), (0..12).collect::<Vec<_>>());
    let first = &received[0];
    assert_eq!(first.line, "POST /hook HTTP/1.1");
    let header = |name: &str| first.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(header("content-type"), Some("application/x-ndjson"));
    assert_eq!(header("x-token"), Some("s3cret"));
    // Null fields are left out.
    assert_eq!(String::from_utf8_lossy(&first.body).lines().next(), Some(r#"{"id":0}"#));
}

#[tokio::test]
async fn json_array_bodies_hold_one_array_per_request() {
    let (server, url) = Server::start().await;
    let mut sink = sink(&url, serde_json::json!({"format": "json_array"})).await;
    write(sink.as_mut(), 1..3).await.unwrap();
    let received = server.received();
    assert_eq!(received.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!([{"id": 1, "name": "n1"}, {"id": 2, "name": "n2"}])
    );
    let content_type = received[0].headers.iter().find(|(n, _)| n == "content-type");
    assert_eq!(content_type.map(|(_, v)| v.as_str()), Some("application/json"));
}

#[tokio::test]
async fn failures_are_retried_until_the_server_accepts() {
    let (server, url) = Server::start().await;
    server.fail_next.store(3, Ordering::SeqCst);
    let mut sink = sink(&url, serde_json::json!({"max_retries": 5})).await;
    write(sink.as_mut(), 0..4).await.unwrap();
    let statuses: Vec<u16> = server.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 503, 200]);
    assert_eq!(ids(&server.rows()), vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn retries_run_out_with_a_retriable_error() {
    let (server, url) = Server::start().await;
    server.fail_next.store(10, Ordering::SeqCst);
    let mut sink = sink(&url, serde_json::json!({"max_retries": 2})).await;
    let err = write(sink.as_mut(), 0..1).await.unwrap_err();
    assert!(err.is_retriable(), "{err}");
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn a_client_error_fails_at_once_quoting_the_body() {
    let (server, url) = Server::start().await;
    let long = format!("bad payload: {}", "x".repeat(500));
    *server.refuse.lock().unwrap() = Some((400, long));
    let mut sink = sink(&url, serde_json::json!({})).await;
    let err = write(sink.as_mut(), 0..2).await.unwrap_err();
    assert!(!err.is_retriable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("400") && text.contains("bad payload"), "{text}");
    assert!(
        !text.contains(&"x".repeat(190)),
        "only 200 bytes of the body are quoted: {text}"
    );
    assert_eq!(server.received().len(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn too_many_requests_is_retried() {
    let (server, url) = Server::start().await;
    *server.refuse.lock().unwrap() = Some((429, "slow down".into()));
    let mut sink = sink(&url, serde_json::json!({"max_retries": 1})).await;
    let err = write(sink.as_mut(), 0..1).await.unwrap_err();
    assert!(err.is_retriable() && err.to_string().contains("429"), "{err}");
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn connection_errors_are_retried_then_reported() {
    // A port nobody listens on: bind one, then let it go.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let mut sink = sink(&url, serde_json::json!({"max_retries": 2})).await;
    let err = write(sink.as_mut(), 0..1).await.unwrap_err();
    assert!(err.is_retriable(), "{err}");
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
}

#[test]
fn the_configuration_is_checked() {
    let refused = |config: serde_json::Value, needle: &str| {
        let err = build(&ctx(), config).err().expect("refused").to_string();
        assert!(err.contains(needle), "{err} should mention {needle}");
    };
    refused(serde_json::json!({"url": "https://example.com/"}), "TLS");
    refused(serde_json::json!({"url": "ftp://example.com/"}), "ftp");
    refused(serde_json::json!({"url": "not a url"}), "url");
    refused(serde_json::json!({"url": "http://h/", "batch_rows": 0}), "batch_rows");
    refused(
        serde_json::json!({"url": "http://h/", "headers": {"bad name": "v"}}),
        "header",
    );
    refused(
        serde_json::json!({"url": "http://h/", "retry_backoff_ms": 10, "max_backoff_ms": 5}),
        "max_backoff_ms",
    );
    refused(serde_json::json!({"url": "http://h/", "verb": "PUT"}), "verb");
    assert!(build(&ctx(), serde_json::json!({"url": "http://h:8080/x"})).is_ok());
}

#[tokio::test]
async fn http_passes_the_sink_compliance_check() {
    let (server, url) = Server::start().await;
    // Some requests fail first, so retries are part of the check.
    server.fail_next.store(2, Ordering::SeqCst);
    let config = serde_json::json!({"url": url, "retry_backoff_ms": 1, "max_backoff_ms": 4, "batch_rows": 4});
    let reader = server.clone();
    check_sink(SinkUnderTest {
        make: Box::new(move || build(&ctx(), config.clone()).unwrap()),
        read: Box::new(move || {
            let rows = reader.rows();
            Box::pin(async move { rows })
        }),
    })
    .await;
}

//! Job tests against a broker in this process (EmbeddedAccess on a temporary directory): a
//! filter and projection writes the expected records, bad records become dead letters while
//! the rest flows, and a stopped query resumes at its committed offsets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use brook_broker::access::embedded::EmbeddedAccess;
use brook_broker::access::{ConsumerRecord, Isolation, OffsetSpec, OutRecord, TopicAccess, TopicSpec};
use brook_broker::{Broker, BrokerConfig};
use bytes::Bytes;

use super::statements::execute;
use super::{group_id, JobManager, JobSettings, JobState};
use crate::catalog::Catalog;
use crate::dlq;
use crate::sql::{ddl, Output};

/// How long a test waits for output before it fails (a hang guard, not a threshold).
pub(super) const DEADLINE: Duration = Duration::from_secs(60);

pub(super) struct Cluster {
    _dir: tempfile::TempDir,
    pub(super) broker: Arc<Broker>,
    pub(super) access: Arc<dyn TopicAccess>,
}

pub(super) fn cluster() -> Cluster {
    cluster_with(&[])
}

/// A cluster with broker configs `extra` on top of the tests' own.
pub(super) fn cluster_with(extra: &[(&str, &str)]) -> Cluster {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = BrokerConfig::new(dir.path().to_path_buf());
    config.set("offsets.topic.num.partitions", "1").expect("a valid config");
    config
        .set("transaction.state.log.num.partitions", "1")
        .expect("a valid config");
    for (name, value) in extra {
        config.set(name, value).expect("a valid config");
    }
    let broker = Broker::open(config).expect("broker opens");
    tokio::spawn(broker.groups.clone().run_timers(broker.shutdown_signal()));
    let access: Arc<dyn TopicAccess> = Arc::new(EmbeddedAccess::new(broker.clone()));
    Cluster {
        _dir: dir,
        broker,
        access,
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.broker.close();
    }
}

pub(super) fn settings() -> JobSettings {
    JobSettings {
        max_batch_records: 4,
        fetch_wait_ms: 100,
        retry_backoff_ms: 50,
        catalog_poll_ms: 100,
        ..Default::default()
    }
}

async fn manager(access: &Arc<dyn TopicAccess>) -> Arc<JobManager> {
    manager_with(access, settings()).await
}

/// A started job manager with `settings`.
pub(super) async fn manager_with(access: &Arc<dyn TopicAccess>, settings: JobSettings) -> Arc<JobManager> {
    let catalog = Catalog::open(access.clone()).await.expect("catalog opens");
    let jobs = JobManager::new(access.clone(), catalog, settings);
    jobs.start().await.expect("jobs start");
    jobs
}

pub(super) async fn run(jobs: &Arc<JobManager>, sql: &str) -> String {
    let statement = ddl::parse(sql).expect("parses").expect("a streaming statement");
    match execute(jobs, statement, sql).await {
        Ok(Output::Message(m)) => m,
        Ok(_) => panic!("{sql}: expected a message"),
        Err(e) => panic!("{sql}: {e}"),
    }
}

pub(super) async fn create_topic(access: &Arc<dyn TopicAccess>, name: &str, partitions: i32) {
    let spec = TopicSpec {
        name: name.into(),
        partitions,
        configs: vec![],
    };
    access.create_topic(spec).await.expect("topic created");
}

pub(super) async fn produce(access: &Arc<dyn TopicAccess>, topic: &str, values: &[&str]) {
    let records = values
        .iter()
        .enumerate()
        .map(|(i, v)| OutRecord {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(v.to_string())),
            ..OutRecord::default()
        })
        .collect();
    access.produce(topic, records).await.expect("produced");
}

/// Reads `topic` (every partition) until it holds at least `n` records or the deadline passes.
pub(super) async fn read_at_least(access: &Arc<dyn TopicAccess>, topic: &str, n: usize) -> Vec<ConsumerRecord> {
    read_isolated(access, topic, n, Isolation::ReadUncommitted).await
}

/// As [`read_at_least`], read_committed.
pub(super) async fn read_committed(access: &Arc<dyn TopicAccess>, topic: &str, n: usize) -> Vec<ConsumerRecord> {
    read_isolated(access, topic, n, Isolation::ReadCommitted).await
}

async fn read_isolated(
    access: &Arc<dyn TopicAccess>,
    topic: &str,
    n: usize,
    isolation: Isolation,
) -> Vec<ConsumerRecord> {
    let end = Instant::now() + DEADLINE;
    let mut positions: Vec<(i32, i64)> = Vec::new();
    let mut out = Vec::new();
    loop {
        if positions.is_empty() {
            if let Ok(p) = access.list_offsets(topic, OffsetSpec::Earliest).await {
                positions = p;
            }
        }
        for (p, o) in positions.iter_mut() {
            if let Ok(f) = access.fetch_isolated(topic, *p, *o, 1 << 20, 100, isolation).await {
                for r in f.records {
                    *o = r.offset + 1;
                    out.push(r);
                }
            }
        }
        if out.len() >= n {
            return out;
        }
        assert!(
            Instant::now() < end,
            "{topic} holds {} records, expected {n}",
            out.len()
        );
    }
}

/// Waits until the manager's only job counted `n` inputs.
pub(super) async fn wait_records_in(jobs: &JobManager, n: u64) {
    let end = Instant::now() + DEADLINE;
    while jobs.list()[0].records_in < n {
        assert!(
            Instant::now() < end,
            "the job never counted its input: {:?}",
            jobs.list()
        );
        tokio::task::yield_now().await;
    }
}

/// Produces `{"id": i}` for each `i` of `range` (keys as [`produce`] gives them).
pub(super) async fn produce_ids(c: &Cluster, topic: &str, range: std::ops::Range<i64>) {
    let values: Vec<String> = range.map(|i| format!(r#"{{"id": {i}}}"#)).collect();
    produce(&c.access, topic, &values.iter().map(String::as_str).collect::<Vec<_>>()).await;
}

/// The `id` field of each JSON value, sorted.
pub(super) fn ids(records: &[ConsumerRecord]) -> Vec<i64> {
    let mut ids: Vec<i64> = values(records)
        .iter()
        .map(|v| {
            serde_json::from_str::<serde_json::Value>(v).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ids.sort();
    ids
}

/// Waits until no transaction is completing: the markers of every ended transaction are
/// written and the offsets they commit applied.
pub(super) async fn settle(c: &Cluster) {
    for (id, _) in c.broker.txns.list() {
        c.broker.txns.settled(&id).await;
    }
}

/// The sum of the offsets `group` committed for `topic`, once ended transactions settled.
pub(super) async fn committed_sum(c: &Cluster, group: &str, topic: &str) -> i64 {
    settle(c).await;
    c.access
        .committed(group)
        .await
        .unwrap()
        .into_iter()
        .filter(|(t, _, _)| t == topic)
        .map(|(_, _, o)| o)
        .sum()
}

pub(super) fn values(records: &[ConsumerRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

pub(super) fn header<'a>(r: &'a ConsumerRecord, name: &str) -> &'a str {
    let (_, v) = r
        .headers
        .iter()
        .find(|(k, _)| k.as_ref() == name.as_bytes())
        .expect(name);
    std::str::from_utf8(v.as_deref().unwrap_or_default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_and_projection_writes_the_expected_records() {
    let c = cluster();
    create_topic(&c.access, "access", 1).await;
    let jobs = manager(&c.access).await;
    run(
        &jobs,
        "CREATE STREAM access (status BIGINT, path TEXT) WITH (topic = 'access', format = 'json')",
    )
    .await;
    produce(
        &c.access,
        "access",
        &[
            r#"{"status": 200, "path": "/a"}"#,
            r#"{"status": 503, "path": "/b"}"#,
            r#"{"status": 404, "path": "/c"}"#,
            r#"{"status": 500, "path": "/d"}"#,
            r#"{"status": 501, "path": "/e"}"#,
            r#"{"status": 201, "path": "/f"}"#,
        ],
    )
    .await;
    let message = run(
        &jobs,
        "CREATE STREAM errors WITH (topic = 'errors', format = 'json', key = 'p') AS \
         SELECT upper(path) AS p, status * 2 AS doubled FROM access WHERE status >= 500",
    )
    .await;
    assert!(message.contains("csas_errors"), "{message}");
    let out = read_at_least(&c.access, "errors", 3).await;
    assert_eq!(
        values(&out),
        [
            r#"{"p":"/B","doubled":1006}"#,
            r#"{"p":"/D","doubled":1000}"#,
            r#"{"p":"/E","doubled":1002}"#
        ]
    );
    let keys: Vec<&[u8]> = out.iter().map(|r| r.key.as_deref().unwrap()).collect();
    assert_eq!(keys, [b"/B", b"/D", b"/E"]);

    let listed = jobs.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].name.as_str()),
        ("csas_errors", "errors")
    );
    wait_records_in(&jobs, 6).await;
    assert_eq!(jobs.list()[0].state, JobState::Running);
    assert_eq!(jobs.list()[0].records_out, 3);

    run(&jobs, "TERMINATE csas_errors").await;
    assert!(jobs.list().is_empty());
    run(&jobs, "DROP STREAM errors").await;
    assert!(jobs.catalog().get("errors").is_none());
    // Created again, the query gets a new id, so it does not resume from the old group's offsets.
    let again = run(
        &jobs,
        "CREATE STREAM errors WITH (topic = 'errors2') AS SELECT path FROM access",
    )
    .await;
    assert!(again.contains("csas_errors_2"), "{again}");
    assert_eq!(read_at_least(&c.access, "errors2", 6).await.len(), 6);
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_become_dead_letters_and_the_rest_flows() {
    let c = cluster();
    create_topic(&c.access, "events", 1).await;
    let jobs = manager(&c.access).await;
    run(
        &jobs,
        "CREATE STREAM events (n BIGINT) WITH (topic = 'events', format = 'json')",
    )
    .await;
    run(
        &jobs,
        "CREATE STREAM evens WITH (topic = 'evens') AS SELECT _key, n FROM events WHERE n % 2 = 0",
    )
    .await;
    produce(
        &c.access,
        "events",
        &[
            r#"{"n": 2}"#,
            "{not json",
            r#"{"n": 3}"#,
            r#"{"n": 4}"#,
            "",
            r#"{"n": 6}"#,
        ],
    )
    .await;
    let out = read_at_least(&c.access, "evens", 3).await;
    assert_eq!(values(&out), [r#"{"n":2}"#, r#"{"n":4}"#, r#"{"n":6}"#]);
    let keys: Vec<&[u8]> = out.iter().map(|r| r.key.as_deref().unwrap()).collect();
    assert_eq!(keys, [b"k0", b"k3", b"k5"]);

    let dead = read_at_least(&c.access, &dlq::dead_letter_topic("events"), 2).await;
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].value.as_deref(), Some(&b"{not json"[..]));
    assert_eq!(dead[0].key.as_deref(), Some(&b"k1"[..]));
    for (r, offset) in dead.iter().zip(["1", "4"]) {
        assert_eq!(header(r, dlq::HEADER_SOURCE_TOPIC), "events");
        assert_eq!(header(r, dlq::HEADER_SOURCE_PARTITION), "0");
        assert_eq!(header(r, dlq::HEADER_SOURCE_OFFSET), offset);
        assert_eq!(header(r, dlq::HEADER_STAGE), "decode");
        assert!(!header(r, dlq::HEADER_ERROR).is_empty());
    }
    wait_records_in(&jobs, 6).await;
    assert_eq!((jobs.list()[0].records_out, jobs.list()[0].records_dead), (3, 2));
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_record_the_target_refuses_becomes_a_dead_letter() {
    let c = cluster();
    create_topic(&c.access, "raw", 1).await;
    // The target takes batches of at most 200 bytes: a long output record is refused for good.
    let spec = TopicSpec {
        name: "small".into(),
        partitions: 1,
        configs: vec![("max.message.bytes".into(), "200".into())],
    };
    c.access.create_topic(spec).await.expect("topic created");
    let jobs = manager(&c.access).await;
    run(
        &jobs,
        "CREATE STREAM raw (s VARCHAR) WITH (topic = 'raw', format = 'json')",
    )
    .await;
    run(&jobs, "CREATE STREAM small WITH (topic = 'small') AS SELECT s FROM raw").await;
    let long = format!(r#"{{"s": "{}"}}"#, "x".repeat(1000));
    produce(&c.access, "raw", &[r#"{"s": "a"}"#, &long, r#"{"s": "b"}"#]).await;
    let out = read_at_least(&c.access, "small", 2).await;
    assert_eq!(values(&out), [r#"{"s":"a"}"#, r#"{"s":"b"}"#]);
    let dead = read_at_least(&c.access, &dlq::dead_letter_topic("raw"), 1).await;
    assert_eq!(header(&dead[0], dlq::HEADER_STAGE), "produce");
    assert!(
        header(&dead[0], dlq::HEADER_ERROR).contains("small"),
        "{}",
        header(&dead[0], dlq::HEADER_ERROR)
    );
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_query_resumes_at_its_committed_offsets() {
    let c = cluster();
    create_topic(&c.access, "in", 2).await;
    let jobs = manager(&c.access).await;
    run(
        &jobs,
        "CREATE STREAM src (id BIGINT) WITH (topic = 'in', format = 'json')",
    )
    .await;
    run(
        &jobs,
        "CREATE STREAM copy WITH (topic = 'out', partitions = 1) AS SELECT id FROM src",
    )
    .await;
    produce_ids(&c, "in", 0..10).await;
    read_at_least(&c.access, "out", 10).await;
    jobs.shutdown().await;
    assert_eq!(
        committed_sum(&c, &group_id("csas_copy"), "in").await,
        10,
        "every input record is committed after its output was written"
    );

    produce_ids(&c, "in", 10..16).await;
    // A new manager reads the catalog back from its topic and restarts the query.
    let jobs = manager(&c.access).await;
    assert_eq!(jobs.list().len(), 1);
    let out = read_at_least(&c.access, "out", 16).await;
    assert_eq!(
        ids(&out),
        (0..16).collect::<Vec<_>>(),
        "no input lost and none emitted twice"
    );
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_refuse_what_they_cannot_run() {
    let c = cluster();
    create_topic(&c.access, "t", 1).await;
    let jobs = manager(&c.access).await;
    run(&jobs, "CREATE STREAM s (a BIGINT) WITH (topic = 't')").await;
    for (sql, expect) in [
        ("CREATE STREAM s (a BIGINT) WITH (topic = 't')", "already exists"),
        (
            "CREATE STREAM x WITH (topic = 'x2') AS SELECT count(*) FROM s",
            "stateless",
        ),
        (
            "CREATE STREAM x WITH (topic = 'x2', key = 'b') AS SELECT a FROM s",
            "does not produce",
        ),
        (
            "CREATE STREAM x (a BIGINT) WITH (topic = 't', key = 'b')",
            "not a column",
        ),
        ("INSERT INTO nowhere SELECT a FROM s", "no stream nowhere"),
        ("TERMINATE nothing", "no query nothing"),
        ("DROP STREAM nothing", "no stream nothing"),
        ("CREATE STREAM y WITH (topic = 't2', format = 'xml')", "unknown format"),
    ] {
        let statement = ddl::parse(sql).unwrap().unwrap();
        let err = execute(&jobs, statement, sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} succeeded"))
            .to_string();
        assert!(err.contains(expect), "{sql}: {err}");
    }
    assert!(run(&jobs, "CREATE STREAM IF NOT EXISTS s WITH (topic = 't')")
        .await
        .contains("already exists"));
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_changes_tails_records_that_arrive_after_it_starts() {
    use futures::StreamExt;
    let c = cluster();
    create_topic(&c.access, "ticks", 2).await;
    let jobs = manager(&c.access).await;
    run(&jobs, "CREATE STREAM ticks (n BIGINT) WITH (topic = 'ticks')").await;
    produce(&c.access, "ticks", &[r#"{"n": 100}"#]).await;
    let sql = "SELECT n * 10 AS m FROM ticks WHERE n > 1 EMIT CHANGES";
    let statement = ddl::parse(sql).unwrap().unwrap();
    let Ok(Output::Stream(mut rows)) = execute(&jobs, statement, sql).await else {
        panic!("EMIT CHANGES returns a stream")
    };
    produce(
        &c.access,
        "ticks",
        &[r#"{"n": 1}"#, r#"{"n": 2}"#, "oops", r#"{"n": 3}"#],
    )
    .await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let batch = tokio::time::timeout(DEADLINE, rows.next())
            .await
            .expect("rows arrive")
            .unwrap()
            .unwrap();
        let m = batch
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap();
        seen.extend(m.iter().flatten());
    }
    seen.sort();
    assert_eq!(seen, [20, 30], "only records after the start, filtered");
    jobs.shutdown().await;
}

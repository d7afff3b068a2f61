//! Exactly-once job tests against a broker in this process (EmbeddedAccess): read_committed
//! readers see each input's output once, across a restart, a transaction a dead worker left
//! open, an abort (a record the target refuses), a fenced producer and two workers sharing the
//! query; and the `processing_guarantee` option is checked.

use std::collections::BTreeSet;

use brook_broker::access::{ConsumerGroupMetadata, ConsumerRecord, OffsetSpec, TopicSpec};

use super::statements::execute;
use super::tests::{
    cluster, cluster_with, committed_sum, create_topic, header, ids, manager_with, produce, produce_ids, read_at_least,
    read_committed, run, settings, settle, values, wait_records_in, Cluster,
};
use super::{group_id, transactional_id, JobSettings, JobState};
use crate::catalog::ProcessingGuarantee;
use crate::dlq;
use crate::sql::ddl;

fn worker(name: &str) -> JobSettings {
    JobSettings {
        worker_name: Some(name.to_string()),
        ..settings()
    }
}

/// Everything read_committed readers see of `topic` once ended transactions settled (all
/// partitions to their stable end).
async fn committed_now(c: &Cluster, topic: &str) -> Vec<ConsumerRecord> {
    settle(c).await;
    let access = &c.access;
    let mut out = Vec::new();
    for (p, mut at) in access.list_offsets(topic, OffsetSpec::Earliest).await.unwrap() {
        loop {
            let f = access.fetch_committed(topic, p, at, 1 << 20, 0).await.unwrap();
            let Some(last) = f.records.last() else { break };
            at = last.offset + 1;
            out.extend(f.records);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_query_writes_each_input_once_and_resumes_after_a_restart() {
    let c = cluster();
    create_topic(&c.access, "in", 2).await;
    let jobs = manager_with(&c.access, worker("w1")).await;
    run(
        &jobs,
        "CREATE STREAM src (id BIGINT) WITH (topic = 'in', format = 'json')",
    )
    .await;
    let started = run(
        &jobs,
        "CREATE STREAM evens WITH (topic = 'out', partitions = 1, processing_guarantee = 'exactly_once') AS \
         SELECT id FROM src WHERE id % 2 = 0",
    )
    .await;
    assert!(started.contains("csas_evens (exactly once)"), "{started}");
    let def = jobs.catalog().query("csas_evens").unwrap();
    assert_eq!(def.processing_guarantee, ProcessingGuarantee::ExactlyOnce);
    produce_ids(&c, "in", 0..20).await;
    let out = read_committed(&c.access, "out", 10).await;
    assert_eq!(ids(&out), (0..20).filter(|i| i % 2 == 0).collect::<Vec<_>>());
    wait_records_in(&jobs, 20).await;
    assert_eq!(jobs.list()[0].state, JobState::Running);
    assert_eq!(jobs.list()[0].records_out, 10);
    jobs.shutdown().await;
    assert_eq!(committed_sum(&c, &group_id("csas_evens"), "in").await, 20);
    let id = transactional_id("csas_evens", "w1");
    assert!(c.broker.txns.describe(&id).is_ok(), "the job's transactional id {id}");

    produce_ids(&c, "in", 20..30).await;
    let jobs = manager_with(&c.access, worker("w1")).await;
    let out = read_committed(&c.access, "out", 15).await;
    assert_eq!(ids(&out), (0..30).filter(|i| i % 2 == 0).collect::<Vec<_>>());
    wait_records_in(&jobs, 10).await;
    jobs.shutdown().await;
    assert_eq!(ids(&committed_now(&c, "out").await).len(), 15, "nothing written twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_a_dead_worker_left_open_is_aborted_when_it_restarts() {
    let c = cluster();
    create_topic(&c.access, "in", 1).await;
    let jobs = manager_with(&c.access, worker("w1")).await;
    run(
        &jobs,
        "CREATE STREAM src (id BIGINT) WITH (topic = 'in', format = 'json')",
    )
    .await;
    run(
        &jobs,
        "CREATE STREAM copy WITH (topic = 'out', processing_guarantee = 'exactly_once') AS SELECT id FROM src",
    )
    .await;
    produce_ids(&c, "in", 0..4).await;
    read_committed(&c.access, "out", 4).await;
    jobs.shutdown().await;

    // What a worker killed mid-transaction leaves: output written and offsets sent far ahead,
    // in a transaction of the job's transactional id that never ends.
    let id = transactional_id("csas_copy", "w1");
    let mut dead = c.access.transactional_producer(&id, 60_000).await.unwrap();
    dead.begin().unwrap();
    let ghost = vec![brook_broker::access::OutRecord {
        value: Some(r#"{"id":-1}"#.into()),
        ..Default::default()
    }];
    dead.produce("out", ghost).await.unwrap();
    let outside = ConsumerGroupMetadata::new(group_id("csas_copy"));
    dead.send_offsets(vec![("in".to_string(), 0, 1000)], &outside)
        .await
        .unwrap();
    drop(dead);

    produce_ids(&c, "in", 4..8).await;
    let jobs = manager_with(&c.access, worker("w1")).await;
    let out = read_committed(&c.access, "out", 8).await;
    assert_eq!(ids(&out), (0..8).collect::<Vec<_>>(), "the dead transaction is aborted");
    wait_records_in(&jobs, 4).await;
    jobs.shutdown().await;
    assert_eq!(committed_sum(&c, &group_id("csas_copy"), "in").await, 8);
    let all = read_at_least(&c.access, "out", 9).await;
    assert!(
        ids(&all).contains(&-1),
        "read_uncommitted readers saw the aborted record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_target_refuses_aborts_the_transaction_and_becomes_a_dead_letter_once() {
    let c = cluster();
    create_topic(&c.access, "raw", 1).await;
    let spec = TopicSpec {
        name: "small".into(),
        partitions: 1,
        configs: vec![("max.message.bytes".into(), "200".into())],
    };
    c.access.create_topic(spec).await.expect("topic created");
    let jobs = manager_with(&c.access, worker("w1")).await;
    run(
        &jobs,
        "CREATE STREAM raw (s VARCHAR) WITH (topic = 'raw', format = 'json')",
    )
    .await;
    run(
        &jobs,
        "CREATE STREAM small WITH (topic = 'small', processing_guarantee = 'exactly_once') AS SELECT s FROM raw",
    )
    .await;
    let long = format!(r#"{{"s": "{}"}}"#, "x".repeat(1000));
    // One append, so one micro-batch: its dead letter is written before the target refuses
    // the long record, and that first attempt is aborted.
    produce(
        &c.access,
        "raw",
        &[r#"{"s": "a"}"#, "{not json", &long, r#"{"s": "b"}"#],
    )
    .await;
    let out = read_committed(&c.access, "small", 2).await;
    assert_eq!(values(&out), [r#"{"s":"a"}"#, r#"{"s":"b"}"#]);
    let dlq = dlq::dead_letter_topic("raw");
    let dead = read_committed(&c.access, &dlq, 2).await;
    wait_records_in(&jobs, 4).await;
    jobs.shutdown().await;
    let dead_now = committed_now(&c, &dlq).await;
    assert_eq!(dead_now.len(), 2, "each dead letter once: {:?}", values(&dead_now));
    let stages: BTreeSet<&str> = dead.iter().map(|r| header(r, dlq::HEADER_STAGE)).collect();
    assert_eq!(stages, BTreeSet::from(["decode", "produce"]));
    assert_eq!(committed_now(&c, "small").await.len(), 2);
    let uncommitted = read_at_least(&c.access, &dlq, 3).await;
    assert!(uncommitted.len() >= 3, "the aborted attempt wrote its dead letter too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_job_rejoins_with_a_new_producer_and_writes_each_input_once() {
    let c = cluster();
    create_topic(&c.access, "in", 2).await;
    let jobs = manager_with(&c.access, worker("w1")).await;
    run(
        &jobs,
        "CREATE STREAM src (id BIGINT) WITH (topic = 'in', format = 'json')",
    )
    .await;
    run(
        &jobs,
        "CREATE STREAM copy WITH (topic = 'out', processing_guarantee = 'exactly_once') AS SELECT id FROM src",
    )
    .await;
    produce_ids(&c, "in", 0..6).await;
    read_committed(&c.access, "out", 6).await;
    // Another producer with the job's transactional id fences the job's producer.
    let id = transactional_id("csas_copy", "w1");
    let usurper = c.access.transactional_producer(&id, 60_000).await.unwrap();
    let fenced_at = c.broker.txns.describe(&id).unwrap().producer_epoch;
    produce_ids(&c, "in", 6..12).await;
    let out = read_committed(&c.access, "out", 12).await;
    assert_eq!(ids(&out), (0..12).collect::<Vec<_>>());
    assert!(
        c.broker.txns.describe(&id).unwrap().producer_epoch > fenced_at,
        "the job wrote the new input with a new producer"
    );
    drop(usurper);
    wait_records_in(&jobs, 6).await;
    assert_eq!(jobs.list()[0].state, JobState::Running);
    jobs.shutdown().await;
    assert_eq!(ids(&committed_now(&c, "out").await), (0..12).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_a_query_and_hand_partitions_over_exactly_once() {
    // Quick heartbeats, so that the rebalances settle in a few round trips.
    let c = cluster_with(&[("group.consumer.heartbeat.interval.ms", "50")]);
    create_topic(&c.access, "in", 4).await;
    let first = manager_with(&c.access, worker("w1")).await;
    run(
        &first,
        "CREATE STREAM src (id BIGINT) WITH (topic = 'in', format = 'json')",
    )
    .await;
    run(
        &first,
        "CREATE STREAM copy WITH (topic = 'out', processing_guarantee = 'exactly_once') AS SELECT id FROM src",
    )
    .await;
    let second = manager_with(&c.access, worker("w2")).await;
    produce_ids(&c, "in", 0..40).await;
    read_committed(&c.access, "out", 40).await;
    // The first worker goes while input flows: its partitions move to the second.
    let (_, ()) = tokio::join!(first.shutdown(), produce_ids(&c, "in", 40..80));
    produce_ids(&c, "in", 80..100).await;
    read_committed(&c.access, "out", 100).await;
    second.shutdown().await;
    assert_eq!(ids(&committed_now(&c, "out").await), (0..100).collect::<Vec<_>>());
    assert_eq!(committed_sum(&c, &group_id("csas_copy"), "in").await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processing_guarantee_option_is_checked() {
    let c = cluster();
    create_topic(&c.access, "t", 1).await;
    let jobs = manager_with(&c.access, worker("w1")).await;
    run(&jobs, "CREATE STREAM s (a BIGINT) WITH (topic = 't')").await;
    run(&jobs, "CREATE STREAM o WITH (topic = 'o') AS SELECT a FROM s").await;
    for (sql, expect) in [
        (
            "CREATE STREAM x WITH (topic = 'x', processing_guarantee = 'twice') AS SELECT a FROM s",
            "unknown processing_guarantee \"twice\": expected at_least_once or exactly_once",
        ),
        (
            "CREATE STREAM x (a BIGINT) WITH (topic = 'x', processing_guarantee = 'exactly_once')",
            "applies to a continuous query",
        ),
        (
            "INSERT INTO o WITH (processing_guarantee = 'sometimes') SELECT a FROM s",
            "unknown processing_guarantee",
        ),
    ] {
        let statement = ddl::parse(sql).unwrap().unwrap();
        let err = execute(&jobs, statement, sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} succeeded"));
        assert!(err.to_string().contains(expect), "{sql}: {err}");
        assert!(
            matches!(err, crate::error::Error::InvalidStatement { line: Some(1), .. }),
            "{sql}: the error points at the option: {err:?}"
        );
    }
    let started = run(
        &jobs,
        "INSERT INTO o WITH (processing_guarantee = 'exactly_once') SELECT a + 1 AS a FROM s",
    )
    .await;
    assert!(started.contains("(exactly once)"), "{started}");
    let guarantees: Vec<ProcessingGuarantee> = jobs
        .catalog()
        .queries()
        .iter()
        .map(|q| q.processing_guarantee)
        .collect();
    assert_eq!(
        guarantees,
        [ProcessingGuarantee::AtLeastOnce, ProcessingGuarantee::ExactlyOnce]
    );
    jobs.shutdown().await;
}

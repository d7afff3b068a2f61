//! The one test suite both `TopicAccess` implementations pass: each case is an async function
//! over `&dyn TopicAccess`, run once on the embedded access and once on the remote access to a
//! server in this process, so that the two are held to the same semantics. Transactions
//! (commit and abort seen by read_committed readers, offsets committed with a transaction,
//! fencing) are cases like the others.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use super::{
    is_fenced, EmbeddedAccess, GroupMember, OffsetSpec, OutRecord, Owned, RemoteAccess, TopicAccess, TopicInfo,
    TopicSpec, TxnProducer,
};
use crate::broker::Broker;
use crate::client::{partition_for_key, ClientConfig};
use crate::config::BrokerConfig;
use crate::error::Error;

/// How long a long poll may wait in these tests; a fetch that is not woken returns empty after it.
const LONG_POLL_MS: u64 = 30_000;
/// The most assignment checks a rebalance may take before the test fails.
const MAX_REBALANCE_ROUNDS: usize = 300;

/// A broker on a temporary directory and access to it, embedded or over the network.
pub(super) struct Harness {
    _dir: tempfile::TempDir,
    pub(super) broker: Arc<Broker>,
    pub(super) access: Box<dyn TopicAccess>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let _ = self.broker.close();
    }
}

fn open_broker(port: i32) -> (tempfile::TempDir, Arc<Broker>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = BrokerConfig::new(dir.path().to_path_buf());
    config.set("offsets.topic.num.partitions", "1").expect("a valid config");
    config
        .set("transaction.state.log.num.partitions", "1")
        .expect("a valid config");
    // Quick heartbeats so that rebalances settle in a few round trips.
    config
        .set("group.consumer.heartbeat.interval.ms", "50")
        .expect("a valid config");
    config.advertised_host = "127.0.0.1".to_string();
    config.advertised_port = port;
    let broker = Broker::open(config).expect("broker opens");
    (dir, broker)
}

impl Harness {
    pub(super) fn embedded() -> Harness {
        let (dir, broker) = open_broker(9092);
        let timers = tokio::spawn(broker.groups.clone().run_timers(broker.shutdown_signal()));
        Harness {
            access: Box::new(EmbeddedAccess::new(broker.clone())),
            _dir: dir,
            broker,
            tasks: vec![timers],
        }
    }

    async fn remote() -> Harness {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("bound address").port();
        let (dir, broker) = open_broker(i32::from(port));
        let server = tokio::spawn(crate::server::serve(broker.clone(), listener));
        let timers = tokio::spawn(broker.groups.clone().run_timers(broker.shutdown_signal()));
        let config = ClientConfig::new([format!("127.0.0.1:{port}")]);
        let access = RemoteAccess::connect(config).await.expect("remote access connects");
        Harness {
            access: Box::new(access),
            _dir: dir,
            broker,
            tasks: vec![server, timers],
        }
    }
}

pub(super) fn spec(name: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: name.to_string(),
        partitions,
        configs: vec![],
    }
}

fn record(key: Option<&str>, value: &str) -> OutRecord {
    OutRecord {
        key: key.map(|k| Bytes::from(k.to_string())),
        value: Some(Bytes::from(value.to_string())),
        ..OutRecord::default()
    }
}

/// Reads a partition from `from` up to its high watermark (a fetch that finds only control
/// records past the last record returns none, which ends the read too).
async fn read_all(access: &dyn TopicAccess, topic: &str, partition: i32, from: i64) -> Vec<super::ConsumerRecord> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let fetched = access.fetch(topic, partition, at, 1 << 20, 0).await.expect("fetch");
        let Some(last) = fetched.records.last() else {
            return out;
        };
        at = last.offset + 1;
        out.extend(fetched.records);
        if at >= fetched.high_watermark {
            return out;
        }
    }
}

async fn creates_and_lists_topics(access: &dyn TopicAccess) {
    access.create_topic(spec("orders", 3)).await.expect("created");
    let topics = access.topics().await.expect("topics");
    let orders = TopicInfo {
        name: "orders".to_string(),
        partitions: 3,
        internal: false,
    };
    assert!(topics.contains(&orders), "{topics:?}");
    let again = access.create_topic(spec("orders", 3)).await;
    assert!(matches!(again, Err(Error::TopicAlreadyExists(_))), "{again:?}");
}

async fn unknown_topics_and_partitions_fail_alike(access: &dyn TopicAccess) {
    access.create_topic(spec("known", 2)).await.expect("created");
    let produced = access.produce("missing", vec![record(None, "v")]).await;
    assert!(
        matches!(produced, Err(Error::UnknownTopicOrPartition(_))),
        "{produced:?}"
    );
    let out_of_range_partition = OutRecord {
        partition: Some(7),
        ..record(None, "v")
    };
    let produced = access.produce("known", vec![out_of_range_partition]).await;
    assert!(
        matches!(produced, Err(Error::UnknownTopicOrPartition(_))),
        "{produced:?}"
    );
    let fetched = access.fetch("missing", 0, 0, 1024, 0).await;
    assert!(matches!(fetched, Err(Error::UnknownTopicOrPartition(_))), "{fetched:?}");
    let fetched = access.fetch("known", 7, 0, 1024, 0).await;
    assert!(matches!(fetched, Err(Error::UnknownTopicOrPartition(_))), "{fetched:?}");
    let listed = access.list_offsets("missing", OffsetSpec::Latest).await;
    assert!(matches!(listed, Err(Error::UnknownTopicOrPartition(_))), "{listed:?}");
}

async fn keyed_records_come_back_in_order_where_murmur2_puts_them(access: &dyn TopicAccess) {
    access.create_topic(spec("keyed", 3)).await.expect("created");
    let mut records = Vec::new();
    for i in 0..30 {
        let mut r = record(Some(&format!("k{}", i % 7)), &format!("v{i}"));
        r.headers = vec![
            (Bytes::from_static(b"h"), Some(Bytes::from(i.to_string()))),
            (Bytes::from_static(b"h"), None),
        ];
        r.timestamp_ms = Some(1_000 + i);
        records.push(r);
    }
    records.push(OutRecord {
        key: Some(Bytes::from_static(b"k1")),
        value: None,
        ..OutRecord::default()
    });
    let deliveries = access.produce("keyed", records.clone()).await.expect("produced");
    assert_eq!(deliveries.len(), records.len());
    for (r, d) in records.iter().zip(&deliveries) {
        let key = r.key.as_ref().expect("keyed");
        assert_eq!(d.partition, partition_for_key(key, 3));
    }
    for partition in 0..3 {
        let sent: Vec<&OutRecord> = records
            .iter()
            .zip(&deliveries)
            .filter(|(_, d)| d.partition == partition)
            .map(|(r, _)| r)
            .collect();
        let offsets: Vec<i64> = deliveries
            .iter()
            .filter(|d| d.partition == partition)
            .map(|d| d.offset)
            .collect();
        assert_eq!(offsets, (0..sent.len() as i64).collect::<Vec<_>>());
        let read = read_all(access, "keyed", partition, 0).await;
        assert_eq!(read.len(), sent.len());
        for (i, (got, want)) in read.iter().zip(sent).enumerate() {
            assert_eq!(
                (got.topic.as_str(), got.partition, got.offset),
                ("keyed", partition, i as i64)
            );
            assert_eq!(got.key, want.key);
            assert_eq!(got.value, want.value);
            assert_eq!(got.headers, want.headers);
            if let Some(ts) = want.timestamp_ms {
                assert_eq!(got.timestamp_ms, ts);
            }
        }
    }
    // An explicit partition wins over the key; keyless records land somewhere valid.
    let pinned = OutRecord {
        partition: Some(2),
        ..record(Some("k0"), "pinned")
    };
    let d = access.produce("keyed", vec![pinned]).await.expect("produced");
    assert_eq!(d[0].partition, 2);
    let d = access
        .produce("keyed", vec![record(None, "a"), record(None, "b")])
        .await
        .expect("produced");
    assert!(d.iter().all(|d| (0..3).contains(&d.partition)));
}

async fn list_offsets_by_position_and_time(access: &dyn TopicAccess) {
    access.create_topic(spec("timed", 2)).await.expect("created");
    let records = (1..=3)
        .map(|i| OutRecord {
            partition: Some(0),
            timestamp_ms: Some(i * 1_000),
            ..record(None, "v")
        })
        .collect();
    access.produce("timed", records).await.expect("produced");
    let offsets = |spec| access.list_offsets("timed", spec);
    assert_eq!(offsets(OffsetSpec::Earliest).await.unwrap(), vec![(0, 0), (1, 0)]);
    assert_eq!(offsets(OffsetSpec::Latest).await.unwrap(), vec![(0, 3), (1, 0)]);
    assert_eq!(
        offsets(OffsetSpec::Timestamp(2_000)).await.unwrap(),
        vec![(0, 1), (1, 0)]
    );
    assert_eq!(
        offsets(OffsetSpec::Timestamp(2_500)).await.unwrap(),
        vec![(0, 2), (1, 0)]
    );
    // Past the last record: the latest offset, so that a scan from there reads nothing.
    assert_eq!(
        offsets(OffsetSpec::Timestamp(9_000)).await.unwrap(),
        vec![(0, 3), (1, 0)]
    );
    assert_eq!(offsets(OffsetSpec::MaxTimestamp).await.unwrap(), vec![(0, 2), (1, 0)]);
}

async fn fetch_outside_the_log_is_out_of_range(access: &dyn TopicAccess) {
    access.create_topic(spec("short", 1)).await.expect("created");
    access
        .produce("short", vec![record(None, "a"), record(None, "b")])
        .await
        .expect("produced");
    let past = access.fetch("short", 0, 5, 1024, 0).await;
    assert!(
        matches!(past, Err(Error::OffsetOutOfRange { offset: 5, .. })),
        "{past:?}"
    );
    let at_end = access.fetch("short", 0, 2, 1024, 0).await.expect("fetch at the end");
    assert!(at_end.records.is_empty());
    assert_eq!((at_end.high_watermark, at_end.log_start_offset), (2, 0));
}

async fn long_poll_wakes_when_a_record_arrives(access: &dyn TopicAccess) {
    access.create_topic(spec("waiting", 1)).await.expect("created");
    // Whichever runs first, the fetch returns the record: at once if it is there, else woken by
    // the append. A fetch that is not woken returns empty after LONG_POLL_MS and fails the test.
    let fetch = access.fetch("waiting", 0, 0, 1 << 20, LONG_POLL_MS);
    let produce = access.produce("waiting", vec![record(Some("k"), "hello")]);
    let (fetched, produced) = tokio::join!(fetch, produce);
    produced.expect("produced");
    let fetched = fetched.expect("fetched");
    assert_eq!(fetched.records.len(), 1);
    assert_eq!(fetched.records[0].value.as_deref(), Some(&b"hello"[..]));
    assert_eq!(fetched.high_watermark, 1);
}

async fn committed_offsets_round_trip(access: &dyn TopicAccess) {
    access.create_topic(spec("progress", 2)).await.expect("created");
    assert_eq!(access.committed("g").await.unwrap(), vec![]);
    let offsets = vec![("progress".to_string(), 1, 7), ("progress".to_string(), 0, 5)];
    access.commit("g", offsets).await.expect("committed");
    let mut committed = access.committed("g").await.unwrap();
    committed.sort();
    assert_eq!(
        committed,
        vec![("progress".to_string(), 0, 5), ("progress".to_string(), 1, 7)]
    );
    let unknown = access.commit("g", vec![("missing".to_string(), 0, 1)]).await;
    assert!(matches!(unknown, Err(Error::UnknownTopicOrPartition(_))), "{unknown:?}");
}

/// Asks both members for their assignments until `done` holds for them.
async fn settle(
    a: &mut dyn GroupMember,
    b: &mut dyn GroupMember,
    done: impl Fn(&Owned, &Owned) -> bool,
) -> (Owned, Owned) {
    let mut last = (vec![], vec![]);
    for _ in 0..MAX_REBALANCE_ROUNDS {
        let x = a.assignment(100).await.expect("assignment");
        let y = b.assignment(100).await.expect("assignment");
        if done(&x, &y) {
            return (x, y);
        }
        last = (x, y);
    }
    panic!("the group did not settle; last seen {last:?}");
}

async fn group_members_split_partitions_and_hand_them_over(access: &dyn TopicAccess) {
    access.create_topic(spec("shared", 4)).await.expect("created");
    let all: BTreeSet<(String, i32)> = (0..4).map(|p| ("shared".to_string(), p)).collect();
    let topics = vec!["shared".to_string()];
    let mut first = access.join("workers", topics.clone()).await.expect("joined");
    let mut second = access.join("workers", topics).await.expect("joined");
    let split = |x: &Owned, y: &Owned| {
        let xs: BTreeSet<_> = x.iter().cloned().collect();
        let ys: BTreeSet<_> = y.iter().cloned().collect();
        !xs.is_empty()
            && !ys.is_empty()
            && xs.is_disjoint(&ys)
            && xs.union(&ys).cloned().collect::<BTreeSet<_>>() == all
    };
    let (mine, _) = settle(first.as_mut(), second.as_mut(), split).await;

    // A member commits for what it owns; a simple commit is refused while the group is live.
    let (topic, partition) = mine[0].clone();
    first
        .commit(vec![(topic.clone(), partition, 3)])
        .await
        .expect("member commit");
    assert!(access
        .committed("workers")
        .await
        .unwrap()
        .contains(&(topic.clone(), partition, 3)));
    let simple = access.commit("workers", vec![(topic, partition, 4)]).await;
    assert!(simple.is_err(), "a simple commit to a live group must be refused");

    // The first member leaves: the second gets everything.
    first.leave().await.expect("left");
    let mut taken = Vec::new();
    for _ in 0..MAX_REBALANCE_ROUNDS {
        taken = second.assignment(100).await.expect("assignment");
        if taken.len() == 4 {
            break;
        }
    }
    assert_eq!(taken.into_iter().collect::<BTreeSet<_>>(), all);
    second.leave().await.expect("left");
}

async fn log_start_offset_moves_with_deleted_records(access: &dyn TopicAccess, broker: &Broker) {
    access.create_topic(spec("trimmed", 1)).await.expect("created");
    let records = (0..5).map(|i| record(None, &format!("v{i}"))).collect();
    access.produce("trimmed", records).await.expect("produced");
    let log = broker.topics.get("trimmed").unwrap().partition(0).unwrap();
    log.delete_records_before(3).expect("records deleted");
    let below = access.fetch("trimmed", 0, 0, 1 << 20, 0).await;
    assert!(matches!(below, Err(Error::OffsetOutOfRange { .. })), "{below:?}");
    let fetched = access.fetch("trimmed", 0, 3, 1 << 20, 0).await.expect("fetched");
    assert_eq!(fetched.log_start_offset, 3);
    let offsets: Vec<i64> = fetched.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![3, 4]);
    let earliest = access.list_offsets("trimmed", OffsetSpec::Earliest).await.unwrap();
    assert_eq!(earliest, vec![(0, 3)]);
}

/// The `transaction.timeout.ms` of the suite's transactional producers.
const TXN_TIMEOUT_MS: u64 = 60_000;

fn values_of(records: &[super::ConsumerRecord]) -> Vec<String> {
    let mut values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    values.sort();
    values
}

fn records(values: &[&str]) -> Vec<OutRecord> {
    values.iter().map(|v| record(Some(v), v)).collect()
}

/// Reads every partition of `topic` read_committed, long polling, until `n` records came back.
async fn read_committed(
    access: &dyn TopicAccess,
    topic: &str,
    partitions: i32,
    n: usize,
) -> Vec<super::ConsumerRecord> {
    let mut at = vec![0i64; partitions as usize];
    let mut out = Vec::new();
    for _ in 0..MAX_REBALANCE_ROUNDS {
        for p in 0..partitions {
            let wait = if out.len() >= n { 0 } else { 100 };
            let fetched = access
                .fetch_committed(topic, p, at[p as usize], 1 << 20, wait)
                .await
                .expect("fetch_committed");
            assert!(fetched.last_stable_offset <= fetched.high_watermark);
            if let Some(last) = fetched.records.last() {
                at[p as usize] = last.offset + 1;
            }
            out.extend(fetched.records);
        }
        if out.len() >= n {
            return out;
        }
    }
    panic!("read_committed returned {} of {n} records of {topic}", out.len());
}

/// The offset group `txn-group` committed for `txn-in`-0, if any, once no transaction holds
/// it, read both ways.
async fn committed_in(access: &dyn TopicAccess) -> Option<i64> {
    let wanted = vec![("txn-in".to_string(), 0)];
    let one = access
        .committed_partitions("txn-group", wanted)
        .await
        .expect("committed_partitions");
    let all = access.committed("txn-group").await.expect("committed");
    let offset = one.first().map(|(_, _, o)| *o);
    assert_eq!(one.len(), usize::from(offset.is_some()), "{one:?}");
    let from_all = all
        .into_iter()
        .find(|(t, p, _)| t == "txn-in" && *p == 0)
        .map(|(_, _, o)| o);
    assert_eq!(offset, from_all);
    offset
}

async fn producer(access: &dyn TopicAccess, id: &str) -> Box<dyn TxnProducer> {
    access
        .transactional_producer(id, TXN_TIMEOUT_MS)
        .await
        .expect("transactional producer")
}

async fn read_committed_readers_see_committed_transactions_only(access: &dyn TopicAccess) {
    access.create_topic(spec("txn-out", 2)).await.expect("created");
    let mut p = producer(access, "tx-visibility").await;
    for (batch, commit) in [
        (["c1", "c2", "c3"], true),
        (["a1", "a2", "a3"], false),
        (["c4", "c5", "c6"], true),
    ] {
        p.begin().expect("begin");
        let deliveries = p.produce("txn-out", records(&batch)).await.expect("produced");
        assert_eq!(deliveries.len(), 3);
        if commit {
            p.commit().await.expect("committed");
        } else {
            p.abort().await.expect("aborted");
        }
    }
    // The last transaction is read once committed, so the aborted one before it is decided.
    let committed = read_committed(access, "txn-out", 2, 6).await;
    assert_eq!(values_of(&committed), ["c1", "c2", "c3", "c4", "c5", "c6"]);
    let mut uncommitted = Vec::new();
    for partition in 0..2 {
        uncommitted.extend(read_all(access, "txn-out", partition, 0).await);
    }
    assert_eq!(
        values_of(&uncommitted),
        ["a1", "a2", "a3", "c1", "c2", "c3", "c4", "c5", "c6"],
        "read_uncommitted readers see aborted records too"
    );
    // A call out of order is refused without harming the producer.
    assert!(p.commit().await.is_err(), "commit without begin");
    p.begin().expect("begin");
    assert!(p.begin().is_err(), "begin twice");
    p.abort().await.expect("aborted");
}

async fn offsets_sent_to_a_transaction_are_committed_with_it_only(access: &dyn TopicAccess) {
    access.create_topic(spec("txn-in", 1)).await.expect("created");
    access.create_topic(spec("txn-sink", 1)).await.expect("created");
    let mut member = access
        .join("txn-group", vec!["txn-in".to_string()])
        .await
        .expect("joined");
    let mut owned = Vec::new();
    for _ in 0..MAX_REBALANCE_ROUNDS {
        owned = member.assignment(100).await.expect("assignment");
        if !owned.is_empty() {
            break;
        }
    }
    assert_eq!(owned, vec![("txn-in".to_string(), 0)]);
    let meta = member.group_metadata();
    assert_eq!(meta.group_id, "txn-group");
    assert!(meta.generation_id > 0 && !meta.member_id.is_empty(), "{meta:?}");

    // A plain commit first: the remote access sees transactions holding offsets of partitions
    // the group has committed before (see RemoteAccess::committed_partitions).
    member
        .commit(vec![("txn-in".to_string(), 0, 1)])
        .await
        .expect("member commit");
    let mut p = producer(access, "tx-offsets").await;
    p.begin().expect("begin");
    p.produce("txn-sink", records(&["x"])).await.expect("produced");
    p.send_offsets(vec![("txn-in".to_string(), 0, 5)], &meta)
        .await
        .expect("offsets sent");
    p.abort().await.expect("aborted");
    assert_eq!(
        committed_in(access).await,
        Some(1),
        "an aborted transaction commits nothing"
    );

    p.begin().expect("begin");
    p.produce("txn-sink", records(&["y"])).await.expect("produced");
    p.send_offsets(vec![("txn-in".to_string(), 0, 7)], &meta)
        .await
        .expect("offsets sent");
    p.commit().await.expect("committed");
    assert_eq!(committed_in(access).await, Some(7), "committed with the transaction");

    // Offsets sent for a member epoch that is not the member's current one are refused, and
    // the transaction can still be aborted.
    let mut stale = meta.clone();
    stale.generation_id += 1;
    p.begin().expect("begin");
    let refused = p.send_offsets(vec![("txn-in".to_string(), 0, 9)], &stale).await;
    let error = refused.expect_err("a stale member epoch is refused");
    assert!(!is_fenced(&error), "{error}");
    p.abort().await.expect("aborted");
    assert_eq!(committed_in(access).await, Some(7));
    member.leave().await.expect("left");
}

async fn a_second_producer_with_the_same_id_fences_the_first(access: &dyn TopicAccess) {
    access.create_topic(spec("fenced", 1)).await.expect("created");
    let mut zombie = producer(access, "tx-fence").await;
    zombie.begin().expect("begin");
    zombie.produce("fenced", records(&["zombie"])).await.expect("produced");
    // The new producer's initialisation aborts the zombie's open transaction.
    let mut fresh = producer(access, "tx-fence").await;
    let late = zombie.commit().await.expect_err("the zombie cannot commit");
    assert!(is_fenced(&late), "{late}");
    let again = zombie.begin().and(Ok(())).err();
    if let Some(e) = again {
        assert!(is_fenced(&e), "{e}");
    } else {
        let late = zombie.produce("fenced", records(&["zombie-2"])).await;
        assert!(late.as_ref().is_err_and(is_fenced), "{late:?}");
    }
    fresh.begin().expect("begin");
    fresh.produce("fenced", records(&["fresh"])).await.expect("produced");
    fresh.commit().await.expect("committed");
    let committed = read_committed(access, "fenced", 1, 1).await;
    assert_eq!(values_of(&committed), ["fresh"]);
}

/// Runs every case of the suite against one implementation.
macro_rules! suite {
    ($module:ident, $harness:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn creates_and_lists_topics() {
                let h = $harness;
                super::creates_and_lists_topics(h.access.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unknown_topics_and_partitions_fail_alike() {
                let h = $harness;
                super::unknown_topics_and_partitions_fail_alike(h.access.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn keyed_records_come_back_in_order_where_murmur2_puts_them() {
                let h = $harness;
                super::keyed_records_come_back_in_order_where_murmur2_puts_them(h.access.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn list_offsets_by_position_and_time() {
                let h = $harness;
                super::list_offsets_by_position_and_time(h.access.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fetch_outside_the_log_is_out_of_range() {
                let h = $harness;
                super::fetch_outside_the_log_is_out_of_range(h.access.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn long_poll_wakes_when_a_record_arrives() {
                let h = $harness;
                super::long_poll_wakes_when_a_record_arrives(h.access.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn committed_offsets_round_trip() {
                let h = $harness;
                super::committed_offsets_round_trip(h.access.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn group_members_split_partitions_and_hand_them_over() {
                let h = $harness;
                super::group_members_split_partitions_and_hand_them_over(h.access.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn log_start_offset_moves_with_deleted_records() {
                let h = $harness;
                super::log_start_offset_moves_with_deleted_records(h.access.as_ref(), &h.broker).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn read_committed_readers_see_committed_transactions_only() {
                let h = $harness;
                super::read_committed_readers_see_committed_transactions_only(h.access.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn offsets_sent_to_a_transaction_are_committed_with_it_only() {
                let h = $harness;
                super::offsets_sent_to_a_transaction_are_committed_with_it_only(h.access.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_second_producer_with_the_same_id_fences_the_first() {
                let h = $harness;
                super::a_second_producer_with_the_same_id_fences_the_first(h.access.as_ref()).await;
            }
        }
    };
}

suite!(embedded, Harness::embedded());
suite!(remote, Harness::remote().await);

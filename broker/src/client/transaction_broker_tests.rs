//! The transactional producer and the transaction admin calls against a real broker in this
//! process (its Kafka listener on an ephemeral port, its coordinators and timers running):
//! commits are visible to read_committed, aborts are not, offsets sent to a transaction are
//! committed with it, a second producer with the same id fences the first, and the admin calls
//! describe an open transaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::admin::{list_offsets, OffsetSpec};
use super::{
    Admin, Assignment, ClientConfig, Consumer, ConsumerConfig, ConsumerGroupMetadata, GroupConfig, NewTopic, Producer,
    ProducerConfig, ProducerRecord, StartOffset,
};
use crate::broker::Broker;
use crate::config::BrokerConfig;

/// How long a read may take before the test fails (a hang guard, not a threshold).
const MAX_POLLS: usize = 600;

/// A broker serving on an ephemeral port, closed when dropped.
struct Harness {
    _dir: tempfile::TempDir,
    broker: Arc<Broker>,
    addr: String,
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

async fn start() -> Harness {
    let dir = tempfile::tempdir().expect("temporary directory");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("bound address").port();
    let mut config = BrokerConfig::new(dir.path().to_path_buf());
    config.set("offsets.topic.num.partitions", "1").expect("a valid config");
    config
        .set("transaction.state.log.num.partitions", "1")
        .expect("a valid config");
    config.advertised_host = "127.0.0.1".to_string();
    config.advertised_port = i32::from(port);
    let broker = Broker::open(config).expect("broker opens");
    let tasks = vec![
        tokio::spawn(crate::server::serve(broker.clone(), listener)),
        tokio::spawn(broker.groups.clone().run_timers(broker.shutdown_signal())),
        tokio::spawn(broker.clone().retention_loop()),
    ];
    let harness = Harness {
        _dir: dir,
        broker,
        addr: format!("127.0.0.1:{port}"),
        tasks,
    };
    let admin = harness.admin().await;
    for name in ["out", "in"] {
        let topic = NewTopic {
            name: name.to_string(),
            partitions: 2,
            replication_factor: -1,
            configs: vec![],
        };
        admin.create_topic(topic, false).await.expect("create topic");
    }
    harness
}

impl Harness {
    fn client(&self) -> ClientConfig {
        ClientConfig::new([self.addr.clone()])
    }

    async fn admin(&self) -> Admin {
        Admin::connect(self.client()).await.expect("admin connects")
    }

    async fn producer(&self, id: &str) -> Producer {
        let mut config = ProducerConfig::new(self.client());
        config.transactional_id = Some(id.to_string());
        config.linger_ms = 0;
        let producer = Producer::new(config).await.expect("producer connects");
        producer.init_transactions().await.expect("init_transactions");
        producer
    }

    /// Waits until the topic's last stable offsets reach its high watermarks: EndTxn answers
    /// once the outcome is durable, and the markers that make it visible follow.
    async fn settle(&self, topic: &str) {
        let admin = self.admin().await;
        let specs = [(0, OffsetSpec::Latest), (1, OffsetSpec::Latest)];
        for _ in 0..MAX_POLLS {
            let stable = list_offsets(&admin.cluster, topic, &specs, 1)
                .await
                .expect("list offsets");
            let high = list_offsets(&admin.cluster, topic, &specs, 0)
                .await
                .expect("list offsets");
            if stable == high {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{topic} still has open transactions");
    }

    /// The values of a topic at an isolation level once no transaction is open in it, up to
    /// its end as ListOffsets reports it when the read starts.
    async fn read(&self, topic: &str, isolation_level: i8) -> Vec<String> {
        self.settle(topic).await;
        let mut config = ConsumerConfig::new(self.client());
        config.isolation_level = isolation_level;
        let mut consumer = Consumer::new(config).await.expect("consumer");
        let assignments = (0..2)
            .map(|partition| Assignment {
                topic: topic.to_string(),
                partition,
                start: StartOffset::Earliest,
            })
            .collect();
        consumer.assign(assignments).await.expect("assign");
        let ends: BTreeMap<i32, i64> = consumer
            .end_offsets()
            .await
            .expect("end offsets")
            .into_iter()
            .map(|(_, p, o)| (p, o))
            .collect();
        let mut values = Vec::new();
        for _ in 0..MAX_POLLS {
            if ends
                .iter()
                .all(|(p, end)| consumer.position(topic, *p).is_some_and(|at| at >= *end))
            {
                return values;
            }
            for record in consumer.poll(Duration::from_millis(100)).await.expect("poll") {
                let value = record.value.unwrap_or_default();
                values.push(String::from_utf8_lossy(&value).into_owned());
            }
        }
        panic!("{topic} was not read to {ends:?} ({} values so far)", values.len());
    }
}

fn record(partition: i32, value: &str) -> ProducerRecord {
    ProducerRecord {
        partition: Some(partition),
        value: Some(Bytes::from(value.to_string())),
        ..ProducerRecord::new("out", "")
    }
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

#[tokio::test]
async fn committed_records_and_offsets_are_visible_and_aborted_ones_are_not() {
    let h = start().await;
    let producer = h.producer("tx-a").await;
    let group = ConsumerGroupMetadata::new("g");
    producer.begin_transaction().unwrap();
    producer.send(record(0, "c0")).await.unwrap();
    producer.send(record(1, "c1")).await.unwrap();
    let offsets = vec![("in".to_string(), 0, 5), ("in".to_string(), 1, 9)];
    producer.send_offsets_to_transaction(&offsets, &group).await.unwrap();
    producer.commit_transaction().await.unwrap();

    producer.begin_transaction().unwrap();
    producer.send(record(0, "a0")).await.unwrap();
    producer.send(record(1, "a1")).await.unwrap();
    let later = vec![("in".to_string(), 0, 50)];
    producer.send_offsets_to_transaction(&later, &group).await.unwrap();
    producer.abort_transaction().await.unwrap();

    producer.begin_transaction().unwrap();
    producer.send(record(1, "c2")).await.unwrap();
    producer.commit_transaction().await.unwrap();

    assert_eq!(sorted(h.read("out", 1).await), vec!["c0", "c1", "c2"]);
    assert_eq!(sorted(h.read("out", 0).await), vec!["a0", "a1", "c0", "c1", "c2"]);
    let committed = h.admin().await.fetch_offsets("g").await.unwrap();
    let expected: BTreeMap<(String, i32), i64> = offsets.into_iter().map(|(t, p, o)| ((t, p), o)).collect();
    assert_eq!(committed, expected, "the aborted offsets never became visible");
    producer.close().await.unwrap();
}

#[tokio::test]
async fn a_second_producer_with_the_same_id_fences_the_first_and_aborts_its_transaction() {
    let h = start().await;
    let old = h.producer("tx-f").await;
    old.begin_transaction().unwrap();
    old.send(record(0, "old")).await.unwrap();
    old.flush().await.unwrap();
    let new = h.producer("tx-f").await;
    let e = old.commit_transaction().await.unwrap_err();
    assert!([47, 90].contains(&e.kafka_code()), "{e}");
    assert!(e.to_string().contains("fenced"), "{e}");
    let again = old.begin_transaction().unwrap_err();
    assert_eq!(again.kafka_code(), e.kafka_code(), "{again}");
    new.begin_transaction().unwrap();
    new.send(record(0, "new")).await.unwrap();
    new.commit_transaction().await.unwrap();
    assert_eq!(h.read("out", 1).await, vec!["new"]);
    assert_eq!(sorted(h.read("out", 0).await), vec!["new", "old"]);
}

#[tokio::test]
async fn the_admin_calls_describe_an_open_transaction() {
    let h = start().await;
    let producer = h.producer("tx-d").await;
    producer.begin_transaction().unwrap();
    producer.send(record(1, "x")).await.unwrap();
    producer.flush().await.unwrap();
    let admin = h.admin().await;
    let listed = admin.list_transactions(&[], &[], None).await.unwrap();
    let entry = listed.iter().find(|t| t.transactional_id == "tx-d").expect("listed");
    assert_eq!(entry.state, "Ongoing");
    let ongoing = admin
        .list_transactions(&["Ongoing".to_string()], &[], None)
        .await
        .unwrap();
    assert_eq!(ongoing.len(), 1);
    assert!(admin
        .list_transactions(&["Bogus".to_string()], &[], None)
        .await
        .is_err());
    let described = admin.describe_transactions(&["tx-d".to_string()]).await.unwrap();
    assert_eq!(described[0].state, "Ongoing");
    assert_eq!(described[0].producer_id, entry.producer_id);
    assert_eq!(described[0].partitions, vec![("out".to_string(), 1)]);
    assert!(described[0].transaction_start_time_ms > 0);
    let producers = admin.describe_producers("out", &[0, 1]).await.unwrap();
    assert!(producers[0].open_transactions().is_empty());
    let open = producers[1].open_transactions();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].producer_id, entry.producer_id);
    assert_eq!(open[0].current_txn_start_offset, 0);
    assert!(admin.describe_transactions(&["nobody".to_string()]).await.is_err());
    producer.commit_transaction().await.unwrap();
    assert_eq!(h.read("out", 1).await, vec!["x"]);
}

#[tokio::test]
async fn offsets_go_in_as_a_member_of_the_group_and_a_stale_generation_is_refused() {
    let h = start().await;
    let mut consumer = Consumer::new(ConsumerConfig::new(h.client())).await.expect("consumer");
    let mut group = GroupConfig::new("members");
    group.auto_commit = false;
    consumer
        .subscribe(vec!["in".to_string()], group)
        .await
        .expect("subscribe");
    for _ in 0..MAX_POLLS {
        if !consumer.assignment().is_empty() {
            break;
        }
        consumer.poll(Duration::from_millis(100)).await.expect("poll");
    }
    assert_eq!(consumer.assignment().len(), 2, "the only member owns both partitions");
    let member = consumer.group_metadata().expect("subscribed");
    assert_eq!(member.group_id, "members");
    assert!(member.generation_id > 0 && !member.member_id.is_empty(), "{member:?}");

    let producer = h.producer("tx-m").await;
    producer.begin_transaction().unwrap();
    producer.send(record(0, "m")).await.unwrap();
    let offsets = vec![("in".to_string(), 0, 3)];
    producer.send_offsets_to_transaction(&offsets, &member).await.unwrap();
    producer.commit_transaction().await.unwrap();
    // The offsets become visible once the commit marker reaches __consumer_offsets.
    let admin = h.admin().await;
    let mut committed = BTreeMap::new();
    for _ in 0..MAX_POLLS {
        committed = admin.fetch_offsets("members").await.unwrap();
        if !committed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(committed.get(&("in".to_string(), 0)), Some(&3));

    let stale = ConsumerGroupMetadata {
        generation_id: member.generation_id + 100,
        ..member.clone()
    };
    producer.begin_transaction().unwrap();
    let e = producer
        .send_offsets_to_transaction(&[("in".to_string(), 0, 9)], &stale)
        .await
        .unwrap_err();
    assert_eq!(e.kafka_code(), 22, "ILLEGAL_GENERATION: {e}");
    assert_eq!(producer.commit_transaction().await.unwrap_err().kafka_code(), 22);
    producer.abort_transaction().await.unwrap();
    let committed = h.admin().await.fetch_offsets("members").await.unwrap();
    assert_eq!(committed.get(&("in".to_string(), 0)), Some(&3));
    consumer.close().await.unwrap();
}

//! Model-based test of KIP-848 membership: random joins, heartbeats (the model client reports
//! the partitions it owns, adopting each assignment it receives at once), leaves and clock
//! advances. No partition is ever owned by two members, no member epoch passes the group epoch,
//! and once membership stops changing every subscribed partition ends up owned exactly once.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use uuid::Uuid;

use super::assignor::{Assignment, TopicInfo};
use super::member::flatten;
use super::*;

const SETTINGS: Settings = Settings {
    heartbeat_interval_ms: 5000,
    session_timeout_ms: 45_000,
    max_size: 1000,
};
const TOPICS: [(&str, u128, i32); 2] = [("a", 1, 3), ("b", 2, 5)];

#[derive(Debug, Clone)]
enum Op {
    /// Client joins (or rejoins) with a subscription (bit 0: a, bit 1: b) and an assignor.
    Join(usize, u8, bool),
    /// Client heartbeats with what it owns.
    Beat(usize),
    /// Client leaves.
    Leave(usize),
    /// The clock moves.
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4usize, 0..4u8, any::<bool>()).prop_map(|(c, s, r)| Op::Join(c, s, r)),
        (0..4usize).prop_map(Op::Beat),
        (0..4usize).prop_map(Op::Beat),
        (0..4usize).prop_map(Op::Beat),
        (0..4usize).prop_map(Op::Leave),
        (0..30_000i64).prop_map(Op::Advance),
    ]
}

#[derive(Debug, Clone, Default)]
struct Client {
    /// The member epoch, None when the client is not in the group.
    epoch: Option<i32>,
    owned: Assignment,
}

struct Model {
    groups: ConsumerGroups,
    clients: Vec<Client>,
    now_ms: i64,
}

fn resolve(name: &str) -> Option<TopicInfo> {
    TOPICS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, id, partitions)| TopicInfo {
            id: Uuid::from_u128(*id),
            partitions: *partitions,
        })
}

fn id(client: usize) -> String {
    format!("member-{client}")
}

impl Model {
    fn send(&mut self, client: usize, hb: Heartbeat) {
        match self.groups.heartbeat(&hb, &SETTINGS, self.now_ms, &resolve) {
            Ok(reply) => {
                let c = &mut self.clients[client];
                c.epoch = (reply.member_epoch >= 0).then_some(reply.member_epoch);
                if let Some(assignment) = reply.assignment {
                    c.owned = assignment;
                }
                if c.epoch.is_none() {
                    c.owned.clear();
                }
            }
            Err(e) => {
                assert!(matches!(e.code(), 25 | 110), "unexpected error {e}");
                self.clients[client] = Client::default();
            }
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Join(c, subscription, range) => {
                let names = TOPICS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| subscription & (1 << i) != 0)
                    .map(|(_, (n, _, _))| n.to_string())
                    .collect();
                self.clients[c].owned.clear();
                let hb = Heartbeat {
                    version: 1,
                    group_id: "g".into(),
                    member_id: id(c),
                    member_epoch: 0,
                    rebalance_timeout_ms: 10_000,
                    subscribed_topic_names: Some(names),
                    server_assignor: Some(if range { "range" } else { "uniform" }.into()),
                    owned: Some(Assignment::new()),
                    ..Heartbeat::default()
                };
                self.send(c, hb);
            }
            Op::Beat(c) => self.beat(c),
            Op::Leave(c) => {
                if self.clients[c].epoch.is_some() {
                    let hb = Heartbeat {
                        group_id: "g".into(),
                        member_id: id(c),
                        member_epoch: -1,
                        ..Heartbeat::default()
                    };
                    self.send(c, hb);
                    self.clients[c] = Client::default();
                }
            }
            Op::Advance(ms) => {
                self.now_ms += ms;
                self.groups.tick(self.now_ms);
            }
        }
    }

    fn beat(&mut self, c: usize) {
        let Some(epoch) = self.clients[c].epoch else { return };
        let hb = Heartbeat {
            version: 1,
            group_id: "g".into(),
            member_id: id(c),
            member_epoch: epoch,
            rebalance_timeout_ms: -1,
            owned: Some(self.clients[c].owned.clone()),
            ..Heartbeat::default()
        };
        self.send(c, hb);
    }

    fn check(&self) {
        let groups = self.groups.lock();
        let Some(group) = groups.get("g") else { return };
        let mut seen = BTreeSet::new();
        for (i, client) in self.clients.iter().enumerate() {
            // A client the coordinator has already dropped learns it on its next heartbeat;
            // until then it is a zombie that offset commit fencing stops, as in Kafka.
            let Some(member) = group.members.get(&id(i)) else {
                continue;
            };
            assert!(
                member.progress.epoch <= group.epoch,
                "member epoch past the group epoch"
            );
            let held: BTreeSet<(Uuid, i32)> = member.held().collect();
            for tp in flatten(&client.owned) {
                assert!(
                    held.contains(&tp),
                    "client {i} owns {tp:?} the coordinator does not count"
                );
                assert!(seen.insert(tp), "{tp:?} is owned by two members");
            }
        }
    }

    fn settle(&mut self) {
        for _ in 0..8 {
            for c in 0..self.clients.len() {
                self.beat(c);
                self.check();
            }
        }
        let groups = self.groups.lock();
        let Some(group) = groups.get("g") else { return };
        let subscribed: BTreeSet<&String> = group.members.values().flat_map(|m| &m.subscribed).collect();
        let expected: BTreeSet<(Uuid, i32)> = subscribed
            .into_iter()
            .filter_map(|n| resolve(n))
            .flat_map(|t| (0..t.partitions).map(move |p| (t.id, p)))
            .collect();
        let mut owned = BTreeMap::new();
        for (i, client) in self.clients.iter().enumerate() {
            for tp in flatten(&client.owned) {
                assert!(owned.insert(tp, i).is_none(), "{tp:?} owned twice after settling");
            }
        }
        let owned: BTreeSet<(Uuid, i32)> = owned.into_keys().collect();
        assert_eq!(
            owned, expected,
            "every subscribed partition is owned once after settling"
        );
        assert!(matches!(group.state().name(), "Stable" | "Empty"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn membership_keeps_partitions_exclusive_and_converges(ops in proptest::collection::vec(op(), 1..80)) {
        let mut model = Model {
            groups: ConsumerGroups::new(&BrokerConfig::new(std::env::temp_dir())),
            clients: vec![Client::default(); 4],
            now_ms: 0,
        };
        for op in &ops {
            model.apply(op);
            model.check();
        }
        model.settle();
    }
}

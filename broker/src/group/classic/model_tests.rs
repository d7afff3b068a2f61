//! Model-based property test of the classic group state machine: random joins (dynamic and
//! static, with and without member ids), syncs, heartbeats, leaves and clock advances by a few
//! clients, checked against invariants after every step: the generation never decreases, states
//! change only along Kafka's allowed edges, every waiting request is answered exactly once and
//! only while waiting, members that get an assignment get the one of the current generation,
//! static instances map to one member each, and a group left alone ends Empty.

use std::collections::HashSet;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use proptest::prelude::*;

use super::*;

const CLIENTS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Join { client: usize, fresh: bool },
    Sync { client: usize },
    Heartbeat { client: usize },
    Leave { client: usize, by_instance: bool },
    Advance { ms: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    prop_oneof![
        3 => (client.clone(), any::<bool>()).prop_map(|(client, fresh)| Op::Join { client, fresh }),
        3 => client.clone().prop_map(|client| Op::Sync { client }),
        2 => client.clone().prop_map(|client| Op::Heartbeat { client }),
        1 => (client, any::<bool>()).prop_map(|(client, by_instance)| Op::Leave { client, by_instance }),
        2 => (0i64..25_000).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// What one client knows, as a real consumer would.
#[derive(Debug, Clone, Default)]
struct Client {
    member_id: String,
    generation_id: i32,
    /// Clients 0 and 1 are static members.
    instance_id: Option<String>,
    /// The protocols it offers (clients differ in preference order).
    protocols: Vec<Protocol>,
}

struct Harness {
    group: Group,
    now_ms: i64,
    clients: Vec<Client>,
    waiting_joins: HashSet<String>,
    waiting_syncs: HashSet<String>,
    last_generation: i32,
    seen_transitions: usize,
}

impl Harness {
    fn new() -> Self {
        let protocol = |name: &str| Protocol {
            name: name.to_string(),
            metadata: Bytes::from(name.to_string()),
        };
        let clients = (0..CLIENTS)
            .map(|i| Client {
                member_id: String::new(),
                generation_id: -1,
                instance_id: (i < 2).then(|| format!("instance-{i}")),
                protocols: if i % 2 == 0 {
                    vec![protocol("range"), protocol("roundrobin")]
                } else {
                    vec![protocol("roundrobin"), protocol("range")]
                },
            })
            .collect();
        let limits = Limits {
            initial_rebalance_delay_ms: 3_000,
            ..Limits::default()
        };
        Harness {
            group: Group::new(limits, 0),
            now_ms: 0,
            clients,
            waiting_joins: HashSet::new(),
            waiting_syncs: HashSet::new(),
            last_generation: 0,
            seen_transitions: 0,
        }
    }

    fn client_of(&self, member_id: &str) -> Option<usize> {
        self.clients.iter().position(|c| c.member_id == member_id)
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now_ms;
        match *op {
            Op::Join { client, fresh } => {
                let c = self.clients[client].clone();
                let member_id = if fresh { String::new() } else { c.member_id.clone() };
                let req = JoinRequest {
                    member_id,
                    instance_id: c.instance_id.clone(),
                    client_id: format!("c{client}"),
                    client_host: "/127.0.0.1".to_string(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 20_000 + 5_000 * client as i32,
                    protocol_type: "consumer".to_string(),
                    protocols: c.protocols.clone(),
                    require_known_member_id: true,
                    supports_skip_assignment: true,
                };
                let (answer, effects) = self.group.join(req, now);
                match answer {
                    Answer::Now(r) => {
                        if r.error == ResponseError::MemberIdRequired.code() || r.error == 0 {
                            self.clients[client].member_id = r.member_id.clone();
                        }
                        if r.error == 0 {
                            self.clients[client].generation_id = r.generation_id;
                            assert_eq!(r.generation_id, self.group.generation_id());
                        }
                    }
                    Answer::Wait(id) => {
                        assert!(
                            self.group.member(&id).is_some(),
                            "a waiting member belongs to the group"
                        );
                        self.clients[client].member_id = id.clone();
                        self.waiting_joins.insert(id);
                    }
                }
                self.deliver(effects);
            }
            Op::Sync { client } => {
                let c = self.clients[client].clone();
                let assignments = if self.group.leader() == Some(c.member_id.as_str()) {
                    self.group
                        .members()
                        .map(|m| (m.id.clone(), Bytes::from(format!("{}@{}", m.id, c.generation_id))))
                        .collect()
                } else {
                    Vec::new()
                };
                let req = SyncRequest {
                    member_id: c.member_id.clone(),
                    instance_id: c.instance_id.clone(),
                    generation_id: c.generation_id,
                    assignments,
                    ..SyncRequest::default()
                };
                let (answer, effects) = self.group.sync(req, now);
                match answer {
                    Answer::Now(r) if r.error == 0 => {
                        assert_eq!(self.group.state(), GroupState::Stable);
                        self.check_assignment(&c.member_id, &r.assignment);
                    }
                    Answer::Now(_) => {}
                    Answer::Wait(id) => {
                        assert_eq!(id, c.member_id);
                        self.waiting_syncs.insert(id);
                    }
                }
                self.deliver(effects);
            }
            Op::Heartbeat { client } => {
                let c = &self.clients[client];
                let code = self
                    .group
                    .heartbeat(&c.member_id, c.instance_id.as_deref(), c.generation_id, now);
                if code == 0 {
                    assert!(matches!(
                        self.group.state(),
                        GroupState::Stable | GroupState::CompletingRebalance
                    ));
                }
            }
            Op::Leave { client, by_instance } => {
                let c = &self.clients[client];
                let leaving = Leaving {
                    member_id: if by_instance && c.instance_id.is_some() {
                        String::new()
                    } else {
                        c.member_id.clone()
                    },
                    instance_id: c.instance_id.clone(),
                };
                let (_, effects) = self.group.leave(&[leaving], now);
                self.deliver(effects);
            }
            Op::Advance { ms } => {
                self.now_ms += ms;
                let effects = self.group.tick(self.now_ms);
                self.deliver(effects);
            }
        }
        self.check();
    }

    fn check_assignment(&self, member_id: &str, assignment: &Bytes) {
        let member = self
            .group
            .member(member_id)
            .expect("an assigned member belongs to the group");
        assert_eq!(&member.assignment, assignment);
        if !assignment.is_empty() {
            let text = String::from_utf8_lossy(assignment);
            let generation = text.rsplit('@').next().unwrap_or_default();
            assert_eq!(
                generation,
                self.group.generation_id().to_string(),
                "an assignment of an old generation"
            );
        }
    }

    fn deliver(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Join(id, r) => {
                    assert!(
                        self.waiting_joins.remove(&id),
                        "join answer for {id}, which was not waiting"
                    );
                    if let Some(client) = self.client_of(&id) {
                        if r.error == 0 {
                            self.clients[client].generation_id = r.generation_id;
                            assert_eq!(r.generation_id, self.group.generation_id());
                            assert_eq!(
                                !r.members.is_empty(),
                                r.leader == id,
                                "the leader and only the leader gets the members"
                            );
                        }
                    }
                }
                Effect::Sync(id, r) => {
                    assert!(
                        self.waiting_syncs.remove(&id),
                        "sync answer for {id}, which was not waiting"
                    );
                    if r.error == 0 {
                        assert_eq!(self.group.state(), GroupState::Stable);
                        self.check_assignment(&id, &r.assignment);
                    }
                }
            }
        }
    }

    fn check(&mut self) {
        let g = &self.group;
        assert!(g.generation_id() >= self.last_generation, "the generation went back");
        self.last_generation = g.generation_id();
        for (from, to) in &g.transitions[self.seen_transitions..] {
            assert!(to.may_follow(*from), "{from:?} -> {to:?}");
        }
        self.seen_transitions = g.transitions.len();
        let mut instances = HashSet::new();
        let mut ids = HashSet::new();
        for m in g.members() {
            assert!(ids.insert(m.id.clone()), "member id {} twice", m.id);
            if let Some(i) = &m.instance_id {
                assert!(instances.insert(i.clone()), "instance {i} held by two members");
            }
            assert_eq!(g.is_awaiting_join(&m.id), self.waiting_joins.contains(&m.id));
            assert_eq!(g.is_awaiting_sync(&m.id), self.waiting_syncs.contains(&m.id));
        }
        // Requests of members no longer in the group must have been answered.
        assert!(self.waiting_joins.iter().all(|id| g.member(id).is_some()));
        assert!(self.waiting_syncs.iter().all(|id| g.member(id).is_some()));
        let waiting_join = g.members().any(|m| g.is_awaiting_join(&m.id));
        let waiting_sync = g.members().any(|m| g.is_awaiting_sync(&m.id));
        match g.state() {
            GroupState::Empty => assert_eq!(g.members().count(), 0),
            GroupState::PreparingRebalance => assert!(!waiting_sync),
            GroupState::CompletingRebalance => assert!(!waiting_join),
            GroupState::Stable => assert!(!waiting_join && !waiting_sync),
            GroupState::Dead => panic!("groups die only when deleted"),
        }
        if matches!(g.state(), GroupState::CompletingRebalance | GroupState::Stable) {
            let leader = g.leader().expect("a leader");
            assert!(g.member(leader).is_some(), "the leader is a member");
            assert!(g.protocol_name().is_some());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn random_membership_keeps_the_invariants(ops in proptest::collection::vec(op(), 1..80)) {
        let mut h = Harness::new();
        for op in &ops {
            h.apply(op);
        }
        // Left alone, every member expires, every waiting request is answered, the group empties.
        for _ in 0..6 {
            h.apply(&Op::Advance { ms: 400_000 });
        }
        prop_assert_eq!(h.group.state(), GroupState::Empty);
        prop_assert!(h.waiting_joins.is_empty() && h.waiting_syncs.is_empty());
    }
}

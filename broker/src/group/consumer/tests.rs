//! Scenario tests of KIP-848 groups through the coordinator's API: joins, revocation before
//! reassignment, leaves, fencing, expiry on an explicit clock, and the offset commit rules.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::assignor::{Assignment, TopicInfo};
use super::*;

const SETTINGS: Settings = Settings {
    heartbeat_interval_ms: 5000,
    session_timeout_ms: 45_000,
    max_size: 3,
};

struct Cluster {
    groups: ConsumerGroups,
    topics: BTreeMap<String, TopicInfo>,
}

fn t(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn parts(topic: u128, ps: &[i32]) -> Assignment {
    if ps.is_empty() {
        return Assignment::new();
    }
    Assignment::from([(t(topic), ps.iter().copied().collect::<BTreeSet<i32>>())])
}

impl Cluster {
    fn new(partitions: i32) -> Cluster {
        let topics = BTreeMap::from([("t".to_string(), TopicInfo { id: t(1), partitions })]);
        Cluster {
            groups: ConsumerGroups::new(&BrokerConfig::new(std::env::temp_dir())),
            topics,
        }
    }

    fn send(&self, hb: Heartbeat, now_ms: i64) -> Result<HeartbeatReply, ConsumerGroupError> {
        let topics = self.topics.clone();
        self.groups
            .heartbeat(&hb, &SETTINGS, now_ms, &move |name| topics.get(name).copied())
    }

    fn join(&self, member: &str, now_ms: i64) -> HeartbeatReply {
        self.send(
            Heartbeat {
                version: 1,
                group_id: "g".into(),
                member_id: member.into(),
                member_epoch: 0,
                rebalance_timeout_ms: 1000,
                subscribed_topic_names: Some(vec!["t".into()]),
                owned: Some(Assignment::new()),
                ..Heartbeat::default()
            },
            now_ms,
        )
        .expect("join accepted")
    }

    fn beat(
        &self,
        member: &str,
        epoch: i32,
        owned: &Assignment,
        now_ms: i64,
    ) -> Result<HeartbeatReply, ConsumerGroupError> {
        self.send(
            Heartbeat {
                version: 1,
                group_id: "g".into(),
                member_id: member.into(),
                member_epoch: epoch,
                rebalance_timeout_ms: -1,
                owned: Some(owned.clone()),
                ..Heartbeat::default()
            },
            now_ms,
        )
    }

    fn state(&self) -> &'static str {
        self.groups.describe("g").expect("group exists").state
    }
}

#[test]
fn the_first_member_revokes_before_the_second_receives() {
    let c = Cluster::new(4);
    let a = c.join("A", 0);
    assert_eq!(a.member_epoch, 1);
    assert_eq!(a.assignment, Some(parts(1, &[0, 1, 2, 3])));
    let owned_a = parts(1, &[0, 1, 2, 3]);
    let r = c.beat("A", 1, &owned_a, 0).unwrap();
    assert_eq!((r.member_epoch, r.assignment), (1, None));
    assert_eq!(c.state(), "Stable");

    let b = c.join("B", 0);
    assert_eq!(b.member_epoch, 2, "the joiner moves to the new epoch at once");
    assert_eq!(
        b.assignment,
        Some(Assignment::new()),
        "its partitions are still held by A"
    );
    assert_eq!(c.state(), "Reconciling");

    let r = c.beat("A", 1, &owned_a, 0).unwrap();
    assert_eq!(r.member_epoch, 1, "A stays at its epoch until it revokes");
    let kept = r.assignment.expect("A is told what to keep");
    assert_eq!(kept.values().map(BTreeSet::len).sum::<usize>(), 2);

    let r = c.beat("B", 2, &Assignment::new(), 0).unwrap();
    assert_eq!(r.assignment, None, "B gets nothing while A has not revoked");

    let r = c.beat("A", 1, &kept, 0).unwrap();
    assert_eq!((r.member_epoch, r.assignment), (2, None));

    let r = c.beat("B", 2, &Assignment::new(), 0).unwrap();
    let given = r.assignment.expect("B now receives the released partitions");
    assert_eq!(given.values().map(BTreeSet::len).sum::<usize>(), 2);
    let all: BTreeSet<i32> = kept[&t(1)].union(&given[&t(1)]).copied().collect();
    assert_eq!(all, BTreeSet::from([0, 1, 2, 3]));
    assert_eq!(c.state(), "Stable");

    let d = c.groups.describe("g").unwrap();
    assert_eq!((d.group_epoch, d.assignment_epoch, d.assignor), (2, 2, "uniform"));
    assert!(d
        .members
        .iter()
        .all(|m| m.assignment == m.target_assignment && m.member_epoch == 2));
}

#[test]
fn a_leaving_members_partitions_move() {
    let c = Cluster::new(2);
    c.join("A", 0);
    c.beat("A", 1, &parts(1, &[0, 1]), 0).unwrap();
    c.join("B", 0);
    let kept = c.beat("A", 1, &parts(1, &[0, 1]), 0).unwrap().assignment.unwrap();
    c.beat("A", 1, &kept, 0).unwrap();
    let b = c.beat("B", 2, &Assignment::new(), 0).unwrap().assignment.unwrap();
    let left = c
        .send(
            Heartbeat {
                group_id: "g".into(),
                member_id: "A".into(),
                member_epoch: -1,
                ..Heartbeat::default()
            },
            0,
        )
        .unwrap();
    assert_eq!(left.member_epoch, -1);
    let r = c.beat("B", 2, &b, 0).unwrap();
    assert_eq!(r.member_epoch, 3);
    assert_eq!(r.assignment, Some(parts(1, &[0, 1])));
    assert_eq!(c.beat("A", 1, &kept, 0).unwrap_err().code(), 25);
}

#[test]
fn sessions_expire_on_the_clock_given() {
    let c = Cluster::new(2);
    c.join("A", 0);
    c.join("B", 1000);
    c.groups.tick(44_999);
    assert_eq!(c.groups.describe("g").unwrap().members.len(), 2);
    c.groups.tick(45_000);
    let d = c.groups.describe("g").unwrap();
    assert_eq!(
        d.members.iter().map(|m| m.member_id.as_str()).collect::<Vec<_>>(),
        vec!["B"]
    );
    assert_eq!(d.group_epoch, 3);
    c.groups.tick(46_000);
    assert_eq!(c.state(), "Empty");
    assert!(c.groups.is_empty_or_absent("g"));
    assert!(c.groups.exists("g"));
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_fenced() {
    let c = Cluster::new(2);
    c.join("A", 0);
    c.beat("A", 1, &parts(1, &[0, 1]), 0).unwrap();
    c.join("B", 0);
    c.beat("A", 1, &parts(1, &[0, 1]), 100).unwrap();
    c.groups.tick(1099);
    assert_eq!(c.groups.describe("g").unwrap().members.len(), 2);
    c.groups.tick(1100);
    let d = c.groups.describe("g").unwrap();
    assert_eq!(d.members.len(), 1);
    let r = c.beat("B", 2, &Assignment::new(), 1100).unwrap();
    assert_eq!(r.assignment, Some(parts(1, &[0, 1])));
}

#[test]
fn epochs_are_fenced_as_kafka_fences_them() {
    let c = Cluster::new(2);
    c.join("A", 0);
    assert_eq!(c.beat("A", 5, &Assignment::new(), 0).unwrap_err().code(), 110);
    assert_eq!(c.beat("B", 1, &Assignment::new(), 0).unwrap_err().code(), 25);
    c.join("B", 0);
    c.beat("A", 1, &parts(1, &[0, 1]), 0).unwrap();
    c.beat("A", 1, &parts(1, &[0]), 0).unwrap();
    // A lost the response that moved it to epoch 2: its previous epoch is still accepted while
    // it owns a subset of its assignment.
    let r = c.beat("A", 1, &parts(1, &[0]), 0).unwrap();
    assert_eq!(r.member_epoch, 2);
    assert_eq!(c.beat("A", 1, &parts(1, &[0, 1]), 0).unwrap_err().code(), 110);
    // A fenced member rejoins with epoch 0 and its id.
    let r = c.join("A", 0);
    assert_eq!(r.member_epoch, 2);
    assert_eq!(r.assignment, Some(parts(1, &[0])));
}

#[test]
fn malformed_first_heartbeats_are_refused() {
    let c = Cluster::new(1);
    let join = Heartbeat {
        version: 1,
        group_id: "g".into(),
        member_id: "A".into(),
        member_epoch: 0,
        rebalance_timeout_ms: 1000,
        subscribed_topic_names: Some(vec!["t".into()]),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    };
    let code = |hb: Heartbeat| c.send(hb, 0).unwrap_err().code();
    assert_eq!(
        code(Heartbeat {
            subscribed_topic_names: None,
            ..join.clone()
        }),
        42
    );
    assert_eq!(
        code(Heartbeat {
            rebalance_timeout_ms: -1,
            ..join.clone()
        }),
        42
    );
    assert_eq!(
        code(Heartbeat {
            owned: None,
            ..join.clone()
        }),
        42
    );
    assert_eq!(
        code(Heartbeat {
            member_id: String::new(),
            ..join.clone()
        }),
        42
    );
    assert_eq!(
        code(Heartbeat {
            subscribed_topic_regex: Some("t.*".into()),
            ..join.clone()
        }),
        42
    );
    assert_eq!(
        code(Heartbeat {
            group_id: String::new(),
            ..join.clone()
        }),
        42
    );
    assert_eq!(
        code(Heartbeat {
            member_epoch: -3,
            ..join.clone()
        }),
        42
    );
    assert_eq!(
        code(Heartbeat {
            server_assignor: Some("sticky".into()),
            ..join.clone()
        }),
        112
    );
    // v0 clients may leave the member id to the broker.
    let r = c
        .send(
            Heartbeat {
                version: 0,
                member_id: String::new(),
                ..join.clone()
            },
            0,
        )
        .unwrap();
    assert_eq!(r.member_id.len(), 32);
    assert!(!c.groups.exists("other"));
}

#[test]
fn groups_are_bounded_in_size() {
    let c = Cluster::new(1);
    for m in ["A", "B", "C"] {
        c.join(m, 0);
    }
    let err = c
        .send(
            Heartbeat {
                version: 1,
                group_id: "g".into(),
                member_id: "D".into(),
                rebalance_timeout_ms: 1000,
                subscribed_topic_names: Some(vec![]),
                owned: Some(Assignment::new()),
                ..Heartbeat::default()
            },
            0,
        )
        .unwrap_err();
    assert_eq!(err.code(), 81);
}

#[test]
fn a_partition_count_change_bumps_the_group_epoch() {
    let mut c = Cluster::new(1);
    c.join("A", 0);
    c.topics.insert(
        "t".into(),
        TopicInfo {
            id: t(1),
            partitions: 3,
        },
    );
    let r = c.beat("A", 1, &parts(1, &[0]), 0).unwrap();
    assert_eq!(r.member_epoch, 2);
    assert_eq!(r.assignment, Some(parts(1, &[0, 1, 2])));
    // A recreated topic has a new id: the old partitions are revoked first.
    c.topics.insert(
        "t".into(),
        TopicInfo {
            id: t(2),
            partitions: 1,
        },
    );
    let r = c.beat("A", 2, &parts(1, &[0, 1, 2]), 0).unwrap();
    assert_eq!((r.member_epoch, r.assignment), (2, Some(Assignment::new())));
    let r = c.beat("A", 2, &Assignment::new(), 0).unwrap();
    assert_eq!((r.member_epoch, r.assignment), (3, Some(parts(2, &[0]))));
}

#[test]
fn the_range_assignor_is_used_when_members_ask_for_it() {
    let c = Cluster::new(3);
    let join = |m: &str| Heartbeat {
        version: 1,
        group_id: "g".into(),
        member_id: m.into(),
        rebalance_timeout_ms: 1000,
        subscribed_topic_names: Some(vec!["t".into()]),
        server_assignor: Some("range".into()),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    };
    c.send(join("A"), 0).unwrap();
    c.send(join("B"), 0).unwrap();
    let d = c.groups.describe("g").unwrap();
    assert_eq!(d.assignor, "range");
    assert_eq!(d.members[0].target_assignment, parts(1, &[0, 1]));
    assert_eq!(d.members[1].target_assignment, parts(1, &[2]));
}

#[test]
fn a_static_member_comes_back_without_a_rebalance() {
    let c = Cluster::new(2);
    let join = |m: &str| Heartbeat {
        version: 1,
        group_id: "g".into(),
        member_id: m.into(),
        instance_id: Some("i".into()),
        rebalance_timeout_ms: 1000,
        subscribed_topic_names: Some(vec!["t".into()]),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    };
    c.send(join("A"), 0).unwrap();
    assert_eq!(c.send(join("A2"), 0).unwrap_err().code(), 111);
    let leave = Heartbeat {
        group_id: "g".into(),
        member_id: "A".into(),
        member_epoch: -2,
        instance_id: Some("i".into()),
        ..Heartbeat::default()
    };
    assert_eq!(c.send(leave, 0).unwrap().member_epoch, -2);
    let r = c.send(join("A2"), 10).unwrap();
    assert_eq!((r.member_epoch, r.assignment), (1, Some(parts(1, &[0, 1]))));
    assert_eq!(c.groups.describe("g").unwrap().group_epoch, 1);
}

#[test]
fn commits_follow_kafkas_member_epoch_rules() {
    let c = Cluster::new(1);
    assert_eq!(c.groups.validate_commit("g", "", -1), Ok(()));
    assert_eq!(c.groups.validate_commit("g", "A", 1), Err(25));
    c.join("A", 0);
    assert_eq!(c.groups.validate_commit("g", "A", 1), Ok(()));
    assert_eq!(c.groups.validate_commit("g", "A", 0), Err(113));
    assert_eq!(c.groups.validate_commit("g", "B", 1), Err(25));
    assert_eq!(c.groups.validate_commit("g", "", -1), Err(25));
    assert_eq!(c.groups.delete("g"), Err(68));
    c.groups.tick(i64::MAX);
    assert_eq!(c.groups.validate_commit("g", "", -1), Ok(()));
    let listed = c.groups.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].protocol_type.as_str(), listed[0].state.as_str()),
        ("consumer", "Empty")
    );
    assert_eq!(c.groups.delete("g"), Ok(()));
    assert_eq!(c.groups.delete("g"), Err(69));
}

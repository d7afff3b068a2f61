//! The server-side assignors of KIP-848 consumer groups: `uniform` (balanced and sticky) and
//! `range` (contiguous ranges per topic, laid out as Kafka's RangeAssignor lays them out).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions by topic id: a member's assignment.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// A subscribed topic as the assignor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic id.
    pub id: Uuid,
    /// The number of partitions.
    pub partitions: i32,
}

/// One member as the assignor sees it.
#[derive(Debug, Clone, Copy)]
pub struct MemberSpec<'a> {
    /// The topic names the member subscribes to.
    pub subscribed: &'a BTreeSet<String>,
    /// The member's previous target assignment, kept where possible by sticky assignors.
    pub previous: &'a Assignment,
}

/// A server-side assignor, named as Kafka names them in `group.consumer.assignors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServerAssignor {
    /// Balanced across members, keeping partitions where they are when balance allows.
    Uniform,
    /// Contiguous ranges of each topic's partitions, by member id.
    Range,
}

/// Every assignor Brook has; the first is the default.
pub const ASSIGNORS: &[ServerAssignor] = &[ServerAssignor::Uniform, ServerAssignor::Range];

impl ServerAssignor {
    /// The name clients send in `server_assignor`.
    pub fn name(self) -> &'static str {
        match self {
            ServerAssignor::Uniform => "uniform",
            ServerAssignor::Range => "range",
        }
    }

    /// The assignor with this name, if Brook has it.
    pub fn from_name(name: &str) -> Option<ServerAssignor> {
        ASSIGNORS.iter().copied().find(|a| a.name() == name)
    }

    /// Computes every member's target assignment. Every partition of every topic in `topics`
    /// that at least one member subscribes to is assigned to exactly one subscribed member.
    pub fn assign(
        self,
        members: &BTreeMap<String, MemberSpec<'_>>,
        topics: &BTreeMap<String, TopicInfo>,
    ) -> BTreeMap<String, Assignment> {
        match self {
            ServerAssignor::Uniform => uniform(members, topics),
            ServerAssignor::Range => range(members, topics),
        }
    }
}

/// Per topic, members sorted by id receive contiguous ranges; the first `partitions % members`
/// receive one partition more, as in Kafka's RangeAssignor.
fn range(
    members: &BTreeMap<String, MemberSpec<'_>>,
    topics: &BTreeMap<String, TopicInfo>,
) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = members.keys().map(|m| (m.clone(), Assignment::new())).collect();
    for (name, topic) in topics {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, spec)| spec.subscribed.contains(name))
            .map(|(id, _)| id)
            .collect();
        if subscribers.is_empty() || topic.partitions <= 0 {
            continue;
        }
        let count = subscribers.len() as i32;
        let (quota, extra) = (topic.partitions / count, topic.partitions % count);
        let mut start = 0;
        for (i, member) in subscribers.into_iter().enumerate() {
            let len = quota + i32::from((i as i32) < extra);
            if len > 0 {
                let parts = result.entry(member.clone()).or_default().entry(topic.id).or_default();
                parts.extend(start..start + len);
            }
            start += len;
        }
    }
    result
}

/// Balanced and sticky: members keep the partitions of their previous assignment that are still
/// valid, free partitions go to the least loaded subscriber, and partitions then move one at a
/// time from a member to a subscriber holding at least two fewer, until no such move remains.
/// For members with identical subscriptions this ends with loads that differ by at most one.
fn uniform(
    members: &BTreeMap<String, MemberSpec<'_>>,
    topics: &BTreeMap<String, TopicInfo>,
) -> BTreeMap<String, Assignment> {
    let ids: Vec<&str> = members.keys().map(String::as_str).collect();
    // For each topic id: its partition count and the indexes (into `ids`) of its subscribers.
    let mut eligible: BTreeMap<Uuid, (i32, Vec<usize>)> = BTreeMap::new();
    let mut order: Vec<Uuid> = Vec::new();
    for (name, topic) in topics {
        let subscribers: Vec<usize> = ids
            .iter()
            .enumerate()
            .filter(|(_, id)| members[**id].subscribed.contains(name))
            .map(|(i, _)| i)
            .collect();
        if !subscribers.is_empty() && topic.partitions > 0 {
            eligible.insert(topic.id, (topic.partitions, subscribers));
            order.push(topic.id);
        }
    }
    let mut owned: Vec<BTreeSet<(Uuid, i32)>> = vec![BTreeSet::new(); ids.len()];
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        for (topic, parts) in members[*id].previous {
            let Some((count, subscribers)) = eligible.get(topic) else {
                continue;
            };
            if !subscribers.contains(&i) {
                continue;
            }
            for &p in parts.iter().filter(|p| (0..*count).contains(*p)) {
                if taken.insert((*topic, p)) {
                    owned[i].insert((*topic, p));
                }
            }
        }
    }
    for topic in &order {
        let (count, subscribers) = &eligible[topic];
        for p in 0..*count {
            if taken.contains(&(*topic, p)) {
                continue;
            }
            let least = subscribers.iter().copied().min_by_key(|&i| (owned[i].len(), i));
            if let Some(i) = least {
                owned[i].insert((*topic, p));
                taken.insert((*topic, p));
            }
        }
    }
    // Each move lowers the sum of squared loads, so the loop ends.
    loop {
        let mut by_load: Vec<usize> = (0..ids.len()).collect();
        by_load.sort_by_key(|&i| (std::cmp::Reverse(owned[i].len()), i));
        let mut chosen = None;
        'search: for &from in &by_load {
            let load = owned[from].len();
            if load < 2 {
                break;
            }
            for &(topic, p) in owned[from].iter().rev() {
                let target = eligible[&topic]
                    .1
                    .iter()
                    .copied()
                    .filter(|&to| owned[to].len() + 2 <= load)
                    .min_by_key(|&to| (owned[to].len(), to));
                if let Some(to) = target {
                    chosen = Some((from, to, topic, p));
                    break 'search;
                }
            }
        }
        let Some((from, to, topic, p)) = chosen else { break };
        owned[from].remove(&(topic, p));
        owned[to].insert((topic, p));
    }
    ids.iter()
        .zip(owned)
        .map(|(id, parts)| {
            let mut assignment = Assignment::new();
            for (topic, p) in parts {
                assignment.entry(topic).or_default().insert(p);
            }
            (id.to_string(), assignment)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u128, partitions: i32) -> TopicInfo {
        TopicInfo {
            id: Uuid::from_u128(n),
            partitions,
        }
    }

    fn subs(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn flat(a: &Assignment) -> Vec<(u128, i32)> {
        a.iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.as_u128(), *p)))
            .collect()
    }

    fn run(
        assignor: ServerAssignor,
        members: &[(&str, &BTreeSet<String>, &Assignment)],
        topics: &BTreeMap<String, TopicInfo>,
    ) -> BTreeMap<String, Assignment> {
        let specs = members
            .iter()
            .map(|(id, subscribed, previous)| (id.to_string(), MemberSpec { subscribed, previous }))
            .collect();
        assignor.assign(&specs, topics)
    }

    #[test]
    fn range_matches_kafkas_documented_layout() {
        // Kafka's RangeAssignor javadoc: C0 and C1 subscribe to t0 and t1, three partitions each;
        // C0 gets t0p0, t0p1, t1p0, t1p1 and C1 gets t0p2, t1p2.
        let topics = BTreeMap::from([("t0".to_string(), topic(1, 3)), ("t1".to_string(), topic(2, 3))]);
        let both = subs(&["t0", "t1"]);
        let none = Assignment::new();
        let out = run(
            ServerAssignor::Range,
            &[("C0", &both, &none), ("C1", &both, &none)],
            &topics,
        );
        assert_eq!(flat(&out["C0"]), vec![(1, 0), (1, 1), (2, 0), (2, 1)]);
        assert_eq!(flat(&out["C1"]), vec![(1, 2), (2, 2)]);
    }

    #[test]
    fn range_gives_extras_to_the_first_members_and_skips_unsubscribed() {
        let topics = BTreeMap::from([("a".to_string(), topic(1, 7)), ("b".to_string(), topic(2, 2))]);
        let a = subs(&["a"]);
        let ab = subs(&["a", "b"]);
        let none = Assignment::new();
        let out = run(
            ServerAssignor::Range,
            &[("m1", &ab, &none), ("m2", &a, &none), ("m3", &a, &none)],
            &topics,
        );
        assert_eq!(flat(&out["m1"]), vec![(1, 0), (1, 1), (1, 2), (2, 0), (2, 1)]);
        assert_eq!(flat(&out["m2"]), vec![(1, 3), (1, 4)]);
        assert_eq!(flat(&out["m3"]), vec![(1, 5), (1, 6)]);
    }

    #[test]
    fn uniform_balances_identical_subscriptions() {
        let topics = BTreeMap::from([("a".to_string(), topic(1, 7)), ("b".to_string(), topic(2, 4))]);
        let ab = subs(&["a", "b"]);
        let none = Assignment::new();
        let out = run(
            ServerAssignor::Uniform,
            &[("m1", &ab, &none), ("m2", &ab, &none), ("m3", &ab, &none)],
            &topics,
        );
        let mut loads: Vec<usize> = out.values().map(|a| flat(a).len()).collect();
        loads.sort();
        assert_eq!(loads, vec![3, 4, 4]);
        let all: BTreeSet<(u128, i32)> = out.values().flat_map(flat).collect();
        assert_eq!(all.len(), 11);
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let topics = BTreeMap::from([("a".to_string(), topic(1, 6))]);
        let a = subs(&["a"]);
        let none = Assignment::new();
        let first = run(
            ServerAssignor::Uniform,
            &[("m1", &a, &none), ("m2", &a, &none)],
            &topics,
        );
        let second = run(
            ServerAssignor::Uniform,
            &[("m1", &a, &first["m1"]), ("m2", &a, &first["m2"]), ("m3", &a, &none)],
            &topics,
        );
        for m in ["m1", "m2"] {
            let before: BTreeSet<_> = flat(&first[m]).into_iter().collect();
            let after: BTreeSet<_> = flat(&second[m]).into_iter().collect();
            assert_eq!(after.len(), 2, "{m} keeps a fair share");
            assert!(after.is_subset(&before), "{m} only gives partitions up");
        }
        assert_eq!(flat(&second["m3"]).len(), 2);
    }

    #[test]
    fn uniform_respects_heterogeneous_subscriptions() {
        let topics = BTreeMap::from([("a".to_string(), topic(1, 4)), ("b".to_string(), topic(2, 4))]);
        let a = subs(&["a"]);
        let ab = subs(&["a", "b"]);
        let none = Assignment::new();
        let out = run(
            ServerAssignor::Uniform,
            &[("m1", &a, &none), ("m2", &ab, &none)],
            &topics,
        );
        assert!(flat(&out["m1"]).iter().all(|(t, _)| *t == 1));
        assert_eq!(flat(&out["m1"]).len(), 4);
        assert_eq!(flat(&out["m2"]), vec![(2, 0), (2, 1), (2, 2), (2, 3)]);
    }

    #[test]
    fn previous_partitions_of_shrunk_or_unsubscribed_topics_are_dropped() {
        let topics = BTreeMap::from([("a".to_string(), topic(1, 2))]);
        let a = subs(&["a"]);
        let previous = Assignment::from([
            (Uuid::from_u128(1), BTreeSet::from([0, 1, 5])),
            (Uuid::from_u128(9), BTreeSet::from([0])),
        ]);
        let out = run(ServerAssignor::Uniform, &[("m1", &a, &previous)], &topics);
        assert_eq!(flat(&out["m1"]), vec![(1, 0), (1, 1)]);
    }

    #[test]
    fn names_round_trip() {
        for a in ASSIGNORS {
            assert_eq!(ServerAssignor::from_name(a.name()), Some(*a));
        }
        assert_eq!(ServerAssignor::from_name("sticky"), None);
    }
}

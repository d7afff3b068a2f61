//! Client-side partition assignors that the leader of a classic consumer group runs over the
//! members' subscriptions: Java's eager `range` and the incremental `cooperative-sticky`.

use std::collections::{BTreeMap, BTreeSet};

use super::consumer_protocol::TopicPartition;

/// What the leader knows about one member when it assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberSubscription {
    /// The member id.
    pub member_id: String,
    /// The static member id, if any.
    pub group_instance_id: Option<String>,
    /// The subscribed topics.
    pub topics: Vec<String>,
    /// The partitions the member says it owns.
    pub owned: Vec<TopicPartition>,
    /// The generation the member owned them in, -1 when unknown.
    pub generation_id: i32,
}

/// The assignor names the client implements, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Java's `RangeAssignor`: eager, every partition is revoked before each rebalance.
    Range,
    /// Java's `CooperativeStickyAssignor`: incremental, only moving partitions are revoked.
    CooperativeSticky,
}

impl Assignor {
    /// The assignor for a protocol name, if this client implements it.
    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "cooperative-sticky" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }

    /// The protocol name in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Whether members keep their partitions across a rebalance (the cooperative protocol).
    pub fn is_cooperative(self) -> bool {
        matches!(self, Assignor::CooperativeSticky)
    }

    /// Assigns the partitions of subscribed topics (`partition_counts`) to the members.
    pub(crate) fn assign(
        self,
        members: &[MemberSubscription],
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        match self {
            Assignor::Range => range(members, partition_counts),
            Assignor::CooperativeSticky => cooperative_sticky(members, partition_counts),
        }
    }
}

/// Java's sort order of members: static members by instance id first, then dynamic ones by member id.
fn java_order(m: &MemberSubscription) -> (bool, &str, &str) {
    (
        m.group_instance_id.is_none(),
        m.group_instance_id.as_deref().unwrap_or(""),
        m.member_id.as_str(),
    )
}

/// Java's RangeAssignor: per topic, members in order get consecutive ranges, the first
/// `partitions % members` of them one partition more.
pub(crate) fn range(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> =
        members.iter().map(|m| (m.member_id.clone(), Vec::new())).collect();
    for (topic, &count) in partition_counts {
        let mut subscribers: Vec<&MemberSubscription> = members.iter().filter(|m| m.topics.contains(topic)).collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        subscribers.sort_by(|a, b| java_order(a).cmp(&java_order(b)));
        let n = subscribers.len() as i32;
        let (per_member, extra) = (count / n, count % n);
        for (i, member) in subscribers.iter().enumerate() {
            let i = i as i32;
            let start = per_member * i + i.min(extra);
            let length = per_member + i32::from(i < extra);
            let list = out.entry(member.member_id.clone()).or_default();
            list.extend((start..start + length).map(|p| (topic.clone(), p)));
        }
    }
    out
}

/// The cooperative-sticky assignor: keeps each valid owned partition with its owner as far as
/// balance allows, spreads the rest to the least loaded eligible members, and then removes from
/// the result every partition that moves away from its current owner, so that it is revoked in
/// this generation and assigned in the follow-up rebalance the revoking member triggers.
///
/// An owned partition is valid when it exists, its owner still subscribes to its topic, and no
/// other member claims it in a newer generation (claims in the same generation drop both).
pub(crate) fn cooperative_sticky(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut members: Vec<&MemberSubscription> = members.iter().collect();
    members.sort_by(|a, b| java_order(a).cmp(&java_order(b)));
    let ids: Vec<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
    let eligible = |i: usize, tp: &TopicPartition| members[i].topics.contains(&tp.0);
    let all: BTreeSet<TopicPartition> = partition_counts
        .iter()
        .filter(|(topic, _)| members.iter().any(|m| m.topics.contains(topic)))
        .flat_map(|(topic, &count)| (0..count.max(0)).map(move |p| (topic.clone(), p)))
        .collect();

    // The current owner of each partition: highest generation wins, a tie drops the claim.
    let mut claims: BTreeMap<TopicPartition, (i32, Option<usize>)> = BTreeMap::new();
    for (i, member) in members.iter().enumerate() {
        for tp in &member.owned {
            if !all.contains(tp) || !eligible(i, tp) {
                continue;
            }
            match claims.get(tp).copied() {
                Some((generation, _)) if generation > member.generation_id => {}
                Some((generation, Some(other))) if generation == member.generation_id && other != i => {
                    claims.insert(tp.clone(), (generation, None));
                }
                Some((generation, None)) if generation == member.generation_id => {}
                _ => {
                    claims.insert(tp.clone(), (member.generation_id, Some(i)));
                }
            }
        }
    }
    let owner: BTreeMap<TopicPartition, usize> = claims
        .into_iter()
        .filter_map(|(tp, (_, o))| o.map(|o| (tp, o)))
        .collect();

    // Sticky start: everyone keeps what they validly own, capped at the balanced quota for
    // members with identical subscriptions (a cap of ceil(eligible partitions / eligible members)).
    let mut assignment: Vec<BTreeSet<TopicPartition>> = vec![BTreeSet::new(); members.len()];
    for (i, member) in members.iter().enumerate() {
        let reachable = all.iter().filter(|tp| eligible(i, tp)).count();
        let sharing = (0..members.len())
            .filter(|&j| members[j].topics.iter().collect::<BTreeSet<_>>() == member.topics.iter().collect())
            .count()
            .max(1);
        let quota = reachable.div_ceil(sharing);
        let mut kept: Vec<&TopicPartition> = owner.iter().filter(|(_, &o)| o == i).map(|(tp, _)| tp).collect();
        kept.truncate(quota);
        assignment[i].extend(kept.into_iter().cloned());
    }
    // Every other partition goes to the eligible member with the fewest partitions.
    let assigned: BTreeSet<TopicPartition> = assignment.iter().flatten().cloned().collect();
    for tp in all.iter().filter(|tp| !assigned.contains(*tp)) {
        let target = (0..members.len())
            .filter(|&i| eligible(i, tp))
            .min_by_key(|&i| (assignment[i].len(), ids[i]));
        if let Some(i) = target {
            assignment[i].insert(tp.clone());
        }
    }
    // Balance: move a partition from a member with two or more than an eligible one while any such
    // pair exists; each move lowers the sum of squared loads, so this ends; the bound is a guard.
    for _ in 0..all.len().saturating_mul(members.len()).max(1) {
        let mut moved = false;
        'search: for hi in 0..members.len() {
            for lo in 0..members.len() {
                if assignment[hi].len() < assignment[lo].len() + 2 {
                    continue;
                }
                // Prefer moving a partition the loaded member does not own from before.
                let candidate = assignment[hi]
                    .iter()
                    .filter(|tp| eligible(lo, tp))
                    .max_by_key(|tp| (owner.get(*tp) != Some(&hi), (*tp).clone()))
                    .cloned();
                if let Some(tp) = candidate {
                    assignment[hi].remove(&tp);
                    assignment[lo].insert(tp);
                    moved = true;
                    break 'search;
                }
            }
        }
        if !moved {
            break;
        }
    }
    // Cooperative: a partition moving away from its owner is only revoked in this generation.
    let mut out = BTreeMap::new();
    for (i, set) in assignment.into_iter().enumerate() {
        let kept = set
            .into_iter()
            .filter(|tp| owner.get(tp).is_none_or(|&o| o == i))
            .collect();
        out.insert(ids[i].to_string(), kept);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str], owned: &[(&str, i32)], generation_id: i32) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            group_instance_id: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: owned.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
            generation_id,
        }
    }

    fn counts(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
        topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn tps(list: &[(&str, i32)]) -> Vec<TopicPartition> {
        list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    /// The example in Java's RangeAssignor javadoc: C0 and C1 on t0 and t1 with 3 partitions each.
    #[test]
    fn range_matches_javas_documented_layout() {
        let members = [
            member("C1", &["t0", "t1"], &[], -1),
            member("C0", &["t0", "t1"], &[], -1),
        ];
        let out = range(&members, &counts(&[("t0", 3), ("t1", 3)]));
        assert_eq!(out["C0"], tps(&[("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)]));
        assert_eq!(out["C1"], tps(&[("t0", 2), ("t1", 2)]));
    }

    #[test]
    fn range_orders_static_members_first_and_skips_unsubscribed_topics() {
        let mut a = member("a", &["t"], &[], -1);
        let mut z = member("z", &["t", "u"], &[], -1);
        z.group_instance_id = Some("i0".into());
        a.group_instance_id = None;
        let out = range(&[a, z], &counts(&[("t", 5), ("u", 2)]));
        assert_eq!(out["z"], tps(&[("t", 0), ("t", 1), ("t", 2), ("u", 0), ("u", 1)]));
        assert_eq!(out["a"], tps(&[("t", 3), ("t", 4)]));
    }

    fn loads(out: &BTreeMap<String, Vec<TopicPartition>>) -> Vec<usize> {
        out.values().map(Vec::len).collect()
    }

    #[test]
    fn cooperative_sticky_balances_a_fresh_group() {
        let members = [
            member("a", &["t"], &[], -1),
            member("b", &["t"], &[], -1),
            member("c", &["t"], &[], -1),
        ];
        let out = cooperative_sticky(&members, &counts(&[("t", 7)]));
        let mut l = loads(&out);
        l.sort_unstable();
        assert_eq!(l, vec![2, 2, 3]);
        let all: BTreeSet<_> = out.values().flatten().collect();
        assert_eq!(all.len(), 7);
    }

    #[test]
    fn cooperative_sticky_keeps_owned_partitions_when_balanced() {
        let a = member("a", &["t"], &[("t", 0), ("t", 3), ("t", 4)], 5);
        let b = member("b", &["t"], &[("t", 1), ("t", 2), ("t", 5)], 5);
        let out = cooperative_sticky(&[a.clone(), b.clone()], &counts(&[("t", 6)]));
        assert_eq!(
            out["a"],
            a.owned
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        );
        assert_eq!(out["b"], tps(&[("t", 1), ("t", 2), ("t", 5)]));
    }

    /// A new member joins a group where `a` owns everything: in this generation `a` keeps only its
    /// share and nothing of what moves is given to `b` yet; in the next one `b` gets it.
    #[test]
    fn cooperative_sticky_revokes_before_it_reassigns() {
        let owned_all: Vec<(&str, i32)> = (0..6).map(|p| ("t", p)).collect();
        let a = member("a", &["t"], &owned_all, 3);
        let b = member("b", &["t"], &[], -1);
        let first = cooperative_sticky(&[a, b], &counts(&[("t", 6)]));
        assert_eq!(first["a"].len(), 3);
        assert!(
            first["b"].is_empty(),
            "moving partitions are not assigned in the revoking generation"
        );
        let a_owned: Vec<(&str, i32)> = first["a"].iter().map(|(t, p)| (t.as_str(), *p)).collect();
        let a = member("a", &["t"], &a_owned, 4);
        let b = member("b", &["t"], &[], 4);
        let second = cooperative_sticky(&[a, b], &counts(&[("t", 6)]));
        assert_eq!(second["a"], first["a"]);
        assert_eq!(second["b"].len(), 3);
        let all: BTreeSet<_> = second.values().flatten().collect();
        assert_eq!(all.len(), 6);
    }

    #[test]
    fn cooperative_sticky_never_gives_a_partition_owned_by_another_member() {
        // Many shapes of ownership: whatever the assignor decides, no partition lands on a member
        // other than its valid current owner, and every unowned partition is assigned.
        for n_members in 1..5usize {
            for partitions in 0..9i32 {
                for seed in 0..4usize {
                    let mut members: Vec<MemberSubscription> = (0..n_members)
                        .map(|i| member(&format!("m{i}"), &["t"], &[], 1))
                        .collect();
                    for p in 0..partitions {
                        let i = (p as usize * (seed + 1) + seed) % (n_members + 1);
                        if i < n_members {
                            members[i].owned.push(("t".into(), p));
                        }
                    }
                    let out = cooperative_sticky(&members, &counts(&[("t", partitions)]));
                    for (id, list) in &out {
                        for tp in list {
                            let owner = members.iter().find(|m| m.owned.contains(tp));
                            assert!(owner.is_none_or(|o| &o.member_id == id), "{tp:?} given to {id}");
                        }
                    }
                    let given: BTreeSet<_> = out.values().flatten().cloned().collect();
                    for p in 0..partitions {
                        let tp = ("t".to_string(), p);
                        let owned = members.iter().any(|m| m.owned.contains(&tp));
                        assert!(owned || given.contains(&tp), "unowned {tp:?} left unassigned");
                    }
                }
            }
        }
    }

    #[test]
    fn cooperative_sticky_drops_conflicting_and_stale_claims() {
        let a = member("a", &["t"], &[("t", 0), ("t", 1)], 4);
        let b = member("b", &["t"], &[("t", 0)], 3);
        let out = cooperative_sticky(&[a, b], &counts(&[("t", 2)]));
        // `b`'s claim on t-0 is from an older generation, so `a` is the owner; balance moves one
        // partition to `b`, which is revoked from `a` first.
        assert_eq!(out["a"].len() + out["b"].len(), 1);
        let c = member("c", &["t"], &[("t", 0)], 4);
        let d = member("d", &["t"], &[("t", 0)], 4);
        let out = cooperative_sticky(&[c, d], &counts(&[("t", 1)]));
        assert_eq!(
            out["c"].len() + out["d"].len(),
            1,
            "a same-generation conflict frees the partition"
        );
    }
}

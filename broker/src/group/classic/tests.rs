//! Unit tests of the classic group state machine: join, sync, heartbeat and leave flows, member
//! ids (KIP-394), static membership (KIP-345), timeouts, fencing and protocol selection.

use bytes::Bytes;
use kafka_protocol::ResponseError as E;

use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;
const DELAY_MS: i64 = 3_000;
/// When a group that several members joined at time 0 completes its first join phase: a
/// second member extends the initial delay once, as in Kafka.
const SETTLED: i64 = 2 * DELAY_MS;

fn limits() -> Limits {
    Limits {
        initial_rebalance_delay_ms: DELAY_MS,
        ..Limits::default()
    }
}

fn protocols(names: &[&str]) -> Vec<Protocol> {
    names
        .iter()
        .map(|n| Protocol {
            name: n.to_string(),
            metadata: Bytes::from(format!("meta-{n}")),
        })
        .collect()
}

fn request(member_id: &str, names: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        instance_id: None,
        client_id: "client".to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".to_string(),
        protocols: protocols(names),
        require_known_member_id: true,
        supports_skip_assignment: true,
    }
}

fn sync_request(member_id: &str, generation_id: i32, assignments: &[(&str, &str)]) -> SyncRequest {
    SyncRequest {
        member_id: member_id.to_string(),
        generation_id,
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
            .collect(),
        ..SyncRequest::default()
    }
}

/// Gets a member id through MEMBER_ID_REQUIRED and joins with it; returns the id.
fn enter(g: &mut Group, req: JoinRequest, now: i64) -> (String, Vec<Effect>) {
    let (answer, effects) = g.join(req.clone(), now);
    assert!(effects.is_empty());
    let Answer::Now(first) = answer else {
        panic!("expected MEMBER_ID_REQUIRED")
    };
    assert_eq!(first.error, E::MemberIdRequired.code());
    assert!(first.member_id.starts_with("client-"));
    let (answer, effects) = g.join(
        JoinRequest {
            member_id: first.member_id.clone(),
            ..req
        },
        now,
    );
    assert_eq!(answer, Answer::Wait(first.member_id.clone()));
    (first.member_id, effects)
}

fn joins(effects: &[Effect]) -> Vec<(&str, &JoinResult)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Join(id, r) => Some((id.as_str(), r)),
            _ => None,
        })
        .collect()
}

fn syncs(effects: &[Effect]) -> Vec<(&str, &SyncResult)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Sync(id, r) => Some((id.as_str(), r)),
            _ => None,
        })
        .collect()
}

/// A Stable group of `n` members (generation 1, the first is leader), each assigned "a-<i>".
fn stable(n: usize) -> (Group, Vec<String>) {
    let mut g = Group::new(limits(), 0);
    let ids: Vec<String> = (0..n).map(|_| enter(&mut g, request("", &["range"]), 0).0).collect();
    let mut effects = g.tick(DELAY_MS);
    effects.extend(g.tick(SETTLED));
    assert_eq!(joins(&effects).len(), n);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    let assignments: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), format!("a-{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = assignments.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    for id in &ids[1..] {
        let (answer, effects) = g.sync(sync_request(id, 1, &[]), SETTLED);
        assert_eq!(answer, Answer::Wait(id.clone()));
        assert!(effects.is_empty());
    }
    let (_, effects) = g.sync(sync_request(&ids[0], 1, &refs), SETTLED);
    assert_eq!(syncs(&effects).len(), n);
    assert_eq!(g.state(), GroupState::Stable);
    (g, ids)
}

#[test]
fn first_join_waits_the_initial_delay_then_the_leader_assigns() {
    let mut g = Group::new(limits(), 0);
    let (a, effects) = enter(&mut g, request("", &["range"]), 0);
    assert!(effects.is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert!(g.tick(DELAY_MS - 1).is_empty());
    let effects = g.tick(DELAY_MS);
    let [(id, result)] = joins(&effects)[..] else {
        panic!("one join answer: {effects:?}")
    };
    assert_eq!(id, a);
    assert_eq!(
        (result.error, result.generation_id, result.leader.as_str()),
        (0, 1, a.as_str())
    );
    assert_eq!(result.protocol_name.as_deref(), Some("range"));
    assert_eq!(result.members.len(), 1);
    assert_eq!(result.members[0].metadata, Bytes::from("meta-range"));
    let (answer, effects) = g.sync(sync_request(&a, 1, &[(&a, "mine")]), DELAY_MS);
    assert_eq!(answer, Answer::Wait(a.clone()));
    assert_eq!(syncs(&effects)[0].1.assignment, Bytes::from("mine"));
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.heartbeat(&a, None, 1, DELAY_MS + 1), 0);
}

#[test]
fn followers_get_no_metadata_and_wait_for_the_leaders_sync() {
    let mut g = Group::new(limits(), 0);
    let (a, _) = enter(&mut g, request("", &["range"]), 0);
    let (b, _) = enter(&mut g, request("", &["range"]), 10);
    assert!(g.tick(DELAY_MS + 10).is_empty(), "b extended the initial delay");
    let effects = g.tick(SETTLED + 10);
    let answers = joins(&effects);
    assert_eq!(answers.len(), 2);
    for (id, r) in answers {
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.leader, a);
        assert_eq!(r.members.len(), if id == a { 2 } else { 0 });
    }
    let (answer, effects) = g.sync(sync_request(&b, 1, &[]), SETTLED + 10);
    assert_eq!((answer, effects.len()), (Answer::Wait(b.clone()), 0));
    let (_, effects) = g.sync(sync_request(&a, 1, &[(&a, "x"), (&b, "y")]), SETTLED + 10);
    let mut got: Vec<(&str, Bytes)> = syncs(&effects)
        .into_iter()
        .map(|(id, r)| (id, r.assignment.clone()))
        .collect();
    got.sort();
    let mut want = vec![(a.as_str(), Bytes::from("x")), (b.as_str(), Bytes::from("y"))];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_new_member_rebalances_and_the_join_ends_when_all_rejoin() {
    let (mut g, ids) = stable(2);
    let (c, effects) = enter(&mut g, request("", &["range"]), SETTLED + 2_000);
    assert!(effects.is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&ids[0], None, 1, SETTLED + 2_000),
        E::RebalanceInProgress.code()
    );
    assert_eq!(
        g.sync(sync_request(&ids[1], 1, &[]), SETTLED + 2_000).0,
        Answer::Now(SyncResult::error(E::RebalanceInProgress))
    );
    let (_, effects) = g.join(request(&ids[0], &["range"]), SETTLED + 2_001);
    assert!(effects.is_empty());
    let (_, effects) = g.join(request(&ids[1], &["range"]), SETTLED + 2_002);
    let answers = joins(&effects);
    assert_eq!(answers.len(), 3, "all three answered at once");
    assert!(answers.iter().all(|(_, r)| r.generation_id == 2 && r.leader == ids[0]));
    assert!(answers.iter().any(|(id, _)| *id == c));
    // The previous generation is fenced.
    assert_eq!(
        g.heartbeat(&ids[1], None, 1, SETTLED + 2_003),
        E::IllegalGeneration.code()
    );
    assert_eq!(
        g.sync(sync_request(&ids[1], 1, &[]), SETTLED + 2_003).0,
        Answer::Now(SyncResult::error(E::IllegalGeneration))
    );
}

#[test]
fn the_rebalance_timeout_removes_members_that_did_not_rejoin() {
    let (mut g, ids) = stable(2);
    let now = SETTLED + 2_000;
    let (c, _) = enter(&mut g, request("", &["range"]), now);
    g.join(request(&ids[0], &["range"]), now);
    // The member that does not rejoin keeps heartbeating, so only the rebalance timeout ends the join.
    for t in (now..now + REBALANCE_MS as i64).step_by(5_000) {
        assert_eq!(g.heartbeat(&ids[1], None, 1, t), E::RebalanceInProgress.code());
        assert!(joins(&g.tick(t)).is_empty());
    }
    let effects = g.tick(now + REBALANCE_MS as i64);
    let answers = joins(&effects);
    assert_eq!(answers.len(), 2);
    assert!(g.member(&ids[1]).is_none());
    assert!(g.member(&c).is_some());
    assert_eq!(g.generation_id(), 2);
    assert_eq!(
        g.heartbeat(&ids[1], None, 2, now + REBALANCE_MS as i64),
        E::UnknownMemberId.code()
    );
}

#[test]
fn a_silent_member_expires_after_its_session_timeout() {
    let (mut g, ids) = stable(2);
    let mut now = SETTLED;
    while now + 1_000 < SETTLED + SESSION_MS as i64 {
        now += 1_000;
        assert_eq!(g.heartbeat(&ids[0], None, 1, now), 0);
        g.tick(now);
    }
    assert!(g.member(&ids[1]).is_some());
    g.tick(SETTLED + SESSION_MS as i64);
    assert!(g.member(&ids[1]).is_none());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    now = SETTLED + SESSION_MS as i64;
    let (_, effects) = g.join(request(&ids[0], &["range"]), now);
    assert_eq!(joins(&effects)[0].1.generation_id, 2);
    // The last member expiring empties the group.
    g.sync(sync_request(&ids[0], 2, &[]), now);
    g.tick(now + 2 * SESSION_MS as i64);
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.generation_id(), 3);
}

#[test]
fn a_member_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let mut g = Group::new(limits(), 0);
    let (a, _) = enter(&mut g, request("", &["range"]), 0);
    let (b, _) = enter(&mut g, request("", &["range"]), 0);
    g.tick(DELAY_MS);
    g.tick(SETTLED);
    g.sync(sync_request(&a, 1, &[]), SETTLED);
    assert_eq!(g.state(), GroupState::Stable);
    g.heartbeat(&b, None, 1, SETTLED + REBALANCE_MS as i64 - 1);
    g.heartbeat(&a, None, 1, SETTLED + REBALANCE_MS as i64 - 1);
    g.tick(SETTLED + REBALANCE_MS as i64);
    assert!(g.member(&b).is_none());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn leaving_rebalances_and_the_last_leave_empties_the_group() {
    let (mut g, ids) = stable(2);
    let leaving = |id: &str| Leaving {
        member_id: id.to_string(),
        instance_id: None,
    };
    let (result, _) = g.leave(&[leaving(&ids[0]), leaving("nobody")], SETTLED + 1_000);
    assert_eq!(result, Ok(vec![0, E::UnknownMemberId.code()]));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.leader(), Some(ids[1].as_str()), "leadership passes on");
    let (_, effects) = g.leave(&[leaving(&ids[1])], SETTLED + 1_001);
    assert!(effects.is_empty());
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.generation_id(), 2);
    assert_eq!(
        g.transitions.last(),
        Some(&(GroupState::PreparingRebalance, GroupState::Empty))
    );
}

#[test]
fn a_member_leaving_during_the_join_phase_gets_its_join_answered() {
    let (mut g, ids) = stable(2);
    // The leader rejoining starts a rebalance; its JoinGroup waits for the follower.
    assert!(matches!(
        g.join(request(&ids[0], &["range"]), SETTLED + 1_000).0,
        Answer::Wait(_)
    ));
    let leaving = Leaving {
        member_id: ids[0].clone(),
        instance_id: None,
    };
    let (_, effects) = g.leave(&[leaving], SETTLED + 1_001);
    let answers = joins(&effects);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, ids[0]);
    assert_eq!(answers[0].1.error, E::UnknownMemberId.code());
}

#[test]
fn static_member_rejoins_without_a_rebalance_and_fences_its_old_id() {
    let mut g = Group::new(limits(), 0);
    let static_request = |member_id: &str| JoinRequest {
        instance_id: Some("i-1".to_string()),
        ..request(member_id, &["range"])
    };
    // Static members are not asked for a member id.
    let (answer, _) = g.join(static_request(""), 0);
    let Answer::Wait(a) = answer else {
        panic!("static member joins at once")
    };
    let (b, _) = enter(&mut g, request("", &["range"]), 0);
    g.tick(DELAY_MS);
    g.tick(SETTLED);
    g.sync(sync_request(&b, 1, &[]), SETTLED);
    g.sync(sync_request(&a, 1, &[(&a, "for-a"), (&b, "for-b")]), SETTLED);
    assert_eq!(g.state(), GroupState::Stable);
    let before = g.transitions.len();
    // The client restarts: no member id, same instance id.
    let (answer, effects) = g.join(static_request(""), SETTLED + 2_000);
    assert!(effects.is_empty());
    let Answer::Now(result) = answer else {
        panic!("answered at once")
    };
    assert_eq!((result.error, result.generation_id), (0, 1));
    assert_ne!(result.member_id, a);
    assert_eq!(
        result.leader, result.member_id,
        "the leader keeps its role under its new id"
    );
    assert!(result.skip_assignment, "KIP-814: the static leader must not reassign");
    assert_eq!(result.members.len(), 2);
    let new_a = result.member_id;
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.transitions.len(), before, "no rebalance");
    let old = SyncRequest {
        instance_id: Some("i-1".to_string()),
        ..sync_request(&a, 1, &[])
    };
    assert_eq!(
        g.sync(old, SETTLED + 2_001).0,
        Answer::Now(SyncResult::error(E::FencedInstanceId))
    );
    assert_eq!(
        g.heartbeat(&a, Some("i-1"), 1, SETTLED + 2_001),
        E::FencedInstanceId.code()
    );
    let new = SyncRequest {
        instance_id: Some("i-1".to_string()),
        ..sync_request(&new_a, 1, &[])
    };
    let Answer::Now(synced) = g.sync(new, SETTLED + 2_001).0 else {
        panic!("stable sync answers at once")
    };
    assert_eq!(synced.assignment, Bytes::from("for-a"));
    assert_eq!(g.validate_commit(&a, 1, Some("i-1")), Err(E::FencedInstanceId.code()));
    assert_eq!(g.validate_commit(&new_a, 1, Some("i-1")), Ok(()));
    // Leaving by instance id alone removes the static member.
    let leaving = Leaving {
        member_id: String::new(),
        instance_id: Some("i-1".to_string()),
    };
    assert_eq!(g.leave(&[leaving], SETTLED + 2_002).0, Ok(vec![0]));
    assert!(g.member(&new_a).is_none());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn a_static_member_with_new_protocols_triggers_a_rebalance() {
    let mut g = Group::new(limits(), 0);
    let static_request = |member_id: &str, names: &[&str]| JoinRequest {
        instance_id: Some("i-1".to_string()),
        ..request(member_id, names)
    };
    let Answer::Wait(a) = g.join(static_request("", &["range"]), 0).0 else {
        panic!()
    };
    g.tick(DELAY_MS);
    g.sync(sync_request(&a, 1, &[]), DELAY_MS);
    let (answer, effects) = g.join(static_request("", &["range", "roundrobin"]), SETTLED + 2_000);
    let Answer::Wait(new_a) = answer else {
        panic!("rebalances")
    };
    assert_eq!(
        joins(&effects)[0].0,
        new_a,
        "the only member rejoined, so the join ends at once"
    );
    assert_eq!(g.generation_id(), 2);
}

#[test]
fn generation_and_member_fencing_errors() {
    let (mut g, ids) = stable(2);
    assert_eq!(
        g.heartbeat("nobody", None, 1, SETTLED + 1_000),
        E::UnknownMemberId.code()
    );
    assert_eq!(
        g.heartbeat(&ids[0], None, 0, SETTLED + 1_000),
        E::IllegalGeneration.code()
    );
    assert_eq!(
        g.heartbeat(&ids[0], Some("not-static"), 1, SETTLED + 1_000),
        E::UnknownMemberId.code()
    );
    assert_eq!(
        g.sync(sync_request("nobody", 1, &[]), SETTLED + 1_000).0,
        Answer::Now(SyncResult::error(E::UnknownMemberId))
    );
    let wrong_protocol = SyncRequest {
        protocol_name: Some("roundrobin".to_string()),
        ..sync_request(&ids[0], 1, &[])
    };
    assert_eq!(
        g.sync(wrong_protocol, SETTLED + 1_000).0,
        Answer::Now(SyncResult::error(E::InconsistentGroupProtocol))
    );
    let (answer, _) = g.join(request("unknown-id", &["range"]), SETTLED + 1_000);
    assert_eq!(answer, Answer::Now(JoinResult::error(E::UnknownMemberId, "unknown-id")));
    // Offset commits.
    assert_eq!(g.validate_commit(&ids[0], 1, None), Ok(()));
    assert_eq!(g.validate_commit(&ids[0], 0, None), Err(E::IllegalGeneration.code()));
    assert_eq!(g.validate_commit("nobody", 1, None), Err(E::UnknownMemberId.code()));
    assert_eq!(g.validate_commit("", -1, None), Err(E::UnknownMemberId.code()));
    g.join(request(&ids[0], &["range"]), SETTLED + 1_000);
    g.join(request(&ids[1], &["range"]), SETTLED + 1_000);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(g.validate_commit(&ids[0], 2, None), Err(E::RebalanceInProgress.code()));
    let empty = Group::new(limits(), 0);
    assert_eq!(empty.validate_commit("", -1, None), Ok(()));
    assert_eq!(empty.validate_commit("m", 3, None), Err(E::UnknownMemberId.code()));
}

#[test]
fn joins_are_validated() {
    let mut g = Group::new(limits(), 0);
    let short = JoinRequest {
        session_timeout_ms: 5_999,
        ..request("", &["range"])
    };
    assert_eq!(
        g.join(short, 0).0,
        Answer::Now(JoinResult::error(E::InvalidSessionTimeout, ""))
    );
    let none = request("", &[]);
    assert_eq!(
        g.join(none, 0).0,
        Answer::Now(JoinResult::error(E::InconsistentGroupProtocol, ""))
    );
    let huge = JoinRequest {
        protocols: vec![Protocol {
            name: "range".to_string(),
            metadata: Bytes::from(vec![0u8; MAX_METADATA_BYTES + 1]),
        }],
        ..request("", &[])
    };
    assert_eq!(g.join(huge, 0).0, Answer::Now(JoinResult::error(E::InvalidRequest, "")));
    let (_, _) = enter(&mut g, request("", &["range"]), 0);
    let other_type = JoinRequest {
        protocol_type: "connect".to_string(),
        ..request("", &["range"])
    };
    assert_eq!(
        g.join(other_type, 0).0,
        Answer::Now(JoinResult::error(E::InconsistentGroupProtocol, ""))
    );
    let nothing_common = request("", &["roundrobin"]);
    assert_eq!(
        g.join(nothing_common, 0).0,
        Answer::Now(JoinResult::error(E::InconsistentGroupProtocol, ""))
    );
}

#[test]
fn the_group_size_is_bounded() {
    let mut g = Group::new(
        Limits {
            max_size: 1,
            ..limits()
        },
        0,
    );
    let (a, _) = enter(&mut g, request("", &["range"]), 0);
    g.tick(DELAY_MS);
    g.sync(sync_request(&a, 1, &[]), DELAY_MS);
    let (answer, _) = g.join(request("", &["range"]), DELAY_MS);
    assert_eq!(answer, Answer::Now(JoinResult::error(E::GroupMaxSizeReached, "")));
    // The member already in stays.
    assert_eq!(g.heartbeat(&a, None, 1, DELAY_MS), 0);
}

#[test]
fn pending_member_ids_expire_and_are_bounded() {
    let mut g = Group::new(limits(), 0);
    let (answer, _) = g.join(request("", &["range"]), 0);
    let Answer::Now(r) = answer else { panic!() };
    g.tick(SESSION_MS as i64);
    assert!(g.is_vacant(), "the pending id expired");
    let (answer, _) = g.join(request(&r.member_id, &["range"]), SESSION_MS as i64);
    assert_eq!(answer, Answer::Now(JoinResult::error(E::UnknownMemberId, &r.member_id)));
    for _ in 0..MAX_PENDING_MEMBERS + 10 {
        g.join(request("", &["range"]), SESSION_MS as i64);
    }
    g.tick(SESSION_MS as i64 + 1);
    assert!(!g.is_vacant());
}

#[test]
fn the_protocol_is_chosen_by_vote_among_those_all_support() {
    let run = |lists: &[&[&str]]| {
        let mut g = Group::new(limits(), 0);
        for names in lists {
            enter(&mut g, request("", names), 0);
        }
        g.tick(DELAY_MS);
        g.tick(SETTLED);
        g.protocol_name().map(str::to_string)
    };
    assert_eq!(
        run(&[&["range", "rr"], &["rr", "range"], &["rr"]]),
        Some("rr".to_string())
    );
    assert_eq!(
        run(&[&["range", "rr"], &["range", "rr"], &["rr", "range"]]),
        Some("range".to_string())
    );
    assert_eq!(
        run(&[&["rr", "range"], &["range", "rr"], &["range", "rr"]]),
        Some("range".to_string())
    );
    // A tie goes to the leader's preference.
    assert_eq!(run(&[&["rr", "range"], &["range", "rr"]]), Some("rr".to_string()));
}

#[test]
fn the_initial_delay_extends_while_members_keep_arriving() {
    let mut g = Group::new(limits(), 0);
    enter(&mut g, request("", &["range"]), 0);
    enter(&mut g, request("", &["range"]), 2_000);
    assert!(g.tick(DELAY_MS).is_empty(), "a new member arrived: wait another delay");
    assert_eq!(joins(&g.tick(2 * DELAY_MS)).len(), 2);
}

#[test]
fn a_follower_that_missed_its_join_response_gets_the_generation_again() {
    let (mut g, ids) = stable(2);
    let (answer, effects) = g.join(request(&ids[1], &["range"]), SETTLED + 1_000);
    assert!(effects.is_empty());
    let Answer::Now(r) = answer else {
        panic!("answered at once")
    };
    assert_eq!((r.error, r.generation_id, r.members.len()), (0, 1, 0));
    assert_eq!(g.state(), GroupState::Stable);
    // The leader rejoining forces a rebalance.
    assert!(matches!(
        g.join(request(&ids[0], &["range"]), SETTLED + 1_000).0,
        Answer::Wait(_)
    ));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

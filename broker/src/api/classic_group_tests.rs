//! Tests of the classic group handlers (JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! DescribeGroups, ListGroups, DeleteGroups) through real request structs on a broker in a
//! temporary directory. Time moves only through explicit `tick` calls.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError as E;

use super::super::create_topics::test_support::{encodes, open, s};
use super::super::{delete_groups, describe_groups, heartbeat, leave_group, list_groups, sync_group};
use super::super::{Client, Reply};
use crate::broker::{now_ms, Broker};

fn client() -> Client<'static> {
    Client {
        id: "app",
        addr: "127.0.0.1:5000".parse().expect("address"),
    }
}

fn join_request(group: &str, member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member_id))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(60_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"subscription"))])
}

async fn resolve(reply: Reply) -> ResponseKind {
    match reply {
        Reply::Now(r) => *r,
        Reply::Later(f) => f.await.expect("a response"),
        Reply::Nothing => panic!("no response"),
    }
}

fn join_now(broker: &Arc<Broker>, request: JoinGroupRequest, version: i16) -> JoinGroupResponse {
    match super::handle(broker, request, version, &client()) {
        Reply::Now(r) => match *r {
            ResponseKind::JoinGroup(r) => r,
            other => panic!("unexpected {other:?}"),
        },
        _ => panic!("expected an immediate answer"),
    }
}

/// Joins through MEMBER_ID_REQUIRED; returns the member id and the waiting JoinGroup.
fn enter(broker: &Arc<Broker>, group: &str) -> (String, Reply) {
    let first = join_now(broker, join_request(group, ""), 5);
    assert_eq!(first.error_code, E::MemberIdRequired.code());
    assert!(first.member_id.starts_with("app-"));
    let id = first.member_id.to_string();
    let reply = super::handle(broker, join_request(group, &id), 5, &client());
    assert!(matches!(reply, Reply::Later(_)), "the join waits for the join phase");
    (id, reply)
}

/// Runs the group timers past the initial delay (3 s, extended once by a second member), and
/// not so far that sessions (10 s) expire.
fn end_join_phase(broker: &Arc<Broker>) {
    let now = now_ms();
    broker.groups.classic.tick(now + 3_000);
    broker.groups.classic.tick(now + 6_000);
}

fn describe(broker: &Arc<Broker>, group: &str, version: i16) -> describe_groups_response::DescribedGroup {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let response = describe_groups::handle(broker, request, version);
    encodes(&response, version..=version);
    response.groups.into_iter().next().expect("one group")
}

fn list(broker: &Arc<Broker>, states: &[&str]) -> Vec<(String, String)> {
    let request = ListGroupsRequest::default().with_states_filter(states.iter().map(|x| s(x)).collect());
    let response = list_groups::handle(broker, request, 4);
    encodes(&response, 0..=5);
    response
        .groups
        .into_iter()
        .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
        .collect()
}

#[tokio::test]
async fn two_members_join_concurrently_sync_heartbeat_and_leave() {
    let (_dir, broker) = open();
    let (a, join_a) = enter(&broker, "g");
    let (b, join_b) = enter(&broker, "g");
    assert_eq!(describe(&broker, "g", 5).group_state.as_str(), "PreparingRebalance");
    end_join_phase(&broker);
    let (ResponseKind::JoinGroup(ra), ResponseKind::JoinGroup(rb)) = (resolve(join_a).await, resolve(join_b).await)
    else {
        panic!("join responses")
    };
    encodes(&ra, 0..=9);
    assert_eq!((ra.error_code, rb.error_code), (0, 0));
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    assert_eq!(ra.leader, rb.leader);
    assert_eq!(ra.leader.as_str(), a);
    assert_eq!(
        (ra.members.len(), rb.members.len()),
        (2, 0),
        "only the leader gets the members"
    );
    assert_eq!(ra.protocol_name.as_deref(), Some("range"));

    let sync = |member: &str, assignments: Vec<SyncGroupRequestAssignment>| {
        SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s(member))
            .with_generation_id(1)
            .with_assignments(assignments)
    };
    let follower = sync_group::handle(&broker, sync(&b, Vec::new()), 3);
    assert!(matches!(follower, Reply::Later(_)), "the follower waits for the leader");
    let assignment = |m: &str, a: &'static [u8]| {
        SyncGroupRequestAssignment::default()
            .with_member_id(s(m))
            .with_assignment(Bytes::from_static(a))
    };
    let leader = sync_group::handle(&broker, sync(&a, vec![assignment(&a, b"p0"), assignment(&b, b"p1")]), 3);
    let (ResponseKind::SyncGroup(sa), ResponseKind::SyncGroup(sb)) = (resolve(leader).await, resolve(follower).await)
    else {
        panic!("sync responses")
    };
    encodes(&sa, 0..=5);
    assert_eq!(
        (sa.assignment.as_ref(), sb.assignment.as_ref()),
        (&b"p0"[..], &b"p1"[..])
    );

    let beat = |member: &str, generation: i32| {
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s(member))
            .with_generation_id(generation);
        heartbeat::handle(&broker, request, 4).error_code
    };
    assert_eq!(beat(&a, 1), 0);
    assert_eq!(beat(&b, 0), E::IllegalGeneration.code());
    assert_eq!(beat("stranger", 1), E::UnknownMemberId.code());

    let described = describe(&broker, "g", 5);
    assert_eq!(
        (described.group_state.as_str(), described.protocol_data.as_str()),
        ("Stable", "range")
    );
    assert_eq!(described.members.len(), 2);
    assert_eq!(described.members[0].client_host.as_str(), "/127.0.0.1");
    assert_eq!(described.members[0].member_assignment.as_ref(), b"p0");
    assert_eq!(
        list(&broker, &["STABLE"]),
        vec![("g".to_string(), "Stable".to_string())]
    );
    assert!(list(&broker, &["Empty"]).is_empty());

    let delete = |group: &str| {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
        match delete_groups::handle(&broker, request, 2) {
            Reply::Now(r) => match *r {
                ResponseKind::DeleteGroups(r) => r.results[0].error_code,
                other => panic!("unexpected {other:?}"),
            },
            _ => panic!("no offsets to delete: answered at once"),
        }
    };
    assert_eq!(delete("g"), E::NonEmptyGroup.code());
    assert_eq!(delete("nothing"), E::GroupIdNotFound.code());

    let leaving = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s(&a)),
            MemberIdentity::default().with_member_id(s(&b)),
            MemberIdentity::default().with_member_id(s("stranger")),
        ]);
    let left = leave_group::handle(&broker, leaving, 3);
    encodes(&left, 3..=5);
    let codes: Vec<i16> = left.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![0, 0, E::UnknownMemberId.code()]);
    assert_eq!(describe(&broker, "g", 5).group_state.as_str(), "Empty");
    assert_eq!(delete("g"), 0);
    assert_eq!(describe(&broker, "g", 5).group_state.as_str(), "Dead");
    let missing = describe(&broker, "g", 6);
    assert_eq!(missing.error_code, E::GroupIdNotFound.code());
}

#[tokio::test]
async fn old_versions_join_without_a_member_id_and_leave_alone() {
    let (_dir, broker) = open();
    // Before v4 there is no MEMBER_ID_REQUIRED round trip.
    let reply = super::handle(&broker, join_request("old", ""), 0, &client());
    end_join_phase(&broker);
    let ResponseKind::JoinGroup(joined) = resolve(reply).await else {
        panic!("join response")
    };
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    encodes(&joined, 0..=9);
    let leaving = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("old")))
        .with_member_id(joined.member_id.clone());
    let left = leave_group::handle(&broker, leaving.clone(), 0);
    assert_eq!(left.error_code, 0);
    encodes(&left, 0..=2);
    assert_eq!(
        leave_group::handle(&broker, leaving, 0).error_code,
        E::UnknownMemberId.code()
    );
}

#[test]
fn bad_joins_get_kafkas_errors() {
    let (_dir, broker) = open();
    let bad_group = join_now(&broker, join_request("", ""), 5);
    assert_eq!(bad_group.error_code, E::InvalidGroupId.code());
    encodes(&bad_group, 0..=9);
    let unknown = join_now(&broker, join_request("g", "made-up"), 5);
    assert_eq!(unknown.error_code, E::UnknownMemberId.code());
    let short = join_now(&broker, join_request("g", "").with_session_timeout_ms(1), 5);
    assert_eq!(short.error_code, E::InvalidSessionTimeout.code());
    assert!(list(&broker, &[]).is_empty(), "failed joins leave no group behind");
}

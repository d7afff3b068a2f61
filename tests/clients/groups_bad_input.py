#!/usr/bin/env python3
"""Bad input to the group coordinator, sent as raw Kafka requests (old, non-flexible versions
whose layout fits in a few lines, so each field is exactly what we mean it to be).

usage: groups_bad_input.py BOOTSTRAP GROUP TOPIC

Two members join GROUP (two connections, so the second join makes the first rebalance: the
generation moves on), then:
  - OffsetCommit with the first generation: ILLEGAL_GENERATION, and the stale commit is not applied;
  - OffsetCommit from an unknown member: UNKNOWN_MEMBER_ID; Heartbeat with the old generation:
    ILLEGAL_GENERATION;
  - JoinGroup with a session timeout below group.min.session.timeout.ms: INVALID_SESSION_TIMEOUT;
    with no protocols, or another protocol type: INCONSISTENT_GROUP_PROTOCOL;
  - DescribeGroups of an unknown group: no error, state Dead;
  - DeleteGroups of the group with members: NON_EMPTY_GROUP; of an unknown group: GROUP_ID_NOT_FOUND;
    after both members leave: no error, and its offsets are gone.
Prints one JSON line of the observed error codes and states; the Rust test asserts Kafka's values.
"""

import socket
import struct
import sys

from clientlib import Deadline, fail, summary

API_OFFSET_COMMIT, API_OFFSET_FETCH, API_JOIN, API_HEARTBEAT = 8, 9, 11, 12
API_LEAVE, API_SYNC, API_DESCRIBE, API_DELETE = 13, 14, 15, 42
REBALANCE_IN_PROGRESS = 27


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def i16(self):
        return self.take(">h")

    def i32(self):
        return self.take(">i")

    def i64(self):
        return self.take(">q")

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def bytes_(self):
        n = self.i32()
        if n < 0:
            return None
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def array(self, item):
        return [item() for _ in range(self.i32())]


def s(v):
    if v is None:
        return struct.pack(">h", -1)
    b = v.encode()
    return struct.pack(">h", len(b)) + b


def b_(v):
    return struct.pack(">i", len(v)) + v


def arr(items):
    return struct.pack(">i", len(items)) + b"".join(items)


class Conn:
    def __init__(self, bootstrap):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=120)
        self.corr = 0

    def send(self, api, version, body):
        self.corr += 1
        frame = struct.pack(">hhi", api, version, self.corr) + s("groups-bad-input") + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        return self.corr

    def recv(self, corr):
        size = struct.unpack(">i", self.exact(4))[0]
        data = self.exact(size)
        r = Reader(data)
        got = r.i32()
        if got != corr:
            fail(f"response correlation id {got}, expected {corr}")
        return r

    def call(self, api, version, body):
        return self.recv(self.send(api, version, body))

    def exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                fail("the broker closed the connection")
            buf += chunk
        return buf


def subscription(topic):
    return struct.pack(">h", 0) + arr([s(topic)]) + b_(b"")


def assignment(topic, partitions):
    return struct.pack(">h", 0) + arr([s(topic) + arr([struct.pack(">i", p) for p in partitions])]) + b_(b"")


def join_body(group, member, topic, session_ms=30000, protocol_type="consumer", protocols=None):
    if protocols is None:
        protocols = [s("range") + b_(subscription(topic))]
    return (s(group) + struct.pack(">ii", session_ms, 60000) + s(member) + s(protocol_type)
            + arr(protocols))


def join_response(r):
    """JoinGroup v1 response."""
    err = r.i16()
    gen = r.i32()
    proto = r.string()
    leader = r.string()
    member = r.string()
    members = r.array(lambda: (r.string(), r.bytes_()))
    return {"error": err, "generation": gen, "protocol": proto, "leader": leader, "member": member,
            "members": [m for m, _ in members]}


def sync(conn, group, gen, member, assignments):
    body = s(group) + struct.pack(">i", gen) + s(member) + arr([s(m) + b_(a) for m, a in assignments])
    r = conn.call(API_SYNC, 0, body)
    return r.i16()


def commit(conn, group, gen, member, topic, partition, offset):
    """OffsetCommit v2; returns the partition's error code."""
    body = (s(group) + struct.pack(">i", gen) + s(member) + struct.pack(">q", -1)
            + arr([s(topic) + arr([struct.pack(">iq", partition, offset) + s(None)])]))
    r = conn.call(API_OFFSET_COMMIT, 2, body)
    topics = r.array(lambda: (r.string(), r.array(lambda: (r.i32(), r.i16()))))
    return topics[0][1][0][1]


def fetch(conn, group, topic, partition):
    """OffsetFetch v1; returns (offset, error code)."""
    body = s(group) + arr([s(topic) + arr([struct.pack(">i", partition)])])
    r = conn.call(API_OFFSET_FETCH, 1, body)
    topics = r.array(lambda: (r.string(), r.array(lambda: (r.i32(), r.i64(), r.string(), r.i16()))))
    _, off, _, err = topics[0][1][0]
    return off, err


def heartbeat(conn, group, gen, member):
    return conn.call(API_HEARTBEAT, 0, s(group) + struct.pack(">i", gen) + s(member)).i16()


def leave(conn, group, member):
    return conn.call(API_LEAVE, 0, s(group) + s(member)).i16()


def describe(conn, group):
    """DescribeGroups v0 of one group: (error, state, members)."""
    r = conn.call(API_DESCRIBE, 0, arr([s(group)]))

    def one():
        err, gid, state, ptype, pdata = r.i16(), r.string(), r.string(), r.string(), r.string()
        members = r.array(lambda: (r.string(), r.string(), r.string(), r.bytes_(), r.bytes_()))
        return {"error": err, "group": gid, "state": state, "members": len(members)}

    return r.array(one)[0]


def delete(conn, group):
    r = conn.call(API_DELETE, 0, arr([s(group)]))
    r.i32()
    return r.array(lambda: (r.string(), r.i16()))[0][1]


def main():
    if len(sys.argv) != 4:
        fail(__doc__)
    bootstrap, group, topic = sys.argv[1:4]
    c1, c2 = Conn(bootstrap), Conn(bootstrap)
    obs = {}

    j1 = join_response(c1.call(API_JOIN, 1, join_body(group, "", topic)))
    if j1["error"] != 0:
        fail(f"first join failed: {j1}")
    m1, gen1 = j1["member"], j1["generation"]
    err = sync(c1, group, gen1, m1, [(m1, assignment(topic, [0]))])
    if err != 0:
        fail(f"first sync failed with {err}")
    obs["commit_current"] = commit(c1, group, gen1, m1, topic, 0, 5)

    # A second member joins on another connection; its join completes once the first rejoins.
    corr2 = c2.send(API_JOIN, 1, join_body(group, "", topic))
    # The first member learns of the rebalance from its heartbeat, as real clients do.
    deadline = Deadline(what="heartbeat answering REBALANCE_IN_PROGRESS after a second join")
    while True:
        hb = heartbeat(c1, group, gen1, m1)
        if hb == REBALANCE_IN_PROGRESS:
            break
        if hb != 0:
            fail(f"heartbeat during the second join answered {hb}")
        deadline.check()
    j1b = join_response(c1.call(API_JOIN, 1, join_body(group, m1, topic)))
    j2 = join_response(c2.recv(corr2))
    if j1b["error"] != 0 or j2["error"] != 0:
        fail(f"rejoin failed: {j1b} {j2}")
    gen2 = j1b["generation"]
    m2 = j2["member"]
    obs["generations"] = [gen1, gen2, j2["generation"]]
    leader = j1b["leader"]
    lconn, lmember, fconn, fmember = (c1, m1, c2, m2) if leader == m1 else (c2, m2, c1, m1)
    obs["sync_leader"] = sync(lconn, group, gen2, lmember,
                              [(lmember, assignment(topic, [0])), (fmember, assignment(topic, [1]))])
    obs["sync_follower"] = sync(fconn, group, gen2, fmember, [])

    obs["commit_stale_generation"] = commit(c1, group, gen1, m1, topic, 0, 99)
    obs["commit_unknown_member"] = commit(c1, group, gen2, "no-such-member", topic, 0, 98)
    obs["heartbeat_stale_generation"] = heartbeat(c1, group, gen1, m1)
    obs["heartbeat_current"] = heartbeat(c1, group, gen2, m1)
    obs["offset_after_rejected_commits"] = fetch(c1, group, topic, 0)
    obs["commit_new_generation"] = commit(c1, group, gen2, m1, topic, 0, 7)
    obs["offset_after_commit"] = fetch(c1, group, topic, 0)

    obs["join_low_session_timeout"] = join_response(
        c1.call(API_JOIN, 1, join_body(group + "-x", "", topic, session_ms=1000)))["error"]
    obs["join_no_protocols"] = join_response(
        c1.call(API_JOIN, 1, join_body(group + "-y", "", topic, protocols=[])))["error"]

    obs["describe_unknown"] = describe(c1, "no-such-group")
    obs["describe_group"] = describe(c1, group)
    obs["delete_non_empty"] = delete(c1, group)
    obs["delete_unknown"] = delete(c1, "no-such-group")
    obs["offset_after_refused_delete"] = fetch(c1, group, topic, 0)
    obs["join_other_protocol_type"] = join_response(
        c1.call(API_JOIN, 1, join_body(group, "", topic, protocol_type="connect")))["error"]
    obs["leave"] = [leave(c1, group, m1), leave(c2, group, m2)]
    obs["describe_after_leave"] = describe(c1, group)
    obs["delete_empty"] = delete(c1, group)
    obs["offset_after_delete"] = fetch(c1, group, topic, 0)
    obs["describe_after_delete"] = describe(c1, group)
    summary(**obs)


if __name__ == "__main__":
    main()

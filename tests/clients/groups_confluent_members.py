#!/usr/bin/env python3
"""Three confluent-kafka consumers in one classic group on one topic while members join, leave
cleanly (close(), LeaveGroup) and die (SIGKILL, expired by the session timeout).

usage:
  groups_confluent_members.py run BOOTSTRAP TOPIC GROUP BROOK_BIN CHUNK
      The orchestrator: spawns member subprocesses, produces CHUNK messages per phase, collects
      every member's events through pipes, checks the history and prints one JSON summary.
  groups_confluent_members.py member BOOTSTRAP TOPIC GROUP NAME
      One member: subscribes, prints one JSON event per line on stdout (assign, revoke, rec,
      commit_error, closed) with a CLOCK_MONOTONIC timestamp (system-wide on Linux, so events of
      different processes are ordered by it), commits synchronously after each batch, and closes
      when it reads "close" on stdin.

Phases: A alone; B and C join (2+2+2); produce; B closes (3+3); produce; produce again and C is
killed with SIGKILL once it has processed part of that chunk, and its session (6 s) expires (A
owns 6); D joins (3+3); produce. Then the
orchestrator waits until every acknowledged message was processed and `brook groups describe`
shows every partition owned with LAG 0, and closes the members.

Checks: every acknowledged (partition, offset) is processed at least once; every record is
processed by a member while it owns the partition (between its on_assign and on_revoke, or its
death); ownership intervals of a partition never overlap between members (no two live members
process a partition at once); within one ownership interval a member reads offsets in order
without gaps.
"""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from clientlib import Deadline, fail, key, summary, value, index_of

PARTITIONS = 6
SESSION_TIMEOUT_MS = 6000


def now():
    return time.monotonic_ns()


# ---------------------------------------------------------------- member

def member(bootstrap, topic, group, name):
    from confluent_kafka import Consumer, KafkaException

    out_lock = threading.Lock()

    def emit(ev, **kw):
        line = json.dumps({"ev": ev, "ts": now(), "m": name, **kw})
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": f"member-{name}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": 500,
        "topic.metadata.refresh.interval.ms": 2000,
    })

    def commit_quietly(where):
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as e:
            err = e.args[0]
            # _NO_OFFSET: nothing consumed since the last commit.
            if err.name() != "_NO_OFFSET":
                emit("commit_error", where=where, code=err.code(), name=err.name())

    def on_assign(c, parts):
        emit("assign", parts=sorted(p.partition for p in parts))

    def on_revoke(c, parts):
        commit_quietly("revoke")
        emit("revoke", parts=sorted(p.partition for p in parts))

    def on_lost(c, parts):
        emit("lost", parts=sorted(p.partition for p in parts))

    stop = threading.Event()

    def read_stdin():
        for line in sys.stdin:
            if line.strip() == "close":
                break
        stop.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    while not stop.is_set():
        msgs = consumer.consume(num_messages=500, timeout=0.1)
        got = False
        for m in msgs:
            if m.error():
                emit("consume_error", code=m.error().code(), name=m.error().name())
                continue
            emit("rec", p=m.partition(), o=m.offset(), i=index_of(m.value()))
            got = True
        if got:
            commit_quietly("batch")
    consumer.close()
    emit("closed")


# ---------------------------------------------------------------- orchestrator

class Member:
    def __init__(self, orch, name):
        self.name = name
        self.owned = set()
        self.alive = True
        self.closing = False
        self.end_ts = None
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "member", orch.bootstrap, orch.topic, orch.group, name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.stderr = []
        threading.Thread(target=self._read, args=(orch.q,), daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self, q):
        for line in self.proc.stdout:
            line = line.strip()
            if line:
                q.put(json.loads(line))
        q.put({"ev": "eof", "m": self.name, "ts": now()})

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())


class Orchestrator:
    def __init__(self, bootstrap, topic, group, brook):
        self.bootstrap, self.topic, self.group, self.brook = bootstrap, topic, group, brook
        self.q = queue.Queue()
        self.members = {}
        self.events = []
        self.eof = set()
        self.acked = {}  # index -> (partition, offset)
        self.processed = set()  # (partition, offset)
        self.max_index = {}  # member -> highest message index it processed
        self.next_index = 0
        from confluent_kafka import Producer
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})

    def spawn(self, name):
        self.members[name] = Member(self, name)

    def drain(self, timeout):
        try:
            ev = self.q.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self.apply(ev)
            try:
                ev = self.q.get_nowait()
            except queue.Empty:
                return

    def apply(self, ev):
        self.events.append(ev)
        m = self.members[ev["m"]]
        kind = ev["ev"]
        if kind == "assign":
            m.owned |= set(ev["parts"])
        elif kind in ("revoke", "lost"):
            m.owned -= set(ev["parts"])
        elif kind == "rec":
            self.processed.add((ev["p"], ev["o"]))
            self.max_index[m.name] = max(self.max_index.get(m.name, -1), ev["i"])
        elif kind == "eof":
            self.eof.add(m.name)
            if m.alive:
                rc = m.proc.wait()
                if rc != 0:
                    fail(f"member {m.name} exited with {rc}: {' | '.join(m.stderr[-20:])}")

    def wait_until(self, what, pred):
        deadline = Deadline(what=what)
        while not pred():
            self.drain(0.2)
            for m in self.members.values():
                if m.alive and not m.closing and m.name in self.eof:
                    fail(f"member {m.name} ended unexpectedly while waiting for {what}: {m.stderr[-20:]}")
            deadline.check(self.ownership())

    def ownership(self):
        return {n: sorted(m.owned) for n, m in self.members.items() if m.alive}

    def owns(self, split):
        """True when the live members own exactly these partition counts, disjoint, covering all."""
        live = [m for m in self.members.values() if m.alive]
        counts = sorted(len(m.owned) for m in live)
        union = set().union(*(m.owned for m in live)) if live else set()
        total = sum(counts)
        return counts == sorted(split) and total == PARTITIONS and union == set(range(PARTITIONS))

    def produce(self, n):
        errors = []

        def cb(i):
            def on_delivery(err, msg):
                if err is not None:
                    errors.append(str(err))
                else:
                    self.acked[i] = (msg.partition(), msg.offset())
            return on_delivery

        for _ in range(n):
            i = self.next_index
            self.next_index += 1
            self.producer.produce(self.topic, key=key(i), value=value(i), on_delivery=cb(i))
            self.producer.poll(0)
        left = self.producer.flush(120)
        if left or errors:
            fail(f"produce: {left} not delivered, errors {errors[:3]}")

    def all_processed(self):
        return all(a in self.processed for a in self.acked.values())

    def close(self, name):
        m = self.members[name]
        m.closing = True
        m.proc.stdin.write("close\n")
        m.proc.stdin.flush()
        self.wait_until(f"member {name} closed", lambda: name in self.eof)
        m.alive = False
        m.end_ts = now()

    def kill(self, name):
        m = self.members[name]
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait()
        m.alive = False
        m.end_ts = now()

    def describe(self):
        """`brook groups describe` output and its rows for this group (split on whitespace)."""
        r = subprocess.run([self.brook, "groups", "describe", self.group, "--bootstrap-server", self.bootstrap],
                           capture_output=True, text=True, timeout=120)
        rows = [l.split() for l in r.stdout.splitlines() if l.startswith(self.group + " ")]
        return r.stdout, rows

    def lag_zero(self):
        text, rows = self.describe()
        self.last_describe = text
        return (len(rows) == PARTITIONS and all(r[5] == "0" for r in rows)
                and all(r[6] != "-" for r in rows))


def check_history(orch):
    """Checks the merged event history; returns statistics."""
    events = sorted((e for e in orch.events if e["ev"] != "eof"), key=lambda e: e["ts"])
    # Ownership intervals: (partition) -> list of [member, start, end].
    open_iv = {}
    intervals = {p: [] for p in range(PARTITIONS)}
    last_offset = {}  # (member, partition) -> last offset read in the current interval
    recs = 0
    errors = []
    for e in events:
        m, kind = e["m"], e["ev"]
        if kind == "assign":
            for p in e["parts"]:
                if (m, p) in open_iv:
                    fail(f"{m} assigned partition {p} it already owns: {e}")
                open_iv[(m, p)] = [m, e["ts"], None]
                last_offset.pop((m, p), None)
        elif kind in ("revoke", "lost"):
            for p in e["parts"]:
                iv = open_iv.pop((m, p), None)
                if iv is None:
                    fail(f"{m} revoked partition {p} it does not own: {e}")
                iv[2] = e["ts"]
                intervals[p].append(iv)
        elif kind == "rec":
            p, o = e["p"], e["o"]
            recs += 1
            if (m, p) not in open_iv:
                fail(f"{m} processed {p}/{o} while not owning partition {p}")
            lo = last_offset.get((m, p))
            if lo is not None and o != lo + 1:
                fail(f"{m} read {p}/{o} after {p}/{lo} within one assignment (gap or reorder)")
            last_offset[(m, p)] = o
        elif kind in ("commit_error", "consume_error"):
            errors.append(e)
    # Intervals still open end when their member died or now.
    for (m, p), iv in open_iv.items():
        end = orch.members[m].end_ts
        iv[2] = end if end is not None else now()
        intervals[p].append(iv)
    overlaps = []
    for p, ivs in intervals.items():
        ivs.sort(key=lambda iv: iv[1])
        for a, b in zip(ivs, ivs[1:]):
            if b[1] < a[2]:
                overlaps.append({"partition": p, "first": a[0], "second": b[0]})
    if overlaps:
        fail(f"two live members owned a partition at once: {overlaps}")
    return {
        "records": recs,
        "intervals": sum(len(v) for v in intervals.values()),
        "errors": [f"{e['m']}:{e.get('where')}:{e['name']}" for e in errors],
    }


def run(bootstrap, topic, group, brook, chunk):
    orch = Orchestrator(bootstrap, topic, group, brook)
    phases = []

    def phase(name):
        phases.append({"phase": name, "ownership": orch.ownership()})

    orch.spawn("a")
    orch.wait_until("a owns all partitions", lambda: orch.owns([6]))
    phase("a alone")
    orch.produce(chunk)
    orch.spawn("b")
    orch.spawn("c")
    orch.wait_until("a, b, c own 2 each", lambda: orch.owns([2, 2, 2]))
    phase("b and c joined")
    orch.produce(chunk)
    orch.wait_until("everything processed", orch.all_processed)
    orch.close("b")
    orch.produce(chunk)
    orch.wait_until("a, c own 3 each after b left", lambda: orch.owns([3, 3]))
    phase("b left")
    orch.wait_until("everything processed", orch.all_processed)
    # c dies with work in flight: killed once it has processed part of a fresh chunk, so what it
    # had not committed is processed again by the member that inherits its partitions.
    start = orch.next_index
    orch.produce(chunk)
    orch.wait_until("c processes part of the new chunk", lambda: orch.max_index.get("c", -1) >= start)
    orch.kill("c")
    orch.wait_until("a owns all after c's session expired", lambda: orch.owns([6]))
    phase("c died")
    orch.spawn("d")
    orch.wait_until("a, d own 3 each", lambda: orch.owns([3, 3]))
    phase("d joined")
    orch.produce(chunk)
    orch.wait_until("every acknowledged message processed", orch.all_processed)
    orch.last_describe = ""
    orch.wait_until("brook groups describe: every partition owned with LAG 0", orch.lag_zero)
    live_describe = orch.last_describe
    owners_at_describe = orch.ownership()
    orch.close("a")
    orch.close("d")
    orch.drain(0)
    stats = check_history(orch)
    summary(
        produced=len(orch.acked),
        processed_distinct=len(orch.processed),
        unprocessed=sum(1 for a in orch.acked.values() if a not in orch.processed),
        phases=phases,
        owners_at_describe=owners_at_describe,
        describe=live_describe,
        **stats,
    )


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "member" and len(sys.argv) == 6:
        member(*sys.argv[2:6])
    elif len(sys.argv) == 7 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""kafka-python consumer group: two members (one thread each) split a topic, every message is
consumed by the member that owns its partition, commits work (the offsets committed at the end
equal the log end offsets).

usage: groups_kafka_python.py BOOTSTRAP TOPIC GROUP COUNT

Rebalance callbacks are logged under one lock: the history is in true order, and no partition
is ever owned by both members at once. Prints one JSON summary line.
"""

import sys
import threading

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from clientlib import Deadline, fail, index_of, key, summary, value

LOCK = threading.Lock()
HISTORY = []


class Member(ConsumerRebalanceListener):
    def __init__(self, name, bootstrap, topic, group, others):
        self.name = name
        self.topic = topic
        self.others = others
        self.owned = set()
        self.records = []
        self.commit_errors = []
        self.error = None
        self.stop = threading.Event()
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=f"kafka-python-{name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10000,
            heartbeat_interval_ms=500,
            metadata_max_age_ms=2000,
        )
        self.thread = threading.Thread(target=self.run, daemon=True)

    def on_partitions_revoked(self, revoked):
        with LOCK:
            ps = sorted(tp.partition for tp in revoked)
            HISTORY.append([self.name, "revoke", ps])
            self.owned -= set(ps)

    def on_partitions_assigned(self, assigned):
        with LOCK:
            ps = sorted(tp.partition for tp in assigned)
            HISTORY.append([self.name, "assign", ps])
            self.owned |= set(ps)
            for o in self.others():
                if o is not self and o.owned & self.owned:
                    self.error = f"{self.name} and {o.name} both own {sorted(o.owned & self.owned)}"

    def run(self):
        try:
            self.consumer.subscribe([self.topic], listener=self)
            while not self.stop.is_set():
                got = False
                for tp, msgs in self.consumer.poll(timeout_ms=200).items():
                    with LOCK:
                        if tp.partition not in self.owned:
                            self.error = f"{self.name} got records of partition {tp.partition} it does not own"
                        for m in msgs:
                            self.records.append((m.partition, m.offset, index_of(m.value)))
                            got = True
                if got:
                    try:
                        self.consumer.commit()
                    except KafkaError as e:
                        # A commit racing a rebalance may be refused; the records are read again.
                        self.commit_errors.append(type(e).__name__)
            self.consumer.commit()
            self.consumer.close()
        except Exception as e:  # reported by the main thread
            self.error = f"{self.name}: {type(e).__name__}: {e}"


def wait(members, what, pred):
    deadline = Deadline(what=what)
    while True:
        with LOCK:
            for m in members:
                if m.error:
                    fail(m.error)
            if pred():
                return
            state = {m.name: sorted(m.owned) for m in members}
        deadline.check(str(state))
        threading.Event().wait(0.05)


def main():
    if len(sys.argv) != 5:
        fail(__doc__)
    bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    members = []
    a = Member("a", bootstrap, topic, group, lambda: members)
    b = Member("b", bootstrap, topic, group, lambda: members)
    members += [a, b]
    parts = a.consumer.partitions_for_topic(topic)
    deadline = Deadline(what="metadata")
    while not parts:
        deadline.check(f"no partitions known for {topic}")
        parts = a.consumer.partitions_for_topic(topic)
    nparts = len(parts)
    a.thread.start()
    wait(members, "a owns every partition", lambda: len(a.owned) == nparts)
    b.thread.start()
    wait(members, "a and b split the topic",
         lambda: sorted([len(a.owned), len(b.owned)]) == [nparts // 2, nparts - nparts // 2]
         and len(a.owned | b.owned) == nparts)
    split = {"a": sorted(a.owned), "b": sorted(b.owned)}

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    futures = [producer.send(topic, key=key(i), value=value(i)) for i in range(count)]
    producer.flush()
    acks = {}
    for i, f in enumerate(futures):
        md = f.get(timeout=60)
        acks[i] = (md.partition, md.offset)
    producer.close()
    wait(members, "every message consumed",
         lambda: {i for m in members for (_, _, i) in m.records} >= set(range(count)))
    per_member = {m.name: len(m.records) for m in members}
    for m in members:
        for p, o, i in m.records:
            if acks[i] != (p, o):
                fail(f"message {i} read at {p}/{o}, acknowledged at {acks[i]}")
    for m in members:
        m.stop.set()
    for m in members:
        m.thread.join(120)
        if m.error:
            fail(m.error)

    check = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    ends = check.end_offsets(tps)
    committed = {tp.partition: check.committed(tp) for tp in tps}
    check.close()
    summary(
        consumed=len({i for m in members for (_, _, i) in m.records}),
        split=split,
        per_member=per_member,
        committed=committed,
        ends={tp.partition: ends[tp] for tp in tps},
        commit_errors=a.commit_errors + b.commit_errors,
        history=HISTORY,
    )


if __name__ == "__main__":
    main()

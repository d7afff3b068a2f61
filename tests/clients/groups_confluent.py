#!/usr/bin/env python3
"""confluent-kafka consumer groups: committed offsets across broker restarts, static membership,
cooperative-sticky incremental rebalancing and the KIP-848 consumer protocol.

usage:
  groups_confluent.py produce BOOTSTRAP TOPIC START COUNT
      Produces messages START..START+COUNT-1 (acks=all); prints {"acked": N}.
  groups_confluent.py step BOOTSTRAP TOPIC GROUP EXPECTED MIN
      One group member resumes: checks committed() equals EXPECTED (a JSON object
      {partition: offset}, or "-" to skip), reads at least MIN records (or, with MIN=all, up to
      the end of every partition), checks the first record of each partition is at its committed
      offset, commits synchronously, and prints the offsets committed before and after.
  groups_confluent.py static BOOTSTRAP TOPIC GROUP
      A static member (group.instance.id) closes without leaving and a new consumer with the same
      instance id rejoins: the other member sees no callbacks, the new one gets the same
      partitions and resumes at the committed offsets.
  groups_confluent.py cooperative BOOTSTRAP TOPIC GROUP
      cooperative-sticky: a second member joins; the first revokes only the partitions that move.
  groups_confluent.py consumer-protocol BOOTSTRAP TOPIC GROUP
      group.protocol=consumer (KIP-848): two members split the topic; every message is consumed.

Several consumers live in one process and are polled in turn from one thread, so their
rebalance callbacks are logged in one true order: a partition never belongs to two at once.
"""

import json
import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from clientlib import Deadline, fail, index_of, key, summary, value


def produce(bootstrap, topic, start, count):
    """Produces messages start..start+count-1; returns {index: (partition, offset)}."""
    acks = {}
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})

    def cb(i):
        def on_delivery(err, msg):
            if err is not None:
                errors.append(str(err))
            else:
                acks[i] = (msg.partition(), msg.offset())
        return on_delivery

    for i in range(start, start + count):
        p.produce(topic, key=key(i), value=value(i), on_delivery=cb(i))
        p.poll(0)
    left = p.flush(120)
    if left or errors or len(acks) != count:
        fail(f"produce: {left} not delivered, errors {errors[:3]}")
    return acks


class Member:
    """A subscribed consumer whose rebalance callbacks are logged into a shared history."""

    def __init__(self, name, history, config):
        self.name = name
        self.history = history
        self.owned = set()
        self.callbacks = []
        self.records = []
        self.consumer = Consumer(config)

    def subscribe(self, topic, others):
        def check_disjoint():
            for o in others():
                if o is not self and o.owned & self.owned:
                    fail(f"{self.name} and {o.name} both own {sorted(o.owned & self.owned)}")

        def on_assign(c, parts):
            ps = sorted(p.partition for p in parts)
            self.callbacks.append(("assign", ps))
            self.history.append((self.name, "assign", ps))
            self.owned |= set(ps)
            check_disjoint()

        def on_revoke(c, parts):
            ps = sorted(p.partition for p in parts)
            self.callbacks.append(("revoke", ps))
            self.history.append((self.name, "revoke", ps))
            self.owned -= set(ps)

        def on_lost(c, parts):
            ps = sorted(p.partition for p in parts)
            self.callbacks.append(("lost", ps))
            self.history.append((self.name, "lost", ps))
            self.owned -= set(ps)

        self.consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)

    def poll(self, commit=True):
        msgs = self.consumer.consume(num_messages=500, timeout=0.05)
        got = []
        for m in msgs:
            if m.error():
                fail(f"{self.name}: consume error {m.error()}")
            if m.partition() not in self.owned:
                fail(f"{self.name} got {m.partition()}/{m.offset()} without owning partition {m.partition()}")
            got.append((m.partition(), m.offset(), index_of(m.value())))
        self.records.extend(got)
        if got and commit:
            try:
                self.consumer.commit(asynchronous=False)
            except KafkaException as e:
                # A commit racing a rebalance may be refused; the records are read again (at least once).
                self.history.append((self.name, "commit_error", e.args[0].name()))
        return got


def poll_until(members, what, pred):
    deadline = Deadline(what=what)
    while not pred():
        for m in members:
            m.poll()
        deadline.check({m.name: sorted(m.owned) for m in members})


def base_config(bootstrap, group, name):
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "topic.metadata.refresh.interval.ms": 2000,
    }


def classic_config(bootstrap, group, name, **extra):
    c = base_config(bootstrap, group, name)
    c.update({"session.timeout.ms": 30000, "heartbeat.interval.ms": 500})
    c.update(extra)
    return c


def partitions_of(consumer, topic):
    md = consumer.list_topics(topic, timeout=30)
    return sorted(md.topics[topic].partitions)


def split(members, sizes, total):
    owned = [m.owned for m in members]
    union = set().union(*owned)
    return sorted(len(o) for o in owned) == sorted(sizes) and len(union) == total


def consumed_indices(members):
    return {i for m in members for (_, _, i) in m.records}


def cmd_step(bootstrap, topic, group, expected, min_records):
    c = Consumer(classic_config(bootstrap, group, "resumer"))
    parts = partitions_of(c, topic)
    assigned = []
    c.subscribe([topic], on_assign=lambda _c, ps: assigned.extend(ps))
    deadline = Deadline(what="the resuming member's assignment")
    first = {}
    consumed = 0
    pending = []
    while len(assigned) < len(parts):
        # Records polled before the assignment is complete are kept (none can arrive before it).
        pending.extend(c.consume(num_messages=50, timeout=0.1))
        deadline.check(str(assigned))
    committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in parts], timeout=30)}
    if expected is not None and committed != expected:
        fail(f"committed offsets after restart {committed} differ from those committed before {expected}")
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in parts}
    position = {p: (committed[p] if committed[p] >= 0 else 0) for p in parts}
    deadline = Deadline(what="reading records")

    def done():
        if min_records == "all":
            return all(position[p] >= ends[p] for p in parts)
        return consumed >= int(min_records)

    while not done():
        msgs = pending + c.consume(num_messages=50, timeout=0.1)
        pending = []
        for m in msgs:
            if m.error():
                fail(f"consume error {m.error()}")
            p, o = m.partition(), m.offset()
            if p not in first:
                first[p] = o
            if o != position[p]:
                fail(f"partition {p}: read offset {o}, expected {position[p]} (committed {committed[p]})")
            position[p] = o + 1
            consumed += 1
        deadline.check(f"position {position} ends {ends}")
    c.commit(asynchronous=False)
    after = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in parts], timeout=30)}
    for p in parts:
        if p in first and after[p] != position[p]:
            fail(f"partition {p}: committed {after[p]} after reading up to {position[p]}")
    c.close()
    summary(before=committed, first=first, after=after, ends=ends, consumed=consumed)


def cmd_static(bootstrap, topic, group):
    history = []
    members = []
    others = lambda: members  # noqa: E731
    a = Member("a", history, classic_config(bootstrap, group, "static-a", **{"group.instance.id": "instance-a"}))
    b = Member("b", history, classic_config(bootstrap, group, "dynamic-b"))
    members += [a, b]
    nparts = len(partitions_of(a.consumer, topic))
    a.subscribe(topic, others)
    poll_until([a], "a owns every partition", lambda: len(a.owned) == nparts)
    b.subscribe(topic, others)
    poll_until([a, b], "a and b split the topic", lambda: split([a, b], [nparts // 2, nparts - nparts // 2], nparts))
    produce(bootstrap, topic, 0, 300)
    poll_until([a, b], "first 300 consumed", lambda: consumed_indices([a, b]) >= set(range(300)))
    a_parts = sorted(a.owned)
    b_callbacks_before = list(b.callbacks)
    history.append(("test", "restart a", a_parts))
    # A static member's close sends no LeaveGroup: the group keeps its slot for the session timeout.
    a.consumer.close()
    members.remove(a)
    a2 = Member("a2", history, classic_config(bootstrap, group, "static-a", **{"group.instance.id": "instance-a"}))
    members.append(a2)
    a2.subscribe(topic, others)
    poll_until([a2, b], "the restarted static member gets its partitions", lambda: len(a2.owned) > 0)
    produce(bootstrap, topic, 300, 300)
    poll_until([a2, b], "next 300 consumed", lambda: consumed_indices([a2, b]) >= set(range(300, 600)))
    a2_first = {}
    for p, o, _ in a2.records:
        a2_first.setdefault(p, o)
    a_last = {}
    for p, o, _ in a.records:
        a_last[p] = max(a_last.get(p, -1), o)
    resumed_at_commit = all(a2_first.get(p) == a_last.get(p, -1) + 1 for p in a2_first)
    summary(
        a_partitions=a_parts,
        a2_partitions=sorted(a2.owned),
        a2_callbacks=a2.callbacks,
        b_callbacks_during_restart=b.callbacks[len(b_callbacks_before):],
        b_partitions=sorted(b.owned),
        resumed_at_commit=resumed_at_commit,
        history=[list(h) for h in history],
    )
    a2.consumer.close()
    b.consumer.close()


def cmd_cooperative(bootstrap, topic, group):
    history = []
    members = []
    others = lambda: members  # noqa: E731
    cfg = {"partition.assignment.strategy": "cooperative-sticky"}
    a = Member("a", history, classic_config(bootstrap, group, "coop-a", **cfg))
    b = Member("b", history, classic_config(bootstrap, group, "coop-b", **cfg))
    members += [a, b]
    nparts = len(partitions_of(a.consumer, topic))
    produce(bootstrap, topic, 0, 300)
    a.subscribe(topic, others)
    poll_until([a], "a owns and reads everything", lambda: len(a.owned) == nparts and consumed_indices([a]) >= set(range(300)))
    b.subscribe(topic, others)
    poll_until([a, b], "a and b split the topic", lambda: split([a, b], [nparts // 2, nparts - nparts // 2], nparts))
    produce(bootstrap, topic, 300, 300)
    poll_until([a, b], "next 300 consumed", lambda: consumed_indices([a, b]) >= set(range(300, 600)))
    summary(
        protocol=a.consumer.rebalance_protocol() if hasattr(a.consumer, "rebalance_protocol") else None,
        a_callbacks=a.callbacks,
        b_callbacks=b.callbacks,
        a_partitions=sorted(a.owned),
        b_partitions=sorted(b.owned),
        consumed=len(consumed_indices([a, b])),
        history=[list(h) for h in history],
    )
    a.consumer.close()
    b.consumer.close()


def cmd_consumer_protocol(bootstrap, topic, group):
    history = []
    members = []
    others = lambda: members  # noqa: E731

    def cfg(name):
        # session.timeout.ms, heartbeat.interval.ms and partition.assignment.strategy are
        # broker-side with KIP-848 and illegal in the client config.
        c = base_config(bootstrap, group, name)
        c["group.protocol"] = "consumer"
        return c

    a = Member("a", history, cfg("kip848-a"))
    b = Member("b", history, cfg("kip848-b"))
    members += [a, b]
    nparts = len(partitions_of(a.consumer, topic))
    produce(bootstrap, topic, 0, 300)
    a.subscribe(topic, others)
    poll_until([a], "a owns and reads everything", lambda: len(a.owned) == nparts and consumed_indices([a]) >= set(range(300)))
    b.subscribe(topic, others)
    poll_until([a, b], "a and b split the topic", lambda: split([a, b], [nparts // 2, nparts - nparts // 2], nparts))
    produce(bootstrap, topic, 300, 300)
    poll_until([a, b], "next 300 consumed", lambda: consumed_indices([a, b]) >= set(range(300, 600)))
    b_second_phase = [i for (_, _, i) in b.records if i >= 300]
    summary(
        a_partitions=sorted(a.owned),
        b_partitions=sorted(b.owned),
        consumed=len(consumed_indices([a, b])),
        b_consumed_new=len(b_second_phase),
        a_callbacks=a.callbacks,
        b_callbacks=b.callbacks,
        history=[list(h) for h in history],
    )
    a.consumer.close()
    b.consumer.close()


def main():
    args = sys.argv[1:]
    if len(args) == 5 and args[0] == "produce":
        acks = produce(args[1], args[2], int(args[3]), int(args[4]))
        summary(acked=len(acks))
    elif len(args) == 6 and args[0] == "step":
        expected = None if args[4] == "-" else {int(k): v for k, v in json.loads(args[4]).items()}
        cmd_step(args[1], args[2], args[3], expected, args[5])
    elif len(args) == 4 and args[0] == "static":
        cmd_static(*args[1:])
    elif len(args) == 4 and args[0] == "cooperative":
        cmd_cooperative(*args[1:])
    elif len(args) == 4 and args[0] == "consumer-protocol":
        cmd_consumer_protocol(*args[1:])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()

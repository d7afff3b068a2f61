#!/usr/bin/env python3
"""aiokafka consumer group: two members (one task each, one event loop) split a topic, every
message is consumed by the member that owns its partition, commits work (the offsets committed
at the end equal the log end offsets).

usage: groups_aiokafka.py BOOTSTRAP TOPIC GROUP COUNT

Rebalance callbacks run on the one event loop, so their history is in true order and no
partition is ever owned by both members at once. Prints one JSON summary line.
"""

import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from clientlib import Deadline, fail, index_of, key, summary, value

HISTORY = []


class Member(ConsumerRebalanceListener):
    def __init__(self, name, bootstrap, topic, group, others):
        self.name = name
        self.topic = topic
        self.others = others
        self.owned = set()
        self.records = []
        self.commit_errors = []
        self.stop = asyncio.Event()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=f"aiokafka-{name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10000,
            heartbeat_interval_ms=500,
            metadata_max_age_ms=2000,
        )

    async def on_partitions_revoked(self, revoked):
        ps = sorted(tp.partition for tp in revoked)
        HISTORY.append([self.name, "revoke", ps])
        self.owned -= set(ps)

    async def on_partitions_assigned(self, assigned):
        ps = sorted(tp.partition for tp in assigned)
        HISTORY.append([self.name, "assign", ps])
        self.owned |= set(ps)
        for o in self.others():
            if o is not self and o.owned & self.owned:
                fail(f"{self.name} and {o.name} both own {sorted(o.owned & self.owned)}")

    async def run(self):
        self.consumer.subscribe([self.topic], listener=self)
        while not self.stop.is_set():
            data = await self.consumer.getmany(timeout_ms=200)
            for tp, msgs in data.items():
                if tp.partition not in self.owned:
                    fail(f"{self.name} got records of partition {tp.partition} it does not own")
                for m in msgs:
                    self.records.append((m.partition, m.offset, index_of(m.value)))
            if data:
                try:
                    await self.consumer.commit()
                except KafkaError as e:
                    # A commit racing a rebalance may be refused; the records are read again.
                    self.commit_errors.append(type(e).__name__)
        await self.consumer.commit()
        await self.consumer.stop()


async def wait(tasks, what, pred):
    deadline = Deadline(what=what)
    while not pred():
        for t in tasks:
            if t.done():
                t.result()
                fail(f"a member stopped while waiting for {what}")
        deadline.check("")
        await asyncio.sleep(0.05)


async def amain(bootstrap, topic, group, count):
    members = []
    a = Member("a", bootstrap, topic, group, lambda: members)
    b = Member("b", bootstrap, topic, group, lambda: members)
    members += [a, b]
    await a.consumer.start()
    await b.consumer.start()
    parts = a.consumer.partitions_for_topic(topic)
    deadline = Deadline(what="metadata")
    while not parts:
        deadline.check(f"no partitions known for {topic}")
        await a.consumer._client.force_metadata_update()
        parts = a.consumer.partitions_for_topic(topic)
    nparts = len(parts)
    tasks = [asyncio.create_task(a.run())]
    await wait(tasks, "a owns every partition", lambda: len(a.owned) == nparts)
    tasks.append(asyncio.create_task(b.run()))
    await wait(tasks, "a and b split the topic",
               lambda: sorted([len(a.owned), len(b.owned)]) == [nparts // 2, nparts - nparts // 2]
               and len(a.owned | b.owned) == nparts)
    split = {"a": sorted(a.owned), "b": sorted(b.owned)}

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    futures = [await producer.send(topic, key=key(i), value=value(i)) for i in range(count)]
    acks = {}
    for i, f in enumerate(futures):
        md = await f
        acks[i] = (md.partition, md.offset)
    await producer.stop()
    await wait(tasks, "every message consumed",
               lambda: {i for m in members for (_, _, i) in m.records} >= set(range(count)))
    for m in members:
        for p, o, i in m.records:
            if acks[i] != (p, o):
                fail(f"message {i} read at {p}/{o}, acknowledged at {acks[i]}")
    for m in members:
        m.stop.set()
    await asyncio.gather(*tasks)

    check = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await check.start()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    ends = await check.end_offsets(tps)
    committed = {tp.partition: await check.committed(tp) for tp in tps}
    await check.stop()
    summary(
        consumed=len({i for m in members for (_, _, i) in m.records}),
        split=split,
        per_member={m.name: len(m.records) for m in members},
        committed=committed,
        ends={tp.partition: ends[tp] for tp in tps},
        commit_errors=a.commit_errors + b.commit_errors,
        history=HISTORY,
    )


def main():
    if len(sys.argv) != 5:
        fail(__doc__)
    asyncio.run(amain(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""aiokafka round trip: produce N keyed messages with duplicate-key headers (acks=all), then
consume them back with assign() + seek_to_beginning() (no group) and verify everything.

usage: aiokafka_roundtrip.py BOOTSTRAP TOPIC CODEC N
CODEC is none, gzip, snappy, lz4 or zstd (snappy, lz4 and zstd need cramjam).
"""

import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from clientlib import Deadline, check_acks, fail, headers, key, summary, value, verify_records


async def produce(bootstrap, topic, codec, n):
    p = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type=None if codec == "none" else codec,
        linger_ms=5,
        max_batch_size=64 * 1024,
        request_timeout_ms=120000,
    )
    await p.start()
    try:
        futures = []
        for i in range(n):
            futures.append(await p.send(topic, value=value(i), key=key(i), headers=headers(i)))
        await p.flush()
        acks = [None] * n
        for i, f in enumerate(futures):
            try:
                md = await f
            except Exception as e:  # noqa: BLE001 - any failure fails the test with its message
                fail(f"message {i} not delivered: {e!r}")
            acks[i] = (md.partition, md.offset)
    finally:
        await p.stop()
    return acks


async def consume(bootstrap, topic, n):
    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await c.start()
    try:
        parts = c.partitions_for_topic(topic)
        deadline = Deadline(what="metadata")
        while not parts:
            deadline.check(f"no partitions known for {topic}")
            await c._client.force_metadata_update()
            parts = c.partitions_for_topic(topic)
        parts = sorted(parts)
        tps = [TopicPartition(topic, p) for p in parts]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        records = []
        deadline = Deadline(what="consume")
        while True:
            positions = {tp: await c.position(tp) for tp in tps}
            if all(positions[tp] >= ends[tp] for tp in tps):
                break
            deadline.check(f"{len(records)} of {n} consumed; positions "
                           f"{[(tp.partition, positions[tp], ends[tp]) for tp in tps]}")
            batch = await c.getmany(timeout_ms=1000, max_records=10000)
            for tp, msgs in batch.items():
                for m in msgs:
                    records.append((m.partition, m.offset, m.key, m.value, m.headers, m.timestamp))
    finally:
        await c.stop()
    return parts, records, {tp.partition: ends[tp] for tp in tps}


async def amain():
    if len(sys.argv) != 5:
        fail(__doc__)
    bootstrap, topic, codec, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    acks = await produce(bootstrap, topic, codec, n)
    per = check_acks(acks, n)
    parts, records, ends = await consume(bootstrap, topic, n)
    counts = verify_records(records, acks, n)
    for p in parts:
        want = per[p][-1] + 1 if p in per else 0
        if ends[p] != want:
            fail(f"partition {p}: end offset {ends[p]}, expected {want} (last acked offset + 1)")
    summary(client="aiokafka", codec=codec, produced=n, consumed=len(records),
            partitions={str(p): counts.get(p, 0) for p in parts})


if __name__ == "__main__":
    asyncio.run(amain())

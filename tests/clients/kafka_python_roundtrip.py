#!/usr/bin/env python3
"""kafka-python round trip: produce N keyed messages with duplicate-key headers (acks=all), then
consume them back with assign() + seek_to_beginning() (no group) and verify everything.

usage: kafka_python_roundtrip.py BOOTSTRAP TOPIC CODEC N
CODEC is none, gzip, snappy, lz4 or zstd (snappy needs python-snappy, lz4 needs lz4,
zstd needs zstandard).
"""

import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from clientlib import Deadline, check_acks, fail, headers, key, summary, value, verify_records


def produce(bootstrap, topic, codec, n):
    p = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type=None if codec == "none" else codec,
        linger_ms=5,
        batch_size=64 * 1024,
        request_timeout_ms=120000,
        delivery_timeout_ms=300000,
        max_block_ms=120000,
    )
    futures = []
    for i in range(n):
        futures.append(p.send(topic, value=value(i), key=key(i), headers=headers(i)))
    p.flush(timeout=300)
    acks = [None] * n
    for i, f in enumerate(futures):
        try:
            md = f.get(timeout=60)
        except Exception as e:  # noqa: BLE001 - any failure fails the test with its message
            fail(f"message {i} not delivered: {e!r}")
        acks[i] = (md.partition, md.offset)
    p.close()
    return acks


def consume(bootstrap, topic, n):
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=10000,
    )
    parts = c.partitions_for_topic(topic)
    deadline = Deadline(what="metadata")
    while not parts:
        deadline.check(f"no partitions known for {topic}")
        parts = c.partitions_for_topic(topic)
    parts = sorted(parts)
    tps = [TopicPartition(topic, p) for p in parts]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    ends = c.end_offsets(tps)
    records = []
    deadline = Deadline(what="consume")
    while any(c.position(tp) < ends[tp] for tp in tps):
        deadline.check(f"{len(records)} of {n} consumed; positions "
                       f"{[(tp.partition, c.position(tp), ends[tp]) for tp in tps]}")
        for tp, msgs in c.poll(timeout_ms=1000, max_records=10000).items():
            for m in msgs:
                records.append((m.partition, m.offset, m.key, m.value, m.headers, m.timestamp))
    c.close()
    return parts, records, {tp.partition: ends[tp] for tp in tps}


def main():
    if len(sys.argv) != 5:
        fail(__doc__)
    bootstrap, topic, codec, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    acks = produce(bootstrap, topic, codec, n)
    per = check_acks(acks, n)
    parts, records, ends = consume(bootstrap, topic, n)
    counts = verify_records(records, acks, n)
    for p in parts:
        want = per[p][-1] + 1 if p in per else 0
        if ends[p] != want:
            fail(f"partition {p}: end offset {ends[p]}, expected {want} (last acked offset + 1)")
    summary(client="kafka-python", codec=codec, produced=n, consumed=len(records),
            partitions={str(p): counts.get(p, 0) for p in parts})


if __name__ == "__main__":
    main()

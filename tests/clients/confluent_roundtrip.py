#!/usr/bin/env python3
"""confluent-kafka (librdkafka) round trip: produce N keyed messages with duplicate-key headers and
explicit timestamps with acks=all, consume them back with assign() (no group), verify everything,
and check ListOffsets by timestamp (offsets_for_times).

usage: confluent_roundtrip.py BOOTSTRAP TOPIC CODEC N IDEMPOTENCE(true|false)
"""

import sys

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME

from clientlib import (Deadline, check_acks, fail, headers, index_of, key, summary, timestamp,
                       value, verify_records)


def produce(bootstrap, topic, codec, n, idempotence):
    acks = [None] * n
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{err} (value {msg.value()!r})")
            return
        acks[index_of(msg.value())] = (msg.partition(), msg.offset())

    conf = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": idempotence,
        "compression.type": codec,
        "linger.ms": 5,
        "queue.buffering.max.messages": 200000,
        "message.timeout.ms": 300000,
        "on_delivery": on_delivery,
    }
    p = Producer(conf)
    deadline = Deadline(what="produce")
    for i in range(n):
        while True:
            try:
                p.produce(topic, value=value(i), key=key(i), headers=headers(i), timestamp=timestamp(i))
                break
            except BufferError:
                p.poll(0.05)
                deadline.check(f"{i} of {n} queued")
        if i % 1000 == 0:
            p.poll(0)
        if errors:
            fail(f"delivery failed: {errors[0]} ({len(errors)} failures)")
    left = p.flush(300)
    if left:
        fail(f"{left} messages still undelivered after flush")
    if errors:
        fail(f"delivery failed: {errors[0]} ({len(errors)} failures)")
    return acks


def consume(bootstrap, topic, n):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        # The Python binding insists on a group id; no group API is used (assign, no commits).
        "group.id": f"brook-e2e-assign-{topic}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "check.crcs": True,
        "auto.offset.reset": "error",
    })
    md = c.list_topics(topic, timeout=30)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        fail(f"metadata for {topic}: {t.error if t else 'missing'}")
    parts = sorted(t.partitions)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    records = []
    eof = set()
    deadline = Deadline(what="consume")
    while len(eof) < len(parts):
        deadline.check(f"{len(records)} of {n} consumed, eof on {sorted(eof)} of {parts}")
        for m in c.consume(num_messages=10000, timeout=1.0):
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                fail(f"consume error on partition {m.partition()}: {err}")
            # A partition that reported EOF and then delivers more is fine only before all EOFs.
            eof.discard(m.partition())
            ts_type, ts = m.timestamp()
            if ts_type != TIMESTAMP_CREATE_TIME:
                fail(f"message at {m.partition()}/{m.offset()} has timestamp type {ts_type}, expected CreateTime")
            records.append((m.partition(), m.offset(), m.key(), m.value(), m.headers(), ts))
    return c, parts, records


def check_offsets_for_times(c, topic, parts, acks, n):
    """ListOffsets by timestamp returns, per partition, the first offset whose timestamp >= t."""
    checked = 0
    for target_i in (0, n // 3, n - 1, n + 1000):
        t = timestamp(target_i)
        got = c.offsets_for_times([TopicPartition(topic, p, t) for p in parts], timeout=30)
        for tp in got:
            if tp.error is not None:
                fail(f"offsets_for_times({t}) partition {tp.partition}: {tp.error}")
            # Timestamps grow with the index, so the answer is the offset of the smallest index >= target_i.
            want = -1
            for i in range(target_i, n):
                if acks[i][0] == tp.partition:
                    want = acks[i][1]
                    break
            if tp.offset != want:
                fail(f"offsets_for_times(ts={t}) partition {tp.partition}: offset {tp.offset}, expected {want}")
            checked += 1
    return checked


def main():
    if len(sys.argv) != 6:
        fail(__doc__)
    bootstrap, topic, codec, n, idem = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    idempotence = idem == "true"
    acks = produce(bootstrap, topic, codec, n, idempotence)
    check_acks(acks, n)
    c, parts, records = consume(bootstrap, topic, n)
    counts = verify_records(records, acks, n, check_timestamps=True)
    checked = check_offsets_for_times(c, topic, parts, acks, n)
    c.close()
    summary(client="confluent-kafka", codec=codec, idempotence=idempotence, produced=n,
            consumed=len(records), partitions={str(p): counts.get(p, 0) for p in parts},
            offsets_for_times_checked=checked)


if __name__ == "__main__":
    main()

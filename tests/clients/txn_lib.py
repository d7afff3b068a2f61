"""Shared helpers of the transaction scripts (txn_*.py): a transactional confluent-kafka
producer and a reader that reads a whole topic with one isolation level.

The reader assigns every partition from the beginning and stops when it has seen at least
`min_count` records and every partition has reported EOF since its last record; under
read_committed EOF comes at the last stable offset, so an open transaction ends the read early.
"""

import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from clientlib import Deadline, fail


def transactional_producer(bootstrap, transactional_id, timeout_ms=60000):
    """A transactional producer, initialised (which fences earlier producers with the same id)."""
    p = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": timeout_ms,
        "linger.ms": 5,
    })
    p.init_transactions(120)
    return p


def partitions_of(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"txn-meta-{uuid.uuid4()}"})
    try:
        md = c.list_topics(topic, timeout=60)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            fail(f"topic {topic} not found: {t.error if t else 'missing'}")
        return sorted(t.partitions)
    finally:
        c.close()


def read_all(bootstrap, topic, isolation, min_count=0):
    """Every record of the topic as (partition, offset, key, value), read with `isolation`
    (read_committed or read_uncommitted)."""
    parts = partitions_of(bootstrap, topic)
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"txn-reader-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "isolation.level": isolation,
    })
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    records = []
    at_end = set()
    deadline = Deadline(what=f"reading {topic} ({isolation})")
    try:
        while len(records) < min_count or len(at_end) < len(parts):
            deadline.check(f"{len(records)} records read, {len(at_end)} of {len(parts)} partitions at their end")
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
                    continue
                raise KafkaException(m.error())
            at_end.discard(m.partition())
            records.append((m.partition(), m.offset(), m.key(), m.value()))
    finally:
        c.close()
    return records


def values(records):
    return [r[3].decode() if r[3] is not None else None for r in records]


def check_once(vals, expected, what):
    """Fails unless `vals` holds every expected value exactly once and nothing else."""
    seen = {}
    for v in vals:
        seen[v] = seen.get(v, 0) + 1
    dups = sorted(v for v, n in seen.items() if n > 1)
    if dups:
        fail(f"{what}: {len(dups)} values read more than once, e.g. {dups[:5]}")
    expected = set(expected)
    missing = sorted(expected - set(seen))
    if missing:
        fail(f"{what}: {len(missing)} values missing, e.g. {missing[:5]}")
    extra = sorted(v for v in seen if v not in expected)
    if extra:
        fail(f"{what}: {len(extra)} unexpected values, e.g. {extra[:5]}")


def marker_offsets(records):
    """How many offsets between each partition's first and last record hold no record: the
    transaction markers (control records are never handed out as messages)."""
    by_part = {}
    for p, o, _, _ in records:
        by_part.setdefault(p, []).append(o)
    gaps = 0
    for offsets in by_part.values():
        offsets.sort()
        gaps += (offsets[-1] - offsets[0] + 1) - len(offsets)
    return gaps

#!/usr/bin/env python3
"""A consume-transform-produce worker through confluent-kafka, exactly once: a read_committed
consumer in a group (static member, so a restarted worker takes over at once) and a
transactional producer; each polled batch becomes one transaction holding the output records and
the consumed offsets. The worker stops when every assigned partition is at its end.

It reports progress on stderr, one line per step, for the test that kills it:
`begin K`, `produced K COUNT` (records flushed, not committed), `committed K TOTAL`.
With HOLD_AT > 0 it prints `holding K` after producing transaction K and waits on stdin
(mid-transaction, until killed).

usage: txn_ctp.py BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID BATCH HOLD_AT
"""

import sys

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from clientlib import Deadline, fail, summary
from txn_lib import transactional_producer


def log(line):
    print(line, file=sys.stderr, flush=True)


def main():
    bootstrap, src, dst, group, tid = sys.argv[1:6]
    batch, hold_at = int(sys.argv[6]), int(sys.argv[7])
    # Initialise first: it completes or aborts the previous worker's transaction, so the
    # committed offsets fetched below are settled.
    producer = transactional_producer(bootstrap, tid, timeout_ms=30000)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.instance.id": f"{group}-worker",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "session.timeout.ms": 30000,
    })
    assigned, at_end = set(), set()

    def on_assign(c, partitions):
        for p in partitions:
            assigned.add(p.partition)
            at_end.discard(p.partition)

    def on_revoke(c, partitions):
        for p in partitions:
            assigned.discard(p.partition)
            at_end.discard(p.partition)

    consumer.subscribe([src], on_assign=on_assign, on_revoke=on_revoke)
    k, total = 0, 0
    deadline = Deadline(what="the consume-transform-produce loop")
    while True:
        deadline.check(f"{total} records processed")
        msgs = consumer.consume(num_messages=batch, timeout=1.0)
        records = []
        for m in msgs:
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
                    continue
                raise KafkaException(m.error())
            at_end.discard(m.partition())
            records.append(m)
        if not records:
            if assigned and at_end >= assigned:
                break
            continue
        k += 1
        log(f"begin {k}")
        producer.begin_transaction()
        for m in records:
            producer.produce(dst, key=m.value(), value=b"out-" + m.value())
        if producer.flush(120):
            fail(f"transaction {k}: records not delivered")
        log(f"produced {k} {len(records)}")
        if k == hold_at:
            log(f"holding {k}")
            sys.stdin.read()
            fail("stdin closed while holding a transaction open")
        next_offsets = {}
        for m in records:
            next_offsets[m.partition()] = m.offset() + 1
        positions = [TopicPartition(src, p, o) for p, o in sorted(next_offsets.items())]
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 120)
        producer.commit_transaction(120)
        total += len(records)
        log(f"committed {k} {total}")
    consumer.close()
    summary(transactions=k, records=total)


if __name__ == "__main__":
    main()

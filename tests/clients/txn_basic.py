#!/usr/bin/env python3
"""Committed and aborted transactions through confluent-kafka: one transactional producer
commits N records over every partition, aborts N more, then commits N more. A read_committed
consumer must see exactly the committed 2N; a read_uncommitted one all 3N; neither is ever
handed a control record (the markers show as offsets without records).

usage: txn_basic.py BOOTSTRAP TOPIC PARTITIONS N
"""

import sys

from clientlib import fail, summary
from txn_lib import check_once, marker_offsets, read_all, transactional_producer, values


def produce(p, topic, partitions, prefix, n):
    for i in range(n):
        while True:
            try:
                p.produce(topic, key=b"k%d" % i, value=f"{prefix}-{i}".encode(), partition=i % partitions)
                break
            except BufferError:
                p.poll(0.05)


def main():
    bootstrap, topic, partitions, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    p = transactional_producer(bootstrap, f"basic-{topic}")
    p.begin_transaction()
    produce(p, topic, partitions, "commit", n)
    p.commit_transaction(120)
    p.begin_transaction()
    produce(p, topic, partitions, "abort", n)
    if p.flush(120):
        fail("records of the transaction to abort were not delivered")
    p.abort_transaction(120)
    p.begin_transaction()
    produce(p, topic, partitions, "after", n)
    p.commit_transaction(120)

    committed = [f"commit-{i}" for i in range(n)] + [f"after-{i}" for i in range(n)]
    aborted = [f"abort-{i}" for i in range(n)]
    rc = read_all(bootstrap, topic, "read_committed", min_count=2 * n)
    check_once(values(rc), committed, "read_committed")
    ru = read_all(bootstrap, topic, "read_uncommitted", min_count=3 * n)
    check_once(values(ru), committed + aborted, "read_uncommitted")
    summary(
        read_committed=len(rc),
        read_uncommitted=len(ru),
        partitions=len({r[0] for r in ru}),
        marker_offsets=marker_offsets(ru),
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fencing through confluent-kafka: producer A opens a transaction and writes records; producer B
with the same transactional.id initialises, which fences A and aborts A's transaction. A's commit
must fail with a fatal fencing error; B's transaction commits. read_committed shows only B's
records; read_uncommitted shows A's too.

usage: txn_fencing.py BOOTSTRAP TOPIC PARTITIONS N
"""

import sys

from confluent_kafka import KafkaException

from clientlib import fail, summary
from txn_lib import check_once, read_all, transactional_producer, values

FENCING_ERRORS = {"_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"}


def main():
    bootstrap, topic, partitions, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    tid = f"fence-{topic}"
    old = transactional_producer(bootstrap, tid)
    old.begin_transaction()
    for i in range(n):
        old.produce(topic, value=f"old-{i}".encode(), partition=i % partitions)
    if old.flush(120):
        fail("the old producer's records were not delivered")

    new = transactional_producer(bootstrap, tid)

    try:
        old.commit_transaction(120)
        fail("the fenced producer committed its transaction")
    except KafkaException as e:
        err = e.args[0]
        commit_error, commit_fatal = err.name(), err.fatal()
    if commit_error not in FENCING_ERRORS:
        fail(f"the fenced producer's commit failed with {commit_error}, expected one of {sorted(FENCING_ERRORS)}")
    try:
        old.begin_transaction()
        fail("the fenced producer began another transaction")
    except KafkaException as e:
        later_error = e.args[0].name()

    new.begin_transaction()
    for i in range(n):
        new.produce(topic, value=f"new-{i}".encode(), partition=i % partitions)
    new.commit_transaction(120)

    fresh = [f"new-{i}" for i in range(n)]
    fenced = [f"old-{i}" for i in range(n)]
    rc = read_all(bootstrap, topic, "read_committed", min_count=n)
    check_once(values(rc), fresh, "read_committed")
    ru = read_all(bootstrap, topic, "read_uncommitted", min_count=2 * n)
    check_once(values(ru), fresh + fenced, "read_uncommitted")
    summary(
        commit_error=commit_error,
        commit_fatal=commit_fatal,
        later_error=later_error,
        read_committed=len(rc),
        read_uncommitted=len(ru),
    )


if __name__ == "__main__":
    main()

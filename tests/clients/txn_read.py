#!/usr/bin/env python3
"""Reads a whole topic with confluent-kafka at one isolation level and prints its values
(the Rust tests check them): every partition from offset 0 to its end (the last stable offset
under read_committed), after at least MIN_COUNT records.

usage: txn_read.py BOOTSTRAP TOPIC read_committed|read_uncommitted [MIN_COUNT]
"""

import sys

from clientlib import fail, summary
from txn_lib import marker_offsets, read_all, values


def main():
    bootstrap, topic, isolation = sys.argv[1], sys.argv[2], sys.argv[3]
    min_count = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    if isolation not in ("read_committed", "read_uncommitted"):
        fail(f"unknown isolation level {isolation}")
    records = read_all(bootstrap, topic, isolation, min_count=min_count)
    summary(
        isolation=isolation,
        count=len(records),
        values=values(records),
        marker_offsets=marker_offsets(records),
    )


if __name__ == "__main__":
    main()

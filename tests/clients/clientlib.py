"""Shared helpers for the client scripts the Rust end-to-end tests run.

Every script takes the bootstrap address and its parameters as argv, prints exactly one JSON
summary line on stdout, and exits non-zero with a clear message on stderr on any failure.
Messages follow one scheme so every client is checked the same way: message i has
value b"value-<i>", key b"k<i % 37>" and headers [("h", b"1"), ("seq", b"<i>"), ("h", b"2")]
(a duplicated key, in that order).
"""

import json
import sys
import time

KEY_SPACE = 37
BASE_TS_MS = 1_700_000_000_000
# A hang guard for every wait loop, not a performance threshold.
DEADLINE_S = 600


def fail(msg):
    """Prints an error to stderr and exits 1."""
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def value(i):
    return b"value-%d" % i


def key(i):
    return b"k%d" % (i % KEY_SPACE)


def headers(i):
    return [("h", b"1"), ("seq", b"%d" % i), ("h", b"2")]


def timestamp(i):
    return BASE_TS_MS + i


def index_of(val):
    """The message index encoded in a value, or fails."""
    if not val or not val.startswith(b"value-"):
        fail(f"unexpected value {val!r}")
    return int(val[6:])


def summary(**fields):
    """Prints the one JSON summary line."""
    print(json.dumps(fields, sort_keys=True), flush=True)


def norm_headers(hs):
    """Headers as a list of (str, bytes) pairs; None becomes []."""
    out = []
    for k, v in hs or []:
        if isinstance(k, bytes):
            k = k.decode()
        if isinstance(v, str):
            v = v.encode()
        out.append((k, v))
    return out


def check_acks(acks, n):
    """acks[i] = (partition, offset) for i in 0..n; checks each is set, unique, and increasing
    with i within each partition (one producer, in order). Returns {partition: [offsets]}."""
    per = {}
    for i in range(n):
        a = acks[i]
        if a is None:
            fail(f"message {i} was never acknowledged")
        p, o = a
        if o is None or o < 0:
            fail(f"message {i} acknowledged with invalid offset {o} (partition {p})")
        lst = per.setdefault(p, [])
        if lst and o <= lst[-1]:
            fail(f"partition {p}: message {i} acked at offset {o} after an earlier message at {lst[-1]} (order broken)")
        lst.append(o)
    return per


def verify_records(records, acks, n, check_timestamps=False, check_headers=True):
    """Checks consumed records against the scheme and the acknowledgements.

    records: list of (partition, offset, key, value, headers, timestamp_ms) in consumption order.
    acks: list indexed by message index of (partition, offset), or None to skip that check.
    Returns {partition: count}.
    """
    seen = [False] * n
    last_off = {}
    last_idx = {}
    key_part = {}
    counts = {}
    for p, o, k, v, hs, ts in records:
        i = index_of(v)
        if i < 0 or i >= n:
            fail(f"partition {p} offset {o}: index {i} out of range 0..{n}")
        if seen[i]:
            fail(f"message {i} consumed twice (again at partition {p} offset {o})")
        seen[i] = True
        if k != key(i):
            fail(f"message {i} at {p}/{o}: key {k!r}, expected {key(i)!r}")
        if check_headers and norm_headers(hs) != headers(i):
            fail(f"message {i} at {p}/{o}: headers {norm_headers(hs)!r}, expected {headers(i)!r}")
        if check_timestamps and ts != timestamp(i):
            fail(f"message {i} at {p}/{o}: timestamp {ts}, expected {timestamp(i)}")
        if acks is not None and acks[i] != (p, o):
            fail(f"message {i} consumed at partition {p} offset {o} but was acknowledged at {acks[i]}")
        if p in last_off:
            if o != last_off[p] + 1:
                fail(f"partition {p}: offset {o} follows {last_off[p]} (gap, duplicate or reorder)")
            if i <= last_idx[p]:
                fail(f"partition {p}: message {i} at offset {o} after message {last_idx[p]} (order broken)")
        last_off[p] = o
        last_idx[p] = i
        kp = key_part.setdefault(k, p)
        if kp != p:
            fail(f"key {k!r} found in partitions {kp} and {p}")
        counts[p] = counts.get(p, 0) + 1
    missing = [i for i in range(n) if not seen[i]]
    if missing:
        fail(f"{len(missing)} of {n} messages never consumed, e.g. {missing[:10]}")
    return counts


class Deadline:
    """A hang guard for polling loops."""

    def __init__(self, seconds=DEADLINE_S, what="operation"):
        self.end = time.monotonic() + seconds
        self.what = what
        self.seconds = seconds

    def check(self, detail=""):
        if time.monotonic() > self.end:
            fail(f"{self.what} did not finish within {self.seconds}s (hang guard); {detail}")

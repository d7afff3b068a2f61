#!/usr/bin/env python3
"""confluent-kafka producer and checker for the durability and recovery tests. Every
acknowledged message is recorded as a JSON line {"i": index, "p": partition, "o": offset} in an
acks file, so that after a crash or a damaged log the broker's contents can be checked against
exactly what it acknowledged.

usage:
  confluent_log.py produce BOOTSTRAP TOPIC START COUNT ROUNDS ACKS_FILE
      Produces messages START..START+COUNT-1 (acks=all, idempotent) in ROUNDS flushed rounds
      (so the log holds at least ROUNDS batches); fails unless every one is acknowledged.
  confluent_log.py produce-until-stopped BOOTSTRAP TOPIC ACKS_FILE
      Produces continuously, appending each acknowledgement to ACKS_FILE as it arrives (flushed)
      and printing "progress acked=N" on stderr; stops when stdin closes, purging what is in
      flight (those messages count as unacknowledged).
  confluent_log.py verify BOOTSTRAP TOPIC MODE ACKS_FILE...
      Consumes every partition from the beginning and checks that each acknowledged message is
      at its acknowledged offset with its key and headers, that offsets are contiguous from 0,
      and, with MODE=exact, that nothing else is there (MODE=atleast allows unacknowledged extras).
"""

import json
import sys
import threading

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka import OFFSET_BEGINNING

from clientlib import (Deadline, fail, headers, index_of, key, norm_headers, summary, value)


def producer(bootstrap, on_delivery):
    # Small batches and a short queue keep several produce requests in flight at any moment, so
    # that a crash lands in the middle of a stream of writes rather than between two big bursts.
    return Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 1,
        "batch.num.messages": 200,
        "queue.buffering.max.messages": 20000,
        "message.timeout.ms": 300000,
        "on_delivery": on_delivery,
    })


def part_stats(acks):
    stats = {}
    for i, p, o in acks:
        s = stats.setdefault(str(p), {"min": o, "max": o, "count": 0})
        s["min"] = min(s["min"], o)
        s["max"] = max(s["max"], o)
        s["count"] += 1
    return stats


def cmd_produce(bootstrap, topic, start, count, rounds, acks_path):
    acks = []
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acks.append((index_of(msg.value()), msg.partition(), msg.offset()))

    p = producer(bootstrap, on_delivery)
    per_round = max(1, count // rounds)
    i = start
    end = start + count
    while i < end:
        round_end = min(end, i + per_round)
        while i < round_end:
            try:
                p.produce(topic, value=value(i), key=key(i), headers=headers(i))
                i += 1
            except BufferError:
                p.poll(0.05)
        left = p.flush(300)
        if left:
            fail(f"{left} messages undelivered after flush")
        if errors:
            fail(f"delivery failed: {errors[0]} ({len(errors)} failures)")
    if len(acks) != count:
        fail(f"{len(acks)} acknowledgements for {count} messages")
    with open(acks_path, "w") as f:
        for i, part, o in sorted(acks):
            f.write(json.dumps({"i": i, "p": part, "o": o}) + "\n")
    summary(mode="produce", acked=len(acks), partitions=part_stats(acks))


def cmd_produce_until_stopped(bootstrap, topic, acks_path):
    stop = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    out = open(acks_path, "w", buffering=1)
    state = {"acked": 0, "failed": 0, "last_report": 0}
    acks = []

    def on_delivery(err, msg):
        if err is not None:
            state["failed"] += 1
            return
        i = index_of(msg.value())
        out.write(json.dumps({"i": i, "p": msg.partition(), "o": msg.offset()}) + "\n")
        acks.append((i, msg.partition(), msg.offset()))
        state["acked"] += 1

    p = producer(bootstrap, on_delivery)
    i = 0
    while not stop.is_set():
        try:
            p.produce(topic, value=value(i), key=key(i), headers=headers(i))
            i += 1
        except BufferError:
            p.poll(0.05)
        if i % 100 == 0:
            p.poll(0)
        if state["acked"] - state["last_report"] >= 500:
            state["last_report"] = state["acked"]
            out.flush()
            print(f"progress acked={state['acked']}", file=sys.stderr, flush=True)
    # Deliver the acknowledgements already received, then drop whatever is still in flight.
    p.poll(0)
    p.purge(in_queue=True, in_flight=True, blocking=False)
    p.flush(30)
    out.close()
    summary(mode="produce-until-stopped", produced=i, acked=state["acked"], failed=state["failed"],
            partitions=part_stats(acks))


def cmd_verify(bootstrap, topic, mode, ack_paths):
    if mode not in ("exact", "atleast"):
        fail(f"verify mode must be exact or atleast, not {mode}")
    expected = {}
    for path in ack_paths:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                a = json.loads(line)
                pos = (a["p"], a["o"])
                if pos in expected and expected[pos] != a["i"]:
                    fail(f"acks files give two messages at {pos}: {expected[pos]} and {a['i']}")
                expected[pos] = a["i"]
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"brook-e2e-verify-{topic}",
        "enable.auto.commit": False,
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
    eof = set()
    found = {}
    next_off = {p: 0 for p in parts}
    consumed = 0
    deadline = Deadline(what="verify consume")
    while len(eof) < len(parts):
        deadline.check(f"{consumed} consumed, eof on {sorted(eof)}")
        for m in c.consume(num_messages=10000, timeout=1.0):
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                fail(f"consume error on partition {m.partition()}: {err}")
            p, o = m.partition(), m.offset()
            eof.discard(p)
            if o != next_off[p]:
                fail(f"partition {p}: offset {o} where {next_off[p]} was expected (gap or reorder)")
            next_off[p] = o + 1
            consumed += 1
            i = index_of(m.value())
            if m.key() != key(i) or norm_headers(m.headers()) != headers(i):
                fail(f"message {i} at {p}/{o}: key {m.key()!r} headers {m.headers()!r} do not match the scheme")
            want = expected.get((p, o))
            if want is not None:
                if want != i:
                    fail(f"partition {p} offset {o}: holds message {i} but message {want} was acknowledged there")
                found[(p, o)] = i
            elif mode == "exact":
                fail(f"partition {p} offset {o}: message {i} is there but was never acknowledged")
    lost = sorted(set(expected) - set(found))
    if lost:
        fail(f"{len(lost)} acknowledged messages missing after restart, first at (partition, offset) "
             f"{lost[:5]} (messages {[expected[x] for x in lost[:5]]})")
    ends = {}
    for p in parts:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30, cached=False)
        if lo != 0 or hi != next_off[p]:
            fail(f"partition {p}: watermarks ({lo}, {hi}), expected (0, {next_off[p]})")
        ends[str(p)] = hi
    c.close()
    summary(mode="verify", consumed=consumed, acked_checked=len(found), ends=ends)


def main():
    if len(sys.argv) < 2:
        fail(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "produce" and len(args) == 6:
        cmd_produce(args[0], args[1], int(args[2]), int(args[3]), int(args[4]), args[5])
    elif cmd == "produce-until-stopped" and len(args) == 3:
        cmd_produce_until_stopped(*args)
    elif cmd == "verify" and len(args) >= 4:
        cmd_verify(args[0], args[1], args[2], args[3:])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""ListOffsets and out-of-range fetches through confluent-kafka: earliest is 0, latest is the log
end offset (the next offset to be written), both through the consumer's watermarks and the admin
API; a fetch at the log end reaches EOF without error; a fetch inside a batch starts at that exact
offset; a fetch past the log end fails with OFFSET_OUT_OF_RANGE (seen with auto.offset.reset=error).

usage: confluent_offsets.py BOOTSTRAP TOPIC N
"""

import sys

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from clientlib import Deadline, fail, headers, index_of, key, summary, value


def produce(bootstrap, topic, n):
    acks = {}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acks[index_of(msg.value())] = (msg.partition(), msg.offset())

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "on_delivery": on_delivery})
    for i in range(n):
        while True:
            try:
                p.produce(topic, value=value(i), key=key(i), headers=headers(i))
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(300):
        fail("messages undelivered after flush")
    if errors:
        fail(f"delivery failed: {errors[0]}")
    return acks


def consumer(bootstrap, topic, reset):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"brook-e2e-offsets-{topic}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": reset,
    })


def first_event(c, what):
    """The first message or error event the consumer delivers."""
    deadline = Deadline(what=what)
    while True:
        deadline.check()
        m = c.poll(1.0)
        if m is not None:
            return m


def main():
    if len(sys.argv) != 4:
        fail(__doc__)
    bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    acks = produce(bootstrap, topic, n)
    ends = {}
    for p, o in acks.values():
        ends[p] = max(ends.get(p, -1), o + 1)
    parts = sorted(ends)

    # Watermarks: ListOffsets EARLIEST and LATEST.
    c = consumer(bootstrap, topic, "error")
    for p in parts:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30, cached=False)
        if (lo, hi) != (0, ends[p]):
            fail(f"partition {p}: watermarks ({lo}, {hi}), expected (0, {ends[p]}) = (earliest, log end offset)")

    # The admin API's ListOffsets.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for spec_name, spec, want in (("earliest", OffsetSpec.earliest(), lambda p: 0),
                                  ("latest", OffsetSpec.latest(), lambda p: ends[p])):
        futs = admin.list_offsets({TopicPartition(topic, p): spec for p in parts}, request_timeout=30)
        for tp, f in futs.items():
            try:
                info = f.result()
            except Exception as e:  # noqa: BLE001
                fail(f"admin list_offsets {spec_name} partition {tp.partition}: {e}")
            if info.offset != want(tp.partition):
                fail(f"admin list_offsets {spec_name} partition {tp.partition}: {info.offset}, expected {want(tp.partition)}")

    # Fetch at the log end: EOF, no error.
    p0 = parts[0]
    c.assign([TopicPartition(topic, p0, ends[p0])])
    m = first_event(c, "fetch at log end")
    if m.error() is None or m.error().code() != KafkaError._PARTITION_EOF:
        fail(f"fetch at log end offset {ends[p0]}: expected partition EOF, got "
             f"{m.error() if m.error() else ('message at offset %d' % m.offset())}")
    c.unassign()

    # Fetch from the middle of the log (most likely inside a batch): starts at that offset.
    mid = ends[p0] // 2
    c.assign([TopicPartition(topic, p0, mid)])
    m = first_event(c, "fetch in the middle")
    if m.error() is not None or m.offset() != mid:
        fail(f"fetch at offset {mid}: got {m.error() if m.error() else 'offset %d' % m.offset()}")
    i = index_of(m.value())
    if acks[i] != (p0, mid) or m.key() != key(i):
        fail(f"fetch at offset {mid}: message {i} was acknowledged at {acks[i]}")
    c.unassign()

    # Fetch past the log end: OFFSET_OUT_OF_RANGE, surfaced by auto.offset.reset=error.
    beyond = ends[p0] + 5
    c.assign([TopicPartition(topic, p0, beyond)])
    m = first_event(c, "fetch past log end")
    err = m.error()
    if err is None:
        fail(f"fetch at offset {beyond} past the log end {ends[p0]} returned a message at {m.offset()}")
    if err.code() != KafkaError._AUTO_OFFSET_RESET or "out of range" not in err.str().lower():
        fail(f"fetch at offset {beyond} past the log end {ends[p0]}: expected an offset-out-of-range "
             f"error (auto.offset.reset=error), got {err.name()}: {err.str()}")
    c.close()
    summary(produced=n, partitions={str(p): ends[p] for p in parts}, out_of_range_error=err.str())


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Short client sessions run through capture_proxy.py to record golden frames: each touches the
APIs a client uses (admin, idempotent and compressed produce, assign-based consume, offsets by
time) with only a few records, so the frames stay small.

usage: capture_sessions.py CLIENT BOOTSTRAP
CLIENT is confluent, kafka_python, kafka_python_pinned or aiokafka (kcat is driven from capture_all.sh).
"""

import asyncio
import sys

from clientlib import BASE_TS_MS, Deadline, fail, headers, key, timestamp, value

# A few records per produce call keeps every Produce and Fetch frame small.
RECORDS = 3


def confluent(bootstrap):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic, doomed = "golden-confluent", "golden-confluent-doomed"
    for f in admin.create_topics([NewTopic(topic, 2, 1), NewTopic(doomed, 1, 1)]).values():
        f.result(timeout=60)
    for f in admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values():
        f.result(timeout=60)
    for codec in ("lz4", "zstd"):
        errors = []
        p = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": codec,
            "linger.ms": 5,
        })
        for i in range(RECORDS):
            p.produce(topic, value=value(i), key=key(i), headers=headers(i), timestamp=timestamp(i),
                      on_delivery=lambda err, _msg: err and errors.append(err))
        if p.flush(60) or errors:
            fail(f"confluent {codec} produce: {errors or 'undelivered'}")
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "golden-assign",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    c.assign([TopicPartition(topic, p, 0) for p in (0, 1)])
    eof, seen, deadline = set(), 0, Deadline(what="confluent consume")
    while len(eof) < 2:
        deadline.check(f"eof on {sorted(eof)}")
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof.add(m.partition())
                continue
            fail(f"consume: {m.error()}")
        seen += 1
    if seen != 2 * RECORDS:
        fail(f"consumed {seen}, expected {2 * RECORDS}")
    found = c.offsets_for_times([TopicPartition(topic, p, BASE_TS_MS + 1) for p in (0, 1)], timeout=60)
    if any(tp.error for tp in found):
        fail(f"offsets_for_times: {found}")
    c.close()
    for f in admin.delete_topics([doomed]).values():
        f.result(timeout=60)


def kafka_python(bootstrap):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = "golden-kafka-python"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()
    for codec in ("gzip", "snappy"):
        p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec, linger_ms=5)
        futures = [p.send(topic, value=value(i), key=key(i), headers=headers(i)) for i in range(RECORDS)]
        p.flush(timeout=60)
        for f in futures:
            f.get(timeout=60)
        p.close()
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    end = c.end_offsets([tp])[tp]
    seen, deadline = 0, Deadline(what="kafka-python consume")
    while c.position(tp) < end:
        deadline.check(f"position {c.position(tp)} of {end}")
        seen += sum(len(v) for v in c.poll(timeout_ms=1000).values())
    if seen != 2 * RECORDS:
        fail(f"consumed {seen}, expected {2 * RECORDS}")
    c.close()


def kafka_python_pinned(bootstrap):
    """kafka-python pinned to older broker versions (no ApiVersions probe), so the older
    Produce, Fetch, ListOffsets and Metadata versions get captured too."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    for pin in ((0, 11), (1, 0), (1, 1), (2, 0), (2, 1)):
        topic = "golden-pinned-%d-%d" % pin
        p = KafkaProducer(bootstrap_servers=bootstrap, api_version=pin, acks=1)
        futures = [p.send(topic, value=value(i), key=key(i), headers=headers(i)) for i in range(RECORDS)]
        p.flush(timeout=60)
        for f in futures:
            f.get(timeout=60)
        p.close()
        c = KafkaConsumer(bootstrap_servers=bootstrap, api_version=pin, group_id=None, enable_auto_commit=False)
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        seen, deadline = 0, Deadline(what=f"kafka-python {pin} consume")
        while seen < RECORDS:
            deadline.check(f"{seen} of {RECORDS} consumed")
            seen += sum(len(v) for v in c.poll(timeout_ms=1000).values())
        c.close()


def aiokafka(bootstrap):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic = "golden-aiokafka"

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip")
        await p.start()
        try:
            for i in range(RECORDS):
                await p.send_and_wait(topic, value=value(i), key=key(i), headers=headers(i))
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await c.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            await c.seek_to_beginning(tp)
            seen, deadline = 0, Deadline(what="aiokafka consume")
            while seen < RECORDS:
                deadline.check(f"{seen} of {RECORDS} consumed")
                batches = await c.getmany(tp, timeout_ms=1000)
                seen += sum(len(v) for v in batches.values())
        finally:
            await c.stop()

    asyncio.run(run())


CLIENTS = ("confluent", "kafka_python", "kafka_python_pinned", "aiokafka")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in CLIENTS:
        fail(__doc__)
    globals()[sys.argv[1]](sys.argv[2])
    print("ok", flush=True)


if __name__ == "__main__":
    main()

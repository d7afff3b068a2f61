#!/usr/bin/env python3
"""Topic rules and the AdminClient through confluent-kafka (librdkafka).

usage: confluent_admin.py BOOTSTRAP rules CODEC COMPACT_TOPIC LOG_APPEND_TOPIC SMALL_TOPIC
       confluent_admin.py BOOTSTRAP admin TOPIC_PREFIX

`rules` produces (acks=all) to three topics the test created with topic configs:
  - COMPACT_TOPIC (cleanup.policy=compact): a keyless record, then keyed records (compressed
    with CODEC, so the broker must look inside compressed batches);
  - LOG_APPEND_TOPIC (message.timestamp.type=LogAppendTime): records with an old explicit
    timestamp (compressed with CODEC), consumed back with the wall clock taken before and after;
  - SMALL_TOPIC (max.message.bytes=2000): a 10 KB record, then small records (compression none).
`admin` drives the AdminClient through create/describe/alter/grow/delete-records/delete/cluster.

Both print one JSON line of what they observed (error names and codes, values, sources); the Rust
test asserts the exact Kafka behaviour on it. The script itself fails only when a client call
hangs past its deadline or the observations cannot be made at all.
"""

import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, TIMESTAMP_NOT_AVAILABLE
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewPartitions, NewTopic, OffsetSpec, ResourceType)

from clientlib import BASE_TS_MS, Deadline, fail, summary

TIMEOUT = 30  # seconds for one admin request (a hang guard)
TS_TYPES = {TIMESTAMP_NOT_AVAILABLE: "NOT_AVAILABLE", TIMESTAMP_CREATE_TIME: "CREATE_TIME",
            TIMESTAMP_LOG_APPEND_TIME: "LOG_APPEND_TIME"}


def err_obs(err):
    """A KafkaError (or None) as a JSON-able observation."""
    if err is None:
        return None
    return {"name": err.name(), "code": err.code(), "str": err.str()}


def exc_obs(e):
    """The KafkaError inside an exception raised by a future, else the exception's text."""
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return err_obs(e.args[0])
    return {"name": type(e).__name__, "code": None, "str": str(e)}


def outcome(fut):
    """None when the future succeeded, else its error observation."""
    try:
        fut.result(timeout=TIMEOUT)
        return None
    except Exception as e:  # noqa: BLE001 - the error is the observation
        return exc_obs(e)


def producer(bootstrap, codec):
    # retries=0: a rejected batch is reported at once (the rejections here are not retriable anyway).
    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "compression.type": codec,
                     "linger.ms": 0, "retries": 0, "enable.idempotence": False})


def produce_one(p, topic, **kw):
    """Produces one record, waits for its delivery report; returns (error, message)."""
    box = []
    p.produce(topic, on_delivery=lambda err, msg: box.append((err, msg)), **kw)
    deadline = Deadline(what=f"delivery report for {topic}")
    while not box:
        deadline.check()
        p.poll(0.1)
    return box[0]


def consume_all(bootstrap, topic, n):
    """The first n records of partition 0 of topic, from offset 0."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"brook-e2e-admin-{topic}",
                  "enable.auto.commit": False, "auto.offset.reset": "error"})
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = Deadline(what=f"consuming {topic}")
    while len(out) < n:
        deadline.check(f"{len(out)} of {n} records")
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error() is not None:
            fail(f"consuming {topic}: {m.error()}")
        out.append(m)
    c.close()
    return out


def rules(bootstrap, codec, compact_topic, lat_topic, small_topic):
    p = producer(bootstrap, codec)
    pad = b"x" * 200  # values compress well, so librdkafka really sends compressed batches
    obs = {"codec": codec}

    # Compacted topic: a record without a key is refused, keyed ones are stored.
    err, _ = produce_one(p, compact_topic, value=b"no-key" + pad)
    obs["compact_keyless"] = err_obs(err)
    keyed = []
    for i in range(3):
        err, msg = produce_one(p, compact_topic, key=b"k%d" % i, value=b"v%d:" % i + pad)
        keyed.append({"error": err_obs(err), "offset": None if err else msg.offset()})
    obs["compact_keyed"] = keyed
    if all(k["error"] is None for k in keyed):
        got = consume_all(bootstrap, compact_topic, 3)
        obs["compact_consumed"] = [[m.offset(), m.key().decode(), m.value().decode().split(":")[0]] for m in got]

    # LogAppendTime: the broker's clock replaces the producer's (old) timestamp.
    before = int(time.time() * 1000)
    dr = []
    for i in range(3):
        err, msg = produce_one(p, lat_topic, key=b"k", value=b"lat-%d:" % i + pad, timestamp=BASE_TS_MS + i)
        if err is not None:
            fail(f"produce to the LogAppendTime topic {lat_topic}: {err}")
        t, ts = msg.timestamp()
        dr.append([TS_TYPES.get(t, t), ts])
    after = int(time.time() * 1000)
    got = consume_all(bootstrap, lat_topic, 3)
    consumed = []
    for m in got:
        t, ts = m.timestamp()
        consumed.append({"offset": m.offset(), "value": m.value().decode().split(":")[0], "type": TS_TYPES.get(t, t),
                         "ts": ts, "in_window": before <= ts <= after})
    obs["log_append"] = {"before": before, "after": after, "producer_ts": BASE_TS_MS, "consumed": consumed,
                         "delivery_reports": dr}

    # max.message.bytes=2000: a 10 KB record is too large, small ones go through (no compression).
    p.flush(TIMEOUT)
    p = producer(bootstrap, "none")
    err, _ = produce_one(p, small_topic, key=b"big", value=b"x" * 10240)
    obs["too_large"] = err_obs(err)
    small = []
    for i in range(3):
        err, msg = produce_one(p, small_topic, key=b"s", value=b"small-%d" % i)
        small.append({"error": err_obs(err), "offset": None if err else msg.offset()})
    obs["small"] = small
    if p.flush(TIMEOUT):
        fail("records undelivered after flush")
    summary(**obs)


def describe(admin, topic):
    """{name: (value, source name)} of a topic's configs, or an error observation."""
    res = ConfigResource(ResourceType.TOPIC, topic)
    try:
        entries = admin.describe_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    except Exception as e:  # noqa: BLE001
        return {"error": exc_obs(e)}
    return {name: [e.value, ConfigSource(e.source).name] for name, e in entries.items()}


def topic_partitions(admin, topic):
    """The partition count metadata shows for topic, or None when it is not listed."""
    md = admin.list_topics(timeout=TIMEOUT)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def admin_checks(bootstrap, prefix):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    obs = {}
    topic = f"{prefix}.main"  # with a dot: a "_" in its place collides (Kafka metric names)

    # validate_only: accepted, nothing created.
    f = admin.create_topics([NewTopic(f"{prefix}-dry", num_partitions=2, replication_factor=1)],
                            validate_only=True, request_timeout=TIMEOUT)
    obs["validate_only"] = outcome(f[f"{prefix}-dry"])
    obs["validate_only_listed"] = topic_partitions(admin, f"{prefix}-dry")

    # Create with partitions and a config.
    f = admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1,
                                      config={"retention.ms": "123456", "cleanup.policy": "compact"})],
                            request_timeout=TIMEOUT)
    obs["create"] = outcome(f[topic])
    obs["create_partitions_listed"] = topic_partitions(admin, topic)

    # Errors: duplicate, bad config value, unknown config, bad name, bad replication factor.
    f = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], request_timeout=TIMEOUT)
    obs["create_duplicate"] = outcome(f[topic])
    bad = f"{prefix}-badcfg"
    f = admin.create_topics([NewTopic(bad, num_partitions=1, replication_factor=1,
                                      config={"retention.ms": "not-a-number"})], request_timeout=TIMEOUT)
    obs["create_invalid_config"] = outcome(f[bad])
    obs["create_invalid_config_listed"] = topic_partitions(admin, bad)
    unk = f"{prefix}-unkcfg"
    f = admin.create_topics([NewTopic(unk, num_partitions=1, replication_factor=1,
                                      config={"no.such.config": "1"})], request_timeout=TIMEOUT)
    obs["create_unknown_config"] = outcome(f[unk])
    for label, name in (("create_name_249", "n" * 249), ("create_name_250", "n" * 250), ("create_name_dot", "."),
                        ("create_name_dotdot", ".."), ("create_name_collides", f"{prefix}_main")):
        f = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)], request_timeout=TIMEOUT)
        obs[label] = outcome(f[name])
    obs["create_name_249_partitions"] = topic_partitions(admin, "n" * 249)
    badname = "bad name!"
    f = admin.create_topics([NewTopic(badname, num_partitions=1, replication_factor=1)], request_timeout=TIMEOUT)
    obs["create_invalid_name"] = outcome(f[badname])
    rf = f"{prefix}-rf3"
    f = admin.create_topics([NewTopic(rf, num_partitions=1, replication_factor=3)], request_timeout=TIMEOUT)
    obs["create_replication_factor_3"] = outcome(f[rf])

    # DescribeConfigs: the overrides are DYNAMIC_TOPIC_CONFIG, the rest defaults.
    d = describe(admin, topic)
    obs["describe"] = {k: d.get(k) for k in ("retention.ms", "cleanup.policy", "max.message.bytes", "error")}

    # IncrementalAlterConfigs: SET one, DELETE another, then describe again.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "654321", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    obs["incremental_alter"] = outcome(admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res])
    d = describe(admin, topic)
    obs["describe_after_alter"] = {k: d.get(k) for k in ("retention.ms", "cleanup.policy", "error")}
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "-5x", incremental_operation=AlterConfigOpType.SET)])
    obs["incremental_alter_invalid"] = outcome(admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res])
    d = describe(admin, topic)
    obs["describe_after_invalid_alter"] = {k: d.get(k) for k in ("retention.ms", "error")}
    obs["describe_unknown_topic"] = describe(admin, f"{prefix}-missing").get("error")

    # CreatePartitions: grow 2 -> 4; shrinking is refused.
    f = admin.create_partitions([NewPartitions(topic, 4)], request_timeout=TIMEOUT)
    obs["create_partitions"] = outcome(f[topic])
    obs["partitions_after_grow"] = topic_partitions(admin, topic)
    f = admin.create_partitions([NewPartitions(topic, 3)], request_timeout=TIMEOUT)
    obs["create_partitions_shrink"] = outcome(f[topic])

    # DeleteRecords: produce 10 keyed records to partition 0, delete before offset 4.
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    errors = []
    for i in range(10):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    if p.flush(TIMEOUT):
        fail("records undelivered after flush")
    if errors:
        fail(f"produce to {topic}: {errors[0]}")
    tp = TopicPartition(topic, 0, 4)
    obs["delete_records_supported"] = hasattr(admin, "delete_records")
    if hasattr(admin, "delete_records"):
        try:
            r = admin.delete_records([tp], request_timeout=TIMEOUT)
            fut = r[next(iter(r))]
            res = fut.result(timeout=TIMEOUT)
            obs["delete_records"] = {"low_watermark": getattr(res, "low_watermark", None), "error": None}
        except Exception as e:  # noqa: BLE001
            obs["delete_records"] = {"low_watermark": None, "error": exc_obs(e)}
        lo = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()}, request_timeout=TIMEOUT)
        obs["earliest_after_delete_records"] = next(iter(lo.values())).result(timeout=TIMEOUT).offset
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"brook-e2e-admin-{topic}"})
        obs["watermarks_after_delete_records"] = list(
            c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT, cached=False))
        # A fetch from the beginning starts at the new log start offset.
        c.close()
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"brook-e2e-admin-{topic}-2",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        # An explicit OFFSET_BEGINNING: the group APIs (OffsetFetch) are not served yet.
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = Deadline(what="first record after DeleteRecords")
        while True:
            deadline.check()
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                fail(f"consume after DeleteRecords: {m.error()}")
            obs["first_after_delete_records"] = [m.offset(), m.key().decode()]
            break
        c.close()
        r = admin.delete_records([TopicPartition(topic, 0, 99)], request_timeout=TIMEOUT)
        obs["delete_records_past_end"] = outcome(r[next(iter(r))])

    # DescribeCluster: one node, reachable at the bootstrap address, and it is the controller.
    cl = admin.describe_cluster(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    obs["cluster"] = {"nodes": [[n.id, f"{n.host}:{n.port}"] for n in cl.nodes],
                      "controller": None if cl.controller is None else cl.controller.id,
                      "cluster_id": cl.cluster_id}

    # DeleteTopics: gone from metadata (poll with a deadline; the response is the sync point anyway).
    f = admin.delete_topics([topic], request_timeout=TIMEOUT)
    obs["delete"] = outcome(f[topic])
    deadline = Deadline(seconds=TIMEOUT, what=f"{topic} leaving metadata")
    while topic_partitions(admin, topic) is not None:
        deadline.check()
        time.sleep(0.05)
    obs["listed_after_delete"] = topic_partitions(admin, topic)
    f = admin.delete_topics([topic], request_timeout=TIMEOUT)
    obs["delete_again"] = outcome(f[topic])
    summary(**obs)


def main():
    if len(sys.argv) < 3:
        fail(__doc__)
    bootstrap, mode = sys.argv[1], sys.argv[2]
    if mode == "rules" and len(sys.argv) == 7:
        rules(bootstrap, *sys.argv[3:7])
    elif mode == "admin" and len(sys.argv) == 4:
        admin_checks(bootstrap, sys.argv[3])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()

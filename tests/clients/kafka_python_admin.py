#!/usr/bin/env python3
"""kafka-python's KafkaAdminClient: create_topics (with partitions and configs), a duplicate create,
describe_configs, the legacy AlterConfigs (incremental=False), list_topics and delete_topics.

usage: kafka_python_admin.py BOOTSTRAP TOPIC_PREFIX

Prints one JSON line of what it observed (error class names, config values and sources,
partition counts); the Rust test asserts the exact Kafka behaviour on it.
"""

import sys

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError

from clientlib import Deadline, fail, summary

TIMEOUT_MS = 30000


def err_obs(e):
    """An exception as (class name, Kafka error code or None)."""
    return {"name": type(e).__name__, "code": getattr(e, "errno", None), "str": str(e)}


def attempt(fn):
    """(result, None) or (None, error observation)."""
    try:
        return fn(), None
    except KafkaError as e:
        return None, err_obs(e)


def topic_configs(admin, topic, names):
    """{name: [value, source]} for the given config names (all configs requested, not just modified)."""
    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    entries = res["topic"][topic]
    out = {}
    for n in names:
        e = entries.get(n)
        if e is None:
            out[n] = None
            continue
        src = e.get("config_source")
        out[n] = [e.get("value"), src]
    return out


def alter_result(r, topic):
    """alter_configs' per-resource outcome: 'OK' or the error text kafka-python puts there."""
    return str(r["topic"][topic])


def partition_count(admin, topic):
    """The partition count describe_topics reports, or None when the topic is unknown."""
    for t in admin.describe_topics([topic]):
        if t.get("name") == topic and t.get("error_code", 0) == 0:
            return len(t["partitions"])
    return None


def main():
    if len(sys.argv) != 3:
        fail(__doc__)
    bootstrap, prefix = sys.argv[1], sys.argv[2]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)
    obs = {}
    topic = f"{prefix}-kp"

    _, obs["create"] = attempt(lambda: admin.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1,
                  topic_configs={"retention.ms": "3600000", "max.message.bytes": "5000"})]))
    obs["listed_after_create"] = topic in admin.list_topics()
    obs["partitions"] = partition_count(admin, topic)
    _, obs["create_duplicate"] = attempt(lambda: admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1)]))
    _, obs["create_invalid_config"] = attempt(lambda: admin.create_topics(
        [NewTopic(f"{prefix}-bad", num_partitions=1, replication_factor=1,
                  topic_configs={"cleanup.policy": "sometimes"})]))
    obs["invalid_config_listed"] = f"{prefix}-bad" in admin.list_topics()

    names = ("retention.ms", "max.message.bytes", "cleanup.policy", "segment.bytes")
    obs["describe"] = topic_configs(admin, topic, names)

    # Legacy AlterConfigs (incremental=False): retention.ms changes, segment.bytes is added.
    # kafka-python re-sends the other dynamic overrides it read (max.message.bytes), as the legacy
    # API replaces the whole set of overrides.
    res = ConfigResource(ConfigResourceType.TOPIC, topic,
                         configs={"retention.ms": "7200000", "segment.bytes": "1048576"})
    obs["alter"] = alter_result(admin.alter_configs([res], incremental=False), topic)
    obs["describe_after_alter"] = topic_configs(admin, topic, names)

    res = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "soon"})
    obs["alter_invalid"] = alter_result(
        admin.alter_configs([res], incremental=False, raise_on_unknown=False), topic)
    obs["describe_after_invalid_alter"] = topic_configs(admin, topic, ("retention.ms",))

    # The raw legacy request without kafka-python's fill-in (its pinned version's internal call):
    # a config left out of an AlterConfigs request returns to its default.
    res = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "1800000"})
    obs["alter_replace"] = alter_result(
        admin._manager.run(admin._send_alter_configs_requests, [res], False, False), topic)
    obs["describe_after_replace"] = topic_configs(admin, topic, names)

    _, obs["delete"] = attempt(lambda: admin.delete_topics([topic]))
    deadline = Deadline(seconds=30, what=f"{topic} leaving metadata")
    while topic in admin.list_topics():
        deadline.check()
    obs["listed_after_delete"] = topic in admin.list_topics()
    _, obs["delete_again"] = attempt(lambda: admin.delete_topics([topic]))
    admin.close()
    summary(**obs)


if __name__ == "__main__":
    main()

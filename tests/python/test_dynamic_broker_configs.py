"""Dynamic broker configs through confluent-kafka's incremental_alter_configs: the cluster-wide
default (broker resource "", sent raw: the client libraries refuse an empty broker name) and
one broker's value (resource "1", confluent-kafka), reported by DescribeConfigs
with Kafka's sources (DYNAMIC_DEFAULT_BROKER_CONFIG, DYNAMIC_BROKER_CONFIG) and as writable, a
static setting refused — and the changes really apply without a restart:

- `log.message.timestamp.type=LogAppendTime` (cluster-wide): the broker stamps records with its
  append time; deleting the value brings the producer's CreateTime back;
- `connections.max.idle.ms` (this broker): a connection opened after the change is closed once
  idle that long, one opened before keeps the old limit.
"""

import socket
import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, KafkaException, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   ResourceType)

from helpers import admin, consumer, create_topic, producer, topic_name, wait_until


def alter(bootstrap, name, key, value, op=AlterConfigOpType.SET):
    if name == "":
        return alter_default(bootstrap, key, value, op)
    a = admin(bootstrap)
    res = ConfigResource(ResourceType.BROKER, name,
                         incremental_configs=[ConfigEntry(key, value, incremental_operation=op)])
    a.incremental_alter_configs([res])[res].result(timeout=30)


def alter_default(bootstrap, key, value, op):
    """The cluster-wide default (resource ""), as `kafka-configs --entity-default` sends it:
    confluent-kafka and kafka-python's admin clients refuse an empty broker name, so this is
    a raw IncrementalAlterConfigs v0 (kafka-python's protocol object)."""
    from kafka.protocol.admin import IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse

    from helpers import raw_request

    req = IncrementalAlterConfigsRequest(
        resources=[(4, "", [(key, int(op.value), value)])], validate_only=False)
    resp = raw_request(bootstrap, req, IncrementalAlterConfigsResponse, 0).to_dict()
    assert [r["error_code"] for r in resp["responses"]] == [0], resp


def broker_config(bootstrap, key):
    a = admin(bootstrap)
    res = ConfigResource(ResourceType.BROKER, "1")
    return a.describe_configs([res])[res].result(timeout=30)[key]


def produce_one(bootstrap, topic, ts):
    p = producer(bootstrap)
    p.produce(topic, value=b"v", timestamp=ts)
    assert p.flush(30) == 0


def last_timestamp(bootstrap, topic, count):
    c = consumer(bootstrap)
    c.assign([TopicPartition(topic, 0, 0)])
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only {len(seen)} records read"
        m = c.poll(0.5)
        if m is not None and not m.error():
            seen.append(m.timestamp())
    c.close()
    return seen[-1]


OLD_TS = 1_000_000_000_000  # 2001-09-09


def test_cluster_wide_timestamp_type_applies_and_is_described(bootstrap):
    topic = topic_name("dyn-ts")
    create_topic(bootstrap, topic, 1)
    before = broker_config(bootstrap, "log.message.timestamp.type")
    assert before.value == "CreateTime" and not before.is_read_only

    alter(bootstrap, "", "log.message.timestamp.type", "LogAppendTime")
    entry = broker_config(bootstrap, "log.message.timestamp.type")
    assert entry.value == "LogAppendTime", entry
    assert entry.source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value, entry.source
    assert not entry.is_read_only
    started = time.time() * 1000
    produce_one(bootstrap, topic, OLD_TS)
    kind, ts = last_timestamp(bootstrap, topic, 1)
    assert kind == TIMESTAMP_LOG_APPEND_TIME and ts >= started - 5000, (kind, ts)

    alter(bootstrap, "", "log.message.timestamp.type", None, AlterConfigOpType.DELETE)
    assert broker_config(bootstrap, "log.message.timestamp.type").value == "CreateTime"
    produce_one(bootstrap, topic, OLD_TS)
    assert last_timestamp(bootstrap, topic, 2) == (TIMESTAMP_CREATE_TIME, OLD_TS)


def _closed(s):
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_per_broker_idle_timeout_applies_to_new_connections(bootstrap):
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    old = socket.create_connection((host, int(port)), timeout=5)
    old.setblocking(False)
    try:
        alter(bootstrap, "1", "connections.max.idle.ms", "1500")
        entry = broker_config(bootstrap, "connections.max.idle.ms")
        assert entry.value == "1500" and not entry.is_read_only
        assert entry.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value, entry.source
        opened = time.monotonic()
        new = socket.create_connection((host, int(port)), timeout=5)
        new.setblocking(False)
        try:
            wait_until(lambda: _closed(new), timeout=30, interval=0.1,
                       what="the idle connection closed by the broker")
            idle_for = time.monotonic() - opened
            assert idle_for >= 1.0, f"closed after {idle_for:.2f} s, before the idle limit"
            assert not _closed(old), "a connection opened before the change was closed"
        finally:
            new.close()
    finally:
        old.close()
        alter(bootstrap, "1", "connections.max.idle.ms", None, AlterConfigOpType.DELETE)
    assert broker_config(bootstrap, "connections.max.idle.ms").value == "600000"


def test_static_settings_are_refused(bootstrap):
    with pytest.raises(KafkaException) as e:
        alter(bootstrap, "1", "num.partitions", "7")
    assert e.value.args[0].code() in (40, 42), e.value  # INVALID_CONFIG / INVALID_REQUEST
    entry = broker_config(bootstrap, "num.partitions")
    assert entry.is_read_only and entry.value != "7"

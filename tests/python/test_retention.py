"""Retention, compaction, DeleteRecords and topic/broker configs on one broker, driven by
confluent-kafka and kafka-python: time and size retention (with sled's on-disk size before and
after), compaction results, DeleteRecords and consumers reset from below the log start,
DescribeConfigs / IncrementalAlterConfigs / AlterConfigs round trips and their errors, and
max.message.bytes."""

import os
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import ConfigResourceType as KConfigResourceType
from kafka.admin import KafkaAdminClient
from kafka.structs import TopicPartition as KTopicPartition

from helpers import (
    admin,
    consume_to_end,
    consumer,
    create_topic,
    produce_all,
    producer,
    topic_name,
    wait_until,
)

# The cleaner runs every 200 ms so retention and compaction show up quickly.
# 512 KiB sled segments (sled's default; new data directories get 16 MiB): sled gives space
# back to the file system in whole segments at the file's end, so the space-release checks
# below, with a few MB of data, need small segments.
BROKER_ENV = {"RAFTKA_LOG_RETENTION_CHECK_INTERVAL_MS": "200", "RAFTKA_SLED_SEGMENT_BYTES": "524288"}

TOPIC_CONFIG = 1
DYNAMIC_BROKER_CONFIG = 2
DYNAMIC_DEFAULT_BROKER_CONFIG = 3
DEFAULT_CONFIG = 5


def src(entry):
    return int(getattr(entry.source, "value", entry.source))


def watermarks(bootstrap, topic, partition=0):
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def data_dir_bytes(cluster, broker_id=1):
    """Bytes the broker's sled database occupies on disk (allocated blocks, like du)."""
    root = cluster.run_dir / f"broker-{broker_id}" / "data"
    return sum(p.stat().st_blocks * 512 for p in root.rglob("*") if p.is_file())


def describe(bootstrap, res):
    a = admin(bootstrap)  # keep the client alive until the future completes
    return a.describe_configs([res])[res].result(timeout=20)


def incremental(bootstrap, res, entries):
    """IncrementalAlterConfigs of one resource; returns the future's exception or None."""
    r = ConfigResource(res.restype, res.name, incremental_configs=entries)
    a = admin(bootstrap)
    try:
        a.incremental_alter_configs([r])[r].result(timeout=20)
        return None
    except KafkaException as e:
        return e.args[0]


def entry(name, value, op=AlterConfigOpType.SET):
    return ConfigEntry(name, value, incremental_operation=op)


# ---------------------------------------------------------------------------------------------
# retention


def test_time_retention_deletes_expired_batches(bootstrap):
    t = create_topic(bootstrap, topic_name("rtime"), 1, config={"retention.ms": "600000"})
    p = producer(bootstrap)
    old = int(time.time() * 1000) - 3_600_000  # an hour old: beyond retention.ms (10 min)
    produce_all(p, t, [{"value": f"old-{i}".encode(), "timestamp": old} for i in range(20)])
    produce_all(p, t, [{"value": f"new-{i}".encode()} for i in range(5)])
    wait_until(lambda: watermarks(bootstrap, t) == (20, 25), what="log start offset 20")
    got = consume_to_end(bootstrap, t, [0], **{"auto.offset.reset": "earliest"})[0]
    assert [m.value() for m in got] == [f"new-{i}".encode() for i in range(5)]
    assert got[0].offset() == 20


def test_size_retention_keeps_retention_bytes_and_frees_disk_space(cluster, bootstrap):
    t = create_topic(bootstrap, topic_name("rsize"), 1)
    p = producer(bootstrap, **{"linger.ms": 50, "compression.type": "none"})
    value = os.urandom(1000)
    # 40 produce rounds of 200 KiB each: 8 MB in batches of up to 200 records.
    for r in range(40):
        produce_all(p, t, [{"value": value, "key": f"{r}-{i}".encode()} for i in range(200)])
    assert watermarks(bootstrap, t) == (0, 8000)
    # sled writes its buffers out every log.flush.interval.ms: wait until the data is on disk.
    before = wait_until(lambda: (lambda b: b if b >= 8_000_000 else None)(data_dir_bytes(cluster)), what="data on disk")
    limit = 1_000_000
    assert incremental(bootstrap, ConfigResource("topic", t), [entry("retention.bytes", str(limit))]) is None
    low = wait_until(lambda: watermarks(bootstrap, t)[0], what="size retention")
    # At least retention.bytes is kept (whole batches), and less than one more batch.
    kept_records = 8000 - low
    assert 1000 <= kept_records <= 1200, kept_records
    got = consume_to_end(bootstrap, t, [0], **{"auto.offset.reset": "earliest"})[0]
    assert len(got) == kept_records
    assert got[0].offset() == low
    # The disk space is given back: sled's files shrink (see LogStore::release_space).
    after = wait_until(
        lambda: (lambda a: a if a < before / 2 else None)(data_dir_bytes(cluster)),
        timeout=30,
        what=f"the data directory to shrink below half of {before} bytes",
    )
    print(f"\nsled data dir on disk: {before} bytes before retention, {after} bytes after "
          f"(log start {low}, {kept_records} of 8000 records kept)")


# ---------------------------------------------------------------------------------------------
# DeleteRecords and consumers below the log start


def test_delete_records_moves_the_log_start(bootstrap):
    t = create_topic(bootstrap, topic_name("delrec"), 1)
    produce_all(producer(bootstrap), t, [{"value": str(i).encode()} for i in range(10)])
    a = admin(bootstrap)
    res = a.delete_records([TopicPartition(t, 0, 6)])
    [(tp, fut)] = list(res.items())
    assert fut.result(timeout=20).low_watermark == 6
    assert watermarks(bootstrap, t) == (6, 10)
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE.
    with pytest.raises(KafkaException) as e:
        list(a.delete_records([TopicPartition(t, 0, 11)]).values())[0].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    # kafka-python: offset -1 = the high watermark.
    k = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        k.delete_records({KTopicPartition(t, 0): -1})
    finally:
        k.close()
    assert watermarks(bootstrap, t) == (10, 10)


def test_consumer_below_the_log_start_is_reset_not_stuck(bootstrap):
    t = create_topic(bootstrap, topic_name("reset"), 1)
    produce_all(producer(bootstrap), t, [{"value": str(i).encode()} for i in range(10)])
    group = f"g-{uuid.uuid4().hex[:8]}"
    # The group committed offset 2, then records up to 7 are deleted.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(t, 0, 2)], asynchronous=False)
    c.close()
    a = admin(bootstrap)
    list(a.delete_records([TopicPartition(t, 0, 7)]).values())[0].result(timeout=20)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        c.subscribe([t])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.offset())
        assert got == [7, 8, 9]
    finally:
        c.close()
    # With auto.offset.reset=error the consumer is told, instead of silently waiting.
    c = consumer(bootstrap)
    try:
        c.assign([TopicPartition(t, 0, 3)])
        err = wait_until(lambda: (lambda m: m.error() if m is not None and m.error() else None)(c.poll(0.5)))
        assert err.code() == KafkaError._AUTO_OFFSET_RESET, err
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# compaction


def test_compaction_keeps_the_latest_value_per_key(bootstrap):
    for retention, expect_tombstone in (("0", False), ("86400000", True)):
        t = create_topic(
            bootstrap,
            topic_name("compact"),
            1,
            config={"cleanup.policy": "compact", "delete.retention.ms": retention},
        )
        p = producer(bootstrap)
        produce_all(p, t, [{"key": f"k{i}".encode(), "value": b"v1"} for i in range(5)])
        produce_all(p, t, [{"key": f"k{i}".encode(), "value": b"v2"} for i in range(3)])
        produce_all(p, t, [{"key": b"k3", "value": None}])
        produce_all(p, t, [{"key": b"k0", "value": b"v3"}])  # last record: never removed

        expected = {(b"k1", b"v2", 6), (b"k2", b"v2", 7), (b"k4", b"v1", 4), (b"k0", b"v3", 9)}
        if expect_tombstone:
            expected.add((b"k3", None, 8))

        def compacted():
            got = consume_to_end(bootstrap, t, [0], **{"auto.offset.reset": "earliest"})[0]
            view = {(m.key(), m.value(), m.offset()) for m in got}
            return view if view == expected else None

        wait_until(compacted, timeout=30, interval=0.3, what=f"compacted log (delete.retention.ms={retention})")
        # Offsets are kept: the log end did not move.
        assert watermarks(bootstrap, t) == (0, 10)


# ---------------------------------------------------------------------------------------------
# configs


def test_incremental_alter_configs_round_trip(bootstrap):
    t = create_topic(bootstrap, topic_name("ialter"), 1)
    res = ConfigResource("topic", t)
    assert incremental(bootstrap, res, [entry("retention.ms", "123456"), entry("cleanup.policy", "compact", AlterConfigOpType.APPEND)]) is None
    e = describe(bootstrap, res)
    assert (e["retention.ms"].value, src(e["retention.ms"])) == ("123456", TOPIC_CONFIG)
    assert e["cleanup.policy"].value == "delete,compact"
    # Synonyms: the override first, then the broker-level default behind it.
    syn = [(s.name, src(s)) for s in e["retention.ms"].synonyms.values()]
    assert syn[0] == ("retention.ms", TOPIC_CONFIG)
    assert ("log.retention.hours", DEFAULT_CONFIG) in syn
    assert incremental(bootstrap, res, [entry("cleanup.policy", "delete", AlterConfigOpType.SUBTRACT)]) is None
    assert describe(bootstrap, res)["cleanup.policy"].value == "compact"
    assert incremental(bootstrap, res, [entry("retention.ms", None, AlterConfigOpType.DELETE)]) is None
    e = describe(bootstrap, res)
    assert (e["retention.ms"].value, src(e["retention.ms"])) == ("604800000", DEFAULT_CONFIG)
    assert e["cleanup.policy"].value == "compact"  # untouched by the other key's DELETE


@pytest.mark.parametrize(
    "key,value,op,words",
    [
        ("retention.ms", "soon", AlterConfigOpType.SET, ["retention.ms", "integer"]),
        ("retention.bytes", "-7", AlterConfigOpType.SET, ["retention.bytes", "at least -1"]),
        ("cleanup.policy", "shred", AlterConfigOpType.SET, ["cleanup.policy", "delete"]),
        ("segment.bytes", "13", AlterConfigOpType.SET, ["segment.bytes", "at least 14"]),
        ("no.such.config", "1", AlterConfigOpType.SET, ["no.such.config", "unknown"]),
        ("compression.type", "gzip", AlterConfigOpType.SET, ["compression.type", "producer"]),
        ("retention.ms", "5", AlterConfigOpType.APPEND, ["retention.ms", "list"]),
    ],
)
def test_invalid_configs_are_refused_with_the_key_and_reason(bootstrap, key, value, op, words):
    t = create_topic(bootstrap, topic_name("badalter"), 1)
    res = ConfigResource("topic", t)
    err = incremental(bootstrap, res, [entry(key, value, op)])
    assert err is not None and err.code() == KafkaError.INVALID_CONFIG, err
    for w in words:
        assert w in err.str(), err.str()
    # Nothing changed.
    if key != "no.such.config":
        assert src(describe(bootstrap, res)[key]) == DEFAULT_CONFIG


def test_alter_configs_replaces_every_override(bootstrap):
    t = create_topic(bootstrap, topic_name("alter"), 1, config={"retention.ms": "1000000"})
    a = admin(bootstrap)
    res = ConfigResource("topic", t, set_config={"retention.bytes": "5000000"})
    a.alter_configs([res])[res].result(timeout=20)
    e = describe(bootstrap, ConfigResource("topic", t))
    assert (e["retention.bytes"].value, src(e["retention.bytes"])) == ("5000000", TOPIC_CONFIG)
    assert src(e["retention.ms"]) == DEFAULT_CONFIG
    # kafka-python's AlterConfigs, and an invalid value through it (kafka-python 3 reports
    # per-resource errors as strings).
    k = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        k.alter_configs([KConfigResource(KConfigResourceType.TOPIC, t, configs={"max.message.bytes": "2000"})])
        assert describe(bootstrap, ConfigResource("topic", t))["max.message.bytes"].value == "2000"
        r = k.alter_configs([KConfigResource(KConfigResourceType.TOPIC, t, configs={"max.message.bytes": "big"})])
        assert "Error 40" in str(r) and "max.message.bytes" in str(r), r
    finally:
        k.close()
    assert describe(bootstrap, ConfigResource("topic", t))["max.message.bytes"].value == "2000"


def cluster_default_alter(cluster, key, op, value):
    """IncrementalAlterConfigs of the cluster-wide broker default (resource name ""), sent raw:
    confluent-kafka and kafka-python both refuse an empty broker resource name."""
    from kafka.protocol.admin import IncrementalAlterConfigsRequest as R

    cfg = R.AlterConfigsResource.AlterableConfig(name=key, config_operation=op, value=value)
    req = R(resources=[R.AlterConfigsResource(resource_type=4, resource_name="", configs=[cfg])], validate_only=False)
    resp = cluster.request(1, req, 1)
    [r] = resp.responses
    return r.error_code


def test_dynamic_broker_configs_become_topic_defaults(cluster, bootstrap):
    t = create_topic(bootstrap, topic_name("dyn"), 1)
    me = ConfigResource("broker", "1")
    try:
        assert cluster_default_alter(cluster, "log.retention.ms", 0, "7200000") == 0
        e = describe(bootstrap, ConfigResource("topic", t))["retention.ms"]
        assert (e.value, src(e)) == ("7200000", DYNAMIC_DEFAULT_BROKER_CONFIG)
        assert incremental(bootstrap, me, [entry("log.retention.ms", "3600000")]) is None
        e = describe(bootstrap, ConfigResource("topic", t))["retention.ms"]
        assert (e.value, src(e)) == ("3600000", DYNAMIC_BROKER_CONFIG)
        b = describe(bootstrap, me)["log.retention.ms"]
        assert (b.value, src(b), b.is_read_only) == ("3600000", DYNAMIC_BROKER_CONFIG, False)
        assert describe(bootstrap, me)["num.partitions"].is_read_only
        # Settings that are not dynamic are refused, naming the key.
        err = incremental(bootstrap, me, [entry("num.partitions", "9")])
        assert err.code() == KafkaError.INVALID_CONFIG and "num.partitions" in err.str()
        assert cluster_default_alter(cluster, "log.dirs", 0, "/tmp") == KafkaError.INVALID_CONFIG
    finally:
        incremental(bootstrap, me, [entry("log.retention.ms", None, AlterConfigOpType.DELETE)])
        cluster_default_alter(cluster, "log.retention.ms", 1, None)
    e = describe(bootstrap, ConfigResource("topic", t))["retention.ms"]
    assert (e.value, src(e)) == ("604800000", DEFAULT_CONFIG)


def test_max_message_bytes_is_enforced(bootstrap):
    t = create_topic(bootstrap, topic_name("maxmsg"), 1)
    assert incremental(bootstrap, ConfigResource("topic", t), [entry("max.message.bytes", "2000")]) is None
    p = producer(bootstrap, **{"compression.type": "none"})
    with pytest.raises(AssertionError) as e:
        produce_all(p, t, [{"value": b"x" * 5000}])
    assert "MSG_SIZE_TOO_LARGE" in str(e.value), str(e.value)
    produce_all(p, t, [{"value": b"x" * 500}])


def test_compacted_topics_refuse_records_without_a_key(bootstrap):
    t = create_topic(bootstrap, topic_name("nokey"), 1, config={"cleanup.policy": "compact"})
    p = producer(bootstrap, **{"message.send.max.retries": 0})
    with pytest.raises(AssertionError) as e:
        produce_all(p, t, [{"value": b"no key"}])
    assert "INVALID_RECORD" in str(e.value), str(e.value)
    produce_all(p, t, [{"key": b"k", "value": b"with key"}])


# Configs Kafka Streams / Connect put on their internal topics (repartition, changelog).
STREAMS_CONFIGS = {
    "cleanup.policy": "compact,delete",
    "segment.bytes": "52428800",
    "segment.ms": "600000",
    "min.compaction.lag.ms": "0",
    "max.compaction.lag.ms": "86400000",
    "min.cleanable.dirty.ratio": "0.1",
    "message.timestamp.type": "CreateTime",
    "index.interval.bytes": "4096",
    "preallocate": "false",
    "file.delete.delay.ms": "60000",
    "message.downconversion.enable": "false",
    "local.retention.ms": "-2",
}


def test_every_kafka_topic_config_is_accepted_with_kafkas_validation(bootstrap):
    t = create_topic(bootstrap, topic_name("streams"), 1, config=STREAMS_CONFIGS)
    e = describe(bootstrap, ConfigResource("topic", t))
    for k, v in STREAMS_CONFIGS.items():
        assert (e[k].value, src(e[k])) == (v, TOPIC_CONFIG), (k, e[k])
    # Defaults are listed too, with Kafka's broker synonyms.
    assert (e["segment.jitter.ms"].value, src(e["segment.jitter.ms"])) == ("0", DEFAULT_CONFIG)
    assert "log.segment.bytes" in [s.name for s in e["segment.bytes"].synonyms.values()]
    # IncrementalAlterConfigs with Kafka's range checks.
    res = ConfigResource("topic", t)
    assert incremental(bootstrap, res, [entry("min.cleanable.dirty.ratio", "0.75")]) is None
    assert describe(bootstrap, res)["min.cleanable.dirty.ratio"].value == "0.75"
    err = incremental(bootstrap, res, [entry("min.cleanable.dirty.ratio", "1.5")])
    assert err is not None and err.code() == KafkaError.INVALID_CONFIG and "between 0 and 1" in err.str()
    # kafka-python's CreateTopics with the same configs.
    from kafka.admin import NewTopic as KNewTopic

    k = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        name = topic_name("kstreams")
        k.create_topics([KNewTopic(name, 1, 1, topic_configs={"segment.bytes": "1048576",
                                                               "segment.index.bytes": "1024"})])
        assert describe(bootstrap, ConfigResource("topic", name))["segment.bytes"].value == "1048576"
    finally:
        k.close()

"""Behaviour Kafka clients rely on beyond the happy path: out-of-range fetch offsets, fetch
long-polling, fetch size limits smaller than a batch, Metadata without auto creation,
CreateTopics validate_only / replication factor checks, DescribeConfigs errors."""

import os
import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic
from kafka import KafkaConsumer

from helpers import admin, consume_to_end, consumer, create_topic, list_topic_names, produce_all, producer, topic_name, wait_until


def first_message_or_error(c, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is not None:
            return msg
    raise AssertionError("no message or error within timeout")


def test_fetch_out_of_range_offset(bootstrap):
    topic = create_topic(bootstrap, topic_name("oor"), 1)
    produce_all(producer(bootstrap), topic, [{"value": f"{i}".encode(), "partition": 0} for i in range(10)])
    # auto.offset.reset=error: the OFFSET_OUT_OF_RANGE from Fetch reaches the application
    c = consumer(bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 1000)])
        msg = first_message_or_error(c)
        assert msg.error() is not None, f"got a record at offset {msg.offset()} past the end"
        assert msg.error().code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE), msg.error()
    finally:
        c.close()
    # auto.offset.reset=earliest: the client resets (ListOffsets) and reads from 0
    c = consumer(bootstrap, **{"auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, 1000)])
        msg = first_message_or_error(c)
        assert msg.error() is None and msg.offset() == 0 and msg.value() == b"0"
    finally:
        c.close()


def test_fetch_long_poll_returns_when_data_arrives(bootstrap):
    """With fetch.wait.max.ms=8000 on an empty partition, a record produced meanwhile must be
    delivered well before the maximum wait."""
    topic = create_topic(bootstrap, topic_name("longpoll"), 1)
    c = consumer(bootstrap, **{"fetch.wait.max.ms": 8000, "fetch.min.bytes": 1})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        # let the consumer's first (empty, long-polling) fetch reach the broker
        assert c.poll(1.0) is None
        p = producer(bootstrap, **{"linger.ms": 0})
        t0 = time.monotonic()
        produce_all(p, topic, [{"value": b"wake", "partition": 0}])
        msg = first_message_or_error(c, timeout=15)
        elapsed = time.monotonic() - t0
        assert msg.error() is None and msg.value() == b"wake"
        assert elapsed < 3.0, f"record arrived after {elapsed:.1f}s: the fetch waited out fetch.wait.max.ms"
    finally:
        c.close()


def test_small_fetch_limits_still_return_a_large_batch(bootstrap):
    """Fetch size limits are soft for the first batch (KIP-74): a 300 kB record is returned
    even when max.partition.fetch.bytes and fetch.max.bytes are 64 kB."""
    topic = create_topic(bootstrap, topic_name("smallfetch"), 1)
    values = [os.urandom(300_000), os.urandom(300_000), b"tail"]
    produce_all(producer(bootstrap, **{"linger.ms": 0}), topic, [{"value": v, "partition": 0} for v in values])
    got = consume_to_end(bootstrap, topic, [0], **{"max.partition.fetch.bytes": 65536, "fetch.max.bytes": 65536, "message.max.bytes": 65536})[0]
    assert [m.value() for m in got] == values


def test_consumer_metadata_does_not_create_topics(bootstrap):
    """librdkafka consumers send Metadata with allow_auto_topic_creation=false
    (allow.auto.create.topics defaults to false): the topic must stay unknown."""
    topic = topic_name("nocreate")
    c = consumer(bootstrap)
    try:
        md = c.list_topics(topic=topic, timeout=10)
        assert md.topics[topic].error is not None
        assert md.topics[topic].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        c.close()
    assert topic not in list_topic_names(bootstrap)


def test_kafka_python_consumer_does_not_create_topics(bootstrap):
    topic = topic_name("kpnocreate")
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, allow_auto_create_topics=False)
    try:
        assert not c.partitions_for_topic(topic)  # None or an empty set
    finally:
        c.close()
    assert topic not in list_topic_names(bootstrap)


def test_create_topics_validate_only(bootstrap):
    name = topic_name("validate")
    a = admin(bootstrap)
    a.create_topics([NewTopic(name, 3, 1)], validate_only=True, operation_timeout=10)[name].result(timeout=20)
    assert name not in list_topic_names(bootstrap)
    with pytest.raises(KafkaException) as ei:
        a.create_topics([NewTopic("bad name!", 3, 1)], validate_only=True)["bad name!"].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.TOPIC_EXCEPTION


def test_replication_factor_above_broker_count(bootstrap):
    name = topic_name("rf3")
    a = admin(bootstrap)
    with pytest.raises(KafkaException) as ei:
        a.create_topics([NewTopic(name, 1, 3)], operation_timeout=10)[name].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR  # 38
    assert name not in list_topic_names(bootstrap)


def test_describe_configs_unknown_topic(bootstrap):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name("nocfg"))
    a = admin(bootstrap)
    with pytest.raises(KafkaException) as ei:
        a.describe_configs([res])[res].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_concurrent_producers_one_partition(bootstrap):
    """Several producers appending to one partition at once: no record lost or duplicated,
    offsets dense, each producer's records in its own order."""
    topic = create_topic(bootstrap, topic_name("concurrent"), 1)
    n_producers, per = 4, 500
    results = {}

    def run(k):
        recs = [{"value": f"p{k}-{i}".encode(), "partition": 0} for i in range(per)]
        results[k] = produce_all(producer(bootstrap, **{"linger.ms": 1, "compression.type": ["none", "gzip", "lz4", "zstd"][k]}), topic, recs)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n_producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == n_producers
    got = consume_to_end(bootstrap, topic, [0])[0]
    assert [m.offset() for m in got] == list(range(n_producers * per))
    values = [m.value().decode() for m in got]
    assert len(set(values)) == len(values)
    for k in range(n_producers):
        mine = [v for v in values if v.startswith(f"p{k}-")]
        assert mine == [f"p{k}-{i}" for i in range(per)]
    all_offsets = sorted(o for r in results.values() for _, o in r)
    assert all_offsets == list(range(n_producers * per))


def test_many_topics_in_one_request(bootstrap):
    names = [topic_name(f"bulk{i}") for i in range(60)]
    a = admin(bootstrap)
    futs = a.create_topics([NewTopic(n, 2, 1) for n in names], operation_timeout=20)
    for n, f in futs.items():
        f.result(timeout=30)
    md = a.list_topics(timeout=10)
    assert set(names) <= set(md.topics)
    assert all(len(md.topics[n].partitions) == 2 for n in names)
    futs = a.delete_topics(names, operation_timeout=20)
    for f in futs.values():
        f.result(timeout=30)
    assert not set(names) & list_topic_names(bootstrap)


def test_fetch_from_deleted_topic_is_unknown_topic(bootstrap):
    """Fetching a partition of a topic deleted meanwhile is answered with
    UNKNOWN_TOPIC_OR_PARTITION (Fetch by name, v12 and older) or UNKNOWN_TOPIC_ID (v13+, by
    topic id, which librdkafka uses against a broker advertising it), not records or an empty
    answer. librdkafka does not raise this to an assign()ing application (it backs off and
    refreshes metadata), so the test reads the Fetch error from librdkafka's fetch debug log."""
    import logging

    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    log = logging.getLogger(f"rdkafka-{topic_name('log')}")
    log.setLevel(logging.DEBUG)
    log.addHandler(Collect())
    log.propagate = False

    topic = create_topic(bootstrap, topic_name("gone"), 1)
    produce_all(producer(bootstrap), topic, [{"value": b"x", "partition": 0}])
    c = consumer(bootstrap, **{"debug": "fetch", "logger": log})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        msg = first_message_or_error(c)
        assert msg.error() is None and msg.value() == b"x"
        a = admin(bootstrap)
        a.delete_topics([topic], operation_timeout=10)[topic].result(timeout=20)

        def fetch_error_seen():
            m = c.poll(0.1)
            assert m is None or m.error() is not None, f"record {m.offset()} from a deleted topic"
            return any("Fetch failed" in ln and topic in ln
                       and ("UNKNOWN_TOPIC_OR_PART" in ln or "UNKNOWN_TOPIC_ID" in ln) for ln in lines)

        wait_until(fetch_error_seen, timeout=15,
                   what="a Fetch answered with UNKNOWN_TOPIC_OR_PARTITION or UNKNOWN_TOPIC_ID")
    finally:
        c.close()


def test_clients_cannot_produce_to_the_offsets_topic(bootstrap):
    # Kafka refuses appends to internal topics from clients (INVALID_TOPIC_EXCEPTION); only the
    # group coordinator writes __consumer_offsets.
    p = producer(bootstrap, **{"message.timeout.ms": 20000})
    errors = []
    p.produce("__consumer_offsets", value=b"forged", partition=0,
              on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert len(errors) == 1 and errors[0] is not None, errors
    assert errors[0].code() == KafkaError.TOPIC_EXCEPTION, errors[0]

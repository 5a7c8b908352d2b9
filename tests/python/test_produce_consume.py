"""Produce and Fetch round trips with confluent-kafka (librdkafka) and kafka-python: keys,
headers, timestamps, every compression codec, acks levels, the idempotent producer and a
64-partition topic."""

import collections
import time

import pytest
from confluent_kafka import TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition

from helpers import (
    CODECS,
    consume_to_end,
    create_topic,
    headers_of,
    produce_all,
    producer,
    topic_name,
)


def sample_records(n, partition=0, base_ts=None):
    """Records exercising keys (incl. none), values (incl. empty, none, binary), repeated and
    binary headers and explicit create timestamps."""
    base_ts = base_ts or (int(time.time() * 1000) - 60_000)
    out = []
    for i in range(n):
        key = None if i % 7 == 3 else b"" if i % 13 == 2 else f"key-{i % 5}".encode()
        if i % 11 == 5:
            value = None  # tombstone
        elif i % 11 == 6:
            value = b""
        else:
            value = (f"value-{i}-".encode() + bytes(range(256)) * (i % 4)) * (1 + i % 3)
        if key is None and value is None:
            key = b"tombstone-key"  # a record needs a key or a value
        headers = [] if i % 4 == 0 else [("h1", f"v{i}".encode()), ("bin", bytes([0, 255, i % 256])), ("h1", b"again")]
        out.append({"key": key, "value": value, "headers": headers, "partition": partition, "timestamp": base_ts + i})
    return out


def assert_round_trip(sent, msgs, first_offset=0):
    assert len(msgs) == len(sent), f"sent {len(sent)} records, read {len(msgs)}"
    for i, (r, m) in enumerate(zip(sent, msgs)):
        assert m.offset() == first_offset + i
        assert m.key() == r["key"], f"record {i}: key"
        assert m.value() == r["value"], f"record {i}: value"
        assert headers_of(m) == [(k, v) for k, v in r["headers"]], f"record {i}: headers"
        ts_type, ts = m.timestamp()
        assert ts == r["timestamp"], f"record {i}: timestamp"
        assert ts_type == 1  # CreateTime


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_round_trip(bootstrap, codec):
    topic = create_topic(bootstrap, topic_name(f"rt-{codec}"), 1)
    sent = sample_records(200)
    p = producer(bootstrap, **{"compression.type": codec, "linger.ms": 20, "batch.num.messages": 64})
    delivered = produce_all(p, topic, sent)
    assert delivered == [(0, i) for i in range(len(sent))]
    got = consume_to_end(bootstrap, topic, [0])[0]
    assert_round_trip(sent, got)


def test_confluent_appends_continue_offsets(bootstrap):
    topic = create_topic(bootstrap, topic_name("append"), 1)
    first = sample_records(30)
    produce_all(producer(bootstrap, **{"compression.type": "lz4"}), topic, first)
    second = sample_records(30)
    delivered = produce_all(producer(bootstrap, **{"compression.type": "zstd"}), topic, second)
    assert [o for _, o in delivered] == list(range(30, 60))
    got = consume_to_end(bootstrap, topic, [0])[0]
    assert_round_trip(first + second, got)


def test_fetch_from_middle_offset(bootstrap):
    """A fetch starting inside a batch must still start at the requested offset."""
    topic = create_topic(bootstrap, topic_name("mid"), 1)
    sent = sample_records(100)
    produce_all(producer(bootstrap, **{"linger.ms": 50, "batch.num.messages": 100, "compression.type": "gzip"}), topic, sent)
    from helpers import consumer

    c = consumer(bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 37)])
        msg = None
        deadline = time.monotonic() + 20
        while msg is None or msg.error():
            assert time.monotonic() < deadline, "no record fetched"
            msg = c.poll(0.2)
        assert msg.offset() == 37
        assert msg.value() == sent[37]["value"]
    finally:
        c.close()


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks_levels(bootstrap, acks):
    topic = create_topic(bootstrap, topic_name(f"acks{acks}"), 2)
    sent = [{"key": f"k{i}".encode(), "value": f"acks-{acks}-{i}".encode(), "partition": i % 2} for i in range(100)]
    delivered = produce_all(producer(bootstrap, acks=acks), topic, sent)
    if acks != "0":
        # with acks the broker reports each record's offset
        assert sorted(delivered) == sorted([(p, o) for p in (0, 1) for o in range(50)])
    got = consume_to_end(bootstrap, topic, [0, 1])
    for part in (0, 1):
        expected = [r["value"] for r in sent if r["partition"] == part]
        assert [m.value() for m in got[part]] == expected
        assert [m.offset() for m in got[part]] == list(range(50))


def test_idempotent_producer_exactly_once_in_order(bootstrap):
    partitions = 4
    topic = create_topic(bootstrap, topic_name("idem"), partitions)
    p = producer(
        bootstrap,
        **{
            "enable.idempotence": True,
            "acks": "all",
            "max.in.flight.requests.per.connection": 5,
            "linger.ms": 1,
            "batch.num.messages": 25,
        },
    )
    sent = [{"key": f"k{i % 13}".encode(), "value": f"idem-{i}".encode(), "partition": i % partitions} for i in range(4000)]
    delivered = produce_all(p, topic, sent, timeout=60)
    got = consume_to_end(bootstrap, topic, list(range(partitions)))
    for part in range(partitions):
        expected = [r["value"] for r in sent if r["partition"] == part]
        values = [m.value() for m in got[part]]
        assert len(values) == len(set(values)), f"partition {part}: duplicates"
        assert values == expected, f"partition {part}: order or content differs"
        assert [m.offset() for m in got[part]] == list(range(len(expected)))
    # every delivery report points at the record it delivered
    by_pos = {(m.partition(), m.offset()): m.value() for msgs in got.values() for m in msgs}
    for r, pos in zip(sent, delivered):
        assert by_pos[pos] == r["value"]


def test_many_partitions_keyed(bootstrap):
    partitions = 64
    topic = create_topic(bootstrap, topic_name("p64"), partitions)
    keys = [f"user-{k}".encode() for k in range(200)]
    sent = [{"key": keys[i % len(keys)], "value": f"{i}".encode()} for i in range(2000)]
    delivered = produce_all(producer(bootstrap, **{"linger.ms": 10}), topic, sent, timeout=60)
    key_partitions = collections.defaultdict(set)
    for r, (part, _) in zip(sent, delivered):
        key_partitions[r["key"]].add(part)
    assert all(len(ps) == 1 for ps in key_partitions.values()), "a key landed in several partitions"
    used = {next(iter(ps)) for ps in key_partitions.values()}
    assert len(used) > partitions // 2, f"only {len(used)} of {partitions} partitions used"

    got = consume_to_end(bootstrap, topic, list(range(partitions)), timeout=60)
    assert sum(len(v) for v in got.values()) == len(sent)
    for part, msgs in got.items():
        assert [m.offset() for m in msgs] == list(range(len(msgs)))
        for m in msgs:
            assert key_partitions[m.key()] == {part}
    # per key, records come back in produce order
    per_key = collections.defaultdict(list)
    for msgs in got.values():
        for m in msgs:
            per_key[m.key()].append(int(m.value()))
    for k, vals in per_key.items():
        assert vals == sorted(vals)
        assert vals == [int(r["value"]) for r in sent if r["key"] == k]


# ------------------------------------------------------------------------------------------------
# kafka-python


def kp_consume_all(bootstrap, topic, partition, count, timeout=20):
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    try:
        tp = KTopicPartition(topic, partition)
        c.assign([tp])
        c.seek_to_beginning(tp)
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            assert time.monotonic() < deadline, f"read {len(out)} of {count} records"
            for recs in c.poll(timeout_ms=200).values():
                out.extend(recs)
        return out
    finally:
        c.close()


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_round_trip(bootstrap, codec):
    topic = create_topic(bootstrap, topic_name(f"kp-{codec}"), 1)
    sent = sample_records(120)
    p = KafkaProducer(
        bootstrap_servers=bootstrap,
        compression_type=None if codec == "none" else codec,
        acks="all",
        linger_ms=20,
    )
    try:
        futures = [
            p.send(topic, key=r["key"], value=r["value"], headers=r["headers"], partition=0, timestamp_ms=r["timestamp"])
            for r in sent
        ]
        p.flush(timeout=20)
        offsets = [f.get(timeout=20).offset for f in futures]
    finally:
        p.close(timeout=5)
    assert offsets == list(range(len(sent)))

    got = kp_consume_all(bootstrap, topic, 0, len(sent))
    assert len(got) == len(sent)
    for i, (r, m) in enumerate(zip(sent, got)):
        assert m.offset == i
        assert m.key == r["key"]
        assert m.value == r["value"]
        assert list(m.headers) == r["headers"]
        assert m.timestamp == r["timestamp"]

    # and librdkafka reads what kafka-python wrote
    assert_round_trip(sent, consume_to_end(bootstrap, topic, [0])[0])


def test_kafka_python_reads_librdkafka_batches(bootstrap):
    topic = create_topic(bootstrap, topic_name("kpread"), 1)
    sent = sample_records(80)
    produce_all(producer(bootstrap, **{"compression.type": "gzip", "linger.ms": 20}), topic, sent)
    got = kp_consume_all(bootstrap, topic, 0, len(sent))
    assert [(m.offset, m.key, m.value, list(m.headers)) for m in got] == [
        (i, r["key"], r["value"], r["headers"]) for i, r in enumerate(sent)
    ]


def test_null_header_values_and_empty_keys(bootstrap):
    topic = create_topic(bootstrap, topic_name("nullhdr"), 1)
    sent = [
        {"key": b"", "value": b"empty key", "headers": [("n", None), ("e", b"")], "partition": 0},
        {"key": None, "value": b"", "headers": [("", b"empty name")], "partition": 0},
    ]
    produce_all(producer(bootstrap), topic, sent)
    got = consume_to_end(bootstrap, topic, [0])[0]
    assert [(m.key(), m.value(), headers_of(m)) for m in got] == [
        (b"", b"empty key", [("n", None), ("e", b"")]),
        (None, b"", [("", b"empty name")]),
    ]

"""1 MiB records round trip; records over message.max.bytes (broker) or max.message.bytes
(topic) are rejected with MESSAGE_TOO_LARGE (10) and nothing is appended."""

import hashlib
import os

import pytest
from confluent_kafka import KafkaError
from kafka import KafkaProducer
import kafka.errors as kerr

from helpers import consume_to_end, create_topic, high_watermarks, produce_all, producer, topic_name

MIB = 1024 * 1024
BROKER_MAX = 2 * MIB + 4096
BROKER_ENV = {"RAFTKA_MESSAGE_MAX_BYTES": str(BROKER_MAX)}

BIG_CLIENT = {
    # large enough that librdkafka itself never refuses: any rejection must come from the broker
    "message.max.bytes": 16 * MIB,
    "linger.ms": 0,
}
BIG_CONSUMER = {
    "fetch.max.bytes": 16 * MIB,
    "max.partition.fetch.bytes": 8 * MIB,
    "receive.message.max.bytes": 32 * MIB,
}


def produce_one(p, topic, value):
    result = []
    p.produce(topic, value=value, partition=0, on_delivery=lambda err, msg: result.append((err, msg)))
    assert p.flush(30) == 0
    return result[0]


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_one_mib_records_round_trip(bootstrap, codec):
    topic = create_topic(bootstrap, topic_name(f"big-{codec}"), 1)
    values = [os.urandom(MIB) for _ in range(3)]
    produce_all(producer(bootstrap, **BIG_CLIENT, **{"compression.type": codec}), topic,
                [{"value": v, "key": str(i).encode(), "partition": 0} for i, v in enumerate(values)], timeout=60)
    got = consume_to_end(bootstrap, topic, [0], timeout=60, **BIG_CONSUMER)[0]
    assert [hashlib.sha256(m.value()).hexdigest() for m in got] == [hashlib.sha256(v).hexdigest() for v in values]
    assert [m.offset() for m in got] == [0, 1, 2]


def test_oversize_record_rejected_by_broker(bootstrap):
    topic = create_topic(bootstrap, topic_name("toobig"), 1)
    p = producer(bootstrap, **BIG_CLIENT, **{"message.send.max.retries": 0})
    err, _ = produce_one(p, topic, os.urandom(3 * MIB))
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE  # 10
    assert high_watermarks(bootstrap, topic, [0]) == {0: 0}
    # the broker keeps serving the partition
    err, msg = produce_one(p, topic, b"small")
    assert err is None and msg.offset() == 0


def test_topic_max_message_bytes_override(bootstrap):
    topic = create_topic(bootstrap, topic_name("topicmax"), 1, config={"max.message.bytes": "100000"})
    p = producer(bootstrap, **BIG_CLIENT, **{"message.send.max.retries": 0})
    err, _ = produce_one(p, topic, os.urandom(200_000))
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE
    err, msg = produce_one(p, topic, os.urandom(50_000))
    assert err is None and msg.offset() == 0
    # the same 200 kB record is fine where only the broker limit applies
    other = create_topic(bootstrap, topic_name("brokermax"), 1)
    err, _ = produce_one(p, other, os.urandom(200_000))
    assert err is None


def test_kafka_python_oversize_rejected_by_broker(bootstrap):
    topic = create_topic(bootstrap, topic_name("kptoobig"), 1)
    p = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 * MIB, retries=0)
    try:
        with pytest.raises(kerr.MessageSizeTooLargeError) as ei:
            p.send(topic, value=os.urandom(3 * MIB), partition=0).get(timeout=30)
        assert ei.value.errno == 10
        ok = p.send(topic, value=os.urandom(MIB), partition=0).get(timeout=30)
        assert ok.offset == 0
    finally:
        p.close(timeout=5)

"""ListOffsets: watermarks (earliest/latest) and offsets by timestamp, through confluent-kafka,
kafka-python and kcat -Q, on plain and compressed batches."""

import re
import time

import pytest
from confluent_kafka import OFFSET_END, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition

from helpers import consumer, create_topic, kcat, produce_all, producer, topic_name

N = 50
STEP = 1000  # ms between record timestamps


def produce_timed(bootstrap, topic, codec, base_ts):
    sent = [{"value": f"r{i}".encode(), "partition": 0, "timestamp": base_ts + i * STEP} for i in range(N)]
    # linger so that several records share a (compressed) batch: the broker must find the
    # exact record inside a batch
    produce_all(producer(bootstrap, **{"compression.type": codec, "linger.ms": 50, "batch.num.messages": 20}), topic, sent)
    return sent


@pytest.fixture(params=["none", "gzip"])
def timed_topic(request, bootstrap):
    topic = create_topic(bootstrap, topic_name(f"ts-{request.param}"), 2)
    base_ts = (int(time.time()) - 3600) * 1000
    produce_timed(bootstrap, topic, request.param, base_ts)
    return topic, base_ts


def test_watermarks_confluent(bootstrap, timed_topic):
    topic, _ = timed_topic
    c = consumer(bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, N)
        # empty partition
        assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=10) == (0, 0)
    finally:
        c.close()


def test_offsets_for_times_confluent(bootstrap, timed_topic):
    topic, base = timed_topic
    c = consumer(bootstrap)
    try:
        def lookup(ts):
            [tp] = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            assert tp.error is None, tp.error
            return tp.offset

        assert lookup(base - 5000) == 0  # before everything: the first record
        assert lookup(base) == 0
        assert lookup(base + 1) == 1  # first record with timestamp >= ts
        assert lookup(base + 17 * STEP) == 17
        assert lookup(base + 17 * STEP - 1) == 17
        assert lookup(base + (N - 1) * STEP) == N - 1
        assert lookup(base + N * STEP) in (-1, OFFSET_END)  # after everything: none
    finally:
        c.close()


def test_list_offsets_kafka_python(bootstrap, timed_topic):
    topic, base = timed_topic
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp = KTopicPartition(topic, 0)
        empty = KTopicPartition(topic, 1)
        assert c.beginning_offsets([tp, empty]) == {tp: 0, empty: 0}
        assert c.end_offsets([tp, empty]) == {tp: N, empty: 0}
        found = c.offsets_for_times({tp: base + 23 * STEP - 500})[tp]
        assert found.offset == 23
        assert found.timestamp == base + 23 * STEP
        assert c.offsets_for_times({tp: base + N * STEP})[tp] is None
    finally:
        c.close()


def test_kcat_query_offsets(bootstrap, timed_topic):
    topic, base = timed_topic

    def q(ts):
        out = kcat("-b", bootstrap, "-Q", "-t", f"{topic}:0:{ts}").stdout.decode()
        m = re.search(r"\[0\]\s+offset\s+(-?\d+)", out)
        assert m, out
        return int(m.group(1))

    assert q(base + 5 * STEP) == 5
    assert q(base + 5 * STEP + 1) == 6
    assert q(-2) == 0  # OFFSET_BEGINNING
    assert q(-1) == N  # OFFSET_END


def test_kcat_consume_from_offset_and_end(bootstrap, timed_topic):
    topic, base = timed_topic
    out = kcat("-b", bootstrap, "-C", "-t", topic, "-p", "0", "-o", "45", "-e", "-f", "%o:%s:%T\\n").stdout.decode()
    lines = out.strip().splitlines()
    assert lines == [f"{i}:r{i}:{base + i * STEP}" for i in range(45, N)]
    # relative to the end
    out = kcat("-b", bootstrap, "-C", "-t", topic, "-p", "0", "-o", "-3", "-e", "-f", "%o\\n").stdout.decode()
    assert out.split() == [str(N - 3), str(N - 2), str(N - 1)]


# ------------------------------------------------------------------------------------------------
# Timestamps far apart inside one batch: a record's timestamp delta is a varlong, and a delta
# above 2^31 ms (~25 days) must still find the record (found by a client's integration suite).

FAR_A, FAR_B = 1234, 999_999_999_999


@pytest.fixture(params=["none", "gzip", "snappy", "lz4", "zstd"])
def far_topic(request, bootstrap):
    # (retention off: both timestamps are years old)
    topic = create_topic(bootstrap, topic_name(f"far-{request.param}"), 1,
                         config={"retention.ms": "-1"})
    p = producer(bootstrap, **{"compression.type": request.param, "linger.ms": 200})
    sent = [{"value": b"old", "partition": 0, "timestamp": FAR_A},
            {"value": b"new", "partition": 0, "timestamp": FAR_B}]
    produce_all(p, topic, sent)
    # linger.ms puts both records in one batch (the case that matters); librdkafka itself
    # reads them back with their timestamps
    out = kcat("-b", bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e",
               "-f", "%o:%T:%s\\n").stdout.decode()
    assert out.split() == [f"0:{FAR_A}:old", f"1:{FAR_B}:new"]
    return topic


def test_far_apart_timestamps_in_one_batch_confluent(bootstrap, far_topic):
    c = consumer(bootstrap)
    try:
        def lookup(ts):
            [tp] = c.offsets_for_times([TopicPartition(far_topic, 0, ts)], timeout=10)
            assert tp.error is None, tp.error
            return tp.offset

        assert lookup(FAR_A) == 0
        assert lookup(FAR_B) == 1
        assert lookup(FAR_A + 1) == 1
        assert lookup(FAR_B + 1) in (-1, OFFSET_END)
    finally:
        c.close()


@pytest.mark.parametrize("version", range(0, 7))
def test_far_apart_timestamps_in_one_batch_every_list_offsets_version(bootstrap, far_topic, version):
    from kafka.protocol.consumer.offsets import ListOffsetsRequest, ListOffsetsResponse

    from helpers import raw_request

    T = ListOffsetsRequest.ListOffsetsTopic
    P = T.ListOffsetsPartition
    req = ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[
        T(name=far_topic, partitions=[P(partition_index=0, current_leader_epoch=-1,
                                        timestamp=FAR_B, max_num_offsets=1)])])
    resp = raw_request(bootstrap, req, ListOffsetsResponse, version).to_dict()
    [t] = resp["topics"]
    [p] = t["partitions"]
    assert p["error_code"] == 0, p
    if version == 0:
        assert p["old_style_offsets"] == [1]
    else:
        assert (p["offset"], p["timestamp"]) == (1, FAR_B)

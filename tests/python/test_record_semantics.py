"""Per-topic record semantics seen through real clients: LogAppendTime topics (the broker's
append time is what consumers and delivery reports see), `message.format.version` accepted as
Kafka 3.x's deprecated no-op, and per-record produce errors (KIP-467) for records without a key
on a compacted topic."""

import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, KafkaError, KafkaException
from confluent_kafka.admin import ConfigResource
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition

from helpers import admin, consume_to_end, create_topic, producer, topic_name, wait_until

OLD_TS = 1_000_000  # 1970: a producer timestamp the broker must replace on LogAppendTime topics


def produce_with_reports(p, topic, records):
    """Produces every record and returns the delivery reports as (err, msg) in send order."""
    reports = [None] * len(records)

    def cb_for(i):
        def cb(err, msg):
            reports[i] = (err, msg)
        return cb

    for i, r in enumerate(records):
        p.produce(topic, on_delivery=cb_for(i), **r)
    p.flush(30)
    assert all(r is not None for r in reports), "missing delivery reports"
    return reports


def test_log_append_time_topic_stamps_the_brokers_time(bootstrap):
    topic = create_topic(bootstrap, topic_name("lat"), 1,
                         config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    reports = produce_with_reports(producer(bootstrap, **{"linger.ms": 20}), topic,
                                   [{"value": f"v{i}".encode(), "timestamp": OLD_TS + i} for i in range(5)])
    after = int(time.time() * 1000)
    for err, msg in reports:
        assert err is None, err
        # the delivery report carries the produce response's log_append_time_ms
        kind, ts = msg.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME and before <= ts <= after, (kind, ts)
    got = consume_to_end(bootstrap, topic, [0])[0]
    assert [m.value() for m in got] == [f"v{i}".encode() for i in range(5)]
    for m in got:
        kind, ts = m.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME and before <= ts <= after, (kind, ts)
    # kafka-python decodes the batch itself: timestamp type 1 = LogAppendTime
    kc = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                       consumer_timeout_ms=5000)
    try:
        tp = KTopicPartition(topic, 0)
        kc.assign([tp])
        recs = list(kc)
    finally:
        kc.close()
    assert len(recs) == 5
    assert all(r.timestamp_type == 1 and before <= r.timestamp <= after for r in recs), recs
    # a timestamp lookup finds the records by their append time, not the producer's
    from confluent_kafka import TopicPartition
    from helpers import consumer
    c = consumer(bootstrap)
    try:
        [tp] = c.offsets_for_times([TopicPartition(topic, 0, OLD_TS)], timeout=10)
        assert tp.offset == 0
        [tp] = c.offsets_for_times([TopicPartition(topic, 0, after + 1)], timeout=10)
        assert tp.offset < 0  # nothing appended after `after`
    finally:
        c.close()


def test_create_time_is_kept_and_the_type_can_be_altered(bootstrap):
    topic = create_topic(bootstrap, topic_name("ct"), 1)
    reports = produce_with_reports(producer(bootstrap), topic, [{"value": b"a", "timestamp": OLD_TS}])
    assert reports[0][1].timestamp() == (TIMESTAMP_CREATE_TIME, OLD_TS)
    a = admin(bootstrap)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic,
                         set_config={"message.timestamp.type": "LogAppendTime"})
    a.alter_configs([res])[res].result(timeout=20)
    before = int(time.time() * 1000)
    reports = produce_with_reports(producer(bootstrap), topic, [{"value": b"b", "timestamp": OLD_TS}])
    kind, ts = reports[0][1].timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME and ts >= before
    got = consume_to_end(bootstrap, topic, [0])[0]
    assert [m.timestamp() for m in got][0] == (TIMESTAMP_CREATE_TIME, OLD_TS)
    assert got[1].timestamp()[0] == TIMESTAMP_LOG_APPEND_TIME


def test_message_format_version_is_accepted_as_a_no_op(bootstrap):
    topic = create_topic(bootstrap, topic_name("mfv"), 1,
                         config={"message.format.version": "2.8"})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    a = admin(bootstrap)  # must outlive the future
    cfg = a.describe_configs([res])[res].result(timeout=20)
    assert cfg["message.format.version"].value == "2.8"
    with pytest.raises(KafkaException) as e:
        create_topic(bootstrap, topic_name("mfv-bad"), 1, config={"message.format.version": "newest"})
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_keyless_records_on_a_compacted_topic_are_named_per_record(bootstrap):
    """KIP-467: 10 of 100 records in one batch have no key. As in Kafka the batch is refused
    with INVALID_RECORD, and the response names exactly those 10 records (record_errors), so
    the client reports the cause on them."""
    topic = create_topic(bootstrap, topic_name("k467"), 1, config={"cleanup.policy": "compact"})
    keyless = set(range(5, 100, 10))
    records = [{"value": f"v{i}".encode(), "partition": 0,
                **({} if i in keyless else {"key": f"k{i}".encode()})} for i in range(100)]
    # One batch: a long linger so that librdkafka cannot send part of the 100 records early.
    p = producer(bootstrap, **{"linger.ms": 2000, "batch.num.messages": 1000, "retries": 0})
    reports = produce_with_reports(p, topic, records)
    # librdkafka fails exactly the records the broker named (by batch index) with INVALID_RECORD,
    # and the rest of the batch with _INVALID_DIFFERENT_RECORD ("an invalid record in the same batch
    # caused the failure of this message too")
    delivered = [i for i, (err, _m) in enumerate(reports) if err is None]
    assert not delivered, f"records {delivered} were stored (sent in another batch?)"
    named = {i for i, (err, _m) in enumerate(reports) if err.code() == KafkaError.INVALID_RECORD}
    assert named == keyless, sorted(named)
    others = {reports[i][0].code() for i in range(100) if i not in keyless}
    assert others == {KafkaError._INVALID_DIFFERENT_RECORD}, others
    # nothing of the refused batch was stored
    assert consume_to_end(bootstrap, topic, [0])[0] == []
    # keyed records alone go in
    ok = produce_with_reports(p, topic, [r for i, r in enumerate(records) if i not in keyless])
    assert all(err is None for err, _m in ok)
    assert len(consume_to_end(bootstrap, topic, [0])[0]) == 90

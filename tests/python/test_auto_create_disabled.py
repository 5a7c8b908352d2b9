"""auto.create.topics.enable=false: unknown topics stay unknown (UNKNOWN_TOPIC_OR_PARTITION)."""

from confluent_kafka import KafkaError

from helpers import admin, consume_to_end, create_topic, kcat, list_topic_names, produce_all, producer, topic_name

BROKER_ENV = {"RAFTKA_AUTO_CREATE_TOPICS_ENABLE": "false"}


def test_metadata_for_unknown_topic_is_an_error(bootstrap):
    topic = topic_name("noauto")
    p = producer(bootstrap)  # a producer's metadata requests allow auto creation
    md = p.list_topics(topic=topic, timeout=10)
    assert md.topics[topic].error is not None
    assert md.topics[topic].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART  # 3
    assert topic not in list_topic_names(bootstrap)


def test_produce_to_unknown_topic_fails(bootstrap):
    topic = topic_name("noauto")
    # librdkafka reports an unknown topic once topic.metadata.propagation.max.ms has passed
    p = producer(bootstrap, **{"message.timeout.ms": 10000, "topic.metadata.propagation.max.ms": 1000})
    results = []
    p.produce(topic, value=b"lost", on_delivery=lambda err, msg: results.append(err))
    assert p.flush(20) == 0
    [err] = results
    assert err is not None
    assert err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), err
    assert topic not in list_topic_names(bootstrap)


def test_kcat_produce_to_unknown_topic_fails(bootstrap):
    topic = topic_name("noautokcat")
    proc = kcat("-b", bootstrap, "-P", "-t", topic, "-X", "message.timeout.ms=10000",
                "-X", "topic.metadata.propagation.max.ms=1000", input=b"x\n", check=False)
    assert proc.returncode != 0, proc.stderr
    assert b"Unknown topic" in proc.stderr, proc.stderr
    assert topic not in list_topic_names(bootstrap)


def test_explicit_create_still_works(bootstrap):
    topic = create_topic(bootstrap, topic_name("explicit"), 1)
    assert produce_all(producer(bootstrap), topic, [{"value": b"v", "partition": 0}]) == [(0, 0)]
    assert [m.value() for m in consume_to_end(bootstrap, topic, [0])[0]] == [b"v"]

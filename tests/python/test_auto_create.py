"""auto.create.topics.enable=true (the default): producing to an unknown topic creates it with
num.partitions partitions."""

from kafka import KafkaProducer

from helpers import consume_to_end, kcat, list_topic_names, produce_all, producer, topic_name, wait_for_topic

BROKER_ENV = {"RAFTKA_NUM_PARTITIONS": "2"}


def test_confluent_produce_creates_topic(bootstrap):
    topic = topic_name("auto")
    assert topic not in list_topic_names(bootstrap)
    delivered = produce_all(producer(bootstrap), topic, [{"key": b"k", "value": b"hello", "partition": 1}])
    assert delivered == [(1, 0)]
    t = wait_for_topic(bootstrap, topic)
    assert len(t.partitions) == 2  # num.partitions
    assert [m.value() for m in consume_to_end(bootstrap, topic, [0, 1])[1]] == [b"hello"]


def test_kcat_produce_creates_topic(bootstrap):
    topic = topic_name("autokcat")
    kcat("-b", bootstrap, "-P", "-t", topic, "-p", "0", input=b"one\ntwo\n")
    wait_for_topic(bootstrap, topic, 2)
    assert [m.value() for m in consume_to_end(bootstrap, topic, [0])[0]] == [b"one", b"two"]


def test_kafka_python_produce_creates_topic(bootstrap):
    topic = topic_name("autokp")
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        md = p.send(topic, value=b"kp", partition=0).get(timeout=20)
    finally:
        p.close(timeout=5)
    assert (md.partition, md.offset) == (0, 0)
    assert len(wait_for_topic(bootstrap, topic).partitions) == 2

"""Clean restart (scripts/cluster stop 1 / start 1): topics, configs and every acked record
survive, and offsets continue where they were."""

from confluent_kafka.admin import ConfigResource

from helpers import admin, consume_to_end, create_topic, high_watermarks, produce_all, producer, topic_name, wait_for_topic


def snapshot(bootstrap, topic, partitions):
    got = consume_to_end(bootstrap, topic, list(range(partitions)))
    return {p: [(m.offset(), m.key(), m.value(), m.headers(), m.timestamp()) for m in msgs] for p, msgs in got.items()}


def test_stop_start_keeps_everything(cluster):
    b = cluster.bootstrap
    partitions = 3
    topic = create_topic(b, topic_name("restart"), partitions, config={"retention.ms": "86400000"})
    sent = [
        {"key": f"k{i}".encode(), "value": f"v{i}".encode() * (1 + i % 5), "headers": [("n", str(i).encode())], "partition": i % partitions}
        for i in range(600)
    ]
    for codec, chunk in zip(["none", "gzip", "zstd"], (sent[:200], sent[200:400], sent[400:])):
        produce_all(producer(b, acks="all", **{"compression.type": codec}), topic, chunk)
    before = snapshot(b, topic, partitions)
    assert sum(len(v) for v in before.values()) == len(sent)

    cluster.stop(1)
    assert cluster.status()[1][2] == "stopped"
    cluster.start(1)
    assert cluster.status()[1][2] == "running"

    t = wait_for_topic(b, topic, partitions)
    assert len(t.partitions) == partitions
    assert snapshot(b, topic, partitions) == before
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    a = admin(b)
    assert a.describe_configs([res])[res].result(timeout=20)["retention.ms"].value == "86400000"

    # appends continue after the last offset of each partition
    ends = high_watermarks(b, topic, list(range(partitions)))
    delivered = produce_all(producer(b, acks="all"), topic, [{"value": b"after", "partition": p} for p in range(partitions)])
    assert sorted(delivered) == sorted((p, ends[p]) for p in range(partitions))


def test_restart_twice_and_deleted_topic_stays_deleted(cluster):
    b = cluster.bootstrap
    keep = create_topic(b, topic_name("keep"), 1)
    gone = create_topic(b, topic_name("gone"), 1)
    produce_all(producer(b), keep, [{"value": b"a", "partition": 0}])
    a = admin(b)
    a.delete_topics([gone], operation_timeout=10)[gone].result(timeout=20)
    for _ in range(2):
        cluster.stop(1)
        cluster.start(1)
    names = set(admin(b).list_topics(timeout=10).topics)
    assert keep in names and gone not in names
    assert [m.value() for m in consume_to_end(b, keep, [0])[0]] == [b"a"]


def test_stop_is_prompt_while_a_consumer_long_polls(cluster):
    """SIGTERM must not wait for parked Fetch long-polls: a consumer with fetch.wait.max.ms=12000
    on an idle partition must not hold the broker's shutdown for those 12 s."""
    import time

    from confluent_kafka import TopicPartition

    from helpers import consumer

    b = cluster.bootstrap
    topic = create_topic(b, topic_name("longpoll-stop"), 1)
    c = consumer(b, **{"fetch.wait.max.ms": 12000})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        assert c.poll(1.5) is None  # the consumer's long-polling Fetch is now parked in the broker
        t0 = time.monotonic()
        cluster.stop(1)
        elapsed = time.monotonic() - t0
    finally:
        c.close()
        if cluster.status()[1][2] == "stopped":
            cluster.start(1)
    assert elapsed < 5, f"clean shutdown took {elapsed:.1f}s while a Fetch was long-polling"

"""One broker: the operator APIs of issue 15 that need no cluster, through real clients.

- ListOffsets v7-v9 (kafka-python's list_partition_offsets with OffsetSpec): MAX_TIMESTAMP is
  the first record with the largest timestamp (also when it is not the last record),
  EARLIEST_LOCAL the log start, LATEST_TIERED offset -1 (no tiered storage, as Kafka).
- ListGroups v5 (confluent-kafka's list_consumer_groups with types): every group is classic.
- ApiVersions v3 features (kafka-python's describe_features): metadata.version finalized.
- DescribeLogDirs (kafka-python's describe_log_dirs): one log dir, partition sizes that grow
  with the data.
"""

import time

from confluent_kafka import ConsumerGroupType, TopicPartition
from kafka.admin import KafkaAdminClient, OffsetSpec
from kafka.structs import TopicPartition as KTP

from helpers import admin, consumer, create_topic, produce_all, producer, topic_name, wait_until


def kadmin(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)


def test_list_offsets_max_timestamp_earliest_local_and_latest_tiered(bootstrap):
    t = create_topic(bootstrap, topic_name("maxts"), 1)
    now = int(time.time() * 1000)
    # The largest timestamp sits in the middle, twice: the first of them is the answer.
    stamps = [now - 5000, now + 60000, now - 1000, now + 60000, now - 2000]
    p = producer(bootstrap, **{"linger.ms": 0})
    produce_all(p, t, [{"value": f"v{i}", "timestamp": ts} for i, ts in enumerate(stamps)])
    k = kadmin(bootstrap)
    try:
        tp = KTP(t, 0)
        got = {spec: k.list_partition_offsets({tp: spec})[tp]
               for spec in (OffsetSpec.MAX_TIMESTAMP, OffsetSpec.EARLIEST_LOCAL,
                            OffsetSpec.LATEST_TIERED, OffsetSpec.LATEST)}
    finally:
        k.close()
    assert (got[OffsetSpec.MAX_TIMESTAMP].offset, got[OffsetSpec.MAX_TIMESTAMP].timestamp) == (1, now + 60000)
    assert got[OffsetSpec.EARLIEST_LOCAL].offset == 0
    assert got[OffsetSpec.LATEST_TIERED].offset == -1
    assert got[OffsetSpec.LATEST].offset == 5


def test_list_groups_v5_filters_by_type(bootstrap):
    t = create_topic(bootstrap, topic_name("gtype"), 1)
    group = topic_name("gtype-group")
    c = consumer(bootstrap, **{"group.id": group})
    c.subscribe([t])
    try:
        wait_until(lambda: c.poll(0.2) is None and c.assignment(), what="assignment")
        a = admin(bootstrap)

        def listed(types):
            r = a.list_consumer_groups(types=set(types)).result(timeout=20)
            return {g.group_id: g for g in r.valid}

        classic = listed([ConsumerGroupType.CLASSIC])
        assert group in classic and classic[group].type == ConsumerGroupType.CLASSIC
        assert group not in listed([ConsumerGroupType.CONSUMER])
        assert group in listed([])
    finally:
        c.close()


def test_features_name_metadata_version(bootstrap):
    k = kadmin(bootstrap)
    try:
        f = k.describe_features()
    finally:
        k.close()
    assert f["metadata.version"]["finalized"] == (7, 7), f
    assert f["metadata.version"]["supported"] == (7, 7), f
    # Static voters: KIP-853's dynamic quorum (kraft.version 1) is not claimed.
    assert f["kraft.version"]["supported"] == (0, 0), f


def test_describe_log_dirs_sizes_partitions(bootstrap):
    t = create_topic(bootstrap, topic_name("logdirs"), 2)

    def sizes():
        k = kadmin(bootstrap)
        try:
            r = k.describe_log_dirs()
        finally:
            k.close()
        out = {}
        [broker] = r
        [log_dir] = broker["log_dirs"]
        assert log_dir["error_code"] == 0 and log_dir["log_dir"].startswith("/"), log_dir
        assert 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"], log_dir
        for topic in log_dir["topics"]:
            for part in topic["partitions"]:
                out[(topic["name"], part["partition_index"])] = part["partition_size"]
        return out

    before = sizes()
    assert before[(t, 0)] == 0 and before[(t, 1)] == 0, before
    p = producer(bootstrap)
    produce_all(p, t, [{"value": b"x" * 1000, "partition": 0} for _ in range(20)])
    after = sizes()
    assert after[(t, 0)] >= 20 * 1000 and after[(t, 1)] == 0, after


def test_fetch_below_v4_is_refused_and_not_advertised(bootstrap):
    """KIP-896: Fetch v0-v3 would carry v2 batches old readers cannot parse. ApiVersions
    advertises Fetch from v4 (as Kafka 4.0), a v3 request closes the connection (as Kafka
    does for an unsupported version), and v4 is served."""
    import pytest
    from kafka.protocol.consumer.fetch import FetchRequest, FetchResponse
    from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse

    from helpers import raw_request

    t = create_topic(bootstrap, topic_name("oldfetch"), 1)
    produce_all(producer(bootstrap), t, [{"value": "v"}])
    versions = raw_request(bootstrap, ApiVersionsRequest(), ApiVersionsResponse, 3).to_dict()
    [fetch] = [a for a in versions["api_keys"] if a["api_key"] == 1]
    assert fetch["min_version"] == 4, fetch

    def fetch_request():
        T = FetchRequest.FetchTopic
        return FetchRequest(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20,
                            isolation_level=0, topics=[T(topic=t, partitions=[T.FetchPartition(
                                partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])])

    for old in (0, 1, 2, 3):
        with pytest.raises((ConnectionError, OSError)):
            raw_request(bootstrap, fetch_request(), FetchResponse, old, timeout=5)
    d = raw_request(bootstrap, fetch_request(), FetchResponse, 4).to_dict()
    [p] = d["responses"][0]["partitions"]
    assert p["error_code"] == 0 and p["high_watermark"] == 1, p


# ---------------------------------------------------------------------------------------------
# topic ids (KIP-516)


def confluent_topic_id(bootstrap, name):
    from confluent_kafka import TopicCollection

    a = admin(bootstrap)
    d = a.describe_topics(TopicCollection([name]))[name].result(timeout=20)
    return str(d.topic_id)


def test_topic_ids_are_real_and_change_when_a_topic_is_recreated(bootstrap):
    from confluent_kafka.admin import NewTopic

    name = topic_name("tid")
    create_topic(bootstrap, name, 2)
    first = confluent_topic_id(bootstrap, name)
    assert first and first != "AAAAAAAAAAAAAAAAAAAAAA", first
    other = confluent_topic_id(bootstrap, create_topic(bootstrap, topic_name("tid2"), 1))
    assert other != first
    # Consumers (librdkafka 2.16 fetches by id once ids are non-zero) read what was produced.
    produce_all(producer(bootstrap), name, [{"value": f"a{i}", "partition": 0} for i in range(3)])
    from helpers import consume_to_end

    got = consume_to_end(bootstrap, name, [0])
    assert [m.value() for m in got[0]] == [b"a0", b"a1", b"a2"]
    # Delete and re-create: a new id, and the old id is gone.
    a = admin(bootstrap)
    a.delete_topics([name])[name].result(timeout=20)
    wait_until(lambda: name not in a.list_topics(timeout=5).topics, what="topic gone")
    a.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])[name].result(20)
    second = wait_until(lambda: confluent_topic_id(bootstrap, name), what="re-created topic")
    assert second != first


def kafka_uuid(b64):
    import base64
    import uuid

    return uuid.UUID(bytes=base64.urlsafe_b64decode(b64 + "=="))


def test_delete_topics_by_id_and_fetch_by_id(bootstrap):
    import uuid

    from kafka.protocol.admin import DeleteTopicsRequest, DeleteTopicsResponse
    from kafka.protocol.consumer.fetch import FetchRequest, FetchResponse

    from helpers import raw_request

    name = create_topic(bootstrap, topic_name("tidfetch"), 1)
    produce_all(producer(bootstrap), name, [{"value": "x"}])
    tid = kafka_uuid(confluent_topic_id(bootstrap, name))

    def fetch(topic_id, version=13):
        T = FetchRequest.FetchTopic
        req = FetchRequest(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20,
                           isolation_level=0, topics=[T(topic_id=topic_id, partitions=[
                               T.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])])
        [t] = raw_request(bootstrap, req, FetchResponse, version).to_dict()["responses"]
        return t

    for version in (13, 16, 17):
        t = fetch(tid, version)
        [p] = t["partitions"]
        assert str(t["topic_id"]) == str(tid) and p["error_code"] == 0 and p["high_watermark"] == 1, t
    [p] = fetch(uuid.uuid4())["partitions"]
    assert p["error_code"] == 100, p  # UNKNOWN_TOPIC_ID

    def delete(topic_id):
        req = DeleteTopicsRequest(timeout_ms=10000, topics=[
            DeleteTopicsRequest.DeleteTopicState(name=None, topic_id=topic_id)])
        [r] = raw_request(bootstrap, req, DeleteTopicsResponse, 6).to_dict()["responses"]
        return r

    r = delete(uuid.uuid4())
    assert r["error_code"] == 100, r
    r = delete(tid)
    assert (r["error_code"], r["name"], str(r["topic_id"])) == (0, name, str(tid)), r
    a = admin(bootstrap)
    wait_until(lambda: name not in a.list_topics(timeout=5).topics, what="deleted by id")


def test_describe_topic_partitions_pages_with_a_cursor(bootstrap):
    a_name = create_topic(bootstrap, "dtp-a-" + topic_name("x"), 3)
    b_name = create_topic(bootstrap, "dtp-b-" + topic_name("x"), 2)
    k = kadmin(bootstrap)
    seen, pages, cursor = [], 0, None
    try:
        while True:
            r = k.describe_topic_partitions([b_name, a_name], response_partition_limit=2, cursor=cursor)
            pages += 1
            for t in r["topics"]:
                assert t["error_code"] == 0 and str(t["topic_id"]) != str(kafka_uuid("A" * 22)), t
                seen.extend((t["name"], p["partition_index"]) for p in t["partitions"])
            cursor = r["next_cursor"]
            if cursor is None:
                break
            assert pages < 10
        missing = k.describe_topic_partitions(["dtp-nope-" + topic_name("x")])
    finally:
        k.close()
    assert seen == [(a_name, 0), (a_name, 1), (a_name, 2), (b_name, 0), (b_name, 1)], seen
    assert pages == 3
    [t] = missing["topics"]
    assert t["error_code"] == 3, t  # UNKNOWN_TOPIC_OR_PARTITION

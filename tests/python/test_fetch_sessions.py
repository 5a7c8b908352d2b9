"""Client fetch sessions (KIP-227): full then incremental fetches (raw Fetch v12 by topic name
and v13 by topic id, through kafka-python's protocol classes), the session errors, the bound
of max.incremental.fetch.session.cache.slots, and kafka-python's consumer (which uses
incremental sessions by default) reading 120 partitions."""

import collections
import uuid

import pytest
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition
from kafka.protocol.consumer.fetch import FetchRequest, FetchResponse
from kafka.protocol.metadata import MetadataRequest, MetadataResponse
from raftkit import kafkameta

from helpers import create_topic, produce_all, producer, topic_name, wait_until

SLOTS = 4
BROKER_ENV = {"RAFTKA_MAX_INCREMENTAL_FETCH_SESSION_CACHE_SLOTS": str(SLOTS)}

FETCH_SESSION_ID_NOT_FOUND = 70
INVALID_FETCH_SESSION_EPOCH = 71
NIL = uuid.UUID(int=0)


def topic_id(bootstrap, topic):
    req = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=topic)],
                          allow_auto_topic_creation=False)
    md = kafkameta.request(bootstrap, req, 12, resp_cls=MetadataResponse)
    return md.topics[0].topic_id


def fetch(bootstrap, session_id, epoch, topic, parts=(), forgotten=(), version=12, tid=NIL,
          max_wait_ms=100):
    """One Fetch: ``parts`` are (partition, fetch offset) pairs; returns the response."""
    ft = FetchRequest.FetchTopic
    fp = ft.FetchPartition
    by_id = version >= 13
    name = "" if by_id else topic
    topics = [ft(topic=name, topic_id=tid if by_id else NIL,
                 partitions=[fp(partition=p, fetch_offset=o, current_leader_epoch=-1,
                                last_fetched_epoch=-1, log_start_offset=-1,
                                partition_max_bytes=1 << 20) for p, o in parts])] if parts else []
    gone = [FetchRequest.ForgottenTopic(topic=name, topic_id=tid if by_id else NIL,
                                        partitions=list(forgotten))] if forgotten else []
    req = FetchRequest(replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=50 << 20,
                       isolation_level=0, session_id=session_id, session_epoch=epoch,
                       topics=topics, forgotten_topics_data=gone, rack_id="")
    return kafkameta.request(bootstrap, req, version, resp_cls=FetchResponse)


def answered(resp):
    """{partition: (error, high watermark, record bytes)} of a Fetch response."""
    out = {}
    for t in resp.responses:
        for p in t.partitions:
            out[p.partition_index] = (p.error_code, p.high_watermark, len(p.records or b""))
    return out


def produce_to(bootstrap, topic, partitions, n=1):
    p = producer(bootstrap)
    produce_all(p, topic, [{"value": f"v{i}".encode(), "partition": part}
                           for part in partitions for i in range(n)])


def test_the_cache_holds_at_most_its_slots_and_frees_closed_ones(bootstrap):
    topic = create_topic(bootstrap, topic_name("fs-slots"), 1)
    opened = []
    for _ in range(SLOTS + 2):
        sid = fetch(bootstrap, 0, 0, topic, [(0, 0)]).session_id
        if sid == 0:
            break
        opened.append(sid)
    assert 1 <= len(opened) <= SLOTS, f"sessions opened: {opened}"
    # Full: a new (young) session evicts none of the young ones and gets no id ...
    assert fetch(bootstrap, 0, 0, topic, [(0, 0)]).session_id == 0
    # ... and every open session still works.
    for sid in opened:
        r = fetch(bootstrap, sid, 1, topic)
        assert (r.error_code, r.session_id) == (0, sid)
    # Closing one (epoch -1) frees its slot for the next full fetch.
    r = fetch(bootstrap, opened[0], -1, topic, [(0, 0)])
    assert (r.error_code, r.session_id) == (0, 0)
    again = fetch(bootstrap, 0, 0, topic, [(0, 0)]).session_id
    assert again != 0
    for sid in opened[1:] + [again]:
        assert fetch(bootstrap, sid, -1, topic, [(0, 0)]).session_id == 0


@pytest.mark.parametrize("version", [12, 13])
def test_incremental_fetches_answer_only_changed_partitions(bootstrap, version):
    topic = create_topic(bootstrap, topic_name(f"fs-inc{version}"), 4)
    tid = topic_id(bootstrap, topic) if version >= 13 else NIL
    produce_to(bootstrap, topic, range(4))
    full = fetch(bootstrap, 0, 0, topic, [(p, 0) for p in range(4)], version=version, tid=tid)
    sid = full.session_id
    assert full.error_code == 0 and sid != 0
    got = answered(full)
    assert sorted(got) == [0, 1, 2, 3]
    assert all(e == 0 and hw == 1 and n > 0 for e, hw, n in got.values()), got
    # The consumer moves past the records: nothing new anywhere, so nothing is answered.
    r = fetch(bootstrap, sid, 1, topic, [(p, 1) for p in range(4)], version=version, tid=tid)
    assert (r.error_code, r.session_id) == (0, sid)
    assert answered(r) == {}
    # A record on partition 2 only: the next fetch names no partition and gets just that one.
    produce_to(bootstrap, topic, [2])
    r = fetch(bootstrap, sid, 2, topic, version=version, tid=tid, max_wait_ms=5000)
    got = answered(r)
    assert list(got) == [2], got
    assert got[2][:2] == (0, 2) and got[2][2] > 0
    # Forgotten partitions leave the session: partition 2 gets a record, nobody is told.
    r = fetch(bootstrap, sid, 3, topic, forgotten=[2], version=version, tid=tid)
    assert answered(r) == {}
    produce_to(bootstrap, topic, [2, 3])
    r = fetch(bootstrap, sid, 4, topic, version=version, tid=tid, max_wait_ms=5000)
    assert list(answered(r)) == [3]
    assert fetch(bootstrap, sid, -1, topic, [(0, 0)], version=version, tid=tid).session_id == 0


def test_wrong_epochs_and_unknown_sessions_are_refused(bootstrap):
    topic = create_topic(bootstrap, topic_name("fs-err"), 2)
    produce_to(bootstrap, topic, [0, 1])
    sid = fetch(bootstrap, 0, 0, topic, [(0, 0), (1, 0)]).session_id
    assert sid != 0
    r = fetch(bootstrap, sid, 5, topic)
    assert (r.error_code, r.session_id, answered(r)) == (INVALID_FETCH_SESSION_EPOCH, 0, {})
    other = sid + 1 if sid < 2**31 - 1 else 1
    r = fetch(bootstrap, other, 1, topic)
    assert (r.error_code, r.session_id) == (FETCH_SESSION_ID_NOT_FOUND, 0)
    # A refused request leaves the session as it was: epoch 1 is still the next one.
    r = fetch(bootstrap, sid, 1, topic, [(0, 1)])
    assert (r.error_code, r.session_id) == (0, sid)
    # Epoch 1 again (a replay) is refused; after closing, the id is unknown.
    assert fetch(bootstrap, sid, 1, topic).error_code == INVALID_FETCH_SESSION_EPOCH
    assert fetch(bootstrap, sid, -1, topic, [(0, 0)]).session_id == 0
    assert fetch(bootstrap, sid, 2, topic).error_code == FETCH_SESSION_ID_NOT_FOUND


def test_kafka_python_reads_120_partitions_through_incremental_sessions(bootstrap):
    parts = 120
    topic = create_topic(bootstrap, topic_name("fs-many"), parts)
    p = producer(bootstrap, **{"linger.ms": 5})
    sent = [{"value": f"{part}-{i}".encode(), "partition": part}
            for i in range(10) for part in range(parts)]
    produce_all(p, topic, sent)
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      auto_offset_reset="earliest", fetch_max_wait_ms=100,
                      max_partition_fetch_bytes=4096)
    try:
        c.assign([KTopicPartition(topic, i) for i in range(parts)])
        seen = collections.defaultdict(list)

        def read(total):
            for batch in c.poll(timeout_ms=200).values():
                for m in batch:
                    seen[m.partition].append((m.offset, m.value))
            return sum(len(v) for v in seen.values()) >= total

        wait_until(lambda: read(parts * 10), what="all records read")
        # Later records land on a few partitions only: incremental answers carry them.
        produce_all(p, topic, [{"value": f"{part}-late".encode(), "partition": part}
                               for part in (3, 77, 119)])
        wait_until(lambda: read(parts * 10 + 3), what="the late records read")
        for part in range(parts):
            want = [f"{part}-{i}".encode() for i in range(10)]
            if part in (3, 77, 119):
                want.append(f"{part}-late".encode())
            assert seen[part] == list(enumerate(want)), f"partition {part}"
        # kafka-python really fetched in a session (the broker gave it an id).
        handlers = c._fetcher._session_handlers
        assert handlers and all(h.next_metadata.session_id != 0 for h in handlers.values())
    finally:
        c.close()

"""Three-broker cluster: a topic deleted and re-created (a new topic id, KIP-516) while one of
its replicas is paused (SIGSTOP). The broker comes back a member that missed both changes, with
its log of the old topic under the same name; it must delete that log (the old topic's data)
before following the new topic, and never serve or replicate an "old-*" record as the new
topic's — also once it leads the re-created topic's partition (a reassignment makes it the
preferred leader).

Without topic ids recorded next to partition logs the returning broker kept its old log: both
topics start at leader epoch 0 and the new leader's log is longer, so leader-epoch truncation
found nothing to truncate, the follower fetched on from its old log end, and once it led it
served "old-0".."old-19" followed by new records as the new topic's partition.

The same runs with broker 3 killed and restarted instead (``kill``): the restart path — logs
opened from a stale image before the broker's new registration. A restarted broker replaying
the metadata log may or may not see an image without the topic before the new one (then its
old log goes as any deleted topic's, and no deletion by id is logged, so only ``pause`` asserts
that line); without recorded ids both variants served the 20 old records in our runs.
"""

import uuid

import pytest

from confluent_kafka import TopicCollection
from confluent_kafka.admin import NewTopic
from kafka import KafkaAdminClient, TopicPartition

from raftkit import kafkameta

from helpers import admin, consume_to_end, produce_all, producer, topic_name, wait_until

OLD = 20
NEW = 30


def topic_id(bootstrap, name):
    a = admin(bootstrap)
    d = a.describe_topics(TopicCollection([name]))[name].result(timeout=30)
    msb, lsb = d.topic_id.get_most_significant_bits(), d.topic_id.get_least_significant_bits()
    return str(uuid.UUID(int=((msb % (1 << 64)) << 64) | (lsb % (1 << 64))))


def create(c, name, assignment):
    a = admin(c.address(1))
    a.create_topics([NewTopic(name, num_partitions=len(assignment), replica_assignment=assignment)],
                    operation_timeout=15)[name].result(timeout=30)


def values(c, broker, name):
    got = consume_to_end(c.address(broker), name, [0], timeout=60)[0]
    return [m.value().decode() for m in got]


def metadata_by_id(c, broker, tid):
    """Metadata v12 asked for one topic by id only (name null): (error, name, id, partitions)."""
    from kafka.protocol.metadata import MetadataRequest

    req = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(topic_id=uuid.UUID(tid), name=None)],
                          allow_auto_topic_creation=False)
    [t] = kafkameta.request(c.address(broker), req, 12).topics
    return t.error_code, t.name, str(t.topic_id), len(t.partitions)


def produce(bootstrap, name, prefix, seqs):
    """One batch per record (each waits for its acknowledgement)."""
    p = producer(bootstrap, acks="all")
    for i in seqs:
        produce_all(p, name, [{"value": f"{prefix}-{i}".encode(), "partition": 0}])


@pytest.mark.parametrize("fault", ["pause", "kill"])
def test_a_returning_broker_never_serves_the_deleted_topics_records(cluster3, fault):
    c = cluster3
    name = topic_name("tid")
    # The old topic: broker 3 leads, every replica holds old-0..19 (leader epoch 0).
    create(c, name, [[3, 1, 2]])
    c.wait_settled(name, timeout=60)
    produce(c.bootstrap_servers(), name, "old", range(OLD))
    old_id = topic_id(c.address(1), name)

    (c.pause if fault == "pause" else c.kill)(3)
    a = admin(c.address(1))
    a.delete_topics([name], operation_timeout=15)[name].result(timeout=30)
    wait_until(lambda: name not in a.list_topics(timeout=5).topics, 30, what=f"{name} deleted")
    # The new topic: broker 1 leads at epoch 0 and writes more records than the old one had.
    create(c, name, [[1, 2, 3]])
    c.wait_settled(name, via=[1, 2], full_isr=False, timeout=60)
    new_id = topic_id(c.address(1), name)
    assert new_id != old_id
    produce(c.bootstrap_servers(without=(3,)), name, "new", range(NEW))

    (c.resume if fault == "pause" else c.start)(3)
    c.wait_settled(name, timeout=90)
    # Broker 3 becomes the preferred leader (same replicas, another order) and leads.
    k = KafkaAdminClient(bootstrap_servers=c.address(1), request_timeout_ms=30000)
    try:
        k.alter_partition_reassignments({TopicPartition(name, 0): [3, 1, 2]})
    finally:
        k.close()
    c.wait_settled(name, timeout=90, check=lambda v: v[0][0] == 3)
    produce(c.address(3), name, "new", range(NEW, NEW + 5))

    for broker in (3, 1, 2):
        got = values(c, broker, name)
        assert [v for v in got if v.startswith("old-")] == [], f"broker {broker} served old records"
        assert got == [f"new-{i}" for i in range(NEW + 5)]
    assert topic_id(c.address(3), name) == new_id
    # Metadata by topic id (v10+): the new id names the topic, the old one nothing.
    assert metadata_by_id(c, 3, new_id) == (0, name, new_id, 1)
    assert metadata_by_id(c, 3, old_id)[0] == 100  # UNKNOWN_TOPIC_ID
    deleted = [line for line in c.log(3).splitlines()
               if "deleted the log of a deleted topic of the same name" in line and name in line]
    if fault == "pause":
        # A member that saw no image without the topic finds its old log under the new id.
        assert deleted, "broker 3 did not log the deletion of the old topic's log"

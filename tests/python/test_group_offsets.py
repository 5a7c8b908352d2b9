"""Committed offsets: they survive a broker restart and consumption resumes from them; lag is
the end offset minus the committed offset, as kafka-consumer-groups.sh --describe computes it
(OffsetFetch with all topics + ListOffsets); the admin client lists, describes, resets (on an
Empty group) and deletes groups."""

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from kafka import KafkaAdminClient, KafkaConsumer
from kafka import TopicPartition as KTopicPartition

from groupkit import Member, describe, wait_balanced
from helpers import admin, create_topic, produce_all, producer, topic_name, wait_until


@pytest.fixture
def spawn():
    started = []

    def make(*args, **kw):
        m = Member(*args, **kw)
        started.append(m)
        return m

    yield make
    for m in started:
        m.cleanup()


def committed(bootstrap, group):
    """{partition: offset} of a group's commits (all topics), via confluent's admin client."""
    a = admin(bootstrap)
    res = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=20)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


def alter(a, req):
    """alter_consumer_group_offsets: [(partition, offset, error code name or None)]."""
    try:
        res = a.alter_consumer_group_offsets([req])[req.group_id].result(timeout=20)
    except KafkaException as e:
        return [(None, None, e.args[0].name())]
    return sorted((tp.partition, tp.offset, tp.error.name() if tp.error else None) for tp in res.topic_partitions)


def produce_to(bootstrap, topic, counts, tag):
    recs = [{"value": f"{tag}-{p}-{i}".encode(), "partition": p} for p, n in counts.items() for i in range(n)]
    produce_all(producer(bootstrap), topic, recs)
    return {r["value"].decode() for r in recs}


def test_committed_offsets_survive_restart_and_consumption_resumes(cluster, spawn):
    b = cluster.bootstrap
    topic = create_topic(b, topic_name("resume"), 2)
    group = topic_name("g")
    first = produce_to(b, topic, {0: 12, 1: 8}, "before")
    m = spawn(b, group, topic, commit=True, name="first")
    wait_until(lambda: {v for _, _, v in m.msgs} == first, what="first batch consumed and committed")
    m.close()
    assert committed(b, group) == {0: 12, 1: 8}

    cluster.stop(1)
    cluster.start(1)
    assert committed(b, group) == {0: 12, 1: 8}
    d = describe(b, group)
    assert d.state == ConsumerGroupState.EMPTY

    second = produce_to(b, topic, {0: 3, 1: 5}, "after")
    m2 = spawn(b, group, topic, client="kafka-python", commit=True, name="second")
    wait_until(lambda: {v for _, _, v in m2.msgs} >= second, what="second batch consumed")
    # only what came after the commits: nothing before them is read again
    assert {v for _, _, v in m2.msgs} == second
    assert min(o for p, o, _ in m2.msgs if p == 0) == 12
    assert min(o for p, o, _ in m2.msgs if p == 1) == 8
    m2.close()
    assert committed(b, group) == {0: 15, 1: 13}


def test_lag_is_end_offset_minus_committed(bootstrap):
    topic = create_topic(bootstrap, topic_name("lag"), 3)
    group = topic_name("g")
    produce_to(bootstrap, topic, {0: 10, 1: 4, 2: 7}, "x")
    # a kafka-python consumer commits chosen positions as a member of the group
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        from kafka.structs import OffsetAndMetadata

        c.commit({KTopicPartition(topic, 0): OffsetAndMetadata(6, "six", -1),
                  KTopicPartition(topic, 1): OffsetAndMetadata(4, "", -1)})
    finally:
        c.close()

    # what kafka-consumer-groups.sh --describe does: OffsetFetch(all topics) + ListOffsets(latest)
    ka = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        # OffsetFetch v8+ (groups array) with null topics = every committed offset
        offsets = ka.list_group_offsets({group: None})[group]
    finally:
        ka.close()
    assert {tp.partition: om.offset for tp, om in offsets.items()} == {0: 6, 1: 4}
    assert offsets[KTopicPartition(topic, 0)].metadata == "six"
    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        ends = probe.end_offsets([KTopicPartition(topic, p) for p in range(3)])
    finally:
        probe.close()
    lag = {tp.partition: ends[tp] - om.offset for tp, om in offsets.items()}
    assert lag == {0: 4, 1: 0}
    # partition 2 has no commit: OffsetFetch for it answers -1
    assert committed(bootstrap, group) == {0: 6, 1: 4}
    a = admin(bootstrap)
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 2)])
    res = a.list_consumer_group_offsets([req])[group].result(timeout=20)
    assert [tp.offset for tp in res.topic_partitions] == [-1001]  # librdkafka's OFFSET_INVALID


def test_admin_client_lists_describes_resets_and_deletes(bootstrap, spawn):
    topic = create_topic(bootstrap, topic_name("adm"), 2)
    group = topic_name("g")
    sent = produce_to(bootstrap, topic, {0: 5, 1: 5}, "r")
    m = spawn(bootstrap, group, topic, commit=True, name="adm-member")
    wait_balanced(bootstrap, group, [m], 2)
    wait_until(lambda: {v for _, _, v in m.msgs} == sent, what="all consumed")
    a = admin(bootstrap)

    listed = a.list_consumer_groups(states={ConsumerGroupState.STABLE}).result(timeout=20)
    assert group in {g.group_id for g in listed.valid}
    listed = a.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result(timeout=20)
    assert group not in {g.group_id for g in listed.valid}
    d = describe(bootstrap, group)
    assert (d.state, d.partition_assignor, len(d.members)) == (ConsumerGroupState.STABLE, "range", 1)
    assert d.members[0].client_id == "adm-member"
    assert sorted(tp.partition for tp in d.members[0].assignment.topic_partitions) == [0, 1]

    # a group with members can neither be deleted nor have its offsets reset by an admin
    with pytest.raises(KafkaException) as e:
        a.delete_consumer_groups([group], request_timeout=10)[group].result(timeout=20)
    assert "GROUP_NOT_EMPTY" in str(e.value) or "NON_EMPTY_GROUP" in str(e.value)
    reset = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    assert {err for _, _, err in alter(a, reset)} == {"UNKNOWN_MEMBER_ID"}

    m.close()
    wait_until(lambda: describe(bootstrap, group).state == ConsumerGroupState.EMPTY, what="group Empty")
    listed = a.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result(timeout=20)
    assert group in {g.group_id for g in listed.valid}

    # reset to the beginning on the Empty group (kafka-consumer-groups.sh --reset-offsets)
    assert alter(a, reset) == [(0, 0, None), (1, 0, None)]
    assert committed(bootstrap, group) == {0: 0, 1: 0}
    again = spawn(bootstrap, group, topic, name="after-reset")
    wait_until(lambda: {v for _, _, v in again.msgs} == sent, what="everything read again after the reset")
    again.close()

    a.delete_consumer_groups([group], request_timeout=10)[group].result(timeout=20)
    assert committed(bootstrap, group) == {}
    assert describe(bootstrap, group).state == ConsumerGroupState.DEAD
    assert group not in {g.group_id for g in a.list_consumer_groups().result(timeout=20).valid}
    with pytest.raises(KafkaException) as e:
        a.delete_consumer_groups([group], request_timeout=10)[group].result(timeout=20)
    assert "GROUP_ID_NOT_FOUND" in str(e.value)


def test_unknown_group_is_dead_and_has_no_offsets(bootstrap):
    group = topic_name("never")
    d = describe(bootstrap, group)
    assert d.state == ConsumerGroupState.DEAD
    assert d.members == []
    assert committed(bootstrap, group) == {}


def test_admin_commits_create_a_simple_group(bootstrap):
    """Offsets committed outside the group protocol (generation -1, no member) on a group that
    does not exist yet: kafka-consumer-groups.sh --reset-offsets on a new group."""
    topic = create_topic(bootstrap, topic_name("simple"), 1)
    group = topic_name("g")
    a = admin(bootstrap)
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 3)])
    assert alter(a, req) == [(0, 3, None)]
    assert committed(bootstrap, group) == {0: 3}
    d = describe(bootstrap, group)
    assert d.state == ConsumerGroupState.EMPTY
    assert d.is_simple_consumer_group
    # an unknown topic is refused per partition
    bad = ConsumerGroupTopicPartitions(group, [TopicPartition(topic_name("nosuch"), 0, 1)])
    assert alter(a, bad) == [(0, 1, "UNKNOWN_TOPIC_OR_PART")]

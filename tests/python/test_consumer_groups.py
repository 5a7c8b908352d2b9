"""Consumer groups with independent clients: confluent-kafka (range, roundrobin,
cooperative-sticky) and kafka-python (range, roundrobin) members share a topic's partitions,
extra members idle, partitions move when a member leaves or dies, groups read independently,
static members restart without a rebalance, kcat's balanced consumer."""

import time

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions

from groupkit import Member, describe, wait_balanced
from helpers import admin, create_topic, kcat, produce_all, producer, topic_name, wait_until

CASES = [
    ("confluent", "range"),
    ("confluent", "roundrobin"),
    ("confluent", "cooperative-sticky"),
    ("kafka-python", "range"),
    ("kafka-python", "roundrobin"),
]


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


def produce_numbered(bootstrap, topic, partitions, per_partition, tag="m"):
    recs = [{"value": f"{tag}-{p}-{i}".encode(), "partition": p}
            for i in range(per_partition) for p in range(partitions)]
    produce_all(producer(bootstrap), topic, recs)
    return {r["value"].decode() for r in recs}


def wait_consumed(members, expected, timeout=30.0):
    def done():
        got = set()
        for m in members:
            got |= {v for _, _, v in m.msgs}
        return expected <= got

    wait_until(done, timeout=timeout, interval=0.1, what=f"{len(expected)} records consumed by {members}")


@pytest.mark.parametrize("client,assignor", CASES, ids=[f"{c}-{a}" for c, a in CASES])
@pytest.mark.parametrize("partitions", [3, 4, 2])
def test_three_members_share_partitions(bootstrap, spawn, client, assignor, partitions):
    topic = create_topic(bootstrap, topic_name(f"grp{partitions}"), partitions)
    group = topic_name("g")
    members = [spawn(bootstrap, group, topic, client=client, assignor=assignor, name=f"m{i}")
               for i in range(3)]
    owners = wait_balanced(bootstrap, group, members, partitions)
    if partitions == 2:
        assert sorted(len(s) for s in owners.values()) == [0, 1, 1]  # one member idles
    else:
        assert max(len(s) for s in owners.values()) - min(len(s) for s in owners.values()) <= 1

    expected = produce_numbered(bootstrap, topic, partitions, 10)
    wait_consumed(members, expected)
    for m in members:
        # every record went to the owner of its partition, once
        assert {p for p, _, _ in m.msgs} <= owners[m], m
        assert len(m.msgs) == len({(p, o) for p, o, _ in m.msgs}), f"duplicates in {m}"
    assert sum(len(m.msgs) for m in members) == len(expected)

    d = describe(bootstrap, group)
    assert d.state == ConsumerGroupState.STABLE
    assert not d.is_simple_consumer_group
    assert sorted(x.client_id for x in d.members) == ["m0", "m1", "m2"]
    assert all(x.host.endswith("127.0.0.1") for x in d.members)
    for m in members:
        m.close()
    wait_until(lambda: describe(bootstrap, group).state == ConsumerGroupState.EMPTY,
               what="group Empty after every member left")


@pytest.mark.parametrize("client,assignor", [("confluent", "range"), ("confluent", "cooperative-sticky"),
                                             ("kafka-python", "roundrobin")])
def test_partitions_move_when_members_leave_or_die(bootstrap, spawn, client, assignor):
    partitions = 4
    topic = create_topic(bootstrap, topic_name("move"), partitions)
    group = topic_name("g")
    a, b, c = (spawn(bootstrap, group, topic, client=client, assignor=assignor,
                     session_timeout_ms=6000, name=n) for n in ("a", "b", "c"))
    wait_balanced(bootstrap, group, [a, b, c], partitions)

    # b leaves cleanly (LeaveGroup): a rebalance starts at once
    t0 = time.monotonic()
    b.close()
    wait_balanced(bootstrap, group, [a, c], partitions)
    leave_s = time.monotonic() - t0

    # c dies without a word: only its session timeout (6 s) moves its partitions
    t0 = time.monotonic()
    c.kill()
    wait_balanced(bootstrap, group, [a], partitions, timeout=30)
    died_s = time.monotonic() - t0
    assert a.assigned == frozenset(range(partitions))
    assert leave_s < 5.0, f"rebalance after LeaveGroup took {leave_s:.1f}s"
    assert 4.5 <= died_s < 15.0, f"rebalance after a dead member took {died_s:.1f}s (session 6s)"

    # the survivor now reads every partition
    expected = produce_numbered(bootstrap, topic, partitions, 5, tag="after")
    wait_consumed([a], expected)
    print(f"\n[{client}/{assignor}] rebalance after LeaveGroup {leave_s:.2f}s, "
          f"after SIGKILL (session.timeout.ms=6000) {died_s:.2f}s")


def test_two_groups_read_the_same_topic_independently(bootstrap, spawn):
    partitions = 3
    topic = create_topic(bootstrap, topic_name("twogroups"), partitions)
    email, phone = topic_name("email"), topic_name("phone")
    e1 = spawn(bootstrap, email, topic, name="e1")
    e2 = spawn(bootstrap, email, topic, name="e2")
    p1 = spawn(bootstrap, phone, topic, client="kafka-python", name="p1")
    wait_balanced(bootstrap, email, [e1, e2], partitions)
    wait_balanced(bootstrap, phone, [p1], partitions)
    expected = produce_numbered(bootstrap, topic, partitions, 20)
    wait_consumed([e1, e2], expected)
    wait_consumed([p1], expected)
    assert len(e1.msgs) + len(e2.msgs) == len(expected)
    assert len(p1.msgs) == len(expected)
    a = admin(bootstrap)
    listed = a.list_consumer_groups().result(timeout=20)
    ids = {g.group_id for g in listed.valid}
    assert {email, phone} <= ids


def test_static_member_restart_keeps_partitions_without_rebalance(bootstrap, spawn):
    partitions = 2
    topic = create_topic(bootstrap, topic_name("static"), partitions)
    group = topic_name("g")
    a = spawn(bootstrap, group, topic, instance_id="inst-a", session_timeout_ms=10000, name="a")
    b = spawn(bootstrap, group, topic, instance_id="inst-b", session_timeout_ms=10000, name="b")
    owners = wait_balanced(bootstrap, group, [a, b], partitions)
    a_history = a.history
    b.kill()
    b2 = spawn(bootstrap, group, topic, instance_id="inst-b", session_timeout_ms=10000, name="b2")
    wait_until(lambda: b2.assigned == owners[b], what="restarted static member gets its partition back")
    wait_balanced(bootstrap, group, [a, b2], partitions)
    # a never lost its partition: no rebalance happened
    assert a.history == a_history
    d = describe(bootstrap, group)
    assert sorted(m.group_instance_id for m in d.members) == ["inst-a", "inst-b"]


def test_static_members_restart_one_at_a_time_without_revoking_the_other(bootstrap, spawn):
    """Each of two static members restarts in turn (so the group's leader is among them): the
    restarted one gets its partition back and the other never sees a revoke (Kafka answers a
    rejoining static leader as a follower instead of rebalancing)."""
    partitions = 2
    topic = create_topic(bootstrap, topic_name("static2"), partitions)
    group = topic_name("g")
    a = spawn(bootstrap, group, topic, instance_id="inst-a", session_timeout_ms=10000, name="a")
    b = spawn(bootstrap, group, topic, instance_id="inst-b", session_timeout_ms=10000, name="b")
    owners = wait_balanced(bootstrap, group, [a, b], partitions)
    members = {"inst-a": a, "inst-b": b}
    for instance in ("inst-a", "inst-b"):
        old = members[instance]
        other = next(m for i, m in members.items() if i != instance)
        other_history = list(other.history)
        old.kill()
        new = spawn(bootstrap, group, topic, instance_id=instance, session_timeout_ms=10000,
                    name=instance + "-2")
        wait_until(lambda: new.assigned == owners[old],
                   what=f"restarted static member {instance} gets its partition back")
        members[instance] = new
        owners[new] = owners.pop(old)
        wait_balanced(bootstrap, group, list(members.values()), partitions)
        assert other.history == other_history, f"{instance} restart disturbed the other member"
    d = describe(bootstrap, group)
    assert sorted(m.group_instance_id for m in d.members) == ["inst-a", "inst-b"]


def test_kcat_balanced_consumer(bootstrap):
    partitions = 3
    topic = create_topic(bootstrap, topic_name("kcatgrp"), partitions)
    group = topic_name("kcat")
    first = produce_numbered(bootstrap, topic, partitions, 10, tag="one")

    def consume():
        # (no -o: kcat would then ignore the committed offsets)
        out = kcat("-b", bootstrap, "-G", group, topic, "-e", "-q", "-f", "%s\\n",
                   "-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=6000",
                   timeout=60).stdout.decode()
        return set(out.split())

    assert consume() == first
    # kcat committed its position: a second run reads only what is new
    second = produce_numbered(bootstrap, topic, partitions, 5, tag="two")
    assert consume() == second
    a = admin(bootstrap)
    offsets = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=20)
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(p, 15) for p in range(partitions)]

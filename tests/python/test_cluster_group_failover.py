"""Three-broker cluster: a confluent-kafka consumer group consumes and commits (synchronously,
every record) while the broker coordinating the group — the leader of the group's
__consumer_offsets partition — is SIGKILLed mid-stream.

Checks: __consumer_offsets exists, is internal and replicated; the new coordinator (another
broker) serves exactly the offsets committed before the kill; the group goes on committing;
every record is consumed (none skipped); the final committed offsets equal the log ends; a new
consumer of the group starts exactly at the committed offsets. Prints (pytest -s) the time from
the kill until the new coordinator answers with the committed offsets and until the group's
first successful commit after the kill (the new coordinator restores the group from its
GroupMetadata record: no rejoin). The last test checks that takeover itself: same members and
generation, no rebalance.
"""

import time
from collections import defaultdict

from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException,
                             TopicPartition)

from kafka.protocol.admin import DescribeGroupsRequest
from kafka.protocol.metadata import FindCoordinatorRequest

from helpers import admin, create_topic, produce_all, producer, topic_name, wait_until

PARTITIONS = 3
PER_PARTITION = 150
# Generous for a debug build on a shared 2-core machine.
MAX_RESUME_SECONDS = 30.0


def group_consumer(bootstrap, group):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 100,
        "topic.metadata.refresh.interval.ms": 1000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 200,
        "retry.backoff.ms": 50,
        "enable.partition.eof": False,
    })


def committed_by_admin(a, group, topic):
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])
    res = a.list_consumer_group_offsets([req], request_timeout=5)[group].result(timeout=10)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


class Reader:
    """Polls a group consumer, records every record, commits each one synchronously."""

    def __init__(self, c, topic):
        self.c = c
        self.topic = topic
        self.seen = defaultdict(set)  # partition -> offsets consumed
        self.values = {}  # (partition, offset) -> value
        self.committed = {}  # partition -> last offset committed successfully
        self.commit_errors = []
        self.first_commit_after = None

    def step(self, mark=None):
        msg = self.c.poll(0.2)
        if msg is None or msg.error():
            return
        p, o = msg.partition(), msg.offset()
        self.seen[p].add(o)
        self.values[(p, o)] = msg.value().decode()
        try:
            res = self.c.commit(offsets=[TopicPartition(self.topic, p, o + 1)], asynchronous=False)
            if res and res[0].error is None:
                self.committed[p] = max(self.committed.get(p, 0), o + 1)
                if mark is not None and self.first_commit_after is None:
                    self.first_commit_after = time.monotonic() - mark
        except KafkaException as e:  # coordinator moving, rebalance: the record is re-read
            self.commit_errors.append(str(e.args[0]))

    def done(self):
        return all(self.committed.get(p, 0) == PER_PARTITION for p in range(PARTITIONS))


def test_committed_offsets_survive_coordinator_kill(cluster3):
    bootstrap = cluster3.bootstrap
    topic = create_topic(bootstrap, topic_name("gf"), PARTITIONS, replication_factor=3)
    cluster3.wait_settled(topic)
    produce_all(producer(bootstrap, acks="all"), topic,
                [{"value": f"{i % PARTITIONS}:{i // PARTITIONS}".encode(), "partition": i % PARTITIONS}
                 for i in range(PARTITIONS * PER_PARTITION)])

    group = topic_name("grp")
    a = admin(bootstrap)
    c = group_consumer(bootstrap, group)
    c.subscribe([topic])
    r = Reader(c, topic)
    deadline = time.monotonic() + 90
    while sum(r.committed.values()) < PARTITIONS * PER_PARTITION // 3 or len(r.committed) < PARTITIONS:
        assert time.monotonic() < deadline, f"group made no progress: {r.committed} {r.commit_errors[-3:]}"
        r.step()

    # The offsets topic: internal, replicated, created by the group's FindCoordinator.
    md = a.list_topics(timeout=10)
    offsets_topic = md.topics["__consumer_offsets"]
    assert len(offsets_topic.partitions) == 10
    assert all(len(p.replicas) == 3 for p in offsets_topic.partitions.values())
    assert cluster3.metadata(1, ["__consumer_offsets"])["topics"][0]["is_internal"]

    desc = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    coordinator = desc.coordinator.id
    before = dict(r.committed)
    assert committed_by_admin(a, group, topic) == before

    t_kill = time.monotonic()
    cluster3.kill(coordinator)

    # The new coordinator loads the committed offsets from its replica of the partition.
    # (Asked through the member itself: librdkafka's admin client can abort the process on an
    # OffsetFetch whose coordinator dies under it.)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def loaded():
        got = {tp.partition: tp.offset for tp in c.committed(tps, timeout=2)}
        return got if got == before else None

    wait_until(loaded, timeout=MAX_RESUME_SECONDS, interval=0.1, what=f"committed offsets {before}")
    t_loaded = time.monotonic() - t_kill
    a = admin(",".join(cluster3.address(b) for b in cluster3.ids() if b != coordinator))
    new_desc = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    assert new_desc.coordinator.id != coordinator

    # The group goes on: rejoin, resume from the commits, commit the rest.
    deadline = time.monotonic() + 120
    while not r.done():
        assert time.monotonic() < deadline, f"group did not finish: {r.committed} {r.commit_errors[-3:]}"
        r.step(mark=t_kill)
    t_resume = r.first_commit_after
    c.close()

    # No record skipped: every offset consumed, with the value produced there.
    for p in range(PARTITIONS):
        missing = sorted(set(range(PER_PARTITION)) - r.seen[p])
        assert not missing, f"partition {p}: never consumed {missing[:10]}"
        assert all(r.values[(p, o)] == f"{p}:{o}" for o in range(PER_PARTITION))
    assert committed_by_admin(a, group, topic) == {p: PER_PARTITION for p in range(PARTITIONS)}

    # A new member of the group starts exactly at the committed offsets.
    produce_all(producer(bootstrap, acks="all"), topic,
                [{"value": f"{p}:{PER_PARTITION + i}".encode(), "partition": p}
                 for i in range(10) for p in range(PARTITIONS)])
    c2 = group_consumer(bootstrap, group)
    c2.subscribe([topic])
    r2 = Reader(c2, topic)
    deadline = time.monotonic() + 60
    while sum(len(s) for s in r2.seen.values()) < PARTITIONS * 10:
        assert time.monotonic() < deadline, f"second consumer stuck: {dict(r2.seen)}"
        r2.step()
    c2.close()
    for p in range(PARTITIONS):
        assert min(r2.seen[p]) == PER_PARTITION, f"partition {p} resumed at {min(r2.seen[p])}"

    print(f"\ncoordinator broker {coordinator} killed; offsets served by broker "
          f"{new_desc.coordinator.id} after {t_loaded:.2f} s; first commit of the group after "
          f"{t_resume:.2f} s; {len(r.commit_errors)} failed commits during the move")
    assert t_resume is not None and t_resume < MAX_RESUME_SECONDS


def _offset_fetch_raw(cluster, broker_id, group, topic):
    """OffsetFetch v5 sent to exactly this broker: (error code, {partition: offset})."""
    from kafka.protocol.consumer.group import OffsetFetchRequest

    req = OffsetFetchRequest(group_id=group, topics=[
        OffsetFetchRequest.OffsetFetchRequestTopic(name=topic, partition_indexes=list(range(PARTITIONS)))])
    resp = cluster.request(broker_id, req, 5, timeout=5).to_dict()
    offsets = {p["partition_index"]: p["committed_offset"]
               for t in resp["topics"] for p in t["partitions"] if p["error_code"] == 0}
    return resp["error_code"], offsets


def test_a_deposed_coordinator_never_serves_stale_offsets_after_resuming(cluster3):
    """The coordinator's broker is paused (SIGSTOP) long enough to be fenced; the group's offsets
    partition gets a new leader, which takes newer commits; when the old broker resumes it must
    not answer OffsetFetch from its old cache (chaos verify found it did, for about a second):
    every answer is an error (NOT_COORDINATOR, …) or offsets at least as new as the acknowledged
    commits. Found by scripts/chaos/verify (commit-backwards after a coordinator pause)."""
    c = cluster3
    for b in c.ids():  # the test above leaves its coordinator dead
        if b not in c.running():
            c.start(b)
    c.wait_brokers()
    topic = create_topic(c.bootstrap, topic_name("dp"), PARTITIONS, replication_factor=3)
    c.wait_settled(topic)
    group = topic_name("grp-dp")

    def commit(via, offset):
        cons = Consumer({"bootstrap.servers": via, "group.id": group, "enable.auto.commit": False})
        try:
            res = cons.commit(offsets=[TopicPartition(topic, p, offset) for p in range(PARTITIONS)],
                              asynchronous=False)
            return all(tp.error is None for tp in res)
        except KafkaException:
            return False
        finally:
            cons.close()

    wait_until(lambda: commit(c.bootstrap, 100), timeout=60, what="first commit")
    a = admin(c.bootstrap)
    old = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15).coordinator.id
    assert _offset_fetch_raw(c, old, group, topic) == (0, {p: 100 for p in range(PARTITIONS)})

    others = [b for b in c.ids() if b != old]
    via_others = ",".join(c.address(b) for b in others)
    c.pause(old)
    try:
        # A new coordinator (after fencing and election; the old one is stopped) acknowledges a
        # newer commit.
        wait_until(lambda: commit(via_others, 200), timeout=60, interval=0.2,
                   what="a commit acknowledged by the new coordinator")
    finally:
        c.resume(old)
    # Right after resuming, the old coordinator answers with an error or with offsets at least
    # as new as the acknowledged ones, never with its stale 100s.
    answers = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            answers.append(_offset_fetch_raw(c, old, group, topic))
        except OSError:
            continue
    assert answers, "the resumed broker never answered"
    stale = [a for a in answers if a[0] == 0 and any(o < 200 for o in a[1].values())]
    assert not stale, f"{len(stale)} of {len(answers)} answers were stale, first {stale[0]}"
    print(f"\nresumed ex-coordinator {old}: {len(answers)} OffsetFetch answers, error codes "
          f"{sorted({a[0] for a in answers})}, none stale")


class Tracked:
    """A confluent-kafka group member that records its rebalance callbacks and librdkafka's
    own rebalance count (statistics `cgrp.rebalance_cnt`)."""

    def __init__(self, bootstrap, group, topic, name):
        import json

        self.events = []  # ("assign" | "revoke", partitions)
        self.rebalance_cnt = None
        self.consumed = defaultdict(set)

        def stats(s):
            cgrp = json.loads(s).get("cgrp") or {}
            if "rebalance_cnt" in cgrp:
                self.rebalance_cnt = cgrp["rebalance_cnt"]

        self.c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # Longer than any failover on a loaded machine: librdkafka rejoins by itself after
            # a session without a successful heartbeat, which this test must not provoke.
            "session.timeout.ms": 45000,
            "heartbeat.interval.ms": 500,
            "fetch.wait.max.ms": 100,
            "topic.metadata.refresh.interval.ms": 1000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 200,
            "retry.backoff.ms": 50,
            "statistics.interval.ms": 200,
            "stats_cb": stats,
        })
        self.c.subscribe([topic],
                         on_assign=lambda c, ps: self.events.append(("assign", sorted(p.partition for p in ps))),
                         on_revoke=lambda c, ps: self.events.append(("revoke", sorted(p.partition for p in ps))))

    def step(self):
        msg = self.c.poll(0.05)
        if msg is not None and not msg.error():
            self.consumed[msg.partition()].add(msg.offset())

    def owned(self):
        return sorted(tp.partition for tp in self.c.assignment())


def test_a_new_coordinator_takes_the_group_over_without_a_rebalance(cluster3):
    """Two confluent-kafka members share a topic; the broker coordinating their group is
    SIGKILLed. The new coordinator restores the group from its GroupMetadata record in
    __consumer_offsets: the members keep their member ids, generation and partitions (no
    rebalance callback, librdkafka's rebalance count unchanged), DescribeGroups from the new
    coordinator shows the same Stable group, the committed offsets are intact, and commits
    with the old generation are accepted afterwards."""
    c = cluster3
    for b in c.ids():  # earlier tests leave brokers dead
        if b not in c.running():
            c.start(b)
    c.wait_brokers()
    topic = create_topic(c.bootstrap, topic_name("gm"), PARTITIONS, replication_factor=3)
    c.wait_settled(topic)
    produce_all(producer(c.bootstrap, acks="all"), topic,
                [{"value": b"v", "partition": i % PARTITIONS} for i in range(PARTITIONS * 20)])
    group = topic_name("grp-gm")
    members = [Tracked(c.bootstrap, group, topic, f"m{i}") for i in range(2)]
    try:
        def settled():
            for m in members:
                m.step()
            owned = [m.owned() for m in members]
            done = all(sum(len(m.consumed[p]) for m in members) == 20 for p in range(PARTITIONS))
            if not (done and all(owned) and sorted(sum(owned, [])) == list(range(PARTITIONS))):
                return None
            return all(m.rebalance_cnt is not None for m in members)

        wait_until(settled, timeout=90, interval=0, what="both members assigned and caught up")
        for m in members:
            m.c.commit(asynchronous=False)
        a = admin(c.bootstrap)
        before = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        assert before.state == ConsumerGroupState.STABLE
        ids_before = sorted(m.member_id for m in before.members)
        owned_before = [m.owned() for m in members]
        events_before = [list(m.events) for m in members]
        counts_before = [m.rebalance_cnt for m in members]
        committed_before = committed_by_admin(a, group, topic)
        assert committed_before == {p: 20 for p in range(PARTITIONS)}
        old = before.coordinator.id

        c.kill(old)
        others = [b for b in c.ids() if b != old]
        via_others = ",".join(c.address(b) for b in others)

        # While the coordinator moves, the group is watched with raw FindCoordinator and
        # DescribeGroups requests, not librdkafka's admin client: its coordinator-request path
        # can abort the whole process when the coordinator changes under a request
        # (librdkafka 2.16 "rd_kafka_enq_once_del_source_return: Assertion `eonce->refcnt > 0'",
        # seen in CI). The members themselves are the real clients under test.
        def taken_over():
            for m in members:
                m.step()
            try:
                fc = c.request(others[0], FindCoordinatorRequest(key=group, key_type=0), 2).to_dict()
                if fc["error_code"] != 0 or fc["node_id"] in (old, -1):
                    return None
                dg = c.request(fc["node_id"], DescribeGroupsRequest(groups=[group]), 3).to_dict()
            except OSError:
                return None
            g = dg["groups"][0]
            if g["error_code"] != 0 or g["group_state"] != "Stable":
                return None
            return fc["node_id"], sorted(mm["member_id"] for mm in g["members"])

        new_coordinator, members_after = wait_until(
            taken_over, timeout=MAX_RESUME_SECONDS, interval=0.1,
            what="the group Stable on a new coordinator")
        assert members_after == ids_before
        # Once the group has settled on its new coordinator, Kafka's own admin client agrees.
        a = admin(via_others)
        after = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        assert after.coordinator.id == new_coordinator
        assert after.state == ConsumerGroupState.STABLE
        assert sorted(m.member_id for m in after.members) == ids_before
        assert committed_by_admin(a, group, topic) == committed_before

        # The members go on: new records are consumed and committed with the generation they
        # had, and nothing rebalanced (for several heartbeat rounds on the new coordinator).
        produce_all(producer(via_others, acks="all"), topic,
                    [{"value": b"w", "partition": p} for p in range(PARTITIONS)])
        deadline = time.monotonic() + 60
        while not all(sum(len(m.consumed[p]) for m in members) == 21 for p in range(PARTITIONS)):
            assert time.monotonic() < deadline, f"members stopped consuming: {[m.events for m in members]}"
            for m in members:
                m.step()
        for m in members:
            res = m.c.commit(asynchronous=False)
            assert all(tp.error is None for tp in res), res
        settle_until = time.monotonic() + 5
        while time.monotonic() < settle_until:
            for m in members:
                m.step()
        assert [list(m.events) for m in members] == events_before, "a rebalance happened"
        assert [m.rebalance_cnt for m in members] == counts_before
        assert [m.owned() for m in members] == owned_before
        assert committed_by_admin(a, group, topic) == {p: 21 for p in range(PARTITIONS)}
        final = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        assert final.state == ConsumerGroupState.STABLE
        assert sorted(m.member_id for m in final.members) == ids_before
        print(f"\ncoordinator {old} killed; group taken over by broker {after.coordinator.id} "
              f"with members {ids_before} and no rebalance")
    finally:
        for m in members:
            m.c.close()

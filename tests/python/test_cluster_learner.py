"""A fourth broker that is not a metadata-quorum voter joins as a Raft learner.

`scripts/cluster up 4` with RAFTKA_CLUSTER_VOTERS=3: brokers 1-3 are the voters of
`controller.quorum.voters`, broker 4 names them but not itself. It must still become a full
broker: listed by every broker, given replicas and leadership by the controller, able to answer
admin and produce requests, and its partitions must fail over when it is killed and come back
to it (preferred leader) when it restarts, with every acknowledged record kept exactly once.
"""

import time

import pytest
from confluent_kafka.admin import NewTopic

from conftest import CLUSTER3_ENV, Cluster, free_port_base
from helpers import admin, topic_name, wait_until
from test_cluster_failover import IdempotentLoad, verify_read_back

BROKERS = [1, 2, 3, 4]
PARTITIONS = 4


@pytest.fixture(scope="module")
def cluster4(request, tmp_path_factory):
    env = {**CLUSTER3_ENV, "RAFTKA_CLUSTER_VOTERS": "3"}
    c = Cluster(tmp_path_factory.mktemp("cluster4-learner"), free_port_base(4), env)
    request.module._raftka_cluster = c
    c.up(4)
    try:
        c.wait_brokers(expected=BROKERS)
        yield c
    finally:
        c.down()


def test_learner_gets_replicas_and_leadership_and_fails_over(cluster4):
    c = cluster4
    name = topic_name("learner")
    # Created through the learner itself: admin requests work on every broker.
    a = admin(c.address(4))
    a.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=3,
                              config={"min.insync.replicas": "2"})],
                    operation_timeout=15)[name].result(timeout=30)
    before = c.wait_settled(name, via=BROKERS)
    led_by_4 = [p for p, (leader, *_rest) in before.items() if leader == 4]
    assert led_by_4, f"the controller gave the learner no leadership: {before}"
    assert all(len(v[2]) == 3 for v in before.values())

    load = IdempotentLoad(c.address(4), name, partitions=PARTITIONS).start()
    try:
        wait_until(lambda: all(load.acked_count(p) > 20 for p in range(PARTITIONS)),
                   timeout=60, what="acknowledged writes on every partition")
        fault = time.monotonic()
        c.kill(4)
        target = led_by_4[0]
        moved = c.wait_settled(name, via=[1, 2, 3], full_isr=False, preferred=False,
                               check=lambda v: v[target][0] not in (-1, 4))
        assert moved[target][1] > before[target][1], "leader epoch did not grow"
        wait_until(lambda: load.first_ack_after(target, fault), timeout=60,
                   what=f"an acknowledged write on partition {target} after the kill")
        c.start(4)
        # Back in every ISR and leading its preferred partitions again.
        after = c.wait_settled(name, via=BROKERS, full_isr=True, preferred=True, timeout=60)
        assert after[target][0] == 4
        assert after[target][1] > moved[target][1]
        mark = time.monotonic()
        wait_until(lambda: load.first_ack_after(target, mark), timeout=60,
                   what="acknowledged writes again once the learner leads")
    finally:
        load.stop()
    summary = verify_read_back(c.bootstrap, load)
    assert all(acked > 0 for acked, _read in summary.values())

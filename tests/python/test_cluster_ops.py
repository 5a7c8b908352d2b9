"""Three-broker cluster: operator APIs of issue 15 through real clients.

ElectLeaders (confluent-kafka's AdminClient.elect_leaders): after a failover the preferred
replica is back in the ISR but does not lead (automatic rebalancing is off in this module);
a preferred election through a broker that is not the controller moves leadership back with a
new leader epoch; elections that would change nothing answer ELECTION_NOT_NEEDED, an unclean
election of a partition that has a leader too, and unknown partitions
UNKNOWN_TOPIC_OR_PARTITION.
"""

import pytest
from confluent_kafka import ElectionType, KafkaError, TopicPartition
from confluent_kafka.admin import NewTopic

from helpers import admin, topic_name

# Leadership must not move back by itself, or the election would have nothing to do.
CLUSTER_ENV = {"RAFTKA_AUTO_LEADER_REBALANCE_ENABLE": "false"}


def elect(cluster, via, election, partitions):
    """elect_leaders through broker `via`: {(topic, partition): error code or None}."""
    a = admin(cluster.address(via))
    out = a.elect_leaders(election, partitions).result(timeout=30)
    return {(tp.topic, tp.partition): (None if e is None else e.code()) for tp, e in out.items()}


def test_preferred_election_moves_leadership_back_after_a_failover(cluster3):
    name = topic_name("elect")
    a = admin(cluster3.address(1))
    a.create_topics([NewTopic(name, num_partitions=1, replication_factor=3)])[name].result(30)
    view = cluster3.wait_settled(name)
    preferred, epoch, replicas, _ = view[0]
    assert preferred == replicas[0]
    # Fail the preferred leader over and bring it back: it rejoins the ISR as a follower.
    cluster3.kill(preferred)
    others = [b for b in cluster3.ids() if b != preferred]
    cluster3.wait_settled(name, via=others, full_isr=False, preferred=False,
                          check=lambda v: v[0][0] != preferred)
    cluster3.start(preferred)
    after = cluster3.wait_settled(name, preferred=False)
    leader, failover_epoch, _, _ = after[0]
    assert leader != preferred and failover_epoch > epoch, after
    # Elect through a broker that is not the controller (the command is forwarded).
    controller = cluster3.controller()
    via = next(b for b in cluster3.ids() if b != controller)
    assert elect(cluster3, via, ElectionType.PREFERRED, [TopicPartition(name, 0)]) == {(name, 0): None}
    back = cluster3.wait_settled(name)  # identical on every broker, preferred leader, full ISR
    assert back[0][0] == preferred and back[0][1] == failover_epoch + 1, back
    # Nothing to do any more.
    again = elect(cluster3, via, ElectionType.PREFERRED, [TopicPartition(name, 0)])
    assert again == {(name, 0): KafkaError.ELECTION_NOT_NEEDED}
    unclean = elect(cluster3, controller, ElectionType.UNCLEAN, [TopicPartition(name, 0)])
    assert unclean == {(name, 0): KafkaError.ELECTION_NOT_NEEDED}
    assert cluster3.partitions(controller, name)[0][1] == failover_epoch + 1


def test_election_of_all_partitions_and_of_unknown_ones(cluster3):
    name = topic_name("electall")
    a = admin(cluster3.address(2))
    a.create_topics([NewTopic(name, num_partitions=3, replication_factor=2)])[name].result(30)
    cluster3.wait_settled(name)
    # Every partition is led by its preferred replica: asked for all, nothing is listed.
    assert elect(cluster3, 2, ElectionType.PREFERRED, None) == {}
    missing = elect(cluster3, 3, ElectionType.PREFERRED,
                    [TopicPartition(name, 7), TopicPartition(name + "-nope", 0)])
    assert missing == {
        (name, 7): KafkaError.UNKNOWN_TOPIC_OR_PART,
        (name + "-nope", 0): KafkaError.UNKNOWN_TOPIC_OR_PART,
    }


@pytest.mark.parametrize("version", [0, 1, 2])
def test_elect_leaders_every_version_with_kafka_python(cluster3, version):
    """kafka-python's protocol classes, one request per version, straight to one broker."""
    from kafka.protocol.admin import ElectLeadersRequest, ElectLeadersResponse

    from helpers import raw_request

    name = topic_name(f"electv{version}")
    a = admin(cluster3.address(1))
    a.create_topics([NewTopic(name, num_partitions=1, replication_factor=3)])[name].result(30)
    cluster3.wait_settled(name)
    req = ElectLeadersRequest(
        election_type=0, timeout_ms=10000,
        topic_partitions=[ElectLeadersRequest.TopicPartitions(topic=name, partitions=[0])])
    resp = raw_request(cluster3.address(3), req, ElectLeadersResponse, version)
    d = resp.to_dict()
    [topic] = d["replica_election_results"]
    [part] = topic["partition_result"]
    assert (topic["topic"], part["partition_id"], part["error_code"]) == (name, 0, 84), d


def describe_quorum(cluster, via, version=2):
    from kafka.protocol.admin import DescribeQuorumRequest, DescribeQuorumResponse

    from helpers import raw_request

    req = DescribeQuorumRequest(topics=[DescribeQuorumRequest.TopicData(
        topic_name="__cluster_metadata",
        partitions=[DescribeQuorumRequest.TopicData.PartitionData(partition_index=0)])])
    d = raw_request(cluster.address(via), req, DescribeQuorumResponse, version).to_dict()
    [topic] = d["topics"]
    [part] = topic["partitions"]
    return part, d.get("nodes", [])


def test_describe_quorum_through_every_broker(cluster3):
    """DescribeQuorum answered by the quorum leader (others forward it): voters, leader, epoch,
    high watermark, log ends and last fetch times; kafka-python's describe_metadata_quorum."""
    import time

    from kafka.admin import KafkaAdminClient

    controller = cluster3.controller()
    for via in cluster3.ids():
        part, nodes = describe_quorum(cluster3, via)
        assert part["error_code"] == 0, part
        assert part["leader_id"] == controller and part["leader_epoch"] >= 1, part
        voters = {v["replica_id"]: v for v in part["current_voters"]}
        assert sorted(voters) == [1, 2, 3] and part["observers"] == [], part
        now = time.time() * 1000
        for v in voters.values():
            assert 0 < v["log_end_offset"] <= part["high_watermark"] + 1000, part
            assert now - 10000 < v["last_fetch_timestamp"] <= now + 1000, v
        assert sorted((n["node_id"], n["listeners"][0]["port"]) for n in nodes) == [
            (i, cluster3.port(i)) for i in cluster3.ids()], nodes
    k = KafkaAdminClient(bootstrap_servers=cluster3.address(1), request_timeout_ms=10000)
    try:
        q = k.describe_metadata_quorum()
    finally:
        k.close()
    assert q["topics"][0]["partitions"][0]["leader_id"] == controller, q
    # A dead voter's last fetch and caught-up times stop moving while the others' go on.
    victim = next(b for b in cluster3.ids() if b != controller)
    cluster3.kill(victim)
    try:
        def stale():
            part, _ = describe_quorum(cluster3, controller)
            v = {x["replica_id"]: x for x in part["current_voters"]}
            now = time.time() * 1000
            fresh = [b for b in v if now - v[b]["last_fetch_timestamp"] < 1500]
            return sorted(fresh) == sorted(set(cluster3.ids()) - {victim}) and v
        from helpers import wait_until

        v = wait_until(stale, timeout=20, what="the killed voter's fetch time to go stale")
        assert v[victim]["last_caught_up_timestamp"] <= v[victim]["last_fetch_timestamp"]
    finally:
        cluster3.start(victim)
        cluster3.wait_brokers()


def test_unclean_election_leaves_the_isr_only_when_no_member_is_alive(cluster3):
    """Replicas [a, b]: b dies (ISR [a]), a stops answering, b comes back out of sync. The
    partition has no leader; a preferred election cannot help (a is fenced); an unclean one
    elects b, which becomes the ISR alone. Broker c stays up, so the quorum always has two."""
    from helpers import wait_until

    a, b, c = 2, 3, 1
    name = topic_name("unclean")
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewTopic as KNewTopic

    k = KafkaAdminClient(bootstrap_servers=cluster3.address(c), request_timeout_ms=10000)
    try:
        k.create_topics([KNewTopic(name, -1, -1, replica_assignments={0: [a, b]})])
    finally:
        k.close()
    cluster3.wait_settled(name)
    cluster3.kill(b)
    cluster3.wait_settled(name, via=[c], full_isr=False, check=lambda v: v[0][3] == (a,))
    cluster3.pause(a)
    try:
        cluster3.start(b)
        # a is fenced (b and c form the quorum): no leader, and the ISR keeps only a.
        def leaderless():
            p = cluster3.partitions(c, name)
            return p is not None and p[0][0] == -1 and b in cluster3.broker_ids_seen(c) and p

        view = wait_until(leaderless, timeout=30, what="a leaderless partition with b back")
        assert view[0][3] == (a,), view
        # Metadata shows no leader as soon as the controller finds a's heartbeat overdue
        # (suspect), before it fences a; until then the image still names a leader and a
        # preferred election is not needed. Once a is fenced it must be refused.
        def preferred():
            got = elect(cluster3, c, ElectionType.PREFERRED, [TopicPartition(name, 0)])
            return got != {(name, 0): KafkaError.ELECTION_NOT_NEEDED} and got

        assert wait_until(preferred, timeout=30, what="a fenced (a preferred election no longer ELECTION_NOT_NEEDED)") == {
            (name, 0): KafkaError.PREFERRED_LEADER_NOT_AVAILABLE}
        # b is listed as soon as its old registration is in the image, fenced; until its new
        # incarnation has registered and heartbeated, no replica is eligible even uncleanly.
        def unclean():
            got = elect(cluster3, b, ElectionType.UNCLEAN, [TopicPartition(name, 0)])
            return got != {(name, 0): KafkaError.ELIGIBLE_LEADERS_NOT_AVAILABLE} and got

        assert wait_until(unclean, timeout=30, what="b unfenced (an unclean election finds it eligible)") == {
            (name, 0): None}
        after = cluster3.partitions(c, name)[0]
        assert (after[0], after[3]) == (b, (b,)) and after[1] > view[0][1], after
    finally:
        cluster3.resume(a)
    # a comes back as a follower of b and rejoins the ISR.
    cluster3.wait_settled(name, preferred=False, check=lambda v: v[0][0] == b)

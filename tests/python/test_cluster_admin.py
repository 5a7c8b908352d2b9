"""Three-broker cluster (scripts/cluster up 3): admin through every node, one consistent view
of the cluster from every broker, and Produce routing (NOT_LEADER_OR_FOLLOWER from followers).

Clients: confluent-kafka's AdminClient and Producer, kafka-python's KafkaAdminClient and its
protocol classes for raw requests to one chosen broker, kcat for listing and consuming.
"""

import re
import time

import pytest
from confluent_kafka.admin import NewTopic
from kafka.admin import KafkaAdminClient
from kafka.protocol.producer import ProduceRequest
from kafka.record.default_records import DefaultRecordBatchBuilder

from helpers import admin, kcat, produce_all, producer, topic_name, wait_until

NOT_LEADER_OR_FOLLOWER = 6


def kadmin_via(cluster, broker_id):
    return KafkaAdminClient(bootstrap_servers=cluster.address(broker_id), request_timeout_ms=10000)


def test_every_broker_reports_the_same_cluster(cluster3):
    views = {b: cluster3.metadata(b, []) for b in cluster3.ids()}
    for b, md in views.items():
        assert sorted((x["node_id"], x["host"], x["port"]) for x in md["brokers"]) == [
            (i, "127.0.0.1", cluster3.port(i)) for i in cluster3.ids()
        ], f"broker {b}: {md['brokers']}"
    # one cluster id and one controller, which is a live broker
    assert len({md["cluster_id"] for md in views.values()}) == 1
    controllers = {md["controller_id"] for md in views.values()}
    assert len(controllers) == 1 and controllers <= set(cluster3.ids()), views
    # kcat marks the same controller through any broker
    for b in cluster3.ids():
        out = kcat("-b", cluster3.address(b), "-L", "-m", "5").stdout.decode()
        [ctl] = re.findall(r"broker (\d+) at \S+ \(controller\)", out)
        assert int(ctl) in controllers


def _create_via(cluster, broker_id, name, client):
    """Creates an RF=3, 3-partition topic through exactly one broker with the given client."""
    if client == "confluent":
        a = admin(cluster.address(broker_id))  # must outlive the future
        fut = a.create_topics(
            [NewTopic(name, num_partitions=3, replication_factor=3, config={"min.insync.replicas": "2"})],
            operation_timeout=15,
        )[name]
        assert fut.result(timeout=30) is None
    else:
        from kafka.admin import NewTopic as KNewTopic

        ka = kadmin_via(cluster, broker_id)
        try:
            ka.create_topics([KNewTopic(name, num_partitions=3, replication_factor=3,
                                        topic_configs={"min.insync.replicas": "2"})])
        finally:
            ka.close()


def _delete_via(cluster, broker_id, name, client):
    if client == "confluent":
        a = admin(cluster.address(broker_id))
        assert a.delete_topics([name], operation_timeout=15)[name].result(30) is None
    else:
        ka = kadmin_via(cluster, broker_id)
        try:
            ka.delete_topics([name])
        finally:
            ka.close()


@pytest.mark.parametrize(
    "create_via,describe_via,delete_via,client",
    [(3, 2, 1, "confluent"), (1, 3, 2, "kafka-python"), (2, 1, 3, "confluent")],
)
def test_admin_via_every_node(cluster3, create_via, describe_via, delete_via, client):
    name = topic_name(f"adm{create_via}")
    _create_via(cluster3, create_via, name, client)

    # every broker learns the topic; once settled all three agree on leaders, epochs and ISR
    view = cluster3.wait_settled(name, via=cluster3.ids())
    assert sorted(view) == [0, 1, 2]
    for p, (leader, epoch, replicas, isr) in view.items():
        assert sorted(replicas) == [1, 2, 3], view
        assert set(isr) == {1, 2, 3} and leader == replicas[0] and epoch >= 0, view
    # leaders are spread: each broker leads exactly one of the three partitions
    assert sorted(v[0] for v in view.values()) == [1, 2, 3], view

    # list through another broker (kcat) and describe through a third (kafka-python)
    out = kcat("-b", cluster3.address(delete_via), "-L", "-t", name, "-m", "5").stdout.decode()
    assert f'topic "{name}" with 3 partitions' in out, out
    for p, (leader, _e, replicas, isr) in view.items():
        assert f"partition {p}, leader {leader}, replicas: {','.join(map(str, replicas))}" in out, out
    ka = kadmin_via(cluster3, describe_via)
    try:
        [desc] = ka.describe_topics([name])
    finally:
        ka.close()
    assert desc["error_code"] == 0
    described = {
        p["partition_index"]: (p["leader_id"], tuple(p["replica_nodes"]), tuple(sorted(p["isr_nodes"])))
        for p in desc["partitions"]
    }
    assert described == {p: (v[0], v[2], v[3]) for p, v in view.items()}
    # the topic config made it too (asked through yet another broker)
    from confluent_kafka.admin import ConfigResource

    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    a = admin(cluster3.address(create_via))
    cfg = a.describe_configs([res])[res].result(timeout=20)
    assert cfg["min.insync.replicas"].value == "2"

    _delete_via(cluster3, delete_via, name, client)

    def gone_everywhere():
        return all(cluster3.partitions(b, name) is None for b in cluster3.ids())

    wait_until(gone_everywhere, timeout=20, what=f"{name} deleted on every broker")
    for b in cluster3.ids():
        assert name not in set(admin(cluster3.address(b)).list_topics(timeout=10).topics)


def _raw_batch(value):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    b.append(0, timestamp=int(time.time() * 1000), key=None, value=value, headers=[])
    return bytes(b.build())


def _raw_produce(cluster, broker_id, topic, partition, value, acks=-1, version=9):
    req = ProduceRequest(
        transactional_id=None, acks=acks, timeout_ms=10000,
        topic_data=[ProduceRequest.TopicProduceData(name=topic, partition_data=[
            ProduceRequest.TopicProduceData.PartitionProduceData(index=partition, records=_raw_batch(value))])],
    )
    resp = cluster.request(broker_id, req, version, timeout=15).to_dict()
    [t] = resp["responses"]
    [p] = t["partition_responses"]
    return p["error_code"], p["base_offset"]


def test_produce_to_a_follower_is_not_leader_or_follower(cluster3):
    name = topic_name("nlf")
    _create_via(cluster3, 2, name, "confluent")
    view = cluster3.wait_settled(name, via=cluster3.ids())
    written = {p: [] for p in view}
    for p, (leader, _e, replicas, _isr) in view.items():
        for b in replicas:
            if b == leader:
                continue
            # raw Produce (kafka-python protocol objects, no client routing) to a follower
            code, offset = _raw_produce(cluster3, b, name, p, f"wrong-{b}".encode())
            assert (code, offset) == (NOT_LEADER_OR_FOLLOWER, -1), (p, b)
        code, offset = _raw_produce(cluster3, leader, name, p, f"raw-{p}".encode())
        assert (code, offset) == (0, 0), (p, leader)
        written[p].append(f"raw-{p}")

    # a real client bootstrapped through one broker only is routed to each leader
    for via in cluster3.ids():
        prod = producer(cluster3.address(via), acks="all", **{"enable.idempotence": True})
        recs = [{"value": f"via{via}-{p}".encode(), "partition": p} for p in view]
        produce_all(prod, name, recs)
        for p in view:
            written[p].append(f"via{via}-{p}")

    # every broker serves the same committed data: kcat consumes each partition through each
    # broker's bootstrap (librdkafka then fetches from the leader)
    for via in cluster3.ids():
        for p in view:
            out = kcat("-b", cluster3.address(via), "-C", "-t", name, "-p", p, "-o", "beginning",
                       "-e", "-q", "-f", "%s\\n").stdout.decode().split()
            assert out == written[p], (via, p)
    # nothing moved: no leader change happened
    assert cluster3.wait_settled(name, via=cluster3.ids()) == view

"""The HTTP admin listener's /metrics on a three-broker cluster, read with prometheus_client's
parser: the numbers move with what happens — under-replicated partitions while a broker is down
and back to 0 once it has rejoined, bytes and messages in with produce, consumer-group lag as
produced minus committed."""

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from helpers import admin, consumer, topic_name, wait_until
from httpkit import cluster_view, scrape, total, value

URP = "kafka_server_replicamanager_underreplicatedpartitions"


def _create(c, name, partitions):
    a = admin(c.address(1))
    a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=3)],
                    operation_timeout=15)[name].result(30)
    return c.wait_settled(name, via=c.ids())


def _produce(c, name, count, size=100, partition=None):
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
    kw = {} if partition is None else {"partition": partition}
    for i in range(count):
        p.produce(name, value=b"x" * size, key=str(i).encode(), **kw)
    assert p.flush(30) == 0


def test_gauges_and_counters_are_exposed_with_kafka_names(cluster3):
    c = cluster3
    s = scrape(c, 1)
    for name in [URP, "kafka_server_replicamanager_leadercount",
                 "kafka_server_replicamanager_partitioncount",
                 "kafka_controller_kafkacontroller_activecontrollercount",
                 "kafka_controller_kafkacontroller_offlinepartitionscount",
                 "kafka_server_raft_metrics_current_epoch", "raftka_sled_size_on_disk_bytes"]:
        assert value(s, name) is not None, name
    # exactly one active controller in the cluster
    assert wait_until(lambda: total(c, c.ids(), "kafka_controller_kafkacontroller_activecontrollercount") == 1,
                      what="one active controller")
    assert value(s, "kafka_network_requestmetrics_requests_total", request="Metadata") > 0


def test_bytes_and_messages_in_grow_with_produce(cluster3):
    c = cluster3
    name = topic_name("metrics-in")
    _create(c, name, 2)
    before_bytes = total(c, c.ids(), "kafka_server_brokertopicmetrics_bytesin_total", topic=name)
    before_msgs = total(c, c.ids(), "kafka_server_brokertopicmetrics_messagesin_total", topic=name)
    assert before_bytes == 0 and before_msgs == 0
    _produce(c, name, 200, size=100)
    assert total(c, c.ids(), "kafka_server_brokertopicmetrics_messagesin_total", topic=name) == 200
    # the batches hold the 200 values of 100 bytes each plus record and batch headers
    grown = total(c, c.ids(), "kafka_server_brokertopicmetrics_bytesin_total", topic=name)
    assert grown >= 200 * 100, grown
    assert total(c, c.ids(), "kafka_network_requestmetrics_totaltimems_count", request="Produce") >= 1


def test_lag_is_produced_minus_committed(cluster3):
    c = cluster3
    name = topic_name("metrics-lag")
    group = f"lag-{name}"
    _create(c, name, 1)
    _produce(c, name, 50, partition=0)
    cons = consumer(c.bootstrap, **{"group.id": group})
    try:
        cons.commit(offsets=[TopicPartition(name, 0, 20)], asynchronous=False)
    finally:
        cons.close()

    def lag():
        found = [value(scrape(c, b), "kafka_consumergroup_lag", consumergroup=group, topic=name, partition=0)
                 for b in c.ids()]
        found = [f for f in found if f is not None]
        return found if found and found[0] == 30 else None

    found = wait_until(lag, timeout=20, what="kafka_consumergroup_lag == 30")
    assert found == [30], "exactly one broker (the coordinator) reports the group's lag"
    # the coordinator's /v1/cluster shows the same
    views = [cluster_view(c, b) for b in c.ids()]
    [g] = [g for v in views for g in v["groups"] if g["group"] == group]
    assert g["total_lag"] == 30 and g["lag"][0]["committed"] == 20 and g["lag"][0]["end"] == 50


def test_under_replicated_partitions_follow_a_broker_down_and_back(cluster3):
    c = cluster3
    name = topic_name("metrics-urp")
    _create(c, name, 3)
    wait_until(lambda: total(c, c.ids(), URP) == 0, timeout=30, what="no under-replicated partitions")
    shrinks = total(c, c.ids(), "kafka_server_replicamanager_isrshrinks_total")
    expands = total(c, c.ids(), "kafka_server_replicamanager_isrexpands_total")

    c.kill(3)
    survivors = [1, 2]
    # every partition of the topic (and of __consumer_offsets, if any) lost broker 3 from its ISR
    urp = wait_until(lambda: total(c, survivors, URP) >= 3 and total(c, survivors, URP), timeout=20,
                     what="under-replicated partitions reported after a broker died")
    assert urp >= 3
    assert total(c, survivors, "kafka_server_replicamanager_isrshrinks_total") > shrinks
    ctl_offline = total(c, survivors, "kafka_controller_kafkacontroller_offlinepartitionscount")
    assert ctl_offline == 0, "every partition kept a live leader"

    c.start(3)
    wait_until(lambda: total(c, c.ids(), URP) == 0, timeout=40,
               what="under-replicated partitions back to 0 after the broker rejoined")
    assert total(c, c.ids(), "kafka_server_replicamanager_isrexpands_total") > expands

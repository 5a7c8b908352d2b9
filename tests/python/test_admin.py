"""Topic administration through confluent-kafka's AdminClient and kafka-python's
KafkaAdminClient: CreateTopics, Metadata, DescribeConfigs, DeleteTopics, CreatePartitions,
DescribeCluster and their error codes."""

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic
import kafka.errors as kerr
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import ConfigResourceType as KConfigResourceType
from kafka.admin import KafkaAdminClient
from kafka.admin import NewPartitions as KNewPartitions
from kafka.admin import NewTopic as KNewTopic

from helpers import (
    admin,
    create_topic,
    list_topic_names,
    produce_all,
    producer,
    consume_to_end,
    topic_name,
    wait_for_topic,
    wait_until,
)

# A broker default that differs from Kafka's built-in one, so "-1 = broker default" is visible.
BROKER_ENV = {"RAFTKA_NUM_PARTITIONS": "3"}
DEFAULT_PARTITIONS = 3

# Kafka's ConfigSource codes (DescribeConfigs v1+)
DYNAMIC_TOPIC_CONFIG = 1  # "TOPIC_CONFIG"
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5


def src(entry):
    return int(getattr(entry.source, "value", entry.source))


@pytest.fixture
def kadmin(bootstrap):
    a = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    yield a
    a.close()


def create_result(bootstrap, new_topics):
    """{name: None or KafkaError code} for one CreateTopics call."""
    a = admin(bootstrap)  # must outlive the futures
    futs = a.create_topics(new_topics, operation_timeout=10)
    out = {}
    for name, fut in futs.items():
        try:
            fut.result(timeout=20)
            out[name] = None
        except KafkaException as e:
            out[name] = e.args[0].code()
    return out


# ------------------------------------------------------------------------------------------------
# confluent-kafka AdminClient


def test_create_list_describe_partitions_and_leaders(bootstrap):
    name = topic_name("admin")
    assert create_result(bootstrap, [NewTopic(name, num_partitions=5, replication_factor=1)]) == {name: None}
    t = wait_for_topic(bootstrap, name, 5)
    assert sorted(t.partitions) == [0, 1, 2, 3, 4]
    for p in t.partitions.values():
        assert p.leader == 1
        assert list(p.replicas) == [1]
        assert list(p.isrs) == [1]
    assert name in list_topic_names(bootstrap)


def test_create_with_broker_defaults(bootstrap):
    """num_partitions / replication_factor -1 mean the broker's num.partitions and
    default.replication.factor (CreateTopics v4+)."""
    name = topic_name("dflt")
    assert create_result(bootstrap, [NewTopic(name, num_partitions=-1, replication_factor=-1)]) == {name: None}
    t = wait_for_topic(bootstrap, name)
    assert len(t.partitions) == DEFAULT_PARTITIONS
    assert all(list(p.replicas) == [1] for p in t.partitions.values())


def test_describe_configs_topic_sources(bootstrap):
    name = topic_name("cfg")
    create_topic(bootstrap, name, 1, config={"retention.ms": "3600000", "cleanup.policy": "compact"})
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    a = admin(bootstrap)
    entries = a.describe_configs([res])[res].result(timeout=20)
    assert entries["retention.ms"].value == "3600000"
    assert src(entries["retention.ms"]) == DYNAMIC_TOPIC_CONFIG
    assert entries["cleanup.policy"].value == "compact"
    assert src(entries["cleanup.policy"]) == DYNAMIC_TOPIC_CONFIG
    # not overridden anywhere: Kafka's defaults with source DEFAULT_CONFIG
    assert entries["retention.bytes"].value == "-1"
    assert src(entries["retention.bytes"]) == DEFAULT_CONFIG
    assert entries["max.message.bytes"].value == "1048588"
    assert src(entries["max.message.bytes"]) == DEFAULT_CONFIG


def test_describe_configs_broker(bootstrap):
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    a = admin(bootstrap)
    entries = a.describe_configs([res])[res].result(timeout=20)
    # set through RAFTKA_NUM_PARTITIONS: a static broker config
    assert entries["num.partitions"].value == str(DEFAULT_PARTITIONS)
    assert src(entries["num.partitions"]) == STATIC_BROKER_CONFIG
    assert entries["auto.create.topics.enable"].value == "true"
    assert src(entries["auto.create.topics.enable"]) == DEFAULT_CONFIG
    assert entries["message.max.bytes"].value == "1048588"


def test_create_topic_with_invalid_config_is_rejected(bootstrap):
    name = topic_name("badcfg")
    res = create_result(bootstrap, [NewTopic(name, 1, 1, config={"retention.ms": "not-a-number"})])
    assert res[name] == KafkaError.INVALID_CONFIG
    assert name not in list_topic_names(bootstrap)


def test_delete_topic(bootstrap):
    name = create_topic(bootstrap, topic_name("del"), 2)
    produce_all(producer(bootstrap), name, [{"value": b"x", "partition": 0}])
    a = admin(bootstrap)
    a.delete_topics([name], operation_timeout=10)[name].result(timeout=20)
    wait_until(lambda: name not in list_topic_names(bootstrap), what=f"{name} gone from metadata")
    # recreating the same name starts from an empty log
    create_topic(bootstrap, name, 2)
    assert consume_to_end(bootstrap, name, [0, 1]) == {0: [], 1: []}


def test_delete_unknown_topic(bootstrap):
    name = topic_name("nosuch")
    a = admin(bootstrap)
    with pytest.raises(KafkaException) as ei:
        a.delete_topics([name], operation_timeout=10)[name].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART  # 3


def test_create_partitions_increase_and_decrease(bootstrap):
    name = create_topic(bootstrap, topic_name("parts"), 2)
    a = admin(bootstrap)
    a.create_partitions([NewPartitions(name, 5)], operation_timeout=10)[name].result(timeout=20)
    wait_for_topic(bootstrap, name, 5)
    # the new partitions take records
    delivered = produce_all(producer(bootstrap), name, [{"value": b"p4", "partition": 4}])
    assert delivered == [(4, 0)]
    for count in (3, 5):  # fewer, and the same number
        with pytest.raises(KafkaException) as ei:
            a.create_partitions([NewPartitions(name, count)], operation_timeout=10)[name].result(timeout=20)
        assert ei.value.args[0].code() == KafkaError.INVALID_PARTITIONS  # 37
    assert len(wait_for_topic(bootstrap, name).partitions) == 5


def test_create_existing_topic(bootstrap):
    name = create_topic(bootstrap, topic_name("dup"), 1)
    res = create_result(bootstrap, [NewTopic(name, 1, 1)])
    assert res[name] == KafkaError.TOPIC_ALREADY_EXISTS  # 36


@pytest.mark.parametrize("bad", ["bad name!", "..", ".", "x" * 250, "a/b"])
def test_create_invalid_topic_name(bootstrap, bad):
    res = create_result(bootstrap, [NewTopic(bad, 1, 1)])
    assert res[bad] == KafkaError.TOPIC_EXCEPTION  # 17
    assert bad not in list_topic_names(bootstrap)


def test_create_mixed_batch_reports_per_topic(bootstrap):
    good = topic_name("good")
    existing = create_topic(bootstrap, topic_name("exists"), 1)
    res = create_result(bootstrap, [NewTopic(good, 2, 1), NewTopic(existing, 1, 1), NewTopic("no good", 1, 1)])
    assert res[good] is None
    assert res[existing] == KafkaError.TOPIC_ALREADY_EXISTS
    assert res["no good"] == KafkaError.TOPIC_EXCEPTION
    assert len(wait_for_topic(bootstrap, good, 2).partitions) == 2


def test_describe_cluster(bootstrap):
    a = admin(bootstrap)
    desc = a.describe_cluster(request_timeout=10).result(timeout=20)
    ids = [n.id for n in desc.nodes]
    assert ids == [1]
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    assert (desc.nodes[0].host, desc.nodes[0].port) == (host, int(port))
    assert desc.controller is not None and desc.controller.id == 1
    assert desc.cluster_id


def _op_names(ops):
    return sorted(o.name for o in ops)


def test_authorized_operations_without_an_authorizer_are_everything(bootstrap):
    """KIP-430: with no authorizer every principal may do everything a resource supports:
    7 cluster operations, 8 topic operations, 3 group operations (Kafka's sets)."""
    from confluent_kafka import TopicCollection

    a = admin(bootstrap)
    cluster = a.describe_cluster(include_authorized_operations=True,
                                 request_timeout=10).result(timeout=20)
    assert _op_names(cluster.authorized_operations) == sorted([
        "CREATE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS",
        "IDEMPOTENT_WRITE"])
    topic = create_topic(bootstrap, topic_name("authops"), 1)
    desc = a.describe_topics(TopicCollection([topic]), include_authorized_operations=True,
                             request_timeout=10)[topic].result(timeout=20)
    assert _op_names(desc.authorized_operations) == sorted([
        "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "DESCRIBE_CONFIGS",
        "ALTER_CONFIGS"])
    group = topic_name("authops-g")
    g = a.describe_consumer_groups([group], include_authorized_operations=True,
                                   request_timeout=10)[group].result(timeout=20)
    assert _op_names(g.authorized_operations) == ["DELETE", "DESCRIBE", "READ"]
    # Not asked: no operations are reported (Kafka sends Integer.MIN_VALUE, "not requested").
    plain = a.describe_cluster(request_timeout=10).result(timeout=20)
    assert not plain.authorized_operations


def test_metadata_lists_broker_and_controller(bootstrap):
    md = admin(bootstrap).list_topics(timeout=10)
    assert sorted(md.brokers) == [1]
    assert md.controller_id == 1


# ------------------------------------------------------------------------------------------------
# kafka-python KafkaAdminClient (sends what it is given: no client-side validation)


def test_kafka_python_create_list_describe_delete(bootstrap, kadmin):
    name = topic_name("kp")
    kadmin.create_topics([KNewTopic(name, num_partitions=4, replication_factor=1,
                                    topic_configs={"retention.ms": "7200000"})])
    wait_until(lambda: name in kadmin.list_topics(), what="topic listed")
    [desc] = kadmin.describe_topics([name])
    assert desc["error_code"] == 0
    parts = sorted(desc["partitions"], key=lambda p: p["partition_index"])
    assert [p["partition_index"] for p in parts] == [0, 1, 2, 3]
    assert all(p["leader_id"] == 1 and list(p["replica_nodes"]) == [1] for p in parts)

    cfg = describe_topic_configs(kadmin, name)
    assert cfg["retention.ms"] == ("7200000", 1)  # TOPIC_CONFIG
    assert cfg["retention.bytes"] == ("-1", 5)  # DEFAULT_CONFIG

    kadmin.create_partitions({name: KNewPartitions(total_count=6)})
    wait_for_topic(bootstrap, name, 6)

    kadmin.delete_topics([name])
    wait_until(lambda: name not in kadmin.list_topics(), what="topic deleted")


SOURCE_CODES = {"DYNAMIC_TOPIC_CONFIG": 1, "TOPIC_CONFIG": 1, "STATIC_BROKER_CONFIG": 4, "DEFAULT_CONFIG": 5}


def describe_topic_configs(kadmin, name):
    """{config name: (value, config_source code)} via DescribeConfigs."""
    res = kadmin.describe_configs([KConfigResource(KConfigResourceType.TOPIC, name)], config_filter="all")
    out = {}
    if isinstance(res, dict):  # kafka-python 3.x: {"topic": {name: {config: {...}}}}
        for cfg, e in res["topic"][name].items():
            source = e["config_source"]
            out[cfg] = (e["value"], SOURCE_CODES.get(source, source))
    else:  # kafka-python 2.x: DescribeConfigsResponse objects
        for resp in res:
            for resource in resp.resources:
                for entry in resource[4]:
                    out[entry[0]] = (entry[1], entry[3])
    assert out, f"no config entries found in {res!r}"
    return out


def test_kafka_python_default_partitions(bootstrap, kadmin):
    name = topic_name("kpdflt")
    kadmin.create_topics([KNewTopic(name, num_partitions=-1, replication_factor=-1)])
    assert len(wait_for_topic(bootstrap, name).partitions) == DEFAULT_PARTITIONS


@pytest.mark.parametrize("partitions", [0, -5])
def test_kafka_python_invalid_partition_count(bootstrap, kadmin, partitions):
    name = topic_name("kpbad")
    with pytest.raises(kerr.InvalidPartitionsError) as ei:
        kadmin.create_topics([KNewTopic(name, num_partitions=partitions, replication_factor=1)])
    assert ei.value.errno == 37
    assert name not in list_topic_names(bootstrap)


@pytest.mark.parametrize("bad", ["bad name!", ".."])
def test_kafka_python_invalid_topic_name(kadmin, bad):
    with pytest.raises(kerr.InvalidTopicError) as ei:
        kadmin.create_topics([KNewTopic(bad, num_partitions=1, replication_factor=1)])
    assert ei.value.errno == 17


def test_kafka_python_topic_already_exists(bootstrap, kadmin):
    name = create_topic(bootstrap, topic_name("kpdup"), 1)
    with pytest.raises(kerr.TopicAlreadyExistsError) as ei:
        kadmin.create_topics([KNewTopic(name, num_partitions=1, replication_factor=1)])
    assert ei.value.errno == 36


def test_kafka_python_delete_unknown_topic(kadmin):
    with pytest.raises(kerr.UnknownTopicOrPartitionError) as ei:
        kadmin.delete_topics([topic_name("kpnosuch")])
    assert ei.value.errno == 3


def test_kafka_python_decrease_partitions(bootstrap, kadmin):
    name = create_topic(bootstrap, topic_name("kpdec"), 3)
    with pytest.raises(kerr.InvalidPartitionsError) as ei:
        kadmin.create_partitions({name: KNewPartitions(total_count=2)})
    assert ei.value.errno == 37


def test_kafka_python_describe_cluster(kadmin):
    desc = kadmin.describe_cluster()
    assert desc["controller_id"] == 1
    assert [b.get("broker_id", b.get("node_id")) for b in desc["brokers"]] == [1]


def test_create_partitions_unknown_topic(bootstrap):
    name = topic_name("nopart")
    a = admin(bootstrap)
    with pytest.raises(KafkaException) as ei:
        a.create_partitions([NewPartitions(name, 4)], operation_timeout=10)[name].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert name not in list_topic_names(bootstrap)


def test_create_partitions_validate_only(bootstrap):
    name = create_topic(bootstrap, topic_name("partsval"), 2)
    a = admin(bootstrap)
    a.create_partitions([NewPartitions(name, 6)], validate_only=True, operation_timeout=10)[name].result(timeout=20)
    assert len(wait_for_topic(bootstrap, name).partitions) == 2


def test_longest_valid_topic_name(bootstrap):
    name = "n" * 239 + topic_name("")[1:]  # 249 characters, Kafka's maximum
    assert len(name) == 249
    assert create_result(bootstrap, [NewTopic(name, 1, 1)]) == {name: None}
    wait_for_topic(bootstrap, name, 1)


def test_colliding_topic_names(bootstrap):
    """'.' and '_' collide in metric names, so Kafka refuses a topic that differs from an
    existing one only by them (INVALID_TOPIC_EXCEPTION)."""
    base = topic_name("collide")
    create_topic(bootstrap, base + ".x", 1)
    assert create_result(bootstrap, [NewTopic(base + "_x", 1, 1)]) == {base + "_x": KafkaError.TOPIC_EXCEPTION}


def test_kafka_python_describe_configs_filtered(bootstrap, kadmin):
    name = create_topic(bootstrap, topic_name("kpcfg"), 1, config={"retention.ms": "123456"})
    res = kadmin.describe_configs([KConfigResource(KConfigResourceType.TOPIC, name, configs={"retention.ms": None})])
    if isinstance(res, dict):
        entries = res["topic"][name]
    else:
        entries = {e[0]: {"value": e[1]} for r in res for resource in r.resources for e in resource[4]}
    assert set(entries) == {"retention.ms"}
    assert entries["retention.ms"]["value"] == "123456"

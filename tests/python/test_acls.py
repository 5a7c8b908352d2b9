"""ACLs (issue 13, item 3) on a three-broker cluster with authorizer.class.name set and
allow.everyone.if.no.acl.found=true (so User:ANONYMOUS, every client until SASL exists, may
administer the cluster while no ACL covers it). Proven with unmodified clients: confluent-kafka's
AdminClient and Producer for the ACL APIs and produce, kafka-python's admin client as a second
implementation, raw DescribeAcls/Metadata to each chosen broker.

- CreateAcls/DescribeAcls/DeleteAcls with Kafka's filters; ACLs reach every broker through the
  metadata quorum and survive a broker restart.
- A principal without WRITE gets TOPIC_AUTHORIZATION_FAILED; a PREFIXED allow lets it produce;
  a DENY (host rule) beats the allow.
- Metadata hides topics the principal may not DESCRIBE.
- __consumer_offsets cannot be deleted, re-partitioned or reconfigured by clients.
"""

import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    ResourcePatternType,
    ResourceType,
)
from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, KafkaAdminClient, ResourcePatternFilter
from kafka.admin import ACLResourcePatternType
from kafka.admin import ResourceType as KResourceType
from kafka.protocol.admin import DescribeAclsRequest

from helpers import WAIT, admin, create_topic, err_code, topic_name, wait_until

SECRET = "acl-test-secret-" + uuid.uuid4().hex

CLUSTER_ENV = {
    "RAFTKA_AUTHORIZER_CLASS_NAME": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "RAFTKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND": "true",
    # The gRPC secret given directly (not the file scripts/cluster would generate).
    "RAFTKA_INTER_BROKER_SECRET": SECRET,
}

ANON = "User:ANONYMOUS"


def acl(name, op, perm=AclPermissionType.ALLOW, pattern=ResourcePatternType.LITERAL, principal=ANON, host="*"):
    return AclBinding(ResourceType.TOPIC, name, pattern, principal, host, op, perm)


def create_acls(bootstrap, *bindings):
    a = admin(bootstrap)
    for f in a.create_acls(list(bindings), request_timeout=15).values():
        f.result(timeout=WAIT)


def delete_topic_acls(bootstrap, name):
    """Deletes every ACL that applies to topic `name` (a MATCH filter)."""
    f = AclBindingFilter(ResourceType.TOPIC, name, ResourcePatternType.MATCH, None, None,
                         AclOperation.ANY, AclPermissionType.ANY)
    a = admin(bootstrap)
    return a.delete_acls([f], request_timeout=15)[f].result(timeout=WAIT)


def produce_error(bootstrap, topic):
    """Produces one record with a fresh producer; the delivery error code, or None."""
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 10000, "retries": 0})
    result = []
    p.produce(topic, b"v", callback=lambda err, msg: result.append(err))
    p.flush(15)
    assert result, "no delivery report"
    return result[0].code() if result[0] else None


def raw_acls(cluster, broker_id):
    """Every ACL as broker `broker_id` itself answers DescribeAcls v1 (a filter matching all)."""
    req = DescribeAclsRequest(
        resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1,
        principal_filter=None, host_filter=None, operation=1, permission_type=1,
    )
    resp = cluster.request(broker_id, req, 1).to_dict()
    assert resp["error_code"] == 0, resp
    return {
        (r["resource_type"], r["resource_name"], r["pattern_type"], a["principal"], a["host"],
         a["operation"], a["permission_type"])
        for r in resp["resources"]
        for a in r["acls"]
    }


def test_acls_reach_every_broker_survive_a_restart_and_delete_by_filter(cluster3):
    b = cluster3.bootstrap
    name = topic_name("acl")
    create_acls(
        b,
        acl(name, AclOperation.READ),
        acl(name[:6], AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED, principal="User:alice"),
        AclBinding(ResourceType.GROUP, "g-" + name, ResourcePatternType.LITERAL, "User:bob", "10.1.2.3",
                   AclOperation.DELETE, AclPermissionType.DENY),
    )
    expected = {
        (2, name, 3, ANON, "*", 3, 3),
        (2, name[:6], 4, "User:alice", "*", 4, 3),
        (3, "g-" + name, 3, "User:bob", "10.1.2.3", 6, 2),
    }
    for broker_id in cluster3.ids():
        wait_until(lambda: expected <= raw_acls(cluster3, broker_id), what=f"ACLs on broker {broker_id}")

    # A second client: kafka-python's admin, with a MATCH filter (literal + prefixes of the name).
    k = KafkaAdminClient(bootstrap_servers=b, request_timeout_ms=15000)
    try:
        acls, err = k.describe_acls(ACLFilter(
            principal=None, host=None, operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(KResourceType.TOPIC, name, ACLResourcePatternType.MATCH),
        ))
        assert err.errno == 0, err
        assert {(a.resource_pattern.resource_name, a.principal, a.operation) for a in acls} == {
            (name, ANON, ACLOperation.READ), (name[:6], "User:alice", ACLOperation.WRITE)}
    finally:
        k.close()

    # Invalid creations are refused one by one, with Kafka's INVALID_REQUEST.
    a = admin(b)
    bad = AclBinding(ResourceType.BROKER, "not-kafka-cluster", ResourcePatternType.LITERAL, ANON, "*",
                     AclOperation.ALTER, AclPermissionType.ALLOW)
    fut = a.create_acls([bad], request_timeout=15)[bad]
    try:
        fut.result(timeout=WAIT)
        raise AssertionError("an ACL on a cluster named otherwise than kafka-cluster was accepted")
    except Exception as e:  # noqa: BLE001 - checked below
        assert err_code(e) == KafkaError.INVALID_REQUEST, e

    # A restarted broker still has them (from its Raft log / snapshot).
    cluster3.stop(2)
    cluster3.start(2)
    wait_until(lambda: expected <= raw_acls(cluster3, 2), what="ACLs after broker 2's restart")

    # DeleteAcls with a MATCH filter removes what applies to the topic; the group ACL stays.
    deleted = delete_topic_acls(b, name)
    assert {(d.name, d.principal) for d in deleted} == {(name, ANON), (name[:6], "User:alice")}
    for broker_id in cluster3.ids():
        wait_until(lambda: not any(e[1] in (name, name[:6]) for e in raw_acls(cluster3, broker_id)),
                   what=f"deleted ACLs gone from broker {broker_id}")
        assert (3, "g-" + name, 3, "User:bob", "10.1.2.3", 6, 2) in raw_acls(cluster3, broker_id)


def test_write_needs_an_allow_prefixes_grant_it_and_a_deny_wins(cluster3):
    b = cluster3.bootstrap
    prefix = topic_name("pfx") + "-"
    topic = prefix + "orders"
    create_topic(b, topic, replication_factor=3)
    try:
        assert produce_error(b, topic) is None  # no ACL covers the topic yet: everyone may
        # An ACL now covers the topic: DESCRIBE only, so the producer sees the topic but may not
        # write to it.
        create_acls(b, acl(prefix, AclOperation.DESCRIBE, pattern=ResourcePatternType.PREFIXED))
        wait_until(lambda: produce_error(b, topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED,
                   what="produce refused without WRITE")
        # A PREFIXED allow of WRITE for ANONYMOUS.
        create_acls(b, acl(prefix, AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED))
        wait_until(lambda: produce_error(b, topic) is None, what="produce allowed by the prefixed ACL")
        # A DENY for every user from this host beats the allow.
        create_acls(b, acl(topic, AclOperation.WRITE, perm=AclPermissionType.DENY, principal="User:*",
                           host="127.0.0.1"))
        wait_until(lambda: produce_error(b, topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED,
                   what="produce refused by the host DENY")
        # A DENY for another host changes nothing for this client.
        delete_topic_acls(b, topic)
        create_acls(
            b,
            acl(prefix, AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED),
            acl(topic, AclOperation.WRITE, perm=AclPermissionType.DENY, principal="User:*", host="10.9.9.9"),
        )
        wait_until(lambda: produce_error(b, topic) is None, what="a DENY of another host does not apply")
    finally:
        delete_topic_acls(b, topic)


def test_metadata_hides_topics_the_principal_may_not_describe(cluster3):
    b = cluster3.bootstrap
    hidden, shown = topic_name("hidden"), topic_name("shown")
    for t in (hidden, shown):
        create_topic(b, t)
    try:
        create_acls(b, acl(hidden, AclOperation.DESCRIBE, principal="User:alice"))
        for broker_id in cluster3.ids():
            def hides():
                names = {t["name"] for t in cluster3.metadata(broker_id)["topics"]}
                return shown in names and hidden not in names
            wait_until(hides, what=f"broker {broker_id} to hide {hidden}")
            [t] = cluster3.metadata(broker_id, [hidden])["topics"]
            assert t["error_code"] == KafkaError.TOPIC_AUTHORIZATION_FAILED, t
            assert t["partitions"] == [], t
        # A topic nobody may describe or create is not auto-created either.
        md = admin(b).list_topics(timeout=10)
        assert hidden not in md.topics and shown in md.topics
    finally:
        delete_topic_acls(b, hidden)


def test_clients_cannot_delete_repartition_or_reconfigure_the_offsets_topic(cluster3):
    a = admin(cluster3.bootstrap)
    internal = "__consumer_offsets"
    failures = [
        a.delete_topics([internal], operation_timeout=10)[internal],
        a.create_partitions([NewPartitions(internal, 100)], operation_timeout=10)[internal],
    ]
    res = ConfigResource(ConfigResource.Type.TOPIC, internal, incremental_configs=[
        ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])
    failures.append(a.incremental_alter_configs([res], request_timeout=10)[res])
    for f in failures:
        try:
            f.result(timeout=WAIT)
            raise AssertionError("an internal-topic change was accepted")
        except Exception as e:  # noqa: BLE001 - checked below
            assert err_code(e) == KafkaError.INVALID_REQUEST, e


def test_the_inter_broker_secret_is_reported_as_sensitive_without_its_value(cluster3):
    a = admin(cluster3.bootstrap)
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    configs = a.describe_configs([res], request_timeout=15)[res].result(timeout=WAIT)
    entry = configs["inter.broker.secret"]
    assert entry.is_sensitive and entry.value is None, entry
    assert all(SECRET not in str(c.value) for c in configs.values())


def test_a_group_member_needs_read_on_its_group(cluster3):
    b = cluster3.bootstrap
    topic, group = topic_name("gt"), topic_name("grp")
    create_topic(b, topic)
    a = admin(b)
    only_alice = AclBinding(ResourceType.GROUP, group, ResourcePatternType.LITERAL, "User:alice", "*",
                            AclOperation.READ, AclPermissionType.ALLOW)
    for f in a.create_acls([only_alice], request_timeout=15).values():
        f.result(timeout=WAIT)
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": b, "group.id": group, "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])

        def refused():
            msg = c.poll(0.5)
            return msg is not None and msg.error() is not None and \
                msg.error().code() == KafkaError.GROUP_AUTHORIZATION_FAILED

        wait_until(refused, what="GROUP_AUTHORIZATION_FAILED for a group only alice may read")
    finally:
        c.close()
        f = AclBindingFilter(ResourceType.GROUP, group, ResourcePatternType.LITERAL, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
        a.delete_acls([f], request_timeout=15)[f].result(timeout=WAIT)


def test_cluster_alter_apis_need_alter_on_the_cluster(cluster3):
    """ElectLeaders and AlterUserScramCredentials need ALTER on the cluster (DescribeUser-
    ScramCredentials only DESCRIBE). Last in this module: the cluster ACLs it creates forbid
    DeleteAcls and cluster-wide operations, so they stay until the module's cluster goes."""
    from confluent_kafka import ElectionType, TopicPartition
    from confluent_kafka.admin import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    b = cluster3.bootstrap
    topic = topic_name("elect")
    create_topic(b, topic, partitions=1, replication_factor=3)
    a = admin(b)
    user = topic_name("u")
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"pw-" + user.encode())
    # Allowed while no ACL covers the cluster (allow.everyone.if.no.acl.found=true).
    for f in a.alter_user_scram_credentials([upsert], request_timeout=15).values():
        f.result(timeout=WAIT)
    # Once an ACL covers the cluster, only what is allowed is: DESCRIBE yes, ALTER denied.
    cluster_acls = [
        AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, ANON, "*",
                   op, perm)
        for op, perm in ((AclOperation.ALTER, AclPermissionType.DENY),
                         (AclOperation.DESCRIBE, AclPermissionType.ALLOW))
    ]
    for f in a.create_acls(cluster_acls, request_timeout=15).values():
        f.result(timeout=WAIT)

    def scram_refused():
        try:
            for f in a.alter_user_scram_credentials([upsert], request_timeout=15).values():
                f.result(timeout=WAIT)
        except KafkaException as e:
            return err_code(e) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
        return False

    wait_until(scram_refused, what="AlterUserScramCredentials refused without ALTER on the cluster")
    with pytest.raises(KafkaException) as refused:
        a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result(timeout=WAIT)
    assert err_code(refused.value) == KafkaError.CLUSTER_AUTHORIZATION_FAILED, refused.value
    # DESCRIBE is allowed: the credential created before the DENY is listed.
    described = a.describe_user_scram_credentials([user], request_timeout=15)[user].result(timeout=WAIT)
    assert [i.mechanism for i in described.scram_credential_infos] == [ScramMechanism.SCRAM_SHA_256]

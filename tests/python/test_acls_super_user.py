"""super.users (issue 13, item 3): a super user may do everything, whatever the ACLs say. With
authorizer.class.name set, allow.everyone.if.no.acl.found at Kafka's default (false) and
User:ANONYMOUS as a super user, DENY ACLs on every topic, group and the cluster do not stop
it from creating topics, producing, consuming and managing ACLs (confluent-kafka)."""

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from helpers import WAIT, admin, consume_to_end, create_topic, produce_all, producer, topic_name

BROKER_ENV = {
    "RAFTKA_AUTHORIZER_CLASS_NAME": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "RAFTKA_SUPER_USERS": "User:admin;User:ANONYMOUS",
}


def test_a_super_user_may_do_everything_despite_deny_acls(bootstrap):
    a = admin(bootstrap)
    denies = [
        AclBinding(rt, name, ResourcePatternType.LITERAL, "User:*", "*", AclOperation.ALL, AclPermissionType.DENY)
        for rt, name in [(ResourceType.TOPIC, "*"), (ResourceType.GROUP, "*"), (ResourceType.BROKER, "kafka-cluster")]
    ]
    for f in a.create_acls(denies, request_timeout=15).values():
        f.result(timeout=WAIT)
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    assert len(a.describe_acls(everything, request_timeout=15).result(timeout=WAIT)) == 3

    topic = create_topic(bootstrap, topic_name("super"), partitions=2)
    records = [{"key": f"k{i}".encode(), "value": f"v{i}".encode()} for i in range(20)]
    produce_all(producer(bootstrap), topic, records)
    got = consume_to_end(bootstrap, topic, [0, 1], **{"group.id": topic_name("g")})
    assert sorted(m.value() for ms in got.values() for m in ms) == sorted(r["value"] for r in records)
    deleted = a.delete_acls([everything], request_timeout=15)[everything].result(timeout=WAIT)
    assert len(deleted) == 3

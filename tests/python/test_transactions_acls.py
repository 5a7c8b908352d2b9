"""ACLs of the transaction coordinator on one broker with an authorizer
(allow.everyone.if.no.acl.found=true, every client User:ANONYMOUS): DENY WRITE on a
TransactionalId makes confluent-kafka's init_transactions fail with
TRANSACTIONAL_ID_AUTHORIZATION_FAILED while other ids work; DENY DESCRIBE hides an id from
ListTransactions and DescribeTransactions answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED (and once
DESCRIBE is back, a new producer with the id aborts the hidden open transaction);
DENY WRITE on a topic refuses AddPartitionsToTxn for it (the producer's transaction fails)."""

import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AclBinding, AclBindingFilter, AclOperation, AclPermissionType, ResourcePatternType, ResourceType
from kafka import KafkaAdminClient

from helpers import WAIT, admin, consumer, create_topic, topic_name

BROKER_ENV = {
    "RAFTKA_AUTHORIZER_CLASS_NAME": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "RAFTKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND": "true",
}


def deny(bootstrap, rtype, name, op, pattern=ResourcePatternType.LITERAL, perm=AclPermissionType.DENY):
    a = admin(bootstrap)
    binding = AclBinding(rtype, name, pattern, "User:ANONYMOUS", "*", op, perm)
    for f in a.create_acls([binding], request_timeout=15).values():
        f.result(timeout=WAIT)


def txn_producer(bootstrap, txn_id):
    return Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5})


def test_transactional_id_acls(cluster):
    b = cluster.bootstrap
    topic = create_topic(b, topic_name("txn-acl"), 1)
    run = uuid.uuid4().hex[:6]
    deny(b, ResourceType.TRANSACTIONAL_ID, f"denied-{run}-", AclOperation.WRITE, ResourcePatternType.PREFIXED)

    with pytest.raises(KafkaException) as e:
        txn_producer(b, f"denied-{run}-1").init_transactions(30)
    assert e.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, e.value

    # An open transaction whose id then loses DESCRIBE (WRITE stays allowed): nobody may see it
    # any more.
    hidden = txn_producer(b, f"hidden-{run}")
    hidden.init_transactions(30)
    hidden.begin_transaction()
    hidden.produce(topic, value=b"h", partition=0)
    assert hidden.flush(30) == 0
    # (Once an ACL names the id, allow.everyone.if.no.acl.found no longer covers it: WRITE is
    # allowed explicitly.)
    deny(b, ResourceType.TRANSACTIONAL_ID, f"hidden-{run}", AclOperation.WRITE, perm=AclPermissionType.ALLOW)
    deny(b, ResourceType.TRANSACTIONAL_ID, f"hidden-{run}", AclOperation.DESCRIBE)
    visible_id = f"visible-{run}"
    visible = txn_producer(b, visible_id)
    visible.init_transactions(30)

    ka = KafkaAdminClient(bootstrap_servers=b, request_timeout_ms=20000)
    try:
        listed = {t.transactional_id for rows in ka.list_transactions().values() for t in rows}
        assert visible_id in listed and f"hidden-{run}" not in listed
        from kafka.errors import TransactionalIdAuthorizationFailedError

        with pytest.raises(TransactionalIdAuthorizationFailedError):
            ka.describe_transactions([f"hidden-{run}"])
    finally:
        ka.close()
    # The hidden transaction's producer may not survive the hiding: librdkafka looks its
    # transaction coordinator up again whenever it sees fit, and FindCoordinator needs DESCRIBE
    # on the id (in Kafka too), so a lookup in the window fails it fatally. What must survive is
    # the transaction: once DESCRIBE is given back, a new producer with the same id takes it
    # over (fencing the old one), its open transaction is aborted and the new one commits.
    a = admin(b)
    gone = AclBindingFilter(ResourceType.TRANSACTIONAL_ID, f"hidden-{run}", ResourcePatternType.LITERAL,
                            "User:ANONYMOUS", "*", AclOperation.DESCRIBE, AclPermissionType.DENY)
    for f in a.delete_acls([gone], request_timeout=15).values():
        assert len(f.result(timeout=WAIT)) == 1
    successor = txn_producer(b, f"hidden-{run}")
    successor.init_transactions(30)
    successor.begin_transaction()
    successor.produce(topic, value=b"h2", partition=0)
    successor.commit_transaction(30)
    del hidden
    reader = consumer(b, **{"isolation.level": "read_committed", "enable.partition.eof": False})
    try:
        reader.assign([TopicPartition(topic, 0, 0)])
        seen = []
        deadline = time.monotonic() + WAIT
        while b"h2" not in seen:
            assert time.monotonic() < deadline, f"the successor's record never arrived; read {seen}"
            msg = reader.poll(0.2)
            if msg is not None and not msg.error():
                seen.append(msg.value())
        assert seen == [b"h2"], f"the fenced producer's open transaction was not aborted: {seen}"
    finally:
        reader.close()

    # WRITE denied on a topic: adding it to a transaction fails, the transaction must abort.
    denied_topic = create_topic(b, topic_name("txn-acl-denied"), 1)
    deny(b, ResourceType.TOPIC, denied_topic, AclOperation.WRITE)
    visible.begin_transaction()
    visible.produce(denied_topic, value=b"x", partition=0)
    visible.flush(10)
    with pytest.raises(KafkaException) as e:
        visible.commit_transaction(30)
    assert e.value.args[0].txn_requires_abort() or e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, e.value

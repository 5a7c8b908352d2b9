"""Three-broker cluster: the transaction coordinator's broker is paused (SIGSTOP, resumed once
the transaction has ended), then in a second transaction SIGKILLed, between AddPartitionsToTxn
(the producer has written its records to every partition) and EndTxn.

Checks: __transaction_state is replicated (RF 3); another broker takes over as the
transactional id's coordinator, having reloaded the ongoing transaction from the log; the
producer's commit then ends it on every partition (or, should the commit fail, its abort does):
a read_committed consumer sees all of the transaction's records or none, never a part, and the
earlier committed transaction exactly once; no transaction stays open (the last stable offset
of every partition reaches its high watermark). Prints (pytest -s) the time from the kill to
the committed transaction."""

import time
import uuid

import pytest

from confluent_kafka import KafkaException, Producer, TopicPartition
from kafka import KafkaAdminClient
from kafka.errors import CoordinatorLoadInProgressError, CoordinatorNotAvailableError, NotCoordinatorError

from helpers import consumer, create_topic, topic_name, wait_until

CLUSTER_ENV = {"RAFTKA_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS": "500"}
PARTITIONS = 3
PER_PARTITION = 20


def describe(bootstrap, txn_id):
    a = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        return a.describe_transactions([txn_id])[txn_id]
    finally:
        a.close()


def state_of(d):
    return getattr(d.state, "value", d.state)


def offsets(bootstrap, topic, isolation):
    c = consumer(bootstrap, **{"isolation.level": isolation})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
    finally:
        c.close()


def read_committed(bootstrap, topic, ends, timeout=60):
    c = consumer(bootstrap, **{"isolation.level": "read_committed"})
    out = []
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        deadline = time.monotonic() + timeout
        while True:
            pos = {tp.partition: tp.offset for tp in c.position([TopicPartition(topic, p) for p in range(PARTITIONS)])}
            if all(ends[p] == 0 or pos[p] >= ends[p] for p in range(PARTITIONS)):
                return out
            assert time.monotonic() < deadline, f"reading {topic}: ends {ends}, positions {pos}"
            m = c.poll(0.2)
            if m is not None and not m.error():
                out.append(m.value().decode())
    finally:
        c.close()


# Pause first: the module's cluster keeps the killed broker down afterwards.
@pytest.mark.parametrize("fault", ["pause", "kill"])
def test_losing_the_coordinator_mid_transaction_is_all_or_nothing(cluster3, fault):
    c = cluster3
    b = c.bootstrap
    topic = create_topic(b, topic_name("txn-failover"), PARTITIONS, replication_factor=3)
    txn_id = f"tx-{uuid.uuid4().hex[:8]}"
    p = Producer({
        "bootstrap.servers": b,
        "transactional.id": txn_id,
        "transaction.timeout.ms": 120000,
        "linger.ms": 5,
        "retry.backoff.ms": 50,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "topic.metadata.refresh.interval.ms": 1000,
        # A request in flight to a SIGSTOPped broker gets no answer and no reset: librdkafka
        # gives up on it after socket.timeout.ms (60 s by default) and only then looks the
        # coordinator up again, as a Java client does after request.timeout.ms.
        "socket.timeout.ms": 10000,
    })
    p.init_transactions(60)
    md = c.metadata(1, topics=["__transaction_state"])
    (ts,) = md["topics"]
    assert ts["is_internal"]
    assert all(len(part["replica_nodes"]) == 3 for part in ts["partitions"])

    # A first transaction, committed before any fault.
    p.begin_transaction()
    for i in range(PARTITIONS):
        p.produce(topic, value=f"before-{i}".encode(), partition=i)
    p.commit_transaction(60)

    p.begin_transaction()
    sent = []
    for part in range(PARTITIONS):
        for i in range(PER_PARTITION):
            v = f"txn-{part}-{i}"
            p.produce(topic, value=v.encode(), partition=part)
            sent.append(v)
    assert p.flush(60) == 0
    d = describe(b, txn_id)
    assert state_of(d) == "Ongoing"
    assert {(tp.topic, tp.partition) for tp in d.topic_partitions} == {(topic, i) for i in range(PARTITIONS)}
    old = d.coordinator_id

    getattr(c, fault)(old)
    killed_at = time.monotonic()
    alive = [x for x in c.running() if x != old] if fault == "kill" else [x for x in c.ids() if x != old]
    via = ",".join(c.address(x) for x in alive)
    committed = True
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                p.commit_transaction(30)
                break
            except KafkaException as e:
                err = e.args[0]
                # librdkafka: a retriable error (e.g. the commit timed out) means call commit
                # again; only an abortable one means abort.
                if err.retriable() and time.monotonic() < deadline:
                    continue
                assert err.txn_requires_abort(), err
                committed = False
                p.abort_transaction(90)
                break
        took = time.monotonic() - killed_at
    finally:
        if fault == "pause":
            # The old coordinator comes back (also when the commit failed, so the next case
            # has its three brokers): it must not disturb the outcome.
            c.resume(old)

    def completed():
        try:
            d = describe(via, txn_id)
        except (CoordinatorLoadInProgressError, NotCoordinatorError, CoordinatorNotAvailableError):
            return None  # retriable: the partition is still moving or loading
        return d if state_of(d) in ("CompleteCommit", "CompleteAbort") else None

    final = wait_until(
        completed,
        timeout=60,
        what="the new coordinator completing the transaction",
    )
    assert final.coordinator_id != old
    assert state_of(final) == ("CompleteCommit" if committed else "CompleteAbort")
    # No transaction is left open anywhere.
    hw = offsets(via, topic, "read_uncommitted")
    wait_until(lambda: offsets(via, topic, "read_committed") == hw, timeout=60, what="LSO == high watermark")

    seen = read_committed(via, topic, hw)
    before = [v for v in seen if v.startswith("before-")]
    inside = [v for v in seen if v.startswith("txn-")]
    assert sorted(before) == [f"before-{i}" for i in range(PARTITIONS)]
    if committed:
        assert sorted(inside) == sorted(sent), f"{len(inside)} of {len(sent)} committed records read"
    else:
        assert inside == [], f"{len(inside)} records of an aborted transaction read"
    print(f"\ncoordinator {old} {dict(pause='paused', kill='killed')[fault]}: transaction {'committed' if committed else 'aborted'} "
          f"{took:.1f}s later by broker {final.coordinator_id}")

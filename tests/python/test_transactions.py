"""The transaction coordinator with real clients (one broker): confluent-kafka's transactional
producer initialises, commits and aborts; a second producer with the same transactional.id
fences the first; a transaction left open past transaction.timeout.ms is aborted by the broker
(with the producer epoch bumped, so the producer's commit fails); transaction.timeout.ms above
transaction.max.timeout.ms is refused; kafka-python's admin client lists and describes the
transactions (ListTransactions, DescribeTransactions) as `kafka-transactions.sh` does."""

import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from kafka import KafkaAdminClient

from helpers import consumer, create_topic, topic_name, wait_until

# The reaper looks for timed-out transactions every 200 ms (Kafka: 10 s), and the largest
# timeout a producer may ask for is 5 minutes (Kafka: 15).
BROKER_ENV = {
    "RAFTKA_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS": "200",
    "RAFTKA_TRANSACTION_MAX_TIMEOUT_MS": "300000",
}

FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


def txn_producer(bootstrap, txn_id, **conf):
    base = {
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id,
        "transaction.timeout.ms": 60000,
        "linger.ms": 5,
    }
    base.update(conf)
    return Producer(base)


def txn_admin(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)


def describe(bootstrap, txn_id):
    a = txn_admin(bootstrap)
    try:
        return a.describe_transactions([txn_id])[txn_id]
    finally:
        a.close()


def state_of(d):
    s = d.state
    return getattr(s, "value", s)


def read_all(bootstrap, topic, partitions, isolation="read_committed", timeout=30):
    """Every record of the partitions a consumer of `isolation` can read now: polls until its
    position reaches the end it is shown (the last stable offset for read_committed, which
    must equal the high watermark once no transaction is open). {partition: [values]}"""
    c = consumer(bootstrap, **{"isolation.level": isolation})
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        c.assign([TopicPartition(topic, p, 0) for p in partitions])
        out = {p: [] for p in partitions}
        deadline = time.monotonic() + timeout
        while True:
            pos = {tp.partition: tp.offset for tp in c.position([TopicPartition(topic, p) for p in partitions])}
            if all(ends[p] == 0 or pos[p] >= ends[p] for p in partitions):
                return out
            assert time.monotonic() < deadline, f"reading {topic}: ends {ends}, positions {pos}, read {out}"
            m = c.poll(0.2)
            if m is None:
                continue
            assert not m.error(), m.error()
            out[m.partition()].append(m.value())
    finally:
        c.close()


def produce_in_txn(p, topic, values, partition=0):
    for v in values:
        p.produce(topic, value=v, partition=partition)
    assert p.flush(30) == 0


def test_commit_and_abort(cluster):
    b = cluster.bootstrap
    topic = create_topic(b, topic_name("txn"), 2)
    txn_id = f"tx-{uuid.uuid4().hex[:8]}"
    p = txn_producer(b, txn_id)
    p.init_transactions(30)
    d = describe(b, txn_id)
    assert state_of(d) == "Empty"
    pid = d.producer_id
    assert pid >= 0 and d.producer_epoch == 0

    p.begin_transaction()
    produce_in_txn(p, topic, [b"c1", b"c2"], partition=0)
    produce_in_txn(p, topic, [b"c3"], partition=1)
    d = describe(b, txn_id)
    assert state_of(d) == "Ongoing"
    assert {(tp.topic, tp.partition) for tp in d.topic_partitions} == {(topic, 0), (topic, 1)}
    assert d.transaction_timeout_ms == 60000 and d.transaction_start_time_ms > 0
    p.commit_transaction(30)
    wait_until(lambda: state_of(describe(b, txn_id)) == "CompleteCommit", what="CompleteCommit")

    p.begin_transaction()
    produce_in_txn(p, topic, [b"a1"], partition=0)
    p.abort_transaction(30)
    d = wait_until(
        lambda: (lambda d: d if state_of(d) == "CompleteAbort" else None)(describe(b, txn_id)),
        what="CompleteAbort",
    )
    # The same producer id and epoch throughout; the partitions are cleared once complete.
    assert (d.producer_id, d.producer_epoch) == (pid, 0)
    assert not d.topic_partitions

    # read_committed sees the committed records only; read_uncommitted sees the aborted one
    # too. The markers take an offset each but are no records for the consumer.
    assert read_all(b, topic, [0, 1]) == {0: [b"c1", b"c2"], 1: [b"c3"]}
    assert read_all(b, topic, [0, 1], "read_uncommitted") == {0: [b"c1", b"c2", b"a1"], 1: [b"c3"]}


def test_reinitialising_bumps_the_epoch_and_fences_the_old_producer(cluster):
    b = cluster.bootstrap
    topic = create_topic(b, topic_name("txn-zombie"), 1)
    txn_id = f"tx-{uuid.uuid4().hex[:8]}"
    old = txn_producer(b, txn_id)
    old.init_transactions(30)
    old.begin_transaction()
    produce_in_txn(old, topic, [b"zombie-1"])
    first = describe(b, txn_id)
    assert state_of(first) == "Ongoing"

    # The new producer's InitProducerId aborts the zombie's open transaction first (epoch + 1)
    # and then bumps the epoch once more for itself.
    new = txn_producer(b, txn_id)
    new.init_transactions(30)
    d = describe(b, txn_id)
    assert state_of(d) == "Empty"
    assert d.producer_id == first.producer_id
    assert d.producer_epoch == first.producer_epoch + 2

    with pytest.raises(KafkaException) as e:
        old.commit_transaction(30)
    err = e.value.args[0]
    assert err.fatal() or err.code() in FENCED, err

    new.begin_transaction()
    produce_in_txn(new, topic, [b"fresh"])
    new.commit_transaction(30)
    wait_until(lambda: state_of(describe(b, txn_id)) == "CompleteCommit", what="CompleteCommit")
    # The zombie's transaction was aborted by the coordinator: never visible to read_committed.
    assert read_all(b, topic, [0]) == {0: [b"fresh"]}
    assert read_all(b, topic, [0], "read_uncommitted") == {0: [b"zombie-1", b"fresh"]}


def test_a_transaction_past_its_timeout_is_aborted_by_the_broker(cluster):
    b = cluster.bootstrap
    topic = create_topic(b, topic_name("txn-timeout"), 1)
    txn_id = f"tx-{uuid.uuid4().hex[:8]}"
    p = txn_producer(b, txn_id, **{"transaction.timeout.ms": 3000, "message.timeout.ms": 3000})
    p.init_transactions(30)
    p.begin_transaction()
    produce_in_txn(p, topic, [b"too-slow"])
    before = describe(b, txn_id)
    assert state_of(before) == "Ongoing"
    after = wait_until(
        lambda: (lambda d: d if state_of(d) == "CompleteAbort" else None)(describe(b, txn_id)),
        timeout=60,
        what="the broker aborting the timed-out transaction",
    )
    # Aborted with the epoch bumped: the producer is fenced.
    assert after.producer_id == before.producer_id
    assert after.producer_epoch == before.producer_epoch + 1
    with pytest.raises(KafkaException):
        p.commit_transaction(30)
    assert read_all(b, topic, [0]) == {0: []}


def test_a_timeout_above_the_brokers_maximum_is_refused(cluster):
    p = txn_producer(cluster.bootstrap, f"tx-{uuid.uuid4().hex[:8]}", **{"transaction.timeout.ms": 600000})
    with pytest.raises(KafkaException) as e:
        p.init_transactions(30)
    assert e.value.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT, e.value


def test_list_and_describe_transactions(cluster):
    b = cluster.bootstrap
    topic = create_topic(b, topic_name("txn-list"), 1)
    ongoing_id = f"tx-on-{uuid.uuid4().hex[:8]}"
    done_id = f"tx-done-{uuid.uuid4().hex[:8]}"
    p1 = txn_producer(b, ongoing_id)
    p1.init_transactions(30)
    p1.begin_transaction()
    produce_in_txn(p1, topic, [b"x"])
    p2 = txn_producer(b, done_id)
    p2.init_transactions(30)
    p2.begin_transaction()
    produce_in_txn(p2, topic, [b"y"])
    p2.commit_transaction(30)
    wait_until(lambda: state_of(describe(b, done_id)) == "CompleteCommit", what="CompleteCommit")

    a = txn_admin(b)
    try:
        def listed(**filters):
            out = {}
            for rows in a.list_transactions(**filters).values():
                for t in rows:
                    out[t.transactional_id] = (t.producer_id, getattr(t.state, "value", t.state))
            return out

        everything = listed()
        assert everything[ongoing_id][1] == "Ongoing"
        assert everything[done_id][1] == "CompleteCommit"
        only_ongoing = listed(state_filters=["Ongoing"])
        assert ongoing_id in only_ongoing and done_id not in only_ongoing
        pid = everything[done_id][0]
        assert set(listed(producer_id_filters=[pid])) == {done_id}
        # v1: only transactions running longer than the filter.
        assert ongoing_id not in listed(state_filters=["Ongoing"], duration_filter_ms=3_600_000)

        d = a.describe_transactions([ongoing_id])[ongoing_id]
        assert getattr(d.state, "value", d.state) == "Ongoing"
        assert {(tp.topic, tp.partition) for tp in d.topic_partitions} == {(topic, 0)}
        assert d.coordinator_id == 1
    finally:
        a.close()
    p1.abort_transaction(30)


def test_unknown_transactional_id_is_not_found(cluster):
    from kafka.errors import TransactionalIdNotFoundError

    a = txn_admin(cluster.bootstrap)
    try:
        # Creates __transaction_state through FindCoordinator if no test did before.
        with pytest.raises(TransactionalIdNotFoundError):
            a.describe_transactions([f"never-{uuid.uuid4().hex[:8]}"])
    finally:
        a.close()


def _raw_txn_produce(bootstrap, txn_id, topic, partition, pid, epoch, value):
    from kafka.protocol.producer import ProduceRequest, ProduceResponse
    from kafka.record.default_records import DefaultRecordBatchBuilder

    from helpers import raw_request

    bb = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=True,
                                   producer_id=pid, producer_epoch=epoch, base_sequence=0,
                                   batch_size=1 << 20)
    bb.append(0, timestamp=int(time.time() * 1000), key=None, value=value, headers=[])
    req = ProduceRequest(
        transactional_id=txn_id, acks=-1, timeout_ms=10000,
        topic_data=[ProduceRequest.TopicProduceData(name=topic, partition_data=[
            ProduceRequest.TopicProduceData.PartitionProduceData(index=partition, records=bytes(bb.build()))])],
    )
    resp = raw_request(bootstrap, req, ProduceResponse, 9).to_dict()
    [t] = resp["responses"]
    [p] = t["partition_responses"]
    return p["error_code"]


def test_a_transactional_write_to_a_partition_not_in_the_transaction_is_refused(cluster):
    """KIP-890 part 1: the partition leader verifies with the coordinator before a producer's
    first transactional write to a partition; a write to a partition never added to the
    transaction (which would open a transaction no coordinator ends) is refused."""
    b = cluster.bootstrap
    topic = create_topic(b, topic_name("txn-verify"), 2)
    txn_id = f"tx-{uuid.uuid4().hex[:8]}"
    p = txn_producer(b, txn_id)
    p.init_transactions(30)
    p.begin_transaction()
    produce_in_txn(p, topic, [b"added"], partition=0)
    d = describe(b, txn_id)
    INVALID_TXN_STATE = 48
    assert _raw_txn_produce(b, txn_id, topic, 1, d.producer_id, d.producer_epoch, b"sneaky") == INVALID_TXN_STATE
    # Nothing was written, and no transaction is left open in partition 1.
    assert read_all(b, topic, [1], "read_uncommitted") == {1: []}
    # The client, which adds the partition first, writes there.
    produce_in_txn(p, topic, [b"added-1"], partition=1)
    p.commit_transaction(30)
    assert read_all(b, topic, [0, 1]) == {0: [b"added"], 1: [b"added-1"]}


def test_kafka_python_transactional_producer(cluster):
    """kafka-python's own transaction manager (InitProducerId, AddPartitionsToTxn, EndTxn and
    FindCoordinator key type 1 from another client implementation)."""
    from kafka import KafkaProducer

    b = cluster.bootstrap
    topic = create_topic(b, topic_name("txn-kp"), 1)
    txn_id = f"tx-kp-{uuid.uuid4().hex[:8]}"
    p = KafkaProducer(bootstrap_servers=b, transactional_id=txn_id, enable_idempotence=True)
    try:
        p.init_transactions()
        p.begin_transaction()
        p.send(topic, b"kp-commit", partition=0).get(timeout=30)
        p.commit_transaction()
        p.begin_transaction()
        p.send(topic, b"kp-abort", partition=0).get(timeout=30)
        p.abort_transaction()
    finally:
        p.close()
    # EndTxn answers once PrepareAbort is durable; the markers (and CompleteAbort) follow, as
    # in Kafka.
    wait_until(lambda: state_of(describe(b, txn_id)) == "CompleteAbort", what="CompleteAbort")
    assert read_all(b, topic, [0]) == {0: [b"kp-commit"]}
    assert read_all(b, topic, [0], "read_uncommitted") == {0: [b"kp-commit", b"kp-abort"]}


def test_transaction_state_survives_a_restart(cluster):
    """The coordinator reloads __transaction_state at start: a transaction left open across a
    restart is aborted by the next producer of its id (epoch + 2), a committed one stays
    committed, and the producer id is kept."""
    b = cluster.bootstrap
    topic = create_topic(b, topic_name("txn-restart"), 1)
    txn_id = f"tx-{uuid.uuid4().hex[:8]}"
    p = txn_producer(b, txn_id)
    p.init_transactions(30)
    p.begin_transaction()
    produce_in_txn(p, topic, [b"committed"])
    p.commit_transaction(30)
    wait_until(lambda: state_of(describe(b, txn_id)) == "CompleteCommit", what="CompleteCommit")
    p.begin_transaction()
    produce_in_txn(p, topic, [b"open-at-restart"])
    before = describe(b, txn_id)
    assert state_of(before) == "Ongoing"
    cluster.stop(1)
    b = cluster.start(1)
    d = wait_until(lambda: describe(b, txn_id), timeout=60, what="the reloaded transaction")
    assert state_of(d) == "Ongoing"
    assert (d.producer_id, d.producer_epoch) == (before.producer_id, before.producer_epoch)
    fresh = txn_producer(b, txn_id)
    fresh.init_transactions(60)
    d = describe(b, txn_id)
    assert (d.producer_id, d.producer_epoch) == (before.producer_id, before.producer_epoch + 2)
    assert read_all(b, topic, [0]) == {0: [b"committed"]}

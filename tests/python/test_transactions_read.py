"""Transactions, the partition side, with real clients: what read_committed and
read_uncommitted consumers see of committed, aborted and open transactions interleaved with
other writes (the last stable offset, the aborted-transactions list of Fetch, ListOffsets by
isolation level), offsets sent with a transaction (TxnOffsetCommit: invisible until the
commit, gone after an abort, UNSTABLE_OFFSET_COMMIT for require_stable fetches meanwhile),
and DescribeProducers (kafka-python's admin client, as `kafka-transactions.sh
describe-producers`).

The broker runs with a one-voter metadata quorum, so committed offsets live in the replicated
`__consumer_offsets` topic and transaction markers reach them through its log."""

import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaAdminClient
from kafka.structs import TopicPartition as KTopicPartition

from helpers import consumer, create_topic, raw_request, topic_name, wait_until

BROKER_ENV = {"RAFTKA_CLUSTER_FORCE_QUORUM": "1"}


def txn_producer(bootstrap, txn_id=None, **conf):
    base = {
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id or f"tx-{uuid.uuid4().hex[:8]}",
        "transaction.timeout.ms": 60000,
        "linger.ms": 0,
    }
    base.update(conf)
    p = Producer(base)
    p.init_transactions(60)
    return p


def send(p, topic, value, partition=0, **kw):
    p.produce(topic, value=value, partition=partition, **kw)
    assert p.flush(30) == 0


def read_values(bootstrap, topic, isolation, expected_count, partition=0, timeout=30):
    """Values a fresh consumer of `isolation` reads from the start until it has
    `expected_count` of them and its position reaches the end it is shown."""
    c = consumer(bootstrap, **{"isolation.level": isolation})
    try:
        tp = TopicPartition(topic, partition)
        end = c.get_watermark_offsets(tp, timeout=10)[1]
        c.assign([TopicPartition(topic, partition, 0)])
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < expected_count or c.position([tp])[0].offset < end:
            assert time.monotonic() < deadline, f"{isolation}: read {out}, end {end}"
            m = c.poll(0.2)
            if m is None:
                continue
            assert not m.error(), m.error()
            out.append(m.value())
        return out
    finally:
        c.close()


def end_offsets(bootstrap, topic, partition=0):
    """(read_committed end, read_uncommitted end) as librdkafka's ListOffsets sees them."""
    ends = []
    for iso in ("read_committed", "read_uncommitted"):
        c = consumer(bootstrap, **{"isolation.level": iso})
        try:
            ends.append(c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)[1])
        finally:
            c.close()
    return tuple(ends)


def test_aborted_records_interleaved_with_committed_ones_are_dropped_for_read_committed(cluster):
    b = cluster.bootstrap
    topic = create_topic(b, topic_name("txnread"), 1)
    a = txn_producer(b)
    c = txn_producer(b)
    plain = Producer({"bootstrap.servers": b, "linger.ms": 0})
    a.begin_transaction()
    c.begin_transaction()
    send(a, topic, b"a1")
    send(c, topic, b"c1")
    send(plain, topic, b"p1")
    send(a, topic, b"a2")
    a.abort_transaction(30)
    send(c, topic, b"c2")
    c.commit_transaction(30)
    a.begin_transaction()
    send(a, topic, b"a3")
    a.commit_transaction(30)
    send(plain, topic, b"p2")

    committed = read_values(b, topic, "read_committed", 5)
    assert committed == [b"c1", b"p1", b"c2", b"a3", b"p2"]
    everything = read_values(b, topic, "read_uncommitted", 7)
    assert everything == [b"a1", b"c1", b"p1", b"a2", b"c2", b"a3", b"p2"]
    # Nothing is open: both isolation levels end at the high watermark (7 records, 3 markers).
    assert end_offsets(b, topic) == (10, 10)


def test_read_committed_stops_at_an_open_transaction_until_it_commits(cluster):
    b = cluster.bootstrap
    topic = create_topic(b, topic_name("txnlso"), 1)
    plain = Producer({"bootstrap.servers": b, "linger.ms": 0})
    send(plain, topic, b"x0", timestamp=1_000)  # offset 0
    t = txn_producer(b)
    t.begin_transaction()
    send(t, topic, b"t1", timestamp=2_000)  # offset 1: the transaction's first offset
    send(plain, topic, b"x1", timestamp=3_000)  # offset 2
    # ListOffsets: latest is the last stable offset for read_committed, the HW otherwise;
    # by timestamp, read_committed finds nothing at or above the last stable offset.
    assert end_offsets(b, topic) == (1, 3)
    assert offset_for_time(b, topic, 1_500, "read_uncommitted") == 1
    assert offset_for_time(b, topic, 1_500, "read_committed") == -1
    assert offset_for_time(b, topic, 500, "read_committed") == 0
    assert open_transactions_metric(cluster) >= 1

    rc = consumer(b, **{"isolation.level": "read_committed", "fetch.wait.max.ms": 5000})
    tp = TopicPartition(topic, 0)
    try:
        rc.assign([TopicPartition(topic, 0, 0)])
        first = None
        deadline = time.monotonic() + 30
        while first is None:
            assert time.monotonic() < deadline, "x0 never arrived"
            first = rc.poll(0.2)
        assert first.value() == b"x0"
        # The consumer stays at the open transaction's first offset: no record past it
        # arrives while the transaction is open (bounded check, long polls of 5 s each).
        wait_until(lambda: rc.position([tp])[0].offset == 1, what="position at the LSO")
        quiet_until = time.monotonic() + 2
        while time.monotonic() < quiet_until:
            m = rc.poll(0.2)
            assert m is None, f"read past the open transaction: {m.value()}"
        # The commit moves the LSO: the waiting long poll wakes, the rest arrives.
        t.commit_transaction(30)
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 2:
            assert time.monotonic() < deadline, f"after the commit only {got}"
            m = rc.poll(0.5)
            if m is not None:
                assert not m.error(), m.error()
                got.append(m.value())
        assert got == [b"t1", b"x1"]
    finally:
        rc.close()
    assert end_offsets(b, topic) == (4, 4)
    wait_until(lambda: open_transactions_metric(cluster) == 0, what="no open transaction left")


def offset_for_time(bootstrap, topic, ts, isolation):
    c = consumer(bootstrap, **{"isolation.level": isolation})
    try:
        [tp] = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
        assert tp.error is None, tp.error
        return tp.offset
    finally:
        c.close()


def open_transactions_metric(cluster):
    status, body = cluster.http_get(1, "/metrics")
    assert status == 200, body
    [line] = [l for l in body.splitlines() if l.startswith("raftka_partition_open_transactions ")]
    return int(line.split()[1])


def group_consumer(bootstrap, group, isolation):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })


def committed_offset(bootstrap, group, topic):
    """The group's committed offset as OffsetFetch without require_stable answers it."""
    c = group_consumer(bootstrap, group, "read_uncommitted")
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=20)[0].offset
    finally:
        c.close()


def stable_fetch_error(bootstrap, group, topic):
    """The partition error of an OffsetFetch v7 with require_stable (raw request)."""
    from kafka.protocol.consumer import OffsetFetchRequest, OffsetFetchResponse

    req = OffsetFetchRequest(
        group_id=group,
        topics=[OffsetFetchRequest.OffsetFetchRequestTopic(name=topic, partition_indexes=[0])],
        require_stable=True,
    )
    d = raw_request(bootstrap, req, OffsetFetchResponse, 7).to_dict()
    assert d["error_code"] == 0, d
    [t] = d["topics"]
    [p] = t["partitions"]
    return p["error_code"], p["committed_offset"]


def test_offsets_sent_with_a_transaction_appear_at_commit_and_vanish_on_abort(cluster):
    check_offsets_with_transactions(cluster)


def check_offsets_with_transactions(cluster):
    """send_offsets_to_transaction: pending until the commit, dropped by an abort (also run
    on a single broker without a quorum by test_transactions_offsets_single.py)."""
    b = cluster.bootstrap
    topic = create_topic(b, topic_name("txnoff"), 1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    meta_consumer = group_consumer(b, group, "read_committed")
    try:
        meta = meta_consumer.consumer_group_metadata()
        p = txn_producer(b)
        p.begin_transaction()
        send(p, topic, b"v")
        p.send_offsets_to_transaction([TopicPartition(topic, 0, 5)], meta, 30)
        # Pending: invisible to a plain fetch, UNSTABLE_OFFSET_COMMIT (88) to a stable one.
        assert committed_offset(b, group, topic) < 0
        assert stable_fetch_error(b, group, topic) == (88, -1)
        p.commit_transaction(30)
        wait_until(lambda: committed_offset(b, group, topic) == 5, what="offset 5 committed")
        assert stable_fetch_error(b, group, topic) == (0, 5)
        # librdkafka's own stable fetch (read_committed consumers use require_stable).
        rc = group_consumer(b, group, "read_committed")
        try:
            assert rc.committed([TopicPartition(topic, 0)], timeout=20)[0].offset == 5
        finally:
            rc.close()

        p.begin_transaction()
        send(p, topic, b"w")
        p.send_offsets_to_transaction([TopicPartition(topic, 0, 9)], meta, 30)
        assert stable_fetch_error(b, group, topic) == (88, -1)
        p.abort_transaction(30)
        wait_until(lambda: stable_fetch_error(b, group, topic) == (0, 5), what="abort settled")
        assert committed_offset(b, group, topic) == 5
    finally:
        meta_consumer.close()


def test_offsets_of_a_transaction_survive_a_restart_and_commit_after_it(cluster):
    """The pending offsets are replayed from __consumer_offsets by the loader of the restarted
    broker; the coordinator's commit (completed after the restart) then applies them."""
    b = cluster.bootstrap
    topic = create_topic(b, topic_name("txnoffrs"), 1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    meta_consumer = group_consumer(b, group, "read_committed")
    try:
        meta = meta_consumer.consumer_group_metadata()
    finally:
        meta_consumer.close()
    p = txn_producer(b)
    p.begin_transaction()
    send(p, topic, b"v")
    p.send_offsets_to_transaction([TopicPartition(topic, 0, 7)], meta, 30)
    cluster.stop(1)
    cluster.start(1)
    # Still pending after the reload (the transaction is open), then committed.
    wait_until(lambda: _safe(lambda: stable_fetch_error(b, group, topic)) == (88, -1),
               timeout=60, what="pending offsets reloaded")
    p.commit_transaction(60)
    wait_until(lambda: committed_offset(b, group, topic) == 7, timeout=60, what="committed after restart")
    assert read_values(b, topic, "read_committed", 1) == [b"v"]


def _safe(f):
    try:
        return f()
    except Exception as e:  # the broker is restarting: connection refused, not coordinator
        return e


def test_describe_producers_shows_the_open_transaction(cluster):
    b = cluster.bootstrap
    topic = create_topic(b, topic_name("txndp"), 1)
    plain = Producer({"bootstrap.servers": b, "linger.ms": 0, "enable.idempotence": True})
    send(plain, topic, b"x0")
    t = txn_producer(b)
    t.begin_transaction()
    send(t, topic, b"t1")
    send(t, topic, b"t2")
    a = KafkaAdminClient(bootstrap_servers=b, request_timeout_ms=20000)
    try:
        def producers():
            return a.describe_producers([KTopicPartition(topic, 0)])[KTopicPartition(topic, 0)].active_producers

        # The idempotent plain producer and the transactional one.
        states = producers()
        open_txn = [s for s in states if s.current_transaction_start_offset >= 0]
        assert len(states) == 2 and len(open_txn) == 1, states
        s = open_txn[0]
        assert s.current_transaction_start_offset == 1
        assert s.last_sequence == 1 and s.producer_epoch == 0 and s.last_timestamp > 0
        t.commit_transaction(30)
        [s] = [x for x in producers() if x.producer_id == s.producer_id]
        assert s.current_transaction_start_offset == -1
        assert s.coordinator_epoch >= 0
    finally:
        a.close()

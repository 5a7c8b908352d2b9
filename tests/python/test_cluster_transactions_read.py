"""Three-broker cluster: the partition side of transactions survives the partition leader's
SIGKILL. Followers rebuild the leader's transaction state from the batches they replicate, so
the new leader holds the last stable offset at the open transaction's first offset and knows
the aborted transaction (read_committed consumers skip its records); the commit then
completes through the new leader. The killed broker, restarted, reopens its log with the
same state and serves read_committed reads as leader again."""

import time
import uuid

from confluent_kafka import Producer, TopicPartition

from helpers import consumer, create_topic, topic_name, wait_until


def txn_producer(bootstrap):
    p = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": f"tx-{uuid.uuid4().hex[:8]}",
        "transaction.timeout.ms": 120000,
        "linger.ms": 0,
        "retry.backoff.ms": 50,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    p.init_transactions(60)
    return p


def send(p, topic, value):
    p.produce(topic, value=value, partition=0)
    assert p.flush(60) == 0


def ends(bootstrap, topic):
    """(read_committed end, read_uncommitted end) from ListOffsets, or None on an error."""
    out = []
    for iso in ("read_committed", "read_uncommitted"):
        c = consumer(bootstrap, **{"isolation.level": iso})
        try:
            out.append(c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[1])
        except Exception:
            return None
        finally:
            c.close()
    return tuple(out)


def read(bootstrap, topic, isolation, end, timeout=60):
    """Values a fresh consumer of `isolation` reads until its position reaches `end`."""
    c = consumer(bootstrap, **{"isolation.level": isolation})
    tp = TopicPartition(topic, 0)
    out = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + timeout
        while c.position([tp])[0].offset < end:
            assert time.monotonic() < deadline, f"{isolation}: read {out} up to {c.position([tp])}, end {end}"
            m = c.poll(0.2)
            if m is not None and not m.error():
                out.append(m.value())
        return out
    finally:
        c.close()


def test_a_new_leader_keeps_open_and_aborted_transactions(cluster3):
    c = cluster3
    b = c.bootstrap
    topic = create_topic(b, topic_name("txn-lead"), 1, replication_factor=3)
    c.wait_settled(topic)
    a = txn_producer(b)
    t = txn_producer(b)
    plain = Producer({"bootstrap.servers": b, "enable.idempotence": True, "linger.ms": 0})

    a.begin_transaction()
    send(a, topic, b"a1")  # 0
    send(a, topic, b"a2")  # 1
    a.abort_transaction(60)  # marker 2
    t.begin_transaction()
    send(t, topic, b"t1")  # 3: the open transaction's first offset
    send(t, topic, b"t2")  # 4
    send(plain, topic, b"p1")  # 5, acks=all: the followers have everything up to here
    assert ends(b, topic) == (3, 6)

    old = c.leader_of(topic, 0)
    c.kill(old)
    alive = [x for x in c.ids() if x != old]
    via = ",".join(c.address(x) for x in alive)
    c.wait_settled(topic, via=alive, full_isr=False, preferred=False,
                   check=lambda v: v[0][0] in alive)
    # The new leader rebuilt the open transaction (LSO at its first offset) and the abort.
    wait_until(lambda: ends(via, topic) == (3, 6), timeout=60, what="new leader's offsets")
    assert read(via, topic, "read_committed", 3) == []
    assert read(via, topic, "read_uncommitted", 6) == [b"a1", b"a2", b"t1", b"t2", b"p1"]

    t.commit_transaction(90)  # the marker goes to the new leader
    wait_until(lambda: ends(via, topic) == (7, 7), timeout=60, what="LSO after the commit")
    assert read(via, topic, "read_committed", 7) == [b"t1", b"t2", b"p1"]

    # The killed broker restarts with its stored state, catches up and leads again.
    c.start(old)
    c.wait_settled(topic, timeout=90)
    assert c.leader_of(topic, 0) == old
    assert ends(c.address(old), topic) == (7, 7)
    assert read(c.address(old), topic, "read_committed", 7) == [b"t1", b"t2", b"p1"]

"""SIGKILL (scripts/cluster kill 1) under load with the default settings (no
log.flush.interval.* given: every write is flushed, by group commit, before it is
acknowledged): every record acked is still there after restart, at the offset the ack named.
Before group commit the default lost up to the last 500 ms of acknowledged records per kill."""

import threading
import time

from confluent_kafka import Producer

from helpers import consume_to_end, create_topic, topic_name, wait_until


def test_acked_records_survive_sigkill(cluster):
    b = cluster.bootstrap
    partitions = 2
    topic = create_topic(b, topic_name("crash"), partitions)
    # Every ack as (partition, offset, value): a dict keyed by position would let a record
    # acked at the same offset after the restart hide a lost one.
    acked = []
    lock = threading.Lock()
    stop = threading.Event()
    failures = []

    def on_delivery(err, msg):
        if err is None:
            with lock:
                acked.append((msg.partition(), msg.offset(), msg.value()))
        else:
            failures.append(err)

    p = Producer({
        "bootstrap.servers": b,
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": 30000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 200,
    })

    pause = threading.Event()

    def produce_loop():
        i = 0
        while not stop.is_set():
            if pause.is_set():
                time.sleep(0.001)
                continue
            try:
                # 1 KiB values: sled's buffers hold more unflushed data at the kill, as under
                # real load (small values rarely had anything unflushed to lose).
                value = f"rec-{i}-".encode().ljust(1024, b"x")
                p.produce(topic, value=value, partition=i % partitions, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0.001)

    t = threading.Thread(target=produce_loop, daemon=True)
    t.start()
    try:
        # Two kills, each after a fresh run of acknowledgements: one while producing, one
        # right after a burst was fully acknowledged (the last writes sit in sled's buffers
        # unless they were flushed before the acks; before group commit this lost all of them).
        for burst_end in (False, True):
            before = len(acked)
            wait_until(lambda: len(acked) >= before + 1000, timeout=60, what="1000 acks before the kill")
            if burst_end:
                pause.set()
                assert p.flush(30) == 0
            cluster.kill(1)
            pause.clear()
            acked_at_kill = len(acked)
            cluster.start(1)
            wait_until(lambda: len(acked) >= acked_at_kill + 300, timeout=60, what="acks after the restart")
    finally:
        stop.set()
        t.join(10)
    assert p.flush(40) == 0

    got = consume_to_end(b, topic, list(range(partitions)), timeout=60)
    stored = {(m.partition(), m.offset()): m.value() for msgs in got.values() for m in msgs}
    missing = [(part, off) for part, off, v in acked if stored.get((part, off)) != v]
    assert not missing, f"{len(missing)} of {len(acked)} acked records lost or changed, e.g. {missing[:5]}"
    for part, msgs in got.items():
        assert [m.offset() for m in msgs] == list(range(len(msgs))), f"partition {part}: offsets not contiguous"


def test_idempotent_producer_across_sigkill(cluster):
    """An idempotent producer (acks=all) across a SIGKILL and restart: every acked record is
    there once, nothing is duplicated, order per partition is produce order."""
    b = cluster.bootstrap
    partitions = 2
    topic = create_topic(b, topic_name("crash-idem"), partitions)
    fatal, errors, acked, sent = [], [], [], []
    p = Producer({
        "bootstrap.servers": b,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": 60000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 200,
        "error_cb": lambda err: fatal.append(err) if err.fatal() else None,
    })

    def cb(err, msg):
        (errors.append(err) if err else acked.append((msg.partition(), msg.offset(), msg.value())))

    total = 2000
    stop = threading.Event()

    def produce_loop():
        for i in range(total):
            v = f"r-{i}".encode()
            while True:
                try:
                    p.produce(topic, value=v, partition=i % partitions, on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.01)
            sent.append((i % partitions, v))
            p.poll(0)
            if i % 10 == 0:
                p.poll(0.01)
        while not stop.is_set():
            p.poll(0.05)

    t = threading.Thread(target=produce_loop, daemon=True)
    t.start()
    try:
        wait_until(lambda: len(acked) >= 300, timeout=30, what="acks before the kill")
        cluster.kill(1)
        cluster.start(1)
        wait_until(lambda: len(sent) == total, timeout=60, what="all records handed to the producer")
    finally:
        stop.set()
        t.join(60)
    remaining = p.flush(60)
    assert not fatal, f"fatal producer error: {fatal}"
    got = consume_to_end(b, topic, list(range(partitions)), timeout=60)
    stored = {(m.partition(), m.offset()): m.value() for msgs in got.values() for m in msgs}
    lost = [a for a in acked if stored.get(a[:2]) != a[2]]
    assert not lost, f"{len(lost)} acked records lost, e.g. {lost[:3]}"
    for part in range(partitions):
        values = [m.value() for m in got[part]]
        assert len(values) == len(set(values)), f"partition {part}: {len(values) - len(set(values))} duplicates"
        expected = [v for q, v in sent if q == part]
        assert values == expected, f"partition {part}: content or order differs"
    assert remaining == 0 and not errors, f"{remaining} undelivered, {len(errors)} failed, e.g. {errors[:3]}"
